"""Guidance rules: the two branches of classifier-free guidance combined by a rule other than plain CFG.

diffusers 0.42 ships these rules as guider classes (`diffusers.guiders`), but only its modular pipelines
use them; the classic pipelines our adapters drive hard-code `uncond + g * (cond - uncond)`. `guidance_rule`
makes the two meet without forking a pipeline: a forward hook on the denoiser splits each batched
[negative, positive] output, computes the rule's prediction R with the diffusers guider, and returns [R, R],
so the pipeline's own combine yields R + g * (R - R) = R at any g (and `guidance_rescale`, which rescales by
std(R) / std(R), leaves it alone). The branches' inputs are untouched: the negative branch carries the ReNeg
rows exactly as under CFG (token strategy and mask unchanged). State a rule keeps across steps (APG's
momentum, the step index CFG-Zero* and the start/stop windows read) lives in one `guidance_rule` context,
i.e. one pipeline call.

Shape legend: B videos, then the denoiser's own layout ([B, C, F, H, W] for UNets, [B, N, C] for LTX).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .errors import SpecError, UsageError
from .memory import denoiser_of
from .settings import UNIT_GUIDANCE
from .specs import AdapterSpec

DEFAULT_RULE = "cfg"

# APG (Sadat et al. 2024, "Eliminating Oversaturation and Artifacts of High Guidance Scales in Diffusion
# Models", arXiv 2410.02416): the paper's recommended eta = 0 (drop the update's component parallel to the
# conditional prediction, the part that oversaturates) and momentum beta = -0.5 (section 5); the norm
# threshold r = 15 is diffusers' default (`adaptive_projected_guidance_rescale`).
APG_ETA = 0.0
APG_MOMENTUM = -0.5
APG_NORM_THRESHOLD = 15.0
# CFG-Zero* (Fan et al. 2025, arXiv 2503.18886) zeroes the first step's prediction ("zero-init", 1 step, the
# paper's and diffusers' default), a rule written for flow matching, where a zero velocity means "stay".
# For an epsilon-predicting model a zero prediction instead claims the noisy sample is clean, so zero-init is
# applied to flow-matching schedulers only; the optimised scale s* applies to both.
CFG_ZERO_STAR_INIT_STEPS = 1
# FDG (Sadat et al. 2025, "Guidance in the Frequency Domain", arXiv 2506.19713): diffusers' default
# `guidance_scales` are [10, 5], high frequencies first; kept here as that ratio: high-frequency scale = the
# user's --guidance, low-frequency scale = half of it, never below 1 (no guidance).
FDG_LOW_FRACTION = 0.5


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    source: str
    # Which diffusers guider for (guidance scale, flow-matching scheduler?).
    make: Callable[[float, bool], object]
    # It needs spatial latents [.., H, W] (a Laplacian pyramid), not a packed token sequence.
    spatial: bool = False
    needs: str | None = None  # an importable module it needs beyond the dependencies
    # It works on the denoised estimates x0 (APG: the paper's Algorithm 1 and ComfyUI's node guide D(x_t),
    # not the noise prediction; its projection and norm cap are not invariant under the change of space).
    denoised: bool = False


def _apg(scale: float, flow: bool):
    from diffusers.guiders import AdaptiveProjectedGuidance
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer

    guider = AdaptiveProjectedGuidance(
        guidance_scale=scale,
        adaptive_projected_guidance_momentum=APG_MOMENTUM,
        adaptive_projected_guidance_rescale=APG_NORM_THRESHOLD,
        eta=APG_ETA,
    )
    # diffusers makes the buffer in `prepare_inputs` at step 0, a modular-pipeline call not made here.
    guider.momentum_buffer = MomentumBuffer(APG_MOMENTUM)
    return guider


def _cfg_zero_star(scale: float, flow: bool):
    from diffusers.guiders import ClassifierFreeZeroStarGuidance

    return ClassifierFreeZeroStarGuidance(
        guidance_scale=scale, zero_init_steps=CFG_ZERO_STAR_INIT_STEPS if flow else 0
    )


def _tcfg(scale: float, flow: bool):
    from diffusers.guiders import TangentialClassifierFreeGuidance

    return TangentialClassifierFreeGuidance(guidance_scale=scale)


def _fdg(scale: float, flow: bool):
    from diffusers.guiders import FrequencyDecoupledGuidance

    return FrequencyDecoupledGuidance(guidance_scales=fdg_scales(scale))


def fdg_scales(scale: float) -> list[float]:
    """FDG's [high, low] frequency scales for a guidance scale (FDG_LOW_FRACTION)."""
    return [scale, max(1.0, scale * FDG_LOW_FRACTION)]


