"""Fixtures that look like a user's real models: the Hugging Face cache layout and the published configs.

- `hf_cache_repo` lays a folder out as `huggingface_hub` does: `$HF_HUB_CACHE/models--org--name/` with
  `blobs/<sha256>`, `refs/main` (the commit hash) and `snapshots/<hash>/...` whose files are relative
  links into `blobs/`. `snapshot_download(..., local_files_only=True)` resolves it like a filled cache.
- `ltx_pipeline(version)` is LTX-Video with the published 0.9.0 / 0.9.1 configs (the JSON files shipped in
  `reneg_video/models/ltx_configs/`) at reduced depth and width: the real latent channels (128), the real
  VAE factors (x32 spatial, x8 temporal), the real timestep conditioning of the 0.9.1 VAE, T5's real 4096
  width. Random weights: the videos are noise.
- `ltx_single_file` writes such a pipeline's transformer and VAE as one `.safetensors` in the original
  LTX key layout (what ComfyUI and the LTX repo hold), checked by a round trip through diffusers' converter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

LTX_REPO = "Lightricks/LTX-Video"
ZEROSCOPE_REPO = "cerspense/zeroscope_v2_576w"
CONFIGS = Path(__file__).resolve().parents[1] / "reneg_video" / "models" / "ltx_configs"
# diffusers' model types (`infer_diffusers_model_type`) of the two LTXPipeline releases.
VERSIONS = {"0.9.0": "ltx-video", "0.9.1": "ltx-video-0.9.1"}


def hf_cache_repo(cache: Path, repo_id: str, source: Path, commit: str | None = None) -> Path:
    """Copy `source` (a folder) into `cache` in the hub's layout; return the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def published_config(version: str, part: str) -> dict:
    config = json.loads((CONFIGS / VERSIONS[version] / part / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _scaled(values, divisor: int) -> list[int]:
    return [max(8, v // divisor) for v in values]


def ltx_vae_config(version: str, *, width_divisor: int = 16, depth: int = 1) -> dict:
    """The published VAE config with `depth` layers per block and widths / `width_divisor`; the latent
    channels, patch sizes and scaling flags (hence the x32 / x8 factors) stay as published."""
    c = published_config(version, "vae")
    c["block_out_channels"] = _scaled(c["block_out_channels"], width_divisor)
    c["decoder_block_out_channels"] = _scaled(c["decoder_block_out_channels"], width_divisor)
    c["layers_per_block"] = [min(depth, n) for n in c["layers_per_block"]]
    c["decoder_layers_per_block"] = [min(depth, n) for n in c["decoder_layers_per_block"]]
    return c


def ltx_transformer_config(version: str, *, heads: int = 2, layers: int = 1) -> dict:
    """The published transformer config (real 64-wide heads, 128 latent channels, 4096 caption width)
    with fewer heads and layers."""
    c = published_config(version, "transformer")
    c["num_attention_heads"] = heads
    c["cross_attention_dim"] = heads * c["attention_head_dim"]
    c["num_layers"] = layers
    return c


def ltx_pipeline(version: str = "0.9.1"):
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    from reneg_video.core.encoders import FAMILIES
    from reneg_video.models.standins import t5_tokenizer, text_encoder

    torch.manual_seed(0)
    tokenizer = t5_tokenizer()
    # The scheduler settings of diffusers' LTX conversion (scripts/convert_ltx_to_diffusers.py).
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )
    return LTXPipeline(
        scheduler=scheduler,
        vae=AutoencoderKLLTXVideo(**ltx_vae_config(version)).eval(),
        text_encoder=text_encoder(FAMILIES["t5-v1_1-xxl"], len(tokenizer)),
        tokenizer=tokenizer,
        transformer=LTXVideoTransformer3DModel(**ltx_transformer_config(version)).eval(),
    )


def ltx_cache(cache: Path, version: str = "0.9.1", repo_id: str = LTX_REPO) -> Path:
    """An LTX pipeline of `version` saved into the HF cache layout as `repo_id`; returns the snapshot."""
    folder = cache.parent / f"ltx-{version}-folder"
    ltx_pipeline(version).save_pretrained(folder)
    return hf_cache_repo(cache, repo_id, folder)


def zeroscope_cache(cache: Path, seed_name: str = "zeroscope-fixture") -> Path:
    """ZeroScope as its repo ships it: `.bin` weights only (no safetensors), in the HF cache layout."""
    from reneg_video.core.specs import load_spec
    from reneg_video.models.standins import build_text_to_video_sd

    spec = load_spec("tiny-zeroscope")
    torch.manual_seed(0)
    pipe = build_text_to_video_sd(spec)
    folder = cache.parent / f"{seed_name}-folder"
    pipe.save_pretrained(folder, safe_serialization=False)
    return hf_cache_repo(cache, ZEROSCOPE_REPO, folder)


# --- single-file checkpoints in the original LTX key layout ----------------------------------------


def _inverse_vae_key(key: str, version: str) -> str:
    """A diffusers AutoencoderKLLTXVideo key as the original LTX checkpoint names it (without `vae.`)."""
    import re

    common = [
        ("conv_shortcut.conv", "conv_shortcut"),
        ("resnets", "res_blocks"),
        ("latents_mean", "per_channel_statistics.mean-of-means"),
        ("latents_std", "per_channel_statistics.std-of-means"),
    ]
    if key.startswith("encoder."):
        # encoder blocks: down_blocks.K (resnets) / .downsamplers.0 / .conv_out, mid_block
        encoder = {
            "down_blocks.0.downsamplers.0": "down_blocks.1",
            "down_blocks.0.conv_out": "down_blocks.2",
            "down_blocks.1.downsamplers.0": "down_blocks.4",
            "down_blocks.1.conv_out": "down_blocks.5",
            "down_blocks.2.downsamplers.0": "down_blocks.7",
            "mid_block": "down_blocks.9",
            "down_blocks.0": "down_blocks.0",
            "down_blocks.1": "down_blocks.3",
            "down_blocks.2": "down_blocks.6",
            "down_blocks.3": "down_blocks.8",
        }
        for new, old in encoder.items():
            if key.startswith(f"encoder.{new}."):
                key = f"encoder.{old}." + key[len(f"encoder.{new}.") :]
                break
    elif key.startswith("decoder."):
        if version == "0.9.1":
            # mid_block -> up_blocks.0; up_blocks.K.upsamplers.0 -> up_blocks.2K+1; up_blocks.K -> 2K+2
            m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key)
            if m:
                key = f"decoder.up_blocks.{2 * int(m[1]) + 1}.{m[2]}"
            elif m := re.match(r"decoder\.up_blocks\.(\d+)\.(.*)", key):
                key = f"decoder.up_blocks.{2 * int(m[1]) + 2}.{m[2]}"
            key = key.replace("decoder.mid_block.", "decoder.up_blocks.0.")
            key = key.replace("decoder.time_embedder.", "decoder.last_time_embedder.")
            if key == "decoder.scale_shift_table":
                key = "decoder.last_scale_shift_table"
        else:
            raise NotImplementedError("single-file fixtures are built for 0.9.1 only")
    for new, old in common:
        key = key.replace(new, old)
    key = key.replace(".norm3.", ".norm3.norm.") if ".norm3." in key else key
    return key


def ltx_single_file(pipe, path: Path, version: str = "0.9.1") -> Path:
    """Write `pipe`'s transformer and VAE as one original-layout LTX `.safetensors`; verify that diffusers'
    own converter maps it back onto the same state dicts."""
    from diffusers.loaders.single_file_utils import (
        convert_ltx_transformer_checkpoint_to_diffusers,
        convert_ltx_vae_checkpoint_to_diffusers,
    )
    from safetensors.torch import save_file

    renames = {
        "proj_in": "patchify_proj",
        "time_embed": "adaln_single",
        "norm_q": "q_norm",
        "norm_k": "k_norm",
    }
    state = {}
    transformer = pipe.transformer.state_dict()
    for key, value in transformer.items():
        original = key
        for new, old in renames.items():
            original = original.replace(new, old)
        state[f"model.diffusion_model.{original}"] = value.contiguous()
    vae = pipe.vae.state_dict()
    for key, value in vae.items():
        state[f"vae.{_inverse_vae_key(key, version)}"] = value.contiguous()
    back_t = convert_ltx_transformer_checkpoint_to_diffusers(dict(state))
    back_v = convert_ltx_vae_checkpoint_to_diffusers(dict(state))
    assert set(back_t) == set(transformer), sorted(set(back_t) ^ set(transformer))[:5]
    assert set(back_v) == set(vae), sorted(set(back_v) ^ set(vae))[:5]
    save_file(state, str(path))
    return path


# --- memory: live-tensor peaks on CPU, full-size pipelines on the meta device -----------------------


class LiveTensorPeak:
    """Peak bytes of the tensor storages that ops create while active: what a GPU caching allocator would
    have to hold (kernel-internal workspaces, e.g. CPU im2col buffers, are not counted)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._track(out)
                return out

        self._mode = _Mode()
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.now = self.peak = 0

    def _track(self, out) -> None:
        import weakref

        from torch.utils._pytree import tree_flatten

        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:
                continue
            if key not in self._refs:
                self._refs[key] = 0
                self._sizes[key] = storage.nbytes()
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self._refs[key] += 1
            weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if not self._refs[key]:
            del self._refs[key]
            self.now -= self._sizes.pop(key)

    def __enter__(self):
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


# T5-v1.1-xxl's encoder (google/t5-v1_1-xxl config.json): 4.76 B parameters.
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32)  # fmt: skip


def ltx_meta_pipeline(version: str = "0.9.1", dtype: torch.dtype = torch.bfloat16):
    """Full-size LTX-Video (published configs, T5-xxl) on the meta device: sizes without allocating."""
    from accelerate import init_empty_weights
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    from reneg_video.models.standins import t5_tokenizer

    with init_empty_weights():
        pipe = LTXPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=AutoencoderKLLTXVideo(**published_config(version, "vae")),
            text_encoder=T5EncoderModel(T5Config(**T5_XXL)),
            tokenizer=t5_tokenizer(),
            transformer=LTXVideoTransformer3DModel(**published_config(version, "transformer")),
        )
    for name in ("vae", "text_encoder", "transformer"):
        getattr(pipe, name).to(dtype)
    return pipe
