"""`reneg-video`'s options checked into a `RenderJob`, before any model loads.

Every refusal is a UsageError (or another ReNegError) naming the option, what was expected and the fix;
the embedding is loaded and checked against the model here, once (`core.inject.check_embedding`), and
`render.video` trusts the job. Nothing is loaded but the embedding and the conditioning image.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.embedding import NegativeEmbedding
from ..core.errors import UsageError
from ..core.prompts import PAPER_NEGATIVE_ALIAS, PAPER_NEGATIVE_PROMPT
from ..core.settings import Settings
from ..core.specs import AdapterSpec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RenderJob:
    """What one `reneg-video` invocation asked for, checked."""

    # The model: `model` as given (load_pipeline resolves it with the spec), the folder its weights are in.
    spec: AdapterSpec
    model: str
    model_path: str | None
    weights: Path
    device: torch.device
    dtype: torch.dtype
    memory: str
    speed: str
    motion_adapter: str | None
    # What to render: per prompt its output paths (with compare: main, compare, main, compare, ...).
    prompts: list[str]
    outputs: list[list[Path]]
    settings: Settings
    neg: NegativeEmbedding | None
    negative_prompt: str | None
    compare: bool = False
    # Per-sample refinement and best-of-N against `objective` (a reward spec, None when none is asked).
    objective: str | None = None
    optimize_neg: int | None = None
    optimize_noise: int | None = None
    best_of: int | None = None
    # Frame scores of every arm, and the filter on the main arm's mean.
    score: str | None = None
    min_reward: float | None = None
    json: Path | None = None
    quiet: bool = False
    # --resume: skip the prompts whose every output exists complete (`render.video._pending`).
    resume: bool = False
    # --upscale: "auto" (tiny renders enlarged for viewing), "off", or a whole factor (core.export).
    upscale: str | int = "auto"

    @property
    def main_arm(self) -> str:
        return "reneg" if self.neg is not None else "output"


def checked_job(args: argparse.Namespace, spec: AdapterSpec, prompts: list[str]) -> RenderJob:
    """The render job of reneg-video's options for `spec` and `prompts` (both checked), every option checked
    in the order a user meets them."""
    from ..core.memory import check_preset
    from ..core.speed import check_speed
    from ..models.generate import settings_for
    from ..models.pipeline import resolve_device, resolve_dtype, resolve_model

    settings = settings_for(
        spec,
        seed=args.seed,
        frames=args.frames,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance=args.guidance,
        fps=args.fps,
        **guidance_overrides(args),
    )
    neg, negative_prompt = _negative(args, spec, settings)
    objective = _check_rewards(args)
    _check_refinement_guidance(args, settings)
    spec = _with_image(spec, args.image)
    _check_motion_adapter(spec, args.motion_adapter)
    outputs = _outputs(args.out, len(prompts), args.compare)
    _check_resume(args)
    _check_json(args.json)
    check_preset(args.memory)
    check_speed(args.speed)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, spec, device)
    _, folder = resolve_model(args.model or "", args.model_path, args.adapter)
    return RenderJob(
        spec=spec, model=args.model or "", model_path=args.model_path, weights=folder, device=device,
        dtype=dtype, memory=args.memory, speed=args.speed, motion_adapter=args.motion_adapter,
        prompts=prompts, outputs=outputs, settings=settings, neg=neg, negative_prompt=negative_prompt,
        compare=args.compare, objective=objective, optimize_neg=args.optimize_neg,
        optimize_noise=args.optimize_noise, best_of=args.best_of, score=args.score,
        min_reward=args.min_reward, json=Path(args.json) if args.json else None, quiet=args.quiet,
        resume=args.resume, upscale=_upscale(args.upscale),
    )  # fmt: skip


def _negative(args, spec, settings):
    """The embedding (loaded and checked against the model: the one check it gets) and the negative prompt."""
    from ..core.embedding import load_embedding
    from ..core.inject import check_embedding
    from ..models.generate import require_cfg

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
        check_embedding(neg, spec, str(args.neg), nag=settings.nag is not None)
    if (args.neg or negative_prompt) and settings.nag is None:
        require_cfg(settings, "--neg" if args.neg else "--negative-prompt")
    return neg, negative_prompt


def _check_motion_adapter(spec, path: str | None) -> None:
    from ..models.pipeline import motion_adapter_folder

    if path is not None:
        if "AnimateDiff" not in spec.pipeline:
            raise UsageError(
                f"--motion-adapter: {spec.name} takes no motion adapter; use it with animatediff"
            )
        motion_adapter_folder(path)


def _upscale(text: str) -> str | int:
    """--upscale as "auto", "off" or a whole factor 1..16."""
    from ..core.export import UPSCALE_AUTO, UPSCALE_OFF

    if text in (UPSCALE_AUTO, UPSCALE_OFF):
        return text
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise UsageError(f"--upscale {text}: expected auto, off or a whole factor 1..16")
    return int(text)


def _check_resume(args) -> None:
    """--resume skips the prompts of a prompt file already rendered; a single --prompt has nothing to skip."""
    if args.resume and not args.prompts_file:
        raise UsageError(
            "--resume: needs --prompts-file FILE (it skips that file's prompts whose outputs are complete); "
            "leave --resume out to render --prompt"
        )


def _check_json(path: str | None) -> None:
    from ..core.export import check_destination

    if path:
        json_path = Path(path)
        if json_path.suffix.lower() != ".json":
            raise UsageError(f"--json {json_path}: expected a path ending in .json")
        check_destination(json_path.with_suffix(".mp4"))  # same folder checks


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


def _check_refinement_guidance(args, settings: Settings) -> None:
    """Per-sample refinement differentiates through plain CFG (`training.refine`); rendering its result under
    another rule or NAG would optimise one sampler and show another."""
    refine = "--optimize-neg" if args.optimize_neg else "--optimize-noise" if args.optimize_noise else None
    if refine is None:
        return
    if settings.nag is not None or settings.guidance_rule != "cfg":
        other = "--nag" if settings.nag is not None else f"--guidance-rule {settings.guidance_rule}"
        raise UsageError(
            f"{refine} with {other}: the refinement optimises under plain classifier-free guidance, so its "
            f"result would be rendered by another sampler; leave {other} out (or use --best-of)"
        )


def guidance_overrides(args) -> dict:
    """`settings_for` keywords from --guidance-rule and --nag*: the NAG parameters checked here, once."""
    from ..core.nag import NagParams

    nag = None
    if args.nag:
        if args.nag_scale < 1:
            raise UsageError(f"--nag-scale {args.nag_scale:g}: expected >= 1 (1 = no extrapolation)")
        if args.nag_tau <= 0:
            raise UsageError(f"--nag-tau {args.nag_tau:g}: expected a positive norm-ratio cap")
        if not 0 <= args.nag_alpha <= 1:
            raise UsageError(f"--nag-alpha {args.nag_alpha:g}: expected a blend weight in [0, 1]")
        nag = NagParams(scale=args.nag_scale, tau=args.nag_tau, alpha=args.nag_alpha)
    return {"guidance_rule": args.guidance_rule, "nag": nag}
