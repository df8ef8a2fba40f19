"""`python -m reneg_video.bench [--json PATH] [--gpu] [--quick] [--only NAME] [--plot PNG]`: ours vs baseline.

Every row pairs our way with a baseline, measured ALTERNATELY (ours, baseline, ours, baseline, ...) in one
run, repeated, and reports medians: other load on a shared machine hits both arms alike. ratio = ours /
baseline, lower is better; each row carries its goal.

Peak memory on CPU is the peak resident memory (RSS) above the footprint just before the measured call, in a
FRESH child process per arm (so no arm inherits another's allocator state): the child builds its models,
reads VmRSS, resets the peak with `echo 5 > /proc/self/clear_refs` (Linux >= 4.0) and reads VmHWM after the
call. Where the reset is refused, a thread samples VmRSS every `RSS_SAMPLE_S` seconds instead (the row says
which). On GPU: `torch.cuda.max_memory_allocated` above `memory_allocated` before the call.

CPU rows (goals from issue 6):
- adapter_overhead: `attach()` + a call vs a plain diffusers call given the same `negative_prompt_embeds`
  (tiny-zeroscope, same seed and steps): time, goal <= 1.02.
- vae_decode_peak_memory: the SD VAE architecture (random weights) decoding 8 frames of 256x256, preset
  `low` vs `off`: peak memory, goal <= 0.5. The other presets are measured too, for the plot.
- frame_scoring_time: 16 frames, `reneg_video.rewards` ImageReward vs image-reward 1.5's loop, through the
  reward branch's `scripts/parity_imagereward.py` (which builds the reference in a side dir): goal <= 1.0.
  "not available" when `reneg_video.rewards` or that script or its inputs are absent.
- trainer_peak_memory: one training step on an SD-architecture UNet at reduced width, 256 px, 10 DDIM
  steps: the trainer's way (`Trainer.loss_and_reward`: truncated backprop through the last step, gradient
  checkpointing) vs backprop through the whole sampling chain; the reward is mean brightness (a tiny
  differentiable stand-in defined here): peak memory, goal <= 0.5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ReNegError, UsageError

RSS_SAMPLE_S = 0.005
MIB = 2**20
# ZeroScope's and LTX-2B's compute per CFG step at their default sizes (FACTS.md: model facts).
ZEROSCOPE_TFLOP_PER_STEP = 42.8
LTX_TFLOP_PER_STEP = 58.2
# A bf16 matmul this large runs at (close to) the device's sustained tensor-core throughput.
MATMUL_SIZE = 8192
REPO_ROOT = Path(__file__).resolve().parent.parent
PARITY_SCRIPT = REPO_ROOT / "scripts" / "parity_imagereward.py"
NOT_MEASURED = "not yet measured"


@dataclass
class Row:
    """One line of the table: ours vs baseline (medians), ratio = ours / baseline (lower is better)."""

    name: str
    ours: float | None
    baseline: float | None
    unit: str
    goal: float | None = None
    status: str = "measured"
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.baseline:
            return None
        return self.ours / self.baseline

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["meets_goal"] = None if self.ratio is None or self.goal is None else self.ratio <= self.goal
        return d


# --- measuring ------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def peak_rss() -> Iterator[dict[str, Any]]:
    """Measure the peak RSS above the footprint at entry; fills `bytes` and `method` on exit."""
    result: dict[str, Any] = {}
    before = _status_kib("VmRSS") * 1024
    if _reset_peak():
        result["method"] = "VmHWM after clear_refs reset"
        yield result
        peak = _status_kib("VmHWM") * 1024
    else:
        result["method"] = f"VmRSS sampled every {RSS_SAMPLE_S * 1000:.0f} ms"
        stop = threading.Event()
        samples = [before]

        def sample() -> None:
            while not stop.is_set():
                samples.append(_status_kib("VmRSS") * 1024)
                stop.wait(RSS_SAMPLE_S)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield result
        finally:
            stop.set()
            thread.join()
        peak = max(*samples, _status_kib("VmRSS") * 1024)
    result["bytes"] = peak - before
    result["before"] = before


@contextlib.contextmanager
def peak_cuda(device: torch.device) -> Iterator[dict[str, Any]]:
    result: dict[str, Any] = {"method": "torch.cuda.max_memory_allocated"}
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    yield result
    torch.cuda.synchronize(device)
    result["bytes"] = torch.cuda.max_memory_allocated(device) - before
    result["before"] = before


def alternate(arms: dict[str, Callable[[], dict[str, Any]]], repeats: int) -> dict[str, list[dict]]:
    """Run the arms in turn, `repeats` rounds (ours, baseline, ours, baseline, ...)."""
    results: dict[str, list[dict]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, arm in arms.items():
            results[name].append(arm())
    return results


def median_of(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def run_child(arm: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one measured arm in a fresh interpreter; it prints one JSON line last."""
    cmd = [sys.executable, "-m", "reneg_video.bench", "--_arm", arm, "--_params", json.dumps(params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"bench arm {arm} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- child arms (run in a fresh process) -------------------------------------------------------------------


def sd_vae(sample_size: int = 512):
    """The SD VAE architecture (AutoencoderKL, 83.7 M params) with seeded random weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sample_size,
    ).eval()


def arm_vae_decode(params: dict[str, Any]) -> dict[str, Any]:
    from .memory import configure_vae

    vae = sd_vae()
    settings = configure_vae(vae, params["preset"])
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(
        params["frames"],
        vae.config.latent_channels,
        params["height"] // factor,
        params["width"] // factor,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.inference_mode(), peak_rss() as peak:
        start = time.perf_counter()
        vae.decode(latents)
        seconds = time.perf_counter() - start
    return {"peak_bytes": peak["bytes"], "method": peak["method"], "seconds": seconds, "settings": settings}


class Brightness:
    """A tiny differentiable reward for the trainer row: mean brightness of each frame (no model)."""

    name = "brightness"

    def score_frames(self, frames: torch.Tensor, prompt: str) -> torch.Tensor:
        return frames.mean(dim=(1, 2, 3))


def reduced_sd_folder(cache: Path, width: int) -> Path:
    """A StableDiffusionPipeline folder: tiny-sd21's text encoder and VAE, an SD2.1-architecture UNet at
    reduced width (block_out_channels width x (1, 2, 4, 4), 2 layers per block, 32-dim heads)."""
    folder = cache / f"bench-sd-reduced-{width}-v1"
    if (folder / "model_index.json").exists():
        return folder
    from diffusers import UNet2DConditionModel

    from .atomic import atomic_dir
    from .pipeline import load_pipeline

    pipe = load_pipeline("tiny-sd21", device="cpu")
    torch.manual_seed(0)
    channels = tuple(width * m for m in (1, 2, 4, 4))
    pipe.unet = UNet2DConditionModel(
        sample_size=32,
        block_out_channels=channels,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024,
        attention_head_dim=tuple(c // 32 for c in channels),  # diffusers' name for the head COUNT
        use_linear_projection=True,  # SD2.x
        upcast_attention=True,  # SD2.1
    )
    pipe.register_modules(unet=pipe.unet)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder


def _trainer(params: dict[str, Any], checkpointing: bool):
    from .train import Trainer
    from .train_config import TrainConfig

    tmp = Path(params["tmp"])
    prompts = tmp / "prompts.txt"
    config = TrainConfig(
        model=params["folder"],
        prompts_file=str(prompts),
        out=str(tmp / f"run-{os.getpid()}"),
        val_prompts=0,
        steps=1,
        batch_size=1,
        sampling_steps=params["sampling_steps"],
        grad_step_min=0,
        grad_step_max=0,  # the last step takes the gradient: both arms compute the same x0
        height=params["size"],
        width=params["size"],
        gradient_checkpointing=checkpointing,
        checkpoint_every=0,
        cpu=not params.get("cuda", False),
    )
    return Trainer(config, reward=Brightness())


def full_chain_loss(trainer) -> torch.Tensor:
    """The baseline: the same sampling chain with gradient through EVERY step (no truncation), the same x0
    prediction at the last step, decode and loss. Bench-only: the trainer itself never does this."""
    from .train import REFL_MARGIN

    bb = trainer.backbone
    indices = trainer.sample_indices(0, 0)
    prompts = [trainer._prompt_for(i) for i in indices]
    pos, pos_mask = bb.encode(prompts)
    latents = bb.noise(indices, trainer.config.seed)
    neg = trainer.model()
    timesteps = bb.scheduler.timesteps
    for t in timesteps[:-1]:
        latents = bb.step(bb.guided(latents, t, neg, None, pos, pos_mask), t, latents).prev_sample
    t = timesteps[-1]
    x0 = bb.step(bb.guided(latents, t, neg, None, pos, pos_mask), t, latents).pred_original_sample
    frames = bb.decode(x0, [bb.frame_indices(i, trainer.config.seed) for i in indices])
    rewards = torch.stack(
        [trainer.reward.score_frames(f, p).mean() for f, p in zip(frames, prompts, strict=True)]
    )
    return torch.relu(REFL_MARGIN - rewards).mean()


def arm_trainer(params: dict[str, Any]) -> dict[str, Any]:
    truncated = params["way"] == "truncated"
    trainer = _trainer(params, checkpointing=truncated)
    cuda = params.get("cuda", False)
    meter = peak_cuda(trainer.backbone.device) if cuda else peak_rss()
    with meter as peak:
        start = time.perf_counter()
        if truncated:
            grad_index = trainer.grad_step_index(0)
            loss, _ = trainer.loss_and_reward(trainer.sample_indices(0, 0), grad_index)
        else:
            loss = full_chain_loss(trainer)
        trainer.accelerator.backward(loss)
        grad = trainer.accelerator.unwrap_model(trainer.model).embedding.grad
        seconds = time.perf_counter() - start
    return {
        "peak_bytes": peak["bytes"],
        "method": peak["method"],
        "seconds": seconds,
        "loss": float(loss),
        "grad_norm": float(grad.norm()),
    }


ARMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "vae_decode": arm_vae_decode,
    "trainer": arm_trainer,
}


# --- CPU rows ----------------------------------------------------------------------------------------------


def row_adapter_overhead(quick: bool) -> Row:
    """attach() + call vs a plain diffusers call given the same negative_prompt_embeds."""
    from .embedding import NegativeEmbedding
    from .encoders import OPENCLIP_H
    from .inject import attach, detached
    from .pipeline import load_pipeline

    frames, size, steps, repeats = (2, 32, 1, 1) if quick else (8, 64, 4, 5)
    pipe = load_pipeline("tiny-zeroscope", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    tensor = torch.randn(1, 77, OPENCLIP_H.width, generator=torch.Generator().manual_seed(1))
    neg = NegativeEmbedding(tensor=tensor, mask=None, family=OPENCLIP_H, source="bench:random")
    attach(pipe, neg)
    call = dict(prompt="a corgi surfing a wave", num_frames=frames, height=size, width=size)
    call.update(num_inference_steps=steps, guidance_scale=9.0, output_type="np")
    outputs: dict[str, Any] = {}

    def ours() -> dict[str, Any]:
        start = time.perf_counter()
        out = pipe(**call, generator=torch.Generator("cpu").manual_seed(7)).frames[0]
        outputs["ours"] = out
        return {"seconds": time.perf_counter() - start}

    def baseline() -> dict[str, Any]:
        with detached(pipe):
            start = time.perf_counter()
            out = pipe(
                **call, negative_prompt_embeds=tensor, generator=torch.Generator("cpu").manual_seed(7)
            ).frames[0]
            seconds = time.perf_counter() - start
        outputs["baseline"] = out
        return {"seconds": seconds}

    ours(), baseline()  # warm-up: first calls pay one-time allocations and kernel selection
    results = alternate({"ours": ours, "baseline": baseline}, repeats)
    diff = float(abs(outputs["ours"] - outputs["baseline"]).max())
    return Row(
        "adapter_overhead",
        median_of(results["ours"], "seconds"),
        median_of(results["baseline"], "seconds"),
        "s",
        goal=1.02,
        note=f"tiny-zeroscope {frames}x{size}x{size}, {steps} steps, median of {repeats} alternated calls "
        f"after a warm-up; outputs max |diff| {diff:.2e}",
        samples={k: [r["seconds"] for r in v] for k, v in results.items()},
        extra={"max_abs_diff": diff},
    )


def row_vae_decode(quick: bool, all_presets: bool) -> tuple[Row, dict[str, dict[str, float]]]:
    """SD VAE decode of 8 frames 256x256: preset low vs off; with `all_presets` (--plot) also the others."""
    # 2 repeats: one decode of 8 frames takes 1-4 min on the shared 2 cores; its peak varies by ~10 %.
    frames, size, repeats = (2, 64, 1) if quick else (8, 256, 2)
    params = {"frames": frames, "height": size, "width": size}
    arms = {p: (lambda p=p: run_child("vae_decode", {**params, "preset": p})) for p in ("low", "off")}
    results = alternate(arms, repeats)
    # The other presets, once each, for the per-preset plot (each decode of 8 frames takes ~0.5 min here).
    plot_only = ("balanced", "minimal") if all_presets else ()
    results.update(
        alternate({p: (lambda p=p: run_child("vae_decode", {**params, "preset": p})) for p in plot_only}, 1)
    )
    presets = ("off", "balanced", "low", "minimal") if plot_only else ("off", "low")
    per_preset = {
        p: {
            "peak_mib": median_of(results[p], "peak_bytes") / MIB,
            "seconds": median_of(results[p], "seconds"),
        }
        for p in presets
    }
    row = Row(
        "vae_decode_peak_memory",
        per_preset["low"]["peak_mib"],
        per_preset["off"]["peak_mib"],
        "MiB",
        goal=0.5,
        note=f"SD VAE architecture, random weights, {frames} frames {size}x{size}, low (slicing+tiling) vs off; "
        f"fresh process per arm, {results['low'][0]['method']}, median of {repeats}"
        f"{' (balanced and minimal once each, for the plot)' if plot_only else ''}; tiling engages only "
        "above 512 px (64 latents), so at this size low decodes like balanced",
        samples={p: [r["peak_bytes"] / MIB for r in results[p]] for p in presets},
        extra={"presets": per_preset, "seconds": {p: v["seconds"] for p, v in per_preset.items()}},
    )
    return row, per_preset


def row_frame_scoring(quick: bool) -> Row:
    """16 frames: reneg_video.rewards' ImageReward vs image-reward 1.5's loop (the reward branch's script)."""
    name, unit, goal = "frame_scoring_time", "s", 1.0
    if quick:
        return Row(
            name, None, None, unit, goal, "skipped", "not run with --quick (it builds 2 x 447 M params)"
        )
    try:
        import reneg_video.rewards  # noqa: F401  (lazy: merged from the reward branch)
    except ImportError:
        return Row(
            name, None, None, unit, goal, "not available", "reneg_video.rewards is not in this checkout"
        )
    if not PARITY_SCRIPT.is_file():
        return Row(name, None, None, unit, goal, "not available", f"{PARITY_SCRIPT} is not in this checkout")
    with tempfile.TemporaryDirectory(prefix="reneg-bench-") as tmp:
        out = Path(tmp) / "parity.json"
        cmd = [sys.executable, str(PARITY_SCRIPT), "--frames", "16", "--repeats", "3", "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
        if proc.returncode != 0 or not out.is_file():
            why = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            return Row(name, None, None, unit, goal, "not available", f"parity script failed: {why[0]}")
        data = json.loads(out.read_text())
    try:
        ours, ref = float(data["ours_median_s"]), float(data["reference_median_s"])
    except (KeyError, TypeError, ValueError):
        return Row(
            name, None, None, unit, goal, "not available", f"parity JSON lacks medians: {sorted(data)}"
        )
    return Row(
        name,
        ours,
        ref,
        unit,
        goal,
        note="16 frames, scripts/parity_imagereward.py (reference in its side dir, interleaved, median of 3)",
        samples={"ours": data.get("ours_times_s", []), "baseline": data.get("reference_times_s", [])},
        extra={k: data.get(k) for k in ("max_abs_diff", "batch_size", "threads")},
    )


def row_trainer(quick: bool, cache: Path) -> Row:
    """One training step: truncated backprop + checkpointing (Trainer) vs backprop through the whole chain."""
    width, size, steps, repeats = (32, 64, 3, 1) if quick else (64, 256, 10, 2)
    folder = reduced_sd_folder(cache, width)
    with tempfile.TemporaryDirectory(prefix="reneg-bench-") as tmp:
        (Path(tmp) / "prompts.txt").write_text("a corgi surfing a wave\n")
        params = {"folder": str(folder), "tmp": tmp, "size": size, "sampling_steps": steps}
        arms = {
            way: (lambda way=way: run_child("trainer", {**params, "way": way}))
            for way in ("truncated", "full")
        }
        results = alternate(arms, repeats)
    return Row(
        "trainer_peak_memory",
        median_of(results["truncated"], "peak_bytes") / MIB,
        median_of(results["full"], "peak_bytes") / MIB,
        "MiB",
        goal=0.5,
        note=f"SD2.1-architecture UNet at width {width} (x1,2,4,4), {size} px, {steps} DDIM steps, batch 1, "
        "reward = mean brightness (a bench stand-in); Trainer.loss_and_reward with gradient checkpointing vs "
        f"backprop through all steps; fresh process per arm, {results['full'][0]['method']}, "
        f"median of {repeats}",
        samples={k: [r["peak_bytes"] / MIB for r in v] for k, v in results.items()},
        extra={
            "seconds": {k: median_of(v, "seconds") for k, v in results.items()},
            "grad_norm": {k: v[0]["grad_norm"] for k, v in results.items()},
        },
    )


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


def _gpu_video_rows(kind: str, device: torch.device, tflops: float, repeats: int) -> list[Row]:
    """Ours (attach + memory auto) vs plain diffusers defaults, and ours vs the compute floor."""
    from .embedding import NegativeEmbedding
    from .encoders import OPENCLIP_H, T5_XXL
    from .inject import attach, detached
    from .memory import apply_memory_preset

    dtype = torch.float16 if kind == "zeroscope" else torch.bfloat16
    if kind == "zeroscope":
        from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

        from .standins import _ddim, clip_tokenizer, text_encoder

        family, tokens, tflop_step = OPENCLIP_H, 77, ZEROSCOPE_TFLOP_PER_STEP
        frames, height, width, steps, guidance = 24, 320, 576, 40, 9.0
        tok = clip_tokenizer()
        unet = UNet3DConditionModel(sample_size=32, cross_attention_dim=1024)  # ZeroScope v2 576w
        pipe = TextToVideoSDPipeline(
            vae=sd_vae(),
            text_encoder=text_encoder(family, len(tok)),
            tokenizer=tok,
            unet=unet,
            scheduler=_ddim(),
        )
    else:
        from diffusers import (
            AutoencoderKLLTXVideo,
            FlowMatchEulerDiscreteScheduler,
            LTXPipeline,
            LTXVideoTransformer3DModel,
        )

        from .standins import t5_tokenizer, text_encoder

        family, tokens, tflop_step = T5_XXL, 128, LTX_TFLOP_PER_STEP
        frames, height, width, steps, guidance = 121, 512, 768, 50, 3.0
        tok = t5_tokenizer()
        pipe = LTXPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=AutoencoderKLLTXVideo(),  # the class defaults are LTX-Video's VAE
            text_encoder=text_encoder(family, len(tok)),
            tokenizer=tok,
            transformer=LTXVideoTransformer3DModel(),  # the class defaults are LTX-Video 2B
        )
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
        plain_neg["negative_prompt_embeds"] = tensor.to(device, dtype)
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

    from .specs import load_spec

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
    from .memory import configure_vae

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
        from .rewards.imagereward import (  # type: ignore[import-not-found]
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


# --- report ------------------------------------------------------------------------------------------------


def format_table(rows: list[Row]) -> str:
    head = f"{'name':28s} {'ours':>10s} {'baseline':>10s} {'ratio':>7s} {'goal':>7s} {'unit':5s} status"
    lines = [head, "-" * len(head)]
    for r in rows:

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:10.3f}" if abs(v) < 100 else f"{v:10.1f}"

        ratio = "-" if r.ratio is None else f"{r.ratio:7.3f}"
        goal = "-" if r.goal is None else f"<={r.goal:g}"
        verdict = r.status
        if r.ratio is not None and r.goal is not None:
            verdict = "meets goal" if r.ratio <= r.goal else "MISSES goal"
        lines.append(
            f"{r.name:28s} {num(r.ours):>10s} {num(r.baseline):>10s} {ratio:>7s} {goal:>7s} {r.unit:5s} {verdict}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import diffusers

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def plot(presets: dict[str, dict[str, float]], path: Path, title: str) -> None:
    """Bars of peak memory and time per preset (VAE decode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

    names = [p for p in ("off", "balanced", "low", "minimal") if p in presets]
    fig, (mem_ax, time_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    mem_ax.bar(names, [presets[p]["peak_mib"] for p in names], color="#4477aa")
    mem_ax.set_ylabel("peak RSS above footprint (MiB)")
    time_ax.bar(names, [presets[p]["seconds"] for p in names], color="#ee6677")
    time_ax.set_ylabel("decode time (s)")
    for ax in (mem_ax, time_ax):
        ax.set_xlabel("--memory preset")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    from .cli import _Parser

    p = _Parser(
        prog="python -m reneg_video.bench",
        description="Benchmarks, ours vs baseline, alternated and repeated; medians; ratio = ours / baseline.",
    )
    p.add_argument("--json", metavar="PATH", help="write {'rows': [...], 'machine': ...} here")
    p.add_argument("--gpu", action="store_true", help="the GPU rows (needs CUDA)")
    p.add_argument("--quick", action="store_true", help="a reduced suite at tiny sizes (tests, smoke runs)")
    p.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only these rows (repeatable)"
    )
    p.add_argument("--plot", metavar="PNG", help="write the VAE-decode-per-preset plot here")
    p.add_argument("--_arm", help=argparse.SUPPRESS)
    p.add_argument("--_params", help=argparse.SUPPRESS)
    return p


CPU_ROWS = ("adapter_overhead", "vae_decode_peak_memory", "frame_scoring_time", "trainer_peak_memory")


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._arm:
        print(json.dumps(ARMS[args._arm](json.loads(args._params))))
        return 0
    for name in args.only:
        if name not in CPU_ROWS:
            raise UsageError(f"--only {name!r}: unknown row; expected one of {', '.join(CPU_ROWS)}")
    for flag, value, suffix in (("--json", args.json, ".json"), ("--plot", args.plot, ".png")):
        if value and (Path(value).suffix != suffix or not Path(value).resolve().parent.is_dir()):
            raise UsageError(f"{flag} {value}: expected a {suffix} path in an existing folder")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    wanted = set(args.only or CPU_ROWS)
    cache = Path(os.environ.get("RENEG_VIDEO_CACHE") or Path("~/.cache/reneg-video").expanduser())
    started = time.perf_counter()
    rows: list[Row] = []
    presets = None
    for name in CPU_ROWS:
        if name not in wanted:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        if name == "adapter_overhead":
            rows.append(row_adapter_overhead(args.quick))
        elif name == "vae_decode_peak_memory":
            row, presets = row_vae_decode(args.quick, all_presets=bool(args.plot))
            rows.append(row)
        elif name == "frame_scoring_time":
            rows.append(row_frame_scoring(args.quick))
        elif name == "trainer_peak_memory":
            rows.append(row_trainer(args.quick, cache))
    if args.gpu:
        rows += gpu_rows(args.quick)
    seconds = time.perf_counter() - started
    print(format_table(rows))
    for r in rows:
        if r.note:
            print(f"  {r.name}: {r.note}")
    print(f"total {seconds:.0f} s")
    if args.plot and presets:
        plot(presets, Path(args.plot), "SD VAE decode, 8 frames 256x256, CPU (median per preset)")
    if args.json:
        from .atomic import atomic_path

        doc = {
            "rows": [r.as_dict() for r in rows],
            "machine": machine(),
            "quick": args.quick,
            "seconds": round(seconds, 1),
            "command": "python -m reneg_video.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except ReNegError as exc:
        print(f"reneg-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
