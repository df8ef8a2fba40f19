"""The package's imports point one way: core <- models <- rewards <- training <- render <- commands <- bench.

Every import counts, also those inside functions and under TYPE_CHECKING: a lazy import still ties the
modules together. No module may import a layer above its own, nothing but a command (or the benchmarks)
may import a command module, and no two modules may import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reneg_video"
LAYERS = ("core", "models", "rewards", "training", "render", "commands", "bench")
# The package's own __init__ is the public API (it re-exports core, models and rewards); __main__ is the
# `python -m reneg_video` entry point, i.e. a command.
TOP_LEVEL = {"reneg_video": "training", "reneg_video.__main__": "commands"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports, relative imports resolved; `from pkg import sub` counts sub."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer_of(name: str) -> str:
    if name in TOP_LEVEL:
        return TOP_LEVEL[name]
    return name.split(".")[1]


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_belongs_to_a_layer():
    assert len(modules()) > 30  # the walker sees the package, not an empty folder
    for name in modules():
        assert layer_of(name) in LAYERS, f"{name} is in no layer {LAYERS}; move it into one"


def test_no_import_points_up_a_layer_or_into_a_command():
    problems = []
    for name, targets in graph().items():
        here = LAYERS.index(layer_of(name))
        for target in sorted(targets):
            there = LAYERS.index(layer_of(target))
            if there > here:
                problems.append(f"{name} ({LAYERS[here]}) imports {target} ({LAYERS[there]})")
            elif layer_of(target) == "commands" and layer_of(name) not in ("commands", "bench"):
                problems.append(f"{name} imports the command module {target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "edges, expect",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_cycle_finder_finds_cycles(edges, expect):
    assert find_cycle(edges) == expect


def test_walker_sees_lazy_and_relative_imports():
    """The checks above can fail: a function-level relative import is an edge."""
    mods = modules()
    edges = imports_of("reneg_video.models.pipeline", mods["reneg_video.models.pipeline"], set(mods))
    assert "reneg_video.models.standins" in edges  # imported inside model_folder()
    assert "reneg_video.core.specs" in edges


def test_public_api_names_resolve():
    """`reneg_video.__init__` loads most names lazily by module path: each path must still exist."""
    import reneg_video

    for name in reneg_video.__all__:
        assert getattr(reneg_video, name) is not None


# Packages beside reneg_video that plug into it (core.plugins): the library never imports them.
PLUGIN_PACKAGES = ("shapes_world",)


def _imported_names(tree: ast.AST) -> set[str]:
    """Every module an import statement names, and every string given to importlib.import_module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def test_the_library_imports_no_plugin_package():
    problems = [
        f"{name} imports {target}"
        for name, path in modules().items()
        for target in sorted(_imported_names(ast.parse(path.read_text(encoding="utf-8"))))
        if target.split(".")[0] in PLUGIN_PACKAGES
    ]
    assert not problems, "\n".join(problems) + "\n(plugins register through reneg_video.core.plugins)"


def test_plugin_check_sees_an_import_of_a_plugin():
    """The check above can fail: both import forms and importlib.import_module are seen."""
    code = "import shapes_world.world\nfrom shapes_world import judge\nimportlib.import_module('shapes_world.data')"
    assert _imported_names(ast.parse(code)) >= {"shapes_world.world", "shapes_world", "shapes_world.data"}
