"""The worker against a real moto server over HTTP and a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from structlog.testing import capture_logs
from worker_helpers import (
    CountingHandler,
    HeldHandler,
    receive_all,
    registry_with,
    routed,
    run_until,
    send_bodies,
    until,
)

from lambda_destinations.errors import PermanentError, TransientError
from lambda_destinations.handlers import HandlerContext
from lambda_destinations.handlers.base import as_handler
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import DecodedMessage, decode
from lambda_destinations.simulate import failure_record, messages, success_record
from lambda_destinations.store import DeliveryRow, InvocationFilter, Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker import worker as worker_module
from lambda_destinations.worker.queues import (
    REASON_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    named_alike,
)
from lambda_destinations.worker.worker import ReceiveTimedOut
from processes import free_port


async def stored_keys(url: str) -> list[str]:
    async with Store.from_url(url) as store:
        rows = await store.list_invocations(InvocationFilter(failed_only=False))
        return [row.key for row in rows]


async def test_500_mixed_records_are_stored_once_and_poison_is_quarantined(
    sqs, make_queue, settings_for
) -> None:
    # given: 500 simulated messages split between a success and a failure queue
    success_url, success_dlq = make_queue("success")
    failure_url, failure_dlq = make_queue("failure")
    batch = list(messages(500, seed=11))
    for url, target in ((success_url, "success"), (failure_url, "failure")):
        send_bodies(sqs, url, [m.body for m in batch if m.target == target and not m.attributes])
        for m in batch:
            if m.target == target and m.attributes:
                sqs.send_message(QueueUrl=url, MessageBody=m.body, MessageAttributes=m.attributes)
    settings = settings_for(success_url, failure_url, concurrency=20)

    # when: drained with --once
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: every valid record once in the store
    expected = sorted(m.key for m in batch if not m.poison and m.key)
    keys = await stored_keys(settings.store)
    assert sorted(keys) == expected
    assert len(set(keys)) == len(keys)
    # every poison message in a DLQ with its reason, and in the quarantine
    poison = [m for m in batch if m.poison]
    dead = receive_all(sqs, success_dlq) + receive_all(sqs, failure_dlq)
    assert sorted(m["Body"] for m in dead) == sorted(m.body for m in poison)
    for message in dead:
        attributes = message["MessageAttributes"]
        assert attributes[REASON_ATTRIBUTE]["StringValue"].startswith("decode error: ")
        assert attributes[SOURCE_ATTRIBUTE]["StringValue"] in (success_url, failure_url)
    async with Store.from_url(settings.store) as store:
        quarantined = await store.list_quarantine()
    assert sorted(q.body for q in quarantined) == sorted(m.body for m in poison)
    assert all(q.reason.startswith("decode error: ") for q in quarantined)
    # the source queues end empty
    assert receive_all(sqs, success_url) == []
    assert receive_all(sqs, failure_url) == []
    assert stats.outcomes["quarantine"] == len(poison)
    assert stats.outcomes["ack"] + stats.outcomes["quarantine"] == stats.received


async def test_a_record_delivered_twice_is_stored_once_and_handled_once(
    sqs, make_queue, settings_for
) -> None:
    url, _ = make_queue("dup")
    record = json.dumps(failure_record(random.Random(1), condition="RetriesExhausted"))
    send_bodies(sqs, url, [record, record])
    settings = routed(settings_for(url), "persist", "count")
    counter = CountingHandler()

    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        stats = await worker.run(once=True)

    keys = await stored_keys(settings.store)
    assert len(keys) == 1
    assert list(counter.runs.values()) == [1]
    assert stats.duplicates == 1
    assert stats.outcomes["ack"] == 2
    async with Store.from_url(settings.store) as store:
        assert len(await store.deliveries(keys[0])) == 2


async def test_a_record_delivered_twice_on_a_persist_only_route_is_stored_once(
    sqs, make_queue, settings_for
) -> None:
    url, _ = make_queue("dup-persist")
    record = json.dumps(success_record(random.Random(3)))
    send_bodies(sqs, url, [record, record])
    settings = routed(settings_for(url), "persist")

    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    keys = await stored_keys(settings.store)
    assert len(keys) == 1
    assert stats.duplicates == 1
    assert stats.outcomes["ack"] == 2
    async with Store.from_url(settings.store) as store:
        assert len(await store.deliveries(keys[0])) == 2
        runs = await store.handler_runs(keys[0])
    assert [(run.handler, run.state) for run in runs] == [("persist", "completed")]
    assert receive_all(sqs, url) == []


async def test_a_route_of_two_persist_handlers_counts_only_the_repeat_a_duplicate(
    sqs, make_queue, settings_for
) -> None:
    # given: a route of persist and a second persist handler (archive), and a record sent twice
    url, _ = make_queue("two-persists")
    record = json.dumps(success_record(random.Random(8)))
    send_bodies(sqs, url, [record, record])
    settings = routed(settings_for(url), "persist", "archive").model_copy(
        update={"handlers": {"archive": {"type": "persist"}}}
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: one duplicate, the second delivery (before: two, archive finding the row persist
    # had just saved for the first delivery and counting it a repeat)
    keys = await stored_keys(settings.store)
    assert len(keys) == 1
    assert (stats.handler_runs["persist"], stats.handler_runs["archive"]) == (2, 2)
    assert stats.duplicates == 1
    assert stats.outcomes["ack"] == 2
    async with Store.from_url(settings.store) as store:
        assert len(await store.deliveries(keys[0])) == 2
        runs = await store.handler_runs(keys[0])
    assert sorted((run.handler, run.state) for run in runs) == [
        ("archive", "completed"),
        ("persist", "completed"),
    ]


async def test_a_duplicate_whose_route_holds_replay_outcome_is_counted_and_recorded(
    sqs, make_queue, settings_for
) -> None:
    # given: a route of persist, replay-outcome (idempotent, no completion row of its own) and
    # a claimed handler, and one failure record sent twice
    url, _ = make_queue("dup-outcome")
    record = json.dumps(failure_record(random.Random(5), condition="RetriesExhausted"))
    send_bodies(sqs, url, [record, record])
    settings = routed(settings_for(url), "persist", "replay-outcome", "count")
    counter = CountingHandler()

    # when
    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        stats = await worker.run(once=True)

    # then: the second delivery is a duplicate (replay-outcome ran again, changing nothing), and
    # both deliveries are on record
    keys = await stored_keys(settings.store)
    assert len(keys) == 1
    assert list(counter.runs.values()) == [1]
    assert stats.handler_runs["replay-outcome"] == 2
    assert stats.duplicates == 1
    assert stats.outcomes["ack"] == 2
    async with Store.from_url(settings.store) as store:
        assert len(await store.deliveries(keys[0])) == 2


async def count_completed_earlier(store: Store, key: str) -> None:
    """The claimed handler ``count`` completed for ``key`` on an earlier delivery (its owner
    ``earlier``), in a migrated store."""
    await store.migrate()
    assert await store.claim_handler(key, "count", "earlier", 60)
    await store.complete_handler(key, "count", "earlier")


async def test_a_first_store_after_a_completed_claimed_handler_is_no_duplicate(
    sqs, make_queue, settings_for
) -> None:
    # given: a route whose claimed handler comes before persist, and completed on an earlier
    # delivery whose persist failed: the record is not stored yet
    url, _ = make_queue("first-store")
    body = json.dumps(success_record(random.Random(6)))
    key = decode(body).key
    settings = routed(settings_for(url), "count", "persist")
    async with Store.from_url(settings.store) as store:
        await count_completed_earlier(store, key)
    send_bodies(sqs, url, [body])
    counter = CountingHandler()

    # when
    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        stats = await worker.run(once=True)

    # then: persist stores it, and the delivery counts as no duplicate
    assert await stored_keys(settings.store) == [key]
    assert counter.runs[key] == 0
    assert stats.handler_runs["persist"] == 1
    assert stats.duplicates == 0
    async with Store.from_url(settings.store) as store:
        assert len(await store.deliveries(key)) == 1


class CountingAddDelivery:
    """The real store, every call passed through to it; it only counts add_delivery calls."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.add_delivery_calls: list[tuple[str, str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def add_delivery(self, delivery: DeliveryRow) -> None:
        self.add_delivery_calls.append((delivery.key, delivery.message_id, delivery.receive_count))
        await self._store.add_delivery(delivery)


