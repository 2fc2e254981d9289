"""A replay's own failure record saved while the ledger records its request id, on PostgreSQL.

Under READ COMMITTED each statement sees what was committed when it began: the save's INSERT
does not see a ledger row committed while it runs, and the ledger's UPDATE of the record does
not see an insert committed while it runs. Each test holds one side still, at the point where
the other used to miss it, with a lock another connection holds (no sleeps): the record must
still end as ``replay``. SQLite takes its write lock before a write transaction reads, so its
writers never overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from store_factories import DeliveryFactory, RowFactory
from test_store_ledger import attempt

from lambda_destinations.store import DeliveryRow, FailureStatus, InvocationRow, Store
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome

pytestmark = pytest.mark.postgres

_WAITING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """The worker's store and the replayer's: two replicas (or a worker and the CLI)."""
    async with Store.from_url(postgres_url) as worker, Store.from_url(postgres_url) as replayer:
        await worker.migrate()
        yield worker, replayer


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """Two plain connections: one holds locks in a transaction, one watches who waits."""
    holder, watcher = await asyncpg.connect(postgres_url), await asyncpg.connect(postgres_url)
    try:
        yield holder, watcher
    finally:
        await holder.close()
        await watcher.close()


async def _until_waiting(
    watcher: asyncpg.Connection, task: asyncio.Task[object], *, backends: int = 1
) -> None:
    """Return once ``backends`` wait for a lock (the one ``task`` ran into)."""
    async with asyncio.timeout(30):
        while await watcher.fetchval(_WAITING) < backends:
            assert not task.done(), "the call ended without waiting for the lock"
            await asyncio.sleep(0.005)


async def _until_ledgered(
    watcher: asyncpg.Connection, new_request_id: str, task: asyncio.Task[object]
) -> None:
    """Return once the ledger's row for ``new_request_id`` is committed (``task`` writes it)."""
    async with asyncio.timeout(30):
        while not await watcher.fetchval(
            "SELECT count(*) FROM replays WHERE new_request_id = $1", new_request_id
        ):
            assert not task.done(), "the call ended without writing the ledger"
            await asyncio.sleep(0.005)


async def _replay_begun(replayer: Store, original: InvocationRow) -> ReplayAttempt:
    """``original`` stored, and a replay of it recorded up to the Invoke (no request id yet)."""
    await replayer.save_invocation(original, _delivery(original))
    first = attempt(original.key, original_request_id=original.request_id)
    assert await replayer.add_replay(first)
    assert first.id is not None
    return first


def _delivery(row: InvocationRow) -> DeliveryRow:
    return DeliveryRow(row.key, f"m-{row.key}", row.queue, 1, received_at=row.first_seen_at)


async def test_a_save_that_began_before_the_ledger_committed_ends_as_a_replay(
    stores: tuple[Store, Store],
    admin: tuple[asyncpg.Connection, asyncpg.Connection],
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
) -> None:
    worker, replayer = stores
    holder, watcher = admin
    first = await _replay_begun(replayer, make_row())
    replay = make_row(key="new-1:RetriesExhausted", request_id="new-1")

    # given: another transaction holds the replay record's key, uncommitted, so the worker's
    # INSERT computes the status (the ledger has no "new-1" yet: open), then waits for it
    held = holder.transaction()
    await held.start()
    try:
        await holder.execute(
            "INSERT INTO invocations (key, kind, envelope, occurred_at, queue, first_seen_at) "
            "VALUES ($1, 'invocation', 'none', now(), 'q', now())",
            replay.key,
        )
        save = asyncio.create_task(worker.save_invocation(replay, make_delivery(replay)))
        await _until_waiting(watcher, save)
        # when: the replayer records the new request id meanwhile: its UPDATE of the record
        # finds none (the INSERT has not happened yet); it commits, then waits for the save
        ledger = asyncio.create_task(
            replayer.update_replay(first.id, new_request_id="new-1", outcome=ReplayOutcome.INVOKED)
        )
        await _until_ledgered(watcher, "new-1", ledger)
    finally:
        await held.rollback()  # the worker's INSERT goes on, with the status it computed
    # then: the record is stored, and a replay
    assert await save is True
    await ledger
    assert await _status(worker, replay) is FailureStatus.REPLAY


