"""Does the shipped ReNeg embedding compose with the guidance rules and with NAG? (issue 30; protocol in
docs/guidance.md, written before the run)

Per model, 13 arms on the held-out prompts x seeds, the same initial noise in every arm: each rule of
`reneg_video.core.guidance.RULES` at the spec's guidance with null text and with ReNeg on the negative
branch; at guidance 1 NAG with null text and with ReNeg as the negative context, and the bare conditional
pass (g1). Every sample is judged and scored with shapes-reward, and timed.

    python experiments/guidance_rules.py shapes-t2v
    python experiments/guidance_rules.py shapes-t2i --max-prompts 8 --seeds 1   # a quick look

Writes OUT/arms/ARM.npz as each arm finishes (a rerun skips the arms already there), OUT/report.json and
OUT/grid.png (the first prompts, seed 0, selected arms); prints markdown tables of the arms and of the
paired differences (per-prompt means over seeds, 95% bootstrap interval over prompts).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from reneg_video.core.embedding import load_embedding
from reneg_video.core.guidance import RULES
from reneg_video.core.inject import attached, detached
from reneg_video.core.nag import NagParams
from reneg_video.core.stats import bootstrap_interval
from reneg_video.models.generate import generate, settings_for
from reneg_video.models.pipeline import load_pipeline
from reneg_video.rewards import load_reward_spec
from shapes_world import world
from shapes_world.eval import mean_reward, picture_grid
from shapes_world.judge import CHECKS, judge

SHIPPED = world.weights_root() / world.RENEG_BIN
# (arm name, rule or "nag" or "g1", negative: "null", "reneg" or None)
ARMS = [(f"{rule}-{neg}", rule, neg) for rule in RULES for neg in ("null", "reneg")]
ARMS += [("nag-null", "nag", "null"), ("nag-reneg", "nag", "reneg"), ("g1", "g1", None)]
PRIMARY = [(f"{rule}-reneg", f"{rule}-null") for rule in RULES] + [("nag-reneg", "nag-null")]
SECONDARY = [("nag-reneg", "cfg-reneg"), ("nag-null", "g1")]
SECONDARY += [(f"{rule}-null", "cfg-null") for rule in RULES if rule != "cfg"]
GRID_ARMS = ("cfg-null", "cfg-reneg", "apg-reneg", "nag-null", "nag-reneg", "g1")


def _settings(spec, rule: str, seed: int):
    if rule == "nag":
        return settings_for(spec, seed=seed, guidance=1.0, nag=NagParams())
    if rule == "g1":
        return settings_for(spec, seed=seed, guidance=1.0)
    return settings_for(spec, seed=seed, guidance_rule=rule)


def render_arm(pipe, spec, neg, reward, rule, negative, prompts, seeds) -> dict[str, np.ndarray]:
    judged, rewards, seconds, first = [], [], [], []
    for prompt in prompts:
        for seed in range(seeds):
            settings = _settings(spec, rule, seed)
            arm = attached(pipe, neg, spec) if negative == "reneg" else detached(pipe)
            start = time.perf_counter()
            with arm:
                frames = generate(pipe, spec, prompt, settings)
            seconds.append(time.perf_counter() - start)
            judged.append(judge(frames, prompt))
            rewards.append(mean_reward(reward, frames, prompt))
            if seed == 0:
                first.append(frames)
    checks = {k: np.array([j.get(k, np.nan) for j in judged]) for k in CHECKS}
    return {
        "judge": np.array([j["accuracy"] for j in judged]),
        "passed": np.array([j["passed"] for j in judged]),
        "reward": np.array(rewards),
        "seconds": np.array(seconds),
        "frames": np.stack(first),
        **{f"check_{k}": v for k, v in checks.items()},
    }


def paired(a: np.ndarray, b: np.ndarray, prompts: int) -> dict:
    diff = a.reshape(prompts, -1).mean(1) - b.reshape(prompts, -1).mean(1)
    mean, low, high = bootstrap_interval(diff)
    verdict = "helps" if low > 0 else "hurts" if high < 0 else "level"
    return {"mean": mean, "low": low, "high": high, "half_width": (high - low) / 2, "verdict": verdict}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="shapes-t2v or shapes-t2i")
    p.add_argument("--max-prompts", type=int, help="only the first held-out prompts")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", type=Path, help="default samples/out/guidance/MODEL")
    args = p.parse_args()
    torch.set_num_threads(1)  # timings comparable across arms; one core left for other work

    out = args.out or Path("samples/out/guidance") / args.model
    (out / "arms").mkdir(parents=True, exist_ok=True)
    prompts = world.prompts_file("heldout").read_text().split("\n")
    prompts = [t.strip() for t in prompts if t.strip()][: args.max_prompts]
    pipe = load_pipeline(args.model, "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    spec = pipe.reneg_spec
    neg = load_embedding(SHIPPED)
    reward = load_reward_spec("shapes-reward")

    results = {}
    for name, rule, negative in ARMS:
        path = out / "arms" / f"{name}.npz"
        if not path.exists():
            data = render_arm(pipe, spec, neg, reward, rule, negative, prompts, args.seeds)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **data)
            tmp.replace(path)
            print(f"{name}: judge {data['judge'].mean():.3f} reward {data['reward'].mean():.3f}", flush=True)
        results[name] = dict(np.load(path))

    n = len(prompts)
    report = {
        "model": args.model,
        "prompts": n,
        "seeds": args.seeds,
        "arms": {},
        "primary": {},
        "secondary": {},
    }
    print(f"\n{args.model}: {n} held-out prompts x {args.seeds} seeds\n")
    print("| arm | judge | pass | reward | s/sample | " + " | ".join(CHECKS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(CHECKS))
    for name, *_ in ARMS:
        r = results[name]
        checks = {
            k: float(np.nanmean(r[f"check_{k}"])) for k in CHECKS if not np.isnan(r[f"check_{k}"]).all()
        }
        report["arms"][name] = {
            "judge": float(r["judge"].mean()),
            "passed": float(r["passed"].mean()),
            "reward": float(r["reward"].mean()),
            "seconds": float(np.median(r["seconds"])),
            "checks": checks,
        }
        row = report["arms"][name]
        cells = " | ".join(f"{checks[k]:.3f}" if k in checks else "-" for k in CHECKS)
        print(
            f"| {name} | {row['judge']:.3f} | {row['passed']:.3f} | {row['reward']:.3f} | {row['seconds']:.2f} | {cells} |"
        )
    for label, pairs in (("primary", PRIMARY), ("secondary", SECONDARY)):
        print(f"\n{label}: paired difference, mean [95% bootstrap over prompts]\n")
        print("| comparison | judge | verdict | reward | verdict |")
        print("|---|---|---|---|---|")
        for a, b in pairs:
            entry = {m: paired(results[a][m], results[b][m], n) for m in ("judge", "reward")}
            report[label][f"{a} - {b}"] = entry
            j, w = entry["judge"], entry["reward"]
            print(
                f"| {a} - {b} | {j['mean']:+.3f} [{j['low']:+.3f}, {j['high']:+.3f}] | {j['verdict']} | "
                f"{w['mean']:+.3f} [{w['low']:+.3f}, {w['high']:+.3f}] | {w['verdict']} |"
            )
    (out / "report.json").write_text(json.dumps(report, indent=2))
    frames = {name: results[name]["frames"] for name in GRID_ARMS}
    picture_grid(frames, prompts, 1, min(6, n), out / "grid.png")
    print(f"\nwrote {out / 'report.json'} and {out / 'grid.png'}")


if __name__ == "__main__":
    main()
