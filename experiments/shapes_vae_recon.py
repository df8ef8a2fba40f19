"""What the shapes VAE itself can draw: judge checks of its reconstructions of clean frames, per stage.

    python experiments/shapes_vae_recon.py BUILD_DIR [--frames 100]

No generator on the VAE's latents can score above its reconstructions, so this is the ceiling of the
t2i/t2v shape and crispness checks. Prints one markdown row per VAE stage (`vae`, `decoder`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from shapes_world import data, judge
from shapes_world.build.common import load_vae, to_tensor

CHECKS = ("accuracy", "shape", "colour", "background", "crisp")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("build", type=Path, help="a shapes build folder (reneg-build-shapes --out)")
    p.add_argument("--frames", type=int, default=100, help="clean frames, from a fixed seed")
    args = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(123)  # not a training seed: these frames were never trained on as such
    samples = [data.make_sample(rng, video=False, degrade_prob=0.0) for _ in range(args.frames)]
    x = to_tensor(np.stack([s.frames[0] for s in samples]))
    print("| VAE stage | " + " | ".join(CHECKS) + " |")
    print("|" + "---|" * (len(CHECKS) + 1))
    for stage in ("vae", "decoder"):
        if not (args.build / stage / "stage.json").exists():
            continue
        vae = load_vae(args.build, stage)
        with torch.no_grad():
            recon = vae.decode(vae.encode(x).latent_dist.mean).sample
        frames = ((recon.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        judged = [judge.judge(f[None], s.caption) for f, s in zip(frames, samples, strict=True)]
        cells = [f"{np.mean([j[k] for j in judged if k in j]):.2f}" for k in CHECKS]
        print(f"| {stage} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
