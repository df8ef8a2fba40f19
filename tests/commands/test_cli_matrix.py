"""Bad-argument matrices for every CLI: exit 2, a line or two naming the problem, no traceback, nothing
written, and no model (pipeline or reward) loaded first.

`reneg-video` has its in-process matrix in test_cli.py; here are `reneg-train`'s and the VideoCrafter2
converter's, and a representative subset of all three run as real subprocesses, so exit codes and the
absence of tracebacks are the real ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from ..conftest import shared_file

REPO = Path(__file__).resolve().parents[2]
EVIL_PICKLE = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any pipeline or reward load fails the test: every refusal must come before them."""
    import reneg_video.models.pipeline as pipeline

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "load_pipeline", refuse)
    fake = types.ModuleType("reneg_video.rewards")  # stands in whether or not the real one exists
    fake.load_reward_spec = refuse
    monkeypatch.setitem(sys.modules, "reneg_video.rewards", fake)


# --- reneg-train -------------------------------------------------------------------------------------------


def _train_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\na red panda\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    evil = tmp_path / "evil.bin"
    evil.write_bytes(EVIL_PICKLE)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    old = tmp_path / "old-run"
    (old / "checkpoints" / "step-00000001").mkdir(parents=True)
    (old / "checkpoints" / "step-00000001" / "state.pt").write_bytes(b"x")
    base = ["--model", "tiny-sd21", "--reward", "tiny-imagereward", "--prompts-file", prompts,
            "--out", tmp_path / "run", "--val-prompts", 0, "--batch-size", 1, "--steps", 2,
            "--sampling-steps", 6, "--grad-step-max", 2]  # fmt: skip
    video = [*base[:1], "tiny-zeroscope", *base[2:]]

    def swap(flag, value, args=base):
        i = args.index(flag)
        return [*args[: i + 1], value, *args[i + 2 :]]

    cases = {
        "steps 0": (swap("--steps", 0), "--steps 0"),
        "batch 0": (swap("--batch-size", 0), "--batch-size 0"),
        "sampling steps 0": (swap("--sampling-steps", 0), "--sampling-steps 0"),
        "frames 0": ([*video, "--frames", 0], "--frames 0"),
        "frames on an image model": ([*base, "--frames", 4], "image model"),
        "mochi not trainable": (swap("--model", "tiny-mochi"), "not supported"),
        "size off the multiple": ([*base, "--height", 30], "multiple of 8"),
        "width 0": ([*base, "--width", 0], "--width 0"),
        "nan guidance": ([*base, "--guidance", "nan"], "--guidance nan"),
        "nan lr": ([*base, "--lr", "nan"], "--lr nan"),
        "unknown model": (swap("--model", "zeroscoop"), "unknown model"),
        "missing init": ([*base, "--init", tmp_path / "nope.bin"], "no such file"),
        "directory init": ([*base, "--init", tmp_path], "is a directory"),
        "unknown init suffix": ([*base, "--init", prompts], "unknown suffix"),
        "hostile init": ([*base, "--init", evil], "posix.system"),
        "missing out folder": (swap("--out", tmp_path / "no" / "run"), "does not exist"),
        "out is a file": (swap("--out", a_file), "is a file"),
        "missing prompts": (swap("--prompts-file", tmp_path / "none.txt"), "no such file"),
        "prompts a directory": (swap("--prompts-file", tmp_path), "no such file"),
        "empty prompts": (swap("--prompts-file", empty), "0 prompts"),
        "non-UTF-8 prompts": (swap("--prompts-file", latin1), "UTF-8"),
        "too few prompts for val": (swap("--val-prompts", 3), "--val-prompts 3"),
        "accum does not divide batch": ([*swap("--batch-size", 2), "--grad-accum", 3], "--grad-accum 3"),
        "grad window past the chain": (swap("--grad-step-max", 6), "--grad-step-max 6"),
        "bad int": (swap("--steps", "two"), "invalid int"),
        "unknown option": ([*base, "--colour", "red"], "unrecognized"),
        "bad precision": ([*base, "--mixed-precision", "fp8"], "--mixed-precision fp8"),
        "old checkpoints without --resume": (swap("--out", old), "--resume"),
    }
    if shared_file_or_none("sd1.5_reneg_emb.bin"):
        cases["wrong-family init"] = ([*base, "--init", shared_file_or_none("sd1.5_reneg_emb.bin")], "768")
    return cases


def shared_file_or_none(name: str):
    try:
        return shared_file(name)
    except pytest.skip.Exception:
        return None


