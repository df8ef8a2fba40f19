"""Step 4 of a call: inject a negative embedding into a pipeline's negative CFG branch.

`attach(pipe, neg)` checks the embedding against the model (`check_embedding`) and injects it: it
matches the embedding's tokens (and mask) to the model and wraps the pipeline's `encode_prompt` so that
every call without a negative of its own gets the embedding as `negative_prompt_embeds` (plus
`negative_prompt_attention_mask` for masked families). The pipeline itself is unchanged otherwise: its
own checks, batching and CFG run.

The embedding is checked once, where it enters: `attach` for a Python caller; the commands run
`check_embedding` before any model loads and then call `inject` (and `attached`), which trust it.

Shape legend: B prompts, N videos per prompt, T tokens, D width.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch

from .embedding import NegativeEmbedding
from .encoders import FILL_EMPTY, FILLS, check_family, match_tokens
from .errors import EncoderMismatchError, SpecError, UsageError
from .specs import AdapterSpec

_PER_PROMPT_ARGS = ("num_videos_per_prompt", "num_images_per_prompt")


def _text_width(pipe) -> int | None:
    config = getattr(getattr(pipe, "text_encoder", None), "config", None)
    return getattr(config, "hidden_size", None) or getattr(config, "d_model", None)


def _no_negative(value) -> bool:
    """No negative prompt of the caller's: None, or the empty string some pipelines default to."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    return all(v == "" for v in value)


def _batch(arguments: dict) -> int:
    prompt = arguments.get("prompt")
    if isinstance(prompt, str):
        return 1
    if prompt is not None:
        return len(prompt)
    return arguments["prompt_embeds"].shape[0]


def empty_prompt_rows(pipe, spec: AdapterSpec) -> torch.Tensor:
    """The target's own encoding of the empty prompt, [1, spec.tokens, D] float32 on the CPU.

    Runs the pipeline's own `encode_prompt` (its tokenizer, its T5 call with or without a mask), with
    the options that would shorten the output switched off (Latte's `mask_feature`)."""
    original = type(pipe).encode_prompt.__get__(pipe)
    params = inspect.signature(original).parameters
    kwargs = {"prompt": "", "do_classifier_free_guidance": False, "device": pipe._execution_device}
    if "max_sequence_length" in params:
        kwargs["max_sequence_length"] = spec.tokens
    if "mask_feature" in params:
        kwargs["mask_feature"] = False
    with torch.no_grad():
        out = original(**kwargs)
    rows = out[0] if isinstance(out, tuple) else out
    return rows[:1].detach().to("cpu", torch.float32)


