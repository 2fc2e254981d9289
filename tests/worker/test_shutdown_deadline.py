"""One shutdown deadline: SIGTERM ends the worker within shutdown_grace + 3 s, whatever hangs.

Everything at once: handlers that ignore cancellation, a scheduled job in progress that
ignores it too, and an SQS endpoint that stops answering (a frozen proxy in front of moto)
just as the worker begins its final releases and flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from worker_helpers import receive_all, send_bodies

from freezable_proxy import FreezableProxy
from lambda_destinations.simulate import success_record
from lambda_destinations.store import ScheduledJob, Store
from processes import free_port, reap
from tcp_proxy import AnswerCutter

HERE = Path(__file__).parent
GRACE = 2.0
MARGIN = 3.0


async def schedule_stubborn_job(store_url: str) -> None:
    async with Store.from_url(store_url) as store:
        await store.migrate()
        due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await store.schedule_job(
            ScheduledJob(key="stubborn-1", kind="stubborn", due_at=due, payload={})
        )


def wait_for_markers(markers: Path, process: subprocess.Popen[str], names: list[str]) -> None:
    deadline = time.monotonic() + 60
    while not all(list(markers.glob(name)) for name in names):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"never saw {names} in {list(markers.iterdir())}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("trial", [1, 2, 3])
def test_sigterm_ends_within_grace_plus_3s_when_handlers_jobs_and_sqs_all_hang(
    trial, sqs, make_queue, moto_server, sqlite_url, tmp_path
) -> None:
    # given: four handlers and a scheduled job that ignore cancellation, behind a proxy
    url, _ = make_queue("deadline", visibility_timeout=120)
    rng = random.Random(trial)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(4)])
    asyncio.run(schedule_stubborn_job(sqlite_url))
    markers = tmp_path / "markers"
    markers.mkdir()
    host, port = moto_server.removeprefix("http://").split(":")
    proxy = FreezableProxy(host, int(port))
    with proxy.running() as endpoint:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "FAULT": "none",
            "MARKER_DIR": str(markers),
            "LAMBDA_DESTINATIONS_QUEUES": url.replace(moto_server, endpoint),
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
            "LAMBDA_DESTINATIONS_STORE": sqlite_url,
            "LAMBDA_DESTINATIONS_REGION": "us-east-1",
            "LAMBDA_DESTINATIONS_CONCURRENCY": "10",
            "LAMBDA_DESTINATIONS_WAIT_TIME": "2",
            "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": str(GRACE),
            "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
            "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["stubborn"]}]),
            "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
        }
        process = subprocess.Popen(
            [sys.executable, str(HERE / "faulty_worker.py"), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_markers(markers, process, ["started-*", "job-started-*"])
            while len(list(markers.glob("started-*"))) < 4:
                assert process.poll() is None, process.communicate()[1]
                time.sleep(0.05)

            # when: SIGTERM; SQS stops answering before the grace period ends
            sent_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            time.sleep(GRACE / 2)
            proxy.frozen.set()
            _out, err = process.communicate(timeout=GRACE + 30)
            elapsed = time.monotonic() - sent_at
        finally:
            reap(process)

    # then: exit 0 within the one deadline, no traceback
    assert process.returncode == 0, err
    assert elapsed <= GRACE + MARGIN, f"took {elapsed:.2f}s\n{err}"
    assert "Traceback" not in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    # only what SQS confirmed is reported: the four releases were never answered
    assert not [e for e in events if e["event"].startswith("released unfinished messages")]
    unconfirmed = [e for e in events if e["event"].startswith("releases SQS did not confirm")]
    assert [e["count"] for e in unconfirmed] == [4]
    stopped = [e for e in events if e["event"] == "worker stopped"]
    assert stopped[0]["released"] == 0
    # and: the line that says the worker left handlers behind names them and the fix
    (ignored,) = [e for e in events if e["event"].startswith("handlers ignored cancellation")]
    assert ignored["handlers"] == ["stubborn"]
    assert "a handler must let CancelledError through" in ignored["event"]


def test_a_second_sigterm_releases_what_is_in_flight_and_exits_at_once(
    sqs, make_queue, endpoint_url, sqlite_url, tmp_path
) -> None:
    # given: four handlers in flight that would take a minute
    url, _ = make_queue("second", visibility_timeout=120)
    rng = random.Random(7)
    records = [success_record(rng) for _ in range(4)]
    send_bodies(sqs, url, [json.dumps(r) for r in records])
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "FAULT": "none",
        "MARKER_DIR": str(markers),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": "30",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["stubborn"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, str(HERE / "faulty_worker.py"), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(markers.glob("started-*"))) < 4:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)

        # when: SIGTERM, then SIGTERM again
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        elapsed = time.monotonic() - sent_at
    finally:
        reap(process)

    # then: 128 + SIGTERM, long before the 30 s grace, with the messages visible again once
    # the 1 s long poll open at the first signal has ended (see test_shutdown_polls.py)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert elapsed < 10, f"took {elapsed:.2f}s"
    assert len(receive_all(sqs, url, wait=3)) == 4


def wait_for_line(log: Path, process: subprocess.Popen[str], text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"never saw {text!r} in {log.read_text()}"
        time.sleep(0.05)


def hidden(sqs: Any, url: str) -> int:
    answer = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    return int(answer["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("in_flight", [0, 3])
def test_sigterm_ends_the_worker_when_its_postgresql_stopped_answering(
    in_flight, sqs, make_queue, endpoint_url, postgres_url, tmp_path
) -> None:
    # given: a worker whose PostgreSQL, behind a proxy, stops answering (a partition: the
    # connections stay open, nothing comes back), idle or with messages whose saves hang
    url, _ = make_queue("pg-frozen", visibility_timeout=120)
    host, port = postgres_url.removeprefix("postgresql://").split("@")[1].split("/")[0].split(":")
    proxy = FreezableProxy(host, int(port))
    log = tmp_path / "worker.log"
    with proxy.running() as through, log.open("w") as err_file:
        store = postgres_url.replace(f"{host}:{port}", through.removeprefix("http://"))
        env = {
            **os.environ,
            "LAMBDA_DESTINATIONS_QUEUES": url,
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
            "LAMBDA_DESTINATIONS_STORE": store,
            "LAMBDA_DESTINATIONS_REGION": "us-east-1",
            "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
            "LAMBDA_DESTINATIONS_OPS_PORT": "0",
            "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": str(GRACE),
            "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "lambda_destinations", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            text=True,
        )
        try:
            wait_for_line(log, process, '"worker started"')
            # The scheduler's read at start is over, its next one a second away: the pool's
            # connection is idle when the database stops answering.
            time.sleep(0.5)
            proxy.frozen.set()
            rng = random.Random(in_flight)
            send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(in_flight)])
            deadline = time.monotonic() + 60
            while hidden(sqs, url) < in_flight:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

            # when: SIGTERM (a restart, say, because the database is away)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=GRACE + 30)  # it hung for ever after "worker stopped"
        finally:
            reap(process)

    # then: exit 0, no traceback; a save left hanging is given up with one line, the
    # messages having been released before
    err = log.read_text()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [e["released"] for e in events if e["event"] == "worker stopped"] == [in_flight]
    if in_flight:
        gave_up = [e for e in events if e["event"].startswith("the store did not answer")]
        assert [e["store"] for e in gave_up] == [store]


@pytest.mark.postgres
async def test_sigterm_ends_a_start_whose_postgresql_stopped_answering_mid_migration(
    sqs, make_queue, endpoint_url, postgres_url, tmp_path
) -> None:
    # given: a worker starting on an empty database, whose answer to the migration's lock
    # never comes back (a migration's statements have no timeout)
    url, _ = make_queue("pg-migrating")
    address = postgres_url.removeprefix("postgresql://").split("@")[1].split("/")[0]
    cutter = AnswerCutter(f"http://{address}", b"pg_try_advisory_xact_lock")
    cutter.holds = 1
    async with cutter.running() as through:
        store = postgres_url.replace(address, through.removeprefix("http://"))
        env = _run_env(os.environ, url, endpoint_url, store)
        env |= {
            "LAMBDA_DESTINATIONS_OPS_PORT": "0",
            "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": str(GRACE),
        }
        process = await _run(env)
        try:
            await asyncio.wait_for(cutter.holding.wait(), 60)

            # when: SIGTERM
            process.send_signal(signal.SIGTERM)
            # It waited for the answer for as long as the database stayed away.
            _out, err = await asyncio.wait_for(process.communicate(), GRACE + 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    # then: interrupted before the start, in one line, no traceback
    text = err.decode()
    assert process.returncode == 130, text
    assert "Traceback" not in text
    assert "interrupted: stopped while waiting for store, which did not answer" in text


async def test_sigterm_ends_a_start_whose_credential_process_does_not_answer(
    make_queue, endpoint_url, tmp_path
) -> None:
    # given: a worker starting with a profile whose credential_process never answers (an SSO
    # helper waiting for a browser, a web identity's STS away)
    url, _ = make_queue("creds-hang")
    started, port = tmp_path / "started", free_port()
    env = _hanging_credentials_env(url, endpoint_url, tmp_path, started)
    env |= {
        "LAMBDA_DESTINATIONS_OPS_HOST": "127.0.0.1",
        "LAMBDA_DESTINATIONS_OPS_PORT": str(port),
    }
    process = await _run(env)
    try:
        for _ in range(600):  # the helper runs: the start waits for it
            if started.exists():
                break
            await asyncio.sleep(0.1)
        # /readyz says what the start waits for (before: "starting")
        status, body = await _get(port, "/readyz")

        # when: SIGTERM
        process.send_signal(signal.SIGTERM)
        # It waited for the credentials for as long as the helper ran (10 minutes here).
        _out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(ProcessLookupError, ValueError):  # the helper, left behind
            os.kill(int(started.read_text()), signal.SIGKILL)

    # then: interrupted before the start, in one line, no traceback
    text = err.decode()
    assert (status, json.loads(body)["problems"]) == (503, ["waiting for AWS credentials"])
    assert process.returncode == 130, text
    assert "Traceback" not in text
    assert "interrupted: stopped while waiting for AWS credentials, which did not answer" in text


async def test_run_once_gives_up_on_a_credential_process_that_does_not_answer(
    make_queue, endpoint_url, tmp_path
) -> None:
    # given: `run --once` with a profile whose credential_process never answers
    url, _ = make_queue("creds-hang-once")
    started = tmp_path / "started"
    env = _hanging_credentials_env(url, endpoint_url, tmp_path, started)
    env["LAMBDA_DESTINATIONS_ONCE_TIMEOUT"] = "2"

    # when: the job runs, and nothing signals it
    process = await _run(env, "--once")
    try:
        # It waited for the credentials for as long as the helper ran (10 minutes here).
        _out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int(started.read_text()), signal.SIGKILL)

    # then: it gave up after once_timeout, as for SQS away: exit 4, one line, no traceback
    text = err.decode()
    assert process.returncode == 4, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: AWS credentials did not come for 2s"), text
    assert "credential_process" in lines[0], text


def _hanging_credentials_env(
    url: str, endpoint_url: str, tmp_path: Path, started: Path
) -> dict[str, str]:
    """A worker's environment whose AWS profile's credential_process never answers (it writes
    its pid to ``started``, then sleeps 10 minutes)."""
    config = tmp_path / "config"
    config.write_text(
        f"[profile hangs]\ncredential_process = sh -c 'echo $$ > {started}; exec sleep 600'\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env = _run_env(environ, url, endpoint_url, f"sqlite:///{tmp_path / 's.db'}")
    return env | {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_PROFILE": "hangs",
    }


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


def _run_env(environ: Mapping[str, str], url: str, endpoint_url: str, store: str) -> dict[str, str]:
    """``environ`` with the settings of a worker on ``url`` and ``store``."""
    return {
        **environ,
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": store,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
    }


async def _run(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """``lambda-destinations run`` in a process of its own, its stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lambda_destinations", "run", *args, env=env, stderr=subprocess.PIPE
    )
