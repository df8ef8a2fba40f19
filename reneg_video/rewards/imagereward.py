"""ImageReward (Xu et al., NeurIPS 2023) on transformers' maintained BLIP classes.

The official checkpoint `ImageReward.pt` is a plain state dict of the `ImageReward` module of the
`image-reward` package: `blip.visual_encoder.*` (BLIP ViT-L/16), `blip.text_encoder.*` (BERT with
cross-attention, "MED"), `mlp.layers.*` (the score head). The reference package no longer imports
under transformers 5, so the same weights are mapped, by renames only, onto `BlipVisionModel` and
`BlipTextModel(add_pooling_layer=False)`; scores match the reference (see docs/rewards.md).

Score of one frame: ViT tokens -> BERT over the prompt (35 tokens) cross-attending to them -> feature
of the [CLS] token -> MLP 768-1024-128-64-16-1 (no activations) -> (r - mean) / std.

The forward pass is written here over the parameters of those modules (their own forwards stay as the
reference path, `forward_transformers`), because transformers' BLIP attention is a hand-written
softmax(QK^T)V without an SDPA path. Ours: `F.scaled_dot_product_attention`; the prompt's padding tokens
dropped (they are masked out of every attention, so the unpadded tokens and the [CLS] feature are the same
math); the part before the first cross-attention (embeddings, layer 0's self-attention, its cross-attention
query) run once for the prompt instead of once per frame; and on CPU without autograd or autocast the
linears run through oneDNN with the GELU or residual add fused (`onednn_linears`). Scores stay those of the
reference up to float32 rounding (docs/benchmarks.md, "Frame scoring on CPU").

Shape legend: F frames, B frames in one batch, L prompt tokens (35, P of them not padding), N vision tokens
(197), D width, H heads, Dh head width.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertTokenizer, BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

from ..core.errors import RewardError
from .files import hf_cache, resolve_local
from .frames import Frames, check_frames, preprocess

# Score normalisation of ImageReward v1.0: `self.mean` / `self.std` in image-reward 1.5,
# ImageReward/ImageReward.py (ImageReward.__init__), applied as (r - mean) / std.
SCORE_MEAN = 0.16717362830052426
SCORE_STD = 1.0333394966054072
# The reference tokenises with padding="max_length", truncation=True, max_length=35 (ImageReward.score).
PROMPT_TOKENS = 35
# BLIP "large" ViT (BLIP/models/blip.py create_vit): ViT-L/16 at 224 px, width 1024, 24 blocks, 16 heads,
# mlp_ratio 4; timm-style LayerNorm(eps=1e-6) (vit.py `partial(nn.LayerNorm, eps=1e-6)`).
IMAGE_SIZE = 224
VIT_PATCH = 16
VIT_WIDTH = 1024
VIT_LAYERS = 24
VIT_HEADS = 16
VIT_FFN = 4096
VIT_LN_EPS = 1e-6
# Score head (ImageReward.MLP): Linear widths and the dropouts between them; mlp.layers.{0,2,4,6,7} are
# the Linear layers, {1,3,5} dropouts, and there is no activation anywhere (the ReLUs are commented out).
HEAD_WIDTHS = (768, 1024, 128, 64, 16, 1)
HEAD_DROPOUTS = (0.2, 0.2, 0.1)
# The reference tokenizer is bert-base-uncased plus two added special tokens (blip.py init_tokenizer),
# which is why the text embedding table has 30524 rows.
TOKENIZER_BOS = "[DEC]"
TOKENIZER_ENC = "[ENC]"
DEFAULT_BATCH_SIZE = 8
# Autocast dtypes `autocast=` accepts. bfloat16 halves the CPU time where the CPU has bf16 dot products
# (avx512_bf16 / AMX) but moves scores by up to ~0.03 (docs/benchmarks.md): off by default, so the scores
# stay those of the reference.
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}

HF_REPO = "THUDM/ImageReward"
HF_CHECKPOINT = "ImageReward.pt"
HF_MED_CONFIG = "med_config.json"
HF_TOKENIZER_REPOS = ("google-bert/bert-base-uncased", "bert-base-uncased")
ENV_CHECKPOINT = "RENEG_IMAGEREWARD_CKPT"
ENV_MED_CONFIG = "RENEG_IMAGEREWARD_MED_CONFIG"
ENV_TOKENIZER = "RENEG_IMAGEREWARD_TOKENIZER"

# Official key -> this module's key. Order matters: the first match wins.
_KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^blip\.visual_encoder\.cls_token$", "vision.embeddings.class_embedding"),
    (r"^blip\.visual_encoder\.pos_embed$", "vision.embeddings.position_embedding"),
    (r"^blip\.visual_encoder\.patch_embed\.proj\.", "vision.embeddings.patch_embedding."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.norm([12])\.", r"vision.encoder.layers.\1.layer_norm\2."),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.qkv\.", r"vision.encoder.layers.\1.self_attn.qkv."),
    (
        r"^blip\.visual_encoder\.blocks\.(\d+)\.attn\.proj\.",
        r"vision.encoder.layers.\1.self_attn.projection.",
    ),
    (r"^blip\.visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.", r"vision.encoder.layers.\1.mlp.\2."),
    (r"^blip\.visual_encoder\.norm\.", "vision.post_layernorm."),
    (r"^blip\.text_encoder\.", "text."),
    (r"^mlp\.layers\.", "head."),
)
# Keys of the official checkpoint that scoring does not use: BLIP's contrastive projections and the
# text embeddings' position_ids buffer (a non-persistent buffer in transformers).
_UNUSED_KEYS = re.compile(r"^blip\.(vision_proj|text_proj)\.|^blip\.text_encoder\.embeddings\.position_ids$")


def build_head(
    widths: tuple[int, ...] = HEAD_WIDTHS, dropouts: tuple[float, ...] = HEAD_DROPOUTS
) -> nn.Sequential:
    """The score head with the official layer indices: Linear, Dropout, Linear, Dropout, Linear, Dropout,
    Linear, Linear."""
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(dropouts):
            layers.append(nn.Dropout(dropouts[i]))
    return nn.Sequential(*layers)


class ImageRewardModel(nn.Module):
    """BLIP ViT + cross-attending BERT + score head. Input: normalised pixels [B, 3, S, S]."""

    def __init__(
        self, vision_config: BlipVisionConfig, text_config: BlipTextConfig, head_widths: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        self.head = build_head(head_widths)

    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """pixels [B, 3, S, S], input_ids/attention_mask [1, L] -> normalised scores [B]."""
        fused = onednn_linears(pixels)
        image_embeds = vision_forward(self.vision, pixels, fused)  # [B, N, Dv]
        features = text_cls_forward(self.text, input_ids, attention_mask, image_embeds, fused)  # [B, Dt]
        return self._score(features)

    def forward_transformers(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The same scores through transformers' own BLIP forwards (eager attention, padded prompt, every
        frame running the whole text side): the path that matched image-reward 1.5 with a difference of 0.0;
        kept as the reference the tests hold `forward` to."""
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state  # [B, N, Dv]
        batch = image_embeds.shape[0]
        image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)
        text = self.text(
            input_ids=input_ids.expand(batch, -1),
            attention_mask=attention_mask.expand(batch, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        ).last_hidden_state  # [B, L, Dt]
        return self._score(text[:, 0, :])

    def _score(self, features: torch.Tensor) -> torch.Tensor:
        # The head stays float32 under an autocast: its 5 matmuls are cheap, and the score keeps its precision.
        with torch.autocast(features.device.type, enabled=False):
            reward = self.head(features.float()).squeeze(-1)  # [B]
        return (reward - SCORE_MEAN) / SCORE_STD


# ---- the forward pass over transformers' BLIP modules ------------------------------------------------------
# Eval-only: dropout is left out (the reward model is frozen in eval mode, where every dropout is identity).

# oneDNN's fp32 matmul (brgemm, plain weight layout, so no second copy of the weights) ran the ViT-L and
# BERT linears 1.05-1.6x faster than torch's default MKL sgemm on this workplace's AMD AVX2 CPUs
# (interleaved micro-benchmarks, docs/benchmarks.md), and it fuses the GELU and the residual add into the
# matmul. Its ops have no autograd formula and do not autocast, hence the conditions in `onednn_linears`.
# Module-level so that a test (or a user) can switch it off.
USE_ONEDNN = True


def _onednn_ops_present() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):  # a build without the mkldnn op namespace
        return False


