"""Versioned schema migrations, applied in order, each in its own transaction.

``MIGRATIONS`` is the whole history. To change the schema, edit :mod:`._tables` (what the queries
see), write the next version's ``upgrade`` in a module of its own (``migration_6.py``, ...) that
brings a database at the previous version to the new shape, and append its :class:`Migration`
with its ``oldest_writer`` (which earlier releases may still run on it); never edit a released
migration. ``upgrade`` receives a synchronous SQLAlchemy connection inside the migration's
transaction (both backends have transactional DDL), so a failed migration leaves nothing half
done. For portable ALTERs, alembic's ``Operations`` (``MigrationContext.configure(conn)``) works
on that connection, including SQLite's copy-and-move "batch" mode.

``tests/store`` checks that a fully migrated database matches ``_tables.metadata``, so a table
edited without a migration (or the reverse) fails the suite.

Version 1 is a frozen copy of the first schema rather than ``_tables.metadata.create_all``: the
latter would create the *current* tables, and every later ``ALTER`` would then fail on a new
database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import sqlalchemy as sa

from lambda_destinations.errors import NewerSchema
from lambda_destinations.store import (
    migration_6,
    migration_7,
    migration_8,
    migration_9,
    migration_10,
    migration_11,
    migration_12,
    migration_13,
    migration_14,
    migration_15,
    migration_16,
)
from lambda_destinations.store._tables import str_enum
from lambda_destinations.store._types import UTCDateTime, big_id, json_value
from lambda_destinations.store.base import FailureStatus, ReplayOutcome, RunState


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: ``upgrade`` runs in a transaction, then the version is recorded.

    ``oldest_writer`` is the oldest schema version whose releases may still run against a store
    at this version (a rollback, a replica of an earlier release restarting). An additive
    migration (a new table, a nullable column, an index, a data fix the earlier releases' writes
    keep true) keeps the previous version's: the releases that could write before still can. A
    migration that an earlier release would misbehave on (it writes rows this version misreads,
    or misreads the rows this version writes) gives its own version. When in doubt, its own: a
    refused rollback is safer than an earlier release damaging the data.
    """

    version: int
    description: str
    upgrade: Callable[[sa.Connection], None]
    oldest_writer: int = dataclasses.field(kw_only=True)


def _v1_initial(conn: sa.Connection) -> None:
    """invocations, deliveries, handler_runs and quarantine, with the operators' indexes."""
    md = sa.MetaData()
    _v1_invocations(md)
    _v1_deliveries(md)
    _v1_handler_runs(md)
    _v1_quarantine(md)
    md.create_all(conn)


def _v1_invocations(md: sa.MetaData) -> None:
    sa.Table(
        "invocations",
        md,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("envelope", sa.String(16), nullable=False),
        sa.Column("request_id", sa.Text, index=True),
        sa.Column("function_arn", sa.Text),
        sa.Column("function_name", sa.Text, index=True),
        sa.Column("qualifier", sa.Text),
        sa.Column("condition", sa.Text, index=True),
        sa.Column("succeeded", sa.Boolean),
        sa.Column("approximate_invoke_count", sa.Integer),
        sa.Column("error_type", sa.Text, index=True),
        sa.Column("error_message", sa.Text),
        sa.Column("stack_trace", json_value()),
        sa.Column("timestamp", UTCDateTime),
        sa.Column("occurred_at", UTCDateTime, nullable=False, index=True),
        sa.Column("request_payload", json_value()),
        sa.Column("response_payload", json_value()),
        sa.Column("record", json_value()),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
        sa.Column("status", str_enum(FailureStatus), index=True),
        sa.Column("status_by", sa.Text),
        sa.Column("status_at", UTCDateTime),
    )


