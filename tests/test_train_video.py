"""reneg-train directly on video models with their own samplers and latent layouts (AnimateDiff: DDIM,
epsilon, context per frame; LTX-Video: flow matching; CogVideoX: CogVideoX-DDIM, v-prediction), and a
probe reward that learning must move both ways."""

from __future__ import annotations

import json

import pytest
import torch

from reneg_video import load_embedding
from reneg_video.commands.train import build_parser, main
from reneg_video.training.config import TrainConfig
from reneg_video.training.trainer import Trainer

from .test_train import PROMPTS

# stand-in -> frames (8k+1 for LTX and CogVideoX) and size for a quick CPU run
TRAINABLE = {
    "tiny-animatediff": ("4", "32"),
    "tiny-ltx-video": ("9", "32"),
    "tiny-ltx-video-0.9.1": ("9", "32"),
    "tiny-cogvideox-2b": ("9", "32"),
    "tiny-cogvideox-5b": ("9", "32"),
}


def _args(name: str, out, *extra: str) -> list[str]:
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    frames, size = TRAINABLE[name]
    return ["--model", name, "--reward", "tiny-imagereward", "--prompts-file", str(PROMPTS), "--cpu",
            "--seed", "0", "--out", str(out), "--frames", frames, "--height", size, "--width", size,
            "--sampling-steps", "4", "--grad-step-max", "2", "--val-prompts", "1", "--batch-size", "1",
            "--frame-select", "first,middle,last", *extra]  # fmt: skip


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_reneg_train_runs_two_steps_on_the_video_standin(tmp_path, capsys, name):
    out = tmp_path / "run"
    assert main(_args(name, out, "--steps", "2", "--val-prompts", "0")) == 0, capsys.readouterr().err
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    learned = load_embedding(out / "negative_embedding.safetensors")
    assert learned.family.name == ("clip-vit-l-14" if "animatediff" in name else "t5-v1_1-xxl")


class ProbeReward:
    """A fixed random linear probe of the decoded frames (differentiable): sign +1 or -1."""

    name = "probe"

    def __init__(self, sign: float) -> None:
        self.weight = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(11)) * sign

    def score_frames(self, frames, prompt, *, batch_size=None):
        frames = torch.as_tensor(frames)
        return (frames.float() * self.weight).mean(dim=(1, 2, 3)) * 100


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_probe_reward_moves_the_held_out_reward_its_way_on_ltx_video(tmp_path, sign):
    args = _args("tiny-ltx-video", tmp_path / f"run{sign}", "--steps", "8", "--lr", "0.5", "--loss", "neg")
    config = TrainConfig(**vars(build_parser().parse_args(args)))
    summary = Trainer(config, reward=ProbeReward(sign)).train()
    gain = summary["val_reward_after"] - summary["val_reward_before"]
    assert gain > 0, summary
