"""`reneg-video`: generate videos with a ReNeg negative embedding on the negative CFG branch.

Every argument is checked before any model loads; bad input exits 2 with one line naming the value,
what was expected and the fix, and writes nothing. Internal errors exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import ReNegError, UsageError
from .export import GIF_MAX_FPS
from .memory import PRESET_HELP

# The handcrafted negative prompt of the ReNeg paper's baseline (its reference inference code).
PAPER_NEGATIVE_PROMPT = (
    "distorted, ugly, blurry, low resolution, low quality, bad, deformed, disgusting, Overexposed, "
    "Simple background, Plain background, Grainy, Underexposed, too dark, too bright, too low contrast, "
    "too high contrast, Broken, Macabre, artifacts, oversaturated"
)
PAPER_NEGATIVE_ALIAS = "@paper"
MEMORY_HELP = "\n".join(f"  {name:9s} {text}" for name, text in PRESET_HELP.items())

EPILOG = f"""\
models:
  zeroscope, ltx-video, sd15, sd21, pixart-alpha load real weights from the local Hugging Face cache
  or --model-path DIR; nothing is downloaded. tiny-zeroscope, tiny-ltx-video, tiny-sd15, tiny-sd21 and
  tiny-pixart-alpha are built-in STAND-INS with random weights: they run offline in seconds but their
  videos are NOISE, for demos and tests only. `--list-models` shows every spec, your own included.

embeddings (--neg):
  the released ReNeg files as they are: sd2.1_reneg_emb.bin -> zeroscope (OpenCLIP ViT-H/14, 1024
  wide); pixart-alpha_reneg_emb.bin -> ltx-video (T5-v1.1-xxl, 4096 wide, padded to 128 tokens with
  only token 0 attended); also .safetensors and this project's own format. Pickles are read with
  weights_only=True only.

outputs:
  --out may repeat (.mp4 = H.264 yuv420p faststart, .gif = looping, at most {GIF_MAX_FPS} fps); with several
  prompts each file name gets -000, -001, ... before its suffix. --compare also writes NAME-compare.EXT:
  baseline (left; --negative-prompt or none) and ReNeg (right), same seed.

examples:
  reneg-video --model tiny-zeroscope --neg ../shared/reneg/sd2.1_reneg_emb.bin \\
      --prompt "a corgi surfing a wave" --frames 8 --steps 2 --seed 7 --out z.mp4 --out z.gif
  reneg-video --model ltx-video --neg pixart-alpha_reneg_emb.bin --prompt "a red panda" --out p.mp4
  reneg-video --model zeroscope --negative-prompt {PAPER_NEGATIVE_ALIAS} --prompt "a cat" --out c.mp4

memory presets (--memory; effective settings are logged on stderr and written to --json):
{MEMORY_HELP}

