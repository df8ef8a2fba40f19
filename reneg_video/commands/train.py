"""`reneg-train`: learn a ReNeg negative embedding (ReFL + classifier-free guidance in the loop).

The arguments are `TrainConfig`'s fields (`training/config.py`, one help string each); the loop is
`training/trainer.py`. Runs unchanged under `accelerate launch -m reneg_video.commands.train`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import MISSING, fields

from ..core.errors import ReNegError
from ..training.config import TrainConfig
from ..training.trainer import Trainer
from .common import Parser


def build_parser(prog: str = "reneg-train") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description="Learn a ReNeg negative embedding: reward feedback through one CFG denoising step "
        "(ReFL with classifier-free guidance in the loop). Runs unchanged under `accelerate launch`.",
        epilog="tiny-* models and the tiny-imagereward reward are stand-ins with random weights: "
        "what they learn is noise, useful for tests and demos only.\n"
        "example: reneg-train --model tiny-sd21 --reward tiny-imagereward --prompts-file "
        "../shared/prompts/imagereward_benchmark_prompts.txt --batch-size 2 --steps 30 --out runs/demo",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
            continue
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
        default = None if f.default is MISSING else f.default
        parser.add_argument(flag, type=kind, default=default, help=f.metadata["help"])
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    return TrainConfig(**vars(args))


def main(argv: list[str] | None = None) -> int:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Prompt-truncation notices would flood the progress bar: truncation to the model's tokens is intended.
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        config = config_from_args(argv)
        summary = Trainer(config).train()
    except ReNegError as exc:
        print(f"reneg-train: error: {exc}", file=sys.stderr)
        return 2
    before, after = summary["val_reward_before"], summary["val_reward_after"]
    if before is not None and not (math.isfinite(before) and math.isfinite(after)):
        print("reneg-train: warning: non-finite validation reward", file=sys.stderr)
    print(json.dumps({k: summary[k] for k in ("val_reward_before", "val_reward_after", "steps", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
