"""Step 4 of a call: inject a negative embedding into a pipeline's negative CFG branch.

`attach(pipe, neg)` checks the embedding against the pipeline's real text encoder, matches its tokens
(and mask) to the model, and wraps the pipeline's `encode_prompt` so that every call without a negative
of its own gets the embedding as `negative_prompt_embeds` (plus `negative_prompt_attention_mask` for
masked families). The pipeline itself is unchanged otherwise: its own checks, batching and CFG run.

Shape legend: B prompts, N videos per prompt, T tokens, D width.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch

from .embedding import NegativeEmbedding
from .encoders import check_family, match_tokens
from .errors import EncoderMismatchError, SpecError
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


def attach(pipe, neg: NegativeEmbedding, spec: AdapterSpec | None = None):
    """Use `neg` on the negative branch of CFG in every later `pipe(...)` call that passes no negative.

    Refuses (EncoderMismatchError) an embedding from another text-encoder space, naming both widths.
    Returns the pipeline. Attaching again replaces the previous embedding; `detach` removes it.
    """
    spec = spec or getattr(pipe, "reneg_spec", None)
    if spec is None:
        raise SpecError(
            "attach: this pipeline has no adapter spec; load it with reneg_video.load_pipeline or pass spec="
        )
    width = _text_width(pipe)
    if width is not None and width != spec.family.width:
        raise EncoderMismatchError(
            f"{spec.name}: the pipeline's text encoder has width {width} but its spec says {spec.encoder} "
            f"({spec.family.width}); fix the spec"
        )
    check_family(neg.family, spec.family, spec.name, neg.source)
    tensor, mask = match_tokens(neg.tensor, neg.mask, spec.tokens, neg.source)

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


def negative_reaching_denoiser(pipe) -> torch.Tensor | None:
    """The attached embedding as the denoiser receives it per video (tests and debugging)."""
    neg = getattr(pipe, "reneg_negative", None)
    return None if neg is None else neg.tensor