ONEDNN_PRESENT = _onednn_ops_present()


def onednn_linears(x: torch.Tensor) -> bool:
    """Whether this call's linears may run through oneDNN: float32 CPU tensors, no autograd, no autocast."""
    return (
        USE_ONEDNN
        and ONEDNN_PRESENT
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
    )


def linear(
    x: torch.Tensor,
    layer: nn.Linear,
    fused: bool,
    *,
    gelu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """layer(x), then exact (erf) GELU or `+ residual` if asked; one fused oneDNN call when `fused`."""
    if fused:
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
        # algorithm "none" is the erf GELU (nn.GELU's default), "tanh" would be the approximation.
        attr, algorithm = ("gelu", "none") if gelu else ("none", "")
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, attr, [], algorithm)
    out = F.linear(x, layer.weight, layer.bias)
    if gelu:
        out = F.gelu(out)
    return out if residual is None else out + residual


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, T, D] -> [B, H, T, Dh] (a view)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, T, Dh] -> [B, T, D]."""
    return x.transpose(1, 2).flatten(2)


def _exact_gelu(act: str) -> bool:
    # Only the erf GELU is fused; any other activation of a config runs unfused, through transformers' ACT2FN.
    return act == "gelu"


def vision_forward(vision: BlipVisionModel, pixels: torch.Tensor, fused: bool) -> torch.Tensor:
    """`BlipVisionModel(pixels).last_hidden_state` [B, N, Dv] with SDPA attention (pre-LN ViT blocks)."""
    config = vision.config
    fuse_gelu = fused and _exact_gelu(config.hidden_act)
    h = vision.embeddings(pixels)  # patch conv + [CLS] + positions: transformers' own code
    for layer in vision.encoder.layers:
        attn = layer.self_attn
        qkv = linear(layer.layer_norm1(h), attn.qkv, fused)  # [B, N, 3 Dv]
        q, k, v = (_heads(t, attn.num_heads) for t in qkv.chunk(3, dim=-1))
        context = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)  # [B, H, N, Dh]
        h = linear(_merge_heads(context), attn.projection, fused, residual=h)
        mlp = layer.mlp
        x = layer.layer_norm2(h)
        if fuse_gelu:
            x = linear(x, mlp.fc1, fused, gelu=True)
        else:
            x = mlp.activation_fn(linear(x, mlp.fc1, fused))
        h = linear(x, mlp.fc2, fused, residual=h)
    return vision.post_layernorm(h)


def _prompt_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Drop the padding at the end of a [1, L] prompt: (ids [1, P], None). A mask with holes inside (not
    what `ImageReward.tokenize` makes) keeps all L tokens and returns a boolean key mask [1, 1, 1, L]."""
    keep = attention_mask[0].bool()
    count = int(keep.sum())
    if bool(keep[:count].all()):
        return input_ids[:, :count], None
    return input_ids, keep.view(1, 1, 1, -1)


