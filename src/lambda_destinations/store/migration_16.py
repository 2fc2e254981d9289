"""Schema version 16: a quarantined message's row says which DLQ took the worker's copy.

The worker quarantines a message by keeping it in the store, sending a copy to the queue's
DLQ, then deleting it from its queue. A delete lost (a crash, the network) brings the message
back after its visibility timeout, and each such delivery sent the DLQ another copy. Now the
worker writes ``sent_to_dlq`` once SQS has taken the copy, and a delivery of a message whose row
has one is deleted without sending it again. A row without one (the send failed, was refused,
or an earlier release made it) is sent as before: a copy may repeat, none is lost.

Additive: earlier releases leave the column NULL, which is what a row of theirs means.
"""

from __future__ import annotations

import sqlalchemy as sa

VERSION = 16


def upgrade(conn: sa.Connection) -> None:
    """Add ``sent_to_dlq`` to ``quarantine``."""
    conn.execute(sa.text("ALTER TABLE quarantine ADD COLUMN sent_to_dlq TEXT"))