exit codes: 0 success, 2 bad input (nothing written), 1 internal error.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every other refusal
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="reneg-video",
        description="Generate videos with a ReNeg negative embedding (arXiv 2412.19637) used on the "
        "negative branch of classifier-free guidance.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", default=None, help="model name or alias (see --list-models), or a diffusers folder"
    )
    g.add_argument("--model-path", metavar="DIR", help="load the weights from this diffusers folder")
    g.add_argument(
        "--adapter", metavar="SPEC.toml", help="use this adapter spec file (a model the built-ins lack)"
    )
    g.add_argument("--list-models", action="store_true", help="list known models and exit")
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
    n = p.add_argument_group("negative")
    n.add_argument(
        "--neg", metavar="PATH", help="negative embedding file (.bin released format or .safetensors)"
    )
    n.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help=f"handcrafted negative prompt instead of --neg (or the baseline arm of --compare); "
        f"{PAPER_NEGATIVE_ALIAS} = the ReNeg paper's handcrafted prompt",
    )
    q = p.add_argument_group("prompts and sampling (defaults come from the model's spec)")
    q.add_argument("--prompt", action="append", default=[], help="text prompt (repeatable)")
    q.add_argument(
        "--prompts-file", metavar="FILE", help="one prompt per line (# comments and blank lines skipped)"
    )
    q.add_argument("--frames", type=int, help="frame count (LTX-Video: 8k+1)")
    q.add_argument("--height", type=int, help="height in pixels (a multiple of the model's VAE/patch grid)")
    q.add_argument("--width", type=int, help="width in pixels (a multiple of the model's VAE/patch grid)")
    q.add_argument("--steps", type=int, help="denoising steps")
    q.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    q.add_argument("--seed", type=int, default=0, help="seed of the initial noise (CPU generator; default 0)")
    q.add_argument("--fps", type=int, help="frame rate of the written video")
    o = p.add_argument_group("output")
    o.add_argument(
        "--out", action="append", default=[], metavar="PATH", help="output .mp4 or .gif (repeatable)"
    )
    o.add_argument(
        "--compare", action="store_true", help="also render the baseline with the same seed, side by side"
    )
    o.add_argument("--json", metavar="PATH", help="write a machine-readable summary here")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _prompts(args) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise UsageError(
                f"--prompts-file {path}: no such file; pass a text file with one prompt per line"
            )
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"--prompts-file {path}: not UTF-8 text; save it as UTF-8") from None
        prompts += [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not prompts:
        raise UsageError("no prompt: pass --prompt TEXT or --prompts-file FILE")
    for text in prompts:
        if not text.strip():
            raise UsageError("--prompt '': empty prompt; pass some text")
    return [t.strip() for t in prompts]


def _outputs(paths: list[str], prompt_count: int, compare: bool) -> list[list[Path]]:
    """Destination paths per prompt, all checked before any work starts."""
    from .export import check_destination

    if not paths:
        raise UsageError("no output: pass --out PATH.mp4 and/or --out PATH.gif")
    per_prompt = []
    for i in range(prompt_count):
        row = []
        for text in paths:
            path = Path(text)
            if prompt_count > 1:
                path = path.with_name(f"{path.stem}-{i:03d}{path.suffix}")
            row.append(check_destination(path))
            if compare:
                row.append(check_destination(path.with_name(f"{path.stem}-compare{path.suffix}")))
        per_prompt.append(row)
    flat = [p.resolve() for row in per_prompt for p in row]
    if len(set(flat)) != len(flat):
        raise UsageError(f"--out {paths}: two outputs would write the same file; give distinct names")
    return per_prompt


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .specs import list_models

    if args.list_models:
        from .specs import load_spec

        for name in list_models():
            spec = load_spec(name)
            tag = " [stand-in: noise]" if spec.standin else f" [{spec.repo_id}]"
            print(f"{name:20s} {spec.encoder:18s} {spec.description}{tag}")
        return 0

    # --- validate everything before any model loads -------------------------------------------
    from .embedding import load_embedding
    from .encoders import check_family
    from .generate import settings_for
    from .memory import check_preset
    from .pipeline import model_folder, resolve_device, resolve_dtype, resolve_spec

    if not args.model and not args.adapter:
        raise UsageError(f"no model: pass --model NAME (one of {list_models()})")
    spec = resolve_spec(args.model or "", args.adapter)
    prompts = _prompts(args)
    settings = settings_for(
        spec,
        seed=args.seed,
        frames=args.frames,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance=args.guidance,
        fps=args.fps,
    )
    negative_prompt = args.negative_prompt
    if negative_prompt == PAPER_NEGATIVE_ALIAS:
        negative_prompt = PAPER_NEGATIVE_PROMPT
    if negative_prompt is not None and not negative_prompt.strip():
        raise UsageError("--negative-prompt '': empty; pass some text or leave the option out")
    if args.neg and negative_prompt and not args.compare:
        raise UsageError("--neg and --negative-prompt conflict; use one, or add --compare to render both")
    if args.compare and not args.neg:
        raise UsageError("--compare needs --neg PATH (the ReNeg arm to compare with the baseline)")
    neg = load_embedding(args.neg) if args.neg else None
    if neg is not None:
        check_family(neg.family, spec.family, spec.name, str(args.neg))
    outputs = _outputs(args.out, len(prompts), args.compare)
    if args.json:
        from .export import check_destination

        json_path = Path(args.json)
        if json_path.suffix.lower() != ".json":
            raise UsageError(f"--json {json_path}: expected a path ending in .json")
        check_destination(json_path.with_suffix(".mp4"))  # same folder checks
    check_preset(args.memory)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, spec, device)
    folder = model_folder(spec, args.model_path)

    # --- load, inject, generate, export ----------------------------------------------------------
    return _generate_all(args, spec, folder, device, dtype, neg, negative_prompt, prompts, settings, outputs)


def _generate_all(args, spec, folder, device, dtype, neg, negative_prompt, prompts, settings, outputs) -> int:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .export import export_video
    from .generate import generate
    from .inject import attach, detached
    from .memory import describe
    from .pipeline import load_pipeline

    diffusers_logging.set_verbosity_error()  # e.g. TextToVideoSDPipeline's deprecation notice
    diffusers_logging.disable_progress_bar()  # loading bars; the denoising bar stays unless --quiet
    transformers_logging.disable_progress_bar()
    if spec.standin:
        print(f"note: {spec.name} is a stand-in with random weights: its output is noise", file=sys.stderr)
    pipe = load_pipeline(
        folder,
        device,
        dtype,
        adapter=spec.source,
        memory=args.memory,
        frames=settings.frames,
        height=settings.height,
        width=settings.width,
    )
    print(f"memory: {describe(pipe.reneg_memory)}", file=sys.stderr)
    pipe.set_progress_bar_config(disable=args.quiet, leave=False)
    if neg is not None:
        attach(pipe, neg, spec)
    records = []
    for prompt, paths in zip(prompts, outputs, strict=True):
        start = time.perf_counter()
        frames = generate(pipe, spec, prompt, settings, None if args.compare else negative_prompt)
        written = []
        main_paths = paths[::2] if args.compare else paths
        for path in main_paths:
            written.append(str(export_video(frames, path, settings.fps)))
        compared = []
        if args.compare:
            with detached(pipe):
                baseline = generate(pipe, spec, prompt, settings, negative_prompt)
            side_by_side = np.concatenate([baseline, frames], axis=2)
            for path in paths[1::2]:
                compared.append(str(export_video(side_by_side, path, settings.fps)))
        seconds = time.perf_counter() - start
        for path in written + compared:
            print(path)
        records.append(
            {"prompt": prompt, "outputs": written, "compare": compared, "seconds": round(seconds, 3)}
        )
    if args.json:
        _write_json(
            args.json, spec, neg, negative_prompt, settings, device, dtype, records, pipe.reneg_memory
        )
    return 0


def _write_json(path, spec, neg, negative_prompt, settings, device, dtype, records, memory) -> None:
    from .atomic import atomic_path

    summary = {
        "model": spec.name,
        "standin": spec.standin,
        "note": "stand-in with random weights: outputs are noise" if spec.standin else None,
        "negative": None
        if neg is None
        else {
            "source": neg.source,
            "sha256": neg.sha256,
            "family": neg.family.name,
            "tokens": neg.tokens,
            "kept_tokens": neg.kept_tokens,
        },
        "negative_prompt": negative_prompt,
        "settings": settings.as_dict(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "memory": memory,
        "videos": records,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")


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
