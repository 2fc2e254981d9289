"""A real Prometheus server (Debian's `prometheus`) scrapes a running worker's /metrics."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from worker_helpers import send_bodies

from lambda_destinations.cli.run import run_worker
from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker
from processes import free_port, prometheus_tool

RECORDS = 200
QUERY = 'sum(lambda_destinations_messages_total{outcome="ack"})'
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yaml"
# A series a rule reads: a metric name (not a function's) and its label matchers, if any.
SELECTOR = re.compile(r"(?<![\w.])(lambda_destinations_\w+|up)\b(?!\s*\()(\{[^}]*\})?")


def shipped_rules() -> list[dict[str, Any]]:
    """The alerting rules of deploy/prometheus/alerts.yaml, as an operator loads them."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def shipped_rule(name: str) -> dict[str, Any]:
    (rule,) = [rule for rule in shipped_rules() if rule["alert"] == name]
    return rule


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


async def api_data(
    session: aiohttp.ClientSession, port: int, path: str, **params: str
) -> dict[str, Any]:
    """The ``data`` of an answer of Prometheus's HTTP API; empty while it does not answer."""
    try:
        async with session.get(f"http://127.0.0.1:{port}{path}", params=params) as response:
            body: dict[str, Any] = await response.json()
    except aiohttp.ClientError:
        return {}
    data: dict[str, Any] = body.get("data", {})
    return data


async def alert_rules(session: aiohttp.ClientSession, port: int) -> list[dict[str, Any]]:
    """The alerting rules Prometheus has loaded, each with its query, health and state."""
    groups = (await api_data(session, port, "/api/v1/rules", type="alert")).get("groups", [])
    return [rule for group in groups for rule in group["rules"]]


async def alerts(session: aiohttp.ClientSession, port: int) -> list[dict[str, Any]]:
    """The alerts Prometheus holds now (pending or firing), each with its labels and state."""
    try:
        async with session.get(f"http://127.0.0.1:{port}/api/v1/alerts") as response:
            body: dict[str, Any] = await response.json()
    except aiohttp.ClientError:
        return []
    found: list[dict[str, Any]] = body.get("data", {}).get("alerts", [])
    return found


async def until_firing(
    session: aiohttp.ClientSession, port: int, names: set[str]
) -> list[dict[str, Any]]:
    """Wait (two minutes at most) until every alert of ``names`` fires; the alerts then."""
    for _ in range(240):
        held = await alerts(session, port)
        if names <= {a["labels"]["alertname"] for a in held if a["state"] == "firing"}:
            return held
        await asyncio.sleep(0.5)
    raise AssertionError(f"Prometheus never fired {sorted(names)}: {held}")


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
    binary = prometheus_tool()
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
async def test_the_shipped_rules_fire_for_the_first_quarantine_since_start_and_its_dlq(
    sqs, make_queue, settings_for, tmp_path: Path
) -> None:
    # given: an idle worker on a queue with a DLQ, scraped every second by a Prometheus that
    # evaluates deploy/prometheus/alerts.yaml as it is, every second
    url, dlq = make_queue("alerted")
    assert dlq is not None
    settings = settings_for(
        url, ops_port=free_port(), ops_host="127.0.0.1", queue_metrics_interval=0.5
    )
    rules = RULES.read_text(encoding="utf-8")
    selectors = sorted(
        {
            name + (matchers or "")
            for r in shipped_rules()
            for name, matchers in SELECTOR.findall(r["expr"])
        }
    )
    wanted = {"LambdaDestinationsQuarantining", "LambdaDestinationsDlqNotEmpty"}
    seen: dict[str, Any] = {}

    async def watch(session: aiohttp.ClientSession, prometheus_port: int) -> None:
        # a scrape after the worker started, then one poison message
        after = f"timestamp(up) > bool {time.time():.3f}"
        await until_answer(session, prometheus_port, after, 1)
        send_bodies(sqs, url, ["not json"])
        # when: Prometheus has scraped its quarantine, and the DLQ's depth
        seen["alerts"] = await until_firing(session, prometheus_port, wanted)
        seen["rules"] = await alert_rules(session, prometheus_port)
        seen["series"] = {
            selector: await query(session, prometheus_port, f"count({selector})")
            for selector in selectors
        }
        polled = 'lambda_destinations_queue_messages{role="polled", state="visible"}'
        seen["polled"] = await series(session, prometheus_port, polled)

    err = await run_scraped(settings, tmp_path, watch, rules)

    # then: Prometheus loaded every rule of the file, and each evaluates without error
    assert sorted(rule["name"] for rule in seen["rules"]) == sorted(
        rule["alert"] for rule in shipped_rules()
    )
    assert [rule["name"] for rule in seen["rules"] if rule["health"] != "ok"] == [], err[-2000:]
    # and every series a rule reads is one the worker really serves (names and labels)
    assert {s: n for s, n in seen["series"].items() if not n} == {}
    # and the quarantine alert fires for the queue (its series was on the page at 0 before),
    # the DLQ's for the DLQ alone, named (the queue polled has a depth too, role "polled")
    firing = {
        (a["labels"]["alertname"], a["labels"].get("queue"), a["labels"]["severity"])
        for a in seen["alerts"]
        if a["state"] == "firing"
    }
    assert firing == {
        ("LambdaDestinationsQuarantining", url.rsplit("/", 1)[-1], "warning"),
        ("LambdaDestinationsDlqNotEmpty", dlq.rsplit("/", 1)[-1], "warning"),
    }
    assert [labels["queue"] for labels, _value in seen["polled"]] == [url.rsplit("/", 1)[-1]]
    # and what to do is in the alert: the command that lists the quarantined messages
    (quarantining,) = [
        a for a in seen["alerts"] if a["labels"]["alertname"] == "LambdaDestinationsQuarantining"
    ]
    assert (
        f"`quarantine list --queue {url.rsplit('/', 1)[-1]}"
        in (quarantining["annotations"]["description"])
    )


