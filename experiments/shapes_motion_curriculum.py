"""Does a direction curriculum teach shapes-t2v to read the direction word? (The experiment behind the
build's `motion` stage, whose recipe is shapes_world.build.common.MOTION_CURRICULUM.)

    python experiments/shapes_motion_curriculum.py --zero --out runs/curriculum
    python experiments/shapes_motion_curriculum.py --zero --init runs/curriculum/model-300/unet \
        --phases "900:right+left" --xattn-lr-mult 10 --every 300 --out runs/curriculum-lr
    python experiments/shapes_motion_probe.py --model-path runs/curriculum/model-1500 --seeds 8

Continues the t2v stage's v-prediction training from a UNet3DConditionModel (default: the shipped t2v's)
in phases that restrict which directions the training clips move in (default: 300 steps right only, so
frame position pays off alone; 300 right/left; 900 all four). `--zero` trains with zero terminal SNR
(`rescale_betas_zero_snr`, trailing timesteps in the saved scheduler), so the model cannot read the motion
from the faint signal SD's schedule leaves at t = 999. Every `--every` steps it prints the loss on 24 fixed
clean clips with the right and the opposite direction word (the relative difference is what the word is
worth to the model; ideal ~17%, `experiments/shapes_motion_ceiling.py`) and saves a diffusers folder that
`experiments/shapes_motion_probe.py --model-path` renders. About 1.2-3 s per step of 4 clips on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Share of training clips with t in [HIGH_T, 1000): the direction is decided at high noise.
HIGH_T = 600
WARMUP_STEPS = 30


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phases", default="300:right,300:right+left,900:left+right+up+down",
                   help="comma-separated STEPS:DIR+DIR... phases")  # fmt: skip
    p.add_argument("--zero", action="store_true", help="zero terminal SNR (and trailing timesteps)")
    p.add_argument("--batch", type=int, default=4, help="clips per step")
    p.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate (cosine decay)")
    p.add_argument(
        "--xattn-lr-mult", type=float, default=1.0, help="LR multiplier of the spatial cross-attention"
    )
    p.add_argument("--high", type=float, default=0.5, help=f"share of clips with t in [{HIGH_T}, 1000)")
    p.add_argument("--every", type=int, default=150, help="diagnose and save every N steps")
    p.add_argument("--init", default=None, help="a UNet3DConditionModel folder (default: the shipped t2v's)")
    p.add_argument("--out", required=True, help="folder for model-<step>/ and losses.json")
    args = p.parse_args()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from shapes_world import world as W
    from shapes_world.build import common as B
    from shapes_world.build.motion import direction_word_gain, spatial_cross_attention
    from shapes_world.build.t2v import video_inputs

    try:
        phases = [(int(n), d.split("+")) for n, d in (x.split(":") for x in args.phases.split(","))]
        assert all(n > 0 and set(d) <= set(W.DIRECTIONS) for n, d in phases)
    except (ValueError, AssertionError):
        p.error(f"--phases {args.phases!r}: expected STEPS:DIR+DIR,... with DIR in {', '.join(W.DIRECTIONS)}")
    total = sum(n for n, _ in phases)
    allowed = list(W.DIRECTIONS)
    torch.set_num_threads(1)
    torch.manual_seed(3)
    common = W.weights_root() / W.COMMON_DIR  # the text encoder, tokenizer and VAE both generators share
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = CLIPTokenizer.from_pretrained(common / "tokenizer")
    te = CLIPTextModel.from_pretrained(common / "text_encoder").float().eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(common / "vae").float().eval().requires_grad_(False)
    unet = UNet3DConditionModel.from_pretrained(args.init or W.bundled_folder("t2v") / "unet").float().train()
    sched_kwargs = B.noise_schedule(W.VIDEO_SCHEDULER if args.zero else W.SCHEDULER)
    sched = DDPMScheduler(**sched_kwargs)

    def diagnose() -> dict:
        return direction_word_gain(unet, te, tok, vae, sched)

    def save(folder: Path) -> None:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        W.copy_generator("t2v", tmp, leave_out=("unet",))
        unet.save_pretrained(tmp / "unet")
        config_path = tmp / "scheduler" / "scheduler_config.json"
        config = {**json.loads(config_path.read_text()), **sched_kwargs}
        if args.zero:
            config["timestep_spacing"] = "trailing"  # zero-SNR sampling starts at t = 999 (Lin et al.)
        config_path.write_text(json.dumps(config, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    print("step 0 word gain (t: opposite - right word loss %):", diagnose(), flush=True)
    xattn = spatial_cross_attention(unet)
    ids = {id(q) for q in xattn}
    rest = [q for q in unet.parameters() if id(q) not in ids]
    groups = [{"params": rest, "mult": 1.0}, {"params": xattn, "mult": args.xattn_lr_mult}]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    losses: list[float] = []
    t0, step = time.time(), 0
    for n, dirs in phases:
        allowed[:] = dirs
        for _ in range(n):
            progress = (step - WARMUP_STEPS) / (total - WARMUP_STEPS)
            factor = (
                (step + 1) / WARMUP_STEPS if step < WARMUP_STEPS else 0.5 * (1 + math.cos(math.pi * progress))
            )
            for g in opt.param_groups:
                g["lr"] = args.lr * factor * g["mult"]
            rng = B.step_rng(0, "t2v", step + 70000)  # clips the shipped stage never drew
            lat, ctx, gen = video_inputs(rng, args.batch, vae, te, tok, tuple(allowed))
            noise = torch.randn(lat.shape, generator=gen)
            t = torch.randint(0, 1000, (args.batch,), generator=gen)
            t = torch.where(
                torch.rand(args.batch, generator=gen) < args.high, HIGH_T + t % (1000 - HIGH_T), t
            )
            pred = unet(sched.add_noise(lat, noise, t), t, encoder_hidden_states=ctx).sample
            loss = F.mse_loss(pred, sched.get_velocity(lat, noise, t))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % 50 == 0:
                print(
                    f"step {step} [{'+'.join(dirs)}] loss50 {np.mean(losses[-50:]):.4f} {time.time() - t0:.0f}s"
                )
            if step % args.every == 0 or step == total:
                print(f"step {step} diag:", diagnose(), flush=True)
                save(out / f"model-{step}")
    (out / "losses.json").write_text(json.dumps(losses))


if __name__ == "__main__":
    main()
