"""The operator queries are served by indexes that fit them, on both backends: a page of
failures is one index range read newest first, never a scan or a sort of the whole table.

What the plans cost in time at 10 thousand and 1 million records is in bench/store_scale.py;
these tests read the plans (EXPLAIN QUERY PLAN, EXPLAIN) so that they hold on any machine.
On PostgreSQL sequential scans and sorts are priced out (enable_seqscan, enable_sort off): a
plan that still has one has no index to use instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from lambda_destinations.store import FailureStatus, InvocationFilter, PruneKind, Store, _retention
from lambda_destinations.store._sql import SqlStore
from lambda_destinations.store._tables import invocations
from lambda_destinations.store.base import InvocationCursor

T = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
OPEN, IGNORED = FailureStatus.OPEN, FailureStatus.IGNORED

SELECTIONS: dict[str, InvocationFilter] = {
    "newest": InvocationFilter(limit=100),
    "function": InvocationFilter(function_glob="orders-api", limit=100),
    "error type": InvocationFilter(error_type="TimeoutError", limit=100),
    "status": InvocationFilter(statuses=[OPEN], limit=100),
    "two statuses": InvocationFilter(statuses=[OPEN, IGNORED], limit=100),
    "since": InvocationFilter(since=T, limit=100),
    "window": InvocationFilter(since=T, until=T + dt.timedelta(hours=2), limit=100),
    "condition": InvocationFilter(condition="RetriesExhausted", limit=100),
    "open + error type": InvocationFilter(statuses=[OPEN], error_type="TimeoutError", limit=100),
    "no error type": InvocationFilter(error_type="-", limit=100),
    "open + no error type": InvocationFilter(statuses=[OPEN], error_type="-", limit=100),
    "open + function": InvocationFilter(statuses=[OPEN], function_glob="orders-api", limit=100),
    "function + error type + since": InvocationFilter(
        function_glob="orders-api", error_type="TimeoutError", since=T, limit=100
    ),
    "next page": InvocationFilter(after=InvocationCursor(T, T, "req-1:RetriesExhausted"), limit=50),
    "request ids": InvocationFilter(failed_only=False, request_ids=["req-1", "req-2"]),
}


async def plan_of(store: Store, statement: Any) -> list[str]:
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            return [row[-1] for row in rows]
        await conn.exec_driver_sql("SET enable_seqscan = off")
        await conn.exec_driver_sql("SET enable_sort = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN {sql}")
        return [row[0] for row in rows]


async def sqlite_plan(sqlite_url: str, statement: Callable[[SqlStore], Any]) -> list[str]:
    """The plan SQLite makes for ``statement(store)`` on a migrated store at ``sqlite_url``."""
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
        assert isinstance(store, SqlStore)
        return await plan_of(store, statement(store))


def assert_indexed(plan: list[str], *, sorted_by_index: bool = True) -> None:
    text = "\n".join(plan)
    if "SCAN" in text or "SEARCH" in text:  # SQLite
        on_invocations = [line for line in plan if " invocations" in line]
        assert on_invocations, text
        assert all("USING" in line for line in on_invocations), text  # no bare table scan
        if sorted_by_index:
            assert "TEMP B-TREE FOR ORDER BY" not in text, text  # no sort of every match
    else:  # PostgreSQL
        assert "Seq Scan on invocations" not in text, text
        assert "Index" in text, text
        if sorted_by_index:
            sorts = [line for line in plan if "Sort" in line and "Incremental" not in line]
            assert not [line for line in sorts if "Sort Key" not in line], text


@pytest.mark.parametrize("name", sorted(SELECTIONS))
async def test_a_page_of_failures_is_read_from_an_index_newest_first(
    store: Store, name: str
) -> None:
    assert isinstance(store, SqlStore)
    selection = SELECTIONS[name]

    plan = await plan_of(
        store,
        store.list_statement(selection)
        if selection.limit is None
        else store.page_keys_statement(selection),
    )

    # (the rows of a few request ids are found by their index, then sorted: a few rows)
    assert_indexed(plan, sorted_by_index=name != "request ids")


# The index a plan line reads: SQLite's "USING [COVERING] INDEX name", PostgreSQL's "Index
# [Only] Scan [Backward] using name".
_INDEX_READ = re.compile(r"(?:USING (?:COVERING )?INDEX|Scan(?: Backward)? using) (\w+)")


def indexes_read(plan: list[str]) -> list[str]:
    return [found[1] for line in plan if (found := _INDEX_READ.search(line))]


@pytest.mark.parametrize("name", sorted(n for n, s in SELECTIONS.items() if s.limit is not None))
async def test_a_page_oldest_first_reads_the_same_index_range_the_other_way(
    store: Store, name: str
) -> None:
    # (a replay's order, the console's bulk replay a page at a time)
    assert isinstance(store, SqlStore)
    newest = SELECTIONS[name]
    oldest = dataclasses.replace(newest, oldest_first=True)

    newest_plan = await plan_of(store, store.page_keys_statement(newest))
    oldest_plan = await plan_of(store, store.page_keys_statement(oldest))

    # the index the newest-first page reads, read forwards: no sort of the matches
    assert_indexed(oldest_plan)
    assert indexes_read(newest_plan), newest_plan
    assert indexes_read(oldest_plan) == indexes_read(newest_plan), (oldest_plan, newest_plan)


@pytest.mark.parametrize("name", ["newest", "function", "open + error type", "next page"])
async def test_a_page_reads_its_rows_by_key_after_choosing_the_keys(
    store: Store, name: str
) -> None:
    assert isinstance(store, SqlStore)

    plan = await plan_of(store, store.list_statement(SELECTIONS[name]))

    # the page's rows (and only they, with their payloads) are read, each by its primary key
    text = "\n".join(plan)
    assert "sqlite_autoindex_invocations_1 (key=?)" in text or "invocations_pkey" in text, text


async def test_on_sqlite_a_glob_with_a_prefix_sorts_only_the_keys_of_its_range(
    sqlite_url: str,
) -> None:
    # (PostgreSQL's LIKE uses an index range only under the C collation: not asserted there)
    selection = InvocationFilter(function_glob="ledger-*", limit=50)
    plan = await sqlite_plan(sqlite_url, lambda store: store.page_keys_statement(selection))

    # one range of the function-name index, read alone: a glob that matches nothing reads
    # nothing, and the sort is of the keys in the range, never of whole rows
    scans = [line for line in plan if " invocations" in line]
    assert len(scans) == 1, plan
    assert "COVERING INDEX ix_failures_function_name_status (function_name>? AND" in scans[0]


async def test_on_sqlite_the_head_of_a_request_id_is_found_in_its_index(
    sqlite_url: str,
) -> None:
    # (PostgreSQL's LIKE uses an index range only under the C collation: not asserted there)
    plan = await sqlite_plan(sqlite_url, lambda store: store.prefix_statement("5b06258e", 4))

    # one range of the request id's index, read alone, in its order: no table scan, no sort
    (scan,) = [line for line in plan if " invocations" in line]
    assert "COVERING INDEX ix_invocations_request_id (request_id>? AND request_id<?)" in scan
    assert not [line for line in plan if "TEMP B-TREE" in line], plan


@pytest.mark.parametrize("name", ["newest", "status", "open + error type", "function"])
async def test_the_count_of_a_list_stops_at_its_bound(store: Store, name: str) -> None:
    assert isinstance(store, SqlStore)
    selection = SELECTIONS[name]

    plan = await plan_of(store, store.count_statement(selection, at_most=10_001))

    assert_indexed(plan, sorted_by_index=False)
    assert any("LIMIT" in line.upper() or "Limit" in line for line in plan) or (
        # SQLite shows the bound as a co-routine over the subquery, not as a LIMIT line
        any("CO-ROUTINE" in line or "SUBQUERY" in line for line in plan)
    )


async def test_failures_stats_and_show_use_indexes(store: Store) -> None:
    assert isinstance(store, SqlStore)
    by_request_id = sa.select(invocations.c.key).where(invocations.c.request_id == "req-1")
    stats_window = InvocationFilter(since=T, until=T + dt.timedelta(days=1))

    assert_indexed(await plan_of(store, by_request_id), sorted_by_index=False)
    assert_indexed(await plan_of(store, store.count_statement(stats_window)), sorted_by_index=False)


async def test_the_accounts_of_open_failures_are_read_through_the_status_index(
    store: Store,
) -> None:
    assert isinstance(store, SqlStore)

    plan = await plan_of(store, store.accounts_statement())

    # the open failures alone are read (one range of an index), never every record
    assert_indexed(plan, sorted_by_index=False)
    text = "\n".join(plan)
    assert "ix_invocations_status_occurred_at" in text or "ix_failures" in text, text


@pytest.mark.parametrize("name", ["open + error type", "open + function", "newest"])
async def test_on_sqlite_the_bounded_count_reads_the_index_alone(
    sqlite_url: str, name: str
) -> None:
    # (SQLite's plan names a covering index; PostgreSQL's choice depends on its vacuum state)
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
        assert isinstance(store, SqlStore)
        plan = await plan_of(store, store.count_statement(SELECTIONS[name], at_most=10_001))

    # every filter column is in the index: no table row read per match
    assert any("COVERING INDEX" in line for line in plan if " invocations" in line), plan


# The indexes of invocations, and the rows each holds: the failures' lists, counts and replay
# selections read the partial ones (their WHERE says ``status IS NOT NULL`` in those words, so
# that the index's condition is implied), and a success writes only the three others.
FAILURES_ONLY = {
    "ix_failures_occurred_at",
    "ix_failures_function_name_status",
    "ix_failures_error_type_status",
}
EVERY_ROW = {"ix_invocations_status_occurred_at", "ix_invocations_request_id", "primary key"}


async def invocation_indexes(store: Store) -> dict[str, str]:
    """Each index of invocations (the primary key's as "primary key") and its definition."""
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(
                "SELECT name, coalesce(sql, '') FROM sqlite_master"
                " WHERE type = 'index' AND tbl_name = 'invocations'"
            )
            found = {str(name): str(sql) for name, sql in rows}
            found["primary key"] = found.pop("sqlite_autoindex_invocations_1")
        else:
            rows = await conn.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE tablename = 'invocations' AND schemaname = current_schema()"
            )
            found = {str(name): str(sql) for name, sql in rows}
            found["primary key"] = found.pop("invocations_pkey")
    return found


