"""`reneg-score`: per-frame reward scores of a video, with a summary and optional JSON/CSV/PNG outputs.

Every input is checked before any model loads; a refused input exits 2 with one line naming the value,
what was expected and the fix, and nothing is written. Any other failure is a bug and exits 1. Reading,
scoring, summarising and writing are in `rewards.videos`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import ReNegError, UsageError
from ..rewards.temporal import format_scores
from ..rewards.videos import (
    build_report,
    combined_report,
    format_table,
    read_video,
    reward_files,
    score_with_each,
    summarise,
    video_paths,
    write_outputs,
)

PROG = "reneg-score"
EXIT_USAGE = 2
EXIT_BUG = 1

DESCRIPTION = """\
Score every frame of a video against a prompt with one or more reward models, print a table and a
summary per reward, and optionally write JSON, CSV and a PNG plot.

Summary per reward: mean, min, max, std (population, over frames) and temporal = mean absolute score
change between neighbouring frames, mean_i |s[i+1] - s[i]| in the reward's own units (lower is
steadier; null for a one-frame video).

Video-level scores (rewards.temporal; docs/rewards.md, "Video-level scores"), pixels in [0, 1]:
flicker = mean absolute difference (MAD) of consecutive frames (VBench's temporal flickering reports
1 - flicker); frozen_share = share of consecutive pairs with MAD < 1/255; motion = MAD of the first and
last frames; consistency = VBench's consistency form on the image embeddings of the first reward with a
CLIP image tower (null, with the reason, when none has one, e.g. imagereward); temporal_hf = energy of
second differences over first differences in time (white noise 3; lower = temporally smoothed, e.g.
ghosting; higher = jittery, e.g. flicker; null under 3 frames or for a still video).

Rewards:
  imagereward       ImageReward v1.0; needs local weights (--checkpoint/--med-config/--tokenizer, or
                    $RENEG_IMAGEREWARD_CKPT/$RENEG_IMAGEREWARD_MED_CONFIG/$RENEG_IMAGEREWARD_TOKENIZER,
                    or the local Hugging Face cache of THUDM/ImageReward and bert-base-uncased).
  clip              CLIP score, 100 * cos(image, text) of a CLIPModel: a local folder in
                    $RENEG_CLIP_MODEL or the HF cache of openai/clip-vit-large-patch14.
  pickscore         PickScore, exp(logit_scale) * cos: $RENEG_PICKSCORE_MODEL and
                    $RENEG_PICKSCORE_TOKENIZER, or the HF cache of yuvalkirstain/PickScore_v1 and
                    laion/CLIP-ViT-H-14-laion2B-s32B-b79K. (clip and pickscore are not yet checked
                    against their references on real weights.)
  hpsv2             HPS v2/v2.1, 100 * cos of its fine-tuned OpenCLIP ViT-H/14: $RENEG_HPSV2_CKPT
                    (HPS_v2_compressed.pt or HPS_v2.1_compressed.pt) or the HF cache of xswu/HPSv2;
                    tokenizer: $RENEG_HPSV2_TOKENIZER (CLIP's bpe_simple_vocab_16e6.txt.gz or a
                    CLIPTokenizer folder), the HF cache of laion/CLIP-ViT-H-14-laion2B-s32B-b79K, or
                    the BPE file inside an installed open_clip_torch / clip-anytorch.
  aesthetic         LAION improved aesthetic predictor (rating about 1..10, prompt unused):
                    $RENEG_AESTHETIC_CKPT (sac+logos+ava1-l14-linearMSE.pth) and $RENEG_AESTHETIC_CLIP
                    (a CLIPModel folder of openai/clip-vit-large-patch14, or its HF cache).
  tiny-imagereward  tiny, randomly initialised ImageReward: its scores are NOISE (deterministic),
  tiny-clip         and the same for CLIP,
  tiny-hpsv2        HPS v2 and the aesthetic predictor (real widths, reduced depth): for tests and
  tiny-aesthetic    demos only. All tiny-* rewards output noise.

Exit status: 0 done; 2 refused input (one-line message, nothing written); 1 internal error (a bug).
"""

EPILOG = """\
JSON shape: {"prompt": str, "rewards": [name, ...], "frames": [{"index": 0, "<reward>": score, ...}, ...],
"summary": {"<reward>": {"mean", "min", "max", "std", "temporal"}}, "video_scores": {"flicker",
"frozen_share", "motion", "consistency", "temporal_hf", "embedding", "consistency_skipped", "pair_mad",
"pair_consistency"}}; the CSV adds per-frame mad_to_previous and consistency_term. Several videos:
{"rewards": [...], "videos": [{"video": path, <the one-video shape>}, ...]}; the CSV gets a video column;
--plot takes one.

