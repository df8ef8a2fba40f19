"""The pre-registered analysis of docs/shapes-v2-protocol.md on a `shapes-eval` report: every arm minus null
text, and the ReNeg arms of several training seeds pooled (per prompt, the mean over them), each with its
95% bootstrap interval over prompts and the protocol's decision words; the headroom figures (share of
null-text samples failing a fixable check, per-check failure rates); the observed spread of the paired
differences and the smallest effect the run could detect.

    python experiments/shapes_v2_pool.py runs/v2-transfer-t2v/report.json \
        --pool v2-reneg-0,v2-reneg-1,v2-reneg-2 [--baseline null]

Prints markdown tables; reads only the report (nothing is rendered).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from shapes_world.eval import FIXABLE, paired_differences

# The protocol's smallest effect worth detecting, in judge accuracy (docs/shapes-v2-protocol.md, M4).
SMALLEST_EFFECT = 0.02
# Two-sided alpha 0.05 and 80% power: z = 1.96 + 0.84 (the protocol's sample-size formula).
Z_ALPHA, Z_POWER = 1.96, 0.84
POOLED = "reneg-pooled"


def decision(d: dict, smallest: float | None) -> str:
    """The protocol's words for one paired difference (mean, low, high)."""
    if d["low"] > 0:
        if smallest is None or d["mean"] >= smallest:
            return "better"
        return "better, below the smallest effect worth seeing"
    if d["high"] < 0:
        return "worse"
    return "no effect detected at this n"


def pooled_arms(per_prompt: dict, pool: list[str]) -> dict:
    """`per_prompt` with a POOLED arm: per prompt and metric, the mean over the `pool` arms."""
    missing = [a for a in pool if a not in per_prompt]
    if missing:
        raise SystemExit(
            f"--pool {','.join(missing)}: not arms of this report; it has {', '.join(per_prompt)}"
        )
    metrics = set.intersection(*(set(per_prompt[a]) for a in pool))
    pooled = {m: np.mean([per_prompt[a][m] for a in pool], axis=0) for m in sorted(metrics)}
    return {**per_prompt, POOLED: pooled}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="report.json of `python -m shapes_world.commands.eval`")
    p.add_argument("--pool", default="", help="comma-separated embedding arms to pool (training seeds)")
    p.add_argument("--baseline", default="null", help="the arm every other is paired with")
    args = p.parse_args()
    report = json.loads(args.report.read_text())
    per_prompt = {a: {m: np.asarray(v) for m, v in d.items()} for a, d in report["per_prompt"].items()}
    if args.pool:
        per_prompt = pooled_arms(per_prompt, args.pool.split(","))
    diffs = paired_differences(per_prompt, args.baseline)
    print(
        f"{report['model']}: {report['prompts']} prompts x {report['seeds']} seeds, guidance {report['guidance']}"
    )
    print(
        "\n| arm - " + args.baseline + " | metric | mean | 95% interval | decision |\n|---|---|---|---|---|"
    )
    for key, d in diffs.items():
        metric = key.rsplit("(", 1)[1].rstrip(")")
        words = decision(d, SMALLEST_EFFECT if metric == "judge" else None)
        print(
            f"| {key.split(' (')[0]} | {metric} | {d['mean']:+.4f} | [{d['low']:+.4f}, {d['high']:+.4f}] | {words} |"
        )
    print(
        "\n| arm | failing a fixable check | " + " | ".join(report["arms"][args.baseline]["failures"]) + " |"
    )
    print("|---" * (len(report["arms"][args.baseline]["failures"]) + 2) + "|")
    for arm, entry in report["arms"].items():
        cells = " | ".join(f"{v:.3f}" for v in entry["failures"].values())
        print(f"| {arm} | {entry.get('failed_fixable', float('nan')):.3f} | {cells} |")
    print(f"\nfixable checks: {', '.join(FIXABLE)}; headroom criterion: >= 0.25 of {args.baseline} samples")
    base = per_prompt[args.baseline]["judge"]
    for arm in per_prompt:
        if arm == args.baseline:
            continue
        sd = float(np.std(per_prompt[arm]["judge"] - base, ddof=1))
        detectable = (Z_ALPHA + Z_POWER) * sd / np.sqrt(base.size)
        print(f"{arm}: sd of per-prompt judge differences {sd:.4f}; detectable at 80% power {detectable:.4f}")


if __name__ == "__main__":
    main()
