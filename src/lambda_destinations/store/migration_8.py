"""Schema version 8: the failures' function and error-type indexes also hold the status.

``failures list --status open --error-type X`` counts the matches it does not show (up to
10,000): with the status in the index that count reads the index alone, instead of the table row
of every match (340 ms at a million records on SQLite, now a few).
"""

from __future__ import annotations

import sqlalchemy as sa

from lambda_destinations.store.migration_6 import failures_only

REPLACED = ("ix_failures_function_name", "ix_failures_error_type")  # version 6's


def failure_filter_indexes(table: sa.Table) -> list[sa.Index]:
    """Version 8's indexes of ``invocations`` on function name and error type (failures only)."""
    c = table.c
    order = (c.occurred_at, c.first_seen_at, c.key, c.status)  # newest first, then the status

    return [
        failures_only("ix_failures_function_name_status", c.function_name, *order),
        failures_only("ix_failures_error_type_status", c.error_type, *order),
    ]


def upgrade(conn: sa.Connection) -> None:
    """Replace version 6's function-name and error-type indexes."""
    for name in REPLACED:
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    table = sa.Table("invocations", sa.MetaData(), autoload_with=conn)
    for index in failure_filter_indexes(table):
        index.create(conn)
