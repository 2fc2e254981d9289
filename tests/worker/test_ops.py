"""The ops server of a real worker on moto: /healthz, /readyz and /metrics over HTTP."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from worker_helpers import HeldHandler, registry_with, routed, send_bodies, until

from freezable_proxy import FreezableProxy
from lambda_destinations import __version__
from lambda_destinations.cli.run import ops_server, run_worker
from lambda_destinations.errors import ConfigError, QuarantineMessage
from lambda_destinations.handlers import HandlerContext
from lambda_destinations.schemas import DecodedMessage, InvocationRecord
from lambda_destinations.simulate import failure_record, kinesis_failure, success_record
from lambda_destinations.store import Store
from lambda_destinations.worker import OpsServer, Worker
from lambda_destinations.worker.supervision import TaskFailed
from processes import ENTRY, free_port, on_a_small_disk, reap

# A password in a store URL: /readyz names the store's error, never this.
SECRET = "hunter2-readyz"


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, pairs), value in found.items()
        if sample == name and all(dict(pairs).get(k) == v for k, v in labels.items())
    )


def in_background(probe: Callable[[Worker], Awaitable[None]]) -> Any:
    """An on_started callback running ``probe`` beside the worker (run() starts after it)."""
    tasks: list[asyncio.Task[None]] = []

    async def started(worker: Worker) -> None:
        tasks.append(asyncio.create_task(probe(worker)))

    started.tasks = tasks  # type: ignore[attr-defined]
    return started


async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def readyz_problems_become(port: int, expected: list[str], seconds: float = 30) -> None:
    async def holds() -> bool:
        status, text = await get(port, "/readyz")
        return ([] if status == 200 else json.loads(text)["problems"]) == expected

    await wait_for(holds, seconds)


async def readyz_problems_match(port: int, *patterns: str, seconds: float = 30) -> list[str]:
    """Wait until /readyz is 503 with one problem matching each regular expression (whole);
    the problems then."""
    seen: list[str] = []

    async def holds() -> bool:
        status, text = await get(port, "/readyz")
        seen[:] = [] if status == 200 else json.loads(text)["problems"]
        return len(seen) == len(patterns) and all(
            re.fullmatch(pattern, problem) for pattern, problem in zip(patterns, seen, strict=True)
        )

    try:
        await wait_for(holds, seconds)
    except AssertionError:
        raise AssertionError(f"/readyz's problems never matched {patterns}: {seen}") from None
    return seen


async def test_metrics_probes_and_counts_of_a_draining_worker(sqs, make_queue, settings_for):
    # given: 30 successes and 10 failures, one poison message, a worker with an ops port
    url, dlq = make_queue("ops")
    rng = random.Random(3)
    bodies = [json.dumps(success_record(rng)) for _ in range(30)]
    bodies += [json.dumps(failure_record(rng)) for _ in range(10)]
    send_bodies(sqs, url, [*bodies, "not json"])
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1", queue_metrics_interval=0.2)
    seen: dict[str, Any] = {}

    async def started(worker: Worker) -> None:
        async def drained() -> bool:
            found = samples((await get(port, "/metrics"))[1])
            return total(found, "lambda_destinations_messages_total") >= 41

        await wait_for(drained)
        seen["healthz"] = await get(port, "/healthz")
        seen["readyz"] = await get(port, "/readyz")
        await asyncio.sleep(0.5)  # one more queue sample after the last delete
        seen["metrics"] = await get(port, "/metrics")
        worker.stop()
        seen["readyz_stopping"] = await get(port, "/readyz")

    # when
    probe = in_background(started)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    # then: both probes answered 200 while running; readiness went 503 on stop
    assert seen["healthz"][0] == 200, seen["healthz"]
    assert seen["readyz"] == (200, json.dumps({"status": "ready"}))
    assert seen["readyz_stopping"][0] == 503
    assert json.loads(seen["readyz_stopping"][1])["problems"] == ["shutting down"]
    status, text = seen["metrics"]
    assert status == 200
    found = samples(text)
    queue = url.rsplit("/", 1)[-1]
    assert total(found, "lambda_destinations_messages_total", outcome="ack", queue=queue) == 40
    assert total(found, "lambda_destinations_messages_total", outcome="quarantine") == 1
    assert total(found, "lambda_destinations_records_total", condition="Success") == 30
    assert total(found, "lambda_destinations_records_total", kind="invalid") == 1
    assert total(found, "lambda_destinations_receives_total", queue=queue, empty="false") >= 5
    assert (
        total(found, "lambda_destinations_handler_duration_seconds_count", handler="persist") == 40
    )
    assert total(found, "lambda_destinations_message_age_seconds_count") == 41
    assert total(found, "lambda_destinations_receive_count_count") == 41
    assert total(found, "lambda_destinations_receive_count_bucket", le="1.0") == 41
    assert total(found, "lambda_destinations_store_seconds_count", operation="save_invocation") > 0
    assert total(found, "lambda_destinations_in_flight") == 0
    assert total(found, "lambda_destinations_build_info", version=__version__) == 1
    # the queue and its DLQ sampled, each with its role: empty now, the poison message in the DLQ
    depth = "lambda_destinations_queue_messages"
    assert total(found, depth, queue=queue, role="polled", state="visible") == 0
    assert total(found, depth, queue=queue, role="dlq") == 0
    dlq_name = dlq.rsplit("/", 1)[-1]
    assert total(found, depth, queue=dlq_name, role="dlq", state="visible") == 1
    assert total(found, depth, role="dlq", state="visible") == 1
    # no label carries a message or request id
    label_values = {value for (_name, pairs) in found for _key, value in pairs}
    assert not any(len(value) >= 32 for value in label_values), label_values


async def test_readyz_is_503_while_the_store_cannot_be_reached(make_queue, settings_for):
    # given: a PostgreSQL store, its URL with a password, on a port nobody listens on
    url, _ = make_queue("unready")
    port = free_port()
    store_port = free_port()
    settings = settings_for(
        url,
        ops_port=port,
        ops_host="127.0.0.1",
        store=f"postgresql://u:pw-{SECRET}@127.0.0.1:{store_port}/x",
    )
    worker = Worker(settings)
    # when: the worker keeps trying to open its store
    async with ops_server(worker, "127.0.0.1"):
        starting = asyncio.create_task(worker.start())
        try:
            await asyncio.sleep(1.5)
            ready = await get(port, "/readyz")
            alive = await get(port, "/healthz")
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)

    # then: not ready, saying why as the log's warning does (it said only "waiting for
    # store"), the password masked; yet alive
    assert ready[0] == 503
    [problem] = json.loads(ready[1])["problems"]
    assert problem.startswith(
        f"waiting for store: StoreUnavailable: store postgresql://u:***@127.0.0.1:{store_port}/x "
        "(--store) is unavailable: "
    ), problem
    assert "Connect call failed" in problem, problem
    assert SECRET not in ready[1]
    assert alive[0] == 200


@pytest.mark.postgres
async def test_readyz_is_503_while_a_store_that_went_silent_does_not_answer(
    make_queue, settings_for, postgres_url
):
    # given: an idle worker whose PostgreSQL store is reached through a proxy that can stop
    # passing bytes: connections are accepted and kept, and nothing answers
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    url, _ = make_queue("silent")
    parts = urlsplit(postgres_url)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = free_port()

    with proxy.running():
        proxied = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        settings = settings_for(url, ops_port=port, ops_host="127.0.0.1", store=proxied)
        # Statements time out after a second: the scheduler's next read finds the silence.
        async with Store.from_url(proxied, command_timeout=1.0, connect_timeout=1.0) as store:
            worker = Worker(settings, store=store)
            async with ops_server(worker, "127.0.0.1"), worker:
                running = asyncio.create_task(worker.run())
                try:
                    await readyz_problems_become(port, [])
                    # when: the store goes silent, then answers again
                    proxy.frozen.set()
                    # then: not ready while it is silent (no message came to find out) ...
                    await readyz_problems_match(
                        port, r"StoreUnavailable: store postgresql://\S+ is unavailable: .+"
                    )
                    proxy.frozen.clear()
                    # ... and ready again once a ping answers
                    await readyz_problems_become(port, [], seconds=60)
                finally:
                    worker.stop()
                    await running


@pytest.mark.postgres
async def test_a_running_worker_waits_out_a_store_that_refuses_its_user(
    sqs, make_queue, settings_for, postgres_reader
):
    # given: a worker whose store refuses its user's writes once it runs (grants revoked):
    # configuration at start (exit 3), but while running it is waited out as any outage
    # (its URL with a password, which the server here does not ask for, and /readyz must mask)
    reader, as_reader = postgres_reader
    as_reader = as_reader.replace(f"{reader}@", f"{reader}:pw-{SECRET}@")
    url, _ = make_queue("revoked")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(7)))])
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1", store=as_reader)
    async with Store.from_url(as_reader) as store:
        worker = Worker(settings, store=store)
        async with ops_server(worker, "127.0.0.1"), worker:
            running = asyncio.create_task(worker.run())
            try:
                # when: the message's save is refused
                # then: receiving pauses, /readyz says why (the store's own error, where it
                # said "the store is unreachable"), and the worker goes on running
                [problem] = await readyz_problems_match(
                    port,
                    rf"Store\w+: store postgresql://{reader}:\*\*\*@\S+: permission denied "
                    rf"for table \w+: grant {reader} SELECT, INSERT, UPDATE and DELETE .*",
                )
                assert SECRET not in problem
                assert not running.done()
            finally:
                worker.stop()
                stats = await running
    assert stats.outcomes["ack"] == 0


async def test_healthz_is_503_while_a_handler_runs_past_its_timeout(sqs, make_queue, settings_for):
    # given: a handler that ignores the cancellation its timeout sends
    url, _ = make_queue("overrun")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(5)))])
    port = free_port()
    release = asyncio.Event()

    class Stubborn:
        name = "stubborn"

        async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
            while not release.is_set():
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    continue  # a handler that swallows cancellation: what /healthz must catch

    stubborn = Stubborn()
    settings = routed(
        settings_for(url, ops_port=port, ops_host="127.0.0.1", handler_timeout=0.5), "stubborn"
    )
    seen: dict[str, Any] = {}

    async def started(worker: Worker) -> None:
        async def unhealthy() -> bool:
            status, text = await get(port, "/healthz")
            seen["healthz"] = (status, text)
            return status == 503

        await wait_for(unhealthy, seconds=20)
        release.set()
        worker.stop()

    # when
    probe = in_background(started)
    await run_worker(
        settings, once=False, on_started=probe, registry=registry_with(settings, stubborn)
    )
    await asyncio.gather(*probe.tasks)

    # then: /healthz named the handler
    problems = json.loads(seen["healthz"][1])["problems"]
    assert any(p.startswith("handler stubborn has run") for p in problems), problems


def ask(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from a thread other than the worker's loop (which a test may block)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, f"no answer: {exc}"


async def test_probes_answer_while_a_handler_blocks_the_loop_and_healthz_names_it(
    sqs, make_queue, settings_for
):
    # given: a handler that blocks the event loop (a blocking client would) until a thread
    # outside the loop, asking the ops server meanwhile, lets it go
    url, _ = make_queue("blocked")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(6)))])
    port = free_port()
    seen: dict[str, tuple[int, str]] = {}
    done = asyncio.Event()

    def probe(gate: threading.Event) -> None:
        try:
            seen["healthz"] = ask(port, "/healthz")
            seen["readyz"] = ask(port, "/readyz")
            seen["metrics"] = ask(port, "/metrics")
            for _ in range(100):  # until the block has lasted over 5 s (LOOP_BLOCKED)
                seen["blocked"] = ask(port, "/healthz")
                if seen["blocked"][0] != 200:
                    break
                time.sleep(0.1)
        finally:
            gate.set()

    class Blocker:
        name = "blocker"

        async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
            gate = threading.Event()
            threading.Thread(target=probe, args=(gate,)).start()
            gate.wait(60)  # blocks the loop: what a handler must not do
            done.set()

    settings = routed(settings_for(url, ops_port=port, ops_host="127.0.0.1"), "blocker")

    async def started(worker: Worker) -> None:
        await done.wait()
        await wait_for(lambda: answers(port, "/healthz", 200))  # the loop beats again
        worker.stop()

    # when
    background = in_background(started)
    registry = registry_with(settings, Blocker())
    await run_worker(settings, once=False, on_started=background, registry=registry)
    await asyncio.gather(*background.tasks)

    # then: while the loop was blocked, the probes answered (they waited behind it, and a
    # probe's timeout restarted a worker working through its backlog): alive and ready at
    # first, then /healthz 503 once the block lasted over 5 s, naming the handler and its line
    assert seen["healthz"] == (200, json.dumps({"status": "alive"})), seen
    assert seen["readyz"] == (200, json.dumps({"status": "ready"})), seen
    assert seen["metrics"][0] == 200, seen
    assert "lambda_destinations_in_flight 1.0" in seen["metrics"][1]
    status, text = seen["blocked"]
    assert status == 503, seen
    [problem] = json.loads(text)["problems"]
    assert re.fullmatch(
        r"the event loop has been blocked for \d+s by handler blocker at .*test_ops\.py:\d+ "
        r"\(__call__\), in .*threading\.py:\d+ \(wait\)",
        problem,
    ), problem


async def answers(port: int, path: str, expected: int) -> bool:
    return (await get(port, path))[0] == expected


async def test_an_ops_port_in_use_is_one_line_naming_the_setting(make_queue, settings_for):
    url, _ = make_queue("busy")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = settings_for(url, ops_port=port, ops_host="127.0.0.1")
        with pytest.raises(ConfigError, match="LAMBDA_DESTINATIONS_OPS_PORT"):
            await run_worker(settings, once=True)


async def test_an_ops_port_in_use_on_an_ipv6_address_is_written_with_brackets(
    make_queue, settings_for
):
    # given: [::1]:PORT taken, and the ops server asked to listen there
    url, _ = make_queue("busy6")
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = settings_for(url, ops_port=port, ops_host="::1")
        # when
        with pytest.raises(ConfigError) as raised:
            await run_worker(settings, once=True)
    # then: the address as a URL writes it (before: "port ::1:PORT", the port one more group)
    assert str(raised.value) == (
        f"ops server: port [::1]:{port} is in use: set LAMBDA_DESTINATIONS_OPS_PORT to a free "
        "port (0 turns the ops server off)"
    )


async def test_an_ops_host_this_machine_lacks_names_the_host_setting(make_queue, settings_for):
    # before: "ops port 203.0.113.7:8080 cannot be used (...): set LAMBDA_DESTINATIONS_OPS_PORT"
    url, _ = make_queue("nohost")
    settings = settings_for(url, ops_port=8080, ops_host="203.0.113.7")  # TEST-NET-3
    with pytest.raises(ConfigError) as raised:
        await run_worker(settings, once=True)
    assert str(raised.value) == (
        "ops server: 203.0.113.7 is not an address of this machine: set "
        "LAMBDA_DESTINATIONS_OPS_HOST to an address of this machine (0.0.0.0: all)"
    )


async def test_dev_takes_another_port_when_the_default_one_is_taken(make_queue, settings_for):
    # given: something already listens on the port dev would use by default
    url, _ = make_queue("devport")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = settings_for(url, ops_port=taken, ops_host="127.0.0.1")
        worker = Worker(settings)
        # when: the ops server starts as dev starts it (the port taken is "the default" here)
        ops = OpsServer(
            host="127.0.0.1",
            port=taken,
            health=worker.health,
            readiness=worker.readiness,
            metrics=worker.metrics.render,
        )
        await ops.start(any_port_if_taken=True)
        try:
            status, _text = await get(ops.port, "/metrics")
        finally:
            await ops.close()
    # then: it serves on another port
    assert ops.port != taken
    assert status == 200


async def test_a_queue_whose_depth_cannot_be_read_drops_its_depth_series(
    sqs, make_queue, settings_for
):
    # given: a worker sampling its queue and DLQ's depths five times a second
    url, dlq = make_queue("depth")
    assert dlq is not None
    dlq_name = dlq.rsplit("/", 1)[-1]
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1", queue_metrics_interval=0.2)
    seen: dict[str, float] = {}

    async def started(worker: Worker) -> None:
        async def dlq_series() -> float:
            found = samples((await get(port, "/metrics"))[1])
            return sum(
                1
                for (name, pairs) in found
                if name == "lambda_destinations_queue_messages" and ("queue", dlq_name) in pairs
            )

        async def sampled() -> bool:
            return await dlq_series() == 3

        async def dropped() -> bool:
            return await dlq_series() == 0

        try:
            await wait_for(sampled, seconds=10)
            seen["before"] = await dlq_series()
            # when: the DLQ can no longer be read (deleted under the worker)
            sqs.delete_queue(QueueUrl=dlq)
            # then: its depths leave the page rather than stay at their last values
            await wait_for(dropped, seconds=10)
            seen["after"] = await dlq_series()
        finally:
            worker.stop()

    probe = in_background(started)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    assert seen == {"before": 3, "after": 0}


async def test_counters_are_on_the_page_at_zero_before_anything_happens(make_queue, settings_for):
    # given: a worker on an empty queue, its ops server up
    url, _ = make_queue("zeroed")
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1")
    seen: dict[str, str] = {}

    async def started(worker: Worker) -> None:
        seen["metrics"] = (await get(port, "/metrics"))[1]
        worker.stop()

    # when: /metrics is read before any message came
    probe = in_background(started)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    # then: every counter whose labels are known is there at 0, so that rate() and increase()
    # count its first event (a series that appears at 1 shows no increase)
    found = samples(seen["metrics"])
    queue = url.rsplit("/", 1)[-1]
    counters = [
        *(("messages_total", {"queue": queue, "outcome": o}) for o in ("ack", "quarantine")),
        ("records_total", {"queue": queue, "kind": "invalid"}),
        ("receives_total", {"queue": queue, "empty": "false"}),
        ("handler_errors_total", {"handler": "persist", "error_class": "permanent"}),
        ("handler_duration_seconds_count", {"handler": "persist"}),
        # the writes LambdaDestinationsSqsWritesFailing reads
        ("sqs_errors_total", {"operation": "DeleteMessageBatch"}),
        ("sqs_errors_total", {"operation": "ChangeMessageVisibilityBatch"}),
        ("sqs_errors_total", {"operation": "SendMessage"}),
        ("sqs_errors_total", {"operation": "GetQueueUrl"}),
        ("sqs_batch_entries_failed_total", {"operation": "DeleteMessageBatch"}),
        ("replays_total", {"outcome": "failed"}),
        # the store's, LambdaDestinationsStoreErrors reads: a write the worker has not made yet
        # too (a quarantine's), whose first call may be the one refused
        ("store_errors_total", {"operation": "save_quarantine"}),
        ("store_errors_total", {"operation": "set_status"}),
    ]
    for name, labels in counters:
        series = [
            value
            for (sample, pairs), value in found.items()
            if sample == f"lambda_destinations_{name}" and labels.items() <= dict(pairs).items()
        ]
        assert series == [0.0], (name, labels, series)


async def test_a_worker_waiting_at_start_shows_its_queues_receiving_nothing(
    make_queue, settings_for
):
    # given: a worker whose store cannot be reached, so that it waits at start, and a queue
    # given by name (its receives' label is the name it has once described)
    url, _ = make_queue("waiting")
    name = url.rsplit("/", 1)[-1]
    port = free_port()
    store = f"postgresql://u@127.0.0.1:{free_port()}/x"
    settings = settings_for(name, ops_port=port, ops_host="127.0.0.1", store=store)
    worker = Worker(settings)
    # when: /metrics is read while it waits
    async with ops_server(worker, "127.0.0.1"):
        starting = asyncio.create_task(worker.start())
        try:
            await readyz_problems_match(port, r"waiting for store: .*")
            found = samples((await get(port, "/metrics"))[1])
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)

    # then: its receives are on the page at 0 already, as LambdaDestinationsNotReceiving reads
    # them: a worker that never starts (SQS or the store away for good) receives nothing, and
    # the alert fires for it (with no series, it could not)
    for empty in ("true", "false"):
        key = ("lambda_destinations_receives_total", (("empty", empty), ("queue", name)))
        assert found.get(key) == 0.0, sorted(k for k in found if "receives" in k[0])
    assert total(found, "lambda_destinations_messages_total", queue=name, outcome="ack") == 0.0
    handler = (("error_class", "permanent"), ("handler", "persist"))
    assert found.get(("lambda_destinations_handler_errors_total", handler)) == 0.0


async def test_store_calls_refused_and_the_pause_they_cause_show_in_the_metrics(
    sqs, make_queue, settings_for, sqlite_url, hold_write_lock
):
    # given: a running worker whose SQLite file another process then write-locks
    url, _ = make_queue("refused")
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1", handler_attempts=1)
    seen: dict[str, str] = {}

    async def started(worker: Worker) -> None:
        try:
            seen["before"] = (await get(port, "/metrics"))[1]
            holder = await asyncio.to_thread(
                hold_write_lock, Path(sqlite_url.removeprefix("sqlite:///"))
            )
            # when: a record comes, and its save is refused
            send_bodies(sqs, url, [json.dumps(success_record(random.Random(9)))])
            await readyz_problems_match(port, r".*another process held the write lock.*")
            seen["paused"] = (await get(port, "/metrics"))[1]
            # and the lock is let go: the watcher's ping answers, receiving resumes
            holder.execute("ROLLBACK")
            await readyz_problems_become(port, [], seconds=60)
            seen["after"] = (await get(port, "/metrics"))[1]
        finally:
            worker.stop()

    probe = in_background(started)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    # then: the metrics say the store refused it, not only /readyz
    found = samples(seen["paused"])
    refused = total(found, "lambda_destinations_store_errors_total")
    assert refused >= 1
    # and that receiving was paused while it did, and only then (no metric said so)
    paused = [
        samples(seen[when]).get(("lambda_destinations_receiving_paused", ()))
        for when in ("before", "paused", "after")
    ]
    assert paused == [0.0, 1.0, 0.0]


# The fix a store on a full disk names, and the three ways its error says the disk is full:
# a save (SQLite's own words), a write into a file that no process had open, a writing ping.
FREE_SPACE = "free space on the disk holding the file"
NO_ROOM = (
    r"(database or disk is full|disk I/O error \(the disk holding the file has \d+ KiB free\)"
    r"|the disk holding the file has \d+ KiB free)"
)


def run_on_a_small_disk(
    tmp_path: Path, endpoint_url: str, queue: str, *, leave: int
) -> tuple[subprocess.Popen[str], int, str]:
    """`run` as a process, its store made on a 4 MiB tmpfs that is then filled but for
    ``leave`` bytes (processes.on_a_small_disk): the process, its ops port, the store's URL."""
    folder = tmp_path / "disk"
    url = f"sqlite:///{folder}/store.db"
    port = free_port()
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_STORE": url,
        "LAMBDA_DESTINATIONS_QUEUES": queue,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_OPS_PORT": str(port),
        "LAMBDA_DESTINATIONS_OPS_HOST": "127.0.0.1",
    }
    command = on_a_small_disk(folder, *ENTRY, "run", leave=leave, first=[[*ENTRY, "migrate"]])
    with (tmp_path / "worker.log").open("w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
    return process, port, url


async def probes_once(
    process: subprocess.Popen[str], port: int, log: Path, ready: Callable[[int, list[str]], bool]
) -> tuple[list[str], str]:
    """/readyz's problems and the /metrics page once /readyz's status and problems satisfy
    ``ready``; fails, with the end of the process's ``log``, if they never do within 60 s or
    the process exits."""
    problems: list[str] = []

    async def holds() -> bool:
        nonlocal problems
        if process.poll() is not None:
            return True
        try:
            status, text = await get(port, "/readyz")
        except aiohttp.ClientConnectionError:  # not listening yet
            return False
        problems = [] if status == 200 else json.loads(text)["problems"]
        return ready(status, problems)

    try:
        await wait_for(holds, 60)
        assert process.poll() is None, "the worker exited"
    except AssertionError as failed:
        reap(process)
        said = (await asyncio.to_thread(log.read_text))[-4000:]
        pytest.fail(f"{failed}; /readyz's problems last: {problems}; the worker's log: {said}")
    return problems, (await get(port, "/metrics"))[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_readyz_names_a_full_disk_that_keeps_the_worker_from_starting(
    tmp_path, endpoint_url, make_queue
):
    # given / when: `run` on a store whose disk is full to the last byte (opening the file
    # sizes its -shm file, which fails)
    queue, _ = make_queue("noroom-start")
    process, port, url = run_on_a_small_disk(tmp_path, endpoint_url, queue, leave=0)
    log = tmp_path / "worker.log"
    try:
        problems, _ = await probes_once(
            process,
            port,
            log,
            lambda _status, found: (
                found not in (["starting"], ["waiting for AWS credentials"], ["waiting for store"])
            ),
        )
    finally:
        reap(process)

    # then: once the store's first open has failed, /readyz says its error and fix (it said
    # only "waiting for store")
    [problem] = problems
    assert re.fullmatch(
        re.escape(f"waiting for store: StoreUnavailable: store {url} (LAMBDA_DESTINATIONS_STORE) ")
        + rf"is unavailable: {NO_ROOM}: {FREE_SPACE}",
        problem,
    ), problem


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_readyz_and_metrics_say_a_full_disk_paused_receiving(
    tmp_path, endpoint_url, make_queue, sqs
):
    # given: `run` on a store whose disk has 256 KiB left: it opens, and answers reads
    queue, _ = make_queue("noroom-run")
    process, port, url = run_on_a_small_disk(tmp_path, endpoint_url, queue, leave=256 * 1024)
    log = tmp_path / "worker.log"
    try:
        await probes_once(process, port, log, lambda status, _found: status == 200)
        # when: more records come than the disk has room for
        rng = random.Random(11)
        send_bodies(sqs, queue, [json.dumps(success_record(rng)) for _ in range(60)])
        problems, page = await probes_once(process, port, log, lambda _status, found: bool(found))
    finally:
        process.terminate()
        reap(process)

    # then: /readyz names the full disk and its fix (it said "the store is unreachable")
    [problem] = problems
    assert re.fullmatch(
        rf"StoreUnavailable: store {re.escape(url)} is unavailable: {NO_ROOM}: {FREE_SPACE}",
        problem,
    ), problem
    # and /metrics says receiving is paused (no metric did)
    assert samples(page)[("lambda_destinations_receiving_paused", ())] == 1.0


async def test_healthz_names_a_task_that_died_in_one_line_without_its_secrets(
    make_queue, settings_for
):
    # given: a worker with a task of its embedder's, which dies with an error whose text holds
    # a password and several lines (an HTML page, a traceback of its own)
    url, _ = make_queue("embedded")
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1")
    seen: dict[str, Any] = {}

    async def dies() -> None:
        raise RuntimeError(f"cannot reach postgresql://app:{SECRET}@db/x\n<html>\n<body>oops")

    async def started(worker: Worker) -> None:
        async def failed() -> bool:
            return bool(worker.supervisor.failures)

        worker.spawn("embedded", dies())
        await wait_for(failed)
        seen["problems"] = worker.health()  # what /healthz answers (the server stops soon)

    # when
    probe = in_background(started)
    with pytest.raises(TaskFailed) as failed:
        await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    # then: the worker stops (exit 7), its line one line, the password masked
    assert str(failed.value) == (
        "the worker's embedded task failed (RuntimeError: cannot reach "
        "postgresql://app:***@db/x); restart the worker"
    )
    # and /healthz names the task with its error's first line, the password masked (before:
    # the whole text, password and HTML lines included, there and in the exit line)
    assert seen["problems"] == [
        "task embedded failed: RuntimeError: cannot reach postgresql://app:***@db/x"
    ]


# What Prometheus (2.42, Debian's) sends with each scrape.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


async def scrape(port: int, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    """GET /metrics with exactly ``headers`` (no Accept-Encoding unless given): the response's
    headers and its body as sent, not decompressed."""
    async with (
        aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) as s,
        s.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response,
    ):
        assert response.status == 200
        return dict(response.headers), await response.read()


async def scrapes_after_one_ack(
    sqs: Any, make_queue: Any, settings_for: Any, *requests: dict[str, str]
) -> list[tuple[dict[str, str], bytes]]:
    """A worker on moto that acked one record, its /metrics read once with each headers."""
    url, _ = make_queue("negotiated")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(9)))])
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1")
    seen: list[tuple[dict[str, str], bytes]] = []

    async def started(worker: Worker) -> None:
        async def acked() -> bool:
            found = samples((await get(port, "/metrics"))[1])
            return total(found, "lambda_destinations_messages_total", outcome="ack") == 1

        await wait_for(acked)
        for headers in requests:
            seen.append(await scrape(port, headers))
        worker.stop()

    probe = in_background(started)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)
    return seen


