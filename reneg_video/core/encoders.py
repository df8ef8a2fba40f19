"""Text-encoder families and matching an embedding to a target model's encoder.

An embedding learned on one model works unchanged in another only if both read the same text-encoder
output space. A family fixes that space (its width, and whether its token positions are absolute);
how many tokens a model reads and whether a mask goes with them is the model's own, declared in its
adapter spec (`tokens`, `mask`, `fill`), not the family's.

Token strategies (what a model sees when its token count or mask differs from the file's), named by
the spec's `fill`:
- `masked` (models that take an attention mask: PixArt-alpha 120, LTX-Video 128/256, Mochi 256,
  Allegro 512): the file's rows, padded by repeating its last row under a zero mask (or truncated
  where only masked-out rows go); the model attends to the file's kept tokens alone, as in training.
- unmasked models (CogVideoX 226, Latte 120) attend to every row, so the rows past the file's kept
  tokens must be filled with something; the file's kept tokens always come first, then:
  - `empty-prompt` (default): the target's own encoding of the empty prompt, rows kept..T-1. Those
    are the rows the model saw after the end-of-text token for every short prompt in its training
    (its own tokenizer, its own T5 call with or without a mask), so nothing out of its training
    distribution reaches its attention; the learned information lives in the kept tokens only (the
    padding rows of a file learned under a mask never received gradient).
  - `zeros`: zero rows. Zero keys are not "absent" without a mask: they take softmax weight
    exp(0)/Z and dilute the kept tokens, differently per query.
  - `file-padding`: the file's own padding rows (its last row repeated past its end): the padding of
    the source model's encoding, which differs from the target's when one runs T5 masked and the
    other unmasked (PixArt-alpha masked, CogVideoX unmasked).
- CLIP families (77 absolute positions): the file is used as is; other counts are refused.

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
# Spaces no ReNeg embedding exists for (their configs): umT5-xxl d_model 4096 (Wan 2.x); the
# llava-llama-3-8b hidden size 4096 (HunyuanVideo); Gemma-3-12B hidden size 3840 (LTX-2); CLIP-L 768
# concatenated with OpenCLIP bigG 1280 = 2048 (SDXL, and so AnimateDiff-SDXL).
UMT5_XXL_WIDTH = 4096
LLAMA3_8B_WIDTH = 4096
GEMMA3_12B_WIDTH = 3840
SDXL_DUAL_WIDTH = 768 + 1280

# Token strategies (see the module docstring): a spec's `fill`.
FILL_MASKED = "masked"
FILL_EMPTY = "empty-prompt"
FILL_ZEROS = "zeros"
FILL_FILE = "file-padding"
UNMASKED_FILLS = (FILL_EMPTY, FILL_ZEROS, FILL_FILE)
FILLS = (FILL_MASKED, *UNMASKED_FILLS)


@dataclass(frozen=True)
class EncoderFamily:
    """One text-encoder output space.

    `tokens`: the token counts of the released files in this space (shown in messages). `masked`:
    embeddings in this space carry a kept-token mask (T5 pads under a mask; CLIP has none).
    `positions`: a fixed token count the encoder's absolute position table imposes (CLIP 77), or None
    when any count works (T5's relative positions). `files`: the released ReNeg files of this space.
    `foreign`: no ReNeg embedding exists in this space; listed so that specs can name it and every
    file is refused naming both spaces (a tensor is never identified as foreign by its shape).
    """

    name: str
    width: int
    tokens: tuple[int, ...]
    masked: bool
    description: str
    positions: int | None = None
    files: tuple[str, ...] = ()
    foreign: bool = False

    def accepts_tokens(self, tokens: int) -> bool:
        return tokens >= 1 and (self.positions is None or tokens == self.positions)


CLIP_L = EncoderFamily(
    "clip-vit-l-14",
    CLIP_L_WIDTH,
    (CLIP_TOKENS,),
    False,
    "CLIP ViT-L/14 last layer (SD1.x, AnimateDiff)",
    positions=CLIP_TOKENS,
    files=("sd1.4_reneg_emb.bin", "sd1.5_reneg_emb.bin"),
)
OPENCLIP_H = EncoderFamily(
    "openclip-vit-h-14",
    OPENCLIP_H_WIDTH,
    (CLIP_TOKENS,),
    False,
    "OpenCLIP ViT-H/14 penultimate layer (SD2.x, ModelScope, ZeroScope v2, I2VGen-XL, VideoCrafter2)",
    positions=CLIP_TOKENS,
    files=("sd2.1_reneg_emb.bin",),
)
T5_XXL = EncoderFamily(
    "t5-v1_1-xxl",
    T5_XXL_WIDTH,
    (PIXART_T5_TOKENS,),
    True,
    "T5-v1.1-xxl encoder (PixArt-alpha, LTX-Video, CogVideoX, Mochi, Allegro, Latte)",
    files=("pixart-alpha_reneg_emb.bin",),
)
UMT5_XXL = EncoderFamily("umt5-xxl", UMT5_XXL_WIDTH, (), True, "umT5-xxl encoder (Wan 2.x)", foreign=True)
LLAMA3_8B = EncoderFamily(
    "llava-llama-3-8b",
    LLAMA3_8B_WIDTH,
    (),
    True,
    "LLaVA-Llama-3-8B hidden states (HunyuanVideo)",
    foreign=True,
)
GEMMA3_12B = EncoderFamily(
    "gemma-3-12b", GEMMA3_12B_WIDTH, (), True, "Gemma-3-12B hidden states (LTX-2)", foreign=True
)
SDXL_DUAL = EncoderFamily(
    "clip-vit-l-14+openclip-vit-bigg-14",
    SDXL_DUAL_WIDTH,
    (),
    False,
    "CLIP ViT-L/14 + OpenCLIP ViT-bigG/14 concatenated (SDXL, AnimateDiff-SDXL)",
    positions=CLIP_TOKENS,
    foreign=True,
)

# Plugins add their families here (core.plugins.register_encoder; the shapes world's "shapes-clip").
FAMILIES: dict[str, EncoderFamily] = {
    f.name: f for f in (CLIP_L, OPENCLIP_H, T5_XXL, UMT5_XXL, LLAMA3_8B, GEMMA3_12B, SDXL_DUAL)
}


def family_for_shape(tokens: int, width: int) -> EncoderFamily | None:
    """The family a [1, tokens, width] tensor belongs to, or None (foreign spaces are never guessed)."""
    for family in FAMILIES.values():
        if not family.foreign and family.width == width and family.accepts_tokens(tokens):
            return family
    return None


def describe_shapes() -> str:
    """Accepted shapes, for error messages."""
    return "; ".join(
        f"[1,{f.positions or 'T'},{f.width}] {f.description}" for f in FAMILIES.values() if not f.foreign
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
    """Refuse an embedding from another encoder space, naming both spaces and widths."""
    if embedding_family != target:
        hint = (
            f"no ReNeg embedding exists in the {target.name} space; use a model of a released space "
            "(see --list-models)"
            if target.foreign
            else f"use an embedding learned in the {target.name} space ({', '.join(target.files) or 'none released'})"
        )
        raise EncoderMismatchError(
            f"{source}: embedding space {embedding_family.name} (width {embedding_family.width}, "
            f"{embedding_family.description}) does not match {target_name}'s text encoder space "
            f"{target.name} (width {target.width}, {target.description}); {hint}"
        )


def match_tokens(
    tensor: torch.Tensor,
    mask: torch.Tensor | None,
    tokens: int,
    source: str,
    *,
    fill: str = FILL_MASKED,
    empty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Match [1, T, D] (and its mask) to a model reading `tokens` rows, by the strategy `fill`.

    `masked`: pad by repeating the last row under a zero mask, so padded tokens are never attended to
    (LTX-Video: the PixArt-alpha file's 120 rows become 128 with token 0 alone kept); truncation may
    only drop masked-out rows. Returns (tensor, mask).
    Unmasked strategies (`empty-prompt`, `zeros`, `file-padding`, see the module docstring): the kept
    rows of the file, the others replaced; returns (tensor, None). `empty` is the target's encoding of
    the empty prompt, [1, >= tokens, D], needed by `empty-prompt`.
    """
    have = tensor.shape[1]
    if mask is None:
        if have != tokens:
            raise EncoderMismatchError(
                f"{source}: {have} tokens without a mask cannot be matched to {tokens}; "
                "CLIP-family embeddings must have exactly the model's token count"
            )
        return tensor, None
    if bool(mask[0, tokens:].any()):
        raise EncoderMismatchError(
            f"{source}: truncating {have} to {tokens} tokens would drop kept (unmasked) tokens "
            f"{int(mask[0].nonzero().max()) + 1 - tokens} past position {tokens}; use a model with >= {have} tokens"
        )
    if fill == FILL_MASKED:
        if have == tokens:
            return tensor, mask
        if have < tokens:
            pad = tokens - have
            tensor = torch.cat([tensor, tensor[:, -1:].expand(1, pad, tensor.shape[2])], dim=1)
            mask = torch.cat([mask, torch.zeros(1, pad, dtype=torch.bool)], dim=1)
            return tensor, mask
        return tensor[:, :tokens], mask[:, :tokens]
    if fill == FILL_EMPTY:
        if empty is None or empty.shape[1] < tokens or empty.shape[2] != tensor.shape[2]:
            got = None if empty is None else list(empty.shape)
            raise EncoderMismatchError(
                f"{source}: fill {FILL_EMPTY!r} needs the target's empty-prompt encoding [1, >={tokens}, "
                f"{tensor.shape[2]}], got {got}; attach through the pipeline or choose fill {FILL_ZEROS!r}"
            )
        base = empty[:, :tokens].to(tensor.dtype)
    elif fill == FILL_ZEROS:
        base = tensor.new_zeros(1, tokens, tensor.shape[2])
    elif fill == FILL_FILE:
        rows = tensor[:, :tokens]
        base = torch.cat([rows, tensor[:, -1:].expand(1, tokens - rows.shape[1], tensor.shape[2])], dim=1)
    else:
        raise EncoderMismatchError(f"{source}: fill {fill!r} is unknown; expected one of {FILLS}")
    n = min(have, tokens)
    kept = mask[:, :n]
    out = base.clone()
    out[:, :n][kept] = tensor[:, :n][kept]  # the file's kept tokens, at their own positions
    return out, None
