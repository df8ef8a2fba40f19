"""Reward models behind one interface: `score_frames(frames, prompt) -> Tensor[F]`, higher is better.

    reward = reneg_video.load_reward("imagereward", checkpoint="ImageReward.pt",
                                     med_config="med_config.json", tokenizer="bert-base-uncased/")
    scores = reward.score_frames(frames, "a corgi surfing a wave")        # [F]

Rewards:
- `imagereward`: ImageReward v1.0 (local weights, see `imagereward.resolve_files`);
- `tiny-imagereward`: the same architecture, tiny and randomly initialised: it outputs NOISE scores, for
  tests and demos only;
- `clip` (100 * cos) and `pickscore` (exp(logit_scale) * cos) on transformers' CLIPModel, local weights
  (not yet checked on real weights); `tiny-clip`: a tiny random CLIP, NOISE scores;
- `hpsv2`: HPS v2/v2.1, 100 * cos of the fine-tuned OpenCLIP ViT-H/14 (see `hpsv2`); `aesthetic`: the LAION
  improved aesthetic predictor on CLIP ViT-L/14 (see `aesthetic`); `tiny-hpsv2`, `tiny-aesthetic`: their
  architectures at reduced depth with random weights, NOISE scores;
- rewards that plugins register (`reneg_video.core.plugins`), e.g. the shapes world's `shapes-reward`.

Several rewards combine into a weighted sum, as ReNO does (arXiv 2406.04312, e.g. HPS 5.0,
ImageReward 1.0, CLIP 0.01, PickScore 0.05): `load_reward_spec("imagereward:1,tiny-imagereward:0.5")`.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..core import plugins
from ..core.errors import RewardError
from .frames import Frames


@runtime_checkable
class Reward(Protocol):
    """What every reward offers. `score_frames` returns float32 [F] on the reward's device; it is
    differentiable with respect to float frame tensors that require grad."""

    name: str

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class RewardEntry:
    """A registered reward: `function` in `module` (imported on first use) loads it."""

    module: str
    function: str
    description: str

    def loader(self) -> Callable[..., Reward]:
        return getattr(importlib.import_module(self.module, __name__), self.function)


REWARDS: dict[str, RewardEntry] = {
    "imagereward": RewardEntry(
        ".imagereward", "load_imagereward", "ImageReward v1.0 (BLIP ViT-L/16 + BERT), local weights"
    ),
    "tiny-imagereward": RewardEntry(
        ".imagereward", "load_tiny_imagereward", "tiny random ImageReward: NOISE scores, for tests/demos only"
    ),
    "clip": RewardEntry(
        ".clip", "load_clip", "CLIP score 100*cos (CLIPModel), local weights; not verified on real weights"
    ),
    "pickscore": RewardEntry(
        ".clip",
        "load_pickscore",
        "PickScore exp(logit_scale)*cos (CLIPModel), local weights; not verified on real weights",
    ),
    "tiny-clip": RewardEntry(
        ".clip", "load_tiny_clip", "tiny random CLIP: NOISE scores, for tests/demos only"
    ),
    "hpsv2": RewardEntry(
        ".hpsv2",
        "load_hpsv2",
        "HPS v2/v2.1 100*cos (OpenCLIP ViT-H/14 fine-tune on CLIPModel), local weights",
    ),
    "tiny-hpsv2": RewardEntry(
        ".hpsv2",
        "load_tiny_hpsv2",
        "HPS v2 architecture, 1+1 blocks, random: NOISE scores, for tests/demos only",
    ),
    "aesthetic": RewardEntry(
        ".aesthetic",
        "load_aesthetic",
        "LAION improved aesthetic predictor (MLP on CLIP ViT-L/14), local weights",
    ),
    "tiny-aesthetic": RewardEntry(
        ".aesthetic",
        "load_tiny_aesthetic",
        "aesthetic predictor architecture, random: NOISE scores, tests/demos only",
    ),
}


# How plots name the built-in rewards; other names read with their dashes as spaces ("shapes-reward" ->
# "shapes reward"), and a tiny-* stand-in is "tiny <name> (noise)".
LABELS = {"imagereward": "ImageReward", "clip": "CLIP score", "pickscore": "PickScore", "hpsv2": "HPS v2",
          "aesthetic": "aesthetic score"}  # fmt: skip


def reward_label(spec: str) -> str:
    """A human name for a reward or ensemble name as reports carry it ("tiny-imagereward:1" -> "tiny
    ImageReward (noise)", "imagereward:1,hpsv2:5" -> "ImageReward + 5 x HPS v2"); `spec` as is if it is
    not one."""

    def one(name: str) -> str:
        tiny = name.startswith("tiny-") and name in all_rewards()
        base = name.removeprefix("tiny-") if tiny else name
        label = LABELS.get(base, base.replace("-", " "))
        return f"tiny {label} (noise)" if tiny else label

    try:
        parsed = parse_reward_spec(spec)
    except RewardError:
        return spec
    return " + ".join(one(name) if weight == 1 else f"{weight:g} x {one(name)}" for name, weight in parsed)


def all_rewards() -> dict[str, RewardEntry]:
    """The built-in rewards and those plugins register (core.plugins; the shapes world's `shapes-reward`).
    A plugin cannot replace a built-in name."""
    registered = {
        name: RewardEntry(r.module, r.function, r.description) for name, r in plugins.rewards().items()
    }
    return {**registered, **REWARDS}


def list_rewards() -> list[str]:
    """Names `load_reward` accepts."""
    return sorted(all_rewards())


def check_reward_name(name: str) -> str:
    """Return `name` if it is a known reward, else raise `RewardError` listing the known ones."""
    if name not in all_rewards():
        raise RewardError(
            f"unknown reward {name!r}; expected one of {', '.join(list_rewards())} "
            "(tiny-* rewards output noise scores)"
        )
    return name


def load_reward(name: str, **kwargs: Any) -> Reward:
    """Load one reward by name. Keyword arguments go to its loader:

    - `imagereward`: checkpoint, med_config, tokenizer (paths; default: $RENEG_IMAGEREWARD_CKPT,
      $RENEG_IMAGEREWARD_MED_CONFIG, $RENEG_IMAGEREWARD_TOKENIZER, then the local HF cache), device,
      dtype, batch_size;
    - `tiny-imagereward`, `tiny-clip`: seed, device, batch_size (no files; NOISE scores);
    - `clip`: model (a CLIPModel folder; default $RENEG_CLIP_MODEL, then the HF cache), device, dtype, batch_size;
    - `pickscore`: model, tokenizer (folders; $RENEG_PICKSCORE_MODEL, $RENEG_PICKSCORE_TOKENIZER, HF cache), ...
    - `hpsv2`: hps_checkpoint (HPS_v2[.1]_compressed.pt; $RENEG_HPSV2_CKPT, HF cache of xswu/HPSv2),
      hps_tokenizer (CLIP's BPE .txt.gz or a CLIPTokenizer folder; $RENEG_HPSV2_TOKENIZER, ...), ...;
    - `aesthetic`: aesthetic_checkpoint (the MLP .pth; $RENEG_AESTHETIC_CKPT), aesthetic_clip (a CLIPModel
      folder of ViT-L/14; $RENEG_AESTHETIC_CLIP, HF cache), ...;
    - `tiny-hpsv2`, `tiny-aesthetic`: seed, device, batch_size;
    - a plugin's reward: what its loader takes (`shapes-reward`: model, a folder; device, batch_size).
    """
    loader = all_rewards()[check_reward_name(name)].loader()
    unknown = set(kwargs) - set(inspect.signature(loader).parameters)
    if unknown:
        raise RewardError(
            f"reward {name!r} takes no argument {sorted(unknown)[0]!r}; "
            f"expected some of {', '.join(inspect.signature(loader).parameters)}"
        )
    return loader(**kwargs)


def parse_reward_spec(spec: str) -> list[tuple[str, float]]:
    """Parse "name[:weight],name[:weight],..." (weight 1 when omitted) into [(name, weight), ...].

    Syntax only: names are checked by `load_reward`/`check_reward_name`, so a spec may name rewards
    that are not installed yet (e.g. "imagereward:1,hpsv2:5" from ReNO).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise RewardError(f"reward spec {spec!r} is empty; expected 'name[:weight],...' e.g. 'imagereward:1'")
    out: list[tuple[str, float]] = []
    for part in spec.split(","):
        name, sep, weight_text = part.strip().partition(":")
        name = name.strip()
        if not name:
            raise RewardError(f"reward spec {spec!r} has an empty name; expected 'name[:weight],...'")
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                raise RewardError(
                    f"reward spec {spec!r}: weight {weight_text.strip()!r} of {name!r} is not a number; "
                    "expected e.g. 'imagereward:1'"
                ) from None
            if not math.isfinite(weight) or weight == 0:
                raise RewardError(
                    f"reward spec {spec!r}: weight of {name!r} is {weight_text.strip()}; expected a finite, "
                    "non-zero number (leave a reward out instead of weighting it 0)"
                )
        if any(name == seen for seen, _ in out):
            raise RewardError(f"reward spec {spec!r} names {name!r} twice; expected each reward once")
        out.append((name, weight))
    return out


class RewardEnsemble:
    """Weighted sum of rewards (ReNO-style). `score_frames` returns sum_i w_i * r_i; `score_each`
    returns every member's own scores."""

    def __init__(self, members: list[tuple[Reward, float]]) -> None:
        if not members:
            raise RewardError("a reward ensemble needs at least one reward")
        self.members = members
        self.name = ",".join(f"{reward.name}:{weight:g}" for reward, weight in members)

    def score_each(
        self, frames: Frames, prompt: str, *, batch_size: int | None = None
    ) -> dict[str, torch.Tensor]:
        return {
            reward.name: reward.score_frames(frames, prompt, batch_size=batch_size)
            for reward, _ in self.members
        }

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor:
        each = self.score_each(frames, prompt, batch_size=batch_size)
        return sum(weight * each[reward.name] for reward, weight in self.members)


def load_reward_spec(spec: str, **kwargs: Any) -> RewardEnsemble:
    """Parse `spec` (see `parse_reward_spec`), check every name, then load each reward; each loader gets
    the keyword arguments it takes (so `checkpoint=` reaches imagereward and not tiny-imagereward)."""
    parsed = parse_reward_spec(spec)
    for name, _ in parsed:
        check_reward_name(name)
    members = []
    for name, weight in parsed:
        params = inspect.signature(all_rewards()[name].loader()).parameters
        members.append((load_reward(name, **{k: v for k, v in kwargs.items() if k in params}), weight))
    return RewardEnsemble(members)


__all__ = [
    "REWARDS",
    "RewardEntry",
    "Reward",
    "RewardEnsemble",
    "all_rewards",
    "check_reward_name",
    "list_rewards",
    "load_reward",
    "load_reward_spec",
    "parse_reward_spec",
    "reward_label",
]
