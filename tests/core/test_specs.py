"""Adapter specs: built-ins parse, stand-ins mirror their real models, a new model needs only a spec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tomllib

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
    text = Path(load_spec("zeroscope").source).read_text().replace(*edit)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=word):
        load_spec(path)


def test_unknown_model_suggests_the_nearest_name_not_all_of_them():
    with pytest.raises(SpecError) as info:
        load_spec("zeroscop")
    assert (
        str(info.value) == "unknown model 'zeroscop'; did you mean 'zeroscope'? (`--list-models` lists all)"
    )
    with pytest.raises(SpecError) as info:  # nothing close: the hint, without the list of every name
        load_spec("qwertyuiop")
    message = str(info.value)
    assert (
        message.startswith("unknown model 'qwertyuiop'; `--list-models` lists all")
        and "did you" not in message
    )
    assert "tiny-" not in message and len(message) < 120


def test_real_model_absent_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="cerspense/zeroscope_v2_576w.*--model-path"):
        model_folder(load_spec("zeroscope"))
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        model_folder(load_spec("zeroscope"), tmp_path)


# --- extends: a spec states only what differs from its parent ---------------------------------------------

STANDIN_FILES = sorted((Path(reneg_video.__file__).parent / "specs").glob("tiny-*.toml"))


def test_eighteen_standin_specs_extend_their_real_model():
    assert len(STANDIN_FILES) == 18


@pytest.mark.parametrize("path", STANDIN_FILES, ids=lambda p: p.stem)
def test_standin_states_only_what_differs_and_inherits_the_rest(path):
    """Every key a stand-in file states differs from its parent's; every other field is the parent's."""
    raw = tomllib.loads(path.read_text())
    tiny, real = load_spec(path.stem), load_spec(raw["extends"])
    assert raw["extends"] == path.stem.removeprefix("tiny-") and tiny.standin and tiny.repo_id is None
    stated = set(raw) - {"extends", "unset", "defaults", "rules"}
    for key in stated - {"name", "description"}:
        assert getattr(tiny, key) != getattr(real, key), f"{path.name} restates {key}"
    for table in ("defaults", "rules"):
        for key, value in raw.get(table, {}).items():
            assert getattr(getattr(real, table), key) != value, f"{path.name} restates [{table}] {key}"
    own = {"name", "aliases", "description", "source", *raw.get("unset", ()), *stated}
    same = [
        f.name for f in dataclasses.fields(tiny) if f.name not in own and f.name not in ("defaults", "rules")
    ]
    assert {k: getattr(tiny, k) for k in same} == {k: getattr(real, k) for k in same}
    for table in ("defaults", "rules"):
        mine, theirs = dataclasses.asdict(getattr(tiny, table)), dataclasses.asdict(getattr(real, table))
        assert {k: v for k, v in mine.items() if k not in raw.get(table, {})} == {
            k: v for k, v in theirs.items() if k not in raw.get(table, {})
        }
    assert tiny.aliases == () and tiny.name == path.stem


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_extends_merges_tables_key_by_key_through_a_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("RENEG_VIDEO_ADAPTERS", str(tmp_path))
    _write(tmp_path, "my-zs", 'extends = "tiny-zeroscope"\nname = "my-zs"\n[defaults]\nsteps = 2\n')
    _write(tmp_path, "my-alias", 'extends = "zeroscope-v2"\nname = "my-alias"\ngpu_dtype = "bfloat16"\n')
    mine, tiny, real = load_spec("my-zs"), load_spec("tiny-zeroscope"), load_spec("zeroscope")
    assert (mine.defaults.steps, mine.defaults.frames, mine.defaults.guidance) == (
        2,
        8,
        real.defaults.guidance,
    )
    assert (mine.encoder, mine.tokens, mine.standin, mine.repo_id) == (real.encoder, 77, True, None)
    assert (mine.aliases, mine.description, mine.source) == ((), "", str(tmp_path / "my-zs.toml"))
    assert tiny.defaults.steps == 4  # the parent is untouched
    by_alias = load_spec("my-alias")
    assert (by_alias.repo_id, by_alias.gpu_dtype, by_alias.aliases) == (real.repo_id, "bfloat16", ())


def test_a_user_spec_may_extend_the_builtin_it_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("RENEG_VIDEO_ADAPTERS", str(tmp_path))
    _write(tmp_path, "zeroscope", 'extends = "zeroscope"\nname = "zeroscope"\n[defaults]\nsteps = 12\n')
    spec = load_spec("zeroscope")
    assert (spec.defaults.steps, spec.defaults.width, spec.repo_id) == (
        12,
        576,
        "cerspense/zeroscope_v2_576w",
    )
    assert spec.source == str(tmp_path / "zeroscope.toml")


def test_adapter_file_outside_the_folders_extends_a_builtin(tmp_path):
    path = _write(tmp_path, "one-off", 'extends = "tiny-sd15"\nname = "one-off"\n[defaults]\nheight = 128\n')
    spec = load_spec(path)
    assert (spec.name, spec.defaults.height, spec.defaults.width, spec.pipeline) == (
        "one-off",
        128,
        64,
        "StableDiffusionPipeline",
    )


@pytest.mark.parametrize(
    "files, fragment",
    [
        ({"a": 'extends = "nope"\nname = "a"'}, "a.toml: extends 'nope', which is no known spec"),
        ({"a": 'extends = "a"\nname = "a"'}, "a.toml: extends 'a', which is no known spec"),
        (
            {"a": 'extends = "b"\nname = "a"', "b": 'extends = "a"\nname = "b"'},
            "in a cycle (a.toml -> b.toml -> a.toml)",
        ),
        (
            {
                "a": 'extends = "b"\nname = "a"',
                "b": 'extends = "c"\nname = "b"',
                "c": 'extends = "b"\nname = "c"',
            },
            "in a cycle (b.toml -> c.toml -> b.toml)",
        ),
        ({"a": 'extends = 3\nname = "a"'}, "a.toml: extends = 3; expected the name of another spec"),
        ({"a": 'extends = "zeroscope"\nunset = ["colour"]\nname = "a"'}, "a.toml: unset = ['colour']"),
        ({"a": 'unset = ["repo_id"]\nname = "a"'}, "a.toml: unset without extends"),
    ],
)
def test_extends_refusals_name_the_file_in_one_line(tmp_path, monkeypatch, files, fragment):
    monkeypatch.setenv("RENEG_VIDEO_ADAPTERS", str(tmp_path))
    for name, text in files.items():
        _write(tmp_path, name, text + "\n")
    with pytest.raises(SpecError) as info:
        load_spec("a")
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)