async def test_a_duplicate_that_persist_saves_adds_no_second_delivery_row(
    sqs, make_queue, settings_for
) -> None:
    # given: a route whose claimed handler completed on an earlier delivery, and a record
    # already stored by another persist handler (archive), so persist is still pending for it
    url, _ = make_queue("dup-pending-persist")
    body = json.dumps(success_record(random.Random(7)))
    key = decode(body).key
    settings = routed(settings_for(url), "count", "persist")
    async with Store.from_url(settings.store) as store:
        await count_completed_earlier(store, key)
        earlier = DeliveryRow(key, "earlier-message", url, 1)
        row = invocation_row(decode(body), url, earlier.received_at)
        assert await store.save_invocation(row, earlier, complete_handler="archive")
    send_bodies(sqs, url, [body])
    counter = CountingHandler()

    # when
    async with Store.from_url(settings.store) as store:
        counting = CountingAddDelivery(store)
        registry = registry_with(settings, counter)
        async with Worker(settings, registry=registry, store=cast(Store, counting)) as worker:
            stats = await worker.run(once=True)
        deliveries = await store.deliveries(key)

    # then: a duplicate, whose delivery persist's save recorded; no add_delivery after it (one
    # ran, a write transaction of its own that ON CONFLICT DO NOTHING made a no-op)
    assert stats.handler_runs["persist"] == 1
    assert stats.duplicates == 1
    assert counter.runs[key] == 0
    assert len(deliveries) == 2
    assert counting.add_delivery_calls == []


