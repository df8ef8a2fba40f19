"""CLIP-family rewards on transformers' `CLIPModel`: CLIP score and PickScore, from local weights.

Both score a frame by the cosine similarity of CLIP's projected image and text embeddings, scaled:
- `clip`: 100 * cos, the CLIP score convention of torchmetrics (Hessel et al. 2021 with w = 100), here
  without its clamp at 0 so that gradients never vanish; default model openai/clip-vit-large-patch14;
- `pickscore`: exp(logit_scale) * cos, as PickScore's reference inference (Kirstain et al. 2023),
  model yuvalkirstain/PickScore_v1 with the tokenizer of laion/CLIP-ViT-H-14-laion2B-s32B-b79K.
ReNO weights them 0.01 (CLIP) and 0.05 (PickScore).

These two have been run here only with random tiny weights (`tiny-clip`): no real checkpoint was at
hand, so their scores on real weights are not verified against a reference.

Shape legend: F frames, B frames in one batch, D projection width.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from ..core.errors import RewardError
from .frames import Frames, preprocess, scoring_setup
from .imagereward import DEFAULT_BATCH_SIZE, perturb_

# CLIP's text tower has 77 positions (context_length=77 in OpenAI CLIP and OpenCLIP).
CLIP_TOKENS = 77
# torchmetrics CLIPScore: 100 * cos(image, text).
CLIP_SCORE_SCALE = 100.0
CLIP_REPO = "openai/clip-vit-large-patch14"
PICKSCORE_REPO = "yuvalkirstain/PickScore_v1"
PICKSCORE_TOKENIZER_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
ENV_CLIP = "RENEG_CLIP_MODEL"
ENV_PICKSCORE = "RENEG_PICKSCORE_MODEL"
ENV_PICKSCORE_TOKENIZER = "RENEG_PICKSCORE_TOKENIZER"


class ClipReward:
    """`score_frames(frames, prompt) -> Tensor[F]`: scale * cos(image embedding, text embedding).

    `scale` is a number, or None for the model's own exp(logit_scale) (PickScore). The model is frozen;
    gradients flow to float frame tensors that require them.
    """

    def __init__(
        self,
        model: CLIPModel,
        tokenizer: CLIPTokenizer,
        name: str,
        scale: float | None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.scale = scale
        self.batch_size = batch_size
        self.input_size = int(model.config.vision_config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor:
        """Score each frame against `prompt`: float32 [F]; the prompt is encoded once per call."""
        count, batch_size, context = scoring_setup(frames, prompt, batch_size, self.batch_size)
        dtype = next(self.model.parameters()).dtype
        with context:
            tokens = self.tokenizer(
                prompt, padding="max_length", truncation=True, max_length=CLIP_TOKENS, return_tensors="pt"
            ).to(self.device)
            text = self.model.get_text_features(**tokens)
            text = getattr(text, "pooler_output", text)  # transformers may wrap the features
            text = torch.nn.functional.normalize(text.float(), dim=-1)  # [1, D]
            scale = self.model.logit_scale.exp().float() if self.scale is None else self.scale
            scores = []
            for start in range(0, count, batch_size):
                pixels = preprocess(frames[start : start + batch_size], self.input_size).to(
                    self.device, dtype
                )
                image = self.model.get_image_features(pixel_values=pixels)
                image = getattr(image, "pooler_output", image)
                image = torch.nn.functional.normalize(image.float(), dim=-1)  # [B, D]
                scores.append(scale * (image @ text.T).squeeze(-1))
        return torch.cat(scores).float()

    def __repr__(self) -> str:
        return f"ClipReward(name={self.name!r}, device={self.device})"


def _snapshot_from_hf_cache(repo: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, local_files_only=True)
    except Exception:  # not in the local cache; nothing is downloaded
        return None


def _local_folder(value, env: str, repo: str, what: str) -> Path:
    source = "argument"
    if value is None and os.environ.get(env):
        value, source = os.environ[env], f"${env}"
    if value is None:
        value, source = _snapshot_from_hf_cache(repo), "Hugging Face cache"
    if value is None:
        raise RewardError(
            f"{what} not found (no argument, ${env} unset, {repo} not in the local Hugging Face cache); "
            f"expected a local folder: save {repo} with from_pretrained(...).save_pretrained(DIR) on a machine "
            f"with network, then pass it or set ${env}"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise RewardError(
            f"{what} {str(path)!r} (from {source}) is not a folder; expected a saved {repo} folder"
        )
    return path


def _load_clip(
    folder: Path, tokenizer_folder: Path, what: str, device, dtype
) -> tuple[CLIPModel, CLIPTokenizer]:
    try:
        model = CLIPModel.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise RewardError(
            f"{what} could not be loaded from {str(folder)!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:100]}); "
            "expected a CLIPModel folder with config.json, weights and tokenizer files"
        ) from None
    return model.to(device), tokenizer


def load_clip(
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ClipReward:
    """CLIP score (100 * cos) from a local CLIPModel folder (default $RENEG_CLIP_MODEL, then the HF cache
    of openai/clip-vit-large-patch14)."""
    folder = _local_folder(model, ENV_CLIP, CLIP_REPO, "CLIP model")
    clip, tokenizer = _load_clip(folder, folder, "CLIP model", device, dtype)
    return ClipReward(clip, tokenizer, "clip", CLIP_SCORE_SCALE, batch_size)


def load_pickscore(
    model: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ClipReward:
    """PickScore (exp(logit_scale) * cos) from local folders (defaults: $RENEG_PICKSCORE_MODEL and
    $RENEG_PICKSCORE_TOKENIZER, then the HF cache of yuvalkirstain/PickScore_v1 and laion/CLIP-ViT-H-14)."""
    folder = _local_folder(model, ENV_PICKSCORE, PICKSCORE_REPO, "PickScore model")
    tok_folder = _local_folder(
        tokenizer, ENV_PICKSCORE_TOKENIZER, PICKSCORE_TOKENIZER_REPO, "PickScore tokenizer"
    )
    clip, tok = _load_clip(folder, tok_folder, "PickScore model", device, dtype)
    return ClipReward(clip, tok, "pickscore", None, batch_size)


# ---- tiny-clip: a tiny random CLIPModel with a generated byte-level tokenizer, no files ------------------

TINY_SEED = 0
TINY_WIDTH = 32


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table (the base alphabet of CLIP's BPE)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A CLIPTokenizer over single bytes (no merges): spells any prompt, built offline."""
    chars = list(_bytes_to_unicode().values())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory(prefix="reneg-tiny-clip-") as tmp:
        vocab, merges = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab.write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
        merges.write_text("#version: 0.2\n")
        # model_max_length is not in the files; without it tokenizing fails (FACTS.md).
        return CLIPTokenizer(str(vocab), str(merges), model_max_length=CLIP_TOKENS)


def load_tiny_clip(
    *, seed: int = TINY_SEED, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
) -> ClipReward:
    """A tiny random CLIPModel scored like `clip` (100 * cos). Its scores are NOISE: for tests and demos."""
    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": TINY_WIDTH, "intermediate_size": 2 * TINY_WIDTH,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": CLIP_TOKENS,
            "bos_token_id": len(tokenizer) - 2, "eos_token_id": len(tokenizer) - 1, "pad_token_id": len(tokenizer) - 1,
        },
        vision_config={
            "hidden_size": TINY_WIDTH, "intermediate_size": 2 * TINY_WIDTH, "num_hidden_layers": 2,
            "num_attention_heads": 4, "image_size": 224, "patch_size": 32,
        },
        projection_dim=TINY_WIDTH,
    )  # fmt: skip
    model = perturb_(CLIPModel(config), seed)
    return ClipReward(model.to(device), tokenizer, "tiny-clip", CLIP_SCORE_SCALE, batch_size)