def _cfg(scale: float, flow: bool):
    from diffusers.guiders import ClassifierFreeGuidance

    return ClassifierFreeGuidance(guidance_scale=scale)


RULES: dict[str, Rule] = {
    "cfg": Rule("cfg", "classifier-free guidance", "Ho & Salimans 2022, arXiv 2207.12598", _cfg),
    "apg": Rule(
        "apg", "adaptive projected guidance", "Sadat et al. 2024, arXiv 2410.02416", _apg, denoised=True
    ),
    "cfg-zero-star": Rule("cfg-zero-star", "CFG-Zero*", "Fan et al. 2025, arXiv 2503.18886", _cfg_zero_star),
    "tcfg": Rule("tcfg", "tangential CFG", "Kwon et al. 2025, arXiv 2503.18137", _tcfg),
    "fdg": Rule(
        "fdg", "frequency-decoupled guidance", "Sadat et al. 2025, arXiv 2506.19713", _fdg, True, "kornia"
    ),
}

# Pipelines whose denoiser output is a packed token sequence [B, N, C] (LTX patchifies the latents before
# its transformer): a frequency rule has no H and W to work on there.
_PACKED_TOKEN_PIPELINES = ("LTXPipeline", "LTXConditionPipeline")
# Pipelines that run the two branches as separate denoiser calls (WanPipeline: `cache_context("cond")` then
# `("uncond")`), which the one-call hook cannot pair.
_SEPARATE_BRANCH_PIPELINES = ("WanPipeline",)


def check_rule(rule: str, spec: AdapterSpec, guidance: float, scheduled: bool) -> None:
    """Refuse a rule that cannot act here, in one line naming the value and the fix."""
    if rule not in RULES:
        raise UsageError(f"--guidance-rule {rule!r}: unknown; expected one of {', '.join(RULES)}")
    if rule == DEFAULT_RULE:
        return
    if not spec.negative_branch:
        raise UsageError(
            f"--guidance-rule {rule}: {spec.name} has no negative branch (distilled, guidance 1); a rule combines "
            "two branches: use --nag for a negative at guidance 1, or leave --guidance-rule out"
        )
    if not scheduled and guidance <= 1.0:
        raise UsageError(
            f"--guidance-rule {rule} with --guidance {guidance:g}: at guidance <= 1 there is no negative branch to "
            "combine; pass --guidance above 1, or use --nag for a negative at guidance 1"
        )
    if spec.pipeline in _SEPARATE_BRANCH_PIPELINES:
        raise UsageError(
            f"--guidance-rule {rule}: {spec.pipeline} runs its two branches as separate denoiser calls, which "
            "the rule hook cannot pair; use --guidance-rule cfg"
        )
    chosen = RULES[rule]
    if chosen.spatial and spec.pipeline in _PACKED_TOKEN_PIPELINES:
        raise UsageError(
            f"--guidance-rule {rule}: {spec.name}'s transformer predicts packed tokens [B, N, C], with no height "
            "and width for a frequency split; use apg, tcfg or cfg-zero-star"
        )
    if chosen.needs and importlib.util.find_spec(chosen.needs) is None:
        raise UsageError(
            f"--guidance-rule {rule}: needs the {chosen.needs} package (diffusers' {chosen.title} imports it); "
            "pip install 'reneg-video[guidance]'"
        )


@dataclass
class RuleRecord:
    """What one call's rule did: its name and the guidance scale of each combined step."""

    rule: str
    scales: list[float] = field(default_factory=list)