async def test_transient_failures_are_retried_in_process_then_acked(
    sqs, make_queue, settings_for
) -> None:
    url, dlq = make_queue("transient")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(2)))])
    settings = routed(settings_for(url, handler_attempts=3), "persist", "count")
    counter = CountingHandler(fail_transient=2)
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with Worker(
        settings, registry=registry_with(settings, counter), sleep=no_sleep
    ) as worker:
        stats = await worker.run(once=True)

    assert len(counter.calls) == 3
    assert sum(counter.runs.values()) == 1
    assert stats.outcomes["ack"] == 1
    assert len(sleeps) >= 2  # tenacity waited between the tries
    assert receive_all(sqs, url) == []
    assert receive_all(sqs, dlq) == []


async def test_a_permanent_handler_failure_quarantines_with_the_reason(
    sqs, make_queue, settings_for
) -> None:
    url, dlq = make_queue("permanent")
    body = json.dumps(failure_record(random.Random(3)))
    send_bodies(sqs, url, [body])
    settings = routed(settings_for(url), "persist", "count")
    counter = CountingHandler(fail_forever=PermanentError("phone number +1555 is not valid"))

    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        stats = await worker.run(once=True)

    assert len(counter.calls) == 1  # never retried pointlessly
    assert stats.outcomes["quarantine"] == 1
    dead = receive_all(sqs, dlq)
    assert [m["Body"] for m in dead] == [body]
    reason = dead[0]["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert "handler count" in reason
    assert "is not valid" in reason
    async with Store.from_url(settings.store) as store:
        (row,) = await store.list_quarantine()
        assert row.key is not None
        assert "is not valid" in row.reason
        runs = {run.handler: run for run in await store.handler_runs(row.key)}
    assert runs["persist"].state == "completed"
    assert runs["count"].state != "completed"
    assert receive_all(sqs, url) == []


async def test_a_user_handler_that_changes_the_payload_changes_nothing_else(
    sqs, make_queue, settings_for
) -> None:
    # given: a route whose first handler changes the record's payload dicts in place
    url, _ = make_queue("mutate")
    record = failure_record(random.Random(5))
    record["requestPayload"] = {"i": 1, "items": [{"n": 1}]}
    send_bodies(sqs, url, [json.dumps(record)])
    seen: list[Any] = []

    async def mutator(message: DecodedMessage, context: HandlerContext) -> None:
        message.record.request_payload["i"] = 99999
        message.record_json["requestPayload"]["items"][0]["n"] = 2
        message.response_payload["errorMessage"] = "changed"

    async def watcher(message: DecodedMessage, context: HandlerContext) -> None:
        seen.append((message.request_payload, message.response_payload["errorMessage"]))

    settings = routed(settings_for(url), "mutator", "persist", "watcher")
    registry = registry_with(
        settings, as_handler("mutator", mutator), as_handler("watcher", watcher)
    )

    # when
    async with Worker(settings, registry=registry) as worker:
        stats = await worker.run(once=True)

    # then: persist stored, and the next handler saw, the record as received (before, the
    # stored payload was {"i": 99999, ...}, and a replay would have sent that)
    assert stats.outcomes["ack"] == 1
    async with Store.from_url(settings.store) as store:
        (row,) = await store.list_invocations(InvocationFilter(failed_only=False))
    assert row.request_payload == {"i": 1, "items": [{"n": 1}]}
    assert row.record == record
    assert row.response_payload == record["responsePayload"]
    assert seen == [(record["requestPayload"], record["responsePayload"]["errorMessage"])]


async def test_transient_failure_forever_reaches_the_dlq_by_redrive_with_growing_delays(
    sqs, make_queue, settings_for
) -> None:
    url, dlq = make_queue("forever", max_receive_count=3)
    body = json.dumps(failure_record(random.Random(4)))
    send_bodies(sqs, url, [body])
    settings = routed(settings_for(url, retry_base=2.0, retry_max=8.0, handler_attempts=1), "count")
    counter = CountingHandler(fail_forever=ConnectionResetError("connection reset by peer"))

    dead: list[dict[str, object]] = []

    def dead_lettered() -> bool:
        dead.extend(receive_all(sqs, dlq))
        return bool(dead)

    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        await run_until(worker, dead_lettered)

    assert [m["Body"] for m in dead] == [body]
    receive_counts = [count for _key, count, _at in counter.calls]
    assert receive_counts == [1, 2, 3]
    times = [at for _key, _count, at in counter.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # backoff 2s * 2**(n-1) with equal jitter: first gap in [1, 2], second in [2, 4]
    # + up to a long poll and processing, which a machine running five suites at once
    # stretched to 4.4 s: the bound above only guards against a delay from the wrong step
    assert 0.9 <= gaps[0] <= 6.0
    assert gaps[1] >= 1.9
    assert receive_all(sqs, url) == []


async def test_a_handler_three_times_longer_than_the_visibility_timeout_is_not_redelivered(
    sqs, make_queue, settings_for
) -> None:
    url, _ = make_queue("slow", visibility_timeout=2)
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(5)))])
    settings = routed(settings_for(url), "count")
    counter = CountingHandler(sleep=6.0)

    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        stats = await worker.run(once=True)

    assert len(counter.calls) == 1
    assert stats.received == 1
    assert stats.outcomes["ack"] == 1
    assert receive_all(sqs, url) == []


