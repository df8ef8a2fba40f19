"""Video-level scores: what per-frame rewards cannot see (flicker, frozen frames, drift of the subject, no
motion at all, ghosting). Definitions and sources are in docs/rewards.md, "Video-level scores".

- flicker: mean absolute difference (MAD) of consecutive frames, pixels in [0, 1], lower is steadier.
  VBench's temporal flickering (Huang et al. 2023, arXiv 2311.17982) averages the same MAD on 0..255
  pixels and reports (255 - MAD) / 255, i.e. 1 - flicker here; VBench applies it to static scenes, so a
  moving subject raises it too: read it beside `motion`.
- frozen_share: share of consecutive pairs whose MAD is below FROZEN_MAD (a repeated frame).
- motion: MAD between the first and the last frame, so that a frozen video (motion 0) cannot win on
  consistency or flicker.
- consistency: VBench's subject/background consistency form on a reward's image embeddings: for each
  frame i >= 1, (max(0, cos(e_i, e_0)) + max(0, cos(e_i, e_{i-1}))) / 2, averaged over i.
- temporal_hf: energy of the second temporal difference over that of the first, pixels in [0, 1]; a
  temporal low-pass (ghosting, frame blending, interpolated frames) lowers it, jitter (flicker) raises
  it, white noise in time gives WHITE_NOISE_HF = 3.

Shape legend: F frames, H x W frame size, D embedding width.
"""

from __future__ import annotations

import numpy as np
import torch

# A pair of frames whose MAD is under one 8-bit level differs by no more than re-quantisation: two
# independent roundings of the same image to 8 bits differ by E|e1 - e2| = 1/3 level (uniform errors).
FROZEN_MAD = 1.0 / 255.0
# temporal_hf of frames that are independent draws in time: a second difference f_{i+1} - 2 f_i + f_{i-1}
# of iid values of variance s^2 has variance (1 + 4 + 1) s^2 = 6 s^2, a first difference 2 s^2.
WHITE_NOISE_HF = 3.0
# The five scores (what reports average per arm), then the rest of what `video_scores` returns.
SCORES = ("flicker", "frozen_share", "motion", "consistency", "temporal_hf")
KEYS = ("flicker", "frozen_share", "motion", "consistency", "temporal_hf", "embedding", "consistency_skipped",
        "pair_mad", "pair_consistency")  # fmt: skip


def _channels_last(frames) -> np.ndarray:
    """uint8 or float [F, H, W, 3] numpy, or a float torch tensor [F, 3, H, W] -> numpy [F, H, W, 3]."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().permute(0, 2, 3, 1).numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames of shape {frames.shape}; expected [F, H, W, 3] (or a tensor [F, 3, H, W])")
    return frames


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames, pixels in [0, 1] (uint8 read as level / 255)."""
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(dtype=np.float64) / scale)


def pair_mad(frames) -> np.ndarray:
    """MAD of each consecutive pair: float64 [F - 1], pixels in [0, 1]."""
    frames = _channels_last(frames)
    return np.array([_mad(frames[i], frames[i + 1]) for i in range(len(frames) - 1)], dtype=np.float64)


def temporal_hf(frames) -> float | None:
    """mean over pixels, channels and i of (f_{i+1} - 2 f_i + f_{i-1})^2 over the mean of (f_{i+1} - f_i)^2,
    pixels in [0, 1]; None for fewer than 3 frames or no change at all (a still video).

    Ghosting y_t = (1 - g) x_t + g x_{t-1} is a temporal low-pass filter: its power gain is 1 at zero
    temporal frequency and (1 - 2g)^2 at the highest, so it lowers this ratio; per-frame jitter (flicker)
    raises it; frames that are white noise in time give WHITE_NOISE_HF. Smooth motion scores low too (a
    constant-velocity edge has small second differences): read it beside `motion` and `flicker`."""
    frames = _channels_last(frames)
    if len(frames) < 3:
        return None
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    first = second = 0.0
    step = None
    for i in range(len(frames) - 1):  # frame by frame: a long video is never held in float64 at once
        previous, step = step, (frames[i + 1].astype(np.float64) - frames[i].astype(np.float64)) / scale
        first += float(np.square(step).mean())
        if previous is not None:
            second += float(np.square(step - previous).mean())
    first, second = first / (len(frames) - 1), second / (len(frames) - 2)
    return second / first if first > 0 else None


