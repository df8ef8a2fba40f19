"""The report of `reneg-validate`: statistics per arm and paired (`core.stats`), the plots, the HTML page.

Rows are per prompt: {"prompt", "seeds": [{"seed", "videos", "frames", "mean", "curve"} per seed], "mean"},
each dict keyed by arm: the arms rendered (`--arms`, all of `ARMS` by default), in `ARMS`' order. A
comparison is reported for each baseline rendered beside ReNeg. Written by `render.validate` once every
item is done.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np

ARMS = ("null", "handcrafted", "reneg")
ARM_TITLES = {"null": "null text", "handcrafted": "handcrafted negative", "reneg": "ReNeg"}
BASELINES = ("null", "handcrafted")
# Prompts label the plots by their text, cut to this many characters (an ellipsis marks the cut).
PROMPT_LABEL_CHARS = 24
# Colour of the paired-difference plot's marks (matplotlib's tab:purple), named so a test can find them.
DIFF_COLOR = "#9467bd"


def arms_of(rows) -> tuple[str, ...]:
    """The arms the rows hold, in `ARMS`' order."""
    return tuple(arm for arm in ARMS if arm in rows[0]["seeds"][0]["mean"])


def baselines_of(rows) -> tuple[str, ...]:
    """The baselines rendered beside ReNeg: the comparisons the report has."""
    return tuple(b for b in BASELINES if b in arms_of(rows))


def _grids(rows) -> dict[str, np.ndarray]:
    """Per arm the [prompts, seeds] grid of video scores."""
    return {arm: np.array([[e["mean"][arm] for e in row["seeds"]] for row in rows]) for arm in arms_of(rows)}


def prompt_label(prompt: str) -> str:
    """`prompt` cut to `PROMPT_LABEL_CHARS` characters, an ellipsis marking the cut."""
    short = " ".join(prompt.split())
    return short if len(short) <= PROMPT_LABEL_CHARS else short[: PROMPT_LABEL_CHARS - 1].rstrip() + "\u2026"


def prompt_labels(prompts: list[str]) -> list[str]:
    """`prompt_label` of each prompt; prompts whose labels collide (the same opening) lose the words they
    share at the start, an ellipsis in their place, so that their labels show where they differ."""
    labels = [prompt_label(text) for text in prompts]
    for label in set(labels):
        group = [i for i, other in enumerate(labels) if other == label]
        texts = [" ".join(prompts[i].split()) for i in group]
        shared = os.path.commonprefix(texts).rpartition(" ")[0]  # whole words only
        if len(set(texts)) > 1 and shared:  # the same prompt twice keeps its label
            for i, text in zip(group, texts, strict=True):
                labels[i] = prompt_label("\u2026" + text[len(shared) + 1 :])
    return labels


def video_means(rows) -> dict:
    """Per arm, each video-level score (`rewards.temporal`, docs/rewards.md "Video-level scores") as a mean
    with its nested-bootstrap interval over prompts and seeds; a score some video lacks (consistency
    without a CLIP-based reward, items of an older run) is left out of that arm."""
    from ..core import stats
    from ..rewards.temporal import SCORES

    out: dict = {"arms": {}}
    for arm in arms_of(rows):
        per = [[(e.get("video_scores") or {}).get(arm) or {} for e in row["seeds"]] for row in rows]
        keys = [k for k in SCORES if all(v.get(k) is not None for r in per for v in r)]
        out["arms"][arm] = {k: stats.mean_ci([[v[k] for v in r] for r in per]) for k in keys}
    first = (rows[0]["seeds"][0].get("video_scores") or {}).get(arms_of(rows)[0]) or {}
    out["embedding"], out["consistency_skipped"] = first.get("embedding"), first.get("consistency_skipped")
    return out


def summary(spec, neg, reward_name: str, handcrafted: str, settings, seeds: int, rows: list[dict]) -> dict:
    """The report's figures: per arm, paired ReNeg minus each baseline, win rates and verdicts."""
    from ..core import stats

    grids, baselines = _grids(rows), baselines_of(rows)
    arms = {arm: stats.mean_ci(grid) for arm, grid in grids.items()}
    differences = {f"reneg_minus_{b}": stats.mean_ci(grids["reneg"] - grids[b]) for b in baselines}
    wins = {f"reneg_vs_{b}": stats.win_rate(grids["reneg"], grids[b]) for b in baselines}
    verdicts = {
        b: stats.verdict("ReNeg", b, wins[f"reneg_vs_{b}"], differences[f"reneg_minus_{b}"], reward_name)
        for b in baselines
    }
    return {
        "model": spec.name,
        "standin": spec.standin,
        "note": "stand-in with random weights: these numbers are noise" if spec.standin else None,
        "embedding": {"source": neg.source, "sha256": neg.sha256, "family": neg.family.name},
        "reward": reward_name,
        "handcrafted_negative": handcrafted,
        "seeds": seeds,
        "settings": settings.as_dict(),
        "n": {"prompts": len(rows), "seeds": seeds, "videos": len(rows) * seeds * len(grids)},
        "mean_reward": {arm: v["mean"] for arm, v in arms.items()},
        "arms": arms,
        "paired_difference": differences,
        "win_rate": wins,
        "verdict": verdicts,
        "video_scores": video_means(rows),
        "interval": f"{stats.LEVEL:.0%}: nested bootstrap over prompts then seeds "
        f"({stats.BOOTSTRAP_RESAMPLES} resamples, seed 0) for means; Wilson score for win rates",
        "prompts": rows,
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(path: Path, frames: dict[str, list[float]], reward_name: str) -> str:
    from ..core.atomic import atomic_path
    from ..rewards import reward_label

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 2.4), dpi=100)
    for arm, scores in frames.items():
        ax.plot(range(len(scores)), scores, marker="o", markersize=3, label=arm)
    ax.set_xlabel("frame")
    ax.set_ylabel(reward_label(reward_name))
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return f"{path.parent.name}/{path.name}"


