"""The layers point one way: base (embedding_site) <- domain (documents) <- engine (queue_admin)
<- console. A module may import its own layer and the ones below, never one above — and an
import inside a function counts as much as one at the top. Walks the source with `ast`, so
nothing has to be imported (or configured) for the check."""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ["embedding_site", "documents", "queue_admin", "console"]  # bottom to top
RANK = {package: rank for rank, package in enumerate(LAYERS)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, as absolute dotted names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` steps up
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def source_files():
    for package in LAYERS:
        yield from sorted((ROOT / package).rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """Our modules -> the modules of ours they import (names that are packages or modules)."""
    ours = {module_name(path): path for path in source_files()}
    edges = {}
    for name, path in ours.items():
        edges[name] = {imported for imported in imports_of(path) if imported in ours and imported != name}
    return edges


def test_every_package_is_in_a_layer():
    top_level = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests", "bench"}
    assert top_level == set(LAYERS), "put the new package in LAYERS (and this test's docstring)"


def test_no_layer_imports_a_layer_above_it():
    upward = sorted(
        f"{importer} imports {imported}"
        for importer, imported_modules in graph().items()
        for imported in imported_modules
        if RANK[imported.split(".")[0]] > RANK[importer.split(".")[0]]
    )
    assert upward == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    sample = ROOT / "documents" / "_layer_probe.py"
    sample.write_text("from . import models\n\ndef f():\n    from queue_admin import backfill\n")
    try:
        found = imports_of(sample)
    finally:
        sample.unlink()
    assert {"documents.models", "queue_admin.backfill"} <= found


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def modules_only(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Leave out package `__init__` modules as targets: `from pkg import mod` names both."""
    packages = {name for name in edges if (ROOT / name.replace(".", "/") / "__init__.py").exists()}
    return {name: {t for t in targets if t not in packages} for name, targets in edges.items()}


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_cycle_between_modules(package):
    edges = {name: targets for name, targets in modules_only(graph()).items() if name.startswith(package)}
    assert _cycles(edges) == []
