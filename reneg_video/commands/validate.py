"""`reneg-validate`: does a transferred embedding make videos better? A/B/C over a prompt set.

For every prompt and seed three arms are rendered with the same initial noise: null text (the plain
pipeline), the handcrafted negative prompt (default: the ReNeg paper's), and the ReNeg embedding. Every
frame is scored; a video's score is its mean frame reward. Reported: the mean reward per arm, and the
per-prompt win rate of ReNeg over each baseline (a prompt is won when ReNeg's mean over seeds beats the
baseline's) with a percentile bootstrap interval over prompts. Written: `report.json`, a static
`index.html` that works opened from disk (videos side by side, per-frame curves as PNG), the videos.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import sys
from pathlib import Path

import numpy as np

from ..core.errors import ReNegError, UsageError
from ..core.prompts import PAPER_NEGATIVE_ALIAS, PAPER_NEGATIVE_PROMPT
from ..rewards.frames import frame_scores
from .common import SPEED_EPILOG, Parser, add_speed_option, prompts_from_args

ARMS = ("null", "handcrafted", "reneg")
# Percentile bootstrap over prompts: resamples and the interval's coverage.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.95


def win_rate(reneg: list[float], baseline: list[float], seed: int = 0) -> dict:
    """Fraction of prompts where ReNeg beats the baseline (ties count half), with a bootstrap interval."""
    wins = np.array([1.0 if r > b else 0.5 if r == b else 0.0 for r, b in zip(reneg, baseline, strict=True)])
    rng = random.Random(seed)
    n = len(wins)
    stats = sorted(
        float(np.mean([wins[rng.randrange(n)] for _ in range(n)])) for _ in range(BOOTSTRAP_RESAMPLES)
    )
    tail = (1 - BOOTSTRAP_LEVEL) / 2
    low = stats[int(tail * (BOOTSTRAP_RESAMPLES - 1))]
    high = stats[int((1 - tail) * (BOOTSTRAP_RESAMPLES - 1))]
    return {"rate": float(wins.mean()), "low": low, "high": high, "level": BOOTSTRAP_LEVEL, "prompts": n}


def build_parser() -> argparse.ArgumentParser:

    p = Parser(
        prog="reneg-validate",
        description="Render null-text, handcrafted-negative and ReNeg arms with the same seeds over a prompt "
        "set, score every frame, and report mean rewards and ReNeg's per-prompt win rate (bootstrap interval) "
        "as JSON and a static HTML report.",
        epilog="tiny-* models and rewards are stand-ins with random weights: their reports are noise, for "
        "tests and demos only.\nexample: reneg-validate --model tiny-zeroscope --neg ../shared/reneg/"
        "sd2.1_reneg_emb.bin --prompts-file ../shared/prompts/reno_example_prompts.txt --max-prompts 3 "
        "--seeds 2 --reward tiny-imagereward --out samples/out/validate\n\n" + SPEED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="model name (see reneg-video --list-models)")
    p.add_argument("--model-path", metavar="DIR", help="load the weights from this diffusers folder")
    p.add_argument("--neg", required=True, metavar="PATH", help="the ReNeg embedding to validate")
    p.add_argument("--prompts-file", required=True, metavar="FILE", help="one prompt per line")
    p.add_argument("--max-prompts", type=int, help="use only the first K prompts")
    p.add_argument("--seeds", type=int, default=2, help="seeds per prompt (0..N-1); default 2")
    p.add_argument("--reward", default="imagereward", help="reward or ensemble scoring every frame")
    p.add_argument(
        "--negative-prompt",
        default=PAPER_NEGATIVE_ALIAS,
        help=f"handcrafted baseline; default {PAPER_NEGATIVE_ALIAS} = the ReNeg paper's handcrafted prompt",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (created; must not exist)")
    for name, kind in (
        ("frames", int),
        ("height", int),
        ("width", int),
        ("steps", int),
        ("guidance", float),
        ("fps", int),
    ):
        p.add_argument(f"--{name}", type=kind, help=f"{name} (default: the model spec's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    add_speed_option(p)
    return p


def run(argv: list[str] | None = None) -> dict:
    from ..core.embedding import load_embedding
    from ..core.encoders import check_family
    from ..core.speed import check_speed
    from ..models.generate import settings_for
    from ..models.pipeline import model_folder, resolve_device, resolve_dtype, resolve_spec
    from ..rewards import check_reward_name, parse_reward_spec

    args = build_parser().parse_args(argv)
    spec = resolve_spec(args.model)
    if spec.kind != "video":
        raise UsageError(f"--model {spec.name}: an image model; reneg-validate compares videos")
    if args.max_prompts is not None and args.max_prompts <= 0:
        raise UsageError(f"--max-prompts {args.max_prompts}: expected a positive count")
    args.prompt = []  # prompts_from_args reads --prompt too; this command takes a file only
    prompts = prompts_from_args(args)[: args.max_prompts]
    if args.seeds <= 0:
        raise UsageError(f"--seeds {args.seeds}: expected a positive number of seeds per prompt")
    for name, _ in parse_reward_spec(args.reward):
        check_reward_name(name)
    settings = settings_for(
        spec, seed=0, frames=args.frames, height=args.height, width=args.width, steps=args.steps,
        guidance=args.guidance, fps=args.fps,
    )  # fmt: skip
    neg = load_embedding(args.neg)
    check_family(neg.family, spec.family, spec.name, args.neg)
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"--out {out}: already exists; choose a new folder name")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist; create it first")
    handcrafted = (
        PAPER_NEGATIVE_PROMPT if args.negative_prompt == PAPER_NEGATIVE_ALIAS else args.negative_prompt
    )
    check_speed(args.speed)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, spec, device)
    folder = model_folder(spec, args.model_path)
    return _validate(spec, folder, device, dtype, neg, handcrafted, prompts, settings, args, out)


def _validate(spec, folder, device, dtype, neg, handcrafted, prompts, settings, args, out: Path) -> dict:
    from dataclasses import replace

    from tqdm.auto import tqdm

    from ..core.atomic import atomic_dir
    from ..core.export import export_video
    from ..core.inject import attach, detached
    from ..models.generate import generate
    from ..models.pipeline import load_pipeline
    from ..rewards import load_reward_spec

    if spec.standin:
        print(f"note: {spec.name} is a stand-in with random weights: the report is noise", file=sys.stderr)
    from ..core.speed import describe_speed, scaled_steps

    pipe = load_pipeline(folder, device, dtype, adapter=spec.source, speed=args.speed)
    steps = scaled_steps(settings.steps, pipe.reneg_speed)
    print(f"speed: {describe_speed(pipe.reneg_speed)} steps={settings.steps}->{steps}", file=sys.stderr)
    settings = replace(settings, steps=steps)
    pipe.set_progress_bar_config(disable=True)
    attach(pipe, neg, spec)
    reward = load_reward_spec(args.reward, device=device)
    rows = []
    with atomic_dir(out) as tmp:
        (tmp / "videos").mkdir()
        (tmp / "curves").mkdir()
        bar = tqdm(total=len(prompts) * args.seeds, desc="reneg-validate", dynamic_ncols=True)
        for p_index, prompt in enumerate(prompts):
            row = {"prompt": prompt, "seeds": []}
            for seed in range(args.seeds):
                seeded = replace(settings, seed=seed)
                with detached(pipe):
                    arms = {
                        "null": generate(pipe, spec, prompt, seeded, None),
                        "handcrafted": generate(pipe, spec, prompt, seeded, handcrafted),
                    }
                arms["reneg"] = generate(pipe, spec, prompt, seeded)
                entry = {"seed": seed, "videos": {}, "frames": {}, "mean": {}}
                for arm, frames in arms.items():
                    name = f"videos/p{p_index:03d}-s{seed}-{arm}.mp4"
                    export_video(frames, tmp / name, settings.fps)
                    scores = frame_scores(reward, frames, prompt)
                    entry["videos"][arm], entry["frames"][arm] = name, scores
                    entry["mean"][arm] = float(np.mean(scores))
                entry["curve"] = _plot_curve(
                    tmp / f"curves/p{p_index:03d}-s{seed}.png", entry["frames"], reward.name
                )
                row["seeds"].append(entry)
                bar.update(1)
            row["mean"] = {arm: float(np.mean([e["mean"][arm] for e in row["seeds"]])) for arm in ARMS}
            rows.append(row)
        bar.close()
        report = _summary(spec, neg, reward, handcrafted, settings, args, rows)
        report["speed"] = pipe.reneg_speed
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "index.html").write_text(_html(report))
    return report


def _summary(spec, neg, reward, handcrafted, settings, args, rows) -> dict:
    per_arm = {arm: [row["mean"][arm] for row in rows] for arm in ARMS}
    return {
        "model": spec.name,
        "standin": spec.standin,
        "note": "stand-in with random weights: these numbers are noise" if spec.standin else None,
        "embedding": {"source": neg.source, "sha256": neg.sha256, "family": neg.family.name},
        "reward": reward.name,
        "handcrafted_negative": handcrafted,
        "seeds": args.seeds,
        "settings": settings.as_dict(),
        "mean_reward": {arm: float(np.mean(v)) for arm, v in per_arm.items()},
        "win_rate": {
            f"reneg_vs_{base}": win_rate(per_arm["reneg"], per_arm[base]) for base in ("null", "handcrafted")
        },
        "prompts": rows,
    }


def _plot_curve(path: Path, frames: dict[str, list[float]], reward_name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.4), dpi=100)
    for arm, scores in frames.items():
        ax.plot(range(len(scores)), scores, marker="o", markersize=3, label=arm)
    ax.set_xlabel("frame")
    ax.set_ylabel(reward_name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"{path.parent.name}/{path.name}"


def _html(report: dict) -> str:
    e = html.escape
    wr = report["win_rate"]
    lines = [
        "<!doctype html><meta charset='utf-8'><title>reneg-validate report</title>",
        "<style>body{font-family:sans-serif;margin:1em}video{width:32%}td,th{padding:2px 8px}</style>",
        f"<h1>ReNeg validation: {e(report['model'])}</h1>",
    ]
    if report["note"]:
        lines.append(f"<p><b>{e(report['note'])}</b></p>")
    lines.append(
        f"<p>embedding {e(report['embedding']['source'])}, reward {e(report['reward'])}, seeds {report['seeds']}</p>"
    )
    lines.append("<table><tr><th>arm</th><th>mean reward</th></tr>")
    lines += [f"<tr><td>{arm}</td><td>{v:.4f}</td></tr>" for arm, v in report["mean_reward"].items()]
    lines.append("</table><table><tr><th>comparison</th><th>win rate</th><th>95% interval</th></tr>")
    lines += [
        f"<tr><td>{k}</td><td>{v['rate']:.2f}</td><td>[{v['low']:.2f}, {v['high']:.2f}]</td></tr>"
        for k, v in wr.items()
    ]
    lines.append("</table><p>left to right: null text | handcrafted negative | ReNeg</p>")
    for row in report["prompts"]:
        lines.append(f"<h3>{e(row['prompt'])}</h3>")
        for entry in row["seeds"]:
            means = ", ".join(f"{a} {entry['mean'][a]:.3f}" for a in ARMS)
            lines.append(f"<p>seed {entry['seed']}: {means}</p><div>")
            lines += [f"<video src='{entry['videos'][a]}' controls loop muted></video>" for a in ARMS]
            lines.append(f"</div><img src='{entry['curve']}' alt='per-frame rewards'>")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    try:
        report = run(argv)
    except ReNegError as exc:
        print(f"reneg-validate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"mean_reward": report["mean_reward"], "win_rate": report["win_rate"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
