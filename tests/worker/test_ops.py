"""The ops server of a real worker on moto: /healthz, /readyz and /metrics over HTTP."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from freezable_proxy import FreezableProxy
from prometheus_client.parser import text_string_to_metric_families
from worker_helpers import registry_with, routed, send_bodies

from lambda_destinations import __version__
from lambda_destinations.cli.run import ops_server, run_worker
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import HandlerContext
from lambda_destinations.schemas import DecodedMessage
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import Store
from lambda_destinations.worker import OpsServer, Worker


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
    # given: a PostgreSQL store on a port nobody listens on
    url, _ = make_queue("unready")
    port = free_port()
    settings = settings_for(
        url, ops_port=port, ops_host="127.0.0.1", store=f"postgresql://u@127.0.0.1:{free_port()}/x"
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

    # then: not ready (and saying why), yet alive
    assert ready[0] == 503
    assert json.loads(ready[1])["problems"] == ["waiting for store"]
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
                    await readyz_problems_become(port, ["the store is unreachable"])
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
    _reader, as_reader = postgres_reader
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
                # then: receiving pauses, /readyz says why, and the worker goes on running
                await readyz_problems_become(port, ["the store is unreachable"])
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


async def test_an_ops_port_in_use_is_one_line_naming_the_setting(make_queue, settings_for):
    url, _ = make_queue("busy")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = settings_for(url, ops_port=port, ops_host="127.0.0.1")
        with pytest.raises(ConfigError, match="LAMBDA_DESTINATIONS_OPS_PORT"):
            await run_worker(settings, once=True)


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
        ("sqs_errors_total", {"operation": "SendMessage"}),
        ("sqs_errors_total", {"operation": "GetQueueUrl"}),
        ("sqs_batch_entries_failed_total", {"operation": "DeleteMessageBatch"}),
        ("replays_total", {"outcome": "failed"}),
    ]
    for name, labels in counters:
        series = [
            value
            for (sample, pairs), value in found.items()
            if sample == f"lambda_destinations_{name}" and labels.items() <= dict(pairs).items()
        ]
        assert series == [0.0], (name, labels, series)


async def test_store_calls_refused_are_counted_in_the_metrics(
    sqs, make_queue, settings_for, sqlite_url, hold_write_lock
):
    # given: a running worker whose SQLite file another process then write-locks
    url, _ = make_queue("refused")
    port = free_port()
    settings = settings_for(url, ops_port=port, ops_host="127.0.0.1", handler_attempts=1)
    seen: dict[str, str] = {}

    async def started(worker: Worker) -> None:
        try:
            hold_write_lock(Path(sqlite_url.removeprefix("sqlite:///")))
            # when: a record comes, and its save is refused
            send_bodies(sqs, url, [json.dumps(success_record(random.Random(9)))])
            await readyz_problems_become(port, ["the store is unreachable"])
            seen["metrics"] = (await get(port, "/metrics"))[1]
        finally:
            worker.stop()

    probe = in_background(started)
    await run_worker(settings, once=False, on_started=probe)
    await asyncio.gather(*probe.tasks)

    # then: the metrics say the store refused it, not only /readyz
    found = samples(seen["metrics"])
    refused = total(found, "lambda_destinations_store_errors_total")
    assert refused >= 1
