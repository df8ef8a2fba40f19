"""How the shapes world plugs into reneg_video (the entry point, core.plugins) and how its weights are
stored: the generators' shared text encoder, tokenizer and VAE once, in weights/common."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import entry_points

import pytest
import torch

from reneg_video.core import plugins
from reneg_video.core.errors import UsageError
from reneg_video.core.specs import load_spec
from reneg_video.models.pipeline import (
    SHARED_COMPONENTS_FILE,
    bundled_folder,
    component_folder,
    load_pipeline,
)
from reneg_video.rewards import list_rewards
from shapes_world import judge, plugin
from shapes_world import world as W
from shapes_world.commands.build import install
from shapes_world.data import split_prompts

SHIPPED = W.weights_root()


def test_the_entry_point_registers_specs_family_reward_and_judge():
    (point,) = [p for p in entry_points(group=plugins.ENTRY_POINT_GROUP) if p.name == "shapes"]
    assert point.load() is plugin.register
    for name in plugin.MODELS:
        spec = load_spec(name)
        assert spec.family is W.TEXT_FAMILY and spec.bundled == f"shapes_world:weights/{name[-3:]}"
        assert bundled_folder(spec) == W.bundled_folder(name[-3:])
        registered = plugins.judge_for(name)
        assert registered.judge is judge.judge and registered.prompts() == split_prompts()[1]
    assert "shapes-reward" in list_rewards()
    assert plugins.judge_for("tiny-zeroscope") is None


def test_generators_store_their_shared_components_once():
    for name in W.GENERATORS:
        folder = W.bundled_folder(name)
        places = json.loads((folder / SHARED_COMPONENTS_FILE).read_text())
        assert sorted(places) == sorted(W.SHARED_COMPONENTS)
        for part in W.SHARED_COMPONENTS:
            assert not (folder / part).exists()
            assert (
                component_folder(folder, part).resolve() == (W.weights_root() / W.COMMON_DIR / part).resolve()
            )


def _full_export(tmp_path):
    """An export folder as the build writes it: each generator complete, with its own copy of the shared parts."""
    export = tmp_path / "build" / "export"
    for name in W.MODELS:
        shutil.copytree(
            W.bundled_folder(name), export / name, ignore=shutil.ignore_patterns(SHARED_COMPONENTS_FILE)
        )
        if name in W.GENERATORS:
            for part in W.SHARED_COMPONENTS:
                shutil.copytree(W.weights_root() / W.COMMON_DIR / part, export / name / part)
    (export / "stage.json").write_text("{}\n")
    return export


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_install_writes_the_shared_layout(tmp_path, monkeypatch):
    export = _full_export(tmp_path)
    monkeypatch.setattr(W, "weights_root", lambda: tmp_path / "weights")
    install(export.parent)
    installed = _files(tmp_path / "weights")
    assert installed.pop("build_summary.json") == b"{}\n"
    # Byte for byte the shipped layout, but for the embeddings (trained on the models, not by the build).
    assert installed == {k: v for k, v in _files(SHIPPED).items() if "/" in k}


def test_install_refuses_generators_that_do_not_share_their_vae(tmp_path, monkeypatch):
    export = _full_export(tmp_path)
    config = export / "t2v" / "vae" / "config.json"
    config.write_text(config.read_text().replace('"scaling_factor"', '"scaling_factor" ', 1))
    monkeypatch.setattr(W, "weights_root", lambda: tmp_path / "weights")
    with pytest.raises(UsageError, match="t2v/vae differ"):
        install(export.parent)
    assert not (tmp_path / "weights").exists()


def test_model_path_loads_a_complete_export_folder_as_the_shipped_one(tmp_path):
    """--model-path on a build's export folder (every component in it) loads the same weights."""
    export = _full_export(tmp_path)
    torch.set_num_threads(1)
    shipped = load_pipeline("shapes-t2i", "cpu", "float32")
    built = load_pipeline("shapes-t2i", "cpu", "float32", model_path=export / "t2i")
    for part in ("text_encoder", "vae", "unet"):
        a, b = getattr(shipped, part).state_dict(), getattr(built, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert shipped.tokenizer("a red circle").input_ids == built.tokenizer("a red circle").input_ids
