"""Everything about one stored record, as ``failures show`` prints it and the console's failure
page shows it: one reading of the store for both."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from typing import Any

from lambda_destinations.errors import LambdaDestinationsError
from lambda_destinations.store import (
    DeliveryRow,
    HandlerRun,
    InvocationFilter,
    InvocationRow,
    ReplayAttempt,
    RunState,
    Store,
    utcnow,
)

# The start of a request id as typed: hex digits and hyphens, short of a whole one.
_ID_HEAD = re.compile(r"[0-9a-f-]{4,35}")
_AMBIGUOUS_SHOWN = 3


def carried_batch(row: InvocationRow) -> Any:
    """The batch of records a stream failure's record carries, as the function received it;
    None when it carries none (through SQS or SNS, only where the batch was).

    An S3 destination's record holds the whole event in ``payload`` as an escaped JSON string:
    it is given parsed, so that it reads as the event it is (a string that is no JSON, as it
    is)."""
    # The decoder gives a stream failure's payload as its request payload (replay reads the same).
    batch = row.request_payload
    if row.kind != "stream-failure" or batch is None:
        return None
    if isinstance(batch, str):
        try:
            return json.loads(batch)
        except ValueError:
            return batch
    return batch


class AmbiguousId(LambdaDestinationsError):
    """The first characters of a request id, which start several stored ones."""


async def whole_id(store: Store, ident: str) -> str:
    """``ident``, or the one stored request id whose first 4 characters or more it is (as
    `failures list` shows them); one that starts none is left as it is, for the caller to
    report. One that starts several raises AmbiguousId naming them: give more of it. Read in
    lower case, as Lambda writes request ids (and ``stored_id`` reads whole ones)."""
    head = ident.lower()
    if not _ID_HEAD.fullmatch(head) or await store.get_invocation(ident) is not None:
        return ident
    found = await store.request_ids_starting(head, limit=_AMBIGUOUS_SHOWN + 1)
    if len(found) > 1:
        named = ", ".join(found[:_AMBIGUOUS_SHOWN])
        more = ", ..." if len(found) > _AMBIGUOUS_SHOWN else ""
        raise AmbiguousId(
            f"{ident!r} starts more than one request id ({named}{more}): give more of it, "
            "or the whole one"
        )
    return found[0] if found else ident


@dataclasses.dataclass(slots=True)
class FailureDetail:
    row: InvocationRow
    deliveries: list[DeliveryRow]
    runs: list[HandlerRun]
    replays: list[ReplayAttempt]
    others: list[str]  # other keys of the same request id (another condition, say)
    replay_of: ReplayAttempt | None  # the attempt whose new invocation this record is

    @property
    def invoked_elsewhere(self) -> bool:
        """Whether an attempt invoked another version or alias than the record names (a
        replay given a qualifier): then its replays are shown with the function invoked."""
        record = self.row.function_arn
        return record is not None and any(a.function_arn != record for a in self.replays)


async def failure_detail(store: Store, row: InvocationRow) -> FailureDetail:
    """``row`` with its deliveries, handler runs, replays, the other records of its request id,
    and the replay it is the record of, if it is one."""
    others: list[str] = []
    if row.request_id:
        same = await store.list_invocations(
            InvocationFilter(failed_only=False, request_ids=[row.request_id])
        )
        others = [r.key for r in same if r.key != row.key]
    return FailureDetail(
        row,
        await store.deliveries(row.key),
        await store.handler_runs(row.key),
        await store.replays(row.key),
        others,
        await store.replay_for_request(row.request_id) if row.request_id else None,
    )


def run_status(run: HandlerRun) -> str:
    """What a handler run's row says to a reader. The store's state is ``claimed`` until the
    run completes: held by a delivery that runs the handler, released by one whose handler
    failed (its error kept), or left by a worker that stopped, its claim lapsing."""
    if run.state == RunState.COMPLETED:
        return "completed"
    if run.owner is None:
        return "failed" if run.last_error else "released"
    if run.claimed_until is not None and run.claimed_until <= utcnow():
        return "claim expired"
    return "running"


def logs_command_line(ident: str) -> str:
    """The command that prints the function's log lines of the record ``ident`` names (`failures
    logs`, read by ``operations.function_logs``: not imported by what only shows the line)."""
    return f"lambda-destinations failures logs {shlex.quote(ident)}"