@pytest.mark.slow
async def test_the_shipped_paused_receiving_alert_fires_while_a_write_lock_holds_the_store(
    sqs, make_queue, settings_for, sqlite_url, hold_write_lock, tmp_path: Path
) -> None:
    # given: the shipped rule, loaded by Prometheus with a `for:` of 2 s (its 5m, shortened),
    # evaluated every second against a worker it scrapes every second
    url, _ = make_queue("alerted-paused")
    settings = settings_for(url, ops_port=free_port(), ops_host="127.0.0.1", handler_attempts=1)
    shipped = shipped_rule("LambdaDestinationsReceivingPaused")
    assert shipped["for"] == "5m"
    expression = shipped["expr"]
    rules = json.dumps(
        {"groups": [{"name": "lambda-destinations", "rules": [{**shipped, "for": "2s"}]}]}
    )
    firing = 'ALERTS{alertname="LambdaDestinationsReceivingPaused", alertstate="firing"}'
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
        holder = await asyncio.to_thread(
            hold_write_lock, Path(sqlite_url.removeprefix("sqlite:///"))
        )
        send_bodies(sqs, url, [json.dumps(success_record(random.Random(11)))])
        try:
            await until_answer(session, prometheus_port, firing, 1)
            seen["firing"] = await series(session, prometheus_port, firing)
        finally:
            holder.execute("ROLLBACK")

    err = await run_scraped(settings, tmp_path, watch, rules)

    # then: Prometheus loaded the shipped expression and found nothing to alert on at first
    assert [
        (rule["name"], rule["query"], rule["health"], rule["state"]) for rule in seen["before"]
    ] == [("LambdaDestinationsReceivingPaused", expression, "ok", "inactive")], err[-2000:]
    # and the alert fired once receiving had stayed paused past its `for:`, for this worker
    ((labels, value),) = seen["firing"]
    assert value == 1.0
    assert labels["instance"] == f"127.0.0.1:{settings.ops_port}"
    assert labels["severity"] == "critical"


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


async def metadata(session: aiohttp.ClientSession, port: int) -> dict[str, list[Any]]:
    """The metric families Prometheus has scraped, by the name their # TYPE line gave."""
    return await api_data(session, port, "/api/v1/metadata")


@pytest.mark.slow
async def test_prometheus_scrapes_openmetrics_as_it_asks_and_reads_the_ack_back(
    sqs, make_queue, settings_for, tmp_path: Path
) -> None:
    # given: one record, a worker with an ops port, Prometheus scraping it every second with
    # its own Accept header (OpenMetrics first) and Accept-Encoding (gzip)
    url, _ = make_queue("openmetrics")
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(21)))])
    settings = settings_for(url, ops_port=free_port(), ops_host="127.0.0.1")
    seen: dict[str, Any] = {}

    async def watch(session: aiohttp.ClientSession, prometheus_port: int) -> None:
        await until_answer(session, prometheus_port, QUERY, 1)
        seen["metadata"] = await metadata(session, prometheus_port)
        seen["created"] = await series(
            session, prometheus_port, 'count({__name__=~"lambda_destinations_.+_created"})'
        )

    # when: the worker runs until Prometheus has read its ack
    err = await run_scraped(settings, tmp_path, watch)

    # then: Prometheus read OpenMetrics, whose counters are named without _total in # TYPE
    families = seen["metadata"]
    assert families.get("lambda_destinations_messages") == [
        {"type": "counter", "help": "Messages settled, by outcome.", "unit": ""}
    ], (sorted(families), err[-2000:])
    assert "lambda_destinations_messages_total" not in families
    # and it stored no *_created series
    assert seen["created"] == []
