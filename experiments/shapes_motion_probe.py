"""Does a shapes-t2v model move the shape the way the prompt says, or the way its noise says?

    python experiments/shapes_motion_probe.py [--model-path DIR] [--seeds 8] [--prompt "a red circle on a blue background"]

For each seed the four prompts "... moving left/right/up/down ..." are rendered from the same noise, and the
judge reads the direction the shape moved in each. Prints the table (rows: seeds, columns: asked direction,
cells: what the judge saw, '-' for no motion) and two shares: `follows the word` (seen == asked; chance
0.25 for a model that always moves) and `same for all four words` (the text did not change the motion).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from shapes_world import data, judge
from shapes_world.world import DIRECTIONS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-path", default=None, help="a shapes-t2v diffusers folder (default: the shipped one)"
    )
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1, the same noise for all four words")
    p.add_argument("--prompt", default="a red circle on a blue background", help="a still grammar prompt")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the spec's)")
    p.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the spec's)")
    args = p.parse_args()
    from reneg_video.models.pipeline import load_pipeline
    from shapes_world.build.common import sample

    try:
        a = data.still_attributes(args.prompt)
    except ValueError as e:
        p.error(str(e))
    torch.set_num_threads(1)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32", model_path=args.model_path)
    pipe.set_progress_bar_config(disable=True)
    d = pipe.reneg_spec.defaults
    prompts = [data.caption_for(data.Attributes(a.shape, a.colour, a.background, w)) for w in DIRECTIONS]
    rows = [(s, w, q) for s in range(args.seeds) for w, q in zip(DIRECTIONS, prompts, strict=True)]
    videos = sample(
        pipe,
        [q for _, _, q in rows],
        [s for s, _, _ in rows],
        video=True,
        steps=args.steps or d.steps,
        guidance=d.guidance if args.guidance is None else args.guidance,
    )
    seen = np.array(
        [judge.direction_of([judge.read_frame(f) for f in v.astype(np.float32)]) or "-" for v in videos]
    ).reshape(args.seeds, len(DIRECTIONS))
    print("| seed | " + " | ".join(f"asked {w}" for w in DIRECTIONS) + " |")
    print("|" + "---|" * (len(DIRECTIONS) + 1))
    for s in range(args.seeds):
        print(f"| {s} | " + " | ".join(seen[s]) + " |")
    follows = float(np.mean(seen == np.array(DIRECTIONS)[None]))
    same = float(np.mean([len(set(r)) == 1 for r in seen]))
    print(f"\nfollows the word: {follows:.3f} (chance 0.25); same for all four words: {same:.3f} of seeds")


if __name__ == "__main__":
    main()
