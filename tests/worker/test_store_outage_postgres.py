"""A PostgreSQL store going away (a proxy in front of the server, taken down): what the worker
says of it, as it starts, while it runs, and when it is stopped meanwhile."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from structlog.testing import capture_logs
from worker_helpers import (
    CountingHandler,
    HeldHandler,
    postgres_proxy,
    registry_with,
    routed,
    send_bodies,
    until,
)

from lambda_destinations.simulate import success_record
from lambda_destinations.worker import StartTimedOut, Worker
from lambda_destinations.worker.worker import StoreLostTimedOut

PAUSED = "store unavailable; receiving paused"


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_a_worker_stopped_in_a_store_outage_stops_pinging_the_store(
    sqs, make_queue, settings_for, postgres_url
) -> None:
    # given: a handler that runs on through the grace period, and a store that goes away
    # while it runs, so that the next message pauses receiving
    url, _ = make_queue("stopped-in-outage")
    rng = random.Random(43)
    handler = CountingHandler(sleep=600.0)
    async with postgres_proxy(postgres_url) as (proxy, through):
        settings = settings_for(url, store=through, shutdown_grace=4.0)
        settings = routed(settings, "count")
        worker = Worker(settings, registry=registry_with(settings, handler))
        with capture_logs() as logs:
            async with worker:
                running = asyncio.create_task(worker.run())
                send_bodies(sqs, url, [json.dumps(success_record(rng))])
                assert await until(lambda: len(handler.calls) == 1, seconds=30)
                proxy.take_down()
                send_bodies(sqs, url, [json.dumps(success_record(rng))])
                assert await until(lambda: worker.receiving_paused, seconds=60)

                # when: the worker is stopped, the store still away
                stopping = len(logs)
                worker.stop()
                await running

    # then: the grace period went by with no ping of the store, each a warning (before: the
    # watcher pinged it again at once after each failure, hundreds of times, spinning)
    after = [e["event"] for e in logs[stopping:]]
    assert [e for e in after if e.startswith(PAUSED)] == [], after
    assert "worker stopped" in after
    # and one line closes the outage the log began, with how long it had lasted
    closing = [e for e in logs if e["event"] == "stopping; the store is still unavailable"]
    assert len(closing) == 1, after
    assert closing[0]["outage_seconds"] > 0
    assert "StoreUnavailable" in closing[0]["error"]


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_the_store_back_says_how_long_it_was_away(
    sqs, make_queue, settings_for, postgres_url
) -> None:
    # given: a worker on a PostgreSQL store reached through a proxy
    url, _ = make_queue("back-in-outage")
    rng = random.Random(44)
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    async with postgres_proxy(postgres_url) as (proxy, through):
        settings = routed(settings_for(url, store=through), "count")
        worker = Worker(settings, registry=registry_with(settings, handler))
        with capture_logs() as logs:
            async with worker:
                running = asyncio.create_task(worker.run())
                # when: the store goes away, a message pauses receiving, and it comes back
                proxy.take_down()
                send_bodies(sqs, url, [json.dumps(success_record(rng))])
                assert await until(lambda: worker.receiving_paused, seconds=60)
                paused_seen = loop.time()
                await asyncio.sleep(1.0)
                back = loop.time()
                proxy.bring_back()
                assert await until(lambda: sum(handler.runs.values()) == 1, seconds=60)
                worker.stop()
                await running

    # then: one line says receiving resumed, with the outage's length: at least from when the
    # pause was seen to when the store came back
    again = [e for e in logs if e["event"] == "store reachable again; receiving"]
    assert len(again) == 1, [e["event"] for e in logs]
    assert again[0]["outage_seconds"] >= round(back - paused_seen, 1), again


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_a_start_waiting_for_the_store_names_no_endpoint(
    make_queue, settings_for, postgres_url
) -> None:
    # given: a job starting on a store whose server is away
    url, _ = make_queue("start-no-store")
    async with postgres_proxy(postgres_url) as (proxy, through):
        proxy.take_down()
        worker = Worker(settings_for(url, store=through))

        # when: it waits for the store, then gives up
        began = asyncio.get_running_loop().time()
        with capture_logs() as logs, pytest.raises(StartTimedOut):
            await worker.start(give_up_after=3.0)
        waited = asyncio.get_running_loop().time() - began

    # then: the warning names the store's error and fix, and no endpoint (before: an
    # endpoint of null, SQS's field)
    (line,) = [e for e in logs if e["event"].startswith("cannot reach store")]
    assert "StoreUnavailable" in line["error"]
    assert "endpoint" not in line, line
    # and it waited the whole 3 s (before: until the next backoff would end past them)
    assert waited >= 3.0


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_saves_refused_in_a_store_outage_are_one_warning_not_one_a_message(
    sqs, make_queue, settings_for, postgres_url
) -> None:
    # given: four messages in their first handler at once, persist after it, on a store
    # reached through a proxy
    url, _ = make_queue("saves-in-outage", max_receive_count=10)
    rng = random.Random(45)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(4)])
    held = HeldHandler()
    async with postgres_proxy(postgres_url) as (proxy, through):
        settings = settings_for(url, store=through, concurrency=4, handler_attempts=1)
        settings = routed(settings, held.name, "persist")
        worker = Worker(settings, registry=registry_with(settings, held))
        with capture_logs() as logs:
            async with worker:
                running = asyncio.create_task(worker.run())
                assert await until(lambda: worker.in_flight == 4, seconds=30)
                await asyncio.wait_for(held.started.wait(), 30)
                # when: the store goes away, and the four saves are made
                proxy.take_down()
                held.go.set()
                assert await until(lambda: worker.stats.outcomes["retry"] == 4, seconds=60)
                worker.stop()
                await running

    # then: the store's outage is said once (with its fix) where each refused save was a
    # warning of its own; each message's retry still names the error
    failed = [e for e in logs if e["event"] == "handler persist failed (transient)"]
    assert len(failed) == 4
    assert [e for e in failed if e["log_level"] != "debug"][1:] == [], failed
    assert any(e["event"].startswith(PAUSED) for e in logs)
    retried = [e for e in logs if e["event"] == "message will be retried"]
    assert len(retried) == 4
    assert all("StoreUnavailable" in e["reason"] for e in retried), retried


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_a_job_gives_up_on_the_store_only_once_it_was_away_once_timeout(
    sqs, make_queue, settings_for, postgres_url
) -> None:
    # given: a job (once_timeout 12 s) on a store that goes away as it begins, more messages
    # on its queue than it receives before its first one is handled
    url, _ = make_queue("job-store-away")
    rng = random.Random(46)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(30)])
    loop = asyncio.get_running_loop()
    async with postgres_proxy(postgres_url) as (proxy, through):
        settings = settings_for(
            url, store=through, once_timeout=12.0, concurrency=1, pollers_per_queue=1
        )
        async with Worker(settings) as worker:
            # when: the store stays away
            proxy.take_down()
            away = loop.time()
            with pytest.raises(StoreLostTimedOut) as info:
                await worker.run(once=True)
            given_up = loop.time()

    # then: it gave up no sooner than once_timeout, as its line says (before: as soon as the
    # next ping's backoff would end past it, some 4 to 8 s early)
    assert "stayed unavailable for 12s" in str(info.value)
    assert given_up - away >= 12.0
