"""`resolve_local`: the one way a reward finds a weight file or folder on this machine; nothing is downloaded.

Every real reward (ImageReward, CLIP, PickScore, HPS v2, the aesthetic predictor) looks up each of its
inputs in the same order: the argument, else its environment variable, else the places that may hold it
(the local Hugging Face cache, an installed package). A missing input is refused in one line saying where
it was looked for, how to get it and how to pass it; a path of the wrong kind names where it came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from ..core.errors import RewardError

Kind = Literal["file", "folder", "file or folder"]
_KIND_OK: dict[str, Callable[[Path], bool]] = {
    "file": Path.is_file,
    "folder": Path.is_dir,
    "file or folder": Path.exists,
}


class Fallback(NamedTuple):
    """A place searched when neither the argument nor the environment variable names the input."""

    source: str  # named beside a path found there: "... (from Hugging Face cache) is not a file"
    missing: str  # what the refusal says when it holds nothing: "not in the local Hugging Face cache"
    find: Callable[[], str | os.PathLike[str] | None]  # the path there, or None


def hf_cache(
    find: Callable[[], str | None], missing: str = "not in the local Hugging Face cache"
) -> Fallback:
    """The local Hugging Face cache as a fallback (`find` looks there with local_files_only=True)."""
    return Fallback("Hugging Face cache", missing, find)


def resolve_local(
    value: str | os.PathLike[str] | None,
    *,
    what: str,
    env: str,
    kind: Kind,
    how: str,
    give: str,
    fallbacks: Sequence[Fallback] = (),
) -> Path:
    """The path of `what`: `value`, else $`env`, else the first fallback that finds one; it must be a `kind`.

    `how` says how to obtain it, `give` how to pass it ("pass hps_checkpoint="); both go into the
    one-line `RewardError` raised when nothing is found or the path is not a `kind`.
    """
    source = "argument"
    if value is None and os.environ.get(env):
        value, source = os.environ[env], f"${env}"
    for fallback in fallbacks:
        if value is not None:
            break
        value, source = fallback.find(), fallback.source
    if value is None:
        searched = ", ".join(["no argument", f"${env} unset", *(f.missing for f in fallbacks)])
        raise RewardError(
            f"{what} not found ({searched}); expected a local {kind}: {how}, then {give} or set ${env}"
        )
    path = Path(value).expanduser()
    if not _KIND_OK[kind](path):
        raise RewardError(f"{what} {str(path)!r} (from {source}) is not a {kind}; {how}")
    return path


__all__ = ["Fallback", "hf_cache", "resolve_local"]
