"""VideoCrafter2Pipeline on tiny offline components (CPU): encode_prompt, CFG wiring, lvdm sampling."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from reneg_video.core.errors import EncoderMismatchError, UsageError
from reneg_video.models.videocrafter2 import VideoCrafter2UNet, unet_from_original, unet_to_original
from reneg_video.models.videocrafter2.pipeline import VideoCrafter2Pipeline, videocrafter2_scheduler

from .vc2_parts import tiny_text_encoder, tiny_tokenizer

TINY_UNET = {
    "model_channels": 32,
    "channel_mult": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (1, 2),
    "num_head_channels": 16,
}
ORIG_SRC = os.environ.get("RENEG_VC2_ORIG_SRC")


pytestmark = pytest.mark.usefixtures("one_thread_module")


def _perturb(module: torch.nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.02)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> VideoCrafter2Pipeline:
    tokenizer = tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    text_encoder = tiny_text_encoder(tokenizer)
    unet = VideoCrafter2UNet(**TINY_UNET).eval()
    _perturb(unet, 1)
    vae = AutoencoderKL(
        block_out_channels=[32, 32],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        layers_per_block=1,
        scaling_factor=0.18215,
    ).eval()
    pipe = VideoCrafter2Pipeline(vae, text_encoder, tokenizer, unet, videocrafter2_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_generates_frames_with_lvdm_defaults(pipe):
    out = pipe(
        "a red fox",
        height=16,
        width=16,
        num_frames=3,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    frames = out.frames
    assert isinstance(frames, np.ndarray) and frames.shape == (1, 3, 16, 16, 3)
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    again = pipe(
        "a red fox",
        height=16,
        width=16,
        num_frames=3,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert np.array_equal(frames, again.frames)
    # lvdm's script defaults
    import inspect

    defaults = {k: v.default for k, v in inspect.signature(pipe.__call__).parameters.items()}
    assert (defaults["height"], defaults["width"], defaults["num_frames"]) == (320, 512, 16)
    assert (
        defaults["num_inference_steps"],
        defaults["guidance_scale"],
        defaults["eta"],
        defaults["fps"],
    ) == (50, 12.0, 1.0, 28)


def test_encode_prompt_repeats_given_negative_embeds_per_video(pipe):
    neg = torch.randn(1, 77, 1024)
    pos, got = pipe.encode_prompt("a cat", torch.device("cpu"), 2, True, negative_prompt_embeds=neg)
    assert pos.shape == got.shape == (2, 77, 1024)
    assert torch.equal(got[0], neg[0]) and torch.equal(got[1], neg[0])
    assert torch.equal(pos[0], pos[1])
    # Without a negative the unconditional branch is encode(""), lvdm's uncond_type empty_seq.
    _, empty = pipe.encode_prompt("a cat", torch.device("cpu"), 1, True)
    assert torch.equal(empty, pipe._encode_text([""], torch.device("cpu")))
    assert not torch.equal(empty, pipe._encode_text(["a cat"], torch.device("cpu")))
    assert pipe.encode_prompt("a cat", torch.device("cpu"), 1, False)[1] is None


def test_negative_embedding_reaches_the_unet(pipe):
    neg = torch.randn(1, 77, 1024)
    seen = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
    try:
        pipe(
            "a cat",
            height=16,
            width=16,
            num_frames=2,
            num_inference_steps=2,
            negative_prompt_embeds=neg,
            output_type="latent",
        )
    finally:
        handle.remove()
    assert len(seen) == 2  # one batched CFG call per step
    for context in seen:
        assert context.shape == (2, 77, 1024)
        assert torch.equal(context[0], neg[0])  # negative first, as lvdm's uncond + g * (cond - uncond)
    # The negative embedding changes the result.
    a = pipe(
        "a cat",
        height=16,
        width=16,
        num_frames=2,
        num_inference_steps=2,
        negative_prompt_embeds=neg,
        output_type="latent",
        generator=torch.Generator().manual_seed(3),
    ).frames
    b = pipe(
        "a cat",
        height=16,
        width=16,
        num_frames=2,
        num_inference_steps=2,
        output_type="latent",
        generator=torch.Generator().manual_seed(3),
    ).frames
    assert not torch.allclose(a, b)


def test_refuses_bad_arguments(pipe):
    with pytest.raises(EncoderMismatchError, match="768"):
        pipe("a cat", height=16, width=16, negative_prompt_embeds=torch.zeros(1, 77, 768))
    with pytest.raises(UsageError, match="batch 1 for 2 prompts"):
        pipe(["a", "b"], height=16, width=16, negative_prompt_embeds=torch.zeros(1, 77, 1024))
    with pytest.raises(UsageError, match="multiples of 4"):
        pipe("a cat", height=18, width=16)


def _import_parity():
    path = Path(__file__).resolve().parents[2] / "scripts" / "parity_videocrafter2.py"
    spec = importlib.util.spec_from_file_location("parity_videocrafter2", path)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    return parity


@pytest.mark.skipif(
    not ORIG_SRC, reason="RENEG_VC2_ORIG_SRC (a checkout of AILab-CVC/VideoCrafter) is not set"
)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 warnings from lvdm's own code
def test_sampling_matches_lvdm_ddim_sampler(pipe, eta):
    """The pipeline's denoising loop against lvdm's DDIMSampler (use_scale on), same UNet weights and noise."""
    parity = _import_parity()
    UNetModel = parity.import_original(Path(ORIG_SRC))
    from lvdm.models.samplers.ddim import DDIMSampler
    from lvdm.models.utils_diffusion import make_beta_schedule

    params = parity.original_unet_params(Path(ORIG_SRC), tiny=True)
    original = UNetModel(**params).eval()
    original.load_state_dict(unet_to_original(pipe.unet))
    assert isinstance(unet_from_original(original.state_dict(), TINY_UNET), VideoCrafter2UNet)

    class LatentDiffusionStandIn:
        """The attributes DDIMSampler reads from lvdm's LatentDiffusion (ddpm3d.py, yaml values)."""

        num_timesteps = 1000
        betas = torch.tensor(make_beta_schedule("linear", 1000, linear_start=0.00085, linear_end=0.012))
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        use_scale = True
        scale_arr = torch.tensor(
            np.concatenate([np.linspace(1.0, 0.7, 400), np.full(1000, 0.7)]), dtype=torch.float32
        )
        device = torch.device("cpu")

        def apply_model(self, x, t, c, **kwargs):
            return original(x, t, context=c, fps=torch.full((x.shape[0],), 28))

    sampler = DDIMSampler(LatentDiffusionStandIn())
    sampler.register_buffer = lambda name, attr: setattr(sampler, name, attr)  # lvdm moves buffers to cuda
    cond = pipe._encode_text(["a cat"], torch.device("cpu"))
    uncond = pipe._encode_text([""], torch.device("cpu"))
    x_T = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(7)
    with torch.no_grad():
        expected, _ = sampler.sample(
            S=4,
            batch_size=1,
            shape=(4, 2, 8, 8),
            conditioning=cond,
            eta=eta,
            x_T=x_T.clone(),
            verbose=False,
            unconditional_guidance_scale=12.0,
            unconditional_conditioning=uncond,
        )
    got = pipe(
        "a cat",
        height=16,
        width=16,
        num_frames=2,
        num_inference_steps=4,
        eta=eta,
        latents=x_T.clone(),
        output_type="latent",
        generator=torch.Generator().manual_seed(7),
    ).frames
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
