"""Can shapes-t2i learn to follow the shape word? Fine-tunes the shipped t2i UNet on the build's data and
reports the shape word's gain and the judge's shape readings before and after. An experiment for the next
build, not a build stage: nothing it writes is shipped.

Every variant: STEPS x 32 images, AdamW 2e-4, gradient norm clipped to 1, EMA 0.995 (both the live and the
averaged weights are judged). What the loss is:

- plain: the build's v-prediction loss, uniform t;
- xattn: the same with the motion stage's recipe (cross-attention LR x10, half the batch at t >= 600);
- pixel: plus L1 + edge loss of the decoded x0 prediction against the image, where t < 600;
- contrast: plus a hinge that asks the caption to explain the image better than the same caption with
  another shape word: per image, loss(wrong shape) must exceed loss(asked) by CONTRAST_MARGIN of it;
- contrast-all: the same hinge against both other shape words (their mean): `contrast` swaps circle ->
  square -> triangle -> circle, so a square's caption is never contrasted with "circle".

Why: the shape word is worth +1-2.5% of the UNet's loss (experiments/shapes_word_gain.py) because two shapes
are close in latent space, so the plain loss gives almost no reason to read it; the contrast term gives one.
Evaluation: 48 held-out prompts x 2 seeds, 20 DDIM steps, guidance 2.5 and 5; a JSON line per evaluation.

    python experiments/shapes_shape_finetune.py contrast --steps 800 [--save DIR] [--build BUILD_DIR]
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shapes_world import data, judge
from shapes_world.build import common as B
from shapes_world.build.motion import caption_loss_gain, spatial_cross_attention
from shapes_world.build.t2i import OTHER_SHAPE, wrong_shape
from shapes_world.build.vae import edge_loss

CONTRAST_MARGIN = 0.10  # the wrong shape word must cost 10% more loss (the shipped t2i: ~2%)
BATCH, LR, EMA_DECAY = 32, 2e-4, 0.995
HIGH_T = 600  # as the motion stage (shapes_world.build.common.MOTION_HIGH_T)
PROMPTS = 48  # first held-out prompts, each with 2 seeds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variant", choices=("plain", "xattn", "pixel", "contrast", "contrast-all"))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--save", default=None, metavar="DIR", help="save the EMA UNet here (save_pretrained)")
    p.add_argument(
        "--build", default=None, metavar="DIR", help="fine-tune this build's t2i (default: the shipped one)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from reneg_video.models.pipeline import load_pipeline

    if args.build:
        from shapes_world.build.t2i import image_pipeline

        pipe = image_pipeline(Path(args.build))
    else:
        pipe = load_pipeline("shapes-t2i", "cpu", "float32")  # shipped in float16; trained in float32
    pipe.set_progress_bar_config(disable=True)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    scheduler = B.training_scheduler()
    scale = vae.config.scaling_factor
    encode = lambda texts: B.encode_text(text_encoder, tokenizer, texts)  # noqa: E731

    @torch.no_grad()
    def word_gain(n: int = 96) -> dict[str, float]:
        """% more loss with the wrong shape word, clean-ish training images, t in [T, 1000)."""
        frames, captions = B.training_batch(np.random.default_rng(123), n, video=False)
        wrong = [wrong_shape(c) for c in captions]
        gen = torch.Generator().manual_seed(5)
        latents = vae.encode(B.to_tensor(frames[:, 0])).latent_dist.mean * scale
        noise = torch.randn(latents.shape, generator=gen)
        out = {}
        for low in (600, 900):
            t = torch.full((n,), low) + torch.randint(0, 1000 - low, (n,), generator=gen)
            gain = caption_loss_gain(
                unet, scheduler, latents, noise, t, encode(captions), {"": encode(wrong)}
            )
            out[f"t>={low}"] = round(gain[""], 2)
        return out

    def evaluate(tag: str) -> None:
        unet.eval()
        prompts = data.split_prompts()[1][:PROMPTS] * 2
        result: dict = {"word_gain_%": word_gain()}
        for guidance in (2.5, 5.0):
            images = B.sample(
                pipe, prompts, list(range(len(prompts))), video=False, steps=20, guidance=guidance
            )
            seen = collections.Counter(
                (data.parse_caption(p).shape, judge.read_frame(im).shape)
                for im, p in zip(images, prompts, strict=True)
            )
            j = judge.judge_many(list(images), prompts)
            result[guidance] = {
                "acc": round(j["accuracy"], 3),
                "shape": round(j["shape"], 3),
                "crisp": round(j["crisp"], 3),
                "conf": {s: {str(k[1]): v for k, v in seen.items() if k[0] == s} for s in OTHER_SHAPE},
            }
        print(tag, json.dumps(result), flush=True)
        unet.train()

    evaluate("before")
    xattn = spatial_cross_attention(unet)
    ids = {id(q) for q in xattn}
    rest = [q for q in unet.parameters() if id(q) not in ids]
    mult, high = (10.0, 0.5) if args.variant == "xattn" else (1.0, 0.0)
    optimizer = torch.optim.AdamW(
        [{"params": rest, "lr": LR}, {"params": xattn, "lr": LR * mult}], weight_decay=0.0
    )
    ema = copy.deepcopy(unet).requires_grad_(False)
    unet.train()
    start = time.time()
    for step in range(args.steps):
        rng = np.random.default_rng([0, 77, step])
        frames, captions = B.training_batch(rng, BATCH, video=False)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            latents = vae.encode(B.to_tensor(frames[:, 0])).latent_dist.sample(gen) * scale
            dropped = B.drop_captions(captions, rng)
            context = encode(dropped)
        if args.variant in ("plain", "xattn"):
            loss = B.diffusion_loss(unet, scheduler, latents, context, gen, high)
        else:
            noise = torch.randn(latents.shape, generator=gen)
            t = torch.randint(0, 1000, (latents.shape[0],), generator=gen)
            noisy, target = scheduler.add_noise(latents, noise, t), scheduler.get_velocity(latents, noise, t)
            pred = unet(noisy, t, encoder_hidden_states=context).sample
            per = ((pred - target) ** 2).mean(dim=(1, 2, 3))
            loss = per.mean()
            if args.variant == "pixel":  # x0 from v, decoded, against the image where x0 is informative
                ab = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
                x0 = ab.sqrt() * noisy - (1 - ab).sqrt() * pred
                keep = t < HIGH_T
                if keep.any():
                    image = vae.decode(x0[keep] / scale).sample
                    x = B.to_tensor(frames[:, 0])[keep]
                    loss = loss + F.l1_loss(image, x) + edge_loss(image, x)
            else:  # contrast: the next shape word of OTHER_SHAPE; contrast-all: both other shape words
                captioned = torch.tensor([c != "" for c in dropped], dtype=torch.float32)
                swaps = [[wrong_shape(c) for c in dropped]]
                if args.variant == "contrast-all":
                    swaps.append([wrong_shape(c) for c in swaps[0]])  # OTHER_SHAPE is a 3-cycle
                for swapped in swaps:
                    wrong = encode(swapped)
                    per_wrong = ((unet(noisy, t, encoder_hidden_states=wrong).sample - target) ** 2).mean(
                        dim=(1, 2, 3)
                    )
                    gap = (per_wrong - per) / per.detach()
                    loss = loss + (torch.relu(CONTRAST_MARGIN - gap) * captioned).mean() / len(swaps)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for e, q in zip(ema.parameters(), unet.parameters(), strict=True):
                e.lerp_(q, 1 - EMA_DECAY)
        if step % 100 == 0:
            print("step", step, round(loss.item(), 4), round(time.time() - start), "s", flush=True)
    evaluate(f"after {args.variant} {args.steps} live")
    unet.load_state_dict(ema.state_dict())
    evaluate(f"after {args.variant} {args.steps} ema")
    if args.save:
        unet.save_pretrained(args.save)


if __name__ == "__main__":
    main()