async def test_metrics_serves_openmetrics_gzipped_to_prometheus_and_plain_text_to_curl(
    sqs, make_queue, settings_for
):
    # when: /metrics is read as curl reads it, then as Prometheus scrapes it
    (curl, scraped) = await scrapes_after_one_ack(
        sqs,
        make_queue,
        settings_for,
        {"Accept": "*/*"},
        {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
    )

    # then: curl gets the plain text format, uncompressed
    headers, body = curl
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "Content-Encoding" not in headers
    assert total(samples(body.decode()), "lambda_destinations_messages_total", outcome="ack") == 1
    # and Prometheus gets OpenMetrics (as it asks first), gzipped (as it accepts)
    headers, body = scraped
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0;")
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in openmetrics_families(text)
        for sample in family.samples
    }
    assert total(found, "lambda_destinations_messages_total", outcome="ack") == 1
    # and a cache between them keeps the two apart
    for headers, _body in (curl, scraped):
        assert {"accept", "accept-encoding"} <= {
            part.strip().lower() for part in headers.get("Vary", "").split(",")
        }, headers


# Accept-Encoding headers, and whether /metrics may be gzipped for them (RFC 9110 12.5.3:
# q=0 is "not acceptable"; "*" stands for every coding the header does not name).
GZIP_ACCEPTED = [
    ("gzip", True),
    ("GZIP;Q=0.5", True),
    ("deflate, gzip;q=1.0, br;q=0.8", True),
    ("*", True),
    ("identity;q=0.5, *", True),
    ("x-gzip", True),
    ("", False),
    ("identity", False),
    ("gzip;q=0", False),
    ("gzip; q=0.000", False),
    ("gzip;q=0, *", False),
    ("*;q=0, identity", False),
    ("*;q=0", False),
    ("br, deflate", False),
    ("gzip;q=nonsense", False),
    ("gzip;q=0.1, identity;q=0.9", False),
]


