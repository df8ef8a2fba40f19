"""The registration point for models, encoder families, rewards and judges that live outside the library.

A plugin is a distribution that declares an entry point in the group `reneg_video.plugins`:

    [project.entry-points."reneg_video.plugins"]
    shapes = "shapes_world.plugin:register"

Its target is called once, with this module, the first time anything is looked up; it calls the
`register_*` functions below. The shapes world (`shapes_world`, shipped beside `reneg_video` in the same
distribution) registers itself this way, as any third party would: the library imports nothing from it.

Entry points, not an import of a known module list: installed plugins are found without the library
naming them (the importlib.metadata mechanism pytest and ComfyUI's node packs also rely on).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .encoders import FAMILIES, EncoderFamily
from .errors import UsageError

ENTRY_POINT_GROUP = "reneg_video.plugins"


@dataclass(frozen=True)
class PluginReward:
    """A reward a plugin offers: `function` in the importable `module` loads it (imported on first use)."""

    module: str
    function: str
    description: str


@dataclass(frozen=True)
class PluginJudge:
    """A programmatic judge for some models: `judge(video, prompt) -> {"accuracy": float, ...}` and the
    held-out prompts it can read (`prompts() -> list[str]`), used by the benchmark's quality row."""

    judge: Callable[[Any, str], dict]
    prompts: Callable[[], Sequence[str]]


_spec_folders: list[Path] = []
_rewards: dict[str, PluginReward] = {}
_judges: dict[str, PluginJudge] = {}
_loaded = False


def register_specs(folder: str | os.PathLike[str]) -> None:
    """Add a folder of adapter spec files (`*.toml`); built-in specs of the same name are overridden."""
    _spec_folders.append(Path(folder))


def register_encoder(family: EncoderFamily) -> None:
    """Add a text-encoder family, so specs may name it (`encoder = "<name>"`) and embeddings match it.
    It joins `encoders.FAMILIES`, which every lookup reads after `load()`."""
    if family.name in FAMILIES and FAMILIES[family.name] != family:
        raise UsageError(f"encoder family {family.name!r} is registered twice with different definitions")
    FAMILIES[family.name] = family


def register_reward(name: str, module: str, function: str, description: str) -> None:
    """Add a reward `load_reward(name)` finds: `module.function(**kwargs)` loads it."""
    _rewards[name] = PluginReward(module, function, description)


def register_judge(models: Sequence[str], judge: PluginJudge) -> None:
    """Declare the programmatic judge of these models (by spec name)."""
    for model in models:
        _judges[model] = judge


def load() -> None:
    """Call every installed plugin's register function, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()(sys.modules[__name__])
        except Exception as exc:  # a broken plugin names itself instead of breaking every command
            raise UsageError(
                f"plugin {point.name!r} ({point.value}) failed to register: {exc}; "
                f"fix or uninstall the distribution that declares it"
            ) from exc


def spec_folders() -> list[Path]:
    load()
    return list(_spec_folders)


def rewards() -> dict[str, PluginReward]:
    load()
    return dict(_rewards)


def judge_for(model: str) -> PluginJudge | None:
    load()
    return _judges.get(model)
