"""Retention: deleting what is older than the settings keep, in small batches.

Each call of :meth:`RetentionMixin.prune` deletes at most ``limit`` rows in one short
transaction, so on SQLite the write lock is never held for long and the worker's saves go on
between batches. An invocation goes with its deliveries and handler runs, in the same
transaction. The rows are found through indexes: invocations by ``(status, occurred_at)``
(successes have no status), quarantined messages by ``quarantined_at``, replay attempts in the
order they were recorded (those of a failure open or replayed are kept as it is), and the runs
and deliveries of no stored record by their own times (migration_11).

An invocation is old when both the record's time and its arrival are: a record that arrives
days late (a DLQ redriven) is kept for its retention from its arrival. A record's time still in
the future is a wrong clock, not a time to wait for: its arrival alone says its age. One whose
handler a delivery holds a claim on is never deleted, nor is that claim: another replica could
otherwise take the claim and run the handler a second time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from lambda_destinations.store._access import SqlAccess
from lambda_destinations.store._ledger import replays
from lambda_destinations.store._tables import deliveries, handler_runs, invocations, quarantine
from lambda_destinations.store.base import FailureStatus, PruneKind, RunState
from lambda_destinations.times import utcnow

# A replay's own failure record goes as the resolved ones do: its original holds the status.
_RESOLVED = [FailureStatus.RECOVERED, FailureStatus.IGNORED, FailureStatus.REPLAY]
# Not resolved yet: open, or replayed (a replay may still be pending or under way, and its
# outcome is written to this row); kept as open failures are.
_UNRESOLVED = [FailureStatus.OPEN, FailureStatus.REPLAYED]

_runs = handler_runs.c


def _old_invocations(kind: PruneKind, before: dt.datetime) -> sa.Select[Any]:
    """The keys of old invocations of ``kind``: two ranges of the (status, occurred_at) index,
    old by their own time, or dated in the future (a wrong clock, which would otherwise keep a
    record until that time: for ever, at the year 9999), with an old arrival both."""
    inv = invocations.c
    status = inv.status
    # A claim that lapsed or was released after the cutoff: a delivery may still be at work.
    claimed = sa.exists().where(
        _runs.key == inv.key,
        _runs.state == RunState.CLAIMED,
        _runs.claimed_until >= before,
    )
    if kind is PruneKind.SUCCESSES:
        of_kind = status.is_(None)
    else:
        of_kind = status.in_(_RESOLVED if kind is PruneKind.FAILURES else _UNRESOLVED)
    dated = (inv.occurred_at < before, inv.occurred_at > max(before, utcnow()))
    parts = [
        sa.select(inv.key).where(of_kind, when, inv.first_seen_at < before, ~claimed)
        for when in dated
    ]
    return sa.union_all(*parts).subquery().select()


def _unstored(key: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    return ~sa.exists().where(invocations.c.key == key)


def _old_runs(before: dt.datetime) -> list[sa.ColumnElement[bool]]:
    """A handler run completed, or (never completed) last claimed, before ``before``: each
    through its own index."""
    return [
        sa.and_(_runs.state == RunState.COMPLETED, _runs.completed_at < before),
        sa.and_(_runs.state == RunState.CLAIMED, _runs.claimed_until < before),
    ]


def _old_unstored_runs(before: dt.datetime) -> sa.Select[Any]:
    """The (key, handler) of old handler runs of no stored record."""
    parts = [
        sa.select(_runs.key, _runs.handler).where(old, _unstored(_runs.key))
        for old in _old_runs(before)
    ]
    return sa.union_all(*parts).subquery().select()


def _old_unstored_deliveries(before: dt.datetime) -> sa.Select[Any]:
    return sa.select(deliveries.c.id).where(
        deliveries.c.received_at < before, _unstored(deliveries.c.key)
    )


def _old_rows(kind: PruneKind, before: dt.datetime) -> tuple[sa.Table, sa.Select[Any]]:
    """The table ``kind`` lives in, and a query of its old rows' primary keys."""
    if kind is PruneKind.QUARANTINE:
        ids = sa.select(quarantine.c.id).where(quarantine.c.quarantined_at < before)
        return quarantine, ids
    if kind is PruneKind.REPLAYS:
        # Oldest first by id (attempts are numbered as they are recorded): no index on time.
        # The attempts of a failure not resolved stay with it, as it stays: its replay's outcome
        # is still to be written to them, and its replay's own record told by them.
        unresolved = sa.exists().where(
            invocations.c.key == replays.c.original_key,
            invocations.c.status.in_(_UNRESOLVED),
        )
        ids = (
            sa.select(replays.c.id)
            .where(replays.c.requested_at < before, ~unresolved)
            .order_by(replays.c.id)
        )
        return replays, ids
    return invocations, _old_invocations(kind, before)


class RetentionMixin(SqlAccess):
    """The pruning methods of :class:`~lambda_destinations.store.base.Store`."""

    async def prune(self, kind: PruneKind, before: dt.datetime, *, limit: int) -> int:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if kind is PruneKind.UNSTORED:
            return await self._prune_unstored(before, limit)
        table, old = _old_rows(kind, before)
        pk = next(iter(table.primary_key.columns))
        batch = old.limit(limit).scalar_subquery()
        async with self._write(atomic=True) as conn:
            # The invocations first, each checked again as it is deleted (an operator may
            # have reopened it meanwhile); then what belongs to the keys that went.
            gone = (await conn.execute(sa.delete(table).where(pk.in_(batch)).returning(pk))).all()
            if table is invocations and gone:
                keys = [row[0] for row in gone]
                await conn.execute(sa.delete(deliveries).where(deliveries.c.key.in_(keys)))
                await conn.execute(sa.delete(handler_runs).where(handler_runs.c.key.in_(keys)))
        return len(gone)

    async def _prune_unstored(self, before: dt.datetime, limit: int) -> int:
        """Up to ``limit`` old runs, then deliveries, of no stored record, in one transaction."""
        async with self._write(atomic=True) as conn:
            pairs = [
                tuple(row) for row in await conn.execute(_old_unstored_runs(before).limit(limit))
            ]
            if pairs:
                # Checked again as they go: a delivery may have claimed one meanwhile.
                await conn.execute(
                    sa.delete(handler_runs).where(
                        sa.tuple_(_runs.key, _runs.handler).in_(pairs),
                        _unstored(_runs.key),
                        sa.or_(*_old_runs(before)),
                    )
                )
            left = limit - len(pairs)
            if left <= 0:
                return len(pairs)
            ids = _old_unstored_deliveries(before).limit(left).scalar_subquery()
            delete = sa.delete(deliveries).where(deliveries.c.id.in_(ids))
            return len(pairs) + len((await conn.execute(delete.returning(deliveries.c.id))).all())

    async def count_prunable(self, kind: PruneKind, before: dt.datetime) -> int:
        if kind is PruneKind.UNSTORED:
            queries = [_old_unstored_runs(before), _old_unstored_deliveries(before)]
        else:
            queries = [_old_rows(kind, before)[1]]
        total = 0
        async with self._read() as conn:
            for query in queries:
                stmt = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
                total += int((await conn.execute(stmt)).scalar_one())
        return total
