"""Stage 4, `t2v`: a UNet3DConditionModel whose spatial layers start from the t2i EMA weights (temporal output
projections zeroed, so it starts as the image model applied per frame), trained on 8-frame clips.

Shape legend: B clips, F frames, C latent channels, h x w latent size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from .. import world as W
from .common import (
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


def video_unet_from_image(image_unet) -> tuple[torch.nn.Module, dict]:
    """A UNet3DConditionModel with every spatial weight of `image_unet`; temporal layers start as the
    identity (output projections zeroed), so at step 0 it is the image model applied per frame."""
    from diffusers import UNet3DConditionModel

    unet = UNet3DConditionModel(**W.UNET3D)
    image_state = image_unet.state_dict()
    state = unet.state_dict()
    carried = [k for k, v in image_state.items() if k in state and state[k].shape == v.shape]
    unet.load_state_dict({**state, **{k: image_state[k] for k in carried}})
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith(("temp_attentions.0.proj_out", "temp_attentions.1.proj_out")) or (
                name == "transformer_in.proj_out"
            ):
                module.weight.zero_()
                module.bias.zero_()
    return unet, {"carried": len(carried), "image_keys": len(image_state), "video_keys": len(state)}


@torch.no_grad()
def video_inputs(
    rng: np.random.Generator,
    batch: int,
    vae,
    text_encoder,
    tokenizer,
    directions: tuple[str, ...] = W.DIRECTIONS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """One training batch of clips: latents [B, C, F, h, w], text states (captions dropped at
    CAPTION_DROPOUT) and the generator that draws the batch's noise and timesteps."""
    frames, captions = training_batch(rng, batch, video=True, directions=directions)  # [B, F, H, W, 3]
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    x = to_tensor(rearrange(frames, "b f h w c -> (b f) h w c"))
    latents = vae.encode(x).latent_dist.sample(gen) * vae.config.scaling_factor
    latents = rearrange(latents, "(b f) c h w -> b c f h w", b=batch)
    context = encode_text(text_encoder, tokenizer, drop_captions(captions, rng))
    return latents, context, gen


def train_t2v(out: Path, cfg: BuildConfig) -> None:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(cfg.seed + 3)
    text_encoder, tokenizer = text_encoder_from_clip(out / "clip")
    vae = load_vae(out)
    unet, carried = video_unet_from_image(UNet2DConditionModel.from_pretrained(out / "t2i" / "unet"))
    scheduler = training_scheduler()
    s = cfg.t2v

    def step_fn(step: int) -> torch.Tensor:
        rng = step_rng(cfg.seed, "t2v", step)
        latents, context, gen = video_inputs(rng, s.batch, vae, text_encoder, tokenizer)
        return diffusion_loss(unet, scheduler, latents, context, gen)

    losses = train_loop("t2v", out, cfg, s, {"unet": unet}, list(unet.parameters()), step_fn)
    write_stage(
        out,
        "t2v",
        lambda tmp: unet.save_pretrained(tmp / "unet"),
        {"losses": losses, "params": count_params(unet), "steps": s.steps, **carried},
    )


# Motion stage: its clips come from the t2v stage's data stream past the steps that stage drew (as in the
