"""Which frames are the package's own: its folder, not a team's package whose name begins
the same (``lambda_destinations_payments`` beside it in site-packages)."""

from __future__ import annotations

from pathlib import Path

import lambda_destinations
from lambda_destinations.handlers.registry import _raised

SIBLING = str(Path(lambda_destinations.__file__).parent) + "_payments/hooks.py"


def raise_from(filename: str) -> BaseException:
    """The exception raised by code that says it is in ``filename``."""
    code = compile("def hook():\n    raise ValueError('no such order')\nhook()\n", filename, "exec")
    try:
        exec(code, {})  # noqa: S102 (code of this test, compiled under another file's name)
    except ValueError as exc:
        return exc
    raise AssertionError("the code raised nothing")


def test_a_sibling_packages_line_is_named_as_the_users() -> None:
    # given: an error raised in a team's package whose folder name begins with ours
    exc = raise_from(SIBLING)

    # then: its file and line are named, as any user module's
    assert _raised(exc) == f"ValueError: no such order ({SIBLING}:2)"
