"""The guidance row: NAG at guidance 1 (one denoiser pass per step) vs CFG at the spec's guidance (two)."""

from __future__ import annotations

import time
from typing import Any

import torch

from .harness import Row, alternate, median_of

# Issue 30: NAG's point is a negative at one pass per step, so it should cost less than CFG's two; the
# extra cross-attention over the negative context is what it adds back.
NAG_GOAL = 1.0
NAG_MODEL = "shapes-t2v"
NAG_QUICK_MODEL = "tiny-zeroscope"


def row_nag_vs_cfg(quick: bool, model: str | None = None) -> Row:
    """Wall time of one video: NAG (guidance 1, the negative in the cross-attention) vs CFG (the spec's
    guidance, the negative on its branch); same model, steps, prompt, seed and negative rows."""
    from ..core.embedding import NegativeEmbedding
    from ..core.inject import attach
    from ..core.nag import NagParams
    from ..models.generate import generate, settings_for
    from ..models.pipeline import load_pipeline

    model = model or (NAG_QUICK_MODEL if quick else NAG_MODEL)
    repeats = 1 if quick else 7
    sizes = {"frames": 2, "height": 32, "width": 32, "steps": 2} if quick else {}
    pipe = load_pipeline(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    spec = pipe.reneg_spec
    # Timing does not depend on the rows' values: a seeded random embedding of the model's text space.
    rows = torch.randn(1, spec.tokens, spec.family.width, generator=torch.Generator().manual_seed(1))
    attach(pipe, NegativeEmbedding(tensor=rows, mask=None, family=spec.family, source="bench:random"))
    cfg = settings_for(spec, seed=7, **sizes)
    nag = settings_for(spec, seed=7, guidance=1.0, nag=NagParams(), **sizes)
    prompt = "a red circle moving right on a blue background"

    def timed(settings) -> dict[str, Any]:
        start = time.perf_counter()
        generate(pipe, spec, prompt, settings)
        return {"seconds": time.perf_counter() - start}

    timed(nag), timed(cfg)  # warm-up
    results = alternate({"nag": lambda: timed(nag), "cfg": lambda: timed(cfg)}, repeats)
    return Row(
        "nag_vs_cfg",
        median_of(results["nag"], "seconds"),
        median_of(results["cfg"], "seconds"),
        "s",
        goal=NAG_GOAL,
        note=f"{model}, {cfg.steps} steps, {cfg.frames} frames {cfg.height}x{cfg.width}: NAG at guidance 1 vs "
        f"CFG at {cfg.guidance:g}, median of {repeats} alternated calls after a warm-up, {torch.get_num_threads()} "
        "threads",
        samples={k: [r["seconds"] for r in v] for k, v in results.items()},
    )
