"""Store.wait_for_invocation: a row stored by another store (another process, as the worker
would be) ends the wait; PostgreSQL waits by LISTEN/NOTIFY, running no query meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from store_factories import DeliveryFactory, RowFactory

from lambda_destinations.store import Store


class Statements(list[float]):
    """When each statement a store sends through SQLAlchemy starts (time.monotonic)."""

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.first = asyncio.Event()
        loop = asyncio.get_running_loop()

        def started(*_args: Any) -> None:
            self.append(time.monotonic())
            loop.call_soon_threadsafe(self.first.set)  # SQLite reads in its own thread

        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", started)


def count_statements(store: Any) -> Statements:
    return Statements(store)


@pytest.mark.parametrize("by", ["request id", "key"])
async def test_a_row_stored_meanwhile_ends_the_wait(
    store: Store,
    other_store: Store,
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
    by: str,
) -> None:
    # given: a wait that has read once and found nothing, for a request id or a store key
    # (REQUEST_ID:Condition, as `result` takes one: PostgreSQL's NOTIFY names the request id,
    # and woke no waiter for the key, which waited its whole timeout)
    row = make_row()
    assert row.request_id is not None
    statements = count_statements(store)
    ident = row.request_id if by == "request id" else row.key
    waiting = asyncio.create_task(store.wait_for_invocation(ident, timeout=60))
    await statements.first.wait()
    await asyncio.sleep(0.8)

    # when: another store saves the row
    save_began = time.monotonic()
    await other_store.save_invocation(row, make_delivery(row), complete_handler="persist")
    saved_at = time.monotonic()
    found = await waiting
    returned_at = time.monotonic()

    # then
    assert found is not None
    assert found.key == row.key
    assert returned_at - saved_at < 0.5
    during = [t for t in statements[1:] if t < save_began]
    if store.url.startswith("postgresql"):
        assert during == [], "PostgreSQL must not query while it waits"
        assert len(statements) == 2  # the read before waiting and the read the NOTIFY woke
    else:
        assert len(during) >= 3  # SQLite reads the row again and again meanwhile


async def test_a_wait_without_a_row_ends_with_none_after_the_timeout(store: Store) -> None:
    statements = count_statements(store)
    began = time.monotonic()
    found = await store.wait_for_invocation("no-such-request", timeout=1.0)
    assert found is None
    assert time.monotonic() - began >= 1.0
    if store.url.startswith("postgresql"):
        assert len(statements) == 2  # one read before waiting, one at the end


async def test_many_waits_read_together_not_each_its_own_row(store: Store) -> None:
    # given: 50 waits of a second at once (the console holds up to 100), for rows not stored
    statements = count_statements(store)
    waits = [store.wait_for_invocation(str(uuid.uuid4()), timeout=1.0) for _ in range(50)]

    # when: they wait out their second
    found = await asyncio.gather(*waits)

    # then: each read its row before and after waiting, and meanwhile one query a tick looked
    # for all of them (SQLite; PostgreSQL runs none). Before: each read its own row every 20 to
    # 200 ms, about 9 reads a wait, 450 in all (250 a second)
    assert found == [None] * 50
    assert 2 * 50 <= len(statements) < 2 * 50 + 30
    assert store._row_poll._task is None  # and no task is left reading for nobody


async def test_rows_of_other_request_ids_do_not_end_the_wait(
    store: Store, other_store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    wanted, other = make_row(), make_row()
    assert wanted.request_id is not None
    waiting = asyncio.create_task(store.wait_for_invocation(wanted.request_id, timeout=60))
    await asyncio.sleep(0.3)
    await other_store.save_invocation(other, make_delivery(other))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await other_store.save_invocation(wanted, make_delivery(wanted))
    found = await asyncio.wait_for(waiting, 30)
    assert found is not None
    assert found.key == wanted.key


async def test_many_waits_share_one_listening_connection(
    store: Store, other_store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    rows = [make_row() for _ in range(30)]
    waits = [
        asyncio.create_task(store.wait_for_invocation(str(row.request_id), timeout=60))
        for row in rows
    ]
    await asyncio.sleep(0.5)
    for row in rows:
        await other_store.save_invocation(row, make_delivery(row))
    found = await asyncio.wait_for(asyncio.gather(*waits), 60)
    assert [f.key if f else None for f in found] == [row.key for row in rows]


@pytest.mark.postgres
async def test_postgres_wait_survives_the_loss_of_its_listening_connection(
    postgres_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a wait listening on PostgreSQL
    async with Store.from_url(postgres_url) as store, Store.from_url(postgres_url) as other:
        await store.migrate()
        row = make_row()
        waiting = asyncio.create_task(store.wait_for_invocation(str(row.request_id), timeout=60))
        database = postgres_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(postgres_url)
        try:
            killed = 0
            for _ in range(100):
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND query LIKE 'LISTEN %' AND state = 'idle' "
                    "AND pid <> pg_backend_pid()",
                    database,
                )
                if killed:
                    break
                await asyncio.sleep(0.05)
            assert killed == 1

            # when: the listening connection is gone (the server was restarted, say)
            await asyncio.sleep(0.5)
            await other.save_invocation(row, make_delivery(row))

            # then: the wait listened again and sees the row
            found = await asyncio.wait_for(waiting, 30)
        finally:
            await admin.close()
        assert found is not None
        assert found.key == row.key


@pytest.mark.postgres
async def test_postgres_without_the_trigger_reads_the_row_instead(
    postgres_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a database whose writers send no NOTIFY (as before migration 4)
    async with Store.from_url(postgres_url) as store, Store.from_url(postgres_url) as other:
        await store.migrate()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute("DROP TRIGGER invocations_notify ON invocations")
        finally:
            await admin.close()
        row = make_row()
        waiting = asyncio.create_task(store.wait_for_invocation(str(row.request_id), timeout=60))
        await asyncio.sleep(0.5)

        # when
        await other.save_invocation(row, make_delivery(row))
        saved_at = time.monotonic()
        found = await asyncio.wait_for(waiting, 30)

    # then: found by reading, well before the timeout
    assert found is not None
    assert found.key == row.key
    assert time.monotonic() - saved_at < 5
