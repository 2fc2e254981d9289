"""`operations.reopen` on every backend: what each failure becomes, and what it costs the store."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from ops_helpers import failure_body, row_of, seed

from lambda_destinations.operations import reopen
from lambda_destinations.store import FailureStatus, InvocationFilter, InvocationRow, Store
from lambda_destinations.store.base import ReplayOutcome
from ledger_helpers import replayed_once


async def _ignored_after_a_replay(store: Store, row: InvocationRow, outcome: ReplayOutcome) -> None:
    """``row`` replayed once with ``outcome``, then ignored."""
    await replayed_once(store, row, outcome)
    await store.set_status([row.key], FailureStatus.IGNORED, by="cli ops@host")


async def test_reopen_reads_every_failure_s_replays_in_as_many_statements_for_2_as_for_50(
    store_url: str,
) -> None:
    # given: 52 ignored failures, each replayed once; one in four of the replays recovered
    rows = [row_of(failure_body(100 + n, minutes_ago=n + 1)[0]) for n in range(52)]
    await seed(store_url, rows)
    recovered = {row.key for row in rows[::4]}
    statements: list[str] = []

    def executed(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    async with Store.from_url(store_url) as store:
        for row in rows:
            outcome = ReplayOutcome.RECOVERED if row.key in recovered else ReplayOutcome.FAILED
            await _ignored_after_a_replay(store, row, outcome)
        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", executed)

        # when: two of them are reopened (one recovered), then the other fifty
        two = await reopen(store, [row.key for row in rows[:2]], by="cli ops@host")
        for_two, statements[:] = list(statements), []
        fifty = await reopen(store, [row.key for row in rows[2:]], by="cli ops@host")
        for_fifty = list(statements)
        listed = await store.list_invocations(InvocationFilter(failed_only=True, limit=100))

    # then: as many statements for fifty as for two (before: one read of replays a failure)
    assert len(for_fifty) == len(for_two), for_fifty
    # and each failure is recovered where its replay recovered, open where it did not
    assert (two.changed, two.recovered) == (2, 1)
    assert (fifty.changed, fifty.recovered) == (50, len(recovered) - 1)
    assert {r.key: r.status for r in listed} == {
        row.key: FailureStatus.RECOVERED if row.key in recovered else FailureStatus.OPEN
        for row in rows
    }
