"""Convert VideoCrafter2's original checkpoint (lvdm naming) to this project's diffusers layout.

    unet_from_original(state_dict)  model.diffusion_model.* tensors -> VideoCrafter2UNet (strict)
    unet_to_original(unet)          the inverse, for round trips and for exporting fine-tuned weights
    text_encoder_from_original(sd)  cond_stage_model.* (OpenCLIP ViT-H/14 text tower) -> CLIPTextModel
    python -m reneg_video.commands.convert_videocrafter2 CKPT OUT_DIR
                                    model.ckpt -> a folder with unet/, vae/, scheduler/, text_encoder/,
                                    README.md, model_index.json (+ tokenizer/ if a folder gives one)

The UNet key map is generated from the config by walking lvdm's `UNetModel.__init__` in the same
order it builds `input_blocks`, `middle_block` and `output_blocks`, so it holds for any config the
port accepts (the tiny test configs included).
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...core.atomic import atomic_dir
from ...core.errors import CheckpointError, UsageError
from .unet import VideoCrafter2UNet

# LatentDiffusion keeps its UNet under `model.diffusion_model.` (the DiffusionWrapper), the VAE under
# `first_stage_model.` and the text encoder under `cond_stage_model.` (lvdm/models/ddpm3d.py).
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# FrozenOpenCLIPEmbedder keeps open_clip's CLIP under `.model`; lvdm builds it without pretrained weights
# (lvdm/modules/encoders/condition.py), so the checkpoint's copy is the text encoder VideoCrafter2 used.
TEXT_PREFIX = "cond_stage_model.model."
OPENCLIP_HEAD_DIM = 64  # open_clip text towers have width // 64 heads (ViT-H/14: 1024 wide, 16 heads)
OPENCLIP_LAYER_NORM_EPS = 1e-5  # open_clip's LayerNorm is torch's, default eps
# --text-encoder-from may hold a float16 copy: tensors agree if within float16's precision (2**-10).
TEXT_ENCODER_RTOL = 2**-10
TEXT_ENCODER_ATOL = 1e-5
# DeepSpeed checkpoints of lvdm keep the state dict under "module" with this prefix on every key
# (scripts/evaluation/funcs.py load_model_checkpoint strips key[16:]).
DEEPSPEED_PREFIX = "_forward_module."

# lvdm's init_attn is a TemporalTransformer built without use_linear, so its projections are
# kernel-size-1 Conv1d layers ([out, in, 1]); diffusers' TransformerTemporalModel has the same maps as
# Linear layers ([out, in]).
_CONV1D_AS_LINEAR = ("transformer_in.proj_in.weight", "transformer_in.proj_out.weight")

# lvdm ResBlock children -> diffusers ResnetBlock2D children (the Sequential indices skip SiLU/Dropout).
_RESNET_PARTS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}

# Values of configs/inference_t2v_512_v2.0.yaml that the converted folder records.
SCALE_FACTOR = 0.18215  # model.params.scale_factor: latents = VAE mean * 0.18215
LINEAR_START = 0.00085  # model.params.linear_start
LINEAR_END = 0.012  # model.params.linear_end
NUM_TRAIN_TIMESTEPS = 1000  # model.params.timesteps
USE_SCALE = True  # model.params.use_scale
SCALE_B = 0.7  # model.params.scale_b
SCALE_A = 1.0  # LatentDiffusion default scale_a (not set in the yaml)
SCALE_MID_STEP = 400  # LatentDiffusion default mid_step (not set in the yaml)
VAE_DDCONFIG = {  # first_stage_config.params.ddconfig
    "resolution": 512,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "z_channels": 4,
}


def original_key_map(config: Mapping[str, Any]) -> dict[str, str]:
    """Module prefixes, lvdm name -> port name, for a full `VideoCrafter2UNet` config (`unet.config`)."""
    cfg = config
    nrb, mult = cfg["num_res_blocks"], list(cfg["channel_mult"])
    attn_at, temporal = set(cfg["attention_resolutions"]), cfg["temporal_attention"]
    table = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "fps_embedding.0": "fps_embedding.linear_1",
        "fps_embedding.2": "fps_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "init_attn.0": "transformer_in",
        "out.0": "conv_norm_out",
        "out.2": "conv_out",
    }

    def layer(orig: str, port: str, j: int, attention: bool) -> int:
        """One TimestepEmbedSequential of ResBlock [+ SpatialTransformer + TemporalTransformer]."""
        for old, new in _RESNET_PARTS.items():
            table[f"{orig}.0.{old}"] = f"{port}.resnets.{j}.{new}"
        table[f"{orig}.0.temopral_conv"] = f"{port}.temp_convs.{j}"  # sic: lvdm's attribute name
        index = 1
        if attention:
            table[f"{orig}.1"] = f"{port}.attentions.{j}"
            index = 2
            if temporal:
                table[f"{orig}.2"] = f"{port}.temp_attentions.{j}"
                index = 3
        return index

    block, ds = 1, 1
    for level in range(len(mult)):
        for j in range(nrb):
            layer(f"input_blocks.{block}", f"down_blocks.{level}", j, ds in attn_at)
            block += 1
        if level != len(mult) - 1:
            table[f"input_blocks.{block}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            block += 1
            ds *= 2

    index = layer("middle_block", "mid_block", 0, True)
    for old, new in _RESNET_PARTS.items():
        table[f"middle_block.{index}.{old}"] = f"mid_block.resnets.1.{new}"
    table[f"middle_block.{index}.temopral_conv"] = "mid_block.temp_convs.1"

    block = 0
    for up, level in enumerate(reversed(range(len(mult)))):
        for i in range(nrb + 1):
            index = layer(f"output_blocks.{block}", f"up_blocks.{up}", i, ds in attn_at)
            if level and i == nrb:
                table[f"output_blocks.{block}.{index}.conv"] = f"up_blocks.{up}.upsamplers.0.conv"
                ds //= 2
            block += 1
    return table


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    """Rename `key` by its longest module prefix in `table`; None if no prefix is there."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in table:
            return ".".join([table[prefix], *parts[cut:]])
    return None


