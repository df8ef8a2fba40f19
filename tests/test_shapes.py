"""The shapes world (issue 12): data, judge, tokenizer, reward, the shipped models and a reduced build.

Thresholds on trained models are set from measurement with margin; each comment gives the value seen.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reneg_video.commands.video import main as cli_main
from reneg_video.core.encoders import FAMILIES, SHAPES_TOKENS, SHAPES_WIDTH
from reneg_video.models.shapes import data, judge
from reneg_video.models.shapes import world as W
from reneg_video.models.shapes.tokenizer import build_tokenizer

HELD_OUT = data.split_prompts()[1]

# Thresholds set from measurement, with margin (each measured value is in the comment).
# shapes-t2i, 24 held-out prompts, seed 0, 20 DDIM steps, guidance 5: measured 0.792 (v1 weights: 0.642).
T2I_MIN_ACCURACY = 0.70
# shapes-t2v, 8 held-out prompts, seed 0: measured 0.911 on v5 (background 1.0, colour 1.0, shape 0.53, crisp
# 0.94, motion 1.0); v3 0.742 (motion 0.0); v1 weights: 0.583. Threshold kept from v3.
T2V_MIN_ACCURACY = 0.62
# Shipped text encoder: hidden-state change when the shape / direction word changes (relative to its norm,
# shapes_build.text_sensitivity): measured shape 0.72, direction 0.43 (the v1 encoder: 0.04, 0.02).
TEXT_MIN_SENSITIVITY = {"shape": 0.2, "direction": 0.2}
# shapes-reward ranks a clean render above a degraded one (judge decides): measured 34/40 = 0.85 (v1: 27/40).
REWARD_MIN_AGREEMENT = 0.7
# Reduced build (BuildConfig.quick): mean loss of the last fifth over the first fifth; measured clip 0.84,
# vae 0.70, t2i 0.58 (v3 settings; v1: 0.78, 0.92, 0.54).
QUICK_LOSS_RATIO = {"clip": 0.9, "vae": 0.97, "t2i": 0.75}


# ---- data and judge ----------------------------------------------------------------------------------------


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
    from reneg_video.models import shapes

    folder = __import__("pathlib").Path(shapes.__file__).parent / "prompts"
    train, held = data.split_prompts()
    assert (folder / "train.txt").read_text().split("\n")[:-1] == train
    assert (folder / "heldout.txt").read_text().split("\n")[:-1] == held
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
        # measured on 200 videos each (scripts/shapes_judge_table.py): missing present 0.0, wrong_shape
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


def test_trail_image_shows_which_way_a_clip_moved():
    from reneg_video.training.shapes_build import trail_image

    rng = np.random.default_rng(2)
    frames = data.render(data.Attributes("circle", "white", "black", "right"), rng)
    still = trail_image(frames)
    assert still.shape == frames.shape[1:] and still.dtype == np.uint8
    # The late frames weigh most: the trail is brightest where the shape ended, so its brightness-weighted
    # centre lies right of the path's midpoint; the reversed clip's lies left of it.
    xs = np.arange(W.IMAGE_SIZE)

    def centre(image):
        column = image.astype(np.float64).sum(axis=(0, 2))
        return float((column * xs).sum() / column.sum())

    path_mid = np.mean([centre(f) for f in frames[[0, -1]]])
    assert centre(still) > path_mid + 0.5 > centre(trail_image(frames[::-1])) + 1.0


def test_clip_twins_differ_only_in_shape_or_direction():
    from reneg_video.training.shapes_build import clip_pairs

    images, captions = clip_pairs(np.random.default_rng(3), 40)
    assert images.shape == (80, W.IMAGE_SIZE, W.IMAGE_SIZE, 3)
    kinds = set()
    for first, twin in zip(captions[::2], captions[1::2], strict=True):
        a, b = data.parse_caption(first), data.parse_caption(twin)
        changed = {
            k
            for k in ("shape", "colour", "background", "direction", "words")
            if getattr(a, k) != getattr(b, k)
        }
        assert changed in ({"shape"}, {"direction"}), (first, twin)
        assert (a.direction is None) == (b.direction is None)
        kinds |= changed
    assert kinds == {"shape", "direction"}


# ---- tokenizer and encoder family --------------------------------------------------------------------------


def test_tokenizer_makes_each_grammar_word_one_token():
    tok = build_tokenizer()
    assert tok.model_max_length == W.TEXT_TOKENS
    ids = tok("a blurry red circle moving left on a blue background").input_ids
    assert len(ids) == 2 + 10  # start, 10 words, end
    assert len(tok(W.HANDCRAFTED_NEGATIVE).input_ids) <= W.TEXT_TOKENS


def test_shapes_family_matches_the_world():
    family = FAMILIES["shapes-clip"]
    assert (SHAPES_TOKENS, SHAPES_WIDTH) == (W.TEXT_TOKENS, W.TEXT_WIDTH)
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
    NegativeEmbedding(torch.zeros(1, W.TEXT_TOKENS, W.TEXT_WIDTH), None, FAMILIES["shapes-clip"]).save(path)
    code = cli_main(["--model", "tiny-zeroscope", "--neg", str(path), "--prompt", "x",
                     "--out", str(tmp_path / "x.mp4")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "128" in err and "1024" in err


# ---- build command -----------------------------------------------------------------------------------------


def test_build_refuses_bad_arguments(tmp_path, capsys):
    from reneg_video.commands.build_shapes import main

    assert main(["--out", str(tmp_path / "b"), "--stages", "clip,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert main(["--out", str(tmp_path / "full"), "--quick"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "c"), "--seed", "-1"]) == 2
    capsys.readouterr()
    t2v_unet = W.weights_root() / "t2v" / "unet"  # a diffusers folder, but not an autoencoder
    for bad in (tmp_path / "missing", t2v_unet):
        assert main(["--out", str(tmp_path / "d"), "--quick", "--vae-from", str(bad)]) == 2
        err = capsys.readouterr().err
        assert f"--vae-from {bad}" in err and "AutoencoderKL" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # refused before anything is written
    shipped_vae = str(W.weights_root() / "t2i" / "vae")
    assert main(["--out", str(tmp_path / "e"), "--quick", "--stages", "vae", "--vae-from", shipped_vae]) == 0
    assert main(["--out", str(tmp_path / "e"), "--quick", "--stages", "vae,t2i", "--resume"]) == 2
    assert "['vae_from'" in capsys.readouterr().err  # a build does not change VAE halfway


# ---- shipped models ----------------------------------------------------------------------------------------

# Fixed held-out sets: the first prompts of the held-out split, seed 0, the spec's defaults.
T2I_PROMPTS = HELD_OUT[:24]
T2V_PROMPTS = HELD_OUT[:8]


@pytest.fixture(scope="module")
def t2i():
    from reneg_video.models.pipeline import load_pipeline

    torch.set_num_threads(1)  # the tests share a small machine; two threads contend badly there
    pipe = load_pipeline("shapes-t2i", "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _t2i_accuracy(pipe, negative=None, prompts=T2I_PROMPTS, seeds=(0,)) -> np.ndarray:
    from reneg_video.training.shapes_build import sample

    spec = pipe.reneg_spec
    rows = [(p, s) for p in prompts for s in seeds]
    images = sample(
        pipe, [p for p, _ in rows], [s for _, s in rows], video=False, steps=spec.defaults.steps,
        guidance=spec.defaults.guidance, negative=negative,
    )  # fmt: skip
    return np.array([judge.judge(im, p)["accuracy"] for im, (p, _) in zip(images, rows, strict=True)])


def test_shipped_text_encoder_tells_shape_and_direction_words_apart(t2i):
    from reneg_video.training.shapes_build import text_sensitivity

    moved = text_sensitivity(t2i.text_encoder.float(), t2i.tokenizer, seed=0)
    for kind, least in TEXT_MIN_SENSITIVITY.items():
        assert moved[kind] >= least, moved


def test_shipped_t2i_draws_what_prompts_say(t2i):
    acc = _t2i_accuracy(t2i)
    assert acc.mean() >= T2I_MIN_ACCURACY, acc.mean()


def test_shipped_t2v_moves_as_prompts_say():
    from reneg_video.models.pipeline import load_pipeline
    from reneg_video.training.shapes_build import sample

    torch.set_num_threads(1)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    d = pipe.reneg_spec.defaults
    videos = sample(pipe, T2V_PROMPTS, [0] * len(T2V_PROMPTS), video=True, steps=d.steps, guidance=d.guidance)
    assert videos.shape == (len(T2V_PROMPTS), W.FRAMES, W.IMAGE_SIZE, W.IMAGE_SIZE, 3)
    result = judge.judge_many(list(videos), T2V_PROMPTS)
    assert result["accuracy"] >= T2V_MIN_ACCURACY, result


def test_shipped_t2v_moves_in_the_direction_the_prompt_asks():
    # Before the build's motion stage this followed the word 0.25 of the time (chance; docs/shapes.md); v5: 7/8.
    from reneg_video.models.pipeline import load_pipeline
    from reneg_video.training.shapes_build import sample

    torch.set_num_threads(1)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    d = pipe.reneg_spec.defaults
    prompts = [f"a red circle moving {w} on a blue background" for w in W.DIRECTIONS] * 2
    seeds = [0] * len(W.DIRECTIONS) + [1] * len(W.DIRECTIONS)  # the same noise for every word
    videos = sample(pipe, prompts, seeds, video=True, steps=d.steps, guidance=d.guidance)
    motion = [judge.judge(v, p)["motion"] for v, p in zip(videos, prompts, strict=True)]
    assert np.mean(motion) > 0.5, motion


def test_shipped_t2v_renders_the_issues_example_for_most_seeds():
    """Issue 12's example through reneg-video's own path (load_embedding, load_pipeline, attach, generate;
    the CLI adds only the export): the judge passes every check for most of seeds 0-9. "Most" is the
    issue's word, not a measured threshold. Measured: v4 4/10, v5 (the polish stage) in docs/shapes.md."""
    from reneg_video.core.embedding import load_embedding
    from reneg_video.core.inject import attach
    from reneg_video.models.generate import generate, settings_for
    from reneg_video.models.pipeline import load_pipeline

    torch.set_num_threads(1)
    prompt = "a red circle moving right on a blue background"
    neg = load_embedding(W.weights_root() / W.RENEG_BIN)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    attach(pipe, neg)
    spec = pipe.reneg_spec
    passed = [
        judge.judge(generate(pipe, spec, prompt, settings_for(spec, seed=seed)), prompt)["passed"]
        for seed in range(10)
    ]
    assert sum(passed) > len(passed) / 2, passed


