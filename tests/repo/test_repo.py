"""The tree itself: no file holds the markers of an unresolved merge."""

from __future__ import annotations

import re
import subprocess

from ..conftest import REPO

MARKER = re.compile(r"^(<{7}|>{7}|\|{7})( |$)", re.M)


def test_no_unresolved_merge_markers():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    suffixes = (".py", ".md", ".toml", ".txt", ".json", ".cfg", ".yaml", ".yml")
    bad = []
    for name in files.splitlines():
        path = REPO / name
        if name.endswith(suffixes) and path.is_file() and MARKER.search(path.read_text(errors="replace")):
            bad.append(name)
    assert not bad, f"merge markers left in {bad}"
