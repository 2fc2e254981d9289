"""Each part of a record stored once: what the invocation row's columns hold, the record
column does not hold again.

``payloads_in_columns`` says, bit by bit, what was taken out of ``record`` (or of
``stack_trace``) because another column holds it; reading puts every part back:

- 1, 2 (migration_7): ``requestPayload`` and ``responsePayload``, held by ``request_payload``
  and ``response_payload``;
- 4: the stack trace, which is the response payload's ``stackTrace`` (``stack_trace`` is NULL);
- 8: ``requestContext``, whose four fields are the columns ``request_id``, ``function_arn``,
  ``condition`` and ``approximate_invoke_count``;
- 16: a stream failure's ``payload`` (the batch an S3 destination's record carries), held by
  ``request_payload`` as the decoder gives it.

A part is taken out only when it equals what the columns hold, so reading gives back the
record as received (its keys may come back in another order). Rows stored before a bit
existed keep that part; NULL means nothing was taken out.
"""

from __future__ import annotations

from typing import Any

from lambda_destinations.store.migration_7 import MOVED

TRACE_IN_RESPONSE = 4
CONTEXT_IN_COLUMNS = 8
BATCH_IN_REQUEST = 16
# Each field of the record that a column may hold instead: migration_7's payloads, and a
# stream failure's batch (which no record holds beside a requestPayload).
FOLDED = (*MOVED, ("payload", "request_payload", BATCH_IN_REQUEST))


def fold(values: dict[str, Any]) -> None:
    """Take out of ``values["record"]`` and ``values["stack_trace"]`` what other columns
    hold; set ``values["payloads_in_columns"]`` to say what."""
    record = values["record"]
    moved = 0
    if isinstance(record, dict):
        gone = set()
        for field, column, bit in FOLDED:
            if field in record and (
                record[field] is values[column] or record[field] == values[column]
            ):
                moved |= bit
                gone.add(field)
        if record.get("requestContext") == _context(values):
            moved |= CONTEXT_IN_COLUMNS
            gone.add("requestContext")
        if gone:
            record = values["record"] = record.copy()
            for field in gone:
                del record[field]
    trace, response = values["stack_trace"], values["response_payload"]
    if trace is not None and isinstance(response, dict) and response.get("stackTrace") == trace:
        values["stack_trace"] = None
        moved |= TRACE_IN_RESPONSE
    values["payloads_in_columns"] = moved or None


def unfold(values: dict[str, Any], moved: int | None) -> None:
    """Put back into ``values`` what :func:`fold` took out, as ``moved`` says."""
    if not moved:
        return
    record = values["record"]
    if isinstance(record, dict):
        whole = dict(record)
        for field, column, bit in FOLDED:
            if moved & bit:
                whole[field] = values[column]
        if moved & CONTEXT_IN_COLUMNS:
            whole["requestContext"] = _context(values)
        values["record"] = whole
    response = values["response_payload"]
    if moved & TRACE_IN_RESPONSE and isinstance(response, dict):
        values["stack_trace"] = response.get("stackTrace")


def _context(values: dict[str, Any]) -> dict[str, Any]:
    """requestContext's fields, from the columns holding them (a literal: made for every
    record a save folds)."""
    return {
        "requestId": values["request_id"],
        "functionArn": values["function_arn"],
        "condition": values["condition"],
        "approximateInvokeCount": values["approximate_invoke_count"],
    }
