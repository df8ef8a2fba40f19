"""The programmatic judge of the shapes world: does a picture or video show what its prompt asks?

It plays the human raters of the paper: non-differentiable, never used to train an embedding, only to
evaluate (reward hacking shows up as reward up, judge flat). numpy only.

Per frame it reads the background (median of the border), the shape (pixels far from the background),
the shape's colour (median of those pixels), its type (how much of its bounding box it fills), and its
crispness (share of pixels that are one of the two clean colours); across frames the direction of the
shape's centroid. Each check the prompt asks for scores 0 or 1; accuracy is their mean.

Shape legend: F frames, H x W pixels; frames uint8 [F, H, W, 3] or float [F, H, W, 3] in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Attributes, parse_caption
from .world import COLOURS

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.asarray([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)  # [6, 3]
# A pixel belongs to the shape when it is this far (RGB distance, [0,1] units) from the background;
# half the smallest distance between two palette colours (green-blue 0.99, ... black-blue 1.02) is ~0.5.
FOREGROUND_DISTANCE = 0.35
# A shape is present when it covers at least this many pixels (the smallest drawn shape covers ~70).
MIN_AREA = 20
# Fill of the bounding box: square ~1.0, circle ~pi/4 = 0.79, triangle ~0.5 (antialiased, at 32 px).
SQUARE_FILL = 0.88
TRIANGLE_FILL = 0.64
# Crisp: at least this share of pixels within CLEAN_DISTANCE of the background or the shape colour
# (measured on 200 clean frames: min 0.947, median 0.971; blurred: median 0.891, max 0.943).
CLEAN_DISTANCE = 0.2
CRISP_SHARE = 0.93
# Motion: the centroid must travel at least this many pixels between the first and last frame, mostly
# along the asked axis.
MIN_TRAVEL = 3.0

CHECKS = ("present", "shape", "colour", "background", "motion", "crisp")


@dataclass(frozen=True)
class FrameReading:
    background: str
    present: bool
    colour: str | None
    shape: str | None
    crisp: bool
    centroid: tuple[float, float] | None  # (x, y) in pixels


def as_float(frames: np.ndarray) -> np.ndarray:
    """Frames as float32 [F, H, W, 3] in [0, 1], from uint8 or float [F, H, W, 3] or one [H, W, 3] image."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames of shape {frames.shape}; expected [F, H, W, 3] (or one [H, W, 3] image)")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return np.clip(frames.astype(np.float32), 0.0, 1.0)


def nearest_colour(rgb: np.ndarray) -> str:
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE - rgb, axis=-1)))]


def shape_mask(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background's RGB (median of the border) and the shape's pixels (bool [H, W]) of one float
    frame [H, W, 3]: what every per-frame check reads."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    bg_rgb = np.median(border, axis=0)
    return bg_rgb, np.linalg.norm(frame - bg_rgb, axis=-1) > FOREGROUND_DISTANCE


def read_frame(frame: np.ndarray) -> FrameReading:
    """What one float frame [H, W, 3] shows."""
    bg_rgb, mask = shape_mask(frame)
    background = nearest_colour(bg_rgb)
    area = int(mask.sum())
    clean_bg = np.linalg.norm(frame - _PALETTE[_PALETTE_NAMES.index(background)], axis=-1) < CLEAN_DISTANCE
    if area < MIN_AREA:
        return FrameReading(background, False, None, None, float(clean_bg.mean()) >= CRISP_SHARE, None)
    fg_rgb = np.median(frame[mask], axis=0)
    colour = nearest_colour(fg_rgb)
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = area / box
    shape = "square" if fill >= SQUARE_FILL else "triangle" if fill < TRIANGLE_FILL else "circle"
    clean_fg = np.linalg.norm(frame - _PALETTE[_PALETTE_NAMES.index(colour)], axis=-1) < CLEAN_DISTANCE
    crisp = float((clean_bg | clean_fg).mean()) >= CRISP_SHARE
    return FrameReading(background, True, colour, shape, crisp, (float(xs.mean()), float(ys.mean())))


def direction_of(readings: list[FrameReading]) -> str | None:
    """left/right/up/down from the first and last frames where the shape is seen, None if it stays."""
    points = [r.centroid for r in readings if r.centroid is not None]
    if len(points) < 2:
        return None
    dx, dy = points[-1][0] - points[0][0], points[-1][1] - points[0][1]
    if max(abs(dx), abs(dy)) < MIN_TRAVEL:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def judge(frames: np.ndarray, prompt: str | Attributes) -> dict[str, float]:
    """Score frames against a prompt: one entry per check asked for (1.0 pass / 0.0 fail, or the share
    of frames passing for per-frame checks), plus `accuracy` (their mean) and `passed` (all pass).

    Per-frame checks (present, shape, colour, background, crisp) count the share of frames that pass;
    motion (videos whose prompt says "moving ...") is one check over the whole clip."""
    wanted = parse_caption(prompt) if isinstance(prompt, str) else prompt
    if wanted is None:
        raise ValueError(f"prompt {prompt!r} names no shape/colour/background the judge can check")
    frames = as_float(frames)
    readings = [read_frame(f) for f in frames]
    out = {
        "present": float(np.mean([r.present for r in readings])),
        "shape": float(np.mean([r.shape == wanted.shape for r in readings])),
        "colour": float(np.mean([r.colour == wanted.colour for r in readings])),
        "background": float(np.mean([r.background == wanted.background for r in readings])),
        "crisp": float(np.mean([r.crisp for r in readings])),
    }
    if wanted.direction and len(readings) > 1:
        out["motion"] = float(direction_of(readings) == wanted.direction)
    out["accuracy"] = float(np.mean([out[k] for k in CHECKS if k in out]))
    out["passed"] = float(all(out[k] == 1.0 for k in CHECKS if k in out))
    return out


def judge_many(videos: list[np.ndarray] | np.ndarray, prompts: list[str]) -> dict[str, float]:
    """Mean of every check over many samples (checks a prompt does not ask for are left out of it)."""
    rows = [judge(v, p) for v, p in zip(videos, prompts, strict=True)]
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys} | {"n": float(len(rows))}
