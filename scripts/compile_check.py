#!/usr/bin/env python
"""Does `torch.compile` of the denoiser pay off? tiny-zeroscope, eager vs compiled UNet, alternated.

Prints the first compiled call (compilation included) and the medians of the later calls of both arms.
The CLI has no compile option of its own: `--speed fastest` compiles the denoiser's repeated blocks, on
CUDA only, because on CPU this check found the compile time far above what one run saves
(docs/benchmarks.md, "torch.compile"). A wider option waits for a GPU run that shows a win.

    PYTHONPATH=. python scripts/compile_check.py [--frames 8] [--size 64] [--steps 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import reneg_video

    pipe = reneg_video.load_pipeline("tiny-zeroscope", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    eager = pipe.unet
    compiled = torch.compile(eager)
    call = dict(prompt="a corgi", num_frames=args.frames, height=args.size, width=args.size)
    call.update(num_inference_steps=args.steps, output_type="np")

    def timed(unet) -> tuple[float, object]:
        pipe.unet = unet
        start = time.perf_counter()
        out = pipe(**call, generator=torch.Generator().manual_seed(0)).frames[0]
        return time.perf_counter() - start, out

    first_compiled, _ = timed(compiled)
    timed(eager)  # warm-up
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    outs = {}
    for _ in range(args.repeats):
        for name, unet in (("eager", eager), ("compiled", compiled)):
            seconds, outs[name] = timed(unet)
            times[name].append(seconds)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    diff = float(abs(outs["eager"] - outs["compiled"]).max())
    print(
        f"tiny-zeroscope {args.frames}x{args.size}x{args.size}, {args.steps} steps, {torch.get_num_threads()} threads"
    )
    print(f"first compiled call (compilation included): {first_compiled:.2f} s")
    print(f"median of {args.repeats}: eager {e:.3f} s, compiled {c:.3f} s, ratio compiled/eager {c / e:.3f}")
    print(f"outputs max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
