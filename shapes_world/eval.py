"""Measure arms (null text, a handcrafted negative, ReNeg embeddings) on a shapes model with the judge
and the shapes reward: the same prompts x seeds, the same initial noise in every arm.

Per arm: mean judge accuracy, share of samples passing every check, per-check means, mean reward, each
with a 95% interval (normal approximation over samples). Per embedding arm vs each other arm: the
per-prompt win rate by judge accuracy and by reward (prompt won when its mean over seeds is higher, ties
half), with a 95% percentile-bootstrap interval over prompts; per arm vs null text, the mean paired
difference of per-prompt means with the same bootstrap interval; per check, the share of samples failing it.

Refinement arms (`Arm.refine`) start from an embedding arm and apply, per prompt and seed, what
`reneg-video`'s option of the same name does against the reward: `optimize-neg` (ReNeg's per-sample
stage), `optimize-noise` (ReNO-style) or `best-of` (seeds seed..seed+N-1, the best mean frame reward kept).
The reward they optimise is the one that scores the arms, so their reward gain is partly by
construction; the judge, which nothing optimises, is the measure that counts.

Shape legend: N samples (prompts x seeds), F frames, H x W pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from reneg_video.core.atomic import atomic_path
from reneg_video.core.embedding import NegativeEmbedding
from reneg_video.core.stats import bootstrap_interval, normal_interval

from .build.common import sample as sample_shapes
from .judge import CHECKS, judge
from .world import HANDCRAFTED_NEGATIVE

REFINEMENTS = ("optimize-neg", "optimize-noise", "best-of")
# The checks a negative can address: the quality modes the data taught the generators (degradations named
# or not, video artefacts), not what the prompt asks for. Issue 29's headroom criterion counts the samples
# failing at least one of them (docs/shapes-v2-protocol.md, M2).
FIXABLE = ("crisp", "steady", "smooth", "unmarked", "unghosted")


@dataclass(frozen=True)
class Arm:
    name: str
    negative: str | torch.Tensor | None  # None: null text (the empty prompt)
    refine: tuple[str, int] | None = None  # (one of REFINEMENTS, its steps or N), from `embedding`
    embedding: NegativeEmbedding | None = None


def bootstrap_win_rate(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """Share of prompts where a > b (ties half) with a 95% percentile-bootstrap interval over prompts."""
    wins = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
    rate, low, high = bootstrap_interval(wins, seed)
    return {"rate": rate, "low": low, "high": high, "prompts": int(wins.size)}


def _interval(values) -> dict:
    m, low, high = normal_interval(values)
    return {"mean": m, "low": low, "high": high}


@torch.no_grad()
def mean_reward(reward, frames: np.ndarray, prompt: str) -> float:
    """Mean reward over the frames of one sample (float [F, H, W, 3] or [H, W, 3] in [0, 1])."""
    x = torch.from_numpy(frames.reshape(-1, *frames.shape[-3:])).permute(0, 3, 1, 2)
    return float(reward.score_frames(x, prompt).mean())


def refined_samples(
    pipe,
    spec,
    arm: Arm,
    prompts: list[str],
    seeds: list[int],
    *,
    video: bool,
    steps: int,
    guidance: float,
    reward,
) -> np.ndarray:
    """Arm `arm.refine` rendered per sample, as `build.common.sample` returns them."""
    from tqdm.auto import tqdm

    from reneg_video.models.generate import settings_for
    from reneg_video.training.refine import optimize_negative, optimize_noise

    kind, amount = arm.refine
    sample = partial(sample_shapes, video=video)
    out = []
    for prompt, seed in tqdm(list(zip(prompts, seeds, strict=True)), desc=arm.name, mininterval=5):
        settings = settings_for(spec, seed=seed, steps=steps, guidance=guidance)
        if kind == "optimize-neg":
            best = optimize_negative(pipe, spec, arm.embedding, prompt, settings, reward, amount).best
            frames = sample(pipe, [prompt], [seed], steps=steps, guidance=guidance, negative=best)
        elif kind == "optimize-noise":
            refined = optimize_noise(pipe, spec, arm.embedding, prompt, settings, reward, amount)
            latents = refined.noise / pipe.scheduler.init_noise_sigma  # the pipeline scales them again
            frames = sample(
                pipe, [prompt], [seed], steps=steps, guidance=guidance, negative=arm.negative, latents=latents
            )
        else:  # best-of
            candidates = sample(
                pipe,
                [prompt] * amount,
                [seed + k for k in range(amount)],
                steps=steps,
                guidance=guidance,
                negative=arm.negative,
            )
            frames = candidates[[int(np.argmax([mean_reward(reward, c, prompt) for c in candidates]))]]
        out.append(frames)
    return np.concatenate(out)


def run_arms(
    pipe,
    video: bool,
    arms: list[Arm],
    prompts: list[str],
    seeds: int,
    *,
    steps: int,
    guidance: float,
    reward=None,
    spec=None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Render and score every arm; returns the report and the frames per arm ([N, F, H, W, 3]).
    Refinement arms need `spec` (the model's adapter spec) and `reward` (their objective)."""
    rows = [(p, s) for p in prompts for s in range(seeds)]
    row_prompts, row_seeds = [p for p, _ in rows], [s for _, s in rows]
    sample = partial(sample_shapes, video=video)
    report: dict = {"prompts": len(prompts), "seeds": seeds, "steps": steps, "guidance": guidance, "arms": {}}
    per_prompt: dict[str, dict[str, np.ndarray]] = {}
    frames_by_arm = {}
    for arm in arms:
        if arm.refine is None:
            frames = sample(
                pipe, row_prompts, row_seeds, steps=steps, guidance=guidance, negative=arm.negative
            )
        else:
            frames = refined_samples(
                pipe,
                spec,
                arm,
                row_prompts,
                row_seeds,
                video=video,
                steps=steps,
                guidance=guidance,
                reward=reward,
            )
        if not video:
            frames = frames[:, None]
        frames_by_arm[arm.name] = frames
        judged = [judge(f, p) for f, p in zip(frames, row_prompts, strict=True)]
        acc = np.array([j["accuracy"] for j in judged])
        entry = {
            "judge_accuracy": _interval(acc),
            "passed": _interval([j["passed"] for j in judged]),
            "checks": {k: float(np.mean([j[k] for j in judged if k in j])) for k in CHECKS if k in judged[0]},
            # Share of samples failing each check in at least one frame (issue 29's per-check failure rates).
            "failures": {
                k: float(np.mean([j[k] < 1.0 for j in judged if k in j])) for k in CHECKS if k in judged[0]
            },
            "failed_fixable": float(np.mean([any(j.get(k, 1.0) < 1.0 for k in FIXABLE) for j in judged])),
        }
        scores = None
        if reward is not None:
            scores = np.array([mean_reward(reward, f, p) for f, p in zip(frames, row_prompts, strict=True)])
            entry["reward"] = _interval(scores)
        report["arms"][arm.name] = entry
        per_prompt[arm.name] = {
            "judge": acc.reshape(len(prompts), seeds).mean(1),
            **({"reward": scores.reshape(len(prompts), seeds).mean(1)} if scores is not None else {}),
        }
    wins = {}
    for arm in arms:
        if not isinstance(arm.negative, torch.Tensor):
            continue
        for other in arms:
            if other.name == arm.name:
                continue
            for metric in per_prompt[arm.name]:
                key = f"{arm.name}>{other.name} ({metric})"
                wins[key] = bootstrap_win_rate(per_prompt[arm.name][metric], per_prompt[other.name][metric])
    report["win_rates"] = wins
    report["differences"] = paired_differences(per_prompt)
    # Per-prompt means over seeds, in prompt order: to pool arms or pair runs afterwards.
    report["per_prompt"] = {a: {m: v.tolist() for m, v in d.items()} for a, d in per_prompt.items()}
    return report, frames_by_arm


