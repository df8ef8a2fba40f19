"""`reneg-video` end to end on the stand-ins, and its refusals (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from reneg_video.commands.video import build_parser
from reneg_video.core.export import validate_gif, validate_mp4

from ..conftest import run_cli


def test_zeroscope_writes_validated_mp4_and_gif(tmp_path, capsys, sd21_file):
    code, out, err = run_cli(
        capsys, "--model", "tiny-zeroscope", "--neg", sd21_file, "--prompt", "a corgi surfing a wave",
        "--frames", 8, "--steps", 2, "--seed", 7, "--out", tmp_path / "z.mp4", "--out", tmp_path / "z.gif",
        "--json", tmp_path / "z.json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "noise" in err  # stand-in output is labelled
    meta = validate_mp4(tmp_path / "z.mp4", 8)
    assert meta["codec"] == "h264" and meta["atoms"].index("moov") < meta["atoms"].index("mdat")
    assert validate_gif(tmp_path / "z.gif", 8)["loop"] == 0
    summary = json.loads((tmp_path / "z.json").read_text())
    assert summary["standin"] is True and summary["negative"]["family"] == "openclip-vit-h-14"
    assert summary["settings"]["frames"] == 8 and len(summary["videos"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.gif", "z.json", "z.mp4"]


def test_ltx_writes_9_frames_and_a_side_by_side_compare(tmp_path, capsys, pixart_file):
    code, _, err = run_cli(
        capsys, "--model", "tiny-ltx-video", "--neg", pixart_file, "--prompt", "a red panda",
        "--frames", 9, "--steps", 2, "--out", tmp_path / "l.mp4", "--compare", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    # 64 px is a tiny render: --upscale auto writes it 4x, nearest-neighbour.
    assert validate_mp4(tmp_path / "l.mp4", 9)["size"] == (256, 256)
    # null | handcrafted | ReNeg, each under a 16-px label strip
    assert validate_mp4(tmp_path / "l-compare.mp4", 9)["size"] == (768, 272)


def test_upscale_off_writes_the_render_as_it_is_and_a_bad_factor_exits_2(tmp_path, capsys, sd21_file):
    base = ["--model", "tiny-zeroscope", "--neg", sd21_file, "--prompt", "x", "--frames", 2, "--steps", 1]
    code, _, err = run_cli(capsys, *base, "--out", tmp_path / "o.mp4", "--upscale", "off", "--quiet")
    assert code == 0, err
    assert validate_mp4(tmp_path / "o.mp4", 2)["size"] == (64, 64)
    code, _, err = run_cli(capsys, *base, "--out", tmp_path / "b.mp4", "--upscale", "0")
    assert code == 2 and "--upscale 0: expected auto, off or a whole factor 1..16" in err
    assert not (tmp_path / "b.mp4").exists()


def test_several_prompts_get_numbered_files(tmp_path, capsys, sd21_file):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# a comment\na cat\n\na dog\n")
    code, out, err = run_cli(
        capsys, "--model", "tiny-zeroscope", "--neg", sd21_file, "--prompts-file", prompts, "--frames", 2,
        "--steps", 1, "--height", 32, "--width", 32, "--out", tmp_path / "v.gif", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.txt", "v-000.gif", "v-001.gif"]


def _bad_cases(tmp_path, sd21_file, sd15_file):
    zs = ["--model", "tiny-zeroscope", "--neg", sd21_file, "--prompt", "x", "--out", tmp_path / "o.mp4"]
    ltx = ["--model", "tiny-ltx-video", "--prompt", "x", "--out", tmp_path / "o.mp4"]
    evil = tmp_path / "evil.bin"
    evil.write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    text, page = tmp_path / "notes.bin", tmp_path / "page.bin"
    text.write_text("ReNeg embeddings: see the paper\n")
    page.write_text("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n")
    not_an_embedding = "; pass a .bin saved with torch.save or a .safetensors file"
    return {
        "frames 0": ([*zs, "--frames", 0], "--frames 0"),
        "ltx frames not 8k+1": ([*ltx, "--frames", 8], "8k+1"),
        "size not multiple": ([*ltx, "--height", 48], "multiple of 32"),
        "zeroscope size": ([*zs, "--width", 60], "multiple of 8"),
        "steps 0": ([*zs, "--steps", 0], "--steps 0"),
        "nan guidance": ([*zs, "--guidance", "nan"], "--guidance nan"),
        "inf guidance": ([*zs, "--guidance", "inf"], "--guidance inf"),
        "unknown model": (
            ["--model", "zeroscoop", "--prompt", "x", "--out", tmp_path / "o.mp4"],
            "unknown model 'zeroscoop'; did you mean 'zeroscope'? (`--list-models` lists all)",
        ),
        "text as embedding": (
            [*zs[:2], "--neg", text, *zs[4:]],
            f"not an embedding file: text ('ReNeg embeddings: see the paper'){not_an_embedding}",
        ),
        "web page as embedding": (
            [*zs[:2], "--neg", page, *zs[4:]],
            "not an embedding file: an HTML page (a download that saved the web page, not the file)",
        ),
        "no model": (["--prompt", "x", "--out", tmp_path / "o.mp4"], "no model"),
        "missing embedding": ([*zs[:2], "--neg", tmp_path / "nope.bin", *zs[4:]], "no such file"),
        "directory embedding": ([*zs[:2], "--neg", tmp_path, *zs[4:]], "is a directory"),
        "wrong family": ([*zs[:2], "--neg", sd15_file, *zs[4:]], "768"),
        "hostile pickle": ([*zs[:2], "--neg", evil, *zs[4:]], "posix.system"),
        "missing out folder": ([*zs[:-1], tmp_path / "no" / "o.mp4"], "does not exist"),
        "unknown suffix": ([*zs[:-1], tmp_path / "o.avi"], "unknown suffix"),
        "empty prompt": ([*zs[:4], "--prompt", "  ", *zs[6:]], "empty prompt"),
        "no prompt": ([*zs[:4], *zs[6:]], "no prompt"),
        "missing prompts file": ([*zs, "--prompts-file", tmp_path / "none.txt"], "--prompts-file"),
        "no output": (zs[:6], "no output"),
        "conflict": ([*zs, "--negative-prompt", "blurry"], "conflict"),
        "compare without neg": ([*ltx, "--compare"], "--compare needs"),
        "bad dtype": ([*zs, "--dtype", "float8"], "--dtype"),
        "bad int": ([*zs, "--frames", "eight"], "invalid int"),
        "optimize-neg too many": ([*zs, "--optimize-neg", 11], "--optimize-neg 11"),
        "optimize-neg without neg": ([*ltx, "--optimize-neg", 2], "needs --neg"),
        "best-of 0": ([*zs, "--best-of", 0], "--best-of 0"),
        "unknown reward": ([*zs, "--score", "hpsv9"], "unknown reward"),
        "real model absent": (
            ["--model", "ltx-video", "--prompt", "x", "--out", tmp_path / "o.mp4"],
            "hf download",
        ),
    }


def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch, sd21_file, sd15_file
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import reneg_video.models.pipeline as pipeline

    def no_loading(*_a, **_k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "load_pipeline", no_loading)
    for name, (args, word) in _bad_cases(tmp_path, sd21_file, sd15_file).items():
        before = sorted(p.name for p in tmp_path.iterdir())
        code, out, err = run_cli(capsys, *args)
        assert code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("reneg-video: error:"), (name, err)
        assert word in lines[0], (name, lines[0])
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reneg_video",
            "--model",
            "tiny-ltx-video",
            "--frames",
            "10",
            "--prompt",
            "x",
            "--out",
            str(tmp_path / "a.mp4"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "8k+1" in proc.stderr and "--frames 9" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help_explains_models_embeddings_and_noise():
    text = build_parser().format_help()
    for needle in ("--neg", "--negative-prompt", "--compare", "--json", "8k+1", "NOISE", "tiny-zeroscope",
                   "sd2.1_reneg_emb.bin", "pixart-alpha_reneg_emb.bin", "weights_only", "exit codes", "@paper", "--score", "--optimize-neg", "--optimize-noise", "--best-of",
                   "--export-ltxv-conditioning", "LTXVLoadConditioning", "--min-reward",
                   "--model shapes-t2v", "--resume"):  # fmt: skip
        assert needle in text, needle


def test_list_models(capsys):
    code, out, _ = run_cli(capsys, "--list-models")
    assert code == 0
    assert "tiny-ltx-video" in out and "stand-in" in out and "cerspense/zeroscope_v2_576w" in out


@pytest.mark.parametrize("neg_prompt", ["@paper", "blurry, low quality"])
def test_handcrafted_negative_prompt_runs(tmp_path, capsys, neg_prompt):
    code, _, err = run_cli(
        capsys, "--model", "tiny-sd15", "--negative-prompt", neg_prompt, "--prompt", "a cat", "--steps", 1,
        "--out", tmp_path / "i.gif", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert validate_gif(tmp_path / "i.gif", 1)


def test_videocrafter2_standin_writes_a_valid_video(tmp_path, capsys, sd21_file):
    code, _, err = run_cli(
        capsys, "--model", "tiny-videocrafter2", "--neg", sd21_file, "--prompt", "a red panda", "--frames", 8,
        "--steps", 2, "--out", tmp_path / "v.mp4", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert validate_mp4(tmp_path / "v.mp4", 8)["frames"] == 8


def test_videocrafter2_without_converted_weights_says_how(tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"x")
    code, _, err = run_cli(
        capsys, "--model", "vc2", "--model-path", ckpt, "--prompt", "x", "--out", tmp_path / "o.mp4"
    )
    assert code == 2 and "reneg_video.commands.convert_videocrafter2" in err


def test_compare_scores_three_arms_into_the_json(tmp_path, capsys, sd21_file):
    code, _, err = run_cli(
        capsys, "--model", "tiny-zeroscope", "--neg", sd21_file, "--prompt", "a corgi", "--frames", 2, "--steps", 1,
        "--height", 32, "--width", 32, "--out", tmp_path / "c.gif", "--compare", "--score", "tiny-imagereward",
        "--json", tmp_path / "c.json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    video = json.loads((tmp_path / "c.json").read_text())["videos"][0]
    assert list(video["scores"]) == ["null", "handcrafted", "reneg"]
    for arm in video["scores"].values():
        assert len(arm["frames"]) == 2 and all(math.isfinite(v) for v in arm["frames"])
    assert len({arm["mean"] for arm in video["scores"].values()}) == 3  # three different videos
    assert validate_gif(tmp_path / "c-compare.gif", 2)


def test_optimize_neg_noise_and_best_of_record_their_rewards(tmp_path, capsys, sd21_file):
    code, _, err = run_cli(
        capsys, "--model", "tiny-sd21", "--neg", sd21_file, "--prompt", "a cat", "--steps", 1, "--height", 32,
        "--width", 32, "--reward", "tiny-imagereward", "--optimize-neg", 1, "--optimize-noise", 1, "--best-of", 2,
        "--out", tmp_path / "i.gif", "--json", tmp_path / "i.json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads((tmp_path / "i.json").read_text())["videos"][0]
    assert record["seed"] in (0, 1)
    assert record["optimize_neg"]["best"] == max(record["optimize_neg"]["rewards"])
    assert len(record["optimize_noise"]["rewards"]) == 2
    assert math.isfinite(record["objective"])


def test_quiet_first_build_of_a_stand_in_prints_no_bar_or_notice(tmp_path, monkeypatch, capfd):
    """The stand-in is built on first use (here into a fresh cache): under --quiet without transformers'
    "Writing model shards" bar or the notice of the deprecated pipeline class it builds."""
    from reneg_video.commands.video import main

    monkeypatch.setenv("RENEG_VIDEO_CACHE", str(tmp_path / "fresh-cache"))
    code = main(["--model", "tiny-zeroscope", "--negative-prompt", "blurry", "--prompt", "a cat", "--frames",
                 "2", "--steps", "1", "--height", "32", "--width", "32", "--out", str(tmp_path / "c.gif"),
                 "--quiet"])  # fmt: skip
    out, err = capfd.readouterr()
    assert code == 0, err
    assert list((tmp_path / "fresh-cache" / "standins").iterdir())  # it was built, not found
    assert "Writing model shards" not in err and "%|" not in err and "deprecated" not in err, err
    assert out.strip() == str(tmp_path / "c.gif")
