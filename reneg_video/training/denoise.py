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

    # --gradient-checkpointing recomputes the denoiser's activations; a denoiser without it is refused.
    gradient_checkpointing = True

    def __init__(self, pipe, spec, config: TrainConfig, device: torch.device) -> None:
        from diffusers import DDIMScheduler

        check_trainable(spec)
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

    def decode_noise(self, indices: list[int], seed: int) -> torch.Tensor | None:
        """Noise the VAE decode mixes in, one row per global sample index; None where the decode has none."""
        return None

    def decode(
        self, latents: torch.Tensor, frames: list[list[int]], noise: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Decode x0 latents to per-sample frames [F', 3, H, W] in [0, 1] (differentiable). `noise`: what
        `decode_noise` drew for these samples (decoders without decode noise ignore it)."""
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


# --- backbones of video models with their own latent layouts and samplers ---------------------------------


class _Step:
    """What `Backbone.step` returns: the next latents and the one-step x0 prediction."""

    def __init__(self, prev_sample: torch.Tensor, pred_original_sample: torch.Tensor) -> None:
        self.prev_sample, self.pred_original_sample = prev_sample, pred_original_sample


def _cfg(out: torch.Tensor, guidance: float) -> torch.Tensor:
    uncond, cond = out.float().chunk(2)
    return uncond + guidance * (cond - uncond)


def _freeze(backbone, config: TrainConfig) -> None:
    pipe = backbone.pipe
    for module in (pipe.vae, pipe.text_encoder, backbone.denoiser):
        module.requires_grad_(False)
        module.eval()
    if config.gradient_checkpointing:
        backbone.denoiser.enable_gradient_checkpointing()


def _sizes(backbone, spec, config: TrainConfig) -> None:
    d = spec.defaults
    backbone.guidance = d.guidance if config.guidance is None else config.guidance
    backbone.height = config.height or d.height
    backbone.width = config.width or d.width
    backbone.frames = config.frames or d.frames
    backbone.frame_select = config.frame_select
    backbone.video = True


def _pick_frames(video: torch.Tensor, frames: list[list[int]]) -> list[torch.Tensor]:
    """[B, 3, F, H, W] in [-1, 1] -> per sample [F', 3, H, W] in [0, 1]: a 3-D VAE decodes whole videos
    (its time axis is compressed), so the reward's frame subset is picked after decoding."""
    video = (video.float() / 2 + 0.5).clamp(0, 1)
    return [rearrange(video[i, :, idx], "c f h w -> f c h w") for i, idx in enumerate(frames)]


class AnimateDiffBackbone(Backbone):
    """AnimateDiff: an SD1.5 UNet with motion modules, epsilon prediction, sampled with DDIM (its own
    examples' scheduler). Its UNet takes the text context once per frame, as AnimateDiffPipeline
    repeats it; the SD VAE decodes frame by frame, so only the reward's frames are decoded."""

    def guided(self, latents, t, neg, neg_mask, pos, pos_mask) -> torch.Tensor:
        b = latents.shape[0]
        context = torch.cat([neg.expand(b, -1, -1).to(pos.dtype), pos])
        context = context.repeat_interleave(self.frames, dim=0)  # [(2B F), T, D]
        model_in = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        return _cfg(self.denoiser(model_in, t, encoder_hidden_states=context).sample, self.guidance)


# Sample-index key of the LTX decode noise (any constant other than the initial noise's and frame choice's).
DECODE_NOISE_KEY = 41


class LTXBackbone(Backbone):
    """LTX-Video (LTXPipeline): rectified flow. The transformer predicts a velocity v on packed latent
    tokens; a step of the pipeline's own sampler (flow-match Euler, sigmas 1 .. 1/N with LTX's
    resolution-dependent shift) is x_next = x + (sigma_next - sigma) v, and the one-step x0 prediction
    is x - sigma v. DDIM does not apply to a flow model, so the trainer runs this sampler; the gradient
    step is still one of the last `grad_step_max` steps. Decoding: denormalised latents through the
    causal 3-D VAE (whole video). A timestep-conditioned VAE (0.9.1+) decodes as the pipeline is called
    (`models.pipeline.call_settings`: decode_timestep 0.05, and decode_noise_scale 0.025 of noise mixed
    into the latents, drawn per global sample index so that every process and a resumed run draw it alike)."""

    def __init__(self, pipe, spec, config: TrainConfig, device: torch.device) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        from ..models.pipeline import call_settings

        self.pipe, self.spec, self.device = pipe, spec, device
        self.denoiser = pipe.transformer
        _sizes(self, spec, config)
        s, ts = pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio
        self.latent_thw = ((self.frames - 1) // ts + 1, self.height // s, self.width // s)
        self.latent_shape = (self.denoiser.config.in_channels, *self.latent_thw)
        # LTXPipeline passes (temporal ratio / frame rate, spatial, spatial) to its rotary positions.
        self.rope_scale = (ts / spec.defaults.fps, s, s)
        self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        self.sigma_pairs = self._set_schedule(config.sampling_steps)
        # {} for an unconditioned VAE (0.9.0); else decode_timestep and decode_noise_scale.
        self.decode_call = call_settings(pipe)
        _freeze(self, config)

    def _set_schedule(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Set the scheduler's N timesteps; return (sigma, sigma_next) of each step."""
        import numpy as np

        sigmas = np.linspace(1.0, 1.0 / n, n)
        mu = None
        if self.scheduler.config.get("use_dynamic_shifting"):
            from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

            c = self.scheduler.config
            tokens = int(np.prod(self.latent_thw))
            mu = calculate_shift(tokens, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
        self.scheduler.set_timesteps(sigmas=sigmas, mu=mu, device=self.device)
        sig = self.scheduler.sigmas
        return [(sig[i], sig[i + 1]) for i in range(n)]

    def _positions(self, batch: int) -> dict:
        """The transformer's rotary-position arguments for `batch` videos."""
        f, h, w = self.latent_thw
        return {"num_frames": f, "height": h, "width": w, "rope_interpolation_scale": self.rope_scale}

    def _timestep(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        return t.expand(batch)

    def seed_noise(self, seed: int) -> torch.Tensor:
        g = torch.Generator("cpu").manual_seed(seed)  # what the pipeline draws first from a seeded generator
        return torch.randn((1, *self.latent_shape), generator=g).to(self.device)

    def noise(self, indices: list[int], seed: int) -> torch.Tensor:
        rows = [torch.randn(self.latent_shape, generator=generator_for(seed, i)) for i in indices]
        return torch.stack(rows).to(self.device)  # flow matching starts from unit noise (sigma 1)

    def guided(self, latents, t, neg, neg_mask, pos, pos_mask) -> torch.Tensor:
        pipe, b = self.pipe, latents.shape[0]
        p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
        context = torch.cat([neg.expand(b, -1, -1).to(pos.dtype), pos])
        mask = torch.cat([neg_mask.expand(b, -1), pos_mask]).to(self.device)
        packed = pipe._pack_latents(torch.cat([latents, latents]), p, pt)
        velocity = self.denoiser(
            hidden_states=packed,
            encoder_hidden_states=context,
            timestep=self._timestep(t, 2 * b),
            encoder_attention_mask=mask,
            return_dict=False,
            **self._positions(2 * b),
        )[0]
        return _cfg(pipe._unpack_latents(velocity, *self.latent_thw, p, pt), self.guidance)

    def step(self, noise_pred, t, latents):
        i = int((self.scheduler.timesteps == t).nonzero()[0])
        sigma, sigma_next = self.sigma_pairs[i]
        return _Step(latents + (sigma_next - sigma) * noise_pred, latents - sigma * noise_pred)

    def decode_noise(self, indices: list[int], seed: int) -> torch.Tensor | None:
        if not self.decode_call.get("decode_noise_scale"):
            return None
        rows = [
            torch.randn(self.latent_shape, generator=generator_for(seed, i, DECODE_NOISE_KEY))
            for i in indices
        ]
        return torch.stack(rows).to(self.device)

    def decode(
        self, latents: torch.Tensor, frames: list[list[int]], noise: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        vae = self.pipe.vae
        z = self.pipe._denormalize_latents(
            latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor
        )
        temb = None
        if self.decode_call:
            # As the pipeline decodes (after denormalising): (1 - scale) z + scale noise at decode_timestep.
            # Without `noise` (a caller that drew none) z is decoded as it is.
            temb = torch.full(
                (z.shape[0],), self.decode_call["decode_timestep"], device=z.device, dtype=z.dtype
            )
            scale = self.decode_call.get("decode_noise_scale")
            if noise is not None and scale:
                z = (1 - scale) * z + scale * noise.to(z)
        return _pick_frames(vae.decode(z.to(vae.dtype), temb, return_dict=False)[0], frames)


class LTXConditionBackbone(LTXBackbone):
    """LTX-Video 0.9.5+ and 13B (LTXConditionPipeline, text to video: no conditioning frames). Rectified
    flow as `LTXBackbone`, with what this pipeline does differently:
    - sampler: the pipeline's own flow-match Euler on LTX's linear-quadratic schedule
      (`linear_quadratic_schedule`: sigma falls linearly by 0.025 over the first half of the steps, then
      quadratically to 0), taken as the pipeline takes it: timesteps 1000 sigma as given, and its
      per-token step from sigma = t / 1000 to the largest scheduler sigma below it. The trainer runs this
      sampler, not DDIM (no flow model has a DDIM chain) and not LTXPipeline's linear one, so the chain it
      trains on is the chain `reneg-video` samples;
    - positions: the pipeline's video coordinates (the latent grid times (8, 32, 32), the time axis moved by
      1 - 8 for the causal first frame and clamped at 0, then divided by the frame rate), not LTXPipeline's
      rope interpolation scale; the timestep goes in per token, [2B, 1];
    - text: T5 at 256 tokens with its mask (the spec's), which `encode` already passes on.
    The timestep-conditioned decode (decode_timestep, decode_noise_scale) is `LTXBackbone`'s."""

    def _set_schedule(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        import numpy as np
        from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule

        c = self.scheduler.config
        if c.get("use_dynamic_shifting"):
            # LTXConditionPipeline passes no shift (mu): diffusers refuses such a scheduler there too.
            raise UsageError(
                f"--model {self.spec.name}: its scheduler config sets use_dynamic_shifting, which "
                "LTXConditionPipeline cannot sample with (it passes no shift); use the release's scheduler config"
            )
        # What the pipeline's retrieve_timesteps(timesteps=...) makes of them: sigmas = timesteps / 1000,
        # shifted by the scheduler (shift, shift_terminal); the timesteps stay as given.
        timesteps = (linear_quadratic_schedule(n) * 1000).numpy().astype(np.float32)
        self.scheduler.set_timesteps(
            sigmas=timesteps / c.num_train_timesteps, timesteps=timesteps, device=self.device
        )
        sig = self.scheduler.sigmas
        pairs = []
        for t in self.scheduler.timesteps:
            # FlowMatchEulerDiscreteScheduler.step with per_token_timesteps (the pipeline's call).
            current = t.float() / c.num_train_timesteps
            below = sig[sig < current - 1e-6]
            pairs.append((current, below.max() if len(below) else torch.zeros((), device=sig.device)))
        return pairs

    def _positions(self, batch: int) -> dict:
        pipe = self.pipe
        ids = pipe._prepare_video_ids(
            batch,
            *self.latent_thw,
            patch_size=pipe.transformer_spatial_patch_size,
            patch_size_t=pipe.transformer_temporal_patch_size,
            device=self.device,
        )
        ids = pipe._scale_video_ids(
            ids,
            scale_factor=pipe.vae_spatial_compression_ratio,
            scale_factor_t=pipe.vae_temporal_compression_ratio,
            frame_index=0,
            device=self.device,
        )
        coords = ids.float()
        coords[:, 0] = coords[:, 0] * (1.0 / self.spec.defaults.fps)
        return {"video_coords": coords}

    def _timestep(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        return t.expand(batch).unsqueeze(-1).float()


class CogVideoXBackbone(Backbone):
    """CogVideoX: v-prediction with the pipeline's own CogVideoXDDIMScheduler (not diffusers' DDIM: its
    `snr_shift_scale` rescales the noise schedule the model was trained on; its step is DDIM's, and
    gives x0 in one step). Latents are [B, F', C, h, w]; T5 runs unmasked at 226 tokens and no mask
    reaches the transformer. Guidance is constant (the 5B card's dynamic CFG is a sampling option).
    The 3-D VAE decodes whole videos; the reward's frames are picked after."""

    def __init__(self, pipe, spec, config: TrainConfig, device: torch.device) -> None:
        self.pipe, self.spec, self.device = pipe, spec, device
        self.denoiser = pipe.transformer
        _sizes(self, spec, config)
        s, ts = pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal
        self.latent_fhw = ((self.frames - 1) // ts + 1, self.height // s, self.width // s)
        f, h, w = self.latent_fhw
        self.latent_shape = (f, self.denoiser.config.in_channels, h, w)
        self.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        self.scheduler.set_timesteps(config.sampling_steps, device=device)
        _freeze(self, config)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        embeds, _ = self.pipe.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            device=self.device,
            max_sequence_length=self.spec.tokens,
        )
        return embeds.float(), None

    def guided(self, latents, t, neg, neg_mask, pos, pos_mask) -> torch.Tensor:
        b = latents.shape[0]
        context = torch.cat([neg.expand(b, -1, -1).to(pos.dtype), pos])
        model_in = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        rotary = None
        if self.denoiser.config.use_rotary_positional_embeddings:
            rotary = self.pipe._prepare_rotary_positional_embeddings(
                self.height, self.width, self.latent_fhw[0], self.device
            )
        out = self.denoiser(
            hidden_states=model_in,
            encoder_hidden_states=context,
            timestep=t.expand(2 * b),
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        return _cfg(out, self.guidance)

    def decode(
        self, latents: torch.Tensor, frames: list[list[int]], noise: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        vae = self.pipe.vae
        z = rearrange(latents, "b f c h w -> b c f h w") / vae.config.scaling_factor
        return _pick_frames(vae.decode(z.to(vae.dtype)).sample, frames)


class VideoCrafter2Backbone(Backbone):
    """VideoCrafter2 (our lvdm port, `models.videocrafter2`): epsilon prediction, sampled as its pipeline
    samples, with lvdm's DDIM (`VideoCrafter2Pipeline.ddim_step`: the DDIMScheduler's leading timesteps
    and alphas plus lvdm's `use_scale` latent rescaling, which diffusers' DDIM step would leave out, so x0 is
    predicted in the scale the VAE decodes). At eta 0, where the pipeline's default is lvdm's eta 1: fresh
    noise at every step would make the chain depend on more than the sample's initial noise, and the
    other DDIM backbones step at eta 0 too. The UNet takes latents [B, C, F, h, w], the spec's fps per
    video and the text once per video (it repeats it over the frames itself); CFG in one batched call,
    negative first. The SD VAE decodes frame by frame, so only the reward's frames are decoded."""

    gradient_checkpointing = False  # VideoCrafter2UNet does not implement it

    def __init__(self, pipe, spec, config: TrainConfig, device: torch.device) -> None:
        self.pipe, self.spec, self.device = pipe, spec, device
        self.denoiser = pipe.unet
        _sizes(self, spec, config)
        scale = pipe.vae_scale_factor
        self.latent_hw = (self.height // scale, self.width // scale)
        self.latent_shape = (self.denoiser.config.in_channels, self.frames, *self.latent_hw)
        self.fps = spec.defaults.fps  # lvdm's T2V script passes 28; the UNet is fps-conditioned
        # Timesteps only: the step is the pipeline's own, on the pipeline's scheduler (its alphas and scale keys).
        self.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        self.scheduler.set_timesteps(config.sampling_steps, device=device)
        _freeze(self, config)
        pipe.vae.enable_slicing()  # decode frame by frame: the decode is the memory peak

    def guided(self, latents, t, neg, neg_mask, pos, pos_mask) -> torch.Tensor:
        b = latents.shape[0]
        context = torch.cat([neg.expand(b, -1, -1).to(pos.dtype), pos])
        fps = torch.full((2 * b,), self.fps, device=self.device, dtype=torch.long)
        return _cfg(self.denoiser(torch.cat([latents, latents]), t, context, fps=fps).sample, self.guidance)

    def step(self, noise_pred, t, latents):
        timesteps = self.scheduler.timesteps
        i = int((timesteps == t).nonzero()[0])
        prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        return _Step(*self.pipe.ddim_step(latents, noise_pred, int(t), prev, eta=0.0))


# Pipelines with a backbone of their own (the others use `Backbone`, DDIM on a UNet or PixArt).
VIDEO_BACKBONES: dict[str, type[Backbone]] = {
    "AnimateDiffPipeline": AnimateDiffBackbone,
    "LTXPipeline": LTXBackbone,
    "LTXConditionPipeline": LTXConditionBackbone,
    "CogVideoXPipeline": CogVideoXBackbone,
    "reneg_video.models.videocrafter2.pipeline:VideoCrafter2Pipeline": VideoCrafter2Backbone,
}
# Per-sample refinement passes its latents back into the diffusers pipeline, which only these take as
# the trainer holds them (LTX packs its latents, CogVideoX orders them frames-first).
REFINABLE_PIPELINES = TRAINABLE_PIPELINES
TRAINABLE_PIPELINES = TRAINABLE_PIPELINES + tuple(VIDEO_BACKBONES)


def trainable_models() -> list[str]:
    """Names of the known models (not stand-ins) with a negative branch and a pipeline the trainer has a
    backbone for."""
    from ..core.specs import registry

    return sorted(
        {
            s.name
            for s in registry().values()
            if s.pipeline in TRAINABLE_PIPELINES and s.negative_branch and not s.standin
        }
    )


def check_trainable(spec) -> None:
    """Refuse a model whose pipeline has no backbone, naming the models that have one."""
    if spec.pipeline not in TRAINABLE_PIPELINES:
        raise UsageError(
            f"--model {spec.name}: training on {spec.pipeline} is not supported; trainable are "
            f"{', '.join(trainable_models())} and the tiny-* stand-ins"
        )
    if not spec.negative_branch:
        # ReNeg learns what the negative branch of CFG receives; a guidance-distilled model runs none.
        raise UsageError(
            f"--model {spec.name}: it has no negative branch (guidance-distilled, runs at guidance 1), so there "
            "is nothing for a negative embedding to learn on; train on its non-distilled model"
        )


def backbone_class(spec) -> type[Backbone]:
    """The backbone class for this model's pipeline (after `check_trainable`)."""
    return VIDEO_BACKBONES.get(spec.pipeline, Backbone)


def make_backbone(pipe, spec, config: TrainConfig, device: torch.device) -> Backbone:
    """The backbone for this pipeline: its own sampler and latent layout where it has one."""
    check_trainable(spec)
    return backbone_class(spec)(pipe, spec, config, device)
