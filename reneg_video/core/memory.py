"""Memory presets: `--memory auto|off|balanced|low|minimal`, built from diffusers' own memory features.

Each preset is a list of maintained switches, applied in one place and reported back, so that a caller (and
the CLI's log line and `--json`) sees what is really in effect on this pipeline and device:

- `off`:      diffusers defaults (SDPA attention, CFG branches batched, the whole video decoded at once);
- `balanced`: VAE slicing (`vae.enable_slicing()`): frames decode one at a time (2-D VAEs: SD, ZeroScope), the
              decode being the memory peak of such a pipeline; a 3-D video VAE (LTX) slices over videos only,
              so for one video it saves nothing; no effect on the denoiser, little on speed;
- `low`:      balanced + VAE tiling (`vae.enable_tiling()`, engages only above the VAE's tile size, e.g.
              512 px for the SD VAE, so ZeroScope's 576x320 tiles) + feed-forward chunking of the denoiser
              (`unet.enable_forward_chunking(chunk_size=1, dim=1)`, UNet3D) + model CPU offload (CUDA only:
              each model moves to the GPU only while it runs, `pipe.enable_model_cpu_offload()`);
- `minimal`:  low + attention slicing (`pipe.enable_attention_slicing("max")`, where the denoiser supports
              it: UNet3D yes, LTX's transformer no) + sequential CPU offload instead of model offload (CUDA
              only: weights stream to the GPU layer by layer; slowest, smallest);
- `auto`:     the lightest preset whose estimated need fits the free memory of the device (see `choose_preset`);
              the estimate reads the latent factors and channels from the loaded VAE and denoiser configs
              (`vae_geometry`) and counts weights exactly (it runs on the meta device too).

On CPU the offload switches do not apply (the weights already live in CPU memory) and are reported as such.
Switches a model lacks are reported as "unsupported: ..." rather than silently skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:  # torch loads on first use, so the CLI's --help stays quick
    import torch

PRESETS = ("auto", "off", "balanced", "low", "minimal")
# What `cpu_offload` reports when an offload hook is installed (the pipeline must then stay off `.to(cuda)`).
OFFLOAD_MODES = ("model", "sequential")
# The order auto tries them in: lightest first.
_ORDER = ("off", "balanced", "low", "minimal")
PRESET_HELP = {
    "auto": "the lightest preset whose estimated need fits the free device memory (GPU: free CUDA memory; "
    "CPU: MemAvailable)",
    "off": "diffusers defaults: SDPA attention, batched CFG, whole-video VAE decode",
    "balanced": "VAE slicing (decode frame by frame; a 3-D video VAE such as LTX's only splits videos)",
    "low": "balanced + VAE tiling + UNet feed-forward chunking + model CPU offload (CUDA only)",
    "minimal": "low + attention slicing (not on LTX) + sequential CPU offload instead of model offload "
    "(CUDA only; slowest)",
}

# Peak activation bytes per decoded output pixel (per frame) in float32, by VAE class. Measured on CPU with
# the real widths (tests/realmodels.py `LiveTensorPeak`, the peak of live tensor storages, which is what a GPU
# allocator holds; kernel workspaces excluded): SD VAE 3072 B (8 frames, 128 and 256 px; an RSS measurement of
# 8 frames 256x256 gave 3460 B, docs/benchmarks.md), LTX-Video VAE 151 B (0.9.1) / 155 B (0.9.0) at 9-17
# frames of 96x128 and 192x256, linear in frames and pixels. LTX decodes its last stage at 1/4 of the output
# size (patch_size 4): 20x less per pixel than the SD VAE's full-resolution 128-channel blocks.
VAE_DECODE_BYTES_PER_PIXEL_FP32 = {"AutoencoderKL": 3500, "AutoencoderKLLTXVideo": 160}
VAE_DECODE_BYTES_PER_PIXEL_DEFAULT = 3500  # VAEs not measured: the SD VAE's figure
# Estimated UNet activation bytes per latent element per CFG branch (attention and feed-forward intermediates of
# one step; a coarse figure for choosing a preset, not a promise).
DENOISER_BYTES_PER_LATENT_ELEMENT_FP32 = 4096
# Transformer denoisers (LTX, PixArt): activation bytes per token per inner channel (heads x head_dim) in one
# step, float32. Measured as above on LTX-Video's transformer block at full width (32 heads x 64): 56.3-58.9 B
# at 384-3520 tokens, the same for 1 and 2 blocks (blocks run one after the other).
TRANSFORMER_BYTES_PER_TOKEN_CHANNEL_FP32 = 60
# Tiled decode when the VAE does not say its tile: the SD VAE's 512 px tiles (64 latents).
VAE_TILE_PIXELS = 512 * 512
# Activation estimates are coarse: they count this much over (weights are counted exactly).
HEADROOM = 1.25
# Kept free on top of the estimate: allocator fragmentation and other processes.
RESERVE_BYTES = 256 * 2**20

log = logging.getLogger(__name__)


def check_preset(preset: str) -> str:
    """Return `preset` if known, else raise UsageError naming the value and the choices."""
    if preset not in PRESETS:
        raise UsageError(
            f"--memory {preset!r}: unknown preset; expected one of {', '.join(PRESETS)} (see --help)"
        )
    return preset


def denoiser_of(pipe) -> torch.nn.Module | None:
    """The pipeline's denoiser: `unet` (UNet3D, UNet2D, VideoCrafter2) or `transformer` (LTX, PixArt)."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if module is not None:
            return module
    return None


