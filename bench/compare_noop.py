"""The do-nothing handler that bench/compare.py routes every record to (``compare_noop:noop``).

It marks itself, as the built-in ``persist`` does, as a handler that records its own
completion (there is none to record), so the worker neither claims it nor looks completions
up, and as one that only reads the record, so the worker hands it the decode every handler of
the route shares rather than a second decode of its own (what a handler of a user's gets, in
case it changes the payloads). What remains is the default route's work without the store:
receiving, decoding once, dispatching and acknowledging, and ``worker-sqlite`` over
``worker-noop`` is the store's part. The marks are the attributes the worker reads
(``handlers.base.records_completion`` and ``reads_record_only``); the smoke test checks that
they still count.
"""

from __future__ import annotations

from typing import Any


class Noop:
    """Does nothing, idempotently."""

    name = "noop"
    _records_completion = True
    _reads_record_only = True

    async def __call__(self, message: Any, context: Any) -> None:
        return None


noop = Noop()
