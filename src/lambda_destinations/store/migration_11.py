"""Schema version 11: handler runs and deliveries that belong to no stored record can be pruned.

A route without ``persist`` stores no invocation row, so its handler runs (what was done for each
record, and the claims on what is running) and its duplicates' deliveries were pruned with
nothing and grew for ever; so did the runs of a copy of a record that arrived after the record
was pruned. Retention now deletes such rows by age, and these indexes find the old ones:

- ``ix_handler_runs_completed_at``: completed runs, oldest first;
- ``ix_handler_runs_claimed_until``: runs never completed, by when their claim lapsed or was
  released (a release now keeps the time it happened there, with no owner);
- ``ix_deliveries_received_at``: deliveries, oldest first.

A success of the default route writes neither table (version 9), so its save costs the same.
"""

from __future__ import annotations

import sqlalchemy as sa


def unstored_indexes(handler_runs: sa.Table, deliveries: sa.Table) -> list[sa.Index]:
    """Version 11's indexes, for the migration and ``_tables``."""
    return [
        sa.Index("ix_handler_runs_completed_at", handler_runs.c.completed_at),
        sa.Index("ix_handler_runs_claimed_until", handler_runs.c.claimed_until),
        sa.Index("ix_deliveries_received_at", deliveries.c.received_at),
    ]


def upgrade(conn: sa.Connection) -> None:
    """Create the three indexes on the tables as they are."""
    md = sa.MetaData()
    runs = sa.Table(
        "handler_runs",
        md,
        sa.Column("completed_at", sa.DateTime),
        sa.Column("claimed_until", sa.DateTime),
    )
    deliveries = sa.Table("deliveries", md, sa.Column("received_at", sa.DateTime))
    for index in unstored_indexes(runs, deliveries):
        index.create(conn)
