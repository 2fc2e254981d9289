"""Schema version 9: a record's first delivery and its persist completion live in its row.

Every save wrote three rows: the invocation, its delivery and the persist handler's
completion, and the last two, with their indexes, cost about 500 bytes a record on SQLite, half
the size of a typical record. Now the invocation row says both itself:

- ``saved_by``: the handler that stored the row. A row stored by ``persist`` means ``persist``
  completed for its key; ``handler_runs`` holds a row for it only when another handler name
  saved a key that was already stored.
- ``first_message_id``, ``first_receive_count``: the delivery that stored the row, when it
  came in on the row's ``queue`` at the row's ``first_seen_at`` (the persist handler's saves
  do). ``deliveries`` holds the other deliveries only.

Rows stored before keep these columns NULL, and their delivery and completion rows.
"""

from __future__ import annotations

import sqlalchemy as sa

ADDED = (
    ("saved_by", "TEXT"),
    ("first_message_id", "TEXT"),
    ("first_receive_count", "INTEGER"),
)


def upgrade(conn: sa.Connection) -> None:
    """Add the three columns to ``invocations``."""
    for name, sql_type in ADDED:
        conn.execute(sa.text(f"ALTER TABLE invocations ADD COLUMN {name} {sql_type}"))
