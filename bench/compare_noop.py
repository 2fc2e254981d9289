"""The do-nothing handler that bench/compare.py routes every record to (``compare_noop:noop``).

It marks itself as a handler that records its own completion (there is none to record), as
the built-in ``persist`` does, so the worker neither claims it nor looks completions up: what
remains is receiving, decoding, dispatching and acknowledging. The mark is the attribute the
worker reads (``handlers.base.records_completion``); the smoke test checks that it still counts.
"""

from __future__ import annotations

from typing import Any


class Noop:
    """Does nothing, idempotently."""

    name = "noop"
    _records_completion = True

    async def __call__(self, message: Any, context: Any) -> None:
        return None


noop = Noop()
