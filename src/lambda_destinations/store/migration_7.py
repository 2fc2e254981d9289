"""Schema version 7: a record's payloads are stored once.

An invocation record carries its request and response payloads, and the store also keeps them
in ``request_payload`` and ``response_payload`` for queries: every payload was stored twice (an
895 KB record took 1.66 MB). Now the ``record`` column holds the record without the payloads
the columns hold, and ``payloads_in_columns`` says which: bit 1 ``requestPayload``, bit 2
``responsePayload``. Reading puts them back. Rows stored before keep their whole record (NULL).
"""

from __future__ import annotations

import sqlalchemy as sa

REQUEST, RESPONSE = 1, 2
# (the record's field, the column holding it, its bit in payloads_in_columns)
MOVED = (
    ("requestPayload", "request_payload", REQUEST),
    ("responsePayload", "response_payload", RESPONSE),
)


def upgrade(conn: sa.Connection) -> None:
    """Add ``invocations.payloads_in_columns``."""
    conn.execute(sa.text("ALTER TABLE invocations ADD COLUMN payloads_in_columns SMALLINT"))
