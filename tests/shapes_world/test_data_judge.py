"""The shapes world's data, judge, tokenizer and encoder family (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reneg_video.commands.video import main as cli_main
from reneg_video.core import plugins
from reneg_video.core.encoders import FAMILIES
from shapes_world import data, judge
from shapes_world import world as W
from shapes_world.tokenizer import build_tokenizer


def test_data_is_deterministic_from_the_seed():
    a, caps_a = data.make_batch(3, 6, video=True)
    b, caps_b = data.make_batch(3, 6, video=True)
    c, _ = data.make_batch(4, 6, video=True)
    assert caps_a == caps_b and np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (6, W.FRAMES, W.IMAGE_SIZE, W.IMAGE_SIZE, 3) and a.dtype == np.uint8


def test_captions_follow_the_grammar_and_parse_back():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = data.make_sample(rng, video=True)
        assert data.parse_caption(s.caption) == s.attributes
        assert s.caption.endswith(f"on a {s.attributes.background} background")
    assert data.caption_for(data.Attributes("circle", "red", "blue", "left")) == (
        "a red circle moving left on a blue background"
    )


def test_still_attributes_refuses_a_moving_or_ungrammatical_prompt():
    assert data.still_attributes("a red circle on a blue background") == data.Attributes(
        "circle", "red", "blue"
    )
    for bad in ("a red circle moving left on a blue background", "a cat"):
        with pytest.raises(ValueError, match="without a direction"):
            data.still_attributes(bad)


def test_prompt_files_are_the_split():
    train, held = data.split_prompts()
    assert W.prompts_file("train").read_text().split("\n")[:-1] == train
    assert W.prompts_file("heldout").read_text().split("\n")[:-1] == held
    assert not set(train) & set(held)


def test_judge_passes_clean_data_and_fails_each_degradation():
    rng = np.random.default_rng(5)
    clean = [data.make_sample(rng, video=True, degrade_prob=0.0) for _ in range(60)]
    result = judge.judge_many([s.frames for s in clean], [s.caption for s in clean])
    assert result["accuracy"] >= 0.98  # measured 0.999 on 300 clean videos
    for kind, check in (
        ("missing", "present"),
        ("wrong_shape", "shape"),
        ("noise", "crisp"),
        ("faded", "crisp"),
        ("blur", "crisp"),
    ):
        videos, prompts = [], []
        for _ in range(20):
            a = data.random_attributes(rng, True)
            videos.append(data.render(a, rng, degradations=(kind,)))
            prompts.append(data.caption_for(a))
        degraded = judge.judge_many(videos, prompts)
        # measured on 200 videos each (experiments/shapes_judge_table.py): missing present 0.0, wrong_shape
        # shape 0.001, noise/faded crisp 0.0, blur crisp 0.029
        assert degraded[check] <= 0.5, (kind, degraded)
        assert degraded["accuracy"] < result["accuracy"]


def test_judge_reads_motion_direction():
    rng = np.random.default_rng(1)
    a = data.Attributes("square", "yellow", "black", "right")
    frames = data.render(a, rng)
    assert judge.judge(frames, data.caption_for(a))["motion"] == 1.0
    assert judge.judge(frames[::-1], data.caption_for(a))["motion"] == 0.0  # played backwards: moving left
    assert judge.judge(frames, "a yellow square moving left on a black background")["motion"] == 0.0


def test_tokenizer_makes_each_grammar_word_one_token():
    tok = build_tokenizer()
    assert tok.model_max_length == W.TEXT_TOKENS
    ids = tok("a blurry red circle moving left on a blue background").input_ids
    assert len(ids) == 2 + 10  # start, 10 words, end
    assert len(tok(W.HANDCRAFTED_NEGATIVE).input_ids) <= W.TEXT_TOKENS


def test_shapes_family_matches_the_world():
    plugins.load()
    family = FAMILIES["shapes-clip"]
    assert family is W.TEXT_FAMILY
    assert family.width == W.TEXT_WIDTH and family.tokens == (W.TEXT_TOKENS,)
    assert all(f.width != family.width for f in FAMILIES.values() if f is not family)


def test_released_sd21_file_is_refused_on_shapes_t2v(tmp_path, capsys, sd21_file):
    code = cli_main(["--model", "shapes-t2v", "--neg", str(sd21_file), "--prompt", "a red circle",
                     "--out", str(tmp_path / "x.mp4")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "1024" in err and "128" in err and "shapes-t2v" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_shapes_embedding_is_refused_by_zeroscope(tmp_path, capsys):
    from reneg_video.core.embedding import NegativeEmbedding

    path = tmp_path / "shapes.bin"
    NegativeEmbedding(torch.zeros(1, W.TEXT_TOKENS, W.TEXT_WIDTH), None, W.TEXT_FAMILY).save(path)
    code = cli_main(["--model", "tiny-zeroscope", "--neg", str(path), "--prompt", "x",
                     "--out", str(tmp_path / "x.mp4")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "128" in err and "1024" in err


def test_motion_curriculum_clips_move_only_in_the_allowed_directions():
    rng = np.random.default_rng(0)
    clips = [data.make_sample(rng, video=True, directions=("right", "right", "left")) for _ in range(60)]
    seen = [c.attributes.direction for c in clips]
    assert set(seen) == {"right", "left"}, seen
    assert seen.count("right") > seen.count("left"), seen  # a repeated direction is drawn more often
    assert all(c.attributes.direction in c.caption for c in clips)
