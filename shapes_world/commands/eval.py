"""`python -m shapes_world.commands.eval` (shapes-eval): null vs handcrafted vs ReNeg on a shapes model, judged.

    python -m shapes_world.commands.eval --model shapes-t2v \
        --neg shapes_world/weights/shapes_reneg_emb.bin --prompts heldout --seeds 4 \
        --out runs/shapes-transfer

Per-sample refinement arms, each from the one --neg embedding, against shapes-reward (the options of
`reneg-video` of the same names): --optimize-neg STEPS, --optimize-noise STEPS, --best-of N.

Writes OUT/report.json (per arm: judge accuracy, pass rate, checks, shapes-reward, 95% intervals; ReNeg's
per-prompt win rates with bootstrap intervals) and OUT/grid.png (the first prompts, every arm).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reneg_video.core.errors import ReNegError, UsageError

from .. import world as W


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="shapes-eval",
        description="Render null-text, handcrafted-negative and ReNeg arms on shapes-t2i/shapes-t2v with the same "
        "noise, judge every sample and score it with shapes-reward; report means, intervals and win rates.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="shapes-t2v", help="shapes-t2i or shapes-t2v")
    p.add_argument("--model-path", metavar="DIR", help="load the weights from this diffusers folder")
    p.add_argument("--neg", action="append", default=[], metavar="PATH", help="an embedding arm (repeatable)")
    p.add_argument("--negative-prompt", default=W.HANDCRAFTED_NEGATIVE, help="the handcrafted arm's text")
    p.add_argument("--prompts", default="heldout", help="heldout, train, or a file with one prompt per line")
    p.add_argument("--max-prompts", type=int, help="only the first K prompts")
    p.add_argument("--seeds", type=int, default=4, help="seeds per prompt (0..N-1)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the spec's)")
    p.add_argument("--guidance", type=float, help="CFG scale (default: the spec's)")
    p.add_argument("--no-reward", action="store_true", help="judge only")
    p.add_argument(
        "--optimize-neg",
        type=int,
        metavar="STEPS",
        help="add an arm: the --neg embedding refined per sample for STEPS (1..10) reward steps",
    )
    p.add_argument(
        "--optimize-noise",
        type=int,
        metavar="STEPS",
        help="add an arm: the initial noise optimised per sample for STEPS iterations, with the --neg embedding",
    )
    p.add_argument(
        "--best-of",
        type=int,
        metavar="N",
        help="add an arm: the --neg embedding's best of seeds seed..seed+N-1 by mean frame reward",
    )
    p.add_argument("--grid-rows", type=int, default=6, help="prompts shown in grid.png")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder (created)")
    return p


def _prompts(value: str) -> list[str]:
    path = W.prompts_file(value) if value in ("heldout", "train") else Path(value)
    if not path.is_file():
        raise UsageError(f"--prompts {value}: no such file; expected heldout, train or a prompts file")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts {value}: the file holds no prompts; expected one prompt per line")
    return prompts


def arm_names(paths: list[str]) -> list[str]:
    """'reneg' for one --neg; else each file's stem, or folder/stem where stems repeat (two runs' outputs are
    both `negative_embedding.bin`; their arms must not overwrite each other in the report)."""
    if len(paths) == 1:
        return ["reneg"]
    stems = [Path(p).stem for p in paths]
    names = [
        f"{Path(p).parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems, strict=True)
    ]
    if len(set(names)) < len(names):
        raise UsageError(f"--neg {' '.join(paths)}: two arms would share a name; pass each file once")
    return names


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.seeds < 1 or (args.max_prompts is not None and args.max_prompts < 1):
            raise UsageError(
                f"--seeds {args.seeds} / --max-prompts {args.max_prompts}: expected positive counts"
            )
        refinements = [
            (k, getattr(args, k.replace("-", "_"))) for k in ("optimize-neg", "optimize-noise", "best-of")
        ]
        refinements = [(k, n) for k, n in refinements if n is not None]
        for kind, n in refinements:
            if n < 1 or (kind == "optimize-neg" and n > 10):
                raise UsageError(
                    f"--{kind} {n}: expected {'1..10' if kind == 'optimize-neg' else 'a positive count'}"
                )
        if refinements and (len(args.neg) != 1 or args.no_reward):
            raise UsageError(
                f"--{refinements[0][0]}: refines one embedding against shapes-reward; pass exactly one --neg "
                "and leave out --no-reward"
            )
        prompts = _prompts(args.prompts)[: args.max_prompts]
        import torch
        from diffusers.utils import logging as diffusers_logging

        from reneg_video.core.atomic import atomic_path
        from reneg_video.core.embedding import load_embedding
        from reneg_video.core.encoders import check_family
        from reneg_video.models.pipeline import load_pipeline, resolve_spec

        from ..eval import Arm, picture_grid, run_arms

        diffusers_logging.set_verbosity_error()
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        spec = resolve_spec(args.model)
        if spec.encoder != W.TEXT_FAMILY.name:
            raise UsageError(f"--model {args.model}: not a shapes model; expected shapes-t2i or shapes-t2v")
        arms = [Arm("null", None), Arm("handcrafted", args.negative_prompt)]
        for path, name in zip(args.neg, arm_names(args.neg), strict=True):
            emb = load_embedding(path)
            check_family(emb.family, spec.family, spec.name, path)
            arms.append(Arm(name, emb.tensor))
        arms += [Arm(f"reneg+{k} {n}", emb.tensor, (k, n), emb) for k, n in refinements]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pipe = load_pipeline(args.model, "cpu", "float32", model_path=args.model_path)
        pipe.set_progress_bar_config(disable=True)
        reward = None
        if not args.no_reward:
            from reneg_video.rewards import load_reward

            reward = load_reward("shapes-reward")
        report, frames = run_arms(
            pipe,
            spec.kind == "video",
            arms,
            prompts,
            args.seeds,
            steps=args.steps or spec.defaults.steps,
            guidance=spec.defaults.guidance if args.guidance is None else args.guidance,
            reward=reward,
            spec=spec,
        )
        report.update(model=spec.name, negative_prompt=args.negative_prompt, neg=args.neg)
        with atomic_path(out / "report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
        picture_grid(frames, prompts, args.seeds, args.grid_rows, out / "grid.png")
    except ReNegError as exc:
        print(f"shapes-eval: error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                a: {k: v["mean"] for k, v in r.items() if isinstance(v, dict) and "mean" in v}
                for a, r in report["arms"].items()
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