def test_shapes_reward_prefers_what_the_judge_prefers():
    from reneg_video.rewards import load_reward

    reward = load_reward("shapes-reward")
    rng = np.random.default_rng(11)
    agree = total = 0
    for prompt in HELD_OUT[:40]:
        a = data.parse_caption(prompt)
        good = data.render(a, rng, frames=1)
        bad = data.render(a, rng, frames=1, degradations=(str(rng.choice(data.IMAGE_DEGRADATIONS)),))
        if judge.judge(good, prompt)["accuracy"] == judge.judge(bad, prompt)["accuracy"]:
            continue
        scores = reward.score_frames(np.concatenate([good, bad]), prompt)
        agree += int(scores[0] > scores[1])
        total += 1
    assert agree / total >= REWARD_MIN_AGREEMENT, (agree, total)
    frames = torch.rand(2, 3, W.IMAGE_SIZE, W.IMAGE_SIZE, requires_grad=True)
    reward.score_frames(frames, HELD_OUT[0]).sum().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0


def test_shipped_reneg_embedding_beats_null_on_held_out_prompts(t2i):
    """Measured on 60 held-out prompts x 2 seeds: ReNeg 0.823 vs null 0.793 (the v1 weights: 0.670 vs 0.680)."""
    from reneg_video.core.embedding import load_embedding

    folder = W.weights_root()
    released = load_embedding(folder / W.RENEG_BIN)
    project = load_embedding(folder / W.RENEG_SAFETENSORS)
    assert released.family.name == project.family.name == "shapes-clip"
    assert torch.equal(released.tensor, project.tensor)
    seeds = (0, 1)
    null = _t2i_accuracy(t2i, None, HELD_OUT, seeds)
    reneg = _t2i_accuracy(t2i, released.tensor, HELD_OUT, seeds)
    assert reneg.mean() > null.mean(), (reneg.mean(), null.mean())


