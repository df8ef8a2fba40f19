"""A negative with classifier-free guidance off (--guidance <= 1) would never run: refused before loading."""

from __future__ import annotations

import pytest

from reneg_video.commands import validate, video


@pytest.fixture
def no_loading(monkeypatch):
    import reneg_video.models.pipeline as pipeline

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "load_pipeline", refuse)


@pytest.mark.parametrize("guidance", ["1", "0.5", "0"])
@pytest.mark.parametrize("negative", ["neg", "negative-prompt", "compare"])
def test_reneg_video_refuses_a_negative_without_cfg(
    tmp_path, capsys, no_loading, pixart_file, guidance, negative
):
    extra = {
        "neg": ["--neg", pixart_file],
        "negative-prompt": ["--negative-prompt", "blurry"],
        "compare": ["--neg", pixart_file, "--compare"],
    }[negative]
    args = ["--model", "tiny-ltx-video", "--prompt", "x", "--guidance", guidance, "--out", tmp_path / "v.mp4"]
    code = video.main([str(a) for a in [*args, *extra]])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "classifier-free guidance is off" in lines[0]
    option = "--negative-prompt" if negative == "negative-prompt" else "--neg"
    assert f"{option} with --guidance {float(guidance):g}" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_guidance_above_1_passes_the_check(tmp_path, capsys, no_loading, pixart_file):
    with pytest.raises(AssertionError, match="a model was loaded"):
        video.main(["--model", "tiny-ltx-video", "--prompt", "x", "--guidance", "1.01", "--neg",
                    str(pixart_file), "--out", str(tmp_path / "v.mp4")])  # fmt: skip


def test_guidance_1_without_a_negative_still_runs(tmp_path, capsys, no_loading):
    with pytest.raises(AssertionError, match="a model was loaded"):
        video.main(["--model", "tiny-ltx-video", "--prompt", "x", "--guidance", "1",
                    "--out", str(tmp_path / "v.mp4")])  # fmt: skip


def test_reneg_validate_refuses_guidance_1(tmp_path, capsys, no_loading, sd21_file):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    code = validate.main(["--model", "tiny-zeroscope", "--neg", str(sd21_file), "--prompts-file", str(prompts),
                          "--guidance", "1", "--out", str(tmp_path / "report")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--neg with --guidance 1" in err
    assert not (tmp_path / "report").exists()
