"""A replica that stops (frozen, paused, cut off from the store) for longer than its claim while
a handler runs: another replica takes the lapsed claim and runs the handler too. The README
lists it among the cases where an effect can repeat; the stalled worker says so when it goes
on. Real worker processes on one store (a SQLite file, PostgreSQL), SIGSTOP and SIGCONT."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lambda_destinations.simulate import failure_record
from processes import reap

HERE = Path(__file__).parent
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "run"]

pytestmark = pytest.mark.slow


def wait_for(what: str, found: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not found():
        assert time.monotonic() < deadline, f"never saw {what} within {seconds:.0f}s"
        time.sleep(0.1)


def effects_by(effects: Path) -> list[int]:
    """The processes that made the effect, one entry per time it was made."""
    text = effects.read_text() if effects.exists() else ""
    return [int(line.split()[1]) for line in text.splitlines()]


@pytest.mark.timeout(240)
def test_a_replica_stopped_past_its_claim_runs_the_handler_twice_and_says_so(
    sqs, make_queue, endpoint_url, store_url, tmp_path
) -> None:
    # given: a record whose handler takes 3 s, claims of 2 s, and one replica running it
    url, _ = make_queue("stalled", visibility_timeout=2, max_receive_count=20)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(failure_record(random.Random(41))))
    markers, effects = tmp_path / "markers", tmp_path / "effects.log"
    markers.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "MARKER_DIR": str(markers),
        "EFFECTS_FILE": str(effects),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": store_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_CLAIM_LEASE": "2",
        "LAMBDA_DESTINATIONS_CLAIM_RENEW_INTERVAL": "0.5",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["persist", "slow-effect"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    logs = [tmp_path / "one.log", tmp_path / "two.log"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # two replicas started together (one start-up's wait, not two): one receives the record
        for path in logs:
            with path.open("wb") as log:
                processes.append(subprocess.Popen(ENTRY, env=env, stdout=log, stderr=log))
        wait_for("the handler start", lambda: any(markers.glob("started-*")))
        (started,) = markers.glob("started-*")
        if not started.name.endswith(f"-{processes[0].pid}"):
            logs.reverse()
            processes.reverse()
        stalled, other = processes

        # when: that replica stops mid-handler (SIGSTOP: no renewal, no heartbeat), the other
        # takes the message and the lapsed claim, and runs the handler; then the first goes on
        stalled.send_signal(signal.SIGSTOP)
        wait_for("the other replica's effect", lambda: other.pid in effects_by(effects))
        stalled.send_signal(signal.SIGCONT)
        wait_for("the stalled replica's effect", lambda: stalled.pid in effects_by(effects))
        wait_for("its warning", lambda: "ran twice" in logs[0].read_text(), 30)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
        reap(*processes)

    # then: the effect happened twice (the README's third case), and the replica that stopped
    # says so, naming the delivery that completed it (it said nothing: the double was unseen)
    assert sorted(effects_by(effects)) == sorted([stalled.pid, other.pid])
    assert codes == [0, 0]
    events = [json.loads(line) for line in logs[0].read_text().splitlines() if line.startswith("{")]
    (twice,) = [e for e in events if "ran twice" in e["event"]]
    assert twice["handler"] == "slow-effect"
    assert f":{other.pid}:" in twice["completed_by"]  # worker identity host:pid:…
    assert "Traceback" not in logs[0].read_text() + logs[1].read_text()