def free_memory_bytes(device: torch.device) -> tuple[int | None, str]:
    """Free memory on `device` and where the figure came from (None when it cannot be read)."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free), "torch.cuda.mem_get_info"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "/proc/meminfo MemAvailable"
    except OSError:
        pass
    try:  # not a dependency: used only where installed (e.g. macOS has no /proc)
        import psutil

        return int(psutil.virtual_memory().available), "psutil"
    except ImportError:
        return None, "unknown"


def weight_bytes(pipe) -> int:
    """Bytes of all parameters and buffers of the pipeline's models."""
    total = 0
    for module in _modules(pipe).values():
        for tensor in [*module.parameters(), *module.buffers()]:
            total += tensor.numel() * tensor.element_size()
    return total


def _modules(pipe) -> dict[str, torch.nn.Module]:
    import torch

    return {name: m for name, m in getattr(pipe, "components", {}).items() if isinstance(m, torch.nn.Module)}


def vae_geometry(vae) -> dict[str, Any]:
    """What the loaded VAE's config says about its latent: spatial and temporal factors, channels, and whether
    `enable_slicing()` decodes a single video frame by frame (2-D VAEs, to which a video pipeline hands the
    frames as a batch) or only splits the batch of videos (3-D video VAEs such as LTX's)."""
    config = getattr(vae, "config", None) or {}
    temporal = _vae_value(vae, "temporal_compression_ratio")
    spatial = _vae_value(vae, "spatial_compression_ratio")
    if spatial is None:  # SD-style AutoencoderKL: one x2 downsampling per level after the first
        spatial = 2 ** (len(config.get("block_out_channels", (0,) * 4)) - 1)
    height = _vae_value(vae, "tile_sample_min_height") or _vae_value(vae, "tile_sample_min_size")
    width = _vae_value(vae, "tile_sample_min_width") or height
    return {
        "spatial": int(spatial),
        "temporal": int(temporal or 1),
        "channels": int(config.get("latent_channels", 4)),
        "slices_frames": temporal is None,  # a 2-D VAE: no temporal factor anywhere
        "tile": (int(height), int(width)) if height else None,
        "decode_bytes_per_pixel": VAE_DECODE_BYTES_PER_PIXEL_FP32.get(
            type(vae).__name__, VAE_DECODE_BYTES_PER_PIXEL_DEFAULT
        ),
    }


def _vae_value(vae, name: str) -> Any:
    """`name` as the VAE sets it on itself (LTX: temporal_compression_ratio), else from its config (CogVideoX,
    Allegro), else None. Not `getattr`: diffusers answers a config key asked of the model itself with a
    FutureWarning (deprecated access) on every run."""
    try:
        return object.__getattribute__(vae, name)  # the instance and its class, never __getattr__
    except AttributeError:
        config = getattr(vae, "config", None) or {}
        return config.get(name) if hasattr(config, "get") else getattr(config, name, None)


