"""reneg-train on the stand-ins: learning, frozen weights, kill-and-resume, accelerate scale-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from reneg_video import UsageError, load_embedding
from reneg_video.commands.train import build_parser
from reneg_video.models.generate import settings_for
from reneg_video.training.config import TrainConfig
from reneg_video.training.trainer import Trainer

from ..conftest import IMAGEREWARD_PROMPTS as PROMPTS

# Small enough for CI on 2 CPU cores: 32 px, a 6-step chain with the gradient in its last 3.
QUICK = [
    "--height",
    "32",
    "--width",
    "32",
    "--sampling-steps",
    "6",
    "--grad-step-max",
    "2",
    "--val-prompts",
    "2",
]


def _args(out: Path, *extra: str) -> list[str]:
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    return ["--model", "tiny-sd21", "--reward", "tiny-imagereward", "--prompts-file", str(PROMPTS), "--cpu",
            "--seed", "0", "--out", str(out), *QUICK, *extra]  # fmt: skip


def _config(out: Path, *extra: str) -> TrainConfig:
    return TrainConfig(**vars(build_parser().parse_args(_args(out, *extra))))


def test_training_changes_only_the_embedding_and_raises_train_reward(tmp_path):
    trainer = Trainer(_config(tmp_path / "run", "--steps", "6", "--batch-size", "2", "--lr", "0.05"))
    frozen = {
        name: p.detach().clone()
        for module in (
            trainer.backbone.denoiser,
            trainer.backbone.pipe.vae,
            trainer.backbone.pipe.text_encoder,
        )
        for name, p in module.named_parameters(prefix=type(module).__name__)
    }
    before = trainer.accelerator.unwrap_model(trainer.model).embedding.detach().clone()
    summary = trainer.train()
    after = trainer.accelerator.unwrap_model(trainer.model).embedding.detach()
    assert not torch.equal(before, after)
    for module in (trainer.backbone.denoiser, trainer.backbone.pipe.vae, trainer.backbone.pipe.text_encoder):
        for name, p in module.named_parameters(prefix=type(module).__name__):
            assert torch.equal(p, frozen[name]), name
    out = tmp_path / "run"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 7))
    assert all({"loss", "reward", "lr", "seconds"} <= m.keys() for m in metrics)
    assert summary["val_reward_before"] is not None and summary["val_reward_after"] is not None
    learned = load_embedding(out / "negative_embedding.safetensors")
    assert torch.equal(learned.tensor, after) and learned.family.name == "openclip-vit-h-14"
    assert torch.equal(load_embedding(out / "negative_embedding.bin").tensor, after)


def test_learned_file_runs_in_the_video_standin(tmp_path, capsys):
    from reneg_video.commands.video import main as video_main
    from reneg_video.core.export import validate_mp4

    Trainer(_config(tmp_path / "run", "--steps", "1", "--batch-size", "1", "--val-prompts", "0")).train()
    code = video_main(["--model", "tiny-zeroscope", "--neg", str(tmp_path / "run" / "negative_embedding.safetensors"),
                       "--prompt", "a red panda", "--frames", "4", "--steps", "1", "--out", str(tmp_path / "v.mp4"), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    validate_mp4(tmp_path / "v.mp4", 4)


def _run(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reneg_video.commands.train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


# Kill-and-resume (bit-identical, including kills during checkpoint writes) lives in tests/test_kills.py.


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """--batch-size is the global batch: the same command on 1 or 2 processes learns the same embedding."""
    pytest.importorskip("accelerate")
    common = ["--steps", "2", "--val-prompts", "0"]
    one = _run(_args(tmp_path / "one", *common, "--batch-size", "4"))
    assert one.returncode == 0, one.stderr[-2000:]
    # torchrun (--multi_gpu) with the trainer's own --cpu: accelerate's `launch --cpu` forks several
    # processes only through MPI, and without it silently runs one.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "reneg_video.commands.train",
              *_args(tmp_path / "two", *common, "--batch-size", "4")]  # fmt: skip
    two = subprocess.run(launch, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_embedding(tmp_path / "one" / "negative_embedding.safetensors").tensor
    b = load_embedding(tmp_path / "two" / "negative_embedding.safetensors").tensor
    diff = (a - b).abs().max().item()
    print(f"max |1 process x batch 4 - 2 processes x batch 2| = {diff:.3g}")
    assert diff <= 1e-4
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch"] == 4 and summary["per_process_batch"] == 2
    assert "global batch 4 = 2 process(es) x 2 prompts" in two.stderr


def test_bad_config_is_refused_in_one_line(tmp_path, capsys):
    from reneg_video.commands.train import main

    assert main(_args(tmp_path / "x", "--steps", "0")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--steps 0" in err
    assert main(_args(tmp_path / "x", "--grad-step-max", "9")) == 2
    assert "--sampling-steps" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_help_names_the_recipe_defaults():
    text = build_parser().format_help()
    for needle in (
        "4000",
        "5e-3",
        "relu(2 - reward)",
        "accelerate launch",
        "noise",
        "--resume",
        "--val-prompts",
        "--max-grad-norm",
        "GLOBAL prompts per optimizer step",
    ):
        assert needle in text, needle


# PixArt-alpha's scheduler/scheduler_config.json (PixArt-alpha/PixArt-XL-2-512x512): DPM-Solver++, no
# clip_sample key, so DDIMScheduler.from_config over it would take DDIM's default clip_sample=True.
PIXART_SCHEDULER = {
    "_class_name": "DPMSolverMultistepScheduler",
    "algorithm_type": "dpmsolver++",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "dynamic_thresholding_ratio": 0.995,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_type": "midpoint",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_karras_sigmas": False,
    "variance_type": None,
}


def test_latent_x0_is_not_clipped_under_pixarts_dpmsolver_config(tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    from reneg_video import load_pipeline
    from reneg_video.training.refine import backbone_for

    folder = tmp_path / "pixart"
    pipe = load_pipeline("tiny-pixart-alpha", device="cpu")
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(PIXART_SCHEDULER)
    pipe.save_pretrained(folder)
    config = _config(tmp_path / "run", "--steps", "1", "--batch-size", "1", "--val-prompts", "0")
    trainer = Trainer(replace(config, model="tiny-pixart-alpha", model_path=str(folder), height=64, width=64))
    pipe = trainer.backbone.pipe
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"  # the folder's, as shipped
    settings = settings_for(pipe.reneg_spec, steps=4)
    for bb in (trainer.backbone, backbone_for(pipe, pipe.reneg_spec, settings)):  # training, refinement
        t = bb.scheduler.timesteps[0]
        latents = torch.zeros(1, *bb.latent_shape)
        # x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) with x_t = 0 and eps = -1: far outside [-1, 1] at the
        # first (noisiest) timestep, where a latent x0 legitimately lies.
        x0 = bb.step(-torch.ones_like(latents), t, latents).pred_original_sample
        a = bb.scheduler.alphas_cumprod[int(t)]
        expected = ((1 - a) / a).sqrt()
        assert expected > 2
        torch.testing.assert_close(x0, torch.full_like(x0, float(expected)))


def test_global_batch_must_split_over_processes_and_micro_batches(tmp_path):
    config = _config(tmp_path / "run", "--batch-size", "6", "--grad-accum", "3")
    assert config.per_process_batch(1) == 6
    assert config.per_process_batch(2) == 3
    with pytest.raises(UsageError, match=r"--batch-size 6: it is the global batch.* multiple of 12"):
        config.per_process_batch(4)


def _grad_norms_seen_by_the_optimizer(trainer) -> list[float]:
    norms = []
    step = trainer.optimizer.step
    param = trainer.accelerator.unwrap_model(trainer.model).embedding

    def spy(*args, **kwargs):
        norms.append(float(param.grad.norm()))
        return step(*args, **kwargs)

    trainer.optimizer.step = spy
    return norms


def test_max_grad_norm_clips_the_update(tmp_path):
    common = ("--steps", "2", "--batch-size", "1", "--val-prompts", "0", "--loss", "neg")
    free = Trainer(_config(tmp_path / "free", *common, "--max-grad-norm", "0"))
    free_norms = _grad_norms_seen_by_the_optimizer(free)
    free.train()
    limit = min(free_norms) / 10  # well below what the unclipped run saw, so clipping must act
    assert limit > 0
    clipped = Trainer(_config(tmp_path / "clipped", *common, "--max-grad-norm", str(limit)))
    clipped_norms = _grad_norms_seen_by_the_optimizer(clipped)
    clipped.train()
    assert len(clipped_norms) == len(free_norms) == 2
    assert all(n <= limit * (1 + 1e-5) for n in clipped_norms), (clipped_norms, limit)
    assert TrainConfig.__dataclass_fields__["max_grad_norm"].default == 1.0  # ReFL's clip


class LinearProbe:
    """A fixed random linear function of the decoded frames (the same weights in every run), or its negation.

    The weights are random per channel and per cell of a coarse grid, so one direction of the embedding
    can raise the probe for every prompt and seed (a per-pixel probe mostly sees each sample's noise).
    """

    def __init__(self, sign: float, grid: int = 2) -> None:
        weights = torch.randn(3, grid, grid, generator=torch.Generator().manual_seed(1234))
        self.weights = sign * weights / weights.numel() ** 0.5
        self.grid = grid
        self.name = f"linear-probe{'+' if sign > 0 else '-'}"

    def score_frames(self, frames, prompt, batch_size=None):
        cells = torch.nn.functional.adaptive_avg_pool2d(frames - 0.5, self.grid)  # linear in the frames
        return cells.flatten(1) @ self.weights.flatten().to(frames)


def test_a_linear_probe_and_its_negation_move_the_held_out_reward_their_own_way(tmp_path, one_thread):
    """The learning test: training on r and on -r moves r on held-out prompts (fixed seeds) apart."""
    quick = ("--steps", "6", "--batch-size", "2", "--lr", "0.05", "--loss", "neg", "--val-prompts", "2")
    runs = {}
    for sign in (1.0, -1.0):
        config = _config(tmp_path / f"run{sign:+.0f}", *quick)
        runs[sign] = Trainer(config, reward=LinearProbe(sign)).train()
    up, down = runs[1.0], runs[-1.0]
    # In the probe's own units: the start is shared (same init, prompts and seeds), then the runs part ways.
    before = up["val_reward_before"]
    assert down["val_reward_before"] == pytest.approx(-before, abs=1e-6)
    print(f"probe on held-out prompts: before {before:.4f}, after +probe {up['val_reward_after']:.4f}, "
          f"after -probe {-down['val_reward_after']:.4f}")  # fmt: skip
    assert up["val_reward_after"] > before  # training on the probe raises it
    assert -down["val_reward_after"] < before  # training on its negation lowers it
