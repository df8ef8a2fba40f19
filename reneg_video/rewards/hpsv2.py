"""HPS v2 / v2.1 (Human Preference Score v2, Wu et al. 2023) on transformers' `CLIPModel`, local weights.

HPS v2 is OpenCLIP ViT-H/14 fine-tuned on human preferences; the released `HPS_v2_compressed.pt` and
`HPS_v2.1_compressed.pt` hold `{"state_dict": <open_clip state dict>}`. The score of a frame is
100 * cos(image features, text features) of the fine-tuned model: the units of HPS v2's benchmark
(hpsv2/evaluation.py multiplies by 100; `hpsv2.score()` itself returns the cosine, ours / 100).

Why `CLIPModel` and not open_clip_torch: the weights map onto transformers' maintained CLIP classes by
renames (`openclip.convert_state_dict`), so the package gains no dependency (open_clip_torch pulls in
torchvision and timm, and torchvision does not import beside the CPU torch here), and the stand-in needs
nothing either. `scripts/parity_hpsv2.py` checks the scores against hpsv2 1.2.0's own code.

Pre-processing follows HPS v2's `preprocess_val` (create_model_and_transforms(light_augmentation=True)):
RGB, to float [0, 1], resize the LONGER side to 224 with bicubic interpolation (torchvision's tensor
resize, antialiased), pad to 224 x 224 with 0 (left/top get half the padding, rounded down), CLIP
mean/std. It letterboxes instead of centre-cropping, so it differs from `frames.preprocess`.

Shape legend: F frames, B frames in one batch, S = 224, E = 1024 (embedding width), L = 77 tokens.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPTokenizer

from ..core.errors import RewardError
from . import openclip
from .clip import _snapshot_from_hf_cache, tiny_clip_tokenizer
from .cosine import CosineReward
from .files import Fallback, hf_cache, resolve_local
from .frames import Frames, _normalise
from .imagereward import DEFAULT_BATCH_SIZE, _from_hf_cache, perturb_

# HPS v2 benchmark units: 100 * cosine (hpsv2/evaluation.py, `image_features @ text_features.T * 100`).
HPS_SCALE = 100.0
# OpenCLIP ViT-H-14 (open_clip model_configs/ViT-H-14.json): vision width 1280 in 32 layers with head
# width 80 (16 heads), patch 14 at 224 px; text width 1024, 24 layers, 16 heads, 77 tokens; embed 1024.
IMAGE_SIZE = 224
VISION_WIDTH = 1280
VISION_HEADS = 1280 // 80
TEXT_WIDTH = 1024
TEXT_HEADS = 1024 // 64
EMBED_DIM = 1024
PATCH = 14

HF_REPO = "xswu/HPSv2"
# Tried in this order in the local Hugging Face cache: the newer release first.
HF_CHECKPOINTS = ("HPS_v2.1_compressed.pt", "HPS_v2_compressed.pt")
HF_TOKENIZER_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
# Installed packages that ship CLIP's BPE file next to their tokenizer (found without importing them).
BPE_PACKAGES = (("open_clip", ""), ("clip", ""), ("hpsv2", "src/open_clip"))
ENV_CHECKPOINT = "RENEG_HPSV2_CKPT"
ENV_TOKENIZER = "RENEG_HPSV2_TOKENIZER"


def _to_float_frames(frames: Frames) -> list[torch.Tensor]:
    """Checked frames -> float [1, 3, H, W] tensors in [0, 1] (PIL and uint8 as torchvision's ToTensor)."""
    if isinstance(frames, torch.Tensor):
        return [frames]
    if isinstance(frames, np.ndarray):
        return [torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)]
    out = []
    for image in frames:
        array = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float().div_(255.0))
    return out


