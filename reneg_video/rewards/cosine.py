"""`CosineReward`: the one base of the rewards that score a frame by a CLIP model's image-text cosine.

CLIP score, PickScore, HPS v2 and the shapes world's learned reward all compute, per frame,

    score = (scale * cos(image embedding, text embedding) - mean) / std

on a transformers `CLIPModel` (any model with `get_text_features`, `get_image_features` and a
`logit_scale`): the prompt is encoded once, the frames in batches. They differ only in how a prompt
becomes token ids (`text_inputs`), how frames become pixels (`pixels`), the `scale` (a number, or None
for the model's own exp(logit_scale)), and `mean`/`std` (a calibration to roughly standard scores; 0 and
1 leave the scores raw, exactly: x - 0.0 and x / 1.0 are x in IEEE arithmetic). A subclass overrides the
two methods it needs; this class is public API, so rewards outside the library (plugins) build on it too.

Shape legend: F frames, B frames in one batch, D projection width, L text positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import CLIPModel

from .frames import Frames, preprocess, scoring_setup
from .imagereward import DEFAULT_BATCH_SIZE


class CosineReward:
    """`score_frames(frames, prompt) -> Tensor[F]`: (scale * cos(image, text) - mean) / std per frame.

    The model is frozen; gradients flow to float frame tensors that require them.
    `tokenizer` is whatever `text_inputs` reads (by default a Hugging Face CLIP tokenizer).
    """

    def __init__(
        self,
        model: CLIPModel,
        tokenizer,
        name: str,
        *,
        scale: float | None,
        mean: float = 0.0,
        std: float = 1.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.scale = scale
        self.mean, self.std = float(mean), float(std)
        self.batch_size = batch_size
        self.input_size = int(model.config.vision_config.image_size)
        self.context = int(model.config.text_config.max_position_embeddings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def text_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        """The keyword arguments of `get_text_features` for `prompt`: here the tokenizer's ids and
        attention mask, padded to the model's `context` positions ([1, L] each)."""
        return dict(
            self.tokenizer(
                prompt, padding="max_length", truncation=True, max_length=self.context, return_tensors="pt"
            )
        )

    def pixels(self, frames: Frames) -> torch.Tensor:
        """Some frames (already checked) -> the model's normalised input [B, 3, S, S]: here OpenAI CLIP's
        pre-processing (`frames.preprocess`)."""
        return preprocess(frames, self.input_size)

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor:
        """Score each frame against `prompt`: float32 [F]; the prompt is encoded once per call."""
        count, batch_size, context = scoring_setup(frames, prompt, batch_size, self.batch_size)
        dtype = next(self.model.parameters()).dtype
        with context:
            inputs = {key: value.to(self.device) for key, value in self.text_inputs(prompt).items()}
            text = self.model.get_text_features(**inputs)
            text = getattr(text, "pooler_output", text)  # transformers may wrap the features
            text = F.normalize(text.float(), dim=-1)  # [1, D]
            scale = self.model.logit_scale.exp().float() if self.scale is None else self.scale
            scores = []
            for start in range(0, count, batch_size):
                image = self._image_embeddings(frames[start : start + batch_size], dtype)  # [B, D]
                scores.append((scale * (image @ text.T).squeeze(-1) - self.mean) / self.std)
        return torch.cat(scores).float()

    def _image_embeddings(self, frames: Frames, dtype: torch.dtype) -> torch.Tensor:
        """Some frames -> their L2-normalised image embeddings, float32 [B, D]."""
        pixels = self.pixels(frames).to(self.device, dtype)
        image = self.model.get_image_features(pixel_values=pixels)
        image = getattr(image, "pooler_output", image)  # transformers may wrap the features
        return F.normalize(image.float(), dim=-1)

    def embed_frames(self, frames: Frames, *, batch_size: int | None = None) -> torch.Tensor:
        """The frames' L2-normalised image embeddings from the image tower `score_frames` uses: float32
        [F, D] (what video-level consistency compares, `rewards.temporal`)."""
        count, batch_size, context = scoring_setup(frames, "", batch_size, self.batch_size)
        dtype = next(self.model.parameters()).dtype
        with context:
            parts = [
                self._image_embeddings(frames[s : s + batch_size], dtype) for s in range(0, count, batch_size)
            ]
        return torch.cat(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device})"


__all__ = ["CosineReward"]
