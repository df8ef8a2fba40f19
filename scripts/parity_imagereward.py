#!/usr/bin/env python
"""Parity of reneg_video's ImageReward (transformers 5 BLIP classes) with the reference image-reward 1.5.

What it does, in one run:
1. installs the reference into a side directory outside the repo (default /tmp/imagereward-ref) with
   `pip install --target DIR --no-deps` and the pins of FACTS.md (transformers 4.46.3 and friends);
   image-reward never becomes a dependency of the package;
2. in a SUBPROCESS with PYTHONPATH=DIR (transformers 4 and 5 cannot share a process): builds the
   reference `ImageReward` with random weights, perturbs them with a seed (default init scores every
   frame the same), saves them as an official-format `ImageReward.pt`, scores the frames and times it;
3. here: loads that same `ImageReward.pt` with `reneg_video.load_reward("imagereward", ...)`, scores the
   same frames, times it, and prints the largest per-frame difference and the time ratio ours/reference.

Both sides run under `torch.inference_mode`, are warmed up on two frames first, and are timed as the
median of `--repeats` calls on all frames, interleaved (reference, ours, reference, ours, ...) so that
other load on the machine hits both alike; the reference stays alive in its subprocess meanwhile. The reference loops image by image (`inference_rank`), ours
batches. Both tokenise with a BertTokenizer built from the same generated vocab.txt (no download).
`--autocast bfloat16` adds a third interleaved arm: ours under `torch.autocast` (the `autocast=` option of
`load_reward("imagereward", ...)`), with its own time and largest per-frame difference.

The reference needs torchvision (its transforms). The registry's torchvision wheels are built against a
CUDA torch and fail to register their detection operators beside the CPU torch here; the child stubs
`torchvision._meta_registrations` (fake kernels for nms/roi_align only), so the transforms the reference
uses are torchvision's own code.

    python scripts/parity_imagereward.py [--ref-dir /tmp/imagereward-ref] [--json parity.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REF_DIR = Path("/tmp/imagereward-ref")
DEFAULT_MED_CONFIG = REPO_ROOT.parent / "shared" / "imagereward" / "med_config.json"
# The reference recipe (FACTS.md, "Installing"); setuptools<81 still ships pkg_resources, which
# image-reward imports.
REFERENCE_PINS = (
    "transformers==4.46.3",
    "tokenizers==0.20.3",
    "huggingface_hub==0.26.5",
    "timm==0.6.13",
    "fairscale==0.4.13",
    "image-reward==1.5",
    "clip-anytorch",
    "setuptools<81",
)
PROMPT = "a painting of an ocean with clouds and birds, day time, low depth field effect"
WARMUP_FRAMES = 2
# Goals of issue 3: per-frame agreement and speed relative to the reference loop.
GOAL_MAX_DIFF = 1e-4
GOAL_TIME_RATIO = 1.0


def torchvision_pin() -> str:
    """torchvision release paired with the installed torch (torch 2.N <-> torchvision 0.(N+15))."""
    import torch

    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    return f"torchvision=={major - 2}.{minor + 15}.*"


def install_reference(ref_dir: Path) -> None:
    marker = ref_dir / ".reneg-parity-installed"
    if marker.exists():
        return
    ref_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--target", str(ref_dir), "--no-deps", "--upgrade"]
    cmd += [*REFERENCE_PINS, torchvision_pin()]
    print("installing the reference:", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True)
    marker.write_text("ok\n")


def make_frames(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` distinct non-square frames (smooth colour fields + a moving disc), saved as PNG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    height, width = 256, 320  # non-square: exercises resize-on-short-side and centre crop
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    paths = []
    for i in range(count):
        freq = rng.uniform(1, 6, size=3)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        image = np.stack(
            [0.5 + 0.5 * np.sin(freq[c] * (xx + yy * (c + 1)) * np.pi + phase[c]) for c in range(3)], -1
        )
        cy, cx = height * (0.3 + 0.4 * i / count), width * (0.2 + 0.6 * i / count)
        disc = (
            (np.mgrid[0:height, 0:width][0] - cy) ** 2 + (np.mgrid[0:height, 0:width][1] - cx) ** 2
        ) < 40**2
        image[disc] = rng.uniform(0, 1, size=3)
        image += rng.normal(0, 0.03, size=image.shape)
        path = folder / f"frame_{i:02d}.png"
        Image.fromarray((image.clip(0, 1) * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def write_vocab(folder: Path) -> Path:
    """A small BERT vocab (the tiny one of reneg_video), written where both sides read it."""
    from reneg_video.rewards.imagereward import tiny_vocab

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    return folder


# ---- the reference side: a subprocess with PYTHONPATH=ref_dir, driven line by line over stdin/stdout ----


def run_reference(args: argparse.Namespace) -> None:
    import types

    # Protocol lines go to the real stdout; anything the reference prints goes to stderr.
    protocol, sys.stdout = sys.stdout, sys.stderr

    def reply(**fields) -> None:
        protocol.write(json.dumps(fields) + "\n")
        protocol.flush()

    # Stub torchvision's detection-op fake kernels (see the module docstring); transforms stay real.
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    # Bare `ImageReward` and `ImageReward.models` packages: their __init__s import ReFL (datasets,
    # diffusers) and the CLIP/aesthetic scorers (clip -> ftfy), none of which ImageReward itself needs.
    for name, folder in (("ImageReward", "ImageReward"), ("ImageReward.models", "ImageReward/models")):
        package = types.ModuleType(name)
        package.__path__ = [str(Path(args.ref_dir) / folder)]
        sys.modules[name] = package

    import ImageReward.models.BLIP.blip_pretrain as blip_pretrain
    import torch
    from PIL import Image
    from transformers import BertTokenizer

    def init_tokenizer():  # the reference's init_tokenizer, from a local vocab.txt instead of the hub
        tokenizer = BertTokenizer(str(Path(args.tokenizer) / "vocab.txt"))
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
        return tokenizer

    blip_pretrain.init_tokenizer = init_tokenizer
    from ImageReward.ImageReward import ImageReward

    torch.manual_seed(args.seed)
    model = ImageReward(med_config=args.med_config, device="cpu").eval()
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():  # same scheme as reneg_video.rewards.imagereward.perturb_
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 1 and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif param.ndim == 1:
                param.copy_(0.02 * noise)
            else:
                fan_in = param[0].numel() if param.ndim == 4 else param.shape[-1]
                param.copy_(noise / fan_in**0.5)
    torch.save(model.state_dict(), args.checkpoint)  # exactly the official ImageReward.pt format
    images = [Image.open(p) for p in json.loads(Path(args.frame_list).read_text())]
    for image in images:
        image.load()
    reply(ready=True, params=sum(p.numel() for p in model.parameters()), threads=torch.get_num_threads())

    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        batch = images[:WARMUP_FRAMES] if command == "warmup" else images
        with torch.inference_mode():
            start = time.perf_counter()
            _, scores = model.inference_rank(args.prompt, batch)
            elapsed = time.perf_counter() - start
        reply(time_s=elapsed, scores=scores)


class Reference:
    """The reference subprocess: `call("warmup" | "time")` -> its JSON reply."""

    def __init__(self, args: argparse.Namespace, tmp: Path, tokenizer: Path, checkpoint: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(args.ref_dir)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_reference", "--ref-dir", str(args.ref_dir)]
        cmd += [
            "--med-config",
            str(args.med_config),
            "--tokenizer",
            str(tokenizer),
            "--checkpoint",
            str(checkpoint),
        ]
        cmd += ["--frame-list", str(tmp / "frames.json"), "--prompt", args.prompt, "--seed", str(args.seed)]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(
                f"the reference subprocess ended (exit {self.proc.wait()}); see its messages above"
            )
        return json.loads(line)

    def call(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ref-dir", type=Path, default=DEFAULT_REF_DIR, help="side directory for the reference"
    )
    parser.add_argument(
        "--med-config", type=Path, default=DEFAULT_MED_CONFIG, help="ImageReward med_config.json"
    )
    parser.add_argument("--frames", type=int, default=16, help="frames to score (default 16)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per side, interleaved; the median counts"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="our batch size")
    parser.add_argument(
        "--autocast",
        choices=("bfloat16", "float16"),
        help="also time ours under torch.autocast in this dtype, as a third interleaved arm",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and frames")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--_reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)
    parser.add_argument("--frame-list", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._reference:
        run_reference(args)
        return 0
    if not args.med_config.is_file():
        print(
            f"error: med_config {args.med_config} not found; pass --med-config PATH (ImageReward's med_config.json)"
        )
        return 2

    install_reference(args.ref_dir)
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np
    import torch
    from PIL import Image

    from reneg_video.rewards import load_reward

    with tempfile.TemporaryDirectory(prefix="reneg-parity-") as tmp_text:
        tmp = Path(tmp_text)
        frame_paths = make_frames(tmp, args.frames, args.seed)
        (tmp / "frames.json").write_text(json.dumps([str(p) for p in frame_paths]))
        tokenizer = write_vocab(tmp / "tokenizer")
        checkpoint = tmp / "ImageReward.pt"
        print("reference: building image-reward 1.5, perturbing, saving ImageReward.pt ...", flush=True)
        reference = Reference(args, tmp, tokenizer, checkpoint)
        try:
            print("ours: loading the same ImageReward.pt ...", flush=True)
            ours = load_reward(
                "imagereward", checkpoint=checkpoint, med_config=args.med_config, tokenizer=tokenizer,
                batch_size=args.batch_size,
            )  # fmt: skip
            images = [Image.open(p) for p in frame_paths]
            for image in images:
                image.load()
            reference.call("warmup")
            ours.score_frames(images[:WARMUP_FRAMES], args.prompt)
            if args.autocast:
                ours.autocast = args.autocast
                ours.score_frames(images[:WARMUP_FRAMES], args.prompt)
                ours.autocast = None
            # Interleaved, so that load from other jobs on the machine hits every arm alike.
            ref_times, our_times, cast_times = [], [], []
            cast_scores = None
            for repeat in range(args.repeats):
                ref_reply = reference.call("time")
                start = time.perf_counter()
                our_scores = ours.score_frames(images, args.prompt)
                our_times.append(time.perf_counter() - start)
                ref_times.append(ref_reply["time_s"])
                line = f"  repeat {repeat + 1}: reference {ref_times[-1]:.2f} s, ours {our_times[-1]:.2f} s"
                if args.autocast:
                    ours.autocast = args.autocast
                    start = time.perf_counter()
                    cast_scores = ours.score_frames(images, args.prompt)
                    cast_times.append(time.perf_counter() - start)
                    ours.autocast = None
                    line += f", ours autocast {args.autocast} {cast_times[-1]:.2f} s"
                print(line, flush=True)
            ref_scores = ref_reply["scores"]
        finally:
            reference.close()
        # The differentiable tensor path on the same frames, for information (it skips PIL's uint8 rounding).
        video = torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(
            0, 3, 1, 2
        )
        tensor_scores = ours.score_frames(video.float() / 255, args.prompt).tolist()
    our_scores = our_scores.tolist()

    diffs = [abs(a - b) for a, b in zip(our_scores, ref_scores, strict=True)]
    tensor_diffs = [abs(a - b) for a, b in zip(tensor_scores, ref_scores, strict=True)]
    ref_t, ours_t = statistics.median(ref_times), statistics.median(our_times)
    result = {
        "frames": args.frames,
        "prompt": args.prompt,
        "seed": args.seed,
        "reference_params": reference.info["params"],
        "reference_scores": ref_scores,
        "ours_scores": our_scores,
        "score_spread": max(ref_scores) - min(ref_scores),
        "max_abs_diff": max(diffs),
        "tensor_path_max_abs_diff": max(tensor_diffs),
        "reference_times_s": ref_times,
        "ours_times_s": our_times,
        "reference_median_s": ref_t,
        "ours_median_s": ours_t,
        "time_ratio_ours_over_reference": ours_t / ref_t,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "threads": {"reference": reference.info["threads"], "ours": torch.get_num_threads()},
        "goals": {"max_abs_diff": GOAL_MAX_DIFF, "time_ratio": GOAL_TIME_RATIO},
    }
    if args.autocast:
        cast_t = statistics.median(cast_times)
        result["autocast"] = {
            "dtype": args.autocast,
            "scores": cast_scores.tolist(),
            "max_abs_diff": max(abs(a - b) for a, b in zip(cast_scores.tolist(), ref_scores, strict=True)),
            "times_s": cast_times,
            "median_s": cast_t,
            "time_ratio_over_reference": cast_t / ref_t,
        }
    print(
        f"reference: image-reward 1.5, {result['reference_params'] / 1e6:.1f} M params, "
        f"scores {min(ref_scores):.4f} .. {max(ref_scores):.4f}"
    )
    print(
        f"max |ours - reference| over {args.frames} frames (PIL path): {result['max_abs_diff']:.3e} (goal <= {GOAL_MAX_DIFF:g})"
    )
    print(
        f"max |ours - reference| (differentiable tensor path, for information): {result['tensor_path_max_abs_diff']:.3e}"
    )
    print(
        f"time for {args.frames} frames, median of {args.repeats}: ours {ours_t:.2f} s, reference {ref_t:.2f} s, "
        f"ratio {result['time_ratio_ours_over_reference']:.2f} (goal < {GOAL_TIME_RATIO:g})"
    )
    if args.autocast:
        cast = result["autocast"]
        print(
            f"ours under autocast {args.autocast}: median {cast['median_s']:.2f} s, ratio "
            f"{cast['time_ratio_over_reference']:.2f}, max |diff| {cast['max_abs_diff']:.3e} "
            f"(score spread {result['score_spread']:.3f})"
        )
    if args.json:
        from reneg_video.core.atomic import atomic_path

        with atomic_path(args.json) as tmp_json:
            tmp_json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    ok = (
        result["max_abs_diff"] <= GOAL_MAX_DIFF and result["time_ratio_ours_over_reference"] < GOAL_TIME_RATIO
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
