"""Normalized Attention Guidance (core.nag): the combination against Algorithm 1 written out, a captured
cross-attention layer recomputed by hand (ZeroScope's UNet3D, LTX-Video 0.9.7 distilled), the negative rows
reaching the keys, a render changed by the negative (and not at scale 1), every supported stand-in
rendering with its processors restored, and the refused families."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reneg_video import EncoderMismatchError, SpecError, UsageError, load_embedding, load_spec
from reneg_video.core.inject import negative_rows
from reneg_video.core.nag import (
    NagParams,
    check_nag,
    nag_attention,
    nag_combine,
    negative_context,
)
from reneg_video.core.settings import NAG_ALPHA, NAG_SCALE, NAG_TAU
from reneg_video.models.generate import generate, settings_for

from ..conftest import capture, shared_file

pytestmark = pytest.mark.usefixtures("one_thread_module")

# The released file of each encoder space.
FILES = {
    "openclip-vit-h-14": "sd2.1_reneg_emb.bin",
    "clip-vit-l-14": "sd1.5_reneg_emb.bin",
    "t5-v1_1-xxl": "pixart-alpha_reneg_emb.bin",
}
SUPPORTED = [
    "tiny-zeroscope", "tiny-modelscope", "tiny-sd21", "tiny-sd15", "tiny-animatediff", "tiny-videocrafter2",
    "tiny-ltx-video", "tiny-ltx-video-0.9.7-distilled", "tiny-pixart-alpha", "tiny-latte", "tiny-allegro",
]  # fmt: skip
REFUSED = ["tiny-cogvideox-2b", "tiny-cogvideox-5b", "tiny-mochi", "hunyuanvideo", "tiny-i2vgen-xl"]
REFUSED += ["wan-2.1"]  # no stand-in: the spec alone
# Small renders each stand-in accepts: (frames, size). Allegro's VAE decodes only whole 24-frame tiles of
# 128 px; Latte's temporal table is 16 frames; VideoCrafter2's size multiple is 64; LTX's 32 and 8k+1 frames.
SIZES = {"tiny-allegro": (24, 128), "tiny-latte": (16, 32), "tiny-videocrafter2": (2, 64)}
CAPTURED = ["tiny-zeroscope", "tiny-ltx-video-0.9.7-distilled"]


def algorithm_1(positive, negative, scale, tau, alpha):
    """NAG, Algorithm 1 of arXiv 2505.21179, as written."""
    guided = positive * scale - negative * (scale - 1)
    ratio = guided.abs().sum(-1, keepdim=True) / positive.abs().sum(-1, keepdim=True)
    guided = guided * torch.minimum(ratio, torch.full_like(ratio, tau)) / ratio
    return alpha * guided + (1 - alpha) * positive


def _sizes(spec) -> tuple[int, int]:
    if spec.name in SIZES:
        return SIZES[spec.name]
    frames = 1 if spec.kind == "image" else spec.rules.frame_step + spec.rules.frame_offset
    return (2 if frames == 1 and spec.kind == "video" else frames), max(32, spec.rules.size_multiple)


def _render(pipe, spec, steps: int = 1) -> np.ndarray:
    frames, size = _sizes(spec)
    settings = settings_for(spec, frames=frames, height=size, width=size, steps=steps, guidance=1.0, seed=1)
    return generate(pipe, spec, "a red panda", settings)


def _denoiser(pipe):
    return getattr(pipe, "transformer", None) or pipe.unet


def _cross_attention(pipe):
    """The first text cross-attention layer (LTX-Video's first block, ZeroScope's first down block)."""
    if hasattr(pipe, "transformer"):
        return pipe.transformer.transformer_blocks[0].attn2
    return pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2


def _processors(denoiser) -> dict:
    """Every attention layer's processor and to_out[0], by module name."""
    return {n: (m.processor, m.to_out[0]) for n, m in denoiser.named_modules() if hasattr(m, "set_processor")}


def _negative_as_layers_read_it(pipe, spec, neg):
    """The file's rows matched to the model (inject.negative_rows), through the caption projection where
    the transformer has one, and the mask as diffusers' additive bias [1, 1, T] (None unmasked)."""
    rows, mask = negative_rows(pipe, neg, spec)
    projection = getattr(getattr(pipe, "transformer", None), "caption_projection", None)
    with torch.no_grad():
        rows = projection(rows) if projection is not None else rows
    bias = None if not spec.mask else ((1 - mask.float()) * -10000.0)[:, None]
    return rows, bias


