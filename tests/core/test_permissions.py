"""Outputs get the mode the user's umask gives any new file (the atomic path starts from tempfile's 0600)."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest

from reneg_video.commands.validate import main as validate_main
from reneg_video.commands.video import main as video_main
from reneg_video.core.atomic import atomic_dir, atomic_path, current_umask

from ..conftest import REPO, SHARED, code_blocks, shared_file


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_atomic_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        assert current_umask() == mask
        with atomic_path(tmp_path / "f.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    assert mode(tmp_path / "f.json") == file_mode
    assert mode(tmp_path / "d") == dir_mode


@pytest.mark.slow
def test_quickstart_outputs_are_0644_under_umask_022(tmp_path):
    import shlex

    argv = shlex.split(code_blocks("bash")[0].strip().split(" && ")[-1])[1:]
    argv = [a.replace("../shared", str(SHARED)).replace("samples/out", str(tmp_path)) for a in argv]
    argv = [str(REPO / a) if a.startswith("reneg_video/") else a for a in argv]  # the shipped embedding
    argv += ["--json", str(tmp_path / "run.json"), "--quiet"]
    with umask(0o022):
        assert video_main(argv) == 0
    written = sorted(p for p in tmp_path.iterdir() if p.is_file())
    assert {p.suffix for p in written} >= {".mp4", ".gif", ".json"}
    assert {p.name: oct(mode(p)) for p in written} == {p.name: oct(0o644) for p in written}


def test_validate_report_folder_is_0755_under_umask_022(tmp_path):
    out = tmp_path / "report"
    args = ["--model", "tiny-zeroscope", "--neg", str(shared_file("sd2.1_reneg_emb.bin")), "--prompts-file",
            str(SHARED / "prompts" / "reno_example_prompts.txt"), "--max-prompts", "1", "--seeds", "1",
            "--reward", "tiny-imagereward", "--frames", "2", "--height", "32", "--width", "32", "--steps", "1",
            "--out", str(out)]  # fmt: skip
    with umask(0o022):
        assert validate_main(args) == 0
    assert oct(mode(out)) == oct(0o755)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and all(mode(p) == 0o644 for p in files), {p.name: oct(mode(p)) for p in files}