def test_refinement_arms_start_from_the_embedding_arm_and_keep_the_best(t2i):
    """best-of 1 is the embedding arm itself; optimize-neg and best-of keep their start when it scores best,
    so per sample their reward is never below the embedding arm's (same noise, same reward)."""
    from reneg_video.core.embedding import load_embedding
    from reneg_video.rewards import load_reward
    from reneg_video.training.shapes_eval import Arm, run_arms

    emb = load_embedding(W.weights_root() / W.RENEG_BIN)
    arms = [Arm("reneg", emb.tensor)]
    arms += [
        Arm(k, emb.tensor, (k, n), emb) for k, n in (("best-of", 1), ("optimize-neg", 2), ("best-of", 3))
    ]
    arms[1:] = [Arm(f"{a.name} {a.refine[1]}", a.negative, a.refine, a.embedding) for a in arms[1:]]
    reward = load_reward("shapes-reward")
    spec = t2i.reneg_spec
    report, frames = run_arms(
        t2i, False, arms, HELD_OUT[:2], 1, steps=spec.defaults.steps, guidance=spec.defaults.guidance,
        reward=reward, spec=spec,
    )  # fmt: skip
    np.testing.assert_allclose(frames["best-of 1"], frames["reneg"], atol=1e-6)
    assert not np.allclose(frames["best-of 3"], frames["reneg"])  # seeds 1, 2 do win somewhere
    from reneg_video.training.shapes_eval import mean_reward

    for name in ("optimize-neg 2", "best-of 3"):
        for i, prompt in enumerate(HELD_OUT[:2]):
            ours, start = (
                mean_reward(reward, frames[name][i], prompt),
                mean_reward(reward, frames["reneg"][i], prompt),
            )
            assert ours >= start - 1e-4, (name, prompt, ours, start)