def _attend(attn, hidden_states, context, bias):
    """Scaled dot-product attention written out, before to_out: [B, N, C]."""
    query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
    if getattr(attn, "norm_q", None) is not None:  # LTX: RMS norm across heads, on the flat projections
        query, key = attn.norm_q(query), attn.norm_k(key)
    heads = attn.heads
    split = lambda x: x.unflatten(-1, (heads, -1)).transpose(1, 2)  # noqa: E731
    query, key, value = split(query), split(key), split(value)
    scores = query @ key.transpose(-1, -2) / query.shape[-1] ** 0.5
    if bias is not None:
        scores = scores + bias[:, None]  # [B, 1, T] -> [B, 1, 1, T]
    return (scores.softmax(-1) @ value).transpose(1, 2).flatten(2)


def _guided_render(pipe, spec, neg):
    """One NAG render with the first cross-attention layer's inputs, output and key input captured."""
    attn = _cross_attention(pipe)
    linear = attn.to_out[0]
    context, mask = negative_context(pipe, spec, neg, None)
    inputs, handle_in = capture(attn)
    keys, handle_keys = capture(attn.to_k)
    outputs = []
    handle_out = attn.register_forward_hook(lambda _m, _a, out: outputs.append(out.detach().clone()))
    try:
        with nag_attention(pipe, context, mask, NagParams()) as record:
            _render(pipe, spec)
    finally:
        for handle in (handle_in, handle_keys, handle_out):
            handle.remove()
    assert attn.to_out[0] is linear
    return attn, linear, inputs[0], keys[0]["input"], outputs[0], record


# --- 1. the combination --------------------------------------------------------------------------------


def test_defaults_are_the_reference_implementations():
    assert (NAG_SCALE, NAG_TAU, NAG_ALPHA) == (5.0, 2.5, 0.25)
    assert NagParams() == NagParams(scale=5.0, tau=2.5, alpha=0.25)


@pytest.mark.parametrize(
    "values", [{"scale": 0.5}, {"tau": 0.0}, {"alpha": 1.5}, {"scale": float("nan")}], ids=str
)
def test_params_out_of_range_are_refused_naming_the_value(values):
    with pytest.raises(UsageError, match=f"NAG {next(iter(values))} "):
        NagParams(**values)


@pytest.mark.parametrize("clipped", [True, False], ids=["tau-clips", "below-tau"])
def test_nag_combine_is_algorithm_1(clipped):
    generator = torch.Generator().manual_seed(0)
    positive = torch.randn(3, 7, 16, generator=generator)
    # Far from the positive the extrapolation's L1 ratio exceeds tau; close to it, it stays below.
    spread = 1.0 if clipped else 0.02
    negative = positive + spread * torch.randn(3, 7, 16, generator=generator)
    params = NagParams(scale=5.0, tau=2.5, alpha=0.25)
    guided = positive * 5.0 - negative * 4.0
    ratio = guided.abs().sum(-1) / positive.abs().sum(-1)
    assert bool((ratio > 2.5).all()) if clipped else bool((ratio < 2.5).all())
    got = nag_combine(positive, negative, params)
    assert torch.allclose(got, algorithm_1(positive, negative, 5.0, 2.5, 0.25), atol=1e-6)
    if not clipped:  # no clipping: a plain extrapolation blended with the positive
        assert torch.allclose(got, 0.25 * guided + 0.75 * positive, atol=1e-6)


def test_nag_combine_clips_at_tau_exactly_and_keeps_a_zero_token_zero():
    positive = torch.tensor([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]])
    # Z- = -Z+: Zt = 9 Z+, ratio 9 > tau, clipped to 2.5 Z+; the zero token has ratio 0/0.
    got = nag_combine(positive, -positive, NagParams(scale=5.0, tau=2.5, alpha=0.25))
    assert torch.allclose(got[0], (0.25 * 2.5 + 0.75) * positive[0])
    assert torch.equal(got[1], torch.zeros(3))


def test_nag_combine_at_scale_1_is_the_positive():
    generator = torch.Generator().manual_seed(1)
    positive, negative = torch.randn(2, 5, 8, generator=generator)
    assert torch.allclose(nag_combine(positive, negative, NagParams(scale=1.0)), positive, atol=1e-7)


