"""attach(): what reaches the denoiser is exactly the file's tensor (ZeroScope) or its kept token under
the right mask (LTX-Video, PixArt-alpha). Checked with forward hooks on the denoiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reneg_video
from reneg_video import EncoderMismatchError, attach, detach, load_embedding
from reneg_video.models.generate import generate, settings_for

from ..conftest import capture


def test_zeroscope_unet_receives_the_file_tensor(pipelines, sd21_file):
    pipe = pipelines("tiny-zeroscope")
    neg = load_embedding(sd21_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.unet)
    try:
        pipe(
            prompt=["a corgi", "a cat"],  # TextToVideoSDPipeline makes one video per prompt
            num_frames=2,
            height=32,
            width=32,
            num_inference_steps=1,
            output_type="np",
        )
    finally:
        handle.remove()
        detach(pipe)
    context = seen[0]["encoder_hidden_states"]
    assert context.shape == (4, 77, 1024)  # CFG batch: 2 negatives then 2 positives
    for row in range(2):
        assert torch.equal(context[row], neg.tensor[0])
    assert not torch.equal(context[2], neg.tensor[0])


def test_ltx_transformer_receives_token0_as_128_tokens_one_unmasked(pipelines, pixart_file):
    pipe = pipelines("tiny-ltx-video")
    neg = load_embedding(pixart_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.transformer)
    try:
        pipe(
            prompt="a red panda",
            num_videos_per_prompt=2,
            num_frames=9,
            height=32,
            width=32,
            num_inference_steps=1,
            output_type="np",
        )
    finally:
        handle.remove()
        detach(pipe)
    context, mask = seen[0]["encoder_hidden_states"], seen[0]["encoder_attention_mask"]
    assert context.shape == (4, 128, 4096) and mask.shape == (4, 128)
    for row in range(2):  # the negative half
        assert int(mask[row].sum()) == 1 and bool(mask[row, 0])
        assert torch.equal(context[row, 0], neg.tensor[0, 0])
    assert int(mask[2].sum()) > 1  # the prompt half keeps its own tokens


def test_pixart_transformer_receives_120_tokens_one_unmasked(pipelines, pixart_file):
    pipe = pipelines("tiny-pixart-alpha")
    neg = load_embedding(pixart_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.transformer)
    try:
        pipe(
            prompt="a cat",
            height=64,
            width=64,
            num_inference_steps=1,
            output_type="np",
            use_resolution_binning=False,
        )
    finally:
        handle.remove()
        detach(pipe)
    context, mask = seen[0]["encoder_hidden_states"], seen[0]["encoder_attention_mask"]
    assert context.shape[1:] == (120, 4096)
    assert torch.equal(context[0], neg.tensor[0]) and int(mask[0].sum()) == 1


def test_callers_own_negative_wins_and_detach_restores(pipelines, sd21_file):
    pipe = pipelines("tiny-zeroscope")
    neg = load_embedding(sd21_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.unet)
    kwargs = dict(
        prompt="a corgi", num_frames=2, height=32, width=32, num_inference_steps=1, output_type="np"
    )
    try:
        pipe(negative_prompt="blurry", **kwargs)
        detach(pipe)
        pipe(**kwargs)
    finally:
        handle.remove()
        detach(pipe)
    assert not torch.equal(seen[0]["encoder_hidden_states"][0], neg.tensor[0])
    assert not torch.equal(seen[1]["encoder_hidden_states"][0], neg.tensor[0])
    assert not torch.equal(seen[0]["encoder_hidden_states"][0], seen[1]["encoder_hidden_states"][0])


def test_attached_replaces_the_embedding_for_its_block_and_restores_the_one_in_place(pipelines, sd21_file):
    from reneg_video.core.embedding import NegativeEmbedding
    from reneg_video.core.inject import attached

    pipe = pipelines("tiny-zeroscope")
    neg = load_embedding(sd21_file)
    other = NegativeEmbedding(neg.tensor * 0.5, None, neg.family, "half")
    attach(pipe, neg)
    wrapper = pipe.encode_prompt
    seen, handle = capture(pipe.unet)
    kwargs = dict(
        prompt="a corgi", num_frames=2, height=32, width=32, num_inference_steps=1, output_type="np"
    )
    try:
        with attached(pipe, other, pipe.reneg_spec):
            assert pipe.reneg_negative is other
            pipe(**kwargs)
        assert pipe.encode_prompt is wrapper and pipe.reneg_negative is neg  # restored, not attached again
        pipe(**kwargs)
    finally:
        handle.remove()
        detach(pipe)
    assert torch.equal(seen[0]["encoder_hidden_states"][0], other.tensor[0])
    assert torch.equal(seen[1]["encoder_hidden_states"][0], neg.tensor[0])


def test_wrong_family_is_refused_naming_both_widths(pipelines, sd15_file):
    with pytest.raises(EncoderMismatchError) as info:
        attach(pipelines("tiny-zeroscope"), load_embedding(sd15_file))
    assert "768" in str(info.value) and "1024" in str(info.value)


def test_same_seed_same_frames_and_the_embedding_changes_them(pipelines, sd21_file):
    pipe = pipelines("tiny-zeroscope")
    spec = pipe.reneg_spec
    s = settings_for(spec, seed=3, frames=2, height=32, width=32, steps=2)
    attach(pipe, load_embedding(sd21_file))
    try:
        a = generate(pipe, spec, "a corgi", s)
        b = generate(pipe, spec, "a corgi", s)
        c = generate(
            pipe, spec, "a corgi", settings_for(spec, seed=4, frames=2, height=32, width=32, steps=2)
        )
    finally:
        detach(pipe)
    plain = generate(pipe, spec, "a corgi", s)
    assert a.shape == (2, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, plain)


def test_standins_of_one_family_share_text_encoder_weights(pipelines):
    a = pipelines("tiny-zeroscope").text_encoder.state_dict()
    b = pipelines("tiny-sd21").text_encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = pipelines("tiny-ltx-video").text_encoder.state_dict()
    d = pipelines("tiny-pixart-alpha").text_encoder.state_dict()
    assert all(torch.equal(c[k], d[k]) for k in c)


def test_standins_have_the_real_text_widths_and_tokens(pipelines):
    for name, width in (("tiny-zeroscope", 1024), ("tiny-sd15", 768), ("tiny-ltx-video", 4096)):
        pipe = pipelines(name)
        config = pipe.text_encoder.config
        assert (getattr(config, "hidden_size", None) or config.d_model) == width
    assert pipelines("tiny-zeroscope").tokenizer.model_max_length == 77
    ids = pipelines("tiny-ltx-video").tokenizer("a cat", padding="max_length", max_length=128).input_ids
    assert len(ids) == 128


def test_load_pipeline_reads_the_standin_through_from_pretrained(standin_cache):
    pipe = reneg_video.load_pipeline("tiny-sd15")
    assert (standin_cache / "standins" / "tiny-sd15-v1" / "model_index.json").exists()
    assert pipe.reneg_spec.name == "tiny-sd15"
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"


def test_videocrafter2_unet_receives_the_sd21_file_exactly(pipelines, sd21_file, sd15_file):
    pipe = pipelines("tiny-videocrafter2")
    neg = load_embedding(sd21_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.unet)
    try:
        pipe(
            prompt=["a red panda", "a cat"],
            num_frames=2,
            height=64,
            width=64,
            num_inference_steps=1,
            output_type="np",
        )
    finally:
        handle.remove()
        detach(pipe)
    context = seen[0]["encoder_hidden_states"]
    assert context.shape == (4, 77, 1024)
    assert torch.equal(context[0], neg.tensor[0]) and torch.equal(context[1], neg.tensor[0])
    assert not torch.equal(context[2], neg.tensor[0])
    with pytest.raises(EncoderMismatchError, match="768.*1024"):
        attach(pipe, load_embedding(sd15_file))
    # The VC2 stand-in reads the same OpenCLIP-H space as the ZeroScope stand-in, bit for bit.
    zs = pipelines("tiny-zeroscope").text_encoder.state_dict()
    assert all(torch.equal(v, zs[k]) for k, v in pipe.text_encoder.state_dict().items())
