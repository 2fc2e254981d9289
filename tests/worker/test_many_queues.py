"""A worker in front of many queues: every queue keeps a long poll open, and deletes do not
wait behind them."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from structlog.testing import capture_logs
from worker_helpers import registry_with, routed, send_bodies, until

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import RouteConfig
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


async def test_deletes_do_not_wait_for_a_connection_behind_long_polls(
    sqs, make_queue, settings_for
) -> None:
    # given: six pollers on each of twelve queues: 72 long polls, each holding a connection
    handler = Held()
    handler.let_go.set()

    # when: a record arrives on each queue
    answers, _received = await one_record_on_each_queue(
        sqs, make_queue, settings_for, handler, concurrency=4, pollers_per_queue=6
    )

    # then: each was handled once and deleted while the polls went on: no receive or delete
    # waited for a connection until a long poll ended empty (and its message, not deleted
    # within its visibility timeout, came back)
    assert sorted(handler.handled) == sorted(set(handler.handled))
    assert len(handler.handled) == QUEUES
    last_delete = len(answers) - answers[::-1].index("delete")
    assert "empty" not in answers[:last_delete]


def test_the_sqs_clients_pool_holds_every_long_poll_and_room_beside_them(settings_for) -> None:
    settings = settings_for(*(f"q{n}" for n in range(40)), concurrency=32, pollers_per_queue=4)

    pool = AwsClients(settings)._config.max_pool_connections

    # 160 long polls, and beside them a connection for each handler slot and each queue's
    # deletes and visibility changes
    assert settings.poller_count() == 160
    assert pool >= 160 + 32 + 40


async def test_a_route_whose_queue_matches_no_polled_queue_is_warned_of_at_start(
    make_queue, settings_for
) -> None:
    # given: three queues, and routes for them by name and by URL, one with a typo
    urls = [make_queue(f"routed-{n}")[0] for n in range(3)]
    names = [url.rsplit("/", 1)[1] for url in urls]
    routes = [
        RouteConfig(queue=names[0], handlers=("persist",)),
        RouteConfig(queue=f"*/{names[1]}", handlers=("persist",)),
        RouteConfig(queue=f"{names[2]}x", condition="failure", handlers=("persist",)),
        RouteConfig(handlers=("persist",)),
    ]
    settings = settings_for(*urls, routes=routes)

    # when
    with capture_logs() as logs:
        async with Worker(settings):
            pass

    # then: one warning, for the route with the typo
    (warning,) = [line for line in logs if "matches none of the polled queues" in line["event"]]
    assert warning["log_level"] == "warning"
    assert warning["event"].startswith(
        f"route routes.2 (condition=failure queue={names[2]}x -> persist)"
    )
    assert "fix its queue in" in warning["fix"]
