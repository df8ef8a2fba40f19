"""`reneg-video`: generate videos with a ReNeg negative embedding on the negative CFG branch.

Every argument is checked before any model loads (`render.job`); bad input exits 2 with one line naming
the value, what was expected and the fix, and writes nothing. Internal errors exit 1. The prompt set is
rendered by `render.video`.
"""

from __future__ import annotations

import argparse
import sys

from ..core.errors import ReNegError, UsageError
from ..core.export import GIF_MAX_FPS
from ..core.memory import PRESET_HELP
from ..core.prompts import PAPER_NEGATIVE_ALIAS
from .common import (
    SPEED_EPILOG,
    Parser,
    add_guidance_options,
    add_speed_option,
    guidance_epilog,
    prompts_from_args,
)

GUIDANCE_EPILOG = guidance_epilog()
MEMORY_HELP = "\n".join(f"  {name:9s} {text}" for name, text in PRESET_HELP.items())

EPILOG = f"""\
models:
  shapes-t2v, the quick start's: a small text-to-video model this project trained on procedural shapes and
  ships with its ReNeg embedding (shapes_world/weights/shapes_reneg_emb.bin); real weights, offline, CPU.
  zeroscope, modelscope, videocrafter2, i2vgen-xl (--image PATH), animatediff (--motion-adapter PATH),
  ltx-video(-0.9.1/-0.9.5/-0.9.7), cogvideox-2b/-5b, mochi, allegro, latte, sd15, sd21, pixart-alpha
  load real weights from the local Hugging Face cache or --model-path DIR; nothing is downloaded. tiny-<model>
  (tiny-zeroscope, tiny-cogvideox-2b, ...) are built-in STAND-INS with random weights: they run offline
  in seconds but their videos are NOISE, for demos and tests only. `--list-models` shows every spec, your
  own included, with the released file that fits it and why.
  ltx-video also loads a single-file checkpoint (ComfyUI / LTX repo, 0.9.0 and 0.9.1) given with
  --model-path FILE.safetensors, with the release's config shipped in the package.

embeddings (--neg):
  the released ReNeg files as they are: sd2.1_reneg_emb.bin -> zeroscope, modelscope, videocrafter2,
  i2vgen-xl (OpenCLIP ViT-H/14, 1024 wide); sd1.5_reneg_emb.bin -> animatediff (CLIP-L, 768);
  pixart-alpha_reneg_emb.bin -> ltx-video, mochi, allegro (T5-v1.1-xxl, 4096 wide, padded to 128/256/512
  tokens with only token 0 attended), cogvideox, latte (unmasked: token 0, then the model's own
  empty-prompt rows).
  A file of another space (Wan, HunyuanVideo, LTX-2, AnimateDiff-SDXL) exits 2 naming both spaces. Also
  .safetensors and this project's own format. Pickles are read with weights_only=True only.

outputs:
  --out may repeat (.mp4 = H.264 yuv420p faststart, .gif = looping, at most {GIF_MAX_FPS} fps); with several
  prompts each file name gets -000, -001, ... before its suffix. --compare also writes NAME-compare.EXT:
  null text | handcrafted (--negative-prompt; default the model's own, else {PAPER_NEGATIVE_ALIAS}) | ReNeg, same seed,
  each panel labelled. Tiny renders are enlarged for viewing (--upscale auto).
  Several prompts under `accelerate launch --multi_gpu --num_processes N -m reneg_video.commands.video ...`
  are shared out over the processes (one GPU each; on CPU add --device cpu); the main one writes --json.

examples:
  reneg-video --model shapes-t2v --neg shapes_world/weights/shapes_reneg_emb.bin \\
      --prompt "a red circle moving right on a blue background" --seed 0 --compare --out shapes.mp4
  reneg-video --model tiny-zeroscope --neg ../shared/reneg/sd2.1_reneg_emb.bin \\
      --prompt "a corgi surfing a wave" --frames 8 --steps 2 --seed 7 --out z.mp4 --out z.gif
  reneg-video --model ltx-video --neg pixart-alpha_reneg_emb.bin --prompt "a red panda" --out p.mp4
  reneg-video --model zeroscope --negative-prompt {PAPER_NEGATIVE_ALIAS} --prompt "a cat" --out c.mp4
  reneg-video --model zeroscope --neg sd2.1_reneg_emb.bin --guidance-rule apg --prompt "a cat" --out a.mp4
  reneg-video --model ltx-video-0.9.7-distilled --neg pixart-alpha_reneg_emb.bin --guidance 1 --nag \\
      --prompt "a red panda" --out n.mp4

memory presets (--memory; effective settings are logged on stderr and written to --json):
{MEMORY_HELP}

{SPEED_EPILOG}

{GUIDANCE_EPILOG}

exit codes: 0 success, 2 bad input (nothing written), 1 internal error.
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="reneg-video",
        description="Generate videos with a ReNeg negative embedding (arXiv 2412.19637) used on the "
        "negative branch of classifier-free guidance.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_options(p.add_argument_group("model"))
    _add_negative_options(p.add_argument_group("negative"))
    add_guidance_options(p.add_argument_group("guidance rule and attention guidance"))
    _add_prompt_options(p.add_argument_group("prompts and sampling (defaults come from the model's spec)"))
    output = p.add_argument_group("output")
    _add_output_options(output)
    _add_reward_options(p.add_argument_group("rewards and per-sample refinement"))
    output.add_argument("--quiet", action="store_true", help="no progress bars")  # last in the usage line
    return p


def _add_model_options(g) -> None:
    g.add_argument(
        "--model", default=None, help="model name or alias (see --list-models), or a diffusers folder"
    )
    g.add_argument(
        "--model-path",
        metavar="DIR",
        help="load the weights from this diffusers folder (LTX-Video: or a single-file .safetensors "
        "checkpoint, its text encoder taken from --model DIR or the HF cache)",
    )
    g.add_argument(
        "--adapter", metavar="SPEC.toml", help="use this adapter spec file (a model the built-ins lack)"
    )
    g.add_argument(
        "--list-models",
        action="store_true",
        help="list known models, each with the released embedding file that fits it and why, and exit",
    )
    g.add_argument(
        "--image", metavar="PATH", help="conditioning image for image+text-to-video models (i2vgen-xl)"
    )
    g.add_argument(
        "--motion-adapter",
        metavar="PATH",
        help="AnimateDiff MotionAdapter folder or Hugging Face repo (default: the spec's motion_adapter)",
    )
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    g.add_argument(
        "--dtype",
        default="auto",
        help="auto (the spec's half precision on GPU, float32 on CPU), float32, float16, bfloat16",
    )
    g.add_argument(
        "--memory",
        default="auto",
        metavar="PRESET",
        help="memory preset: auto (default), off, balanced, low, minimal (see 'memory presets' below)",
    )
    add_speed_option(g)


def _add_negative_options(n) -> None:
    n.add_argument(
        "--neg", metavar="PATH", help="negative embedding file (.bin released format or .safetensors)"
    )
    n.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help=f"handcrafted negative prompt instead of --neg (or the baseline arm of --compare); "
        f"{PAPER_NEGATIVE_ALIAS} = the ReNeg paper's handcrafted prompt",
    )


def _add_prompt_options(q) -> None:
    q.add_argument("--prompt", action="append", default=[], help="text prompt (repeatable)")
    q.add_argument(
        "--prompts-file", metavar="FILE", help="one prompt per line (# comments and blank lines skipped)"
    )
    q.add_argument("--frames", type=int, help="frame count (LTX-Video: 8k+1)")
    q.add_argument("--height", type=int, help="height in pixels (a multiple of the model's VAE/patch grid)")
    q.add_argument("--width", type=int, help="width in pixels (a multiple of the model's VAE/patch grid)")
    q.add_argument("--steps", type=int, help="denoising steps")
    q.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale, used at every step: it overrides a spec's per-step schedule "
        "(ltx-video-0.9.7 guides by its reference config's schedule unless this is given)",
    )
    q.add_argument("--seed", type=int, default=0, help="seed of the initial noise (CPU generator; default 0)")
    q.add_argument("--fps", type=int, help="frame rate of the written video")


def _add_output_options(o) -> None:
    o.add_argument(
        "--out", action="append", default=[], metavar="PATH", help="output .mp4 or .gif (repeatable)"
    )
    o.add_argument(
        "--compare", action="store_true", help="also render the baseline with the same seed, side by side"
    )
    o.add_argument("--json", metavar="PATH", help="write a machine-readable summary here")
    o.add_argument(
        "--upscale",
        default="auto",
        metavar="auto|off|N",
        help="enlarge the written videos by a whole factor, nearest-neighbour (no new pixel values): auto "
        "(default) does it for tiny renders only, short side under 128 px up to 256 (the shapes models' 32 px "
        "become 256); off writes what was rendered",
    )
    o.add_argument(
        "--resume",
        action="store_true",
        help="with --prompts-file: skip the prompts whose --out files all exist complete (as a killed run "
        "left them) and render the rest",
    )
    o.add_argument(
        "--export-ltxv-conditioning",
        metavar="PATH.safetensors",
        help="write --neg matched to the LTX model as the file ComfyUI-LTXVideo's LTXVLoadConditioning node "
        "reads (put it in ComfyUI/models/embeddings/) and exit; no weights are loaded",
    )


def _add_reward_options(r) -> None:
    r.add_argument(
        "--score",
        metavar="REWARD",
        help="score every frame of what is generated (e.g. imagereward, or imagereward:1,tiny-imagereward:0.5); "
        "with --compare every arm is scored",
    )
    r.add_argument(
        "--min-reward",
        type=float,
        metavar="X",
        help="keep only the videos whose mean frame reward under --score is >= X (as ImageReward's web UI "
        "filters): the others are not written; every score, kept or not, goes to --json",
    )
    r.add_argument(
        "--reward",
        metavar="REWARD",
        help="objective of --optimize-neg/--optimize-noise/--best-of (default: --score's, else imagereward); "
        "ImageReward weights come from $RENEG_IMAGEREWARD_CKPT or the local HF cache",
    )
    r.add_argument(
        "--optimize-neg",
        type=int,
        metavar="STEPS",
        help="refine the embedding per prompt from --neg (ReNeg's per-sample stage: <= 10 steps, patience 3)",
    )
    r.add_argument(
        "--optimize-noise",
        type=int,
        metavar="STEPS",
        help="optimise the initial noise per prompt against the reward (ReNO: SGD Nesterov, clip, norm prior)",
    )
    r.add_argument(
        "--best-of", type=int, metavar="N", help="try seeds seed..seed+N-1, keep the best mean frame reward"
    )


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.specs import list_models

    if args.list_models:
        from ..core.specs import describe_fit, load_spec

        for name in list_models():
            spec = load_spec(name)
            tag = " [stand-in: noise]" if spec.standin else f" [{spec.repo_id or spec.bundled}]"
            print(f"{name:28s} {spec.description}{tag}\n{'':28s} {describe_fit(spec)}")
        return 0
    from ..models.pipeline import resolve_spec

    if not args.model and not args.adapter:
        raise UsageError(f"no model: pass --model NAME (one of {list_models()})")
    spec = resolve_spec(args.model or "", args.adapter)
    if args.export_ltxv_conditioning:
        return _export_ltxv(args, spec)
    from ..render.job import checked_job
    from ..render.video import render_prompt_set

    render_prompt_set(checked_job(args, spec, prompts_from_args(args)))  # all checked before any load
    return 0


def _export_ltxv(args, spec) -> int:
    """--export-ltxv-conditioning: the embedding as LTX-Video sees it, in ComfyUI-LTXVideo's file format."""
    from ..core.conditioning import save_ltxv_conditioning
    from ..core.embedding import load_embedding

    if not args.neg:
        raise UsageError("--export-ltxv-conditioning needs --neg PATH (the embedding to export)")
    print(save_ltxv_conditioning(load_embedding(args.neg), spec, args.export_ltxv_conditioning))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except ReNegError as exc:
        print(f"reneg-video: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reneg-video: interrupted; nothing partial was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
