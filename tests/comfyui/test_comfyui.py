"""The ComfyUI node pack (comfyui_reneg/) against stand-in ComfyUI modules, and the LTXV conditioning file.

The node is loaded the way ComfyUI loads a custom node (its folder copied into custom_nodes/, imported
from its __init__.py by file location), with a minimal `folder_paths` stand-in serving models/embeddings/.
Its CONDITIONING must equal what `attach` feeds the matching diffusers pipeline, read by a forward hook
on a stand-in denoiser.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from reneg_video import attach, detach, load_embedding
from reneg_video.models.generate import generate, settings_for

from ..conftest import REPO, capture, shared_file

# released file -> (stand-in pipeline it is fed to, the real model the user picks in the node)
RELEASED = {
    "sd1.4_reneg_emb.bin": ("tiny-sd15", "sd15"),
    "sd1.5_reneg_emb.bin": ("tiny-sd15", "sd15"),
    "sd2.1_reneg_emb.bin": ("tiny-zeroscope", "zeroscope"),
    "pixart-alpha_reneg_emb.bin": ("tiny-ltx-video", "ltx-video"),
}


def _folder_paths_standin(embeddings: Path) -> types.ModuleType:
    """ComfyUI's folder_paths, as much of it as nodes use: list and resolve files of a model folder."""
    module = types.ModuleType("folder_paths")

    def get_filename_list(folder_name: str) -> list[str]:
        assert folder_name == "embeddings"
        return sorted(p.name for p in embeddings.iterdir())

    def get_full_path(folder_name: str, filename: str) -> str | None:
        assert folder_name == "embeddings"
        path = embeddings / filename
        return str(path) if path.is_file() else None

    module.get_filename_list, module.get_full_path = get_filename_list, get_full_path
    return module


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """A ComfyUI tree with the node pack copied into custom_nodes/ and the released files in embeddings/."""
    embeddings = tmp_path / "models" / "embeddings"
    embeddings.mkdir(parents=True)
    for name in RELEASED:
        shutil.copy(shared_file(name), embeddings / name)
    monkeypatch.setitem(sys.modules, "folder_paths", _folder_paths_standin(embeddings))
    node_dir = tmp_path / "custom_nodes" / "reneg"
    shutil.copytree(REPO / "comfyui_reneg", node_dir)
    # What ComfyUI's load_custom_node does: a module named by the folder path, its __init__ by location.
    spec = importlib.util.spec_from_file_location(
        str(node_dir), node_dir / "__init__.py", submodule_search_locations=[str(node_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, str(node_dir), module)
    spec.loader.exec_module(module)
    return module


def test_node_interface_as_comfyui_reads_it(comfy):
    assert set(comfy.NODE_CLASS_MAPPINGS) == set(comfy.NODE_DISPLAY_NAME_MAPPINGS)
    for cls in comfy.NODE_CLASS_MAPPINGS.values():
        inputs = cls.INPUT_TYPES()["required"]
        assert sorted(inputs["embedding"][0]) == sorted(RELEASED)
        assert {"ltx-video", "zeroscope", "sd15"} <= set(inputs["model"][0])
        assert cls.RETURN_TYPES == ("CONDITIONING",) and callable(getattr(cls(), cls.FUNCTION))
        assert isinstance(cls.CATEGORY, str)


def test_dropdown_offers_no_standin_or_demo_model_unless_asked(comfy, monkeypatch):
    from reneg_video.core.specs import list_models, load_spec

    cls = comfy.NODE_CLASS_MAPPINGS["ReNegNegativeConditioning"]
    monkeypatch.delenv("RENEG_VIDEO_STANDINS", raising=False)
    offered = cls.INPUT_TYPES()["required"]["model"]
    names = offered[0]
    assert {"ltx-video", "zeroscope", "sd15"} <= set(names) and offered[1]["default"] == "ltx-video"
    hidden = [n for n in names if load_spec(n).standin or load_spec(n).bundled]
    assert hidden == [] and not [n for n in names if n.startswith(("tiny-", "shapes-"))], hidden
    # Asked for (tests, demos): every model, stand-ins and the shapes world's bundled ones included.
    monkeypatch.setenv("RENEG_VIDEO_STANDINS", "1")
    names = cls.INPUT_TYPES()["required"]["model"][0]
    assert names == list_models() and {"tiny-zeroscope", "shapes-t2v"} <= set(names)


def test_package_imports_without_comfyui():
    code = "import comfyui_reneg as c; n = c.NODE_CLASS_MAPPINGS['ReNegNegativeConditioning']; "
    code += "assert n.INPUT_TYPES()['required']['embedding'] == ([],); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def _negative_reaching_denoiser(pipe, name: str, neg) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The negative row (and its mask) the stand-in denoiser receives in its first CFG call after attach."""
    spec = pipe.reneg_spec
    denoiser = pipe.transformer if hasattr(pipe, "transformer") else pipe.unet
    attach(pipe, neg)
    seen, handle = capture(denoiser)
    try:
        generate(pipe, spec, "a red panda", settings_for(spec, steps=1, height=32, width=32))
    finally:
        handle.remove()
        detach(pipe)
    mask = seen[0].get("encoder_attention_mask")
    return seen[0]["encoder_hidden_states"][:1], None if mask is None else mask[:1]


@pytest.mark.parametrize("file_name", sorted(RELEASED))
def test_node_conditioning_equals_what_attach_feeds_the_pipeline(comfy, pipelines, file_name, monkeypatch):
    monkeypatch.setenv("RENEG_VIDEO_STANDINS", "1")  # the node is also run on the stand-in model below
    standin, real = RELEASED[file_name]
    assert (
        standin
        in comfy.NODE_CLASS_MAPPINGS["ReNegNegativeConditioning"].INPUT_TYPES()["required"]["model"][0]
    )
    node = comfy.NODE_CLASS_MAPPINGS["ReNegNegativeConditioning"]()
    (conditioning,) = node.load(file_name, real)
    [[standin_tensor, _]] = node.load(file_name, standin)[0]  # the stand-in spec matches tokens as the real
    assert torch.equal(conditioning[0][0], standin_tensor)
    [[tensor, options]] = conditioning  # ComfyUI: a list of [tensor, options dict]
    context, mask = _negative_reaching_denoiser(
        pipelines(standin), standin, load_embedding(shared_file(file_name))
    )
    assert tensor.shape == context.shape and torch.equal(tensor, context)
    if real == "ltx-video":
        assert tensor.shape == (1, 128, 4096) and options["attention_mask"].shape == (1, 128)
        assert torch.equal(options["attention_mask"].bool(), mask.bool())
        assert int(options["attention_mask"].sum()) == 1  # token 0 kept, as learned on PixArt-alpha
    else:
        assert mask is None and options == {}


def test_node_refuses_an_embedding_from_another_space(comfy):
    from reneg_video import EncoderMismatchError

    node = comfy.NODE_CLASS_MAPPINGS["ReNegNegativeConditioning"]()
    with pytest.raises(EncoderMismatchError, match="width 1024"):
        node.load("sd2.1_reneg_emb.bin", "ltx-video")


def _read_like_ltxv_load_conditioning(path: Path) -> list[list]:
    """What ComfyUI-LTXVideo's LTXVLoadConditioning does with the file: every conditioning_data_{i},
    sorted, each with attention_mask_{i} in its options where present."""
    from safetensors import safe_open

    conditioning = []
    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = list(f.keys())
        for key in sorted(k for k in keys if k.startswith("conditioning_data_")):
            index = key.removeprefix("conditioning_data_")
            options = {}
            if f"attention_mask_{index}" in keys:
                options["attention_mask"] = f.get_tensor(f"attention_mask_{index}")
            conditioning.append([f.get_tensor(key), options])
    return conditioning


def test_ltxv_export_from_the_cli_round_trips(comfy, tmp_path, capsys):
    from reneg_video.commands.video import main

    path = tmp_path / "models" / "embeddings" / "reneg-ltxv.safetensors"
    pixart = shared_file("pixart-alpha_reneg_emb.bin")
    # No weights needed: the file is the embedding matched to LTX-Video's tokens, no model is loaded.
    assert main(["--model", "ltx-video", "--neg", str(pixart), "--export-ltxv-conditioning", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    loaded = _read_like_ltxv_load_conditioning(path)
    assert len(loaded) == 1
    [[tensor, options]] = loaded
    assert tensor.shape == (1, 128, 4096) and options["attention_mask"].shape == (1, 128)
    node = comfy.NODE_CLASS_MAPPINGS["ReNegNegativeConditioning"]()
    [[expected, expected_options]] = node.load("pixart-alpha_reneg_emb.bin", "ltx-video")[0]
    assert torch.equal(tensor, expected)
    assert torch.equal(options["attention_mask"], expected_options["attention_mask"])
    # The node's own listing now offers the exported file too (it sits in models/embeddings/).
    assert "reneg-ltxv.safetensors" in node.INPUT_TYPES()["required"]["embedding"][0]


def test_ltxv_export_refuses_clip_models_and_bad_paths(tmp_path, capsys):
    from reneg_video.commands.video import main

    sd21 = str(shared_file("sd2.1_reneg_emb.bin"))
    pixart = str(shared_file("pixart-alpha_reneg_emb.bin"))
    cases = (
        (["--model", "zeroscope", "--neg", sd21], str(tmp_path / "c.safetensors"), "takes no attention mask"),
        (["--model", "ltx-video", "--neg", pixart], str(tmp_path / "c.bin"), "ending in .safetensors"),
        (["--model", "ltx-video", "--neg", pixart], str(tmp_path / "no" / "c.safetensors"), "does not exist"),
        (["--model", "ltx-video"], str(tmp_path / "c.safetensors"), "needs --neg"),
    )
    for args, path, words in cases:
        assert main([*args, "--export-ltxv-conditioning", path]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
