"""`reneg-video --prompts-file P --resume`: a run SIGKILLed after its first prompt, then resumed, renders only
the prompts it had not finished and ends with the same files, byte for byte, as one uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reneg_video.core.export import validate_gif, validate_mp4

from ..conftest import run_and_kill, run_cli, subprocess_env

PROMPTS = ["a corgi", "a red panda", "a cat"]
NAMES = [f"v-{i:03d}{suffix}" for i in range(len(PROMPTS)) for suffix in (".mp4", ".gif")]


def _args(prompts: Path, out: Path, *extra) -> list:
    return ["-m", "reneg_video", "--model", "tiny-zeroscope", "--negative-prompt", "blurry", "--prompts-file",
            prompts, "--frames", 4, "--steps", 2, "--height", 32, "--width", 32, "--seed", 5,
            "--out", out / "v.mp4", "--out", out / "v.gif", "--quiet", *extra]  # fmt: skip


def _run(args: list) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *map(str, args)], env=subprocess_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow  # three runs in subprocesses: about a minute on 2 shared cores
def test_sigkill_then_resume_renders_only_the_missing_prompts_bit_identically(tmp_path, pipelines):
    pipelines("tiny-zeroscope")  # the stand-in is built (in the session cache) before any kill
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir()
    killed.mkdir()
    _run(_args(prompts, clean))
    assert sorted(p.name for p in clean.iterdir()) == sorted(NAMES)

    # Killed as soon as the first prompt's last output (its GIF, written after its MP4) is in place.
    assert run_and_kill(_args(prompts, killed), kill_when=lambda: (killed / "v-000.gif").exists()) > 0
    assert not (killed / "v-001.gif").exists(), "the kill landed after the second prompt"
    kept = {name: (killed / name).stat().st_mtime_ns for name in ("v-000.mp4", "v-000.gif")}

    resumed = _run(_args(prompts, killed, "--resume"))
    assert "resume: prompt 0 'a corgi' is complete (v-000.mp4, v-000.gif); skipped" in resumed.stderr
    assert "resume: 1 of 3 prompts complete; rendering 2" in resumed.stderr
    assert "rendering it" in resumed.stderr  # prompts 1 and 2 (prompt 1 may have left only its MP4)
    written = sorted(Path(line).name for line in resumed.stdout.splitlines())
    assert written == sorted(NAMES[2:]), resumed.stdout  # the kept prompt was not rendered again
    assert {name: (killed / name).stat().st_mtime_ns for name in kept} == kept
    assert sorted(p.name for p in killed.iterdir()) == sorted(NAMES)  # no hidden partial file left
    for name in NAMES:
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
        (validate_mp4 if name.endswith(".mp4") else validate_gif)(killed / name)

    again = _run(_args(prompts, killed, "--resume"))  # nothing left: no model is loaded, nothing written
    assert "all 3 prompts are complete; nothing to render" in again.stderr and again.stdout == ""


def test_resume_rerenders_an_output_that_is_not_a_complete_video(tmp_path, capsys, pipelines):
    pipelines("tiny-zeroscope")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a corgi\na cat\n")
    args = _args(prompts, tmp_path)[2:]
    assert run_cli(capsys, *args)[0] == 0
    (tmp_path / "v-001.gif").write_bytes(b"GIF89a")  # a damaged file under a destination name
    code, out, err = run_cli(capsys, *args, "--resume")
    assert code == 0, err
    assert "prompt 0 'a corgi' is complete" in err and "prompt 1 'a cat': " in err and "unreadable GIF" in err
    assert sorted(Path(line).name for line in out.splitlines()) == ["v-001.gif", "v-001.mp4"]
    validate_gif(tmp_path / "v-001.gif", 4)


def test_resume_without_a_prompts_file_exits_2_with_one_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, *_args(tmp_path / "p.txt", tmp_path)[2:6], "--prompt", "a cat",
                             "--out", tmp_path / "v.mp4", "--resume")  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "--resume: needs --prompts-file FILE" in err
    assert list(tmp_path.iterdir()) == []


def test_resume_into_a_missing_folder_exits_2_with_one_line(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a corgi\na cat\n")
    code, _, err = run_cli(capsys, *_args(prompts, tmp_path / "nowhere")[2:], "--resume")
    assert code == 2 and err.count("\n") == 1 and "does not exist; create it first" in err, err
    assert not (tmp_path / "nowhere").exists()
