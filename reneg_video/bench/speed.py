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


def row_frame_scoring(quick: bool) -> Row:
    """16 frames: reneg_video.rewards' ImageReward vs image-reward 1.5's loop (the reward branch's script)."""
    name, unit, goal = "frame_scoring_time", "s", 1.0
    if quick:
        return Row(
            name, None, None, unit, goal, "skipped", "not run with --quick (it builds 2 x 447 M params)"
        )
    try:
        import reneg_video.rewards  # noqa: F401  (lazy: merged from the reward branch)
    except ImportError:
        return Row(
            name, None, None, unit, goal, "not available", "reneg_video.rewards is not in this checkout"
        )
    if not PARITY_SCRIPT.is_file():
        return Row(name, None, None, unit, goal, "not available", f"{PARITY_SCRIPT} is not in this checkout")
    with tempfile.TemporaryDirectory(prefix="reneg-bench-") as tmp:
        out = Path(tmp) / "parity.json"
        cmd = [sys.executable, str(PARITY_SCRIPT), "--frames", "16", "--repeats", "3", "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode != 0 or not out.is_file():
            why = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            return Row(name, None, None, unit, goal, "not available", f"parity script failed: {why[0]}")
        data = json.loads(out.read_text())
    try:
        ours, ref = float(data["ours_median_s"]), float(data["reference_median_s"])
    except (KeyError, TypeError, ValueError):
        return Row(
            name, None, None, unit, goal, "not available", f"parity JSON lacks medians: {sorted(data)}"
        )
    return Row(
        name,
        ours,
        ref,
        unit,
        goal,
        note="16 frames, scripts/parity_imagereward.py (reference in its side dir, interleaved, median of 3)",
        samples={"ours": data.get("ours_times_s", []), "baseline": data.get("reference_times_s", [])},
        extra={k: data.get(k) for k in ("max_abs_diff", "batch_size", "threads")},
    )
