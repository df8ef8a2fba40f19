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
        description="Convert VideoCrafter2's model.ckpt into a diffusers-style folder (unet/, vae/, scheduler/).",
    )
    parser.add_argument(
        "ckpt", help="VideoCrafter2 model.ckpt (read with torch.load(weights_only=True) only)"
    )
    parser.add_argument("out_dir", help="folder to create (must not exist)")
    parser.add_argument(
        "--text-encoder-from",
        metavar="DIR",
        help="copy text_encoder/ and tokenizer/ from this SD2.1/ZeroScope folder",
    )
    try:
        args = parser.parse_args(argv)
        out = convert(args.ckpt, args.out_dir, args.text_encoder_from)
    except ReNegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
