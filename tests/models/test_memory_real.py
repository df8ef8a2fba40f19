"""`--memory auto` sized from the loaded model's configs: LTX-Video at full size (on the meta device, nothing
allocated) against peaks measured on CPU at a reduced size with the real widths and scaled up."""

from __future__ import annotations

import pytest
import torch

import reneg_video
from reneg_video.core import memory
from reneg_video.core.memory import (
    choose_preset,
    estimate_need,
    estimate_stages,
    vae_geometry,
    weight_bytes_of,
)

from .. import realmodels

# diffusers' LTX-Video example size: 704x480, 161 frames (the ltx-video spec's defaults); bf16 on GPU.
FULL = {"height": 480, "width": 704, "frames": 161}
CUDA = torch.device("cuda")
GB = 10**9


@pytest.fixture(scope="module")
def ltx_full():
    return realmodels.ltx_meta_pipeline("0.9.1", torch.bfloat16)


def test_full_size_pipeline_is_on_meta_and_real_sized(ltx_full):
    assert {p.device.type for p in ltx_full.transformer.parameters()} == {"meta"}
    sizes = {
        n: sum(p.numel() for p in getattr(ltx_full, n).parameters()) for n in ("transformer", "text_encoder")
    }
    assert round(sizes["transformer"] / 1e9, 2) == 1.92  # FACTS: LTX-Video 2B transformer 1.92 B
    # T5-v1.1-xxl encoder 4.76 B + its 32128 x 4096 embedding: ~9.8 GB in bf16, the "~9.5 GB" peak of offload
    assert 9.5 * GB < weight_bytes_of(ltx_full.text_encoder) < 10 * GB


def test_geometry_comes_from_the_loaded_vae_config():
    ltx = realmodels.ltx_pipeline("0.9.1")
    assert {k: vae_geometry(ltx.vae)[k] for k in ("spatial", "temporal", "channels", "slices_frames")} == {
        "spatial": 32, "temporal": 8, "channels": 128, "slices_frames": False,
    }  # fmt: skip
    zeroscope = reneg_video.load_pipeline("tiny-zeroscope", device="cpu")
    assert {k: vae_geometry(zeroscope.vae)[k] for k in ("spatial", "temporal", "channels", "slices_frames")} == {
        "spatial": 8, "temporal": 1, "channels": 4, "slices_frames": True,
    }  # fmt: skip
    # Another config, another geometry: nothing is keyed on the model's name.
    from diffusers import AutoencoderKLLTXVideo

    other = AutoencoderKLLTXVideo(
        **{**realmodels.ltx_vae_config("0.9.1"), "patch_size": 2, "latent_channels": 64}
    )
    assert (vae_geometry(other)["spatial"], vae_geometry(other)["channels"]) == (16, 64)


def _measured_activations() -> dict[str, float]:
    """Activation bytes of LTX-Video 0.9.1 at FULL size in bf16, measured on CPU in float32 at a reduced size
    with the real widths (one layer per block: blocks run one after another, so depth does not change the
    peak) and scaled linearly in decoded pixels / tokens, x 0.5 for bf16."""
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

    torch.manual_seed(0)
    frames, height, width = 9, 96, 128
    vae = AutoencoderKLLTXVideo(**realmodels.ltx_vae_config("0.9.1", width_divisor=1, depth=1)).eval()
    z = torch.randn(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32)
    with torch.inference_mode(), realmodels.LiveTensorPeak() as decode:
        vae.decode(z, torch.tensor([0.05]))
    per_pixel = decode.peak / (frames * height * width)
    del vae
    config = realmodels.ltx_transformer_config("0.9.1", heads=32, layers=1)  # the real 32 x 64 width
    transformer = LTXVideoTransformer3DModel(**config).eval()
    grid = (3, 8, 8)
    tokens = 2 * grid[0] * grid[1] * grid[2]  # both CFG branches
    with torch.inference_mode(), realmodels.LiveTensorPeak() as step:
        transformer(
            hidden_states=torch.randn(2, tokens // 2, 128),
            encoder_hidden_states=torch.randn(2, 128, 4096),
            timestep=torch.tensor([500.0, 500.0]),
            encoder_attention_mask=torch.ones(2, 128),
            num_frames=grid[0], height=grid[1], width=grid[2], return_dict=False,
        )  # fmt: skip
    full_tokens = 2 * ((FULL["frames"] - 1) // 8 + 1) * (FULL["height"] // 32) * (FULL["width"] // 32)
    return {
        "decode": per_pixel * FULL["frames"] * FULL["height"] * FULL["width"] * 0.5,
        # A tiled decode (enable_tiling: 512 px tiles) decodes one 512-wide tile of all frames at a time.
        "decode_tiled": per_pixel * FULL["frames"] * FULL["height"] * 512 * 0.5,
        "denoise": step.peak / tokens * full_tokens * 0.5,
    }


def test_ltx_full_size_estimates_are_within_2x_of_measured_peaks(ltx_full):
    measured = _measured_activations()
    w = {n: weight_bytes_of(getattr(ltx_full, n)) for n in ("text_encoder", "transformer", "vae")}
    peaks = {
        # Everything resident: all weights + the larger activation peak (the VAE decode here).
        "off": sum(w.values()) + max(measured["decode"], measured["denoise"]),
        "balanced": sum(w.values()) + max(measured["decode"], measured["denoise"]),  # slicing: videos only
        # Model offload: one model on the GPU at a time.
        "low": max(
            w["text_encoder"], w["transformer"] + measured["denoise"], w["vae"] + measured["decode_tiled"]
        ),
        # Sequential offload: activations + about one layer (T5's 32128 x 4096 embedding).
        "minimal": max(measured["decode_tiled"], measured["denoise"]) + 32128 * 4096 * 2,
    }
    for preset, peak in peaks.items():
        estimate = estimate_need(ltx_full, preset, device=CUDA, **FULL)
        assert 0.5 <= estimate / peak <= 2.0, (preset, estimate / GB, peak / GB)


def _card(monkeypatch, free_bytes: float):
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: (int(free_bytes), "test card"))


@pytest.mark.parametrize(
    ("free_gb", "preset"),
    [
        (11.5, "low"),  # a 12 GB card less its CUDA context: T5-xxl (~9.8 GB) is the peak, model offload fits
        (10.2, "low"),
        (23.0, "off"),  # a 24 GB card holds everything
        (6.0, "minimal"),  # T5-xxl alone does not fit: only sequential offload remains
    ],
)
def test_auto_picks_model_offload_where_it_fits(ltx_full, monkeypatch, free_gb, preset):
    _card(monkeypatch, free_gb * GB)
    assert choose_preset(ltx_full, device=CUDA, **FULL)[0] == preset


def test_auto_never_picks_sequential_where_model_offload_fits(ltx_full, monkeypatch):
    low = estimate_need(ltx_full, "low", device=CUDA, **FULL)
    _card(monkeypatch, low + memory.RESERVE_BYTES + 2**20)
    assert choose_preset(ltx_full, device=CUDA, **FULL)[0] == "low"


def test_balanced_saves_nothing_for_one_ltx_video(ltx_full):
    off, balanced = (estimate_stages(ltx_full, p, **FULL)["decode"] for p in ("off", "balanced"))
    assert off == balanced
    zeroscope = reneg_video.load_pipeline("tiny-zeroscope", device="cpu")
    size = {"height": 320, "width": 576, "frames": 24}
    off, balanced = (estimate_stages(zeroscope, p, **size)["decode"][1] for p in ("off", "balanced"))
    assert balanced * 24 == off  # a 2-D VAE decodes the frames one at a time
