#!/usr/bin/env python
"""Parity of reneg_video's `aesthetic` (transformers' CLIPVisionModelWithProjection + the LAION MLP) with
a reference: image-reward 1.5's `AestheticScore` (its copy of the improved-aesthetic-predictor MLP and
scoring) on OpenAI CLIP's own model code and transforms (clip-anytorch).

What it does, in one run:
1. installs the reference into a side directory outside the repo (default /tmp/aesthetic-ref) with
   `pip install --target DIR --no-deps`: image-reward 1.5, clip-anytorch, ftfy, wcwidth, regex and the
   torchvision paired with the installed torch;
2. in a SUBPROCESS with PYTHONPATH=DIR: builds a random OpenAI-layout ViT-L/14 CLIP state dict (perturbed
   with a seed), hands it to `AestheticScore` through `clip.load`'s own non-JIT path (`build_model`,
   `_transform`; the download is the only step replaced), perturbs the MLP, saves the MLP as the released
   `sac+logos+ava1-l14-linearMSE.pth` layout and CLIP's effective weights (build_model rounds them
   through float16; AestheticScore then calls `.float()` on CPU), scores the frames with
   `AestheticScore.inference_rank` and times it;
3. here: converts those CLIP weights to a `CLIPModel` folder (`openclip.convert_state_dict`, quick_gelu,
   16 vision / 12 text heads as OpenAI's build_model derives them), loads it and the MLP with
   `reneg_video.load_reward("aesthetic", ...)`, scores the same frames and prints the largest per-frame
   difference.

`--vision-layers` shrinks both sides alike for a quick run; the default is the full ViT-L/14 (24 blocks).
Times are single runs after a warm-up, one side after the other; they are for information.

    python scripts/parity_aesthetic.py [--ref-dir /tmp/aesthetic-ref] [--frames 8] [--json parity.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_imagereward import make_frames, torchvision_pin  # noqa: E402  (same frames, same torchvision rule)

DEFAULT_REF_DIR = Path("/tmp/aesthetic-ref")
# setuptools<81 still ships pkg_resources, which clip-anytorch imports (FACTS.md).
REFERENCE_PACKAGES = ("image-reward==1.5", "clip-anytorch", "ftfy", "wcwidth", "regex", "setuptools<81")
PROMPT = "a painting of an ocean with clouds and birds, day time, low depth field effect"
# OpenAI CLIP ViT-L/14 (clip/model.py build_model reads these from the state dict's shapes).
VIT_L14 = {"embed_dim": 768, "image_resolution": 224, "vision_width": 1024, "vision_patch_size": 14,
           "context_length": 77, "vocab_size": 49408, "transformer_width": 768, "transformer_heads": 12,
           "transformer_layers": 12}  # fmt: skip
GOAL_MAX_DIFF = 1e-4  # rating units (about 1..10)


def install_reference(ref_dir: Path) -> None:
    marker = ref_dir / ".reneg-parity-installed"
    if marker.exists():
        return
    ref_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(ref_dir), "--no-deps", "--upgrade"]
    cmd += [*REFERENCE_PACKAGES, torchvision_pin()]
    print("installing the reference:", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    marker.write_text("ok\n")


def run_reference(args: argparse.Namespace) -> None:
    import types

    # torchvision's detection-op fake kernels fail to register beside the CPU torch here; its transforms
    # (all the reference uses) do not need them.
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    # Bare `ImageReward` packages: their __init__s import ReFL (datasets, diffusers) and BLIP, which
    # AestheticScore does not need.
    for name, folder in (("ImageReward", "ImageReward"), ("ImageReward.models", "ImageReward/models")):
        package = types.ModuleType(name)
        package.__path__ = [str(Path(args.ref_dir) / folder)]
        sys.modules[name] = package
    import clip
    import clip.model
    import torch
    from ImageReward.models.AestheticScore import AestheticScore

    from reneg_video.rewards.imagereward import perturb_

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    random_clip = clip.model.CLIP(**VIT_L14, vision_layers=args.vision_layers)
    state = perturb_(random_clip, args.seed).state_dict()

    def local_load(name, device="cpu", jit=False, download_root=None):  # clip.load without the download
        model = clip.model.build_model(state).to(device)
        return model, clip.clip._transform(model.visual.input_resolution)

    clip.load = local_load
    reference = AestheticScore(download_root=None, device="cpu")
    perturb_(reference.mlp, args.seed + 1)
    reference.eval()
    build_s = time.perf_counter() - started
    torch.save(reference.clip_model.state_dict(), args.clip_out)  # the effective (float16-rounded) weights
    torch.save(reference.mlp.state_dict(), args.mlp_out)  # keys layers.N.*: the released layout
    paths = [str(p) for p in args.frame_paths]
    with torch.no_grad():
        reference.inference_rank(PROMPT, paths[:2])  # warm-up
        started = time.perf_counter()
        _, rewards = reference.inference_rank(PROMPT, paths)
        seconds = time.perf_counter() - started
    params = sum(p.numel() for p in reference.clip_model.visual.parameters())
    Path(args.out).write_text(json.dumps({"scores": rewards, "seconds": seconds, "build_s": build_s,
                                          "vision_params": params}))  # fmt: skip


def clip_model_folder(state_path: Path, folder: Path, vision_layers: int) -> None:
    """OpenAI-layout CLIP weights -> a saved CLIPModel folder, as a user's openai/clip-vit-large-patch14."""
    import torch
    from transformers import CLIPModel

    from reneg_video.rewards import openclip

    state = torch.load(state_path, map_location="cpu", weights_only=True)
    for key in ("input_resolution", "context_length", "vocab_size"):  # scalars build_model drops too
        state.pop(key, None)
    dims = openclip.read_dims(state, str(state_path))
    assert dims.vision_layers == vision_layers
    # OpenAI's build_model: vision heads = width // 64, text heads = width // 64; QuickGELU throughout.
    config = openclip.clip_config(dims, dims.vision_width // 64, dims.text_width // 64, "quick_gelu")
    model = CLIPModel(config)
    openclip.load_into(model, openclip.convert_state_dict(state, str(state_path)), str(state_path))
    model.save_pretrained(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-dir", type=Path, default=DEFAULT_REF_DIR)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vision-layers", type=int, default=24, help="ViT-L/14 has 24")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)  # the child side
    for hidden in ("--clip-out", "--mlp-out", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--frame-paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        run_reference(args)
        return 0

    install_reference(args.ref_dir)
    import numpy as np
    import torch
    from PIL import Image

    import reneg_video

    with tempfile.TemporaryDirectory(prefix="reneg-parity-aesthetic-") as tmp:
        tmp = Path(tmp)
        frames = make_frames(tmp, args.frames, args.seed)
        clip_state, mlp, out = tmp / "clip.pt", tmp / "sac+logos+ava1-l14-linearMSE.pth", tmp / "ref.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.ref_dir), str(REPO_ROOT)])}
        cmd = [sys.executable, __file__, "--reference", "--clip-out", str(clip_state), "--mlp-out", str(mlp)]
        cmd += [
            "--out",
            str(out),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
            "--ref-dir",
            str(args.ref_dir),
        ]
        cmd += ["--vision-layers", str(args.vision_layers), "--frame-paths", *map(str, frames)]
        print("reference: building, saving and scoring ...", flush=True)
        subprocess.run(cmd, check=True, env=env)
        reference = json.loads(out.read_text())

        torch.set_num_threads(args.threads)
        clip_model_folder(clip_state, tmp / "clip-vit-large-patch14", args.vision_layers)
        ours = reneg_video.load_reward(
            "aesthetic", aesthetic_checkpoint=mlp, aesthetic_clip=tmp / "clip-vit-large-patch14"
        )
        images = [Image.open(p) for p in frames]
        ours.score_frames(images[:2], PROMPT)  # warm-up
        started = time.perf_counter()
        pil = ours.score_frames(images, PROMPT).tolist()
        seconds = time.perf_counter() - started
        tensor = torch.stack([torch.from_numpy(np.asarray(i.convert("RGB")).copy()) for i in images])
        tensor_scores = ours.score_frames(tensor.permute(0, 3, 1, 2).float() / 255, PROMPT).tolist()

    ref = np.array(reference["scores"])
    figures = {
        "reference": "image-reward 1.5 AestheticScore on clip-anytorch ViT-L/14, random weights perturbed "
        f"with seed {args.seed} ({reference['vision_params'] / 1e6:.1f} M vision parameters)",
        "vision_layers": args.vision_layers,
        "frames": args.frames,
        "reference_range": [float(ref.min()), float(ref.max())],
        "max_abs_diff_pil": float(np.abs(np.array(pil) - ref).max()),
        "max_abs_diff_tensor": float(np.abs(np.array(tensor_scores) - ref).max()),
        "reference_seconds": reference["seconds"],
        "ours_seconds": seconds,
        "torch": torch.__version__,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(
            json.dumps({**figures, "reference_scores": reference["scores"], "ours": pil}, indent=2)
        )
    ok = figures["max_abs_diff_pil"] <= GOAL_MAX_DIFF
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