async def test_a_queue_whose_visibility_timeout_is_0_has_each_message_received_once(
    sqs, make_queue, settings_for
) -> None:
    # given: a queue that hides nothing it hands out (SQS allows VisibilityTimeout 0), and
    # five records whose handler runs a moment; the visibility_timeout setting is unset
    url, _ = make_queue("unhidden", visibility_timeout=0)
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(n))) for n in range(5)])
    settings = routed(settings_for(url), "count")
    counter = CountingHandler(sleep=0.5)

    # when: the worker drains it
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, counter)) as worker:
            stats = await worker.run(once=True)

    # then: each was received and handled once, its delete taken, and the start said once
    # what was asked instead and the fix (every receive asked 0 s: ~2 receives a message,
    # each duplicate's delete refused)
    assert stats.received == 5
    assert len(counter.calls) == 5
    warnings = [line for line in logs if line["log_level"] == "warning"]
    assert not [line for line in warnings if "refused" in str(line["event"])], warnings
    (zero,) = [line for line in warnings if "VisibilityTimeout" in str(line["event"])]
    assert "is 0" in zero["event"], zero
    assert "asks 30 s" in zero["event"], zero
    assert "LAMBDA_DESTINATIONS_VISIBILITY_TIMEOUT" in zero["event"], zero
    assert receive_all(sqs, url) == []