examples:
  reneg-score corgi.mp4 --prompt "a corgi surfing a wave" --reward tiny-imagereward --json s.json
  reneg-score samples/out/ --prompts-file prompts.txt --reward imagereward --batch-size 32 --json all.json
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused argument is one line on stderr and exit 2 (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="the video(s) to score: .mp4 or .gif files, or folders (their .mp4/.gif files, sorted)",
    )
    parser.add_argument("--prompt", metavar="TEXT", help="the prompt the video(s) were made from")
    parser.add_argument(
        "--prompts-file",
        type=Path,
        metavar="FILE",
        help="one prompt per video, in the order the videos are listed (folders: sorted by name)",
    )
    parser.add_argument(
        "--reward",
        required=True,
        metavar="NAME[,NAME...]",
        help="reward model(s), comma-separated: imagereward, clip, pickscore, hpsv2, aesthetic, "
        "tiny-imagereward, tiny-clip, tiny-hpsv2, tiny-aesthetic (tiny-* output noise)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write per-frame scores and the summary as JSON"
    )
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="PATH",
        help="write per-frame scores as CSV (index, one column per reward)",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PATH.png", help="write a PNG of the per-frame score curves"
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="imagereward: the official ImageReward.pt (default: $RENEG_IMAGEREWARD_CKPT, HF cache)",
    )
    parser.add_argument(
        "--med-config",
        type=Path,
        metavar="PATH",
        help="imagereward: its med_config.json (default: $RENEG_IMAGEREWARD_MED_CONFIG, HF cache)",
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        metavar="DIR",
        help="imagereward: a bert-base-uncased tokenizer folder (default: $RENEG_IMAGEREWARD_TOKENIZER, HF cache)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        metavar="N",
        help="frames per model call (default 8); frames of several videos with one prompt share calls",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device for the models, e.g. cpu or cuda (default cpu)"
    )
    return parser


def _check_output(path: Path | None, option: str, suffix: str) -> None:
    if path is None:
        return
    if path.suffix.lower() != suffix:
        raise UsageError(f"{option} {str(path)!r} has suffix {path.suffix!r}; expected a {suffix} file name")
    if path.is_dir():
        raise UsageError(
            f"{option} {str(path)!r} is a folder; expected a file name such as {path / ('scores' + suffix)}"
        )
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"{option} {str(path)!r}: {str(folder)!r} is not a folder; choose a path inside a folder"
        )
    if not folder.is_dir():
        raise UsageError(
            f"{option} {str(path)!r}: folder {str(folder)!r} does not exist; create it or choose another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(
            f"{option} {str(path)!r}: folder {str(folder)!r} is not writable; choose a writable folder"
        )


def _check_device(text: str) -> None:
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {text!r} is not a torch device; expected e.g. cpu, cuda or cuda:1"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text!r} asks for CUDA, which this torch cannot use; pass --device cpu")


def _parse_rewards(text: str) -> list[str]:
    from ..rewards import check_reward_name, parse_reward_spec

    if ":" in text:
        raise UsageError(
            f"--reward {text!r} carries weights; expected names only (NAME[,NAME...]): reneg-score reports "
            "each reward separately, weights belong to training ensembles"
        )
    return [check_reward_name(name) for name, _ in parse_reward_spec(text)]


def _prompts(args: argparse.Namespace, count: int) -> list[str]:
    from ..core.prompts import read_prompts_file

    if (args.prompt is None) == (args.prompts_file is None):
        raise UsageError(
            "pass --prompt TEXT (one prompt for every video) or --prompts-file FILE (one per video)"
        )
    if args.prompt is not None:
        if not args.prompt.strip():
            raise UsageError("--prompt is empty; expected the text the video was generated from")
        return [args.prompt] * count
    prompts = read_prompts_file(args.prompts_file)
    if len(prompts) != count:
        raise UsageError(
            f"--prompts-file {str(args.prompts_file)!r} has {len(prompts)} prompts for {count} videos; "
            "expected one prompt per video, in the order the videos are listed"
        )
    return prompts


def run(args: argparse.Namespace) -> dict:
    # 1. Check everything the user gave, before any model loads.
    paths = video_paths(args.videos)
    prompts = _prompts(args, len(paths))
    names = _parse_rewards(args.reward)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size is {args.batch_size}; expected a positive integer")
    _check_output(args.json, "--json", ".json")
    _check_output(args.csv, "--csv", ".csv")
    _check_output(args.plot, "--plot", ".png")
    if args.plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError(
                f"--plot {str(args.plot)!r} needs matplotlib, which is not installed; "
                "pip install 'reneg-video[plot]' or leave out --plot"
            )
    if args.plot and len(paths) > 1:
        raise UsageError(
            f"--plot draws one video's curves; got {len(paths)} videos: pass one, or leave out --plot"
        )
    _check_device(args.device)
    videos = [read_video(path) for path in paths]
    files = reward_files(names, args.checkpoint, args.med_config, args.tokenizer)

    # 2. Load and score, one reward at a time (only one model in memory).
    scores, video_level = score_with_each(names, videos, prompts, args.device, args.batch_size, files)

    # 3. Report, then write (atomically).
    report = combined_report(paths, prompts, names, scores, video_level)
    write_outputs(report, args.json, args.csv, args.plot)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except ReNegError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug, please report it with the traceback above)", file=sys.stderr)
        return EXIT_BUG
    if "videos" in report:
        for entry in report["videos"]:
            means = "  ".join(f"{n} {entry['summary'][n]['mean']:.4f}" for n in entry["rewards"])
            print(f"{Path(entry['video']).name}: {len(entry['frames'])} frames, mean {means}")
            print(f"  {format_scores(entry['video_scores'])}")
    else:
        print(f"{Path(args.videos[0]).name}: {len(report['frames'])} frames, prompt {report['prompt']!r}")
        print(format_table(report))
    for option in ("json", "csv", "plot"):
        if getattr(args, option):
            print(f"wrote {getattr(args, option)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "build_report", "main", "read_video", "summarise"]
