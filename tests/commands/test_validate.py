"""reneg-validate on the stand-ins: the report's shape, its statistics, and its videos in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reneg_video.commands.validate import main
from reneg_video.core.export import validate_mp4

from ..browser import video_states
from ..conftest import SHARED, subprocess_env

PROMPTS = SHARED / "prompts" / "reno_example_prompts.txt"


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    from ..conftest import shared_file

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
    assert report["n"] == {"prompts": 2, "seeds": 1, "videos": 6}
    for base in ("null", "handcrafted"):
        win, diff = report["win_rate"][f"reneg_vs_{base}"], report["paired_difference"][f"reneg_minus_{base}"]
        assert win["method"] == "wilson" and win["low"] <= win["rate"] <= win["high"]
        assert diff["low"] <= diff["mean"] <= diff["high"]
        assert report["verdict"][base].startswith(f"ReNeg beats {base} on {win['wins']} of 2 prompts")
    for arm, values in report["arms"].items():
        assert values["mean"] == report["mean_reward"][arm]
    video = report["video_scores"]  # the arms' video-level scores (rewards.temporal), mean per arm
    assert set(video["arms"]) == {"null", "handcrafted", "reneg"} and video["embedding"] is None
    assert "no CLIP image tower in tiny-imagereward" in video["consistency_skipped"]
    for scores in video["arms"].values():
        assert set(scores) == {"flicker", "frozen_share", "motion"}  # no consistency without a CLIP tower
        assert scores["flicker"]["low"] <= scores["flicker"]["mean"] <= scores["flicker"]["high"]
    assert "<table id='video-scores'>" in (report_dir / "index.html").read_text()
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
                        (["--max-prompts", "0"], "--max-prompts 0"),
                        (["--arms", "null,bogus"], "--arms null,bogus: unknown arm 'bogus'; expected"),
                        (["--arms", "null,handcrafted"], "nothing to compare; expected reneg and at least"),
                        (["--arms", "reneg"], "(e.g. --arms null,reneg)")):  # fmt: skip
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1, err
    sd = ["--model", "tiny-sd21", *base[2:]]
    assert main(sd) == 2 and "image model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _small(out, *extra: str) -> list[str]:
    from ..conftest import shared_file

    return ["--model", "tiny-zeroscope", "--neg", str(shared_file("sd2.1_reneg_emb.bin")), "--prompts-file",
            str(PROMPTS), "--max-prompts", "2", "--seeds", "1", "--reward", "tiny-imagereward", "--frames",
            "2", "--height", "32", "--width", "32", "--steps", "1", "--out", str(out), *extra]  # fmt: skip


def test_arms_null_reneg_renders_two_arms_and_compares_one_pair(tmp_path, capsys):
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    out = tmp_path / "report"
    assert main(_small(out, "--arms", "null,reneg", "--json", "--quiet")) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # --json: stdout is the JSON alone
    assert printed["report"] == str(out / "report.json") and set(printed["verdict"]) == {"null"}
    assert "videos |" not in captured.err  # --quiet: no progress bar
    assert captured.err.count("ReNeg beats") == 1 and "handcrafted" not in captured.err
    # 2 prompts x 1 seed x 2 arms: four videos, four items, no handcrafted one.
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        f"p00{p}-s0-{arm}.mp4" for p in (0, 1) for arm in ("null", "reneg")
    ]
    assert len(list((out / "items").glob("*.json"))) == 4
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == {"prompts": 2, "seeds": 1, "videos": 4}
    for key in ("mean_reward", "arms"):
        assert set(report[key]) == {"null", "reneg"}
    assert set(report["paired_difference"]) == {"reneg_minus_null"}
    assert set(report["win_rate"]) == {"reneg_vs_null"}
    assert "handcrafted" not in json.dumps(report["prompts"]) and set(report["verdict"]) == {"null"}
    page = (out / "index.html").read_text()
    assert "2 arms = 4 videos" in page and "handcrafted.mp4" not in page and page.count("<video ") == 4
    # A run of other arms is another run: --resume refuses it in one line.
    assert main(_small(out, "--resume")) == 2 and "other" in capsys.readouterr().err


@pytest.mark.slow
def test_console_output_is_short_verdicts_and_path(tmp_path, pipelines):
    """A fresh process, as a user runs it: no JSON dump, no library notices, a short console."""
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    pipelines("tiny-zeroscope")  # built once per session: this run shows what a user's second run shows
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "reneg_video.commands.validate", *_small(out)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    print(console)
    assert len(console.splitlines()) < 40
    assert "{" not in console and "deprecated" not in console.lower()
    assert done.stdout.count("ReNeg beats") == 2 and f"report: {out / 'index.html'}" in done.stdout
    assert "6/6 videos" in done.stderr and "ETA" in done.stderr  # the progress bar: videos done / total


def test_help_names_json_and_the_reward_default():
    from reneg_video.commands.validate import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "--json " in text and "--quiet " in text and "--arms ARMS" in text
    assert "(default imagereward)" in text


def test_plot_labels_read_as_words():
    from reneg_video.render.report import PROMPT_LABEL_CHARS, prompt_label, prompt_labels
    from reneg_video.rewards import reward_label

    assert prompt_label("a cat") == "a cat"
    long = prompt_label("A red dog and a green cat playing in the snow")
    assert len(long) == PROMPT_LABEL_CHARS and long.endswith("\u2026") and long.startswith("A red dog")
    heldout = ["a black circle moving right on a blue background", "a black circle moving right on a green "
               "background", "a black circle moving up on a white background", "a cat", "a cat"]  # fmt: skip
    assert prompt_labels(heldout) == ["\u2026blue background", "\u2026green background",
                                      "a black circle moving u\u2026", "a cat", "a cat"]  # fmt: skip
    assert reward_label("shapes-reward") == "shapes reward"
    assert reward_label("tiny-imagereward:1") == "tiny ImageReward (noise)"
    assert reward_label("imagereward:1,hpsv2:5") == "ImageReward + 5 x HPS v2"


def _pixels_near(png, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(rgb)).max(axis=-1) <= tolerance).sum())


def test_paired_difference_plot_shows_in_headless_chromium(report_dir, tmp_path):
    """Opened from disk, the page shows the plot: its colour covers many pixels of the screenshot, and
    does not where the same page has the plot's <img> pointing nowhere (same layout, no plot)."""
    from reneg_video.render.report import DIFF_COLOR

    from ..browser import screenshot

    rgb = tuple(int(DIFF_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    text = (report_dir / "index.html").read_text()
    assert "src='paired_differences.png'" in text and (report_dir / "paired_differences.png").is_file()
    # The stand-in's videos are coloured noise and may hold the plot's colour too: hide them in both pages,
    # so that only the plot can make the difference.
    hidden = text.replace("<style>", "<style>video{visibility:hidden}", 1)
    assert hidden != text
    page = report_dir / "plot.html"
    page.write_text(hidden)
    control = report_dir / "control.html"
    control.write_text(hidden.replace("src='paired_differences.png'", "src='missing.png'"))
    shown = _pixels_near(screenshot(page, tmp_path / "page.png", tmp_path / "profile-a"), rgb)
    absent = _pixels_near(screenshot(control, tmp_path / "control.png", tmp_path / "profile-b"), rgb)
    print(f"plot-coloured pixels: {shown} with the plot, {absent} without")
    assert shown > 1000 and absent < shown / 10  # the mean lines (2 px, the panels' height) and the dots
