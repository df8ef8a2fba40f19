"""Normalized Attention Guidance (NAG, Chen et al., arXiv 2505.21179) as wrapped attention processors.

NAG lets a negative act at guidance 1, in the one conditional denoiser pass of each step: every text
cross-attention layer computes its output for the positive context (Z+) and for the negative context (Z-)
with the same query, and before the output projection `to_out[0]` takes (Algorithm 1 of the paper; the
reference implementation's attention processors, github.com/ChenDarYen/Normalized-Attention-Guidance):

    Zt = Z+ * scale - Z- * (scale - 1)
    r  = ||Zt||_1 / ||Z+||_1                    (per token, over the feature dim)
    Zt = Zt * min(r, tau) / r
    Z  = alpha * Zt + (1 - alpha) * Z+

`nag_attention` keeps each layer's own processor (its SDPA backend, q/k norms, rotary handling): it calls
it once on a doubled batch, the positive rows then the negative ones, and swaps `to_out[0]` for a module
that combines the two halves before the projection. The negative context enters as the layers see the
positive: projected by the transformer's `caption_projection` (PixArt, LTX-Video, Latte, Allegro), as is
for UNets, repeated to each call's batch (frames folded into it by UNet3D, Latte and VideoCrafter2).

Shape legend: B rows of an attention call (videos, or videos x frames), N query tokens, T text tokens,
D text width, C attention width.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .embedding import NegativeEmbedding
from .encoders import check_family
from .errors import EncoderMismatchError, SpecError, UsageError
from .guidance import denoiser as guided_denoiser
from .settings import NagParams
from .specs import AdapterSpec

# diffusers' transformers (PixArt, LTX-Video, Allegro, UNet2D's encoder_attention_mask) turn a 0/1 key
# mask into this additive bias, [B, 1, T], before it reaches the attention processors.
MASK_BIAS = -10000.0

# Pipelines whose denoiser reads the text through cross-attention only (diffusers class names, and the
# project's own VideoCrafter2 pipeline as spec files name it).
SUPPORTED = (
    "StableDiffusionPipeline",
    "TextToVideoSDPipeline",
    "AnimateDiffPipeline",
    "reneg_video.models.videocrafter2.pipeline:VideoCrafter2Pipeline",
    "LTXPipeline",
    "LTXConditionPipeline",
    "PixArtAlphaPipeline",
    "LattePipeline",
    "AllegroPipeline",
)
_JOINT = (
    "attends to text and video tokens jointly, so there is no cross-attention output to guide (NAG there "
    "needs a separate text stream: not implemented)"
)
REFUSED = {
    "CogVideoXPipeline": _JOINT,
    "MochiPipeline": _JOINT,
    "HunyuanVideoPipeline": _JOINT,
    "I2VGenXLPipeline": (
        "joins image tokens to the text in its cross-attention context, so a text-only negative context is "
        "not comparable"
    ),
    "WanPipeline": (
        "feeds its text through condition_embedder, not a caption_projection, and has no offline stand-in "
        "here to verify NAG on: not implemented"
    ),
}


@dataclass
class NagRecord:
    """What `nag_attention` installed and did: the wrapped layers and the guided calls so far."""

    layers: tuple[str, ...]  # module names of the wrapped cross-attention layers
    calls: int = 0  # attention calls guided (one per layer per denoiser pass)
    guided: set[str] = field(default_factory=set)  # the layers that guided at least once


def nag_combine(positive: Tensor, negative: Tensor, params: NagParams) -> Tensor:
    """NAG's combination of the attention outputs Z+ and Z- ([..., C], before `to_out`)."""
    guided = positive * params.scale - negative * (params.scale - 1)
    # L1 norms in float32: the ratio is compared with tau, which half precision would blur.
    norm_positive = torch.linalg.vector_norm(positive, ord=1, dim=-1, keepdim=True, dtype=torch.float32)
    norm_guided = torch.linalg.vector_norm(guided, ord=1, dim=-1, keepdim=True, dtype=torch.float32)
    ratio = norm_guided / norm_positive
    # min(r, tau) / r, written as a factor of 1 at or below tau, so that a token whose outputs are all zero
    # (r = 0/0) stays zero instead of turning NaN; above tau (r = inf included) it rescales to tau.
    factor = torch.where(ratio > params.tau, params.tau / ratio, torch.ones_like(ratio))
    guided = guided * factor.to(guided.dtype)
    return guided * params.alpha + positive * (1 - params.alpha)


