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

from ..core.errors import ReNegError, UsageError
from ..core.export import GIF_MAX_FPS
from ..core.memory import PRESET_HELP
from ..core.prompts import PAPER_NEGATIVE_ALIAS, PAPER_NEGATIVE_PROMPT, baseline_negative
from ..rewards.frames import frame_scores
from .common import SPEED_EPILOG, Parser, add_speed_option, prompts_from_args

MEMORY_HELP = "\n".join(f"  {name:9s} {text}" for name, text in PRESET_HELP.items())

EPILOG = f"""\
models:
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
  null text | handcrafted (--negative-prompt; default the model's own, else {PAPER_NEGATIVE_ALIAS}) | ReNeg, same seed.
  Several prompts under `accelerate launch --multi_gpu --num_processes N -m reneg_video.commands.video ...`
  are shared out over the processes (one GPU each; on CPU add --device cpu); the main one writes --json.

examples:
  reneg-video --model tiny-zeroscope --neg ../shared/reneg/sd2.1_reneg_emb.bin \\
      --prompt "a corgi surfing a wave" --frames 8 --steps 2 --seed 7 --out z.mp4 --out z.gif
  reneg-video --model ltx-video --neg pixart-alpha_reneg_emb.bin --prompt "a red panda" --out p.mp4
  reneg-video --model zeroscope --negative-prompt {PAPER_NEGATIVE_ALIAS} --prompt "a cat" --out c.mp4

memory presets (--memory; effective settings are logged on stderr and written to --json):
{MEMORY_HELP}

{SPEED_EPILOG}

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
    g = p.add_argument_group("model")
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
    q.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale, used at every step: it overrides a spec's per-step schedule "
        "(ltx-video-0.9.7 guides by its reference config's schedule unless this is given)",
    )
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
    o.add_argument(
        "--export-ltxv-conditioning",
        metavar="PATH.safetensors",
        help="write --neg matched to the LTX model as the file ComfyUI-LTXVideo's LTXVLoadConditioning node "
        "reads (put it in ComfyUI/models/embeddings/) and exit; no weights are loaded",
    )
    r = p.add_argument_group("rewards and per-sample refinement")
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
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _outputs(paths: list[str], prompt_count: int, compare: bool) -> list[list[Path]]:
    """Destination paths per prompt, all checked before any work starts."""
    from ..core.export import check_destination

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
    from ..core.specs import list_models

    if args.list_models:
        from ..core.specs import describe_fit, load_spec

        for name in list_models():
            spec = load_spec(name)
            tag = " [stand-in: noise]" if spec.standin else f" [{spec.repo_id or spec.bundled}]"
            print(f"{name:28s} {spec.description}{tag}\n{'':28s} {describe_fit(spec)}")
        return 0

    # --- validate everything before any model loads -------------------------------------------
    from ..core.embedding import load_embedding
    from ..core.encoders import check_family
    from ..core.inject import check_negative_branch
    from ..core.memory import check_preset
    from ..core.speed import check_speed
    from ..models.generate import require_cfg, settings_for
    from ..models.pipeline import (
        motion_adapter_folder,
        resolve_device,
        resolve_dtype,
        resolve_model,
        resolve_spec,
    )

    if not args.model and not args.adapter:
        raise UsageError(f"no model: pass --model NAME (one of {list_models()})")
    spec = resolve_spec(args.model or "", args.adapter)
    if args.export_ltxv_conditioning:
        return _export_ltxv(args, spec)
    prompts = prompts_from_args(args)
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
        # Most specific first: another space names both spaces; a distilled model says it has no
        # negative branch; then any run whose guidance turns CFG off.
        check_family(neg.family, spec.family, spec.name, str(args.neg))
        check_negative_branch(spec)
    if args.neg or negative_prompt:
        require_cfg(settings, "--neg" if args.neg else "--negative-prompt")
    reward_spec = _check_rewards(args)
    spec = _with_image(spec, args.image)
    if args.motion_adapter is not None:
        if "AnimateDiff" not in spec.pipeline:
            raise UsageError(
                f"--motion-adapter: {spec.name} takes no motion adapter; use it with animatediff"
            )
        motion_adapter_folder(args.motion_adapter)
    outputs = _outputs(args.out, len(prompts), args.compare)
    if args.json:
        from ..core.export import check_destination

        json_path = Path(args.json)
        if json_path.suffix.lower() != ".json":
            raise UsageError(f"--json {json_path}: expected a path ending in .json")
        check_destination(json_path.with_suffix(".mp4"))  # same folder checks
    check_preset(args.memory)
    check_speed(args.speed)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, spec, device)
    _, folder = resolve_model(args.model or "", args.model_path, args.adapter)

    # --- load, inject, generate, score, export ----------------------------------------------------
    run = _Run(args, spec, neg, negative_prompt, settings, reward_spec)
    from ..core.shard import Processes

    with Processes(cpu=device.type == "cpu") as procs:  # under `accelerate launch` the prompts are shared out
        return _generate_all(procs, run, folder, device, dtype, prompts, outputs)


def _export_ltxv(args, spec) -> int:
    """--export-ltxv-conditioning: the embedding as LTX-Video sees it, in ComfyUI-LTXVideo's file format."""
    from ..core.conditioning import save_ltxv_conditioning
    from ..core.embedding import load_embedding

    if not args.neg:
        raise UsageError("--export-ltxv-conditioning needs --neg PATH (the embedding to export)")
    print(save_ltxv_conditioning(load_embedding(args.neg), spec, args.export_ltxv_conditioning))
    return 0


