"""Per-sample refinement: best iterates, patience, and what the pipeline then renders."""

from __future__ import annotations

import pytest
import torch

from reneg_video import UsageError, load_embedding
from reneg_video.core.embedding import NegativeEmbedding
from reneg_video.models.generate import settings_for
from reneg_video.training.refine import NEG_PATIENCE, optimize_negative, optimize_noise

pytestmark = pytest.mark.usefixtures("one_thread_module")


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
    # The best iterate comes back as an embedding of the start's family, ready to inject.
    assert isinstance(out.embedding, NegativeEmbedding) and out.embedding.tensor is out.best
    assert out.embedding.family == neg.family and out.embedding.source == neg.source + "+refined"
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


def _video_record(tmp_path, name: str, sd21_file, *extra: str) -> dict:
    import json

    from reneg_video.commands.video import main as video_main

    out = tmp_path / name
    code = video_main(["--model", "tiny-sd21", "--neg", str(sd21_file), "--prompt", "a cat", "--height", "32",
                       "--width", "32", "--steps", "4", "--seed", "1", "--reward", "tiny-imagereward", "--quiet",
                       "--out", str(out.with_suffix(".gif")), "--json", str(out.with_suffix(".json")), *extra])  # fmt: skip
    assert code == 0
    return json.loads(out.with_suffix(".json").read_text())["videos"][0]


def test_refinement_selects_on_the_video_it_renders(tmp_path, sd21_file, monkeypatch):
    """The reward refinement reports for its chosen iterate is the reward of the video written (seed 1)."""
    from reneg_video.core import inject

    plain = _video_record(tmp_path, "plain", sd21_file, "--best-of", "1")
    neg = _video_record(tmp_path, "neg", sd21_file, "--optimize-neg", "3")
    history = neg["optimize_neg"]["rewards"]
    # The start of the selection is the unrefined video at this seed, and what renders is the best iterate.
    assert history[0] == pytest.approx(plain["objective"], abs=1e-4)
    assert neg["objective"] == pytest.approx(neg["optimize_neg"]["best"], abs=1e-4)
    assert neg["objective"] >= plain["objective"] - 1e-4
    matched = []  # each time an embedding is matched to the model: to inject it, then per refined seed
    negative_rows = inject.negative_rows
    monkeypatch.setattr(
        inject, "negative_rows", lambda *a, **k: matched.append(a[1].source) or negative_rows(*a, **k)
    )
    both = _video_record(tmp_path, "both", sd21_file, "--optimize-neg", "3", "--optimize-noise", "2")
    assert matched == ["sd2.1_reneg_emb.bin", "sd2.1_reneg_emb.bin+refined"]  # not the global one again
    # The noise is optimised against the refined embedding, the one the video is rendered with.
    assert both["optimize_noise"]["rewards"][0] == pytest.approx(both["optimize_neg"]["best"], abs=1e-4)
    assert both["objective"] == pytest.approx(both["optimize_noise"]["best"], abs=1e-4)


def test_refinement_draws_its_gradient_step(pipelines, sd21_file, monkeypatch):
    """k ~ U[0, 10] steps before the end, drawn from (seed, iteration) as the trainer draws it, not 0, 1, 2."""
    from reneg_video.training.denoise import Backbone

    pipe = pipelines("tiny-sd21")
    spec = pipe.reneg_spec
    guided = Backbone.guided
    seen: list[int] = []

    def spy(self, latents, t, *args):
        if torch.is_grad_enabled():  # the one call per iteration that takes the gradient
            seen.append(len(self.scheduler.timesteps) - 1 - list(self.scheduler.timesteps).index(t))
        return guided(self, latents, t, *args)

    monkeypatch.setattr(Backbone, "guided", spy)

    class Flat(Brightness):  # never improves: patience stops it after NEG_PATIENCE iterations
        def score_frames(self, frames, prompt, batch_size=None):
            return super().score_frames(frames, prompt) * 0

    draws = {}
    for seed in (1, 2):
        seen.clear()
        settings = settings_for(spec, seed=seed, height=32, width=32, steps=12)
        optimize_negative(pipe, spec, load_embedding(sd21_file), "a cat", settings, Flat(), steps=10)
        draws[seed] = list(seen)
    for ks in draws.values():
        assert len(ks) == NEG_PATIENCE and all(0 <= k <= 10 for k in ks)
        assert ks != list(range(NEG_PATIENCE))  # not the last three steps of the chain in order
    assert draws[1] != draws[2]
