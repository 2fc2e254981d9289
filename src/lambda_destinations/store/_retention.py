"""Retention: deleting what is older than the settings keep, in small batches.

Each call of :meth:`RetentionMixin.prune` deletes at most ``limit`` rows in one short
transaction, so on SQLite the write lock is never held for long and the worker's saves go on
between batches. An invocation goes with its deliveries and handler runs, in the same
transaction. The rows are found through indexes: invocations by ``(status, occurred_at)``
(successes have no status), quarantined messages by ``quarantined_at``, replay attempts in the
order they were recorded.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lambda_destinations.store._access import SqlAccess
from lambda_destinations.store._ledger import replays
from lambda_destinations.store._tables import deliveries, handler_runs, invocations, quarantine
from lambda_destinations.store.base import FailureStatus, PruneKind

if TYPE_CHECKING:
    pass

_RESOLVED = [FailureStatus.RECOVERED, FailureStatus.IGNORED]
# Not resolved yet: open, or replayed (a replay may still be pending or under way, and its
# outcome is written to this row); kept as open failures are.
_UNRESOLVED = [FailureStatus.OPEN, FailureStatus.REPLAYED]


def _old_invocations(kind: PruneKind, before: dt.datetime) -> list[sa.ColumnElement[bool]]:
    status = invocations.c.status
    older = invocations.c.occurred_at < before
    if kind is PruneKind.SUCCESSES:
        return [status.is_(None), older]
    if kind is PruneKind.FAILURES:
        return [status.in_(_RESOLVED), older]
    return [status.in_(_UNRESOLVED), older]


def _old_rows(kind: PruneKind, before: dt.datetime) -> tuple[sa.Table, sa.Select[Any]]:
    """The table ``kind`` lives in, and a query of its old rows' primary keys."""
    if kind is PruneKind.QUARANTINE:
        ids = sa.select(quarantine.c.id).where(quarantine.c.quarantined_at < before)
        return quarantine, ids
    if kind is PruneKind.REPLAYS:
        # Oldest first by id (attempts are numbered as they are recorded): no index on time.
        ids = sa.select(replays.c.id).where(replays.c.requested_at < before).order_by(replays.c.id)
        return replays, ids
    return invocations, sa.select(invocations.c.key).where(*_old_invocations(kind, before))


class RetentionMixin(SqlAccess):
    """The pruning methods of :class:`~lambda_destinations.store.base.Store`."""

    async def prune(self, kind: PruneKind, before: dt.datetime, *, limit: int) -> int:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
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

    async def count_prunable(self, kind: PruneKind, before: dt.datetime) -> int:
        _table, old = _old_rows(kind, before)
        stmt = sa.select(sa.func.count()).select_from(old.order_by(None).subquery())
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())
