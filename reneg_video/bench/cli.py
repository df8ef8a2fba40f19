"""`python -m reneg_video.bench [--json PATH] [--gpu] [--quick] [--only NAME] [--plot PNG] [--speed-model NAME]
[--speed-reward REWARD] [--speed-seeds N]`: ours vs baseline.

Every row pairs our way with a baseline, measured ALTERNATELY (ours, baseline, ours, baseline, ...) in one
run, repeated, and reports medians: other load on a shared machine hits both arms alike. ratio = ours /
baseline, lower is better; each row carries its goal.

Peak memory on CPU is the peak resident memory (RSS) above the footprint just before the measured call, in a
FRESH child process per arm (so no arm inherits another's allocator state): the child builds its models,
reads VmRSS, resets the peak with `echo 5 > /proc/self/clear_refs` (Linux >= 4.0) and reads VmHWM after the
call. Where the reset is refused, a thread samples VmRSS every `RSS_SAMPLE_S` seconds instead (the row says
which). On GPU: `torch.cuda.max_memory_allocated` above `memory_allocated` before the call.

CPU rows (goals from issue 6):
- adapter_overhead: `attach()` + a call vs a plain diffusers call given the same `negative_prompt_embeds`
  (tiny-zeroscope, same seed and steps): time, goal <= 1.02.
- vae_decode_peak_memory: the SD VAE architecture (random weights) decoding 8 frames of 256x256, preset
  `low` vs `off`: peak memory, goal <= 0.5. The other presets are measured too, for the plot.
- frame_scoring_time: 16 frames, `reneg_video.rewards` ImageReward vs image-reward 1.5's loop, through the
  reward branch's `scripts/parity_imagereward.py` (which builds the reference in a side dir): goal <= 0.5
  (issue 15). frame_scoring_time_bfloat16: ours under `torch.autocast(bfloat16)` in the same run, same goal.
  "not available" when `reneg_video.rewards` or that script or its inputs are absent.
- speed_fast_time: `--speed fast` vs `off` (issue 15) on `--speed-model` (tiny-zeroscope: DPM-Solver++ 2M at half
  of 16 steps vs DDIM at 16), same prompt and seed: time, goal <= 1/1.5.
- speed_quality: reward (`--speed-reward`) of `fast` and `fastest` vs `off` on the same seeds, paired
  differences with 95% bootstrap intervals, denoiser calls and FLOPs per video; on shapes models also the
  programmatic judge. On stand-ins the reward is noise: mechanics only.
- validate_per_video: `reneg-validate`'s wall time per video vs one `reneg-video` render of such a video
  (shapes-t2v with shapes-reward; --quick: tiny-zeroscope), fresh processes with their loading: goal <= 1.2
  (issue 31).
- nag_vs_cfg: one video with NAG at guidance 1 (the negative in the cross-attention, one denoiser pass per
  step) vs CFG at the spec's guidance (two passes), same model, steps and negative rows (shapes-t2v;
  --quick: tiny-zeroscope): wall time, goal <= 1.0 (issue 30).
- trainer_peak_memory: one training step on an SD-architecture UNet at reduced width, 256 px, 10 DDIM
  steps: the trainer's way (`Trainer.loss_and_reward`: truncated backprop through the last step, gradient
  checkpointing) vs backprop through the whole sampling chain; the reward is mean brightness (a tiny
  differentiable stand-in defined here): peak memory, goal <= 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..commands.common import Parser
from ..core.errors import ReNegError, UsageError
from .gpu import gpu_rows
from .guidance import row_nag_vs_cfg
from .harness import Row, format_table, machine, plot
from .memory import ARMS, row_trainer, row_vae_decode
from .speed import SPEED_MODEL, row_adapter_overhead, row_frame_scoring, row_speed_fast, row_speed_quality
from .throughput import row_validate_per_video


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m reneg_video.bench",
        description="Benchmarks, ours vs baseline, alternated and repeated; medians; ratio = ours / baseline.",
    )
    p.add_argument("--json", metavar="PATH", help="write {'rows': [...], 'machine': ...} here")
    p.add_argument("--gpu", action="store_true", help="the GPU rows (needs CUDA)")
    p.add_argument("--quick", action="store_true", help="a reduced suite at tiny sizes (tests, smoke runs)")
    p.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only these rows (repeatable)"
    )
    p.add_argument("--plot", metavar="PNG", help="write the VAE-decode-per-preset plot here")
    p.add_argument(
        "--speed-model",
        default=SPEED_MODEL,
        metavar="NAME",
        help=f"model of the speed_* rows (default {SPEED_MODEL}; e.g. shapes-t2v)",
    )
    p.add_argument(
        "--speed-reward",
        default="tiny-imagereward",
        metavar="REWARD",
        help="reward of the speed_quality row (default tiny-imagereward: noise; e.g. shapes-reward)",
    )
    p.add_argument("--speed-seeds", type=int, default=8, metavar="N", help="seeds of the speed_quality row")
    p.add_argument("--_arm", help=argparse.SUPPRESS)
    p.add_argument("--_params", help=argparse.SUPPRESS)
    return p


CPU_ROWS = (
    "adapter_overhead",
    "vae_decode_peak_memory",
    "frame_scoring_time",
    "trainer_peak_memory",
    "speed_fast_time",
    "speed_quality",
    "validate_per_video",
    "nag_vs_cfg",
)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._arm:
        print(json.dumps(ARMS[args._arm](json.loads(args._params))))
        return 0
    if args.speed_seeds < 2:
        raise UsageError(
            f"--speed-seeds {args.speed_seeds}: expected at least 2 (an interval needs 2 samples)"
        )
    for name in args.only:
        if name not in CPU_ROWS:
            raise UsageError(f"--only {name!r}: unknown row; expected one of {', '.join(CPU_ROWS)}")
    for flag, value, suffix in (("--json", args.json, ".json"), ("--plot", args.plot, ".png")):
        if value and (Path(value).suffix != suffix or not Path(value).resolve().parent.is_dir()):
            raise UsageError(f"{flag} {value}: expected a {suffix} path in an existing folder")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    wanted = set(args.only or CPU_ROWS)
    cache = Path(os.environ.get("RENEG_VIDEO_CACHE") or Path("~/.cache/reneg-video").expanduser())
    started = time.perf_counter()
    rows: list[Row] = []
    presets = None
    for name in CPU_ROWS:
        if name not in wanted:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        if name == "adapter_overhead":
            rows.append(row_adapter_overhead(args.quick))
        elif name == "vae_decode_peak_memory":
            row, presets = row_vae_decode(args.quick, all_presets=bool(args.plot))
            rows.append(row)
        elif name == "frame_scoring_time":
            rows += row_frame_scoring(args.quick)
        elif name == "trainer_peak_memory":
            rows.append(row_trainer(args.quick, cache))
        elif name == "speed_fast_time":
            rows.append(row_speed_fast(args.quick, args.speed_model))
        elif name == "speed_quality":
            rows.append(row_speed_quality(args.quick, args.speed_model, args.speed_reward, args.speed_seeds))
        elif name == "validate_per_video":
            rows.append(row_validate_per_video(args.quick))
        elif name == "nag_vs_cfg":
            rows.append(row_nag_vs_cfg(args.quick))
    if args.gpu:
        rows += gpu_rows(args.quick)
    seconds = time.perf_counter() - started
    print(format_table(rows))
    for r in rows:
        if r.note:
            print(f"  {r.name}: {r.note}")
    print(f"total {seconds:.0f} s")
    if args.plot and presets:
        plot(presets, Path(args.plot), "SD VAE decode, 8 frames 256x256, CPU (median per preset)")
    if args.json:
        from ..core.atomic import atomic_path

        doc = {
            "rows": [r.as_dict() for r in rows],
            "machine": machine(),
            "quick": args.quick,
            "seconds": round(seconds, 1),
            "command": "python -m reneg_video.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except ReNegError as exc:
        print(f"reneg-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
