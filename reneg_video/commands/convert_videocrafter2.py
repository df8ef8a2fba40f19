"""`python -m reneg_video.commands.convert_videocrafter2 model.ckpt OUT_DIR`: VideoCrafter2's lvdm
checkpoint into a diffusers-style folder (the conversion itself is `models/videocrafter2/convert.py`)."""

from __future__ import annotations

import sys

from ..core.errors import ReNegError
from ..models.videocrafter2.convert import convert
from .common import Parser


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m reneg_video.commands.convert_videocrafter2",
        description="Convert VideoCrafter2's model.ckpt into a diffusers-style folder "
        "(unet/, vae/, scheduler/, text_encoder/ from the checkpoint's own OpenCLIP).",
    )
    parser.add_argument(
        "ckpt", help="VideoCrafter2 model.ckpt (read with torch.load(weights_only=True) only)"
    )
    parser.add_argument("out_dir", help="folder to create (must not exist)")
    parser.add_argument(
        "--text-encoder-from",
        metavar="DIR",
        help="an SD2.1/ZeroScope v2 folder: its tokenizer/ is copied; its text_encoder/ must equal the "
        "checkpoint's own (cond_stage_model.*, converted in any case), else the conversion is refused",
    )
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Writing model shards" bars would bury the one-line result
    try:
        args = parser.parse_args(argv)
        out = convert(args.ckpt, args.out_dir, args.text_encoder_from)
    except ReNegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    if not (out / "text_encoder").is_dir():
        print(
            f"note: the checkpoint has no text encoder; add text_encoder/ and tokenizer/ to {out}",
            file=sys.stderr,
        )
    elif not (out / "tokenizer").is_dir():
        print(
            f"note: no tokenizer/ in {out}: copy one from an SD2.x or ZeroScope v2 folder (or pass --text-encoder-from)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
