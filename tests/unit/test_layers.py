"""The package's import graph: no circles, and no layer imports one above it.

Layers (DESIGN.md): cli → service/pipelines → runtime → contract, with ``smlocal.auth`` and
``smlocal.config`` at the bottom. Function-level imports count too: a circle hidden inside a
function is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import smlocal

ROOT = Path(smlocal.__file__).parent
# what each low layer must never import
FORBIDDEN = {
    "smlocal.runtime": ("smlocal.service", "smlocal.server", "smlocal.cli", "smlocal.gateway", "smlocal.client",
                        "smlocal.pytest_plugin", "smlocal.pipelines", "smlocal.workflows",
                        "smlocal.promote"),
    "smlocal.auth": ("smlocal.",),
    "smlocal.config": ("smlocal.",),
    "smlocal.pipelines": ("smlocal.service", "smlocal.server", "smlocal.cli", "smlocal.gateway"),
    "smlocal.service": ("smlocal.server", "smlocal.cli", "smlocal.gateway", "smlocal.pytest_plugin"),
}
ALLOWED_FROM_BOTTOM = {"smlocal.auth": ("smlocal.config",)}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("smlocal", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("smlocal"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    graph[name].add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_no_layer_imports_a_higher_one():
    wrong = []
    for module, targets in _graph().items():
        for layer, forbidden in FORBIDDEN.items():
            if module != layer and not module.startswith(layer + "."):
                continue
            allowed = ALLOWED_FROM_BOTTOM.get(layer, ())
            wrong += [f"{module} -> {t}" for t in targets
                      if t.startswith(forbidden) and not t.startswith(allowed) and t != module]
    assert wrong == []


def test_the_checker_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
