"""VideoCrafter2 text-to-video sampling with lvdm's semantics, as a diffusers pipeline.

What lvdm's `scripts/evaluation/inference.py` + `DDIMSampler` (lvdm/models/samplers/ddim.py) do, with
`configs/inference_t2v_512_v2.0.yaml` and `scripts/run_text2video.sh`:
  - text: OpenCLIP ViT-H/14 penultimate layer + final layer norm ([B,77,1024]); the unconditional
    branch is encode("") (`uncond_type: empty_seq`), here replaceable by `negative_prompt_embeds`;
  - DDIM over 1000 "linear" (sqrt-space) betas 0.00085-0.012, steps range(0, 1000, 1000 // S) + 1,
    eta 1.0, CFG `uncond + g * (cond - uncond)` with g = 12, fps 28;
  - lvdm's latent rescaling (`use_scale`, ddpm3d.py): pred_x0 is divided by scale(t) and re-scaled by
    scale(t_prev), scale(t) = linspace(scale_a, scale_b, mid_step)[t] for t < mid_step, else scale_b;
  - decode each frame with the SD VAE after dividing the latents by 0.18215.

Shape legend: B prompts, N videos per prompt, F frames, H x W pixels, h x w latents (H/8 x W/8),
T tokens (77), D text width (1024).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from ...core.encoders import CLIP_TOKENS
from ...core.errors import EncoderMismatchError, UsageError
from .convert import SCALE_A, SCALE_B, SCALE_MID_STEP, USE_SCALE, scheduler_config
from .unet import VideoCrafter2UNet

# scripts/run_text2video.sh (base_512_v2): --height 320 --width 512 --ddim_steps 50 --ddim_eta 1.0
# --unconditional_guidance_scale 12.0 --fps 28; frames = the model's temporal_length, 16.
DEFAULT_HEIGHT = 320
DEFAULT_WIDTH = 512
DEFAULT_FRAMES = 16
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 12.0
DEFAULT_ETA = 1.0
DEFAULT_FPS = 28


def videocrafter2_scheduler() -> DDIMScheduler:
    """A DDIMScheduler configured as VideoCrafter2's sampler, with lvdm's `use_scale` keys recorded."""
    return DDIMScheduler.from_config(scheduler_config())


@dataclass
class VideoCrafter2PipelineOutput(BaseOutput):
    """`frames`: np [B*N, F, H, W, 3] in [0, 1], torch [B*N, F, 3, H, W], PIL lists, or latents."""

    frames: np.ndarray | torch.Tensor | list


class VideoCrafter2Pipeline(DiffusionPipeline):
    """Text-to-video with VideoCrafter2 (lvdm sampling semantics; see the module docstring).

    Components: `vae` (AutoencoderKL), `text_encoder` (CLIPTextModel whose last layer is OpenCLIP
    ViT-H/14's penultimate one, as in SD2.x/ZeroScope), `tokenizer` (CLIPTokenizer), `unet`
    (VideoCrafter2UNet), `scheduler` (DDIMScheduler; its config may carry lvdm's `use_scale`,
    `scale_a`, `scale_b`, `scale_mid_step`, else VideoCrafter2's values are used).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: VideoCrafter2UNet,
        scheduler: DDIMScheduler,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
        )
        if text_encoder is not None and unet is not None:
            width, expected = text_encoder.config.hidden_size, unet.config.context_dim
            if width != expected:
                raise EncoderMismatchError(
                    f"VideoCrafter2Pipeline: text encoder width {width} does not match the UNet's cross-attention "
                    f"width {expected}; use the OpenCLIP ViT-H/14 text encoder of SD2.1 or ZeroScope v2"
                )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.video_processor = VideoProcessor(do_resize=False, vae_scale_factor=self.vae_scale_factor)

    # ---- text ---------------------------------------------------------------------------------
    def _encode_text(self, texts: list[str], device: torch.device) -> torch.Tensor:
        """[len(texts), 77, D]: the text encoder's last hidden state (after its final layer norm)."""
        ids = self.tokenizer(
            texts, padding="max_length", max_length=CLIP_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids
        return self.text_encoder(ids.to(device))[0]

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        device: torch.device,
        num_videos_per_prompt: int,
        do_classifier_free_guidance: bool,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return `(prompt_embeds, negative_prompt_embeds)`, each [B*N, 77, D] (negative None without CFG).

        Like diffusers' TextToVideoSDPipeline: given embeddings ([B, 77, D]) are used as they are and,
        like encoded ones, repeated per video (`num_videos_per_prompt`); without `negative_prompt_embeds`
        the negative branch encodes `negative_prompt`, or "" as lvdm does.
        """
        if prompt_embeds is None:
            texts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = self._encode_text(texts, device)
        batch = prompt_embeds.shape[0]
        dtype = self.text_encoder.dtype if self.text_encoder is not None else self.unet.dtype
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype).repeat_interleave(
            num_videos_per_prompt, dim=0
        )
        if not do_classifier_free_guidance:
            return prompt_embeds, None
        if negative_prompt_embeds is None:
            if negative_prompt is None:
                negatives = [""] * batch
            elif isinstance(negative_prompt, str):
                negatives = [negative_prompt] * batch
            else:
                negatives = list(negative_prompt)
            negative_prompt_embeds = self._encode_text(negatives, device)
        negative_prompt_embeds = negative_prompt_embeds.to(device=device, dtype=dtype)
        return prompt_embeds, negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)

    # ---- checks -------------------------------------------------------------------------------
    def check_inputs(
        self,
        prompt: str | list[str] | None,
        height: int,
        width: int,
        num_frames: int,
        num_inference_steps: int,
        negative_prompt: str | list[str] | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
    ) -> None:
        """Refuse bad arguments once, before any work, with one-line messages."""
        factor = self.vae_scale_factor * 2 ** (len(self.unet.config.channel_mult) - 1)
        if height % factor or width % factor or height <= 0 or width <= 0:
            raise UsageError(
                f"VideoCrafter2Pipeline: size {height}x{width} must be positive multiples of {factor}"
            )
        if num_frames < 1:
            raise UsageError(f"VideoCrafter2Pipeline: num_frames={num_frames}; pass at least 1")
        if not 1 <= num_inference_steps <= self.scheduler.config.num_train_timesteps:
            raise UsageError(
                f"VideoCrafter2Pipeline: num_inference_steps={num_inference_steps}; pass 1 to "
                f"{self.scheduler.config.num_train_timesteps}"
            )
        if (prompt is None) == (prompt_embeds is None):
            raise UsageError("VideoCrafter2Pipeline: pass exactly one of prompt and prompt_embeds")
        if prompt is not None and not (
            isinstance(prompt, str) or (isinstance(prompt, list) and all(isinstance(p, str) for p in prompt))
        ):
            raise UsageError(
                f"VideoCrafter2Pipeline: prompt must be a str or a list of str, got {type(prompt)}"
            )
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise UsageError(
                "VideoCrafter2Pipeline: pass negative_prompt or negative_prompt_embeds, not both"
            )
        batch = (
            1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        )
        if isinstance(negative_prompt, list) and len(negative_prompt) != batch:
            raise UsageError(
                f"VideoCrafter2Pipeline: {len(negative_prompt)} negative prompts for {batch} prompts"
            )
        width_d = self.unet.config.context_dim
        for name, emb in (
            ("prompt_embeds", prompt_embeds),
            ("negative_prompt_embeds", negative_prompt_embeds),
        ):
            if emb is None:
                continue
            if emb.ndim != 3 or emb.shape[1] != CLIP_TOKENS:
                raise UsageError(
                    f"VideoCrafter2Pipeline: {name} shape {list(emb.shape)} is not [B,{CLIP_TOKENS},{width_d}]"
                )
            if emb.shape[2] != width_d:
                raise EncoderMismatchError(
                    f"VideoCrafter2Pipeline: {name} width {emb.shape[2]} does not match the UNet's cross-attention "
                    f"width {width_d} (OpenCLIP ViT-H/14); use an embedding learned in that space"
                )
            if emb.shape[0] != batch:
                raise UsageError(
                    f"VideoCrafter2Pipeline: {name} has batch {emb.shape[0]} for {batch} prompts; "
                    f"expand it to [{batch},{CLIP_TOKENS},{width_d}]"
                )

    # ---- sampling -----------------------------------------------------------------------------
    def _scale(self, t: int) -> float:
        """lvdm's scale_arr[t] (ddpm3d.py LatentDiffusion): a linear ramp to scale_b, then flat."""
        cfg = self.scheduler.config
        a, b = cfg.get("scale_a", SCALE_A), cfg.get("scale_b", SCALE_B)
        mid = cfg.get("scale_mid_step", SCALE_MID_STEP)
        return float(np.linspace(a, b, mid)[t]) if t < mid else float(b)

    def ddim_step(
        self,
        latents: torch.Tensor,
        eps: torch.Tensor,
        t: int,
        prev: int | None,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of lvdm's `p_sample_ddim` from timestep `t` to `prev` -> (x_prev, pred_x0).

        `prev` None is the last step, which goes to alphas_cumprod[0]. Under `use_scale` pred_x0 is divided
        by scale(t), so it is in the data scale the VAE decodes, and x_prev re-scales it by scale(prev).
        `noise` (N(0, 1), the latents' shape) is added times sigma; sigma is 0 at eta 0. Differentiable in
        `latents` and `eps` (the trainer's gradient step runs through it).
        """
        alphas = self.scheduler.alphas_cumprod.double()
        a_t = float(alphas[t])
        a_prev = float(alphas[prev]) if prev is not None else float(alphas[0])
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
        pred_x0 = (latents - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        direction = (1.0 - a_prev - sigma**2) ** 0.5 * eps
        noise = 0.0 if noise is None else sigma * noise
        if self.scheduler.config.get("use_scale", USE_SCALE):
            scale_prev = self._scale(prev) if prev is not None else self._scale(0)
            pred_x0 = pred_x0 / self._scale(t)
            return a_prev**0.5 * scale_prev * pred_x0 + direction + noise, pred_x0
        return a_prev**0.5 * pred_x0 + direction + noise, pred_x0

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 4, F, h, w] latents -> [B, 3, F, H, W] video in [-1, 1], one frame at a time as lvdm does."""
        latents = latents / self.vae.config.scaling_factor
        frames = [self.vae.decode(latents[:, :, i]).sample for i in range(latents.shape[2])]
        return torch.stack(frames, dim=2).float()

    def prepare_latents(
        self, shape: tuple[int, ...], generator, device: torch.device, latents: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The initial noise [B, C, F, h, w]: drawn from `generator`, or `latents` checked against `shape`."""
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise UsageError(
                f"VideoCrafter2Pipeline: latents shape {list(latents.shape)}; expected {list(shape)}"
            )
        return latents.to(device=device, dtype=self.unet.dtype)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int = DEFAULT_HEIGHT,
        width: int = DEFAULT_WIDTH,
        num_frames: int = DEFAULT_FRAMES,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE,
        negative_prompt: str | list[str] | None = None,
        eta: float = DEFAULT_ETA,
        fps: int = DEFAULT_FPS,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict] | None = None,
    ) -> VideoCrafter2PipelineOutput | tuple:
        """Generate videos. `output_type`: "np", "pt", "pil" or "latent". Defaults are lvdm's T2V script's.

        CFG runs when `guidance_scale > 1` (lvdm skips the unconditional pass at exactly 1).
        `callback_on_step_end(pipe, i, t, {"latents": ...})` may return {"latents": ...} to replace them.
        """
        self.check_inputs(
            prompt,
            height,
            width,
            num_frames,
            num_inference_steps,
            negative_prompt,
            prompt_embeds,
            negative_prompt_embeds,
        )
        device = self._execution_device
        cfg = guidance_scale > 1.0
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_videos_per_prompt, cfg, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        context = torch.cat([negative_prompt_embeds, prompt_embeds]) if cfg else prompt_embeds
        videos = prompt_embeds.shape[0]

        latent_h, latent_w = height // self.vae_scale_factor, width // self.vae_scale_factor
        shape = (videos, self.unet.config.in_channels, num_frames, latent_h, latent_w)
        latents = self.prepare_latents(shape, generator, device, latents)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = [int(t) for t in self.scheduler.timesteps]
        fps_per_video = torch.full((videos,), fps, device=device, dtype=torch.long)
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                model_in = torch.cat([latents] * 2) if cfg else latents
                rate = torch.cat([fps_per_video] * 2) if cfg else fps_per_video
                eps = self.unet(model_in, t, context, fps=rate).sample
                if cfg:
                    uncond, cond = eps.chunk(2)
                    eps = uncond + guidance_scale * (cond - uncond)
                prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
                # lvdm draws the step's noise at every step, also at eta 0 (the generator advances alike).
                noise = randn_tensor(shape, generator=generator, device=device, dtype=latents.dtype)
                latents, _ = self.ddim_step(latents, eps, t, prev, eta, noise)
                if callback_on_step_end is not None:
                    update = callback_on_step_end(self, i, t, {"latents": latents}) or {}
                    latents = update.get("latents", latents)
                progress.update()

        if output_type == "latent":
            frames = latents
        else:
            video = self.decode_latents(latents.to(self.vae.dtype))
            frames = self.video_processor.postprocess_video(video=video, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return VideoCrafter2PipelineOutput(frames=frames)
