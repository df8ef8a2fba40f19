"""Speed presets: `--speed off|fast|fastest`, built only from mechanisms diffusers (or torch) maintains.

Which mechanism applies depends on the denoiser, and every preset reports what it did and what the model
lacks ("unsupported: ..."), so that the CLI's log line and `--json` show what is really in effect:

- denoisers with diffusers' `CacheMixin` (`enable_cache`; here LTX-Video's transformer) get First Block
  Cache (`diffusers.hooks.FirstBlockCacheConfig`): when the first block's residual barely changes between
  steps, the other blocks' cached residuals are reused. `fast` uses diffusers' default threshold, `fastest`
  a looser one. The step count is unchanged;
- denoisers without it (UNet3D of ZeroScope and the stand-ins, UNet2D of SD, PixArt's transformer): none of
  diffusers' cache hooks target them (First Block Cache, FasterCache, MagCache, SeaCache and TaylorSeer
  need `CacheMixin` and registered transformer blocks; DeepCache-style UNet caching is not in diffusers).
  The maintained route there is a higher-order solver at fewer steps: `DPMSolverMultistepScheduler`
  (DPM-Solver++ 2M, diffusers' default for SD-family models) at 1/2 (`fast`) or 1/4 (`fastest`) of the
  requested steps. Pipelines that run their own sampling loop (VideoCrafter2's lvdm-parity DDIM) take no
  scheduler and are reported as such;
- `fastest` on CUDA also compiles the denoiser's repeated blocks (`compile_repeated_blocks`, diffusers'
  regional `torch.compile`) where the model declares them. Not on CPU: compiling tiny-zeroscope's UNet took
  144 s here for a 0.78x call time (docs/benchmarks.md), which one CLI run never pays back.

`off` changes nothing. The step count a preset asks for is in the settings (`steps_scale`); callers apply it
with `settings_at_speed` (or `scaled_steps` for a bare count).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import replace
from typing import Any, TextIO

from .errors import UsageError
from .memory import denoiser_of
from .settings import Settings

SPEED_PRESETS = ("off", "fast", "fastest")
SPEED_HELP = {
    "off": "diffusers defaults (default)",
    "fast": "LTX: First Block Cache (threshold 0.05); others: DPM-Solver++ 2M at 1/2 of the steps",
    "fastest": "LTX: First Block Cache (0.1); others: DPM-Solver++ 2M at 1/4 of the steps; CUDA: "
    "compile_repeated_blocks",
}
# First Block Cache thresholds: 0.05 is diffusers' default (`FirstBlockCacheConfig.threshold`); ParaAttention,
# where the method comes from, quotes 0.08-0.12 as its fast setting for FLUX: 0.1 is in that range.
FBC_THRESHOLD = {"fast": 0.05, "fastest": 0.1}
# First Block Cache keeps the first block as the probe and needs at least one more block to skip
# (diffusers' apply_first_block_cache pops a head and a tail block).
FBC_MIN_BLOCKS = 2
# Fraction of the requested steps under DPM-Solver++ 2M: 2nd-order multistep reaches at about half the steps
# what DDIM reaches (the DPM-Solver++ paper, arXiv 2211.01095, compares at 10-25 steps); `fastest` halves again.
STEPS_SCALE = {"off": 1.0, "fast": 0.5, "fastest": 0.25}
FAST_SCHEDULER = "DPMSolverMultistepScheduler"

log = logging.getLogger(__name__)


def check_speed(preset: str) -> str:
    """Return `preset` if known, else raise UsageError naming the value and the choices."""
    if preset not in SPEED_PRESETS:
        raise UsageError(f"--speed {preset!r}: unknown preset; expected one of {', '.join(SPEED_PRESETS)}")
    return preset


def scaled_steps(steps: int, settings: dict[str, Any] | None) -> int:
    """The step count to run under the applied preset: `steps` x `steps_scale`, rounded up, at least 1."""
    scale = (settings or {}).get("steps_scale", 1.0)
    return max(1, math.ceil(steps * scale))


def settings_at_speed(settings: Settings, speed: dict[str, Any], stream: TextIO | None = None) -> Settings:
    """`settings` at the step count the applied preset `speed` (a `pipe.reneg_speed`) runs, logged as one line
    with the preset on `stream` (default stderr, the CLIs' log): `speed: preset=fast ... steps=8->4`."""
    steps = scaled_steps(settings.steps, speed)
    print(f"speed: {describe_speed(speed)} steps={settings.steps}->{steps}", file=stream or sys.stderr)
    return replace(settings, steps=steps)


def _blocks(denoiser) -> int:
    blocks = getattr(denoiser, "transformer_blocks", None)
    return len(blocks) if blocks is not None else 0


def _apply_cache(denoiser, preset: str) -> str:
    from diffusers.hooks import FirstBlockCacheConfig

    name = type(denoiser).__name__
    if _blocks(denoiser) < FBC_MIN_BLOCKS:
        return (
            f"unsupported: {name} has {_blocks(denoiser)} transformer block(s); First Block Cache needs "
            f"at least {FBC_MIN_BLOCKS}"
        )
    if denoiser.is_cache_enabled:
        denoiser.disable_cache()
    threshold = FBC_THRESHOLD[preset]
    denoiser.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    return f"FirstBlockCache(threshold={threshold})"


def _apply_scheduler(pipe, preset: str) -> tuple[str | bool, float]:
    """DPM-Solver++ 2M in place of the pipeline's scheduler; returns (what was done, steps scale)."""
    import diffusers

    if not type(pipe).__module__.startswith("diffusers."):
        return (
            f"unsupported: {type(pipe).__name__} runs its own sampling loop, no scheduler swap; steps unchanged",
            1.0,
        )
    current = type(pipe.scheduler).__name__
    if current in ("FlowMatchEulerDiscreteScheduler",):
        return f"unsupported: {current} (flow matching) has no DPM-Solver++ replacement here", 1.0
    if current != FAST_SCHEDULER:
        # from_config keeps the model's betas, timestep spacing and prediction type (epsilon or v).
        pipe.scheduler = getattr(diffusers, FAST_SCHEDULER).from_config(pipe.scheduler.config)
        return f"{FAST_SCHEDULER} (was {current})", STEPS_SCALE[preset]
    return f"{FAST_SCHEDULER} (already the model's)", STEPS_SCALE[preset]


def _apply_compile(denoiser, preset: str, device) -> str | bool:
    if preset != "fastest":
        return False
    name = type(denoiser).__name__
    if device.type != "cuda":
        return f"not applied on {device.type}: CUDA only (compile time exceeds the gain of one CPU run)"
    if not getattr(denoiser, "_repeated_blocks", None):
        return f"unsupported: {name} declares no _repeated_blocks for compile_repeated_blocks"
    denoiser.compile_repeated_blocks(fullgraph=True)
    return f"compile_repeated_blocks({', '.join(denoiser._repeated_blocks)})"


def apply_speed_preset(pipe, preset: str, *, device=None) -> dict[str, Any]:
    """Apply a speed preset to a freshly loaded diffusers pipeline; return the effective settings.

    Returns a dict: `preset`, `device`, `cache` (the cache hook, False, or "unsupported: ..."), `scheduler`
    (the solver swapped in, False, or "unsupported: ..."), `steps_scale` (apply with `scaled_steps`) and
    `compile`. Also kept as `pipe.reneg_speed`.
    """
    import torch

    check_speed(preset)
    device = torch.device(device) if device is not None else getattr(pipe, "device", torch.device("cpu"))
    settings: dict[str, Any] = {"preset": preset, "device": str(device)}
    denoiser = denoiser_of(pipe)
    name = type(denoiser).__name__
    if preset == "off":
        settings.update(cache=False, scheduler=False, steps_scale=1.0, compile=False)
    elif hasattr(denoiser, "enable_cache"):
        settings["cache"] = _apply_cache(denoiser, preset)
        settings["scheduler"] = False
        settings["steps_scale"] = 1.0
    else:
        settings["cache"] = (
            f"unsupported: {name} is not a diffusers CacheMixin model (no enable_cache); no diffusers "
            "cache hook targets it"
        )
        settings["scheduler"], settings["steps_scale"] = _apply_scheduler(pipe, preset)
    if preset != "off":
        settings["compile"] = _apply_compile(denoiser, preset, device)
    pipe.reneg_speed = settings
    log.info("speed: %s", describe_speed(settings))
    return settings


def describe_speed(settings: dict[str, Any]) -> str:
    """One line for logs: `preset=fast cache=... scheduler=... steps_scale=0.5 compile=False`."""
    rest = " ".join(f"{k}={v}" for k, v in settings.items() if k not in ("preset", "device"))
    return f"preset={settings['preset']} device={settings.get('device')} {rest}"
