"""Supervision: a long-lived task that dies stops the worker, loudly, with exit code 7.

Each test runs `lambda-destinations run` as a process with a fault injected inside one task
(tests/worker/faulty_worker.py) once a slow handler is in flight, and watches it from outside.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from worker_helpers import send_bodies

from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker
from lambda_destinations.worker.supervision import TaskFailed
from processes import free_port, reap

HERE = Path(__file__).parent
EXIT_TASK_FAILED = 7
GRACE = 3.0


def probe(port: int, path: str) -> tuple[int, dict[str, object]] | None:
    """(status, JSON body) of an ops endpoint, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None


def start_worker(
    fault: str, url: str, endpoint_url: str, sqlite_url: str, markers: Path, port: int
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "FAULT": fault,
        "MARKER_DIR": str(markers),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_CONCURRENCY": "10",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": str(GRACE),
        "LAMBDA_DESTINATIONS_OPS_PORT": str(port),
        "LAMBDA_DESTINATIONS_OPS_HOST": "127.0.0.1",
        "LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL": "1",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["sleepy"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, str(HERE / "faulty_worker.py"), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "task",
    ["poller", "heartbeat", "store-watcher", "scheduler", "queue-metrics", "ops-server"],
)
def test_a_task_that_dies_fails_healthz_and_stops_the_worker_with_exit_7(
    task, sqs, make_queue, endpoint_url, sqlite_url, tmp_path
) -> None:
    # given: a worker with a handler in flight that takes a minute
    url, _ = make_queue("supervised", visibility_timeout=120)
    record = success_record(random.Random(1))
    record["requestPayload"] = {"sleep": 60}
    send_bodies(sqs, url, [json.dumps(record)])
    markers = tmp_path / "markers"
    markers.mkdir()
    port = free_port()
    process = start_worker(task, url, endpoint_url, sqlite_url, markers, port)
    unhealthy = None
    try:
        deadline = time.monotonic() + 60
        while not list(markers.glob("started-*")):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.05)

        # when: the fault fires inside the task; watch /healthz until the process ends
        while process.poll() is None and time.monotonic() < deadline:
            answer = probe(port, "/healthz")
            if answer is not None and answer[0] == 503 and unhealthy is None:
                unhealthy = (time.monotonic(), answer[1])
            time.sleep(0.05)
        _out, err = process.communicate(timeout=GRACE + 10)
        ended = time.monotonic()
    finally:
        reap(process)

    # then: exit 7, the task's traceback logged, one line naming it
    assert process.returncode == EXIT_TASK_FAILED, err
    failed = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and "a long-lived task failed" in line
    ]
    assert [entry["task"].split(":")[0] for entry in failed] == [task.split(":")[0]]
    assert "Traceback (most recent call last)" in failed[0]["exception"]
    cause = "stopped listening" if task == "ops-server" else f"injected failure in {task}"
    assert cause in failed[0]["exception"]
    last = json.loads(err.strip().splitlines()[-1])  # JSON logs: the last line JSON too
    assert (last["level"], last["exit_code"]) == ("error", EXIT_TASK_FAILED)
    assert last["event"].startswith(f"the worker's {failed[0]['task']} task")
    if task == "ops-server":
        # the server it supervised is gone: nothing answers /healthz any more
        assert unhealthy is None
        return
    # /healthz answered 503 naming the task, and the process ended within the grace period
    assert unhealthy is not None, "/healthz never answered 503"
    seen_at, body = unhealthy
    assert any(f"task {failed[0]['task']} failed" in p for p in body["problems"]), body
    assert ended - seen_at <= GRACE + 3.0, err


@pytest.mark.timeout(60)
def test_a_fatal_signal_leaves_a_line_naming_it(sqs, make_queue, endpoint_url, sqlite_url) -> None:
    # given: a worker running as a process
    url, _ = make_queue("fatal")
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    env.pop("PYTHONFAULTHANDLER", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "lambda_destinations", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if '"worker started"' in line:
                break
        # when: a fatal signal ends it, as SQLite's mapped -shm file gives when it turns
        # unwritable under the worker
        process.send_signal(signal.SIGBUS)
        _out, err = process.communicate(timeout=30)
    finally:
        reap(process)

    # then: it died of the signal, and said so (before, it vanished without a line)
    assert process.returncode == -signal.SIGBUS
    assert "Fatal Python error: Bus error" in err


async def test_a_long_lived_task_that_returns_once_stop_is_called_is_no_failure(
    make_queue, settings_for
) -> None:
    # A poller whose receive comes back just after stop() sees the stop and returns, and can
    # end before run() wakes to shut down: that return is the stop's, not a failure (it was
    # reported as one, and the worker exited with the code of a failed task).
    url, _ = make_queue("stop-return")
    async with Worker(settings_for(url)) as worker:
        worker.stop()

        async def returns() -> None:
            return None

        await worker.supervisor.spawn("poller:returned", returns())
        await asyncio.sleep(0)  # its done callback

    assert worker.supervisor.failures == {}


async def test_a_task_ended_by_a_cancellation_not_the_workers_stops_the_worker(
    make_queue, settings_for
) -> None:
    # given: an embedder's long-lived task awaiting a future that something else cancels (a
    # library's own cancellation, or a future shared with another task): the task ends
    # cancelled, though the worker never cancelled it
    url, _ = make_queue("cancelled-task")
    async with Worker(settings_for(url)) as worker:
        shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def follows() -> None:
            await shared

        worker.spawn("follower", follows())
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)

        # when: the future it awaits is cancelled
        shared.cancel()
        with pytest.raises(TaskFailed) as raised:
            await asyncio.wait_for(running, timeout=15)
        health = worker.health()

    # then: it did not die silently: the worker stopped with the failed task's error, and
    # /healthz names it
    assert "follower" in str(raised.value)
    assert any(p.startswith("task follower failed") for p in health), health
