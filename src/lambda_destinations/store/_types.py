"""Column types shared by the tables and the migrations: aware UTC datetimes and JSON values."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import orjson
import sqlalchemy as sa

from lambda_destinations._json import loads


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


class _JSONB(sa.TypeDecorator[Any]):
    """PostgreSQL's JSONB, its dialect imported when a PostgreSQL database uses the type.

    Naming ``postgresql.JSONB`` in the tables would import SQLAlchemy's PostgreSQL dialect (and
    asyncpg's part of it) for every command, SQLite's included.
    """

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        from sqlalchemy.dialects.postgresql import JSONB

        return JSONB(none_as_null=True)


def json_value() -> sa.types.TypeEngine[Any]:
    """Any JSON value; SQL NULL for None. JSONB on PostgreSQL (compact, queryable by operators)."""
    return sa.JSON(none_as_null=True).with_variant(_JSONB(), "postgresql")


def big_id() -> sa.types.TypeEngine[int]:
    """A 64-bit surrogate key; plain INTEGER on SQLite, where only that aliases the rowid."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


# -- odd but valid strings ---------------------------------------------------------------------
#
# JSON may spell characters no database text can hold: NUL (``\u0000``) and lone surrogates
# (``"\ud800"``, or a pair in the wrong order, ``"\udc00\ud83d"``). Such a record is valid and
# is stored: JSON columns keep it exactly (below), text columns keep it readable.

# JSON escapes PostgreSQL's jsonb refuses: NUL, and surrogates (it refuses the unpaired ones).
_JSONB_REFUSES = re.compile(r"\\u0000|\\ud[89a-f]", re.IGNORECASE)
# A JSON value jsonb cannot hold is kept as its JSON text under this one key, read back whole.
JSON_TEXT_KEY = "$lambda-destinations:json-text"
# A number jsonb's numeric gives back as another: a float from 1e16 on (JSON writes it with an
# exponent; numeric, an integer of all its digits, which reads back an int) and a negative
# zero (numeric has none). A number stands after a ":", "," or "[" (or alone); a string holding
# such text only has its value kept as JSON text too, which reads back the same.
_JSONB_CHANGES = re.compile(r"(?:^|(?<=[:,\[]))(?:-?\d+(?:\.\d+)?e\+?\d|-0\.0(?![\d.e]))")


def store_json(value: Any, *, jsonb: bool = False) -> str:
    """JSON text for a store column that every backend accepts and that reads back as ``value``."""
    try:
        text = orjson.dumps(value).decode()  # escapes NUL; fails on surrogates, big integers
    except TypeError:
        # ASCII only: a lone surrogate becomes an escape, which SQLite's text can hold.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    if (jsonb and (_JSONB_REFUSES.search(text) or _JSONB_CHANGES.search(text))) or _wrapped(value):
        return orjson.dumps({JSON_TEXT_KEY: text}).decode()
    if not jsonb and text[0] in _NUMBER_STARTS and not _sqlite_keeps(value):
        # SQLite's JSON column has NUMERIC affinity: it stores the text of a number as a number,
        # 1.0 as 1 and an integer past 64 bits as a double (digits lost). As text, it is kept.
        return orjson.dumps({JSON_TEXT_KEY: text}).decode()
    return text


# How the JSON text of a number begins.
_NUMBER_STARTS = frozenset("-0123456789")
_INT64 = range(-(2**63), 2**63)


def _sqlite_keeps(number: Any) -> bool:
    """Whether SQLite's NUMERIC affinity reads ``number`` back as it is: a 64-bit integer."""
    return type(number) is int and number in _INT64


def store_jsonb(value: Any) -> str:
    """:func:`store_json` for PostgreSQL's jsonb, which refuses NUL and lone surrogates and
    gives some floats back as other numbers."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        return store_json(value, jsonb=True)
    if "\\u0000" in text or _wrapped(value) or _JSONB_CHANGES.search(text):
        return orjson.dumps({JSON_TEXT_KEY: text}).decode()
    return text


def _wrapped(value: Any) -> bool:
    """Whether ``value`` has the shape of a value kept under :data:`JSON_TEXT_KEY`: a payload
    that holds that key by itself is kept under it too, or it would read back unwrapped."""
    return isinstance(value, dict) and len(value) == 1 and JSON_TEXT_KEY in value


def load_store_json(text: str) -> Any:
    """The value :func:`store_json` or :func:`store_jsonb` wrote."""
    value = loads(text)
    if _wrapped(value):
        inner = value[JSON_TEXT_KEY]
        if isinstance(inner, str):
            return loads(inner)
    return value
