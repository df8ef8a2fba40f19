"""`reneg-validate`: does a transferred embedding make videos better? A/B/C over a prompt set.

For every prompt and seed three arms are rendered with the same initial noise: null text (the plain
pipeline), the handcrafted negative prompt (default: the ReNeg paper's), and the ReNeg embedding. Every
frame is scored; a video's score is its mean frame reward. Reported (`core.stats`): the mean reward per
arm and the paired difference ReNeg minus each baseline, each with a nested bootstrap interval (prompts,
then seeds within prompts); the per-prompt win rate with a Wilson interval; n; a verdict in words.
Written: `report.json`, a static `index.html` that works opened from disk (paired-difference plot, videos
side by side, per-frame curves as PNG), the videos.

The (prompt, seed, arm) items are shared out over the processes of `accelerate launch` (`core.shard`);
each finished item is written atomically, the main process merges, and `--resume` completes a run that
was interrupted. Every item's noise comes from its seed, so 1 and n processes give the same report.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import numpy as np

from ..core.errors import ReNegError, UsageError
from ..core.prompts import PAPER_NEGATIVE_ALIAS, baseline_negative
from ..rewards.frames import frame_scores
from .common import SPEED_EPILOG, Parser, add_speed_option, prompts_from_args

ARMS = ("null", "handcrafted", "reneg")
BASELINES = ("null", "handcrafted")
# Colour of the paired-difference plot's marks (matplotlib's tab:purple), named so a test can find them.
DIFF_COLOR = "#9467bd"


def build_parser() -> argparse.ArgumentParser:

    p = Parser(
        prog="reneg-validate",
        description="Render null-text, handcrafted-negative and ReNeg arms with the same seeds over a prompt "
        "set, score every frame, and report per arm the mean reward, the paired difference ReNeg minus each "
        "baseline (nested bootstrap over prompts and seeds), ReNeg's per-prompt win rate (Wilson interval) "
        "and a verdict, as JSON and a static HTML report. Under `accelerate launch` the (prompt, seed, arm) "
        "items are shared out over the processes; --resume completes an interrupted run.",
        epilog="tiny-* models and rewards are stand-ins with random weights: their reports are noise, for "
        "tests and demos only.\nexample: reneg-validate --model tiny-zeroscope --neg ../shared/reneg/"
        "sd2.1_reneg_emb.bin --prompts-file ../shared/prompts/reno_example_prompts.txt --max-prompts 3 "
        "--seeds 2 --reward tiny-imagereward --out samples/out/validate\n"
        "scale-out: accelerate launch --multi_gpu --num_processes 2 -m reneg_video.commands.validate --cpu ...\n\n"
        + SPEED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="model name (see reneg-video --list-models), or a diffusers folder"
    )
    p.add_argument(
        "--model-path",
        metavar="DIR",
        help="load the weights from this diffusers folder (LTX-Video: or a single-file .safetensors)",
    )
    p.add_argument("--neg", required=True, metavar="PATH", help="the ReNeg embedding to validate")
    p.add_argument("--prompts-file", required=True, metavar="FILE", help="one prompt per line")
    p.add_argument("--max-prompts", type=int, help="use only the first K prompts")
    p.add_argument("--seeds", type=int, default=2, help="seeds per prompt (0..N-1); default 2")
    p.add_argument("--reward", default="imagereward", help="reward or ensemble scoring every frame")
    p.add_argument(
        "--negative-prompt",
        default=None,
        help=f"handcrafted baseline; {PAPER_NEGATIVE_ALIAS} = the ReNeg paper's handcrafted prompt; default: the "
        f"model's own (its spec's [defaults] negative_prompt), else {PAPER_NEGATIVE_ALIAS}",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="report folder (created; must not exist unless --resume)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="complete the interrupted run in --out (same arguments): finished videos are kept, not redone",
    )
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
    p.add_argument(
        "--cpu",
        action="store_true",
        help="run every process on CPU (under `accelerate launch --multi_gpu`: gloo processes on CPU)",
    )
    add_speed_option(p)
    return p


def run(argv: list[str] | None = None) -> dict | None:
    """Validate; returns the report in the main process, None in the others."""
    from ..core.embedding import load_embedding
    from ..core.encoders import check_family
    from ..core.shard import check_run_folder
    from ..core.speed import check_speed
    from ..models.generate import require_cfg, settings_for
    from ..models.pipeline import resolve_device, resolve_dtype, resolve_model, resolve_spec
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
    require_cfg(settings, "--neg")  # every arm would be the same video
    neg = load_embedding(args.neg)
    check_family(neg.family, spec.family, spec.name, args.neg)
    handcrafted = baseline_negative(args.negative_prompt, spec.defaults.negative_prompt)
    out = Path(args.out)
    manifest = {
        "model": spec.name,
        "embedding_sha256": neg.sha256,
        "prompts": prompts,
        "seeds": args.seeds,
        "reward": args.reward,
        "handcrafted_negative": handcrafted,
        "settings": settings.as_dict(),
    }
    check_run_folder(out, manifest, args.resume)
    check_speed(args.speed)
    device = "cpu" if args.cpu else args.device
    resolve_dtype(args.dtype, spec, resolve_device(device))  # refuse bad values before any process group
    _, folder = resolve_model(args.model, args.model_path)  # refuses missing weights before any work
    from ..core.shard import Processes

    with Processes(cpu=args.cpu) as procs:
        return _validate(
            procs, spec, folder, device, neg, handcrafted, prompts, settings, args, out, manifest
        )


def _item_key(p_index: int, seed: int, arm: str) -> str:
    return f"p{p_index:03d}-s{seed}-{arm}"


def _validate(procs, spec, folder, device, neg, handcrafted, prompts, settings, args, out: Path, manifest):
    from dataclasses import replace

    from tqdm.auto import tqdm

    from ..core.export import export_video
    from ..core.inject import attach, detached
    from ..core.shard import ItemStore, start_run_folder
    from ..models.generate import generate
    from ..models.pipeline import load_pipeline, resolve_device, resolve_dtype
    from ..rewards import load_reward_spec

    if device == "auto" and procs.count > 1:
        device = str(procs.device)  # one GPU per process under accelerate launch
    device = resolve_device(device)
    dtype = resolve_dtype(args.dtype, spec, device)
    procs.barrier()  # every process has checked --out before the main process creates it
    if procs.is_main:
        if spec.standin:
            print(
                f"note: {spec.name} is a stand-in with random weights: the report is noise", file=sys.stderr
            )
        if not args.resume:
            start_run_folder(out, manifest)
        (out / "videos").mkdir(exist_ok=True)
        (out / "curves").mkdir(exist_ok=True)
    procs.barrier()
    store = ItemStore(out)
    items = [(p, seed, arm) for p in range(len(prompts)) for seed in range(args.seeds) for arm in ARMS]
    todo = procs.mine([item for item in items if not store.done(_item_key(*item))])
    if todo:
        from ..core.speed import describe_speed, scaled_steps

        pipe = load_pipeline(
            args.model, device, dtype, model_path=args.model_path, adapter=spec.source, speed=args.speed
        )
        steps = scaled_steps(settings.steps, pipe.reneg_speed)
        print(f"speed: {describe_speed(pipe.reneg_speed)} steps={settings.steps}->{steps}", file=sys.stderr)
        settings = replace(settings, steps=steps)
        pipe.set_progress_bar_config(disable=True)
        attach(pipe, neg, spec)
        reward = load_reward_spec(args.reward, device=device)
        bar = tqdm(total=len(todo), desc=f"reneg-validate [{procs.index}]", dynamic_ncols=True)
        for p_index, seed, arm in todo:
            prompt, seeded = prompts[p_index], replace(settings, seed=seed)
            if arm == "reneg":
                frames = generate(pipe, spec, prompt, seeded)
            else:
                with detached(pipe):
                    frames = generate(
                        pipe, spec, prompt, seeded, handcrafted if arm == "handcrafted" else None
                    )
            key = _item_key(p_index, seed, arm)
            export_video(frames, out / "videos" / f"{key}.mp4", settings.fps)
            scores = frame_scores(reward, frames, prompt)
            record = {"video": f"videos/{key}.mp4", "frames": scores, "mean": float(np.mean(scores))}
            # Last: the item counts as done from here. The speed preset's settings travel with each item, so
            # the merge reports them even when the main process rendered nothing (a resumed run).
            item = {"reward": reward.name, "speed": pipe.reneg_speed, "steps": steps, **record}
            store.write(key, item)
            bar.update(1)
        bar.close()
    procs.barrier()
    if not procs.is_main:
        return None
    return _merge(spec, neg, handcrafted, settings, args, prompts, store, out)


def _merge(spec, neg, handcrafted, settings, args, prompts, store, out: Path) -> dict:
    """The main process: every item read back, the statistics, the curves and plot, then the report."""
    from dataclasses import replace

    from ..core.atomic import atomic_path

    rows, reward_name = [], None
    for p_index, prompt in enumerate(prompts):
        row = {"prompt": prompt, "seeds": []}
        for seed in range(args.seeds):
            entry = {"seed": seed, "videos": {}, "frames": {}, "mean": {}}
            for arm in ARMS:
                item = store.read(_item_key(p_index, seed, arm))
                reward_name = item["reward"]
                entry["videos"][arm], entry["frames"][arm], entry["mean"][arm] = (
                    item["video"],
                    item["frames"],
                    item["mean"],
                )
            entry["curve"] = _plot_curve(
                out / f"curves/p{p_index:03d}-s{seed}.png", entry["frames"], reward_name
            )
            row["seeds"].append(entry)
        row["mean"] = {arm: float(np.mean([e["mean"][arm] for e in row["seeds"]])) for arm in ARMS}
        rows.append(row)
    first = store.read(_item_key(0, 0, ARMS[0]))
    settings = replace(settings, steps=first.get("steps", settings.steps))  # as the speed preset ran it
    report = _summary(spec, neg, reward_name, handcrafted, settings, args, rows)
    report["speed"] = first.get("speed")
    report["paired_plot"] = _plot_differences(out / "paired_differences.png", report, rows, reward_name)
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(_html(report))
    with atomic_path(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _grids(rows) -> dict[str, np.ndarray]:
    """Per arm the [prompts, seeds] grid of video scores."""
    return {arm: np.array([[e["mean"][arm] for e in row["seeds"]] for row in rows]) for arm in ARMS}


def _summary(spec, neg, reward_name, handcrafted, settings, args, rows) -> dict:
    from ..core import stats

    grids = _grids(rows)
    arms = {arm: stats.mean_ci(grid) for arm, grid in grids.items()}
    differences = {f"reneg_minus_{b}": stats.mean_ci(grids["reneg"] - grids[b]) for b in BASELINES}
    wins = {f"reneg_vs_{b}": stats.win_rate(grids["reneg"], grids[b]) for b in BASELINES}
    verdicts = {
        b: stats.verdict("ReNeg", b, wins[f"reneg_vs_{b}"], differences[f"reneg_minus_{b}"], reward_name)
        for b in BASELINES
    }
    return {
        "model": spec.name,
        "standin": spec.standin,
        "note": "stand-in with random weights: these numbers are noise" if spec.standin else None,
        "embedding": {"source": neg.source, "sha256": neg.sha256, "family": neg.family.name},
        "reward": reward_name,
        "handcrafted_negative": handcrafted,
        "seeds": args.seeds,
        "settings": settings.as_dict(),
        "n": {"prompts": len(rows), "seeds": args.seeds, "videos": len(rows) * args.seeds * len(ARMS)},
        "mean_reward": {arm: v["mean"] for arm, v in arms.items()},
        "arms": arms,
        "paired_difference": differences,
        "win_rate": wins,
        "verdict": verdicts,
        "interval": f"{stats.LEVEL:.0%}: nested bootstrap over prompts then seeds "
        f"({stats.BOOTSTRAP_RESAMPLES} resamples, seed 0) for means; Wilson score for win rates",
        "prompts": rows,
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_curve(path: Path, frames: dict[str, list[float]], reward_name: str) -> str:
    from ..core.atomic import atomic_path

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 2.4), dpi=100)
    for arm, scores in frames.items():
        ax.plot(range(len(scores)), scores, marker="o", markersize=3, label=arm)
    ax.set_xlabel("frame")
    ax.set_ylabel(reward_name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return f"{path.parent.name}/{path.name}"


def _plot_differences(path: Path, report: dict, rows, reward_name: str) -> str:
    """Per baseline: each prompt's ReNeg-minus-baseline difference (mean over seeds, seeds as small dots),
    and the overall mean with its interval; the zero line marks no difference."""
    from ..core.atomic import atomic_path

    plt = _pyplot()
    grids = _grids(rows)
    fig, axes = plt.subplots(1, len(BASELINES), figsize=(8, 3), dpi=100, sharey=True, squeeze=False)
    for ax, base in zip(axes[0], BASELINES, strict=True):
        diff = grids["reneg"] - grids[base]  # [prompts, seeds]
        x = np.arange(len(rows))
        for s in range(diff.shape[1]):
            ax.scatter(x, diff[:, s], s=8, color=DIFF_COLOR, alpha=0.35, linewidths=0)
        ax.scatter(x, diff.mean(axis=1), s=40, color=DIFF_COLOR, label="prompt (mean over seeds)")
        ci = report["paired_difference"][f"reneg_minus_{base}"]
        ax.axhspan(
            ci["low"], ci["high"], color=DIFF_COLOR, alpha=0.25, label=f"mean, {ci['level']:.0%} interval"
        )
        ax.axhline(ci["mean"], color=DIFF_COLOR, linewidth=2)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"ReNeg - {base}", fontsize=9)
        ax.set_xlabel("prompt")
        ax.set_xticks(x)
    axes[0][0].set_ylabel(f"{reward_name} difference")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path.name


def _interval(v: dict) -> str:
    return f"[{v['low']:.4g}, {v['high']:.4g}]"


def _html(report: dict) -> str:
    e = html.escape
    n = report["n"]
    lines = [
        "<!doctype html><meta charset='utf-8'><title>reneg-validate report</title>",
        "<style>body{font-family:sans-serif;margin:1em}video{width:32%}td,th{padding:2px 8px}</style>",
        f"<h1>ReNeg validation: {e(report['model'])}</h1>",
    ]
    if report["note"]:
        lines.append(f"<p><b>{e(report['note'])}</b></p>")
    lines.append(
        f"<p>embedding {e(report['embedding']['source'])}, reward {e(report['reward'])}, "
        f"n = {n['prompts']} prompts x {n['seeds']} seeds x 3 arms = {n['videos']} videos</p>"
    )
    lines += [f"<p class='verdict'><b>{e(text)}</b></p>" for text in report["verdict"].values()]
    lines.append("<table><tr><th>arm</th><th>mean reward</th><th>95% interval</th></tr>")
    lines += [
        f"<tr><td>{arm}</td><td>{v['mean']:.4f}</td><td>{_interval(v)}</td></tr>"
        for arm, v in report["arms"].items()
    ]
    lines.append("</table><table><tr><th>paired difference</th><th>mean</th><th>95% interval</th></tr>")
    lines += [
        f"<tr><td>{k}</td><td>{v['mean']:+.4g}</td><td>{_interval(v)}</td></tr>"
        for k, v in report["paired_difference"].items()
    ]
    lines.append("</table><table><tr><th>comparison</th><th>won / tied / lost</th><th>win rate</th>"
                 "<th>95% interval (Wilson)</th></tr>")  # fmt: skip
    lines += [
        f"<tr><td>{k}</td><td>{v['wins']} / {v['ties']} / {v['losses']}</td><td>{v['rate']:.2f}</td>"
        f"<td>[{v['low']:.2f}, {v['high']:.2f}]</td></tr>"
        for k, v in report["win_rate"].items()
    ]
    lines.append(f"</table><p><small>{e(report['interval'])}</small></p>")
    lines.append(
        f"<img id='paired-differences' src='{report['paired_plot']}' width='800' height='300' "
        "alt='paired differences, ReNeg minus each baseline, per prompt'>"
    )
    lines.append("<p>left to right: null text | handcrafted negative | ReNeg</p>")
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
    if report is not None:
        for text in report["verdict"].values():
            print(text, file=sys.stderr)
        summary = {k: report[k] for k in ("n", "arms", "paired_difference", "win_rate", "verdict")}
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
