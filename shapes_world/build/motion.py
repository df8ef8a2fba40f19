"""Stage 4b, `motion`: the t2v UNet continued on a direction curriculum with zero terminal SNR, so that it
moves the shape the way the prompt's direction word says (the `t2v` stage alone learns motion, not the word);
and the word-gain diagnostic that measures what a caption's words are worth to a UNet.

Shape legend: B clips, F frames, C latent channels, h x w latent size.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .. import data as shapes_data
from .. import world as W
from .common import (
    BuildConfig,
    StageSteps,
    diffusion_loss,
    encode_text,
    load_vae,
    step_rng,
    text_encoder_from_clip,
    to_tensor,
    train_loop,
    training_scheduler,
    write_stage,
)
from .t2v import video_inputs

MOTION_WARMUP_STEPS = 30


# measured runs of experiments/shapes_motion_curriculum.py, which this stage reproduces).
MOTION_STEP_OFFSET = 70_000
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
# Noise levels of the word-gain diagnostic: where the layout is being decided, and pure noise.
WORD_GAIN_T = (600, 900, 999)


@torch.no_grad()
def direction_word_gain(unet, text_encoder, tokenizer, vae, scheduler, clips: int = 24) -> dict[int, float]:
    """What the direction word is worth to a video UNet: the relative increase (%) of its loss on fixed
    clean clips when the caption names the opposite direction, per t in WORD_GAIN_T (ideal ~17% at high
    t, experiments/shapes_motion_ceiling.py; ~0% for a model that ignores the word)."""
    rng = np.random.default_rng([7, 8])
    samples = [
        shapes_data.make_sample(rng, video=True, degrade_prob=0.0, artefact_prob=0.0) for _ in range(clips)
    ]
    wrong = [
        shapes_data.caption_for(replace(x.attributes, direction=OPPOSITE[x.attributes.direction]))
        for x in samples
    ]
    frames = to_tensor(rearrange(np.stack([x.frames for x in samples]), "b f h w c -> (b f) h w c"))
    latents = vae.encode(frames).latent_dist.mean * vae.config.scaling_factor
    latents = rearrange(latents, "(b f) c h w -> b c f h w", b=clips)
    right = encode_text(text_encoder, tokenizer, [x.caption for x in samples])
    opposite = encode_text(text_encoder, tokenizer, wrong)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    was_training = unet.training
    unet.eval()
    gains = {}
    for t in WORD_GAIN_T:
        tt = torch.full((clips,), t)
        gains[t] = round(caption_loss_gain(unet, scheduler, latents, noise, tt, right, {"": opposite})[""], 2)
    unet.train(was_training)
    return gains


@torch.no_grad()
def caption_loss_gain(
    unet, scheduler, latents, noise, t, right: torch.Tensor, wrong: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Per entry of `wrong`, the relative increase (%) of the UNet's v-prediction loss on `latents`
    (noised with `noise` at timesteps `t`) when the text context is that entry instead of `right`: what
    the words that differ are worth to the model (~0% for words it ignores)."""
    noisy, target = scheduler.add_noise(latents, noise, t), scheduler.get_velocity(latents, noise, t)

    def loss(context: torch.Tensor) -> float:
        return F.mse_loss(unet(noisy, t, encoder_hidden_states=context).sample, target).item()

    base = loss(right)
    return {name: (loss(context) - base) / base * 100 for name, context in wrong.items()}


def spatial_cross_attention(unet) -> list[torch.nn.Parameter]:
    """The UNet3D's text cross-attention parameters (not the temporal or input transformers')."""
    return [
        q
        for n, q in unet.named_parameters()
        if ".attn2." in n and "temp_attentions" not in n and not n.startswith("transformer_in")
    ]


def train_motion(out: Path, cfg: BuildConfig) -> None:
    from diffusers import UNet3DConditionModel

    torch.manual_seed(cfg.seed + 5)
    text_encoder, tokenizer = text_encoder_from_clip(out / "clip")
    vae = load_vae(out)
    unet = UNet3DConditionModel.from_pretrained(out / "t2v" / "unet").train()
    scheduler = training_scheduler(W.VIDEO_SCHEDULER)
    m = cfg.motion
    xattn = spatial_cross_attention(unet)
    ids = {id(q) for q in xattn}
    rest = [q for q in unet.parameters() if id(q) not in ids]
    before = direction_word_gain(unet, text_encoder, tokenizer, vae, scheduler, m.word_gain_clips)
    losses: list[float] = []
    for r, run in enumerate(m.runs):
        bounds = np.cumsum([n for n, _ in run.phases])

        def step_fn(step: int, run=run, bounds=bounds) -> torch.Tensor:
            directions = run.phases[int(np.searchsorted(bounds, step, side="right"))][1]
            rng = step_rng(cfg.seed, "t2v", step + MOTION_STEP_OFFSET)
            latents, context, gen = video_inputs(rng, m.batch, vae, text_encoder, tokenizer, directions)
            return diffusion_loss(unet, scheduler, latents, context, gen, m.high_t_share)

        losses += train_loop(
            f"motion{r + 1}",
            out,
            cfg,
            StageSteps(run.steps, m.batch, m.lr),
            {"unet": unet},
            list(unet.parameters()),
            step_fn,
            lr_mults=[(rest, 1.0), (xattn, run.xattn_lr_mult)],
            schedule_steps=run.schedule_steps,
            warmup=MOTION_WARMUP_STEPS,
        )
    after = direction_word_gain(unet, text_encoder, tokenizer, vae, scheduler, m.word_gain_clips)
    write_stage(
        out,
        "motion",
        lambda tmp: unet.save_pretrained(tmp / "unet"),
        {
            "losses": losses,
            "steps": len(losses),
            "runs": [asdict(run) for run in m.runs],
            "word_gain_before": before,
            "word_gain_after": after,
        },
    )