def text_cls_forward(
    text: BlipTextModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_embeds: torch.Tensor,
    fused: bool,
) -> torch.Tensor:
    """The [CLS] feature [B, Dt] of `BlipTextModel` (bidirectional, cross-attending to image_embeds [B, N,
    Dv]) for one prompt input_ids/attention_mask [1, L], with SDPA attention (post-LN BERT layers).

    Until the first cross-attention nothing depends on the image, so the embeddings, layer 0's
    self-attention and its cross-attention query run at batch 1 and are broadcast to the B frames.
    """
    if input_ids.shape[0] != 1:
        raise RewardError(f"input_ids have batch {input_ids.shape[0]}; expected one prompt [1, L]")
    config = text.config
    heads = config.num_attention_heads
    fuse_gelu = fused and _exact_gelu(config.hidden_act)
    ids, key_mask = _prompt_tokens(input_ids, attention_mask)
    batch = image_embeds.shape[0]
    h = text.embeddings(input_ids=ids)  # [1, P, Dt], then [B, P, Dt] after the first cross-attention
    for layer in text.encoder.layer:
        sa, out = layer.attention.self, layer.attention.output
        q, k, v = (_heads(linear(h, proj, fused), heads) for proj in (sa.query, sa.key, sa.value))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # scale 1/sqrt(Dh), as BERT
        h = out.LayerNorm(linear(_merge_heads(context), out.dense, fused, residual=h))
        ca, out = layer.crossattention.self, layer.crossattention.output
        q = _heads(linear(h, ca.query, fused), heads).expand(batch, -1, -1, -1)
        k, v = (_heads(linear(image_embeds, proj, fused), heads) for proj in (ca.key, ca.value))
        context = F.scaled_dot_product_attention(q, k, v)  # every vision token is attended: no mask
        h = h.expand(batch, -1, -1).contiguous() if h.shape[0] != batch else h
        h = out.LayerNorm(linear(_merge_heads(context), out.dense, fused, residual=h))
        inter, out = layer.intermediate, layer.output
        if fuse_gelu:
            x = linear(h, inter.dense, fused, gelu=True)
        else:
            x = inter.intermediate_act_fn(linear(h, inter.dense, fused))
        h = out.LayerNorm(linear(x, out.dense, fused, residual=h))
    return h[:, 0, :]