def paired_differences(per_prompt: dict[str, dict[str, np.ndarray]], baseline: str = "null") -> dict:
    """Every arm minus `baseline`, per metric: the mean over prompts of the per-prompt difference (each
    prompt's mean over seeds) with a 95% percentile-bootstrap interval over prompts, the pre-registered
    statistic of docs/shapes-v2-protocol.md."""
    if baseline not in per_prompt:
        return {}
    out = {}
    for name, metrics in per_prompt.items():
        if name == baseline:
            continue
        for metric, values in metrics.items():
            mean, low, high = bootstrap_interval(values - per_prompt[baseline][metric])
            out[f"{name}-{baseline} ({metric})"] = {"mean": mean, "low": low, "high": high}
    return out


def picture_grid(
    frames_by_arm: dict[str, np.ndarray], prompts: list[str], seeds: int, rows: int, path
) -> None:
    """PNG: one row per prompt (seed 0), arms side by side, every frame of a video left to right."""
    from PIL import Image, ImageDraw

    scale, gap = 3, 6
    arms = list(frames_by_arm)
    sample = next(iter(frames_by_arm.values()))
    f, h, w = sample.shape[1:4]
    label_w = 330
    cell_w = f * w * scale
    width = label_w + len(arms) * (cell_w + gap)
    height = 20 + rows * (h * scale + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for a, arm in enumerate(arms):
        draw.text((label_w + a * (cell_w + gap), 4), arm, fill=(0, 0, 0))
    for r in range(min(rows, len(prompts))):
        y = 20 + r * (h * scale + gap)
        draw.text((4, y + h * scale // 2 - 6), prompts[r][:52], fill=(0, 0, 0))
        for a, arm in enumerate(arms):
            strip = np.concatenate(list(frames_by_arm[arm][r * seeds]), axis=1)  # [H, F*W, 3]
            image = Image.fromarray((np.clip(strip, 0, 1) * 255).round().astype(np.uint8))
            image = image.resize((cell_w, h * scale), Image.NEAREST)
            canvas.paste(image, (label_w + a * (cell_w + gap), y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


__all__ = [
    "HANDCRAFTED_NEGATIVE",
    "REFINEMENTS",
    "Arm",
    "bootstrap_win_rate",
    "mean_reward",
    "picture_grid",
    "refined_samples",
    "run_arms",
]