def _with_image(spec, path: str | None):
    """The spec with the conditioning image among its call arguments (image+text models), checked."""
    if not spec.image:
        if path is not None:
            raise UsageError(f"--image {path}: {spec.name} takes no conditioning image; leave --image out")
        return spec
    if path is None:
        raise UsageError(f"{spec.name} is an image+text-to-video model: pass --image PATH (a PNG or JPEG)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            image = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UsageError(f"--image {path}: not a readable image ({exc}); pass a PNG or JPEG file") from None
    # Every pipeline call of this run (main arm, --compare baselines, refinement) passes call_kwargs.
    return replace(spec, call_kwargs={**spec.call_kwargs, "image": image})


def _check_rewards(args) -> str | None:
    """The objective reward spec (None if nothing needs one); names checked, nothing loaded."""
    from ..rewards import check_reward_name, parse_reward_spec

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
    if args.min_reward is not None:
        if not args.score:
            raise UsageError(
                f"--min-reward {args.min_reward}: needs --score REWARD, the reward whose mean frame score it filters"
            )
        if not np.isfinite(args.min_reward):
            raise UsageError(f"--min-reward {args.min_reward}: expected a finite number")
    needs = args.optimize_neg or args.optimize_noise or args.best_of
    return (args.reward or args.score or "imagereward") if needs else None


class _Run:
    """What one invocation asked for, after validation."""

    def __init__(self, args, spec, neg, negative_prompt, settings, reward_spec) -> None:
        self.args, self.spec, self.neg, self.negative_prompt = args, spec, neg, negative_prompt
        self.settings, self.reward_spec = settings, reward_spec
        self.objective = None  # reward of --optimize-*/--best-of, loaded after the pipeline
        self.scorer = None  # reward of --score


def _render(run: _Run, pipe, prompt: str) -> tuple[np.ndarray, dict]:
    """The main arm for one prompt, with refinement and best-of-N as asked: frames and a record."""
    from ..core.embedding import NegativeEmbedding
    from ..core.encoders import match_tokens
    from ..core.inject import attach
    from ..models.generate import generate
    from ..training.refine import optimize_negative, optimize_noise

    args, spec = run.args, run.spec
    negative_prompt = None if args.compare else run.negative_prompt
    best = None
    for k in range(args.best_of or 1):
        settings = replace(run.settings, seed=run.settings.seed + k)
        record: dict = {"seed": settings.seed}
        neg, latents = run.neg, None  # what renders: refinement replaces them with what it chose
        if args.optimize_neg:
            refined = optimize_negative(
                pipe, spec, run.neg, prompt, settings, run.objective, args.optimize_neg
            )
            _, mask = match_tokens(run.neg.tensor, run.neg.mask, spec.tokens, run.neg.source)
            neg = NegativeEmbedding(refined.best, mask, run.neg.family, run.neg.source + "+refined")
            attach(pipe, neg, spec)
            latents = refined.noise  # the noise its best iterate was chosen on
            record["optimize_neg"] = {"rewards": refined.history, "best": refined.best_reward}
        if args.optimize_noise:
            # Against the embedding (or negative prompt) this video is rendered with.
            refined = optimize_noise(
                pipe, spec, neg, prompt, settings, run.objective, args.optimize_noise, negative_prompt
            )
            latents = refined.noise
            record["optimize_noise"] = {"rewards": refined.history, "best": refined.best_reward}
        if latents is not None:
            latents = (latents / pipe.scheduler.init_noise_sigma).to(
                pipe.dtype
            )  # the pipeline scales them again
        frames = generate(pipe, spec, prompt, settings, negative_prompt, latents=latents)
        if args.optimize_neg:
            attach(pipe, run.neg, spec)  # the next seed or prompt starts from the global embedding again
        if run.objective is not None:
            record["objective"] = float(np.mean(frame_scores(run.objective, frames, prompt)))
        if best is None or record.get("objective", 0.0) > best[1].get("objective", 0.0):
            best = (frames, record)
    return best


def _speed_settings(pipe, settings):
    """The settings under the pipeline's speed preset (its step count), logged in one line with the preset."""
    from ..core.speed import describe_speed, scaled_steps

    steps = scaled_steps(settings.steps, pipe.reneg_speed)
    print(f"speed: {describe_speed(pipe.reneg_speed)} steps={settings.steps}->{steps}", file=sys.stderr)
    return replace(settings, steps=steps)


def _generate_all(procs, run: _Run, folder, device, dtype, prompts, outputs) -> int:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from ..core.export import export_video
    from ..core.inject import attach, detached
    from ..core.memory import describe
    from ..models.generate import generate, guidance_call_settings
    from ..models.pipeline import load_pipeline

    args, spec, settings = run.args, run.spec, run.settings
    if procs.count > 1 and device.type != "cpu":
        device = procs.device  # one GPU per process
    diffusers_logging.set_verbosity_error()  # e.g. TextToVideoSDPipeline's deprecation notice
    diffusers_logging.disable_progress_bar()  # loading bars; the denoising bar stays unless --quiet
    transformers_logging.disable_progress_bar()
    if spec.standin:
        print(f"note: {spec.name} is a stand-in with random weights: its output is noise", file=sys.stderr)
    pipe = load_pipeline(
        args.model or "",
        device,
        dtype,
        model_path=args.model_path,
        adapter=spec.source,
        memory=args.memory,
        frames=settings.frames,
        height=settings.height,
        width=settings.width,
        motion_adapter=args.motion_adapter,
        speed=args.speed,
    )
    print(f"memory: {describe(pipe.reneg_memory)}", file=sys.stderr)
    if pipe.reneg_call:
        call = " ".join(f"{k}={v}" for k, v in pipe.reneg_call.items())
        print(f"call: {call} (from the model's configs: timestep-conditioned VAE)", file=sys.stderr)
    settings = run.settings = _speed_settings(pipe, settings)
    if settings.guidance_schedule is not None:
        print(
            f"guidance: per step from {spec.name}'s schedule ({settings.guidance_schedule.describe()}; "
            "t = timestep/1000); --guidance G uses G at every step instead",
            file=sys.stderr,
        )
    elif spec.guidance_schedule is not None:
        print(
            f"guidance: {settings.guidance:g} at every step (--guidance overrides {spec.name}'s per-step schedule)",
            file=sys.stderr,
        )
    pipe.set_progress_bar_config(disable=args.quiet, leave=False)
    if run.neg is not None:
        attach(pipe, run.neg, spec)
    if run.reward_spec or args.score:
        from ..rewards import load_reward_spec

        run.objective = load_reward_spec(run.reward_spec, device=device) if run.reward_spec else None
        run.scorer = load_reward_spec(args.score, device=device) if args.score else None
    records = []
    if procs.count > 1:
        print(
            f"process {procs.index}/{procs.count}: prompts {procs.mine(range(len(prompts)))}", file=sys.stderr
        )
    for index in procs.mine(range(len(prompts))):
        prompt, paths = prompts[index], outputs[index]
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
                        pipe,
                        spec,
                        prompt,
                        seeded,
                        baseline_negative(run.negative_prompt, spec.defaults.negative_prompt),
                    ),
                }
            arms = {**baselines, **arms}
        if run.scorer is not None:
            record["scores"] = {}
            for arm, arm_frames in arms.items():
                per_frame = frame_scores(run.scorer, arm_frames, prompt)
                mean = float(np.mean(per_frame))
                record["scores"][arm] = {"mean": mean, "min": min(per_frame), "frames": per_frame}
                print(
                    f"{arm:12s} {run.scorer.name}: mean {mean:.4f}  min {min(per_frame):.4f}", file=sys.stderr
                )
        written, compared = [], []
        if args.min_reward is not None:
            main_arm = "reneg" if run.neg is not None else "output"
            record["kept"] = record["scores"][main_arm]["mean"] >= args.min_reward
        if record.get("kept", True):
            main_paths = paths[::2] if args.compare else paths
            written = [str(export_video(frames, path, settings.fps)) for path in main_paths]
            if args.compare:
                side_by_side = np.concatenate(list(arms.values()), axis=2)
                compared = [str(export_video(side_by_side, path, settings.fps)) for path in paths[1::2]]
        else:
            print(
                f"filtered: {prompt!r} mean {run.scorer.name} {record['scores'][main_arm]['mean']:.4f} < "
                f"--min-reward {args.min_reward}; not written",
                file=sys.stderr,
            )
        for path in written + compared:
            print(path)
        record.update(
            prompt=prompt, outputs=written, compare=compared, seconds=round(time.perf_counter() - start, 3)
        )
        records.append((index, record))
    records = [record for _, record in sorted(procs.gather(records), key=lambda pair: pair[0])]
    # The effective call settings: what the loaded model needs, then the per-step guidance in force.
    call = {**pipe.reneg_call, **guidance_call_settings(settings, pipe)}
    if "guidance_schedule" in call and "per_step" in call["guidance_schedule"]:
        per_step = " ".join(f"{g:g}" for g in call["guidance_schedule"]["per_step"])
        print(f"guidance per step: {per_step}", file=sys.stderr)
    if args.json and procs.is_main:
        _write_json(
            args.json, spec, run.neg, run.negative_prompt, settings, device, dtype, records, pipe.reneg_memory,
            weights=str(folder), call=call, min_reward=args.min_reward, speed=pipe.reneg_speed,
        )  # fmt: skip
    return 0


def _write_json(
    path,
    spec,
    neg,
    negative_prompt,
    settings,
    device,
    dtype,
    records,
    memory,
    weights,
    call,
    min_reward=None,
    speed=None,
) -> None:
    from ..core.atomic import atomic_path

    summary = {
        "model": spec.name,
        "standin": spec.standin,
        "weights": weights,  # the folder the weights were loaded from
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
        # arguments the loaded model needs (e.g. LTX 0.9.1+ decode_timestep) and the per-step guidance schedule
        "call_settings": call,
        "min_reward": min_reward,
        "kept": sum(r.get("kept", True) for r in records),
        "speed": speed,
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
