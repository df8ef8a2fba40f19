"""Render and score `reneg-validate`'s items, then merge them into the report.

An item is (prompt, seed, arm), arm one of null text, the handcrafted negative prompt and the ReNeg
embedding (those of `--arms`; all three by default), every arm from the same seeded noise. The items
are shared out over the processes of `accelerate launch` (`core.shard`); each finished item is written
atomically to the run folder, so `--resume` renders only what is missing, and the main process merges
them all.

A `ValidationJob` holds checked values only (`commands.validate` checks every option, the embedding
included, before any process group starts): nothing here checks them again.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core.embedding import NegativeEmbedding
from ..core.settings import Settings
from ..core.specs import AdapterSpec
from ..rewards.frames import frame_scores
from ..rewards.temporal import SCORES, score_video
from . import report as reports
from .report import ARMS


@dataclass(frozen=True)
class ValidationJob:
    """What one `reneg-validate` invocation asked for, checked. `manifest` is what `--resume` must match."""

    spec: AdapterSpec
    model: str  # --model as given: load_pipeline resolves it with the spec
    model_path: str | None
    weights: Path  # the folder the weights load from (resolved by the command: missing ones refuse early)
    device: str  # "auto", "cpu", "cuda", ...: resolved per process (one GPU each)
    dtype: str
    speed: str
    neg: NegativeEmbedding
    handcrafted: str
    prompts: list[str]
    seeds: int
    reward: str
    settings: Settings
    out: Path
    resume: bool
    manifest: dict
    arms: tuple[str, ...] = ARMS  # in ARMS' order, ReNeg and at least one baseline
    quiet: bool = False  # no progress bar


def item_key(p_index: int, seed: int, arm: str) -> str:
    return f"p{p_index:03d}-s{seed}-{arm}"


def run_validation(procs, job: ValidationJob) -> dict | None:
    """Render this process's share of the items not yet done; the main process returns the report."""
    from ..core.shard import ItemStore, start_run_folder
    from ..models.pipeline import resolve_device, resolve_dtype

    device = str(procs.device) if job.device == "auto" and procs.count > 1 else job.device  # one GPU each
    device = resolve_device(device)
    dtype = resolve_dtype(job.dtype, job.spec, device)
    procs.barrier()  # every process has checked --out before the main process creates it
    if procs.is_main:
        if job.spec.standin:
            print(
                f"note: {job.spec.name} is a stand-in with random weights: the report is noise",
                file=sys.stderr,
            )
        if not job.resume:
            start_run_folder(job.out, job.manifest)
        (job.out / "videos").mkdir(exist_ok=True)
        (job.out / "curves").mkdir(exist_ok=True)
    procs.barrier()
    store = ItemStore(job.out)
    items = [(p, seed, arm) for p in range(len(job.prompts)) for seed in range(job.seeds) for arm in job.arms]
    pending = [item for item in items if not store.done(item_key(*item))]
    if procs.is_main and job.resume:
        print(f"resume: {len(items) - len(pending)} of {len(items)} videos done; rendering {len(pending)}",
              file=sys.stderr)  # fmt: skip
    todo = procs.mine(pending)
    if todo:
        _render_items(job, todo, store, device, dtype, procs.index)
    procs.barrier()
    if not procs.is_main:
        return None
    return _merge(job, store)


def _render_items(job: ValidationJob, todo: list, store, device, dtype, index: int) -> None:
    """Render, write and score `todo`; each item is written to `store` last, when it is complete."""
    from tqdm.auto import tqdm

    from ..core.export import export_video
    from ..core.guidance import describe_guidance
    from ..core.inject import detached, inject
    from ..core.quiet import quiet_libraries
    from ..core.speed import settings_at_speed
    from ..models.generate import generate
    from ..models.pipeline import load_pipeline
    from ..rewards import load_reward_spec

    quiet_libraries()
    spec = job.spec
    pipe = load_pipeline(
        job.model, device, dtype, model_path=job.model_path, adapter=spec.source, speed=job.speed
    )
    settings = settings_at_speed(job.settings, pipe.reneg_speed)
    if line := describe_guidance(settings):
        print(line, file=sys.stderr)
    pipe.set_progress_bar_config(disable=True)
    inject(pipe, job.neg, spec)
    reward = load_reward_spec(job.reward, device=device)
    bar = tqdm(
        total=len(todo),
        desc=f"reneg-validate [{index}]",
        bar_format="{desc}: {n_fmt}/{total_fmt} videos |{bar}| {elapsed}, ETA {remaining}",
        dynamic_ncols=True,
        disable=job.quiet,
    )
    for p_index, seed, arm in todo:
        prompt, seeded = job.prompts[p_index], replace(settings, seed=seed)
        if arm == "reneg":
            frames = generate(pipe, spec, prompt, seeded)
        else:
            with detached(pipe):
                frames = generate(
                    pipe, spec, prompt, seeded, job.handcrafted if arm == "handcrafted" else None
                )
        key = item_key(p_index, seed, arm)
        export_video(frames, job.out / "videos" / f"{key}.mp4", settings.fps)
        scores = frame_scores(reward, frames, prompt)
        record = {"video": f"videos/{key}.mp4", "frames": scores, "mean": float(np.mean(scores))}
        video = score_video(frames, reward)
        record["video_scores"] = {k: video[k] for k in (*SCORES, "embedding", "consistency_skipped")}
        # Last: the item counts as done from here. The speed preset's settings travel with each item, so
        # the merge reports them even when the main process rendered nothing (a resumed run).
        item = {"reward": reward.name, "speed": pipe.reneg_speed, "steps": settings.steps, **record}
        store.write(key, item)
        bar.update(1)
    bar.close()


def _merge(job: ValidationJob, store) -> dict:
    """The main process: every item read back, the statistics, the curves and plot, then the report."""
    from ..core.atomic import atomic_path

    rows, reward_name = [], None
    for p_index, prompt in enumerate(job.prompts):
        row = {"prompt": prompt, "seeds": []}
        for seed in range(job.seeds):
            entry = {"seed": seed, "videos": {}, "frames": {}, "mean": {}, "video_scores": {}}
            for arm in job.arms:
                item = store.read(item_key(p_index, seed, arm))
                reward_name = item["reward"]
                entry["video_scores"][arm] = item.get("video_scores")  # None: an item of an older run
                entry["videos"][arm], entry["frames"][arm], entry["mean"][arm] = (
                    item["video"],
                    item["frames"],
                    item["mean"],
                )
            entry["curve"] = reports.plot_curve(
                job.out / f"curves/p{p_index:03d}-s{seed}.png", entry["frames"], reward_name
            )
            row["seeds"].append(entry)
        row["mean"] = {arm: float(np.mean([e["mean"][arm] for e in row["seeds"]])) for arm in job.arms}
        rows.append(row)
    first = store.read(item_key(0, 0, job.arms[0]))
    settings = replace(
        job.settings, steps=first.get("steps", job.settings.steps)
    )  # as the speed preset ran it
    report = reports.summary(job.spec, job.neg, reward_name, job.handcrafted, settings, job.seeds, rows)
    report["speed"] = first.get("speed")
    report["paired_plot"] = reports.plot_differences(
        job.out / "paired_differences.png", report, rows, reward_name
    )
    with atomic_path(job.out / "index.html") as tmp:
        tmp.write_text(reports.html_page(report))
    with atomic_path(job.out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
