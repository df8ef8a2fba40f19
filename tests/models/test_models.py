"""Every video model that reads a released embedding's text space: its spec, its stand-in, and exactly
what reaches its denoiser (rows, mask, CFG batch layout), seen with forward hooks on the denoiser.

The token strategies of unmasked T5 models (`fill`, documented in reneg_video/core/encoders.py) are
checked row by row here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import reneg_video
from reneg_video import EncoderMismatchError, SpecError, attach, detach, load_embedding, load_spec
from reneg_video.core.inject import empty_prompt_rows
from reneg_video.core.specs import parse_spec

from ..conftest import capture

# name -> (pipeline class, encoder, tokens, mask)
NEW_MODELS = {
    "modelscope": ("TextToVideoSDPipeline", "openclip-vit-h-14", 77, False),
    "i2vgen-xl": ("I2VGenXLPipeline", "openclip-vit-h-14", 77, False),
    "animatediff": ("AnimateDiffPipeline", "clip-vit-l-14", 77, False),
    "ltx-video-0.9.1": ("LTXPipeline", "t5-v1_1-xxl", 128, True),
    "ltx-video-0.9.5": ("LTXConditionPipeline", "t5-v1_1-xxl", 256, True),
    "ltx-video-0.9.7": ("LTXConditionPipeline", "t5-v1_1-xxl", 256, True),
    "cogvideox-2b": ("CogVideoXPipeline", "t5-v1_1-xxl", 226, False),
    "cogvideox-5b": ("CogVideoXPipeline", "t5-v1_1-xxl", 226, False),
    "mochi": ("MochiPipeline", "t5-v1_1-xxl", 256, True),
    "latte": ("LattePipeline", "t5-v1_1-xxl", 120, False),
    "allegro": ("AllegroPipeline", "t5-v1_1-xxl", 512, True),
}


@pytest.mark.parametrize("name", sorted(NEW_MODELS))
def test_spec_and_standin_declare_the_real_tokens_and_mask(name):
    real, tiny = load_spec(name), load_spec(f"tiny-{name}")
    assert (real.pipeline, real.encoder, real.tokens, real.mask) == NEW_MODELS[name]
    assert tiny.standin and not real.standin and real.repo_id
    same = (
        "pipeline",
        "encoder",
        "tokens",
        "mask",
        "negative_batch",
        "kind",
        "fps_arg",
        "frames_arg",
        "rules",
    )
    assert {k: getattr(real, k) for k in same} == {k: getattr(tiny, k) for k in same}


def test_cogvideox_dtypes_follow_the_model_cards_and_49_frames_is_8k_plus_1():
    two, five = load_spec("cogvideox-2b"), load_spec("cogvideox-5b")
    assert (two.gpu_dtype, five.gpu_dtype) == ("float16", "bfloat16")
    assert two.defaults.frames == 49 and two.frames_ok(49) and two.frames_rule() == "8k+1"
    assert five.call_kwargs == {"use_dynamic_cfg": True}
    assert load_spec("ltx-video-13b").name == "ltx-video-0.9.7"


def _run(pipe, **kwargs):
    seen, handle = capture(getattr(pipe, "transformer", None) or pipe.unet)
    try:
        pipe(num_inference_steps=kwargs.pop("steps", 1), output_type="np", **kwargs)
    finally:
        handle.remove()
    return seen[0]


def _attached(pipelines, name, neg, **kw):
    pipe = pipelines(name)
    attach(pipe, neg, **kw)
    return pipe


@pytest.mark.parametrize(
    "name", ["tiny-ltx-video-0.9.5", "tiny-ltx-video-0.9.7", "tiny-mochi", "tiny-allegro"]
)
def test_masked_models_with_more_tokens_see_token0_alone_under_the_mask(pipelines, pixart_file, name):
    neg = load_embedding(pixart_file)
    pipe = _attached(pipelines, name, neg)
    spec = pipe.reneg_spec
    d, n = spec.defaults, spec.tokens  # 256 (LTX 0.9.5+, Mochi) or 512 (Allegro)
    try:
        # Allegro makes one video per prompt (it resets num_videos_per_prompt to 1) and its tiled VAE
        # decodes one video per call: a single video there.
        allegro = name == "tiny-allegro"
        videos = 1 if allegro else 2
        seen = _run(
            pipe,
            prompt="a red panda",
            num_videos_per_prompt=videos,
            num_frames=d.frames,
            height=d.height if allegro else 32,  # Allegro's VAE tile: 128 px
            width=d.width if allegro else 32,
            steps=2,  # a direct MochiPipeline call (not `generate`) divides by zero at 1 step in diffusers 0.42
        )
    finally:
        detach(pipe)
    context, mask = seen["encoder_hidden_states"], seen["encoder_attention_mask"]
    # CFG batch: [negative x videos, prompt x videos], n rows each (Allegro adds a unit axis: [B, 1, n, D]).
    assert context.shape[-2:] == (n, 4096) and context.numel() == 2 * videos * n * 4096
    context, mask = context.reshape(2 * videos, n, 4096), mask.reshape(2 * videos, n)
    for row in range(videos):
        assert mask[row].bool().tolist() == [True] + [False] * (n - 1)
        assert torch.equal(context[row, 0], neg.tensor[0, 0])
        assert torch.equal(context[row, 1:120], neg.tensor[0, 1:120])  # the file's rows, then padding
    assert int(mask[videos].sum()) > 1  # the prompt half keeps its own tokens


def test_ltx_0_9_1_sees_128_tokens_token0_alone(pipelines, pixart_file):
    neg = load_embedding(pixart_file)
    pipe = _attached(pipelines, "tiny-ltx-video-0.9.1", neg)
    try:
        seen = _run(pipe, prompt="a red panda", num_frames=9, height=32, width=32)
    finally:
        detach(pipe)
    context, mask = seen["encoder_hidden_states"], seen["encoder_attention_mask"]
    assert context.shape == (2, 128, 4096) and mask[0].bool().tolist() == [True] + [False] * 127
    assert torch.equal(context[0, 0], neg.tensor[0, 0])


@pytest.mark.parametrize("name", ["tiny-cogvideox-2b", "tiny-cogvideox-5b"])
def test_cogvideox_sees_226_unmasked_rows_kept_token_then_its_own_empty_prompt(pipelines, pixart_file, name):
    neg = load_embedding(pixart_file)
    pipe = pipelines(name)
    own_empty = empty_prompt_rows(pipe, pipe.reneg_spec)
    attach(pipe, neg)
    try:
        # CogVideoXPipeline makes one video per prompt (it resets num_videos_per_prompt to 1).
        seen = _run(pipe, prompt=["a red panda", "a cat"], num_frames=9, height=32, width=32)
    finally:
        detach(pipe)
    context = seen["encoder_hidden_states"]
    assert "encoder_attention_mask" not in seen  # no mask reaches CogVideoX's transformer
    assert context.shape == (4, 226, 4096)  # [negative x 2 prompts, prompt x 2]
    for row in range(2):
        assert torch.equal(context[row, 0], neg.tensor[0, 0])  # the file's kept token
        assert torch.equal(context[row, 1:], own_empty[0, 1:])  # CogVideoX's own "" rows
    assert not torch.equal(context[2, 1:], own_empty[0, 1:])
    # The file's padding rows (PixArt's masked T5) are not CogVideoX's (unmasked T5) padding rows.
    assert not torch.equal(own_empty[0, 1:120], neg.tensor[0, 1:120])


@pytest.mark.parametrize(
    "fill, tail",
    [
        ("zeros", lambda neg: torch.zeros(225, 4096)),
        ("file-padding", lambda neg: neg.tensor[0, -1:].expand(225, -1)),  # the file's padding row
    ],
)
def test_cogvideox_alternative_fills_are_exactly_what_they_say(pipelines, pixart_file, fill, tail):
    neg = load_embedding(pixart_file)
    pipe = _attached(pipelines, "tiny-cogvideox-2b", neg, fill=fill)
    try:
        seen = _run(pipe, prompt="a cat", num_frames=9, height=32, width=32)
    finally:
        detach(pipe)
    context = seen["encoder_hidden_states"]
    assert torch.equal(context[0, 0], neg.tensor[0, 0])
    assert torch.equal(context[0, 1:], tail(neg))


def test_latte_sees_the_kept_token_then_its_own_empty_prompt_cut_to_the_prompt_length(pipelines, pixart_file):
    neg = load_embedding(pixart_file)
    pipe = pipelines("tiny-latte")
    own_empty = empty_prompt_rows(pipe, pipe.reneg_spec)
    attach(pipe, neg)
    try:
        seen = _run(pipe, prompt="a red panda", video_length=16, height=64, width=64)
    finally:
        detach(pipe)
    context = seen["encoder_hidden_states"]
    assert seen.get("encoder_attention_mask") is None  # Latte's transformer gets no text mask
    keep = len(pipe.tokenizer("a red panda").input_ids)  # Latte cuts both halves to the prompt's length
    assert context.shape == (2, keep, 4096)
    assert torch.equal(context[0, 0], neg.tensor[0, 0])
    assert torch.equal(context[0, 1:], own_empty[0, 1:keep])


def test_modelscope_unet_receives_the_sd21_file_exactly(pipelines, sd21_file):
    neg = load_embedding(sd21_file)
    pipe = _attached(pipelines, "tiny-modelscope", neg)
    try:
        seen = _run(pipe, prompt=["a corgi", "a cat"], num_frames=2, height=32, width=32)
    finally:
        detach(pipe)
    context = seen["encoder_hidden_states"]
    assert context.shape == (4, 77, 1024)  # [negative x 2 prompts, prompt x 2]
    assert torch.equal(context[0], neg.tensor[0]) and torch.equal(context[1], neg.tensor[0])
    assert not torch.equal(context[2], neg.tensor[0])


@pytest.mark.parametrize(
    "name", ["tiny-cogvideox-2b", "tiny-mochi", "tiny-latte", "tiny-ltx-video-0.9.5", "tiny-allegro"]
)
def test_t5_models_refuse_clip_files_naming_both_spaces(pipelines, sd21_file, name):
    with pytest.raises(EncoderMismatchError, match="openclip-vit-h-14.*t5-v1_1-xxl"):
        attach(pipelines(name), load_embedding(sd21_file))


def test_a_spec_file_alone_adds_a_t5_model_with_an_unused_token_count(tmp_path, monkeypatch, pixart_file):
    """No built-in spec reads 300 tokens: a spec file in a folder is all it takes."""
    builtin = {load_spec(n).tokens for n in reneg_video.list_models()}
    assert 300 not in builtin
    text = 'extends = "tiny-cogvideox-2b"\nname = "my-t5-video"\ntokens = 300\n'
    (tmp_path / "my-t5-video.toml").write_text(text)
    monkeypatch.setenv("RENEG_VIDEO_ADAPTERS", str(tmp_path))
    pipe = reneg_video.load_pipeline("my-t5-video", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    neg = load_embedding(pixart_file)
    attach(pipe, neg)
    seen = _run(pipe, prompt="a cat", num_frames=9, height=32, width=32, max_sequence_length=300)
    assert seen["encoder_hidden_states"].shape == (2, 300, 4096)
    assert torch.equal(seen["encoder_hidden_states"][0, 0], neg.tensor[0, 0])


@pytest.mark.parametrize(
    "edit, word",
    [
        (("tokens = 226", "tokens = 0"), "count >= 1"),
        (("mask = false", 'mask = false\nfill = "masked"'), "fill 'masked'"),
        (("mask = false", 'mask = false\nfill = "noise"'), "fill 'noise'"),
    ],
)
def test_token_declarations_are_checked(edit, word):
    import tomllib

    text = Path(load_spec("cogvideox-2b").source).read_text().replace(*edit)
    with pytest.raises(SpecError, match=word):
        parse_spec(tomllib.loads(text), "x.toml")


def test_clip_specs_still_need_77_tokens():
    import tomllib

    text = Path(load_spec("zeroscope").source).read_text().replace("tokens = 77", "tokens = 120")
    with pytest.raises(SpecError, match="exactly 77"):
        parse_spec(tomllib.loads(text), "x.toml")


def test_a_folder_resolves_to_the_spec_its_repo_names_else_the_first_supported(tmp_path):
    import json

    from reneg_video.models.pipeline import spec_for_folder

    def folder(path, cls):
        path.mkdir(parents=True)
        (path / "model_index.json").write_text(json.dumps({"_class_name": cls}))
        return path

    assert spec_for_folder(folder(tmp_path / "any", "TextToVideoSDPipeline")).name == "zeroscope"
    cache = tmp_path / "models--ali-vilab--text-to-video-ms-1.7b" / "snapshots" / "abc"
    assert spec_for_folder(folder(cache, "TextToVideoSDPipeline")).name == "modelscope"
    assert spec_for_folder(folder(tmp_path / "CogVideoX-5b", "CogVideoXPipeline")).name == "cogvideox-5b"
    assert spec_for_folder(folder(tmp_path / "ltx", "LTXPipeline")).name == "ltx-video"