# --- 2 and 3. a captured layer ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_layer_output_is_to_out_of_nag_of_its_own_attention(pipelines, name):
    pipe = pipelines(name)
    spec = pipe.reneg_spec
    neg = load_embedding(shared_file(FILES[spec.encoder]))
    attn, linear, seen, _, output, record = _guided_render(pipe, spec, neg)
    hidden_states, context = seen["hidden_states"], seen["encoder_hidden_states"]
    bias = seen.get("attention_mask")
    if spec.mask:  # LTX hands attn2 the prompt's mask as an additive bias [B, 1, T], not [B, T] of 0/1
        assert bias.shape == (context.shape[0], 1, spec.tokens) and bias.is_floating_point()
        assert set(bias.unique().tolist()) == {0.0, -10000.0}
    else:
        assert bias is None
    negative, negative_bias = _negative_as_layers_read_it(pipe, spec, neg)
    rows = hidden_states.shape[0]
    with torch.no_grad():
        positive = _attend(attn, hidden_states, context, bias)
        against = _attend(
            attn, hidden_states, negative.expand(rows, -1, -1),
            None if negative_bias is None else negative_bias.expand(rows, -1, -1),
        )  # fmt: skip
        expected = linear(algorithm_1(positive, against, NAG_SCALE, NAG_TAU, NAG_ALPHA))
        unguided = linear(positive)
    assert torch.allclose(output, expected, atol=1e-5), float((output - expected).abs().max())
    assert not torch.allclose(output, unguided, atol=1e-4)  # the guidance shows at this layer
    assert record.calls == len(record.layers) and record.guided == set(record.layers)


@pytest.mark.parametrize("name", CAPTURED)
def test_the_negative_rows_reach_the_keys_of_the_cross_attention(pipelines, name):
    pipe = pipelines(name)
    spec = pipe.reneg_spec
    neg = load_embedding(shared_file(FILES[spec.encoder]))
    _, _, seen, key_input, _, _ = _guided_render(pipe, spec, neg)
    rows = seen["hidden_states"].shape[0]
    assert key_input.shape[0] == 2 * rows  # the positive rows, then as many negative ones
    assert torch.equal(key_input[:rows], seen["encoder_hidden_states"])
    negative, _ = _negative_as_layers_read_it(pipe, spec, neg)
    for row in key_input[rows:]:
        assert torch.allclose(row, negative[0], atol=1e-6)
    if not spec.mask:  # ZeroScope reads the file's own rows, unprojected
        assert torch.equal(key_input[rows], neg.tensor[0])


# --- 4. the negative changes the video ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CAPTURED)
def test_nag_changes_the_video_and_at_scale_1_does_not(pipelines, name):
    pipe = pipelines(name)
    spec = pipe.reneg_spec
    context, mask = negative_context(pipe, spec, load_embedding(shared_file(FILES[spec.encoder])), None)
    plain = _render(pipe, spec)
    with nag_attention(pipe, context, mask, NagParams()):
        guided = _render(pipe, spec)
    with nag_attention(pipe, context, mask, NagParams(scale=1.0)) as record:
        unextrapolated = _render(pipe, spec)
    assert np.abs(guided - plain).max() > 1e-4
    assert record.calls > 0 and np.allclose(unextrapolated, plain, atol=1e-5)


# --- negative_context: embedding, text, null text ----------------------------------------------------------


def test_negative_context_is_what_the_negative_branch_would_get(pipelines, pixart_file):
    pipe = pipelines("tiny-ltx-video-0.9.7-distilled")
    spec = pipe.reneg_spec
    neg = load_embedding(pixart_file)
    rows, mask = negative_context(pipe, spec, neg, None)
    want_rows, want_mask = negative_rows(pipe, neg, spec)
    assert rows.shape == (1, 256, 4096) and torch.equal(rows, want_rows) and torch.equal(mask, want_mask)
    text, text_mask = negative_context(pipe, spec, None, "blurry, low quality")
    with torch.no_grad():  # as the pipeline encodes (grad mode picks other CPU kernels: 1e-6 apart)
        embeds, attention_mask, _, _ = pipe.encode_prompt(
            "blurry, low quality", do_classifier_free_guidance=False
        )
    assert torch.equal(text, embeds.float()) and torch.equal(text_mask, attention_mask.bool())
    empty, empty_mask = negative_context(pipe, spec, None, None)
    assert int(empty_mask.sum()) < int(text_mask.sum()) and not torch.equal(empty, text)
    with pytest.raises(UsageError, match="not both"):
        negative_context(pipe, spec, neg, "blurry")


