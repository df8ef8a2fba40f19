"""Shared fixtures: the ../shared reference files, and one stand-in cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RENEG_SHARED", REPO.parent / "shared"))
RENEG = SHARED / "reneg"


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


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads made the trainer tests (and the tiny
    VideoCrafter2 UNet) many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
