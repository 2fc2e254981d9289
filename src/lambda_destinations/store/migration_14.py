"""Schema version 14: a console form's one-time token is kept once, whichever process acts.

An edit-and-replay form and a bulk plan carry a one-time token so that the same form, posted
again, does nothing. The token was kept in the action's JSON detail and looked for there
before acting, a read and a later write: two console processes given the same form at the same
moment (a double submit behind a load balancer) could both find it unused and both act. The
token now has a column of its own with a unique index, and the action is kept before it is
done, by one ``INSERT ... ON CONFLICT DO NOTHING``: one of the two inserts wins on either
backend.

Tokens kept in the detail by earlier versions are not copied into the column: a form is used
within minutes of its page, and such a form posted after the upgrade acts once more at most.
"""

from __future__ import annotations

import sqlalchemy as sa


def upgrade(conn: sa.Connection) -> None:
    """Add the ``nonce`` column and its unique index (both backends add a column in place)."""
    conn.execute(sa.text("ALTER TABLE operator_actions ADD COLUMN nonce TEXT"))
    md = sa.MetaData()
    actions = sa.Table("operator_actions", md, sa.Column("nonce", sa.Text))
    sa.Index("ux_operator_actions_nonce", actions.c.nonce, unique=True).create(conn)
