"""GPU rows: full-size video models at the compute floor, VAE decode, ImageReward and the trainer on CUDA."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..core.errors import UsageError
from .harness import MIB, Row, alternate, median_of, peak_cuda, run_child
from .memory import reduced_sd_folder, sd_vae

# ZeroScope's and LTX-2B's compute per CFG step at their default sizes (FACTS.md: model facts).
ZEROSCOPE_TFLOP_PER_STEP = 42.8
LTX_TFLOP_PER_STEP = 58.2
# A bf16 matmul this large runs at (close to) the device's sustained tensor-core throughput.
MATMUL_SIZE = 8192


# --- GPU rows (implemented; not yet run: no GPU was lent when this was written) -------------------------


def matmul_tflops(device: torch.device) -> float:
    """Measured dense bf16 matmul throughput (TFLOP/s): the denominator of the compute floors."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=torch.bfloat16)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    reps = 20
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * MATMUL_SIZE**3 * reps / (time.perf_counter() - start) / 1e12


def _time_cuda(fn: Callable[[], Any], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _full_size_pipeline(kind: str) -> tuple[Any, Any, int, float, tuple[int, int, int, int, float]]:
    """`kind`'s full-size model with random weights (its compute is what is measured): the pipeline, its
    text-encoder family and token count, its TFLOP per CFG step, and (frames, height, width, steps,
    guidance) of its default call."""
    from ..core.encoders import OPENCLIP_H, T5_XXL

    if kind == "zeroscope":
        from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

        from ..models.standins import _ddim, clip_tokenizer, text_encoder

        tok = clip_tokenizer()
        unet = UNet3DConditionModel(sample_size=32, cross_attention_dim=1024)  # ZeroScope v2 576w
        pipe = TextToVideoSDPipeline(
            vae=sd_vae(),
            text_encoder=text_encoder(OPENCLIP_H, len(tok)),
            tokenizer=tok,
            unet=unet,
            scheduler=_ddim(),
        )
        return pipe, OPENCLIP_H, 77, ZEROSCOPE_TFLOP_PER_STEP, (24, 320, 576, 40, 9.0)
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    from ..models.standins import t5_tokenizer, text_encoder

    tok = t5_tokenizer()
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKLLTXVideo(),  # the class defaults are LTX-Video's VAE
        text_encoder=text_encoder(T5_XXL, len(tok)),
        tokenizer=tok,
        transformer=LTXVideoTransformer3DModel(),  # the class defaults are LTX-Video 2B
    )
    return pipe, T5_XXL, 128, LTX_TFLOP_PER_STEP, (121, 512, 768, 50, 3.0)


def _gpu_video_rows(kind: str, device: torch.device, tflops: float, repeats: int) -> list[Row]:
    """Ours (attach + memory auto) vs plain diffusers defaults, and ours vs the compute floor."""
    from ..core.embedding import NegativeEmbedding
    from ..core.encoders import OPENCLIP_H
    from ..core.inject import attach, detached
    from ..core.memory import apply_memory_preset

    dtype = torch.float16 if kind == "zeroscope" else torch.bfloat16
    pipe, family, tokens, tflop_step, (frames, height, width, steps, guidance) = _full_size_pipeline(kind)
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    tensor = torch.randn(1, tokens, family.width)
    mask = (
        None
        if family is OPENCLIP_H
        else torch.zeros(1, tokens, dtype=torch.bool).index_fill_(1, torch.tensor([0]), True)
    )
    neg = NegativeEmbedding(tensor=tensor, mask=mask, family=family, source="bench:random")
    call = dict(prompt="a corgi surfing a wave", num_frames=frames, height=height, width=width)
    call.update(num_inference_steps=steps, guidance_scale=guidance, output_type="latent")
    plain_neg: dict[str, Any] = {"negative_prompt_embeds": tensor.to(device, dtype)}
    if mask is not None:
        plain_neg["negative_prompt_attention_mask"] = mask.to(device)

    def ours() -> dict[str, Any]:
        return {
            "seconds": _time_cuda(lambda: pipe(**call, generator=torch.Generator().manual_seed(0)), device)
        }

    def baseline() -> dict[str, Any]:
        with detached(pipe):
            return {
                "seconds": _time_cuda(
                    lambda: pipe(**call, **plain_neg, generator=torch.Generator().manual_seed(0)), device
                )
            }

    from ..core.specs import load_spec

    attach(pipe, neg, load_spec(kind if kind == "zeroscope" else "ltx-video"))
    settings = apply_memory_preset(pipe, "auto", height=height, width=width, frames=frames, device=device)
    ours()  # warm-up
    results = alternate({"ours": ours, "baseline": baseline}, repeats)
    ours_s = median_of(results["ours"], "seconds")
    floor = steps * tflop_step / tflops
    size = f"{width}x{height}x{frames}, {steps} steps, denoising only (output_type=latent)"
    return [
        Row(f"{kind}_time_vs_diffusers", ours_s, median_of(results["baseline"], "seconds"), "s", 1.02,
            note=f"{size}; memory {settings['preset']}", samples={k: [r["seconds"] for r in v] for k, v in results.items()}),
        Row(f"{kind}_time_vs_floor", ours_s, floor, "s", None,
            note=f"{size}; floor = {steps} x {tflop_step} TFLOP / {tflops:.0f} TFLOP/s measured bf16 matmul"),
    ]  # fmt: skip


