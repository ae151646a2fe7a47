"""No import cycle among Ferry's modules (issue 16): the layering db ← storage ← sts ← gateway,
with transfer and portability above and ferry/ as the root, holds module by module.

Module-level imports only: an import inside a function or under TYPE_CHECKING is how a
module names something above it without depending on it at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("db", "storage", "sts", "gateway", "transfer", "portability", "ferry")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(tree: ast.Module, modules: dict[str, Path]) -> set[str]:
    edges: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for statement in node.body if isinstance(node, ast.Try) else [node]:
            if isinstance(statement, ast.Import):
                edges.update(filter(None, (_owner(a.name, modules) for a in statement.names)))
            elif isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                submodules = {
                    f"{statement.module}.{a.name}"
                    for a in statement.names
                    if f"{statement.module}.{a.name}" in modules
                }
                edges |= submodules
                if len(submodules) < len(statement.names):
                    owner = _owner(statement.module, modules)
                    if owner is not None:
                        edges.add(owner)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_round_a_cycle() -> None:
    modules = _modules()
    assert len(modules) > 150  # the packages were found
    graph = {
        name: _imports(ast.parse(path.read_text()), modules) - {name}
        for name, path in modules.items()
    }
    assert _cycles(graph) == []


def test_a_cycle_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
