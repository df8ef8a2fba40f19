"""Simulated raters of the shapes world: a panel of people who compare two still images of one prompt.

The reward stage (shapes_world/build/reward.py) trains `shapes-reward` on their choices, so the reward is
learned from noisy human-like preferences rather than distilled from the judge (issue 29, item 5). A rater
does not apply the judge's 0/1 checks: it sees continuous qualities of a still frame (QUALITIES, each in
[0, 1], read with the judge's public helpers) and weighs them its own way; its choice between two frames is
logistic in the difference of their utilities, so it is noisy where they are close. numpy only.

Shape legend: R raters, Q qualities, H x W pixels; a frame is uint8 or float [H, W, 3].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Attributes, parse_caption
from .judge import CLEAN_DISTANCE, MIN_AREA, as_float, nearest_colour, shape_mask
from .world import COLOURS

QUALITIES = ("colour", "crisp", "background", "present", "form")
# The panel's base weighting over QUALITIES. The judge weighs its five still checks (present, shape,
# colour, background, crisp) equally; people do not: colour and sharpness are what one notices first in a
# small picture, the exact outline (a slightly round square, a fat triangle) least. So colour and crispness
# carry more than the judge's 0.2 each, and the form of the shape less.
BASE_WEIGHTS = (0.32, 0.28, 0.14, 0.14, 0.12)
# Each rater's weights ~ Dirichlet(CONCENTRATION * BASE_WEIGHTS): raters differ around the base (a weight
# of 0.3 has a std of about 0.08 at 30).
CONCENTRATION = 30.0
PANEL_SIZE = 16
# Logistic choice: P(a over b) = sigmoid((u_a - u_b) / TEMPERATURE). Calibrated on the reward stage's pairs
# (shapes_world/build/reward.py: a pool of the shipped shapes-t2i's samples of 40 training prompts at the four
# REWARD_GUIDANCES, 20 steps, plus clean/degraded/wrong renders; 3000 pairs, 1734 where the judge's
# accuracies differ): against the judge's ordering in 0.201 of them (0.077 at T -> 0: the raters' weights
# alone; 0.153 at 0.05, 0.228 at 0.1). The share differs by pair: 0.104 on render-vs-render pairs (clean
# against degraded or wrong, where raters and judge mostly agree), 0.272 between two generated samples.
TEMPERATURE = 0.08
# The qualities' scales: an RGB distance (in [0, 1] units) this large from the asked colour scores 0 (the
# palette's nearest pairs, green-blue and black-blue, are 0.99-1.02 apart: another palette colour scores
# at most 0.01, a faded or tinted one in between);
# a crisp share at or below CRISP_FLOOR scores 0 (clean frames 0.95-0.98, blurred ~0.89, noisy far
# lower); a shape covering FULL_AREA pixels is fully present (the smallest drawn shape covers ~70); a
# bounding-box fill FORM_SCALE away from the asked type's scores 0.
COLOUR_SCALE = 1.0
CRISP_FLOOR = 0.75
FULL_AREA = 70
FORM_SCALE = 0.3
# Fill of the bounding box of each type as drawn: medians of 200 clean renders each (square 0.995, circle
# 0.776, triangle 0.555; antialiased at 32 px: pi/4 and 1/2 in the continuum).
TARGET_FILL = {"square": 1.0, "circle": 0.78, "triangle": 0.55}

_PALETTE = {c: np.asarray(rgb, dtype=np.float32) for c, rgb in COLOURS.items()}


def qualities(frame: np.ndarray, prompt: str | Attributes) -> np.ndarray:
    """What a person sees in one still frame against its prompt: float [Q] in [0, 1], in QUALITIES order.

    colour: how close the shape's colour (median of its pixels) is to the asked colour; crisp: the share of
    pixels within the judge's CLEAN_DISTANCE of the two palette colours the frame shows, rescaled above
    CRISP_FLOOR; background: how close the background (median of the border) is to the asked one;
    present: how much of a shape there is (its pixel count up to FULL_AREA); form: how near its
    bounding-box fill is to the asked type's. colour and form are 0 without a shape."""
    wanted = parse_caption(prompt) if isinstance(prompt, str) else prompt
    if wanted is None:
        raise ValueError(f"prompt {prompt!r} names no shape/colour/background a rater can compare")
    f = as_float(frame)
    if len(f) != 1:
        raise ValueError(f"raters compare still frames; got {len(f)} frames")
    f = f[0]
    bg_rgb, mask = shape_mask(f)
    area = int(mask.sum())
    background = 1.0 - min(float(np.linalg.norm(bg_rgb - _PALETTE[wanted.background])) / COLOUR_SCALE, 1.0)
    clean = np.linalg.norm(f - _PALETTE[nearest_colour(bg_rgb)], axis=-1) < CLEAN_DISTANCE
    colour = form = 0.0
    if area:
        fg_rgb = np.median(f[mask], axis=0)
        colour = 1.0 - min(float(np.linalg.norm(fg_rgb - _PALETTE[wanted.colour])) / COLOUR_SCALE, 1.0)
        clean |= np.linalg.norm(f - _PALETTE[nearest_colour(fg_rgb)], axis=-1) < CLEAN_DISTANCE
        if area >= MIN_AREA:
            ys, xs = np.nonzero(mask)
            fill = area / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
            form = 1.0 - min(abs(fill - TARGET_FILL[wanted.shape]) / FORM_SCALE, 1.0)
    crisp = min(max((float(clean.mean()) - CRISP_FLOOR) / (1.0 - CRISP_FLOOR), 0.0), 1.0)
    present = min(area / FULL_AREA, 1.0)
    by_name = {"colour": colour, "crisp": crisp, "background": background, "present": present, "form": form}
    return np.asarray([by_name[q] for q in QUALITIES], dtype=np.float64)


@dataclass(frozen=True)
class Panel:
    """PANEL_SIZE raters: weights [R, Q] (rows sum to 1) and the temperature of their choices."""

    weights: np.ndarray
    temperature: float = TEMPERATURE

    @classmethod
    def from_seed(
        cls,
        seed: int | list[int],
        size: int = PANEL_SIZE,
        *,
        concentration: float = CONCENTRATION,
        temperature: float = TEMPERATURE,
    ) -> Panel:
        rng = np.random.default_rng(seed)
        return cls(rng.dirichlet(concentration * np.asarray(BASE_WEIGHTS), size=size), temperature)

    def utility(self, rater: int, q: np.ndarray) -> float:
        return float(self.weights[rater] @ q)

    def choose(self, q_a: np.ndarray, q_b: np.ndarray, rng: np.random.Generator) -> int | None:
        """A random rater's choice between frames of qualities q_a and q_b: 0 (a) or 1 (b), None when the
        two are worth the same to it (a tie: the pair is skipped). Draws two numbers from `rng`."""
        rater = int(rng.integers(len(self.weights)))
        diff = self.utility(rater, q_a) - self.utility(rater, q_b)
        u = float(rng.random())
        if diff == 0.0:
            return None
        return 0 if u < 1.0 / (1.0 + np.exp(-diff / self.temperature)) else 1


def measured_disagreement(
    choices: list[int], judge_a: list[float], judge_b: list[float]
) -> tuple[float, int]:
    """Share of choices (0: a, 1: b) against the judge's ordering of the pair, among pairs whose judge
    accuracies differ, and the count of those pairs."""
    against = [(c == 0) != (ja > jb) for c, ja, jb in zip(choices, judge_a, judge_b, strict=True) if ja != jb]
    return (float(np.mean(against)) if against else float("nan")), len(against)
