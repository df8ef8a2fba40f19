"""Stage 5, `reward`: the stage-1 CLIP fine-tuned Bradley-Terry (the PickScore recipe) on still pairs chosen
by simulated raters (shapes_world/raters.py), not by the judge: generated t2i samples, clean, degraded and
wrongly-attributed renders of the same prompt. The raters weigh continuous qualities of a frame differently
from the judge's equal 0/1 checks and go against its ordering about 20% of the time (issue 29, item 5), so
the reward is learned from noisy preferences rather than distilled from the judge. It never sees videos.

After training the stage records in stage.json how the reward ranks generated samples of held-out prompts
(the ReNeg split's held-out prompts, which the pool never draws, at seeds of their own) against the judge:
Spearman with the judge's accuracy, and per judge check the AUC of the reward and of the raters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as shapes_data
from .. import world as W
from ..judge import judge
from ..raters import Panel, measured_disagreement, qualities
from ..reward import NORM_FILE
from ..tokenizer import build_tokenizer
from .clip import clip_inputs
from .common import BuildConfig, count_params, sample, step_rng, token_ids, train_loop, write_stage
from .t2i import image_pipeline

# Guidance scales of the t2i samples in the reward's pool: from none (blurry mean images) to strong.
REWARD_GUIDANCES = (1.0, 2.0, 4.0, 7.5)
# The rater panel's seed: [build seed, RATER_SEED].
RATER_SEED = 29
# The held-out evaluation: this many held-out prompts per guidance scale (at least HELD_OUT_MIN), sampled
# from seeds HELD_OUT_SEED + 10_000 g + i (the pool's are 10_000 (g + 1) + i, g < 4).
HELD_OUT_SHARE = 0.5
HELD_OUT_MIN = 16
HELD_OUT_SEED = 100_000
# The judge's still checks, for the per-check figures.
STILL_CHECKS = ("present", "shape", "colour", "background", "crisp")


def _perturbed(a: shapes_data.Attributes, rng: np.random.Generator) -> shapes_data.Attributes:
    """The same attributes with one changed (colour, shape or background): a wrong render of a prompt."""
    which = rng.integers(3)
    colours = [c for c in W.COLOURS if c not in (a.colour, a.background)]
    if which == 0:
        return shapes_data.Attributes(a.shape, str(rng.choice(colours)), a.background, a.direction)
    if which == 1:
        return shapes_data.Attributes(
            str(rng.choice([s for s in W.SHAPES if s != a.shape])), a.colour, a.background, a.direction
        )
    return shapes_data.Attributes(a.shape, a.colour, str(rng.choice(colours)), a.direction)


def candidates(prompt: str, generated: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Still frames (uint8 [H, W, 3]) for one prompt: its generated samples, a clean, a degraded and a wrong
    render."""
    a = shapes_data.parse_caption(prompt)
    out_frames = list(generated)
    out_frames.append(shapes_data.render(a, rng, frames=1)[0])
    kind = str(rng.choice(shapes_data.IMAGE_DEGRADATIONS))
    out_frames.append(shapes_data.render(a, rng, frames=1, degradations=(kind,))[0])
    out_frames.append(shapes_data.render(_perturbed(a, rng), rng, frames=1)[0])
    return out_frames


