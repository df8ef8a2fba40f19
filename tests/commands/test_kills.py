"""SIGKILL at random moments: no partial file ever sits at a destination name, and --resume ends
bit-identical to an uninterrupted run.

`reneg-video`: killed during import, generation and export (seeded kill times spread over a measured
run, and once right when the hidden temporary MP4 appears); each destination is then absent or a
complete valid video. `reneg-train`: killed at seeded times and once while a checkpoint folder is
being written; resuming until done gives the same embedding bytes and metrics as one clean run.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reneg_video.core.export import validate_gif, validate_mp4

from ..conftest import run_and_kill

# Minutes of work each (quick builds, real processes killed and resumed): `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def hidden_partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and ".partial-" in p.name]


# --- reneg-video -------------------------------------------------------------------------------------------


def test_sigkill_reneg_video_never_leaves_a_partial_video(tmp_path, pipelines):
    pipelines("tiny-zeroscope")  # the stand-in is built (in the session cache) before any kill
    out = tmp_path / "out"
    out.mkdir()
    mp4, gif = out / "v.mp4", out / "v.gif"
    args = ["-m", "reneg_video", "--model", "tiny-zeroscope", "--negative-prompt", "blurry", "--prompt",
            "a corgi", "--frames", "8", "--steps", "2", "--height", "32", "--width", "32", "--out", mp4,
            "--out", gif, "--quiet"]  # fmt: skip

    def check(context: str) -> None:
        names = {p.name for p in out.iterdir()} - {p.name for p in hidden_partials(out)}
        assert names <= {"v.mp4", "v.gif"}, (context, names)
        if mp4.exists():
            validate_mp4(mp4, 8)
        if gif.exists():
            validate_gif(gif, 8)

    def clear() -> None:
        for p in out.iterdir():
            p.unlink()

    # Right when the encoder's hidden temporary file appears: the kill lands mid-export. Its time also
    # measures the run, for the seeded kill times below.
    to_export = run_and_kill(args, kill_when=lambda: bool(hidden_partials(out)))
    assert to_export > 0 and hidden_partials(out) and not mp4.exists(), "the kill did not land mid-export"
    check("killed mid-export")
    outcomes = []
    for seed in range(4):  # spread over the run: import, load, denoising, encoding, the second output
        clear()
        kill_after = random.Random(seed).uniform(0.1, 0.95) * to_export
        outcomes.append(run_and_kill(args, kill_after=kill_after))
        check(f"seed {seed}: killed after {kill_after:.2f} s (export began at {to_export:.2f} s)")
    assert sum(t > 0 for t in outcomes) >= 2, outcomes  # load on shared CI cores may let one finish


# --- reneg-train -------------------------------------------------------------------------------------------

TRAIN_STEPS = 3  # one step of tiny-sd21 + tiny-imagereward takes ~7-15 s on 2 shared cores


def _train_args(out: Path, prompts: Path, *extra) -> list:
    return ["-m", "reneg_video.commands.train", "--model", "tiny-sd21", "--reward", "tiny-imagereward",
            "--prompts-file", prompts, "--out", out, "--height", 32, "--width", 32, "--sampling-steps", 6,
            "--grad-step-max", 2, "--val-prompts", 0, "--batch-size", 1, "--steps", TRAIN_STEPS,
            "--checkpoint-every", 1, "--keep-checkpoints", 2, "--seed", 3, *extra]  # fmt: skip


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _checkpoints_complete(out: Path) -> None:
    """Every checkpoint folder under its final name is whole: a partial one is never resumable."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return
    for step in folder.glob("step-*"):
        if (step / "state.pt").exists():
            state = torch.load(step / "state.pt", map_location="cpu", weights_only=True)
            assert state["step"] == int(step.name.split("-")[1]), step


def test_sigkill_reneg_train_then_resume_is_bit_identical(tmp_path):
    pytest.importorskip(
        "reneg_video.rewards", reason="reneg-train's tiny-imagereward comes with the rewards module"
    )
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\na red panda\na corgi surfing\n")
    clean = tmp_path / "clean"
    start = time.monotonic()
    assert run_and_kill(_train_args(clean, prompts)) < 0
    total = time.monotonic() - start
    expected = load_file(clean / "negative_embedding.safetensors")["embedding"]

    killed = tmp_path / "killed"
    # First while the first checkpoint folder is being written (its hidden temporary name exists).
    partial = lambda: any((killed / "checkpoints").glob(".step-*.partial-*"))  # noqa: E731
    assert run_and_kill(_train_args(killed, prompts), kill_when=partial) > 0
    _checkpoints_complete(killed)
    left_partial = partial()
    # Then at seeded moments of resumed runs (import, model load, steps, checkpoint writes).
    kills = 0
    for seed in range(2):
        kill_after = random.Random(100 + seed).uniform(0.3, 0.8) * total
        kills += run_and_kill(_train_args(killed, prompts, "--resume"), kill_after=kill_after) > 0
        _checkpoints_complete(killed)
    assert run_and_kill(_train_args(killed, prompts, "--resume")) < 0  # to the end
    got = load_file(killed / "negative_embedding.safetensors")["embedding"]
    assert torch.equal(got, expected), "resumed training is not bit-identical to the clean run"
    assert _metrics(killed) == _metrics(clean)
    assert not any((killed / "checkpoints").glob(".step-*.partial-*"))
    assert kills >= 1, "no seeded kill landed before the run finished"
    if left_partial:
        print("a partial checkpoint folder was left by the kill and never resumed")
