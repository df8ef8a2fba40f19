"""Generation settings: what one pipeline call is asked for (checked against a spec by `specs.validate_settings`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import UsageError

# The smallest float above 1: the scale set for a schedule's guidance-1 steps. It keeps diffusers' per-step
# `guidance_scale > 1` test true, so the [negative, positive] batch built at the start stays consistent
# (setting 1.0 would unbatch the latents but not the prompt embeddings), while the combine
# `uncond + g * (text - uncond)` in float32/bfloat16 rounds g to exactly 1.0: the conditional prediction,
# what the reference computes at guidance 1. The negative branch still runs at those steps (its cost is not
# saved, unlike in the reference pipeline, which drops it there).
UNIT_GUIDANCE = math.nextafter(1.0, math.inf)


@dataclass(frozen=True)
class GuidanceSchedule:
    """Classifier-free guidance scale per denoising step, chosen by the step's timestep.

    The reading of Lightricks' LTX-Video reference pipeline (`guidance_timesteps` with `guidance_scale`
    lists, `ltx_video/pipelines/pipeline_ltx_video.py`): a step at timestep t (in [0, 1]: the diffusers
    timestep over the scheduler's `num_train_timesteps`) takes the scale of the FIRST threshold <= t,
    and the last scale when t lies below every threshold. `timesteps` descend strictly; both tuples have
    the same length (checked once, in `specs.parse_spec`)."""

    timesteps: tuple[float, ...]
    scales: tuple[float, ...]

    def scale_at(self, timestep: float) -> float:
        for threshold, scale in zip(self.timesteps, self.scales, strict=True):
            if threshold <= timestep:
                return scale
        return self.scales[-1]

    def describe(self) -> str:
        """One line for logs: `t>=1:1 t>=0.996:1 ...`."""
        return " ".join(f"t>={t:g}:{s:g}" for t, s in zip(self.timesteps, self.scales, strict=True))


# Defaults of the reference implementation (github.com/ChenDarYen/Normalized-Attention-Guidance):
NAG_SCALE = 5.0  # README: nag_scale=5.0 in its Flux and SD3.5 examples
NAG_TAU = 2.5  # pipeline defaults, pipeline_flux_nag.py / transformer_wan_nag.py: nag_tau=2.5
NAG_ALPHA = 0.25  # same files: nag_alpha=0.25


@dataclass(frozen=True)
class NagParams:
    """NAG's extrapolation scale, its L1-ratio cap tau and its blend alpha (module docstring)."""

    scale: float = NAG_SCALE
    tau: float = NAG_TAU
    alpha: float = NAG_ALPHA

    def __post_init__(self) -> None:
        # Refused where the values are set, not in the middle of a render.
        for name, value, ok, expected in (
            ("scale", self.scale, self.scale >= 1, ">= 1 (1: Z = Z+, no guidance)"),
            ("tau", self.tau, self.tau > 0, "> 0 (the cap on ||Zt||_1 / ||Z+||_1)"),
            ("alpha", self.alpha, 0 <= self.alpha <= 1, "in [0, 1] (the weight of the guided output)"),
        ):
            if not math.isfinite(value) or not ok:
                raise UsageError(f"NAG {name} {value}: expected a finite number {expected}")


@dataclass(frozen=True)
class Settings:
    frames: int
    height: int
    width: int
    steps: int
    guidance: float  # the scale of every step, unless guidance_schedule is set
    seed: int
    fps: int
    # The spec's per-step scales, in force unless the user passed --guidance (`generate.settings_for`).
    guidance_schedule: GuidanceSchedule | None = None
    # How the two CFG branches combine (`core.guidance.RULES`; "cfg": the pipeline's own combine).
    guidance_rule: str = "cfg"
    # Normalized Attention Guidance at guidance 1 (`core.nag`): the negative enters the cross-attention.
    nag: NagParams | None = None

    def as_dict(self) -> dict:
        return asdict(self)
