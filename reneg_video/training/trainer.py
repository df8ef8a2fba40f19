"""The ReNeg trainer: learn a negative embedding (ReFL + classifier-free guidance in the loop).

Per optimizer step (arXiv 2412.19637; ReFL in ImageReward's ReFL.py):
1. prompts and initial noise are drawn from the global sample index; --batch-size is the global batch,
   split over the processes (so --batch-size 4 sees the same samples on 1 process or on 2 x 2); a
   gradient step k in [grad_step_min, grad_step_max] steps before the end of the T-step DDIM chain is
   drawn from the step number;
2. the chain runs without gradient down to that step, with the current embedding on the negative branch;
3. one step with gradient: eps = eps(x_t, neg) + w * (eps(x_t, c) - eps(x_t, neg)), x0 predicted by the
   scheduler (epsilon or v-prediction; learned-sigma channels dropped), decoded by the VAE;
4. a differentiable reward scores the decoded frames; loss relu(2 - r) (ReFL) or -r;
5. the gradient norm is clipped to --max-grad-norm (ReFL: 1.0); AdamW + cosine.
Only the embedding trains. Under `accelerate launch` its gradient is all-reduced (DDP).

Shape legend: B samples, C latent channels, F frames, h/w latent size, T tokens, D width.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..core.atomic import atomic_dir, atomic_path
from ..core.embedding import NegativeEmbedding, load_embedding
from ..core.encoders import check_family, match_tokens
from ..core.errors import UsageError
from .config import TrainConfig
from .denoise import (
    NegativeParameter,
    backbone_class,
    check_trainable,
    draw_grad_step,
    generator_for,
    make_backbone,
)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "state.pt"
# Seeds of validation samples start here, far from any training sample index.
VAL_SEED_OFFSET = 10**12
# ReFL's loss margin: loss = relu(REFL_MARGIN - reward) (ImageReward ReFL.py uses 2).
REFL_MARGIN = 2.0


class Trainer:
    """Everything a run needs; `train()` runs it. Pass `reward=` to use a reward object of your own."""

    def __init__(self, config: TrainConfig, reward=None) -> None:
        from accelerate import Accelerator

        from ..models.pipeline import load_pipeline, resolve_spec

        self.config = config
        self.accelerator = Accelerator(
            cpu=config.cpu,
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.grad_accum,
        )
        self.main = self.accelerator.is_main_process
        # --batch-size is global: each process takes its share (refused here, before anything loads).
        self.per_process = config.per_process_batch(self.accelerator.num_processes)
        self.micro = self.per_process // config.grad_accum
        self.out = Path(config.out)
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {self.out}: is a file; expected a folder")
        if not self.out.parent.is_dir():
            raise UsageError(f"--out {self.out}: folder {self.out.parent} does not exist; create it first")
        self.train_prompts, self.val_prompts = self._prompts()
        self.spec = resolve_spec(config.model)
        self._check_against_spec()
        if not config.resume and self._checkpoints():
            raise UsageError(
                f"--out {self.out}: holds checkpoints from an earlier run; add --resume or choose another folder"
            )
        init_file = None
        if config.init not in ("null",) and not config.init.startswith("prompt:"):
            init_file = load_embedding(config.init)
            check_family(init_file.family, self.spec.family, self.spec.name, config.init)
        if reward is None:
            from ..rewards import load_reward_spec

            kwargs = {
                k: v
                for k, v in (
                    ("checkpoint", config.reward_checkpoint),
                    ("med_config", config.reward_med_config),
                    ("tokenizer", config.reward_tokenizer),
                )
                if v is not None
            }
            reward = load_reward_spec(config.reward, **kwargs)
        self.reward = reward
        device = self.accelerator.device
        pipe = load_pipeline(config.model, device=device, dtype=torch.float32, model_path=config.model_path)
        pipe.set_progress_bar_config(disable=True)
        self.backbone = make_backbone(pipe, self.spec, config, device)
        init, self.neg_mask = self._initial_embedding(init_file)
        self.initial = init.clone()
        self.model = NegativeParameter(init)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        from diffusers.optimization import get_cosine_schedule_with_warmup

        # Not passed to accelerator.prepare: accelerate would step it once per process per step.
        self.lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.start_step = 0

    def _check_against_spec(self) -> None:
        """The model-dependent argument checks (frames, sizes, guidance), before any model or reward loads."""
        from ..models.generate import settings_for

        c, spec = self.config, self.spec
        check_trainable(spec)
        if c.gradient_checkpointing and not backbone_class(spec).gradient_checkpointing:
            raise UsageError(
                f"--gradient-checkpointing: {spec.name}'s denoiser does not implement it; leave it out "
                "(or lower --batch-size / --frames to save memory)"
            )
        settings_for(
            spec,
            seed=c.seed,
            frames=c.frames,
            height=c.height,
            width=c.width,
            steps=c.sampling_steps,
            guidance=c.guidance,
        )

    # --- data ------------------------------------------------------------------------------------------
    def _prompts(self) -> tuple[list[str], list[str]]:
        from ..core.prompts import read_prompts_file

        path = Path(self.config.prompts_file)
        prompts = read_prompts_file(path)
        n_val = self.config.val_prompts
        if len(prompts) <= n_val:
            raise UsageError(
                f"--prompts-file {path}: {len(prompts)} prompts; expected more than --val-prompts {n_val}"
            )
        order = torch.randperm(len(prompts), generator=generator_for(self.config.seed, 99)).tolist()
        shuffled = [prompts[i] for i in order]
        return shuffled[n_val:], shuffled[:n_val]

    def _prompt_for(self, index: int) -> str:
        n = len(self.train_prompts)
        epoch, pos = divmod(index, n)
        order = torch.randperm(n, generator=generator_for(self.config.seed, 17, epoch)).tolist()
        return self.train_prompts[order[pos]]

    def _initial_embedding(self, init_file: NegativeEmbedding | None):
        spec = self.spec
        if init_file is not None:
            if not spec.mask and init_file.mask is not None:
                # An unmasked T5 model (CogVideoX): every row is trained, starting from the spec's fill.
                from ..core.inject import negative_rows

                return negative_rows(self.backbone.pipe, init_file, spec)
            tensor, mask = match_tokens(init_file.tensor, init_file.mask, spec.tokens, init_file.source)
            return tensor, mask
        if self.config.init.startswith("prompt:"):
            embeds, mask = self.backbone.encode([self.config.init[len("prompt:") :]])
            return embeds[:1].cpu(), None if mask is None else mask[:1].cpu()
        return self.backbone.null_embedding()

    # --- one step ----------------------------------------------------------------------------------------
    def grad_step_index(self, step: int) -> int:
        """Timestep index (into the T-step chain) of the step taken with gradient: shared by every process."""
        c = self.config
        return c.sampling_steps - 1 - draw_grad_step(c.seed, step, c.grad_step_min, c.grad_step_max)

    def sample_indices(self, step: int, micro: int) -> list[int]:
        c = self.config
        acc = self.accelerator
        base = step * c.batch_size + acc.process_index * self.per_process + micro * self.micro
        return list(range(base, base + self.micro))

    def loss_and_reward(self, indices: list[int], grad_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        bb, c = self.backbone, self.config
        prompts = [self._prompt_for(i) for i in indices]
        pos, pos_mask = bb.encode(prompts)
        neg_mask = None if self.neg_mask is None else self.neg_mask.to(bb.device)
        latents = bb.noise(indices, c.seed)
        neg = self.model()
        timesteps = bb.scheduler.timesteps
        with torch.no_grad():
            for t in timesteps[:grad_index]:
                latents = bb.step(
                    bb.guided(latents, t, neg.detach(), neg_mask, pos, pos_mask), t, latents
                ).prev_sample
        t = timesteps[grad_index]
        with self.accelerator.autocast():
            x0 = bb.step(bb.guided(latents, t, neg, neg_mask, pos, pos_mask), t, latents).pred_original_sample
            frames = bb.decode(
                x0, [bb.frame_indices(i, c.seed) for i in indices], bb.decode_noise(indices, c.seed)
            )
            rewards = torch.stack(
                [self.reward.score_frames(f, p).mean() for f, p in zip(frames, prompts, strict=True)]
            )
        rewards = rewards.float()
        loss = torch.relu(REFL_MARGIN - rewards).mean() if c.loss == "relu2" else (-rewards).mean()
        return loss, rewards.detach()

    # --- validation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def val_reward(self, neg: torch.Tensor) -> float | None:
        """Mean reward of full samples on the held-out prompts (fixed seeds), with `neg` on the negative branch."""
        if not self.val_prompts:
            return None
        bb, c = self.backbone, self.config
        neg = neg.to(bb.device)
        neg_mask = None if self.neg_mask is None else self.neg_mask.to(bb.device)
        scores = []
        for start in range(0, len(self.val_prompts), self.micro):
            prompts = self.val_prompts[start : start + self.micro]
            indices = [VAL_SEED_OFFSET + start + j for j in range(len(prompts))]
            pos, pos_mask = bb.encode(prompts)
            latents = bb.noise(indices, c.seed)
            for t in bb.scheduler.timesteps:
                latents = bb.step(bb.guided(latents, t, neg, neg_mask, pos, pos_mask), t, latents).prev_sample
            frames = bb.decode(
                latents, [bb.frame_indices(i, c.seed) for i in indices], bb.decode_noise(indices, c.seed)
            )
            scores += [
                float(self.reward.score_frames(f, p).mean()) for f, p in zip(frames, prompts, strict=True)
            ]
        return sum(scores) / len(scores)

    # --- checkpoints -------------------------------------------------------------------------------------
    def _checkpoints(self) -> list[Path]:
        folder = self.out / CHECKPOINT_DIR
        if not folder.is_dir():
            return []
        done = [p for p in folder.iterdir() if p.name.startswith("step-") and (p / CHECKPOINT_FILE).exists()]
        return sorted(done, key=lambda p: int(p.name.split("-")[1]))

    def save_checkpoint(self, step: int) -> None:
        """Atomically: a temporary folder inside checkpoints/, renamed when complete; then prune."""
        if not self.main:
            return
        folder = self.out / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "embedding": self.accelerator.unwrap_model(self.model).embedding.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "step": step,
            "rng_cpu": torch.get_rng_state(),
            "config": asdict(self.config),
        }
        dest = folder / f"step-{step:08d}"
        if dest.exists():
            shutil.rmtree(dest)
        with atomic_dir(dest) as tmp:
            torch.save(state, tmp / CHECKPOINT_FILE)
        for old in self._checkpoints()[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def resume(self) -> None:
        folder = self.out / CHECKPOINT_DIR
        if self.main and folder.is_dir():
            for partial in folder.glob(".step-*.partial-*"):  # left by a run killed mid-write
                shutil.rmtree(partial, ignore_errors=True)
        checkpoints = self._checkpoints()
        if not checkpoints:
            self._truncate_metrics(0)  # lines a killed run wrote before its first checkpoint
            if self.main:
                print(
                    f"reneg-train: no complete checkpoint in {self.out / CHECKPOINT_DIR}; starting at step 0",
                    file=sys.stderr,
                )
            return
        path = checkpoints[-1] / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged checkpoint must not be half-resumed
            raise UsageError(
                f"--resume: {path} is unreadable ({exc}); delete that folder to resume from an older one"
            ) from None
        with torch.no_grad():
            self.accelerator.unwrap_model(self.model).embedding.copy_(state["embedding"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        self.start_step = int(state["step"])
        self._truncate_metrics(self.start_step)

    def _truncate_metrics(self, step: int) -> None:
        path = self.out / "metrics.jsonl"
        if not self.main or not path.exists():
            return
        kept = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the half-written last line of a killed run
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                kept.append(line)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))

    # --- the run ------------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict:
        """One optimiser step over the global batch (its micro-batches accumulated); its metrics line:
        step (1-based), loss and reward averaged over the processes, learning rate, seconds."""
        c, acc = self.config, self.accelerator
        step_start = time.perf_counter()
        grad_index = self.grad_step_index(step)
        losses, rewards = [], []
        for micro in range(c.grad_accum):
            with acc.accumulate(self.model):
                loss, reward = self.loss_and_reward(self.sample_indices(step, micro), grad_index)
                acc.backward(loss)
                if c.max_grad_norm and acc.sync_gradients:  # ReFL clips the gradient norm (to 1.0)
                    acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad()
            losses.append(loss.detach())
            rewards.append(reward)
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()
        return {
            "step": step + 1,
            "loss": acc.gather(torch.stack(losses).mean()[None]).mean().item(),
            "reward": acc.gather(torch.cat(rewards)).mean().item(),
            "lr": lr,
            "seconds": round(time.perf_counter() - step_start, 4),
        }

    def train(self) -> dict:
        from tqdm.auto import tqdm

        c, acc = self.config, self.accelerator
        self.out.mkdir(exist_ok=True)
        if c.resume:
            self.resume()
        if self.main:
            print(
                f"reneg-train: global batch {c.batch_size} = {acc.num_processes} process(es) x {self.per_process}"
                f" prompts ({c.grad_accum} micro-batch(es) of {self.micro})",
                file=sys.stderr,
            )
        val_before = self.val_reward(self.initial)
        metrics_path = self.out / "metrics.jsonl"
        bar = tqdm(
            total=c.steps,
            initial=self.start_step,
            disable=not self.main,
            desc="reneg-train",
            dynamic_ncols=True,
        )
        start_time = time.perf_counter()
        last = {}
        for step in range(self.start_step, c.steps):
            last = self.train_step(step)
            if self.main:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(last) + "\n")
            bar.update(1)
            bar.set_postfix(reward=f"{last['reward']:.3f}", loss=f"{last['loss']:.3f}")
            if c.checkpoint_every and (step + 1) % c.checkpoint_every == 0 and step + 1 < c.steps:
                self.save_checkpoint(step + 1)
        bar.close()
        final = acc.unwrap_model(self.model).embedding.detach().cpu().clone()
        val_after = self.val_reward(final)
        summary = {
            "model": self.spec.name,
            "standin": self.spec.standin,
            "reward": c.reward if not hasattr(self.reward, "name") else self.reward.name,
            "steps": c.steps,
            "resumed_from": self.start_step,
            "processes": acc.num_processes,
            "global_batch": c.batch_size,
            "per_process_batch": self.per_process,
            "val_prompts": len(self.val_prompts),
            "val_reward_before": val_before,
            "val_reward_after": val_after,
            "last": last,
            "seconds": round(time.perf_counter() - start_time, 2),
            "config": asdict(c),
        }
        if self.main:
            self._write_outputs(final, summary)
        acc.wait_for_everyone()
        # Destroy the process group now: a gloo group left to interpreter exit can abort a process that
        # has finished (see core.shard.Processes). A no-op without a launcher.
        acc.end_training()
        return summary

    def _write_outputs(self, final: torch.Tensor, summary: dict) -> None:
        c = self.config
        emb = NegativeEmbedding(
            tensor=final,
            mask=self.neg_mask,
            family=self.spec.family,
            source=f"reneg-train:{self.spec.name}",
            metadata={
                "model": self.spec.name,
                "reward": str(summary["reward"]),
                "steps": str(c.steps),
                "seed": str(c.seed),
            },
        )
        emb.save(self.out / "negative_embedding.safetensors")
        emb.save(self.out / "negative_embedding.bin")
        with atomic_path(self.out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
