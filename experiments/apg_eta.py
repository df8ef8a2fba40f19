"""Why does APG break the shapes models? (exploratory, issue 30; run after the pre-registered comparison of
docs/guidance.md; it changes no default)

APG splits the guidance update on the denoised estimate into the part parallel to the conditional estimate
and the rest, and keeps eta times the parallel part (the paper's eta 0 drops it). In a world of flat
coloured shapes on flat backgrounds the conditional estimate is mostly colour, so the parallel part may be
the content itself. Null text on the negative branch, the spec's guidance, held-out prompts, seed 0: the
judge (accuracy and per check) and the share of the update's squared norm that is parallel to the
conditional estimate, for eta 0 and 1 (momentum -0.5 and norm cap 15 as shipped) and plain CFG.

    python experiments/apg_eta.py shapes-t2v --max-prompts 30
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import reneg_video.core.guidance as guidance
from reneg_video.core.inject import detached
from reneg_video.models.generate import generate, settings_for
from reneg_video.models.pipeline import load_pipeline
from shapes_world import world
from shapes_world.judge import CHECKS, judge

ETAS = (0.0, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="shapes-t2v or shapes-t2i")
    p.add_argument("--max-prompts", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    prompts = [t.strip() for t in world.prompts_file("heldout").read_text().splitlines() if t.strip()]
    prompts = prompts[: args.max_prompts]
    pipe = load_pipeline(args.model, "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    spec = pipe.reneg_spec

    parallel_shares: list[float] = []
    original_combine = guidance.combine

    def measuring_combine(guider, rule, cond, uncond):
        # The share of ||cond - uncond||^2 along cond (both denoised estimates here), per call.
        diff, unit = (cond - uncond).flatten(1), torch.nn.functional.normalize(cond.flatten(1), dim=1)
        parallel = (diff * unit).sum(1)
        parallel_shares.append(float((parallel**2 / (diff**2).sum(1)).mean()))
        return original_combine(guider, rule, cond, uncond)

    guidance.combine = measuring_combine
    print(
        f"\n{args.model}: {len(prompts)} held-out prompts, seed 0, null text, guidance {spec.defaults.guidance:g}\n"
    )
    print("| arm | judge | " + " | ".join(CHECKS) + " | parallel share of the update |")
    print("|---|---|" + "---|" * len(CHECKS) + "---|")
    arms = [("cfg", None)] + [(f"apg eta {eta:g}", eta) for eta in ETAS]
    for name, eta in arms:
        parallel_shares.clear()
        if eta is not None:
            guidance.APG_ETA = eta
        rule = "cfg" if eta is None else "apg"
        judged = []
        for prompt in prompts:
            with detached(pipe):
                frames = generate(pipe, spec, prompt, settings_for(spec, seed=0, guidance_rule=rule))
            judged.append(judge(frames, prompt))
        checks = [np.mean([j[k] for j in judged if k in j]) if k in judged[0] else np.nan for k in CHECKS]
        share = f"{np.mean(parallel_shares):.3f}" if parallel_shares else "-"
        cells = " | ".join("-" if np.isnan(c) else f"{c:.3f}" for c in checks)
        print(f"| {name} | {np.mean([j['accuracy'] for j in judged]):.3f} | {cells} | {share} |", flush=True)


if __name__ == "__main__":
    main()
