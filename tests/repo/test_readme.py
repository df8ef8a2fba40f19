"""The README's own examples run: the quick-start command and the Python API block."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from reneg_video.commands.video import main
from reneg_video.core.export import validate_gif, validate_mp4

from ..conftest import REPO, SHARED, code_blocks


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path, monkeypatch, capsys):
    command = code_blocks("bash")[0].strip().split(" && ")[-1]
    argv = shlex.split(command)
    assert argv[0] == "reneg-video"
    argv = [a.replace("../shared", str(SHARED)).replace("samples/out", str(tmp_path)) for a in argv[1:]]
    argv = [
        str(REPO / a) if a.startswith(("reneg_video/", "shapes_world/")) else a for a in argv
    ]  # shipped files
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    for name in ("shapes", "shapes-compare"):  # the ReNeg video and null | handcrafted | ReNeg
        validate_mp4(tmp_path / f"{name}.mp4", 8)
        validate_gif(tmp_path / f"{name}.gif", 8)


def test_readme_standin_command_runs(tmp_path, capsys):
    command = code_blocks("bash")[2].strip()
    argv = shlex.split(command)
    assert argv[0] == "reneg-video"
    argv = [a.replace("../shared", str(SHARED)).replace("samples/out", str(tmp_path)) for a in argv[1:]]
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    validate_mp4(tmp_path / "corgi.mp4", 8)
    validate_gif(tmp_path / "corgi.gif", 8)


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    test_command = code_blocks("bash")[1].strip().split(" && ")[-1]
    assert test_command in ci


def test_readme_python_api_runs(tmp_path, monkeypatch):
    code = code_blocks("python")[0]
    code = code.replace("../shared", str(SHARED)).replace("samples/out", str(tmp_path))
    exec(compile(code, "README.md", "exec"), {})
    assert validate_mp4(Path(tmp_path) / "api.mp4", 8)["frames"] == 8
