"""How the shapes world plugs into reneg_video: the entry point `reneg_video.plugins` / `shapes` (pyproject)
names `register`, which reneg_video calls once, with `reneg_video.core.plugins`, the first time it looks up
a spec, an encoder family, a reward or a judge. Nothing here is private to reneg_video: a third-party world
would register the same four things the same way.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from types import ModuleType

from . import world as W

SPECS_DIR = "specs"
# What `shapes-t2i` and `shapes-t2v` are judged by; their names as in specs/.
MODELS = ("shapes-t2i", "shapes-t2v")


def held_out_prompts() -> list[str]:
    """The held-out prompts of the ReNeg split: prompts the judge can read that no embedding trained on."""
    from .data import split_prompts

    return split_prompts()[1]


def register(api: ModuleType) -> None:
    """Register the shapes specs, the shapes-clip encoder family, `shapes-reward` and the judge."""
    from .judge import judge

    api.register_specs(Path(str(resources.files(W.PACKAGE))) / SPECS_DIR)
    api.register_encoder(W.TEXT_FAMILY)
    api.register_reward(
        "shapes-reward",
        "shapes_world.reward",
        "load_shapes_reward",
        "shapes world's learned reward (tiny CLIP, judge-ranked pairs), shipped",
    )
    api.register_judge(MODELS, api.PluginJudge(judge=judge, prompts=held_out_prompts))
