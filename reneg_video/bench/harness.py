"""Measuring: rows of ours vs baseline, alternation, peak memory (RSS or CUDA), child processes, reports."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

RSS_SAMPLE_S = 0.005
MIB = 2**20
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

    from ..core.atomic import atomic_path

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
