"""Real clients read every kind of MP4 the project writes: ffprobe (Debian's ffmpeg) and headless Chromium.

Skipped with the reason when the binaries are missing on a developer machine; a failure in CI
(`CI=true`), where `.ci/run` installs them.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reneg_video.commands.video import main as reneg_video
from reneg_video.core.export import export_video

from ..browser import CHROMIUM_FLAGS as BROWSER_FLAGS

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# The FACTS.md flags (tests/browser.py); this module adds a private profile folder per run.
CHROMIUM_FLAGS = [f for f in BROWSER_FLAGS if f != "--dump-dom"]
HAVE_ENOUGH_DATA = 4  # HTMLMediaElement.readyState when the whole clip can play


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{names[0]} is missing in CI; .ci/run installs Debian's ffmpeg and chromium")
    pytest.skip(f"{names[0]} not installed (apt-get install ffmpeg chromium); CI runs these tests")


def _frames(n, h, w, seed=0):
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, tuple[Path, int, int, tuple[int, int]]]:
    """name -> (path, frames, fps, (width, height) as written): each kind of MP4 the project writes."""
    folder = tmp_path_factory.mktemp("client-videos")
    made = {
        "odd size padded": (export_video(_frames(16, 31, 45), folder / "odd.mp4", 8), 16, 8, (46, 32)),
        "one frame": (export_video(_frames(1, 32, 32), folder / "one.mp4", 8), 1, 8, (32, 32)),
        "ltx 9 frames at 24 fps": (export_video(_frames(9, 32, 64), folder / "ltx.mp4", 24), 9, 24, (64, 32)),
        "still video": (export_video(np.zeros((6, 16, 16, 3), np.uint8), folder / "still.mp4", 8), 6, 8, (16, 16)),
    }  # fmt: skip
    out = folder / "cli.mp4"
    code = reneg_video(
        ["--model", "tiny-zeroscope", "--negative-prompt", "blurry", "--prompt", "a corgi", "--frames", "8",
         "--steps", "2", "--height", "32", "--width", "48", "--fps", "8", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    made["reneg-video cli"] = (out, 8, 8, (384, 256))  # 32 px high: --upscale auto writes it 8x
    return made


def test_ffprobe_reads_every_written_mp4(videos):
    ffprobe = binary("ffprobe")
    for name, (path, frames, fps, size) in videos.items():
        proc = subprocess.run(
            [ffprobe, "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,pix_fmt,nb_read_frames,r_frame_rate,width,height", "-of", "json", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, (name, proc.stderr)
        stream = json.loads(proc.stdout)["streams"][0]
        assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p", (name, stream)
        assert int(stream["nb_read_frames"]) == frames, (name, stream)
        assert stream["r_frame_rate"] == f"{fps}/1", (name, stream)
        assert (stream["width"], stream["height"]) == size, (name, stream)


def test_headless_chromium_plays_every_written_mp4(videos, tmp_path):
    chromium = binary(*CHROMIUM_NAMES)
    names = list(videos)
    tags = "\n".join(
        f'<video id="v{i}" src="{html.escape(videos[n][0].as_uri())}" preload="auto" muted></video>'
        f'<pre id="r{i}">pending</pre>'
        for i, n in enumerate(names)
    )
    page = tmp_path / "page.html"
    page.write_text(f"""<!doctype html><html><body>{tags}
<script>
for (const v of document.querySelectorAll('video')) {{
  const out = document.getElementById('r' + v.id.slice(1));
  const report = () => {{ out.textContent = JSON.stringify(
    {{readyState: v.readyState, duration: v.duration, error: v.error ? v.error.code : null}}); }};
  for (const e of ['loadeddata', 'canplaythrough', 'durationchange', 'error']) v.addEventListener(e, report);
}}
</script></body></html>""")
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = dict(re.findall(r'<pre id="r(\d+)">(.*?)</pre>', proc.stdout))
    assert len(results) == len(names), proc.stdout[-2000:]
    for i, name in enumerate(names):
        _, frames, fps, _ = videos[name]
        text = html.unescape(results[str(i)])
        assert text != "pending", f"{name}: Chromium never loaded it"
        state = json.loads(text)
        assert state["error"] is None and state["readyState"] == HAVE_ENOUGH_DATA, (name, state)
        assert abs(state["duration"] - frames / fps) < 0.5 / fps, (name, state, frames / fps)
