"""Generation settings: what one pipeline call is asked for (checked against a spec by `specs.validate_settings`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .nag import NagParams


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
