"""`python -m reneg_video.bench --quick --json`: a reduced suite that writes the documented JSON shape.

No timed assertions: the figures depend on the machine; only the shape and the arms' agreement are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reneg_video.bench import CPU_ROWS, Row, format_table, main, peak_rss

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_suite_writes_the_json_shape(tmp_path, standin_cache):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RENEG_VIDEO_CACHE": str(standin_cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "reneg_video.bench", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert [row["name"] for row in doc["rows"]] == list(CPU_ROWS)
    for row in doc["rows"]:
        assert {"name", "ours", "baseline", "ratio", "unit"} <= set(row)
        if row["status"] == "measured":
            assert row["ours"] > 0 and row["baseline"] > 0
            assert row["ratio"] == pytest.approx(row["ours"] / row["baseline"])
    rows = {row["name"]: row for row in doc["rows"]}
    assert rows["adapter_overhead"]["extra"]["max_abs_diff"] == 0.0  # attach == plain call with the embeds
    assert rows["frame_scoring_time"]["status"] == "skipped"
    grads = rows["trainer_peak_memory"]["extra"]["grad_norm"]
    assert grads["truncated"] > 0 and grads["full"] > 0
    calls = rows["speed_fast_time"]["extra"]["denoiser_calls"]
    assert calls["fast"] * 2 == calls["off"]  # DPM-Solver++ at half the steps
    quality = rows["speed_quality"]["extra"]
    assert quality["fast"]["denoiser_flops_saved"] > 0 and quality["fastest"]["denoiser_calls"] >= 1
    validate = rows["validate_per_video"]
    assert validate["status"] == "measured" and validate["extra"]["videos_per_validation"] == 6  # 2 x 1 x 3
    assert "adapter_overhead" in proc.stdout and "ratio" in proc.stdout  # the readable table


def test_peak_rss_sees_an_allocation():
    with peak_rss() as peak:
        block = bytearray(64 * 2**20)
        block[::4096] = b"\1" * len(block[::4096])
    del block
    assert peak["bytes"] >= 60 * 2**20 and peak["method"]


def test_table_marks_goals_and_missing_rows():
    rows = [Row("a", 1.0, 2.0, "s", goal=1.0), Row("b", None, None, "s", 1.0, "not available", "why")]
    table = format_table(rows)
    assert "meets goal" in table and "not available" in table
    assert rows[0].as_dict()["ratio"] == 0.5 and rows[1].as_dict()["ratio"] is None


def test_bad_row_name_exits_2(capsys):
    assert main(["--only", "nope"]) == 2
    assert "--only 'nope'" in capsys.readouterr().err