def _v1_deliveries(md: sa.MetaData) -> None:
    sa.Table(
        "deliveries",
        md,
        sa.Column("id", big_id(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("receive_count", sa.Integer, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("key", "message_id", "receive_count", name="uq_deliveries_message"),
    )


def _v1_handler_runs(md: sa.MetaData) -> None:
    sa.Table(
        "handler_runs",
        md,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("handler", sa.Text, primary_key=True),
        sa.Column("state", str_enum(RunState), nullable=False),
        sa.Column("owner", sa.Text),
        sa.Column("claimed_until", UTCDateTime),
        sa.Column("completed_at", UTCDateTime),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
    )


def _v1_quarantine(md: sa.MetaData) -> None:
    sa.Table(
        "quarantine",
        md,
        sa.Column("id", big_id(), primary_key=True, autoincrement=True),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("message_attributes", json_value(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("receive_count", sa.Integer, nullable=False),
        sa.Column("key", sa.Text, index=True),
        sa.Column("quarantined_at", UTCDateTime, nullable=False, index=True),
        sa.UniqueConstraint("queue", "message_id", name="uq_quarantine_message"),
    )


# -- version 2: the replay ledger (see _ledger.py) ---------------------------------------------


def _v2_replay_ledger(conn: sa.Connection) -> None:
    """replays: one row per attempt to re-invoke a failed invocation."""
    md = sa.MetaData()
    sa.Table(
        "replays",
        md,
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
        sa.UniqueConstraint("original_key", "attempt", name="uq_replays_attempt"),
    )
    md.create_all(conn)


# -- version 3: scheduled jobs and alert windows (see _jobs.py) --------------------------------


def _v3_jobs_and_alert_windows(conn: sa.Connection) -> None:
    """scheduled_jobs (due replays, digests), alert_groups and alert_members (alert storms)."""
    md = sa.MetaData()
    sa.Table(
        "scheduled_jobs",
        md,
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("payload", json_value(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.Text),
        sa.Column("leased_until", UTCDateTime),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Index("ix_scheduled_jobs_state_due_at", "state", "due_at"),
    )
    sa.Table(
        "alert_groups",
        md,
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("window_end", UTCDateTime, nullable=False),
        sa.Column("admitted", sa.Integer, nullable=False),
    )
    sa.Table(
        "alert_members",
        md,
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("admitted_at", UTCDateTime, nullable=False),
        sa.Index("ix_alert_members_scope_window_start", "scope", "window_start"),
    )
    md.create_all(conn)


# -- version 4: PostgreSQL announces each new invocation row (see _notify.py) ------------------

# The channel and how much of a request id a notification carries: NOTIFY payloads are limited
# to 8000 bytes, and a request id too long would make the insert itself fail. A waiter matches
# on the same prefix and then reads the row, so a longer id costs a spurious wake-up at most.
NOTIFY_CHANNEL = "lambda_destinations_invocation"
NOTIFY_PREFIX_CHARS = 200

_V4_NOTIFY = (
    f"""
    CREATE OR REPLACE FUNCTION lambda_destinations_notify_invocation() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', left(NEW.request_id, {NOTIFY_PREFIX_CHARS}));
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER invocations_notify AFTER INSERT ON invocations
    FOR EACH ROW WHEN (NEW.request_id IS NOT NULL)
    EXECUTE FUNCTION lambda_destinations_notify_invocation()
    """,
)


def _v4_notify_invocations(conn: sa.Connection) -> None:
    """PostgreSQL: NOTIFY with the request id whenever an invocation row is inserted.

    A trigger rather than a NOTIFY in the worker's save: every writer (any replica, any version,
    a script) announces its rows, and the notification is sent when the transaction commits,
    never for a row rolled back. An insert that finds its key taken inserts nothing and
    announces nothing. SQLite has no NOTIFY: waiters there read the indexed row instead.
    """
    if conn.dialect.name != "postgresql":
        return
    for statement in _V4_NOTIFY:
        conn.exec_driver_sql(statement)


# -- version 5: the operators' action ledger (see _actions.py) ---------------------------------


def _v5_operator_actions(conn: sa.Connection) -> None:
    """operator_actions: what operators did by hand, who, when and why."""
    md = sa.MetaData()
    sa.Table(
        "operator_actions",
        md,
        sa.Column("id", big_id(), primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("detail", json_value()),
        sa.Index("ix_operator_actions_target_at", "target", "at"),
    )
    md.create_all(conn)


# -- version 15: each version records its oldest writer (see migration_15.py) ------------------

# schema_migrations as it is made before version 1; version 15 adds ``oldest_writer``.
SCHEMA_MIGRATIONS_AT_START = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)


def _v15_oldest_writers(conn: sa.Connection) -> None:
    migration_15.upgrade(conn, {m.version: m.oldest_writer for m in MIGRATIONS})


# Breaking: 7 and 9 store a record in a shape earlier releases misread (7: without its payloads,
# which they then refuse to replay; 9: without its stack trace, request context and first
# delivery); 11 reads a released claim by its time, which earlier releases set to NULL (their
# runs of records not stored would never be pruned). The rest add tables, columns and indexes
# earlier releases leave alone, or (12) mark old rows as those releases save new ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "invocations, deliveries, handler runs, quarantine", _v1_initial, oldest_writer=1),
    Migration(2, "the replay ledger", _v2_replay_ledger, oldest_writer=1),
    Migration(3, "scheduled jobs and alert windows", _v3_jobs_and_alert_windows, oldest_writer=1),
    Migration(
        4,
        "PostgreSQL: notify waiters of new invocation rows",
        _v4_notify_invocations,
        oldest_writer=1,
    ),
    Migration(5, "the operators' action ledger", _v5_operator_actions, oldest_writer=1),
    Migration(6, "invocations' indexes fit the queries", migration_6.upgrade, oldest_writer=1),
    Migration(7, "a record's payloads are stored once", migration_7.upgrade, oldest_writer=7),
    Migration(8, "failures' filter indexes hold the status", migration_8.upgrade, oldest_writer=7),
    Migration(
        9,
        "a record's first delivery and completion in its row",
        migration_9.upgrade,
        oldest_writer=9,
    ),
    Migration(
        10,
        "a quarantined message being resent is claimed",
        migration_10.upgrade,
        oldest_writer=9,
    ),
    Migration(
        11,
        "unstored handler runs and deliveries can be pruned",
        migration_11.upgrade,
        oldest_writer=11,
    ),
    Migration(
        12,
        "replays' own failure records stored before are marked",
        migration_12.upgrade,
        oldest_writer=11,
    ),
    Migration(
        13,
        "SQLite never reuses a quarantined message's id",
        migration_13.upgrade,
        oldest_writer=11,
    ),
    Migration(
        14,
        "a console form's one-time token is kept once",
        migration_14.upgrade,
        oldest_writer=11,
    ),
    Migration(
        migration_15.VERSION,
        "each version records its oldest writer",
        _v15_oldest_writers,
        oldest_writer=11,
    ),
    Migration(
        migration_16.VERSION,
        "a quarantined message's row names the DLQ that took its copy",
        migration_16.upgrade,
        oldest_writer=11,
    ),
)


def check_migrations(migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
    """Raise ValueError unless versions start at 1 and go up by one (no gaps, no repeats), and
    each oldest writer is at most its version and at least the previous one's (a release a
    version refused, a later version cannot let back in)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order; got {versions}")
    oldest = 1
    for m in migrations:
        if not oldest <= m.oldest_writer <= m.version:
            raise ValueError(
                f"migration {m.version}: oldest_writer must be from {oldest} to {m.version}, "
                f"not {m.oldest_writer}"
            )
        oldest = m.oldest_writer


check_migrations()

LATEST_VERSION = MIGRATIONS[-1].version


def check_not_newer(newer: Mapping[int, int | None]) -> None:
    """Raise NewerSchema unless each version a newer release applied past the ones known here
    (``newer``: version to the oldest writer it recorded, None if none) lets this release write:
    otherwise this release's writes could break what that schema expects."""
    refusing = [
        v for v, oldest in sorted(newer.items()) if oldest is None or oldest > LATEST_VERSION
    ]
    if refusing:
        first = refusing[0]
        raise NewerSchema(
            f"the store was migrated by a newer lambda-destinations (schema {max(newer)}, this "
            f"version knows up to {LATEST_VERSION}; schema {first} lets no release before "
            f"{newer[first] or first} write): run that version, or restore a backup from "
            "before it"
        )


__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "NOTIFY_CHANNEL",
    "NOTIFY_PREFIX_CHARS",
    "SCHEMA_MIGRATIONS_AT_START",
    "Migration",
    "check_migrations",
    "check_not_newer",
]
