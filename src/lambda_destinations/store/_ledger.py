"""The replay ledger: each attempt to re-invoke a failed invocation, for both backends.

One row per (original record key, attempt number), unique, so two processes replaying the same
record cannot both record attempt 3: the second ``add_replay`` gets False and writes nothing.
A row is written *before* Lambda is invoked (``pending``) and updated with the new request id
and outcome afterwards, so an interrupted replay leaves a trace rather than an invisible
invocation. The new request id is indexed: when the replayed invocation's own destination record
arrives, the worker finds the attempt it belongs to (``replay_for_request``).

The table is declared here, on the shared ``_tables.metadata`` (so the schema test sees it);
migration version 2 in :mod:`.migrations` is its frozen DDL. :class:`LedgerMixin` holds the
queries; :class:`~._sql.SqlStore` inherits it and supplies ``_read``, ``_write`` and
``_insert``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from lambda_destinations.store._access import (
    SqlAccess,
    from_row,
    make_storable,
    storable,
    text_columns,
)
from lambda_destinations.store._tables import invocations, metadata, str_enum
from lambda_destinations.store._types import UTCDateTime, big_id
from lambda_destinations.store.base import FailureStatus, ReplayAttempt, ReplayOutcome
from lambda_destinations.times import utcnow

# -- the table (migration 2) ------------------------------------------------------------------

# No foreign key to invocations: `dlq redrive --reinvoke` replays records read from a DLQ that
# the store may never have seen.
replays = sa.Table(
    "replays",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("original_key", sa.Text, nullable=False),
    sa.Column("original_request_id", sa.Text),
    sa.Column("function_arn", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("new_request_id", sa.Text, index=True),
    sa.Column("outcome", str_enum(ReplayOutcome), nullable=False),
    sa.Column("outcome_at", UTCDateTime),
    sa.Column("detail", sa.Text),
    # Also the index that lists and counts a key's attempts (its leading column is the key).
    sa.UniqueConstraint("original_key", "attempt", name="uq_replays_attempt"),
)

_FIELDS = tuple(column.name for column in replays.columns if column.name != "id")
# A record's request id, an Invoke's error (which may quote Lambda's answer): text from outside.
_TEXTS = text_columns(replays)
# IN lists are sent as one bound parameter per key: keep each statement well below SQLite's
# and asyncpg's parameter limits.
_KEYS_PER_QUERY = 500


def _replay_record(new_request_id: str) -> sa.Update:
    """Mark the open failure records of a replay's new invocation ``replay``: those saved
    before the ledger had its request id (the save marks it itself otherwise: see
    ``_sql._status_as_saved``)."""
    return (
        sa.update(invocations)
        .where(
            invocations.c.request_id == new_request_id,
            invocations.c.status == FailureStatus.OPEN,
        )
        .values(status=FailureStatus.REPLAY, status_at=utcnow())
    )


# Waits for every write to the invocations that has begun (the worker's saves: their INSERT
# holds ROW EXCLUSIVE until it commits) and holds back those that begin meanwhile. Not SHARE,
# which two replayers would hold at once and then deadlock on, each UPDATE waiting for the
# other's lock: SHARE ROW EXCLUSIVE is held by one transaction at a time, so they take turns.
_SAVES_SETTLED = sa.text("LOCK TABLE invocations IN SHARE ROW EXCLUSIVE MODE")


def _attempt_from(row: Any) -> ReplayAttempt:
    return from_row(ReplayAttempt, row, outcome=ReplayOutcome(row.outcome))


class LedgerMixin(SqlAccess):
    """The replay-ledger methods of :class:`~lambda_destinations.store.base.Store`."""

    _ledger_insert: Any = None
    # Whether a write may run while another is uncommitted, each statement seeing only what
    # was committed when it began (PostgreSQL's READ COMMITTED; SQLite takes its write lock
    # before a write transaction reads). Then a replay's record saved while the ledger records
    # its request id can be missed by both sides: the save's look-up began before the ledger's
    # commit, the ledger's UPDATE before the save's. So once the ledger's row is committed,
    # ``update_replay`` marks the records again under a lock on the table, which waits
    # for the saves under way and holds back new ones: a save that began before the ledger's
    # commit is committed by then and seen; one that begins after it sees the ledger's row.
    # The saves, the worker's hot path, pay nothing for it; a replay holds them back for one
    # indexed UPDATE.
    _overlapping_writers = False

    def _insert_replay(self) -> Any:
        # Built on first use (the dialect's INSERT comes from the backend), then reused so
        # SQLAlchemy compiles it once.
        if self._ledger_insert is None:
            self._ledger_insert = (
                self._insert(replays)
                .on_conflict_do_nothing(index_elements=[replays.c.original_key, replays.c.attempt])
                .returning(replays.c.id)
            )
        return self._ledger_insert

    async def add_replay(self, attempt: ReplayAttempt) -> bool:
        if attempt.attempt < 1:
            raise ValueError(f"replay attempts count from 1, got {attempt.attempt}")
        values = {name: getattr(attempt, name) for name in _FIELDS}
        make_storable(values, _TEXTS)
        async with self._write() as conn:
            new_id = (await conn.execute(self._insert_replay(), values)).scalar()
        if new_id is None:
            return False
        attempt.id = int(new_id)
        return True

    async def replays(self, original_key: str) -> list[ReplayAttempt]:
        stmt = (
            sa.select(replays)
            .where(replays.c.original_key == original_key)
            .order_by(replays.c.attempt, replays.c.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_attempt_from(row) for row in rows]

    async def replay_for_request(self, new_request_id: str) -> ReplayAttempt | None:
        stmt = (
            sa.select(replays)
            .where(replays.c.new_request_id == new_request_id)
            .order_by(replays.c.id.desc())
            .limit(1)
        )
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _attempt_from(row)

    async def update_replay(
        self,
        replay_id: int,
        *,
        new_request_id: str | None = None,
        outcome: ReplayOutcome | None = None,
        detail: str | None = None,
    ) -> None:
        # Text from outside, as the store holds it: the request id then finds the records
        # saved with it (their request_id is kept so too).
        new_request_id, detail = storable(new_request_id), storable(detail)
        values: dict[str, Any] = {}
        if new_request_id is not None:
            values["new_request_id"] = new_request_id
        if outcome is not None:
            values["outcome"] = outcome
            values["outcome_at"] = utcnow()
        if detail is not None:
            values["detail"] = detail
        if not values:
            # Nothing to change; still say so when the attempt does not exist.
            async with self._read() as conn:
                found = (
                    await conn.execute(sa.select(replays.c.id).where(replays.c.id == replay_id))
                ).first()
            changed = 0 if found is None else 1
        else:
            stmt = sa.update(replays).where(replays.c.id == replay_id).values(**values)
            async with self._write(atomic=new_request_id is not None) as conn:
                changed = (await conn.execute(stmt)).rowcount
                if changed and new_request_id is not None:
                    await conn.execute(_replay_record(new_request_id))
            if changed and new_request_id is not None and self._overlapping_writers:
                async with self._write(atomic=True) as conn:
                    await conn.execute(_SAVES_SETTLED)
                    await conn.execute(_replay_record(new_request_id))
        if changed == 0:
            raise KeyError(f"no replay attempt with id {replay_id}")

    async def replay_counts(
        self, keys: Sequence[str], *, outcome: ReplayOutcome | None = None
    ) -> dict[str, int]:
        counts = dict.fromkeys(keys, 0)
        unique = list(counts)
        if not unique:
            return counts
        async with self._read() as conn:
            for start in range(0, len(unique), _KEYS_PER_QUERY):
                chunk = unique[start : start + _KEYS_PER_QUERY]
                stmt = (
                    sa.select(replays.c.original_key, sa.func.count())
                    .where(replays.c.original_key.in_(chunk))
                    .group_by(replays.c.original_key)
                )
                if outcome is not None:
                    stmt = stmt.where(replays.c.outcome == outcome)
                for key, count in await conn.execute(stmt):
                    counts[key] = int(count)
        return counts