@contextlib.asynccontextmanager
async def being_handled(
    sqs: Any, url: str, settings: Any, count: int, *, sleep: float
) -> AsyncIterator[tuple[Worker, CountingHandler, list[dict[str, Any]]]]:
    """A running worker, its logs captured, once its handler (of ``sleep`` seconds) has begun
    on each of ``count`` records sent to ``url``; stopped at the end, as SIGTERM stops it."""
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(n))) for n in range(count)])
    settings = routed(settings, "count")
    counter = CountingHandler(sleep=sleep)
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, counter)) as worker:
            running = asyncio.create_task(worker.run())
            try:
                assert await until(lambda: len(counter.calls) == count)
                yield worker, counter, logs
            finally:
                worker.stop()
                await running


async def test_a_message_whose_visibility_sqs_refuses_to_extend_is_warned_of_once(
    sqs, make_queue, settings_for
) -> None:
    # given: three records whose handler runs 8 s, extended every 1 s (visibility 2 s)
    url, _ = make_queue("purged", visibility_timeout=2)
    async with being_handled(sqs, url, settings_for(url), 3, sleep=8.0) as (worker, counter, logs):
        ids = {item.message_id for item in worker._inflight.values()}

        # when: the queue is purged under them (their receipts refused from then on)
        sqs.purge_queue(QueueUrl=url)
        assert await until(lambda: sum(counter.runs.values()) == 3)

    # then: one warning a message, naming it, and it was extended no more (there were
    # five a message, one at each beat, none naming the message)
    refused = [line for line in logs if "visibility" in str(line["event"])]
    refused = [line for line in refused if line["log_level"] == "warning"]
    assert sorted(line["message_id"] for line in refused) == sorted(ids), refused
    assert all("extended no more" in str(line["event"]) for line in refused)
    assert all(line["code"] == "ReceiptHandleIsInvalid" for line in refused)


async def test_unreachable_endpoint_at_start_and_mid_run_is_waited_out(
    make_queue, settings_for
) -> None:
    from moto.server import ThreadedMotoServer

    # given: a worker pointed at a port where nothing listens yet
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    settings = settings_for("late-queue", endpoint_url=endpoint)
    with capture_logs() as logs:
        worker = Worker(settings)
        starting = asyncio.create_task(worker.start())
        await wait_for_log(logs, "cannot reach SQS")
        assert not starting.done()
        # when: the endpoint comes up with the queue
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            import boto3

            sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
            url = sqs.create_queue(QueueName="late-queue")["QueueUrl"]
            await asyncio.wait_for(starting, timeout=40)
            running = asyncio.create_task(worker.run())
            # and goes away mid-run, then returns
            server.stop()
            await wait_for_log(logs, "cannot receive from")
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(success_record(random.Random(6))))
            for _ in range(80):
                await asyncio.sleep(0.5)
                if worker.stats.outcomes["ack"]:
                    break
            worker.stop()
            await running
        finally:
            await worker.close()
            server.stop()

    # then: one clear line per backoff, and the record went through once SQS was back
    unreachable = [e for e in logs if str(e["event"]).startswith("cannot reach SQS")]
    receive_failed = [e for e in logs if str(e["event"]).startswith("cannot receive from")]
    assert unreachable, "no log line while the endpoint was away at start"
    assert receive_failed, "no log line while the endpoint went away mid-run"
    assert all("retrying in" in str(e["event"]) for e in unreachable + receive_failed)
    # mid-run, each line names the endpoint and what to check (before, only SQS's error)
    assert {e["endpoint"] for e in receive_failed} == {endpoint}
    # (where the endpoint and region were set: here as if by the options)
    assert all(
        e["fix"].endswith("check --endpoint-url, --region and the network") for e in receive_failed
    )
    assert worker.stats.outcomes["ack"] == 1


