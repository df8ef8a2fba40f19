"""Configuration of `reneg-train`: one dataclass, a help string per field, cross-field checks.

Defaults follow the published ReNeg recipe (arXiv 2412.19637, as summarised in ../shared/FACTS.md):
DDIM with T=30 steps, the gradient step drawn from the last 10, AdamW with a cosine schedule at lr 5e-3,
batch 64, 4000 steps. The reward loss is ReFL's relu(2 - r) (ImageReward's ReFL.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..core.errors import UsageError

FRAME_SELECTIONS = ("all", "first", "middle", "last", "first,middle,last")
LOSSES = ("relu2", "neg")
PRECISIONS = ("no", "fp16", "bf16")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    model: str = _f(
        "tiny-sd21", "model to train on (name, diffusers folder or spec .toml); image or video models"
    )
    prompts_file: str = _f(
        "", "training prompts, one per line (e.g. ../shared/prompts/refl_train_prompts.txt)"
    )
    out: str = _f("", "output folder: embedding, metrics.jsonl, summary.json, checkpoints/")
    reward: str = _f("imagereward", "reward or weighted ensemble, e.g. imagereward or imagereward:1,hpsv2:5")
    reward_checkpoint: str | None = _f(None, "ImageReward.pt (else the local HF cache of THUDM/ImageReward)")
    reward_med_config: str | None = _f(None, "ImageReward med_config.json")
    reward_tokenizer: str | None = _f(None, "bert-base-uncased tokenizer folder for ImageReward")
    model_path: str | None = _f(None, "load the model's weights from this diffusers folder")
    init: str = _f(
        "null", "initial embedding: null (the model's encoding of ''), a file path, or prompt:TEXT"
    )
    val_prompts: int = _f(8, "prompts held out from --prompts-file for val_reward_before/after (same seeds)")
    steps: int = _f(4000, "optimizer steps (ReNeg recipe: 4000)")
    batch_size: int = _f(
        64,
        "GLOBAL prompts per optimizer step, divided over the processes of `accelerate launch` (ReNeg recipe: 64)",
    )
    grad_accum: int = _f(1, "gradient accumulation: each process runs its share in this many micro-batches")
    lr: float = _f(5e-3, "AdamW learning rate (ReNeg recipe: 5e-3, cosine decay)")
    weight_decay: float = _f(0.0, "AdamW weight decay on the embedding")
    max_grad_norm: float = _f(
        1.0, "clip the embedding's gradient to this L2 norm before each update (ReFL: 1.0; 0: no clipping)"
    )
    warmup_steps: int = _f(0, "linear warm-up steps before the cosine decay")
    sampling_steps: int = _f(30, "DDIM steps T of the sampling chain (ReNeg recipe: 30)")
    grad_step_min: int = _f(0, "the gradient step is drawn from [min, max] steps before the end (recipe: 0)")
    grad_step_max: int = _f(10, "upper end of that window (ReNeg recipe: 10)")
    guidance: float | None = _f(None, "CFG scale inside the loop (default: the model spec's)")
    height: int | None = _f(None, "training resolution (default: the model spec's)")
    width: int | None = _f(None, "training resolution (default: the model spec's)")
    frames: int | None = _f(None, "video models: frames per sample (default: the spec's)")
    frame_select: str = _f(
        "first,middle,last", f"video models: frames the reward scores: {FRAME_SELECTIONS} or random:K"
    )
    loss: str = _f("relu2", "relu2 = ReFL's relu(2 - reward); neg = -reward")
    mixed_precision: str = _f("no", "no, fp16 or bf16 (accelerate autocast; the embedding stays float32)")
    gradient_checkpointing: bool = _f(
        False, "recompute denoiser and VAE activations in backward (less memory)"
    )
    seed: int = _f(0, "seed: prompt order, noise and gradient steps are derived from it per sample index")
    checkpoint_every: int = _f(500, "write a resumable checkpoint every N steps (0: never)")
    keep_checkpoints: int = _f(
        2, "complete checkpoints kept; older ones are pruned after a new one is written"
    )
    resume: bool = _f(False, "continue from the newest complete checkpoint in --out")
    cpu: bool = _f(False, "train on the CPU even if a GPU is present")

    def __post_init__(self) -> None:
        def bad(name, value, expected, fix=""):
            raise UsageError(
                f"--{name.replace('_', '-')} {value}: expected {expected}{'; ' + fix if fix else ''}"
            )

        if not self.prompts_file:
            bad("prompts_file", "''", "a text file with one prompt per line")
        if not self.out:
            bad("out", "''", "an output folder")
        for name in ("steps", "batch_size", "grad_accum", "sampling_steps"):
            if getattr(self, name) <= 0:
                bad(name, getattr(self, name), "a positive integer")
        if self.batch_size % self.grad_accum:
            bad("grad_accum", self.grad_accum, f"a divisor of --batch-size {self.batch_size}")
        if not (0 <= self.grad_step_min <= self.grad_step_max < self.sampling_steps):
            bad(
                "grad_step_max",
                self.grad_step_max,
                f"0 <= --grad-step-min ({self.grad_step_min}) <= max < --sampling-steps ({self.sampling_steps})",
            )
        for name in ("frames", "height", "width"):  # None: the spec's default; 0 must not mean that
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                bad(name, getattr(self, name), "a positive integer (or leave it out for the model's default)")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            bad("max_grad_norm", self.max_grad_norm, "a finite norm >= 0 (0 turns clipping off)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad("lr", self.lr, "a finite positive learning rate")
        if self.guidance is not None and not (math.isfinite(self.guidance) and self.guidance >= 0):
            bad("guidance", self.guidance, "a finite number >= 0")
        if self.val_prompts < 0 or self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            bad(
                "val_prompts", self.val_prompts, ">= 0 (and --checkpoint-every >= 0, --keep-checkpoints >= 1)"
            )
        if self.loss not in LOSSES:
            bad("loss", self.loss, f"one of {LOSSES}")
        if self.mixed_precision not in PRECISIONS:
            bad("mixed_precision", self.mixed_precision, f"one of {PRECISIONS}")
        sel = self.frame_select
        if sel not in FRAME_SELECTIONS and not (
            sel.startswith("random:") and sel[7:].isdigit() and int(sel[7:]) > 0
        ):
            bad("frame_select", sel, f"one of {FRAME_SELECTIONS} or random:K with K > 0")

    def per_process_batch(self, num_processes: int) -> int:
        """This process's share of the global --batch-size; refused unless processes x micro-batches split it."""
        unit = num_processes * self.grad_accum
        if self.batch_size % unit:
            raise UsageError(
                f"--batch-size {self.batch_size}: it is the global batch, expected a multiple of {num_processes} "
                f"process(es) x --grad-accum {self.grad_accum} = {unit}; pass a multiple of {unit}"
            )
        return self.batch_size // num_processes