def vision_config_official() -> BlipVisionConfig:
    return BlipVisionConfig(
        hidden_size=VIT_WIDTH,
        intermediate_size=VIT_FFN,
        num_hidden_layers=VIT_LAYERS,
        num_attention_heads=VIT_HEADS,
        image_size=IMAGE_SIZE,
        patch_size=VIT_PATCH,
        layer_norm_eps=VIT_LN_EPS,
        hidden_act="gelu",
    )


def text_config_from_med(med: Mapping[str, object], encoder_width: int) -> BlipTextConfig:
    """BlipTextConfig from ImageReward's `med_config.json` (a BertConfig). BLIP overwrites its
    `encoder_width` with the ViT width at build time, so the file's value is ignored."""
    try:
        return BlipTextConfig(
            vocab_size=int(med["vocab_size"]),
            hidden_size=int(med["hidden_size"]),
            encoder_hidden_size=encoder_width,
            intermediate_size=int(med["intermediate_size"]),
            num_hidden_layers=int(med["num_hidden_layers"]),
            num_attention_heads=int(med["num_attention_heads"]),
            max_position_embeddings=int(med["max_position_embeddings"]),
            hidden_act=str(med.get("hidden_act", "gelu")),
            layer_norm_eps=float(med.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(med.get("pad_token_id", 0)),
            # is_decoder=True makes transformers build the cross-attention blocks; the forward pass runs
            # bidirectionally (is_decoder=False is the forward default), as the reference does.
            is_decoder=True,
            # Generation-only ids; scoring never uses them (the defaults fall outside a tiny vocabulary).
            bos_token_id=None,
            eos_token_id=None,
            sep_token_id=None,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RewardError(
            f"med_config lacks or mangles {exc}; expected ImageReward's med_config.json (a BERT config "
            f"with vocab_size, hidden_size, ...): get it from the Hugging Face repo {HF_REPO}"
        ) from None


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official ImageReward state dict to `ImageRewardModel` keys; refuse unknown keys."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if _UNUSED_KEYS.search(key):
            continue
        for pattern, replacement in _KEY_RENAMES:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                out[new_key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise RewardError(
            f"checkpoint has {len(unknown)} keys that are not ImageReward's (first: {unknown[0]!r}); "
            "expected an official ImageReward.pt state dict (blip.visual_encoder.*, blip.text_encoder.*, mlp.layers.*)"
        )
    return out


def load_official_weights(
    model: ImageRewardModel, state_dict: Mapping[str, torch.Tensor], source: str
) -> None:
    """Load an official-format state dict into `model`; every parameter must be covered, shapes must match."""
    converted = convert_official_state_dict(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise RewardError(
            f"{source} lacks {len(missing)} ImageReward weights (first: {missing[0]!r}); "
            "expected a complete official ImageReward.pt"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise RewardError(
                f"{source}: weight {key!r} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(expected[key].shape)}; does med_config.json belong to this checkpoint?"
            )
    model.load_state_dict(converted, strict=True)


def make_tokenizer(folder: str | os.PathLike[str]) -> BertTokenizer:
    """BERT tokenizer from a local folder (vocab.txt or tokenizer.json), plus ImageReward's two added tokens."""
    try:
        tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise RewardError(
            f"tokenizer folder {str(folder)!r} could not be read ({type(exc).__name__}); expected a "
            "bert-base-uncased folder with vocab.txt: save one with BertTokenizer.from_pretrained("
            "'bert-base-uncased').save_pretrained(DIR) on a machine with network"
        ) from None
    tokenizer.add_special_tokens({"bos_token": TOKENIZER_BOS})
    tokenizer.add_tokens([TOKENIZER_ENC], special_tokens=True)
    return tokenizer


class ImageReward:
    """The `Reward` for ImageReward: `score_frames(frames, prompt) -> Tensor[F]` (higher is better).

    The model is frozen (no parameter needs a gradient) and in eval mode; gradients flow to float frame
    tensors that require them, so a trainer can back-propagate the score into generated frames.
    `autocast` ("bfloat16", "float16" or None): run the model under `torch.autocast` in that dtype (faster,
    not bit-exact; the score head and the returned scores stay float32).
    """

    input_size = IMAGE_SIZE

    def __init__(
        self,
        model: ImageRewardModel,
        tokenizer: BertTokenizer,
        name: str = "imagereward",
        batch_size: int = DEFAULT_BATCH_SIZE,
        autocast: str | None = None,
    ) -> None:
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise RewardError(
                f"autocast {autocast!r}: unknown; expected None or one of {', '.join(AUTOCAST_DTYPES)}"
            )
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size
        self.autocast = autocast

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def tokenize(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt -> input_ids, attention_mask [1, 35], as the reference (pad to 35, truncate)."""
        if not isinstance(prompt, str):
            raise RewardError(f"prompt is a {type(prompt).__name__}; expected a str")
        tokens = self.tokenizer(
            prompt, padding="max_length", truncation=True, max_length=PROMPT_TOKENS, return_tensors="pt"
        )
        return tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)

    def score_frames(self, frames: Frames, prompt: str, *, batch_size: int | None = None) -> torch.Tensor:
        """Score each frame against `prompt`: float32 [F] on the model's device.

        frames: list of PIL images, uint8 numpy [F, H, W, 3], or float tensor [F, 3, H, W] in [0, 1]
        (differentiable). Frames run through the model `batch_size` at a time; the prompt is tokenised once.
        """
        count = check_frames(frames)
        batch_size = batch_size or self.batch_size
        if batch_size < 1:
            raise RewardError(f"batch_size is {batch_size}; expected a positive integer")
        input_ids, attention_mask = self.tokenize(prompt)
        needs_grad = isinstance(frames, torch.Tensor) and frames.requires_grad and torch.is_grad_enabled()
        # inference_mode is faster and lighter, but its tensors cannot enter autograd: use it only without grad.
        context = contextlib.nullcontext() if needs_grad else torch.inference_mode()
        cast = (
            torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.autocast])
            if self.autocast
            else contextlib.nullcontext()
        )
        scores = []
        with context, cast:
            for start in range(0, count, batch_size):
                chunk = frames[start : start + batch_size]
                pixels = preprocess(chunk, self.input_size).to(self.device, self.dtype)
                scores.append(self.model(pixels, input_ids, attention_mask))
        return torch.cat(scores).float()

    def __repr__(self) -> str:
        cast = f", autocast={self.autocast!r}" if self.autocast else ""
        return f"ImageReward(name={self.name!r}, device={self.device}, dtype={self.dtype}{cast})"


def _from_hf_cache(repo: str, filename: str) -> str | None:
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception:  # any failure means "not in the local cache"; nothing is downloaded
        return None


def _tokenizer_from_hf_cache() -> str | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    for repo in HF_TOKENIZER_REPOS:
        try:
            return snapshot_download(repo, local_files_only=True)
        except Exception:  # not cached under this name; try the next
            continue
    return None


@dataclass(frozen=True)
class ImageRewardFiles:
    checkpoint: Path
    med_config: Path
    tokenizer: Path


def resolve_files(
    checkpoint: str | os.PathLike[str] | None = None,
    med_config: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
) -> ImageRewardFiles:
    """Find the three inputs: explicit path, else environment variable, else the local HF cache.

    Nothing is downloaded. A missing file raises a one-line `RewardError` saying how to obtain it.
    """

    def download(name: str) -> str:
        return f"download {name} from the Hugging Face repo {HF_REPO}"

    return ImageRewardFiles(
        checkpoint=resolve_local(
            checkpoint, what="ImageReward checkpoint", env=ENV_CHECKPOINT, kind="file",
            how=download(HF_CHECKPOINT), give="pass its path",
            fallbacks=[hf_cache(lambda: _from_hf_cache(HF_REPO, HF_CHECKPOINT))],
        ),
        med_config=resolve_local(
            med_config, what="ImageReward med_config", env=ENV_MED_CONFIG, kind="file",
            how=download(HF_MED_CONFIG), give="pass its path",
            fallbacks=[hf_cache(lambda: _from_hf_cache(HF_REPO, HF_MED_CONFIG))],
        ),
        tokenizer=resolve_local(
            tokenizer, what="ImageReward tokenizer folder", env=ENV_TOKENIZER, kind="folder",
            how="save bert-base-uncased with BertTokenizer.from_pretrained('bert-base-uncased').save_pretrained(DIR)",
            give="pass its path", fallbacks=[hf_cache(_tokenizer_from_hf_cache)],
        ),
    )  # fmt: skip


def _read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        # weights_only: a pickle asking to build anything but tensors is refused before it runs.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RewardError(
            f"checkpoint {str(path)!r} could not be read as a weights-only torch state dict "
            f"({type(exc).__name__}); expected the official ImageReward.pt from {HF_REPO}"
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RewardError(
            f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors; "
            f"expected the official ImageReward.pt from {HF_REPO}"
        )
    return state


def _read_med_config(path: Path) -> dict:
    try:
        med = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RewardError(
            f"med_config {str(path)!r} is not readable JSON ({type(exc).__name__}); expected ImageReward's "
            f"med_config.json from {HF_REPO}"
        ) from None
    if not isinstance(med, dict):
        raise RewardError(f"med_config {str(path)!r} holds a {type(med).__name__}; expected a JSON object")
    return med


def load_imagereward(
    checkpoint: str | os.PathLike[str] | None = None,
    med_config: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = DEFAULT_BATCH_SIZE,
    autocast: str | None = None,
) -> ImageReward:
    """Load the real ImageReward v1.0 from local files (see `resolve_files`); nothing is downloaded.
    `autocast="bfloat16"`: about 2x faster on CPUs with bf16 dot products, scores not bit-exact."""
    files = resolve_files(checkpoint, med_config, tokenizer)
    med = _read_med_config(files.med_config)
    tok = make_tokenizer(files.tokenizer)
    state = _read_checkpoint(files.checkpoint)
    model = ImageRewardModel(vision_config_official(), text_config_from_med(med, VIT_WIDTH), HEAD_WIDTHS)
    load_official_weights(model, state, str(files.checkpoint))
    del state
    return ImageReward(model.to(device=device, dtype=dtype), tok, "imagereward", batch_size, autocast)


# ---- tiny-imagereward: the same architecture at tiny widths, seeded random weights, no files -------------

TINY_SEED = 0
TINY_WIDTH = 32
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_FFN = 64
TINY_HEAD_WIDTHS = (TINY_WIDTH, 64, 16, 8, 4, 1)
# Word pieces for the generated BERT vocabulary: enough to spell any lower-case ASCII prompt.
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_TINY_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "in",
    "on",
    "with",
    "to",
    "at",
    "by",
    "for",
    "from",
    "is",
    "are",
    "painting",
    "photo",
    "video",
    "of",
    "ocean",
    "sea",
    "sky",
    "cloud",
    "clouds",
    "bird",
    "birds",
    "day",
    "night",
    "time",
    "low",
    "depth",
    "field",
    "effect",
    "dog",
    "cat",
    "corgi",
    "surfing",
    "wave",
    "beach",
    "city",
    "street",
    "car",
    "tree",
    "forest",
    "mountain",
    "river",
    "snow",
    "sun",
    "moon",
    "person",
    "man",
    "woman",
    "child",
    "running",
    "walking",
    "flying",
    "red",
    "green",
    "blue",
    "white",
    "black",
    "yellow",
    "big",
    "small",
    "high",
    "quality",
    "beautiful",
]


def tiny_vocab() -> list[str]:
    """A deterministic BERT WordPiece vocabulary: specials, words, characters and '##' continuations."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)] + list(".,!?'-:;()")
    vocab = list(_BERT_SPECIALS)
    for token in [*dict.fromkeys(_TINY_WORDS), *chars, *(f"##{c}" for c in chars)]:
        if token not in vocab:
            vocab.append(token)
    return vocab


def tiny_tokenizer() -> BertTokenizer:
    """A BertTokenizer built offline from `tiny_vocab()` (no download), with ImageReward's added tokens."""
    with tempfile.TemporaryDirectory(prefix="reneg-tiny-vocab-") as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
        return make_tokenizer(tmp)


def perturb_(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter with seeded random values of a sensible scale, in place.

    Default inits make many outputs constant (zero biases, unit LayerNorms); random weights of this kind
    make each frame score differently, which tests and parity checks need.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            if param.ndim == 1 and name.endswith("weight"):  # LayerNorm gains stay near 1
                param.copy_(1.0 + 0.1 * noise)
            elif param.ndim <= 1:  # biases (and scalars such as CLIP's logit_scale)
                param.copy_(0.02 * noise)
            else:  # fan-in scaling keeps activations O(1) through the layers, so scores spread
                fan_in = param[0].numel() if param.ndim == 4 else param.shape[-1]
                param.copy_(noise / fan_in**0.5)
    return module


def load_tiny_imagereward(
    *,
    seed: int = TINY_SEED,
    device: str | torch.device = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    autocast: str | None = None,
) -> ImageReward:
    """ImageReward's architecture at tiny widths with seeded random weights. Its scores are NOISE:
    deterministic and differentiable, for tests and demos only, never for judging videos."""
    tokenizer = tiny_tokenizer()
    vision = BlipVisionConfig(
        hidden_size=TINY_WIDTH,
        intermediate_size=TINY_FFN,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS,
        image_size=IMAGE_SIZE,
        patch_size=VIT_PATCH,
        layer_norm_eps=VIT_LN_EPS,
    )
    text = text_config_from_med(
        {
            "vocab_size": len(tokenizer),
            "hidden_size": TINY_WIDTH,
            "intermediate_size": TINY_FFN,
            "num_hidden_layers": TINY_LAYERS,
            "num_attention_heads": TINY_HEADS,
            "max_position_embeddings": 64,
        },
        encoder_width=TINY_WIDTH,
    )
    model = perturb_(ImageRewardModel(vision, text, TINY_HEAD_WIDTHS), seed)
    return ImageReward(model.to(device), tokenizer, "tiny-imagereward", batch_size, autocast)
