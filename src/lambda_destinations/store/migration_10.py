"""Schema version 10: a quarantined message being resent is claimed in its row.

``quarantine resend`` (and the console's Resend) sent the message, then forgot the stored
copy: two resends of one message at once both sent it. Now a resend first sets
``resend_claimed_until`` (only when it is NULL or past), sends, then deletes the row (or, with
``--keep``, clears the claim): of resends at once exactly one sends. A resend interrupted after
claiming leaves the claim to lapse, and the message is still in the store.
"""

from __future__ import annotations

import sqlalchemy as sa

from lambda_destinations.store._types import UTCDateTime


def upgrade(conn: sa.Connection) -> None:
    """Add ``resend_claimed_until`` to ``quarantine``."""
    sql_type = UTCDateTime().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE quarantine ADD COLUMN resend_claimed_until {sql_type}"))
