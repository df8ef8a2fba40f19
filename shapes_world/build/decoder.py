"""Stage 2b, `decoder`: the VAE decoder alone fine-tuned with L1 on noise-augmented latents (encoder frozen:
the latents, and so every model trained on them, stay the same), as the vae stage leaves edges soft.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .common import BuildConfig, load_vae, step_rng, to_tensor, train_loop, training_batch, write_stage

# Decoder stage: latents are perturbed by up to this share of their std before decoding, so the decoder
# learns to map a generator's slightly-off latents to clean frames (with clean latents only, it decoded
# the t2i's samples as soft blobs: crisp 0.01 vs 0.47 on reconstructions in the first build).
DECODER_LATENT_NOISE = 0.3


def train_decoder(out: Path, cfg: BuildConfig) -> None:
    """Sharpen the decoder with L1 while the encoder stays frozen: the latent space (and so every model
    trained on it) is unchanged, only decoding improves (the VAE stage alone leaves edges soft). Latents
    are noise-augmented (DECODER_LATENT_NOISE) so generated latents decode as crisply as encoded ones."""
    torch.manual_seed(cfg.seed + 5)
    vae = load_vae(out, "vae")
    trainable = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    s = cfg.decoder

    def step_fn(step: int) -> torch.Tensor:
        rng = step_rng(cfg.seed, "decoder", step)
        frames, _ = training_batch(rng, s.batch, video=False)
        x = to_tensor(frames[:, 0])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(gen)
            # Per sample a noise level in [0, DECODER_LATENT_NOISE] x std: clean latents included.
            level = torch.rand(z.shape[0], 1, 1, 1, generator=gen) * DECODER_LATENT_NOISE * z.std()
            z = z + level * torch.randn(z.shape, generator=gen)
        return F.l1_loss(vae.decode(z).sample, x)

    vae.decoder.train()
    losses = train_loop("decoder", out, cfg, s, {"vae": vae}, trainable, step_fn)
    write_stage(
        out,
        "decoder",
        lambda tmp: vae.save_pretrained(tmp / "vae"),
        {"losses": losses, "params": sum(p.numel() for p in trainable), "steps": s.steps},
    )
