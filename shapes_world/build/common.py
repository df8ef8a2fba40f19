"""What every stage of the shapes build shares: the build's configuration (BuildConfig), per-step seeding,
the training loop with its checkpoints, stage folders, text encoding, a build's VAE, the diffusion loss and
sampling a pipeline from fixed seeds.

Shape legend: B batch, F frames, C latent channels, h x w latent size, T tokens, D text width.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reneg_video.core.atomic import atomic_dir, atomic_path

from .. import data as shapes_data
from .. import world as W

STAGES = ("clip", "vae", "decoder", "t2i", "t2v", "motion", "polish", "reward", "export")
# Stage ids seeding each stage's data, in the order the stages were added (not run), so that adding a
# stage leaves every earlier stage's data, and hence its weights, unchanged.
_RNG_IDS = ("clip", "vae", "decoder", "t2i", "t2v", "reward", "export", "motion", "polish")
CHECKPOINT_DIR = "checkpoints"
# Caption dropout: the share of training captions replaced by "" so the model learns the unconditional
# branch classifier-free guidance needs (SD used 10%).
CAPTION_DROPOUT = 0.1
# Exponential moving average of the UNet weights (per step), the weights that ship.
EMA_DECAY = 0.995


@dataclass
class StageSteps:
    steps: int
    batch: int
    lr: float


@dataclass(frozen=True)
class MotionRun:
    """One run of the motion curriculum: phases of (steps, directions the clips may move in; a repeated
    direction is drawn that much more often) under one AdamW with a 30-step warm-up and cosine decay over
    `schedule_steps` (more than the phases' steps where the measured run was stopped early), the spatial
    cross-attention's LR times `xattn_lr_mult`."""

    phases: tuple[tuple[int, tuple[str, ...]], ...]
    schedule_steps: int
    xattn_lr_mult: float = 1.0

    @property
    def steps(self) -> int:
        return sum(n for n, _ in self.phases)


R, L, D, U = "right", "left", "down", "up"
# The direction curriculum as measured (docs/shapes-history.md, "Why shapes-t2v did not move as asked (v3)"
# and "In the build (v4)"): frame position first (one direction only), then each new direction as a
# minority of the clips while the learned ones keep their motion in place, so reading the word is the
# cheapest way to lower the loss (balanced phases instead unlearn the motion: follows 0.219). The four
# runs of the experiment, each with its own optimizer and schedule.
MOTION_CURRICULUM = (
    MotionRun(((300, (R,)),), schedule_steps=1500),
    MotionRun(((300, (R,) * 9 + (L,)), (300, (R,) * 3 + (L,))), schedule_steps=900, xattn_lr_mult=10.0),
    MotionRun(
        (
            (200, (R,) * 4 + (L,) * 4 + (D,)),
            (200, (R, R, L, L, D)),
            (200, (R,) * 3 + (L,) * 3 + (D,) * 3 + (U,)),
            (200, (R, L, D, U)),
        ),
        schedule_steps=800,
        xattn_lr_mult=10.0,
    ),
    MotionRun(((250, (R, L, D, U, U)), (250, (R, L, D, U))), schedule_steps=500, xattn_lr_mult=10.0),
)


@dataclass
class MotionSteps:
    runs: tuple[MotionRun, ...] = MOTION_CURRICULUM
    batch: int = 4
    lr: float = 3e-4
    # Share of clips whose t is drawn from [MOTION_HIGH_T, 1000): where the direction is decided.
    high_t_share: float = 0.5
    # Clean clips of the word-gain diagnostic recorded before and after (direction_word_gain).
    word_gain_clips: int = 24


@dataclass
class PolishSteps:
    """The polish stage: the motion stage's t2v trained on all four directions at once, its weights
    averaged (EMA_DECAY) and the average shipped. The motion stage ends mid-curriculum with live weights,
    whose clips change shape from frame to frame (docs/shapes-history.md, "The polish stage: the experiment
    (v5)")."""

    steps: int = 600
    batch: int = 4
    lr: float = 2e-4


@dataclass
class BuildConfig:
    """Steps, batch sizes and learning rates per stage. Defaults: the full build (~1.5 h on one unloaded CPU core, stages in two processes)."""

    seed: int = 0
    clip: StageSteps = field(default_factory=lambda: StageSteps(1500, 64, 1e-3))
    vae: StageSteps = field(default_factory=lambda: StageSteps(1200, 32, 1e-3))
    decoder: StageSteps = field(default_factory=lambda: StageSteps(1200, 32, 5e-4))
    t2i: StageSteps = field(default_factory=lambda: StageSteps(1500, 32, 6e-4))
    # The t2i stage's contrastive caption term: another shape word must cost this share more loss (0 = off).
    # 0.10 as measured (docs/shapes.md, "A contrastive term teaches triangles": triangles 0/20 -> 20/20).
    shape_contrast: float = 0.10
    t2v: StageSteps = field(default_factory=lambda: StageSteps(1600, 4, 5e-4))
    motion: MotionSteps = field(default_factory=MotionSteps)
    polish: PolishSteps = field(default_factory=PolishSteps)
    reward: StageSteps = field(default_factory=lambda: StageSteps(200, 32, 3e-4))
    # Generated t2i samples the reward trains on (per guidance scale in REWARD_GUIDANCES).
    reward_pool_prompts: int = 160
    # Judge evaluation at export: held-out prompts x seeds per generator.
    eval_prompts: int = 40
    eval_seeds: int = 2
    eval_steps: int = 20
    eval_guidance: float = 5.0
    # shapes-t2v's spec default: zero-terminal-SNR models over-saturate at high CFG (Lin et al.); at 5 the
    # motion-stage t2v's frames lost their crispness (0.00 vs 1.00 at 2.5; docs/shapes-history.md, "Why
    # shapes-t2v did not move as asked (v3)").
    eval_guidance_t2v: float = 2.5
    checkpoint_every: int = 200
    # A trained AutoencoderKL folder (e.g. the shipped weights/common/vae) taken as the build's VAE instead of
    # training one: the vae stage copies it and the decoder stage is skipped. For work on the generators
    # (about 75 min less at one thread), and for the reduced build in CI, whose 60-step VAE reconstructs
    # too poorly for the judge to see what a generator learned (docs/shapes.md, "A reduced build").
    vae_from: str | None = None

    @classmethod
    def quick(cls, seed: int = 0) -> BuildConfig:
        """A reduced build for tests and CI (about a minute on 2 cores): learns, but little."""
        return cls(
            seed=seed,
            clip=StageSteps(10, 32, 2e-3),
            vae=StageSteps(60, 16, 2e-3),
            decoder=StageSteps(10, 8, 5e-4),
            t2i=StageSteps(120, 16, 1e-3),
            t2v=StageSteps(4, 1, 2e-4),
            motion=MotionSteps(
                (MotionRun(((2, (R,)),), 3), MotionRun(((1, (R, L)), (1, (R, L, D, U))), 2, 10.0)),
                batch=1,
                word_gain_clips=2,
            ),
            polish=PolishSteps(2, 1, 2e-4),
            reward=StageSteps(10, 8, 2e-4),
            reward_pool_prompts=8,
            eval_prompts=8,
            eval_seeds=1,
            eval_steps=10,
            checkpoint_every=50,
        )


def step_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    """The data of one step: independent of resumption and of every other step."""
    return np.random.default_rng([seed, _RNG_IDS.index(stage), step])


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(frames).float().div(127.5).sub(1.0)
    return x.movedim(-1, -3)


def drop_captions(captions: list[str], rng: np.random.Generator) -> list[str]:
    return ["" if rng.random() < CAPTION_DROPOUT else c for c in captions]


class _Stage:
    """Checkpoint bookkeeping of one training stage (model + optimizer + EMA + losses + step)."""

    def __init__(self, out: Path, name: str, every: int) -> None:
        self.path = out / CHECKPOINT_DIR / f"{name}.pt"
        self.every = every
        self.losses: list[float] = []
        self.start = 0

    def load(self, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> None:
        if not self.path.exists():
            return
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for key, module in modules.items():
            module.load_state_dict(state[key])
        optimizer.load_state_dict(state["optimizer"])
        self.losses = list(state["losses"])
        self.start = int(state["step"])

    def save(self, step: int, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: m.state_dict() for k, m in modules.items()}
        state.update(optimizer=optimizer.state_dict(), losses=self.losses, step=step)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def maybe_save(self, step: int, modules, optimizer) -> None:
        if self.every and step % self.every == 0:
            self.save(step, modules, optimizer)


def train_loop(
    name: str,
    out: Path,
    cfg: BuildConfig,
    steps: StageSteps,
    modules: dict[str, torch.nn.Module],
    params: list[torch.nn.Parameter],
    step_fn: Callable[[int], torch.Tensor],
    ema: tuple[torch.nn.Module, torch.nn.Module] | None = None,
    *,
    lr_mults: list[tuple[list[torch.nn.Parameter], float]] | None = None,
    schedule_steps: int | None = None,
    warmup: int | None = None,
) -> list[float]:
    """AdamW + cosine decay over `schedule_steps` (default `steps.steps`) after a linear warm-up (default
    5%), checkpointing every `cfg.checkpoint_every` steps and at the end. `lr_mults`: parameter groups
    (together all of `params`) with their LR multipliers."""
    from tqdm.auto import tqdm

    groups = [{"params": g, "mult": m} for g, m in lr_mults or [(params, 1.0)]]
    optimizer = torch.optim.AdamW(groups, lr=steps.lr, weight_decay=0.0)
    stage = _Stage(out, name, cfg.checkpoint_every)
    stage.load(modules, optimizer)
    total = schedule_steps or steps.steps
    warm = warmup or max(1, total // 20)
    bar = tqdm(total=steps.steps, initial=stage.start, desc=f"shapes {name}", mininterval=5)
    for step in range(stage.start, steps.steps):
        progress = (step - warm) / max(1, total - warm)
        factor = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = steps.lr * factor * group["mult"]
        loss = step_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if ema is not None:
            with torch.no_grad():
                live, avg = ema
                decay = min(EMA_DECAY, (1 + step) / (10 + step))  # short warm-up of the average
                for p_avg, p in zip(avg.parameters(), live.parameters(), strict=True):
                    p_avg.lerp_(p, 1 - decay)
        stage.losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{stage.losses[-1]:.4f}")
        stage.maybe_save(step + 1, modules, optimizer)
    if stage.start < steps.steps:
        stage.save(steps.steps, modules, optimizer)  # a finished loop is skipped on resume
    bar.close()
    return stage.losses


def write_stage(out: Path, name: str, save: Callable[[Path], None], info: dict) -> None:
    dest = out / name
    with atomic_dir(dest) as tmp:
        save(tmp)
        (tmp / "stage.json").write_text(json.dumps(info, indent=1) + "\n")


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """[N, TEXT_TOKENS] ids, padded and truncated to the shapes encoder's 16 positions."""
    return tokenizer(
        captions, padding="max_length", truncation=True, max_length=W.TEXT_TOKENS, return_tensors="pt"
    ).input_ids


def encode_text(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    return text_encoder(token_ids(tokenizer, captions)).last_hidden_state


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def text_encoder_from_clip(folder: Path):
    """The frozen CLIPTextModel (last hidden state, as SD) taken out of the stage-1 CLIP."""
    from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

    clip = CLIPModel.from_pretrained(folder / "clip")
    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval().requires_grad_(False), CLIPTokenizer.from_pretrained(folder / "clip")


def training_batch(
    rng: np.random.Generator, count: int, *, video: bool, directions: tuple[str, ...] = W.DIRECTIONS
) -> tuple[np.ndarray, list[str]]:
    samples = [shapes_data.make_sample(rng, video=video, directions=directions) for _ in range(count)]
    return np.stack([x.frames for x in samples]), [x.caption for x in samples]


def load_vae(out: Path, stage: str | None = None):
    """The VAE after the `decoder` stage when it is done (same latents, sharper decoder), else `vae`'s."""
    from diffusers import AutoencoderKL

    stage = stage or ("decoder" if (out / "decoder" / "stage.json").exists() else "vae")
    return AutoencoderKL.from_pretrained(out / stage / "vae").eval().requires_grad_(False)


def noise_schedule(sampling: dict = W.SCHEDULER) -> dict:
    """The training DDPMScheduler's arguments: a shipped sampling schedule's noise keys."""
    keys = (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "clip_sample",
        "prediction_type",
        "rescale_betas_zero_snr",
    )
    return {k: sampling[k] for k in keys if k in sampling}


def training_scheduler(sampling: dict = W.SCHEDULER):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**noise_schedule(sampling))


# Motion stage: clips with t drawn from [MOTION_HIGH_T, 1000) (MotionSteps.high_t_share of them): the
# layout, and so the direction, is decided at high noise; x0 at t = 600 is already placed.
MOTION_HIGH_T = 600


def diffusion_loss(
    unet,
    scheduler,
    latents: torch.Tensor,
    context: torch.Tensor,
    gen: torch.Generator,
    high_t_share: float = 0.0,
    contrast: tuple[torch.Tensor, torch.Tensor, float] | None = None,
):
    """The v (or eps) MSE at random t. `contrast`: (context of the captions with another shape word, [B]
    1.0 where the caption was kept, margin): adds the hinge relu(margin - (wrong - asked) / asked) of the
    per-sample losses, so that the asked shape word must explain the image `margin` better than another
    (docs/shapes.md, "A contrastive term teaches triangles")."""
    noise = torch.randn(latents.shape, generator=gen)
    steps = scheduler.config.num_train_timesteps
    t = torch.randint(0, steps, (latents.shape[0],), generator=gen)
    if high_t_share:
        high = torch.rand(latents.shape[0], generator=gen) < high_t_share
        t = torch.where(high, MOTION_HIGH_T + t % (steps - MOTION_HIGH_T), t)
    noisy = scheduler.add_noise(latents, noise, t)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    if contrast is None:
        return F.mse_loss(unet(noisy, t, encoder_hidden_states=context).sample, target)
    wrong, captioned, margin = contrast
    dims = tuple(range(1, latents.ndim))
    asked = (unet(noisy, t, encoder_hidden_states=context).sample - target).pow(2).mean(dim=dims)
    other = (unet(noisy, t, encoder_hidden_states=wrong).sample - target).pow(2).mean(dim=dims)
    gap = (other - asked) / asked.detach()
    return asked.mean() + (torch.relu(margin - gap) * captioned).mean()


def seed_latents(seeds: list[int], *, video: bool, size: int = W.LATENT_SIZE) -> torch.Tensor:
    """Initial noise [N, ...], row i from seed i alone: the noise `reneg-video --seed` renders. `size`: the
    latent side, IMAGE_SIZE over the pipeline's VAE factor (the shipped v1 weights: 8; world v2: 16)."""
    shape = (W.LATENT_CHANNELS, *((W.FRAMES,) if video else ()), size, size)
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(x)) for x in seeds])


