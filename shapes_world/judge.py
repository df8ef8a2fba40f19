"""The programmatic judge of the shapes world: does a picture or video show what its prompt asks?

It plays the human raters of the paper: non-differentiable, never used to train an embedding, only to
evaluate (reward hacking shows up as reward up, judge flat). numpy only.

Per frame it reads the background (median of the border), the shape (pixels far from the background),
the shape's colour (median of those pixels), its type (how much of its bounding box it fills), and its
crispness (share of pixels that are one of the two clean colours); across frames the direction of the
shape's centroid. Each check the prompt asks for scores 0 or 1; accuracy is their mean.

Videos (F > 1) are also checked for the video-only artefacts of the training data (issue 29; shapes_world/
data.py VIDEO_ARTEFACTS): steady (no flicker), smooth (no frozen or stuttered frames, when motion is
asked), unmarked (no static corner watermark), unghosted (no faded copy of the previous frame), and stable
(the shape's type, read per frame, is the same in every frame that shows it). Each is 1.0 or 0.0.

Shape legend: F frames, H x W pixels; frames uint8 [F, H, W, 3] or float [F, H, W, 3] in [0, 1].
"""

from __future__ import annotations

from collections import Counter
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
# Video artefact checks. Thresholds measured on 200 clips per kind (data.render with default_rng(0): each
# of data.py's artefacts alone on otherwise clean clips, and each degradation alone), min / max; the pass
# rates they give are experiments/shapes_judge_table.py's (docs/shapes.md):
# steady: the largest per-channel median over pixels of a frame-to-frame difference (a global brightness or
# colour jump; a moving shape changes too few pixels to move the median). Clean, freeze, watermark,
# ghosting and every degradation but noise: 0 exactly; noise max 0.016; flicker min 0.051.
FLICKER_JUMP = 0.03
# smooth: the smallest frame-to-frame change (mean |difference| less its per-channel median, so flicker
# does not count) over the median of them, when motion is asked and the clip changes at all. Clean min
# 0.80; ghosting min 0.49; jitter min 0.07 (a jittered shape may land where it was); freeze 0 exactly.
STILL_RATIO = 0.2
# Any frame-to-frame change below this (mean |difference|) is no change: the clip is static throughout
# (the motion check's failure, not a stutter). Clean min 0.0054; missing shape 0.
STATIC_CHANGE = 1e-3
# unmarked: in a CORNER_BOX px box inside each corner (the border row/column excluded), a pixel is marked
# when, in every frame where it is more than SHAPE_CLEARANCE px from the shape mask (at least two
# frames), it lies >= MARK_DISTANCE from the background and its values vary (per-channel temporal std) by
# <= MARK_STD; MARK_PIXELS marked pixels in one corner are a watermark. The stamp (data.py: 10-11 px at
# 0.12-0.18 from the background) is marked whole; clean backgrounds lie 0 from it, noise varies by ~0.2.
CORNER_BOX = 10
SHAPE_CLEARANCE = 2
MARK_DISTANCE = 0.06
MARK_STD = 0.02
MARK_PIXELS = 5
# unghosted: the temporal high-frequency ratio, energy of second differences over first differences along
# time (summed over pixels and channels). Ghosting low-passes in time: 200 ghosted clips max 0.945; clean
# min 0.988 (0.898 on 1 of 600 other clean clips, 0.5% below 0.97). Blur lowers it too (motion under
# blur is also a slow ramp in time): blurred clips 0.11-0.55 fail it.
GHOST_RATIO = 0.97
# stable: a second shape type read in at least this many frames is a shape that changes mid-clip. One odd
# frame is forgiven (a misread edge case is the per-frame shape check's business): on 600 clean clips
# (rng 11) a second type was read in 1 frame in 2 clips and in 2 frames in 4 (never more); requiring
# every frame to agree passed 0.975 of the table's 200 clean clips.
STABLE_FRAMES = 2

CHECKS = ("present", "shape", "colour", "background", "motion", "crisp")
VIDEO_CHECKS = ("steady", "smooth", "unmarked", "unghosted", "stable")
CHECKS = (*CHECKS, *VIDEO_CHECKS)


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


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool [H, W] grown by `radius` px (square neighbourhood)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def steady(frames: np.ndarray) -> bool:
    """No global per-frame brightness/colour jump (flicker) in float frames [F, H, W, 3]."""
    diff = np.diff(frames, axis=0).reshape(len(frames) - 1, -1, 3)
    return float(np.abs(np.median(diff, axis=1)).max()) < FLICKER_JUMP


