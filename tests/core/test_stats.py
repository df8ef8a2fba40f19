"""core.stats: nested bootstrap, Wilson intervals, win rates and the verdict line."""

from __future__ import annotations

import numpy as np
import pytest

from reneg_video.core import stats


def test_three_of_three_won_is_not_a_certain_win():
    # The old percentile bootstrap of the win rate printed [1.00, 1.00] for 3 prompts, all won.
    win = stats.win_rate([[1.0], [2.0], [3.0]], [[0.0], [0.0], [0.0]])
    assert (win["wins"], win["ties"], win["losses"], win["rate"]) == (3, 0, 0, 1.0)
    assert win["high"] == 1.0 and 0.4 < win["low"] < 0.5  # Wilson 95%: [0.438, 1]


def test_wilson_interval_matches_its_formula_and_is_symmetric():
    z = 1.959963984540054  # 97.5% normal quantile
    n, k = 50, 31
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert stats.wilson_interval(k, n) == pytest.approx((centre - half, centre + half))
    low, high = stats.wilson_interval(k, n)
    flipped = stats.wilson_interval(n - k, n)
    assert flipped == pytest.approx((1 - high, 1 - low))


def test_ties_count_half():
    win = stats.win_rate([[1.0], [0.0]], [[1.0], [1.0]])
    assert (win["wins"], win["ties"], win["losses"], win["rate"]) == (0, 1, 1, 0.25)


def test_nested_bootstrap_covers_the_mean_and_resamples_seeds_within_prompts():
    rng = np.random.default_rng(3)
    grid = rng.normal(0.5, 1.0, size=(40, 4))
    ci = stats.mean_ci(grid)
    assert ci["low"] < grid.mean() < ci["high"] and (ci["prompts"], ci["seeds"]) == (40, 4)
    # Seed noise alone (every prompt the same) still gives an interval: seeds are resampled too.
    same_prompts = np.tile(rng.normal(size=(1, 4)), (40, 1))
    assert stats.mean_ci(same_prompts)["high"] > stats.mean_ci(same_prompts)["low"]
    # One seed per prompt with identical prompts: nothing varies, the interval is the point.
    flat = stats.mean_ci(np.full((5, 1), 2.0))
    assert flat["low"] == flat["high"] == 2.0
    assert np.array_equal(stats.nested_bootstrap(grid, seed=1), stats.nested_bootstrap(grid, seed=1))


def test_verdict_line_in_words():
    win = {"wins": 31, "ties": 0, "prompts": 50}
    line = stats.verdict("ReNeg", "null", win, {"mean": 0.12, "low": 0.05, "high": 0.19})
    assert line == "ReNeg beats null on 31 of 50 prompts, +0.12 reward [+0.05, +0.19] (better)"
    unclear = stats.verdict("ReNeg", "null", {**win, "ties": 2}, {"mean": 0.01, "low": -0.05, "high": 0.07})
    assert "(2 tied)" in unclear and "includes 0" in unclear


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="grid"):
        stats.mean_ci([])
    with pytest.raises(ValueError, match="different prompts"):
        stats.win_rate([[1.0]], [[1.0], [2.0]])


@pytest.mark.parametrize(
    "values", [[0.1, -0.2, 0.3, 0.05, 0.0, 0.15], [0.5, 0.5], list(np.linspace(-1, 2, 37))]
)
def test_bootstrap_interval_is_the_percentile_bootstrap_at_exact_quantiles(values):
    """Bit for bit what the bench's paired_interval and the shapes world's bootstrap_win_rate computed
    before they went through core.stats: 2000 seeded resamples, quantiles 0.025 and 0.975 exactly."""
    rng = np.random.default_rng(0)
    v = np.asarray(values, dtype=np.float64)
    means = rng.choice(v, size=(2000, v.size)).mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert stats.bootstrap_interval(values) == (float(v.mean()), float(low), float(high))
    mean, low, high = stats.bootstrap_interval(values, level=0.9)
    assert low <= mean <= high
