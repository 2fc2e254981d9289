"""The do-nothing handler that bench/compare.py routes every record to (``compare_noop:noop``).

It records its own completion (there is none to record), so the worker neither claims it nor
looks completions up: what remains is receiving, decoding, dispatching and acknowledging.
"""

from __future__ import annotations

from typing import Any


class Noop:
    """Does nothing, idempotently."""

    name = "noop"
    records_completion = True

    async def __call__(self, message: Any, context: Any) -> None:
        return None


noop = Noop()
