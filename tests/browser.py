"""Headless Chromium for tests: open a local page and read what a page script wrote into the DOM."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# Flags from ../shared/FACTS.md: headless, no sandbox (root), no network chatter, local files readable.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-file-access-from-files",
    "--virtual-time-budget=8000",
    "--dump-dom",
]

# Appended to a page: once every <video> has loaded (or failed), write their states into the DOM.
PROBE = """<script>
const vids = Array.from(document.querySelectorAll('video'));
function report() {
  document.body.setAttribute('data-probe', vids.map(v => v.readyState + ':' + v.duration.toFixed(3)).join(','));
}
vids.forEach(v => { v.preload = 'auto'; v.addEventListener('loadeddata', report); v.addEventListener('error', report); v.load(); });
report();
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            raise FileNotFoundError("chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


def video_states(page: Path, user_data: Path) -> list[tuple[int, float]]:
    """(readyState, duration) of every <video> on a local page, as headless Chromium sees it."""
    probe_page = page.with_name(page.stem + ".probe.html")
    probe_page.write_text(page.read_text() + PROBE)
    out = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={user_data}", probe_page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'data-probe="([^"]*)"', out.stdout)
    assert found, out.stderr[-2000:]
    return [(int(s.split(":")[0]), float(s.split(":")[1])) for s in found.group(1).split(",") if s]


def screenshot(page: Path, png: Path, user_data: Path, size: tuple[int, int] = (1200, 1600)) -> Path:
    """A PNG of a local page as headless Chromium renders it (the window's top `size` pixels)."""
    flags = [f for f in CHROMIUM_FLAGS if f != "--dump-dom"]
    out = subprocess.run(
        [chromium(), *flags, f"--user-data-dir={user_data}", f"--window-size={size[0]},{size[1]}",
         "--hide-scrollbars", f"--screenshot={png}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert png.is_file() and png.stat().st_size > 0, out.stderr[-2000:]
    return png
