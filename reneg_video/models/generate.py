"""Step 5 of a call: a model's settings with the user's overrides, and one seeded pipeline call.

Settings are checked against the model's spec (its rules, in `core.specs`) before any model is loaded.
Seeds drive a CPU generator, so the same seed gives the same initial noise on any device. A spec's
per-step guidance schedule is applied through diffusers' `callback_on_step_end`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from contextlib import contextmanager

import numpy as np
import torch

from ..core.errors import SpecError, UsageError
from ..core.guidance import check_rule, guidance_rule
from ..core.settings import UNIT_GUIDANCE, GuidanceSchedule, Settings
from ..core.specs import AdapterSpec, validate_settings

log = logging.getLogger(__name__)


def settings_for(spec: AdapterSpec, *, seed: int = 0, **overrides) -> Settings:
    """The spec's defaults with the non-None overrides applied, validated. The spec's guidance schedule
    is in force unless `guidance` is given: a user's scale is used at every step."""
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
    schedule = spec.guidance_schedule if overrides.get("guidance") is None else None
    settings = Settings(seed=seed, guidance_schedule=schedule, **values)
    validate_settings(spec, settings)
    check_rule(settings.guidance_rule, spec, settings.guidance, scheduled=schedule is not None)
    if settings.nag is not None:
        check_nag_settings(spec, settings)
    return settings


def check_nag_settings(spec: AdapterSpec, settings: Settings) -> None:
    """NAG guides inside the one conditional pass of guidance 1; CFG's negative branch is another mechanism."""
    from ..core.nag import check_nag

    check_nag(spec)
    if settings.guidance_schedule is not None or settings.guidance > CFG_MIN_GUIDANCE:
        shown = (
            "its guidance schedule"
            if settings.guidance_schedule is not None
            else f"--guidance {settings.guidance:g}"
        )
        raise UsageError(
            f"--nag with {shown}: NAG puts the negative into the attention of the single pass run at guidance 1; "
            "pass --guidance 1 (or leave --nag out for classifier-free guidance)"
        )
    if settings.guidance_rule != "cfg":
        raise UsageError(
            f"--nag with --guidance-rule {settings.guidance_rule}: a rule combines two CFG branches, NAG runs one; "
            "use one of them"
        )


# diffusers' pipelines run the negative branch only when `guidance_scale > 1` (`do_classifier_free_guidance`):
# at or below it a negative embedding or prompt is silently unused.
CFG_MIN_GUIDANCE = 1.0


def require_cfg(settings: Settings, option: str) -> None:
    """Refuse a negative (`option`: --neg, --negative-prompt) that the requested guidance would never use.
    A guidance schedule guides somewhere by construction (`specs._parse_schedule`)."""
    if settings.guidance_schedule is None and settings.guidance <= CFG_MIN_GUIDANCE:
        raise UsageError(
            f"{option} with --guidance {settings.guidance:g}: classifier-free guidance is off at guidance <= 1 "
            f"(as in LTX's distilled models), so the negative branch never runs; pass --guidance above 1 or "
            f"leave {option} out"
        )


def _batched_scale(scale: float) -> float:
    return max(scale, UNIT_GUIDANCE)


def timestep_fraction(pipe, timestep) -> float:
    """A diffusers timestep as the [0, 1] value a guidance schedule's thresholds are written in."""
    return float(timestep) / pipe.scheduler.config.num_train_timesteps


