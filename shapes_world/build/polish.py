"""Stage 4c, `polish`: the motion stage's t2v trained on all four directions at once, its weights averaged
(EMA) and the average shipped; and the TextToVideoSDPipeline a build's stages make.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import world as W
from .common import (
    EMA_DECAY,
    BuildConfig,
    StageSteps,
    diffusion_loss,
    load_vae,
    step_rng,
    text_encoder_from_clip,
    train_loop,
    training_scheduler,
    write_stage,
)
from .motion import direction_word_gain
from .t2v import video_inputs


def train_polish(out: Path, cfg: BuildConfig) -> None:
    import copy

    from diffusers import UNet3DConditionModel

    torch.manual_seed(cfg.seed + 6)
    text_encoder, tokenizer = text_encoder_from_clip(out / "clip")
    vae = load_vae(out)
    unet = UNet3DConditionModel.from_pretrained(out / "motion" / "unet").train()
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = training_scheduler(W.VIDEO_SCHEDULER)
    p = cfg.polish

    def step_fn(step: int) -> torch.Tensor:
        rng = step_rng(cfg.seed, "polish", step)
        latents, context, gen = video_inputs(rng, p.batch, vae, text_encoder, tokenizer)
        return diffusion_loss(unet, scheduler, latents, context, gen)

    steps = StageSteps(p.steps, p.batch, p.lr)
    losses = train_loop(
        "polish", out, cfg, steps, {"unet": unet, "ema": ema}, list(unet.parameters()), step_fn, (unet, ema)
    )
    gain = direction_word_gain(ema, text_encoder, tokenizer, vae, scheduler, cfg.motion.word_gain_clips)
    write_stage(
        out,
        "polish",
        lambda tmp: ema.save_pretrained(tmp / "unet"),
        {"losses": losses, "steps": p.steps, "ema_decay": EMA_DECAY, "word_gain": gain},
    )


def video_pipeline(out: Path):
    from diffusers import DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel

    text_encoder, tokenizer = text_encoder_from_clip(out / "clip")
    return TextToVideoSDPipeline(
        vae=load_vae(out),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=UNet3DConditionModel.from_pretrained(out / "polish" / "unet"),
        scheduler=DDIMScheduler(**W.VIDEO_SCHEDULER),
    )
