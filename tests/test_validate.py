"""reneg-validate on the stand-ins: the report's shape, its statistics, and its videos in Chromium."""

from __future__ import annotations

import json

import pytest

from reneg_video.commands.validate import main, win_rate
from reneg_video.core.export import validate_mp4

from .browser import video_states
from .conftest import SHARED

PROMPTS = SHARED / "prompts" / "reno_example_prompts.txt"


def test_win_rate_and_bootstrap_interval():
    all_won = win_rate([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert (all_won["rate"], all_won["low"], all_won["high"]) == (1.0, 1.0, 1.0)
    mixed = win_rate([1, 0, 1, 0, 1, 1, 0, 1], [0, 1, 0, 1, 0, 0, 1, 0])
    assert mixed["rate"] == 0.625 and mixed["low"] < 0.625 < mixed["high"]
    assert win_rate([1.0], [1.0])["rate"] == 0.5  # a tie counts half


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from .conftest import shared_file

    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    out = tmp_path_factory.mktemp("validate") / "report"
    code = main(["--model", "tiny-zeroscope", "--neg", str(shared_file("sd2.1_reneg_emb.bin")), "--prompts-file",
                 str(PROMPTS), "--max-prompts", "2", "--seeds", "1", "--reward", "tiny-imagereward", "--frames", "2",
                 "--height", "32", "--width", "32", "--steps", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def test_report_json_shape(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert report["standin"] is True and set(report["mean_reward"]) == {"null", "handcrafted", "reneg"}
    assert set(report["win_rate"]) == {"reneg_vs_null", "reneg_vs_handcrafted"}
    assert len(report["prompts"]) == 2
    for row in report["prompts"]:
        for entry in row["seeds"]:
            for arm, name in entry["videos"].items():
                assert validate_mp4(report_dir / name, 2)["frames"] == 2
                assert len(entry["frames"][arm]) == 2
            assert (report_dir / entry["curve"]).stat().st_size > 0


def test_report_videos_load_in_headless_chromium(report_dir, tmp_path):
    states = video_states(report_dir / "index.html", tmp_path / "chromium-profile")
    assert len(states) == 6  # 2 prompts x 1 seed x 3 arms
    for ready, duration in states:
        assert ready == 4, states  # HAVE_ENOUGH_DATA
        assert duration == pytest.approx(2 / 8, abs=0.01)  # 2 frames at the stand-in's 8 fps


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    base = ["--model", "tiny-zeroscope", "--neg", str(SHARED / "reneg" / "sd2.1_reneg_emb.bin"),
            "--prompts-file", str(PROMPTS), "--out", str(tmp_path / "r")]  # fmt: skip
    for extra, word in ((["--seeds", "0"], "--seeds 0"), (["--reward", "nope"], "unknown reward"),
                        (["--max-prompts", "0"], "--max-prompts 0")):  # fmt: skip
        assert main([*base, *extra]) == 2
        assert word in capsys.readouterr().err
    sd = ["--model", "tiny-sd21", *base[2:]]
    assert main(sd) == 2 and "image model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
