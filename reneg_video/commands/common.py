"""What the commands share: the argument parser that refuses in one line, and prompts from arguments."""

from __future__ import annotations

import argparse

from ..core.errors import UsageError
from ..core.prompts import read_prompts_file
from ..core.speed import SPEED_HELP, SPEED_PRESETS


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument raises UsageError: one line, exit 2, as for every other refusal."""

    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see --help)")


def prompts_from_args(args) -> list[str]:
    """--prompt (repeatable) then --prompts-file, stripped; refuses none and empty ones."""
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
    if not prompts:
        raise UsageError("no prompt: pass --prompt TEXT or --prompts-file FILE")
    for text in prompts:
        if not text.strip():
            raise UsageError("--prompt '': empty prompt; pass some text")
    return [t.strip() for t in prompts]


def add_speed_option(group) -> None:
    """`--speed off|fast|fastest` (reneg-video, reneg-validate): checked by `core.speed.check_speed`."""
    group.add_argument(
        "--speed",
        default="off",
        metavar="PRESET",
        help=f"speed preset: {', '.join(SPEED_PRESETS)} (default off; see 'speed presets' below)",
    )


SPEED_EPILOG = (
    "speed presets (--speed; effective settings, what a model lacks included, are logged on stderr\n"
)
SPEED_EPILOG += "and written to --json):\n" + "\n".join(f"  {k:9s} {v}" for k, v in SPEED_HELP.items())


def add_guidance_options(group) -> None:
    """`--guidance-rule` and `--nag` (reneg-video, reneg-validate): how the negative acts on the denoiser."""
    from ..core.guidance import DEFAULT_RULE, RULES
    from ..core.settings import NAG_ALPHA, NAG_SCALE, NAG_TAU

    group.add_argument(
        "--guidance-rule",
        default=DEFAULT_RULE,
        metavar="RULE",
        help=f"how the two CFG branches combine: {', '.join(RULES)} (default {DEFAULT_RULE}; see 'guidance rules' "
        "below); the negative branch carries the embedding under every rule",
    )
    group.add_argument(
        "--nag",
        action="store_true",
        help="Normalized Attention Guidance (Chen et al. 2025, arXiv 2505.21179): the negative (--neg, "
        "--negative-prompt, else null text) enters the cross-attention of the single pass at --guidance 1; "
        "works on distilled models",
    )
    group.add_argument(
        "--nag-scale",
        type=float,
        default=NAG_SCALE,
        metavar="PHI",
        help=f"NAG extrapolation scale phi (default {NAG_SCALE:g})",
    )
    group.add_argument(
        "--nag-tau",
        type=float,
        default=NAG_TAU,
        metavar="TAU",
        help=f"NAG L1-norm ratio cap tau (default {NAG_TAU:g})",
    )
    group.add_argument(
        "--nag-alpha",
        type=float,
        default=NAG_ALPHA,
        metavar="ALPHA",
        help=f"NAG blend alpha in [0, 1] (default {NAG_ALPHA:g})",
    )


def guidance_epilog() -> str:
    """The 'guidance rules' section of --help: each rule with its source, and NAG's."""
    from ..core.guidance import RULES

    lines = ["guidance rules (--guidance-rule; diffusers' guider classes, applied to the classic pipelines):"]
    lines += [f"  {r.name:14s} {r.title} ({r.source})" for r in RULES.values()]
    lines.append(
        "  fdg needs kornia (pip install 'reneg-video[guidance]') and spatial latents (not LTX). --nag instead\n"
        "  guides inside attention at --guidance 1, one denoiser pass per step (docs/guidance.md)."
    )
    return "\n".join(lines)
