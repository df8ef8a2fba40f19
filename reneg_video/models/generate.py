"""Step 5 of a call: a model's settings with the user's overrides, and one seeded pipeline call.

Settings are checked against the model's spec (its rules, in `core.specs`) before any model is loaded.
Seeds drive a CPU generator, so the same seed gives the same initial noise on any device.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

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


# MochiPipeline's `threshold_noise` (pipeline_mochi.py, from genmo's infer.py): the sigma drop of the
# schedule's linear part.
MOCHI_THRESHOLD_NOISE = 0.025


def _copes_with_one_step(schedule) -> bool:
    try:
        schedule(1, MOCHI_THRESHOLD_NOISE)
    except ZeroDivisionError:
        return False
    return True


@contextmanager
def _one_step_sigmas(pipe, steps: int):
    """Lets MochiPipeline (diffusers 0.42.1) run 1 step. Its `__call__` always computes
    `linear_quadratic_schedule(num_inference_steps, 0.025)` (pipeline_mochi.py, "5. Prepare timestep"),
    whose `quadratic_coef = ... / (linear_steps * quadratic_steps**2)` divides by zero at one step
    (linear_steps = 1 // 2 = 0); passing `timesteps` does not avoid it (the sigmas are computed anyway and
    `retrieve_timesteps` then refuses both). For one step only, the module's function is replaced during the
    call by one returning [1.0]: the schedule's first sigma at any step count, and what diffusers' own copy
    of this function for LTX returns below 2 steps (pipeline_ltx_condition.py: `if num_steps < 2: return
    torch.tensor([1.0])`). Decided by calling the function, not by the pipeline's name: where it handles one
    step itself (a later diffusers), nothing is replaced; at 2+ steps nothing ever is."""
    module = sys.modules.get(type(pipe).__module__)
    original = getattr(module, "linear_quadratic_schedule", None)
    if steps != 1 or original is None or _copes_with_one_step(original):
        yield
        return

    def one_step_safe(num_steps, threshold_noise, linear_steps=None):
        if num_steps == 1:
            return [1.0]
        return original(num_steps, threshold_noise, linear_steps)

    module.linear_quadratic_schedule = one_step_safe
    try:
        yield
    finally:
        module.linear_quadratic_schedule = original


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
    with _one_step_sigmas(pipe, settings.steps):
        out = pipe(**kwargs)
    frames = out.frames[0] if spec.kind == "video" else out.images
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    return np.asarray(frames, dtype=np.float32)
