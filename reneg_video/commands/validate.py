"""`reneg-validate`: does a transferred embedding make videos better? A/B/C over a prompt set.

For every prompt and seed three arms are rendered with the same initial noise: null text (the plain
pipeline), the handcrafted negative prompt (default: the ReNeg paper's), and the ReNeg embedding
(`--arms null,reneg` renders and compares only those). Every
frame is scored; a video's score is its mean frame reward. Reported (`core.stats`): the mean reward per
arm and the paired difference ReNeg minus each baseline, each with a nested bootstrap interval (prompts,
then seeds within prompts); the per-prompt win rate with a Wilson interval; n; a verdict in words.
Written: `report.json`, a static `index.html` that works opened from disk (paired-difference plot, videos
side by side, per-frame curves as PNG), the videos. The console gets the verdicts and the report's path
(`--json`: the summary as JSON on stdout, for scripts).

The (prompt, seed, arm) items are shared out over the processes of `accelerate launch` (`core.shard`);
each finished item is written atomically, the main process merges, and `--resume` completes a run that
was interrupted. Every item's noise comes from its seed, so 1 and n processes give the same report.
This module checks the options; `render.validate` renders and merges, `render.report` writes the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.errors import ReNegError, UsageError
from ..core.prompts import PAPER_NEGATIVE_ALIAS, baseline_negative
from ..render.job import guidance_overrides
from ..render.report import ARMS, BASELINES
from .common import (
    SPEED_EPILOG,
    Parser,
    add_guidance_options,
    add_speed_option,
    prompts_from_args,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="reneg-validate",
        description="Render null-text, handcrafted-negative and ReNeg arms with the same seeds over a prompt "
        "set, score every frame, and report per arm the mean reward, the paired difference ReNeg minus each "
        "baseline (nested bootstrap over prompts and seeds), ReNeg's per-prompt win rate (Wilson interval) "
        "and a verdict, as JSON and a static HTML report. Under `accelerate launch` the (prompt, seed, arm) "
        "items are shared out over the processes; --resume completes an interrupted run; --arms null,reneg "
        "renders and compares those two only.",
        epilog="tiny-* models and rewards are stand-ins with random weights: their reports are noise, for "
        "tests and demos only.\nexample: reneg-validate --model tiny-zeroscope --neg ../shared/reneg/"
        "sd2.1_reneg_emb.bin --prompts-file ../shared/prompts/reno_example_prompts.txt --max-prompts 3 "
        "--seeds 2 --reward tiny-imagereward --out samples/out/validate\n"
        "scale-out: accelerate launch --multi_gpu --num_processes 2 -m reneg_video.commands.validate --cpu ...\n\n"
        + SPEED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="model name (see reneg-video --list-models), or a diffusers folder"
    )
    p.add_argument(
        "--model-path",
        metavar="DIR",
        help="load the weights from this diffusers folder (LTX-Video: or a single-file .safetensors)",
    )
    p.add_argument("--neg", required=True, metavar="PATH", help="the ReNeg embedding to validate")
    p.add_argument("--prompts-file", required=True, metavar="FILE", help="one prompt per line")
    p.add_argument("--max-prompts", type=int, help="use only the first K prompts")
    p.add_argument("--seeds", type=int, default=2, help="seeds per prompt (0..N-1); default 2")
    p.add_argument(
        "--reward",
        default="imagereward",
        help="reward or ensemble scoring every frame, e.g. imagereward:1,hpsv2:5 (default imagereward)",
    )
    p.add_argument(
        "--arms",
        default=",".join(ARMS),
        help=f"arms to render and compare, comma-separated: reneg and one or both of {', '.join(BASELINES)} "
        f"(default {','.join(ARMS)})",
    )
    p.add_argument(
        "--negative-prompt",
        default=None,
        help=f"handcrafted baseline; {PAPER_NEGATIVE_ALIAS} = the ReNeg paper's handcrafted prompt; default: the "
        f"model's own (its spec's [defaults] negative_prompt), else {PAPER_NEGATIVE_ALIAS}",
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="report folder (created; must not exist unless --resume)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="complete the interrupted run in --out (same arguments): finished videos are kept, not redone",
    )
    _add_run_options(p)
    return p


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Size, device, speed and console options (after --resume, in the order --help has always shown)."""
    for name, kind in (
        ("frames", int),
        ("height", int),
        ("width", int),
        ("steps", int),
        ("guidance", float),
        ("fps", int),
    ):
        p.add_argument(f"--{name}", type=kind, help=f"{name} (default: the model spec's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument(
        "--cpu",
        action="store_true",
        help="run every process on CPU (under `accelerate launch --multi_gpu`: gloo processes on CPU)",
    )
    add_speed_option(p)
    add_guidance_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the summary (n, arms, differences, win rates, verdicts, effective settings) as JSON on "
        "stdout, the verdicts on stderr",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar (the libraries' notices and bars are always hidden)",
    )


