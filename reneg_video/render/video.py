"""Render a prompt set for `reneg-video`: load, inject, generate, score, export, summarise.

Per prompt: the main arm (per-sample refinement and best-of-N as asked), the baseline arms of --compare
on the same seed, the frame scores of --score, the --min-reward filter, then the files. Under
`accelerate launch` the prompts are shared out over the processes and the main one writes the summary.
With --resume the prompts whose every output is already a complete video are skipped, before any model
loads (atomic writes mean a file at a destination name is whole; it is read back all the same).

A `RenderJob` holds checked values only (`render.job` checks every option, the embedding included, before
any model loads): nothing here checks them again.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core.prompts import baseline_negative
from ..core.settings import Settings
from ..core.specs import AdapterSpec
from ..rewards.frames import frame_scores
from .job import RenderJob


@dataclass
class _Loaded:
    """A job with its pipeline (the embedding injected), its settings at the speed preset's step count and
    its rewards (`objective` for refinement and best-of, `scorer` for --score)."""

    job: RenderJob
    pipe: Any
    settings: Settings
    objective: Any = None
    scorer: Any = None


def render_prompt_set(job: RenderJob) -> None:
    """Render every prompt of `job` (this process's share of them) and write its files and summary."""
    from ..core.shard import Processes

    todo = _pending(job)
    if not todo:
        print(f"resume: all {len(job.prompts)} prompts are complete; nothing to render", file=sys.stderr)
        return
    with Processes(
        cpu=job.device.type == "cpu"
    ) as procs:  # under `accelerate launch` the prompts are shared out
        device = procs.device if procs.count > 1 and job.device.type != "cpu" else job.device  # one GPU each
        loaded = _load(job, device)
        if procs.count > 1:
            print(f"process {procs.index}/{procs.count}: prompts {procs.mine(todo)}", file=sys.stderr)
        records = [(index, _render_prompt(loaded, index)) for index in procs.mine(todo)]
        skipped = [
            (index, _skipped_record(job, index)) for index in range(len(job.prompts)) if index not in todo
        ]
        records = [record for _, record in sorted(procs.gather(records) + skipped, key=lambda pair: pair[0])]
        _report(loaded, device, records, procs.is_main)


def _pending(job: RenderJob) -> list[int]:
    """The indices of the prompts to render: all of them, or under --resume those with an output missing or
    not a complete video (a file at its destination name is whole, as exports are atomic; it is read back
    all the same). What is skipped is logged on stderr, one line per prompt."""
    if not job.resume:
        return list(range(len(job.prompts)))
    todo = []
    for index, (prompt, paths) in enumerate(zip(job.prompts, job.outputs, strict=True)):
        missing = _incomplete(paths)
        if missing is None:
            names = ", ".join(path.name for path in paths)
            print(f"resume: prompt {index} {prompt!r} is complete ({names}); skipped", file=sys.stderr)
        else:
            print(f"resume: prompt {index} {prompt!r}: {missing}; rendering it", file=sys.stderr)
            todo.append(index)
    done = len(job.prompts) - len(todo)
    print(f"resume: {done} of {len(job.prompts)} prompts complete; rendering {len(todo)}", file=sys.stderr)
    return todo


def _incomplete(paths: list[Path]) -> str | None:
    """Why these outputs are not all complete videos (the first reason), or None when they are."""
    from ..core.errors import ReNegError
    from ..core.export import validate_gif, validate_mp4

    for path in paths:
        if not path.is_file():
            return f"{path} is missing"
        try:
            (validate_mp4 if path.suffix.lower() == ".mp4" else validate_gif)(path)
        except ReNegError as exc:
            return str(exc)
    return None


def _skipped_record(job: RenderJob, index: int) -> dict:
    """The --json record of a prompt --resume skipped: its files, written by an earlier run."""
    paths = [str(path) for path in job.outputs[index]]
    return {
        "prompt": job.prompts[index],
        "outputs": paths[::2] if job.compare else paths,
        "compare": paths[1::2] if job.compare else [],
        "resumed": True,  # complete from an earlier run: not rendered, not scored by this one
    }


def _load(job: RenderJob, device) -> _Loaded:
    """The pipeline with the embedding injected, its effective settings logged on stderr, and the rewards."""
    from ..core.guidance import describe_guidance
    from ..core.inject import inject
    from ..core.memory import describe
    from ..core.quiet import quiet_libraries
    from ..core.speed import settings_at_speed
    from ..models.pipeline import load_pipeline

    quiet_libraries()  # the denoising bar stays unless --quiet
    spec = job.spec
    if spec.standin:
        print(f"note: {spec.name} is a stand-in with random weights: its output is noise", file=sys.stderr)
    pipe = load_pipeline(
        job.model,
        device,
        job.dtype,
        model_path=job.model_path,
        adapter=spec.source,
        memory=job.memory,
        frames=job.settings.frames,
        height=job.settings.height,
        width=job.settings.width,
        motion_adapter=job.motion_adapter,
        speed=job.speed,
    )
    print(f"memory: {describe(pipe.reneg_memory)}", file=sys.stderr)
    if pipe.reneg_call:
        call = " ".join(f"{k}={v}" for k, v in pipe.reneg_call.items())
        print(f"call: {call} (from the model's configs: timestep-conditioned VAE)", file=sys.stderr)
    settings = settings_at_speed(job.settings, pipe.reneg_speed)
    if line := describe_guidance(settings):
        print(line, file=sys.stderr)
    _log_guidance(spec, settings)
    pipe.set_progress_bar_config(disable=job.quiet, leave=False)
    if job.neg is not None:
        inject(pipe, job.neg, spec)
    loaded = _Loaded(job, pipe, settings)
    if job.objective or job.score:
        from ..rewards import load_reward_spec

        loaded.objective = load_reward_spec(job.objective, device=device) if job.objective else None
        loaded.scorer = load_reward_spec(job.score, device=device) if job.score else None
    return loaded


def _log_guidance(spec: AdapterSpec, settings: Settings) -> None:
    if settings.guidance_schedule is not None:
        print(
            f"guidance: per step from {spec.name}'s schedule ({settings.guidance_schedule.describe()}; "
            "t = timestep/1000); --guidance G uses G at every step instead",
            file=sys.stderr,
        )
    elif spec.guidance_schedule is not None:
        print(
            f"guidance: {settings.guidance:g} at every step (--guidance overrides {spec.name}'s per-step schedule)",
            file=sys.stderr,
        )


def _render_prompt(loaded: _Loaded, index: int) -> dict:
    """Prompt `index`: its arms rendered, scored, filtered and written; its record for the summary."""
    job = loaded.job
    prompt, paths = job.prompts[index], job.outputs[index]
    start = time.perf_counter()
    frames, record = _render_main_arm(loaded, prompt)
    arms = {job.main_arm: frames}
    if job.compare:
        arms = {**_baseline_arms(loaded, prompt, record["seed"]), **arms}
    if loaded.scorer is not None:
        record["scores"] = _arm_scores(loaded.scorer, arms, prompt)
    written, compared = [], []
    if job.min_reward is not None:
        record["kept"] = record["scores"][job.main_arm]["mean"] >= job.min_reward
    if record.get("kept", True):
        written, compared = _export(job, loaded.settings, arms, paths)
    else:
        print(
            f"filtered: {prompt!r} mean {loaded.scorer.name} {record['scores'][job.main_arm]['mean']:.4f} < "
            f"--min-reward {job.min_reward}; not written",
            file=sys.stderr,
        )
    for path in written + compared:
        print(path)
    record.update(
        prompt=prompt, outputs=written, compare=compared, seconds=round(time.perf_counter() - start, 3)
    )
    return record


def _render_main_arm(loaded: _Loaded, prompt: str) -> tuple[np.ndarray, dict]:
    """The main arm for one prompt: of seeds seed..seed+N-1 (--best-of N) the one the objective rates best."""
    best = None
    for k in range(loaded.job.best_of or 1):
        seeded = replace(loaded.settings, seed=loaded.settings.seed + k)
        frames, record = _render_seed(loaded, prompt, seeded)
        if best is None or record.get("objective", 0.0) > best[1].get("objective", 0.0):
            best = (frames, record)
    return best


def _render_seed(loaded: _Loaded, prompt: str, settings: Settings) -> tuple[np.ndarray, dict]:
    """One seed of the main arm, refined as asked: frames and a record. What renders is what refinement chose:
    the refined embedding (for this seed only) and the noise its best iterate was chosen on."""
    from ..core.inject import attached
    from ..models.generate import generate
    from ..training.refine import optimize_negative, optimize_noise

    job, pipe, objective = loaded.job, loaded.pipe, loaded.objective
    negative_prompt = None if job.compare else job.negative_prompt
    record: dict = {"seed": settings.seed}
    neg, latents = job.neg, None
    if job.optimize_neg:
        refined = optimize_negative(pipe, job.spec, job.neg, prompt, settings, objective, job.optimize_neg)
        neg, latents = refined.embedding, refined.noise
        record["optimize_neg"] = {"rewards": refined.history, "best": refined.best_reward}
    if job.optimize_noise:
        # Against the embedding (or negative prompt) this video is rendered with.
        refined = optimize_noise(
            pipe, job.spec, neg, prompt, settings, objective, job.optimize_noise, negative_prompt
        )
        latents = refined.noise
        record["optimize_noise"] = {"rewards": refined.history, "best": refined.best_reward}
    if latents is not None:
        latents = (latents / pipe.scheduler.init_noise_sigma).to(pipe.dtype)  # the pipeline scales them again
    # The job's embedding stays injected; a refined one replaces it for this call only.
    with attached(pipe, neg, job.spec) if job.optimize_neg else contextlib.nullcontext():
        frames = generate(pipe, job.spec, prompt, settings, negative_prompt, latents=latents)
    if objective is not None:
        record["objective"] = float(np.mean(frame_scores(objective, frames, prompt)))
    return frames, record


def _baseline_arms(loaded: _Loaded, prompt: str, seed: int) -> dict[str, np.ndarray]:
    """--compare's baselines on the main arm's seed: null text, then the handcrafted negative prompt."""
    from ..core.inject import detached
    from ..models.generate import generate

    job, pipe = loaded.job, loaded.pipe
    seeded = replace(loaded.settings, seed=seed)
    handcrafted = baseline_negative(job.negative_prompt, job.spec.defaults.negative_prompt)
    with detached(pipe):
        return {
            "null": generate(pipe, job.spec, prompt, seeded, None),
            "handcrafted": generate(pipe, job.spec, prompt, seeded, handcrafted),
        }


def _arm_scores(scorer, arms: dict[str, np.ndarray], prompt: str) -> dict[str, dict]:
    """Per arm its frame scores, their mean and min; one line each on stderr."""
    scores = {}
    for arm, frames in arms.items():
        per_frame = frame_scores(scorer, frames, prompt)
        mean = float(np.mean(per_frame))
        scores[arm] = {"mean": mean, "min": min(per_frame), "frames": per_frame}
        print(f"{arm:12s} {scorer.name}: mean {mean:.4f}  min {min(per_frame):.4f}", file=sys.stderr)
    return scores


# How the --compare video names its panels.
ARM_LABELS = {"null": "null text", "handcrafted": "handcrafted", "reneg": "ReNeg", "output": "output"}


def _export(job: RenderJob, settings: Settings, arms: dict[str, np.ndarray], paths: list[Path]):
    """The main arm to its paths; with --compare every arm side by side, labelled, to the compare paths.
    Both enlarged as --upscale asks (nearest-neighbour)."""
    from ..core.export import export_video, labelled_side_by_side, to_uint8, upscale_factor, upscale_nearest

    factor = upscale_factor(settings.height, settings.width, job.upscale)
    arms = {arm: upscale_nearest(to_uint8(frames), factor) for arm, frames in arms.items()}
    main_paths = paths[::2] if job.compare else paths
    written = [str(export_video(arms[job.main_arm], path, settings.fps)) for path in main_paths]
    compared = []
    if job.compare:
        side_by_side = labelled_side_by_side(list(arms.values()), [ARM_LABELS[arm] for arm in arms])
        compared = [str(export_video(side_by_side, path, settings.fps)) for path in paths[1::2]]
    return written, compared


def _report(loaded: _Loaded, device, records: list[dict], is_main: bool) -> None:
    """The per-step guidance on stderr and, from the main process, the --json summary."""
    from ..core.atomic import atomic_path
    from ..models.generate import guidance_call_settings

    pipe = loaded.pipe
    # The effective call settings: what the loaded model needs, then the per-step guidance in force.
    call = {**pipe.reneg_call, **guidance_call_settings(loaded.settings, pipe)}
    if "guidance_schedule" in call and "per_step" in call["guidance_schedule"]:
        per_step = " ".join(f"{g:g}" for g in call["guidance_schedule"]["per_step"])
        print(f"guidance per step: {per_step}", file=sys.stderr)
    if loaded.job.json and is_main:
        with atomic_path(loaded.job.json) as tmp:
            tmp.write_text(json.dumps(_summary(loaded, device, records, call), indent=2) + "\n")


def _summary(loaded: _Loaded, device, records: list[dict], call: dict) -> dict:
    from ..core.export import upscale_factor

    job, spec, neg, pipe = loaded.job, loaded.job.spec, loaded.job.neg, loaded.pipe
    return {
        "model": spec.name,
        "standin": spec.standin,
        "weights": str(job.weights),  # the folder the weights were loaded from
        "note": "stand-in with random weights: outputs are noise" if spec.standin else None,
        "negative": None
        if neg is None
        else {
            "source": neg.source,
            "sha256": neg.sha256,
            "family": neg.family.name,
            "tokens": neg.tokens,
            "kept_tokens": neg.kept_tokens,
        },
        "negative_prompt": job.negative_prompt,
        "settings": loaded.settings.as_dict(),
        # the written videos' enlargement (--upscale): the whole factor at these settings
        "upscale": upscale_factor(loaded.settings.height, loaded.settings.width, job.upscale),
        "device": str(device),
        "dtype": str(job.dtype).removeprefix("torch."),
        "memory": pipe.reneg_memory,
        # arguments the loaded model needs (e.g. LTX 0.9.1+ decode_timestep) and the per-step guidance schedule
        "call_settings": call,
        "min_reward": job.min_reward,
        "kept": sum(r.get("kept", True) for r in records),
        "speed": pipe.reneg_speed,
        "videos": records,
    }
