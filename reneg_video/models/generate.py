"""Step 5 of a call: a model's settings with the user's overrides, and one seeded pipeline call.

Settings are checked against the model's spec (its rules, in `core.specs`) before any model is loaded.
Seeds drive a CPU generator, so the same seed gives the same initial noise on any device.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import UsageError
from ..core.settings import Settings
from ..core.specs import AdapterSpec, validate_settings


def settings_for(spec: AdapterSpec, *, seed: int = 0, **overrides) -> Settings:
    """The spec's defaults with the non-None overrides applied, validated."""
    d = spec.defaults
    values = {
        "frames": d.frames,
        "height": d.height,
        "width": d.width,
        "steps": d.steps,
        "guidance": d.guidance,
        "fps": d.fps,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(seed=seed, **values)
    validate_settings(spec, settings)
    return settings


# diffusers' pipelines run the negative branch only when `guidance_scale > 1` (`do_classifier_free_guidance`):
# at or below it a negative embedding or prompt is silently unused.
CFG_MIN_GUIDANCE = 1.0


def require_cfg(settings: Settings, option: str) -> None:
    """Refuse a negative (`option`: --neg, --negative-prompt) that the requested guidance would never use."""
    if settings.guidance <= CFG_MIN_GUIDANCE:
        raise UsageError(
            f"{option} with --guidance {settings.guidance:g}: classifier-free guidance is off at guidance <= 1 "
            f"(as in LTX's distilled models), so the negative branch never runs; pass --guidance above 1 or "
            f"leave {option} out"
        )


def generate(
    pipe,
    spec: AdapterSpec,
    prompt: str,
    settings: Settings,
    negative_prompt: str | None = None,
    latents: torch.Tensor | None = None,
) -> np.ndarray:
    """One video (or image) as float frames [F, H, W, 3] in [0, 1]. `latents` replaces the seeded noise."""
    kwargs = dict(
        prompt=prompt,
        height=settings.height,
        width=settings.width,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        generator=torch.Generator("cpu").manual_seed(settings.seed),
        output_type="np",
        # What this loaded model needs (models.pipeline.call_settings), then the spec's own arguments.
        **{**getattr(pipe, "reneg_call", {}), **spec.call_kwargs},
    )
    if spec.kind == "video":
        kwargs[spec.frames_arg] = settings.frames
    if spec.fps_arg:
        kwargs[spec.fps_arg] = settings.fps
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if latents is not None:
        kwargs["latents"] = latents.to(pipe.device)
    out = pipe(**kwargs)
    frames = out.frames[0] if spec.kind == "video" else out.images
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    return np.asarray(frames, dtype=np.float32)
