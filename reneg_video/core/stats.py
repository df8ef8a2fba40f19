"""Statistics of an A/B comparison over prompts x seeds: means with intervals, paired differences, win rates.

Prompts are the unit a claim generalises over and seeds are nested within prompts, so intervals come
from a two-stage bootstrap: resample prompts with replacement, then, within each drawn prompt, its seeds
with replacement; the statistic is the mean over prompts of the mean over seeds. A prompt is won when
the arm's mean over seeds beats the baseline's (ties count half); the win rate gets a Wilson score
interval, which stays honest for few prompts (3 of 3 won: [0.44, 1.00], where a percentile bootstrap of
the rate gives the empty-looking [1.00, 1.00]).

Shape legend: P prompts, S seeds per prompt, B bootstrap resamples.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

# 2000 resamples put the Monte-Carlo error of a 95% percentile bound well below its sampling error
# (Efron & Tibshirani 1993, ch. 19, recommend >= 1000 for percentile intervals).
BOOTSTRAP_RESAMPLES = 2000
LEVEL = 0.95


def _grid(values) -> np.ndarray:
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[0] == 0 or grid.shape[1] == 0:
        raise ValueError(f"expected a [prompts, seeds] grid of values, got shape {grid.shape}")
    return grid


def nested_bootstrap(values, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """[B] bootstrap means of a [P, S] grid: prompts resampled, then seeds within each drawn prompt."""
    grid = _grid(values)
    prompts, seeds = grid.shape
    rng = np.random.default_rng(seed)
    drawn_prompts = rng.integers(0, prompts, size=(resamples, prompts))  # [B, P]
    drawn_seeds = rng.integers(0, seeds, size=(resamples, prompts, seeds))  # [B, P, S]
    return grid[drawn_prompts[..., None], drawn_seeds].mean(axis=(1, 2))


def mean_ci(values, seed: int = 0, level: float = LEVEL) -> dict:
    """Mean of a [P, S] grid with a nested-bootstrap percentile interval."""
    grid = _grid(values)
    stats = nested_bootstrap(grid, seed)
    tail = (1 - level) / 2
    return {
        "mean": float(grid.mean()),
        "low": float(np.quantile(stats, tail)),
        "high": float(np.quantile(stats, 1 - tail)),
        "level": level,
        "prompts": grid.shape[0],
        "seeds": grid.shape[1],
    }


def bootstrap_interval(
    values, seed: int = 0, level: float = LEVEL, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float, float]:
    """Mean of a flat sample and its percentile-bootstrap interval (values resampled with replacement,
    seeded, so reproducible): (mean, low, high). For paired differences and per-prompt win indicators."""
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = rng.choice(v, size=(resamples, v.size)).mean(axis=1)
    # Rounded: (1 - 0.95) / 2 is 0.025000000000000022 in binary, and the bench's and the shapes world's
    # figures were computed at the quantiles 0.025 and 0.975 exactly (the last bits of `low` differ).
    # mean_ci keeps the unrounded tail its reports were computed with.
    tail = round((1 - level) / 2, 12)
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(v.mean()), float(low), float(high)


# The two-sided 95% normal quantile as the shapes-world figures were computed with it (1.95996 rounded).
Z95 = 1.96


def normal_interval(values, z: float = Z95) -> tuple[float, float, float]:
    """Mean and its normal-approximation interval, mean +- z * sd / sqrt(n): (mean, low, high); nan bounds
    for fewer than two values, all nan for none."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    half = z * float(v.std(ddof=1)) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return m, m - half, m + half


def wilson_interval(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927); `successes` may hold halves for ties."""
    if n <= 0:
        raise ValueError(f"n {n}: expected at least one trial")
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def win_rate(arm, baseline, level: float = LEVEL) -> dict:
    """Per-prompt wins of `arm` over `baseline` ([P, S] grids, compared by their means over seeds)."""
    a, b = _grid(arm).mean(axis=1), _grid(baseline).mean(axis=1)
    if a.shape != b.shape:
        raise ValueError(f"arm and baseline cover different prompts: {a.shape} vs {b.shape}")
    wins, ties = int((a > b).sum()), int((a == b).sum())
    n = len(a)
    low, high = wilson_interval(wins + ties / 2, n, level)
    return {
        "rate": (wins + ties / 2) / n,
        "low": low,
        "high": high,
        "level": level,
        "method": "wilson",
        "wins": wins,
        "ties": ties,
        "losses": n - wins - ties,
        "prompts": n,
    }


def _num(x: float) -> str:
    return f"{x:+.3g}"


def verdict(arm: str, baseline: str, win: dict, difference: dict, unit: str = "reward") -> str:
    """One line in words, e.g. "ReNeg beats null on 31 of 50 prompts, +0.12 reward [0.05, 0.19]"."""
    ties = f" ({win['ties']} tied)" if win["ties"] else ""
    low, high = difference["low"], difference["high"]
    if low > 0:
        reading = "better"
    elif high < 0:
        reading = "worse"
    else:
        reading = "no clear difference: the interval includes 0"
    return (
        f"{arm} beats {baseline} on {win['wins']} of {win['prompts']} prompts{ties}, "
        f"{_num(difference['mean'])} {unit} [{_num(low)}, {_num(high)}] ({reading})"
    )