def check_nag(spec: AdapterSpec) -> None:
    """Refuse (UsageError) a model whose pipeline NAG is not implemented for, naming why."""
    if spec.pipeline in SUPPORTED:
        return
    why = REFUSED.get(spec.pipeline, "is not a pipeline NAG is implemented for here")
    raise UsageError(
        f"--nag: {spec.name} ({spec.pipeline.rsplit(':', 1)[-1]}) {why}; leave --nag out (classifier-free "
        "guidance) or use a model whose text enters through cross-attention (e.g. zeroscope, ltx-video, latte)"
    )


def _encode_text(pipe, spec: AdapterSpec, text: str) -> tuple[Tensor, Tensor | None]:
    """The pipeline's own encoding of `text`, as its negative branch would get it, and its mask (masked
    specs): [1, T, D] float32 and [1, T] bool on the CPU. As `inject.empty_prompt_rows` calls it."""
    original = type(pipe).encode_prompt.__get__(pipe)  # the class's: an attached embedding never enters
    params = inspect.signature(original).parameters
    kwargs = {"prompt": text, "do_classifier_free_guidance": False, "device": pipe._execution_device}
    for per_prompt in ("num_videos_per_prompt", "num_images_per_prompt"):
        if per_prompt in params:
            kwargs[per_prompt] = 1  # required without a default by SD's and VideoCrafter2's encode_prompt
    if "max_sequence_length" in params:
        kwargs["max_sequence_length"] = spec.tokens
    if "mask_feature" in params:
        kwargs["mask_feature"] = False  # Latte: all spec.tokens rows, as for the embeddings
    with torch.no_grad():
        out = original(**kwargs)
    out = out if isinstance(out, tuple) else (out,)
    rows = out[0][:1].detach().to("cpu", torch.float32)
    # T5 pipelines return (embeds, mask, negative embeds, negative mask); CLIP ones (embeds, negative).
    mask = out[1] if len(out) > 1 and isinstance(out[1], Tensor) and out[1].ndim == 2 else None
    if not spec.mask or mask is None:
        return rows, None
    return rows, mask[:1].detach().to("cpu").bool()


def negative_context(
    pipe, spec: AdapterSpec, neg: NegativeEmbedding | None, negative_prompt: str | None
) -> tuple[Tensor, Tensor | None]:
    """NAG's negative as CFG's negative branch would get it: rows [1, T, D] float32 on the CPU and a mask
    [1, T] for masked specs (else None). From the embedding `neg`, else the text `negative_prompt`, else the
    empty prompt (NAG's null-text baseline)."""
    from .inject import negative_rows  # inject imports this package's encoders only; no cycle either way

    if neg is not None and negative_prompt:
        raise UsageError("NAG takes one negative: a negative embedding or a negative prompt, not both")
    if neg is None:
        return _encode_text(pipe, spec, negative_prompt or "")
    # The family check alone: `inject.check_embedding` would also refuse models without a negative
    # branch, which NAG exists for (it guides without one).
    check_family(neg.family, spec.family, spec.name, neg.source)
    rows, mask = negative_rows(pipe, neg, spec)
    return rows.to(torch.float32), mask if spec.mask else None


# --- the wrapped layers -------------------------------------------------------------------------------


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _is_cross_attention(name: str, module: nn.Module) -> bool:
    flag = getattr(module, "is_cross_attention", None)
    if flag is not None:  # diffusers' Attention: built with a cross_attention_dim
        return bool(flag)
    # AttentionModuleMixin classes (LTXAttention) carry no flag; diffusers' blocks name their text
    # cross-attention attn2 (attn1 is self-attention). The call itself is checked again (`_GuidedProcessor`).
    return name.rsplit(".", 1)[-1] == "attn2"


def _check_layer(name: str, attn: nn.Module) -> None:
    """Refuse a layer the doubled batch would break: its processor would add the [2B] input as a residual
    to the [B] guided output, or condition on a [B] temb."""
    if getattr(attn, "residual_connection", False):
        raise SpecError(f"NAG: {name} has a residual connection inside its attention; not implemented")
    if getattr(attn, "rescale_output_factor", 1.0) != 1.0:
        raise SpecError(f"NAG: {name} rescales its output (rescale_output_factor); not implemented")
    if getattr(attn, "spatial_norm", None) is not None:
        raise SpecError(f"NAG: {name} has a spatial norm conditioned per batch row; not implemented")
    to_out = getattr(attn, "to_out", None)
    if not isinstance(to_out, nn.ModuleList) or not isinstance(to_out[0], nn.Linear):
        raise SpecError(f"NAG: {name} has no to_out[0] Linear to guide before; not implemented")


