"""Frames in, normalised CLIP-style pixels out: the preprocessing every reward model here shares.

Shape legend: F frames, H x W input size, S the model's square input size (224 for ImageReward).

Three input kinds are accepted, checked once here:
- a list of PIL images: reproduces the reference preprocessing of ImageReward/CLIP exactly
  (torchvision `Resize(S, bicubic)` on the short side, `CenterCrop(S)`, RGB, `ToTensor`, `Normalize`);
- uint8 numpy [F, H, W, 3]: turned into PIL images, so it goes the exact same way;
- float tensor [F, 3, H, W] in [0, 1]: torch ops only (antialiased bicubic interpolate, crop, normalise),
  differentiable end to end, so a trainer can back-propagate a reward into generated frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import RewardError

# OpenAI CLIP's pixel mean/std (clip/clip.py `_transform`); ImageReward and BLIP reuse them.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Float frames far outside [0, 1] are in another convention ([-1, 1] or [0, 255]); refuse those.
FLOAT_RANGE_SLACK = 0.5

Frames = Sequence[Image.Image] | np.ndarray | torch.Tensor


def _resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision `Resize(size)` rule: the short side becomes `size`, the long side int(size*long/short)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


def _crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision `CenterCrop(size)` offsets (top, left): int(round((extent - size) / 2))."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def preprocess_pil(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images -> float32 [F, 3, S, S], exactly as the reference torchvision transform does it."""
    out = []
    for image in images:
        height, width = image.height, image.width
        new_h, new_w = _resized_size(height, width, size)
        # The reference resizes and crops before converting to RGB; keep that order.
        image = image.resize((new_w, new_h), Image.BICUBIC)
        top, left = _crop_offsets(new_h, new_w, size)
        image = image.crop((left, top, left + size, top + size)).convert("RGB")
        array = np.asarray(image, dtype=np.uint8)
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    pixels = torch.stack(out).float().div_(255.0)
    return _normalise(pixels)


def preprocess_tensor(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Float [F, 3, H, W] in [0, 1] -> [F, 3, S, S]; differentiable (no clamping, no rounding).

    Antialiased bicubic interpolation follows PIL's resampling filter, so results stay close to the PIL
    path (PIL additionally rounds to uint8 and clips to [0, 255]).
    """
    height, width = frames.shape[-2:]
    new_h, new_w = _resized_size(height, width, size)
    pixels = F.interpolate(frames, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = _crop_offsets(new_h, new_w, size)
    pixels = pixels[..., top : top + size, left : left + size]
    return _normalise(pixels)


def check_frames(frames: object) -> int:
    """Validate the input kind and shape once; return the number of frames F. Raises `RewardError`."""
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise RewardError(
                f"frames tensor has shape {tuple(frames.shape)}; expected float [F, 3, H, W] in [0, 1] "
                "(permute channels-last video with .permute(0, 3, 1, 2))"
            )
        if not frames.is_floating_point():
            raise RewardError(
                f"frames tensor has dtype {frames.dtype}; expected a float tensor in [0, 1] "
                "(pass uint8 video as a numpy array [F, H, W, 3], or divide by 255)"
            )
        if frames.shape[0] == 0:
            raise RewardError("frames tensor holds 0 frames; expected at least one frame")
        with torch.no_grad():
            low, high = frames.detach().aminmax()
            finite = bool(torch.isfinite(frames.detach()).all())
        if not finite:
            raise RewardError("frames tensor holds NaN or inf values; expected finite values in [0, 1]")
        if low < -FLOAT_RANGE_SLACK or high > 1 + FLOAT_RANGE_SLACK:
            raise RewardError(
                f"frames tensor spans [{float(low):.3g}, {float(high):.3g}]; expected values in [0, 1] "
                "(map [-1, 1] video with (x + 1) / 2, or [0, 255] video with x / 255)"
            )
        return int(frames.shape[0])
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise RewardError(
                f"frames array has dtype {frames.dtype} and shape {frames.shape}; expected uint8 "
                "[F, H, W, 3] (or pass a float torch tensor [F, 3, H, W] in [0, 1])"
            )
        if frames.shape[0] == 0:
            raise RewardError("frames array holds 0 frames; expected at least one frame")
        return int(frames.shape[0])
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise RewardError("frames list is empty; expected at least one PIL image")
        bad = [type(f).__name__ for f in frames if not isinstance(f, Image.Image)]
        if bad:
            raise RewardError(
                f"frames list holds {bad[0]} items; expected PIL images "
                "(or a uint8 numpy array [F, H, W, 3], or a float tensor [F, 3, H, W])"
            )
        return len(frames)
    raise RewardError(
        f"frames of type {type(frames).__name__}; expected a list of PIL images, a uint8 numpy array "
        "[F, H, W, 3] or a float torch tensor [F, 3, H, W] in [0, 1]"
    )


def preprocess(frames: Frames, size: int) -> torch.Tensor:
    """Any accepted input (already checked by `check_frames`) -> normalised [F, 3, S, S]."""
    if isinstance(frames, torch.Tensor):
        return preprocess_tensor(frames, size)
    if isinstance(frames, np.ndarray):
        frames = [Image.fromarray(frame) for frame in frames]
    return preprocess_pil(frames, size)


def frame_scores(reward, frames: np.ndarray, prompt: str) -> list[float]:
    """Per-frame scores of float frames [F, H, W, 3] in [0, 1], rounded for reports and JSON."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return [round(float(v), 6) for v in reward.score_frames(pixels, prompt)]


def scoring_setup(
    frames: Frames, prompt: str, batch_size: int | None, default_batch_size: int
) -> tuple[int, int, contextlib.AbstractContextManager]:
    """What every reward's `score_frames` starts with: the frames and prompt checked, the batch size
    chosen, and the grad mode (gradients only when float frames ask for them, else inference mode).
    Returns (frame count, batch size, context to score under)."""
    count = check_frames(frames)
    if not isinstance(prompt, str):
        raise RewardError(f"prompt is a {type(prompt).__name__}; expected a str")
    batch_size = batch_size or default_batch_size
    if batch_size < 1:
        raise RewardError(f"batch_size is {batch_size}; expected a positive integer")
    needs_grad = isinstance(frames, torch.Tensor) and frames.requires_grad and torch.is_grad_enabled()
    return count, batch_size, contextlib.nullcontext() if needs_grad else torch.inference_mode()
