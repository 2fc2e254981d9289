"""Everything about one stored record, as ``failures show`` prints it and the console's failure
page shows it: one reading of the store for both."""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(slots=True)
class FailureDetail:
    row: InvocationRow
    deliveries: list[DeliveryRow]
    runs: list[HandlerRun]
    replays: list[ReplayAttempt]
    others: list[str]  # other keys of the same request id (another condition, say)
    replay_of: ReplayAttempt | None  # the attempt whose new invocation this record is


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
