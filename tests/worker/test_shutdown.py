"""SIGTERM to a real `lambda-destinations run` process with slow handlers in flight."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker_helpers import receive_all, send_bodies

from lambda_destinations.simulate import success_record
from processes import reap

HERE = Path(__file__).parent


def start_slow_worker(
    url: str, endpoint_url: str, sqlite_url: str, markers: Path, *, started: int, **settings: str
) -> subprocess.Popen[str]:
    """`lambda-destinations run` with `slow_handlers`' sleepy handler after persist, once
    ``started`` handlers are in flight (each drops a marker file as it starts)."""
    env = {
        **os.environ,
        # HERE for slow_handlers, before the path that runs this checkout's package
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "MARKER_DIR": str(markers),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["persist", "sleepy"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
        **{f"LAMBDA_DESTINATIONS_{name.upper()}": value for name, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(markers.glob("started-*"))) < started:
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            raise AssertionError(f"handlers never started: {process.communicate()[1]}")
        time.sleep(0.1)
    return process


def test_sigterm_finishes_quick_handlers_releases_slow_ones_and_exits_0(
    sqs, make_queue, endpoint_url, sqlite_url, tmp_path
) -> None:
    # given: 5 records whose handler takes 1s and 5 whose handler takes 60s
    url, _ = make_queue("shutdown", visibility_timeout=120)
    rng = random.Random(9)
    records = []
    for seconds in [1.0] * 5 + [60.0] * 5:
        record = success_record(rng)
        record["requestPayload"] = {"sleep": seconds}
        records.append(record)
    send_bodies(sqs, url, [json.dumps(r) for r in records])
    markers = tmp_path / "markers"
    markers.mkdir()
    grace = 3.0
    process = start_slow_worker(
        url,
        endpoint_url,
        sqlite_url,
        markers,
        started=10,
        concurrency="10",
        shutdown_grace=str(grace),
    )
    try:
        # when: SIGTERM while all ten handlers are in flight
        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=grace + 10)
        elapsed = time.monotonic() - sent_at
    finally:
        reap(process)

    # then: exit 0 within the one shutdown deadline (grace + 3 s), no traceback
    assert process.returncode == 0, err
    assert elapsed <= grace + 3.0, f"took {elapsed:.2f}s"
    assert "Traceback" not in err
    # the quick handlers finished and were acked; the slow ones are visible again at once
    assert len(list(markers.glob("done-*"))) == 5
    visible = receive_all(sqs, url)
    slow_ids = {r["requestContext"]["requestId"] for r in records[5:]}
    assert {json.loads(m["Body"])["requestContext"]["requestId"] for m in visible} == slow_ids


def test_sighup_shuts_down_as_sigterm_does(
    sqs, make_queue, endpoint_url, sqlite_url, tmp_path
) -> None:
    # given: a worker whose one handler is in flight for a minute
    url, _ = make_queue("hangup", visibility_timeout=120)
    record = success_record(random.Random(3))
    record["requestPayload"] = {"sleep": 60.0}
    send_bodies(sqs, url, [json.dumps(record)])
    markers = tmp_path / "markers"
    markers.mkdir()
    process = start_slow_worker(
        url, endpoint_url, sqlite_url, markers, started=1, shutdown_grace="1", ops_port="0"
    )
    try:
        # when: the terminal that started it closes
        process.send_signal(signal.SIGHUP)
        _out, err = process.communicate(timeout=30)
    finally:
        reap(process)

    # then: a graceful stop: logged, exit 0, the unfinished message visible again at once
    assert process.returncode == 0, err
    assert "Traceback" not in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e.get("signal") == "SIGHUP" for e in events), err
    # (a release shows 1 s after the end of a long poll that may still be open at SQS)
    visible = receive_all(sqs, url, wait=5)
    assert [json.loads(m["Body"])["requestContext"]["requestId"] for m in visible] == [
        record["requestContext"]["requestId"]
    ]
