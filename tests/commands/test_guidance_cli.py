"""`--guidance-rule` and `--nag` from the command line: the issue's NAG command renders on the distilled LTX
stand-in, a rule renders with --compare, every bad combination exits 2 in one line before loading, and
--help names the rules and NAG with their sources."""

from __future__ import annotations

import json

import pytest

from reneg_video.commands import validate, video
from reneg_video.core.guidance import RULES


@pytest.fixture
def no_loading(monkeypatch):
    import reneg_video.models.pipeline as pipeline

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "load_pipeline", refuse)


def test_the_issues_nag_command_renders_on_the_distilled_standin(tmp_path, capsys, pixart_file):
    out, report = tmp_path / "n.mp4", tmp_path / "n.json"
    code = video.main(
        [
            *(
                "--model",
                "tiny-ltx-video-0.9.7-distilled",
                "--neg",
                str(pixart_file),
                "--guidance",
                "1",
                "--nag",
            ),
            *("--prompt", "a red panda", "--steps", "2", "--out", str(out), "--json", str(report), "--quiet"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert out.stat().st_size > 0
    assert "guidance: nag scale=5 tau=2.5 alpha=0.25 at guidance 1" in err
    settings = json.loads(report.read_text())["settings"]
    assert settings["nag"] == {"scale": 5.0, "tau": 2.5, "alpha": 0.25} and settings["guidance"] == 1.0


def test_a_rule_renders_every_compare_arm(tmp_path, capsys, sd21_file):
    code = video.main(
        [
            *("--model", "tiny-zeroscope", "--neg", str(sd21_file), "--guidance-rule", "tcfg", "--compare"),
            *(
                "--prompt",
                "a cat",
                "--steps",
                "1",
                "--frames",
                "2",
                "--out",
                str(tmp_path / "t.mp4"),
                "--quiet",
            ),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "guidance: rule=tcfg (tangential CFG" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-compare.mp4", "t.mp4"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--guidance-rule", "pag"], "--guidance-rule 'pag': unknown; expected one of cfg, apg"),
        (["--guidance-rule", "apg", "--guidance", "1"], "at guidance <= 1 there is no negative branch"),
        (["--nag"], "--nag with --guidance 9: NAG puts the negative"),
        (["--nag", "--guidance", "1", "--guidance-rule", "apg"], "--guidance-rule apg with --guidance 1"),
        (
            ["--nag", "--guidance", "1", "--nag-alpha", "2"],
            "--nag-alpha 2: expected a blend weight in [0, 1]",
        ),
        (["--nag", "--guidance", "1", "--nag-scale", "0.5"], "--nag-scale 0.5: expected >= 1"),
        (["--nag", "--guidance", "1", "--nag-tau", "0"], "--nag-tau 0: expected a positive"),
        (["--guidance-rule", "apg", "--optimize-neg", "2"], "--optimize-neg with --guidance-rule apg"),
        (["--nag", "--guidance", "1", "--optimize-noise", "2"], "--optimize-noise with --nag"),
    ],
)
def test_bad_combinations_exit_2_in_one_line_before_loading(
    tmp_path, capsys, no_loading, sd21_file, extra, needle
):
    args = [
        "--model",
        "tiny-zeroscope",
        "--neg",
        sd21_file,
        "--prompt",
        "x",
        "--out",
        tmp_path / "v.mp4",
        *extra,
    ]
    code = video.main([str(a) for a in args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model", ["tiny-cogvideox-2b", "tiny-mochi", "tiny-i2vgen-xl"])
def test_nag_is_refused_where_it_is_not_implemented(tmp_path, capsys, no_loading, model):
    args = ["--model", model, "--prompt", "x", "--guidance", "1", "--nag", "--out", tmp_path / "v.mp4"]
    code = video.main([str(a) for a in args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--nag" in lines[0], lines


def test_the_distilled_model_still_refuses_neg_without_nag_and_says_so(
    tmp_path, capsys, no_loading, pixart_file
):
    args = ["--model", "tiny-ltx-video-0.9.7-distilled", "--neg", pixart_file, "--prompt", "x"]
    code = video.main([str(a) for a in [*args, "--out", tmp_path / "v.mp4"]])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "has no negative branch" in lines[-1] and "add --nag" in lines[-1]


@pytest.mark.parametrize("parser", [video.build_parser, validate.build_parser])
def test_help_names_the_rules_and_nag_with_sources(parser):
    text = " ".join(parser().format_help().split())  # argparse wraps lines
    for needle in ("--guidance-rule", "--nag", "--nag-scale", "--nag-tau", "--nag-alpha", "arXiv 2505.21179"):
        assert needle in text, needle
    if parser is video.build_parser:
        for rule in RULES.values():
            assert rule.name in text and rule.source in text, rule.name
        assert "--nag" in text.split("examples:")[1]


@pytest.mark.parametrize("extra", [["--guidance-rule", "cfg-zero-star"], ["--nag", "--guidance", "1"]])
def test_reneg_validate_runs_its_arms_under_a_rule_or_nag(tmp_path, capsys, sd21_file, extra):
    from ..conftest import SHARED

    prompts = SHARED / "prompts" / "reno_example_prompts.txt"
    if not prompts.exists():
        pytest.skip(f"{prompts} not found")
    out = tmp_path / "report"
    code = validate.main(
        [
            *("--model", "tiny-zeroscope", "--neg", str(sd21_file), "--prompts-file", str(prompts)),
            *("--max-prompts", "1", "--seeds", "1", "--reward", "tiny-imagereward", "--arms", "null,reneg"),
            *(
                "--frames",
                "2",
                "--height",
                "32",
                "--width",
                "32",
                "--steps",
                "1",
                "--out",
                str(out),
                "--quiet",
            ),
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "guidance: " in err
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert (settings["nag"] is not None) == ("--nag" in extra)
    assert settings["guidance_rule"] == ("cfg" if "--nag" in extra else "cfg-zero-star")