def negative_rows(
    pipe, neg: NegativeEmbedding, spec: AdapterSpec, fill: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`neg` as the model reads it: [1, spec.tokens, D] and its mask (None for unmasked models)."""
    fill = fill or spec.token_fill
    if fill not in FILLS:
        raise UsageError(f"fill {fill!r} is unknown; expected one of {FILLS}")
    empty = None
    if fill == FILL_EMPTY and neg.mask is not None and not bool(neg.mask.all()):
        empty = empty_prompt_rows(pipe, spec)
    return match_tokens(neg.tensor, neg.mask, spec.tokens, neg.source, fill=fill, empty=empty)


def check_negative_branch(spec: AdapterSpec) -> None:
    """Refuse an embedding where this configuration has no negative branch to put it on."""
    if not spec.negative_branch:
        raise UsageError(
            f"--neg: {spec.name} has no negative branch (it runs at guidance 1, distilled), so a negative "
            "embedding would be ignored; add --nag (attention guidance at guidance 1), use the non-distilled "
            "model, or leave --neg out"
        )


def check_embedding(
    neg: NegativeEmbedding, spec: AdapterSpec, name: str | None = None, *, nag: bool = False
) -> None:
    """Refuse `neg` where `spec`'s model cannot use it. Most specific first: an embedding of another
    text-encoder space names both spaces (EncoderMismatchError); a model without a negative branch says so,
    unless the embedding goes to NAG's cross-attention (`nag`), which needs none.
    The message names the embedding `name` (a command passes the path given), else its source."""
    check_family(neg.family, spec.family, spec.name, name or neg.source)
    if not nag:
        check_negative_branch(spec)


def attach(pipe, neg: NegativeEmbedding, spec: AdapterSpec | None = None, *, fill: str | None = None):
    """Use `neg` on the negative branch of CFG in every later `pipe(...)` call that passes no negative.

    Refuses (EncoderMismatchError) an embedding from another text-encoder space, naming both spaces.
    `fill` overrides the spec's token strategy (`reneg_video.core.encoders`). Returns the pipeline.
    Attaching again replaces the previous embedding; `detach` removes it.
    """
    spec = spec or getattr(pipe, "reneg_spec", None)
    if spec is None:
        raise SpecError(
            "attach: this pipeline has no adapter spec; load it with reneg_video.load_pipeline or pass spec="
        )
    check_embedding(neg, spec)
    return inject(pipe, neg, spec, fill=fill)


def inject(pipe, neg: NegativeEmbedding, spec: AdapterSpec, *, fill: str | None = None):
    """`attach` for an embedding already checked against `spec` (`check_embedding`, at the caller's
    boundary). What is checked here is the pipeline: its text encoder must be the one the spec names."""
    width = _text_width(pipe)
    if width is not None and width != spec.family.width:
        raise EncoderMismatchError(
            f"{spec.name}: the pipeline's text encoder has width {width} but its spec says {spec.encoder} "
            f"({spec.family.width}); fix the spec"
        )
    tensor, mask = negative_rows(pipe, neg, spec, fill)
    if not spec.mask:
        mask = None  # the pipeline takes no mask: unmasked strategies already filled every row

    original = type(pipe).encode_prompt.__get__(pipe)  # the class's method, so re-attaching never stacks
    signature = inspect.signature(original)
    per_prompt = next((a for a in _PER_PROMPT_ARGS if a in signature.parameters), None)

    def encode_prompt(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        given = bound.arguments
        cfg = given.get("do_classifier_free_guidance", True)
        if cfg and _no_negative(given.get("negative_prompt")) and given.get("negative_prompt_embeds") is None:
            rows = _batch(given)
            if spec.negative_batch == "videos" and per_prompt is not None:
                rows *= given.get(per_prompt) or 1
            device = given.get("device") or pipe._execution_device
            dtype = given.get("dtype") or pipe.text_encoder.dtype
            given.pop("negative_prompt", None)
            given["negative_prompt_embeds"] = tensor.to(device=device, dtype=dtype).expand(rows, -1, -1)
            if mask is not None:
                given["negative_prompt_attention_mask"] = mask.to(device).expand(rows, -1)
        return original(*bound.args, **bound.kwargs)

    pipe.encode_prompt = encode_prompt
    pipe.reneg_negative = neg
    return pipe


def detach(pipe):
    """Remove an attached embedding: the pipeline encodes its negatives itself again."""
    pipe.__dict__.pop("encode_prompt", None)
    pipe.__dict__.pop("reneg_negative", None)
    return pipe


@contextlib.contextmanager
def detached(pipe) -> Iterator[None]:
    """Temporarily run the plain pipeline (baseline arms of a comparison)."""
    saved = pipe.__dict__.get("encode_prompt")
    pipe.__dict__.pop("encode_prompt", None)
    try:
        yield
    finally:
        if saved is not None:
            pipe.encode_prompt = saved


@contextlib.contextmanager
def attached(pipe, neg: NegativeEmbedding, spec: AdapterSpec) -> Iterator[None]:
    """Temporarily `inject` `neg` (checked, e.g. a per-sample refinement of a checked embedding); on exit the
    pipeline is as it was, its previous embedding in place without being matched to the model again."""
    saved = {key: pipe.__dict__[key] for key in ("encode_prompt", "reneg_negative") if key in pipe.__dict__}
    inject(pipe, neg, spec)
    try:
        yield
    finally:
        detach(pipe)
        pipe.__dict__.update(saved)


def negative_reaching_denoiser(pipe) -> torch.Tensor | None:
    """The attached embedding as the denoiser receives it per video (tests and debugging)."""
    neg = getattr(pipe, "reneg_negative", None)
    return None if neg is None else neg.tensor
