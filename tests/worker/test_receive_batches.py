"""Receives ask for ten whatever the free slots; what waits for a slot is kept safe."""

from __future__ import annotations

import asyncio
import json
import random

from worker_helpers import (
    CountingHandler,
    receive_all,
    receive_requests,
    registry_with,
    routed,
    send_bodies,
)

from lambda_destinations.handlers import HandlerContext
from lambda_destinations.schemas import DecodedMessage
from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker


def records(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps(success_record(rng)) for _ in range(count)]


async def test_at_concurrency_one_each_receive_asks_for_ten_and_each_record_is_handled_once(
    sqs, make_queue, settings_for
) -> None:
    # given: 25 records and a worker that handles one message at a time
    url, _ = make_queue("one-at-a-time")
    send_bodies(sqs, url, records(25, seed=21))
    settings = routed(settings_for(url, concurrency=1), "persist", "count")
    counter = CountingHandler()

    # when: drained with --once
    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        requests = await receive_requests(worker)
        stats = await worker.run(once=True)
    asks = [request["MaxNumberOfMessages"] for request in requests]

    # then: every receive asked for ten, and fewer receives than records were needed
    assert asks
    assert set(asks) == {10}
    assert len(asks) < 25
    # every record handled once, acked, and the queue is empty
    assert len(counter.runs) == 25
    assert set(counter.runs.values()) == {1}
    assert stats.received == 25
    assert stats.duplicates == 0
    assert stats.outcomes["ack"] == 25
    assert receive_all(sqs, url) == []


async def test_messages_waiting_for_a_slot_are_kept_hidden_by_the_heartbeat(
    sqs, make_queue, settings_for
) -> None:
    # given: a visibility timeout of 2 s and 5 records of 1 s each, one at a time: the last
    # waits about 4 s for its slot, twice its visibility timeout
    url, _ = make_queue("waiting", visibility_timeout=2)
    send_bodies(sqs, url, records(5, seed=22))
    settings = routed(settings_for(url, concurrency=1), "count")
    counter = CountingHandler(sleep=1.0)

    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        stats = await worker.run(once=True)

    # then: none came back while it waited
    assert stats.received == 5
    assert len(counter.calls) == 5
    assert set(counter.runs.values()) == {1}
    assert receive_all(sqs, url) == []


async def test_a_stop_makes_the_messages_waiting_for_a_slot_visible_again_at_once(
    sqs, make_queue, settings_for
) -> None:
    # given: ten records, a handler that never ends, one slot: one message runs, nine wait
    url, _ = make_queue("stop-waiting", visibility_timeout=120)
    send_bodies(sqs, url, records(10, seed=23))
    started = asyncio.Event()

    class Stuck:
        name = "stuck"
        records_completion = False

        async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
            started.set()
            await asyncio.Event().wait()

    settings = routed(settings_for(url, concurrency=1, shutdown_grace=0.5), "stuck")
    async with Worker(settings, registry=registry_with(settings, Stuck())) as worker:
        running = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), timeout=30)
        assert worker.in_flight == 10

        # when: the worker stops
        worker.stop()
        stats = await running

    # then: all ten are visible again at once (the queue hides them for 120 s otherwise)
    assert stats.received == 10
    assert stats.outcomes["release"] == 10
    assert len(receive_all(sqs, url)) == 10


async def test_messages_are_received_ahead_while_every_slot_is_busy(
    sqs, make_queue, settings_for
) -> None:
    # given: 40 records and ten slots whose handlers wait until they are let go
    url, _ = make_queue("ahead", visibility_timeout=120)
    send_bodies(sqs, url, records(40, seed=24))
    let_go = asyncio.Event()
    started: list[str] = []

    class Gated:
        name = "gated"

        async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
            started.append(context.key)
            await let_go.wait()

    settings = routed(settings_for(url, concurrency=10), "gated")
    async with Worker(settings, registry=registry_with(settings, Gated())) as worker:
        running = asyncio.create_task(worker.run(once=True))

        # when: every slot is busy (looked at for up to 30 s)
        for _ in range(600):
            if len(started) == 10 and worker.in_flight >= 20:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # room for a receive too many, had there been one

        # then: ten more are already received, waiting for a slot; no more than that, and
        # no more than ten handlers run at once
        assert worker.in_flight == 20
        assert len(started) == 10

        let_go.set()
        stats = await running

    # every record handled once and acked; the queue is empty
    assert sorted(started) == sorted(set(started))
    assert len(started) == 40
    assert stats.outcomes["ack"] == 40
    assert receive_all(sqs, url) == []
