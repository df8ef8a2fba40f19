"""How strongly does NAG act on a shapes model, and does ReNeg move it? (exploratory, issue 30; run after the
pre-registered comparison of docs/guidance.md, to see why NAG was level there; it changes no default)

At guidance 1, for NAG scales phi and blends alpha (tau at its default 2.5): the mean absolute pixel change
of NAG with null text against the bare conditional pass (g1), of NAG with ReNeg against NAG with null
text, and for reference of CFG at the spec's guidance against g1; the judge's accuracy of nag-null and
nag-reneg and their paired difference over prompts (bootstrap interval).

    python experiments/nag_strength.py shapes-t2i --max-prompts 30
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from reneg_video.core.embedding import load_embedding
from reneg_video.core.inject import attached, detached
from reneg_video.core.settings import NAG_TAU, NagParams
from reneg_video.core.stats import bootstrap_interval
from reneg_video.models.generate import generate, settings_for
from reneg_video.models.pipeline import load_pipeline
from shapes_world import world
from shapes_world.judge import judge

SCALES = (5.0, 10.0, 20.0)
ALPHAS = (0.25, 0.5, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="shapes-t2i or shapes-t2v")
    p.add_argument("--max-prompts", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    prompts = [t.strip() for t in world.prompts_file("heldout").read_text().splitlines() if t.strip()]
    prompts = prompts[: args.max_prompts]
    pipe = load_pipeline(args.model, "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    spec = pipe.reneg_spec
    neg = load_embedding(world.weights_root() / world.RENEG_BIN)

    def render(settings, reneg: bool) -> list[np.ndarray]:
        out = []
        for prompt in prompts:
            with attached(pipe, neg, spec) if reneg else detached(pipe):
                out.append(generate(pipe, spec, prompt, settings))
        return out

    def accuracy(videos) -> np.ndarray:
        return np.array([judge(v, q)["accuracy"] for v, q in zip(videos, prompts, strict=True)])

    g1 = render(settings_for(spec, seed=0, guidance=1.0), False)
    cfg = render(settings_for(spec, seed=0), False)
    change = lambda a, b: float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b, strict=True)]))  # noqa: E731
    print(f"\n{args.model}: {len(prompts)} held-out prompts, seed 0; tau {NAG_TAU:g}\n")
    print(f"CFG at {spec.defaults.guidance:g} (null) vs g1: mean |pixel change| {change(cfg, g1):.4f}\n")
    print(
        "| phi | alpha | null vs g1 | reneg vs null | judge nag-null | judge nag-reneg | reneg - null [95%] |"
    )
    print("|---|---|---|---|---|---|---|")
    for scale in SCALES:
        for alpha in ALPHAS:
            settings = settings_for(spec, seed=0, guidance=1.0, nag=NagParams(scale=scale, alpha=alpha))
            null, reneg = render(settings, False), render(settings, True)
            a_null, a_reneg = accuracy(null), accuracy(reneg)
            mean, low, high = bootstrap_interval(a_reneg - a_null)
            print(
                f"| {scale:g} | {alpha:g} | {change(null, g1):.4f} | {change(reneg, null):.4f} | "
                f"{a_null.mean():.3f} | {a_reneg.mean():.3f} | {mean:+.3f} [{low:+.3f}, {high:+.3f}] |",
                flush=True,
            )


if __name__ == "__main__":
    main()
