"""Shutdown while a long poll is open: cancelling the receive on our side does not end it at
SQS (nor at the moto server the tests run), so a message released before it ends would be
taken by it, hidden for its whole visibility timeout with one more receive counted toward
the DLQ. What shutdown releases then stays hidden until just after the poll ends."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest
from worker_helpers import CountingHandler, receive_all, registry_with, routed, send_bodies

from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker


@pytest.mark.timeout(60)
async def test_messages_released_while_a_long_poll_is_open_come_back_after_it(
    sqs, make_queue, settings_for
) -> None:
    # given: two records whose handler outlasts the grace, at concurrency 2, so that a
    # poller, with room for more, waits in a 5 s long poll on the empty queue
    url, _ = make_queue("polls", visibility_timeout=60)
    rng = random.Random(3)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(2)])
    settings = routed(settings_for(url, concurrency=2, wait_time=5, shutdown_grace=0.5), "slow")
    handler = CountingHandler(name="slow", sleep=60)

    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        running = asyncio.create_task(worker.run())
        for _ in range(100):
            await asyncio.sleep(0.1)
            if len(handler.calls) == 2:
                break
        assert len(handler.calls) == 2
        await asyncio.sleep(1.0)  # the next long poll is open
        assert any(since is not None for since in worker._receiving.values())

        # when: the worker stops; its grace ends, and both messages are released
        worker.stop()
        await running

    # then: once the poll has ended at the server (it was opened less than its 5 s before),
    # both are on the queue within a few seconds; before, it took them within a second of
    # their release, hidden for the queue's 60 s
    await asyncio.sleep(5.0)
    waited = time.monotonic() + 10
    while time.monotonic() < waited:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if attributes["ApproximateNumberOfMessages"] == "2":
            break
        await asyncio.sleep(0.5)
    back = receive_all(sqs, url)
    assert len(back) == 2, "released messages were taken by a long poll cancelled at shutdown"
    # received by the worker and by this check only: no receive counted toward the DLQ
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in back} == {"2"}
