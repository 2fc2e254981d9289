"""Dispatch under odd timings and errors: per-key turns, typed() misfits, a handler's timeout."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from pydantic import BaseModel
from structlog.testing import capture_logs
from worker_helpers import CountingHandler, receive_all, registry_with, routed, run_until

from lambda_destinations.schemas import DecodedMessage, InvocationRecord
from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker
from lambda_destinations.worker.dispatch import InFlight
from lambda_destinations.worker.queues import REASON_ATTRIBUTE


class _Overlap:
    """A handler that records how many of its runs overlap, and can hold its first run."""

    name = "overlap"
    _records_completion = True  # no claims: only the worker's per-key turns keep runs apart

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.runs = 0
        self.first_started = asyncio.Event()
        self.let_first_end = asyncio.Event()
        self.on_first_end: Any = None

    async def __call__(self, message: DecodedMessage, context: Any) -> None:
        self.active += 1
        self.most = max(self.most, self.active)
        self.runs += 1
        try:
            if self.runs == 1:
                self.first_started.set()
                await self.let_first_end.wait()
                self.on_first_end()  # a third delivery arrives just as the first one ends
            else:
                await asyncio.sleep(0.2)
        finally:
            self.active -= 1


async def test_three_deliveries_of_one_record_in_one_worker_run_one_at_a_time(
    sqs, make_queue, settings_for
) -> None:
    # given: three deliveries of one record, received, and a worker's dispatcher
    url, _dlq = make_queue("turns")
    body = json.dumps(success_record(random.Random(41)))
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    received = receive_all(sqs, url)
    assert len(received) == 3
    settings = routed(settings_for(url), "overlap")
    handler = _Overlap()
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        dispatcher = worker._dispatcher
        assert dispatcher is not None
        queue = worker.queues[0]

        def delivery(message: dict[str, Any]) -> InFlight:
            return InFlight(queue=queue, message=message, visibility=60, extend_at=1e12)

        # when: the second waits its turn behind the first, and the third arrives at the
        # moment the first hands the turn over
        third: list[asyncio.Task[Any]] = []
        handler.on_first_end = lambda: third.append(
            asyncio.create_task(dispatcher.process(delivery(received[2])))
        )
        first = asyncio.create_task(dispatcher.process(delivery(received[0])))
        await handler.first_started.wait()
        second = asyncio.create_task(dispatcher.process(delivery(received[1])))
        for _ in range(5):
            await asyncio.sleep(0)
        handler.let_first_end.set()
        outcomes = await asyncio.gather(first, second)
        outcomes.append(await third[0])

    # then: never two runs at once, and every delivery acked
    assert handler.runs == 3
    assert handler.most == 1
    assert outcomes == ["ack", "ack", "ack"]
    assert len(dispatcher._key_locks) == 0


class _Order(BaseModel):
    order_id: int


async def test_a_record_that_does_not_fit_the_handlers_model_is_quarantined_with_why(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that validates the request payload into its own model
    url, dlq = make_queue("typed")
    record = success_record(random.Random(42))
    record["requestPayload"] = {"order_id": "not a number"}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    calls: list[str] = []

    class Typed(CountingHandler):
        async def __call__(self, message: DecodedMessage, context: Any) -> None:
            calls.append(message.key)
            message.typed(InvocationRecord[_Order, Any])

    settings = routed(settings_for(url), "typed")
    handler = Typed(name="typed")

    # when
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        stats = await run_until(worker, lambda: stats_done(worker), seconds=20)

    # then: quarantined at once, with the field that did not fit, never retried
    assert len(calls) == 1
    assert stats.outcomes["quarantine"] == 1
    assert stats.outcomes["retry"] == 0
    (dead,) = receive_all(sqs, dlq)
    reason = dead["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason.startswith("handler typed: record does not fit")
    assert "order_id" in reason


def stats_done(worker: Worker) -> bool:
    return sum(worker.stats.outcomes.values()) > 0


async def test_a_handlers_own_timeout_error_is_retried_in_process_as_transient(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler whose client times out once (well inside handler_timeout)
    url, dlq = make_queue("own-timeout")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(success_record(random.Random(43))))

    class ClientTimesOut(CountingHandler):
        async def __call__(self, message: DecodedMessage, context: Any) -> None:
            self.calls.append((message.key, context.receive_count, 0.0))
            if len(self.calls) == 1:
                raise TimeoutError("read timed out")
            self.runs[message.key] += 1

    settings = routed(settings_for(url, handler_timeout=60.0), "timeouts")
    handler = ClientTimesOut(name="timeouts")

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: handler.runs, seconds=20)

    # then: tried again in process on the same receive, acked; no talk of handler_timeout
    assert [receive for _key, receive, _at in handler.calls] == [1, 1]
    assert stats.outcomes["ack"] == 1
    assert stats.outcomes["retry"] == 0
    assert not any("handler_timeout" in str(entry) for entry in logs)
    assert receive_all(sqs, dlq) == []
