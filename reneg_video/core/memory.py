"""Memory presets: `--memory auto|off|balanced|low|minimal`, built from diffusers' own memory features.

Each preset is a list of maintained switches, applied in one place and reported back, so that a caller (and
the CLI's log line and `--json`) sees what is really in effect on this pipeline and device:

- `off`:      diffusers defaults (SDPA attention, CFG branches batched, the whole video decoded at once);
- `balanced`: VAE slicing (`vae.enable_slicing()`): frames (or videos) decode one at a time, the decode
              being the memory peak of a video pipeline; no effect on the denoiser, little on speed;
- `low`:      balanced + VAE tiling (`vae.enable_tiling()`, engages only above the VAE's tile size, e.g.
              512 px for the SD VAE, so ZeroScope's 576x320 tiles) + feed-forward chunking of the denoiser
              (`unet.enable_forward_chunking(chunk_size=1, dim=1)`, UNet3D) + model CPU offload (CUDA only:
              each model moves to the GPU only while it runs, `pipe.enable_model_cpu_offload()`);
- `minimal`:  low + attention slicing (`pipe.enable_attention_slicing("max")`, where the denoiser supports
              it: UNet3D yes, LTX's transformer no) + sequential CPU offload instead of model offload (CUDA
              only: weights stream to the GPU layer by layer; slowest, smallest);
- `auto`:     the lightest preset whose estimated need fits the free memory of the device (see `choose_preset`).

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
    "balanced": "VAE slicing (decode frame by frame)",
    "low": "balanced + VAE tiling + UNet feed-forward chunking + model CPU offload (CUDA only)",
    "minimal": "low + attention slicing (not on LTX) + sequential CPU offload instead of model offload "
    "(CUDA only; slowest)",
}

# Peak bytes per output pixel of an SD-VAE decode in float32 (activations of the 128-channel full-resolution
# decoder blocks). Measured here: 8 frames of 256x256 with the SD VAE architecture peaked at 1730 MiB above
# the resting footprint (preset off, docs/benchmarks.md), 3.46 KB per pixel.
VAE_DECODE_BYTES_PER_PIXEL_FP32 = 3500
# Estimated denoiser activation bytes per latent element per CFG branch (attention and feed-forward
# intermediates of one step; a coarse figure for choosing a preset, not a promise).
DENOISER_BYTES_PER_LATENT_ELEMENT_FP32 = 4096
# Tiled decode: the SD VAE decodes 512 px tiles (64 latents), so at most one tile's activations live at once.
VAE_TILE_PIXELS = 512 * 512
# Free memory kept in reserve: allocator fragmentation, other processes, the CUDA context.
HEADROOM = 1.25

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


def estimate_need(pipe, preset: str, *, height: int, width: int, frames: int, device: torch.device) -> int:
    """A coarse estimate of peak bytes for one video of `frames` x `height` x `width` under `preset`.

    Weights + the larger of (denoiser activations of one CFG step, VAE decode activations). Offload (CUDA,
    low/minimal) keeps only the largest model (model offload) or about one layer (sequential) on the device.
    """
    modules = _modules(pipe)
    dtype_bytes = next((p.element_size() for m in modules.values() for p in m.parameters()), 4)
    scale = dtype_bytes / 4
    weights = weight_bytes(pipe)
    if device.type == "cuda" and preset == "low":
        weights = max((weight_bytes_of(m) for m in modules.values()), default=0)
    elif device.type == "cuda" and preset == "minimal":
        weights = 0
    vae_factor = getattr(pipe, "vae_scale_factor", 8) or 8
    latent_elements = 2 * 4 * frames * (height // vae_factor) * (width // vae_factor)  # 2 CFG branches
    denoise = latent_elements * DENOISER_BYTES_PER_LATENT_ELEMENT_FP32 * scale
    if preset in ("low", "minimal"):
        denoise //= 2  # feed-forward chunking / attention slicing trim the largest intermediates
    per_frame = height * width
    if preset == "off":
        decoded_pixels = frames * per_frame
    elif preset == "balanced":
        decoded_pixels = per_frame
    else:
        decoded_pixels = min(per_frame, VAE_TILE_PIXELS)
    decode = decoded_pixels * VAE_DECODE_BYTES_PER_PIXEL_FP32 * scale
    return int(weights + max(denoise, decode))


def weight_bytes_of(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def choose_preset(pipe, *, height: int, width: int, frames: int, device: torch.device) -> tuple[str, str]:
    """The lightest preset whose estimated need (x HEADROOM) fits the free memory, and why."""
    free, source = free_memory_bytes(device)
    if free is None:
        return "balanced", "free memory unknown: balanced (VAE slicing costs little)"
    gib = 2**30
    for preset in _ORDER:
        need = estimate_need(pipe, preset, height=height, width=width, frames=frames, device=device)
        if need * HEADROOM <= free:
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