async def test_metrics_is_gzipped_only_to_a_request_that_accepts_gzip():
    # given: an ops server on a free port whose page is long enough to compress
    page = b"lambda_destinations_messages_total 1.0\n" * 200

    def metrics(accept: str) -> tuple[bytes, str]:
        return page, "text/plain; version=0.0.4; charset=utf-8"

    ops = OpsServer(host="127.0.0.1", port=0, health=list, readiness=list, metrics=metrics)
    await ops.start()
    port = ops.addresses[0][1]
    try:
        # when: /metrics is read with each Accept-Encoding
        seen = [
            (value, await scrape(port, {"Accept-Encoding": value})) for value, _ in GZIP_ACCEPTED
        ]
    finally:
        await ops.close()

    # then: gzip only where gzip is acceptable (before: "gzip;q=0", which refuses it, was
    # gzipped, and "*" was not), the page whole either way, and Vary names Accept-Encoding
    gzipped = {value: headers.get("Content-Encoding") == "gzip" for value, (headers, _) in seen}
    assert gzipped == dict(GZIP_ACCEPTED)
    for value, (headers, body) in seen:
        assert (gzip.decompress(body) if gzipped[value] else body) == page, value
        assert "accept-encoding" in headers["Vary"].lower(), value


async def test_metrics_has_no_created_series_in_either_format(sqs, make_queue, settings_for):
    # when: /metrics is read in the text format and in OpenMetrics
    pages = await scrapes_after_one_ack(
        sqs, make_queue, settings_for, {}, {"Accept": "application/openmetrics-text"}
    )

    # then: neither has a *_created series (the README's table lists every series; a counter
    # at 0 from the start already gives rate() its first sample)
    for headers, body in pages:
        created = [line for line in body.decode().splitlines() if "_created" in line]
        assert created == [], (headers["Content-Type"], created[:3])


