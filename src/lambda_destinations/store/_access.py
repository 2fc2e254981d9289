"""What the store's query mixins share: the connections SqlStore supplies, and rows read back
into the store's dataclasses."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")


class SqlAccess:
    """Base of the query mixins (jobs, ledger, actions, retention): :class:`~._sql.SqlStore`
    and its backends supply these."""

    if TYPE_CHECKING:

        def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...

        def _write(
            self, *, atomic: bool = False
        ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...

        def _insert(self, table: sa.Table) -> Any: ...


def from_row(cls: type[T], row: Any, **converted: Any) -> T:
    """A store dataclass from a result row with a column for each of its fields; ``converted``
    gives the values that need more than the column's (an enum from its text)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    values = {field.name: getattr(row, field.name) for field in fields}
    values.update(converted)
    return cls(**values)