def letterbox(pixels: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Float [B, 3, H, W] in [0, 1] -> [B, 3, S, S]: longer side to S (bicubic, antialiased, no clamp),
    zero padding around, as HPS v2's `ResizeMaxSize`; differentiable."""
    height, width = pixels.shape[-2:]
    scale = size / max(height, width)
    # Python's round, as the reference (`round(dim * scale)`).
    new_h, new_w = round(height * scale), round(width * scale)
    if (new_h, new_w) != (height, width):
        pixels = F.interpolate(
            pixels, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        )
    pad_h, pad_w = size - new_h, size - new_w
    return F.pad(pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)


def preprocess_hps(frames: Frames, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Any accepted input (already checked) -> normalised [F, 3, S, S], HPS v2's `preprocess_val`."""
    return torch.cat([_normalise(letterbox(chunk, size)) for chunk in _to_float_frames(frames)])


class HpsReward(CosineReward):
    """`score_frames(frames, prompt) -> Tensor[F]`: 100 * cos(image, text) of the HPS v2 model, with
    OpenCLIP's tokens (no attention mask) and HPS v2's letterboxed pixels.

    The model is frozen; gradients flow to float frame tensors that require them.
    """

    def __init__(
        self, model: CLIPModel, tokenizer: CLIPTokenizer, name: str, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        super().__init__(model, tokenizer, name, scale=HPS_SCALE, batch_size=batch_size)

    def text_inputs(self, prompt: str) -> dict[str, torch.Tensor]:
        return {"input_ids": openclip.open_clip_tokens(self.tokenizer, prompt, self.context)}

    def pixels(self, frames: Frames) -> torch.Tensor:
        return preprocess_hps(frames, self.input_size)


# ---- files ---------------------------------------------------------------------------------------------


def _cached_checkpoint() -> str | None:
    return next((path for name in HF_CHECKPOINTS if (path := _from_hf_cache(HF_REPO, name))), None)


def resolve_checkpoint(value: str | os.PathLike[str] | None = None) -> Path:
    """The HPS v2 checkpoint: the argument, else $RENEG_HPSV2_CKPT, else the local HF cache of xswu/HPSv2."""
    return resolve_local(
        value, what="HPS v2 checkpoint", env=ENV_CHECKPOINT, kind="file", give="pass hps_checkpoint=",
        how=f"download {' or '.join(HF_CHECKPOINTS)} from the Hugging Face repo {HF_REPO}",
        fallbacks=[hf_cache(_cached_checkpoint)],
    )  # fmt: skip


def _bpe_in_installed_packages() -> Path | None:
    for package, sub in BPE_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)  # finds a top-level package without running it
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin:
            candidate = Path(spec.origin).parent / sub / openclip.BPE_FILE
            if candidate.is_file():
                return candidate
    return None


def resolve_tokenizer(value: str | os.PathLike[str] | None = None) -> Path:
    """The CLIP tokenizer: a CLIPTokenizer folder or CLIP's BPE .txt.gz, from the argument, else
    $RENEG_HPSV2_TOKENIZER, else the HF cache of laion/CLIP-ViT-H-14-laion2B-s32B-b79K, else the BPE file
    inside an installed open_clip_torch, clip-anytorch or hpsv2."""
    return resolve_local(
        value, what="HPS v2 tokenizer", env=ENV_TOKENIZER, kind="file or folder", give="pass hps_tokenizer=",
        how=f"CLIP's {openclip.BPE_FILE} (inside open_clip_torch or clip-anytorch) or a saved CLIPTokenizer "
        f"folder of {HF_TOKENIZER_REPO}",
        fallbacks=[
            hf_cache(lambda: _snapshot_from_hf_cache(HF_TOKENIZER_REPO)),
            Fallback("an installed package", "in no installed package", _bpe_in_installed_packages),
        ],
    )  # fmt: skip


def make_tokenizer(path: Path) -> CLIPTokenizer:
    if path.is_file():
        return openclip.bpe_tokenizer(path)
    try:
        return CLIPTokenizer.from_pretrained(
            str(path), local_files_only=True, model_max_length=openclip.CLIP_TOKENS
        )
    except (OSError, ValueError, TypeError) as exc:
        raise RewardError(
            f"tokenizer folder {str(path)!r} could not be read ({type(exc).__name__}); expected a CLIPTokenizer "
            f"folder (vocab.json + merges.txt) or CLIP's {openclip.BPE_FILE}"
        ) from None


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """An open_clip state dict from `path`: `{"state_dict": ...}` (HPS v2's release), a plain state dict
    (.pt/.pth/.bin, read weights-only) or a .safetensors file."""
    what = "an HPS v2 checkpoint (HPS_v2_compressed.pt: {'state_dict': <open_clip state dict>})"
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            # weights_only: a pickle asking to build anything but tensors is refused before it runs.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RewardError(
            f"checkpoint {str(path)!r} could not be read as weights-only tensors ({type(exc).__name__}); "
            f"expected {what}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise RewardError(
            f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors; expected {what}"
        )
    return state


def build_model(state: dict[str, torch.Tensor], source: str) -> CLIPModel:
    """A `CLIPModel` holding the weights of an OpenCLIP ViT-H-14 state dict (depth read from the file)."""
    state = openclip.strip_prefix(state)
    dims = openclip.read_dims(state, source)
    real = {"vision width": (dims.vision_width, VISION_WIDTH), "text width": (dims.text_width, TEXT_WIDTH),
            "embedding width": (dims.embed_dim, EMBED_DIM), "patch": (dims.patch_size, PATCH),
            "image size": (dims.image_size, IMAGE_SIZE)}  # fmt: skip
    for what, (got, want) in real.items():
        if got != want:
            raise RewardError(
                f"{source} has {what} {got}; expected OpenCLIP ViT-H-14's {want}: is this an HPS v2 checkpoint?"
            )
    converted = openclip.convert_state_dict(state, source)
    model = CLIPModel(openclip.clip_config(dims, VISION_HEADS, TEXT_HEADS, "gelu"))
    openclip.load_into(model, converted, source)
    return model


def load_hpsv2(
    hps_checkpoint: str | os.PathLike[str] | None = None,
    hps_tokenizer: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> HpsReward:
    """HPS v2 or v2.1 from local files (see `resolve_checkpoint`, `resolve_tokenizer`); nothing is downloaded.

    The arguments carry an `hps_` prefix so that, in an ensemble, ImageReward's `checkpoint=` and
    `tokenizer=` do not reach this loader too."""
    path = resolve_checkpoint(hps_checkpoint)
    tokenizer = make_tokenizer(resolve_tokenizer(hps_tokenizer))
    model = build_model(read_checkpoint(path), str(path))
    rows = model.config.text_config.vocab_size
    if len(tokenizer) > rows:
        raise RewardError(
            f"the tokenizer has {len(tokenizer)} tokens, {str(path)!r} embeds {rows}; expected CLIP's tokenizer "
            f"({openclip.CLIP_VOCAB} tokens) for an HPS v2 checkpoint"
        )
    return HpsReward(model.to(device=device, dtype=dtype), tokenizer, "hpsv2", batch_size)


# ---- tiny-hpsv2: ViT-H-14's widths at reduced depth, seeded random weights, no files ----------------------

TINY_SEED = 0
# Reduced from ViT-H-14: 1 vision block of 32, 1 text block of 24, and a 514-token byte-level vocabulary
# instead of 49408 BPE tokens (the real embedding table alone is 50.6 M parameters). Widths, heads,
# patch, image size and context are the real ones.
TINY_VISION_LAYERS = 1
TINY_TEXT_LAYERS = 1


def tiny_dims(vocab_size: int) -> openclip.OpenClipDims:
    return openclip.OpenClipDims(
        vision_width=VISION_WIDTH, vision_layers=TINY_VISION_LAYERS, vision_ffn=4 * VISION_WIDTH,
        patch_size=PATCH, image_size=IMAGE_SIZE, text_width=TEXT_WIDTH, text_layers=TINY_TEXT_LAYERS,
        text_ffn=4 * TEXT_WIDTH, vocab_size=vocab_size, context_length=openclip.CLIP_TOKENS, embed_dim=EMBED_DIM,
    )  # fmt: skip


def load_tiny_hpsv2(
    *, seed: int = TINY_SEED, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
) -> HpsReward:
    """HPS v2's architecture (ViT-H-14 widths, 1 + 1 blocks) with seeded random weights, scored and
    pre-processed like `hpsv2`. Its scores are NOISE: for tests and demos only."""
    tokenizer = tiny_clip_tokenizer()
    model = perturb_(
        CLIPModel(openclip.clip_config(tiny_dims(len(tokenizer)), VISION_HEADS, TEXT_HEADS)), seed
    )
    return HpsReward(model.to(device), tokenizer, "tiny-hpsv2", batch_size)


__all__ = ["HpsReward", "letterbox", "load_hpsv2", "load_tiny_hpsv2", "preprocess_hps", "resolve_checkpoint"]
