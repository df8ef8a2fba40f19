"""At high noise, does a shapes-t2v model's x0 estimate move the shape the way the direction word says?

    python experiments/shapes_x0_probe.py [--model-path DIR] [--seeds 4] [--timesteps 999,900,700]

One UNet call per (seed, timestep) on the same noise for the four prompts "a red circle moving
left/right/up/down on a blue background" plus the empty prompt; the x0 estimate (with the spec's CFG scale
applied to it) is decoded and the judge's centroid read in the first and last frame. Prints, per timestep, a
row per seed of (dx, dy) in pixels for each word. A model that reads the word gives four different
displacements per row, pointing as asked; a text-blind one gives four nearly equal ones, set by the noise.
Cheaper than sampling (experiments/shapes_motion_probe.py): it shows whether the word reaches the layout at
the timesteps where the layout is decided.
"""

from __future__ import annotations

import argparse

import torch

from shapes_world import judge
from shapes_world import world as W


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-path", default=None, help="a shapes-t2v diffusers folder (default: the shipped one)"
    )
    p.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1, the same noise for all four words")
    p.add_argument("--timesteps", default="999,900,700", help="comma-separated training timesteps")
    args = p.parse_args()
    from reneg_video.models.pipeline import load_pipeline
    from shapes_world.build.common import token_ids

    torch.set_num_threads(1)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32", model_path=args.model_path)
    guidance = pipe.reneg_spec.defaults.guidance
    prompts = [f"a red circle moving {w} on a blue background" for w in W.DIRECTIONS]
    words = len(prompts)
    with torch.no_grad():
        context = pipe.text_encoder(token_ids(pipe.tokenizer, [*prompts, ""])).last_hidden_state
    alphas = pipe.scheduler.alphas_cumprod
    sf = pipe.vae.config.scaling_factor
    side = W.IMAGE_SIZE // pipe.vae_scale_factor
    shape = (1, W.LATENT_CHANNELS, W.FRAMES, side, side)
    for t in (int(x) for x in args.timesteps.split(",")):
        print(f"t={t}: (dx, dy) first -> last frame for " + ", ".join(W.DIRECTIONS))
        for seed in range(args.seeds):
            x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).expand(
                words + 1, -1, -1, -1, -1
            )
            with torch.no_grad():
                v = pipe.unet(x, torch.full((words + 1,), t), encoder_hidden_states=context).sample
                x0 = alphas[t].sqrt() * x - (1 - alphas[t]).sqrt() * v  # v-prediction's x0
                x0 = x0[-1:] + guidance * (x0[:-1] - x0[-1:])
                latents = x0.permute(0, 2, 1, 3, 4).flatten(0, 1) / sf  # [words * F, C, h, w]
                frames = (pipe.vae.decode(latents).sample.clamp(-1, 1) + 1) / 2
            frames = (
                frames.permute(0, 2, 3, 1).reshape(words, W.FRAMES, W.IMAGE_SIZE, W.IMAGE_SIZE, 3).numpy()
            )
            cells = []
            for video in frames:
                first, last = judge.read_frame(video[0]).centroid, judge.read_frame(video[-1]).centroid
                cells.append(
                    "none"
                    if first is None or last is None
                    else f"({last[0] - first[0]:+.1f}, {last[1] - first[1]:+.1f})"
                )
            print(f"  seed {seed}: " + "  ".join(cells))


if __name__ == "__main__":
    main()
