"""The shipped shapes models, reward and embedding, and the eval's refinement arms.

Thresholds on trained models are set from measurement with margin; each comment gives the value seen.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shapes_world import data, judge
from shapes_world import world as W

HELD_OUT = data.split_prompts()[1]


# Thresholds set from measurement, with margin (each measured value is in the comment).
# shapes-t2i, 24 held-out prompts, seed 0, 20 DDIM steps, guidance 5: measured 0.792 (v1 weights: 0.642).
T2I_MIN_ACCURACY = 0.70
# shapes-t2v, 8 held-out prompts, seed 0: measured 0.911 on v5 (background 1.0, colour 1.0, shape 0.53, crisp
# 0.94, motion 1.0); v3 0.742 (motion 0.0); v1 weights: 0.583. Threshold kept from v3.
T2V_MIN_ACCURACY = 0.62
# Shipped text encoder: hidden-state change when the shape / direction word changes (relative to its norm,
# build.clip.text_sensitivity): measured shape 0.72, direction 0.43 (the v1 encoder: 0.04, 0.02).
TEXT_MIN_SENSITIVITY = {"shape": 0.2, "direction": 0.2}
# shapes-reward ranks a clean render above a degraded one (judge decides): measured 34/40 = 0.85 (v1: 27/40).
REWARD_MIN_AGREEMENT = 0.7


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
    from shapes_world.build.common import sample

    spec = pipe.reneg_spec
    rows = [(p, s) for p in prompts for s in seeds]
    images = sample(
        pipe, [p for p, _ in rows], [s for _, s in rows], video=False, steps=spec.defaults.steps,
        guidance=spec.defaults.guidance, negative=negative,
    )  # fmt: skip
    return np.array([judge.judge(im, p)["accuracy"] for im, (p, _) in zip(images, rows, strict=True)])


def test_shipped_text_encoder_tells_shape_and_direction_words_apart(t2i):
    from shapes_world.build.clip import text_sensitivity

    moved = text_sensitivity(t2i.text_encoder.float(), t2i.tokenizer, seed=0)
    for kind, least in TEXT_MIN_SENSITIVITY.items():
        assert moved[kind] >= least, moved


def test_shipped_t2i_draws_what_prompts_say(t2i):
    acc = _t2i_accuracy(t2i)
    assert acc.mean() >= T2I_MIN_ACCURACY, acc.mean()


@pytest.mark.slow
def test_shipped_t2v_moves_as_prompts_say():
    from reneg_video.models.pipeline import load_pipeline
    from shapes_world.build.common import sample

    torch.set_num_threads(1)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    d = pipe.reneg_spec.defaults
    videos = sample(pipe, T2V_PROMPTS, [0] * len(T2V_PROMPTS), video=True, steps=d.steps, guidance=d.guidance)
    assert videos.shape == (len(T2V_PROMPTS), W.FRAMES, W.IMAGE_SIZE, W.IMAGE_SIZE, 3)
    result = judge.judge_many(list(videos), T2V_PROMPTS)
    assert result["accuracy"] >= T2V_MIN_ACCURACY, result


@pytest.mark.slow
def test_shipped_t2v_moves_in_the_direction_the_prompt_asks():
    # Before the build's motion stage this followed the word 0.25 of the time (chance; docs/shapes.md); v5: 7/8.
    from reneg_video.models.pipeline import load_pipeline
    from shapes_world.build.common import sample

    torch.set_num_threads(1)
    pipe = load_pipeline("shapes-t2v", "cpu", "float32")
    pipe.set_progress_bar_config(disable=True)
    d = pipe.reneg_spec.defaults
    prompts = [f"a red circle moving {w} on a blue background" for w in W.DIRECTIONS] * 2
    seeds = [0] * len(W.DIRECTIONS) + [1] * len(W.DIRECTIONS)  # the same noise for every word
    videos = sample(pipe, prompts, seeds, video=True, steps=d.steps, guidance=d.guidance)
    motion = [judge.judge(v, p)["motion"] for v, p in zip(videos, prompts, strict=True)]
    assert np.mean(motion) > 0.5, motion


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_refinement_arms_start_from_the_embedding_arm_and_keep_the_best(t2i):
    """best-of 1 is the embedding arm itself; optimize-neg and best-of keep their start when it scores best,
    so per sample their reward is never below the embedding arm's (same noise, same reward)."""
    from reneg_video.core.embedding import load_embedding
    from reneg_video.rewards import load_reward
    from shapes_world.eval import Arm, run_arms

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
    from shapes_world.eval import mean_reward

    for name in ("optimize-neg 2", "best-of 3"):
        for i, prompt in enumerate(HELD_OUT[:2]):
            ours, start = (
                mean_reward(reward, frames[name][i], prompt),
                mean_reward(reward, frames["reneg"][i], prompt),
            )
            assert ours >= start - 1e-4, (name, prompt, ours, start)


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