class _Order(BaseModel):
    order_id: int


async def test_handler_errors_count_the_quarantines_a_handler_asks_for(
    sqs, make_queue, settings_for
):
    # given: a handler that quarantines one record itself (QuarantineMessage) and finds the
    # other does not fit its model (typed()), a worker with an ops port
    url, _ = make_queue("asks")
    rng = random.Random(12)
    misfit = success_record(rng)
    misfit["requestPayload"] = {"order_id": "not a number"}
    send_bodies(sqs, url, [json.dumps(success_record(rng)), json.dumps(misfit)])

    class Strict:
        name = "strict"

        async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
            if message.request_payload == misfit["requestPayload"]:
                message.typed(InvocationRecord[_Order, Any])
            raise QuarantineMessage("not ours")

    port = free_port()
    settings = routed(settings_for(url, ops_port=port, ops_host="127.0.0.1"), "strict")
    seen: dict[str, Any] = {}

    async def started(worker: Worker) -> None:
        async def quarantined() -> bool:
            seen["found"] = samples((await get(port, "/metrics"))[1])
            return total(seen["found"], "lambda_destinations_messages_total") >= 2

        await wait_for(quarantined)
        worker.stop()

    # when: the worker quarantines both
    probe = in_background(started)
    await run_worker(
        settings, once=False, on_started=probe, registry=registry_with(settings, Strict())
    )
    await asyncio.gather(*probe.tasks)

    # then: both are handler errors, permanent (what LambdaDestinationsHandlerPermanentErrors
    # reads), as a PermanentError's would be
    found = seen["found"]
    assert total(found, "lambda_destinations_messages_total", outcome="quarantine") == 2
    errors = "lambda_destinations_handler_errors_total"
    assert total(found, errors, handler="strict", error_class="permanent") == 2
    assert total(found, errors, handler="strict") == 2


