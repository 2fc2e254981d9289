"""SQS going away under a running worker and coming back, through a proxy in front of moto: what
the log says per queue (not per poller), /readyz, and the pollers backing off."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs
from worker_helpers import (
    CountingHandler,
    HeldHandler,
    receive_all,
    registry_with,
    routed,
    send_bodies,
)

from freezable_proxy import FreezableProxy
from lambda_destinations.simulate import success_record
from lambda_destinations.store import InvocationFilter, Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker import outage as outage_module
from lambda_destinations.worker import worker as worker_module
from lambda_destinations.worker.queues import queue_name


async def until(condition: Callable[[], object], within: float = 30) -> None:
    for _ in range(int(within * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {within}s")


def records_acked(worker: Worker) -> int:
    """Acks less duplicates: each record once. moto's ReceiveMessage can hand one message to
    two receives at once (it checks visibility and marks the receipt without a lock), as SQS
    may; the second delivery is acked too, so acks alone can step past a count."""
    return worker.stats.outcomes["ack"] - worker.stats.duplicates


def proxy_to(endpoint_url: str) -> FreezableProxy:
    parts = urlsplit(endpoint_url)
    return FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 80)


def quick_outages(monkeypatch: pytest.MonkeyPatch, reminder_every: float) -> None:
    """Receives back off 0.1-0.5 s; reminders, and the window of a flap, ``reminder_every``."""
    monkeypatch.setattr(worker_module, "RECONNECT_BASE", 0.2)
    monkeypatch.setattr(worker_module, "RECONNECT_MAX", 0.5)
    monkeypatch.setattr(outage_module, "REMINDER_EVERY", reminder_every)


@contextlib.asynccontextmanager
async def one_poller(
    settings_for: Callable[..., Any], url: str, endpoint_url: str, **overrides: Any
) -> AsyncIterator[tuple[Worker, FreezableProxy, list[dict[str, Any]]]]:
    """A worker with one poller on ``url`` through a proxy (and the settings ``overrides``),
    its logs captured, running once it has sent a receive; stopped at the end, as SIGTERM
    stops it."""
    proxy = proxy_to(endpoint_url)
    with proxy.running() as proxied, capture_logs() as logs:
        settings = settings_for(url, endpoint_url=proxied, pollers_per_queue=1, **overrides)
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            try:
                await until(lambda: worker.stats.sqs_calls["ReceiveMessage"] >= 1)
                yield worker, proxy, logs
            finally:
                worker.stop()
                await running
                proxy.bring_back()


async def flap(worker: Worker, proxy: FreezableProxy, times: int) -> None:
    """SQS goes away and comes back ``times`` times, each time until the worker sees it (a
    failed receive; then a receive that succeeds)."""
    for _ in range(times):
        proxy.take_down()
        await until(lambda: worker.readiness() != [])
        proxy.bring_back()
        await until(lambda: worker.readiness() == [])


# A fault trial that times a worker through a proxy: beside the parallel suite on a 2-core
# machine (both cores busy) its first 20 messages once took over 30 s, and a receive in flight
# as the proxy went down once ended the outage early; it runs with the other fault trials.
@pytest.mark.faults
async def test_an_outage_is_told_once_per_queue_with_reminders_and_its_end(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    # given: two queues with three pollers each, reached through a proxy; receives back off
    # 0.1-0.5 s (many failures per poller), reminders come at most every 2 s
    quick_outages(monkeypatch, 2.0)
    urls = [make_queue("outage-a")[0], make_queue("outage-b")[0]]
    names = [queue_name(url) for url in urls]
    rng = random.Random(21)
    bodies = {url: [json.dumps(success_record(rng)) for _ in range(20)] for url in urls}
    for url in urls:
        send_bodies(sqs, url, bodies[url][:10])
    proxy = proxy_to(endpoint_url)
    with proxy.running() as proxied, capture_logs() as logs:
        settings = settings_for(*urls, endpoint_url=proxied, pollers_per_queue=3)
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            try:
                await until(lambda: records_acked(worker) >= 20)
                # when: SQS is away for 12 s (each failure takes botocore's retries, 2-4 s);
                # records are sent meanwhile (straight to moto), once the long polls open at
                # moto have ended: one would take them, its answer lost, and hide them 30 s
                proxy.take_down()
                went = time.monotonic()
                await asyncio.sleep(1.5)
                for url in urls:
                    send_bodies(sqs, url, bodies[url][10:])
                await asyncio.sleep(10.5)
                [problem] = worker.readiness()
                # with why (before: the queues only, the same for SQS away and credentials
                # that cannot be got)
                assert problem.startswith(f"SQS: receives failing on {', '.join(names)} ("), problem
                # (the proxy down: botocore's words vary with the moment, "Could not connect
                # to the endpoint URL" or "Connection was closed before … endpoint URL")
                assert f'endpoint URL: "{proxied}' in problem, problem
                proxy.bring_back()
                lasted = time.monotonic() - went
                await until(lambda: records_acked(worker) >= 40, within=60)
            finally:
                worker.stop()
                await running
            errors = worker.metrics.registry.get_sample_value(
                "lambda_destinations_sqs_errors_total", {"operation": "ReceiveMessage"}
            )

    # then, for each queue: one warning as its receives began failing, with the error and the
    # fix; reminders at least 2 s apart, the first 2 s after it; one line when it recovered
    ended = 0
    for name in names:
        began = [e for e in logs if str(e["event"]).startswith(f"cannot receive from {name};")]
        assert len(began) == 1, began
        assert began[0]["log_level"] == "warning"
        assert began[0]["error"]
        # where the endpoint and region were set: here as if by the options
        assert began[0]["fix"] == (
            "receiving resumes by itself once SQS answers; if it stays away, "
            "check --endpoint-url, --region and the network"
        )
        reminders = [
            e for e in logs if str(e["event"]).startswith(f"still cannot receive from {name} (")
        ]
        assert 1 <= len(reminders) <= lasted // 2, reminders
        times = [0.0] + [float(e["outage_seconds"]) for e in reminders]
        assert all(b - a >= 2.0 - 0.1 for a, b in itertools.pairwise(times)), times
        assert [e["failures"] for e in reminders] == sorted(e["failures"] for e in reminders)
        back = [e for e in logs if e["event"] == "receiving again" and e["queue"] == name]
        # its end; or, when a receive sent before the proxy went down is answered just after
        # the first failure (seen on a slow machine), that brief end at once and then the end
        # that held, for the whole outage with its brief recovery (outage.py's flapping)
        assert len(back) in (1, 2), back
        if len(back) == 2:
            assert back[0]["after_failures"] < back[1]["after_failures"], back
            assert back[1]["brief_recoveries"] >= 1, back
        whole = back[-1]
        # three pollers failed at least once each; every failure is counted
        assert whole["after_failures"] >= 3
        assert whole["outage_seconds"] >= 6
        ended += whole["after_failures"]
    assert errors == ended  # the metric counts every failed receive, logged or not
    # and no record was lost: each stored once, the queues empty
    async with Store.from_url(settings.store) as store:
        rows = await store.list_invocations(InvocationFilter(failed_only=False))
    assert len({row.key for row in rows}) == len(rows) == 40
    assert all(receive_all(sqs, url) == [] for url in urls)


async def test_a_receive_that_succeeds_readies_its_queue_and_wakes_its_other_pollers(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    # given: one queue, three pollers, through a proxy; the first two failed receives of the
    # outage back off 60 s, every later one 0.3 s: two pollers sleep long, one keeps trying
    long_backoffs = iter([60.0, 60.0])
    monkeypatch.setattr(
        worker_module, "backoff_delay", lambda attempt, base, cap: next(long_backoffs, 0.3)
    )
    url, _ = make_queue("wake")
    name = queue_name(url)
    proxy = proxy_to(endpoint_url)
    with proxy.running() as proxied:
        settings = settings_for(url, endpoint_url=proxied, pollers_per_queue=3)
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            try:
                await until(lambda: worker.stats.sqs_calls["ReceiveMessage"] >= 3)
                # when: SQS goes away
                proxy.take_down()
                await until(lambda: sum(worker._receive_failures.values()) >= 5)
                # then: not ready; a failure wakes no one: the two pollers backing off 60 s
                # are still at their first failure while the third retries
                [problem] = worker.readiness()
                assert problem.startswith(f"SQS: receives failing on {name} ("), problem
                failures = sorted(worker._receive_failures.values())
                assert failures[:2] == [1, 1], failures
                assert failures[2] >= 3, failures
                # when: SQS comes back, with a record on the queue
                sqs.send_message(
                    QueueUrl=url, MessageBody=json.dumps(success_record(random.Random(22)))
                )
                proxy.bring_back()
                # then: ready again within a couple of seconds, not after 60 s ...
                await until(lambda: worker.readiness() == [], within=3)
                # ... and the sleeping pollers were woken: each has received since
                await until(lambda: not any(worker._receive_failures.values()), within=3)
                await until(lambda: records_acked(worker) >= 1)
            finally:
                worker.stop()
                await running
    assert receive_all(sqs, url) == []


async def test_a_flapping_endpoint_is_told_as_one_outage_and_its_end_once_it_stays_up(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    # given: one queue, one poller, through a proxy; receives back off 0.1-0.5 s; an outage
    # that begins again within 60 s of its end continues it (the window, the reminders')
    quick_outages(monkeypatch, 60.0)
    url, _ = make_queue("flap")
    name = queue_name(url)
    async with one_poller(settings_for, url, endpoint_url) as (worker, proxy, logs):
        # when: SQS goes away and comes back three times, each time until the worker sees it
        # (a failed receive; then a receive that succeeds)
        await flap(worker, proxy, 3)
        began = [e for e in logs if str(e["event"]).startswith("cannot receive from")]
        back = [e for e in logs if e["event"] == "receiving again"]
        # ... and then stays up past the window (shortened now to 0.5 s)
        monkeypatch.setattr(outage_module, "REMINDER_EVERY", 0.5)
        await until(lambda: len([e for e in logs if e["event"] == "receiving again"]) > 1)
    errors = worker.metrics.registry.get_sample_value(
        "lambda_destinations_sqs_errors_total", {"operation": "ReceiveMessage"}
    )

    # then: one warning as it began, one line at its first end (before: a warning and a
    # `receiving again` each time it went and came back) ...
    assert [e["queue"] for e in began] == [name]
    assert [e["queue"] for e in back] == [name]
    # ... and one more once it stayed up, counting the whole outage: its two brief recoveries
    # and every failed receive, as the metric does
    ends = [e for e in logs if e["event"] == "receiving again"]
    assert len(ends) == 2, ends
    assert ends[1]["brief_recoveries"] == 2
    assert ends[1]["after_failures"] == errors >= 3
    assert not [e for e in logs if str(e["event"]).startswith("still cannot receive")]


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        # a captive portal's page, named by its title
        (
            b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head></html>",
            "Sign in to the network",
        ),
        # a proxy's JSON of its own, none of whose keys SQS's answer has, named by its key
        (b'{"status": "ok"}', "'status'"),
    ],
    ids=["html-page", "json-of-its-own"],
)
async def test_a_200_with_what_is_not_sqs_answer_is_an_outage_not_an_empty_queue(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch, answer: bytes, named: str
) -> None:
    # given: one queue with a DLQ, one poller, through a proxy; receives back off 0.1-0.5 s;
    # depths (and the redrive policy) sampled every 0.1 s
    quick_outages(monkeypatch, 60.0)
    url, _ = make_queue("portal")
    name = queue_name(url)
    sampled = {"queue_metrics_interval": 0.1}
    async with one_poller(settings_for, url, endpoint_url, **sampled) as (worker, proxy, logs):
        # when: the endpoint answers every call 200 with what is not SQS's answer, for 2 s ...
        proxy.answer_garbage(answer)
        before = worker.stats.sqs_calls["ReceiveMessage"]
        await until(lambda: worker.readiness() != [], within=5)
        [problem] = worker.readiness()
        await asyncio.sleep(2)
        receives = worker.stats.sqs_calls["ReceiveMessage"] - before
        # ... then SQS again, with a record on the queue
        send_bodies(sqs, url, [json.dumps(success_record(random.Random(7)))])
        proxy.bring_back()
        await until(lambda: worker.readiness() == [])
        await until(lambda: records_acked(worker) >= 1)
    sampled_errors = worker.metrics.registry.get_sample_value(
        "lambda_destinations_sqs_errors_total", {"operation": "GetQueueAttributes"}
    )

    # then: one warning naming the queue and what answered (before: each answer read as an
    # empty receive, hundreds of receives a second, no warning, /readyz ready) ...
    began = [e for e in logs if str(e["event"]).startswith("cannot receive from")]
    assert [e["queue"] for e in began] == [name]
    assert named in began[0]["error"]
    assert name in problem
    assert "not an AWS answer" in problem
    # ... receives backing off (0.1-0.5 s apart), and its end said; the record received after
    assert receives <= 25, receives
    assert [e["queue"] for e in logs if e["event"] == "receiving again"] == [name]
    assert receive_all(sqs, url) == []
    # ... and the depth sampler's unreadable answers are samples not taken, not a redrive
    # policy removed (before: `queue has no dead-letter queue`, then `now dead-letters to`)
    assert sampled_errors is not None
    assert sampled_errors >= 1
    assert not [e for e in logs if "dead-letter" in str(e["event"])]


async def test_a_json_answer_with_no_queue_depth_is_no_sample_not_a_redrive_policy_removed(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    # given: one queue with a DLQ, one poller, through a proxy, sampled every 0.1 s
    quick_outages(monkeypatch, 60.0)
    url, _ = make_queue("emptyjson")
    labels = {"queue": queue_name(url), "role": "polled", "state": "visible"}
    sampled = {"queue_metrics_interval": 0.1}
    async with one_poller(settings_for, url, endpoint_url, **sampled) as (worker, proxy, logs):
        depth = worker.metrics.registry.get_sample_value
        await until(lambda: depth("lambda_destinations_queue_messages", labels) is not None)

        def failed() -> float:
            errors = {"operation": "GetQueueAttributes"}
            return depth("lambda_destinations_sqs_errors_total", errors) or 0.0

        before = failed()
        # when: the endpoint answers every call 200 with JSON of its own, for three rounds of
        # samples (counted, not timed: under load a second can pass with no sample taken)
        proxy.answer_garbage(b'{"status": "ok"}')
        await until(lambda: failed() >= before + 6)
        during = depth("lambda_destinations_queue_messages", labels)
        proxy.bring_back()

    # then: no depth (an absent series, as for a failed sample), and no redrive policy read as
    # removed (before: `queue has no dead-letter queue`, quarantines to the store alone)
    assert during is None
    assert not [e for e in logs if "dead-letter" in str(e["event"])]


@pytest.mark.parametrize("flaps", [0, 2])
async def test_a_worker_stopped_during_an_outage_closes_it_in_the_log(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch, flaps: int
) -> None:
    # given: one queue, one poller, through a proxy; receives back off 0.1-0.5 s; reminders
    # and the window of a flap are 60 s, longer than the test
    quick_outages(monkeypatch, 60.0)
    url, _ = make_queue(f"stop-{flaps}")
    name = queue_name(url)
    async with one_poller(settings_for, url, endpoint_url) as (worker, proxy, logs):
        # when: SQS goes away and comes back ``flaps`` times, each time until the worker sees
        # it, then goes away (flaps 0) or stays (2: the end said at once only for the first
        # flap; the whole outage's end waits for 60 s up) ...
        await flap(worker, proxy, flaps)
        if not flaps:
            proxy.take_down()
            await until(lambda: worker.readiness() != [])
        # ... and the worker is stopped (as SIGTERM does) within the 60 s
    errors = worker.metrics.registry.get_sample_value(
        "lambda_destinations_sqs_errors_total", {"operation": "ReceiveMessage"}
    )

    # then: the outage the log began, it closes, counting every failed receive (before: no
    # line, or for the flapping one only its first brief end)
    assert errors is not None
    assert errors >= flaps
    ends = [e for e in logs if e["event"] == "receiving again"]
    stopped = [e for e in logs if str(e["event"]).startswith("stopping; still cannot receive")]
    if flaps:
        assert [e["brief_recoveries"] for e in ends] == [0, flaps - 1]
        assert ends[-1]["after_failures"] == errors
        assert stopped == []
    else:
        assert ends == []
        (line,) = stopped
        assert line["event"].startswith(f"stopping; still cannot receive from {name} (")
        assert line["log_level"] == "warning"
        assert line["failures"] == errors >= 1
        assert line["outage_seconds"] >= 0


def test_an_outage_is_closed_once_at_stop_and_only_if_the_log_left_it_open() -> None:
    # given: three queues: one failing since 0 s; one that answered again at 5 s (said);
    # one that flapped (its end not said yet)
    down, back, flapped = (outage_module.QueueOutage(q) for q in ("down", "back", "flapped"))
    with capture_logs() as logs:
        for outage in (down, back, flapped):
            outage.failed(0.0, 1.0)
        down.failed(3.0, 1.0)
        back.succeeded(5.0)
        flapped.succeeded(5.0)
        flapped.failed(6.0, 1.0)
        flapped.succeeded(8.0)
        del logs[:]
        # when: the worker stops at 10 s, and (for the test) once more
        for outage in (down, back, flapped, down, back, flapped):
            outage.stopped(10.0)

    # then: one line each for the failing queue and the flapping one's end, nothing else
    assert _said(logs) == [("stopping", 0), ("receiving again", 1)]
    assert logs[0]["event"] == "stopping; still cannot receive from down (2 failures in 10s)"
    assert (logs[0]["failures"], logs[0]["outage_seconds"]) == (2, 10.0)
    assert (logs[1]["queue"], logs[1]["after_failures"], logs[1]["outage_seconds"]) == (
        "flapped",
        2,
        8.0,
    )


def _said(logs: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    """Each outage line: its words up to the first parenthesis or semicolon, and its count of
    brief recoveries."""
    return [
        (re.split(r" \(|;", str(e["event"]))[0], e.get("brief_recoveries"))
        for e in logs
        if "receiv" in str(e["event"])
    ]


def test_a_flapping_outage_is_reminded_of_with_its_brief_recoveries() -> None:
    # given: a queue's receives failing at 0 s, answering at 5 s, failing again at 10 s
    # (within 30 s of the end), answering at 12 s, failing at 20 s, and on until 45 s
    outage = outage_module.QueueOutage("orders")
    with capture_logs() as logs:
        outage.failed(0.0, 1.0)
        outage.succeeded(5.0)
        outage.failed(10.0, 1.0)
        assert outage.failing
        outage.succeeded(12.0)
        assert not outage.failing
        for second in range(20, 46):
            outage.failed(float(second), 1.0)
        # when: it answers at 46 s, and again 30 s later, when that end has held
        outage.succeeded(46.0)
        outage.succeeded(60.0)
        outage.succeeded(76.0)

    # then: the warning, the first end, a reminder at 30 s (not before) with two brief
    # recoveries, and the end that held once it held: nothing for the others
    assert _said(logs) == [
        ("cannot receive from orders", None),
        ("receiving again", 0),
        ("still cannot receive from orders", 2),
        ("receiving again", 2),
    ]
    assert "2 brief recoveries" in logs[2]["event"]
    assert (logs[3]["after_failures"], logs[3]["outage_seconds"]) == (28, 46.0)


def test_an_outage_after_the_last_one_held_is_another_one() -> None:
    # given: an outage that ended and held 30 s; one that flapped and was not said to have
    # held when the next failure came (no receive succeeded in between)
    outage = outage_module.QueueOutage("orders")
    with capture_logs() as logs:
        outage.failed(0.0, 1.0)
        outage.succeeded(1.0)
        outage.failed(31.0, 1.0)  # 30 s after the end: a new outage
        outage.succeeded(32.0)
        outage.failed(33.0, 1.0)  # a flap
        outage.succeeded(34.0)
        outage.failed(70.0, 1.0)

    # then: each outage is warned of; the one that flapped says its end before the next begins
    assert _said(logs) == [
        ("cannot receive from orders", None),
        ("receiving again", 0),
        ("cannot receive from orders", None),
        ("receiving again", 0),
        ("receiving again", 1),
        ("cannot receive from orders", None),
    ]
    assert logs[4]["outage_seconds"] == 3.0


@pytest.mark.parametrize(("pollers", "longest"), [(1, 10.0), (2, 20.0), (3, 30.0)])
async def test_a_poller_backs_off_at_most_10_s_for_each_poller_of_its_queue(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch, pollers: int, longest: float
) -> None:
    # given: one queue through a proxy; the longest backoff each failed receive is drawn
    # under is noted (the backoff itself is 0.3 s)
    caps: list[float] = []

    def noted(attempt: int, base: float, cap: float) -> float:
        caps.append(cap)
        return 0.3

    monkeypatch.setattr(worker_module, "backoff_delay", noted)
    url, _ = make_queue("cap")
    proxy = proxy_to(endpoint_url)
    with proxy.running() as proxied:
        settings = settings_for(url, endpoint_url=proxied, pollers_per_queue=pollers)
        async with Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            try:
                await until(lambda: worker.stats.sqs_calls["ReceiveMessage"] >= pollers)
                # when: SQS goes away
                proxy.take_down()
                await until(lambda: len(caps) >= 2)
            finally:
                proxy.bring_back()
                worker.stop()
                await running

    # then: a poller alone sleeps 10 s at most, past which SQS back would go unseen (before:
    # 30 s whatever the pollers); three or more keep 30 s, one of them trying every 10 s or so
    assert set(caps) == {longest}


async def test_a_poller_backing_off_from_a_deleted_queue_is_alive_not_stuck(
    sqs, make_queue, settings_for, monkeypatch
) -> None:
    # given: a receive counts as stuck 0.5 s past its long poll of 0 s; a failed receive backs
    # off 4 s (as a queue's 3 pollers back off up to 30 s, past a long poll of 10 s + 10 s)
    monkeypatch.setattr(worker_module, "RECEIVE_GRACE", 0.5)
    monkeypatch.setattr(worker_module, "backoff_delay", lambda attempt, base, cap: 4.0)
    url, _ = make_queue("deleted")
    async with Worker(settings_for(url, wait_time=0, pollers_per_queue=1)) as worker:
        running = asyncio.create_task(worker.run())
        try:
            await until(lambda: worker.stats.sqs_calls["ReceiveMessage"] >= 1)
            # when: the queue is deleted under the worker, and its poller backs off
            sqs.delete_queue(QueueUrl=url)
            await until(lambda: worker.readiness() != [])
            await asyncio.sleep(1.5)
            # then: not ready, naming the queue, yet alive: the poller sleeps out its backoff,
            # no receive is under way (before: "poller ...: a receive has been under way 2s",
            # and a liveness probe restarted a worker that a restart does not help)
            [problem] = worker.readiness()
            assert problem.startswith(f"SQS: receives failing on {queue_name(url)} ("), problem
            assert worker.health() == []
        finally:
            worker.stop()
            await running


def test_a_receive_sent_before_the_outage_began_does_not_end_it() -> None:
    # given: a queue's receives failing from 10 s (a receive sent at 10 s answered an error)
    outage = outage_module.QueueOutage("orders")
    with capture_logs() as logs:
        outage.failed(10.0, 1.0)
        # when: a long poll sent at 8 s, before the failures began, answers at 11 s
        outage.succeeded(11.0, sent=8.0)
        failing_after_old_poll = outage.failing
        # and a receive sent at 11.5 s answers at 12 s
        outage.succeeded(12.0, sent=11.5)

    # then: the old poll told nothing of SQS now (before, it ended the outage at once: "receiving
    # again" 1 s after the warning, and the failures after it were a flap, said nowhere)
    assert failing_after_old_poll
    assert _said(logs) == [("cannot receive from orders", None), ("receiving again", 0)]
    assert logs[1]["outage_seconds"] == 2.0


async def test_a_long_poll_in_flight_as_the_queue_is_deleted_does_not_end_its_outage(
    sqs, settings_for
) -> None:
    # given: two pollers of a queue, their long polls of 3 s out of step
    name = f"gone-{random.Random().randrange(10**8)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    with capture_logs() as logs:
        async with Worker(settings_for(url, wait_time=3, pollers_per_queue=2)) as worker:
            running = asyncio.create_task(worker.run())
            try:
                loop = asyncio.get_running_loop()
                sent = worker._receiving  # poller -> when its open poll was sent

                def both_polling() -> bool:
                    return len(sent) == 2 and None not in sent.values()

                await until(both_polling)
                first = min(since for since in sent.values() if since is not None)
                await until(lambda: loop.time() > first + 1.2)
                send_bodies(sqs, url, [json.dumps(success_record(random.Random(3)))])
                await until(lambda: worker.stats.outcomes["ack"] == 1)
                await until(both_polling)
                # when: the queue is deleted while both polls are open; one ends and the next
                # receive fails; the other, sent before the deletion, answers (empty) after it
                sqs.delete_queue(QueueUrl=url)
                await until(lambda: worker.readiness() != [])
                await asyncio.sleep(3.5)
                # then: the outage goes on: not ready, and no line says it ended
                still_failing = worker.readiness() != []
                said_back = any(e["event"] == "receiving again" for e in logs)
            finally:
                sqs.create_queue(QueueName=name)
                worker.stop()
                await running
                sqs.delete_queue(QueueUrl=url)

    assert still_failing
    assert not said_back


@pytest.mark.parametrize(
    ("given_as", "first_call"), [("name", "GetQueueUrl"), ("url", "GetQueueAttributes")]
)
async def test_the_calls_that_fail_while_the_worker_waits_for_sqs_at_start_are_counted(
    make_queue, settings_for, endpoint_url, monkeypatch, given_as: str, first_call: str
) -> None:
    # given: a queue given by name (first call GetQueueUrl) or by URL (GetQueueAttributes),
    # and SQS away behind a proxy; the worker retries every 0.1-0.2 s
    monkeypatch.setattr(worker_module, "RECONNECT_BASE", 0.2)
    monkeypatch.setattr(worker_module, "RECONNECT_MAX_PER_POLLER", 0.2)
    url, _ = make_queue("start-counted")
    configured = queue_name(url) if given_as == "name" else url
    proxy = proxy_to(endpoint_url)
    with proxy.running() as proxied, capture_logs() as logs:
        proxy.take_down()
        worker = Worker(settings_for(configured, endpoint_url=proxied))

        def failed() -> float | None:
            return worker.metrics.registry.get_sample_value(
                "lambda_destinations_sqs_errors_total", {"operation": first_call}
            )

        before = failed()
        starting = asyncio.create_task(worker.start())
        try:
            # when: the worker has tried twice, and SQS comes back
            await until(lambda: (failed() or 0) >= 2)
            during = failed()
            proxy.bring_back()
            await asyncio.wait_for(starting, timeout=30)
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await worker.close()

    # then: its series was on /metrics at 0 before the first call and counted each failure as
    # it came, one a retry (before, the calls of the start were counted nowhere)
    assert before == 0
    assert during is not None
    assert during >= 2
    (reached,) = [e for e in logs if e["event"] == "reached SQS"]
    assert failed() == reached["after_failures"]
    # and the log said it once, not once a retry: a reminder comes at most every 30 s
    assert len(unreachable(logs)) == 1


async def test_sqs_away_at_start_is_retried_within_seconds_of_its_return(
    make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    # given: SQS away behind a proxy at start, and a backoff whose first step (10-20 s) is
    # already past the start's cap
    monkeypatch.setattr(worker_module, "RECONNECT_BASE", 20.0)
    url, _ = make_queue("start-cap")
    proxy = proxy_to(endpoint_url)
    with proxy.running() as proxied, capture_logs() as logs:
        proxy.take_down()
        worker = Worker(settings_for(url, endpoint_url=proxied))
        starting = asyncio.create_task(worker.start())
        try:
            # when: the first attempt has failed, and SQS comes back
            await until(lambda: len(unreachable(logs)) == 1)
            proxy.bring_back()
            await asyncio.wait_for(starting, timeout=30)
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await worker.close()

    # then: the next attempt came within 10 s, as a queue's only poller retries (before, the
    # start's retries grew to 30 s apart, and a sidecar endpoint up after 20 s waited that)
    (line,) = unreachable(logs)
    retry_in = float(str(line["event"]).rsplit("retrying in ", 1)[1].removesuffix("s"))
    assert retry_in <= worker_module.RECONNECT_MAX_PER_POLLER
    (reached,) = [e for e in logs if e["event"] == "reached SQS"]
    assert reached["after_failures"] == 1


def unreachable(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The start's lines saying SQS could not be reached (one a failed attempt)."""
    return [e for e in logs if str(e["event"]).startswith("cannot reach SQS")]


