"""Dispatch under odd timings and errors: per-key turns, typed() misfits, a handler's timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from pydantic import BaseModel
from structlog.testing import capture_logs
from worker_helpers import (
    CountingHandler,
    receive_all,
    registry_with,
    routed,
    run_until,
    send_bodies,
    until,
)

from lambda_destinations.errors import RetryMessage, TransientError
from lambda_destinations.schemas import DecodedMessage, InvocationRecord, decode
from lambda_destinations.simulate import success_record
from lambda_destinations.store import RunState, Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker.dispatch import InFlight
from lambda_destinations.worker.queues import (
    DLQ_GONE,
    NO_DLQ,
    REASON_ATTRIBUTE,
    arn_name,
    queue_name,
)


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


async def test_a_cancelled_error_the_handler_raises_itself_is_its_error_retried_with_backoff(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler whose first call awaits a task something else cancels (the worker did
    # not cancel the handler), then works
    url, dlq = make_queue("own-cancel")
    record = success_record(random.Random(44))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    class AwaitsCancelledTask(CountingHandler):
        async def __call__(self, message: DecodedMessage, context: Any) -> None:
            self.calls.append((message.key, context.receive_count, 0.0))
            if len(self.calls) == 1:
                other = asyncio.create_task(asyncio.sleep(60))
                asyncio.get_running_loop().call_soon(other.cancel)
                await other
            self.runs[message.key] += 1

    settings = routed(
        settings_for(url, handler_attempts=1, retry_base=0.0, retry_max=0.0), "cancelled"
    )
    handler = AwaitsCancelledTask(name="cancelled")

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: handler.runs, seconds=20)
            errors = worker.metrics.registry.get_sample_value(
                "lambda_destinations_handler_errors_total",
                {"handler": "cancelled", "error_class": "transient"},
            )

    # then: a handler error, logged and counted: the message is retried (not released at
    # once), the claim released with the error; the next receive runs it and acks
    assert [receive for _key, receive, _at in handler.calls] == [1, 2]
    assert stats.outcomes["retry"] == 1
    assert stats.outcomes["release"] == 0
    assert stats.outcomes["ack"] == 1
    assert errors == 1
    failed = [e for e in logs if e["event"] == "handler cancelled failed (transient)"]
    assert len(failed) == 1
    assert "raised CancelledError, but the worker did not cancel it" in failed[0]["error"]
    async with Store.from_url(settings.store) as store:
        (run,) = await store.handler_runs(next(iter(handler.runs)))
    assert run.state == RunState.COMPLETED
    assert run.last_error is not None
    assert "CancelledError" in run.last_error
    assert receive_all(sqs, dlq) == []


@pytest.mark.parametrize(
    ("delay", "refusal"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (-1, ValueError),
        ("soon", TypeError),
        (True, TypeError),
    ],
)
def test_a_retry_delay_that_is_no_number_of_seconds_is_refused_in_one_line(
    delay: Any, refusal: type[Exception]
) -> None:
    with pytest.raises(refusal) as refused:
        RetryMessage("later", delay=delay)

    assert str(refused.value).startswith(f"RetryMessage(delay={delay!r}): the delay is ")
    assert "\n" not in str(refused.value)


async def test_a_handler_refused_its_retry_delay_is_retried_by_the_backoff(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that asks for a retry in NaN seconds
    url, dlq = make_queue("nan-delay")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(success_record(random.Random(45))))

    class NanDelay(CountingHandler):
        async def __call__(self, message: DecodedMessage, context: Any) -> None:
            self.calls.append((message.key, context.receive_count, 0.0))
            raise RetryMessage("later", delay=float("nan"))

    settings = routed(settings_for(url, handler_attempts=1), "nan")
    handler = NanDelay(name="nan")

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: worker.stats.outcomes["retry"], seconds=20)

    # then: the handler's error, retried with the backoff; the message task did not crash
    assert len(handler.calls) == 1
    assert stats.outcomes["retry"] == 1
    assert stats.outcomes["release"] == 0
    assert not any(e["event"] == "message task failed" for e in logs)
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert "RetryMessage(delay=nan)" in retried["reason"]
    assert retried["delay"] >= 1
    assert receive_all(sqs, dlq) == []


async def test_a_retry_delay_is_capped_at_twelve_hours_from_the_receipt(
    sqs, make_queue, settings_for
) -> None:
    # given: a message received (by the worker's clock) just over 12 hours ago
    url, _ = make_queue("twelve-hours", visibility_timeout=120)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(success_record(random.Random(46))))
    (message,) = receive_all(sqs, url)
    settings = settings_for(url)
    async with Worker(settings) as worker:
        dispatcher = worker._dispatcher
        assert dispatcher is not None
        long_ago = asyncio.get_running_loop().time() - 43200 - 5
        item = InFlight(
            queue=worker.queues[0],
            message=message,
            visibility=120,
            extend_at=1e12,
            received_at=long_ago,
        )

        # when: a handler asks for a retry in a billion seconds
        with capture_logs() as logs:
            await dispatcher.retry(item, "later", delay=10**9)
            await dispatcher.visibility.flush()

    # then: SQS is asked for what is left of the 12 hours (nothing), so the message shows again
    # at once, instead of a visibility SQS refuses
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert retried["delay"] == 0
    assert [m["MessageId"] for m in receive_all(sqs, url)] == [message["MessageId"]]


async def test_a_quarantine_whose_dlq_was_deleted_is_kept_by_the_store_and_says_what_to_do(
    sqs, make_queue, settings_for
) -> None:
    # given: a worker started on a queue with a DLQ, and the DLQ deleted since
    url, dlq = make_queue("dlq-gone", max_receive_count=5)
    settings = settings_for(url, concurrency=2)
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            sqs.delete_queue(QueueUrl=dlq)
            # when: a message must be quarantined
            sqs.send_message(QueueUrl=url, MessageBody="garbage")
            stats = await run_until(worker, lambda: worker.stats.outcomes["quarantine"])

    # then: the store keeps it, and its message is deleted from the queue
    assert stats.outcomes["quarantine"] == 1
    async with Store.from_url(settings.store) as store:
        assert [row.body for row in await store.list_quarantine()] == ["garbage"]
    assert receive_all(sqs, url) == []
    # and one warning names the missing DLQ and the fix (before, "the DLQ refused the
    # quarantined message" with SQS's error, and "message quarantined" named the DLQ as if
    # the message had reached it)
    gone = [e for e in logs if e["event"] == f"the DLQ {queue_name(dlq)} does not exist"]
    assert [e["dlq"] for e in gone] == [dlq]
    assert "create it again" in gone[0]["fix"]
    assert "quarantine list" in gone[0]["fix"]
    [quarantined] = [e for e in logs if e["event"] == "message quarantined"]
    assert quarantined["dlq"] is None
    # and the SendMessage the DLQ refused is counted
    failed = {"operation": "SendMessage"}
    assert worker.metrics.registry.get_sample_value(SQS_ERRORS, failed) == 1


SQS_ERRORS = "lambda_destinations_sqs_errors_total"


async def test_many_quarantines_into_a_deleted_dlq_warn_once_and_its_return_is_said(
    sqs, make_queue, settings_for
) -> None:
    # given: a worker (depth sampling often) whose queue's DLQ was deleted
    url, dlq = make_queue("dlq-gone-many", max_receive_count=5)
    settings = settings_for(url, concurrency=4, queue_metrics_interval=0.2)
    name = queue_name(dlq)
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            sqs.delete_queue(QueueUrl=dlq)
            running = asyncio.create_task(worker.run())
            # when: twelve messages are quarantined meanwhile, then the DLQ is back
            send_bodies(sqs, url, [f"garbage {n}" for n in range(12)])
            await until(lambda: worker.stats.outcomes["quarantine"] >= 12)
            sqs.create_queue(QueueName=name)
            sqs.send_message(QueueUrl=url, MessageBody="garbage again")
            await until(lambda: worker.stats.outcomes["quarantine"] >= 13)
            worker.stop()
            await running

    # then: one warning said the DLQ is gone and what to do (before, one a message quarantined,
    # and the depth sampler's own beside them), one line that it is back
    gone = [e for e in logs if "does not exist" in str(e["event"]) and e.get("dlq") == dlq]
    assert len(gone) == 1, [e["event"] for e in gone]
    assert gone[0]["fix"] == DLQ_GONE
    assert [e["event"] for e in logs if e.get("dlq") == dlq and "exists again" in e["event"]] == [
        f"the DLQ {name} exists again"
    ]
    # and every message is kept: the twelve by the store, the last one by the DLQ as well
    async with Store.from_url(settings.store) as store:
        assert len(await store.list_quarantine()) == 13
    assert [m["Body"] for m in receive_all(sqs, dlq)] == ["garbage again"]


async def test_each_look_up_of_a_dlq_that_does_not_exist_is_counted(
    sqs, make_queue, settings_for
) -> None:
    # given: a queue whose redrive policy names a DLQ deleted before the worker started
    url, dlq = make_queue("dlq-looked-up", max_receive_count=5)
    sqs.delete_queue(QueueUrl=dlq)
    settings = settings_for(url, concurrency=2, queue_metrics_interval=0.2)
    failed = {"operation": "GetQueueUrl"}
    async with Worker(settings) as worker:
        registry = worker.metrics.registry
        at_start = registry.get_sample_value(SQS_ERRORS, failed)
        # when: the depth sampler reads the policy again and looks its DLQ up, a few times
        running = asyncio.create_task(worker.run())
        counted = await until(lambda: (registry.get_sample_value(SQS_ERRORS, failed) or 0) >= 4)
        worker.stop()
        await running

    # then: the look-up at start and each one since are counted (before, none was: a
    # GetQueueUrl behind a redrive policy, at start or read again, was counted nowhere)
    assert at_start == 1
    assert counted


async def test_a_dlq_deleted_while_the_worker_runs_is_reported_once_and_again_when_back(
    sqs, make_queue, settings_for
) -> None:
    # given: a worker sampling queue depths often, on a queue with a DLQ
    url, dlq = make_queue("dlq-sampled", max_receive_count=5)
    settings = settings_for(url, concurrency=2, queue_metrics_interval=0.2)
    name = dlq.rsplit("/", 1)[-1]
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            # when: its DLQ is deleted, sampled missing a few times, then created again
            sqs.delete_queue(QueueUrl=dlq)
            failed = {"operation": "GetQueueAttributes"}
            for _ in range(60):
                await asyncio.sleep(0.25)
                registry = worker.metrics.registry
                if (
                    registry.get_sample_value("lambda_destinations_sqs_errors_total", failed) or 0
                ) >= 3:
                    break
            sqs.create_queue(QueueName=name)
            await until(lambda: any(e["event"] == f"the DLQ {name} exists again" for e in logs))
            worker.stop()
            await running

    # then: one warning named it with the fix (before, a debug line per sample, and the DLQ's
    # depth series, which the DLQ alert reads, went absent without a word), one line when back
    gone = [e for e in logs if e["event"] == f"the DLQ {name} does not exist"]
    assert [(e["log_level"], e["dlq"]) for e in gone] == [("warning", dlq)]
    assert "create it again" in gone[0]["fix"]
    assert [e["dlq"] for e in logs if e["event"] == f"the DLQ {name} exists again"] == [dlq]


def _dead_letter_to(sqs: Any, url: str, dlq: str | None, max_receive_count: int = 5) -> None:
    """Give the queue ``url`` a redrive policy to ``dlq`` (None: take its policy away)."""
    policy = ""
    if dlq is not None:
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
        target = {"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": str(max_receive_count)}
        policy = json.dumps(target)
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})


async def _quarantine_one(worker: Worker, sqs: Any, url: str, change: Callable[[], None]) -> None:
    """Run ``worker``, make ``change`` while it runs, then send it a poison message and run
    until it is quarantined."""
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)
    change()
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    await until(lambda: worker.stats.outcomes["quarantine"])
    worker.stop()
    await running


async def test_a_quarantine_follows_a_redrive_policy_given_another_dlq_while_the_worker_runs(
    sqs, make_queue, settings_for
) -> None:
    # given: a running worker (no depth sampler: the quarantine alone must notice), whose
    # queue is then given a redrive policy to a new DLQ, and its old DLQ deleted
    url, old = make_queue("dlq-moved", max_receive_count=5)
    new, _ = make_queue("dlq-moved-new", dlq=False)
    settings = settings_for(url, concurrency=2, queue_metrics_interval=0)

    def move() -> None:
        _dead_letter_to(sqs, url, new)
        sqs.delete_queue(QueueUrl=old)

    with capture_logs() as logs:
        async with Worker(settings) as worker:
            # when: a poison message is quarantined
            await _quarantine_one(worker, sqs, url, move)

    # then: exactly one copy is in the new DLQ, with its reason; the store has it; the queue
    # is empty (before, the copy went to the deleted DLQ until a restart: the store only)
    assert worker.stats.outcomes["quarantine"] == 1
    copies = receive_all(sqs, new)
    assert [m["Body"] for m in copies] == ["garbage"]
    assert copies[0]["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    async with Store.from_url(settings.store) as store:
        assert [row.body for row in await store.list_quarantine()] == ["garbage"]
    assert receive_all(sqs, url) == []
    # and one line says where the queue dead-letters now; none says the DLQ is gone
    name, new_name = url.rsplit("/", 1)[-1], new.rsplit("/", 1)[-1]
    moved = [e for e in logs if e["event"] == f"queue {name} now dead-letters to {new_name}"]
    assert [(e["log_level"], e["dlq"]) for e in moved] == [("info", new)]
    assert not [e for e in logs if str(e["event"]).endswith("does not exist")]
    [quarantined] = [e for e in logs if e["event"] == "message quarantined"]
    assert quarantined["dlq"] == new
    assert [q.dlq_url for q in worker.queues] == [new]


async def test_the_depth_sampler_follows_a_redrive_policy_given_another_dlq(
    sqs, make_queue, settings_for
) -> None:
    # given: a running worker sampling queue depths often, whose queue is then given a
    # redrive policy to a new DLQ; the old one still exists
    url, old = make_queue("dlq-sampled-move", max_receive_count=5)
    new, _ = make_queue("dlq-sampled-move-new", dlq=False)
    settings = settings_for(url, concurrency=2, queue_metrics_interval=0.2)
    name, new_name = url.rsplit("/", 1)[-1], new.rsplit("/", 1)[-1]
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            _dead_letter_to(sqs, url, new)
            moved = f"queue {name} now dead-letters to {new_name}"
            await until(lambda: any(e["event"] == moved for e in logs))
            # when: a poison message is quarantined
            sqs.send_message(QueueUrl=url, MessageBody="garbage")
            await until(lambda: worker.stats.outcomes["quarantine"])
            await asyncio.sleep(0.5)  # a round of samples with the new DLQ
            worker.stop()
            await running

    # then: its copy is in the new DLQ, none in the old one (before: the old one, until a
    # restart), and the new DLQ's depth is sampled, the old one's no longer
    assert [m["Body"] for m in receive_all(sqs, new)] == ["garbage"]
    assert receive_all(sqs, old) == []
    assert [e["dlq"] for e in logs if e["event"] == moved] == [new]
    registry = worker.metrics.registry
    depth = "lambda_destinations_queue_messages"
    sampled = {"role": "dlq", "state": "visible"}
    assert registry.get_sample_value(depth, {"queue": new_name, **sampled}) is not None
    old_name = old.rsplit("/", 1)[-1]
    assert registry.get_sample_value(depth, {"queue": old_name, **sampled}) is None


async def test_a_quarantine_after_the_redrive_policy_was_removed_keeps_the_store_copy_only(
    sqs, make_queue, settings_for
) -> None:
    # given: a running worker whose queue's redrive policy is then removed, its DLQ deleted
    url, old = make_queue("dlq-removed", max_receive_count=5)
    settings = settings_for(url, concurrency=2, queue_metrics_interval=0)

    def remove() -> None:
        _dead_letter_to(sqs, url, None)
        sqs.delete_queue(QueueUrl=old)

    with capture_logs() as logs:
        async with Worker(settings) as worker:
            # when: a poison message is quarantined
            await _quarantine_one(worker, sqs, url, remove)

    # then: the store keeps it, the queue is empty, and the warning a start without a DLQ
    # gives says so (not the fix for a deleted DLQ, which the policy no longer names)
    assert worker.stats.outcomes["quarantine"] == 1
    async with Store.from_url(settings.store) as store:
        assert [row.body for row in await store.list_quarantine()] == ["garbage"]
    assert receive_all(sqs, url) == []
    name = url.rsplit("/", 1)[-1]
    assert [e["queue"] for e in logs if e["event"] == NO_DLQ] == [name]
    assert not [e for e in logs if e.get("fix") == DLQ_GONE]
    [quarantined] = [e for e in logs if e["event"] == "message quarantined"]
    assert quarantined["dlq"] is None
    assert [q.dlq_url for q in worker.queues] == [None]


async def test_the_depth_sampler_follows_a_max_receive_count_changed_alone(
    sqs, make_queue, settings_for
) -> None:
    # given: a record whose handler a crashed worker holds the claim on, its message received
    # twice and hidden; a running worker on its queue, which dead-letters after ten receives
    url, dlq = make_queue("mrc-lowered", max_receive_count=10)
    assert dlq is not None
    body = json.dumps(success_record(random.Random(9)))
    sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)
    (hidden,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=300)["Messages"]
    settings = routed(settings_for(url, retry_max=60.0, queue_metrics_interval=0.2), "count")
    handler = CountingHandler()
    name = url.rsplit("/", 1)[-1]
    lowered = f"queue {name} maxReceiveCount now 3 (was 10)"
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            running = asyncio.create_task(worker.run())
            # when: the queue's maxReceiveCount alone is lowered to three (the same DLQ), and
            # once followed, the message comes back for its third, now last, receive
            _dead_letter_to(sqs, url, dlq, max_receive_count=3)
            await until(lambda: any(e["event"] == lowered for e in logs))
            async with Store.from_url(settings.store) as store:
                key = decode(body).key
                assert await store.claim_handler(key, "count", "crashed-worker", ttl=3)
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=hidden["ReceiptHandle"], VisibilityTimeout=0
            )
            dead: list[dict[str, Any]] = []
            await until(lambda: handler.runs or dead.extend(receive_all(sqs, dlq)) or dead)
            worker.stop()
            await running

    # then: the third receive waited out the claim in process, as a last receive does, and ran
    # the handler (before: the worker still counted ten receives, so it retried, and the queue
    # dead-lettered the message on its fourth receive); one line said so
    assert [m["Body"] for m in dead] == []
    assert [receive for _key, receive, _at in handler.calls] == [3]
    assert worker.stats.outcomes["retry"] == 0
    assert receive_all(sqs, url) == []
    assert [q.max_receive_count for q in worker.queues] == [3]
    assert [(e["log_level"], e["queue"]) for e in logs if e["event"] == lowered] == [("info", name)]


async def test_a_dlq_missing_at_start_is_used_once_created(sqs, make_queue, settings_for) -> None:
    # given: a queue whose redrive policy names a DLQ that does not exist when the worker
    # starts (so it quarantines into the store only), sampling queue depths often
    url, dlq = make_queue("dlq-late", max_receive_count=5)
    sqs.delete_queue(QueueUrl=dlq)
    settings = settings_for(url, concurrency=2, queue_metrics_interval=0.2)
    name, dlq_name = url.rsplit("/", 1)[-1], dlq.rsplit("/", 1)[-1]
    moved = f"queue {name} now dead-letters to {dlq_name}"
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            assert [q.dlq_url for q in worker.queues] == [None]
            running = asyncio.create_task(worker.run())
            # when: the DLQ is created, then a poison message is quarantined
            sqs.create_queue(QueueName=dlq_name)
            await until(lambda: any(e["event"] == moved for e in logs))
            sqs.send_message(QueueUrl=url, MessageBody="garbage")
            await until(lambda: worker.stats.outcomes["quarantine"])
            worker.stop()
            await running

    # then: the start said the policy's DLQ is missing (not "add a RedrivePolicy": it has one),
    # and the copy is in the DLQ (before: the store only, until a restart)
    missing = [e for e in logs if e["event"].startswith(f"the DLQ {dlq_name} that")]
    assert [e["fix"] for e in missing] == [DLQ_GONE]
    assert not [e for e in logs if e["event"] == NO_DLQ]
    assert [m["Body"] for m in receive_all(sqs, dlq)] == ["garbage"]
    assert [e["dlq"] for e in logs if e["event"] == moved] == [dlq]


@pytest.mark.parametrize(
    "where",
    [
        "orders-dlq",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq",
        "http://127.0.0.1:4566/000000000000/orders-dlq/",
    ],
)
def test_a_queue_is_named_alike_from_its_name_or_url(where: str) -> None:
    assert queue_name(where) == "orders-dlq"


def test_a_redrive_policy_s_dlq_is_named_by_its_queue_name() -> None:
    # A redrive policy names its DLQ by ARN: the lines about it name the queue, not the ARN.
    assert arn_name("arn:aws:sqs:eu-west-1:123456789012:orders-dlq") == "orders-dlq"


@dataclasses.dataclass
class Gate:
    """A handler that holds each message until the test opens it."""

    name: str = "gate"
    entered: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    opened: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    then: BaseException | None = None  # raised once opened

    async def __call__(self, message: DecodedMessage, context: Any) -> None:
        self.entered.set()
        await self.opened.wait()
        if self.then is not None:
            raise self.then


REFUSED = "lambda_destinations_sqs_batch_entries_failed_total"


@pytest.mark.parametrize(
    ("settle", "operation"),
    [("finish", "DeleteMessageBatch"), ("retry", "ChangeMessageVisibilityBatch")],
)
async def test_batch_entries_sqs_refuses_are_counted_by_operation(
    sqs, make_queue, settings_for, settle: str, operation: str
) -> None:
    # given: a message whose handler holds it while the queue is purged: its receipt handle is
    # no longer valid, and moto, as SQS, answers a batch call on it with a Failed entry
    # (ReceiptHandleIsInvalid) inside a successful answer
    url, _ = make_queue("refused-entry")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(31)))])
    gate = Gate(then=RetryMessage("not yet") if settle == "retry" else None)
    settings = routed(settings_for(url, shutdown_grace=0.5), gate.name)
    async with Worker(settings, registry=registry_with(settings, gate)) as worker:
        running = asyncio.create_task(worker.run())
        await until(gate.entered.is_set)
        sqs.purge_queue(QueueUrl=url)
        # when: the handler finishes (its message deleted), or asks for a retry (its message
        # hidden for the retry's delay); a stop's release goes the same way as the retry, but
        # within the stop's deadline, which a loaded machine's moto server could miss
        registry = worker.metrics.registry
        gate.opened.set()
        await until(lambda: registry.get_sample_value(REFUSED, {"operation": operation}))
        worker.stop()
        await running

    # then: the entry refused is counted, under its batch call (before: logged only), and
    # the call, answered, is no SQS error
    assert registry.get_sample_value(REFUSED, {"operation": operation}) == 1
    failed = {"operation": operation}
    assert registry.get_sample_value("lambda_destinations_sqs_errors_total", failed) == 0


class _Exiting:
    """A handler that ends the process as some code does: sys.exit(), or KeyboardInterrupt."""

    name = "exiting"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.runs = 0

    async def __call__(self, message: DecodedMessage, context: Any) -> None:
        self.runs += 1
        raise self.exc


class _NoException(BaseException):
    """A handler's own error class, derived from BaseException by mistake."""


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (SystemExit(0), "SystemExit(0)"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (_NoException("not derived from Exception"), "_NoException: not derived from Exception"),
        # raised by the handler's code, not a close of its coroutine (the test below)
        (GeneratorExit(), "GeneratorExit"),
    ],
)
async def test_a_handler_that_exits_is_its_own_error_and_the_worker_goes_on(
    sqs, make_queue, settings_for, exc: BaseException, said: str
) -> None:
    # given: two records, and a handler that raises SystemExit (sys.exit(0), in its code or a
    # library's), KeyboardInterrupt, or a BaseException of its own
    url, _ = make_queue("exiting")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(n))) for n in (41, 42)])
    handler = _Exiting(exc)
    settings = routed(settings_for(url, handler_attempts=1), handler.name)

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: worker.stats.outcomes["retry"] >= 2)

    # then: before, the first two ended the worker (exit code 0 for sys.exit(0)) with the
    # other message still in hand, and the third ended its message's task, the message released
    # to come back at once; now each is the handler's error, retried, and the run goes on
    assert handler.runs >= 2
    assert stats.outcomes["retry"] >= 2
    assert stats.outcomes["quarantine"] == 0
    reasons = [e["reason"] for e in logs if e["event"] == "message will be retried"]
    assert reasons
    assert all(f"handler exiting raised {said}: a handler must raise an" in r for r in reasons)
    assert all(e["delay"] > 0 for e in logs if e["event"] == "message will be retried")
    assert not [e for e in logs if e["event"] == "message task failed"]
    errors = {"handler": handler.name, "error_class": "transient"}
    assert (
        worker.metrics.registry.get_sample_value("lambda_destinations_handler_errors_total", errors)
        >= 2
    )


