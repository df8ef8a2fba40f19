"""`reneg-score`: outputs on a GIF and an MP4 written here, the help text, and refused inputs."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from reneg_video.commands import score as score_cli
from reneg_video.rewards.temporal import FROZEN_MAD, KEYS

PROMPT = "a corgi surfing a wave"
FRAMES = 6


def _frames(count: int = FRAMES, height: int = 64, width: int = 96) -> np.ndarray:
    """Smooth moving gradients: survive h264 and GIF palettes, and differ frame to frame."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for i in range(count):
        r = (xx * 255 / width + 30 * i) % 256
        g = yy * 255 / height
        b = ((xx + yy) * 2 + 50 * i) % 256
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def gif(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gif") / "clip.gif"
    iio.imwrite(path, _frames(), plugin="pillow", duration=125, loop=0)
    return path


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    iio.imwrite(path, _frames(), plugin="FFMPEG", fps=8, codec="libx264", macro_block_size=16)
    assert path.stat().st_size > 0
    return path


def _check_report(report: dict, count: int, rewards: list[str]) -> None:
    assert list(report) == ["prompt", "rewards", "frames", "summary", "video_scores"]
    assert report["prompt"] == PROMPT
    assert report["rewards"] == rewards
    assert [row["index"] for row in report["frames"]] == list(range(count))
    for row in report["frames"]:
        assert set(row) == {"index", *rewards}
        assert all(isinstance(row[r], float) and math.isfinite(row[r]) for r in rewards)
    for name in rewards:
        summary = report["summary"][name]
        values = np.array([row[name] for row in report["frames"]])
        assert summary["mean"] == pytest.approx(values.mean())
        assert summary["min"] == pytest.approx(values.min())
        assert summary["temporal"] == pytest.approx(np.abs(np.diff(values)).mean())
    video = report["video_scores"]  # the video-level scores (rewards.temporal)
    assert set(video) == set(KEYS) and len(video["pair_mad"]) == count - 1
    assert video["flicker"] == pytest.approx(np.mean(video["pair_mad"])) and video["flicker"] > 0
    assert video["frozen_share"] == 0 and video["motion"] > 0


@pytest.mark.parametrize("kind", ["gif", "mp4"])
def test_scores_video_and_writes_outputs(kind, request, tmp_path, capsys):
    video = request.getfixturevalue(kind)
    out_json, out_csv, out_png = tmp_path / "s.json", tmp_path / "s.csv", tmp_path / "s.png"
    code = score_cli.main(
        [str(video), "--prompt", PROMPT, "--reward", "tiny-imagereward", "--json", str(out_json),
         "--csv", str(out_csv), "--plot", str(out_png)]
    )  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(out_json.read_text())
    _check_report(report, FRAMES, ["tiny-imagereward"])
    # frames differ, so do their (noise) scores: one score per frame, not one broadcast value
    assert len({row["tiny-imagereward"] for row in report["frames"]}) == FRAMES
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["index", "tiny-imagereward", "mad_to_previous", "consistency_term"]
    assert len(rows) == FRAMES + 1 and rows[1][2:] == ["", ""]
    assert float(rows[1][1]) == report["frames"][0]["tiny-imagereward"]
    assert float(rows[2][2]) == report["video_scores"]["pair_mad"][0] and rows[2][3] == ""  # no CLIP tower
    assert report["video_scores"]["consistency"] is None
    assert "no CLIP image tower in tiny-imagereward" in report["video_scores"]["consistency_skipped"]
    assert "video   flicker" in stdout
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "temporal" in stdout and "noise" in stdout
    assert f"{report['summary']['tiny-imagereward']['mean']:.4f}" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.json", "s.png"]  # no temporaries left


def test_gif_and_mp4_read_the_same_frames(gif, mp4):
    a, b = score_cli.read_video(gif), score_cli.read_video(mp4)
    assert a.shape == b.shape == (FRAMES, 64, 96, 3) and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - _frames().astype(int)).mean() < 12  # palette / h264 losses only


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        score_cli.main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("VIDEO", "--prompt", "--reward", "--json", "--csv", "--plot", "--checkpoint", "--med-config",
                   "--tokenizer", "--batch-size", "--device", "--prompts-file", "folders"):  # fmt: skip
        assert option in text
    assert ".mp4" in text and ".gif" in text
    assert "noise" in text and "tiny-imagereward" in text and "tiny-clip" in text
    assert "temporal = mean absolute score change between neighbouring frames" in text
    assert '"frames": [{"index": 0, "<reward>": score' in text
    assert "Exit status: 0" in text