def test_shapes_eval_help_names_its_arms_and_outputs():
    from reneg_video.commands.shapes_eval import build_parser

    text = " ".join(build_parser().format_help().split())
    for needle in ("null-text, handcrafted-negative and ReNeg", "--optimize-neg STEPS", "--optimize-noise STEPS",
                   "--best-of N", "seed..seed+N-1", "heldout, train", "judge only"):  # fmt: skip
        assert needle in text, needle


def test_build_shapes_help_names_its_stages_and_options():
    from reneg_video.commands.build_shapes import build_parser
    from reneg_video.training.shapes_build import STAGES

    text = " ".join(build_parser().format_help().split())
    for needle in (", ".join(STAGES), "--resume", "--quick", "--install", "--vae-from DIR",
                   "the decoder stage is skipped", "OUT/export/{t2i,t2v,reward}"):  # fmt: skip
        assert needle in text, needle


def test_shapes_eval_arms_of_two_runs_outputs_get_distinct_names():
    from reneg_video.commands.shapes_eval import arm_names
    from reneg_video.core.errors import UsageError

    assert arm_names(["a/x.bin"]) == ["reneg"]
    assert arm_names(["a/x.bin", "b/y.bin"]) == ["x", "y"]
    runs = ["runs/direct/negative_embedding.bin", "runs/transfer/negative_embedding.bin", "c/z.bin"]
    assert arm_names(runs) == ["direct/negative_embedding", "transfer/negative_embedding", "z"]
    with pytest.raises(UsageError, match="share a name"):
        arm_names(["a/x.bin", "a/x.bin"])


def test_shapes_eval_refuses_refinement_without_one_embedding(tmp_path, capsys):
    from reneg_video.commands.shapes_eval import main

    assert main(["--model", "shapes-t2i", "--best-of", "2", "--out", str(tmp_path / "a")]) == 2
    assert "exactly one --neg" in capsys.readouterr().err
    neg = str(W.weights_root() / W.RENEG_BIN)
    assert (
        main(["--model", "shapes-t2i", "--neg", neg, "--optimize-neg", "11", "--out", str(tmp_path / "b")])
        == 2
    )
    assert "--optimize-neg 11: expected 1..10" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_compare_and_validate_use_the_worlds_own_handcrafted_negative():
    from reneg_video.core.prompts import PAPER_NEGATIVE_ALIAS, PAPER_NEGATIVE_PROMPT, baseline_negative
    from reneg_video.models.pipeline import resolve_spec

    for name in ("shapes-t2i", "shapes-t2v"):
        own = resolve_spec(name).defaults.negative_prompt
        assert own == W.HANDCRAFTED_NEGATIVE, name
        assert baseline_negative(None, own) == W.HANDCRAFTED_NEGATIVE
    assert baseline_negative(PAPER_NEGATIVE_ALIAS, W.HANDCRAFTED_NEGATIVE) == PAPER_NEGATIVE_PROMPT
    assert baseline_negative("washed out", W.HANDCRAFTED_NEGATIVE) == "washed out"
    assert resolve_spec("zeroscope").defaults.negative_prompt is None
    assert baseline_negative(None, None) == PAPER_NEGATIVE_PROMPT