class _Waiting:
    """A handler that waits until its coroutine is closed."""

    name = "waiting"
    _records_completion = True  # no claim to drop: nothing the close must await

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.closed = False

    async def __call__(self, message: DecodedMessage, context: Any) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except GeneratorExit:
            self.closed = True
            raise


async def test_a_message_coroutine_being_closed_is_closed_not_retried(
    sqs, make_queue, settings_for
) -> None:
    # given: a message whose handler is waiting
    url, _ = make_queue("closing")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(44)))])
    (received,) = receive_all(sqs, url)
    handler = _Waiting()
    settings = routed(settings_for(url, handler_attempts=1), handler.name)
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            assert worker._dispatcher is not None
            item = InFlight(queue=worker.queues[0], message=received, visibility=60, extend_at=1e12)
            task = asyncio.create_task(worker._dispatcher.process(item))
            await handler.started.wait()

            # when: its coroutine is closed, as a pending task's is when it is collected
            task.get_coro().close()  # type: ignore[union-attr]
            task.cancel()
            await asyncio.wait({task})

    # then: the GeneratorExit went up as a close needs, nothing settled from inside it (taken
    # for the handler's error, the message was retried in the middle of the close)
    assert handler.closed
    assert not item.settled
    assert worker.stats.outcomes["retry"] == 0
    assert not [e for e in logs if e["event"] == "message will be retried"]


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class _RaisesUnprintable:
    name = "unprintable"

    async def __call__(self, message: DecodedMessage, context: Any) -> None:
        raise _Unprintable()


