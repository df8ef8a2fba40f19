"""OpenCLIP (and OpenAI CLIP) checkpoints on transformers' `CLIPModel`, and the CLIP BPE tokenizer offline.

OpenCLIP keeps OpenAI's state-dict layout: `visual.*` (conv1, class/positional embedding, ln_pre,
`transformer.resblocks.N` with a fused `attn.in_proj_*`, ln_post, proj) and the text tower at the top level
(token/positional embedding, `transformer.resblocks.N`, ln_final, text_projection, logit_scale). The same
weights map onto `CLIPModel` by renames, by splitting `in_proj` into q/k/v, and by transposing the two
projection matrices (open_clip multiplies `x @ proj`, transformers applies `Linear(x) = x @ W.T`).

Depths, widths, vocabulary and context are read from the weights' shapes; the head counts cannot be, so
the caller names them (they are part of the model config, e.g. ViT-H-14's vision head width 80).

Shape legend: Dv vision width, Dt text width, E embedding (projection) width, N = (S / P)^2 + 1 vision
tokens for image size S and patch P, V vocabulary, L context length (77).
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPTokenizer

from ..core.errors import RewardError
from .clip import _bytes_to_unicode

# CLIP's text tower has 77 positions (context_length=77 in OpenAI CLIP and OpenCLIP).
CLIP_TOKENS = 77
# OpenCLIP/OpenAI LayerNorm: torch's default eps.
OPEN_CLIP_LN_EPS = 1e-5
# The BPE file of OpenAI CLIP / OpenCLIP: its first line is a header, then merges; CLIP uses the first
# 49152 - 256 - 2 of them (clip/simple_tokenizer.py), so the vocabulary is 256 byte symbols + 256
# end-of-word symbols + 48894 merges + 2 specials = 49408.
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_MERGES = 49152 - 256 - 2
CLIP_VOCAB = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# OpenCLIP pads token ids with 0 after the end-of-text token (open_clip tokenizer.tokenize).
OPEN_CLIP_PAD_ID = 0

# OpenCLIP key -> CLIPModel key (after q/k/v splitting). Order matters: the first match wins.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^visual\.class_embedding$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.positional_embedding$", "vision_model.embeddings.position_embedding.weight"),
    (r"^visual\.conv1\.weight$", "vision_model.embeddings.patch_embedding.weight"),
    (r"^visual\.ln_pre\.", "vision_model.pre_layrnorm."),
    (r"^visual\.ln_post\.", "vision_model.post_layernorm."),
    (r"^visual\.transformer\.resblocks\.(\d+)\.", r"vision_model.encoder.layers.\1."),
    (r"^token_embedding\.weight$", "text_model.embeddings.token_embedding.weight"),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^transformer\.resblocks\.(\d+)\.", r"text_model.encoder.layers.\1."),
    (r"^ln_final\.", "text_model.final_layer_norm."),
    (r"^logit_scale$", "logit_scale"),
)
# Inside a residual block.
_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    (r"ln_1\.", "layer_norm1."),
    (r"ln_2\.", "layer_norm2."),
    (r"attn\.out_proj\.", "self_attn.out_proj."),
    (r"mlp\.c_fc\.", "mlp.fc1."),
    (r"mlp\.c_proj\.", "mlp.fc2."),
)
# Buffers some open_clip versions save: the causal text mask (rebuilt by transformers).
_SKIPPED = re.compile(r"^(attn_mask|visual\.attn_mask)$")


@dataclass(frozen=True)
class OpenClipDims:
    """What the weights' shapes say about an OpenCLIP ViT model."""

    vision_width: int
    vision_layers: int
    vision_ffn: int
    patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    text_ffn: int
    vocab_size: int
    context_length: int
    embed_dim: int


def strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` prefix a DistributedDataParallel training run leaves on every key."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def read_dims(state_dict: Mapping[str, torch.Tensor], source: str) -> OpenClipDims:
    """Read the architecture from an OpenCLIP state dict's shapes; refuse what is not one."""
    required = (
        "visual.conv1.weight",
        "visual.positional_embedding",
        "visual.proj",
        "token_embedding.weight",
        "positional_embedding",
        "text_projection",
    )
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise RewardError(
            f"{source} lacks {missing[0]!r}; expected an OpenCLIP state dict (visual.*, transformer.*, "
            "token_embedding, text_projection, ...), e.g. HPS_v2_compressed.pt"
        )

    def depth(prefix: str) -> int:
        found = {int(m.group(1)) for k in state_dict if (m := re.match(rf"^{prefix}(\d+)\.", k))}
        return max(found) + 1 if found else 0

    conv = state_dict["visual.conv1.weight"]  # [Dv, 3, P, P]
    tokens = state_dict["visual.positional_embedding"].shape[0]  # N
    patch = int(conv.shape[-1])
    grid = round((tokens - 1) ** 0.5)
    fc_v = state_dict.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
    fc_t = state_dict.get("transformer.resblocks.0.mlp.c_fc.weight")
    if fc_v is None or fc_t is None or grid * grid != tokens - 1:
        raise RewardError(
            f"{source} has no residual blocks or a non-square position table; expected an OpenCLIP ViT state dict"
        )
    return OpenClipDims(
        vision_width=int(conv.shape[0]),
        vision_layers=depth(r"visual\.transformer\.resblocks\."),
        vision_ffn=int(fc_v.shape[0]),
        patch_size=patch,
        image_size=grid * patch,
        text_width=int(state_dict["token_embedding.weight"].shape[1]),
        text_layers=depth(r"transformer\.resblocks\."),
        text_ffn=int(fc_t.shape[0]),
        vocab_size=int(state_dict["token_embedding.weight"].shape[0]),
        context_length=int(state_dict["positional_embedding"].shape[0]),
        embed_dim=int(state_dict["visual.proj"].shape[1]),
    )


def clip_config(
    dims: OpenClipDims, vision_heads: int, text_heads: int, hidden_act: str = "gelu"
) -> CLIPConfig:
    """`CLIPConfig` for these dims. `hidden_act`: "gelu" for OpenCLIP models, "quick_gelu" for OpenAI's."""
    common = {"hidden_act": hidden_act, "layer_norm_eps": OPEN_CLIP_LN_EPS, "projection_dim": dims.embed_dim}
    return CLIPConfig(
        text_config={
            **common,
            "vocab_size": dims.vocab_size,
            "hidden_size": dims.text_width,
            "intermediate_size": dims.text_ffn,
            "num_hidden_layers": dims.text_layers,
            "num_attention_heads": text_heads,
            "max_position_embeddings": dims.context_length,
            # The CLIP BPE vocabulary ends with the two specials; a smaller stand-in vocabulary too.
            "bos_token_id": dims.vocab_size - 2,
            "eos_token_id": dims.vocab_size - 1,
            "pad_token_id": OPEN_CLIP_PAD_ID,
        },
        vision_config={
            **common,
            "hidden_size": dims.vision_width,
            "intermediate_size": dims.vision_ffn,
            "num_hidden_layers": dims.vision_layers,
            "num_attention_heads": vision_heads,
            "image_size": dims.image_size,
            "patch_size": dims.patch_size,
        },
        projection_dim=dims.embed_dim,
    )


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """OpenCLIP keys -> `CLIPModel` keys: renames, q/k/v split, projections transposed; unknown keys refused."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in strip_prefix(state_dict).items():
        if _SKIPPED.match(key):
            continue
        if key == "visual.proj":  # [Dv, E], used as x @ proj
            out["visual_projection.weight"] = value.T.contiguous()
            continue
        if key == "text_projection":  # [Dt, E]
            out["text_projection.weight"] = value.T.contiguous()
            continue
        for pattern, replacement in _RENAMES:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                break
        else:
            unknown.append(key)
            continue
        block = re.match(r"^(.*\.layers\.\d+\.)(.*)$", new_key)
        if block:
            head, rest = block.groups()
            fused = re.match(r"^attn\.in_proj_(weight|bias)$", rest)
            if fused:  # [3D, D] / [3D], stacked q, k, v (torch MultiheadAttention)
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                    out[f"{head}self_attn.{name}.{fused.group(1)}"] = part.contiguous()
                continue
            for pattern, replacement in _BLOCK_RENAMES:
                rest, hits = re.subn(rf"^{pattern}", replacement, rest)
                if hits:
                    break
            else:
                unknown.append(key)
                continue
            new_key = head + rest
        out[new_key] = value
    if unknown:
        raise RewardError(
            f"{source} has {len(unknown)} keys that are not OpenCLIP ViT's (first: {unknown[0]!r}); "
            "expected a plain OpenCLIP CLIP state dict"
        )
    return out


def load_into(model: torch.nn.Module, converted: Mapping[str, torch.Tensor], source: str) -> None:
    """Load converted weights into a `CLIPModel`: every weight covered, shapes equal, values finite."""
    expected = model.state_dict()
    expected = {k: v for k, v in expected.items() if not k.endswith("position_ids")}
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if missing or extra:
        what = f"lacks {missing[0]!r}" if missing else f"has the unexpected weight {extra[0]!r}"
        raise RewardError(
            f"{source} {what} ({len(missing)} missing, {len(extra)} unexpected); expected a complete "
            "OpenCLIP ViT state dict"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise RewardError(
                f"{source}: weight {key!r} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(expected[key].shape)}; expected an OpenCLIP ViT state dict of this architecture"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise RewardError(f"{source}: weight {key!r} holds NaN or inf; the file is corrupt, get it again")
    model.load_state_dict(converted, strict=False)


def to_open_clip_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `convert_state_dict`: a `CLIPModel` state dict in OpenCLIP's layout (for parity
    scripts and for writing test checkpoints)."""
    inverse_blocks = [(new.rstrip("."), old.rstrip(".")) for old, new in (
        ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.out_proj.", "self_attn.out_proj."),
        ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."),
    )]  # fmt: skip
    out: dict[str, torch.Tensor] = {}
    fixed = {
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "logit_scale": "logit_scale",
    }
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        if key in fixed:
            out[fixed[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.T.contiguous()
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif key.startswith(("vision_model.pre_layrnorm.", "vision_model.post_layernorm.")):
            out[key.replace("vision_model.pre_layrnorm.", "visual.ln_pre.").replace(
                "vision_model.post_layernorm.", "visual.ln_post.")] = value  # fmt: skip
        elif key.startswith("text_model.final_layer_norm."):
            out[key.replace("text_model.final_layer_norm.", "ln_final.")] = value
        else:
            m = re.match(r"^(vision|text)_model\.encoder\.layers\.(\d+)\.(.*)$", key)
            if m is None:
                raise ValueError(f"unexpected CLIPModel key {key!r}")
            tower, index, rest = m.groups()
            head = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
            qkv = re.match(r"^self_attn\.q_proj\.(weight|bias)$", rest)
            if qkv:
                kind = qkv.group(1)
                prefix = f"{tower}_model.encoder.layers.{index}.self_attn."
                parts = [state_dict[f"{prefix}{p}_proj.{kind}"] for p in ("q", "k", "v")]
                out[f"{head}attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
                continue
            if re.match(r"^self_attn\.[kv]_proj\.", rest):
                continue
            for new, old in inverse_blocks:
                if rest.startswith(new + "."):
                    out[head + old + rest[len(new) :]] = value
                    break
            else:
                raise ValueError(f"unexpected CLIPModel key {key!r}")
    return out


# ---- the CLIP BPE tokenizer from bpe_simple_vocab_16e6.txt.gz ------------------------------------------


def bpe_tokenizer(path: str | Path) -> CLIPTokenizer:
    """A `CLIPTokenizer` rebuilt from CLIP's `bpe_simple_vocab_16e6.txt.gz` (shipped inside open_clip_torch,
    clip-anytorch and hpsv2), the way OpenAI CLIP builds its vocabulary from it; nothing is downloaded."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise RewardError(
            f"BPE file {str(path)!r} could not be read ({type(exc).__name__}); expected CLIP's gzip'ed "
            f"{BPE_FILE} (inside open_clip_torch or clip-anytorch)"
        ) from None
    merges = [line for line in lines[1 : BPE_MERGES + 1] if line.strip()]
    if not merges or any(len(m.split()) != 2 for m in merges):
        raise RewardError(
            f"BPE file {str(path)!r} does not hold CLIP merges ('a b' per line); expected {BPE_FILE}"
        )
    symbols = list(_bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges), BOS, EOS]
    with tempfile.TemporaryDirectory(prefix="reneg-clip-bpe-") as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
        merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        # model_max_length is not in the files; without it tokenizing fails (FACTS.md).
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=CLIP_TOKENS)


def open_clip_tokens(tokenizer: CLIPTokenizer, prompt: str, context: int = CLIP_TOKENS) -> torch.Tensor:
    """Token ids [1, L] as open_clip's tokenizer lays them out: start, text, end (truncated to L, the end
    token kept), then zeros."""
    ids = tokenizer(prompt, truncation=True, max_length=context)["input_ids"]
    return torch.tensor([ids + [OPEN_CLIP_PAD_ID] * (context - len(ids))], dtype=torch.long)
