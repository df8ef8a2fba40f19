"""Stage 2, `vae`: an AutoencoderKL 32x32x3 -> 16x16x8 (world.VAE; L1 + MSE + an edge loss + a small KL), its scaling
factor set to 1/std of the latents; or, with `--vae-from`, a trained one adopted as the build's VAE.

Shape legend: B frames, H x W pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reneg_video.core.errors import UsageError

from .. import world as W
from .common import BuildConfig, count_params, step_rng, to_tensor, train_loop, training_batch, write_stage

# Weight of the VAE's edge loss (edge_loss) beside L1 + MSE; 1.0 was the one value tried.
VAE_EDGE_WEIGHT = 1.0


def edge_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical pixel differences: weighs edges and corners, which plain L1/MSE
    average away (the judge tells a triangle from a circle by its corners)."""
    return F.l1_loss(recon.diff(dim=-1), x.diff(dim=-1)) + F.l1_loss(recon.diff(dim=-2), x.diff(dim=-2))


def train_vae(out: Path, cfg: BuildConfig) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(cfg.seed + 1)
    vae = AutoencoderKL(**W.VAE)
    s = cfg.vae
    # KL weight: enough to keep latents near N(0, 1)-sized, small enough for sharp reconstructions.
    kl_weight = 1e-6

    def step_fn(step: int) -> torch.Tensor:
        rng = step_rng(cfg.seed, "vae", step)
        frames, _ = training_batch(rng, s.batch, video=False)
        x = to_tensor(frames[:, 0])
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        pixels = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        return pixels + VAE_EDGE_WEIGHT * edge_loss(recon, x) + kl_weight * posterior.kl().mean()

    losses = train_loop("vae", out, cfg, s, {"vae": vae}, list(vae.parameters()), step_fn)
    with torch.no_grad():
        frames, _ = training_batch(np.random.default_rng([cfg.seed, 99]), 256, video=False)
        latents = vae.encode(to_tensor(frames[:, 0])).latent_dist.mean
    # As SD's 0.18215: scale latents to unit variance for the diffusion models.
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    write_stage(
        out,
        "vae",
        lambda tmp: vae.save_pretrained(tmp / "vae"),
        {
            "losses": losses,
            "params": count_params(vae),
            "steps": s.steps,
            "scaling_factor": vae.config.scaling_factor,
        },
    )


def adopt_vae(out: Path, cfg: BuildConfig) -> None:
    """The vae stage when `cfg.vae_from` is set (build() has checked the folder): that autoencoder, saved
    in float32 (the stages train in float32; the shipped one is float16), as this build's VAE."""
    from diffusers import AutoencoderKL

    source = Path(cfg.vae_from)
    vae = AutoencoderKL.from_pretrained(source).to(torch.float32)
    info = {"from": str(source), "params": count_params(vae), "scaling_factor": vae.config.scaling_factor}
    write_stage(out, "vae", lambda tmp: vae.save_pretrained(tmp / "vae"), info)


def check_vae_folder(folder: Path) -> None:
    """Refuse a --vae-from folder that is not a shapes-world AutoencoderKL (one line, says what to pass)."""
    expected = (
        f"expected a diffusers AutoencoderKL folder with {W.LATENT_CHANNELS} latent channels, "
        "e.g. shapes_world/weights/common/vae or OUT/vae/vae of an earlier build"
    )
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"--vae-from {folder}: no readable config.json; {expected}") from None
    shape = (config.get("_class_name"), config.get("latent_channels"), config.get("sample_size"))
    if shape != ("AutoencoderKL", W.LATENT_CHANNELS, W.IMAGE_SIZE):
        raise UsageError(f"--vae-from {folder}: class, latent channels, sample size {shape}; {expected}")
