"""The shape of the code: no function in src/ is longer than a reader takes in at once.

Length is counted from the `def` line to the function's last line, docstring included and
decorators excluded (a click command's options are declarations, not logic to follow).
Complexity is ruff's C901 (max-complexity in pyproject.toml), run by `make check`.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 60


def _functions(
    node: ast.AST, prefix: str = ""
) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function under `node`, with its qualified name (`Class.method`, `outer.inner`)."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            found.append((name, child))
            found.extend(_functions(child, f"{name}."))
        elif isinstance(child, ast.ClassDef):
            found.extend(_functions(child, f"{prefix}{child.name}."))
        else:
            found.extend(_functions(child, prefix))
    return found


@functools.cache
def _long_functions() -> dict[str, int]:
    """`path:qualname` -> lines, for every function in src/ over MAX_LINES lines."""
    long: dict[str, int] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, func in _functions(tree):
            assert func.end_lineno is not None
            lines = func.end_lineno - func.lineno + 1
            if lines > MAX_LINES:
                long[f"{path.relative_to(SRC).as_posix()}:{name}"] = lines
    return long


def test_the_walk_finds_functions_and_measures_them() -> None:
    # given: a module with a method of 3 lines and a nested function
    tree = ast.parse(
        "class A:\n    @staticmethod\n    def m():\n        x = 1\n        return x\n"
        "def outer():\n    def inner():\n        pass\n"
    )
    # when
    found = {name: f.end_lineno - f.lineno + 1 for name, f in _functions(tree) if f.end_lineno}
    # then: decorators are not counted, nested functions are named by their path
    assert found == {"A.m": 3, "outer": 3, "outer.inner": 2}


def test_no_function_in_src_is_over_60_lines() -> None:
    long = _long_functions()
    assert long == {}, f"over {MAX_LINES} lines: split them where a reader loses the thread"
