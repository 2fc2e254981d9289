"""Schema version 13: SQLite never gives a quarantined message an id another one had.

``quarantine.id`` was ``INTEGER PRIMARY KEY`` without ``AUTOINCREMENT`` on SQLite, where a new
row takes the highest id plus one: resending (deleting) the newest message freed its id, and
the next message quarantined got it. A Resend from a page (or a ``quarantine resend ID``) read
before then sent that other message. With ``AUTOINCREMENT`` SQLite keeps the highest id ever
used (in ``sqlite_sequence``) and never hands it out again. SQLite cannot add it to a table, so
the table is rebuilt: its rows are copied with their ids, then its indexes made again.

PostgreSQL's ids come from a sequence, which never reuses one: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa

from lambda_destinations.store._types import UTCDateTime, big_id, json_value

_OLD = "quarantine_before_13"
# Version 12's indexes of quarantine (version 1's, by SQLAlchemy's names for index=True).
_INDEXES = ("ix_quarantine_key", "ix_quarantine_quarantined_at")


def quarantine_table(md: sa.MetaData) -> sa.Table:
    """``quarantine`` as version 13 has it (version 12's columns, ids never reused)."""
    return sa.Table(
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
        sa.Column("resend_claimed_until", UTCDateTime),
        sa.UniqueConstraint("queue", "message_id", name="uq_quarantine_message"),
        sqlite_autoincrement=True,
    )


def upgrade(conn: sa.Connection) -> None:
    """SQLite: rebuild ``quarantine`` with ``AUTOINCREMENT``, keeping every row and its id."""
    if conn.dialect.name != "sqlite":
        return
    # Index names are the schema's, not the table's: the old ones go before the new are made.
    for name in _INDEXES:
        conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
    conn.execute(sa.text(f"ALTER TABLE quarantine RENAME TO {_OLD}"))
    table = quarantine_table(sa.MetaData())
    table.create(conn)
    columns = ", ".join(c.name for c in table.c)
    # Copying the ids also sets sqlite_sequence to the highest: no copied id is handed out.
    conn.execute(sa.text(f"INSERT INTO quarantine ({columns}) SELECT {columns} FROM {_OLD}"))
    conn.execute(sa.text(f"DROP TABLE {_OLD}"))
