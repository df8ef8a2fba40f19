"""Per-step guidance (LTX-Video 0.9.7 dev's reference schedule): the spec's table is read and checked once,
the scale the CFG combine really uses at each step follows it (measured from the denoiser's two halves and
what reaches the scheduler), the negative branch stays batched at every step, and --guidance overrides it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from reneg_video import SpecError, load_spec
from reneg_video.models.generate import UNIT_GUIDANCE, generate, settings_for

from ..conftest import run_cli

# Lightricks LTX-Video, configs/ltxv-13b-0.9.7-dev.yaml, first_pass.
REFERENCE_TIMESTEPS = (1.0, 0.996, 0.9933, 0.9850, 0.9767, 0.9008, 0.6180)
REFERENCE_SCALES = (1, 1, 6, 8, 6, 1, 1)
# diffusers' LTXConditionPipeline at 4 steps (the stand-in's default) runs its linear-quadratic schedule:
# timesteps 1000, 987.5, 975, 725 -> fractions 1, 0.9875, 0.975, 0.725 -> thresholds 1.0, 0.985, 0.9008,
# 0.618 -> these scales (worked by hand from the reference's first-threshold-<=-t rule).
STANDIN_PER_STEP = [1.0, 8.0, 1.0, 1.0]


def test_the_0_9_7_specs_carry_the_reference_schedule():
    for name in ("ltx-video-0.9.7", "tiny-ltx-video-0.9.7"):
        schedule = load_spec(name).guidance_schedule
        assert schedule.timesteps == REFERENCE_TIMESTEPS and schedule.scales == REFERENCE_SCALES
    assert load_spec("ltx-video-0.9.5").guidance_schedule is None


@pytest.mark.parametrize(
    "t, scale",
    [
        (1.0, 1),
        (0.998, 1),
        (0.996, 1),
        (0.995, 6),
        (0.99, 8),
        (0.985, 8),
        (0.98, 6),
        (0.95, 1),
        (0.7, 1),
        (0.5, 1),
    ],
)
def test_a_step_takes_the_first_threshold_at_or_below_its_timestep(t, scale):
    # 0.5 lies below every threshold: the reference then takes the last scale.
    assert load_spec("ltx-video-0.9.7").guidance_schedule.scale_at(t) == scale


def _spec_with(tmp_path: Path, table: str, extra: str = "") -> Path:
    text = Path(load_spec("ltx-video-0.9.7").source).read_text()  # the stand-in inherits this table
    text = text[: text.index("\n[guidance_schedule]") + 1] + table
    path = tmp_path / "bad.toml"
    path.write_text(text.replace('kind = "video"', f'kind = "video"\n{extra}'))
    return path


@pytest.mark.parametrize(
    "table, extra, word",
    [
        ("[guidance_schedule]\ntimesteps = [1.0, 0.5]\nscales = [3]\n", "", "2 timesteps but 1 scales"),
        ("[guidance_schedule]\ntimesteps = [0.5, 1.0]\nscales = [3, 3]\n", "", "strictly descending"),
        ("[guidance_schedule]\ntimesteps = [2.0, 1.0]\nscales = [3, 3]\n", "", r"in \[0, 1\]"),
        ("[guidance_schedule]\ntimesteps = [1.0, 0.5]\nscales = [3, 0.5]\n", "", "below 1"),
        ("[guidance_schedule]\ntimesteps = [1.0, 0.5]\nscales = [1, 1]\n", "", "never guide"),
        ("[guidance_schedule]\ntimesteps = []\nscales = []\n", "", "non-empty"),
        ("[guidance_schedule]\ntimesteps = [1.0]\nscales = [true]\n", "", "finite numbers"),
        ("[guidance_schedule]\ntimesteps = [1.0]\nscales = [3]\nstg = [1]\n", "", "exactly the keys"),
        (
            "[guidance_schedule]\ntimesteps = [1.0]\nscales = [3]\n",
            "negative_branch = false",
            "negative_branch",
        ),
    ],
)
def test_bad_schedules_are_refused_naming_the_table(tmp_path, table, extra, word):
    with pytest.raises(SpecError, match=word) as info:
        load_spec(_spec_with(tmp_path, table, extra))
    assert "bad.toml" in str(info.value) and "\n" not in str(info.value)


class _CombineProbe:
    """Measures the scale of each step's CFG combine without trusting the code under test: the denoiser's
    output halves (uncond, text) and the prediction the pipeline hands the scheduler
    (LTXConditionPipeline steps with `-noise_pred`) give g = <c - u, t - u> / |t - u|^2."""

    def __init__(self, pipe) -> None:
        self.pipe, self.halves, self.scales, self.batches = pipe, None, [], []
        self._hook = pipe.transformer.register_forward_hook(self._denoiser)
        self._step = pipe.scheduler.step
        pipe.scheduler.step = self._scheduler_step

    def _denoiser(self, module, args, output):
        out = output[0].float()
        self.batches.append(out.shape[0])
        self.halves = out.chunk(2) if out.shape[0] == 2 else None

    def _scheduler_step(self, model_output, *args, **kwargs):
        uncond, text = self.halves
        combined = -model_output.float()
        diff = (text - uncond).flatten()
        self.scales.append(float(((combined - uncond).flatten() @ diff) / (diff @ diff)))
        return self._step(model_output, *args, **kwargs)

    def close(self) -> None:
        self._hook.remove()
        self.pipe.scheduler.step = self._step


@pytest.fixture
def ltx097(pipelines):
    pipe = pipelines("tiny-ltx-video-0.9.7")
    probe = _CombineProbe(pipe)
    yield pipe, probe
    probe.close()


def test_the_combine_follows_the_schedule_and_the_negative_branch_runs_every_step(ltx097):
    pipe, probe = ltx097
    spec = pipe.reneg_spec
    settings = settings_for(spec, steps=4)
    assert settings.guidance_schedule == spec.guidance_schedule
    generate(pipe, spec, "a cat", settings)
    assert probe.batches == [2, 2, 2, 2]  # [negative, positive] at every step, guidance-1 steps included
    assert probe.scales == pytest.approx(STANDIN_PER_STEP, abs=1e-4)
    assert [scale for _, _, scale in pipe.reneg_guidance_used] == STANDIN_PER_STEP
    assert [t for _, t, _ in pipe.reneg_guidance_used] == pytest.approx([1.0, 0.9875, 0.975, 0.725])
    assert pipe._guidance_scale in (UNIT_GUIDANCE, 8.0)  # never set to 1.0, which would unbatch


def test_guidance_overrides_the_schedule_at_every_step(ltx097):
    pipe, probe = ltx097
    settings = settings_for(pipe.reneg_spec, steps=4, guidance=5.0)
    assert settings.guidance_schedule is None
    generate(pipe, pipe.reneg_spec, "a cat", settings)
    assert probe.scales == pytest.approx([5.0] * 4, abs=1e-4)
    assert pipe.reneg_guidance_used is None


def test_cli_logs_and_records_the_schedule(tmp_path, capsys, pixart_file):
    base = ["--model", "tiny-ltx-video-0.9.7", "--neg", pixart_file, "--prompt", "a cat", "--quiet"]
    code, _, err = run_cli(capsys, *base, "--out", tmp_path / "a.mp4", "--json", tmp_path / "a.json")
    assert code == 0, err
    assert (
        "guidance: per step from tiny-ltx-video-0.9.7's schedule" in err
        and "guidance per step: 1 8 1 1" in err
    )
    call = json.loads((tmp_path / "a.json").read_text())["call_settings"]
    assert call["guidance_schedule"] == {
        "timesteps": list(REFERENCE_TIMESTEPS),
        "scales": list(REFERENCE_SCALES),
        "per_step": STANDIN_PER_STEP,
    }
    code, _, err = run_cli(
        capsys, *base, "--guidance", 5, "--out", tmp_path / "b.mp4", "--json", tmp_path / "b.json"
    )
    assert code == 0, err
    assert "guidance: 5 at every step (--guidance overrides" in err
    assert "guidance_schedule" not in json.loads((tmp_path / "b.json").read_text())["call_settings"]


def test_help_says_guidance_overrides_a_schedule(capsys):
    from reneg_video.commands.video import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "overrides a spec's per-step schedule" in text


def test_a_scheduled_model_is_batched_from_its_first_step():
    # The first step's scale is 1 in the reference; diffusers builds the [negative, positive] batch only when
    # the call's guidance_scale > 1, so the call starts just above 1.
    assert UNIT_GUIDANCE > 1.0 and torch.tensor(UNIT_GUIDANCE, dtype=torch.float32).item() == 1.0