async def test_a_job_is_not_ready_while_it_flushes_its_last_deletes(
    sqs, make_queue, settings_for, endpoint_url
) -> None:
    # given: a job (run --once) through a proxy, its one message's handler held open after
    # its one poller's queue answered empty
    url, _ = make_queue("once-flush")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(7)))])
    proxy = proxy_to(endpoint_url)
    gate = HeldHandler()
    empty = {"queue": queue_name(url), "empty": "true"}
    with proxy.running() as proxied:
        settings = settings_for(url, endpoint_url=proxied, pollers_per_queue=1)
        settings = routed(settings, gate.name)
        async with Worker(settings, registry=registry_with(settings, gate)) as worker:
            running = asyncio.create_task(worker.run(once=True))
            await asyncio.wait_for(gate.started.wait(), 30)
            sample = worker.metrics.registry.get_sample_value
            await until(lambda: sample("lambda_destinations_receives_total", empty) == 1)
            # when: SQS stops answering, and the handler ends: its delete waits unanswered
            # in the job's last flush, until the shutdown's deadline
            proxy.frozen.set()
            gate.go.set()
            await until(lambda: worker.readiness() != [] or running.done())
            seen, ended = worker.readiness(), running.done()
            proxy.frozen.clear()
            await running

    # then: /readyz said the job was shutting down while it flushed (before: ready)
    assert (seen, ended) == (["shutting down"], False)