async def test_records_of_a_stream_failure_are_labelled_with_the_condition_lambda_sent(
    sqs, make_queue, settings_for
):
    # given: the on-failure records of a Kinesis event-source mapping, as Lambda sends them
    url, _ = make_queue("stream-condition")
    rng = random.Random(5)
    send_bodies(sqs, url, [json.dumps(kinesis_failure(rng)) for _ in range(3)])
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1")
    pages: list[str] = []

    async def drained(worker: Worker) -> None:
        async def three() -> bool:
            pages.append((await get(port, "/metrics"))[1])
            return total(samples(pages[-1]), "lambda_destinations_messages_total") >= 3

        await wait_for(three)
        worker.stop()

    # when
    probe = in_background(drained)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    # then: counted under the condition the record names (before: "other", as an unknown one)
    found = samples(pages[-1])
    records = "lambda_destinations_records_total"
    assert total(found, records, kind="stream-failure", condition="RetryAttemptsExhausted") == 3
    assert total(found, records, condition="other") == 0


async def test_a_job_whose_queues_answered_empty_is_not_ready_while_its_last_handlers_run(
    sqs, make_queue, settings_for
) -> None:
    # given: a --once job whose one message's handler holds it
    url, _ = make_queue("once-unready")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(43)))])
    held = HeldHandler()
    settings = routed(settings_for(url), held.name)
    async with Worker(settings, registry=registry_with(settings, held)) as worker:
        running = asyncio.create_task(worker.run(once=True))
        await held.started.wait()
        ready_while_held = worker.readiness() == []
        # when: its queue answers empty, the handler still running
        unready = await until(lambda: worker.readiness() != [], seconds=60)
        said = worker.readiness()
        held.go.set()
        stats = await running

    # then: /readyz says the job takes no more work (before: 200 until the handler ended)
    assert ready_while_held
    assert unready, "still ready after the queues answered empty"
    assert said == ["shutting down"]
    assert stats.outcomes["ack"] == 1
