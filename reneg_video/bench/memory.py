"""Memory rows: VAE decode per preset, and the trainer's truncated backprop vs the whole chain."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .harness import MIB, Row, alternate, median_of, peak_cuda, peak_rss, run_child

# --- child arms (run in a fresh process) -------------------------------------------------------------------


def sd_vae(sample_size: int = 512):
    """The SD VAE architecture (AutoencoderKL, 83.7 M params) with seeded random weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sample_size,
    ).eval()


def arm_vae_decode(params: dict[str, Any]) -> dict[str, Any]:
    from ..core.memory import configure_vae

    vae = sd_vae()
    settings = configure_vae(vae, params["preset"])
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(
        params["frames"],
        vae.config.latent_channels,
        params["height"] // factor,
        params["width"] // factor,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.inference_mode(), peak_rss() as peak:
        start = time.perf_counter()
        vae.decode(latents)
        seconds = time.perf_counter() - start
    return {"peak_bytes": peak["bytes"], "method": peak["method"], "seconds": seconds, "settings": settings}


class Brightness:
    """A tiny differentiable reward for the trainer row: mean brightness of each frame (no model)."""

    name = "brightness"

    def score_frames(self, frames: torch.Tensor, prompt: str) -> torch.Tensor:
        return frames.mean(dim=(1, 2, 3))


def reduced_sd_folder(cache: Path, width: int) -> Path:
    """A StableDiffusionPipeline folder: tiny-sd21's text encoder and VAE, an SD2.1-architecture UNet at
    reduced width (block_out_channels width x (1, 2, 4, 4), 2 layers per block, 32-dim heads)."""
    folder = cache / f"bench-sd-reduced-{width}-v1"
    if (folder / "model_index.json").exists():
        return folder
    from diffusers import UNet2DConditionModel

    from ..core.atomic import atomic_dir
    from ..models.pipeline import load_pipeline

    pipe = load_pipeline("tiny-sd21", device="cpu")
    torch.manual_seed(0)
    channels = tuple(width * m for m in (1, 2, 4, 4))
    pipe.unet = UNet2DConditionModel(
        sample_size=32,
        block_out_channels=channels,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024,
        attention_head_dim=tuple(c // 32 for c in channels),  # diffusers' name for the head COUNT
        use_linear_projection=True,  # SD2.x
        upcast_attention=True,  # SD2.1
    )
    pipe.register_modules(unet=pipe.unet)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder


def _trainer(params: dict[str, Any], checkpointing: bool):
    from ..training.config import TrainConfig
    from ..training.trainer import Trainer

    tmp = Path(params["tmp"])
    prompts = tmp / "prompts.txt"
    config = TrainConfig(
        model=params["folder"],
        prompts_file=str(prompts),
        out=str(tmp / f"run-{os.getpid()}"),
        val_prompts=0,
        steps=1,
        batch_size=1,
        sampling_steps=params["sampling_steps"],
        grad_step_min=0,
        grad_step_max=0,  # the last step takes the gradient: both arms compute the same x0
        height=params["size"],
        width=params["size"],
        gradient_checkpointing=checkpointing,
        checkpoint_every=0,
        cpu=not params.get("cuda", False),
    )
    return Trainer(config, reward=Brightness())


def full_chain_loss(trainer) -> torch.Tensor:
    """The baseline: the same sampling chain with gradient through EVERY step (no truncation), the same x0
    prediction at the last step, decode and loss. Bench-only: the trainer itself never does this."""
    from ..training.trainer import REFL_MARGIN

    bb = trainer.backbone
    indices = trainer.sample_indices(0, 0)
    prompts = [trainer._prompt_for(i) for i in indices]
    pos, pos_mask = bb.encode(prompts)
    latents = bb.noise(indices, trainer.config.seed)
    neg = trainer.model()
    timesteps = bb.scheduler.timesteps
    for t in timesteps[:-1]:
        latents = bb.step(bb.guided(latents, t, neg, None, pos, pos_mask), t, latents).prev_sample
    t = timesteps[-1]
    x0 = bb.step(bb.guided(latents, t, neg, None, pos, pos_mask), t, latents).pred_original_sample
    frames = bb.decode(x0, [bb.frame_indices(i, trainer.config.seed) for i in indices])
    rewards = torch.stack(
        [trainer.reward.score_frames(f, p).mean() for f, p in zip(frames, prompts, strict=True)]
    )
    return torch.relu(REFL_MARGIN - rewards).mean()


def arm_trainer(params: dict[str, Any]) -> dict[str, Any]:
    truncated = params["way"] == "truncated"
    trainer = _trainer(params, checkpointing=truncated)
    cuda = params.get("cuda", False)
    meter = peak_cuda(trainer.backbone.device) if cuda else peak_rss()
    with meter as peak:
        start = time.perf_counter()
        if truncated:
            grad_index = trainer.grad_step_index(0)
            loss, _ = trainer.loss_and_reward(trainer.sample_indices(0, 0), grad_index)
        else:
            loss = full_chain_loss(trainer)
        trainer.accelerator.backward(loss)
        grad = trainer.accelerator.unwrap_model(trainer.model).embedding.grad
        seconds = time.perf_counter() - start
    return {
        "peak_bytes": peak["bytes"],
        "method": peak["method"],
        "seconds": seconds,
        "loss": float(loss),
        "grad_norm": float(grad.norm()),
    }


ARMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "vae_decode": arm_vae_decode,
    "trainer": arm_trainer,
}


def row_vae_decode(quick: bool, all_presets: bool) -> tuple[Row, dict[str, dict[str, float]]]:
    """SD VAE decode of 8 frames 256x256: preset low vs off; with `all_presets` (--plot) also the others."""
    # 2 repeats: one decode of 8 frames takes 1-4 min on the shared 2 cores; its peak varies by ~10 %.
    frames, size, repeats = (2, 64, 1) if quick else (8, 256, 2)
    params = {"frames": frames, "height": size, "width": size}
    arms = {p: (lambda p=p: run_child("vae_decode", {**params, "preset": p})) for p in ("low", "off")}
    results = alternate(arms, repeats)
    # The other presets, once each, for the per-preset plot (each decode of 8 frames takes ~0.5 min here).
    plot_only = ("balanced", "minimal") if all_presets else ()
    results.update(
        alternate({p: (lambda p=p: run_child("vae_decode", {**params, "preset": p})) for p in plot_only}, 1)
    )
    presets = ("off", "balanced", "low", "minimal") if plot_only else ("off", "low")
    per_preset = {
        p: {
            "peak_mib": median_of(results[p], "peak_bytes") / MIB,
            "seconds": median_of(results[p], "seconds"),
        }
        for p in presets
    }
    row = Row(
        "vae_decode_peak_memory",
        per_preset["low"]["peak_mib"],
        per_preset["off"]["peak_mib"],
        "MiB",
        goal=0.5,
        note=f"SD VAE architecture, random weights, {frames} frames {size}x{size}, low (slicing+tiling) vs off; "
        f"fresh process per arm, {results['low'][0]['method']}, median of {repeats}"
        f"{' (balanced and minimal once each, for the plot)' if plot_only else ''}; tiling engages only "
        "above 512 px (64 latents), so at this size low decodes like balanced",
        samples={p: [r["peak_bytes"] / MIB for r in results[p]] for p in presets},
        extra={"presets": per_preset, "seconds": {p: v["seconds"] for p, v in per_preset.items()}},
    )
    return row, per_preset


def row_trainer(quick: bool, cache: Path) -> Row:
    """One training step: truncated backprop + checkpointing (Trainer) vs backprop through the whole chain."""
    width, size, steps, repeats = (32, 64, 3, 1) if quick else (64, 256, 10, 2)
    folder = reduced_sd_folder(cache, width)
    with tempfile.TemporaryDirectory(prefix="reneg-bench-") as tmp:
        (Path(tmp) / "prompts.txt").write_text("a corgi surfing a wave\n")
        params = {"folder": str(folder), "tmp": tmp, "size": size, "sampling_steps": steps}
        arms = {
            way: (lambda way=way: run_child("trainer", {**params, "way": way}))
            for way in ("truncated", "full")
        }
        results = alternate(arms, repeats)
    return Row(
        "trainer_peak_memory",
        median_of(results["truncated"], "peak_bytes") / MIB,
        median_of(results["full"], "peak_bytes") / MIB,
        "MiB",
        goal=0.5,
        note=f"SD2.1-architecture UNet at width {width} (x1,2,4,4), {size} px, {steps} DDIM steps, batch 1, "
        "reward = mean brightness (a bench stand-in); Trainer.loss_and_reward with gradient checkpointing vs "
        f"backprop through all steps; fresh process per arm, {results['full'][0]['method']}, "
        f"median of {repeats}",
        samples={k: [r["peak_bytes"] / MIB for r in v] for k, v in results.items()},
        extra={
            "seconds": {k: median_of(v, "seconds") for k, v in results.items()},
            "grad_norm": {k: v[0]["grad_norm"] for k, v in results.items()},
        },
    )
