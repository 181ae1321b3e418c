"""The package's import graph flows one way: no cycles, no import from a later stage into an earlier one.

Read from the source (AST), so lazy imports inside functions count too. The layer order is written once,
here; a module may import its own package and anything in an earlier layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "emotalk"
MAX_LINES = 400

# earliest first: a module may import from its own layer's package and from earlier layers only
LAYERS: list[tuple[str, ...]] = [
    ("emotalk", "errors"),  # the package root (version) and the user-facing error types
    ("folders",),  # where files go; atomic writes
    ("assets", "media"),  # model files; decoding and encoding
    ("emotion",),  # the valence-arousal domain
    ("face", "speech"),  # landmarks, parsing, expression model | TTS, features, alignment
    ("metrics",),  # image metrics and LMD (also training losses)
    ("avsync",),  # audio-visual sync of any face video
    ("lips",),  # the lip code and its audio driver
    ("gaussians",),  # the 3-D Gaussian model, fields, rasterizer
    ("dataset",),  # clip -> identity dataset
    ("training",),  # dataset -> trained model
    ("identity",),  # checkpoint folder, store, fit (train -> emotion -> save)
    ("render",),  # identity + speech code + emotion -> frames
    ("evaluation",),  # metrics of identities and renders
    ("requests",),  # render requests and results, limits, their checks (re-exported by pipeline)
    ("pipeline",),  # the API of the app and the CLI
    ("ui", "cli", "__main__"),  # surfaces
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of the package that `name` imports (a `from pkg import mod` counts as pkg.mod)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "emotalk"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "emotalk":
                continue
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod)
    return {m for m in out if m in MODULES} - {name}


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(mod: str) -> int:
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else "emotalk"
    assert top in LAYER, f"{mod}: add its package {top!r} to LAYERS in {Path(__file__).name}"
    return LAYER[top]


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "emotalk"


def test_every_module_has_a_layer():
    for m in MODULES:
        _layer(m)


def test_no_import_from_a_later_stage():
    bad = []
    for m, deps in GRAPH.items():
        for d in deps:
            if _top(d) == _top(m) or d == "emotalk":
                continue
            if _layer(d) >= _layer(m):
                bad.append(f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(GRAPH[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(MODULES.values()) + [ROOT / "app.py"], ids=lambda p: p.name)
def test_modules_are_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES}): split it"


def test_checker_sees_a_cycle_and_an_upward_import():
    """The checks above would fail on a bad graph (guards against a checker that finds nothing)."""
    assert "emotalk.pipeline" in GRAPH and GRAPH["emotalk.pipeline"], "the graph reader found no imports"
    assert _layer("emotalk.dataset.build") < _layer("emotalk.training.loop")
    fake = {"a": {"b"}, "b": {"a"}}
    seen = []

    def visit(m, path):
        for d in fake[m]:
            if d in path:
                seen.append(d)
            else:
                visit(d, path + [d])

    visit("a", ["a"])
    assert seen


def test_scripts_import_the_package_only():
    """bench/ and scripts/ use emotalk as a library: no runpy, no sys.path tricks, no monkey-patching."""
    bad = []
    for p in sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "scripts").glob("*.py")):
        text = p.read_text()
        for word in ("runpy", "sys.path.insert", "sys.path.append"):
            if word in text:
                bad.append(f"{p.relative_to(ROOT)}: {word}")
    assert not bad, "\n".join(bad)
