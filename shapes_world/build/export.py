"""Stage 6, `export`: both pipelines (DDIM) and the reward written with `save_pretrained` in float16, plus
the judge accuracy of both generators on held-out prompts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import data as shapes_data
from ..judge import judge_many
from ..reward import NORM_FILE
from ..tokenizer import build_tokenizer
from .common import BuildConfig, sample, write_stage
from .polish import video_pipeline
from .t2i import image_pipeline


def evaluate_generators(out: Path, cfg: BuildConfig) -> dict:
    """Judge accuracy of both generators on held-out prompts x seeds (null negative)."""
    _, held = shapes_data.split_prompts()
    prompts = [held[i % len(held)] for i in range(cfg.eval_prompts)]
    rows = [(p, s) for p in prompts for s in range(cfg.eval_seeds)]
    row_prompts, row_seeds = [p for p, _ in rows], [s for _, s in rows]
    result = {}
    guidance = {"t2i": cfg.eval_guidance, "t2v": cfg.eval_guidance_t2v}
    for name, make_pipe, video in (("t2i", image_pipeline, False), ("t2v", video_pipeline, True)):
        pipe = make_pipe(out)
        pipe.set_progress_bar_config(disable=True)
        frames = sample(
            pipe, row_prompts, row_seeds, video=video, steps=cfg.eval_steps, guidance=guidance[name]
        )
        result[name] = judge_many(list(frames), row_prompts)
    result["settings"] = {"steps": cfg.eval_steps, "guidance": guidance, "seeds": cfg.eval_seeds}
    return result


def export(out: Path, cfg: BuildConfig) -> None:
    from transformers import CLIPModel

    evaluation = evaluate_generators(out, cfg)

    def save(tmp: Path) -> None:
        for name, pipe in (("t2i", image_pipeline(out)), ("t2v", video_pipeline(out))):
            pipe.to(torch.float16).save_pretrained(tmp / name, safe_serialization=True)
        reward = CLIPModel.from_pretrained(out / "reward" / "reward").to(torch.float16)
        reward.save_pretrained(tmp / "reward")
        build_tokenizer().save_pretrained(tmp / "reward")
        norm = (out / "reward" / "reward" / NORM_FILE).read_text()
        (tmp / "reward" / NORM_FILE).write_text(norm)

    write_stage(out, "export", save, {"judge": evaluation})