@torch.no_grad()
def sample(
    pipe,
    prompts: list[str],
    seeds: list[int],
    *,
    video: bool,
    steps: int,
    guidance: float,
    negative: str | torch.Tensor | None = None,
    batch: int | None = None,
    latents: torch.Tensor | None = None,
) -> np.ndarray:
    """float [N, H, W, 3] (images) or [N, F, H, W, 3] (videos) in [0, 1]; sample i from its own seed (the
    same noise whatever the batching), or from row i of `latents` when given. `negative`: a negative
    prompt or a negative embedding [1, tokens, width]."""
    batch = batch or (8 if video else 64)
    out = []
    for start in range(0, len(prompts), batch):
        p, sd = prompts[start : start + batch], seeds[start : start + batch]
        size = W.IMAGE_SIZE // pipe.vae_scale_factor
        rows = seed_latents(sd, video=video, size=size) if latents is None else latents[start : start + batch]
        kwargs: dict = dict(num_frames=W.FRAMES) if video else {}
        if isinstance(negative, str):
            kwargs["negative_prompt"] = [negative] * len(p)
        elif isinstance(negative, torch.Tensor):
            kwargs["negative_prompt_embeds"] = negative.expand(len(p), -1, -1)
        result = pipe(
            prompt=p,
            latents=rows,
            num_inference_steps=steps,
            guidance_scale=guidance,
            output_type="np",
            height=W.IMAGE_SIZE,
            width=W.IMAGE_SIZE,
            **kwargs,
        )
        out.append(np.asarray(result.frames if video else result.images, dtype=np.float32))
    return np.concatenate(out)


# ---- stage 5: reward --------------------------------------------------------------------------------------