class _Negative:
    """The negative context as the layers read it: projected once per device and dtype (the caption
    projection does not depend on the timestep), and its mask as an additive bias [1, 1, T]."""

    def __init__(self, rows: Tensor, mask: Tensor | None, projection: nn.Module | None) -> None:
        self.rows, self.mask, self.projection = rows, mask, projection
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor | None]] = {}

    def get(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        key = (device, dtype)
        if key not in self._cache:
            rows = self.rows.to(device)
            with torch.no_grad():  # a constant of the run, never part of a graph
                if self.projection is not None:
                    weight = next(self.projection.parameters())
                    rows = self.projection(rows.to(weight.dtype))
            bias = None
            if self.mask is not None:
                bias = ((1 - self.mask.to(device, dtype)) * MASK_BIAS).unsqueeze(1)
            self._cache[key] = (rows.to(dtype), bias)
        return self._cache[key]


def _pair(
    context: Tensor, bias: Tensor | None, negative: Tensor, negative_bias: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """The positive and negative contexts ([B, T, C'] each) as one [2B, T, C'] batch with its bias."""
    rows, length = context.shape[0], context.shape[1]
    if bias is not None and not (
        bias.is_floating_point() and bias.ndim == 3 and bias.shape[1] == 1 and bias.shape[2] == length
    ):
        raise SpecError(
            f"NAG: the cross-attention mask arrives as {tuple(bias.shape)} {bias.dtype}; expected an additive "
            f"bias [B, 1, {length}] as diffusers' transformers pass it; not implemented"
        )
    have = negative.shape[1]
    if have > length:
        # Latte keeps only the prompt's tokens (mask_feature) and cuts its CFG negative to as many rows.
        negative = negative[:, :length]
        negative_bias = None if negative_bias is None else negative_bias[..., :length]
    elif have < length:
        # Zero rows no query attends to: the bias keeps them out of the softmax.
        pad = length - have
        negative = torch.cat([negative, negative.new_zeros(1, pad, negative.shape[2])], dim=1)
        if negative_bias is None:
            negative_bias = negative.new_zeros(1, 1, have)
        negative_bias = torch.cat([negative_bias, negative_bias.new_full((1, 1, pad), MASK_BIAS)], dim=-1)
    if bias is None and negative_bias is None:
        joined_bias = None
    else:
        dtype = bias.dtype if bias is not None else negative_bias.dtype
        positive = bias.expand(rows, 1, length) if bias is not None else context.new_zeros(rows, 1, length)
        mine = negative_bias if negative_bias is not None else context.new_zeros(1, 1, length)
        joined_bias = torch.cat([positive.to(dtype), mine.to(dtype).expand(rows, 1, length)])
    return torch.cat([context, negative.expand(rows, -1, -1)]), joined_bias


class _GuidedOut(nn.Module):
    """Stands in for an attention layer's `to_out[0]`: after a guided call it combines Z+ and Z-."""

    def __init__(self, linear: nn.Linear, params: NagParams) -> None:
        super().__init__()
        self.linear = linear
        self.params = params
        self.pending: int | None = None  # B of the guided call in flight, set by its processor

    # Processors read these off to_out[0] (dtypes, fused projections): the wrapped Linear's.
    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    @property
    def bias(self) -> Tensor | None:
        return self.linear.bias

    def forward(self, hidden_states: Tensor, *args, **kwargs) -> Tensor:
        rows, self.pending = self.pending, None
        if rows is not None:
            if hidden_states.shape[0] != 2 * rows:
                raise SpecError(
                    f"NAG: to_out[0] got {hidden_states.shape[0]} rows for a guided call of {rows}; expected "
                    f"{2 * rows} (positive then negative)"
                )
            hidden_states = nag_combine(hidden_states[:rows], hidden_states[rows:], self.params)
        return self.linear(hidden_states, *args, **kwargs)


class _GuidedProcessor:
    """Wraps a layer's processor: a call with a text context runs it once on [positive; negative]."""

    def __init__(self, inner, name: str, out: _GuidedOut, negative: _Negative, record: NagRecord) -> None:
        self.inner, self.name, self.out, self.negative, self.record = inner, name, out, negative, record
        self.signature = inspect.signature(inner.__call__)

        # diffusers' attention modules pass a processor only the keywords its __call__ declares (they read
        # inspect.signature(processor.__call__)): show them the wrapped processor's, via __wrapped__.
        @functools.wraps(inner.__call__)
        def call(*args, **kwargs):
            return self._call(*args, **kwargs)

        self.__call__ = call

    def __getattr__(self, name: str):
        # Backends and settings diffusers reads or sets on a processor (_attention_backend, ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def _call(self, *args, **kwargs) -> Tensor:
        bound = self.signature.bind(*args, **kwargs)
        values = bound.arguments
        hidden_states = values.get("hidden_states")
        context = values.get("encoder_hidden_states")
        if context is None or context is hidden_states:  # a self-attention call: nothing to guide
            return self.inner(*bound.args, **bound.kwargs)
        if hidden_states.ndim != 3 or context.shape[0] != hidden_states.shape[0]:
            raise SpecError(
                f"NAG: {self.name} got hidden states {tuple(hidden_states.shape)} and context "
                f"{tuple(context.shape)}; expected [B, N, C] and [B, T, D]; not implemented"
            )
        negative, negative_bias = self.negative.get(context.device, context.dtype)
        if negative.shape[-1] != context.shape[-1]:
            raise EncoderMismatchError(
                f"NAG: {self.name} reads a context {context.shape[-1]} wide but the negative is "
                f"{negative.shape[-1]} wide; the negative must come from this model's text encoder"
            )
        rows = hidden_states.shape[0]
        values["hidden_states"] = torch.cat([hidden_states, hidden_states])
        values["encoder_hidden_states"], values["attention_mask"] = _pair(
            context, values.get("attention_mask"), negative, negative_bias
        )
        self.out.pending = rows
        try:
            result = self.inner(*bound.args, **bound.kwargs)
            if self.out.pending is not None:
                raise SpecError(
                    f"NAG: {self.name}'s processor {type(self.inner).__name__} did not call to_out[0]; "
                    "not implemented"
                )
        finally:
            self.out.pending = None
        self.record.calls += 1
        self.record.guided.add(self.name)
        return result


def _projection(denoiser: nn.Module) -> nn.Module | None:
    if getattr(denoiser, "encoder_hid_proj", None) is not None:
        raise SpecError(
            f"NAG: {type(denoiser).__name__} projects its context with encoder_hid_proj; not implemented"
        )
    # PixArt, LTX-Video, Latte, Allegro: the text rows pass caption_projection before every block.
    return getattr(denoiser, "caption_projection", None)


@contextlib.contextmanager
def nag_attention(pipe, context: Tensor, mask: Tensor | None, params: NagParams) -> Iterator[NagRecord]:
    """Guide every text cross-attention layer of `pipe`'s denoiser with NAG, away from `context`
    ([1, T, D] rows from `negative_context`, `mask` [1, T] or None) while the block runs; meant for
    guidance 1 (every row of a call is guided). The original processors and `to_out[0]` come back on exit."""
    spec = getattr(pipe, "reneg_spec", None)
    if spec is not None:
        check_nag(spec)
    denoiser = guided_denoiser(pipe)
    projection = _projection(denoiser)
    if context.ndim != 3 or context.shape[0] != 1 or (mask is not None and mask.shape != context.shape[:2]):
        raise UsageError(
            f"NAG: negative context {tuple(context.shape)} with mask "
            f"{None if mask is None else tuple(mask.shape)}; expected [1, T, D] and [1, T] or None"
        )
    layers = [
        (n, m) for n, m in denoiser.named_modules() if hasattr(m, "set_processor") and hasattr(m, "to_out")
    ]
    layers = [(n, m) for n, m in layers if _is_cross_attention(n, m)]
    if not layers:
        raise SpecError(
            f"NAG: {type(denoiser).__name__} has no text cross-attention layer; NAG guides cross-attention"
        )
    width = context.shape[-1]
    if projection is not None:
        linears = _linears(projection)
        if linears and linears[0].in_features != width:
            raise EncoderMismatchError(
                f"NAG: the negative context is {width} wide but {type(denoiser).__name__}'s caption projection "
                f"reads {linears[0].in_features}; the negative must come from this model's text encoder"
            )
        width = linears[-1].out_features if linears else width
    for name, attn in layers:
        if isinstance(attn.get_processor(), _GuidedProcessor):
            raise SpecError(f"NAG: {name} is guided already; nag_attention blocks do not nest")
        _check_layer(name, attn)
        expected = getattr(attn.to_k, "in_features", width)
        if expected != width:
            raise EncoderMismatchError(
                f"NAG: {name} reads a context {expected} wide but the negative is {width} wide "
                f"({context.shape[-1]} before projection); the negative must come from this model's text encoder"
            )

    record = NagRecord(layers=tuple(name for name, _ in layers))
    negative = _Negative(context.detach(), None if mask is None else mask.detach(), projection)
    installed: list[tuple[nn.Module, object, nn.Linear]] = []
    try:
        for name, attn in layers:
            original, linear = attn.get_processor(), attn.to_out[0]
            out = _GuidedOut(linear, params)
            attn.to_out[0] = out
            installed.append((attn, original, linear))
            attn.set_processor(_GuidedProcessor(original, name, out, negative, record))
        yield record
    finally:
        for attn, original, linear in reversed(installed):
            attn.set_processor(original)
            attn.to_out[0] = linear
