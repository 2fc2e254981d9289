"""A store that refuses the persist handler's saves: the worker pauses receiving, and a store
that answers reads but still refuses writes is asked again at growing intervals.

The outage is real: another connection holds the SQLite file's write lock (as another process
would), so each save waits ``busy_timeout`` (5 s) and fails as StoreUnavailable, while a read
still succeeds, as it would on a full disk; the watcher's ping writes, so it waits too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from worker_helpers import receive_all, registry_with, routed, send_bodies

from lambda_destinations import DecodedMessage, HandlerContext
from lambda_destinations.config import Settings
from lambda_destinations.errors import StoreGone
from lambda_destinations.handlers.base import as_handler
from lambda_destinations.simulate import messages, success_record
from lambda_destinations.store import InvocationFilter, Store
from lambda_destinations.store.sqlite import SQLiteStore
from lambda_destinations.worker import Worker
from lambda_destinations.worker.worker import StoreLostTimedOut, StoreRefusedJob

PAUSED = re.compile(r"store unavailable; receiving paused, retrying in ([0-9.]+)s")


async def stored(url: str) -> int:
    async with Store.from_url(url) as store:
        return await store.count_invocations(InvocationFilter(failed_only=False))


@dataclasses.dataclass
class Outage:
    """20 records on a queue with a DLQ, settings for the default route (persist) on a
    migrated SQLite store, and the write lock of that store held by another connection."""

    url: str
    dlq: str
    bodies: list[str]
    settings: Settings
    holder: sqlite3.Connection


@pytest.fixture
def outage(sqs, make_queue, settings_for, sqlite_url, hold_write_lock):  # type: ignore[no-untyped-def]
    async def make(**overrides: Any) -> Outage:
        url, dlq = make_queue("outage", max_receive_count=5)
        bodies = [m.body for m in messages(30, seed=5, poison_every=0) if not m.attributes][:20]
        send_bodies(sqs, url, bodies)
        settings = settings_for(url, concurrency=4, handler_attempts=1, **overrides)
        async with Store.from_url(settings.store) as store:
            await store.migrate()
        holder = hold_write_lock(Path(sqlite_url.removeprefix("sqlite:///")))
        return Outage(url, dlq, bodies, settings, holder)

    return make


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_saves_refused_pause_receiving_at_growing_intervals_and_lose_nothing(
    sqs, outage
) -> None:
    # given: records on a queue, and a store whose write lock another connection holds
    given = await outage()
    bodies, settings = given.bodies, given.settings

    with capture_logs() as logs:
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            # when: the lock is held through at least two rounds of refused saves (each waits
            # 5 s on the store's one writer thread, behind the scheduler's own), then let go
            await asyncio.sleep(25)
            during = [PAUSED.match(e["event"]) for e in logs]
            given.holder.execute("ROLLBACK")
            for _ in range(120):
                await asyncio.sleep(0.5)
                if await stored(settings.store) == len(bodies):
                    break
            worker.stop()
            await running

    # then: receiving paused after the first refused saves, and the second pause, the store
    # refusing the watcher's writing ping too, was longer than any first one can be
    delays = [float(found[1]) for found in during if found]
    assert len(delays) >= 2, [e["event"] for e in logs]
    assert delays[0] <= 1.0 <= delays[1], delays
    # and nothing was lost or dead-lettered on the way
    assert await stored(settings.store) == len(bodies)
    assert receive_all(sqs, given.dlq) == []
    assert any(e["event"] == "store reachable again; receiving" for e in logs)
    # each pause says why: the save's own error, with its fix
    paused = [e for e in logs if PAUSED.match(e["event"])]
    assert all("another process held the write lock" in e["error"] for e in paused), paused


def on_queue(sqs: Any, url: str) -> int:
    """The messages on the queue at ``url``, visible or hidden (SQS's approximate counts)."""
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(queue["ApproximateNumberOfMessages"]) + int(
        queue["ApproximateNumberOfMessagesNotVisible"]
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_job_gives_up_on_a_store_that_stays_unavailable(sqs, outage) -> None:
    # given: the same outage, and the worker run as a job (run --once) that waits 8 s at most
    given = await outage(once_timeout=8)
    settings = given.settings

    # when: it runs, the lock held throughout
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            with pytest.raises(StoreLostTimedOut) as info:
                await worker.run(once=True)

    # then: it stopped once the outage had lasted once_timeout, naming the error (before, it
    # ended as if the queue were drained, or waited for ever on a store that answered no ping)
    assert "stayed unavailable for 8s while the job ran" in str(info.value)
    assert "another process held the write lock" in str(info.value)
    assert any(e["event"] == "store unavailable for too long; stopping" for e in logs)
    # and every message is still on its queue, none stored, none dead-lettered
    assert await stored(settings.store) == 0
    assert receive_all(sqs, given.dlq) == []
    assert on_queue(sqs, given.url) == len(given.bodies)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_claimed_handler_refused_by_the_store_is_retried_with_its_reason_once(
    sqs, outage
) -> None:
    # given: the outage, and a route whose first handler, the user's, is claimed in the store
    # before it runs
    given = await outage(once_timeout=8)
    runs: list[str] = []

    async def notify(message: DecodedMessage, context: HandlerContext) -> None:
        runs.append(context.message_id)

    settings = routed(given.settings, "notify", "persist")
    registry = registry_with(settings, as_handler("notify", notify))

    # when: it runs as a job, the lock held throughout
    with capture_logs() as logs:
        async with Worker(settings, registry=registry) as worker:
            with pytest.raises(StoreLostTimedOut):
                await worker.run(once=True)

    # then: the handler never ran unclaimed, and each retry's reason names the store's problem
    # once (it read "store unavailable: store … is unavailable: …")
    assert runs == []
    retried = [str(e["reason"]) for e in logs if e["event"] == "message will be retried"]
    assert retried
    assert all(reason.count("unavailable") == 1 for reason in retried), retried
    assert all("another process held the write lock" in reason for reason in retried), retried


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_message_quarantined_while_the_store_refuses_reaches_the_dlq_once(
    sqs, make_queue, settings_for, sqlite_url, hold_write_lock
) -> None:
    # given: a body no Lambda record has, on a queue with a DLQ, and a store whose write lock
    # another connection holds
    url, dlq = make_queue("quar-outage", max_receive_count=5)
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    settings = settings_for(url, concurrency=2)
    async with Store.from_url(settings.store) as store:
        await store.migrate()
    holder = hold_write_lock(Path(sqlite_url.removeprefix("sqlite:///")))

    # when: its quarantine is refused by the store at least once, then the lock goes
    async with Worker(settings) as worker:
        running = asyncio.create_task(worker.run())
        for _ in range(40):
            await asyncio.sleep(0.5)
            if worker.stats.outcomes["retry"]:
                break
        holder.execute("ROLLBACK")
        for _ in range(60):
            await asyncio.sleep(0.5)
            if worker.stats.outcomes["quarantine"]:
                break
        worker.stop()
        stats = await running

    # then: kept in the store and sent to the DLQ once (before, the DLQ copy went first, and
    # each receive the store refused added another)
    assert stats.outcomes["retry"] >= 1
    assert stats.outcomes["quarantine"] == 1
    async with Store.from_url(settings.store) as store:
        assert len(await store.list_quarantine()) == 1
    copies = receive_all(sqs, dlq)
    assert [m["Body"] for m in copies] == ["garbage"]
    assert "LambdaDestinations.Reason" in copies[0]["MessageAttributes"]


@pytest.mark.timeout(90)
async def test_a_store_file_deleted_under_the_worker_stops_it_and_loses_nothing(
    sqs, make_queue, settings_for, sqlite_url
) -> None:
    # given: a worker on the default route (persist) that has stored a first round of records
    url, dlq = make_queue("gone", max_receive_count=5)
    bodies = [m.body for m in messages(30, seed=6, poison_every=0) if not m.attributes][:20]
    first, later = bodies[:10], bodies[10:]
    send_bodies(sqs, url, first)
    settings = settings_for(url, concurrency=4)
    path = Path(sqlite_url.removeprefix("sqlite:///"))

    with capture_logs() as logs:
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            for _ in range(120):
                await asyncio.sleep(0.25)
                if worker.stats.as_dict()["acked"] == len(first):
                    break
            assert worker.stats.as_dict()["acked"] == len(first)

            # when: its file is deleted (as `rm` would), and more records come
            for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
                (path.parent / name).unlink(missing_ok=True)
            send_bodies(sqs, url, later)

            # then: the worker stops by itself, saying why, where before it paused for ever
            # (and before that, wrote on into the deleted file and acknowledged the messages)
            with pytest.raises(StoreGone, match=f"{path} was deleted while open"):
                await asyncio.wait_for(running, 60)

    assert any(e["event"] == "store gone; stopping, to be restarted" for e in logs)
    assert worker.stats.as_dict()["acked"] == len(first)
    # and every later record is still on its queue, none dead-lettered
    assert receive_all(sqs, dlq) == []
    assert on_queue(sqs, url) == len(later)


@pytest.mark.timeout(60)
async def test_a_job_whose_last_messages_the_store_refused_does_not_end_as_drained(
    sqs, make_queue, settings_for, sqlite_url, monkeypatch
) -> None:
    # given: 12 records of 20 kB on a queue, and a store with no room for another page:
    # SQLite's max_page_count held at the migrated file's size on every connection. Each save
    # is refused with SQLITE_FULL, while the watcher's writing ping, one small row in a page
    # that has room, succeeds: a disk full but for a few pages does that
    url, dlq = make_queue("refused", max_receive_count=5)
    rng = random.Random(3)
    records = [success_record(rng) for _ in range(12)]
    for record in records:
        record["requestPayload"] = {"blob": "x" * 20_000}
    send_bodies(sqs, url, [json.dumps(record) for record in records])
    # Retried messages stay hidden 5 to 10 s, past the watcher's first pause (1 s at most).
    settings = settings_for(
        url, concurrency=16, handler_attempts=1, retry_base=10, retry_max=10, once_timeout=30
    )
    async with Store.from_url(settings.store) as store:
        await store.migrate()
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    connect = SQLiteStore._on_connect

    def no_new_page(self: SQLiteStore, dbapi_connection: Any, record: Any) -> None:
        connect(self, dbapi_connection, record)
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(SQLiteStore, "_on_connect", no_new_page)

    # when: it runs as a job
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            with pytest.raises(StoreRefusedJob) as info:
                await worker.run(once=True)

    # then: it did not end as drained (exit 0, before: once the ping answered, the queue
    # answered empty while every message the store had refused waited out its retry delay),
    # but as a job that gave up on the store (exit 4), with the store's own reason and fix
    assert "messages of the job, and took none after them" in str(info.value)
    assert "free space on the disk holding the file" in str(info.value)
    (stopping,) = [
        e for e in logs if e["event"] == "store refused the job's last messages; stopping"
    ]
    # its count an int under a field of its own: `refused` is the recipients an SMTP server
    # refused, an object, and a collector maps one field name to one type
    assert isinstance(stopping["count"], int)
    assert "refused" not in stopping
    # and nothing was stored, lost or dead-lettered: every message is on its queue
    assert worker.stats.outcomes["ack"] == 0
    assert worker.stats.outcomes["retry"] >= 1
    assert await stored(settings.store) == 0
    assert receive_all(sqs, dlq) == []
    assert on_queue(sqs, url) == len(records)
