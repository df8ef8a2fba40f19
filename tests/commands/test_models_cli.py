"""`reneg-video` on every new stand-in with its matching released file (exit 0, a validated MP4), files
of another space refused naming both spaces (exit 2, nothing written), --image and --motion-adapter,
distilled models without a negative branch, and --list-models saying which file fits each model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reneg_video import list_models, load_spec
from reneg_video.core.export import validate_mp4

from ..conftest import run_cli, shared_file

# stand-in -> its matching released file
STANDINS = {
    "tiny-modelscope": "sd2.1_reneg_emb.bin",
    "tiny-i2vgen-xl": "sd2.1_reneg_emb.bin",
    "tiny-animatediff": "sd1.5_reneg_emb.bin",
    "tiny-ltx-video-0.9.1": "pixart-alpha_reneg_emb.bin",
    "tiny-ltx-video-0.9.5": "pixart-alpha_reneg_emb.bin",
    "tiny-ltx-video-0.9.7": "pixart-alpha_reneg_emb.bin",
    "tiny-cogvideox-2b": "pixart-alpha_reneg_emb.bin",
    "tiny-cogvideox-5b": "pixart-alpha_reneg_emb.bin",
    "tiny-mochi": "pixart-alpha_reneg_emb.bin",
    "tiny-latte": "pixart-alpha_reneg_emb.bin",
    "tiny-allegro": "pixart-alpha_reneg_emb.bin",
}
FOREIGN = {
    "wan-2.1": "umt5-xxl",
    "hunyuanvideo": "llava-llama-3-8b",
    "ltx-2": "gemma-3-12b",
    "animatediff-sdxl": "clip-vit-l-14+openclip-vit-bigg-14",
}
RELEASED = ("sd1.4_reneg_emb.bin", "sd1.5_reneg_emb.bin", "sd2.1_reneg_emb.bin", "pixart-alpha_reneg_emb.bin")


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "first.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_every_new_standin_renders_with_its_released_file(tmp_path, capsys, image_file, name):
    extra = ["--image", image_file] if load_spec(name).image else []
    out = tmp_path / "x.mp4"
    code, _, err = run_cli(
        capsys, "--model", name, "--neg", shared_file(STANDINS[name]), "--prompt", "a cat",
        "--steps", 1, "--out", out, "--quiet", "--upscale", "off", *extra,
    )  # fmt: skip
    assert code == 0, err
    spec = load_spec(name)
    assert validate_mp4(out, spec.defaults.frames)["size"] == (spec.defaults.width, spec.defaults.height)


def test_mochi_runs_one_step_from_pure_noise_without_touching_diffusers_for_more(pipelines):
    """diffusers 0.42.1's MochiPipeline divides by zero building its sigma schedule at one step; the call
    runs with sigma 1 -> 0 (the schedule's first sigma), and diffusers' function is back after the call."""
    from diffusers.pipelines.mochi import pipeline_mochi

    from reneg_video.models.generate import generate, settings_for

    original = pipeline_mochi.linear_quadratic_schedule
    with pytest.raises(ZeroDivisionError):
        original(1, 0.025)  # if a later diffusers copes, the replacement is skipped (and this test says so)
    pipe = pipelines("tiny-mochi")
    frames = generate(pipe, pipe.reneg_spec, "a cat", settings_for(pipe.reneg_spec, steps=1))
    assert np.isfinite(frames).all() and frames.shape[0] == pipe.reneg_spec.defaults.frames
    assert pipe.scheduler.sigmas.tolist() == [1.0, 0.0]
    assert pipeline_mochi.linear_quadratic_schedule is original
    generate(pipe, pipe.reneg_spec, "a cat", settings_for(pipe.reneg_spec, steps=2))
    assert pipe.scheduler.sigmas.tolist() == pytest.approx([*original(2, 0.025), 0.0])


@pytest.mark.parametrize(
    "name", ["tiny-cogvideox-2b", "tiny-latte", "tiny-animatediff", "tiny-ltx-video-0.9.5"]
)
def test_a_file_of_another_space_exits_2_naming_both(tmp_path, capsys, name):
    spec = load_spec(name)
    wrong = "sd2.1_reneg_emb.bin" if spec.encoder != "openclip-vit-h-14" else "pixart-alpha_reneg_emb.bin"
    code, _, err = run_cli(
        capsys, "--model", name, "--neg", shared_file(wrong), "--prompt", "a cat", "--steps", 1,
        "--out", tmp_path / "x.mp4",
    )  # fmt: skip
    assert code == 2 and spec.encoder in err and list(tmp_path.iterdir()) == []
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_foreign_spaces_refuse_every_released_file_naming_both_spaces(tmp_path, capsys, name):
    assert load_spec(name).encoder == FOREIGN[name]
    for file in RELEASED:
        code, _, err = run_cli(
            capsys,
            "--model",
            name,
            "--neg",
            shared_file(file),
            "--prompt",
            "a cat",
            "--out",
            tmp_path / "x.mp4",
        )
        source_space = {
            "sd2.1_reneg_emb.bin": "openclip-vit-h-14",
            "pixart-alpha_reneg_emb.bin": "t5-v1_1-xxl",
        }
        assert code == 2 and FOREIGN[name] in err and source_space.get(file, "clip-vit-l-14") in err, err
        assert "no ReNeg embedding exists" in err
    assert list(tmp_path.iterdir()) == []


def test_distilled_ltx_refuses_neg_in_one_line(tmp_path, capsys, pixart_file):
    code, _, err = run_cli(
        capsys, "--model", "ltx-video-0.9.7-distilled", "--neg", pixart_file, "--prompt", "a cat",
        "--out", tmp_path / "x.mp4",
    )  # fmt: skip
    assert code == 2 and "no negative branch" in err and len(err.strip().splitlines()) == 1


def test_image_is_required_by_i2vgen_and_refused_elsewhere(tmp_path, capsys, sd21_file, image_file):
    base = ["--neg", sd21_file, "--prompt", "a cat", "--steps", 1, "--out", tmp_path / "x.mp4"]
    code, _, err = run_cli(capsys, "--model", "tiny-i2vgen-xl", *base)
    assert code == 2 and "--image PATH" in err
    code, _, err = run_cli(capsys, "--model", "tiny-modelscope", "--image", image_file, *base)
    assert code == 2 and "takes no conditioning image" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    code, _, err = run_cli(capsys, "--model", "tiny-i2vgen-xl", "--image", bad, *base)
    assert code == 2 and "not a readable image" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "first.png"]


def test_i2vgen_unet_gets_the_file_and_the_image(pipelines, sd21_file):
    from reneg_video import attach, detach, load_embedding

    from ..conftest import capture

    pipe = pipelines("tiny-i2vgen-xl")
    neg = load_embedding(sd21_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.unet)
    image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
    try:
        pipe(
            prompt="a cat",
            image=image,
            num_frames=2,
            height=64,
            width=64,
            num_inference_steps=1,
            output_type="np",
        )
    finally:
        handle.remove()
        detach(pipe)
    context = seen[0]["encoder_hidden_states"]
    assert context.shape == (2, 77, 1024)  # [negative, prompt]; the image reaches the UNet apart
    assert torch.equal(context[0], neg.tensor[0]) and not torch.equal(context[1], neg.tensor[0])
    assert seen[0]["image_embeddings"].shape[0] == 2


def test_animatediff_unet_gets_the_sd15_file_and_the_adapter_comes_from_either_source(
    tmp_path, capsys, pipelines, sd15_file
):
    from reneg_video import attach, detach, load_embedding, load_pipeline
    from reneg_video.models.standins import tiny_motion_adapter

    from ..conftest import capture

    pipe = pipelines("tiny-animatediff")
    neg = load_embedding(sd15_file)
    attach(pipe, neg)
    seen, handle = capture(pipe.unet)
    try:
        pipe(
            prompt=["a cat", "a dog"],
            num_frames=2,
            height=32,
            width=32,
            num_inference_steps=1,
            output_type="np",
        )
    finally:
        handle.remove()
        detach(pipe)
    context = seen[0]["encoder_hidden_states"]
    # AnimateDiff repeats the text per frame: [negative x 2 prompts x 2 frames, prompt x 2 x 2].
    assert context.shape == (8, 77, 768)
    assert all(torch.equal(context[row], neg.tensor[0]) for row in range(4))
    assert not torch.equal(context[4], neg.tensor[0])
    # --motion-adapter PATH replaces the stand-in's own adapter.
    other = tiny_motion_adapter("another adapter")
    other.save_pretrained(tmp_path / "adapter")
    swapped = load_pipeline("tiny-animatediff", device="cpu", motion_adapter=tmp_path / "adapter")
    key = next(k for k in other.state_dict() if k.startswith("down_blocks.0.motion_modules") and "to_q" in k)
    assert torch.equal(swapped.unet.state_dict()[key], other.state_dict()[key])
    assert not torch.equal(pipe.unet.state_dict()[key], other.state_dict()[key])
    assert load_spec("animatediff").motion_adapter == "guoyww/animatediff-motion-adapter-v1-5-2"
    code, _, err = run_cli(
        capsys, "--model", "tiny-animatediff", "--motion-adapter", tmp_path / "nothing", "--prompt", "a cat",
        "--out", tmp_path / "x.mp4",
    )  # fmt: skip
    assert code == 2 and "motion adapter" in err
    code, _, err = run_cli(
        capsys, "--model", "tiny-zeroscope", "--motion-adapter", tmp_path / "adapter", "--prompt", "a cat",
        "--out", tmp_path / "x.mp4",
    )  # fmt: skip
    assert code == 2 and "takes no motion adapter" in err


def test_list_models_says_which_file_fits_and_why(capsys):
    code, out, _ = run_cli(capsys, "--list-models")
    assert code == 0
    lines = out.splitlines()
    for name in list_models():
        fit = lines[next(i for i, line in enumerate(lines) if line.split()[0] == name) + 1]
        if name in FOREIGN:
            assert "fits no released file" in fit and load_spec(name).family.description in fit
        elif not load_spec(name).negative_branch:
            assert "no negative branch" in fit
        else:
            assert "--neg " in fit and load_spec(name).encoder in fit
    assert (
        "pixart-alpha_reneg_emb.bin"
        in lines[lines.index(next(x for x in lines if x.startswith("cogvideox-2b"))) + 1]
    )
