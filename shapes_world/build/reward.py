"""Stage 5, `reward`: the stage-1 CLIP fine-tuned Bradley-Terry on pairs ranked by the judge (the PickScore
recipe): generated t2i samples, clean, degraded and wrongly-attributed renders of the same prompt.
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
from ..reward import NORM_FILE
from ..tokenizer import build_tokenizer
from .clip import clip_inputs
from .common import BuildConfig, count_params, sample, step_rng, token_ids, train_loop, write_stage
from .t2i import image_pipeline

# Guidance scales of the t2i samples in the reward's pool: from none (blurry mean images) to strong.
REWARD_GUIDANCES = (1.0, 2.0, 4.0, 7.5)


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


def reward_pool(out: Path, cfg: BuildConfig) -> tuple[list[str], np.ndarray]:
    """Generated t2i samples of training prompts at each of REWARD_GUIDANCES: prompts and uint8 frames."""
    train_prompts, _ = shapes_data.split_prompts()
    rng = np.random.default_rng([cfg.seed, 77])
    prompts = [str(p) for p in rng.choice(train_prompts, size=cfg.reward_pool_prompts)]
    pipe = image_pipeline(out)
    pipe.set_progress_bar_config(disable=True)
    all_prompts, all_frames = [], []
    for g, guidance in enumerate(REWARD_GUIDANCES):
        seeds = [10_000 * (g + 1) + i for i in range(len(prompts))]
        images = sample(pipe, prompts, seeds, video=False, steps=cfg.eval_steps, guidance=guidance)
        all_prompts += prompts
        all_frames.append((images * 255).round().astype(np.uint8))
    return all_prompts, np.concatenate(all_frames)


def train_reward(out: Path, cfg: BuildConfig) -> None:
    from transformers import CLIPModel

    torch.manual_seed(cfg.seed + 4)
    model = CLIPModel.from_pretrained(out / "clip" / "clip")
    tokenizer = build_tokenizer()
    pool_prompts, pool_frames = reward_pool(out, cfg)
    by_prompt: dict[str, list[int]] = {}
    for i, p in enumerate(pool_prompts):
        by_prompt.setdefault(p, []).append(i)
    keys = sorted(by_prompt)
    s = cfg.reward

    def candidates(prompt: str, rng: np.random.Generator) -> list[np.ndarray]:
        """Frames for one prompt: its generated samples, a clean, a degraded and a wrong render."""
        a = shapes_data.parse_caption(prompt)
        out_frames = [pool_frames[i] for i in by_prompt[prompt]]
        out_frames.append(shapes_data.render(a, rng, frames=1)[0])
        kind = str(rng.choice(shapes_data.IMAGE_DEGRADATIONS))
        out_frames.append(shapes_data.render(a, rng, frames=1, degradations=(kind,))[0])
        out_frames.append(shapes_data.render(_perturbed(a, rng), rng, frames=1)[0])
        return out_frames

    def step_fn(step: int) -> torch.Tensor:
        rng = step_rng(cfg.seed, "reward", step)
        winners, losers, prompts = [], [], []
        while len(prompts) < s.batch:
            prompt = keys[int(rng.integers(len(keys)))]
            frames = candidates(prompt, rng)
            i, j = rng.choice(len(frames), size=2, replace=False)
            ai, aj = judge(frames[i], prompt)["accuracy"], judge(frames[j], prompt)["accuracy"]
            if ai == aj:
                continue
            win, lose = (i, j) if ai > aj else (j, i)
            winners.append(frames[win])
            losers.append(frames[lose])
            prompts.append(prompt)
        ids = token_ids(tokenizer, prompts)
        pixels = clip_inputs(np.stack(winners + losers))
        scores = _clip_scores(model, ids.repeat(2, 1), pixels)
        return -F.logsigmoid(scores[: len(prompts)] - scores[len(prompts) :]).mean()

    losses = train_loop("reward", out, cfg, s, {"model": model}, list(model.parameters()), step_fn)
    model.eval()
    with torch.no_grad():
        ids = token_ids(tokenizer, pool_prompts)
        scores = torch.cat(
            [
                _clip_scores(model, ids[i : i + 256], clip_inputs(pool_frames[i : i + 256]))
                for i in range(0, len(pool_prompts), 256)
            ]
        )
        norm = {"mean": float(scores.mean()), "std": float(scores.std())}

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp / "reward")
        tokenizer.save_pretrained(tmp / "reward")
        (tmp / "reward" / NORM_FILE).write_text(json.dumps(norm, indent=1) + "\n")

    write_stage(
        out, "reward", save, {"losses": losses, "params": count_params(model), "steps": s.steps, **norm}
    )


def _clip_scores(model, input_ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """PickScore's score: exp(logit_scale) * cos(image, text), one per row."""
    text = model.get_text_features(input_ids=input_ids)
    image = model.get_image_features(pixel_values=pixels)
    text = getattr(text, "pooler_output", text)
    image = getattr(image, "pooler_output", image)
    cos = (F.normalize(text, dim=-1) * F.normalize(image, dim=-1)).sum(-1)
    return model.logit_scale.exp() * cos
