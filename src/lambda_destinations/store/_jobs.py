"""Scheduled jobs and alert windows, for both backends: what the scheduler and the notifiers keep.

**Scheduled jobs** are work due at a time — a replay after its backoff delay, an alert digest
when its window closes — kept in the store so a restart neither loses nor repeats them. A job is
scheduled once per key (``replay:<key>:<attempt>``, ``digest:<scope>:<window start>``); the
scheduler *takes* due jobs with a lease, in one statement, so one worker runs each: PostgreSQL
picks rows with ``FOR UPDATE SKIP LOCKED`` (a second worker skips them instead of waiting),
SQLite has one writer at a time. A job whose worker died is taken again once its lease expires.

**Alert windows** count alerts per scope (one notifier, function and error type): the first
alert of a quiet scope opens a window; every record admitted to it gets the next ordinal, once
(a redelivered record finds its ordinal again), and the first one held back past the number
that go out at once schedules the window's digest, in the same transaction. The digest counts
the window's members when it fires; a record arriving after the window ended opens the next one.

The tables are declared here on the shared ``_tables.metadata`` (so the schema test sees them);
migration version 3 in :mod:`.migrations` is their frozen DDL. :class:`JobsMixin` holds the
queries; :class:`~._sql.SqlStore` inherits it and supplies ``_read``, ``_write``, ``_insert``
and the lease clock (server time on PostgreSQL, where replicas' clocks may disagree).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lambda_destinations.store._access import SqlAccess, StoreConnection, from_row, storable
from lambda_destinations.store._tables import metadata, str_enum
from lambda_destinations.store._types import UTCDateTime, json_value
from lambda_destinations.store.base import (
    AlertAdmission,
    AlertWindow,
    JobState,
    ScheduledJob,
)
from lambda_destinations.times import utcnow

if TYPE_CHECKING:
    pass


# -- the tables (migration 3) -----------------------------------------------------------------

scheduled_jobs = sa.Table(
    "scheduled_jobs",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("payload", json_value(), nullable=False),
    sa.Column("state", str_enum(JobState), nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("leased_until", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    # What the scheduler asks for: pending jobs, soonest first.
    sa.Index("ix_scheduled_jobs_state_due_at", "state", "due_at"),
)

# The current (or last) window of each scope; the ordinal counter lives here.
alert_groups = sa.Table(
    "alert_groups",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("admitted", sa.Integer, nullable=False),
)

# One row per record admitted to a scope: the record's window and ordinal, found again when the
# record is redelivered, and counted for the digest.
alert_members = sa.Table(
    "alert_members",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("admitted_at", UTCDateTime, nullable=False),
    sa.Index("ix_alert_members_scope_window_start", "scope", "window_start"),
)

_JOB_FIELDS = tuple(column.name for column in scheduled_jobs.columns)


def digest_job_key(scope: str, window_start: dt.datetime) -> str:
    """The key of a window's digest job: one per scope and window."""
    start = window_start.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return f"digest:{scope}:{start}"


def _job_values(job: ScheduledJob) -> dict[str, Any]:
    return {name: getattr(job, name) for name in _JOB_FIELDS}


def _job_from(row: Any) -> ScheduledJob:
    return from_row(ScheduledJob, row, state=JobState(row.state))