def _unet_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet's tensors, with the `model.diffusion_model.` prefix removed if the dict has it."""
    if any(k.startswith(UNET_PREFIX) for k in state_dict):
        return {k[len(UNET_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(UNET_PREFIX)}
    return dict(state_dict)


def _listing(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def unet_from_original(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None
) -> VideoCrafter2UNet:
    """Build a `VideoCrafter2UNet` from lvdm `UNetModel` tensors.

    `state_dict` is the checkpoint's `state_dict` (only its `model.diffusion_model.*` tensors are used)
    or the UNet's own keys without that prefix. `config` overrides the VideoCrafter2 defaults. Every
    tensor of the port must come from the checkpoint and every UNet tensor of the checkpoint must be
    used, with the same shape and finite values; otherwise `CheckpointError` names the keys. The model
    shares the given tensors (no copy) and is returned in eval mode.
    """
    tensors = _unet_tensors(state_dict)
    if not tensors:
        raise CheckpointError(
            f"VideoCrafter2 checkpoint: no UNet tensors (no '{UNET_PREFIX}*' keys); pass the checkpoint's state_dict"
        )
    with torch.device("meta"):  # no memory for the random init: the checkpoint's tensors are assigned
        unet = VideoCrafter2UNet(**dict(config or {}))
    table = original_key_map(unet.config)
    inverse = {v: k for k, v in table.items()}
    expected = unet.state_dict()

    converted: dict[str, torch.Tensor] = {}
    unexpected, mismatched, nonfinite = [], [], []
    for key, value in tensors.items():
        new = _rename(key, table)
        if new is None or new not in expected:
            unexpected.append(key)
            continue
        if new in _CONV1D_AS_LINEAR and value.ndim == 3 and value.shape[-1] == 1:
            value = value.squeeze(-1)
        if value.shape != expected[new].shape:
            mismatched.append(f"{key} {list(value.shape)} vs {list(expected[new].shape)}")
        elif value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nonfinite.append(key)
        converted[new] = value
    missing = [_rename(k, inverse) or k for k in expected if k not in converted]
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if nonfinite:
        problems.append(f"NaN/inf in {_listing(nonfinite)}")
    if problems:
        raise CheckpointError(
            "VideoCrafter2 UNet checkpoint does not match the config: "
            + "; ".join(problems)
            + "; pass the matching config or an unmodified VideoCrafter2 checkpoint"
        )
    unet.load_state_dict(converted, strict=True, assign=True)
    return unet.eval()


def unet_to_original(unet: VideoCrafter2UNet) -> dict[str, torch.Tensor]:
    """The port's tensors under lvdm `UNetModel` names (without the `model.diffusion_model.` prefix)."""
    inverse = {v: k for k, v in original_key_map(unet.config).items()}
    out = {}
    for key, value in unet.state_dict().items():
        old = _rename(key, inverse)
        if old is None:  # a port tensor without an lvdm counterpart would be a bug in the key map
            raise CheckpointError(f"VideoCrafter2UNet: no lvdm name for {key}")
        out[old] = value.unsqueeze(-1) if key in _CONV1D_AS_LINEAR else value
    return out


def load_original_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an lvdm `model.ckpt` with `torch.load(weights_only=True)` and return its state dict.

    Never retries without `weights_only`: a pickle that needs anything outside torch's allow-list is
    refused (nothing in it has run).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: checkpoint not found; pass the path of VideoCrafter2's model.ckpt")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) torch.save format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True) ({first}); nothing in it ran. Re-save only the "
            "state_dict (torch.save({'state_dict': sd}, path)) where you trust the file"
        ) from None
    except Exception as err:  # truncated or damaged: torch.load raises RuntimeError, EOFError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({first}); download model.ckpt again"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return dict(obj["state_dict"])
    if isinstance(obj, Mapping) and isinstance(obj.get("module"), Mapping):
        return {k.removeprefix(DEEPSPEED_PREFIX): v for k, v in obj["module"].items()}
    if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    raise CheckpointError(f"{path}: not an lvdm checkpoint (no 'state_dict' of tensors)")


def vae_from_original(state_dict: Mapping[str, torch.Tensor], ddconfig: Mapping[str, Any] | None = None):
    """The SD-style VAE under `first_stage_model.*` as a diffusers `AutoencoderKL` (strict).

    `ddconfig` overrides entries of VideoCrafter2's `first_stage_config.params.ddconfig`.
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae_tensors = {k: v for k, v in state_dict.items() if k.startswith(VAE_PREFIX)}
    if not vae_tensors:
        raise CheckpointError(f"VideoCrafter2 checkpoint: no VAE tensors (no '{VAE_PREFIX}*' keys)")
    dd = {**VAE_DDCONFIG, **(ddconfig or {})}
    # The fields diffusers' create_vae_diffusers_config_from_ldm derives from an ldm ddconfig.
    levels = len(dd["ch_mult"])
    config = {
        "sample_size": dd["resolution"],
        "in_channels": dd["in_channels"],
        "out_channels": dd["out_ch"],
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [dd["ch"] * m for m in dd["ch_mult"]],
        "latent_channels": dd["z_channels"],
        "layers_per_block": dd["num_res_blocks"],
        "scaling_factor": SCALE_FACTOR,
    }
    converted = convert_ldm_vae_checkpoint(vae_tensors, config)
    with torch.device("meta"):
        vae = AutoencoderKL(**config)
    result = vae.load_state_dict(converted, strict=False, assign=True)
    # convert_ldm_vae_checkpoint maps tensor for tensor and skips names it does not know: compare counts.
    unused = len(vae_tensors) - len(converted)
    if result.missing_keys or result.unexpected_keys or unused:
        raise CheckpointError(
            "VideoCrafter2 VAE checkpoint does not match an SD VAE: "
            f"missing keys {_listing(result.missing_keys)}; unexpected keys {_listing(result.unexpected_keys)}; "
            f"{unused} {VAE_PREFIX}* tensors not converted"
        )
    return vae.eval()


def text_encoder_from_original(state_dict: Mapping[str, torch.Tensor]):
    """The checkpoint's OpenCLIP text tower (`cond_stage_model.model.*`) as a transformers `CLIPTextModel`.

    lvdm's FrozenOpenCLIPEmbedder(layer="penultimate") runs every resblock but the last, then `ln_final`:
    a `CLIPTextModel` with one layer fewer and `final_layer_norm` = `ln_final` computes that as its
    `last_hidden_state`, as diffusers' SD2.x conversion does (its `convert_open_clip_checkpoint` renames the
    tensors here). Returns None when the checkpoint has no text encoder. Strict: every tensor the model
    needs must come from the checkpoint, with finite values; otherwise `CheckpointError` names the keys.
    """
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    tensors = {k[len(TEXT_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(TEXT_PREFIX)}
    if not tensors:
        return None
    blocks = sorted({int(k.split(".")[2]) for k in tensors if k.startswith("transformer.resblocks.")})
    needed = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias")
    absent = [k for k in needed if k not in tensors]
    if absent or len(blocks) < 2 or blocks != list(range(len(blocks))):
        raise CheckpointError(
            f"VideoCrafter2 checkpoint: {TEXT_PREFIX}* is not an OpenCLIP text tower (missing "
            f"{_listing([TEXT_PREFIX + k for k in absent]) if absent else 'resblocks 0..N, N >= 1'}); "
            "pass an unmodified VideoCrafter2 checkpoint"
        )
    penultimate = f"transformer.resblocks.{blocks[-1]}."
    kept = {
        TEXT_PREFIX + k: v
        for k, v in tensors.items()
        if not k.startswith(penultimate) and k not in ("text_projection", "logit_scale")  # not used by lvdm
    }
    vocab, width = tensors["token_embedding.weight"].shape
    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=tensors["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=len(blocks) - 1,
        num_attention_heads=width // OPENCLIP_HEAD_DIM,
        max_position_embeddings=tensors["positional_embedding"].shape[0],
        hidden_act="gelu",  # open_clip's default nn.GELU (not CLIP-L's quick_gelu)
        layer_norm_eps=OPENCLIP_LAYER_NORM_EPS,
        bos_token_id=vocab - 2,  # <|startoftext|>, <|endoftext|>: the last two entries of CLIP's vocabulary
        eos_token_id=vocab - 1,
        pad_token_id=0,  # open_clip's tokenizer pads with 0
    )
    model = CLIPTextModel(config)
    converted = convert_open_clip_checkpoint(model, kept, prefix=TEXT_PREFIX)
    converted.pop("text_projection.weight", None)
    expected = model.state_dict()
    if not any(k.startswith("text_model.") for k in expected):  # transformers 5 names them without it
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    mismatched = [
        f"{k} {list(v.shape)} vs {list(expected[k].shape)}"
        for k, v in converted.items()
        if k in expected and v.shape != expected[k].shape
    ]
    nonfinite = [
        k for k, v in converted.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    problems = [
        f"{what} {_listing(keys)}"
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
            ("NaN/inf in", nonfinite),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"VideoCrafter2 text encoder ({TEXT_PREFIX}*) does not convert: "
            + "; ".join(problems)
            + "; pass an unmodified VideoCrafter2 checkpoint"
        )
    model.load_state_dict(converted, strict=True)
    return model.eval()


def check_same_text_encoder(ours, source: Path) -> None:
    """Refuse `source/text_encoder` unless it computes what the checkpoint's own copy does (same tensors)."""
    from transformers import CLIPTextModel

    try:
        theirs = CLIPTextModel.from_pretrained(source / "text_encoder")
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UsageError(
            f"--text-encoder-from {source}: text_encoder/ does not load as a CLIPTextModel ({first})"
        ) from None
    a, b = ours.state_dict(), theirs.state_dict()
    why = None
    if a.keys() != b.keys():
        why = (
            f"{ours.config.num_hidden_layers} vs {theirs.config.num_hidden_layers} layers, "
            f"{len(a.keys() ^ b.keys())} tensor names differ"
        )
    else:
        bad = [k for k in a if a[k].shape != b[k].shape]
        if bad:
            why = f"shapes differ at {_listing(bad)}"
        else:
            diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
            bad = [
                k
                for k in a
                if not torch.allclose(
                    a[k].float(), b[k].float(), rtol=TEXT_ENCODER_RTOL, atol=TEXT_ENCODER_ATOL
                )
            ]
            if bad:
                worst = max(bad, key=diffs.get)
                why = f"{len(bad)} of {len(a)} tensors differ (largest |difference| {diffs[worst]:.3g} in {worst})"
    if why:
        raise CheckpointError(
            f"--text-encoder-from {source}: its text encoder is not the checkpoint's own ({TEXT_PREFIX}*: "
            f"{why}); VideoCrafter2 was trained with the checkpoint's copy, which is converted without this "
            "option: leave it out (and copy only tokenizer/ from that folder)"
        )


def scheduler_config() -> dict[str, Any]:
    """DDIMScheduler settings reproducing lvdm's DDIM sampler for VideoCrafter2.

    lvdm's "linear" schedule is linear in sqrt(beta) (diffusers "scaled_linear"); its DDIM steps are
    range(0, 1000, 1000 // S) + 1 ("leading" spacing with steps_offset 1) and its last step goes to
    alphas_cumprod[0] (set_alpha_to_one False). `use_scale`, `scale_a`, `scale_b` and `scale_mid_step`
    are lvdm's latent rescaling (ddpm3d.py); DDIMScheduler ignores them, VideoCrafter2Pipeline reads them.
    """
    return {
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "beta_start": LINEAR_START,
        "beta_end": LINEAR_END,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "prediction_type": "epsilon",
        "use_scale": USE_SCALE,
        "scale_a": SCALE_A,
        "scale_b": SCALE_B,
        "scale_mid_step": SCALE_MID_STEP,
    }


MODEL_INDEX = {
    "_class_name": "VideoCrafter2Pipeline",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["reneg_video.models.videocrafter2.unet", "VideoCrafter2UNet"],
    "vae": ["diffusers", "AutoencoderKL"],
}

README = """# VideoCrafter2 (converted by reneg-video)

Converted from VideoCrafter2's `model.ckpt` (AILab-CVC/VideoCrafter, configs/inference_t2v_512_v2.0.yaml).

- `unet/`: `reneg_video.models.videocrafter2.VideoCrafter2UNet` (`VideoCrafter2UNet.from_pretrained(dir, subfolder="unet")`).
- `vae/`: diffusers `AutoencoderKL` (SD VAE, scaling factor 0.18215).
- `scheduler/`: `DDIMScheduler` config with lvdm's schedule; `use_scale`/`scale_b` record lvdm's latent
  rescaling, which `VideoCrafter2Pipeline` applies (DDIMScheduler itself ignores those keys).

## Text encoder
VideoCrafter2 reads the penultimate layer of OpenCLIP ViT-H/14 followed by the final layer norm, as
Stable Diffusion 2.x and ZeroScope v2 do. lvdm builds that encoder without pretrained weights, so the
checkpoint's own copy (`cond_stage_model.*`) is the one VideoCrafter2 used: `text_encoder/` is converted
from it into a transformers `CLIPTextModel` with 23 of the 24 layers. `--text-encoder-from DIR` (an SD2.1
or ZeroScope v2 folder) is accepted only if its text encoder has the same tensors; its `tokenizer/` is
copied. Without a `tokenizer/`, copy one from any SD2.x or ZeroScope v2 folder (the OpenCLIP BPE
vocabulary); then `reneg_video.models.videocrafter2.VideoCrafter2Pipeline.from_pretrained(this_folder)`
loads it (model_index.json).
"""


def convert(
    ckpt: str | Path,
    out_dir: str | Path,
    text_encoder_from: str | Path | None = None,
    *,
    unet_config: Mapping[str, Any] | None = None,
    vae_ddconfig: Mapping[str, Any] | None = None,
) -> Path:
    """Convert `ckpt` into the folder `out_dir` (written whole or not at all). Returns `out_dir`.

    `unet_config` / `vae_ddconfig` override the VideoCrafter2 configs (other lvdm variants, tests).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise UsageError(f"{out_dir}: already exists; pass a new folder name")
    if not out_dir.parent.is_dir():
        raise UsageError(f"{out_dir.parent}: no such folder; create it first")
    source = Path(text_encoder_from) if text_encoder_from else None
    if source is not None:
        for part in ("text_encoder", "tokenizer"):
            if not (source / part).is_dir():
                raise UsageError(
                    f"{source}: no {part}/ folder; pass an SD2.1 or ZeroScope v2 diffusers folder"
                )
    state_dict = load_original_checkpoint(ckpt)
    text_encoder = text_encoder_from_original(state_dict)
    if text_encoder is not None and source is not None:
        check_same_text_encoder(text_encoder, source)  # before the slow parts: refuse early
    unet = unet_from_original(state_dict, unet_config)
    vae = vae_from_original(state_dict, vae_ddconfig)
    with atomic_dir(out_dir) as tmp:
        unet.save_pretrained(tmp / "unet")
        vae.save_pretrained(tmp / "vae")
        if text_encoder is not None:
            text_encoder.save_pretrained(tmp / "text_encoder")
        (tmp / "scheduler").mkdir()
        config = {"_class_name": "DDIMScheduler", **scheduler_config()}
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(README)
        # Lets VideoCrafter2Pipeline.from_pretrained(out_dir) load the folder once text_encoder/ and
        # tokenizer/ are in it.
        (tmp / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2) + "\n")
        if source is not None:
            # The checkpoint has no text encoder (a stripped file): the folder's is the only one there is.
            parts = ("tokenizer",) if text_encoder is not None else ("text_encoder", "tokenizer")
            for part in parts:
                shutil.copytree(source / part, tmp / part)
    return out_dir