def denoiser(pipe) -> torch.nn.Module:
    """The module whose output the pipeline combines (`core.memory.denoiser_of`), or a SpecError."""
    module = denoiser_of(pipe)
    if module is None:
        raise SpecError(f"{type(pipe).__name__} has neither a unet nor a transformer to guide")
    return module


def _current_scale(pipe, guidance: float) -> float:
    # A guidance schedule updates pipe._guidance_scale every step (models.generate.ScheduledGuidance).
    scale = float(getattr(pipe, "_guidance_scale", guidance))
    return 1.0 if scale == UNIT_GUIDANCE else scale


def _flow_matching(pipe) -> bool:
    return "FlowMatch" in type(pipe.scheduler).__name__


def _as_images(pred: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    # A Laplacian pyramid filters each channel on its own, so folding frames into channels, [B, C, F, H, W]
    # -> [B, C*F, H, W], gives every frame's pyramid, whichever of C and F comes first.
    return pred.reshape(pred.shape[0], -1, *pred.shape[-2:]), pred.shape


def _half(value: torch.Tensor, batch: int) -> torch.Tensor:
    """The positive half of a per-row timestep ([2B] or [2B, N] under CFG), or a scalar as it is."""
    return value[batch:] if value.ndim and value.shape[0] == 2 * batch else value


def denoised_map(pipe, timestep: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with x0 = a * x_t + b * prediction at `timestep`, broadcastable to `pred` [B, ...]: the model
    input x_t is in the variance-preserving form for the alphas_cumprod schedulers (Euler's scaled input
    included) and the flow-matching one for FlowMatch schedulers (x_t = (1 - s) x0 + s noise, s = t / T)."""
    config = pipe.scheduler.config
    t = torch.as_tensor(timestep, dtype=torch.float64)
    t = _half(t.reshape(1) if t.ndim == 0 else t, pred.shape[0]).to(pred.device)
    if t.ndim == 1:
        t = t.view(-1, *(1,) * (pred.ndim - 1))
    elif t.ndim == 2:  # LTX-Video's per-token timesteps [B, N] against its packed tokens [B, N, C]
        t = t.unsqueeze(-1)
    if _flow_matching(pipe):
        s = t / config.num_train_timesteps
        if config.get("invert_sigmas", False):
            # Mochi runs its sigmas inverted (s = 0 is noise, 1 is clean): x_t = s x0 + (1 - s) noise and
            # the velocity x0 - noise, so x0 = x_t + (1 - s) v.
            return torch.ones_like(s), 1 - s
        return torch.ones_like(s), -s
    alphas = getattr(pipe.scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise SpecError(
            f"--guidance-rule apg: {type(pipe.scheduler).__name__} is neither flow matching nor has alphas_cumprod, "
            "so the denoised estimate it guides cannot be formed; use tcfg or cfg-zero-star"
        )
    # Euler schedulers pass fractional timesteps: the nearest trained one (1 of num_train_timesteps) serves.
    index = t.round().long().clamp(0, alphas.numel() - 1)
    ab = alphas.to(pred.device, torch.float64)[index]
    kind = config.get("prediction_type", "epsilon")
    if kind == "v_prediction":
        return ab.sqrt(), -(1 - ab).sqrt()
    if kind == "sample":
        return torch.zeros_like(ab), torch.ones_like(ab)
    return 1 / ab.sqrt(), -((1 - ab) / ab).sqrt()


def combine(guider, rule: Rule, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
    """The rule's prediction from the two branch outputs (what `guidance_rule` returns for both halves)."""
    if rule.spatial:
        if cond.ndim < 4:
            raise UsageError(
                f"--guidance-rule {rule.name}: the denoiser predicts {list(cond.shape)}, not spatial latents; "
                "use apg, tcfg or cfg-zero-star"
            )
        (cond, shape), (uncond, _) = _as_images(cond), _as_images(uncond)
        return guider.forward(cond, uncond).pred.reshape(shape)
    return guider.forward(cond, uncond).pred


def _combine_denoised(pipe, guider, rule: Rule, args, kwargs, cond, uncond) -> torch.Tensor:
    """The rule applied to the two branches' denoised estimates, mapped back to the model's prediction."""
    x = _model_input(args, kwargs)[cond.shape[0] :].double()
    extra = None
    if cond.shape[1] == 2 * x.shape[1] and cond.shape[2:] == x.shape[2:]:
        # A learned variance (PixArt, Latte: [eps, variance] on the channel axis), which their pipelines drop
        # after the combine: the rule guides the prediction, the variance is the positive branch's.
        (cond, extra), (uncond, _) = cond.chunk(2, dim=1), uncond.chunk(2, dim=1)
    a, b = denoised_map(pipe, _timestep(args, kwargs), cond)
    x0 = combine(guider, rule, a * x + b * cond.double(), a * x + b * uncond.double())
    pred = (x0 - a * x) / b
    return pred if extra is None else torch.cat([pred.to(extra.dtype), extra], dim=1)


def _model_input(args: tuple, kwargs: dict) -> torch.Tensor:
    # UNets take `sample` first; diffusers' transformers take `hidden_states` (by keyword in their pipelines).
    for key in ("sample", "hidden_states", "x"):
        if key in kwargs:
            return kwargs[key]
    return args[0]


def _timestep(args: tuple, kwargs: dict) -> torch.Tensor:
    return kwargs["timestep"] if "timestep" in kwargs else kwargs.get("t", args[1] if len(args) > 1 else None)


@contextlib.contextmanager
def guidance_rule(pipe, rule: str, guidance: float, steps: int | None = None) -> Iterator[RuleRecord]:
    """Within the context every batched CFG call of `pipe`'s denoiser is combined by `rule` (checked with
    `check_rule`). Plain `cfg` installs nothing: the pipeline's own combine is the rule. `guidance` is the
    scale where the pipeline keeps none of its own; `steps` (the call's) only matters to rules with a step
    window, which the defaults here do not set.

        with reneg_video.guidance_rule(pipe, "apg", guidance=9.0):
            frames = pipe(prompt="a cat", guidance_scale=9.0).frames[0]
    """
    record = RuleRecord(rule)
    if rule == DEFAULT_RULE:
        yield record
        return
    chosen = RULES[rule]
    guider = chosen.make(guidance, _flow_matching(pipe))
    state = {"step": 0}

    def hook(module, args, kwargs, output):
        sample = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        if sample.shape[0] % 2:
            raise SpecError(
                f"--guidance-rule {rule}: {type(module).__name__} returned a batch of {sample.shape[0]}, not the "
                "[negative, positive] pair CFG batches; this pipeline cannot take a rule"
            )
        uncond, cond = sample.chunk(2)
        scale = _current_scale(pipe, guidance)
        guider.guidance_scale = scale
        if hasattr(guider, "guidance_scales"):
            guider.guidance_scales = fdg_scales(scale)
        guider.set_state(step=state["step"], num_inference_steps=steps, timestep=None)
        state["step"] += 1
        record.scales.append(scale)
        if chosen.denoised:
            pred = _combine_denoised(pipe, guider, chosen, args, kwargs, cond, uncond).to(sample.dtype)
        else:
            pred = combine(guider, chosen, cond, uncond).to(sample.dtype)
        both = torch.cat([pred, pred])
        if isinstance(output, tuple):
            return (both, *output[1:])
        if hasattr(output, "sample"):
            output.sample = both
            return output
        return both

    handle = denoiser(pipe).register_forward_hook(hook, with_kwargs=True)
    try:
        yield record
    finally:
        handle.remove()


def rule_help() -> str:
    """One line per rule for --help: name, title, source."""
    return "; ".join(f"{r.name} ({r.title}, {r.source})" for r in RULES.values())


def describe_guidance(settings) -> str | None:
    """The one stderr line the commands log for a non-default rule or NAG (None for plain CFG)."""
    if settings.nag is not None:
        n = settings.nag
        return f"guidance: nag scale={n.scale:g} tau={n.tau:g} alpha={n.alpha:g} at guidance 1 (one pass per step)"
    if settings.guidance_rule != DEFAULT_RULE:
        rule = RULES[settings.guidance_rule]
        return f"guidance: rule={rule.name} ({rule.title}, {rule.source}) scale={settings.guidance:g}"
    return None