def _denoise_activation_bytes(denoiser, geometry: dict, preset: str, *, height: int, width: int, frames: int):
    """Activations of one CFG step (both branches in one batch), float32."""
    latent_frames = (frames - 1) // geometry["temporal"] + 1 if geometry["temporal"] > 1 else frames
    latent_h, latent_w = height // geometry["spatial"], width // geometry["spatial"]
    config = getattr(denoiser, "config", None) or {}
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    if isinstance(heads, int) and isinstance(head_dim, int) and hasattr(denoiser, "transformer_blocks"):
        patch = config.get("patch_size") or 1
        patch_t = config.get("patch_size_t") or 1
        tokens = 2 * -(-latent_frames // patch_t) * (latent_h // patch) * (latent_w // patch)
        activations = tokens * heads * head_dim * TRANSFORMER_BYTES_PER_TOKEN_CHANNEL_FP32
    else:
        elements = 2 * geometry["channels"] * latent_frames * latent_h * latent_w
        activations = elements * DENOISER_BYTES_PER_LATENT_ELEMENT_FP32
    if preset in ("low", "minimal") and hasattr(denoiser, "enable_forward_chunking"):
        activations //= 2  # feed-forward chunking / attention slicing trim the largest intermediates
    return activations


def _decode_activation_bytes(geometry: dict, preset: str, *, height: int, width: int, frames: int) -> int:
    per_frame = height * width
    if preset == "off" or (preset == "balanced" and not geometry["slices_frames"]):
        pixels = frames * per_frame  # one video: a video VAE's slicing (over videos) changes nothing
    elif geometry["slices_frames"]:
        tile = geometry["tile"]
        tiled = min(height, tile[0]) * min(width, tile[1]) if tile else min(per_frame, VAE_TILE_PIXELS)
        pixels = per_frame if preset == "balanced" else tiled
    else:  # a video VAE tiles in space and decodes every frame of a tile at once
        tile = geometry["tile"] or (512, 512)
        pixels = frames * min(height, tile[0]) * min(width, tile[1])
    return pixels * geometry["decode_bytes_per_pixel"]


def estimate_stages(pipe, preset: str, *, height: int, width: int, frames: int) -> dict[str, tuple[int, int]]:
    """Per stage of a call (`text`, `denoise`, `decode`): (weight bytes, activation bytes) in the pipeline's
    dtype, for one video of `frames` x `height` x `width` under `preset`. Works on the meta device."""
    modules = _modules(pipe)
    dtype_bytes = next((p.element_size() for m in modules.values() for p in m.parameters()), 4)
    scale = dtype_bytes / 4
    vae = getattr(pipe, "vae", None)
    geometry = vae_geometry(vae)
    denoiser = denoiser_of(pipe)
    size = {"height": height, "width": width, "frames": frames}
    text = sum(weight_bytes_of(m) for name, m in modules.items() if name.startswith("text_encoder"))
    denoise = _denoise_activation_bytes(denoiser, geometry, preset, **size) if denoiser is not None else 0
    stages = {
        # The text encoders' activations (a few hundred tokens) are negligible beside their weights.
        "text": (text, 0),
        "denoise": (weight_bytes_of(denoiser) if denoiser is not None else 0, int(denoise * scale)),
        "decode": (
            weight_bytes_of(vae) if vae is not None else 0,
            int(_decode_activation_bytes(geometry, preset, **size) * scale),
        ),
    }
    counted = sum(w for w, _ in stages.values())
    other = weight_bytes(pipe) - counted  # e.g. image encoders: resident with the text encoder's stage
    stages["text"] = (stages["text"][0] + other, 0)
    return stages


def estimate_need(pipe, preset: str, *, height: int, width: int, frames: int, device: torch.device) -> int:
    """A coarse estimate of peak bytes for one video of `frames` x `height` x `width` under `preset`.

    Without offload every model stays resident: all weights + the largest stage's activations. Model CPU
    offload (CUDA, `low`) holds one model at a time: the largest stage (its weights + its activations; for
    LTX-Video that is T5-xxl). Sequential offload (CUDA, `minimal`) streams weights layer by layer: the largest
    activations + the largest single layer.
    """
    stages = estimate_stages(pipe, preset, height=height, width=width, frames=frames)
    return _peak(pipe, stages, preset, device, activation_factor=1.0)


def _peak(pipe, stages: dict[str, tuple[int, int]], preset: str, device, *, activation_factor: float) -> int:
    scaled = {name: (w, int(a * activation_factor)) for name, (w, a) in stages.items()}
    activations = max(a for _, a in scaled.values())
    if device.type == "cuda" and preset == "low":
        return max(w + a for w, a in scaled.values())
    if device.type == "cuda" and preset == "minimal":
        return activations + _largest_layer_bytes(pipe)
    return sum(w for w, _ in scaled.values()) + activations


def _fits(pipe, preset: str, free: int, *, height: int, width: int, frames: int, device) -> tuple[bool, int]:
    """Whether `preset` fits `free` bytes with HEADROOM on the (coarse) activations and RESERVE_BYTES kept."""
    stages = estimate_stages(pipe, preset, height=height, width=width, frames=frames)
    need = _peak(pipe, stages, preset, device, activation_factor=1.0)
    padded = _peak(pipe, stages, preset, device, activation_factor=HEADROOM)
    return padded + RESERVE_BYTES <= free, need


def _largest_layer_bytes(pipe) -> int:
    return max(
        (
            weight_bytes_of(m)
            for module in _modules(pipe).values()
            for m in module.modules()
            if next(m.children(), None) is None
        ),
        default=0,
    )


def weight_bytes_of(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def choose_preset(pipe, *, height: int, width: int, frames: int, device: torch.device) -> tuple[str, str]:
    """The lightest preset whose estimated need (activations x HEADROOM, plus RESERVE_BYTES) fits the free
    memory, and why."""
    free, source = free_memory_bytes(device)
    if free is None:
        return "balanced", "free memory unknown: balanced (VAE slicing costs little)"
    gib = 2**30
    for preset in _ORDER:
        fits, need = _fits(pipe, preset, free, height=height, width=width, frames=frames, device=device)
        if fits:
            return preset, f"{source}: {free / gib:.1f} GiB free, {preset} needs ~{need / gib:.1f} GiB"
    return "minimal", f"{source}: {free / gib:.1f} GiB free, less than any preset's estimate; minimal"


def configure_vae(vae, preset: str) -> dict[str, Any]:
    """VAE switches of a concrete preset (off/balanced/low/minimal) on a bare VAE; returns what is on."""
    slicing = preset in ("balanced", "low", "minimal")
    tiling = preset in ("low", "minimal")
    settings: dict[str, Any] = {}
    for name, wanted in (("slicing", slicing), ("tiling", tiling)):
        method = getattr(vae, f"{'enable' if wanted else 'disable'}_{name}", None)
        if method is None:
            settings[f"vae_{name}"] = f"unsupported: {type(vae).__name__} has no enable_{name}()"
            continue
        method()
        settings[f"vae_{name}"] = wanted
    return settings


def apply_memory_preset(
    pipe,
    preset: str,
    *,
    height: int,
    width: int,
    frames: int = 1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Apply a memory preset to a loaded diffusers pipeline; return the effective settings.

    `height`/`width`/`frames` are the requested output size (auto weighs them against free memory).
    `device` is where the pipeline runs (default: where its models are); with CPU offload (CUDA only) the
    pipeline must not be moved with `.to("cuda")` afterwards: offload places the models itself.
    Returns a dict: `preset`, `requested`, `device`, `vae_slicing`, `vae_tiling`, `attention_slicing`,
    `forward_chunking`, `cpu_offload` (True/False/a mode, or a string saying why it does not apply) and, for
    auto, `auto_reason`.
    """
    import torch

    check_preset(preset)
    device = torch.device(device) if device is not None else _device_of(pipe)
    requested = preset
    settings: dict[str, Any] = {"preset": preset, "requested": requested, "device": str(device)}
    if preset == "auto":
        preset, reason = choose_preset(pipe, height=height, width=width, frames=frames, device=device)
        settings.update(preset=preset, auto_reason=reason)

    vae = getattr(pipe, "vae", None)
    if vae is not None:
        settings.update(configure_vae(vae, preset))

    denoiser = denoiser_of(pipe)
    name = type(denoiser).__name__
    # Attention slicing replaces SDPA by a sliced matmul attention: only in minimal, where memory beats speed.
    if not hasattr(denoiser, "set_attention_slice"):
        settings["attention_slicing"] = f"unsupported: {name} has no set_attention_slice"
    elif preset == "minimal":
        pipe.enable_attention_slicing("max")
        settings["attention_slicing"] = "max"
    else:
        pipe.disable_attention_slicing()
        settings["attention_slicing"] = False

    chunking = preset in ("low", "minimal")
    if not hasattr(denoiser, "enable_forward_chunking"):
        settings["forward_chunking"] = f"unsupported: {name} has no enable_forward_chunking"
    elif chunking:
        # dim=1: chunk the feed-forward over the sequence (tokens), one at a time: UNet3D's documented choice.
        denoiser.enable_forward_chunking(chunk_size=1, dim=1)
        settings["forward_chunking"] = True
    else:
        denoiser.disable_forward_chunking()
        settings["forward_chunking"] = False

    offload = {"low": "model", "minimal": "sequential"}.get(preset, False)
    if device.type != "cuda":
        settings["cpu_offload"] = (
            f"not applicable on {device.type}: the weights already live in CPU memory" if offload else False
        )
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
        settings["cpu_offload"] = "model"
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
        settings["cpu_offload"] = "sequential"
    else:
        settings["cpu_offload"] = False
    pipe.reneg_memory = settings
    log.info("memory: %s", describe(settings))
    return settings


def _device_of(pipe) -> torch.device:
    import torch

    device = getattr(pipe, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


def describe(settings: dict[str, Any]) -> str:
    """One line for logs: `preset=low (auto: ...) vae_slicing=True ...`."""
    head = f"preset={settings['preset']}"
    if settings.get("requested") == "auto":
        head += f" (auto: {settings.get('auto_reason', '')})"
    rest = " ".join(
        f"{k}={v}" for k, v in settings.items() if k not in ("preset", "requested", "auto_reason", "device")
    )
    return f"{head} device={settings.get('device')} {rest}"
