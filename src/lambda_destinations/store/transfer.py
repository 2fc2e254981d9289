"""Every row of one store copied into another (SQLite to PostgreSQL, or back), ids and keys kept.

The tables are those of ``_tables.metadata`` (every table the store has, the one list the
schema test checks against the migrations), read in primary-key order a batch at a time and
written one transaction a batch, through the tables' own column types: each backend keeps JSON
and times its own way, and the rows read back the same. The record keys and the handler runs
come across as they are, so a message delivered again after the switch finds its record and
its completed handlers there, and runs no effect twice.

PostgreSQL's text holds no NUL character, which a SQLite store's text columns may (a handler's
error, an operator's reason): there it is copied as U+FFFD, as the worker stores the text
columns of a record (the JSON columns keep every character). A row the target refuses
otherwise, or the source cannot read, stops the copy with :class:`CopyStopped`.

Each batch is inserted with ``ON CONFLICT DO NOTHING``: a copy interrupted part-way and run
again (``skip_existing``) adds the rows still missing and keeps those already there. Ids are
copied as they are; the target then hands out new ones after the highest the source ever gave
(PostgreSQL's sequences are moved on; SQLite's AUTOINCREMENT counter too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from lambda_destinations.errors import ConfigError, StoreDataError, StoreError
from lambda_destinations.store._access import make_storable, text_columns
from lambda_destinations.store._sql import SqlStore
from lambda_destinations.store._tables import metadata, schema_migrations
from lambda_destinations.store.base import Store
from lambda_destinations.store.migrations import LATEST_VERSION, MIGRATIONS

# What a target's own migrations write, not copied.
_NOT_COPIED = frozenset({schema_migrations.name})


class TargetNotEmpty(ConfigError):
    """The target already holds records, and the copy was not told to keep them."""


class CopyStopped(Exception):
    """A batch the source could not read or the target refused; the message names the table,
    the row and the fix. The batches before it stay in the target."""


@dataclasses.dataclass(slots=True)
class TableCopy:
    """One table's rows: in the source and the target once every table is copied, and added to
    the target by this copy."""

    table: str
    source_rows: int
    copied: int = 0
    target_rows: int = 0
    nul_replaced: int = 0  # text values whose NUL characters were copied as U+FFFD

    @property
    def matches(self) -> bool:
        return self.source_rows == self.target_rows


Progress = Callable[[str, int, int], None]
"""Called after each batch: the table, the rows read so far, the rows it has."""


def tables() -> list[sa.Table]:
    """The tables a copy carries, in a fixed order."""
    return [table for table in metadata.sorted_tables if table.name not in _NOT_COPIED]


async def copy_store(
    source: Store,
    target: Store,
    *,
    batch: int = 500,
    skip_existing: bool = False,
    progress: Progress | None = None,
) -> list[TableCopy]:
    """Migrate ``target``, copy every table of ``source`` into it, and count both sides.

    ConfigError when ``source`` is not at this release's schema version; TargetNotEmpty when
    ``target`` holds rows and not ``skip_existing``.
    """
    assert isinstance(source, SqlStore)  # every backend is
    assert isinstance(target, SqlStore)
    await same_schema(source)
    await target.migrate()
    if not skip_existing and (held := await _tables_with_rows(target)):
        raise TargetNotEmpty(
            f"{target.display_url} already holds records ({', '.join(held)}): copy into an "
            "empty database, or give --skip-existing to keep its rows and add the missing ones "
            "(a copy interrupted part-way, run again)"
        )
    copies = []
    for table in tables():
        copy = TableCopy(table.name, await _count(source, table))
        before = await _count(target, table)
        await _copy_table(source, target, table, batch, copy, progress)
        await _keep_ids_after(source, target, table)
        copy.copied = await _count(target, table) - before
        copies.append(copy)
    # Both sides counted once every table is copied: a row the source gained meanwhile (a
    # worker still writing) behind the read or in a table copied already makes them differ.
    for table, copy in zip(tables(), copies, strict=True):
        copy.source_rows = await _count(source, table)
        copy.target_rows = await _count(target, table)
    return copies


async def same_schema(source: Store) -> None:
    """Refuse a source whose tables are not this release's: its rows would not fit them.
    ``store copy`` asks before it opens the target: a refused copy makes no target file."""
    assert isinstance(source, SqlStore)  # every backend is
    async with source._read() as conn:
        applied = await source._applied_versions(conn)
    latest = {m.version for m in MIGRATIONS}
    if not latest <= applied:
        raise ConfigError(
            f"{source.display_url} is at an earlier schema version than this release's "
            f"({max(applied, default=0)}, not {LATEST_VERSION}): run `lambda-destinations "
            "migrate` on it first (with its worker stopped), then copy"
        )
    if max(applied) > LATEST_VERSION:
        raise ConfigError(
            f"{source.display_url} is at schema version {max(applied)}, newer than this "
            f"release's ({LATEST_VERSION}): copy it with the release that migrated it"
        )


async def _tables_with_rows(store: SqlStore) -> list[str]:
    held = []
    async with store._read() as conn:
        for table in tables():
            if (await conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1))).first():
                held.append(table.name)
    return held


async def _count(store: SqlStore, table: sa.Table) -> int:
    async with store._read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def _copy_table(
    source: SqlStore,
    target: SqlStore,
    table: sa.Table,
    batch: int,
    copy: TableCopy,
    progress: Progress | None,
) -> None:
    """Read ``table`` in primary-key order, ``batch`` rows at a time (after the last key read,
    never by OFFSET), and insert each batch into ``target`` in a transaction of its own."""
    key = list(table.primary_key.columns)
    insert = target._insert(table).on_conflict_do_nothing()
    texts = text_columns(table) if target.engine.dialect.name == "postgresql" else ()
    last: Sequence[Any] | None = None
    read = 0
    while True:
        stmt = sa.select(table).order_by(*key).limit(batch)
        if last is not None:
            stmt = stmt.where(_after(key, last))
        try:
            async with source._read() as conn:
                rows = [dict(row._mapping) for row in (await conn.execute(stmt)).all()]
        except StoreError as exc:
            raise _stopped(table, last, f"the source cannot read a row: {exc}") from None
        if not rows:
            return
        first = [rows[0][column.name] for column in key]
        last = [rows[-1][column.name] for column in key]  # as the source has it: read on from
        copy.nul_replaced += sum(make_storable(row, texts) for row in rows)
        try:
            async with target._write(atomic=True) as conn:
                await conn.execute(insert, rows)
        except (StoreDataError, StoreError) as exc:
            raise _stopped(table, first, f"the target refused a row: {exc}", batch=True) from None
        read += len(rows)
        if progress is not None:
            progress(table.name, read, copy.source_rows)


def _stopped(
    table: sa.Table, at: Sequence[Any] | None, problem: str, *, batch: bool = False
) -> CopyStopped:
    """The one line for a batch that could not be copied: where, what, and the way on."""
    where = (
        ""
        if at is None
        else f" ({'in the batch from' if batch else 'after'} {_key_text(table, at)})"
    )
    return CopyStopped(
        f"copying {table.name} stopped{where}: {problem}: the rows copied so far stay; "
        "correct or delete that row in the source, then run the copy again with --skip-existing"
    )


def _key_text(table: sa.Table, at: Sequence[Any]) -> str:
    names = [column.name for column in table.primary_key.columns]
    return ", ".join(f"{name} {value!r}" for name, value in zip(names, at, strict=True))


def _after(key: list[sa.Column[Any]], last: Sequence[Any]) -> sa.ColumnElement[bool]:
    if len(key) == 1:
        after: sa.ColumnElement[bool] = key[0] > last[0]
        return after
    values = (sa.literal(value, column.type) for column, value in zip(key, last, strict=True))
    return sa.tuple_(*key) > sa.tuple_(*values)


async def _keep_ids_after(source: SqlStore, target: SqlStore, table: sa.Table) -> None:
    """Have ``target`` hand out ids past every id ``source`` ever gave in ``table`` (the ids
    copied are set explicitly, which moves no PostgreSQL sequence on)."""
    column = table.autoincrement_column
    if column is None:
        return
    async with source._read() as conn:
        highest = await source._last_id(conn, table, column)
    if not highest:  # none handed out (SQLite's counter may say 0)
        return
    async with target._write(atomic=True) as conn:
        await target._reserve_ids(conn, table, column, highest)
