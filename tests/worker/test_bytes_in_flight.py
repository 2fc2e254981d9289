"""bytes_in_flight: big records are handled a few at a time, whatever the concurrency.

A record's objects take up to some 30 times its JSON's bytes once decoded: 32 records near
SQS's 1 MiB at once would take about a gigabyte, and a container's memory limit kills the
worker, again at every start, as the same messages come back (see bench/memory_bench.py).
"""

from __future__ import annotations

import asyncio
import json
import random

from worker_helpers import registry_with, routed, run_until, send_bodies

from lambda_destinations.handlers import HandlerContext
from lambda_destinations.schemas import DecodedMessage
from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker

PAYLOAD = 100_000  # characters of each record's payload


class Overlap:
    """Counts the handlers running at once, and the most there were."""

    name = "overlap"

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.handled: set[str] = set()

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(0.2)  # long enough for the others to start, were they let
        finally:
            self.running -= 1
        self.handled.add(context.key)


def big_records(count: int, size: int) -> list[str]:
    rng = random.Random(3)
    bodies = []
    for _ in range(count):
        record = success_record(rng)
        record["requestPayload"] = {"blob": "x" * size}
        bodies.append(json.dumps(record))
    return bodies


async def drain(sqs, make_queue, settings_for, bodies: list[str], budget: int) -> Overlap:
    url, _dlq = make_queue("big")
    send_bodies(sqs, url, bodies)
    handler = Overlap()
    settings = routed(settings_for(url, concurrency=32, bytes_in_flight=budget), handler.name)
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        await run_until(worker, lambda: worker.stats.outcomes["ack"] >= len(bodies))
    return handler


async def test_records_run_at_once_only_as_far_as_their_bytes_fit(
    sqs, make_queue, settings_for
) -> None:
    # given: twelve records of about 100 kB, handler slots for 32, and 250 kB in flight
    bodies = big_records(12, PAYLOAD)
    assert all(PAYLOAD < len(body) < 125_000 for body in bodies)

    # when: the worker drains them
    handler = await drain(sqs, make_queue, settings_for, bodies, budget=250_000)

    # then: each handled, never more than two at once (before, all twelve ran together)
    assert len(handler.handled) == 12
    assert handler.most <= 2


async def test_a_record_bigger_than_the_budget_is_handled_alone(
    sqs, make_queue, settings_for
) -> None:
    # given: records each bigger than what may be in flight
    bodies = big_records(3, PAYLOAD)

    # when: the worker drains them
    handler = await drain(sqs, make_queue, settings_for, bodies, budget=50_000)

    # then: each is handled, one at a time: the budget holds none back for good
    assert len(handler.handled) == 3
    assert handler.most == 1
