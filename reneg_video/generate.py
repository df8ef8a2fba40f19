"""Step 5 of a call: generation settings, their validation, and one seeded pipeline call.

Settings are checked against the model's spec (frame rule, size multiple) before any model is loaded.
Seeds drive a CPU generator, so the same seed gives the same initial noise on any device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import UsageError
from .specs import AdapterSpec


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


def validate_settings(spec: AdapterSpec, s: Settings) -> None:
    if s.frames <= 0:
        raise UsageError(
            f"--frames {s.frames}: expected a positive frame count (default {spec.defaults.frames})"
        )
    if spec.kind == "image" and s.frames != 1:
        raise UsageError(f"--frames {s.frames}: {spec.name} is an image model; expected 1")
    if not spec.frames_ok(s.frames):
        step = spec.rules.frame_step
        near = (s.frames // step) * step + spec.rules.frame_offset
        raise UsageError(
            f"--frames {s.frames}: {spec.name} needs {spec.frames_rule()} frames (its VAE compresses time "
            f"by {step}); try --frames {near}"
        )
    m = spec.rules.size_multiple
    for name, value in (("height", s.height), ("width", s.width)):
        if value <= 0 or value % m:
            fixed = max(m, round(value / m) * m)
            raise UsageError(
                f"--{name} {value}: {spec.name} needs a positive multiple of {m}; try --{name} {fixed}"
            )
    if s.steps <= 0:
        raise UsageError(f"--steps {s.steps}: expected a positive number of denoising steps")
    if not math.isfinite(s.guidance) or s.guidance < 0:
        raise UsageError(f"--guidance {s.guidance}: expected a finite number >= 0 (CFG runs only above 1)")
    if s.fps <= 0:
        raise UsageError(f"--fps {s.fps}: expected a positive frame rate")
    if s.seed < 0:
        raise UsageError(f"--seed {s.seed}: expected a non-negative integer")


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
        **spec.call_kwargs,
    )
    if spec.kind == "video":
        kwargs["num_frames"] = settings.frames
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
