"""Benchmarks, ours vs baseline side by side in one run (`python -m reneg_video.bench`).

Split by what they measure: `memory` (VAE decode, trainer), `speed` (adapter overhead, frame scoring),
`gpu` (full-size rows on CUDA); `harness` measures and reports, `cli` runs them.
"""

from .cli import CPU_ROWS, main, run
from .harness import Row, format_table, peak_rss

__all__ = ["CPU_ROWS", "Row", "format_table", "main", "peak_rss", "run"]
