"""The simulated raters the shapes reward learns from (shapes_world.raters), and the reduced build's
reward stage trained on their choices (issue 29, item 5).

Rates are measured on procedural pairs (clean, degraded and wrong renders of one prompt, as the reward
stage draws them besides its generated samples); each comment gives the value seen.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from shapes_world import data
from shapes_world.build.reward import candidates
from shapes_world.judge import judge
from shapes_world.raters import QUALITIES, TEMPERATURE, Panel, measured_disagreement, qualities

PROMPTS = data.split_prompts()[0]


def _procedural_pairs(seed: int, n: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """n (prompt, a, b): two of a prompt's clean, degraded and wrong renders (the stage's candidates
    without generated samples)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        prompt = str(PROMPTS[int(rng.integers(len(PROMPTS)))])
        frames = candidates(prompt, [], rng)
        i, j = rng.choice(len(frames), size=2, replace=False)
        pairs.append((prompt, frames[i], frames[j]))
    return pairs


def test_a_clean_render_shows_every_quality():
    rng = np.random.default_rng(0)
    q = np.stack([qualities(data.render(data.parse_caption(p), rng, frames=1)[0], p) for p in PROMPTS[:40]])
    assert q.shape == (40, len(QUALITIES))
    # Medians seen: colour, background, present 1.0, form 0.96, crisp 0.89 (a clean share of ~0.97 of the
    # pixels: antialiased edges); the least 0.46 (form: one shape's fill far from its type's median).
    assert np.median(q, axis=0).min() >= 0.85
    assert q.min() >= 0.35


def test_raters_disagree_with_the_judge_about_as_calibrated():
    panel = Panel.from_seed([0, 29])
    rng = np.random.default_rng(1)
    choices, judge_a, judge_b = [], [], []
    for prompt, a, b in _procedural_pairs(2, 800):
        choice = panel.choose(qualities(a, prompt), qualities(b, prompt), rng)
        if choice is None:
            continue
        choices.append(choice)
        judge_a.append(judge(a, prompt)["accuracy"])
        judge_b.append(judge(b, prompt)["accuracy"])
    rate, n = measured_disagreement(choices, judge_a, judge_b)
    assert n > 300
    # The temperature was calibrated to ~0.20 on the stage's pairs, generated samples included; on renders
    # alone (clean vs degraded or wrong) raters and judge agree more: 0.087 here (0.086-0.151 over three
    # pair seeds; 0.104 on the stage's pairs). Chance would be 0.5.
    assert 0.05 <= rate <= 0.22, rate


def test_raters_prefer_a_clean_render_to_a_blurred_or_wrong_one():
    panel = Panel.from_seed([0, 29])
    rng = np.random.default_rng(3)
    for spoil in ("blur", "wrong_shape", "missing"):
        wins = []
        for prompt in PROMPTS[:150]:
            a = data.parse_caption(prompt)
            clean = data.render(a, rng, frames=1)[0]
            spoiled = data.render(a, rng, frames=1, degradations=(spoil,))[0]
            wins.append(panel.choose(qualities(clean, prompt), qualities(spoiled, prompt), rng) == 0)
        assert np.mean(wins) >= 0.7, (spoil, np.mean(wins))  # blur 0.87, wrong_shape 0.77, missing 1.0


def test_different_raters_weigh_differently():
    panel = Panel.from_seed([0, 29])
    assert panel.weights.shape == (16, len(QUALITIES))
    np.testing.assert_allclose(panel.weights.sum(1), 1.0)
    assert panel.weights.std(0).min() > 0.02  # seen 0.049 (form) to 0.111 (colour)
    # Some pair of frames is ordered one way by one rater and the other way by another.
    split = 0
    for prompt, a, b in _procedural_pairs(4, 200):
        utilities = panel.weights @ (qualities(a, prompt) - qualities(b, prompt))
        split += bool(utilities.max() > 0 > utilities.min())
    assert split >= 5, split  # seen 24 of 200


def test_raters_are_deterministic_from_the_seed():
    a, b, other = Panel.from_seed([0, 29]), Panel.from_seed([0, 29]), Panel.from_seed([1, 29])
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.allclose(a.weights, other.weights)
    assert a.temperature == TEMPERATURE
    pairs = _procedural_pairs(5, 50)

    def choices(panel):
        rng = np.random.default_rng(6)
        return [panel.choose(qualities(x, p), qualities(y, p), rng) for p, x, y in pairs]

    assert choices(a) == choices(b)


def test_raters_refuse_videos_and_prompts_without_a_shape():
    rng = np.random.default_rng(7)
    clip = data.render(data.Attributes("circle", "red", "black", "left"), rng)
    with pytest.raises(ValueError, match="still frames"):
        qualities(clip, "a red circle moving left on a black background")
    with pytest.raises(ValueError, match="names no shape"):
        qualities(clip[0], "a red thing")


@pytest.mark.slow
def test_quick_build_reward_learns_from_raters(tmp_path):
    """The reduced build's clip..reward stages (a few minutes at one thread)."""
    import torch

    import shapes_world.world
    from shapes_world.build import BuildConfig, build

    torch.set_num_threads(1)
    cfg = BuildConfig.quick()
    cfg.vae_from = str(shapes_world.world.shipped_vae())
    build(tmp_path, cfg, stages=("clip", "vae", "decoder", "t2i", "reward"))
    info = json.loads((tmp_path / "reward" / "stage.json").read_text())
    losses = info["losses"]
    assert len(losses) == cfg.reward.steps
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # seen 0.621 -> 0.526 (10 steps x 8 pairs)
    raters = info["raters"]
    assert raters["temperature"] == TEMPERATURE and raters["pairs"] == cfg.reward.steps * cfg.reward.batch
    assert 0.0 < raters["disagreement_with_judge"] < 0.5  # seen 0.119 of 67 pairs
    held = info["held_out"]
    assert held["n"] == 64
    for key in ("spearman_with_judge", "spearman_with_judge_before", "raters_spearman_with_judge"):
        assert key in held
    assert set(held["checks"]) == {"present", "shape", "colour", "background", "crisp"}
    assert all({"pass_rate", "reward_auc", "raters_auc"} <= set(v) for v in held["checks"].values())


def test_rank_figures_match_their_definitions():
    from shapes_world.build.reward import _auc, spearman

    assert spearman(np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4])) == pytest.approx(0.8)  # 1 - 6*2/60
    assert spearman(np.array([1, 2, 2, 3]), np.array([5, 5, 5, 5])) is None
    # Passing {0.5, 0.9} over failing {0.1, 0.5}: 3 wins and a tie of 4 pairs.
    assert _auc(np.array([0.1, 0.5, 0.5, 0.9]), np.array([False, True, False, True])) == 0.875