async def test_an_error_whose_text_fails_is_the_handler_s_error_and_retried(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler whose exception's __str__ itself raises
    url, _ = make_queue("unprintable")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(43)))])
    handler = _RaisesUnprintable()
    settings = routed(settings_for(url, handler_attempts=1), handler.name)

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: worker.stats.outcomes["retry"] >= 1)

    # then: retried with a reason that says so; before, describing it raised, the message's
    # task failed ("message task failed") and the message was only released
    assert stats.outcomes["retry"] >= 1
    assert not [e for e in logs if e["event"] == "message task failed"]
    (reason, *_) = [e["reason"] for e in logs if e["event"] == "message will be retried"]
    assert reason == "handler unprintable: _Unprintable: (its text could not be made: RuntimeError)"


@pytest.mark.parametrize("failure", ["transient", "retry-message"])
async def test_a_message_still_failing_on_its_last_receive_is_quarantined_with_its_reason(
    sqs, make_queue, settings_for, failure: str
) -> None:
    # given: a queue that dead-letters after 2 receives, and a handler that fails every time
    # with an error that may pass (a throttled service), or asks for the message again
    url, dlq = make_queue("last-receive", max_receive_count=2)
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(7)))])
    settings = routed(settings_for(url, handler_attempts=1, retry_base=0.0, retry_max=0.0), "count")
    error = TransientError("throttled") if failure == "transient" else RetryMessage("not yet")
    handler = CountingHandler(fail_forever=error)

    # when
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        stats = await run_until(worker, lambda: stats_settled(worker) >= 2, seconds=20)

    # then: retried on its first receive; on its last, quarantined with the handler's error
    # and why, where SQS would have moved it to the DLQ with no reason at all
    assert [receive for _key, receive, _at in handler.calls] == [1, 2]
    assert stats.outcomes["retry"] == 1
    assert stats.outcomes["quarantine"] == 1
    (copy,) = receive_all(sqs, dlq)
    reason = copy["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert ("throttled" if failure == "transient" else "not yet") in reason
    assert "still failing on receive 2, the last the queue's redrive policy allows" in reason
    async with Store.from_url(settings.store) as store:
        (row,) = await store.list_quarantine()
    assert row.reason == reason


@pytest.mark.parametrize("busy", ["the payment service is busy", "busy " * 400])
async def test_a_retry_a_handler_asks_for_on_the_last_receive_is_said_as_none_following(
    sqs, make_queue, settings_for, busy: str
) -> None:
    # given: a queue that dead-letters after 2 receives, and a handler that asks for the
    # message again every time, with a short reason or one of 2,000 characters
    url, dlq = make_queue(f"last-retry-asked-{len(busy)}", max_receive_count=2)
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(7)))])
    settings = routed(settings_for(url, handler_attempts=1, retry_base=0.0, retry_max=0.0), "count")
    handler = CountingHandler(fail_forever=RetryMessage(busy))

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            await run_until(worker, lambda: stats_settled(worker) >= 2, seconds=20)

    # then: the first receive's retry says the handler's reason as it was; the quarantine's
    # says which handler asked for a retry, that none follows, and how to send it back
    # (before: "the payment service is busy; still failing on receive 2, …", naming no
    # handler, no request, and nothing to do), a long reason cut so that all of that fits
    # (before: the reason's first 1,000 characters, the handler's words and nothing after)
    (retried,) = [e["reason"] for e in logs if e["event"] == "message will be retried"]
    assert retried == busy
    (copy,) = receive_all(sqs, dlq)
    reason = copy["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason.startswith(f"handler count asked for a retry: {busy[:20]}")
    assert len(reason) <= 1000
    assert "no retry follows" in reason
    assert "`lambda-destinations quarantine resend`" in reason
    assert reason.endswith("`dlq redrive` of its DLQ)")
    async with Store.from_url(settings.store) as store:
        (row,) = await store.list_quarantine()
    assert row.reason == reason


def stats_settled(worker: Worker) -> int:
    return sum(worker.stats.outcomes.values())


async def test_a_message_waiting_for_a_slot_on_its_last_receive_is_handled_at_shutdown(
    sqs, make_queue, settings_for
) -> None:
    # given: two messages on their last receive (maxReceiveCount 2, each received once
    # before), one slot, and a handler of a second: at the stop, one runs and one waits
    url, dlq = make_queue("last-at-stop", max_receive_count=2)
    rng = random.Random(8)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(2)])
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert len(got["Messages"]) == 2
    settings = routed(settings_for(url, concurrency=1, shutdown_grace=10.0), "count")
    handler = CountingHandler(sleep=1.0)

    # when: the worker stops while the first is handled
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        running = asyncio.create_task(worker.run())
        assert await until(lambda: handler.calls and len(worker._ready) == 1)
        worker.stop()
        stats = await running

    # then: the waiting one was handled in the grace period too, not released to be
    # dead-lettered at its next receive with no reason
    assert len(handler.runs) == 2
    assert stats.outcomes["ack"] == 2
    assert stats.outcomes["release"] == 0
    assert receive_all(sqs, url) == []
    assert receive_all(sqs, dlq) == []


