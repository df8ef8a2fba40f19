"""reneg-video --min-reward: only videos whose mean frame reward passes are written; --json has every score."""

from __future__ import annotations

import json

from reneg_video.commands.video import main
from reneg_video.core.export import validate_mp4

PROMPTS = ("a cat", "a dog", "a red panda")


def _argv(tmp_path, sd21_file, name: str, *extra: str) -> list[str]:
    argv = ["--model", "tiny-zeroscope", "--neg", str(sd21_file), "--frames", "2", "--height", "32", "--width",
            "32", "--steps", "1", "--score", "tiny-imagereward", "--quiet", "--out", str(tmp_path / f"{name}.mp4"),
            "--json", str(tmp_path / f"{name}.json"), *extra]  # fmt: skip
    for prompt in PROMPTS:
        argv += ["--prompt", prompt]
    return argv


def test_min_reward_keeps_only_passing_videos_and_reports_every_score(tmp_path, sd21_file):
    assert main(_argv(tmp_path, sd21_file, "all")) == 0
    means = [v["scores"]["reneg"]["mean"] for v in json.loads((tmp_path / "all.json").read_text())["videos"]]
    assert len(set(means)) == 3, means  # distinct, so a threshold between them splits the set
    threshold = sorted(means)[1]  # the middle one passes (>=), the lowest does not
    assert main(_argv(tmp_path, sd21_file, "kept", "--min-reward", repr(threshold))) == 0
    summary = json.loads((tmp_path / "kept.json").read_text())
    assert summary["min_reward"] == threshold and summary["kept"] == 2
    for i, (video, mean) in enumerate(zip(summary["videos"], means, strict=True)):
        path = tmp_path / f"kept-{i:03d}.mp4"
        assert video["scores"]["reneg"]["mean"] == mean and len(video["scores"]["reneg"]["frames"]) == 2
        assert video["kept"] == (mean >= threshold)
        if video["kept"]:
            assert video["outputs"] == [str(path)] and validate_mp4(path, 2)["frames"] == 2
        else:
            assert video["outputs"] == [] and not path.exists()


def test_min_reward_needs_a_score_and_a_number(tmp_path, sd21_file, capsys):
    base = ["--model", "tiny-zeroscope", "--neg", str(sd21_file), "--prompt", "a cat",
            "--out", str(tmp_path / "x.mp4")]  # fmt: skip
    assert main([*base, "--min-reward", "0.5"]) == 2 and "needs --score" in capsys.readouterr().err
    assert main([*base, "--score", "tiny-imagereward", "--min-reward", "nan"]) == 2
    assert "finite" in capsys.readouterr().err
    assert main([*base, "--min-reward", "high"]) == 2
    assert list(tmp_path.iterdir()) == []
