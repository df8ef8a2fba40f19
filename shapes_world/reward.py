"""`shapes-reward`: the learned reward of the shapes world (the ImageReward/PickScore analogue).

A tiny `CLIPModel` (its text tower the shapes text encoder, its image tower 32x32 in 4x4 patches) trained
contrastively, then fine-tuned Bradley-Terry on pairs of frames (the PickScore recipe): the shipped v1
reward on pairs ranked by the programmatic judge, world v2 builds on simulated raters' choices
(shapes_world/raters.py), so that the reward is not a distillation of the judge. Score = (exp(logit_scale) * cos(image, text) - mean) / std, the mean and std of its
own training pool, so scores are roughly standard (as ImageReward's are) and ReFL's relu(2 - r) loss
applies. Built by `reneg-build-shapes`; shipped in shapes_world/weights/reward; registered with
reneg_video's `load_reward` by shapes_world.plugin.

Shape legend: F frames, B frames in one batch, D projection width.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from reneg_video.core.errors import RewardError
from reneg_video.rewards.cosine import CosineReward

from .world import bundled_folder

DEFAULT_BATCH_SIZE = 64
NORM_FILE = "reward_norm.json"


class ShapesReward(CosineReward):
    """`score_frames(frames, prompt) -> Tensor[F]`; frozen, differentiable w.r.t. float frame tensors:
    (exp(logit_scale) * cos(image, text) - mean) / std on the shapes CLIP (reneg_video's CosineReward)."""

    def __init__(
        self, model, tokenizer, mean: float, std: float, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        super().__init__(
            model, tokenizer, "shapes-reward", scale=None, mean=mean, std=std, batch_size=batch_size
        )

    def text_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        """The token ids alone, padded to the encoder's 16 positions ([1, 16]): the reward stage trained
        on ids without an attention mask (build.reward), so it is scored the same way."""
        ids = self.tokenizer(
            prompt, padding="max_length", truncation=True, max_length=self.context, return_tensors="pt"
        ).input_ids
        return {"input_ids": ids}


def load_shapes_reward(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ShapesReward:
    """The shipped shapes reward, or one from `model` (a folder written by reneg-build-shapes)."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = Path(model) if model is not None else bundled_folder("reward")
    norm_path = folder / NORM_FILE
    if not norm_path.exists():
        raise RewardError(
            f"shapes-reward folder {str(folder)!r} has no {NORM_FILE}; expected a folder written by "
            "reneg-build-shapes (OUT/export/reward)"
        )
    norm = json.loads(norm_path.read_text())
    clip = CLIPModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    return ShapesReward(clip.to(device), tokenizer, norm["mean"], norm["std"], batch_size)
