"""Judge accuracy of a shapes model over guidance x steps (null negative): how the spec defaults were chosen.

python experiments/shapes_sweep.py shapes-t2i --guidance 2,3.5,5,7.5 --steps 10,20 --prompts 60 --seeds 2
"""

from __future__ import annotations

import argparse
import json

import torch

from reneg_video.core.stats import normal_interval
from reneg_video.models.pipeline import load_pipeline, resolve_spec
from shapes_world.build.common import sample
from shapes_world.data import split_prompts
from shapes_world.judge import judge


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--model-path")
    p.add_argument("--guidance", default="2,3.5,5,7.5")
    p.add_argument("--steps", default="10,20")
    p.add_argument("--prompts", type=int, default=60)
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    spec = resolve_spec(args.model)
    pipe = load_pipeline(args.model, "cpu", "float32", model_path=args.model_path)
    pipe.set_progress_bar_config(disable=True)
    held = split_prompts()[1][: args.prompts]
    rows = [(q, s) for q in held for s in range(args.seeds)]
    results = []
    for steps in map(int, args.steps.split(",")):
        for guidance in map(float, args.guidance.split(",")):
            frames = sample(
                pipe,
                [q for q, _ in rows],
                [s for _, s in rows],
                video=spec.kind == "video",
                steps=steps,
                guidance=guidance,
            )
            acc = [judge(f, q)["accuracy"] for f, (q, _) in zip(frames, rows, strict=True)]
            passed = [judge(f, q)["passed"] for f, (q, _) in zip(frames, rows, strict=True)]
            m, lo, hi = normal_interval(acc)
            results.append(dict(steps=steps, guidance=guidance, accuracy=m, low=lo, high=hi,
                                passed=sum(passed) / len(passed), n=len(acc)))  # fmt: skip
            print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