async def test_a_queue_deleted_mid_run_is_named_with_the_fix_and_taken_up_again(
    sqs, settings_for
) -> None:
    # given: a worker polling a queue
    name = f"gone-{random.Random().randrange(10**8)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    settings = settings_for(url)
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            try:
                # when: the queue is deleted, then created again with a record on it
                sqs.delete_queue(QueueUrl=url)
                await wait_for_log(logs, "cannot receive from")
                sqs.create_queue(QueueName=name)
                sqs.send_message(
                    QueueUrl=url, MessageBody=json.dumps(success_record(random.Random(7)))
                )
                for _ in range(80):
                    await asyncio.sleep(0.5)
                    if worker.stats.outcomes["ack"]:
                        break
            finally:
                worker.stop()
                await running
                sqs.delete_queue(QueueUrl=url)

    # then: the warning said what happened and what to do, and the worker took the queue up again
    failed = [e for e in logs if str(e["event"]).startswith("cannot receive from")]
    assert failed
    assert all("QueueDoesNotExist" in str(e["error"]) for e in failed), failed
    assert all(str(e["fix"]).startswith("the queue was deleted: create it again") for e in failed)
    assert any(e["event"] == "receiving again" for e in logs)
    assert worker.stats.outcomes["ack"] == 1


async def test_a_delete_after_the_queue_was_deleted_says_so(sqs, make_queue, settings_for) -> None:
    # given: a record being handled
    url, _ = make_queue("gone-inflight", dlq=False)
    async with being_handled(sqs, url, settings_for(url), 1, sleep=2.0) as (_w, _c, logs):
        # when: its queue is deleted before its handler ends
        sqs.delete_queue(QueueUrl=url)
        await wait_for_log(logs, "delete batch failed")

    # then: the line says the message went with its queue (it said it would come back)
    (line,) = [e for e in logs if str(e["event"]).startswith("delete batch failed")]
    assert "the queue was deleted, and its messages with it" in str(line["event"])
    assert "delivered again" not in str(line["event"])


async def test_a_job_whose_queue_was_deleted_gives_up_naming_the_queue_s_fix(
    sqs, make_queue, settings_for
) -> None:
    # given: a job started on a queue deleted before its first receive
    url, _ = make_queue("gone-job", dlq=False)
    async with Worker(settings_for(url, once_timeout=2)) as worker:
        sqs.delete_queue(QueueUrl=url)

        # when
        with pytest.raises(ReceiveTimedOut) as info:
            await worker.run(once=True)

    # then: its line says what to do about the queue (it said "check that SQS answers")
    line = str(info.value)
    assert "QueueDoesNotExist" in line
    assert "the queue was deleted: create it again, or take it out of --queues, and run" in line
    assert "check that SQS answers" not in line


async def wait_for_log(logs: list[dict[str, object]], prefix: str, within: float = 30) -> None:
    for _ in range(int(within * 10)):
        if any(str(entry["event"]).startswith(prefix) for entry in logs):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no log line starting {prefix!r} within {within}s")


