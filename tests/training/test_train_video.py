"""reneg-train on every trainable stand-in (image models, and video models with their own samplers and
latent layouts: AnimateDiff: DDIM, epsilon, context per frame; LTX-Video: flow matching, LTXPipeline's and
LTXConditionPipeline's; CogVideoX: CogVideoX-DDIM, v-prediction; VideoCrafter2: lvdm's DDIM with its latent
rescaling), the video backbones' chains against their pipelines' own sampling, and a probe reward that
learning must move both ways."""

from __future__ import annotations

import json

import pytest
import torch

from reneg_video import load_embedding
from reneg_video.commands.train import build_parser, main
from reneg_video.core.specs import load_spec, registry
from reneg_video.training.config import TrainConfig
from reneg_video.training.denoise import TRAINABLE_PIPELINES, make_backbone
from reneg_video.training.trainer import Trainer

from ..conftest import IMAGEREWARD_PROMPTS as PROMPTS

# stand-in -> frames (None: an image model; 8k+1 for LTX and CogVideoX) and size, the smallest each allows,
# for a quick CPU run. Every trainable stand-in is here (test_every_trainable_standin_is_trained_two_steps).
TRAINABLE = {
    "tiny-sd15": (None, "32"),
    "tiny-sd21": (None, "32"),
    "tiny-pixart-alpha": (None, "32"),
    "tiny-zeroscope": ("2", "32"),
    "tiny-modelscope": ("2", "32"),
    "tiny-animatediff": ("4", "32"),
    "tiny-ltx-video": ("9", "32"),
    "tiny-ltx-video-0.9.1": ("9", "32"),
    "tiny-ltx-video-0.9.5": ("9", "32"),
    "tiny-ltx-video-0.9.7": ("9", "32"),
    "tiny-cogvideox-2b": ("9", "32"),
    "tiny-cogvideox-5b": ("9", "32"),
    "tiny-videocrafter2": ("2", "64"),  # 64: the spec's size multiple
}


def _args(name: str, out, *extra: str) -> list[str]:
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    frames, size = TRAINABLE[name]
    video = [] if frames is None else ["--frames", frames, "--frame-select", "first,middle,last"]
    return ["--model", name, "--reward", "tiny-imagereward", "--prompts-file", str(PROMPTS), "--cpu",
            "--seed", "0", "--out", str(out), "--height", size, "--width", size, *video,
            "--sampling-steps", "4", "--grad-step-max", "2", "--val-prompts", "1", "--batch-size", "1",
            *extra]  # fmt: skip


def test_every_trainable_standin_is_trained_two_steps():
    standins = {
        s.name
        for s in registry().values()
        if s.standin and s.pipeline in TRAINABLE_PIPELINES and s.negative_branch
    }
    assert standins == set(TRAINABLE), "add the new trainable stand-in to TRAINABLE (or drop the gone one)"
    assert len(standins) == 13


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_reneg_train_runs_two_steps_on_the_standin(tmp_path, capsys, one_thread, name):
    out = tmp_path / "run"
    assert main(_args(name, out, "--steps", "2", "--val-prompts", "0")) == 0, capsys.readouterr().err
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(torch.isfinite(torch.tensor([m["loss"], m["reward"]])).all() for m in metrics)
    learned = load_embedding(out / "negative_embedding.safetensors")
    spec = load_spec(name)
    assert learned.family.name == spec.family.name
    assert learned.tensor.shape[1] == spec.tokens and torch.isfinite(learned.tensor).all()


