"""A real Prometheus server (Debian's `prometheus`) scrapes a running worker's /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from worker_helpers import send_bodies

from lambda_destinations.cli.run import run_worker
from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker
from processes import free_port

RECORDS = 200
QUERY = 'sum(lambda_destinations_messages_total{outcome="ack"})'
README = Path(__file__).parents[2] / "README.md"


def readme_alert(metric: str) -> str:
    """The expression of the README's "Alerts worth having" that reads ``metric``, as printed
    (its line breaks as spaces): the alert a reader copies is the one evaluated here."""
    paragraph = README.read_text(encoding="utf-8").split("Alerts worth having:", 1)[1]
    paragraph = paragraph.split("\n\n", 1)[0]
    (alert,) = [e for e in re.findall(r"`([^`]+)`", paragraph, re.S) if metric in e]
    return " ".join(alert.split())


def prometheus_or_skip() -> str:
    found = shutil.which("prometheus")
    if found is None:
        reason = "needs Debian's prometheus package (apt-get install prometheus)"
        if os.environ.get("LAMBDA_DESTINATIONS_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


async def series(
    session: aiohttp.ClientSession, port: int, expression: str
) -> list[tuple[dict[str, str], float]]:
    """The query's series (labels, value) from Prometheus's HTTP API; none while it has no
    sample yet."""
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/api/v1/query", params={"query": expression}
        ) as response:
            body: dict[str, Any] = await response.json()
    except aiohttp.ClientError:
        return []
    result = body.get("data", {}).get("result", [])
    return [(item["metric"], float(item["value"][1])) for item in result]


async def query(session: aiohttp.ClientSession, port: int, expression: str = QUERY) -> float | None:
    """The query's (first series') value; None while it has no sample yet."""
    found = await series(session, port, expression)
    return found[0][1] if found else None


async def alert_rules(session: aiohttp.ClientSession, port: int) -> list[dict[str, Any]]:
    """The alerting rules Prometheus has loaded, each with its query, health and state."""
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/api/v1/rules", params={"type": "alert"}
        ) as response:
            body: dict[str, Any] = await response.json()
    except aiohttp.ClientError:
        return []
    groups = body.get("data", {}).get("groups", [])
    return [rule for group in groups for rule in group["rules"]]


async def start_prometheus(
    binary: str, folder: Path, ops_port: int, prometheus_port: int, rules: str | None = None
) -> asyncio.subprocess.Process:
    """Prometheus on ``prometheus_port``, scraping the ops server every second and evaluating
    ``rules`` (the text of a rules file), if any, every second too."""
    config = folder / "prometheus.yml"
    rule_files = ""
    if rules is not None:
        (folder / "rules.yml").write_text(rules)
        rule_files = f"rule_files: ['{folder / 'rules.yml'}']\n"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"{rule_files}"
        "scrape_configs:\n  - job_name: lambda-destinations\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{ops_port}']\n"
    )
    return await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def until_answer(
    session: aiohttp.ClientSession, port: int, expression: str, wanted: float
) -> None:
    """Wait (two minutes at most) until Prometheus answers ``wanted`` to ``expression``."""
    for _ in range(240):
        if await query(session, port, expression) == wanted:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus never answered {wanted} to {expression}")


async def run_scraped(
    settings: Any,
    folder: Path,
    watch: Callable[[aiohttp.ClientSession, int], Awaitable[None]],
    rules: str | None = None,
) -> bytes:
    """Run a worker with ``settings`` (its ops port ``settings.ops_port``), scraped every second
    by a real Prometheus evaluating ``rules``, until ``watch(session, prometheus_port)``
    returns; Prometheus's own log (stderr), for a failing assertion."""
    binary = prometheus_or_skip()
    prometheus_port = free_port()
    prometheus = await start_prometheus(binary, folder, settings.ops_port, prometheus_port, rules)
    watchers: list[asyncio.Task[None]] = []

    async def watched(worker: Worker) -> None:
        try:
            async with aiohttp.ClientSession() as session:
                await watch(session, prometheus_port)
        finally:
            worker.stop()

    async def started(worker: Worker) -> None:
        watchers.append(asyncio.create_task(watched(worker)))

    try:
        await run_worker(settings, once=False, on_started=started)
        await asyncio.gather(*watchers)
    finally:
        prometheus.terminate()
        _out, err = await prometheus.communicate()
    return err


@pytest.mark.slow
async def test_the_readmes_quarantine_alert_fires_for_the_first_quarantine_since_start(
    sqs, make_queue, settings_for, tmp_path: Path
) -> None:
    # given: an idle worker that Prometheus scrapes every second
    url, _ = make_queue("alerted")
    settings = settings_for(url, ops_port=free_port(), ops_host="127.0.0.1")
    fired: list[float | None] = []

    async def watch(session: aiohttp.ClientSession, prometheus_port: int) -> None:
        # a scrape after the worker started, then one poison message
        after = f"timestamp(up) > bool {time.time():.3f}"
        await until_answer(session, prometheus_port, after, 1)
        send_bodies(sqs, url, ["not json"])
        # when: Prometheus has scraped its quarantine
        quarantined = 'sum(lambda_destinations_messages_total{outcome="quarantine"})'
        await until_answer(session, prometheus_port, quarantined, 1)
        alert = readme_alert("lambda_destinations_messages_total")
        fired.append(await query(session, prometheus_port, alert))

    await run_scraped(settings, tmp_path, watch)

    # then: the alert the README gives fires (its series was on the page at 0 before)
    assert fired != [None], "the alert did not fire"
    assert fired[0] is not None
    assert fired[0] > 0


