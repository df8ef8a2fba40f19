"""The export stage's guidance sweep (shapes_world/build/sweep.py, issue 29 item 3): the choice rule, the
paired subset, the spec rewrite `reneg-build-shapes --install` makes, and a reduced build's export that
records the sweep."""

from __future__ import annotations

import json
import shutil

import pytest
import tomllib
import torch

from reneg_video.core.errors import UsageError
from shapes_world import plugin
from shapes_world import world as W
from shapes_world.build.common import BuildConfig
from shapes_world.build.sweep import (
    SWEEP_GUIDANCES,
    SWEEP_SEEDS,
    choose_guidance,
    held_out_prompts,
    sweep_rows,
)
from shapes_world.commands.build import build_parser, install, set_spec_guidance

SPECS = W.weights_root().parent / plugin.SPECS_DIR


def _table(pairs):
    return [{"guidance": g, "accuracy": a, "passed": 0.0} for g, a in pairs]


def test_the_choice_is_the_highest_accuracy_and_ties_go_to_the_lower_guidance():
    assert choose_guidance(_table([(1.5, 0.70), (2.0, 0.74), (2.5, 0.81), (3.5, 0.78), (5.0, 0.80)])) == 2.5
    tied = _table([(1.5, 0.70), (2.0, 0.80), (2.5, 0.79), (3.5, 0.80), (5.0, 0.80 - 1e-12), (7.5, 0.6)])
    assert choose_guidance(tied) == 2.0
    assert choose_guidance(tied[::-1]) == 2.0  # the rule, not the row order
    assert choose_guidance(_table([(7.5, 0.9), (1.5, 0.2)])) == 7.5  # no pull to low values otherwise
    with pytest.raises(ValueError):
        choose_guidance([])


def test_the_grid_holds_the_previous_fixed_values_and_guides():
    cfg = BuildConfig()
    assert cfg.eval_guidance in SWEEP_GUIDANCES and cfg.eval_guidance_t2v in SWEEP_GUIDANCES
    assert list(SWEEP_GUIDANCES) == sorted(set(SWEEP_GUIDANCES)) and min(SWEEP_GUIDANCES) > 1.0


def test_the_sweep_subset_is_held_out_scaled_and_not_the_judge_seeds():
    full, quick = BuildConfig(), BuildConfig.quick()
    for cfg, sizes in ((full, {"t2i": 40, "t2v": 12}), (quick, {"t2i": 8, "t2v": 2})):
        for name, n in sizes.items():
            prompts, seeds = sweep_rows(cfg, name)
            assert prompts == [p for p in held_out_prompts(n) for _ in SWEEP_SEEDS]
            assert set(seeds) == set(SWEEP_SEEDS) and not set(seeds) & set(range(cfg.eval_seeds))
            assert prompts == held_out_prompts(cfg.eval_prompts)[: len(prompts)]  # the judge's own prompts


def _spec_copy(tmp_path, name="shapes-t2i.toml"):
    path = tmp_path / name
    shutil.copy(SPECS / name, path)
    return path


def test_the_spec_rewrite_changes_only_the_guidance_line(tmp_path):
    for name in ("shapes-t2i.toml", "shapes-t2v.toml"):
        path = _spec_copy(tmp_path, name)
        before = path.read_text()
        old = tomllib.loads(before)["defaults"]["guidance"]
        assert set_spec_guidance(path, 3.5) == (old, 3.5)
        after = path.read_text()
        changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
        assert changed == [(f"guidance = {old}", "guidance = 3.5")]
        assert after.count("\n") == before.count("\n") and "# " in after  # comments kept
        parsed, original = tomllib.loads(after), tomllib.loads(before)
        original["defaults"]["guidance"] = 3.5
        assert parsed == original


