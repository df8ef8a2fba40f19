"""Speed presets (`--speed off|fast|fastest`): what each applies per denoiser, what it reports, the CLI.

No timed assertions: time is measured by the bench (`speed_fast_time`); here the mechanisms and the counts.
"""

from __future__ import annotations

import json
import types

import pytest
import torch

from reneg_video.core.errors import UsageError
from reneg_video.core.speed import FBC_THRESHOLD, apply_speed_preset, check_speed, scaled_steps
from reneg_video.models.pipeline import load_pipeline


def test_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(UsageError, match=r"--speed 'turbo'.*off, fast, fastest"):
        check_speed("turbo")
    with pytest.raises(UsageError, match="turbo"):
        load_pipeline("tiny-zeroscope", device="cpu", speed="turbo")  # refused before anything loads


@pytest.mark.parametrize(
    ("steps", "preset", "expected"), [(40, "off", 40), (40, "fast", 20), (40, "fastest", 10), (3, "fast", 2)]
)
def test_scaled_steps_round_up(steps, preset, expected):
    scale = {"off": 1.0, "fast": 0.5, "fastest": 0.25}[preset]
    assert scaled_steps(steps, {"steps_scale": scale}) == expected
    assert scaled_steps(1, {"steps_scale": 0.25}) == 1
    assert scaled_steps(7, None) == 7


def test_unet3d_fast_swaps_in_dpm_solver_and_halves_the_steps():
    off = load_pipeline("tiny-zeroscope", device="cpu", speed="off")
    fast = load_pipeline("tiny-zeroscope", device="cpu", speed="fast")
    assert type(off.scheduler).__name__ == "DDIMScheduler"
    assert off.reneg_speed == {
        "preset": "off", "device": "cpu", "cache": False, "scheduler": False, "steps_scale": 1.0,
        "compile": False,
    }  # fmt: skip
    assert type(fast.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert fast.scheduler.config.beta_schedule == off.scheduler.config.beta_schedule
    assert fast.reneg_speed["steps_scale"] == 0.5
    # UNet3D has no diffusers cache hook: said, not skipped silently.
    assert fast.reneg_speed["cache"].startswith("unsupported: UNet3DConditionModel")
    assert fast.reneg_speed["compile"] is False


def test_fastest_reports_compile_as_cuda_only_on_cpu():
    pipe = load_pipeline("tiny-zeroscope", device="cpu", speed="fastest")
    assert pipe.reneg_speed["steps_scale"] == 0.25
    assert pipe.reneg_speed["compile"].startswith("not applied on cpu")


def test_fast_makes_half_the_denoiser_calls():
    from reneg_video.bench.speed import DenoiserCalls
    from reneg_video.models.generate import generate, settings_for

    counts = {}
    for preset in ("off", "fast"):
        pipe = load_pipeline("tiny-zeroscope", device="cpu", speed=preset)
        pipe.set_progress_bar_config(disable=True)
        calls = DenoiserCalls(pipe)
        steps = scaled_steps(4, pipe.reneg_speed)
        frames = generate(
            pipe, pipe.reneg_spec, "a cat", settings_for(pipe.reneg_spec, steps=steps, frames=2)
        )
        calls.close()
        assert frames.shape[0] == 2 and bool(torch.isfinite(torch.from_numpy(frames)).all())
        counts[preset] = calls.count
    assert counts == {"off": 4, "fast": 2}  # CFG branches batched: one call per step


def _ltx_transformer(layers: int):
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, num_layers=layers, caption_channels=16,
    ).eval()  # fmt: skip


