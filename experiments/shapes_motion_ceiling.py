"""How much can a shapes-t2v gain from reading the direction word, and what else does it need to know?

    python experiments/shapes_motion_ceiling.py [--clips 200] [--prompt "a red circle on a blue background"]

At zero terminal SNR the v-target at the last timestep is -x0 and the best prediction is the mean latent
video given what the model knows. For one prompt's attributes, `--clips` clips per direction are rendered
and encoded with the shipped VAE; the script prints that ideal loss (the variance around the mean, per
latent value) when the predictor knows (a) neither the direction nor the frame index, (b) the direction
but not the frame index (one mean for every frame), (c) both. Only (c) gains: the direction word pays off
only together with the frame position, which is why a model that has neither cannot start learning either
from this loss (no first-order gain from one alone).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from shapes_world import data
from shapes_world import world as W


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=200, help="clips per direction")
    p.add_argument("--prompt", default="a red circle on a blue background", help="a still grammar prompt")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from diffusers import AutoencoderKL

    from shapes_world.build.common import to_tensor

    try:
        a = data.still_attributes(args.prompt)
    except ValueError as e:
        p.error(str(e))
    torch.set_num_threads(1)
    vae = AutoencoderKL.from_pretrained(W.shipped_vae()).float().eval()
    rng = np.random.default_rng(args.seed)
    latents = {}
    for direction in W.DIRECTIONS:
        clips = np.stack(
            [
                data.render(data.Attributes(a.shape, a.colour, a.background, direction), rng)
                for _ in range(args.clips)
            ]
        )  # [N, F, H, W, 3]
        with torch.no_grad():
            x = to_tensor(clips.reshape(-1, *clips.shape[2:]))
            z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor  # [N * F, C, h, w]
        latents[direction] = z.reshape(args.clips, W.FRAMES, *z.shape[1:]).numpy()
    every = np.concatenate(list(latents.values()))
    neither = float(((every - every.mean((0, 1), keepdims=True)) ** 2).mean())
    word_only = float(np.mean([((z - z.mean((0, 1), keepdims=True)) ** 2).mean() for z in latents.values()]))
    both = float(np.mean([((z - z.mean(0)) ** 2).mean() for z in latents.values()]))
    frame_only = float(((every - every.mean(0)) ** 2).mean())
    print(f"ideal last-timestep loss for {args.prompt!r} ({args.clips} clips per direction):")
    print(f"  knows neither direction nor frame index: {neither:.4f}")
    print(
        f"  knows the frame index only:              {frame_only:.4f} ({100 * (neither - frame_only) / neither:+.1f}%)"
    )
    print(
        f"  knows the direction word only:           {word_only:.4f} ({100 * (neither - word_only) / neither:+.1f}%)"
    )
    print(f"  knows both:                              {both:.4f} ({100 * (neither - both) / neither:+.1f}%)")


if __name__ == "__main__":
    main()