def test_the_spec_rewrite_keeps_a_trailing_comment_and_reads_only_defaults(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[other]\nguidance = 9.0\n[defaults]\nsteps = 20\nguidance = 5.0  # chosen\n[rules]\n")
    assert set_spec_guidance(path, 2.0) == (5.0, 2.0)
    assert (
        path.read_text()
        == "[other]\nguidance = 9.0\n[defaults]\nsteps = 20\nguidance = 2.0  # chosen\n[rules]\n"
    )
    path.write_text("[defaults]\nsteps = 20\n")
    with pytest.raises(UsageError, match="found 0"):
        set_spec_guidance(path, 2.0)


def test_the_spec_rewrite_is_atomic(tmp_path, monkeypatch):
    path = _spec_copy(tmp_path)
    before, inode = path.read_bytes(), path.stat().st_ino

    def fail(*_args):
        raise OSError("killed before the rename")

    with monkeypatch.context() as m:
        m.setattr("reneg_video.core.atomic.os.replace", fail)
        with pytest.raises(OSError, match="killed"):
            set_spec_guidance(path, 3.5)
    assert path.read_bytes() == before  # the old spec whole, and no partial file beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    set_spec_guidance(path, 3.5)
    assert path.stat().st_ino != inode  # a new file renamed over the old one, never written in place
    inode = path.stat().st_ino
    set_spec_guidance(path, 3.5)  # the same value: nothing written
    assert path.stat().st_ino == inode


def _package(tmp_path, monkeypatch, sweep):
    """A copy of the package's weights and specs under tmp_path, and an export whose stage.json records
    `sweep` (the generators' folders are the shipped ones, each with its shared parts)."""
    from tests.shapes_world.test_plugin import _full_export

    export = _full_export(tmp_path)
    (export / "stage.json").write_text(json.dumps({"judge": {}, "guidance_sweep": sweep}) + "\n")
    specs = tmp_path / "package" / plugin.SPECS_DIR
    shutil.copytree(SPECS, specs)
    monkeypatch.setattr(W, "weights_root", lambda: tmp_path / "package" / W.WEIGHTS_DIR)
    return export, specs


def test_install_writes_the_chosen_guidance_into_each_spec(tmp_path, monkeypatch, capsys):
    old = {
        n: tomllib.loads((SPECS / f"shapes-{n}.toml").read_text())["defaults"]["guidance"]
        for n in W.GENERATORS
    }
    export, specs = _package(tmp_path, monkeypatch, {"t2i": {"chosen": 3.5}, "t2v": {"chosen": old["t2v"]}})
    install(export.parent)
    assert tomllib.loads((specs / "shapes-t2i.toml").read_text())["defaults"]["guidance"] == 3.5
    assert (specs / "shapes-t2v.toml").read_bytes() == (SPECS / "shapes-t2v.toml").read_bytes()
    err = capsys.readouterr().err
    assert f"guidance {old['t2i']} -> 3.5" in err and "shapes-t2v.toml: [defaults] guidance unchanged" in err


def test_install_refuses_a_spec_without_guidance_before_replacing_weights(tmp_path, monkeypatch):
    export, specs = _package(tmp_path, monkeypatch, {"t2i": {"chosen": 3.5}, "t2v": {"chosen": 2.5}})
    spec = specs / "shapes-t2v.toml"
    spec.write_text(spec.read_text().replace("\nguidance = ", "\n# guidance = "))
    with pytest.raises(UsageError, match="shapes-t2v.toml: expected one `guidance = ...`"):
        install(export.parent)
    assert not W.weights_root().exists()


def test_install_help_says_it_writes_the_spec_guidance():
    text = " ".join(build_parser().format_help().split())
    for needle in ("[defaults] guidance", "guidance sweep", "shapes-t2i.toml and shapes-t2v.toml"):
        assert needle in text, needle


@pytest.fixture(scope="module")
def quick_export(tmp_path_factory):
    """The reduced build up to its export, on the shipped VAE (a reduced build's own VAE is too poor for
    the judge to see anything)."""
    from shapes_world.build import build

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("shapes") / "build"
    cfg = BuildConfig.quick()
    cfg.vae_from = str(W.shipped_vae())
    stages = ("clip", "vae", "decoder", "t2i", "t2v", "motion", "polish", "reward", "export")
    try:
        build(out, cfg, stages=stages)
    finally:
        torch.set_num_threads(threads)
    return out, cfg


@pytest.mark.slow
def test_a_reduced_build_export_records_the_sweep_and_judges_at_its_choice(quick_export):
    out, cfg = quick_export
    info = json.loads((out / "export" / "stage.json").read_text())
    sweep, judged = info["guidance_sweep"], info["judge"]
    assert sweep["grid"] == list(SWEEP_GUIDANCES) and sweep["negative"] == ""
    for name in W.GENERATORS:
        prompts, _ = sweep_rows(cfg, name)
        table = sweep[name]["table"]
        assert [row["guidance"] for row in table] == list(SWEEP_GUIDANCES)
        for row in table:
            checks = {"present", "shape", "colour", "background", "crisp"}
            if name == "t2v":
                checks |= {"steady", "unmarked", "unghosted", "stable"}
            assert {"accuracy", "passed", "n", *checks} <= set(row), row
            assert row["n"] == len(prompts) and 0.0 <= row["accuracy"] <= 1.0
        chosen = sweep[name]["chosen"]
        assert chosen in SWEEP_GUIDANCES and chosen == choose_guidance(table)
        assert judged["settings"]["guidance"][name] == chosen
        assert judged[name]["n"] == cfg.eval_prompts * cfg.eval_seeds
