"""The differentiable denoise-and-decode path the trainer and per-sample refinement share.

`Backbone` wraps a frozen pipeline: prompt encoding, one classifier-free-guided denoiser call with the
negative branch on a given embedding, a DDIM step, and a differentiable VAE decode of x0 latents.

Shape legend: B samples, C latent channels, F frames, h/w latent size, T tokens, D width.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..core.errors import UsageError
from .config import TrainConfig

TRAINABLE_PIPELINES = ("StableDiffusionPipeline", "TextToVideoSDPipeline", "PixArtAlphaPipeline")


class NegativeParameter(nn.Module):
    """The only trainable tensor. A module so that DDP can all-reduce its gradient."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.embedding = nn.Parameter(init.detach().clone().float())

    def forward(self) -> torch.Tensor:
        return self.embedding


def generator_for(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (seed, sample index, ...)."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63)
    return torch.Generator("cpu").manual_seed(seed)


def draw_grad_step(seed: int, step: int, low: int, high: int) -> int:
    """k in [low, high]: how many steps before the end of the chain step `step` takes its gradient.

    Drawn from (seed, step) alone, so every process (and a resumed run) draws the same k.
    """
    return int(torch.randint(low, high + 1, (1,), generator=generator_for(seed, 31, step)))


class Backbone:
    """The frozen model seen by the trainer: prompt encoding, one CFG denoiser call, decoding."""

    def __init__(self, pipe, spec, config: TrainConfig, device: torch.device) -> None:
        from diffusers import DDIMScheduler

        if spec.pipeline not in TRAINABLE_PIPELINES:
            raise UsageError(
                f"--model {spec.name}: training on {spec.pipeline} is not supported yet; expected a model using "
                f"{', '.join(TRAINABLE_PIPELINES)} (train LTX-Video's T5 space on pixart-alpha and transfer)"
            )
        self.pipe, self.spec, self.device = pipe, spec, device
        self.video = spec.kind == "video"
        self.denoiser = pipe.unet if hasattr(pipe, "unet") and pipe.unet is not None else pipe.transformer
        # Every trainable model samples in latent space: DDIM's default clip_sample=True (what from_config
        # keeps over a config without the key, e.g. PixArt-alpha's DPMSolverMultistep) would clamp x0
        # latents to the pixel range [-1, 1].
        self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
        self.scheduler.set_timesteps(config.sampling_steps, device=device)
        defaults = spec.defaults
        self.guidance = defaults.guidance if config.guidance is None else config.guidance
        self.height = config.height or defaults.height
        self.width = config.width or defaults.width
        self.frames = (config.frames or defaults.frames) if self.video else 1
        self.frame_select = config.frame_select
        scale = pipe.vae_scale_factor
        if self.height % scale or self.width % scale:
            raise UsageError(f"--height/--width {self.height}x{self.width}: expected multiples of {scale}")
        self.latent_hw = (self.height // scale, self.width // scale)
        channels = self.denoiser.config.in_channels
        self.latent_shape = (
            (channels, self.frames, *self.latent_hw) if self.video else (channels, *self.latent_hw)
        )
        for module in (pipe.vae, pipe.text_encoder, self.denoiser):
            module.requires_grad_(False)
            module.eval()
        if config.gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()
            pipe.vae.enable_gradient_checkpointing()
        if self.video:
            pipe.vae.enable_slicing()  # decode frame by frame: the decode is the memory peak

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Positive prompt embeddings [B, T, D] and mask [B, T] (masked families) or None."""
        if self.spec.mask:
            embeds, mask, _, _ = self.pipe.encode_prompt(
                prompts,
                do_classifier_free_guidance=False,
                device=self.device,
                max_sequence_length=self.spec.tokens,
            )
            return embeds.float(), mask.bool()
        embeds, _ = self.pipe.encode_prompt(prompts, self.device, 1, False)
        return embeds.float(), None

    def null_embedding(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The model's encoding of '' (ReNeg's initialisation). Masked-out rows are made identical, so the
        released bare-tensor format keeps the mask recoverable (as in the PixArt-alpha file)."""
        embeds, mask = self.encode([""])
        embeds = embeds[:1].cpu()
        if mask is None:
            return embeds, None
        mask = mask[:1].cpu()
        kept = int(mask[0].sum())
        if kept < embeds.shape[1]:
            embeds[0, kept:] = embeds[0, kept]
        return embeds, mask

    def seed_noise(self, seed: int) -> torch.Tensor:
        """Initial latents [1, ...] for `seed` as `models.generate` draws them (CPU generator, float32)."""
        g = torch.Generator("cpu").manual_seed(seed)
        return (
            torch.randn((1, *self.latent_shape), generator=g).to(self.device)
            * self.scheduler.init_noise_sigma
        )

    def noise(self, indices: list[int], seed: int) -> torch.Tensor:
        """Initial latents [B, ...], each drawn from its own global sample index."""
        rows = [torch.randn(self.latent_shape, generator=generator_for(seed, i)) for i in indices]
        return torch.stack(rows).to(self.device) * self.scheduler.init_noise_sigma

    def guided(self, latents, t, neg, neg_mask, pos, pos_mask) -> torch.Tensor:
        """CFG noise prediction with the negative branch on `neg` [1, T, D]."""
        b = latents.shape[0]
        context = torch.cat([neg.expand(b, -1, -1).to(pos.dtype), pos])
        model_in = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        if self.spec.mask:
            mask = torch.cat([neg_mask.expand(b, -1), pos_mask]).to(self.device)
            out = self.denoiser(
                model_in,
                encoder_hidden_states=context,
                encoder_attention_mask=mask,
                timestep=t.expand(2 * b),
                added_cond_kwargs={"resolution": None, "aspect_ratio": None},
            ).sample
        else:
            out = self.denoiser(model_in, t, encoder_hidden_states=context).sample
        if out.shape[1] == 2 * latents.shape[1]:  # learned sigma (PixArt-alpha): keep the mean prediction
            out = out[:, : latents.shape[1]]
        uncond, cond = out.float().chunk(2)
        return uncond + self.guidance * (cond - uncond)

    def step(self, noise_pred, t, latents):
        return self.scheduler.step(noise_pred, t, latents)

    def frame_indices(self, sample_index: int, seed: int) -> list[int]:
        f = self.frames
        sel = self.frame_select
        if sel == "all" or f == 1:
            return list(range(f))
        named = {"first": [0], "middle": [f // 2], "last": [f - 1], "first,middle,last": [0, f // 2, f - 1]}
        if sel in named:
            return sorted(set(named[sel]))
        k = min(int(sel.split(":")[1]), f)
        return sorted(torch.randperm(f, generator=generator_for(seed, sample_index, 7))[:k].tolist())

    def decode(self, latents: torch.Tensor, frames: list[list[int]]) -> list[torch.Tensor]:
        """Decode x0 latents to per-sample frames [F', 3, H, W] in [0, 1] (differentiable)."""
        vae = self.pipe.vae
        if self.video:
            picked = torch.stack([latents[i, :, idx] for i, idx in enumerate(frames)])  # [B, C, F', h, w]
            flat = rearrange(picked, "b c f h w -> (b f) c h w")
        else:
            flat = latents
        images = vae.decode(flat.to(vae.dtype) / vae.config.scaling_factor).sample.float()
        images = (images / 2 + 0.5).clamp(0, 1)
        counts = [len(idx) for idx in frames]
        return list(images.split(counts))
