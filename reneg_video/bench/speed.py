"""Speed rows: the adapter's overhead on a pipeline call, and batched frame scoring vs image-reward 1.5."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..core.stats import bootstrap_interval
from .harness import Row, alternate, median_of

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_SCRIPT = REPO_ROOT / "scripts" / "parity_imagereward.py"


# --- CPU rows ----------------------------------------------------------------------------------------------


def row_adapter_overhead(quick: bool) -> Row:
    """attach() + call vs a plain diffusers call given the same negative_prompt_embeds."""
    from ..core.embedding import NegativeEmbedding
    from ..core.encoders import OPENCLIP_H
    from ..core.inject import attach, detached
    from ..models.pipeline import load_pipeline

    frames, size, steps, repeats = (2, 32, 1, 1) if quick else (8, 64, 4, 5)
    pipe = load_pipeline("tiny-zeroscope", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    tensor = torch.randn(1, 77, OPENCLIP_H.width, generator=torch.Generator().manual_seed(1))
    neg = NegativeEmbedding(tensor=tensor, mask=None, family=OPENCLIP_H, source="bench:random")
    attach(pipe, neg)
    call = dict(prompt="a corgi surfing a wave", num_frames=frames, height=size, width=size)
    call.update(num_inference_steps=steps, guidance_scale=9.0, output_type="np")
    outputs: dict[str, Any] = {}

    def ours() -> dict[str, Any]:
        start = time.perf_counter()
        out = pipe(**call, generator=torch.Generator("cpu").manual_seed(7)).frames[0]
        outputs["ours"] = out
        return {"seconds": time.perf_counter() - start}

    def baseline() -> dict[str, Any]:
        with detached(pipe):
            start = time.perf_counter()
            out = pipe(
                **call, negative_prompt_embeds=tensor, generator=torch.Generator("cpu").manual_seed(7)
            ).frames[0]
            seconds = time.perf_counter() - start
        outputs["baseline"] = out
        return {"seconds": seconds}

    ours(), baseline()  # warm-up: first calls pay one-time allocations and kernel selection
    results = alternate({"ours": ours, "baseline": baseline}, repeats)
    diff = float(abs(outputs["ours"] - outputs["baseline"]).max())
    return Row(
        "adapter_overhead",
        median_of(results["ours"], "seconds"),
        median_of(results["baseline"], "seconds"),
        "s",
        goal=1.02,
        note=f"tiny-zeroscope {frames}x{size}x{size}, {steps} steps, median of {repeats} alternated calls "
        f"after a warm-up; outputs max |diff| {diff:.2e}",
        samples={k: [r["seconds"] for r in v] for k, v in results.items()},
        extra={"max_abs_diff": diff},
    )


# Issue 15: frame scoring at half the reference loop's time or less.
FRAME_SCORING_GOAL = 0.5
# The faster, not bit-exact arm the parity script times beside the exact one.
FRAME_SCORING_AUTOCAST = "bfloat16"


def row_frame_scoring(quick: bool) -> list[Row]:
    """16 frames: reneg_video.rewards' ImageReward vs image-reward 1.5's loop (the reward branch's script);
    two rows: the exact (float32) path, and the same under bf16 autocast, interleaved in one run."""
    name, unit, goal = "frame_scoring_time", "s", FRAME_SCORING_GOAL
    if quick:
        return [
            Row(name, None, None, unit, goal, "skipped", "not run with --quick (it builds 2 x 447 M params)")
        ]
    try:
        import reneg_video.rewards  # noqa: F401  (lazy: merged from the reward branch)
    except ImportError:
        return [
            Row(name, None, None, unit, goal, "not available", "reneg_video.rewards is not in this checkout")
        ]
    if not PARITY_SCRIPT.is_file():
        return [
            Row(name, None, None, unit, goal, "not available", f"{PARITY_SCRIPT} is not in this checkout")
        ]
    with tempfile.TemporaryDirectory(prefix="reneg-bench-") as tmp:
        out = Path(tmp) / "parity.json"
        cmd = [sys.executable, str(PARITY_SCRIPT), "--frames", "16", "--repeats", "3", "--json", str(out)]
        cmd += ["--autocast", FRAME_SCORING_AUTOCAST]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        # The script exits 1 when a goal of its own is missed but still writes its figures.
        if not out.is_file():
            why = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            return [Row(name, None, None, unit, goal, "not available", f"parity script failed: {why[0]}")]
        data = json.loads(out.read_text())
    try:
        ours, ref = float(data["ours_median_s"]), float(data["reference_median_s"])
        cast = data["autocast"]
        cast_median = float(cast["median_s"])
    except (KeyError, TypeError, ValueError):
        return [
            Row(name, None, None, unit, goal, "not available", f"parity JSON lacks medians: {sorted(data)}")
        ]
    note = "16 frames, scripts/parity_imagereward.py (reference in its side dir, interleaved, median of 3)"
    baseline = data.get("reference_times_s", [])
    return [
        Row(
            name,
            ours,
            ref,
            unit,
            goal,
            note=f"{note}; float32, max |diff| {data.get('max_abs_diff', float('nan')):.2e}",
            samples={"ours": data.get("ours_times_s", []), "baseline": baseline},
            extra={k: data.get(k) for k in ("max_abs_diff", "batch_size", "threads", "score_spread")},
        ),
        Row(
            f"{name}_{FRAME_SCORING_AUTOCAST}",
            cast_median,
            ref,
            unit,
            goal,
            note=f"{note}; ours under torch.autocast({FRAME_SCORING_AUTOCAST}), max |diff| "
            f"{cast.get('max_abs_diff', float('nan')):.2e} over a score spread of "
            f"{data.get('score_spread', float('nan')):.3f}",
            samples={"ours": cast.get("times_s", []), "baseline": baseline},
            extra={"max_abs_diff": cast.get("max_abs_diff"), "score_spread": data.get("score_spread")},
        ),
    ]


# --- speed presets (issue 15) ------------------------------------------------------------------------------

# Done-when of issue 15: `--speed fast` at least 1.5x faster than `off`, i.e. a time ratio <= 1 / 1.5.
SPEED_FAST_GOAL = round(1 / 1.5, 3)
SPEED_MODEL = "tiny-zeroscope"
SPEED_PROMPT = "a corgi surfing a wave"
# Prompts the judge of a model with one (a plugin's: the shapes world's) can read, per seed, in the
# speed_quality row (x --speed-seeds samples).
JUDGED_SPEED_PROMPTS = 8
# Enough steps that denoising, which the presets shorten, outweighs the text encoder and the VAE decode;
# 16 is the middle of what DPM-Solver++ is run at (10-25 steps).
SPEED_STEPS = 16


class DenoiserCalls:
    """Counts forward calls of a pipeline's denoiser (a forward pre-hook; removed with `close`)."""

    def __init__(self, pipe) -> None:
        from ..core.memory import denoiser_of

        self.count = 0
        self._handle = denoiser_of(pipe).register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


def _speed_pipes(model: str, presets: tuple[str, ...]) -> dict[str, Any]:
    from ..models.pipeline import load_pipeline

    pipes = {}
    for preset in presets:
        pipe = load_pipeline(model, device="cpu", speed=preset)
        pipe.set_progress_bar_config(disable=True)
        pipes[preset] = pipe
    return pipes


def _render(pipe, prompt: str, seed: int, steps: int, frames: int | None, size: int | None):
    """One seeded video under the pipeline's speed preset (its `steps_scale` applied to `steps`)."""
    from ..core.speed import scaled_steps
    from ..models.generate import generate, settings_for

    spec = pipe.reneg_spec
    settings = settings_for(
        spec, seed=seed, steps=scaled_steps(steps, pipe.reneg_speed), frames=frames, height=size, width=size
    )
    return generate(pipe, spec, prompt, settings)


def row_speed_fast(quick: bool, model: str = SPEED_MODEL) -> Row:
    """`--speed fast` vs `off` on the same model, prompt and seed: wall time of one generation."""
    frames, size, steps, repeats = (2, 32, 4, 1) if quick else (8, 64, SPEED_STEPS, 5)
    pipes = _speed_pipes(model, ("fast", "off"))
    calls = {name: DenoiserCalls(pipe) for name, pipe in pipes.items()}
    outputs: dict[str, Any] = {}

    def arm(name: str):
        def timed() -> dict[str, Any]:
            start = time.perf_counter()
            outputs[name] = _render(pipes[name], SPEED_PROMPT, 7, steps, frames, size)
            return {"seconds": time.perf_counter() - start}

        return timed

    for name in pipes:  # warm-up: first calls pay one-time allocations and kernel selection
        arm(name)()
    for counter in calls.values():
        counter.count = 0
    results = alternate({"fast": arm("fast"), "off": arm("off")}, repeats)
    per_call = {name: counter.count // repeats for name, counter in calls.items()}
    for counter in calls.values():
        counter.close()
    diff = float(abs(outputs["fast"] - outputs["off"]).max())
    return Row(
        "speed_fast_time",
        median_of(results["fast"], "seconds"),
        median_of(results["off"], "seconds"),
        "s",
        goal=SPEED_FAST_GOAL,
        note=f"{model} {frames}x{size}x{size}, {steps} steps requested, --speed fast vs off "
        f"({pipes['fast'].reneg_speed['scheduler']}), denoiser calls {per_call['fast']} vs {per_call['off']} "
        f"per video, median of {repeats} alternated calls after a warm-up; outputs max |diff| {diff:.2e}",
        samples={k: [r["seconds"] for r in v] for k, v in results.items()},
        extra={"speed": pipes["fast"].reneg_speed, "denoiser_calls": per_call, "max_abs_diff": diff},
    )


def paired_delta(after: list[float], before: list[float]) -> dict[str, float]:
    """Mean of the paired differences after - before with its 95% percentile-bootstrap interval
    (`core.stats.bootstrap_interval`, seed 0), as the report stores it."""
    deltas = [a - b for a, b in zip(after, before, strict=True)]
    mean, low, high = bootstrap_interval(deltas)
    return {"mean": mean, "low": low, "high": high, "n": len(deltas)}


def _judge_for(model: str):
    """The programmatic judge a plugin registers for `model` (the shapes world's for shapes-*), else None."""
    from ..core.plugins import judge_for

    registered = judge_for(model)
    return None if registered is None else registered.judge


def measure_speed_quality(
    model: str = SPEED_MODEL,
    reward: str = "tiny-imagereward",
    prompts: tuple[str, ...] = (SPEED_PROMPT,),
    seeds: int = 8,
    *,
    steps: int = SPEED_STEPS,
    frames: int | None = None,
    size: int | None = None,
    presets: tuple[str, ...] = ("fast", "fastest"),
) -> dict[str, Any]:
    """Reward (and, on shapes models, judge accuracy) of each preset vs `off` on the same prompts x seeds.

    Per preset: mean reward, the paired difference to `off` with a 95% bootstrap interval over samples,
    denoiser calls and denoiser FLOPs per video (torch's FlopCounterMode, so cache hooks that skip blocks
    count as saved).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..core.memory import denoiser_of
    from ..rewards import load_reward_spec
    from ..rewards.frames import frame_scores

    scorer = load_reward_spec(reward)
    judge = _judge_for(model)
    pipes = _speed_pipes(model, ("off", *presets))
    samples = [(p, s) for p in prompts for s in range(seeds)]
    per: dict[str, dict[str, list[float]]] = {}
    for name, pipe in pipes.items():
        counter = DenoiserCalls(pipe)
        denoiser = type(denoiser_of(pipe)).__name__
        rows: dict[str, list[float]] = {"reward": [], "judge": [], "calls": [], "flops": []}
        for prompt, seed in samples:
            counter.count = 0
            with FlopCounterMode(display=False) as flops:
                video = _render(pipe, prompt, seed, steps, frames, size)
            rows["calls"].append(counter.count)
            rows["flops"].append(sum(flops.get_flop_counts().get(denoiser, {}).values()))
            rows["reward"].append(float(sum(frame_scores(scorer, video, prompt)) / len(video)))
            if judge is not None:
                rows["judge"].append(judge(video, prompt)["accuracy"])
        counter.close()
        per[name] = rows
    off = per["off"]
    report: dict[str, Any] = {
        "model": model,
        "reward": reward,
        "judge": f"{judge.__module__}.{judge.__name__}"
        if judge
        else "none (no plugin registers a judge for it)",
        "samples": len(samples),
        "steps_requested": steps,
        "off": {
            "reward_mean": sum(off["reward"]) / len(samples),
            "denoiser_calls": sum(off["calls"]) / len(samples),
            "denoiser_flops": sum(off["flops"]) / len(samples),
        },
    }
    for name in presets:
        rows = per[name]
        entry = {
            "speed": pipes[name].reneg_speed,
            "reward_mean": sum(rows["reward"]) / len(samples),
            "reward_delta": paired_delta(rows["reward"], off["reward"]),
            "denoiser_calls": sum(rows["calls"]) / len(samples),
            "denoiser_flops": sum(rows["flops"]) / len(samples),
        }
        entry["denoiser_flops_saved"] = 1 - entry["denoiser_flops"] / report["off"]["denoiser_flops"]
        if judge is not None:
            entry["judge_delta"] = paired_delta(rows["judge"], off["judge"])
        report[name] = entry
    if judge is not None:
        report["off"]["judge_mean"] = sum(off["judge"]) / len(samples)
    return report


def row_speed_quality(
    quick: bool, model: str = SPEED_MODEL, reward: str = "tiny-imagereward", seeds: int = 8
) -> Row:
    """The quality cost of fast/fastest vs off as a row (no ratio: the figures are in the note and extra)."""
    from ..core.plugins import judge_for
    from ..core.specs import load_spec

    seeds, frames, size, steps = (2, 2, 32, 4) if quick else (seeds, 8, 64, SPEED_STEPS)
    prompts: tuple[str, ...] = (SPEED_PROMPT,)
    judged = judge_for(model)
    if judged is not None:
        # A judged model (the shapes world's) at its own size and steps, on prompts its judge can read.
        prompts = tuple(judged.prompts()[:JUDGED_SPEED_PROMPTS])
        frames, size, steps = None, None, load_spec(model).defaults.steps
    report = measure_speed_quality(
        model, reward, seeds=seeds, steps=steps, frames=frames, size=size, prompts=prompts
    )
    parts = []
    for name in ("fast", "fastest"):
        d, e = report[name]["reward_delta"], report[name]
        part = (
            f"{name}: reward delta {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}], denoiser calls "
            f"{e['denoiser_calls']:.0f} vs {report['off']['denoiser_calls']:.0f}, FLOPs saved "
            f"{e['denoiser_flops_saved']:.0%}"
        )
        if "judge_delta" in e:
            j = e["judge_delta"]
            part += f", judge delta {j['mean']:+.3f} [{j['low']:+.3f}, {j['high']:+.3f}]"
        parts.append(part)
    standin = "; stand-in: its reward is noise, mechanics only" if judged is None else ""
    return Row(
        "speed_quality",
        None,
        None,
        "-",
        # Not "measured": that status promises ours/baseline figures and a ratio; here the figures are deltas.
        status="reported",
        note=f"{model}, {report['samples']} seeds, {steps} steps requested, 95% bootstrap intervals of the "
        f"paired difference vs off; " + "; ".join(parts) + standin,
        extra=report,
    )
