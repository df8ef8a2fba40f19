"""Video-level scores (rewards.temporal) on synthetic videos, the image embeddings they use, and their
means per arm in reneg-validate's report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reneg_video.render.report import _video_table, video_means
from reneg_video.rewards import load_reward
from reneg_video.rewards.temporal import (
    FROZEN_MAD,
    KEYS,
    WHITE_NOISE_HF,
    consistency_terms,
    format_scores,
    pair_mad,
    score_video,
    temporal_hf,
    video_scores,
)

SIZE, COUNT = 32, 8


def constant() -> np.ndarray:
    video = np.full((COUNT, SIZE, SIZE, 3), 90, np.uint8)
    video[:, 10:20, 10:20] = (200, 40, 40)
    return video


def alternating() -> np.ndarray:
    """Brightness jumping between 0.2 and 0.8 every frame: MAD 0.6 per pair."""
    return np.stack([np.full((SIZE, SIZE, 3), 51 if i % 2 else 204, np.uint8) for i in range(COUNT)])


def moving_square() -> np.ndarray:
    video = np.zeros((COUNT, SIZE, SIZE, 3), np.uint8)
    for i in range(COUNT):
        video[i, 8:16, 2 + 2 * i : 10 + 2 * i] = 255
    return video


@pytest.fixture(scope="module")
def clip():
    return load_reward("tiny-clip")


def test_constant_video_is_frozen_and_still(clip):
    scores = score_video(constant(), clip)
    assert set(scores) == set(KEYS)
    assert scores["flicker"] == 0 and scores["frozen_share"] == 1 and scores["motion"] == 0
    assert scores["consistency"] == pytest.approx(1.0, abs=1e-6) and scores["embedding"] == "tiny-clip"
    assert scores["pair_mad"] == [0.0] * (COUNT - 1) and len(scores["pair_consistency"]) == COUNT - 1


def test_alternating_brightness_flickers():
    scores = video_scores(alternating())
    assert scores["flicker"] == pytest.approx(0.6) and scores["frozen_share"] == 0
    assert scores["motion"] == pytest.approx(0.6)  # frames 0 and 7 differ in brightness too
    assert scores["consistency"] is None and scores["consistency_skipped"]


def test_moving_square_moves_and_drifts(clip):
    scores = score_video(moving_square(), clip)
    # 2 columns of 8 rows leave and 2 enter per frame, all channels: 32 px x 1.0 of 1024 px.
    assert scores["flicker"] == pytest.approx(32 / 1024) and scores["frozen_share"] == 0
    assert scores["motion"] == pytest.approx(2 * 64 / 1024)  # the squares at frames 0 and 7 do not overlap
    assert 0 < scores["consistency"] < 1


def test_input_kinds_agree():
    video = moving_square()
    as_float = video.astype(np.float32) / 255
    as_tensor = torch.from_numpy(as_float).permute(0, 3, 1, 2)
    expected = pair_mad(video)
    assert pair_mad(as_float) == pytest.approx(expected) and pair_mad(as_tensor) == pytest.approx(expected)


def test_one_frame_has_no_pair(clip):
    scores = score_video(constant()[:1], clip)
    assert scores["flicker"] is scores["frozen_share"] is scores["motion"] is scores["consistency"] is None
    assert scores["temporal_hf"] is None


def test_temporal_hf_by_hand():
    """Grey levels 0, 0.2, 0.6, 0.6 everywhere: first differences 0.2, 0.4, 0 (mean square 0.2 / 3),
    second differences 0.2, -0.4 (mean square 0.2 / 2): ratio 1.5."""
    video = np.stack([np.full((4, 4, 3), v, np.float32) for v in (0.0, 0.2, 0.6, 0.6)])
    assert temporal_hf(video) == pytest.approx(1.5, rel=1e-6)
    assert temporal_hf((video * 255).round().astype(np.uint8)) == pytest.approx(1.5, rel=1e-6)  # 0, 51, 153
    assert video_scores(video)["temporal_hf"] == pytest.approx(1.5, rel=1e-6)
    assert temporal_hf(alternating()) == pytest.approx(4.0)  # +d, -d, ...: second differences 2d, (2d)^2/d^2


def test_temporal_hf_of_white_noise_in_time_is_three():
    frames = np.random.default_rng(0).random((64, 32, 32, 3))
    assert WHITE_NOISE_HF == 3 and temporal_hf(frames) == pytest.approx(WHITE_NOISE_HF, abs=0.05)


def test_ghosting_lowers_temporal_hf():
    """Each frame blended with 0.4 of the previous one (experiments/shapes_video_scores.py's ghosting), on
    the moving square and on white noise: a temporal low-pass lowers the ratio."""
    noise = np.random.default_rng(1).random((16, 32, 32, 3))
    for clean in (moving_square().astype(np.float64) / 255, noise):
        ghosted = clean.copy()
        ghosted[1:] = 0.6 * clean[1:] + 0.4 * clean[:-1]
        assert temporal_hf(ghosted) < 0.8 * temporal_hf(clean)


def test_temporal_hf_needs_three_frames_and_change():
    two = moving_square()[:2]
    assert temporal_hf(two) is None and video_scores(two)["temporal_hf"] is None
    assert temporal_hf(constant()) is None and temporal_hf(moving_square()[:3]) is not None  # still: 0 / 0


def test_consistency_is_vbench_form():
    """Frame i >= 1: (max(0, cos(e_i, e_0)) + max(0, cos(e_i, e_{i-1}))) / 2."""
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 1.0], [-1.0, 0.0]])
    assert consistency_terms(e) == pytest.approx([0.0, 0.5, 0.0])


def test_frozen_threshold_holds_through_h264(tmp_path):
    """A repeated frame read back from an 8-bit h264 encode stays under FROZEN_MAD; one shifted by a pixel
    does not."""
    import imageio.v3 as iio

    video = np.repeat(moving_square()[:1], COUNT, axis=0)
    video[4:] = moving_square()[1]
    path = tmp_path / "v.mp4"
    iio.imwrite(path, video, plugin="FFMPEG", fps=8, codec="libx264", macro_block_size=16)
    mads = pair_mad(iio.imread(path, plugin="FFMPEG"))
    assert (mads[[0, 1, 2, 4, 5, 6]] < FROZEN_MAD).all() and mads[3] > FROZEN_MAD


def test_rewards_without_an_image_tower_skip_consistency_with_the_reason():
    scores = score_video(moving_square(), load_reward("tiny-imagereward"))
    assert (
        scores["consistency"] is None
        and "no CLIP image tower in tiny-imagereward" in scores["consistency_skipped"]
    )
    assert "skipped: no CLIP image tower" in format_scores(scores)
    assert f"temporal_hf {scores['temporal_hf']:.3f}" in format_scores(scores)


@pytest.mark.parametrize("name", ["tiny-clip", "tiny-aesthetic"])
def test_embed_frames_gives_unit_vectors_in_batches(name):
    reward = load_reward(name)
    one = reward.embed_frames(moving_square(), batch_size=3)
    assert one.shape[0] == COUNT and torch.allclose(one.norm(dim=-1), torch.ones(COUNT), atol=1e-5)
    assert torch.allclose(one, reward.embed_frames(moving_square(), batch_size=8), atol=1e-5)


def _rows(values: dict[str, list[list[float]]]) -> list[dict]:
    """reneg-validate rows whose videos all have the video-level scores `values[arm][prompt][seed]`."""
    arms = list(values)
    rows = []
    for p in range(len(values[arms[0]])):
        seeds = []
        for s in range(len(values[arms[0]][p])):
            per = {a: {"flicker": values[a][p][s], "frozen_share": 0.0, "motion": 0.1, "consistency": None,
                       "embedding": None, "consistency_skipped": "why"} for a in arms}  # fmt: skip
            seeds.append({"seed": s, "mean": {a: 0.0 for a in arms}, "video_scores": per})
        rows.append({"prompt": f"p{p}", "seeds": seeds})
    return rows


def test_validation_report_has_the_arms_means():
    means = video_means(_rows({"null": [[0.1, 0.3], [0.2, 0.2]], "reneg": [[0.0, 0.0], [0.1, 0.1]]}))
    assert set(means["arms"]) == {"null", "reneg"} and means["consistency_skipped"] == "why"
    assert means["arms"]["null"]["flicker"]["mean"] == pytest.approx(0.2)
    assert means["arms"]["reneg"]["flicker"]["mean"] == pytest.approx(0.05)
    assert set(means["arms"]["null"]) == {"flicker", "frozen_share", "motion"}  # no consistency anywhere
    old = _rows({"null": [[0.1]], "reneg": [[0.1]]})
    old[0]["seeds"][0]["video_scores"]["null"] = None  # an item of a run before video-level scores
    assert video_means(old)["arms"]["null"] == {}


def test_validation_report_carries_temporal_hf_where_every_video_has_it():
    rows = _rows({"null": [[0.1, 0.3]], "reneg": [[0.0, 0.0]]})
    for entry in rows[0]["seeds"]:
        entry["video_scores"]["null"]["temporal_hf"] = 1.0 + entry["seed"]
        entry["video_scores"]["reneg"]["temporal_hf"] = None  # a two-frame video has none
    means = video_means(rows)
    assert means["arms"]["null"]["temporal_hf"]["mean"] == pytest.approx(1.5)
    assert "temporal_hf" not in means["arms"]["reneg"]
    means["arms"]["reneg"]["temporal_hf"] = means["arms"]["null"]["temporal_hf"]
    assert "<th>temporal hf</th>" in "".join(_video_table(means))
