"""What the store's query mixins share: the connections SqlStore supplies, and rows read back
into the store's dataclasses."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa

from lambda_destinations._text import storable_text

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

T = TypeVar("T")


class StoreConnection(Protocol):
    """What the queries use of a connection: SQLAlchemy's ``AsyncConnection`` on PostgreSQL,
    a :class:`~._threaded.ThreadConnection` on SQLite."""

    async def execute(self, statement: Any, parameters: Any = None, /) -> Any: ...

    async def exec_driver_sql(self, statement: str, parameters: Any = None, /) -> Any: ...

    async def scalars(self, statement: Any, parameters: Any = None, /) -> Any: ...

    async def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class StoreEngine(Protocol):
    """What the store uses of an engine: SQLAlchemy's ``AsyncEngine`` on PostgreSQL, a
    :class:`~._threaded.ThreadEngine` on SQLite."""

    @property
    def dialect(self) -> sa.Dialect: ...

    @property
    def sync_engine(self) -> sa.Engine: ...

    def connect(self) -> contextlib.AbstractAsyncContextManager[Any]: ...

    def begin(self) -> contextlib.AbstractAsyncContextManager[Any]: ...

    async def dispose(self) -> None: ...


class SqlAccess:
    """Base of the query mixins (jobs, ledger, actions, retention): :class:`~._sql.SqlStore`
    and its backends supply these."""

    if TYPE_CHECKING:

        def _read(self) -> contextlib.AbstractAsyncContextManager[StoreConnection]: ...

        def _write(
            self, *, atomic: bool = False
        ) -> contextlib.AbstractAsyncContextManager[StoreConnection]: ...

        def _insert(self, table: sa.Table) -> Any: ...


def from_row(cls: type[T], row: Any, **converted: Any) -> T:
    """A store dataclass from a result row with a column for each of its fields; ``converted``
    gives the values that need more than the column's (an enum from its text)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    values = {field.name: getattr(row, field.name) for field in fields}
    values.update(converted)
    return cls(**values)


# -- text the store writes ----------------------------------------------------------------------
#
# PostgreSQL's text holds no NUL (and neither backend's a lone surrogate), yet much of what the
# store keeps as text comes from outside: a record's fields, a handler's or a job's error (which
# may quote a payload or an answer), an operator's reason. Every write of such text goes through
# storable_text (U+FFFD in their place), on both backends, so that a store reads the same
# whichever it is. JSON columns need none of this: their type keeps the value exactly.


def text_columns(table: sa.Table) -> tuple[str, ...]:
    """The columns of ``table`` that hold text as it is (not JSON, which its type encodes)."""
    return tuple(column.name for column in table.columns if isinstance(column.type, sa.String))


def storable(value: str | None) -> str | None:
    """``value`` as the store's text holds it (:func:`storable_text`); None stays None."""
    return None if value is None else storable_text(value)


def make_storable(values: dict[str, Any], columns: Collection[str]) -> int:
    """Make the text ``columns`` of ``values`` storable in place (:func:`storable_text`); how
    many values changed. Enum members and other types are left as they are."""
    # Nearly every row's text is ASCII without NUL, which storable_text keeps as it is: one
    # check of all of it together, rather than a call a column (a save's row has a dozen).
    together = "".join([value for value in map(values.get, columns) if type(value) is str])
    if together.isascii() and "\x00" not in together:
        return 0
    changed = 0
    for name in columns:
        value = values.get(name)
        if type(value) is str and (stored := storable_text(value)) != value:
            values[name] = stored
            changed += 1
    return changed
