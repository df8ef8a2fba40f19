"""Atomic writes: a temporary sibling, validated, then renamed over the destination.

A run killed at any moment leaves either the old destination (or none) or the complete new file, never
a partial one. The temporary name is hidden and keeps the destination's suffix, because encoders such
as ffmpeg choose the container by suffix. `tempfile` creates its files 0600 and folders 0700 (private, as
temporary files should be); the finished output gets the mode the user's umask gives any new file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# What open() and mkdir() start from before the umask is applied (POSIX).
NEW_FILE_MODE = 0o666
NEW_DIR_MODE = 0o777


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only swap it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; on clean exit rename it onto `dest`, else delete it."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.partial-", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, NEW_FILE_MODE & ~current_umask())
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to `dest`; on clean exit rename it to `dest` (which must not exist)."""
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, NEW_DIR_MODE & ~current_umask())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
