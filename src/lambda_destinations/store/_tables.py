"""The store's tables as the queries see them: the current schema, written once for both backends.

The DDL that creates them lives in :mod:`lambda_destinations.store.migrations`; a test checks that
a migrated database matches these definitions, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa

from lambda_destinations.store._types import UTCDateTime, big_id, json_value
from lambda_destinations.store.base import FailureStatus, RunState
from lambda_destinations.store.migration_6 import invocation_indexes
from lambda_destinations.store.migration_8 import REPLACED, failure_filter_indexes
from lambda_destinations.store.migration_11 import unstored_indexes


def str_enum(cls: type[enum.StrEnum]) -> sa.Enum:
    """A VARCHAR holding the enum's values, with no CHECK constraint, so adding a value later
    needs no migration."""
    return sa.Enum(
        cls,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


metadata = sa.MetaData()

invocations = sa.Table(
    "invocations",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("envelope", sa.String(16), nullable=False),
    sa.Column("request_id", sa.Text, index=True),
    sa.Column("function_arn", sa.Text),
    sa.Column("function_name", sa.Text),
    sa.Column("qualifier", sa.Text),
    sa.Column("condition", sa.Text),
    sa.Column("succeeded", sa.Boolean),
    sa.Column("approximate_invoke_count", sa.Integer),
    sa.Column("error_type", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("stack_trace", json_value()),
    sa.Column("timestamp", UTCDateTime),
    # The record's timestamp, or first_seen_at when it has none: what operators filter and sort
    # on, kept as a column so that an index serves it (an index on an expression would not be
    # portable between the two backends).
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("request_payload", json_value()),
    sa.Column("response_payload", json_value()),
    sa.Column("record", json_value()),  # without the payloads in the columns (migration_7)
    sa.Column("payloads_in_columns", sa.SmallInteger),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    # Every failure has a status and no success has one: the partial indexes hold failures only.
    sa.Column("status", str_enum(FailureStatus)),
    sa.Column("status_by", sa.Text),
    sa.Column("status_at", UTCDateTime),
    # The handler that stored the row, and the delivery it came in (see migration_9).
    sa.Column("saved_by", sa.Text),
    sa.Column("first_message_id", sa.Text),
    sa.Column("first_receive_count", sa.Integer),
)
# See migration_6 and migration_8 for which query each index serves.
invocation_indexes(invocations, without=REPLACED)
failure_filter_indexes(invocations)

# No foreign key to invocations: the worker records the delivery of a duplicate whose handlers
# all completed even when its route has no persist handler, so no invocation row exists.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("receive_count", sa.Integer, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    # Also the index that counts and lists a key's deliveries (its leading column is key).
    sa.UniqueConstraint("key", "message_id", "receive_count", name="uq_deliveries_message"),
)

# No foreign key either: a handler may be claimed before (or without) an invocation row.
handler_runs = sa.Table(
    "handler_runs",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("handler", sa.Text, primary_key=True),
    sa.Column("state", str_enum(RunState), nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
)
unstored_indexes(handler_runs, deliveries)  # see migration_11

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("message_attributes", json_value(), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("receive_count", sa.Integer, nullable=False),
    sa.Column("key", sa.Text, index=True),
    sa.Column("quarantined_at", UTCDateTime, nullable=False, index=True),
    # Migration 10: set while a resend holds the message (see ``claim_quarantine``).
    sa.Column("resend_claimed_until", UTCDateTime),
    # Migration 16: the DLQ that took the worker's copy (NULL: none is known to have).
    sa.Column("sent_to_dlq", sa.Text),
    sa.UniqueConstraint("queue", "message_id", name="uq_quarantine_message"),
    # Migration 13: an id is never handed out again (a stale Resend must not find another row).
    sqlite_autoincrement=True,
)

# Created before any migration runs (not by one), under the migration lock, in its first shape
# (migrations.SCHEMA_MIGRATIONS_AT_START).
schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
    # Migration 15: the version's Migration.oldest_writer.
    sa.Column("oldest_writer", sa.Integer),
)
