"""Loss curves of a shapes build (docs/shapes_losses.png): `python experiments/shapes_figures.py BUILD_DIR OUT.png`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(build: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ["clip", "vae", "decoder", "t2i", "t2v", "motion", "polish", "reward"]
    fig, axes = plt.subplots(2, len(stages) // 2, figsize=(3.2 * len(stages) // 2, 5.2))
    for ax, stage in zip(axes.flat, stages, strict=True):
        path = Path(build) / stage / "stage.json"
        if not path.exists():
            ax.set_title(f"{stage}: not built")
            continue
        losses = np.asarray(json.loads(path.read_text())["losses"])
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(losses, alpha=0.25, lw=0.6)
        ax.plot(np.arange(len(smooth)) + window // 2, smooth, lw=1.2)
        ax.set_title(f"{stage} ({len(losses)} steps)", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if stage in ("vae", "decoder", "t2i", "t2v", "motion", "polish"):
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
