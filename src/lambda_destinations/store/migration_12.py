"""Schema version 12: the failure records of replays stored before are marked ``replay``.

A replay that failed came back as a failure record of its own (a new request id, the one the
replay ledger recorded as the attempt's ``new_request_id``), and earlier versions stored it as
another ``open`` failure: counted again, and replayed again by any selection that took it. The
worker now saves such a record as ``replay`` (see ``_sql._status_as_saved``); this marks those
already stored, if still open. No table changes.
"""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    """Mark the open failures whose request id is a replay attempt's new invocation."""
    conn.execute(
        sa.text(
            "UPDATE invocations SET status = 'replay' WHERE status = 'open' AND request_id IN "
            "(SELECT new_request_id FROM replays WHERE new_request_id IS NOT NULL)"
        )
    )
