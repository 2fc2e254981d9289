"""Mistakes a handler's author makes, met by a real worker against the moto server."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import threading
import time
import warnings
from typing import Any

from structlog.testing import capture_logs
from worker_helpers import registry_with, routed, send_bodies, until

from lambda_destinations.handlers.base import FunctionHandler
from lambda_destinations.schemas import DecodedMessage, decode
from lambda_destinations.simulate import success_record
from lambda_destinations.store import Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker import worker as worker_module


async def test_a_handler_returning_a_coroutine_unawaited_is_retried_not_done(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that returns its effect's coroutine instead of awaiting it
    sent: list[str] = []

    async def send(key: str) -> None:
        sent.append(key)

    async def forgot(message: DecodedMessage, context: Any) -> Any:
        return send(message.key)

    url, _ = make_queue("forgot-await")
    record = success_record(random.Random(61))
    send_bodies(sqs, url, [json.dumps(record)])
    settings = routed(settings_for(url, handler_attempts=1), "forgot")
    registry = registry_with(settings, FunctionHandler.of("forgot", forgot))

    # when
    with capture_logs() as logs, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited"
        async with Worker(settings, registry=registry) as worker:
            stats = await worker.run(once=True)

    # then: before, the run was recorded as done and the message acked, though nothing was
    # sent; now it is the handler's error, retried, its reason naming the coroutine
    assert sent == []
    assert stats.outcomes["ack"] == 0
    assert stats.outcomes["retry"] == 1
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert "handler forgot returned the coroutine " in retried["reason"]
    assert (
        "send() without awaiting it, so it never ran: await it in the handler"
        in (retried["reason"])
    )
    async with Store.from_url(settings.store) as store:
        key = decode(json.dumps(record)).key
        assert "forgot" not in await store.completed_handlers(key)


async def test_a_handler_returning_a_value_is_done_and_warned_of_once(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that returns False, as if that said it failed
    async def says_false(message: DecodedMessage, context: Any) -> bool:
        return False

    url, _ = make_queue("returns-false")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(n))) for n in (62, 63)])
    settings = routed(settings_for(url), "says-false")
    registry = registry_with(settings, FunctionHandler.of("says-false", says_false))

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry) as worker:
            stats = await worker.run(once=True)

    # then: both are done (a return value says nothing), and the author is told so once
    assert stats.outcomes["ack"] == 2
    warned = [e for e in logs if "returned False" in e["event"]]
    assert [e["event"] for e in warned] == [
        "handler says-false returned False, which the worker ignores: the run counts as done "
        "(raise RetryMessage, TransientError or QuarantineMessage to say otherwise; said once)"
    ]
    assert warned[0]["log_level"] == "warning"


async def test_a_handler_blocking_the_loop_is_named_while_it_blocks(
    sqs, make_queue, settings_for, monkeypatch
) -> None:
    # given: a handler that blocks the loop until the worker has said which handler blocks it
    # (before, nothing was said until the loop ran again: a loop blocked for good said nothing)
    monkeypatch.setattr(worker_module, "LOOP_BLOCKED", 0.5)
    said = threading.Event()

    async def stuck(message: DecodedMessage, context: Any) -> None:
        said.wait(timeout=60)  # blocks the loop: the mistake this test plants

    url, _ = make_queue("stuck")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(64)))])
    settings = routed(settings_for(url), "stuck")
    registry = registry_with(settings, FunctionHandler.of("stuck", stuck))

    # when: a thread of the test's watches the log while the loop is blocked
    with capture_logs() as logs:

        def watch() -> None:
            while not said.is_set():
                if any("event loop has been blocked" in e["event"] for e in list(logs)):
                    said.set()
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        async with Worker(settings, registry=registry) as worker:
            stats = await worker.run(once=True)
        said.set()
        watcher.join()

    # then: the handler was named, and its line, while it held the loop; the message was done
    (warning,) = [e for e in logs if "event loop has been blocked" in e["event"]]
    line = inspect.getsourcelines(stuck)[1] + 1
    assert f"by handler stuck at {__file__}:{line} (stuck)" in warning["event"]
    assert warning["handler"] == "stuck"
    assert stats.outcomes["ack"] == 1


async def test_a_handler_that_ignores_its_timeout_s_cancellation_is_named(
    sqs, make_queue, settings_for, monkeypatch
) -> None:
    # given: a handler that swallows the cancellation handler_timeout sends it and goes on
    # until the test lets it end (before, nothing was logged while it held its message)
    monkeypatch.setattr(worker_module, "HANDLER_OVERRUN", 0.1)
    cancelled: list[int] = []
    let_go = asyncio.Event()

    async def stubborn(message: DecodedMessage, context: Any) -> None:
        while not let_go.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:  # the mistake this test plants
                cancelled.append(1)

    url, _ = make_queue("stubborn")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(65)))])
    settings = routed(settings_for(url, handler_timeout=0.5), "stubborn")
    registry = registry_with(settings, FunctionHandler.of("stubborn", stubborn))

    def warned() -> list[Any]:
        return [e for e in logs if "past handler_timeout" in e["event"]]

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry) as worker:
            running = asyncio.create_task(worker.run(once=True))
            seen = await until(lambda: warned())
            let_go.set()
            await running

    # then: one warning, naming the handler and the fix; the worker went on to the end
    assert seen
    assert cancelled
    (warning,) = warned()
    assert warning["handler"] == "stubborn"
    assert warning["event"].startswith("handler stubborn has run ")
    assert "past handler_timeout (0.5s), though cancelled then" in warning["event"]
    assert "let CancelledError through" in warning["event"]


async def test_a_handler_that_returns_on_its_timeout_s_cancellation_is_named(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that catches the cancellation handler_timeout sends it and returns
    async def gives_up(message: DecodedMessage, context: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # the mistake this test plants
            return

    url, _ = make_queue("gives-up")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(69)))])
    settings = routed(settings_for(url, handler_timeout=0.5), "gives_up")
    registry = registry_with(settings, FunctionHandler.of("gives_up", gives_up))

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry) as worker:
            stats = await worker.run(once=True)

    # then: its return counts (acked, as before), and one warning names the handler and the
    # fix (before: done with nothing said, though its work may have been given up)
    assert stats.outcomes["ack"] == 1
    (warning,) = [e for e in logs if "returned after handler_timeout" in e["event"]]
    assert warning["log_level"] == "warning"
    assert warning["handler"] == "gives_up"
    said = warning["event"]
    assert said.startswith("handler gives_up returned after handler_timeout (0.5s) cancelled")
    assert "let CancelledError through" in said


async def test_a_handler_changing_its_settings_changes_them_for_its_call_only(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that adds to the list of its [handlers.NAME] table, as code does with a
    # list it was handed
    seen: list[list[str]] = []

    async def notify(message: DecodedMessage, context: Any) -> None:
        recipients = context.options["to"]
        recipients.append(message.key)
        seen.append(list(recipients))

    url, _ = make_queue("changes-settings")
    records = [success_record(random.Random(n)) for n in (66, 67, 68)]
    send_bodies(sqs, url, [json.dumps(record) for record in records])
    settings = routed(settings_for(url, concurrency=1), "notify")
    handler = FunctionHandler.of("notify", notify, {"to": ["oncall"]})
    registry = registry_with(settings, handler)

    # when
    async with Worker(settings, registry=registry) as worker:
        stats = await worker.run(once=True)

    # then: each call began from the settings as configured (before: the second message was
    # sent to the first one's additions too, and so on)
    assert stats.outcomes["ack"] == 3
    assert [recipients[:1] for recipients in seen] == [["oncall"]] * 3
    assert [len(recipients) for recipients in seen] == [2, 2, 2]
    assert handler.options["to"] == ["oncall"]