def test_untrainable_model_is_refused_naming_the_trainable_ones(tmp_path, capsys):
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    code = main(["--model", "tiny-mochi", "--reward", "tiny-imagereward", "--prompts-file", str(PROMPTS),
                 "--out", str(tmp_path / "run"), "--cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "MochiPipeline is not supported" in err
    for name in ("videocrafter2", "ltx-video-0.9.5", "ltx-video-0.9.7", "cogvideox-5b", "sd21"):
        assert name in err.split("trainable are")[1]
    assert "transfer" not in err


def test_gradient_checkpointing_is_refused_on_videocrafter2_before_loading(tmp_path, capsys):
    if not PROMPTS.exists():
        pytest.skip(f"{PROMPTS} not found")
    code = main(_args("tiny-videocrafter2", tmp_path / "run", "--gradient-checkpointing"))
    assert code == 2 and "--gradient-checkpointing" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- the trainer's chain is the pipeline's own sampling ---------------------------------------------------


def _backbone(name: str, steps: int, **kw):
    from reneg_video.models.pipeline import load_pipeline

    pipe = load_pipeline(name, device="cpu", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    config = TrainConfig(
        model=name, prompts_file="p.txt", out="o", sampling_steps=steps, grad_step_max=0, **kw
    )
    return make_backbone(pipe, load_spec(name), config, torch.device("cpu"))


def _chain(bb, latents, neg, neg_mask, pos, pos_mask):
    with torch.no_grad():
        for t in bb.scheduler.timesteps:
            latents = bb.step(bb.guided(latents, t, neg, neg_mask, pos, pos_mask), t, latents).prev_sample
    return latents


@pytest.mark.parametrize("name", ["tiny-ltx-video-0.9.5", "tiny-ltx-video-0.9.7"])
def test_ltx_condition_chain_matches_ltx_condition_pipeline(name):
    """Same noise and embeddings: the backbone's chain ends where LTXConditionPipeline's own loop does (its
    linear-quadratic schedule, per-token step, video coordinates and [B, 1] timestep)."""
    bb = _backbone(name, 4, frames=17, height=64, width=32)
    pos, pos_mask = bb.encode(["a red panda"])
    neg, neg_mask = bb.encode(["blurry"])
    noise = bb.seed_noise(3)
    ours = _chain(bb, noise, neg, neg_mask, pos, pos_mask)
    theirs = bb.pipe(
        prompt_embeds=pos, prompt_attention_mask=pos_mask, negative_prompt_embeds=neg,
        negative_prompt_attention_mask=neg_mask, height=64, width=32, num_frames=17,
        frame_rate=bb.spec.defaults.fps, num_inference_steps=4, guidance_scale=bb.guidance,
        generator=torch.Generator().manual_seed(3), output_type="latent",
    ).frames  # fmt: skip
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours, noise, atol=1e-2)  # the chain did move


def test_videocrafter2_chain_matches_its_pipeline_at_eta_0(one_thread):
    """lvdm's DDIM with its use_scale rescaling, fps conditioning and CFG, as VideoCrafter2Pipeline samples."""
    bb = _backbone("tiny-videocrafter2", 3, frames=2, height=64, width=64)
    pos, _ = bb.encode(["a red panda"])
    neg, _ = bb.encode(["blurry"])
    noise = bb.seed_noise(5)
    ours = _chain(bb, noise, neg, None, pos, None)
    theirs = bb.pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, height=64, width=64, num_frames=2,
        num_inference_steps=3, guidance_scale=bb.guidance, eta=0.0, fps=bb.spec.defaults.fps,
        generator=torch.Generator().manual_seed(5), output_type="latent",
    ).frames  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # The one-step x0 is lvdm's, in the data scale: divided by scale(t) (use_scale), which DDIM alone lacks.
    t = bb.scheduler.timesteps[0]
    eps = bb.guided(noise, t, neg, None, pos, None)
    x0 = bb.step(eps, t, noise).pred_original_sample
    a = float(bb.pipe.scheduler.alphas_cumprod[int(t)])
    plain = (noise - (1 - a) ** 0.5 * eps) / a**0.5
    torch.testing.assert_close(x0, plain / bb.pipe._scale(int(t)))
    assert bb.pipe._scale(int(t)) < 1


def test_timestep_conditioned_ltx_vae_decodes_as_the_pipeline_is_called():
    """0.9.1+ VAEs: decode at call_settings' decode_timestep with decode_noise_scale of noise drawn per sample
    index (so a resumed or scaled-out run draws the same); an unconditioned VAE gets neither."""
    from diffusers import AutoencoderKLLTXVideo

    from reneg_video.models.pipeline import LTX_DECODE_NOISE_SCALE, LTX_DECODE_TIMESTEP

    bb = _backbone("tiny-ltx-video-0.9.5", 2, frames=9, height=32, width=32)
    assert bb.decode_call == {} and bb.decode_noise([0], 0) is None
    config = {**bb.pipe.vae.config, "timestep_conditioning": True}
    torch.manual_seed(0)
    bb.pipe.vae = AutoencoderKLLTXVideo.from_config(config).eval()
    bb = make_backbone(bb.pipe, bb.spec, TrainConfig(model=bb.spec.name, prompts_file="p", out="o",
                       sampling_steps=2, grad_step_max=0, frames=9, height=32, width=32), torch.device("cpu"))  # fmt: skip
    assert bb.decode_call == {
        "decode_timestep": LTX_DECODE_TIMESTEP,
        "decode_noise_scale": LTX_DECODE_NOISE_SCALE,
    }
    seen = []
    decode = bb.pipe.vae.decode

    def spy(z, temb=None, **kwargs):
        seen.append((z.clone(), temb))
        return decode(z, temb, **kwargs)

    bb.pipe.vae.decode = spy
    latents = bb.noise([0, 1], seed=0)
    noise = bb.decode_noise([0, 1], seed=0)
    assert torch.equal(noise[1], bb.decode_noise([1], seed=0)[0])  # per sample index, not per batch
    assert not torch.equal(noise, latents)
    frames = bb.decode(latents, [[0], [0, 8]], noise)
    assert [f.shape[0] for f in frames] == [1, 2]
    z, temb = seen[-1]
    vae = bb.pipe.vae
    clean = bb.pipe._denormalize_latents(
        latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor
    )
    s = LTX_DECODE_NOISE_SCALE
    torch.testing.assert_close(z, (1 - s) * clean + s * noise)
    assert temb.tolist() == pytest.approx([LTX_DECODE_TIMESTEP] * 2)


class ProbeReward:
    """A fixed random linear probe of the decoded frames (differentiable): sign +1 or -1."""

    name = "probe"

    def __init__(self, sign: float) -> None:
        self.weight = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(11)) * sign

    def score_frames(self, frames, prompt, *, batch_size=None):
        frames = torch.as_tensor(frames)
        return (frames.float() * self.weight).mean(dim=(1, 2, 3)) * 100


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_probe_reward_moves_the_held_out_reward_its_way_on_ltx_video(tmp_path, sign):
    args = _args("tiny-ltx-video", tmp_path / f"run{sign}", "--steps", "8", "--lr", "0.5", "--loss", "neg")
    config = TrainConfig(**vars(build_parser().parse_args(args)))
    summary = Trainer(config, reward=ProbeReward(sign)).train()
    gain = summary["val_reward_after"] - summary["val_reward_before"]
    assert gain > 0, summary


def test_a_model_without_a_negative_branch_is_not_trainable():
    from reneg_video.core.errors import UsageError
    from reneg_video.core.specs import load_spec
    from reneg_video.training.denoise import check_trainable, trainable_models

    for name in ("tiny-ltx-video-0.9.7-distilled", "ltx-video-0.9.7-distilled"):
        with pytest.raises(UsageError, match="has no negative branch"):
            check_trainable(load_spec(name))
    assert "ltx-video-0.9.7-distilled" not in trainable_models() and "ltx-video-0.9.7" in trainable_models()
