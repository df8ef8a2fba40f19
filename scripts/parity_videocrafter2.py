"""Parity: the original lvdm UNetModel against reneg_video's VideoCrafter2UNet, same weights and inputs.

The original source is not part of this project; check it out somewhere and point --orig-src at it:

    git clone https://github.com/AILab-CVC/VideoCrafter /tmp/vc2-orig   # needs lvdm/, utils/, configs/
    python scripts/parity_videocrafter2.py --orig-src /tmp/vc2-orig --json parity.json

Both models get the same weights: the original is built with its own init, then EVERY parameter is
perturbed by N(0, sigma) so that the zero-initialised output projections (lvdm's zero_module) carry
signal and every path of the network is exercised; the port then loads those tensors through
`unet_from_original` (sharing them, so the full model is in memory once). fp32 on CPU, no grad.
Relative difference = max|port - original| / max|original|.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import types
from pathlib import Path

import torch

# The UNet configuration is read from the original yaml; `use_checkpoint` (gradient checkpointing) is
# a training switch the port does not have, and lvdm runs the same maths without it.
YAML = "configs/inference_t2v_512_v2.0.yaml"
# A small config with the same options, for the test suite (heads of 16 channels, 2 levels).
TINY_OVERRIDES = {
    "model_channels": 32,
    "channel_mult": [1, 2],
    "num_res_blocks": 1,
    "attention_resolutions": [1, 2],
    "num_head_channels": 16,
}
ORIGINAL_FPS = 28  # scripts/run_text2video.sh passes --fps 28 for base_512_v2
TIMESTEP = 417  # any training timestep; not special
ORIG_ONLY_KEYS = ("use_checkpoint",)


def original_unet_params(orig_src: Path, tiny: bool) -> dict:
    """The yaml's unet_config.params (VideoCrafter2), optionally shrunk to the tiny test config."""
    import yaml

    text = (orig_src / YAML).read_text()
    params = dict(yaml.safe_load(text)["model"]["params"]["unet_config"]["params"])
    params["use_checkpoint"] = False
    if tiny:
        params.update(TINY_OVERRIDES)
    return params


def import_original(orig_src: Path):
    """lvdm's UNetModel from orig_src. `utils/utils.py` imports cv2, which the UNet never uses: stub it."""
    if not (orig_src / "lvdm" / "modules" / "networks" / "openaimodel3d.py").is_file():
        raise SystemExit(
            f"--orig-src {orig_src}: no lvdm/modules/networks/openaimodel3d.py there.\n"
            "Check out the original code outside this repository, e.g.\n"
            "  git clone https://github.com/AILab-CVC/VideoCrafter /tmp/vc2-orig\n"
            "and pass --orig-src /tmp/vc2-orig (or set RENEG_VC2_ORIG_SRC)."
        )
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))
    sys.path.insert(0, str(orig_src))
    from lvdm.modules.networks.openaimodel3d import UNetModel

    return UNetModel


def compare(orig_src: Path, tiny: bool, shape: tuple[int, ...], sigma: float = 0.02, seed: int = 0) -> dict:
    """Run both UNets on the same input; return the figures."""
    from reneg_video.models.videocrafter2 import unet_from_original

    UNetModel = import_original(orig_src)
    params = original_unet_params(orig_src, tiny)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    original = UNetModel(**params).eval()
    with torch.no_grad():
        for p in original.parameters():
            p.add_(torch.randn_like(p) * sigma)
    build_s = time.perf_counter() - t0
    port_config = {k: v for k, v in params.items() if k not in ORIG_ONLY_KEYS}
    port = unet_from_original(original.state_dict(), port_config)

    batch, channels, frames, height, width = shape
    x = torch.randn(batch, channels, frames, height, width)
    t = torch.full((batch,), TIMESTEP, dtype=torch.long)
    context = torch.randn(batch, 77, params["context_dim"])
    fps = torch.full((batch,), ORIGINAL_FPS, dtype=torch.long)
    with torch.no_grad():
        t0 = time.perf_counter()
        expected = original(x, t, context=context, fps=fps)
        orig_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = port(x, t, context, fps=fps).sample
        port_s = time.perf_counter() - t0
    diff = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    return {
        "config": "tiny" if tiny else "videocrafter2 (inference_t2v_512_v2.0.yaml)",
        "unet_params": params,
        "parameters": sum(p.numel() for p in original.parameters()),
        "input_shape": list(shape),
        "timestep": TIMESTEP,
        "fps": ORIGINAL_FPS,
        "perturb_sigma": sigma,
        "seed": seed,
        "max_abs_diff": diff,
        "max_abs_original": scale,
        "max_rel_diff": diff / scale,
        "output_std": expected.std().item(),
        "build_s": round(build_s, 2),
        "original_forward_s": round(orig_s, 2),
        "port_forward_s": round(port_s, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orig-src", type=Path, default=os.environ.get("RENEG_VC2_ORIG_SRC"))
    parser.add_argument(
        "--tiny", action="store_true", help="the small test config instead of VideoCrafter2's"
    )
    parser.add_argument(
        "--shape", type=int, nargs=5, default=[1, 4, 4, 16, 16], metavar=("B", "C", "F", "H", "W")
    )
    parser.add_argument(
        "--sigma", type=float, default=0.02, help="std of the perturbation added to every parameter"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tolerance", type=float, default=1e-4, help="fail (exit 1) above this relative diff"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.orig_src is None:
        import_original(Path("<not given>"))  # prints the instructions
    result = compare(args.orig_src, args.tiny, tuple(args.shape), args.sigma, args.seed)
    result["tolerance"] = args.tolerance
    result["pass"] = result["max_rel_diff"] <= args.tolerance
    for key in ("config", "parameters", "input_shape", "max_abs_diff", "max_abs_original", "max_rel_diff"):
        print(f"{key}: {result[key]}")
    print(
        f"forward: original {result['original_forward_s']} s, port {result['port_forward_s']} s; "
        f"peak RSS {result['peak_rss_gib']} GiB; {'PASS' if result['pass'] else 'FAIL'} (tolerance {args.tolerance})"
    )
    if args.json:
        from reneg_video.core.atomic import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
