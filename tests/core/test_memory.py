"""Memory presets: each sets what it claims, reports what it cannot do, and leaves the output unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import reneg_video
from reneg_video.commands.video import main
from reneg_video.core.memory import PRESETS, apply_memory_preset, choose_preset, describe


def _sliced(denoiser) -> set[str]:
    return {type(p).__name__ for p in denoiser.attn_processors.values()}


def _chunked(denoiser) -> set:
    return {
        getattr(m, "_chunk_size", None) for m in denoiser.modules() if hasattr(m, "set_chunk_feed_forward")
    }


@pytest.fixture
def zeroscope():
    pipe = reneg_video.load_pipeline("tiny-zeroscope", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize(
    ("preset", "slicing", "tiling", "attention", "chunking"),
    [
        ("off", False, False, False, False),
        ("balanced", True, False, False, False),
        ("low", True, True, False, True),
        ("minimal", True, True, "max", True),
    ],
)
def test_zeroscope_presets_set_what_they_claim(zeroscope, preset, slicing, tiling, attention, chunking):
    settings = apply_memory_preset(zeroscope, preset, height=64, width=64, frames=8)
    assert settings["preset"] == preset and zeroscope.reneg_memory is settings
    assert zeroscope.vae.use_slicing is slicing and settings["vae_slicing"] is slicing
    assert zeroscope.vae.use_tiling is tiling and settings["vae_tiling"] is tiling
    assert settings["attention_slicing"] == attention
    processors = _sliced(zeroscope.unet)
    assert processors == ({"SlicedAttnProcessor"} if attention else {"AttnProcessor2_0"})
    assert settings["forward_chunking"] is chunking
    assert _chunked(zeroscope.unet) == ({1} if chunking else {None})
    # Offload is CUDA-only: on CPU the presets that would offload say so instead of doing nothing silently.
    if preset in ("low", "minimal"):
        assert settings["cpu_offload"].startswith("not applicable on cpu")
    else:
        assert settings["cpu_offload"] is False


def test_presets_can_be_undone(zeroscope):
    apply_memory_preset(zeroscope, "minimal", height=64, width=64, frames=8)
    apply_memory_preset(zeroscope, "off", height=64, width=64, frames=8)
    assert not zeroscope.vae.use_slicing and not zeroscope.vae.use_tiling
    assert _sliced(zeroscope.unet) == {"AttnProcessor2_0"} and _chunked(zeroscope.unet) == {None}


def test_ltx_reports_attention_slicing_and_chunking_unsupported():
    pipe = reneg_video.load_pipeline("tiny-ltx-video", device="cpu")
    settings = apply_memory_preset(pipe, "minimal", height=64, width=64, frames=9)
    assert settings["attention_slicing"].startswith("unsupported: LTXVideoTransformer3DModel")
    assert settings["forward_chunking"].startswith("unsupported: LTXVideoTransformer3DModel")
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    assert "unsupported" in describe(settings)


def test_auto_chooses_a_concrete_preset_and_says_why(zeroscope):
    settings = apply_memory_preset(zeroscope, "auto", height=64, width=64, frames=8)
    assert settings["requested"] == "auto" and settings["preset"] in PRESETS[1:]
    assert "free" in settings["auto_reason"]
    # Tiny stand-in, tiny video: anything with memory to spare runs without changes.
    assert choose_preset(zeroscope, height=64, width=64, frames=8, device=torch.device("cpu"))[0] == "off"


def test_load_pipeline_applies_a_preset():
    pipe = reneg_video.load_pipeline("tiny-zeroscope", device="cpu", memory="low")
    assert pipe.reneg_memory["preset"] == "low" and pipe.vae.use_tiling
    with pytest.raises(reneg_video.UsageError, match="--memory 'tiny'.*expected one of auto, off"):
        reneg_video.load_pipeline("tiny-zeroscope", device="cpu", memory="tiny")


def _video(pipe):
    return pipe(
        prompt="a corgi",
        num_frames=4,
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(3),
        output_type="np",
    ).frames[0]


def test_low_and_minimal_give_the_same_video_as_off(zeroscope):
    apply_memory_preset(zeroscope, "off", height=64, width=64, frames=4)
    off = _video(zeroscope)
    for preset in ("low", "minimal"):
        apply_memory_preset(zeroscope, preset, height=64, width=64, frames=4)
        np.testing.assert_allclose(_video(zeroscope), off, atol=1e-4)


def test_cfg_branches_are_batched(zeroscope):
    """One denoiser call per step carrying both CFG branches: nothing to gain by batching ourselves."""
    batches = []
    hook = zeroscope.unet.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
    try:
        _video(zeroscope)
    finally:
        hook.remove()
    assert batches == [2, 2]


def test_cli_logs_and_records_the_effective_settings(tmp_path, capsys):
    code = main(
        ["--model", "tiny-zeroscope", "--prompt", "x", "--frames", "2", "--steps", "1", "--height", "32",
         "--width", "32", "--memory", "low", "--out", str(tmp_path / "v.gif"), "--json", str(tmp_path / "v.json"),
         "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("memory: ")]
    assert len(lines) == 1 and "preset=low" in lines[0] and "vae_tiling=True" in lines[0]
    memory = json.loads((tmp_path / "v.json").read_text())["memory"]
    assert memory["preset"] == "low" and memory["vae_slicing"] is True


def test_cli_refuses_a_bad_memory_value_in_one_line(tmp_path, capsys):
    code = main(
        ["--model", "tiny-zeroscope", "--prompt", "x", "--memory", "tiny", "--out", str(tmp_path / "v.gif")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--memory 'tiny'" in err and "balanced" in err
    assert list(tmp_path.iterdir()) == []


def test_help_documents_every_preset(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for preset in PRESETS:
        assert f"  {preset} " in out


@pytest.mark.parametrize(("name", "temporal"), [("tiny-cogvideox-2b", 4), ("tiny-allegro", 4)])
def test_memory_code_reads_the_vae_config_without_a_future_warning(name, temporal):
    """CogVideoX's and Allegro's VAEs keep temporal_compression_ratio in their config only: reading it off the
    model itself is deprecated in diffusers (a FutureWarning on every run)."""
    import warnings

    from reneg_video.core.memory import estimate_stages, vae_geometry

    pipe = reneg_video.load_pipeline(name, device="cpu", memory="off")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # around our calls only, not diffusers' loading
        geometry = vae_geometry(pipe.vae)
        estimate_stages(pipe, "low", height=32, width=32, frames=9)
        choose_preset(pipe, height=32, width=32, frames=9, device=torch.device("cpu"))
        settings = apply_memory_preset(pipe, "auto", height=32, width=32, frames=9)
    assert geometry["temporal"] == temporal == pipe.vae.config.temporal_compression_ratio
    assert not geometry["slices_frames"] and settings["preset"] in PRESETS