async def test_a_ledger_update_that_began_before_the_save_committed_ends_as_a_replay(
    stores: tuple[Store, Store],
    admin: tuple[asyncpg.Connection, asyncpg.Connection],
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
) -> None:
    worker, replayer = stores
    holder, watcher = admin
    first = await _replay_begun(replayer, make_row())
    # Another open record of the new request id, stored already: the ledger's UPDATE of the
    # request id's open records stops at it while another transaction holds it locked.
    other = make_row(key="new-2:EventAgeExceeded", request_id="new-2")
    await worker.save_invocation(other, make_delivery(other))
    replay = make_row(key="new-2:RetriesExhausted", request_id="new-2")

    # given: the replayer records the new request id; its UPDATE of the records waits
    held = holder.transaction()
    await held.start()
    try:
        await holder.execute("SELECT 1 FROM invocations WHERE key = $1 FOR UPDATE", other.key)
        ledger = asyncio.create_task(
            replayer.update_replay(first.id, new_request_id="new-2", outcome=ReplayOutcome.INVOKED)
        )
        await _until_waiting(watcher, ledger)

        # when: the worker saves the replay's record meanwhile, to the end
        assert await worker.save_invocation(replay, make_delivery(replay)) is True
    finally:
        await held.rollback()
    await ledger

    # then: both records of the new request id are replays
    assert await _status(worker, other) is FailureStatus.REPLAY
    assert await _status(worker, replay) is FailureStatus.REPLAY


async def test_two_replayers_recording_at_once_both_end(
    stores: tuple[Store, Store],
    admin: tuple[asyncpg.Connection, asyncpg.Connection],
    make_row: RowFactory,
) -> None:
    # Two replays at once (two operators, a worker and the console): each one's second look
    # must wait for the other's, not lock the table beside it and then deadlock on the UPDATE.
    worker, replayer = stores
    holder, watcher = admin
    started = [(store, await _replay_begun(store, make_row())) for store in (worker, replayer)]

    # given: a save under way, which both second looks wait for
    held = holder.transaction()
    await held.start()
    try:
        await holder.execute(
            "INSERT INTO invocations (key, kind, envelope, occurred_at, queue, first_seen_at) "
            "VALUES ('held:RetriesExhausted', 'invocation', 'none', now(), 'q', now())"
        )
        ledgers = [
            asyncio.create_task(
                store.update_replay(
                    begun.id, new_request_id=f"new-{n}", outcome=ReplayOutcome.INVOKED
                )
            )
            for n, (store, begun) in enumerate(started)
        ]
        await _until_waiting(watcher, ledgers[0], backends=2)
    finally:
        await held.rollback()  # when: the save ends, and both go on at once

    # then: both are recorded (neither is a deadlock's victim)
    await asyncio.gather(*ledgers)
    for store, begun in started:
        (found,) = await store.replays(begun.original_key)
        assert found.outcome is ReplayOutcome.INVOKED


async def _status(store: Store, row: InvocationRow) -> FailureStatus | None:
    stored = await store.get_invocation(row.key)
    assert stored is not None
    return stored.status


async def test_saves_pay_nothing_for_it(stores: tuple[Store, Store], make_row: RowFactory) -> None:
    worker, _ = stores
    sent: list[str] = []
    sa.event.listen(
        worker.engine.sync_engine,  # type: ignore[attr-defined]
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: sent.append(" ".join(statement.split()[:3])),
    )
    successes = [make_row(succeeded=True, condition="Success", status=None) for _ in range(3)]
    failures = [make_row() for _ in range(3)]
    # when: a batch of successes is saved, then a batch of failures
    for batch in (successes, failures):
        saved = await asyncio.gather(
            # Each delivery the one its row holds: the batch is the INSERT alone
            *(worker.save_invocation(row, _delivery(row)) for row in batch)
        )
        assert saved == [True, True, True]
    # then: each batch is its INSERT alone (the ledger's side does the second look)
    assert sent == ["INSERT INTO invocations", "INSERT INTO invocations"]
