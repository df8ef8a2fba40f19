"""Per-sample refinement: best iterates, patience, and what the pipeline then renders."""

from __future__ import annotations

import pytest
import torch

from reneg_video import UsageError, load_embedding
from reneg_video.models.generate import settings_for
from reneg_video.training.refine import NEG_PATIENCE, optimize_negative, optimize_noise


class Brightness:
    """A differentiable toy reward (mean brightness): refinement must raise it."""

    name = "brightness"

    def score_frames(self, frames, prompt, batch_size=None):
        return frames.mean(dim=(1, 2, 3)) * 4 - 2


def test_optimize_negative_keeps_the_best_iterate(pipelines, sd21_file):
    pipe = pipelines("tiny-sd21")
    spec = pipe.reneg_spec
    settings = settings_for(spec, seed=1, height=32, width=32, steps=4)
    neg = load_embedding(sd21_file)
    out = optimize_negative(pipe, spec, neg, "a cat", settings, Brightness(), steps=6)
    assert out.best.shape == neg.tensor.shape
    assert out.best_reward == max(out.history)
    assert 2 <= len(out.history) <= 7
    if out.best_reward > out.history[0]:
        assert not torch.equal(out.best, neg.tensor)
    else:
        assert torch.equal(out.best, neg.tensor)
    # Stopped by patience only after NEG_PATIENCE iterates without a new best.
    if len(out.history) < 7:
        best_at = out.history.index(out.best_reward)
        assert len(out.history) - 1 - best_at == NEG_PATIENCE


def test_optimize_noise_raises_the_reward(pipelines):
    pipe = pipelines("tiny-sd15")
    spec = pipe.reneg_spec
    settings = settings_for(spec, seed=2, height=32, width=32, steps=2)
    out = optimize_noise(pipe, spec, None, "a cat", settings, Brightness(), steps=4)
    assert len(out.history) == 5
    assert out.best_reward == max(out.history) and out.best_reward > out.history[0]
    assert out.best.shape == (1, 4, 4, 4)


def test_refinement_refuses_unsupported_models_and_step_counts(pipelines, pixart_file, sd21_file):
    ltx = pipelines("tiny-ltx-video")
    with pytest.raises(UsageError, match="not supported"):
        optimize_negative(
            ltx, ltx.reneg_spec, load_embedding(pixart_file), "x", settings_for(ltx.reneg_spec), Brightness()
        )
    sd = pipelines("tiny-sd21")
    with pytest.raises(UsageError, match="1..10"):
        optimize_negative(
            sd,
            sd.reneg_spec,
            load_embedding(sd21_file),
            "x",
            settings_for(sd.reneg_spec),
            Brightness(),
            steps=11,
        )