def test_cache_mixin_denoiser_gets_first_block_cache_and_reuses_it():
    transformer = _ltx_transformer(layers=3)
    pipe = types.SimpleNamespace(transformer=transformer)
    settings = apply_speed_preset(pipe, "fast", device="cpu")
    assert settings["cache"] == f"FirstBlockCache(threshold={FBC_THRESHOLD['fast']})"
    assert settings["scheduler"] is False and settings["steps_scale"] == 1.0  # steps unchanged under a cache
    assert transformer.is_cache_enabled

    # The tail blocks compute only when the first block's residual moved (a skipped block returns its cached
    # residual without running its layers): count the last block's attention calls.
    tail_calls = []
    transformer.transformer_blocks[-1].attn1.register_forward_pre_hook(lambda *_: tail_calls.append(1))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2 * 2 * 2, 8, generator=gen)  # [B, F*H*W tokens, C]
    text = torch.randn(1, 4, 16, generator=gen)
    kwargs = dict(encoder_attention_mask=torch.ones(1, 4), num_frames=2, height=2, width=2, return_dict=False)
    outs = []
    with torch.no_grad(), transformer.cache_context("cond_uncond"):
        for t in (500.0, 500.0):  # the same input twice: the second call may reuse the cache
            outs.append(transformer(x, text, torch.tensor([t]), **kwargs)[0])
    assert len(tail_calls) == 1
    torch.testing.assert_close(outs[0], outs[1])


def test_cache_mixin_with_one_block_says_why_not():
    pipe = types.SimpleNamespace(transformer=_ltx_transformer(layers=1))
    settings = apply_speed_preset(pipe, "fastest", device="cpu")
    assert settings["cache"].startswith("unsupported: LTXVideoTransformer3DModel has 1 transformer block")
    assert not pipe.transformer.is_cache_enabled


def test_pipeline_with_its_own_loop_keeps_its_steps():
    class OwnLoopPipeline:  # a pipeline outside diffusers (as VideoCrafter2's)
        unet = torch.nn.Linear(2, 2)
        scheduler = object()

    settings = apply_speed_preset(OwnLoopPipeline(), "fast", device="cpu")
    assert settings["scheduler"].startswith("unsupported: OwnLoopPipeline runs its own sampling loop")
    assert settings["steps_scale"] == 1.0


def test_cli_logs_and_writes_the_effective_preset(tmp_path, capsys):
    from reneg_video.commands.video import main

    code = main([
        "--model", "tiny-zeroscope", "--prompt", "a cat", "--frames", "2", "--steps", "4", "--speed", "fast",
        "--out", str(tmp_path / "v.mp4"), "--json", str(tmp_path / "v.json"), "--quiet",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("speed: ")]
    assert len(lines) == 1 and "preset=fast" in lines[0] and "steps=4->2" in lines[0]
    assert "unsupported: UNet3DConditionModel" in lines[0]
    summary = json.loads((tmp_path / "v.json").read_text())
    assert summary["speed"]["scheduler"].startswith("DPMSolverMultistepScheduler")
    assert summary["settings"]["steps"] == 2


def test_cli_refuses_an_unknown_preset_and_writes_nothing(tmp_path, capsys):
    from reneg_video.commands.video import main

    code = main(
        ["--model", "tiny-zeroscope", "--prompt", "a cat", "--speed", "x", "--out", str(tmp_path / "v.mp4")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--speed 'x'" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_validate_has_the_speed_option():
    from reneg_video.commands.validate import build_parser

    text = build_parser().format_help()
    assert "--speed PRESET" in text and "speed presets" in text
    assert (
        build_parser().parse_args(["--model", "m", "--neg", "n", "--prompts-file", "p", "--out", "o"]).speed
        == "off"
    )


def test_paired_delta_brackets_the_mean():
    """The report's deltas go through core.stats (bit for bit the old bench formula: test_stats)."""
    from reneg_video.bench.speed import paired_delta
    from reneg_video.core.stats import bootstrap_interval

    values = [0.1, -0.2, 0.3, 0.05, 0.0, 0.15]
    d = paired_delta(values, [0.0] * 6)
    assert d["low"] <= d["mean"] <= d["high"] and d["n"] == 6
    assert (d["mean"], d["low"], d["high"]) == bootstrap_interval(values)
    assert d["mean"] == pytest.approx(sum(values) / len(values))
    assert paired_delta([1.5, 1.5], [1.0, 1.0]) == {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 2}
