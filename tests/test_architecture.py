"""The import rules of ARCHITECTURE.md, read from the source: each package imports only the floors below it,
the library never imports stages or flows, and no two modules import each other, directly or in a ring."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "transferlab"
# What each subpackage may import (besides itself); the modules at the top of transferlab/ may import any.
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "modeling": {"core", "data"},
    "evaluation": {"core", "data", "modeling"},
    "adversarial": {"core", "data", "modeling"},
    "quality": {"core", "data", "modeling", "evaluation"},
    "tracking": {"core"},
    "serving": {"core", "data", "tracking"},
    "stack": {"core"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("transferlab", "stages", "flows")}


def graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {target for target in imports_of(path) if target in modules and target != name}
            for name, path in modules.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_each_package_imports_only_the_floors_below_it():
    wrong = []
    for module, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py")):
        layer = _layer(module)
        for target in imports_of(path):
            if target.split(".")[0] != "transferlab":
                wrong.append(f"{module} imports {target}: the library never imports stages or flows")
            elif layer is not None and (other := _layer(target)) not in (None, layer) and other not in ALLOWED[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other})")
            elif layer is not None and _layer(target) is None and target != "transferlab":
                wrong.append(f"{module} ({layer}) imports {target}, a module of the top floor")
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycles():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [node, target]) if target in trail
                              else f"{node} -> {target}")
            elif target not in state:
                visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def _stage_names() -> set[str]:
    import yaml

    return set(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"])


def test_tracking_knows_no_stage_by_name():
    """Each stage declares its own headline (Tracker.headline): tracking never branches on a stage's name, so a
    new or renamed stage needs no change there. Every string in the package, f-string pieces included, is read."""
    stages = _stage_names()
    assert {"train_head", "evaluate", "adversarial_report"} <= stages
    named = []
    for path in (PACKAGE / "tracking").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.split("@")[0] in stages:
                    named.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not named, "\n".join(named)