def plot_size(prompts: int) -> tuple[int, int]:
    """The paired-difference plot's size in pixels (at 100 dpi): a row per prompt."""
    return 800, 100 * max(3, 1 + (prompts + 2) // 3)


def plot_differences(path: Path, report: dict, rows, reward_name: str) -> str:
    """Per baseline: each prompt's ReNeg-minus-baseline difference (mean over seeds, seeds as small dots),
    and the overall mean with its interval; the zero line marks no difference. Prompts are rows, labelled
    by their text (shortened), the first at the top."""
    from ..core.atomic import atomic_path
    from ..rewards import reward_label

    plt = _pyplot()
    grids, baselines = _grids(rows), baselines_of(rows)
    width, height = plot_size(len(rows))
    fig, axes = plt.subplots(
        1, len(baselines), figsize=(width / 100, height / 100), dpi=100, sharey=True, squeeze=False
    )
    y = np.arange(len(rows))
    for ax, base in zip(axes[0], baselines, strict=True):
        diff = grids["reneg"] - grids[base]  # [prompts, seeds]
        for s in range(diff.shape[1]):
            ax.scatter(diff[:, s], y, s=8, color=DIFF_COLOR, alpha=0.35, linewidths=0)
        ax.scatter(diff.mean(axis=1), y, s=40, color=DIFF_COLOR, label="prompt (mean over seeds)")
        ci = report["paired_difference"][f"reneg_minus_{base}"]
        ax.axvspan(
            ci["low"], ci["high"], color=DIFF_COLOR, alpha=0.25, label=f"mean, {ci['level']:.0%} interval"
        )
        ax.axvline(ci["mean"], color=DIFF_COLOR, linewidth=2)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_title(f"ReNeg - {base}", fontsize=9)
        ax.set_xlabel(f"{reward_label(reward_name)} difference", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.locator_params(axis="x", nbins=5)
    axes[0][0].set_yticks(y, prompt_labels([row["prompt"] for row in rows]))
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)  # the first prompt at the top
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 24 / height, 1, 1))  # the legend's strip at the bottom
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path.name


def _interval(v: dict) -> str:
    return f"[{v['low']:.4g}, {v['high']:.4g}]"


def _video_table(video: dict | None) -> list[str]:
    """The video-level scores' means per arm as an HTML table (none for a report without them)."""
    if not video or not any(video["arms"].values()):
        return []
    names = {"flicker": "flicker", "frozen_share": "frozen share", "motion": "motion"}
    names["consistency"], names["temporal_hf"] = "consistency", "temporal hf"
    keys = [k for k in names if all(k in v for v in video["arms"].values())]
    lines = ["<table id='video-scores'><tr><th>arm (video-level, mean)</th>"]
    lines[0] += "".join(f"<th>{names[k]}</th>" for k in keys) + "</tr>"
    for arm, values in video["arms"].items():
        lines.append(
            f"<tr><td>{arm}</td>" + "".join(f"<td>{values[k]['mean']:.4f}</td>" for k in keys) + "</tr>"
        )
    where = video["embedding"] or f"skipped: {video['consistency_skipped']}"
    lines.append(
        f"</table><p><small>consistency on the image embeddings of {html.escape(str(where))}</small></p>"
    )
    return lines


def html_page(report: dict) -> str:
    e = html.escape
    n, arms = report["n"], tuple(report["arms"])
    lines = [
        "<!doctype html><meta charset='utf-8'><title>reneg-validate report</title>",
        "<style>body{font-family:sans-serif;margin:1em}video{width:32%}td,th{padding:2px 8px}</style>",
        f"<h1>ReNeg validation: {e(report['model'])}</h1>",
    ]
    if report["note"]:
        lines.append(f"<p><b>{e(report['note'])}</b></p>")
    lines.append(
        f"<p>embedding {e(report['embedding']['source'])}, reward {e(report['reward'])}, "
        f"n = {n['prompts']} prompts x {n['seeds']} seeds x {len(arms)} arms = {n['videos']} videos</p>"
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
    lines += _video_table(report.get("video_scores"))
    width, height = plot_size(n["prompts"])
    lines.append(
        f"<img id='paired-differences' src='{report['paired_plot']}' width='{width}' height='{height}' "
        "alt='paired differences, ReNeg minus each baseline, per prompt'>"
    )
    lines.append(f"<p>left to right: {' | '.join(ARM_TITLES[a] for a in arms)}</p>")
    for row in report["prompts"]:
        lines.append(f"<h3>{e(row['prompt'])}</h3>")
        for entry in row["seeds"]:
            means = ", ".join(f"{a} {entry['mean'][a]:.3f}" for a in arms)
            lines.append(f"<p>seed {entry['seed']}: {means}</p><div>")
            lines += [f"<video src='{entry['videos'][a]}' controls loop muted></video>" for a in arms]
            lines.append(f"</div><img src='{entry['curve']}' alt='per-frame rewards'>")
    return "\n".join(lines) + "\n"