def _bad_inputs(tmp_path: Path, gif: Path) -> dict[str, tuple[list[str], str]]:
    garbage = tmp_path / "in" / "broken.mp4"
    garbage.parent.mkdir()
    garbage.write_bytes(b"\x00not a video\x00" * 100)
    avi = tmp_path / "in" / "clip.avi"
    avi.write_bytes(gif.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    ok = ["--prompt", PROMPT, "--reward", "tiny-imagereward"]
    return {
        "missing video": ([str(tmp_path / "nope.mp4"), *ok, "--json", str(out / "s.json")], "does not exist"),
        "unreadable video": ([str(garbage), *ok, "--json", str(out / "s.json")], "could not be read"),
        "unknown suffix": ([str(avi), *ok, "--json", str(out / "s.json")], "expected one of .mp4, .gif"),
        "empty prompt": ([str(gif), "--prompt", "  ", "--reward", "tiny-imagereward", "--json", str(out / "s.json")], "--prompt is empty"),
        "unknown reward": ([str(gif), "--prompt", PROMPT, "--reward", "tiny-imagereward,hpsv9", "--json", str(out / "s.json")], "unknown reward 'hpsv9'"),
        "weights": ([str(gif), "--prompt", PROMPT, "--reward", "tiny-imagereward:2", "--json", str(out / "s.json")], "names only"),
        "missing output folder": ([str(gif), *ok, "--csv", str(out / "s.csv"), "--json", str(tmp_path / "no" / "s.json")], "does not exist"),
        "output folder is a file": ([str(gif), *ok, "--plot", str(garbage / "p.png")], "is not a folder"),
        "plot suffix": ([str(gif), *ok, "--plot", str(out / "p.jpg")], "expected a .png"),
        "batch size": ([str(gif), *ok, "--batch-size", "0", "--json", str(out / "s.json")], "--batch-size is 0"),
        "missing prompt": ([str(gif), "--reward", "tiny-imagereward"], "--prompt"),
        "bad device": ([str(gif), *ok, "--device", "nonsense", "--json", str(out / "s.json")], "not a torch device"),
    }  # fmt: skip


CASES = [
    "missing video", "unreadable video", "unknown suffix", "empty prompt", "unknown reward", "weights",
    "missing output folder", "output folder is a file", "plot suffix", "batch size", "missing prompt",
    "bad device",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_before_loading_and_writes_nothing(case, tmp_path, gif, monkeypatch, capsys):
    argv, fragment = _bad_inputs(tmp_path, gif)[case]

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("reneg_video.rewards.load_reward", no_model)
    before = sorted(p for p in tmp_path.rglob("*"))
    try:
        code = score_cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_missing_imagereward_weights_exit_2(tmp_path, gif, monkeypatch, capsys):
    for env in ("RENEG_IMAGEREWARD_CKPT", "RENEG_IMAGEREWARD_MED_CONFIG", "RENEG_IMAGEREWARD_TOKENIZER"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr("reneg_video.rewards.imagereward._from_hf_cache", lambda repo, name: None)
    code = score_cli.main(
        [str(gif), "--prompt", PROMPT, "--reward", "imagereward", "--json", str(tmp_path / "s.json")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "THUDM/ImageReward" in err and err.count("\n") == 1
    assert not (tmp_path / "s.json").exists()


def test_internal_error_exits_1(tmp_path, gif, monkeypatch, capsys):
    class Broken:
        name = "tiny-imagereward"

        def score_frames(self, frames, prompt, *, batch_size=None):
            raise ZeroDivisionError("bug")

    monkeypatch.setattr("reneg_video.rewards.load_reward", lambda name, **kw: Broken())
    code = score_cli.main(
        [str(gif), "--prompt", PROMPT, "--reward", "tiny-imagereward", "--json", str(tmp_path / "s.json")]
    )
    assert code == 1 and "internal error" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_console_entry_point_exit_code(tmp_path):
    """The real process: exit status 2 and a single stderr line, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "reneg_video.commands.score", str(tmp_path / "none.gif"), "--prompt", PROMPT, "--reward", "tiny-imagereward"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("reneg-score: error: video") and proc.stderr.count("\n") == 1


def test_several_videos_and_folders_are_scored_together_in_batches(tmp_path, gif, mp4, monkeypatch, capsys):
    import shutil

    from reneg_video import rewards

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(mp4, folder / "a.mp4")
    shutil.copy(gif, folder / "b.gif")
    (folder / ".c.partial-1.mp4").write_bytes(b"")  # a hidden partial write is not a video to score
    calls = []
    real_load = rewards.load_reward

    def spying_load(name, **kwargs):
        reward = real_load(name, **kwargs)
        real_score = reward.score_frames

        def score_frames(frames, prompt, **kw):
            calls.append(len(frames))
            return real_score(frames, prompt, **kw)

        reward.score_frames = score_frames
        return reward

    monkeypatch.setattr(rewards, "load_reward", spying_load)
    out = tmp_path / "all.json"
    argv = [str(gif), str(folder), "--prompt", PROMPT, "--reward", "tiny-imagereward", "--batch-size", "4",
            "--json", str(out), "--csv", str(tmp_path / "all.csv")]  # fmt: skip
    assert score_cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert [Path(v["video"]).name for v in report["videos"]] == ["clip.gif", "a.mp4", "b.gif"]
    assert calls == [3 * FRAMES]  # one call for the three same-size videos: batches span videos
    for entry in report["videos"]:
        _check_report({k: v for k, v in entry.items() if k != "video"}, FRAMES, ["tiny-imagereward"])
    capsys.readouterr()
    for i, entry in enumerate(report["videos"]):  # the same scores as scoring each video alone
        single = tmp_path / f"alone-{i}.json"
        assert (
            score_cli.main(
                [entry["video"], "--prompt", PROMPT, "--reward", "tiny-imagereward", "--json", str(single)]
            )
            == 0
        )
        alone = json.loads(single.read_text())["frames"]
        assert [r["tiny-imagereward"] for r in entry["frames"]] == pytest.approx(
            [r["tiny-imagereward"] for r in alone], abs=1e-5
        )
    rows = list(csv.reader((tmp_path / "all.csv").open()))
    assert rows[0] == ["video", "index", "tiny-imagereward", "mad_to_previous", "consistency_term"]
    assert len(rows) == 1 + 3 * FRAMES


def test_prompts_file_must_match_the_videos(tmp_path, gif, mp4, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("one prompt\n")
    argv = [str(gif), str(mp4), "--prompts-file", str(prompts), "--reward", "tiny-imagereward"]
    assert score_cli.main(argv) == 2 and "1 prompts for 2 videos" in capsys.readouterr().err
    prompts.write_text("a corgi\na cat\n")
    assert score_cli.main([*argv, "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot draws one video" in capsys.readouterr().err
    assert score_cli.main([*argv, "--prompt", "x"]) == 2 and "or --prompts-file" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert score_cli.main([str(empty), "--prompt", "x", "--reward", "tiny-imagereward"]) == 2
    assert "holds no .mp4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "p.txt"]


def test_video_level_scores_use_the_first_reward_with_a_clip_tower(tmp_path, gif, capsys):
    still = tmp_path / "still.mp4"  # (a GIF writer merges repeated frames into one)
    iio.imwrite(still, np.repeat(_frames()[:1], FRAMES, axis=0), plugin="FFMPEG", fps=8, codec="libx264",
                macro_block_size=16)  # fmt: skip
    out = tmp_path / "s.json"
    argv = [str(gif), str(still), "--prompt", PROMPT, "--reward", "tiny-imagereward,tiny-clip", "--json", str(out),
            "--csv", str(tmp_path / "s.csv")]  # fmt: skip
    assert score_cli.main(argv) == 0
    moving, frozen = (entry["video_scores"] for entry in json.loads(out.read_text())["videos"])
    for video in (moving, frozen):
        assert video["embedding"] == "tiny-clip" and video["consistency_skipped"] is None
        assert len(video["pair_consistency"]) == FRAMES - 1
    # h264 leaves a still video a little short of still: within one 8-bit level, so frozen all the same
    assert frozen["frozen_share"] == 1 and frozen["flicker"] < FROZEN_MAD and frozen["motion"] < FROZEN_MAD
    assert frozen["consistency"] == pytest.approx(1.0, abs=1e-4) and 0 < moving["consistency"] < 0.99
    assert moving["motion"] > 0 and moving["frozen_share"] == 0
    rows = list(csv.reader((tmp_path / "s.csv").open()))
    assert float(rows[2][-1]) == moving["pair_consistency"][0]
    assert capsys.readouterr().out.count("consistency") == 2  # one line of video-level scores per video