async def test_a_job_on_a_flapping_endpoint_gives_up_only_on_receives_failing_that_long(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    # given: a job (run --once, once_timeout 3 s) on a queue that holds work for a while, one
    # poller through a proxy; receives back off 0.1-0.5 s; a failure within 60 s of an
    # outage's end continues that outage (one warning, as the log tells it)
    quick_outages(monkeypatch, 60.0)
    url, _ = make_queue("flap-once")
    rng = random.Random(8)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(60)])
    handler = CountingHandler(sleep=0.25)
    proxy = proxy_to(endpoint_url)
    loop = asyncio.get_running_loop()
    with proxy.running() as proxied:
        settings = settings_for(
            url, endpoint_url=proxied, pollers_per_queue=1, concurrency=1, once_timeout=3.0
        )
        settings = routed(settings, handler.name)
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            running = asyncio.create_task(worker.run(once=True))
            await until(lambda: len(handler.calls) >= 1)
            # when: SQS goes away briefly (until a receive fails, then back), twice, the
            # second time over once_timeout after the first: each time the receives failed
            # for a moment, and received in between
            first = loop.time()
            await flap(worker, proxy, 1)
            await asyncio.sleep(max(0.0, first + 4.0 - loop.time()))
            proxy.take_down()
            await until(lambda: worker.readiness() != [])
            proxy.bring_back()
            # then: the job goes on, and ends once its queue answers empty (before: it gave
            # up at the second failure, ReceiveTimedOut, exit 4, as if receives had failed
            # for 4 s)
            stats = await running

    assert stats.received >= 60