class ScheduledGuidance:
    """`callback_on_step_end` that sets `pipe._guidance_scale` for the next step from a GuidanceSchedule.

    diffusers' CFG pipelines (LTXConditionPipeline and others) read `self.guidance_scale` anew at every
    step's combine; the callback runs after step i's scheduler step, when `scheduler.step_index` already
    points at step i + 1. `used` records (step, timestep fraction, scale the combine used) per step."""

    def __init__(self, schedule: GuidanceSchedule) -> None:
        self.schedule = schedule
        self.used: list[tuple[int, float, float]] = []

    def first_scale(self) -> float:
        # A full-strength flow-matching run starts from pure noise, timestep fraction 1.0 (sigma_max = 1).
        return _batched_scale(self.schedule.scale_at(1.0))

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        used = float(pipe._guidance_scale)
        used = 1.0 if used == UNIT_GUIDANCE else used  # what the float32 combine multiplied by
        self.used.append((step, timestep_fraction(pipe, timestep), used))
        index = getattr(pipe.scheduler, "step_index", None)
        timesteps = pipe.scheduler.timesteps
        if index is not None and index < len(timesteps):
            scale = self.schedule.scale_at(timestep_fraction(pipe, timesteps[index]))
            pipe._guidance_scale = _batched_scale(scale)
        return {}  # nothing replaced: the pipeline keeps its own latents and embeddings


def _schedule_callback(pipe, spec: AdapterSpec, schedule: GuidanceSchedule) -> ScheduledGuidance:
    accepted = inspect.signature(type(pipe).__call__).parameters
    if "callback_on_step_end" not in accepted or not hasattr(type(pipe.scheduler), "step_index"):
        raise SpecError(
            f"{spec.source}: [guidance_schedule] needs a pipeline taking callback_on_step_end and a scheduler "
            f"with step_index; {type(pipe).__name__} with {type(pipe.scheduler).__name__} has not both: "
            "remove the schedule"
        )
    return ScheduledGuidance(schedule)


def guidance_call_settings(settings: Settings, pipe=None) -> dict:
    """The per-step guidance in force, for the effective call settings (`--json` "call_settings"):
    {"guidance_schedule": {timesteps, scales, per_step}} (per_step: what the last call used), or {} where
    one scale serves every step."""
    schedule = settings.guidance_schedule
    if schedule is None:
        return {}
    record: dict = {"timesteps": list(schedule.timesteps), "scales": list(schedule.scales)}
    used = getattr(pipe, "reneg_guidance_used", None)
    if used:
        record["per_step"] = [scale for _, _, scale in used]
    return {"guidance_schedule": record}


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


def _nag(pipe, spec: AdapterSpec, settings: Settings, negative_prompt: str | None):
    """NAG's negative: the attached embedding, else the negative prompt, else the empty prompt (null)."""
    from ..core.nag import nag_attention, negative_context

    neg = getattr(pipe, "reneg_negative", None)
    context, mask = negative_context(pipe, spec, neg, None if neg is not None else negative_prompt)
    return nag_attention(pipe, context, mask, settings.nag)


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
    if negative_prompt and settings.nag is None:
        kwargs["negative_prompt"] = negative_prompt
    if latents is not None:
        kwargs["latents"] = latents.to(pipe.device)
    scheduled = None
    if settings.guidance_schedule is not None:
        scheduled = _schedule_callback(pipe, spec, settings.guidance_schedule)
        kwargs["guidance_scale"] = scheduled.first_scale()
        kwargs["callback_on_step_end"] = scheduled
    with contextlib.ExitStack() as stack:
        stack.enter_context(_one_step_sigmas(pipe, settings.steps))
        rule = stack.enter_context(
            guidance_rule(pipe, settings.guidance_rule, settings.guidance, settings.steps)
        )
        if settings.nag is not None:
            stack.enter_context(_nag(pipe, spec, settings, negative_prompt))
        out = pipe(**kwargs)
    pipe.reneg_rule_scales = rule.scales
    # What the combine used at each step: [(step, timestep fraction, scale)], or None at a constant scale.
    pipe.reneg_guidance_used = scheduled.used if scheduled is not None else None
    if scheduled is not None:
        log.info("guidance per step: %s", " ".join(f"{g:g}" for _, _, g in scheduled.used))
    frames = out.frames[0] if spec.kind == "video" else out.images
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    return np.asarray(frames, dtype=np.float32)
