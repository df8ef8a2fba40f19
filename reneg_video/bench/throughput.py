"""validate_per_video: what one video costs inside `reneg-validate` against one `reneg-video` render of it.

Both arms are the real commands in fresh interpreters, timed from start to exit, so each pays its imports
and its model (and reward) loading: a validation loads once for all its (prompt, seed, arm) videos, a
single render loads for its one video. ours = validate's wall time / its videos; baseline = the wall time
of `reneg-video` rendering one of those videos (same model, steps, size, the ReNeg arm). Goal <= 1.2
(issue 31): batch validation must not cost more per video than rendering the videos one by one would.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..core.specs import load_spec
from .harness import Row, alternate, median_of

VALIDATE_GOAL = 1.2
# The quick suite runs on a stand-in at test size; the full one on the shapes world's video model (its own
# size and steps), with its reward, as a user validating a transfer would.
QUICK = {"model": "tiny-zeroscope", "reward": "tiny-imagereward", "prompts": 2, "seeds": 1, "extra": []}
FULL = {"model": "shapes-t2v", "reward": "shapes-reward", "prompts": 4, "seeds": 2, "extra": []}
QUICK_SIZE = ["--frames", "2", "--height", "32", "--width", "32", "--steps", "2"]
ARMS_PER_ITEM = 3  # null, handcrafted, ReNeg: every arm reneg-validate renders by default


def _embedding_for(model: str, folder: Path) -> Path:
    """A zeros embedding of the model's text space, written in `folder` (timing does not depend on values)."""
    import torch

    from ..core.embedding import NegativeEmbedding

    spec = load_spec(model)
    family = spec.family
    tokens = family.positions or spec.tokens
    path = folder / "neg.safetensors"
    mask = torch.ones(1, tokens, dtype=torch.bool) if family.masked else None
    NegativeEmbedding(torch.zeros(1, tokens, family.width), mask, family, source="bench").save(path)
    return path


def _prompts(model: str, count: int) -> list[str]:
    from ..core.plugins import judge_for

    judged = judge_for(model)
    if judged is not None:
        return list(judged.prompts())[:count]
    return [f"a corgi surfing a wave, take {i}" for i in range(count)]


def _timed(args: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{args[0]} failed (exit {proc.returncode}): {tail}")
    return {"seconds": seconds}


def row_validate_per_video(quick: bool) -> Row:
    """Per-video wall time of reneg-validate vs a single reneg-video render, alternated, medians."""
    with tempfile.TemporaryDirectory(prefix="reneg-bench-validate-") as work:
        return _measure_validate(quick, Path(work))


def _measure_validate(quick: bool, work: Path) -> Row:
    cfg = QUICK if quick else FULL
    size = QUICK_SIZE if quick else []
    repeats = 1 if quick else 3
    neg = _embedding_for(cfg["model"], work)
    prompts = _prompts(cfg["model"], cfg["prompts"])
    prompts_file = work / "prompts.txt"
    prompts_file.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    videos = len(prompts) * cfg["seeds"] * ARMS_PER_ITEM
    runs = itertools.count()
    common = ["--model", cfg["model"], "--neg", str(neg), *size]

    def validate() -> dict[str, Any]:
        out = work / f"validate-{next(runs)}"
        result = _timed(
            ["reneg_video.commands.validate", *common, "--prompts-file", str(prompts_file), "--seeds",
             str(cfg["seeds"]), "--reward", cfg["reward"], "--out", str(out), "--quiet"]
        )  # fmt: skip
        return {"seconds": result["seconds"] / videos}

    def single() -> dict[str, Any]:
        out = work / f"single-{next(runs)}.mp4"
        return _timed(
            ["reneg_video.commands.video", *common, "--prompt", prompts[0], "--seed", "0", "--out", str(out),
             "--quiet"]
        )  # fmt: skip

    results = alternate({"validate": validate, "single": single}, repeats)
    return Row(
        "validate_per_video",
        median_of(results["validate"], "seconds"),
        median_of(results["single"], "seconds"),
        "s",
        goal=VALIDATE_GOAL,
        note=f"{cfg['model']}, reward {cfg['reward']}: reneg-validate of {len(prompts)} prompts x "
        f"{cfg['seeds']} seeds x {ARMS_PER_ITEM} arms ({videos} videos), wall time per video, vs one "
        f"reneg-video render (ReNeg arm), both fresh processes with their loading; median of {repeats} "
        "alternated runs",
        samples={k: [r["seconds"] for r in v] for k, v in results.items()},
        extra={"videos_per_validation": videos, "prompts": prompts},
    )
