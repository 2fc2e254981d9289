"""Fixtures of the console tests: a world the worker filled from a moto server (SQS and
Lambda in one moto process of its own), the console as a real process, and Debian's Chromium
driven by Playwright.

Screenshots of every page go to ``$LAMBDA_DESTINATIONS_SCREENSHOTS`` when it is set (CI keeps
that folder as an artifact), else to ``console-screenshots`` under pytest's temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_OPS = Path(__file__).parent.parent / "operations"
sys.path.insert(0, str(_OPS))
_spec = importlib.util.spec_from_file_location("ops_conftest", _OPS / "conftest.py")
assert _spec is not None
assert _spec.loader is not None
ops_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ops_conftest)

# The operations tests' moto process with Lambda enabled (its own process: see its docstring).
lambda_server = ops_conftest.lambda_server
LambdaEndpoint = ops_conftest.LambdaEndpoint

from console_helpers import PUBLIC_HOST, TOKEN, XSS, RunningConsole, World  # noqa: E402
from ops_helpers import ENTRY, REGION, at, failure_body, send_all  # noqa: E402

from lambda_destinations.simulate import failure_record  # noqa: E402
from processes import start_console as start_process  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    # The console behind the tests' reverse proxy, at the name browsers open it by.
    f"--host-resolver-rules=MAP {PUBLIC_HOST} 127.0.0.1",
]


def _record(seed: int, function: str, error: tuple[str, str, str], minutes_ago: float) -> Any:
    import random

    record = failure_record(
        random.Random(seed), function=function, condition="RetriesExhausted", error=error
    )
    record["requestContext"]["functionArn"] = (
        f"arn:aws:lambda:{REGION}:123456789012:function:{function}"
    )
    record["timestamp"] = at(minutes_ago)
    return record


def _make_queues(endpoint: Any, name: str) -> tuple[str, str, str]:
    sqs = endpoint.sqs
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return url, dlq_url, f"{name}-dlq"


@pytest.fixture(scope="module")
def world(lambda_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Failures sent to a queue and stored by ``run --once``; a few messages left in the DLQ."""
    endpoint = LambdaEndpoint(lambda_server)
    for function in ("orders-api", "billing-worker"):
        endpoint.create_function(function)
    queue_url, dlq_url, dlq_name = _make_queues(endpoint, f"console-{uuid.uuid4().hex[:6]}")
    store_url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'store.db'}"
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint.url,
        "LAMBDA_DESTINATIONS_STORE": store_url,
        "LAMBDA_DESTINATIONS_REGION": REGION,
        "LAMBDA_DESTINATIONS_QUEUES": queue_url,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    built = World(endpoint, store_url, queue_url, dlq_url, dlq_name, env)
    timeout = ("TimeoutError", "Task timed out after 3.00 seconds", "python")
    roles = {
        "timeout": _record(1, "orders-api", timeout, 5),
        "timeout-2": _record(2, "orders-api", timeout, 65),
        "value": _record(3, "billing-worker", ("ValueError", "bad amount", "python"), 30),
        "edit": _record(4, "orders-api", ("KeyError", "'sku'", "python"), 15),
        "ignore": _record(5, "billing-worker", ("ValueError", "negative total", "node"), 45),
        "xss": _record(6, "orders-api", ("RuntimeError", XSS, "python"), 25),
    }
    built.records.update(roles)
    send_all(endpoint.sqs, queue_url, [json.dumps(r) for r in roles.values()] + ["not json"])
    ran = subprocess.run(
        [*ENTRY, "run", "--once"], env=env, capture_output=True, text=True, timeout=110
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    # Dead-lettered messages for the redrive (the poison message is there already).
    send_all(endpoint.sqs, dlq_url, [failure_body(n, minutes_ago=n)[0] for n in range(10, 13)])
    try:
        yield built
    finally:
        endpoint.cleanup()


@pytest.fixture
def lambda_endpoint(lambda_server: str) -> Iterator[Any]:
    """The Lambda moto server, for a test that makes its own functions (deleted after it)."""
    endpoint = LambdaEndpoint(lambda_server)
    try:
        yield endpoint
    finally:
        endpoint.cleanup()


def start_console(env: dict[str, str], *extra: str) -> RunningConsole:
    """``lambda-destinations console --port 0`` with the console's test token, as a process."""
    process, url = start_process({**env, "LAMBDA_DESTINATIONS_CONSOLE_TOKEN": TOKEN}, *extra)
    return RunningConsole(url, process)


@pytest.fixture(scope="module")
def console(world: World) -> Iterator[RunningConsole]:
    running = start_console(world.env)
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(timeout=20)
        if running.process.stderr is not None:
            running.process.stderr.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("LAMBDA_DESTINATIONS_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(20000)
    try:
        yield opened
    finally:
        context.close()
