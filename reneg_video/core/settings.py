"""Generation settings: what one pipeline call is asked for (checked against a spec by `specs.validate_settings`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Settings:
    frames: int
    height: int
    width: int
    steps: int
    guidance: float
    seed: int
    fps: int

    def as_dict(self) -> dict:
        return asdict(self)