class _MemberExists(Exception):
    """Rolls back an admission when another delivery of the record was admitted first."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Statements:
    insert_job: Any
    take_jobs: Any
    upsert_group: Any
    insert_member: Any


class JobsMixin(SqlAccess):
    """The scheduled-job and alert-window methods of :class:`~lambda_destinations.store.Store`."""

    if TYPE_CHECKING:
        # Supplied by SqlStore (see _sql.py) and its backends.

        def _lease_clock(
            self,
        ) -> tuple[sa.ColumnElement[dt.datetime], sa.ColumnElement[dt.datetime]]: ...

        def _lease_params(self, ttl: float) -> dict[str, Any]: ...

    _jobs_statements: _Statements | None = None

    def _jobs_sql(self) -> _Statements:
        # Built on first use (the dialect's INSERT and clock come from the backend), then
        # reused so SQLAlchemy compiles each statement once.
        if self._jobs_statements is None:
            self._jobs_statements = self._build_jobs_statements()
        return self._jobs_statements

    def _build_jobs_statements(self) -> _Statements:
        jobs = scheduled_jobs.c
        now, until = self._lease_clock()

        insert_job = (
            self._insert(scheduled_jobs)
            .on_conflict_do_nothing(index_elements=[jobs.key])
            .returning(jobs.key)
        )
        insert_member = (
            self._insert(alert_members)
            .on_conflict_do_nothing(index_elements=[alert_members.c.scope, alert_members.c.key])
            .returning(alert_members.c.ordinal)
        )

        return _Statements(
            insert_job,
            self._take_jobs_statement(now, until),
            self._upsert_group_statement(now, until),
            insert_member,
        )

    def _take_jobs_statement(self, now: Any, until: Any) -> Any:
        jobs = scheduled_jobs.c
        # One statement takes the due jobs: atomic on both backends. SKIP LOCKED (PostgreSQL
        # only; SQLite has one writer) lets two workers take different jobs at once.
        due = (
            sa.select(jobs.key)
            .where(
                jobs.state == JobState.PENDING,
                jobs.due_at <= now,
                sa.or_(jobs.leased_until.is_(None), jobs.leased_until < now),
            )
            .order_by(jobs.due_at)
            .limit(sa.bindparam("b_limit", type_=sa.Integer))
            .with_for_update(skip_locked=True)
        )
        return (
            sa.update(scheduled_jobs)
            .where(jobs.key.in_(due.scalar_subquery()))
            .values(
                owner=sa.bindparam("b_owner", type_=sa.Text),
                leased_until=until,
                attempts=jobs.attempts + 1,
            )
            .returning(*(jobs[name] for name in _JOB_FIELDS))
        )

    def _upsert_group_statement(self, now: Any, until: Any) -> Any:
        groups = alert_groups.c
        opening = self._insert(alert_groups).values(
            scope=sa.bindparam("b_scope", type_=sa.Text),
            window_start=now,
            window_end=until,
            admitted=1,
        )
        # The window is the scope's row: while it lasts, each admission takes the next
        # ordinal; once it has ended, the next admission opens a new one. Every SET expression
        # reads the row as it was, so the three CASEs agree. The row stays locked until the
        # transaction ends (PostgreSQL), so admissions to one scope take turns.
        ended = groups.window_end <= now
        return opening.on_conflict_do_update(
            index_elements=[groups.scope],
            set_={
                "window_start": sa.case(
                    (ended, opening.excluded.window_start), else_=groups.window_start
                ),
                "window_end": sa.case(
                    (ended, opening.excluded.window_end), else_=groups.window_end
                ),
                "admitted": sa.case((ended, 1), else_=groups.admitted + 1),
            },
        ).returning(groups.window_start, groups.window_end, groups.admitted)

    # -- scheduled jobs -------------------------------------------------------------------------

    async def schedule_job(self, job: ScheduledJob) -> bool:
        async with self._write() as conn:
            inserted = (await conn.execute(self._jobs_sql().insert_job, _job_values(job))).first()
        return inserted is not None

    async def take_due_jobs(self, owner: str, *, limit: int, lease: float) -> list[ScheduledJob]:
        params = {"b_owner": owner, "b_limit": limit, **self._lease_params(lease)}
        async with self._write() as conn:
            rows = (await conn.execute(self._jobs_sql().take_jobs, params)).all()
        return sorted((_job_from(row) for row in rows), key=lambda job: (job.due_at, job.key))

    async def next_job_due(self) -> dt.datetime | None:
        jobs = scheduled_jobs.c
        # The lease clock (the server's on PostgreSQL), as take_due_jobs judges: a replica
        # whose clock is behind would otherwise see a dead worker's lease as held for as long.
        now, _until = self._lease_clock()
        stmt = sa.select(sa.func.min(jobs.due_at), now).where(
            jobs.state == JobState.PENDING,
            sa.or_(jobs.leased_until.is_(None), jobs.leased_until < now),
        )
        async with self._read() as conn:
            due, store_now = (await conn.execute(stmt, self._lease_params(0))).one()
        # On the caller's clock, which it compares with its own.
        return None if due is None else due + (utcnow() - store_now)

    async def finish_job(self, key: str, *, failed: bool = False, error: str | None = None) -> bool:
        state = JobState.FAILED if failed else JobState.DONE
        jobs = scheduled_jobs.c
        stmt = (
            sa.update(scheduled_jobs)
            .where(jobs.key == key, jobs.state == JobState.PENDING)
            .values(
                state=state,
                owner=None,
                leased_until=None,
                finished_at=utcnow(),
                last_error=sa.func.coalesce(
                    sa.bindparam("b_error", type_=sa.Text), jobs.last_error
                ),
            )
        )
        # A job's error may quote a payload or an answer: text from outside.
        async with self._write() as conn:
            return bool((await conn.execute(stmt, {"b_error": storable(error)})).rowcount)

    async def retry_job(
        self, key: str, owner: str, *, due_at: dt.datetime, error: str | None = None
    ) -> bool:
        jobs = scheduled_jobs.c
        stmt = (
            sa.update(scheduled_jobs)
            .where(jobs.key == key, jobs.owner == owner, jobs.state == JobState.PENDING)
            .values(
                owner=None,
                leased_until=None,
                due_at=due_at,
                last_error=sa.func.coalesce(
                    sa.bindparam("b_error", type_=sa.Text), jobs.last_error
                ),
            )
        )
        async with self._write() as conn:
            return bool((await conn.execute(stmt, {"b_error": storable(error)})).rowcount)

    async def renew_job(self, key: str, owner: str, *, lease: float) -> bool:
        jobs = scheduled_jobs.c
        _now, until = self._lease_clock()
        stmt = (
            sa.update(scheduled_jobs)
            .where(jobs.key == key, jobs.owner == owner, jobs.state == JobState.PENDING)
            .values(leased_until=until)
        )
        async with self._write() as conn:
            return bool((await conn.execute(stmt, self._lease_params(lease))).rowcount)

    async def get_job(self, key: str) -> ScheduledJob | None:
        stmt = sa.select(scheduled_jobs).where(scheduled_jobs.c.key == key)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _job_from(row)

    async def list_jobs(
        self,
        *,
        kind: str | None = None,
        state: JobState | None = None,
        limit: int | None = None,
    ) -> list[ScheduledJob]:
        jobs = scheduled_jobs.c
        stmt = sa.select(scheduled_jobs).order_by(jobs.due_at, jobs.key)
        if kind is not None:
            stmt = stmt.where(jobs.kind == kind)
        if state is not None:
            stmt = stmt.where(jobs.state == state)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_job_from(row) for row in rows]

    async def prune_jobs(self, before: dt.datetime) -> int:
        jobs = scheduled_jobs.c
        members, groups = alert_members.c, alert_groups.c
        removed = 0
        async with self._write(atomic=True) as conn:
            # A window whose digest is not sent yet keeps its members (the digest counts
            # them, and a redelivery finds its place) and its row, however old.
            unsent = await _unsent_digests(conn)
            statements = [
                sa.delete(scheduled_jobs).where(
                    jobs.state != JobState.PENDING, jobs.finished_at < before
                ),
                sa.delete(alert_members).where(
                    members.window_start < before,
                    *_not_of(unsent, members.scope, members.window_start),
                ),
                sa.delete(alert_groups).where(
                    groups.window_end < before, *_not_of(unsent, groups.scope, groups.window_start)
                ),
            ]
            for stmt in statements:
                removed += (await conn.execute(stmt)).rowcount
        return removed

    # -- alert windows --------------------------------------------------------------------------

    async def admit_alert(
        self,
        scope: str,
        key: str,
        *,
        window: float,
        send_first: int,
        digest_kind: str,
        digest_payload: dict[str, Any],
        settle: float = 2.0,
    ) -> AlertAdmission:
        if window <= 0:
            raise ValueError(f"an alert window lasts more than 0 seconds, got {window}")
        found = await self._admission(scope, key)
        if found is not None:
            return found  # a redelivery: the same window and ordinal as the first time
        sql = self._jobs_sql()
        try:
            async with self._write(atomic=True) as conn:
                group = (
                    await conn.execute(
                        sql.upsert_group, {"b_scope": scope, **self._lease_params(window)}
                    )
                ).one()
                start, end, ordinal = group.window_start, group.window_end, group.admitted
                member = {
                    "scope": scope,
                    "key": key,
                    "window_start": start,
                    "ordinal": ordinal,
                    "admitted_at": utcnow(),
                }
                if (await conn.execute(sql.insert_member, member)).first() is None:
                    raise _MemberExists
                held, scheduled = ordinal > send_first, False
                if held:
                    # Past those sent at once: the window needs a digest. Tried for each one
                    # held (a no-op once it exists), not only for send_first + 1: send_first
                    # may have been lowered, by a deploy, past this window's ordinals.
                    job = _digest_job(
                        scope, start, end, ordinal - 1, digest_kind, digest_payload, settle
                    )
                    inserted = await conn.execute(sql.insert_job, _job_values(job))
                    scheduled = inserted.first() is not None
                elif ordinal > 1:
                    # send_first raised while the window holds records back: they stay held,
                    # or the digest would count records that went out at once.
                    held = await _digest_of(conn, scope, start) is not None
        except _MemberExists:
            found = await self._admission(scope, key)
            if found is None:  # pragma: no cover - the row that conflicted is committed
                raise RuntimeError(f"alert member {scope} {key} vanished") from None
            return found
        return AlertAdmission(
            ordinal=ordinal,
            send_now=not held,
            window_start=start,
            window_end=end,
            digest_scheduled=scheduled,
        )

    async def _admission(self, scope: str, key: str) -> AlertAdmission | None:
        members, groups = alert_members.c, alert_groups.c
        stmt = (
            sa.select(members.window_start, members.ordinal, groups.window_start, groups.window_end)
            .select_from(alert_members.outerjoin(alert_groups, groups.scope == members.scope))
            .where(members.scope == scope, members.key == key)
        )
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            start, ordinal, group_start, group_end = row
            digest = await _digest_of(conn, scope, start)
        # The window's end is known while the scope's row still holds that window; after that
        # it has ended anyway.
        end = group_end if group_start == start and group_end is not None else start
        # Held back the first time if and only if the window's digest counts it: from the
        # record after the ones its job says went out at once (whatever send_first is now).
        held = digest is not None and ordinal > int(digest["send_first"])
        return AlertAdmission(
            ordinal=ordinal, send_now=not held, window_start=start, window_end=end
        )

    async def alert_window(self, scope: str, window_start: dt.datetime) -> AlertWindow:
        members = alert_members.c
        stmt = sa.select(
            sa.func.count(), sa.func.min(members.admitted_at), sa.func.max(members.admitted_at)
        ).where(members.scope == scope, members.window_start == window_start)
        async with self._read() as conn:
            admitted, first_at, last_at = (await conn.execute(stmt)).one()
        return AlertWindow(
            scope=scope,
            window_start=window_start,
            admitted=int(admitted),
            first_at=first_at,
            last_at=last_at,
        )


async def _unsent_digests(conn: StoreConnection) -> list[tuple[str, dt.datetime]]:
    """The (scope, window start) of each window whose digest job is pending: few, one per
    window that held alerts back and has not had its digest sent."""
    jobs = scheduled_jobs.c
    stmt = sa.select(jobs.payload).where(
        jobs.state == JobState.PENDING, jobs.key.startswith("digest:", autoescape=True)
    )
    payloads = (await conn.execute(stmt)).scalars()
    return [(str(p["scope"]), dt.datetime.fromisoformat(str(p["window_start"]))) for p in payloads]


def _not_of(
    windows: list[tuple[str, dt.datetime]],
    scope: sa.ColumnElement[str],
    start: sa.ColumnElement[dt.datetime],
) -> list[sa.ColumnElement[bool]]:
    """The condition that a row is of none of ``windows`` (none when there are none)."""
    if not windows:
        return []
    return [sa.not_(sa.or_(*(sa.and_(scope == s, start == w) for s, w in windows)))]


async def _digest_of(
    conn: StoreConnection, scope: str, start: dt.datetime
) -> dict[str, Any] | None:
    """The payload of the digest job of ``scope``'s window opened at ``start``, if it has one."""
    jobs = scheduled_jobs.c
    stmt = sa.select(jobs.payload).where(jobs.key == digest_job_key(scope, start))
    payload: dict[str, Any] | None = (await conn.execute(stmt)).scalar()
    return payload


def _digest_job(
    scope: str,
    start: dt.datetime,
    end: dt.datetime,
    sent: int,
    kind: str,
    payload: dict[str, Any],
    settle: float,
) -> ScheduledJob:
    """The digest of an alert window: due a little (``settle`` s) after the window ends, so
    that admissions still committing when it ends are counted."""
    return ScheduledJob(
        key=digest_job_key(scope, start),
        kind=kind,
        due_at=end + dt.timedelta(seconds=settle),
        payload={
            **payload,
            "scope": scope,
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "send_first": sent,  # records that went out at once: the digest counts the rest
        },
    )