def gpu_rows(quick: bool) -> list[Row]:
    if not torch.cuda.is_available():
        raise UsageError("--gpu: no CUDA device here; run it on a GPU machine or leave --gpu out")
    device = torch.device("cuda")
    repeats = 1 if quick else 3
    tflops = matmul_tflops(device)
    rows: list[Row] = []
    for kind in ("zeroscope", "ltx"):
        rows += _gpu_video_rows(kind, device, tflops, repeats)
        torch.cuda.empty_cache()
    rows.append(_gpu_vae_decode(device, repeats))
    torch.cuda.empty_cache()
    rows.append(_gpu_imagereward(device, repeats))
    rows.append(_gpu_trainer(repeats))
    return rows


def _gpu_vae_decode(device: torch.device, repeats: int) -> Row:
    """VAE decode of 24 frames 576x320 (ZeroScope's decode), fp16: low vs off."""
    from ..core.memory import configure_vae

    gpu_vae = sd_vae().to(device, torch.float16)
    latents = torch.randn(24, 4, 40, 72, device=device, dtype=torch.float16)  # 576x320 / 8
    stats: dict[str, list[dict]] = {"low": [], "off": []}

    def decode() -> None:
        gpu_vae.decode(latents)

    for _ in range(repeats):
        for preset in stats:
            configure_vae(gpu_vae, preset)
            with torch.inference_mode(), peak_cuda(device) as peak:
                seconds = _time_cuda(decode, device)
            stats[preset].append({"peak_bytes": peak["bytes"], "seconds": seconds})
    return Row("vae_decode_peak_memory_gpu", median_of(stats["low"], "peak_bytes") / MIB,
               median_of(stats["off"], "peak_bytes") / MIB, "MiB", 0.5, note="SD VAE fp16, 24 frames 576x320",
               extra={"seconds": {k: median_of(v, "seconds") for k, v in stats.items()}})  # fmt: skip


def _gpu_imagereward(device: torch.device, repeats: int) -> Row:
    """ImageReward on 24 frames: batched (ours) vs one frame at a time (the reference's loop structure)."""
    name = "imagereward_24_frames_gpu"
    try:
        from ..rewards.imagereward import (  # type: ignore[import-not-found]
            HEAD_WIDTHS,
            VIT_WIDTH,
            ImageReward,
            ImageRewardModel,
            perturb_,
            text_config_from_med,
            tiny_tokenizer,
            vision_config_official,
        )
    except ImportError:
        return Row(name, None, None, "s", 1.0, "not available", "reneg_video.rewards is not in this checkout")
    med = {"vocab_size": 30524, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
           "num_attention_heads": 12, "max_position_embeddings": 512}  # fmt: skip
    model = ImageRewardModel(vision_config_official(), text_config_from_med(med, VIT_WIDTH), HEAD_WIDTHS)
    reward = ImageReward(perturb_(model, 0).to(device), tiny_tokenizer())
    frames = torch.rand(24, 3, 320, 576, device=device)
    arms = {
        "ours": lambda: {"seconds": _time_cuda(lambda: reward.score_frames(frames, "a cat"), device)},
        "loop": lambda: {"seconds": _time_cuda(lambda: reward.score_frames(frames, "a cat", batch_size=1), device)},
    }  # fmt: skip
    arms["ours"]()
    results = alternate(arms, repeats)
    return Row(name, median_of(results["ours"], "seconds"), median_of(results["loop"], "seconds"), "s", 1.0,
               note="full-size ImageReward, random weights; batched vs frame-by-frame")  # fmt: skip


def _gpu_trainer(repeats: int) -> Row:
    """One trainer step on SD2.1-768 (full-width UNet, 768 px, 10 steps): trainer's way vs the whole chain."""
    cache = Path(tempfile.mkdtemp(prefix="reneg-bench-gpu-"))
    try:
        folder = reduced_sd_folder(cache, 320)  # width 320 x (1,2,4,4) = SD2.1's UNet
        with tempfile.TemporaryDirectory(prefix="reneg-bench-") as tmp:
            (Path(tmp) / "prompts.txt").write_text("a corgi surfing a wave\n")
            params = {"folder": str(folder), "tmp": tmp, "size": 768, "sampling_steps": 10, "cuda": True}
            arms = {w: (lambda w=w: _child_or_oom({**params, "way": w})) for w in ("truncated", "full")}
            results = alternate(arms, repeats)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    full = [r["peak_bytes"] for r in results["full"] if r]
    return Row("trainer_peak_memory_gpu", median_of(results["truncated"], "peak_bytes") / MIB,
               statistics.median(full) / MIB if full else None, "MiB", 0.5,
               note="SD2.1-768 UNet architecture, 768 px, 10 DDIM steps; baseline None = out of memory")  # fmt: skip


def _child_or_oom(params: dict[str, Any]) -> dict[str, Any]:
    try:
        return run_child("trainer", params)
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            return {}
        raise
