"""Adapter specs: built-ins parse, stand-ins mirror their real models, a new model needs only a spec."""

from __future__ import annotations

from pathlib import Path

import pytest

import reneg_video
from reneg_video import ModelNotFoundError, SpecError, list_models, load_spec
from reneg_video.models.pipeline import model_folder

REAL = ("zeroscope", "ltx-video", "sd15", "sd21", "pixart-alpha", "videocrafter2")


def test_builtin_specs_and_aliases():
    assert set(REAL) | {f"tiny-{m}" for m in REAL} <= set(list_models())
    assert load_spec("ltx").name == "ltx-video"
    ltx = load_spec("ltx-video")
    assert (ltx.tokens, ltx.mask, ltx.rules.size_multiple, ltx.frames_rule()) == (128, True, 32, "8k+1")
    zs = load_spec("zeroscope")
    assert (zs.tokens, zs.mask, zs.family.width, zs.rules.size_multiple) == (77, False, 1024, 8)
    assert load_spec("pixart-alpha").tokens == 120


@pytest.mark.parametrize("name", REAL)
def test_standin_mirrors_the_real_model(name):
    real, tiny = load_spec(name), load_spec(f"tiny-{name}")
    assert tiny.standin and not real.standin
    same = ("pipeline", "encoder", "tokens", "mask", "negative_batch", "kind", "fps_arg", "rules")
    assert {k: getattr(real, k) for k in same} == {k: getattr(tiny, k) for k in same}


def test_a_new_model_needs_only_a_spec(tmp_path, monkeypatch, sd21_file):
    spec_file = tmp_path / "my-video.toml"
    text = Path(load_spec("tiny-zeroscope").source).read_text()
    spec_file.write_text(text.replace('name = "tiny-zeroscope"', 'name = "my-video"\naliases = ["mine"]'))
    monkeypatch.setenv("RENEG_VIDEO_ADAPTERS", str(tmp_path))
    assert "my-video" in list_models()
    pipe = reneg_video.load_pipeline("mine")
    reneg_video.attach(pipe, reneg_video.load_embedding(sd21_file))
    assert pipe.reneg_spec.name == "my-video"


@pytest.mark.parametrize(
    "edit, word",
    [
        (('encoder = "openclip-vit-h-14"', 'encoder = "bert"'), "unknown"),
        (("tokens = 77", "tokens = 120"), "tokens 120"),
        (("mask = false", "mask = true"), "contradicts"),
        (('kind = "video"', 'kind = "video"\ncolour = 1'), "unknown keys"),
        (("[rules]", "[rulez]"), "rules"),
    ],
)
def test_bad_specs_are_refused(tmp_path, edit, word):
    text = Path(load_spec("tiny-zeroscope").source).read_text().replace(*edit)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=word):
        load_spec(path)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(SpecError, match="zeroscope"):
        load_spec("zeroscoop")


def test_real_model_absent_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="cerspense/zeroscope_v2_576w.*--model-path"):
        model_folder(load_spec("zeroscope"))
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        model_folder(load_spec("zeroscope"), tmp_path)