def _poisoned(sqs: Any, make_queue: Any, settings_for: Any, name: str) -> tuple[str, str, Any]:
    """A queue (visible again a second after a receive) holding a message that is no record,
    its DLQ, and a worker's settings for it."""
    url, dlq = make_queue(name, visibility_timeout=1, max_receive_count=5)
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    assert dlq is not None
    return url, dlq, settings_for(url)


async def _losing_the_first_receipts_delete(worker: Worker, lost: list[str]) -> list[str]:
    """Make every DeleteMessageBatch of the worker that names the first receipt handle it
    receives fail before it is sent, as a lost connection does, until a delete went through
    (the receipt handle of a redelivery is another); the receipts deleted, as they are."""
    deleted: list[str] = []
    sqs = await worker.aws.client("sqs")

    def received(parsed: dict[str, Any], **_: Any) -> None:
        for message in parsed.get("Messages", []):
            if not lost:
                lost.append(message["ReceiptHandle"])

    def before_send(request: Any, **_: Any) -> None:
        handles = [e["ReceiptHandle"] for e in json.loads(request.body)["Entries"]]
        if lost[0] in handles and not deleted:
            raise EndpointConnectionError(endpoint_url=request.url)
        deleted.extend(handles)

    sqs.meta.events.register("after-call.sqs.ReceiveMessage", received)
    sqs.meta.events.register("before-send.sqs.DeleteMessageBatch", before_send)
    return deleted