def test_unmasked_model_gets_no_mask_and_a_foreign_file_is_refused(pipelines, sd21_file, sd15_file):
    pipe = pipelines("tiny-zeroscope")
    rows, mask = negative_context(pipe, pipe.reneg_spec, load_embedding(sd21_file), None)
    assert rows.shape == (1, 77, 1024) and mask is None
    with pytest.raises(EncoderMismatchError):
        negative_context(pipe, pipe.reneg_spec, load_embedding(sd15_file), None)


def test_a_context_of_another_width_is_refused_before_anything_is_installed(pipelines):
    pipe = pipelines("tiny-ltx-video-0.9.7-distilled")
    before = pipe.transformer.attn_processors
    with (
        pytest.raises(EncoderMismatchError, match="1024 wide.*4096"),
        nag_attention(pipe, torch.zeros(1, 77, 1024), None, NagParams()),
    ):
        pass
    assert pipe.transformer.attn_processors == before
    with (
        pytest.raises(EncoderMismatchError, match="768 wide"),
        nag_attention(pipelines("tiny-zeroscope"), torch.zeros(1, 77, 768), None, NagParams()),
    ):
        pass


def test_processors_come_back_after_an_error(pipelines):
    pipe = pipelines("tiny-zeroscope")
    attn = _cross_attention(pipe)
    processor, linear = attn.processor, attn.to_out[0]
    with (
        pytest.raises(RuntimeError, match="inside"),
        nag_attention(pipe, torch.zeros(1, 77, 1024), None, NagParams()) as record,
    ):
        assert attn.processor is not processor and attn.to_out[0] is not linear
        raise RuntimeError("inside")
    assert attn.processor is processor and attn.to_out[0] is linear and len(record.layers) == 4
    with nag_attention(pipe, torch.zeros(1, 77, 1024), None, NagParams()):
        with pytest.raises(SpecError, match="do not nest"):  # noqa: SIM117 (the outer block must hold)
            with nag_attention(pipe, torch.zeros(1, 77, 1024), None, NagParams()):
                pass
        assert attn.processor is not processor  # the outer block's wrapper is still in place
    assert attn.processor is processor


# --- 5. every supported stand-in; the refused families ------------------------------------------------------


@pytest.mark.parametrize("name", SUPPORTED)
def test_every_supported_standin_renders_with_nag_and_gets_its_processors_back(pipelines, name):
    pipe = pipelines(name)
    spec = pipe.reneg_spec
    check_nag(spec)
    before = _processors(_denoiser(pipe))
    context, mask = negative_context(pipe, spec, load_embedding(shared_file(FILES[spec.encoder])), None)
    with nag_attention(pipe, context, mask, NagParams()) as record:
        frames = _render(pipe, spec)
    assert np.isfinite(frames).all() and frames.shape[-1] == 3
    assert record.layers and record.guided == set(record.layers)
    assert record.calls == len(record.layers)  # one pass (guidance 1), one step
    after = _processors(_denoiser(pipe))
    assert after.keys() == before.keys()
    assert all(after[n][0] is before[n][0] and after[n][1] is before[n][1] for n in before)


@pytest.mark.parametrize("name", REFUSED)
def test_families_without_text_cross_attention_are_refused_naming_why(name):
    spec = load_spec(name)
    with pytest.raises(UsageError) as info:
        check_nag(spec)
    message = str(info.value)
    assert spec.name in message and "\n" not in message and "leave --nag out" in message
    if spec.pipeline in ("CogVideoXPipeline", "MochiPipeline", "HunyuanVideoPipeline"):
        assert "jointly" in message and "not implemented" in message
    if spec.pipeline == "I2VGenXLPipeline":
        assert "image tokens" in message
    # nag_attention checks a loaded pipeline's spec before it touches the denoiser.
    with (
        pytest.raises(UsageError, match=spec.name),
        nag_attention(SimpleNamespace(reneg_spec=spec), torch.zeros(1, 1, 1), None, NagParams()),
    ):
        pass


def test_a_denoiser_without_text_cross_attention_is_refused():
    pipe = SimpleNamespace(transformer=torch.nn.Linear(4, 4))  # no spec: the structure decides
    with (
        pytest.raises(SpecError, match="no text cross-attention layer"),
        nag_attention(pipe, torch.zeros(1, 3, 4), None, NagParams()),
    ):
        pass
