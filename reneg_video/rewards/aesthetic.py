"""The LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor), local weights.

Score of a frame: CLIP ViT-L/14 image embedding (OpenAI CLIP `encode_image`, 768-d) -> L2-normalised ->
MLP 768-1024-128-64-16-1 -> a rating on the AVA scale (about 1..10; higher is better). The prompt is not
used. The released `sac+logos+ava1-l14-linearMSE.pth` is a plain state dict of the MLP's
`nn.Sequential` (`layers.{0,2,4,6,7}` are the Linear layers, `{1,3,5}` dropouts 0.2, 0.2, 0.1, no
activations: the ReLUs are commented out in the repo's `simple_inference.py`), the same layout as
ImageReward's head, so `imagereward.build_head` builds it.

CLIP runs as transformers' `CLIPVisionModelWithProjection`, loaded from a `CLIPModel` folder of
openai/clip-vit-large-patch14 (its `vision_model.*` and `visual_projection.*` weights); pre-processing is
OpenAI CLIP's (`frames.preprocess`: short side to 224 bicubic, centre crop, CLIP mean/std).

Shape legend: F frames, B frames in one batch, E = 768 (CLIP ViT-L/14 embedding width).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ..core.errors import RewardError
from .clip import CLIP_REPO, _local_folder
from .files import resolve_local
from .frames import Frames, preprocess, scoring_setup
from .imagereward import DEFAULT_BATCH_SIZE, build_head, perturb_

# MLP of simple_inference.py: Linear widths and the dropouts after the first three Linear layers.
HEAD_WIDTHS = (768, 1024, 128, 64, 16, 1)
HEAD_DROPOUTS = (0.2, 0.2, 0.1)
RELEASED_FILE = "sac+logos+ava1-l14-linearMSE.pth"
REPO_URL = "https://github.com/christophschuhmann/improved-aesthetic-predictor"
ENV_CHECKPOINT = "RENEG_AESTHETIC_CKPT"
ENV_CLIP = "RENEG_AESTHETIC_CLIP"
# OpenAI CLIP ViT-L/14 (openai/clip-vit-large-patch14 config.json): vision width 1024, 24 layers, 16 heads,
# ffn 4096, patch 14 at 224 px, quick_gelu, projection 768.
VISION_WIDTH = 1024
VISION_LAYERS = 24
VISION_HEADS = 16
VISION_FFN = 4096
PATCH = 14
IMAGE_SIZE = 224
EMBED_DIM = 768


class AestheticReward:
    """`score_frames(frames, prompt) -> Tensor[F]`: the LAION aesthetic rating of each frame (prompt unused).

    Both models are frozen; gradients flow to float frame tensors that require them.
    """

    def __init__(
        self,
        vision: CLIPVisionModelWithProjection,
        head: nn.Sequential,
        name: str = "aesthetic",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.vision = vision.eval().requires_grad_(False)
        self.head = head.eval().requires_grad_(False)
        self.name = name
        self.batch_size = batch_size
        self.input_size = int(vision.config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.vision.parameters()).device

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor:
        """Rate each frame: float32 [F]. `prompt` is checked but does not change the scores."""
        count, batch_size, context = scoring_setup(frames, prompt, batch_size, self.batch_size)
        dtype = next(self.vision.parameters()).dtype
        head_dtype = next(self.head.parameters()).dtype
        scores = []
        with context:
            for start in range(0, count, batch_size):
                embeds = self._image_embeddings(frames[start : start + batch_size], dtype)  # [B, E]
                scores.append(self.head(embeds.to(head_dtype)).squeeze(-1).float())
        return torch.cat(scores)

    def _image_embeddings(self, frames: Frames, dtype: torch.dtype) -> torch.Tensor:
        """Some frames -> L2-normalised CLIP image embeddings, float32 [B, E]."""
        pixels = preprocess(frames, self.input_size).to(self.device, dtype)
        embeds = self.vision(pixel_values=pixels).image_embeds
        # The reference normalises in float32 (numpy) and runs the MLP in float32.
        return F.normalize(embeds.float(), dim=-1)

    def embed_frames(self, frames: Frames, *, batch_size: int | None = None) -> torch.Tensor:
        """The frames' L2-normalised CLIP ViT-L/14 image embeddings, float32 [F, E] (what video-level
        consistency compares, `rewards.temporal`)."""
        count, batch_size, context = scoring_setup(frames, "", batch_size, self.batch_size)
        dtype = next(self.vision.parameters()).dtype
        with context:
            parts = [
                self._image_embeddings(frames[s : s + batch_size], dtype) for s in range(0, count, batch_size)
            ]
        return torch.cat(parts)

    def __repr__(self) -> str:
        return f"AestheticReward(name={self.name!r}, device={self.device})"


def resolve_checkpoint(value: str | os.PathLike[str] | None = None) -> Path:
    """The MLP weights: the argument, else $RENEG_AESTHETIC_CKPT (no Hugging Face repo is official)."""
    return resolve_local(
        value, what="aesthetic predictor weights", env=ENV_CHECKPOINT, kind="file",
        how=f"download {RELEASED_FILE} from {REPO_URL}", give="pass aesthetic_checkpoint=",
    )  # fmt: skip


def resolve_clip(value: str | os.PathLike[str] | None = None) -> Path:
    """The CLIP ViT-L/14 folder: the argument, else $RENEG_AESTHETIC_CLIP, else the HF cache of
    openai/clip-vit-large-patch14."""
    return _local_folder(value, ENV_CLIP, CLIP_REPO, "aesthetic predictor's CLIP ViT-L/14")


def load_head(path: Path, width: int) -> nn.Sequential:
    """The MLP from its released state dict; every weight present, shapes equal, values finite."""
    what = f"the LAION aesthetic MLP ({RELEASED_FILE}: layers.0..7 of {'-'.join(map(str, HEAD_WIDTHS))})"
    try:
        # weights_only: a pickle asking to build anything but tensors is refused before it runs.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RewardError(
            f"aesthetic predictor weights {str(path)!r} could not be read as a weights-only torch state dict "
            f"({type(exc).__name__}); expected {what}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a Lightning checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RewardError(
            f"aesthetic predictor weights {str(path)!r} hold a {type(state).__name__}, not a state dict of "
            f"tensors; expected {what}"
        )
    head = build_head((width, *HEAD_WIDTHS[1:]), HEAD_DROPOUTS)
    expected = {f"layers.{k}": v for k, v in head.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what_is_wrong = f"lacks {missing[0]!r}" if missing else f"has the unexpected key {extra[0]!r}"
        raise RewardError(f"aesthetic predictor weights {str(path)!r} {what_is_wrong}; expected {what}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise RewardError(
                f"aesthetic predictor weights {str(path)!r}: {key!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(expected[key].shape)} (an MLP for {width}-d CLIP embeddings); is the CLIP model ViT-L/14?"
            )
        if not bool(torch.isfinite(value).all()):
            raise RewardError(
                f"aesthetic predictor weights {str(path)!r}: {key!r} holds NaN or inf; the file is corrupt, get it again"
            )
    head.load_state_dict({k[len("layers.") :]: v for k, v in state.items()})
    return head


def load_vision(folder: Path, dtype: torch.dtype) -> CLIPVisionModelWithProjection:
    """The vision tower and projection of a saved `CLIPModel` folder (the text tower is not loaded)."""
    # The folder's text weights are expected to go unused; keep transformers from listing them.
    logger = logging.getLogger("transformers.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise RewardError(
            f"aesthetic predictor's CLIP ViT-L/14 could not be loaded from {str(folder)!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:100]}); expected a CLIPModel folder of {CLIP_REPO}"
        ) from None
    finally:
        logger.setLevel(level)


def load_aesthetic(
    aesthetic_checkpoint: str | os.PathLike[str] | None = None,
    aesthetic_clip: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> AestheticReward:
    """The LAION aesthetic predictor from local files; nothing is downloaded. The MLP stays float32.

    The arguments carry an `aesthetic_` prefix so that other rewards' `checkpoint=` / `model=` in an
    ensemble do not reach this loader."""
    path = resolve_checkpoint(aesthetic_checkpoint)
    folder = resolve_clip(aesthetic_clip)
    vision = load_vision(folder, dtype)
    head = load_head(path, int(vision.config.projection_dim))
    return AestheticReward(vision.to(device), head.to(device), "aesthetic", batch_size)


# ---- tiny-aesthetic: CLIP ViT-L/14 widths at reduced depth and the real MLP, seeded random weights --------

TINY_SEED = 0
# Reduced from ViT-L/14: 1 vision block of 24; widths, heads, patch, image size, projection and the MLP
# are the real ones.
TINY_VISION_LAYERS = 1


def tiny_vision_config(layers: int = TINY_VISION_LAYERS) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=VISION_WIDTH, intermediate_size=VISION_FFN, num_hidden_layers=layers,
        num_attention_heads=VISION_HEADS, image_size=IMAGE_SIZE, patch_size=PATCH, hidden_act="quick_gelu",
        projection_dim=EMBED_DIM,
    )  # fmt: skip


def load_tiny_aesthetic(
    *, seed: int = TINY_SEED, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
) -> AestheticReward:
    """The aesthetic predictor's architecture (ViT-L/14 widths, 1 block; the real MLP) with seeded random
    weights. Its scores are NOISE: for tests and demos only."""
    vision = perturb_(CLIPVisionModelWithProjection(tiny_vision_config()), seed)
    head = perturb_(build_head(HEAD_WIDTHS, HEAD_DROPOUTS), seed + 1)
    return AestheticReward(vision.to(device), head.to(device), "tiny-aesthetic", batch_size)


__all__ = ["AestheticReward", "load_aesthetic", "load_head", "load_tiny_aesthetic"]
