"""A worker in front of many queues: every queue keeps a long poll open."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from worker_helpers import registry_with, routed, send_bodies, until

from lambda_destinations.handlers import HandlerContext
from lambda_destinations.schemas import DecodedMessage
from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker

QUEUES = 12


async def record_answers(worker: Worker) -> list[str]:
    """What the worker's SQS calls answered, in order: ``message`` or ``empty`` for each
    ReceiveMessage, ``delete`` for each DeleteMessageBatch."""
    answers: list[str] = []

    def received(parsed: dict[str, Any], **_: Any) -> None:
        answers.append("message" if parsed.get("Messages") else "empty")

    def deleted(**_: Any) -> None:
        answers.append("delete")

    sqs = await worker.aws.client("sqs")
    sqs.meta.events.register("after-call.sqs.ReceiveMessage", received)
    sqs.meta.events.register("after-call.sqs.DeleteMessageBatch", deleted)
    return answers


class Held:
    """Handles a record once let go (``let_go``); counts what it handled."""

    name = "held"

    def __init__(self) -> None:
        self.let_go = asyncio.Event()
        self.handled: list[str] = []

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        await self.let_go.wait()
        self.handled.append(context.key)


async def one_record_on_each_queue(
    sqs: Any, make_queue: Any, settings_for: Any, handler: Held, **overrides: Any
) -> tuple[list[str], int]:
    """Start a worker on QUEUES queues (20 s long polls), then put one record on each; wait
    until all are received, let the handler go and run until every record is acked. What SQS
    answered, in order, and how many records were received before the handler was let go."""
    urls = [make_queue(f"many-{n}")[0] for n in range(QUEUES)]
    settings = routed(settings_for(*urls, wait_time=20, **overrides), handler.name)
    rng = random.Random(31)
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        answers = await record_answers(worker)
        running = asyncio.create_task(worker.run())
        await until(lambda: worker.stats.sqs_calls["ReceiveMessage"] >= QUEUES, seconds=5)
        for url in urls:
            send_bodies(sqs, url, [json.dumps(success_record(rng))])
        await until(lambda: worker.stats.received == QUEUES, seconds=10)
        received = worker.stats.received
        handler.let_go.set()
        await until(lambda: worker.stats.outcomes["ack"] == QUEUES, seconds=60)
        worker.stop()
        await running
    return answers, received


async def test_more_queues_than_room_each_keep_a_long_poll_open(
    sqs, make_queue, settings_for
) -> None:
    # given: twelve queues, one poller each, and concurrency 4: room for 8 messages
    handler = Held()

    # when: a record arrives on each queue while every poll is open, and the handlers hold
    # on to what they got
    answers, received = await one_record_on_each_queue(
        sqs, make_queue, settings_for, handler, concurrency=4
    )

    # then: all twelve were received by the polls open on their queues, before any long
    # poll ended empty: no queue waited, unpolled, for room another queue gave back
    assert received == QUEUES
    twelfth = [n for n, answer in enumerate(answers) if answer == "message"][QUEUES - 1]
    assert "empty" not in answers[:twelfth]
    assert len(set(handler.handled)) == QUEUES