def rater_pairs(
    rng: np.random.Generator,
    n: int,
    pool: dict[str, list[np.ndarray]],
    panel: Panel,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """n (prompt, preferred, other) pairs: a random prompt of `pool` (prompt -> its generated frames), two
    of its candidates, a random rater's choice; pairs the rater ties are skipped."""
    keys = sorted(pool)
    pairs = []
    while len(pairs) < n:
        prompt = keys[int(rng.integers(len(keys)))]
        frames = candidates(prompt, pool[prompt], rng)
        i, j = rng.choice(len(frames), size=2, replace=False)
        choice = panel.choose(qualities(frames[i], prompt), qualities(frames[j], prompt), rng)
        if choice is None:
            continue
        win, lose = (i, j) if choice == 0 else (j, i)
        pairs.append((prompt, frames[win], frames[lose]))
    return pairs


def _generated(pipe, prompts: list[str], seed_base: int, cfg: BuildConfig) -> np.ndarray:
    """uint8 [len(REWARD_GUIDANCES) * len(prompts), H, W, 3]: the prompts sampled at each guidance scale,
    sample i of scale g from seed seed_base + 10_000 g + i."""
    out = []
    for g, guidance in enumerate(REWARD_GUIDANCES):
        seeds = [seed_base + 10_000 * g + i for i in range(len(prompts))]
        images = sample(pipe, prompts, seeds, video=False, steps=cfg.eval_steps, guidance=guidance)
        out.append((images * 255).round().astype(np.uint8))
    return np.concatenate(out)


def _pipeline(out: Path):
    pipe = image_pipeline(out)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reward_pool(out: Path, cfg: BuildConfig, pipe=None) -> tuple[list[str], np.ndarray]:
    """Generated t2i samples of training prompts at each of REWARD_GUIDANCES: prompts and uint8 frames."""
    train_prompts, _ = shapes_data.split_prompts()
    rng = np.random.default_rng([cfg.seed, 77])
    prompts = [str(p) for p in rng.choice(train_prompts, size=cfg.reward_pool_prompts)]
    pipe = pipe or _pipeline(out)
    return prompts * len(REWARD_GUIDANCES), _generated(pipe, prompts, 10_000, cfg)


def held_out_pool(out: Path, cfg: BuildConfig, pipe=None) -> tuple[list[str], np.ndarray]:
    """Generated t2i samples of held-out prompts (the ReNeg split's, never in the training pool) at each of
    REWARD_GUIDANCES, from seeds of their own: prompts and uint8 frames."""
    _, held_out = shapes_data.split_prompts()
    n = max(HELD_OUT_MIN, round(HELD_OUT_SHARE * cfg.reward_pool_prompts))
    rng = np.random.default_rng([cfg.seed, 78])
    prompts = [str(p) for p in rng.choice(held_out, size=n)]
    pipe = pipe or _pipeline(out)
    return prompts * len(REWARD_GUIDANCES), _generated(pipe, prompts, HELD_OUT_SEED, cfg)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties given their mean rank (scipy.stats.rankdata's "average"; scipy is no
    dependency)."""
    x = np.asarray(x, dtype=np.float64)
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (Pearson's on average ranks, as scipy.stats.spearmanr); None when
    either is constant."""
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _auc(scores: np.ndarray, passed: np.ndarray) -> float | None:
    """P(a passing sample scores above a failing one), ties half; None when all pass or all fail."""
    n1, n0 = int(passed.sum()), int((~passed).sum())
    if not n1 or not n0:
        return None
    return float((_ranks(scores)[passed].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def agreement_with_judge(scores: np.ndarray, prompts: list[str], frames: np.ndarray, panel: Panel) -> dict:
    """How `scores` (one per frame) rank the frames against the judge: Spearman with its accuracy, and per
    still check its pass rate and the AUC of the scores and of the panel's mean utility; the panel's own
    Spearman with the judge for reference."""
    verdicts = [judge(f, p) for f, p in zip(frames, prompts, strict=True)]
    accuracy = np.asarray([v["accuracy"] for v in verdicts])
    utility = np.asarray(
        [panel.weights.mean(0) @ qualities(f, p) for f, p in zip(frames, prompts, strict=True)]
    )

    checks = {}
    for k in STILL_CHECKS:
        passed = np.asarray([v[k] == 1.0 for v in verdicts])
        checks[k] = {
            "pass_rate": float(passed.mean()),
            "reward_auc": _auc(scores, passed),
            "raters_auc": _auc(utility, passed),
        }
    return {
        "n": len(prompts),
        "judge_accuracy": float(accuracy.mean()),
        "spearman_with_judge": spearman(scores, accuracy),
        "raters_spearman_with_judge": spearman(utility, accuracy),
        "checks": checks,
    }


def train_reward(out: Path, cfg: BuildConfig) -> None:
    from transformers import CLIPModel

    torch.manual_seed(cfg.seed + 4)
    model = CLIPModel.from_pretrained(out / "clip" / "clip")
    tokenizer = build_tokenizer()
    panel = Panel.from_seed([cfg.seed, RATER_SEED])
    pipe = _pipeline(out)
    pool_prompts, pool_frames = reward_pool(out, cfg, pipe)
    pool: dict[str, list[np.ndarray]] = {}
    for p, f in zip(pool_prompts, pool_frames, strict=True):
        pool.setdefault(p, []).append(f)
    held_prompts, held_frames = held_out_pool(out, cfg, pipe)
    del pipe
    s = cfg.reward

    def scores_of(prompts: list[str], frames: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ids = token_ids(tokenizer, prompts)
            scores = [
                _clip_scores(model, ids[i : i + 256], clip_inputs(frames[i : i + 256]))
                for i in range(0, len(prompts), 256)
            ]
        return torch.cat(scores).numpy()

    before = scores_of(held_prompts, held_frames)

    def step_fn(step: int) -> torch.Tensor:
        pairs = rater_pairs(step_rng(cfg.seed, "reward", step), s.batch, pool, panel)
        prompts = [p for p, _, _ in pairs]
        ids = token_ids(tokenizer, prompts)
        pixels = clip_inputs(np.stack([w for _, w, _ in pairs] + [lo for _, _, lo in pairs]))
        scores = _clip_scores(model, ids.repeat(2, 1), pixels)
        return -F.logsigmoid(scores[: len(prompts)] - scores[len(prompts) :]).mean()

    losses = train_loop("reward", out, cfg, s, {"model": model}, list(model.parameters()), step_fn)
    pool_scores = scores_of(pool_prompts, pool_frames)
    norm = {"mean": float(pool_scores.mean()), "std": float(pool_scores.std(ddof=1))}

    # The raters' disagreement with the judge on every pair the stage trained on (drawn again: the pairs
    # are deterministic per step, so this holds for a resumed stage too).
    judged = [
        (judge(w, p)["accuracy"], judge(lo, p)["accuracy"])
        for step in range(s.steps)
        for p, w, lo in rater_pairs(step_rng(cfg.seed, "reward", step), s.batch, pool, panel)
    ]
    preferred_first = [0] * len(judged)  # each pair is (the rater's choice, the other)
    disagreement, n_pairs = measured_disagreement(preferred_first, *map(list, zip(*judged, strict=True)))
    held_out = agreement_with_judge(scores_of(held_prompts, held_frames), held_prompts, held_frames, panel)
    held_out["spearman_with_judge_before"] = agreement_with_judge(before, held_prompts, held_frames, panel)[
        "spearman_with_judge"
    ]

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp / "reward")
        tokenizer.save_pretrained(tmp / "reward")
        (tmp / "reward" / NORM_FILE).write_text(json.dumps(norm, indent=1) + "\n")

    info = {
        "losses": losses,
        "params": count_params(model),
        "steps": s.steps,
        **norm,
        "preferences": "simulated raters (shapes_world.raters)",
        "raters": {
            "panel": len(panel.weights),
            "temperature": panel.temperature,
            "disagreement_with_judge": disagreement,
            "pairs_judge_differs": n_pairs,
            "pairs": len(judged),
        },
        "held_out": held_out,
    }
    write_stage(out, "reward", save, info)


def _clip_scores(model, input_ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """PickScore's score: exp(logit_scale) * cos(image, text), one per row."""
    text = model.get_text_features(input_ids=input_ids)
    image = model.get_image_features(pixel_values=pixels)
    text = getattr(text, "pooler_output", text)
    image = getattr(image, "pooler_output", image)
    cos = (F.normalize(text, dim=-1) * F.normalize(image, dim=-1)).sum(-1)
    return model.logit_scale.exp() * cos
