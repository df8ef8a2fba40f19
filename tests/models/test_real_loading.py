"""Real-model loading as a user meets it: the Hugging Face cache layout, `--model DIR`, the published LTX
configs (0.9.0 and the timestep-conditioned 0.9.1 VAE), ZeroScope's `.bin`-only repo. Fixtures: realmodels.py."""

from __future__ import annotations

import json
import logging

import pytest
import torch

import reneg_video
from reneg_video.commands import validate as validate_cli
from reneg_video.commands.video import main
from reneg_video.core.specs import load_spec
from reneg_video.models.generate import generate, settings_for
from reneg_video.models.pipeline import LTX_DECODE_NOISE_SCALE, LTX_DECODE_TIMESTEP, _ExpectedPickleOnlyNotice
from reneg_video.models.standins import build_text_to_video_sd

from .. import realmodels


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A filled HF cache: ZeroScope (.bin only) and LTX-Video 0.9.1; plus two plain diffusers folders."""
    root = tmp_path_factory.mktemp("real")
    cache = root / "hub"
    zeroscope = realmodels.zeroscope_cache(cache)
    ltx = realmodels.ltx_cache(cache, "0.9.1")
    ltx_090 = root / "ltx-0.9.0"
    realmodels.ltx_pipeline("0.9.0").save_pretrained(ltx_090)
    other = root / "my-zeroscope-finetune"  # another ZeroScope-class folder, not the cached one
    torch.manual_seed(1)
    build_text_to_video_sd(load_spec("tiny-zeroscope")).save_pretrained(other)
    return {"cache": cache, "zeroscope": zeroscope, "ltx": ltx, "ltx_090": ltx_090, "other": other}


@pytest.fixture
def offline(monkeypatch):
    """Point the hub at `cache`, offline. huggingface_hub reads the variables once, at import."""
    from huggingface_hub import constants

    def use(cache):
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    return use


def _cli(tmp_path, capsys, *args):
    out = tmp_path / "v.gif"
    code = main([*map(str, args), "--prompt", "x", "--steps", "2", "--out", str(out), "--json",
                 str(tmp_path / "v.json"), "--quiet", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    summary = json.loads((tmp_path / "v.json").read_text()) if code == 0 else None
    return code, err, summary


# --- 1. --model DIR --------------------------------------------------------------------------------


def test_cli_model_dir_loads_that_folder_with_no_cache(hub, offline, tmp_path, capsys):
    offline(tmp_path / "empty-cache")
    folder = hub["other"]
    code, err, summary = _cli(
        tmp_path, capsys, "--model", folder, "--frames", 2, "--height", 32, "--width", 32
    )
    assert code == 0, err
    assert summary["model"] == "zeroscope" and summary["weights"] == str(folder)
    assert reneg_video.load_pipeline(folder, device="cpu").reneg_folder == folder  # as Python does it


def test_cli_model_dir_wins_over_the_cached_model(hub, offline, tmp_path, capsys):
    offline(hub["cache"])
    code, err, summary = _cli(tmp_path, capsys, "--model", hub["other"], "--frames", 2, "--height", 32,
                              "--width", 32)  # fmt: skip
    assert code == 0, err
    assert summary["weights"] == str(hub["other"]) != str(hub["zeroscope"])
    # The model name still reads the cache; --model-path beats a folder given as the model.
    code, err, summary = _cli(tmp_path, capsys, "--model", "zeroscope", "--frames", 2, "--height", 32,
                              "--width", 32)  # fmt: skip
    assert code == 0, err
    assert summary["weights"] == str(hub["zeroscope"])


def test_validate_resolves_model_dir_like_the_video_cli(hub, offline, tmp_path, monkeypatch, sd21_file):
    offline(tmp_path / "empty-cache")
    seen = {}
    monkeypatch.setattr(
        "reneg_video.render.validate.run_validation", lambda procs, job: seen.update(folder=job.weights) or {}
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    validate_cli.run(["--model", str(hub["other"]), "--neg", str(sd21_file), "--prompts-file", str(prompts),
                      "--out", str(tmp_path / "report")])  # fmt: skip
    assert seen["folder"] == hub["other"]


# --- 2. LTX 0.9.1+ decode settings from the loaded VAE's config ---------------------------------------


def _decode_timesteps(pipe, spec):
    seen = []
    decode = pipe.vae.decode

    def spy(z, temb=None, **kwargs):
        seen.append(None if temb is None else temb.flatten().tolist())
        return decode(z, temb, **kwargs)

    pipe.vae.decode = spy
    settings = settings_for(spec, frames=9, height=64, width=64, steps=2)  # shift_terminal needs 2+
    generate(pipe, spec, "a red panda", settings)
    return seen


def test_ltx_091_vae_decodes_at_its_timestep(hub, offline):
    offline(hub["cache"])
    pipe = reneg_video.load_pipeline("ltx-video", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae.config.timestep_conditioning is True
    assert pipe.reneg_call == {
        "decode_timestep": LTX_DECODE_TIMESTEP,
        "decode_noise_scale": LTX_DECODE_NOISE_SCALE,
    }
    assert _decode_timesteps(pipe, pipe.reneg_spec) == [[pytest.approx(LTX_DECODE_TIMESTEP)]]


def test_ltx_090_keeps_diffusers_defaults(hub):
    pipe = reneg_video.load_pipeline(hub["ltx_090"], device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.reneg_spec.name == "ltx-video" and pipe.reneg_call == {}
    assert _decode_timesteps(pipe, pipe.reneg_spec) == [None]


def test_cli_logs_and_records_the_decode_settings(hub, offline, tmp_path, capsys):
    offline(hub["cache"])
    code, err, summary = _cli(tmp_path, capsys, "--model", "ltx-video", "--frames", 9, "--height", 64,
                              "--width", 64)  # fmt: skip
    assert code == 0, err
    assert summary["call_settings"] == {"decode_timestep": 0.05, "decode_noise_scale": 0.025}
    assert [line for line in err.splitlines() if line.startswith("call: ")] == [
        "call: decode_timestep=0.05 decode_noise_scale=0.025 (from the model's configs: timestep-conditioned VAE)"
    ]
    code, err, summary = _cli(tmp_path, capsys, "--model", hub["ltx_090"], "--frames", 9, "--height", 64,
                              "--width", 64)  # fmt: skip
    assert code == 0, err
    assert summary["call_settings"] == {} and "call: " not in err


# --- 12. ZeroScope's .bin-only repo loads without the two "error ... fetch safetensors" lines ----------


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_zeroscope_bin_only_load_prints_no_fetch_errors(hub, offline):
    offline(hub["cache"])
    records = _Records()
    logger = logging.getLogger("diffusers")
    logger.addHandler(records)
    try:
        pipe = reneg_video.load_pipeline("zeroscope", device="cpu")
        logger.getChild("models.modeling_utils").error("another error")  # still passes after loading
    finally:
        logger.removeHandler(records)
    assert pipe.reneg_folder == hub["zeroscope"]
    assert not [m for m in records.messages if "trying to fetch" in m or "unsafe serialization" in m]
    assert "another error" in records.messages


def _record(message):
    return logging.LogRecord(
        "diffusers.models.modeling_utils", logging.ERROR, __file__, 1, message, None, None
    )


def test_only_the_expected_notice_is_dropped(tmp_path):
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"")
    notice = _ExpectedPickleOnlyNotice()
    expected = (
        f"An error occurred while trying to fetch {tmp_path}: Error no file named "
        f"diffusion_pytorch_model.safetensors found in directory {tmp_path}."
    )
    follow_up = "Defaulting to unsafe serialization. Pass `allow_pickle=False` to raise an error instead."
    assert not notice.filter(_record(expected)) and not notice.filter(_record(follow_up))
    assert notice.filter(_record(follow_up))  # not after an expected notice: kept
    missing = expected.replace(str(tmp_path), str(tmp_path / "nothing-here"))
    assert notice.filter(_record(missing))  # no .bin there either: a real failure, kept
    assert notice.filter(_record("An error occurred while trying to fetch x: connection refused"))
    assert notice.dropped == 2
