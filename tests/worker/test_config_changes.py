"""A deploy that changes the configuration while messages are in flight: the worker says what
it cannot do as before (records handled with another store run their handlers again; digests
of a notifier renamed or removed go unsent)."""

from __future__ import annotations

import json
import random
from typing import Any

from structlog.testing import capture_logs
from worker_helpers import (
    CountingHandler,
    receive_requests,
    registry_with,
    routed,
    run_until,
    send_bodies,
)

from lambda_destinations.simulate import failure_record
from lambda_destinations.store import Store, scope_of
from lambda_destinations.worker import Worker

NEW_STORE = "a message received before this worker started on a new, empty store"


def warnings_of(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if str(line["event"]).startswith(NEW_STORE)]


def records(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps(failure_record(rng, condition="RetriesExhausted")) for _ in range(count)]


def receive_and_return(sqs: Any, url: str, count: int) -> None:
    """Receive ``count`` messages as a worker on another store would have, and let them go."""
    received = 0
    while received < count:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        received += len(got.get("Messages", []))


async def test_messages_received_before_a_worker_on_a_new_store_are_named_once(
    sqs, make_queue, settings_for
) -> None:
    # given: two messages a worker on another store received (the store URL then changed)
    url, _ = make_queue("new-store", max_receive_count=10)
    send_bodies(sqs, url, records(1, 2))
    receive_and_return(sqs, url, 2)
    settings = routed(settings_for(url), "persist", "count")
    counter = CountingHandler()

    # when: a worker on a new store drains them
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, counter)) as worker:
            stats = await worker.run(once=True)

    # then: the handlers ran (the new store knows of nothing), and one warning says why
    assert sum(counter.runs.values()) == 2
    assert stats.outcomes["ack"] == 2
    (warning,) = warnings_of(logs)
    assert warning["log_level"] == "warning"
    assert "set store back to that one" in warning["event"]


async def test_a_store_that_handled_records_before_says_nothing(
    sqs, make_queue, settings_for
) -> None:
    # given: a store that handled a record, and a message received before the next start
    url, _ = make_queue("old-store", max_receive_count=10)
    settings = routed(settings_for(url), "persist", "count")
    send_bodies(sqs, url, records(2, 1))
    async with Worker(settings, registry=registry_with(settings, CountingHandler())) as worker:
        await worker.run(once=True)
    send_bodies(sqs, url, records(3, 1))
    receive_and_return(sqs, url, 1)

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, CountingHandler())) as worker:
            await worker.run(once=True)

    # then
    assert warnings_of(logs) == []


async def test_a_new_stores_own_retries_are_no_sign_of_another_store(
    sqs, make_queue, settings_for
) -> None:
    # given: a new store, and a record whose handler fails once (retried by message)
    url, _ = make_queue("own-retry", max_receive_count=10)
    send_bodies(sqs, url, records(4, 1))
    settings = routed(settings_for(url, handler_attempts=1), "count")
    counter = CountingHandler(fail_transient=1)

    # when: it comes back to the same worker
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, counter)) as worker:
            await run_until(worker, lambda: sum(counter.runs.values()) == 1)

    # then
    assert [receives for _key, receives, _at in counter.calls] == [1, 2]
    assert warnings_of(logs) == []


async def held_back_by(store_url: str, notifier: str) -> None:
    """A window of ``notifier`` that held an alert back: its digest is due later."""
    async with Store.from_url(store_url) as store:
        await store.migrate()
        scope = scope_of(notifier, "orders-api", "TimeoutError")
        admission = await store.admit_alert(
            scope,
            "req-1:RetriesExhausted",
            window=300,
            send_first=0,
            digest_kind="digest",
            digest_payload={"handler": notifier},
        )
    assert admission.digest_scheduled


async def test_a_digest_due_from_a_notifier_renamed_in_a_deploy_is_named_at_start(
    make_queue, settings_for
) -> None:
    # given: a digest due from oncall, and a deploy that renamed it oncall-sms
    url, _ = make_queue("renamed")
    renamed = {"oncall-sms": {"type": "sms", "phone_numbers": ["+14155552671"]}}
    settings = settings_for(url, handlers=renamed)
    await held_back_by(settings.store, "oncall")

    # when
    with capture_logs() as logs:
        async with Worker(settings):
            pass

    # then
    (warning,) = [line for line in logs if str(line["event"]).startswith("alert digests")]
    assert warning["handlers"] == ["oncall"]
    assert "put the [handlers.NAME] tables back" in warning["event"]


async def test_a_digest_due_from_a_notifier_still_configured_says_nothing(
    make_queue, settings_for
) -> None:
    url, _ = make_queue("kept")
    kept = {"oncall": {"type": "email", "from": "a@example.com", "to": ["b@example.com"]}}
    settings = settings_for(url, handlers=kept)
    await held_back_by(settings.store, "oncall")

    with capture_logs() as logs:
        async with Worker(settings):
            pass

    assert [line for line in logs if str(line["event"]).startswith("alert digests")] == []


async def test_receives_ask_for_the_first_receive_time_only_until_the_new_store_warning(
    sqs, make_queue, settings_for
) -> None:
    # given: 25 messages, the first received before a worker starts on a new store
    url, _ = make_queue("first-receive", max_receive_count=10)
    send_bodies(sqs, url, records(25, 1))
    receive_and_return(sqs, url, 1)
    settings = routed(settings_for(url, concurrency=1), "persist", "count")

    # when: the worker drains the queue, and a second worker on the same store after it
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, CountingHandler())) as worker:
            first_requests = await receive_requests(worker)
            await worker.run(once=True)
    send_bodies(sqs, url, records(5, 2))
    async with Worker(settings, registry=registry_with(settings, CountingHandler())) as worker:
        second_requests = await receive_requests(worker)
        await worker.run(once=True)

    # then: the first worker asked for the time until its warning, then no more; the second,
    # on a store that has handled records, never did
    first_asks = [request["MessageSystemAttributeNames"] for request in first_requests]
    second_asks = [request["MessageSystemAttributeNames"] for request in second_requests]
    (_warning,) = warnings_of(logs)
    assert "ApproximateFirstReceiveTimestamp" in first_asks[0]
    assert "ApproximateFirstReceiveTimestamp" not in first_asks[-1]
    assert second_asks
    assert all("ApproximateFirstReceiveTimestamp" not in ask for ask in second_asks)


async def test_a_queue_visibility_timeout_shortened_while_running_hides_a_message_as_before(
    sqs, make_queue, settings_for
) -> None:
    # given: a worker on a queue whose visibility timeout was 30 s at its start, then 2 s
    url, _ = make_queue("visibility-cut", max_receive_count=10, visibility_timeout=30)
    settings = routed(settings_for(url), "count")
    counter = CountingHandler(sleep=5)
    async with Worker(settings, registry=registry_with(settings, counter)) as worker:
        requests = await receive_requests(worker)
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})

        # when: a record whose handler runs 5 s arrives
        send_bodies(sqs, url, records(6, 1))
        stats = await run_until(worker, lambda: sum(counter.runs.values()) == 1)

    # then: it was hidden for the 30 s the heartbeat counts on, so received once (it was
    # received again every 2 s, each receive one more toward the DLQ)
    assert stats.received == 1
    assert stats.duplicates == 0
    assert {request["VisibilityTimeout"] for request in requests} == {30}
