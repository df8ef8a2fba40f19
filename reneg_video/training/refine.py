"""Per-sample refinement at inference: ReNeg's per-prompt embedding stage and ReNO-style noise optimisation.

- `optimize_negative`: start from the global embedding and take a few reward-gradient steps for one
  prompt and seed (ReNeg's second strategy: <= 10 steps, patience 3), keeping the best iterate as
  judged by the reward of the full sample; it comes back as a `NegativeEmbedding`, ready to inject.
- `optimize_noise`: optimise the initial noise against a reward (ReNO, arXiv 2406.04312): SGD with
  Nesterov momentum, gradient clipping, a regulariser keeping the noise norm likely under N(0, I), and
  best-iterate selection. Backpropagates through the whole sampling chain: use few steps.

Both reuse the trainer's `Backbone` (prompt encoding, CFG denoiser call, DDIM step, decoding) and start
from the noise `reneg-video --seed S` renders (`Backbone.seed_noise`); `Refined.noise` is what the caller
must render the result with, so that the iterate chosen is the video shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..core.embedding import NegativeEmbedding
from ..core.encoders import match_tokens
from ..core.errors import UsageError
from ..core.settings import Settings
from .config import TrainConfig
from .denoise import REFINABLE_PIPELINES, Backbone, draw_grad_step
from .trainer import REFL_MARGIN

# ReNeg per-sample stage (FACTS.md summary of the paper): at most 10 steps, patience 3.
NEG_MAX_STEPS = 10
NEG_PATIENCE = 3
# Its gradient step is drawn as the trainer draws it: k ~ U[0, 10] steps before the end (ReNeg recipe).
NEG_GRAD_WINDOW = 10
NEG_LR = 5e-3
# ReNO's optimiser: SGD with Nesterov momentum 0.9, lr 5, gradient-norm clip 0.1, norm regulariser 0.01.
NOISE_LR = 5.0
NOISE_MOMENTUM = 0.9
NOISE_GRAD_CLIP = 0.1
NOISE_REG_WEIGHT = 0.01


@dataclass
class Refined:
    """Result of a refinement: the best iterate, its reward and the reward of every iterate (0 = start).

    `noise` holds the initial latents [1, ...] (scaled by the scheduler's init sigma) the rewards were
    measured from: render with them. For noise optimisation it is `best` itself.
    """

    best: torch.Tensor
    best_reward: float
    history: list[float] = field(default_factory=list)
    noise: torch.Tensor | None = None


@dataclass
class RefinedNegative(Refined):
    """`optimize_negative`'s result: `embedding` is the best iterate as a `NegativeEmbedding` (the model's
    token count, the start's mask and family), to render with `noise`; `best` is its tensor."""

    embedding: NegativeEmbedding = field(kw_only=True)


def backbone_for(pipe, spec, settings: Settings) -> Backbone:
    if spec.pipeline not in REFINABLE_PIPELINES:
        raise UsageError(
            f"--model {spec.name}: per-sample refinement needs {', '.join(REFINABLE_PIPELINES)}; "
            f"{spec.pipeline} is not supported yet"
        )
    config = TrainConfig(
        model=spec.name,
        prompts_file="-",
        out="-",
        sampling_steps=settings.steps,
        grad_step_max=min(NEG_MAX_STEPS, settings.steps - 1),
        guidance=settings.guidance,
        height=settings.height,
        width=settings.width,
        frames=settings.frames,
        frame_select="all",
    )
    return Backbone(pipe, spec, config, pipe.device)


def _sample_reward(bb: Backbone, reward, prompt: str, neg, neg_mask, latents) -> float:
    with torch.no_grad():
        pos, pos_mask = bb.encode([prompt])
        for t in bb.scheduler.timesteps:
            latents = bb.step(bb.guided(latents, t, neg, neg_mask, pos, pos_mask), t, latents).prev_sample
        frames = bb.decode(latents, [list(range(bb.frames))])[0]
        return float(reward.score_frames(frames, prompt).mean())


def optimize_negative(
    pipe,
    spec,
    neg: NegativeEmbedding,
    prompt: str,
    settings: Settings,
    reward,
    steps: int = NEG_MAX_STEPS,
    noise: torch.Tensor | None = None,
) -> RefinedNegative:
    """Refine `neg` for one prompt and seed; return the best iterate (the start counts) as an embedding.

    Every iterate is judged by the reward of the full sample from `noise` (default: the noise of
    `settings.seed` that `reneg-video` renders); each gradient step is taken k ~ U[0, 10] steps before the
    end of the chain, k drawn from (seed, iteration) as the trainer draws it.
    """
    if not 1 <= steps <= NEG_MAX_STEPS:
        raise UsageError(
            f"--optimize-neg {steps}: expected 1..{NEG_MAX_STEPS} steps (ReNeg's per-sample stage)"
        )
    bb = backbone_for(pipe, spec, settings)
    tensor, mask = match_tokens(neg.tensor, neg.mask, spec.tokens, neg.source)
    mask = None if mask is None else mask.to(bb.device)
    param = torch.nn.Parameter(tensor.clone().to(bb.device))
    optimizer = torch.optim.AdamW([param], lr=NEG_LR, weight_decay=0.0)
    noise = bb.seed_noise(settings.seed) if noise is None else noise.to(bb.device)
    start = _sample_reward(bb, reward, prompt, param.detach(), mask, noise)
    best = Refined(param.detach().clone(), start, [start], noise.cpu())
    timesteps = bb.scheduler.timesteps
    window = min(NEG_GRAD_WINDOW, len(timesteps) - 1)
    pos, pos_mask = bb.encode([prompt])
    stale = 0
    for step in range(steps):
        grad_index = len(timesteps) - 1 - draw_grad_step(settings.seed, step, 0, window)
        latents = noise
        with torch.no_grad():
            for t in timesteps[:grad_index]:
                latents = bb.step(
                    bb.guided(latents, t, param.detach(), mask, pos, pos_mask), t, latents
                ).prev_sample
        t = timesteps[grad_index]
        x0 = bb.step(bb.guided(latents, t, param, mask, pos, pos_mask), t, latents).pred_original_sample
        frames = bb.decode(x0, [list(range(bb.frames))])[0]
        loss = torch.relu(REFL_MARGIN - reward.score_frames(frames, prompt).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        score = _sample_reward(bb, reward, prompt, param.detach(), mask, noise)
        best.history.append(score)
        if score > best.best_reward:
            best.best, best.best_reward, stale = param.detach().clone(), score, 0
        else:
            stale += 1
            if stale >= NEG_PATIENCE:
                break
    tensor = best.best.cpu()
    refined = NegativeEmbedding(
        tensor, None if mask is None else mask.cpu(), neg.family, neg.source + "+refined"
    )
    return RefinedNegative(tensor, best.best_reward, best.history, best.noise, embedding=refined)


def _chi_nll(z: torch.Tensor) -> torch.Tensor:
    """-log p(||z||) for ||z|| of a d-dimensional standard normal (chi with d degrees), up to a constant."""
    d = z.numel()
    r = z.norm()
    return -((d - 1) * torch.log(r) - r**2 / 2)


def optimize_noise(
    pipe,
    spec,
    neg: NegativeEmbedding | None,
    prompt: str,
    settings: Settings,
    reward,
    steps: int,
    negative_prompt: str | None = None,
) -> Refined:
    """ReNO-style: optimise the initial latents for one prompt; return the best latents (the start counts).

    The negative branch is the one the video is rendered with: `neg` (pass the refined embedding after
    `optimize_negative`), else `negative_prompt` encoded by the model, else the model's encoding of ''.
    The start is the noise of `settings.seed` that `reneg-video` renders.
    """
    if steps <= 0:
        raise UsageError(f"--optimize-noise {steps}: expected a positive number of iterations (ReNO uses 50)")
    bb = backbone_for(pipe, spec, settings)
    if neg is not None:
        tensor, mask = match_tokens(neg.tensor, neg.mask, spec.tokens, neg.source)
    elif negative_prompt:
        tensor, mask = bb.encode([negative_prompt])
    else:
        tensor, mask = bb.null_embedding()
    tensor = tensor.to(bb.device)
    mask = None if mask is None else mask.to(bb.device)
    z = torch.nn.Parameter(bb.seed_noise(settings.seed))
    optimizer = torch.optim.SGD([z], lr=NOISE_LR, momentum=NOISE_MOMENTUM, nesterov=True)
    pos, pos_mask = bb.encode([prompt])
    best = Refined(z.detach().clone(), -math.inf)
    for _ in range(steps + 1):
        latents = z
        for t in bb.scheduler.timesteps:
            latents = bb.step(bb.guided(latents, t, tensor, mask, pos, pos_mask), t, latents).prev_sample
        frames = bb.decode(latents, [list(range(bb.frames))])[0]
        score = reward.score_frames(frames, prompt).mean()
        value = float(score.detach())
        best.history.append(value)
        if value > best.best_reward:
            best.best, best.best_reward = z.detach().clone(), value
        if len(best.history) > steps:
            break
        loss = -score + NOISE_REG_WEIGHT * _chi_nll(z)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([z], NOISE_GRAD_CLIP)
        optimizer.step()
    best.best = best.best.cpu()
    best.noise = best.best
    return best
