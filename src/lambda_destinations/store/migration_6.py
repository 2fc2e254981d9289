"""Schema version 6: the invocations' indexes fit the queries, and cost saves less.

Before, ``invocations`` had one index per filter column (function name, condition, error type,
status, time), each written for every success too. The queries always read failures newest
first (``status IS NOT NULL``: every failure has a status, no success has one) or one key or
request id, and the pruning job reads the oldest rows of one status. So:

- ``ix_invocations_status_occurred_at (status, occurred_at)``: a status filter, newest first;
  the oldest successes (``status IS NULL``) and failures of a status for the pruning job;
- partial indexes on failures only (``WHERE status IS NOT NULL``), which a success never
  writes: ``(occurred_at, first_seen_at, key)`` (the lists' order) for a list of every failure,
  and the same after ``function_name`` or ``error_type`` for those filters, so a page is one
  range of one index, never a sort;
- ``request_id`` keeps its index (lookups by request id, the results reader).

A success now writes three b-trees (the table, the request id, the status) instead of seven.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa

_DROPPED = (
    "ix_invocations_function_name",
    "ix_invocations_condition",
    "ix_invocations_error_type",
    "ix_invocations_status",
    "ix_invocations_occurred_at",
)

FAILURES_ONLY = "status IS NOT NULL"


def failures_only(name: str, *columns: sa.Column[Any]) -> sa.Index:
    """An index of the failures only: ``WHERE status IS NOT NULL``, on either backend.

    The WHERE is set for the database the index is created in, as it is created: naming
    ``postgresql_where`` here would import SQLAlchemy's PostgreSQL dialect (asyncpg's part
    included) for every command, SQLite's included, wherever the tables are declared.
    """
    index = sa.Index(name, *columns)
    sa.event.listen(index, "before_create", _where_failures_only)
    return index


def _where_failures_only(index: sa.Index, connection: sa.Connection, **_: Any) -> None:
    index.dialect_options[connection.dialect.name]["where"] = sa.text(FAILURES_ONLY)


def invocation_indexes(table: sa.Table, *, without: Collection[str] = ()) -> list[sa.Index]:
    """Version 6's indexes of ``table`` (``invocations``), but those named in ``without``
    (replaced by a later version), for the migration and ``_tables``."""
    c = table.c
    newest_first = (c.occurred_at, c.first_seen_at, c.key)  # the lists' whole order

    specs: list[tuple[str, Callable[[str], sa.Index]]] = [
        ("ix_invocations_status_occurred_at", lambda n: sa.Index(n, c.status, c.occurred_at)),
        ("ix_failures_occurred_at", lambda n: failures_only(n, *newest_first)),
        ("ix_failures_function_name", lambda n: failures_only(n, c.function_name, *newest_first)),
        ("ix_failures_error_type", lambda n: failures_only(n, c.error_type, *newest_first)),
    ]
    # An index is bound to its table when it is made: make only the ones wanted.
    return [build(name) for name, build in specs if name not in without]


def upgrade(conn: sa.Connection) -> None:
    """Drop the one-column indexes of version 1; create version 6's."""
    for name in _DROPPED:
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    table = sa.Table("invocations", sa.MetaData(), autoload_with=conn)
    for index in invocation_indexes(table):
        index.create(conn)
