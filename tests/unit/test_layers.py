"""The package's imports point down: a static walk (nothing is imported) of every `quant_dag` import, at module
level, inside functions and under TYPE_CHECKING alike.

Layers, bottom to top (a module imports its own layer or lower ones):
  0 infrastructure   procs, gpu, home, profiles
  1 catalog          catalog.*
  2 engines, lower   checkpoint.*, runtime.*
  3                  serve.*
  4                  evaluate.*, quantize.*
  5                  summary.*, planning
  6 Dagster layer    defs.*, definitions
  7 front end        cli.* (the commands, and what they read back from the Dagster instance); nothing imports it
Engines (layers 0-5) import neither `dagster` nor `quant_dag.defs`; no module imports itself back in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "quant_dag"
LAYERS = {
    "procs": 0, "gpu": 0, "home": 0, "profiles": 0,
    "catalog": 1,
    "checkpoint": 2, "runtime": 2,
    "serve": 3,
    "evaluate": 4, "quantize": 4,
    "summary": 5, "planning": 5,
    "defs": 6, "definitions": 6,
    "cli": 7,
}  # fmt: skip
DAGSTER_LAYER = 6
# Upward edges tolerated for now: none (the demo model's training data and the demo suites come from one leaf,
# catalog.demo_suites, that both import).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module this file imports (absolute names), wherever the import statement sits."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {imp for imp in imports(path) if imp in files and imp != name and not name.startswith(imp + ".")}
        for name, path in files.items()
    }


def layer(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else ""
    if part not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return LAYERS[part]


def test_every_module_has_a_layer():
    for module in graph():
        if module != "quant_dag":
            layer(module)


def test_imports_point_down():
    upward = {(m, imp) for m, deps in graph().items() if m != "quant_dag" for imp in deps if layer(imp) > layer(m)}
    assert upward == KNOWN_UPWARD, (
        sorted(upward - KNOWN_UPWARD) or f"fixed, remove from KNOWN_UPWARD: {KNOWN_UPWARD - upward}"
    )


def test_engines_import_neither_dagster_nor_the_dagster_layer():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name == "quant_dag" or layer(name) >= DAGSTER_LAYER:
            continue
        bad = {i for i in imports(path) if i.split(".")[0] == "dagster" or i.startswith("quant_dag.defs")}
        offenders += [f"{name} imports {b}" for b in sorted(bad)]
    assert not offenders, offenders


def test_no_import_cycles():
    deps = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(deps[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(deps):
        if start not in state:
            visit(start, [start])
    assert not cycles, [" -> ".join(c) for c in cycles]
