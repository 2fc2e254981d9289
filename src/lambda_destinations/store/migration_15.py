"""Schema version 15: each applied version records the oldest schema whose releases may still
run against it (``schema_migrations.oldest_writer``, from ``Migration.oldest_writer``).

A release refuses a store a newer release migrated, since its writes could break what the newer
schema expects. Most migrations are additive, though, and a rollback across them is safe: from
this version on, a release starts on such a store when every newer version recorded there lets
it write (see ``migrations.check_not_newer``). Releases before this version read no such column
and refuse every newer store, as they did.

The versions applied before this one were recorded without it: their values are filled in from
their declarations.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

VERSION = 15

_versions = sa.table("schema_migrations", sa.column("version"), sa.column("oldest_writer"))


def upgrade(conn: sa.Connection, declared: Mapping[int, int]) -> None:
    """Add ``oldest_writer``; set it for the versions applied, as ``declared`` (version: oldest
    writer) says."""
    conn.execute(sa.text("ALTER TABLE schema_migrations ADD COLUMN oldest_writer INTEGER"))
    declaration = sa.case(dict(declared), value=_versions.c.version)
    conn.execute(_versions.update().values(oldest_writer=declaration))
