"""`python -m shapes_world.commands.eval` (shapes-eval): its help, arm names and refusals."""

from __future__ import annotations

import pytest

from shapes_world import world as W


def test_shapes_eval_help_names_its_arms_and_outputs():
    from shapes_world.commands.eval import build_parser

    text = " ".join(build_parser().format_help().split())
    for needle in ("null-text, handcrafted-negative and ReNeg", "--optimize-neg STEPS", "--optimize-noise STEPS",
                   "--best-of N", "seed..seed+N-1", "heldout, train", "judge only"):  # fmt: skip
        assert needle in text, needle


def test_shapes_eval_arms_of_two_runs_outputs_get_distinct_names():
    from reneg_video.core.errors import UsageError
    from shapes_world.commands.eval import arm_names

    assert arm_names(["a/x.bin"]) == ["reneg"]
    assert arm_names(["a/x.bin", "b/y.bin"]) == ["x", "y"]
    runs = ["runs/direct/negative_embedding.bin", "runs/transfer/negative_embedding.bin", "c/z.bin"]
    assert arm_names(runs) == ["direct/negative_embedding", "transfer/negative_embedding", "z"]
    with pytest.raises(UsageError, match="share a name"):
        arm_names(["a/x.bin", "a/x.bin"])


def test_shapes_eval_refuses_refinement_without_one_embedding(tmp_path, capsys):
    from shapes_world.commands.eval import main

    assert main(["--model", "shapes-t2i", "--best-of", "2", "--out", str(tmp_path / "a")]) == 2
    assert "exactly one --neg" in capsys.readouterr().err
    neg = str(W.weights_root() / W.RENEG_BIN)
    assert (
        main(["--model", "shapes-t2i", "--neg", neg, "--optimize-neg", "11", "--out", str(tmp_path / "b")])
        == 2
    )
    assert "--optimize-neg 11: expected 1..10" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_paired_differences_are_per_prompt_against_null_with_a_bootstrap_interval():
    import numpy as np

    from shapes_world.eval import paired_differences

    null = np.array([0.5, 0.6, 0.7, 0.8])
    per_prompt = {
        "null": {"judge": null, "reward": null},
        "reneg": {"judge": null + np.array([0.1, 0.1, 0.0, 0.2]), "reward": null - 0.05},
        "same": {"judge": null.copy(), "reward": null.copy()},
    }
    d = paired_differences(per_prompt)
    assert set(d) == {"reneg-null (judge)", "reneg-null (reward)", "same-null (judge)", "same-null (reward)"}
    up = d["reneg-null (judge)"]
    assert up["mean"] == pytest.approx(0.1) and 0.0 <= up["low"] < 0.1 < up["high"] <= 0.2
    assert d["reneg-null (reward)"] == pytest.approx({"mean": -0.05, "low": -0.05, "high": -0.05})
    assert d["same-null (judge)"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert paired_differences({"reneg": per_prompt["reneg"]}) == {}  # no null arm, nothing to pair with


def test_v2_pool_script_pools_training_seeds_and_words_the_decision(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    null = [0.80, 0.70, 0.90, 0.60, 0.75, 0.85]
    per_prompt = {
        "null": {"judge": null, "reward": null},
        "handcrafted": {"judge": [x - 0.10 for x in null], "reward": null},
        "seed0": {"judge": [x + 0.05 for x in null], "reward": null},
        "seed1": {"judge": [x + 0.03 for x in null], "reward": null},
    }
    arm = {"failures": {"crisp": 0.25, "shape": 0.5}, "failed_fixable": 0.3}
    report = {
        "model": "shapes-t2v",
        "prompts": 6,
        "seeds": 2,
        "guidance": 2.5,
        "per_prompt": per_prompt,
        "arms": {a: arm for a in per_prompt},
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    script = Path(__file__).resolve().parents[2] / "experiments" / "shapes_v2_pool.py"
    result = subprocess.run(
        [sys.executable, str(script), str(path), "--pool", "seed0,seed1"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    rows = {
        line.split(" | ")[0].strip("| "): line for line in result.stdout.splitlines() if "| judge |" in line
    }
    assert "+0.0400" in rows["reneg-pooled-null"] and "| better |" in rows["reneg-pooled-null"]
    assert "| worse |" in rows["handcrafted-null"]
    assert "0.300" in result.stdout  # the headroom share, read from the report
    bad = subprocess.run(
        [sys.executable, str(script), str(path), "--pool", "seed9"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "seed9" in bad.stderr
