"""The experiment scripts (experiments/) and the shapes_world package use public names only, and every
script is indexed in experiments/README.md."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from ..conftest import REPO

EXPERIMENTS = sorted((REPO / "experiments").glob("*.py"))
PACKAGE = sorted((REPO / "shapes_world").rglob("*.py"))


def private_uses(path: Path, of: tuple[str, ...]) -> list[str]:
    """Underscore names `path` takes from the packages `of`: imported by name, or read off an imported
    module (`B._rng`); relative imports inside a package are its own business."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in of:
                    found += [p for p in alias.name.split(".") if p.startswith("_")]
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in of:
            found += [p for p in node.module.split(".") if p.startswith("_")]
            found += [a.name for a in node.names if a.name.startswith("_")]
            aliases.update(a.asname or a.name for a in node.names)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_uses_public_names_and_imports(path):
    assert not private_uses(path, ("reneg_video", "shapes_world")), path.name
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # its imports resolve; main() not run


def test_shapes_world_uses_public_reneg_video_names_only():
    problems = {p.name: private_uses(p, ("reneg_video",)) for p in PACKAGE}
    assert not {k: v for k, v in problems.items() if v}


def test_private_name_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from shapes_world.build.common import _x\nfrom shapes_world.build import common as B\nB._rng\n"
    )
    assert private_uses(bad, ("shapes_world",)) == ["_x", "B._rng"]


def test_every_experiment_is_indexed():
    index = (REPO / "experiments" / "README.md").read_text()
    assert EXPERIMENTS and all(f"| `{p.name}" in index for p in EXPERIMENTS)
