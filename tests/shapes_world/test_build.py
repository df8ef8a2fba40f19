"""The shapes build (shapes_world.build, `reneg-build-shapes`): its CLIP data, its refusals and a reduced
build that learns and reproduces itself.

Thresholds on trained models are set from measurement with margin; each comment gives the value seen.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from shapes_world import data, judge
from shapes_world import world as W

# Minutes of work each (quick builds, real processes killed and resumed): `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

HELD_OUT = data.split_prompts()[1]


# Reduced build (BuildConfig.quick): mean loss of the last fifth over the first fifth; measured clip 0.84,
# vae 0.70, t2i 0.58 (v3 settings; v1: 0.78, 0.92, 0.54).
QUICK_LOSS_RATIO = {"clip": 0.9, "vae": 0.97, "t2i": 0.75}


def test_trail_image_shows_which_way_a_clip_moved():
    from shapes_world.build.clip import trail_image

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
    from shapes_world.build.clip import clip_pairs

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


def test_build_refuses_bad_arguments(tmp_path, capsys):
    from shapes_world.commands.build import main

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
    shipped_vae = str(W.shipped_vae())
    assert main(["--out", str(tmp_path / "e"), "--quick", "--stages", "vae", "--vae-from", shipped_vae]) == 0
    assert main(["--out", str(tmp_path / "e"), "--quick", "--stages", "vae,t2i", "--resume"]) == 2
    assert "['vae_from'" in capsys.readouterr().err  # a build does not change VAE halfway


def test_build_shapes_help_names_its_stages_and_options():
    from shapes_world.build import STAGES
    from shapes_world.commands.build import build_parser

    text = " ".join(build_parser().format_help().split())
    for needle in (", ".join(STAGES), "--resume", "--quick", "--install", "--vae-from DIR",
                   "the decoder stage is skipped", "OUT/export/{t2i,t2v,reward}"):  # fmt: skip
        assert needle in text, needle


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory):
    from shapes_world.build import BuildConfig, build

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("shapes") / "build"
    build(out, BuildConfig.quick(), stages=("clip", "vae"))
    return out


@pytest.fixture(scope="module")
def quick_t2i(tmp_path_factory):
    """The reduced build's text-to-image stage on the shipped VAE (`--vae-from`). On the reduced build's
    own 60-step VAE no generator can pass the judge: that VAE's reconstructions of clean frames score
    judge accuracy 0.14 (docs/shapes.md, "A reduced build")."""
    from shapes_world.build import BuildConfig, build

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("shapes") / "build"
    cfg = BuildConfig.quick()
    cfg.vae_from = str(W.shipped_vae())
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

    from shapes_world.build import BuildConfig, build

    build(tmp_path / "again", BuildConfig.quick(), stages=("clip", "vae"))
    for file in ("clip/clip/model.safetensors", "vae/vae/diffusion_pytorch_model.safetensors"):
        first, second = load_file(quick_build / file), load_file(tmp_path / "again" / file)
        assert first.keys() == second.keys() and first
        assert all(torch.equal(first[k], second[k]) for k in first), file


def test_quick_build_beats_an_untrained_unet_by_the_judge(quick_t2i):
    from diffusers import UNet2DConditionModel

    from shapes_world.build.common import sample
    from shapes_world.build.t2i import image_pipeline

    assert not (quick_t2i / "decoder").exists()  # the adopted VAE is final: no decoder stage ran
    assert json.loads((quick_t2i / "vae" / "stage.json").read_text())["from"].endswith("common/vae")
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


def test_contrastive_term_swaps_the_shape_word_and_adds_the_hinge():
    """World v2's t2i term: another shape word must cost `margin` more loss; when it costs nothing more
    (the same context) the hinge adds exactly margin x the kept-caption share, and a dropped caption none."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from shapes_world.build.common import diffusion_loss
    from shapes_world.build.t2i import wrong_shape

    assert wrong_shape("a red square moving up on a blue background") == (
        "a red triangle moving up on a blue background"
    )
    assert wrong_shape("a circle on a white background") == "a square on a white background"
    assert wrong_shape("") == ""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**dict(W.UNET2D, block_out_channels=(32, 32), norm_num_groups=8))
    scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction")
    latents, context = torch.randn(2, W.LATENT_CHANNELS, 8, 8), torch.randn(2, W.TEXT_TOKENS, W.TEXT_WIDTH)

    def loss(contrast=None) -> float:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            return float(diffusion_loss(unet, scheduler, latents, context, gen, contrast=contrast))

    plain = loss()
    assert loss((context, torch.tensor([1.0, 0.0]), 0.1)) == pytest.approx(plain + 0.1 * 0.5, rel=1e-5)
    assert loss((context, torch.tensor([0.0, 0.0]), 0.1)) == pytest.approx(plain, rel=1e-5)
    other = context + 50.0  # another caption: its loss differs, so the hinge depends on the margin
    assert loss((other, torch.tensor([1.0, 1.0]), -100.0)) == pytest.approx(plain, rel=1e-5)  # gap above it
    assert loss((other, torch.tensor([1.0, 1.0]), 0.1)) > plain


def test_export_judge_figures_add_each_shape_and_each_check_failure_rate():
    from shapes_world import data
    from shapes_world.build.export import judge_figures

    rng = np.random.default_rng(5)
    clean = [data.make_sample(rng, video=True, degrade_prob=0.0, artefact_prob=0.0) for _ in range(24)]
    frames, prompts = [s.frames for s in clean], [s.caption for s in clean]
    figures = judge_figures(frames, prompts)
    assert figures["accuracy"] == judge.judge_many(frames, prompts)["accuracy"]
    asked = {s.attributes.shape for s in clean}
    assert {f"shape_{s}" for s in asked} <= set(figures)
    assert all(figures[f"shape_{s}"] >= 0.9 for s in asked)
    wrong = [data.render(s.attributes, rng, degradations=("wrong_shape",)) for s in clean]
    wrong_figures = judge_figures(wrong, prompts)
    assert all(wrong_figures[f"shape_{s}"] <= 0.1 for s in asked)
    assert wrong_figures["fail_shape"] >= 0.9 and figures["fail_shape"] <= 0.1
    assert wrong_figures["fail_background"] == 0.0