# ---- a reduced build learns --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory):
    from reneg_video.training.shapes_build import BuildConfig, build

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("shapes") / "build"
    build(out, BuildConfig.quick(), stages=("clip", "vae"))
    return out


@pytest.fixture(scope="module")
def quick_t2i(tmp_path_factory):
    """The reduced build's text-to-image stage on the shipped VAE (`--vae-from`). On the reduced build's
    own 60-step VAE no generator can pass the judge: that VAE's reconstructions of clean frames score
    judge accuracy 0.14 (docs/shapes.md, "A reduced build")."""
    from reneg_video.training.shapes_build import BuildConfig, build

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("shapes") / "build"
    cfg = BuildConfig.quick()
    cfg.vae_from = str(W.weights_root() / "t2i" / "vae")
    build(out, cfg, stages=("clip", "vae", "decoder", "t2i"))
    return out


def test_quick_build_losses_fall(quick_build, quick_t2i):
    for stage, ratio in QUICK_LOSS_RATIO.items():
        folder = quick_t2i if stage == "t2i" else quick_build
        losses = json.loads((folder / stage / "stage.json").read_text())["losses"]
        k = max(2, len(losses) // 5)
        assert np.mean(losses[-k:]) < ratio * np.mean(losses[:k]), stage


def test_a_clean_build_reproduces_the_same_weights(quick_build, tmp_path):
    """Every stage is deterministic from the seed (data, init, noise per step): a second clean build gives
    bit-identical weights, so a clean full build reproduces the shipped ones (at the same thread count)."""
    from safetensors.torch import load_file

    from reneg_video.training.shapes_build import BuildConfig, build

    build(tmp_path / "again", BuildConfig.quick(), stages=("clip", "vae"))
    for file in ("clip/clip/model.safetensors", "vae/vae/diffusion_pytorch_model.safetensors"):
        first, second = load_file(quick_build / file), load_file(tmp_path / "again" / file)
        assert first.keys() == second.keys() and first
        assert all(torch.equal(first[k], second[k]) for k in first), file


def test_quick_build_beats_an_untrained_unet_by_the_judge(quick_t2i):
    from diffusers import UNet2DConditionModel

    from reneg_video.training.shapes_build import image_pipeline, sample

    assert not (quick_t2i / "decoder").exists()  # the adopted VAE is final: no decoder stage ran
    assert json.loads((quick_t2i / "vae" / "stage.json").read_text())["from"].endswith("t2i/vae")
    pipe = image_pipeline(quick_t2i)
    pipe.set_progress_bar_config(disable=True)
    prompts = HELD_OUT[:16]
    seeds = list(range(len(prompts)))

    def accuracy() -> float:
        images = sample(pipe, prompts, seeds, video=False, steps=10, guidance=5.0)
        return judge.judge_many(list(images), prompts)["accuracy"]

    trained = accuracy()
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(**W.UNET2D)  # the same pipeline before any denoiser training
    assert trained > accuracy()


def test_motion_curriculum_clips_move_only_in_the_allowed_directions():
    rng = np.random.default_rng(0)
    clips = [data.make_sample(rng, video=True, directions=("right", "right", "left")) for _ in range(60)]
    seen = [c.attributes.direction for c in clips]
    assert set(seen) == {"right", "left"}, seen
    assert seen.count("right") > seen.count("left"), seen  # a repeated direction is drawn more often
    assert all(c.attributes.direction in c.caption for c in clips)