async def test_the_failures_indexes_hold_failures_only_and_no_other_index_exists(
    store: Store,
) -> None:
    indexes = await invocation_indexes(store)

    assert set(indexes) == FAILURES_ONLY | EVERY_ROW
    for name in FAILURES_ONLY:
        where = indexes[name].upper().partition(" WHERE ")[2]
        assert "STATUS IS NOT NULL" in where, indexes[name]
    for name in EVERY_ROW:
        assert " WHERE " not in indexes[name].upper(), indexes[name]


@pytest.mark.parametrize(
    "kind", [PruneKind.SUCCESSES, PruneKind.FAILURES, PruneKind.OPEN_FAILURES, "runs", "deliveries"]
)
async def test_retention_finds_old_rows_through_indexes(store: Store, kind: Any) -> None:
    before = T
    if kind == "runs":
        statement = _retention._old_unstored_runs(before).limit(500)
    elif kind == "deliveries":
        statement = _retention._old_unstored_deliveries(before).limit(500)
    else:
        statement = _retention._old_rows(kind, before)[1].limit(500)

    plan = await plan_of(store, statement)

    text = "\n".join(plan)
    if "SCAN" in text or "SEARCH" in text:  # SQLite: every table read through an index
        reads = [line for line in plan if line.startswith(("SCAN", "SEARCH"))]
        assert reads, text
        assert all("USING" in line for line in reads), text
    else:  # PostgreSQL
        assert "Seq Scan" not in text, text
        assert "Index" in text, text
