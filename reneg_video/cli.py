"""`reneg-video`: generate videos with a ReNeg negative embedding on the negative CFG branch.

Every argument is checked before any model loads; bad input exits 2 with one line naming the value,
what was expected and the fix, and writes nothing. Internal errors exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
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
  null text | handcrafted negative (--negative-prompt, default {PAPER_NEGATIVE_ALIAS}) | ReNeg, same seed.

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
    r = p.add_argument_group("rewards and per-sample refinement")
    r.add_argument(
        "--score",
        metavar="REWARD",
        help="score every frame of what is generated (e.g. imagereward, or imagereward:1,tiny-imagereward:0.5); "
        "with --compare every arm is scored",
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
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def read_prompts_file(path: str | Path) -> list[str]:
    """One prompt per line of a UTF-8 text file; blank lines and `#` comments skipped (may be empty)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--prompts-file {path}: no such file; pass a text file with one prompt per line")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: drop a BOM (Windows editors)
    except UnicodeDecodeError:
        raise UsageError(f"--prompts-file {path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise UsageError(
            f"--prompts-file {path}: unreadable ({exc.strerror}); check its permissions"
        ) from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def _prompts(args) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += read_prompts_file(args.prompts_file)
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
            tag = " [stand-in: noise]" if spec.standin else f" [{spec.repo_id or spec.bundled}]"
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
    reward_spec = _check_rewards(args)
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

    # --- load, inject, generate, score, export ----------------------------------------------------
    run = _Run(args, spec, neg, negative_prompt, settings, reward_spec)
    return _generate_all(run, folder, device, dtype, prompts, outputs)


def _check_rewards(args) -> str | None:
    """The objective reward spec (None if nothing needs one); names checked, nothing loaded."""
    from .rewards import check_reward_name, parse_reward_spec

    for name, value, high in (
        ("optimize-neg", args.optimize_neg, 10),
        ("optimize-noise", args.optimize_noise, None),
    ):
        if value is not None and (value <= 0 or (high and value > high)):
            raise UsageError(f"--{name} {value}: expected 1..{high or 'N'} steps")
    if args.best_of is not None and args.best_of <= 0:
        raise UsageError(f"--best-of {args.best_of}: expected a positive number of seeds")
    if args.optimize_neg and not args.neg:
        raise UsageError("--optimize-neg needs --neg PATH (the global embedding it starts from)")
    for text in (args.score, args.reward):
        if text is not None:
            for name, _ in parse_reward_spec(text):
                check_reward_name(name)
    needs = args.optimize_neg or args.optimize_noise or args.best_of
    return (args.reward or args.score or "imagereward") if needs else None


class _Run:
    """What one invocation asked for, after validation."""

    def __init__(self, args, spec, neg, negative_prompt, settings, reward_spec) -> None:
        self.args, self.spec, self.neg, self.negative_prompt = args, spec, neg, negative_prompt
        self.settings, self.reward_spec = settings, reward_spec
        self.objective = None  # reward of --optimize-*/--best-of, loaded after the pipeline
        self.scorer = None  # reward of --score


def _frame_scores(reward, frames: np.ndarray, prompt: str) -> list[float]:
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return [round(float(v), 6) for v in reward.score_frames(pixels, prompt)]


def _render(run: _Run, pipe, prompt: str) -> tuple[np.ndarray, dict]:
    """The main arm for one prompt, with refinement and best-of-N as asked: frames and a record."""
    from .embedding import NegativeEmbedding
    from .encoders import match_tokens
    from .generate import generate
    from .inject import attach
    from .refine import optimize_negative, optimize_noise

    args, spec = run.args, run.spec
    best = None
    for k in range(args.best_of or 1):
        settings = replace(run.settings, seed=run.settings.seed + k)
        record: dict = {"seed": settings.seed}
        if args.optimize_neg:
            refined = optimize_negative(
                pipe, spec, run.neg, prompt, settings, run.objective, args.optimize_neg
            )
            _, mask = match_tokens(run.neg.tensor, run.neg.mask, spec.tokens, run.neg.source)
            attach(
                pipe, NegativeEmbedding(refined.best, mask, run.neg.family, run.neg.source + "+refined"), spec
            )
            record["optimize_neg"] = {"rewards": refined.history, "best": refined.best_reward}
        latents = None
        if args.optimize_noise:
            refined = optimize_noise(
                pipe, spec, run.neg, prompt, settings, run.objective, args.optimize_noise
            )
            latents = refined.best / pipe.scheduler.init_noise_sigma
            record["optimize_noise"] = {"rewards": refined.history, "best": refined.best_reward}
        negative_prompt = None if args.compare else run.negative_prompt
        frames = generate(pipe, spec, prompt, settings, negative_prompt, latents=latents)
        if args.optimize_neg:
            attach(pipe, run.neg, spec)  # the next seed or prompt starts from the global embedding again
        if run.objective is not None:
            record["objective"] = float(np.mean(_frame_scores(run.objective, frames, prompt)))
        if best is None or record.get("objective", 0.0) > best[1].get("objective", 0.0):
            best = (frames, record)
    return best


def _generate_all(run: _Run, folder, device, dtype, prompts, outputs) -> int:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .export import export_video
    from .generate import generate
    from .inject import attach, detached
    from .memory import describe
    from .pipeline import load_pipeline

    args, spec, settings = run.args, run.spec, run.settings
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
    if run.neg is not None:
        attach(pipe, run.neg, spec)
    if run.reward_spec or args.score:
        from .rewards import load_reward_spec

        run.objective = load_reward_spec(run.reward_spec, device=device) if run.reward_spec else None
        run.scorer = load_reward_spec(args.score, device=device) if args.score else None
    records = []
    for prompt, paths in zip(prompts, outputs, strict=True):
        start = time.perf_counter()
        frames, record = _render(run, pipe, prompt)
        arms = {"reneg" if run.neg is not None else "output": frames}
        if args.compare:
            # Same seed, three arms: null text, the handcrafted negative prompt, the ReNeg embedding.
            seeded = replace(settings, seed=record["seed"])
            with detached(pipe):
                baselines = {
                    "null": generate(pipe, spec, prompt, seeded, None),
                    "handcrafted": generate(
                        pipe, spec, prompt, seeded, run.negative_prompt or PAPER_NEGATIVE_PROMPT
                    ),
                }
            arms = {**baselines, **arms}
        main_paths = paths[::2] if args.compare else paths
        written = [str(export_video(frames, path, settings.fps)) for path in main_paths]
        compared = []
        if args.compare:
            side_by_side = np.concatenate(list(arms.values()), axis=2)
            compared = [str(export_video(side_by_side, path, settings.fps)) for path in paths[1::2]]
        if run.scorer is not None:
            record["scores"] = {}
            for arm, arm_frames in arms.items():
                per_frame = _frame_scores(run.scorer, arm_frames, prompt)
                mean = float(np.mean(per_frame))
                record["scores"][arm] = {"mean": mean, "min": min(per_frame), "frames": per_frame}
                print(
                    f"{arm:12s} {run.scorer.name}: mean {mean:.4f}  min {min(per_frame):.4f}", file=sys.stderr
                )
        for path in written + compared:
            print(path)
        record.update(
            prompt=prompt, outputs=written, compare=compared, seconds=round(time.perf_counter() - start, 3)
        )
        records.append(record)
    if args.json:
        _write_json(
            args.json, spec, run.neg, run.negative_prompt, settings, device, dtype, records, pipe.reneg_memory
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