def consistency_terms(embeddings: torch.Tensor) -> np.ndarray:
    """VBench's per-frame consistency term for frames 1..F-1 of image embeddings [F, D]: float64 [F - 1]."""
    e = torch.nn.functional.normalize(embeddings.detach().double().cpu(), dim=-1)
    first = (e[1:] @ e[0]).clamp(min=0)
    previous = (e[1:] * e[:-1]).sum(-1).clamp(min=0)
    return ((first + previous) / 2).numpy()


def embedder(reward):
    """(name, embed_frames) of the first reward (or ensemble member) with an image tower; (None, reason)
    when none has one."""
    members = [m for m, _ in getattr(reward, "members", [])] or [reward]
    for member in members:
        if callable(getattr(member, "embed_frames", None)):
            return member.name, member.embed_frames
    names = ", ".join(m.name for m in members)
    return None, f"no CLIP image tower in {names} (clip, pickscore, hpsv2, aesthetic have one)"


def video_scores(frames, embeddings: torch.Tensor | None = None, skipped: str | None = None) -> dict:
    """The video-level scores of one video (KEYS), with the per-pair terms behind flicker and consistency
    (pair i: frames i and i + 1); None where a one-frame video has no pair (temporal_hf: fewer than 3
    frames, or a still video), and consistency None with the reason in `consistency_skipped` when there
    are no `embeddings`."""
    frames = _channels_last(frames)
    mads = pair_mad(frames)
    pairs = len(mads) > 0
    out = {
        "flicker": float(mads.mean()) if pairs else None,
        "frozen_share": float((mads < FROZEN_MAD).mean()) if pairs else None,
        "motion": _mad(frames[0], frames[-1]) if pairs else None,
        "consistency": None,
        "temporal_hf": temporal_hf(frames),
        "embedding": None,
        "consistency_skipped": skipped,
        "pair_mad": [float(v) for v in mads],
        "pair_consistency": None,
    }
    if embeddings is not None and pairs:
        terms = consistency_terms(embeddings)
        out["consistency"] = float(terms.mean())
        out["pair_consistency"] = [float(v) for v in terms]
    elif embeddings is None and skipped is None:
        out["consistency_skipped"] = "no reward embedded the frames"
    return out


def score_video(frames, reward=None, batch_size: int | None = None) -> dict:
    """`video_scores` of `frames` with the image embeddings of `reward`'s CLIP tower where it has one."""
    name, embed = embedder(reward) if reward is not None else (None, "no reward given")
    if name is None:
        return video_scores(frames, skipped=embed)
    frames_in = frames
    if isinstance(frames, np.ndarray) and frames.dtype != np.uint8:  # float [F, H, W, 3] -> [F, 3, H, W]
        frames_in = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    out = video_scores(frames, embed(frames_in, batch_size=batch_size))
    out["embedding"] = name
    return out


def format_scores(scores: dict) -> str:
    """One line: 'flicker 0.0123  frozen 0.00  motion 0.0456  temporal_hf 1.569  consistency 0.9876
    (tiny-clip)'."""

    def num(key: str, digits: int = 4) -> str:
        return "n/a" if scores[key] is None else f"{scores[key]:.{digits}f}"

    where = scores["embedding"] or f"skipped: {scores['consistency_skipped']}"
    return (
        f"flicker {num('flicker')}  frozen {num('frozen_share', 2)}  motion {num('motion')}  "
        f"temporal_hf {num('temporal_hf', 3)}  consistency {num('consistency')} ({where})"
    )


__all__ = [
    "FROZEN_MAD",
    "KEYS",
    "SCORES",
    "WHITE_NOISE_HF",
    "consistency_terms",
    "embedder",
    "format_scores",
    "pair_mad",
    "score_video",
    "temporal_hf",
    "video_scores",
]