def parse_arms(text: str) -> tuple[str, ...]:
    """`--arms` as a tuple in `ARMS`' order: reneg and at least one baseline, else a one-line refusal."""
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in ARMS:
            raise UsageError(
                f"--arms {text}: unknown arm {name!r}; expected a comma-separated subset of "
                f"{', '.join(ARMS)} (e.g. --arms null,reneg)"
            )
    arms = tuple(arm for arm in ARMS if arm in names)
    if "reneg" not in arms or len(arms) < 2:
        raise UsageError(
            f"--arms {text}: nothing to compare; expected reneg and at least one of {', '.join(BASELINES)} "
            "(e.g. --arms null,reneg)"
        )
    return arms


def run(argv: list[str] | None = None) -> dict | None:
    """Validate; returns the report in the main process, None in the others."""
    return validate(build_parser().parse_args(argv))


def validate(args: argparse.Namespace) -> dict | None:
    """Check the parsed options, then render, score and report (`render.validate`)."""
    from ..core.embedding import load_embedding
    from ..core.inject import check_embedding
    from ..core.shard import check_run_folder
    from ..core.speed import check_speed
    from ..models.generate import require_cfg, settings_for
    from ..models.pipeline import resolve_device, resolve_dtype, resolve_model, resolve_spec
    from ..rewards import check_reward_name, parse_reward_spec

    arms = parse_arms(args.arms)
    spec = resolve_spec(args.model)
    if spec.kind != "video":
        raise UsageError(f"--model {spec.name}: an image model; reneg-validate compares videos")
    if args.max_prompts is not None and args.max_prompts <= 0:
        raise UsageError(f"--max-prompts {args.max_prompts}: expected a positive count")
    args.prompt = []  # prompts_from_args reads --prompt too; this command takes a file only
    prompts = prompts_from_args(args)[: args.max_prompts]
    if args.seeds <= 0:
        raise UsageError(f"--seeds {args.seeds}: expected a positive number of seeds per prompt")
    for name, _ in parse_reward_spec(args.reward):
        check_reward_name(name)
    settings = settings_for(
        spec, seed=0, frames=args.frames, height=args.height, width=args.width, steps=args.steps,
        guidance=args.guidance, fps=args.fps, **guidance_overrides(args),
    )  # fmt: skip
    if settings.nag is None:
        require_cfg(settings, "--neg")  # every arm would be the same video
    neg = load_embedding(args.neg)
    check_embedding(
        neg, spec, args.neg, nag=settings.nag is not None
    )  # the one check it gets: the rendering trusts it
    handcrafted = baseline_negative(args.negative_prompt, spec.defaults.negative_prompt)
    out = Path(args.out)
    manifest = {
        "model": spec.name,
        "embedding_sha256": neg.sha256,
        "prompts": prompts,
        "seeds": args.seeds,
        "reward": args.reward,
        "handcrafted_negative": handcrafted,
        "settings": settings.as_dict(),
    }
    if arms != ARMS:  # a run of all arms keeps the manifest it had before --arms
        manifest["arms"] = list(arms)
    check_run_folder(out, manifest, args.resume)
    check_speed(args.speed)
    device = "cpu" if args.cpu else args.device
    resolve_dtype(args.dtype, spec, resolve_device(device))  # refuse bad values before any process group
    _, folder = resolve_model(args.model, args.model_path)  # refuses missing weights before any work
    from ..core.shard import Processes
    from ..render.validate import ValidationJob, run_validation

    job = ValidationJob(
        spec=spec, model=args.model, model_path=args.model_path, weights=folder, device=device,
        dtype=args.dtype, speed=args.speed, neg=neg, handcrafted=handcrafted, prompts=prompts,
        seeds=args.seeds, reward=args.reward, settings=settings, out=out, resume=args.resume,
        manifest=manifest, arms=arms, quiet=args.quiet,
    )  # fmt: skip
    with Processes(cpu=args.cpu) as procs:
        return run_validation(procs, job)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        report = validate(args)
    except ReNegError as exc:
        print(f"reneg-validate: error: {exc}", file=sys.stderr)
        return 2
    if report is not None:
        out = Path(args.out)
        # Without --json the verdicts are the result (stdout); with it stdout holds the JSON alone.
        console = sys.stderr if args.json else sys.stdout
        for text in report["verdict"].values():
            print(text, file=console)
        print(f"report: {out / 'index.html'} (figures in {out / 'report.json'})", file=console)
        if args.json:
            keys = ("n", "arms", "paired_difference", "win_rate", "verdict", "speed", "settings")
            print(json.dumps({"report": str(out / "report.json"), **{k: report[k] for k in keys}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
