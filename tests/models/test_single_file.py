"""Single-file LTX-Video checkpoints (ComfyUI / LTX repo layout) load with diffusers' `from_single_file` and a
local config: a diffusers folder the user gives, or the configs shipped per release. Nothing is downloaded."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
from safetensors.torch import load_file, save_file

import reneg_video
from reneg_video import ModelNotFoundError
from reneg_video.commands.video import main
from reneg_video.models import pipeline

from .. import realmodels


@pytest.fixture(scope="module")
def ltx(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    pipe = realmodels.ltx_pipeline("0.9.1")
    pipe.save_pretrained(root / "folder")
    checkpoint = realmodels.ltx_single_file(pipe, root / "ltxv-2b-0.9.1.safetensors")
    # The HF cache as `hf download Lightricks/LTX-Video --include <SINGLE_FILE_BASE>` leaves it.
    partial = root / "partial"
    partial.mkdir()
    for part in ("model_index.json", "scheduler", "text_encoder", "tokenizer"):
        source = root / "folder" / part
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, partial / part)
    cache = root / "hub"
    realmodels.hf_cache_repo(cache, realmodels.LTX_REPO, partial)
    # "Shipped" configs of this reduced-depth release, laid out as reneg_video/models/ltx_configs is.
    configs = root / "configs"
    for part in ("transformer", "vae"):
        getattr(pipe, part).save_config(configs / "ltx-video-0.9.1" / part)
    return {"pipe": pipe, "root": root, "file": checkpoint, "cache": cache, "configs": configs}


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    def use(cache):
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    return use


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_single_file_with_the_users_diffusers_folder(ltx):
    pipe = reneg_video.load_pipeline(ltx["root"] / "folder", device="cpu", model_path=ltx["file"])
    assert pipe.reneg_folder == ltx["file"] and pipe.reneg_spec.name == "ltx-video"
    assert _same_weights(pipe.transformer, ltx["pipe"].transformer) and _same_weights(
        pipe.vae, ltx["pipe"].vae
    )


def test_single_file_with_shipped_configs_and_the_text_encoder_from_the_cache(ltx, hub, monkeypatch):
    hub(ltx["cache"])
    monkeypatch.setattr(pipeline, "SINGLE_FILE_CONFIGS", ltx["configs"])
    pipe = reneg_video.load_pipeline("ltx-video", device="cpu", model_path=ltx["file"])
    assert _same_weights(pipe.transformer, ltx["pipe"].transformer) and _same_weights(
        pipe.vae, ltx["pipe"].vae
    )
    assert _same_weights(pipe.text_encoder, ltx["pipe"].text_encoder)
    assert pipe.reneg_call["decode_timestep"] == 0.05  # 0.9.1's timestep-conditioned VAE, from its config


def test_cli_renders_from_a_single_file(ltx, hub, monkeypatch, tmp_path, capsys, pixart_file):
    hub(ltx["cache"])
    monkeypatch.setattr(pipeline, "SINGLE_FILE_CONFIGS", ltx["configs"])
    code = main(["--model", "ltx-video", "--model-path", str(ltx["file"]), "--neg", str(pixart_file),
                 "--prompt", "a red panda", "--frames", "9", "--height", "64", "--width", "64", "--steps", "2",
                 "--device", "cpu", "--out", str(tmp_path / "p.gif"), "--json", str(tmp_path / "p.json"),
                 "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["weights"] == str(ltx["file"]) and summary["call_settings"]["decode_noise_scale"] == 0.025


def test_missing_text_encoder_is_one_line_before_loading(ltx, hub, monkeypatch, tmp_path, capsys):
    hub(tmp_path / "empty-cache")

    def no_loading(*_a, **_k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "load_pipeline", no_loading)
    code = main(["--model", "ltx-video", "--model-path", str(ltx["file"]), "--prompt", "x",
                 "--out", str(tmp_path / "p.mp4")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "lacks model_index.json, text_encoder/config.json, tokenizer, scheduler" in err[0]
    assert '--include "model_index.json" "scheduler/*" "text_encoder/*" "tokenizer/*"' in err[0]
    assert [p.name for p in tmp_path.iterdir() if p.name != "empty-cache"] == []


def test_a_release_without_shipped_configs_is_refused_by_name(ltx, hub, monkeypatch, tmp_path):
    hub(ltx["cache"])
    monkeypatch.setattr(pipeline, "SINGLE_FILE_CONFIGS", ltx["configs"])
    state = load_file(str(ltx["file"]))
    state["model.diffusion_model.transformer_blocks.47.scale_shift_table"] = torch.zeros(
        6, 128
    )  # 13B: 48 blocks
    save_file(state, str(tmp_path / "ltxv-13b.safetensors"))
    with pytest.raises(ModelNotFoundError, match=r"'ltx-video-0\.9\.7' checkpoint.*LTXConditionPipeline"):
        reneg_video.load_pipeline("ltx-video", device="cpu", model_path=tmp_path / "ltxv-13b.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelNotFoundError, match="not a readable .safetensors"):
        reneg_video.load_pipeline("ltx-video", device="cpu", model_path=tmp_path / "broken.safetensors")


@pytest.mark.parametrize(("release", "conditioned"), [("ltx-video", False), ("ltx-video-0.9.1", True)])
def test_shipped_configs_are_the_published_models(release, conditioned):
    root = pipeline.SINGLE_FILE_CONFIGS / release
    with init_empty_weights():
        transformer = LTXVideoTransformer3DModel.from_config(
            LTXVideoTransformer3DModel.load_config(root / "transformer")
        )
        vae = AutoencoderKLLTXVideo.from_config(AutoencoderKLLTXVideo.load_config(root / "vae"))
    assert round(sum(p.numel() for p in transformer.parameters()) / 1e9, 2) == 1.92  # LTX-Video 2B
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio, vae.config.latent_channels) == (
        32,
        8,
        128,
    )
    assert vae.config.timestep_conditioning is conditioned


def test_single_files_only_where_the_pipeline_takes_them(tmp_path):
    (tmp_path / "unet.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="no model_index.json"):
        pipeline.model_folder(reneg_video.load_spec("zeroscope"), tmp_path / "unet.safetensors")


def test_help_names_the_single_file_route():
    from reneg_video.commands.video import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "single-file .safetensors checkpoint" in text and "--model-path FILE.safetensors" in text
