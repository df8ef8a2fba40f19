#!/usr/bin/env python
"""Parity of reneg_video's `hpsv2` (transformers' CLIPModel) with the reference hpsv2 1.2.0 scoring code.

What it does, in one run:
1. installs the reference into a side directory outside the repo (default /tmp/hpsv2-ref) with
   `pip install --target DIR --no-deps`: hpsv2 1.2.0 (which bundles its own open_clip), the torchvision
   paired with the installed torch, ftfy, wcwidth, regex, clint, args and clip-anytorch; hpsv2's wheel
   lacks CLIP's BPE file, so clip-anytorch's copy (the same OpenAI file) is put next to its tokenizer;
2. in a SUBPROCESS with PYTHONPATH=DIR: builds the reference ViT-H-14 exactly as `hpsv2.img_score`
   does (create_model_and_transforms(..., light_augmentation=True), `pretrained=None` instead of a
   download), perturbs its random weights with a seed (default init scores every frame the same), saves
   them as `{"state_dict": ...}` like HPS_v2_compressed.pt, then scores the frames with the reference's
   own `hpsv2.img_score.score` (its preprocess_val, tokenizer and 100-free cosine) and times it;
3. here, after the reference process has exited (two ViT-H copies would not fit beside other jobs):
   loads that file with `reneg_video.load_reward("hpsv2", ...)` and the same BPE file, scores the same
   frames (PIL route and the differentiable tensor route) and prints the largest per-frame difference in
   HPS units (100 * cos; the reference's cosine is multiplied by 100 for the comparison).

`--vision-layers/--text-layers` shrink both sides alike for a quick run; the default is the full
ViT-H-14 (32 + 24 blocks, 986 M parameters). Times are single runs after a one-frame warm-up, taken one
side after the other, so other load on the machine can tilt them; they are for information.

    python scripts/parity_hpsv2.py [--ref-dir /tmp/hpsv2-ref] [--frames 8] [--json parity.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_imagereward import make_frames, torchvision_pin  # noqa: E402  (same frames, same torchvision rule)

DEFAULT_REF_DIR = Path("/tmp/hpsv2-ref")
REFERENCE_PACKAGES = ("hpsv2==1.2.0", "ftfy", "wcwidth", "regex", "clint", "args", "clip-anytorch")
# Both sides' token ids are compared for every prompt; the frames are scored against the first.
PROMPTS = (
    "a painting of an ocean with clouds and birds, day time, low depth field effect",
    "A Corgi  surfing a WAVE at sunset... 4k, (highly detailed)",
)
GOAL_MAX_DIFF = 1e-3  # HPS units (100 * cos), i.e. 1e-5 in cosine


def install_reference(ref_dir: Path) -> Path:
    """Install the reference; return the BPE file both sides tokenise with."""
    marker = ref_dir / ".reneg-parity-installed"
    bpe = ref_dir / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    if not marker.exists():
        ref_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--target",
            str(ref_dir),
            "--no-deps",
            "--upgrade",
        ]
        cmd += [*REFERENCE_PACKAGES, torchvision_pin()]
        print("installing the reference:", " ".join(cmd[3:]), flush=True)
        subprocess.run(cmd, check=True)
        shutil.copy(bpe, ref_dir / "hpsv2" / "src" / "open_clip" / bpe.name)
        marker.write_text("ok\n")
    return bpe


def run_reference(args: argparse.Namespace) -> None:
    import types

    # torchvision's detection-op fake kernels fail to register beside the CPU torch here; its transforms
    # (all the reference uses) do not need them.
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import hpsv2.img_score as img_score
    import torch
    from hpsv2.src.open_clip import create_model_and_transforms, factory, get_tokenizer
    from PIL import Image

    from reneg_video.rewards.imagereward import perturb_

    torch.set_num_threads(args.threads)
    config = factory._MODEL_CONFIGS["ViT-H-14"]
    config["vision_cfg"]["layers"] = args.vision_layers
    config["text_cfg"]["layers"] = args.text_layers
    started = time.perf_counter()
    # The arguments of hpsv2.img_score.initialize_model, except pretrained=None (no download).
    model, _, preprocess_val = create_model_and_transforms(
        "ViT-H-14", None, precision="amp", device="cpu", jit=False, force_quick_gelu=False,
        force_custom_text=False, force_patch_dropout=False, force_image_size=None, pretrained_image=False,
        image_mean=None, image_std=None, light_augmentation=True, aug_cfg={}, output_dict=True,
        with_score_predictor=False, with_region_predictor=False,
    )  # fmt: skip
    perturb_(model, args.seed)
    build_s = time.perf_counter() - started
    torch.save({"state_dict": model.state_dict()}, args.checkpoint)
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
    images = [Image.open(p) for p in args.frame_paths]
    tokenizer = get_tokenizer("ViT-H-14")
    result = {"params": sum(p.numel() for p in model.parameters()), "build_s": build_s}
    result["tokens"] = {prompt: tokenizer([prompt])[0].tolist() for prompt in PROMPTS}
    img_score.score(images[:1], PROMPTS[0], cp=args.checkpoint)  # warm-up
    started = time.perf_counter()
    scores = img_score.score(images, PROMPTS[0], cp=args.checkpoint)  # cosines, image by image
    result["seconds"] = time.perf_counter() - started
    result["scores"] = [100.0 * float(s) for s in scores]
    Path(args.out).write_text(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-dir", type=Path, default=DEFAULT_REF_DIR)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vision-layers", type=int, default=32, help="ViT-H-14 has 32")
    parser.add_argument("--text-layers", type=int, default=24, help="ViT-H-14 has 24")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)  # the child side
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--frame-paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        run_reference(args)
        return 0

    bpe = install_reference(args.ref_dir)
    with tempfile.TemporaryDirectory(prefix="reneg-parity-hps-") as tmp:
        tmp = Path(tmp)
        frames = make_frames(tmp, args.frames, args.seed)
        checkpoint, out = tmp / "HPS_v2_compressed.pt", tmp / "reference.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(args.ref_dir), str(REPO_ROOT)])}
        cmd = [sys.executable, __file__, "--reference", "--checkpoint", str(checkpoint), "--out", str(out)]
        cmd += ["--seed", str(args.seed), "--threads", str(args.threads), "--frame-paths", *map(str, frames)]
        cmd += ["--vision-layers", str(args.vision_layers), "--text-layers", str(args.text_layers)]
        print("reference: building, saving and scoring ...", flush=True)
        subprocess.run(cmd, check=True, env=env)
        reference = json.loads(out.read_text())

        import numpy as np
        import torch
        from PIL import Image

        import reneg_video
        from reneg_video.rewards import openclip

        torch.set_num_threads(args.threads)
        started = time.perf_counter()
        ours = reneg_video.load_reward("hpsv2", hps_checkpoint=checkpoint, hps_tokenizer=bpe)
        load_s = time.perf_counter() - started
        images = [Image.open(p) for p in frames]
        tensor = torch.stack([torch.from_numpy(np.asarray(i.convert("RGB")).copy()) for i in images])
        tensor = tensor.permute(0, 3, 1, 2).float() / 255
        tokens_equal = all(
            openclip.open_clip_tokens(ours.tokenizer, p)[0].tolist() == reference["tokens"][p]
            for p in PROMPTS
        )
        ours.score_frames(images[:1], PROMPTS[0])  # warm-up
        started = time.perf_counter()
        pil = np.array(ours.score_frames(images, PROMPTS[0]).tolist())
        seconds = time.perf_counter() - started
        from_tensor = np.array(ours.score_frames(tensor, PROMPTS[0]).tolist())

    ref_all = np.array(reference["scores"])
    figures = {
        "reference": "hpsv2 1.2.0 (bundled open_clip), random weights perturbed with seed "
        f"{args.seed}, {reference['params'] / 1e6:.1f} M parameters",
        "layers": [args.vision_layers, args.text_layers],
        "frames": args.frames,
        "tokens_equal": tokens_equal,
        "reference_range": [float(ref_all.min()), float(ref_all.max())],
        "max_abs_diff_pil": float(np.abs(pil - ref_all).max()),
        "max_abs_diff_tensor": float(np.abs(from_tensor - ref_all).max()),
        "reference_seconds": reference["seconds"],
        "ours_seconds": seconds,
        "ours_load_seconds": load_s,
        "reference_build_seconds": reference["build_s"],
        "torch": torch.__version__,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(
            json.dumps({**figures, "reference_scores": reference["scores"], "ours": pil.tolist()}, indent=2)
        )
    ok = tokens_equal and figures["max_abs_diff_pil"] <= GOAL_MAX_DIFF
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