def test_train_bad_input_exits_2_before_loading_and_writes_nothing(tmp_path, capsys, no_model_loads):
    from reneg_video.commands.train import main

    cases = _train_cases(tmp_path)
    assert len(cases) >= 25
    for name, (args, word) in cases.items():
        before = listing(tmp_path)
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("reneg-train: error:"), (name, err)
        assert word in lines[0], (name, lines[0])
        assert listing(tmp_path) == before, name


def test_train_metrics_with_a_half_written_line_resume_cleanly(tmp_path):
    """Regression: a run killed while appending to metrics.jsonl left half a JSON line, and --resume
    then crashed (JSONDecodeError) instead of truncating the metrics to the checkpoint."""
    from reneg_video.training.trainer import Trainer

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\n{"step": 2, "loss": 1}\n{"step": 3, "lo')
    stub = types.SimpleNamespace(out=tmp_path, main=True)
    Trainer._truncate_metrics(stub, 2)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 1}\n{"step": 2, "loss": 1}\n'


# --- python -m reneg_video.commands.convert_videocrafter2 -------------------------------------------


def _convert_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    good = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}}, good)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00not a checkpoint" * 40)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:300])
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(EVIL_PICKLE)
    bare = tmp_path / "bare.ckpt"
    torch.save(torch.zeros(3), bare)
    (tmp_path / "exists").mkdir()
    (tmp_path / "te").mkdir()
    return {
        "missing ckpt": ([tmp_path / "absent.ckpt", tmp_path / "out"], "checkpoint not found"),
        "directory ckpt": ([tmp_path, tmp_path / "out"], "checkpoint not found"),
        "junk ckpt": ([junk, tmp_path / "out"], "junk.ckpt"),
        "truncated ckpt": ([cut, tmp_path / "out"], "corrupt"),
        "hostile ckpt": ([evil, tmp_path / "out"], "nothing in it ran"),
        "not a state dict": ([bare, tmp_path / "out"], "not an lvdm checkpoint"),
        "wrong tensors": ([good, tmp_path / "out"], "does not match"),
        "out exists": ([good, tmp_path / "exists"], "already exists"),
        "out parent missing": ([good, tmp_path / "no" / "out"], "no such folder"),
        "text encoder folder lacks parts": ([good, tmp_path / "out", "--text-encoder-from", tmp_path / "te"], "text_encoder"),
        "missing argument": ([good], "required"),
    }  # fmt: skip


def test_convert_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    from reneg_video.commands.convert_videocrafter2 import main

    for name, (args, word) in _convert_cases(tmp_path).items():
        before = listing(tmp_path)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert word in err, (name, err)
        assert listing(tmp_path) == before, name


# --- the same refusals through real processes ----------------------------------------------------------------


def _run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


@pytest.mark.slow
def test_every_cli_refuses_as_a_real_process(tmp_path):
    """One process per case: the exit code is the interpreter's, stderr is all there is."""
    work = tmp_path / "work"
    work.mkdir()
    train = _train_cases(work)
    convert = _convert_cases(work)
    video = ["-m", "reneg_video", "--model", "tiny-ltx-video", "--prompt", "x", "--out", work / "o.mp4"]
    cases = {
        "video: ltx frames 8": ([*video, "--frames", 8], "8k+1"),
        "video: nan guidance": ([*video, "--guidance", "nan"], "--guidance nan"),
        "train: frames 0": (["-m", "reneg_video.commands.train", *train["frames 0"][0]], "--frames 0"),
        "train: hostile init": (["-m", "reneg_video.commands.train", *train["hostile init"][0]], "posix.system"),
        "convert: truncated ckpt": (["-m", "reneg_video.commands.convert_videocrafter2", *convert["truncated ckpt"][0]], "corrupt"),
        "convert: out exists": (["-m", "reneg_video.commands.convert_videocrafter2", *convert["out exists"][0]], "already exists"),
    }  # fmt: skip
    for name, (args, word) in cases.items():
        before = listing(work)
        proc = _run(args, tmp_path)
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and word in proc.stderr, (name, proc.stderr[-2000:])
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert 1 <= len(lines) <= 3, (name, proc.stderr)
        assert listing(work) == before, name


def test_resume_without_a_checkpoint_drops_metrics_of_the_killed_run(tmp_path):
    """Regression (found by the kill test): a run killed before its first checkpoint left metrics
    lines that the restarted run then duplicated (step 1 twice in metrics.jsonl)."""
    from reneg_video.training.trainer import Trainer

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1}\n')
    stub = types.SimpleNamespace(out=tmp_path, main=True, start_step=0)
    stub._checkpoints = lambda: []
    stub._truncate_metrics = lambda step: Trainer._truncate_metrics(stub, step)
    Trainer.resume(stub)
    assert (tmp_path / "metrics.jsonl").read_text() == ""