async def test_a_quarantined_message_whose_delete_was_lost_is_not_sent_to_the_dlq_again(
    sqs, make_queue, settings_for
) -> None:
    # given: a worker whose delete of a quarantined message is lost (SQS never sees it), so
    # the message comes back once its visibility timeout ends
    url, dlq, settings = _poisoned(sqs, make_queue, settings_for, "lost-delete")
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            lost: list[str] = []
            deleted = await _losing_the_first_receipts_delete(worker, lost)
            # when: it is received again, and its second delete goes through
            await run_until(worker, lambda: deleted)

    # then: the DLQ holds one copy, not one a receive, and the store one row
    assert len(lost) == 1
    copies = receive_all(sqs, dlq)
    assert [m["Body"] for m in copies] == ["garbage"]
    assert receive_all(sqs, url) == []
    async with Store.from_url(settings.store) as store:
        assert [row.body for row in await store.list_quarantine()] == ["garbage"]
    # and the redelivery was deleted as a duplicate, which the log and the metrics say
    assert worker.stats.outcomes["quarantine"] == 1
    [again] = [e for e in logs if e["event"] == "quarantined message delivered again"]
    assert again["dlq"] == dlq
    duplicates = {"queue": queue_name(url), "outcome": "duplicate"}
    messages = "lambda_destinations_messages_total"
    assert worker.metrics.registry.get_sample_value(messages, duplicates) == 1


