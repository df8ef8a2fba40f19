"""Why shapes-t2i ignores the shape word: what each caption word is worth to its UNet, and how far apart
the VAE puts two shapes.

Word gain: the relative increase (%) of the UNet's v-prediction loss on fixed clean images when one word of
the caption is swapped for another value (the shape, the shape's colour, the background colour), or the
caption is dropped; ~0% for a word the model ignores. The same measure as `build.motion.direction_word_gain`
for the video UNet's direction word. Latent distance: the mean squared difference of the VAE's scaled
latents (unit variance) between two renders that differ in one attribute only, same place and size; it
is what a wrong word costs the diffusion loss.

    python experiments/shapes_word_gain.py [--model-path DIR] [--images 96]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from shapes_world import data
from shapes_world.world import COLOURS, IMAGE_SIZE, SHAPES

T_FROM = (0, 600, 900)  # loss over t in [T, 1000): all timesteps, the noisy half, the noisiest tenth


def _other(values: tuple[str, ...], value: str, *avoid: str) -> str:
    """The next value in `values` after `value` that is none of `avoid` (a fixed, not random, swap)."""
    i = values.index(value)
    return next(v for v in values[i + 1 :] + values[:i] if v not in avoid)


SWAPS = {
    "shape": lambda a: replace(a, shape=_other(SHAPES, a.shape)),
    "colour": lambda a: replace(a, colour=_other(tuple(COLOURS), a.colour, a.background)),
    "background": lambda a: replace(a, background=_other(tuple(COLOURS), a.background, a.colour)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", default=None, help="a shapes-t2i diffusers folder (default: the shipped)")
    p.add_argument("--images", type=int, default=96, help="clean images the word gain is measured on")
    args = p.parse_args()
    torch.set_num_threads(1)

    from reneg_video.models.pipeline import load_pipeline
    from shapes_world.build.common import encode_text, to_tensor, training_scheduler
    from shapes_world.build.motion import caption_loss_gain

    # Shipped in float16; measured in float32.
    pipe = load_pipeline("shapes-t2i", "cpu", "float32", model_path=args.model_path)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    scheduler = training_scheduler()
    scale = vae.config.scaling_factor

    rng = np.random.default_rng([7, 9])
    samples = [data.make_sample(rng, video=False, degrade_prob=0.0) for _ in range(args.images)]
    captions = {"asked": [s.caption for s in samples], "no caption": [""] * len(samples)}
    for word, swap in SWAPS.items():
        captions[word] = [data.caption_for(swap(s.attributes)) for s in samples]
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        latents = vae.encode(to_tensor(np.stack([s.frames[0] for s in samples]))).latent_dist.mean * scale
        noise = torch.randn(latents.shape, generator=gen)
        print("| swapped | " + " | ".join(f"t >= {t}" for t in T_FROM) + " |")
        print("|---|" + "---|" * len(T_FROM))
        gains: dict[str, list[str]] = {k: [] for k in captions if k != "asked"}
        right = encode_text(text_encoder, tokenizer, captions["asked"])
        wrong = {name: encode_text(text_encoder, tokenizer, captions[name]) for name in gains}
        for low in T_FROM:
            t = low + torch.randint(
                0, scheduler.config.num_train_timesteps - low, (len(samples),), generator=gen
            )
            for name, gain in caption_loss_gain(unet, scheduler, latents, noise, t, right, wrong).items():
                gains[name].append(f"{gain:+.1f}%")
        for name, row in gains.items():
            print(f"| {name} | " + " | ".join(row) + " |")

        rng = np.random.default_rng([7, 10])
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in (*SWAPS, "place (+1 px)")}
        for _ in range(200):
            a = data.random_attributes(rng, video=False)
            cx, cy = rng.uniform(10, 22, 2)
            radius = rng.uniform(data.MIN_RADIUS, data.MAX_RADIUS)

            def draw(x: data.Attributes, dx: float = 0.0, r=radius, cx=cx, cy=cy) -> np.ndarray:
                frame = data.draw_frame(x.shape, x.colour, x.background, cx + dx, cy, r, IMAGE_SIZE)
                return np.round(frame * 255).astype(np.uint8)  # as make_sample stores frames

            base = draw(a)
            others = {name: draw(swap(a)) for name, swap in SWAPS.items()} | {"place (+1 px)": draw(a, 1.0)}
            z = vae.encode(to_tensor(np.stack([base, *others.values()]))).latent_dist.mean * scale
            for i, (name, frame) in enumerate(others.items()):
                rows[name].append(
                    (
                        float(((z[i + 1] - z[0]) ** 2).mean()),
                        float(((frame / 255.0 - base / 255.0) ** 2).mean()),
                    )
                )
    print("\n| renders differ in | latent MSE | pixel MSE |\n|---|---|---|")
    for name, values in rows.items():
        latent, pixel = np.mean(values, axis=0)
        print(f"| {name} | {latent:.3f} | {pixel:.4f} |")


if __name__ == "__main__":
    main()
