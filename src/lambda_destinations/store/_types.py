"""Column types shared by the tables and the migrations: aware UTC datetimes and JSON values."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime in and out, whatever the database keeps.

    PostgreSQL keeps ``timestamptz``. SQLite has no datetime type: SQLAlchemy stores fixed-width
    text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts and compares correctly only if every value
    is in the same zone, so values are converted to UTC and stored naive, and read back as UTC.
    A naive datetime is refused rather than guessed at.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    @staticmethod
    def to_utc(value: dt.datetime) -> dt.datetime:
        """``value`` in UTC; a naive datetime is refused (ValueError)."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the store holds timezone-aware datetimes only, got {value!r}")
        return value.astimezone(dt.UTC)

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        value = self.to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def json_value() -> sa.types.TypeEngine[Any]:
    """Any JSON value; SQL NULL for None. JSONB on PostgreSQL (compact, queryable by operators)."""
    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def big_id() -> sa.types.TypeEngine[int]:
    """A 64-bit surrogate key; plain INTEGER on SQLite, where only that aliases the rowid."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
