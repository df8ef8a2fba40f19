"""`reneg-build-shapes`: train every model of the shapes world from seeds (resumable).

    python -m reneg_video.commands.build_shapes --out build/shapes            # the full build (~1 h, 2 CPU cores)
    python -m reneg_video.commands.build_shapes --out build/shapes --resume   # continue a killed build
    python -m reneg_video.commands.build_shapes --out /tmp/q --quick          # a reduced build (~1 min)
    python -m reneg_video.commands.build_shapes --out /tmp/g \
        --vae-from reneg_video/models/shapes/weights/t2i/vae                 # generators on the shipped VAE

Then `--install` copies OUT/export into the package's shipped weights folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..core.errors import ReNegError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as every other refusal
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    from ..training.shapes_build import STAGES

    p = _Parser(
        prog="reneg-build-shapes",
        description="Train the shapes world (tiny CLIP text encoder, VAE, text-to-image and text-to-video "
        "UNets, learned reward) from seeds. Each stage checkpoints; --resume continues a killed build.",
        epilog="stages: " + ", ".join(STAGES) + ". The export stage writes OUT/export/{t2i,t2v,reward} "
        "(float16 safetensors) and the judge accuracy of both generators in OUT/export/stage.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="build folder (new, or existing with --resume)"
    )
    p.add_argument("--quick", action="store_true", help="reduced steps: a build for tests/CI, learns little")
    p.add_argument("--resume", action="store_true", help="continue the build in --out")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage's data, init and noise")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to run, in order")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--vae-from",
        metavar="DIR",
        help="take this trained AutoencoderKL (e.g. reneg_video/models/shapes/weights/t2i/vae) as the "
        "build's VAE instead of training one: the vae stage copies it, the decoder stage is skipped "
        "(about 75 min less at one thread, for work on the generators)",
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="after the build, copy OUT/export/* into reneg_video/models/shapes/weights/",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.seed < 0 or args.threads < 1:
            raise UsageError(
                f"--seed {args.seed} / --threads {args.threads}: expected seed >= 0, threads >= 1"
            )
        import torch
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        from ..training.shapes_build import BuildConfig, build

        diffusers_logging.set_verbosity_error()
        transformers_logging.set_verbosity_error()
        torch.set_num_threads(args.threads)
        cfg = BuildConfig.quick(args.seed) if args.quick else BuildConfig(seed=args.seed)
        cfg.vae_from = args.vae_from
        stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
        timings = build(args.out, cfg, resume=args.resume, stages=stages)
        if args.install:
            install(Path(args.out))
    except ReNegError as exc:
        print(f"reneg-build-shapes: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "seconds": timings}))
    return 0


def install(out: Path) -> None:
    """Copy the exported models into the package (the shipped weights), keeping shipped embeddings."""
    from ..models.shapes.world import BUNDLED, weights_root

    export = out / "export"
    if not (export / "stage.json").exists():
        raise UsageError(f"--install: {export} is not a finished export; run the export stage first")
    root = weights_root()
    root.mkdir(parents=True, exist_ok=True)
    for name in BUNDLED.values():
        if (root / name).exists():
            shutil.rmtree(root / name)
        shutil.copytree(export / name, root / name)
    shutil.copy(export / "stage.json", root / "build_summary.json")


if __name__ == "__main__":
    sys.exit(main())
