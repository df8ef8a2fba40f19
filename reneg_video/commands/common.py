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