async def test_a_completion_the_store_refuses_for_seconds_is_recorded_once_it_is_back(
    sqs, make_queue, settings_for, tmp_path, hold_write_lock
) -> None:
    # given: a handler whose side effect is followed by the store refusing writes for 1 s
    # (another process holds SQLite's write lock), longer than five quick tries would last
    path = tmp_path / "locked.db"
    url, dlq = make_queue("completion")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(5)))])
    settings = routed(settings_for(url, store=f"sqlite:///{path}"), "lock")

    class LockingHandler(CountingHandler):
        async def __call__(self, message: Any, context: Any) -> None:
            await super().__call__(message, context)
            holder = await asyncio.to_thread(hold_write_lock, path)
            asyncio.get_running_loop().call_later(1.0, holder.execute, "ROLLBACK")

    handler = LockingHandler(name="lock")

    async def scaled_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / 20)  # the retry schedule, twenty times faster

    async with Store.from_url(settings.store, busy_timeout=0.05) as store:
        await store.migrate()
        worker = Worker(
            settings, registry=registry_with(settings, handler), store=store, sleep=scaled_sleep
        )
        async with worker:
            stats = await worker.run(once=True)

    # then: the completion was recorded once the lock was gone; the effect ran once; acked
    assert sum(handler.runs.values()) == 1
    assert stats.outcomes["ack"] == 1
    assert stats.outcomes["retry"] == 0
    async with Store.from_url(f"sqlite:///{path}") as store:
        (key,) = handler.runs
        runs = await store.handler_runs(key)
    assert [(run.handler, run.state) for run in runs] == [("lock", "completed")]
    assert receive_all(sqs, url) == []
    assert receive_all(sqs, dlq) == []


async def test_a_claim_the_store_could_not_release_is_dropped_by_the_next_delivery_here(
    sqs, make_queue, settings_for, tmp_path, hold_write_lock
) -> None:
    # given: a handler that fails once, while the store refuses writes for half a second, so
    # its claim cannot be released; the queue dead-letters after three receives
    path = tmp_path / "locked.db"
    url, dlq = make_queue("release", max_receive_count=3)
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(6)))])
    settings = routed(settings_for(url, store=f"sqlite:///{path}", handler_attempts=1), "flaky")

    class FailsOnceDuringAnOutage(CountingHandler):
        async def __call__(self, message: Any, context: Any) -> None:
            if not self.calls:
                self.calls.append((message.key, context.receive_count, 0.0))
                holder = await asyncio.to_thread(hold_write_lock, path)
                asyncio.get_running_loop().call_later(0.5, holder.execute, "ROLLBACK")
                raise TransientError("simulated outage")
            await super().__call__(message, context)

    handler = FailsOnceDuringAnOutage(name="flaky")
    async with Store.from_url(settings.store, busy_timeout=0.05) as store:
        await store.migrate()
        worker = Worker(settings, registry=registry_with(settings, handler), store=store)
        async with worker:
            stats = await run_until(worker, lambda: handler.runs or receive_all(sqs, dlq))
        (key,) = {call[0] for call in handler.calls}
        runs = await store.handler_runs(key)

    # then: the second delivery released the stale claim and ran the handler: acked, not
    # retried as "running in another worker" until the queue dead-lettered it
    assert [receive for _key, receive, _at in handler.calls] == [1, 2]
    assert sum(handler.runs.values()) == 1
    assert stats.outcomes["ack"] == 1
    assert [(run.handler, run.state) for run in runs] == [("flaky", "completed")]
    assert receive_all(sqs, url) == []
    assert receive_all(sqs, dlq) == []


