"""Stage 3, `t2i`: a UNet2DConditionModel (v-prediction, SD's noise schedule, caption dropout so CFG works,
and in world v2 a contrastive term on the shape word) with an EMA copy that is the one shipped; and the
StableDiffusionPipeline a build's stages make.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import world as W
from .common import (
    EMA_DECAY,
    BuildConfig,
    count_params,
    diffusion_loss,
    drop_captions,
    encode_text,
    load_vae,
    step_rng,
    text_encoder_from_clip,
    to_tensor,
    train_loop,
    training_batch,
    training_scheduler,
    write_stage,
)

# The swapped shape word of the contrastive term: each shape to another, so every caption has one.
OTHER_SHAPE = {"circle": "square", "square": "triangle", "triangle": "circle"}


def wrong_shape(caption: str) -> str:
    """`caption` with its shape word swapped (OTHER_SHAPE); a dropped caption ("") stays ""."""
    for shape, other in OTHER_SHAPE.items():
        if f" {shape}" in caption:
            return caption.replace(f" {shape}", f" {other}", 1)
    return caption


def train_t2i(out: Path, cfg: BuildConfig) -> None:
    import copy

    from diffusers import UNet2DConditionModel

    torch.manual_seed(cfg.seed + 2)
    text_encoder, tokenizer = text_encoder_from_clip(out / "clip")
    vae = load_vae(out)
    sf = vae.config.scaling_factor
    unet = UNet2DConditionModel(**W.UNET2D)
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = training_scheduler()
    s = cfg.t2i

    def step_fn(step: int) -> torch.Tensor:
        rng = step_rng(cfg.seed, "t2i", step)
        frames, captions = training_batch(rng, s.batch, video=False)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            latents = vae.encode(to_tensor(frames[:, 0])).latent_dist.sample(gen) * sf
            kept = drop_captions(captions, rng)
            context = encode_text(text_encoder, tokenizer, kept)
            contrast = None
            if cfg.shape_contrast:
                wrong = encode_text(text_encoder, tokenizer, [wrong_shape(c) for c in kept])
                captioned = torch.tensor([c != "" for c in kept], dtype=torch.float32)
                contrast = (wrong, captioned, cfg.shape_contrast)
        return diffusion_loss(unet, scheduler, latents, context, gen, contrast=contrast)

    losses = train_loop(
        "t2i", out, cfg, s, {"unet": unet, "ema": ema}, list(unet.parameters()), step_fn, (unet, ema)
    )
    write_stage(
        out,
        "t2i",
        lambda tmp: ema.save_pretrained(tmp / "unet"),
        {
            "losses": losses,
            "params": count_params(unet),
            "steps": s.steps,
            "ema_decay": EMA_DECAY,
            "shape_contrast": cfg.shape_contrast,
        },
    )


def image_pipeline(out: Path):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    text_encoder, tokenizer = text_encoder_from_clip(out / "clip")
    return StableDiffusionPipeline(
        vae=load_vae(out),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel.from_pretrained(out / "t2i" / "unet"),
        scheduler=DDIMScheduler(**W.SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
