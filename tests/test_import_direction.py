"""Imports point one way: down the layers, never into another package's private module, no cycle.

Every module under ``src/`` is parsed with ``ast``; every import counts, at module level, inside
a function (a deferred import, kept for start-up speed) or under ``TYPE_CHECKING``. A failure
prints the offending edge: ``importer -> imported (file:line)``.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "lambda_destinations"

# Bottom to top. A module may import its own layer and the layers below it. Top-level modules
# sit in the lowest layer that fits what they import:
# - aws_operations, simulate: import nothing of the package (leaf helpers, like redact);
# - aws (clients built from the settings), dev_endpoint (imports simulate): the second layer;
# - the package itself (``lambda_destinations/__init__.py``) is the public facade: on top.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "schemas",
            "errors",
            "redact",
            "_json",
            "_text",
            "_json_lines",
            "_lifetime",
            "_lazy",
            "_version",
            "_ranges",
            "_proxy",
            "environment",
        }
        | {"times", "logs", "_urls", "_serving", "aws_operations", "simulate", "_request_ids"}
    ),
    frozenset({"store", "config", "retrying", "aws", "dev_endpoint"}),
    frozenset({"handlers"}),
    frozenset({"worker"}),
    frozenset({"operations"}),
    frozenset({"console"}),
    frozenset({"cli", "__main__", "_entry", ""}),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Edge:
    importer: str
    imported: str
    path: str
    line: int
    kind: str  # "module", "function" (deferred) or "type-checking"

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.path}:{self.line}, {self.kind})"


def _modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``src``."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement of ``tree`` with where it runs."""

    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "type-checking" if kind == "type-checking" else "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), "type-checking")
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), kind)
            else:
                yield from walk(child, kind)

    yield from walk(tree, "module")


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]
) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for each name the statement imports."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield (submodule, None) if submodule in known else (base, alias.name)


def edges(src: Path = SRC) -> list[Edge]:
    """Every import of a module of the package by a module of the package."""
    modules = _modules(src)
    known = set(modules)
    found: dict[tuple[str, str, int], Edge] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, kind in _imports(tree):
            for target, _name in _targets(node, module, is_package, known):
                if target == ROOT or target.startswith(f"{ROOT}."):
                    relative = path.relative_to(src).as_posix()
                    edge = Edge(module, target, relative, node.lineno, kind)
                    found.setdefault((module, target, node.lineno), edge)
    return list(found.values())


def layer_of(module: str) -> int:
    """The layer of a module, from its first name under the package."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise LookupError(f"{module}: add {top!r} to LAYERS in {Path(__file__).name}")


def upward(found: list[Edge]) -> list[Edge]:
    """Imports of a higher layer."""
    return [edge for edge in found if layer_of(edge.imported) > layer_of(edge.importer)]


def private_imports(found: list[Edge]) -> list[Edge]:
    """Imports of a ``_private`` module from outside the package that holds it."""
    bad = []
    for edge in found:
        parts = edge.imported.split(".")
        for index, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:index])
                if not (edge.importer == owner or edge.importer.startswith(f"{owner}.")):
                    bad.append(edge)
                break
    return bad


def _graph(found: list[Edge]) -> dict[str, dict[str, Edge]]:
    """module -> {imported module: the edge}, with the packages an import runs on the way.

    Importing ``a.b.c`` first runs ``a/b/__init__.py``: a cycle through a package's
    ``__init__`` (held only by import order) counts. The package itself is left out: its
    ``__init__`` imports nothing at run time.
    """
    graph: dict[str, dict[str, Edge]] = {}
    for edge in found:
        out = graph.setdefault(edge.importer, {})
        out.setdefault(edge.imported, edge)
        parts = edge.imported.split(".")
        for end in range(2, len(parts)):
            package = ".".join(parts[:end])
            if edge.importer != package and not edge.importer.startswith(f"{package}."):
                out.setdefault(package, dataclasses.replace(edge, imported=package))
    return graph


def cycles(found: list[Edge]) -> list[list[Edge]]:
    """One cycle per strongly connected set of modules, as the edges that close it."""
    graph = _graph(found)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, {}):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(sorted(component), graph) for component in components]


def _cycle_in(component: list[str], graph: dict[str, dict[str, Edge]]) -> list[Edge]:
    """The edges of one cycle through the first module of a strongly connected set."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[Edge]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt, edge in graph.get(node, {}).items():
            if nxt == start:
                return [*paths[node], edge]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], edge]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def _report(title: str, found: list[Edge]) -> str:
    return f"{title}:\n" + "\n".join(f"  {edge}" for edge in found)


def test_no_import_of_a_higher_layer() -> None:
    bad = upward(edges())
    assert not bad, _report("imports of a higher layer (see LAYERS)", bad)


def test_no_import_of_another_package_private_module() -> None:
    bad = private_imports(edges())
    assert not bad, _report("imports of another package's _private module", bad)


def test_no_import_cycle() -> None:
    found = cycles(edges())
    text = "\n".join(_report(f"import cycle {n}", cycle) for n, cycle in enumerate(found, 1))
    assert not found, text


def test_every_module_has_a_layer() -> None:
    for module in _modules(SRC):
        assert layer_of(module) >= 0


# -- the checks themselves, on a made-up package --------------------------------------------


@pytest.fixture
def package(tmp_path: Path) -> Path:
    files = {
        "__init__.py": "",
        "errors.py": "",
        "store/__init__.py": "from lambda_destinations.store.base import Store\n",
        "store/base.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from lambda_destinations.handlers import h\n"
            "def later():\n    from . import _sql\n"
        ),
        "store/_sql.py": "from lambda_destinations import store\n",
        "handlers/__init__.py": "from ..errors import E\n",
        "console/__init__.py": "from ..store._sql import x\n",
    }
    for name, text in files.items():
        path = tmp_path / ROOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_every_kind_of_import_is_an_edge(package: Path) -> None:
    found = {(e.importer, e.imported, e.kind) for e in edges(package)}
    assert found == {
        ("lambda_destinations.store", "lambda_destinations.store.base", "module"),
        ("lambda_destinations.store.base", "lambda_destinations.handlers", "type-checking"),
        ("lambda_destinations.store.base", "lambda_destinations.store._sql", "function"),
        ("lambda_destinations.store._sql", "lambda_destinations.store", "module"),
        ("lambda_destinations.handlers", "lambda_destinations.errors", "module"),
        ("lambda_destinations.console", "lambda_destinations.store._sql", "module"),
    }


def test_the_checks_name_each_bad_edge(package: Path) -> None:
    found = edges(package)
    assert {(e.importer, e.imported) for e in upward(found)} == {
        ("lambda_destinations.store.base", "lambda_destinations.handlers")
    }
    assert {(e.importer, e.imported) for e in private_imports(found)} == {
        ("lambda_destinations.console", "lambda_destinations.store._sql")
    }
    (cycle,) = cycles(found)
    assert [(e.importer, e.imported) for e in cycle] == [
        ("lambda_destinations.store", "lambda_destinations.store.base"),
        ("lambda_destinations.store.base", "lambda_destinations.store._sql"),
        ("lambda_destinations.store._sql", "lambda_destinations.store"),
    ]
    assert "store/base.py:3, type-checking" in str(upward(found)[0])
