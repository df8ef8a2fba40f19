"""`shapes-reward`: the learned reward of the shapes world (the ImageReward/PickScore analogue).

A tiny `CLIPModel` (its text tower the shapes text encoder, its image tower 32x32 in 4x4 patches) trained
contrastively, then fine-tuned Bradley-Terry on pairs of frames ranked by the programmatic judge (the
PickScore recipe). Score = (exp(logit_scale) * cos(image, text) - mean) / std, the mean and std of its
own training pool, so scores are roughly standard (as ImageReward's are) and ReFL's relu(2 - r) loss
applies. Built by `reneg-build-shapes`; shipped in reneg_video/models/shapes/weights/reward.

Shape legend: F frames, B frames in one batch, D projection width.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..core.errors import RewardError
from .frames import Frames, preprocess, scoring_setup

DEFAULT_BATCH_SIZE = 64
NORM_FILE = "reward_norm.json"


def _shipped_folder() -> Path:
    from ..models.shapes.world import bundled_folder

    return bundled_folder("shapes/reward")


class ShapesReward:
    """`score_frames(frames, prompt) -> Tensor[F]`; frozen, differentiable w.r.t. float frame tensors."""

    name = "shapes-reward"

    def __init__(
        self, model, tokenizer, mean: float, std: float, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.mean, self.std = float(mean), float(std)
        self.batch_size = batch_size
        self.input_size = int(model.config.vision_config.image_size)
        self.tokens = int(model.config.text_config.max_position_embeddings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor:
        count, batch_size, context = scoring_setup(frames, prompt, batch_size, self.batch_size)
        dtype = next(self.model.parameters()).dtype
        with context:
            ids = self.tokenizer(
                prompt, padding="max_length", truncation=True, max_length=self.tokens, return_tensors="pt"
            ).input_ids.to(self.device)
            text = self.model.get_text_features(input_ids=ids)
            text = torch.nn.functional.normalize(getattr(text, "pooler_output", text).float(), dim=-1)
            scale = self.model.logit_scale.exp().float()
            scores = []
            for start in range(0, count, batch_size):
                pixels = preprocess(frames[start : start + batch_size], self.input_size)
                image = self.model.get_image_features(pixel_values=pixels.to(self.device, dtype))
                image = torch.nn.functional.normalize(getattr(image, "pooler_output", image).float(), dim=-1)
                scores.append((scale * (image @ text.T).squeeze(-1) - self.mean) / self.std)
        return torch.cat(scores).float()

    def __repr__(self) -> str:
        return f"ShapesReward(device={self.device})"


def load_shapes_reward(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ShapesReward:
    """The shipped shapes reward, or one from `model` (a folder written by reneg-build-shapes)."""
    from transformers import CLIPModel, CLIPTokenizer

    folder = Path(model) if model is not None else _shipped_folder()
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
