"""Do the video-level scores (reneg_video.rewards.temporal) separate clean clips from their artefact?

Clean procedural shapes-world clips (a shape moving 1-1.5 px per frame, no degradation) and the same clips
with one artefact each:
- flicker: every frame's brightness shifted by its own offset, uniform in [-FLICKER, FLICKER];
- freeze: the clip stops at a frame k drawn from 1..4 and repeats it to the end;
- ghosting: each frame t >= 1 blended with a faded copy of the previous one, (1 - GHOST) f_t + GHOST f_{t-1}.
Consistency uses the image tower of `shapes-reward` (the shapes world's CLIP). Per score and kind: the
mean over N clips with its 95% percentile-bootstrap interval (reneg_video.core.stats); the AUC of clean
vs artefact clips (the chance that an artefact clip scores above a clean one; 0.5 = no separation); and,
the artefacts being made from the same clips, the paired difference artefact - clean per clip with its
interval. Prints markdown tables; quoted in docs/rewards.md, "Video-level scores". About 30 s at one thread.
"""

from __future__ import annotations

import numpy as np
import torch

from reneg_video.core.quiet import quiet_libraries
from reneg_video.core.stats import bootstrap_interval
from reneg_video.rewards import load_reward
from reneg_video.rewards.temporal import SCORES, score_video
from shapes_world.data import make_sample

N = 200
SEED = 0
FLICKER = 0.15  # brightness offset per frame, in [0, 1] pixel units
GHOST = 0.4  # opacity of the previous frame's copy
KINDS = ("clean", "flicker", "freeze", "ghosting")


def artefact(clip: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """`clip` (uint8 [F, H, W, 3]) with the artefact `kind` applied."""
    frames = clip.astype(np.float32) / 255.0
    if kind == "flicker":
        frames = frames + rng.uniform(-FLICKER, FLICKER, size=(len(frames), 1, 1, 1)).astype(np.float32)
    elif kind == "freeze":
        k = int(rng.integers(1, 5))
        frames[k:] = frames[k]
    elif kind == "ghosting":
        frames[1:] = (1 - GHOST) * frames[1:] + GHOST * frames[:-1]
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def auc(clean: np.ndarray, other: np.ndarray) -> float:
    """P(other > clean) + P(tie) / 2 over all pairs (the Mann-Whitney U / (n m))."""
    diff = other[:, None] - clean[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def main() -> None:
    torch.set_num_threads(1)
    quiet_libraries()
    reward = load_reward("shapes-reward")
    rng = np.random.default_rng(SEED)
    clips = [make_sample(rng, video=True, degrade_prob=0.0, artefact_prob=0.0).frames for _ in range(N)]
    values = {kind: {key: [] for key in SCORES} for kind in KINDS}
    for kind in KINDS:
        kind_rng = np.random.default_rng([SEED, KINDS.index(kind)])
        for clip in clips:
            scores = score_video(artefact(clip, kind, kind_rng), reward)
            for key in SCORES:
                values[kind][key].append(scores[key])
    print(
        f"N = {N} clips per kind (seed {SEED}); mean [95% bootstrap interval]; consistency on shapes-reward\n"
    )
    print("| score | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for key in SCORES:
        cells = []
        for kind in KINDS:
            mean, low, high = bootstrap_interval(values[kind][key])
            cells.append(f"{mean:.4f} [{low:.4f}, {high:.4f}]")
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\nAUC, clean vs artefact: P(artefact clip scores above a clean clip)\n")
    print("| score | " + " | ".join(KINDS[1:]) + " |")
    print("|---|" + "---|" * (len(KINDS) - 1))
    for key in SCORES:
        clean = np.array(values["clean"][key])
        cells = [f"{auc(clean, np.array(values[kind][key])):.2f}" for kind in KINDS[1:]]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\nPaired difference artefact - clean (same clip): mean [95% bootstrap interval]\n")
    print("| score | " + " | ".join(KINDS[1:]) + " |")
    print("|---|" + "---|" * (len(KINDS) - 1))
    for key in SCORES:
        clean = np.array(values["clean"][key])
        cells = []
        for kind in KINDS[1:]:
            mean, low, high = bootstrap_interval(np.array(values[kind][key]) - clean)
            cells.append(f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
