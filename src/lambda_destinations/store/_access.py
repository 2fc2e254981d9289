"""What the store's query mixins share: the connections SqlStore supplies, and rows read back
into the store's dataclasses."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    import sqlalchemy as sa

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
