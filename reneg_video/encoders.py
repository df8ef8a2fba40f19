"""Text-encoder families and matching an embedding to a target model's encoder.

An embedding learned on one model works unchanged in another only if both read the same text-encoder
output space. A family fixes that space (width) and the token semantics (count, attention mask).

Shape legend: B prompts, N videos per prompt, T tokens, D width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import EncoderMismatchError

# CLIP and OpenCLIP text towers have a 77-position embedding table (context_length=77 in both).
CLIP_TOKENS = 77
# PixArt-alpha pads/truncates its T5 prompt to 120 tokens (PixArtAlphaPipeline max_sequence_length).
PIXART_T5_TOKENS = 120
# LTX-Video pads/truncates its T5 prompt to 128 tokens (LTXPipeline max_sequence_length).
LTX_T5_TOKENS = 128

# Hidden widths: CLIP ViT-L/14 text tower (SD1.x), OpenCLIP ViT-H/14 text tower (SD2.x, ZeroScope,
# VideoCrafter2), T5-v1.1-xxl d_model (PixArt-alpha, LTX-Video).
CLIP_L_WIDTH = 768
OPENCLIP_H_WIDTH = 1024
T5_XXL_WIDTH = 4096
# The shapes world's own CLIP text encoder (reneg_video/models/shapes/world.py TEXT_TOKENS/TEXT_WIDTH,
# equality checked in tests/test_shapes.py): 16 positions for the grammar's captions, width 128.
SHAPES_TOKENS = 16
SHAPES_WIDTH = 128


@dataclass(frozen=True)
class EncoderFamily:
    """One text-encoder output space."""

    name: str
    width: int
    tokens: tuple[int, ...]  # token counts the family's models use
    masked: bool  # True: pipelines pass a cross-attention mask with the embeddings
    description: str


CLIP_L = EncoderFamily(
    "clip-vit-l-14", CLIP_L_WIDTH, (CLIP_TOKENS,), False, "CLIP ViT-L/14 last layer (SD1.x)"
)
OPENCLIP_H = EncoderFamily(
    "openclip-vit-h-14",
    OPENCLIP_H_WIDTH,
    (CLIP_TOKENS,),
    False,
    "OpenCLIP ViT-H/14 penultimate layer (SD2.x, ZeroScope v2, VideoCrafter2)",
)
T5_XXL = EncoderFamily(
    "t5-v1_1-xxl",
    T5_XXL_WIDTH,
    (PIXART_T5_TOKENS, LTX_T5_TOKENS),
    True,
    "T5-v1.1-xxl encoder (PixArt-alpha, LTX-Video)",
)

SHAPES = EncoderFamily(
    "shapes-clip",
    SHAPES_WIDTH,
    (SHAPES_TOKENS,),
    False,
    "shapes-world CLIP text encoder (shapes-t2i, shapes-t2v)",
)

FAMILIES: dict[str, EncoderFamily] = {f.name: f for f in (CLIP_L, OPENCLIP_H, T5_XXL, SHAPES)}


def family_for_shape(tokens: int, width: int) -> EncoderFamily | None:
    """The family whose (tokens, width) a [1, tokens, width] tensor has, or None."""
    for family in FAMILIES.values():
        if family.width == width and tokens in family.tokens:
            return family
    return None


def describe_shapes() -> str:
    """Accepted shapes, for error messages."""
    return "; ".join(
        f"[1,{' or '.join(map(str, f.tokens))},{f.width}] {f.description}" for f in FAMILIES.values()
    )


def infer_t5_mask(tensor: torch.Tensor) -> torch.Tensor:
    """Infer which tokens a bare T5 embedding was learned under.

    A T5 embedding learned under a padding mask only receives gradient on kept tokens, so the rows past
    them stay identical copies (the released PixArt-alpha file: rows 1..119 equal, row 0 differs, i.e.
    the mask of the empty prompt, which is one EOS token). Rows in the trailing run of identical rows
    count as padding; if every row is the same, token 0 is kept.
    """
    rows = tensor[0]
    last = rows[-1]
    pad_start = rows.shape[0]
    while pad_start > 0 and torch.equal(rows[pad_start - 1], last):
        pad_start -= 1
    trailing = rows.shape[0] - pad_start
    kept = rows.shape[0] if trailing < 2 else max(pad_start, 1)
    mask = torch.zeros(1, rows.shape[0], dtype=torch.bool)
    mask[0, :kept] = True
    return mask


def check_family(
    embedding_family: EncoderFamily, target: EncoderFamily, target_name: str, source: str
) -> None:
    """Refuse an embedding from another encoder space, naming both widths."""
    if embedding_family != target:
        raise EncoderMismatchError(
            f"{source}: embedding width {embedding_family.width} ({embedding_family.description}) does not "
            f"match {target_name}'s text encoder width {target.width} ({target.description}); use an "
            f"embedding learned in the {target.name} space"
        )


def match_tokens(
    tensor: torch.Tensor, mask: torch.Tensor | None, tokens: int, source: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pad or truncate [1, T, D] (and its mask) to `tokens`, keeping the mask semantics.

    Padding repeats the last row under a zero mask, so padded tokens are never attended to (LTX-Video:
    the PixArt-alpha file's 120 rows become 128 with token 0 alone kept). Truncation may only drop
    masked-out rows: dropping a kept token would change what the model sees.
    """
    have = tensor.shape[1]
    if have == tokens:
        return tensor, mask
    if mask is None:
        raise EncoderMismatchError(
            f"{source}: {have} tokens without a mask cannot be matched to {tokens}; "
            "CLIP-family embeddings must have exactly the model's token count"
        )
    if have < tokens:
        pad = tokens - have
        tensor = torch.cat([tensor, tensor[:, -1:].expand(1, pad, tensor.shape[2])], dim=1)
        mask = torch.cat([mask, torch.zeros(1, pad, dtype=torch.bool)], dim=1)
        return tensor, mask
    if bool(mask[0, tokens:].any()):
        raise EncoderMismatchError(
            f"{source}: truncating {have} to {tokens} tokens would drop kept (unmasked) tokens "
            f"{int(mask[0].nonzero().max()) + 1 - tokens} past position {tokens}; use a model with >= {have} tokens"
        )
    return tensor[:, :tokens], mask[:, :tokens]
