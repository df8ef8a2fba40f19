"""Shared fixtures and helpers: the ../shared reference files, one stand-in cache per test session, one
thread for tiny models, forward-hook capture, in-process and killed-subprocess CLI runs.

Tests live in folders by the layer they exercise (core, models, rewards, training, commands, bench,
comfyui, repo, shapes_world); what several of them use is here, not imported from one another."""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RENEG_SHARED", REPO.parent / "shared"))
RENEG = SHARED / "reneg"
IMAGEREWARD_PROMPTS = SHARED / "prompts" / "imagereward_benchmark_prompts.txt"
README = (REPO / "README.md").read_text(encoding="utf-8")
# How often run_and_kill polls its process: fine enough to land a kill inside a short write.
POLL_S = 0.002


@pytest.fixture(scope="session", autouse=True)
def standin_cache(tmp_path_factory):
    """Stand-ins are built once per session in a private cache (the user's cache stays untouched)."""
    folder = tmp_path_factory.mktemp("standin-cache")
    old = os.environ.get("RENEG_VIDEO_CACHE")
    os.environ["RENEG_VIDEO_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("RENEG_VIDEO_CACHE", None)
    else:
        os.environ["RENEG_VIDEO_CACHE"] = old


def shared_file(name: str) -> Path:
    path = RENEG / name
    if not path.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"{path} is missing in CI: ../shared must sit beside the checkout")
        pytest.skip(f"{path} not found (../shared beside the checkout, or set RENEG_SHARED)")
    return path


@pytest.fixture
def sd21_file() -> Path:
    return shared_file("sd2.1_reneg_emb.bin")


@pytest.fixture
def sd15_file() -> Path:
    return shared_file("sd1.5_reneg_emb.bin")


@pytest.fixture
def pixart_file() -> Path:
    return shared_file("pixart-alpha_reneg_emb.bin")


@pytest.fixture(scope="session")
def pipelines():
    """Stand-in pipelines loaded once per session (read-only use in tests)."""
    import reneg_video

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            pipe = reneg_video.load_pipeline(name, device="cpu")
            pipe.set_progress_bar_config(disable=True)
            cache[name] = pipe
        return cache[name]

    return get


@contextlib.contextmanager
def _threads(count: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads made the trainer tests (and the tiny
    VideoCrafter2 UNet) many times slower."""
    with _threads(1):
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """`one_thread` for a whole module (`pytestmark = pytest.mark.usefixtures("one_thread_module")`): tiny
    forwards ran up to 40x slower with two threads on the shared 2-core machine."""
    with _threads(1):
        yield


def capture(module):
    """Record the tensor arguments of every forward call of `module`, by parameter name: (seen, handle)."""
    import torch

    seen = []
    signature = inspect.signature(module.forward)

    def hook(_module, args, kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        seen.append({k: v.detach().clone() for k, v in bound.items() if isinstance(v, torch.Tensor)})

    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


def run_cli(capsys, *args):
    """`reneg-video ARGS` in process: (exit code, stdout, stderr)."""
    from reneg_video.commands.video import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def code_blocks(lang: str) -> list[str]:
    """The README's fenced code blocks of one language, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def subprocess_env() -> dict[str, str]:
    # RENEG_VIDEO_CACHE comes from the session fixture above (the stand-in cache), inherited here.
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_and_kill(args: list, kill_after: float | None = None, kill_when=None, timeout: float = 300) -> float:
    """Run `python ARGS`; SIGKILL it after `kill_after` seconds or as soon as `kill_when()` is true.
    Returns the seconds it ran before the kill, or -1.0 if it finished first (then it must have
    succeeded)."""
    proc = subprocess.Popen(
        [sys.executable, *map(str, args)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    start = time.monotonic()
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            if (kill_after is not None and elapsed >= kill_after) or (kill_when is not None and kill_when()):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return elapsed
            if elapsed > timeout:
                raise AssertionError(f"{args[:3]} still running after {timeout} s")
            time.sleep(POLL_S)
        stderr = proc.stderr.read().decode(errors="replace")
        assert proc.returncode == 0, stderr[-2000:]
        return -1.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
