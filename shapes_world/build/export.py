"""Stage 6, `export`: both pipelines (DDIM) and the reward written with `save_pretrained` in float16, plus
per generator a guidance sweep with null text (sweep.py: the table and the judge-optimal value, which
`reneg-build-shapes --install` writes into the spec) and the judge accuracy on held-out prompts at the chosen
guidance, all in OUT/export/stage.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import world as W
from ..data import parse_caption
from ..judge import CHECKS, judge, judge_many
from ..reward import NORM_FILE
from ..tokenizer import build_tokenizer
from .common import BuildConfig, sample, write_stage
from .polish import video_pipeline
from .sweep import choose_guidance, held_out_prompts, sweep_guidance, sweep_rows, sweep_summary
from .t2i import image_pipeline


def evaluate_generators(out: Path, cfg: BuildConfig) -> tuple[dict, dict]:
    """Per generator: the guidance sweep (sweep.py) with null text, then the judge accuracy on held-out
    prompts x seeds (null negative) at the chosen guidance. Returns (judge figures, sweep summary)."""
    prompts = held_out_prompts(cfg.eval_prompts)
    rows = [(p, s) for p in prompts for s in range(cfg.eval_seeds)]
    row_prompts, row_seeds = [p for p, _ in rows], [s for _, s in rows]
    result, tables, swept, chosen = {}, {}, {}, {}
    for name, make_pipe, video in (("t2i", image_pipeline, False), ("t2v", video_pipeline, True)):
        pipe = make_pipe(out)
        pipe.set_progress_bar_config(disable=True)
        swept[name] = sweep_rows(cfg, name)
        tables[name] = sweep_guidance(pipe, *swept[name], video=video, steps=cfg.eval_steps)
        chosen[name] = choose_guidance(tables[name])
        frames = sample(
            pipe, row_prompts, row_seeds, video=video, steps=cfg.eval_steps, guidance=chosen[name]
        )
        result[name] = judge_figures(list(frames), row_prompts)
    result["settings"] = {"steps": cfg.eval_steps, "guidance": chosen, "seeds": cfg.eval_seeds}
    return result, sweep_summary(tables, swept, cfg.eval_steps)


def judge_figures(samples: list, prompts: list[str]) -> dict:
    """judge_many's means, plus the shape check per asked shape (`shape_circle`, ...: issue 29 asks each
    >= 0.8) and per check the share of samples failing it in some frame (`fail_<check>`)."""
    out = judge_many(samples, prompts)
    rows = [judge(x, p) for x, p in zip(samples, prompts, strict=True)]  # numpy, cheap beside sampling
    asked = [parse_caption(p).shape for p in prompts]
    for shape in W.SHAPES:
        picked = [r["shape"] for r, a in zip(rows, asked, strict=True) if a == shape]
        if picked:
            out[f"shape_{shape}"] = float(np.mean(picked))
    for check in CHECKS:
        failed = [r[check] < 1.0 for r in rows if check in r]
        if failed:
            out[f"fail_{check}"] = float(np.mean(failed))
    return out


def export(out: Path, cfg: BuildConfig) -> None:
    from transformers import CLIPModel

    evaluation, sweep = evaluate_generators(out, cfg)

    def save(tmp: Path) -> None:
        for name, pipe in (("t2i", image_pipeline(out)), ("t2v", video_pipeline(out))):
            pipe.to(torch.float16).save_pretrained(tmp / name, safe_serialization=True)
        reward = CLIPModel.from_pretrained(out / "reward" / "reward").to(torch.float16)
        reward.save_pretrained(tmp / "reward")
        build_tokenizer().save_pretrained(tmp / "reward")
        norm = (out / "reward" / "reward" / NORM_FILE).read_text()
        (tmp / "reward" / NORM_FILE).write_text(norm)

    write_stage(out, "export", save, {"judge": evaluation, "guidance_sweep": sweep})