async def test_a_redelivery_waits_out_another_workers_claim_instead_of_dead_lettering(
    sqs, make_queue, settings_for
) -> None:
    # given: a record whose handler a crashed worker holds the claim on for 8 more seconds, and
    # a queue that dead-letters after three receives; the message was received once already
    url, dlq = make_queue("claimed", max_receive_count=3)
    body = json.dumps(success_record(random.Random(8)))
    send_bodies(sqs, url, [body])
    settings = routed(settings_for(url, retry_max=60.0), "count")
    key = decode(body).key
    async with Store.from_url(settings.store) as store:
        await store.migrate()
        assert await store.claim_handler(key, "count", "crashed-worker", ttl=8)
    (first,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    assert first["Body"] == body
    handler = CountingHandler()

    # when: a worker runs until the handler has run or the message is dead-lettered
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        stats = await run_until(worker, lambda: handler.runs or receive_all(sqs, dlq))

    # then: one retry, timed to the claim's expiry, then the handler ran on the third receive
    # (a retry every 5 s would have spent the receives while the claim lived: the DLQ)
    assert [receive for _key, receive, _at in handler.calls] == [3]
    assert handler.runs == {key: 1}
    assert stats.outcomes["retry"] == 1
    assert stats.outcomes["ack"] == 1
    async with Store.from_url(settings.store) as store:
        runs = await store.handler_runs(key)
    assert [(run.handler, run.state) for run in runs] == [("count", "completed")]
    assert receive_all(sqs, url) == []
    assert receive_all(sqs, dlq) == []


class BlockingHandler(CountingHandler):
    """A handler written wrong: it blocks the event loop (time.sleep) instead of awaiting."""

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        time.sleep(self.sleep)  # noqa: ASYNC251 - the mistake this test plants
        self.runs[message.key] += 1


async def test_a_handler_that_blocks_the_event_loop_is_reported_once(
    sqs, make_queue, settings_for, monkeypatch
) -> None:
    # given: two records for a handler that blocks the loop three times the threshold
    monkeypatch.setattr(worker_module, "LOOP_BLOCKED", 0.5, raising=False)
    url, _ = make_queue("blocking")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(n))) for n in range(2)])
    settings = routed(settings_for(url, concurrency=1), "blocking")
    blocking = BlockingHandler(name="blocking", sleep=1.5)

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, blocking)) as worker:
            await run_until(worker, lambda: sum(blocking.runs.values()) == 2)

    # then: one warning that names the handler, its line and the fix (before: "a handler
    # likely blocks it", naming none)
    warnings = [e for e in logs if "event loop has been blocked" in e["event"]]
    assert len(warnings) == 1, warnings
    line = inspect.getsourcelines(BlockingHandler.__call__)[1] + 1
    assert f"by handler blocking at {__file__}:{line} (__call__)" in warnings[0]["event"]
    assert "asyncio.to_thread" in warnings[0]["event"]
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["handler"] == "blocking"


async def test_the_shutdown_reports_the_releases_of_the_shutdown_only(
    sqs, make_queue, settings_for
) -> None:
    # given: a running worker that released a message before (its task cancelled, the way a
    # message's task ends unsettled), which came back and was acked; then another message
    # that the stop finds in its handler
    url, _ = make_queue("releases")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(61)))])
    handler = HeldHandler()
    settings = routed(settings_for(url, shutdown_grace=0.5), handler.name)
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            running = asyncio.create_task(worker.run())
            await asyncio.wait_for(handler.started.wait(), 30)
            (task,) = worker._tasks
            task.cancel()
            assert await until(lambda: worker.stats.outcomes["release"] == 1)
            handler.go.set()
            assert await until(lambda: worker.stats.outcomes["ack"] == 1)
            handler.go.clear()
            handler.started.clear()
            send_bodies(sqs, url, [json.dumps(success_record(random.Random(62)))])
            await asyncio.wait_for(handler.started.wait(), 30)

            # when
            worker.stop()
            await running

    # then: the line counts the one release of the shutdown (before: 2, the earlier one too);
    # the stats keep the lifetime's
    said = [e for e in logs if e["event"] == "released unfinished messages; SQS confirmed"]
    assert [e["count"] for e in said] == [1]
    assert worker.stats.outcomes["release"] == 2
    assert not [e for e in logs if e["event"].startswith("releases SQS did not confirm")]


def test_queues_named_alike_are_two_accounts_queues_not_one_queue_listed_twice() -> None:
    # given: one DLQ that two queues share, and a DLQ of the same name in another account
    shared = "arn:aws:sqs:us-east-1:111111111111:orders-dlq"
    elsewhere = "arn:aws:sqs:us-east-1:222222222222:orders-dlq"

    # then: the shared one is no pair (one queue); the other account's is
    assert list(named_alike([("orders-a", shared), ("orders-b", shared)])) == []
    assert list(named_alike([("a", shared), ("b", shared), ("c", elsewhere)])) == [
        ("a", shared, "c", elsewhere)
    ]