async def test_a_quarantined_message_whose_dlq_send_failed_is_sent_when_delivered_again(
    sqs, make_queue, settings_for
) -> None:
    # given: a worker whose first sends to the DLQ fail before they are sent (a lost
    # connection), after the store kept the message's row
    url, dlq, settings = _poisoned(sqs, make_queue, settings_for, "lost-send")
    async with Worker(settings) as worker:
        failed: list[str] = []
        client = await worker.aws.client("sqs")

        def before_send(request: Any, **_: Any) -> None:
            if not worker.stats.outcomes["retry"]:  # each of botocore's attempts
                failed.append(request.url)
                raise EndpointConnectionError(endpoint_url=request.url)

        client.meta.events.register("before-send.sqs.SendMessage", before_send)
        # when: the message is retried, received again and quarantined
        await run_until(worker, lambda: worker.stats.outcomes["quarantine"])

    # then: its row, which says no DLQ took it, did not stop the copy: the DLQ has it
    assert failed
    assert worker.stats.outcomes["retry"] == 1
    # (a delivery after it, its visibility of a second lapsed under load, is a duplicate)
    assert worker.stats.outcomes["quarantine"] == 1
    assert [m["Body"] for m in receive_all(sqs, dlq)] == ["garbage"]
    assert receive_all(sqs, url) == []