@pytest.mark.slow
async def test_the_readmes_dlq_alert_fires_for_the_dlq_alone(
    sqs, make_queue, settings_for, tmp_path: Path
) -> None:
    # given: a polled queue whose DLQ holds one message, a worker sampling both depths, and
    # Prometheus scraping it every second
    url, dlq = make_queue("alerted-dlq")
    assert dlq is not None
    send_bodies(sqs, dlq, ["dead-lettered"])
    dlq_name = dlq.rsplit("/", 1)[-1]
    settings = settings_for(
        url, ops_port=free_port(), ops_host="127.0.0.1", queue_metrics_interval=0.5
    )
    alert = readme_alert("lambda_destinations_queue_messages")
    seen: dict[str, Any] = {}

    async def watch(session: aiohttp.ClientSession, prometheus_port: int) -> None:
        # when: Prometheus has scraped the DLQ's depth
        await until_answer(session, prometheus_port, alert, 1)
        seen["fired"] = await series(session, prometheus_port, alert)
        selected = 'lambda_destinations_queue_messages{role="dlq", state="visible"}'
        seen["dlq"] = await series(session, prometheus_port, selected)
        polled = selected.replace('"dlq"', '"polled"')
        seen["polled"] = await series(session, prometheus_port, polled)

    await run_scraped(settings, tmp_path, watch)

    # then: the README's alert, as printed, fires for the DLQ and names it (before, the series
    # had no label telling a DLQ from a polled queue, and the alert listed the DLQs by name)
    assert seen["fired"] == [({"queue": dlq_name}, 1.0)]
    # and the role label tells the DLQ from the queue polled
    assert [labels["queue"] for labels, _value in seen["dlq"]] == [dlq_name]
    assert [labels["queue"] for labels, _value in seen["polled"]] == [url.rsplit("/", 1)[-1]]


@pytest.mark.slow
async def test_the_readmes_paused_receiving_alert_fires_while_a_write_lock_holds_the_store(
    sqs, make_queue, settings_for, sqlite_url, hold_write_lock, tmp_path: Path
) -> None:
    # given: the README's rule, loaded by Prometheus with a `for:` of 2 s (its 5m, shortened),
    # evaluated every second against a worker it scrapes every second
    url, _ = make_queue("alerted-paused")
    settings = settings_for(url, ops_port=free_port(), ops_host="127.0.0.1", handler_attempts=1)
    expression = readme_alert("lambda_destinations_receiving_paused")
    rules = json.dumps(
        {
            "groups": [
                {
                    "name": "lambda-destinations",
                    "rules": [{"alert": "ReceivingPaused", "expr": expression, "for": "2s"}],
                }
            ]
        }
    )
    firing = 'ALERTS{alertname="ReceivingPaused", alertstate="firing"}'
    seen: dict[str, Any] = {}

    async def watch(session: aiohttp.ClientSession, prometheus_port: int) -> None:
        # the gauge scraped at 0 and the rule evaluated on it: loaded, healthy, inactive
        await until_answer(session, prometheus_port, "lambda_destinations_receiving_paused", 0)
        for _ in range(20):
            seen["before"] = await alert_rules(session, prometheus_port)
            evaluated = [rule.get("lastEvaluation", "0") > "1" for rule in seen["before"]]
            if evaluated and all(evaluated):
                break
            await asyncio.sleep(0.5)
        # when: another process holds the SQLite file's write lock and a record's save is
        # refused, so the worker pauses receiving
        holder = hold_write_lock(Path(sqlite_url.removeprefix("sqlite:///")))
        send_bodies(sqs, url, [json.dumps(success_record(random.Random(11)))])
        try:
            await until_answer(session, prometheus_port, firing, 1)
            seen["firing"] = await series(session, prometheus_port, firing)
        finally:
            holder.execute("ROLLBACK")

    err = await run_scraped(settings, tmp_path, watch, rules)

    # then: Prometheus loaded the README's expression and found nothing to alert on at first
    assert [
        (rule["name"], rule["query"], rule["health"], rule["state"]) for rule in seen["before"]
    ] == [("ReceivingPaused", expression, "ok", "inactive")], err[-2000:]
    # and the alert fired once receiving had stayed paused past its `for:`, for this worker
    ((labels, value),) = seen["firing"]
    assert value == 1.0
    assert labels["instance"] == f"127.0.0.1:{settings.ops_port}"


@pytest.mark.slow
async def test_prometheus_reads_200_acks_from_a_worker_that_drained_200_records(
    sqs, make_queue, settings_for, tmp_path: Path
) -> None:
    # given: 200 records, a worker with an ops port, Prometheus scraping it every second
    url, _ = make_queue("scraped")
    rng = random.Random(20)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(RECORDS)])
    settings = settings_for(url, ops_port=free_port(), ops_host="127.0.0.1", concurrency=20)
    seen: list[float | None] = []

    async def watch(session: aiohttp.ClientSession, prometheus_port: int) -> None:
        for _ in range(240):
            await asyncio.sleep(0.5)
            seen.append(await query(session, prometheus_port))
            if seen[-1] is not None and seen[-1] >= RECORDS:
                break
        # one more scrape: the count must stay where it is
        await asyncio.sleep(2.5)
        seen.append(await query(session, prometheus_port))

    # when: the worker runs until Prometheus has seen it drain the queue
    err = await run_scraped(settings, tmp_path, watch)

    # then: Prometheus's own answer is exactly one ack per record
    assert seen[-1] == RECORDS, (seen[-5:], err[-2000:].decode(errors="replace"))
    assert seen[-2] == RECORDS