def smooth(frames: np.ndarray) -> bool:
    """No frame repeats the one before while the others change (a freeze or stutter)."""
    diff = np.diff(frames, axis=0).reshape(len(frames) - 1, -1, 3)
    change = np.abs(diff - np.median(diff, axis=1, keepdims=True)).mean(axis=(1, 2))
    if change.max() < STATIC_CHANGE:
        return True  # nothing moves: the motion check's failure, not a stutter
    return float(change.min()) >= STILL_RATIO * float(np.median(change))


def unmarked(frames: np.ndarray) -> bool:
    """No static, faint, non-background pattern in a corner box (a watermark)."""
    f, h, w = frames.shape[:3]
    bg, distance, clear = [], [], []
    for frame in frames:
        bg_rgb, mask = shape_mask(frame)
        bg.append(bg_rgb)
        distance.append(np.linalg.norm(frame - bg_rgb, axis=-1))
        clear.append(~_dilate(mask, SHAPE_CLEARANCE))
    distance, clear = np.stack(distance), np.stack(clear)  # [F, H, W]
    relative = frames - np.stack(bg)[:, None, None]  # [F, H, W, 3], flicker of the whole frame removed
    b = CORNER_BOX
    for ys in (slice(1, 1 + b), slice(h - 1 - b, h - 1)):
        for xs in (slice(1, 1 + b), slice(w - 1 - b, w - 1)):
            seen = clear[:, ys, xs]  # [F, b, b]
            count = seen.sum(axis=0)
            far = np.where(seen, distance[:, ys, xs] >= MARK_DISTANCE, True).all(axis=0)
            values = relative[:, ys, xs]
            mean = (values * seen[..., None]).sum(axis=0) / np.maximum(count, 1)[..., None]
            var = (((values - mean) ** 2) * seen[..., None]).sum(axis=0) / np.maximum(count, 1)[..., None]
            still = np.sqrt(var).max(axis=-1) <= MARK_STD
            if int((far & still & (count >= 2)).sum()) >= MARK_PIXELS:
                return False
    return True


def unghosted(frames: np.ndarray) -> bool:
    """No faded copy of the previous frame (temporal second over first difference energy)."""
    if len(frames) < 3:
        return True
    first = float((np.diff(frames, axis=0) ** 2).sum())
    if first < 1e-6:
        return True  # a still clip has no motion to ghost
    return float((np.diff(frames, n=2, axis=0) ** 2).sum()) / first >= GHOST_RATIO


def stable(readings: list[FrameReading]) -> bool:
    """The shape's type is the same in every frame where a shape is seen (one odd frame forgiven)."""
    counts = sorted(Counter(r.shape for r in readings if r.present).values(), reverse=True)
    return len(counts) < 2 or counts[1] < STABLE_FRAMES


def judge(frames: np.ndarray, prompt: str | Attributes) -> dict[str, float]:
    """Score frames against a prompt: one entry per check asked for (1.0 pass / 0.0 fail, or the share
    of frames passing for per-frame checks), plus `accuracy` (their mean) and `passed` (all pass).

    Per-frame checks (present, shape, colour, background, crisp) count the share of frames that pass;
    motion (videos whose prompt says "moving ...") is one check over the whole clip, as are the video
    checks (steady, unmarked, unghosted, stable; smooth when motion is asked) of any clip of F > 1."""
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
        out["smooth"] = float(smooth(frames))
    if len(readings) > 1:
        out["steady"] = float(steady(frames))
        out["unmarked"] = float(unmarked(frames))
        out["unghosted"] = float(unghosted(frames))
        out["stable"] = float(stable(readings))
    out["accuracy"] = float(np.mean([out[k] for k in CHECKS if k in out]))
    out["passed"] = float(all(out[k] == 1.0 for k in CHECKS if k in out))
    return out


def judge_many(videos: list[np.ndarray] | np.ndarray, prompts: list[str]) -> dict[str, float]:
    """Mean of every check over many samples (checks a prompt does not ask for are left out of it)."""
    rows = [judge(v, p) for v, p in zip(videos, prompts, strict=True)]
    keys = sorted({k for r in rows for k in r})
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys} | {"n": float(len(rows))}
