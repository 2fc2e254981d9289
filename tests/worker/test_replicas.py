"""Several `lambda-destinations run` processes sharing queues and one PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lambda_destinations.errors import StoreUnavailable
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import InvocationFilter, Store
from processes import reap

HERE = Path(__file__).parent
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "run"]

pytestmark = pytest.mark.postgres


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(ENTRY, env=env, stdout=out, stderr=subprocess.STDOUT)


def worker_env(endpoint_url: str, store: str, queues: list[str], effects: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "EFFECTS_FILE": str(effects),
        "LAMBDA_DESTINATIONS_QUEUES": ",".join(queues),
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": store,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_CONCURRENCY": "20",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_RETRY_BASE": "1",
        "LAMBDA_DESTINATIONS_RETRY_MAX": "4",
        "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": "5",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["persist", "count-effect"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
        "LAMBDA_DESTINATIONS_LOG_LEVEL": "warning",
    }


def fill(sqs, queues: list[str], bodies: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Spread the bodies over the queues (moto slows down with depth: keep each shallow)."""
    for index in range(0, len(bodies), 10):
        queue = queues[(index // 10) % len(queues)]
        entries = [
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[index : index + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=queue, Entries=entries).get("Failed")


def queue_depth(sqs, queues: list[str]) -> int:  # type: ignore[no-untyped-def]
    total = 0
    for url in queues:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        total += int(attributes["ApproximateNumberOfMessages"])
        total += int(attributes["ApproximateNumberOfMessagesNotVisible"])
    return total


async def stored_count(store_url: str) -> int:
    """Rows stored so far; 0 until a worker has migrated, -1 while the database is down."""
    try:
        async with Store.from_url(store_url) as store:
            return await store.count_invocations(InvocationFilter(failed_only=False))
    except StoreUnavailable as exc:
        return 0 if "no tables yet" in str(exc) else -1


def records(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps(success_record(rng) if i % 2 else failure_record(rng)) for i in range(n)]


def wait_until_drained(  # type: ignore[no-untyped-def]
    sqs, queues, store_url, expected, processes, logs: list[Path], stall: float = 120.0
) -> None:
    """Wait until the queues are empty and ``expected`` rows are stored.

    It asserts progress, not speed (speed is measured in bench/): it fails once neither the
    queue depth nor the stored count has moved for ``stall`` seconds, and then shows the end of
    each worker's log, which says why (a store away, receives failing).
    """
    seen, moved = None, time.monotonic()
    while True:
        for process in processes:
            assert process.poll() is None, "a worker exited\n" + log_tails(logs)
        depth, stored = queue_depth(sqs, queues), asyncio.run(stored_count(store_url))
        if depth == 0 and stored == expected:
            return
        if (depth, stored) != seen:
            seen, moved = (depth, stored), time.monotonic()
        assert time.monotonic() - moved < stall, (
            f"no progress for {stall:.0f}s: {depth} queued, {stored} stored\n" + log_tails(logs)
        )
        time.sleep(0.5)


def log_tails(logs: list[Path], lines: int = 15) -> str:
    """The last lines of each worker's log, for a failure message."""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in logs
        if log.exists()
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> list[int]:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    return [process.wait(timeout=30) for process in processes]


@pytest.mark.timeout(600)
def test_two_workers_one_database_every_record_once_every_effect_once(
    sqs, make_queue, endpoint_url, postgres_url, tmp_path
) -> None:
    # given: 2,000 records over eight queues, 200 of them sent twice (on other queues)
    # (maxReceiveCount 10: a receive a loaded moto answers after the client gave up still
    # counts, and at 3 a few such rounds dead-lettered records no worker ever saw)
    queues = [
        make_queue(f"replica{i}", visibility_timeout=30, max_receive_count=10)[0] for i in range(8)
    ]
    bodies = records(2000, seed=21)
    duplicates = random.Random(22).sample(bodies, 200)
    fill(sqs, queues, bodies + duplicates)
    effects = tmp_path / "effects.log"
    env = worker_env(endpoint_url, postgres_url, queues, effects)

    # when: two worker processes drain them together
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    processes = [start_worker(env, log) for log in logs]
    try:
        wait_until_drained(sqs, queues, postgres_url, 2000, processes, logs)
        time.sleep(1)  # let a last duplicate in flight settle
        codes = stop(processes)
    finally:
        reap(*processes)

    # then: every record stored once, every side effect exactly once, clean exits
    assert codes == [0, 0]
    assert asyncio.run(stored_count(postgres_url)) == 2000
    runs = Counter(effects.read_text().split())
    assert len(runs) == 2000
    assert max(runs.values()) == 1
    logs = "".join(p.read_text() for p in tmp_path.glob("worker*.log"))
    assert "Traceback" not in logs


PG_CTL = shutil.which("pg_ctlcluster")


def pg_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        [PG_CTL or "pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.skipif(
    PG_CTL is None or not Path("/etc/postgresql").is_dir() or os.geteuid() != 0,
    reason="restarting PostgreSQL needs pg_ctlcluster and root (a Debian server on this machine)",
)
@pytest.mark.exclusive  # the other PostgreSQL tests would see it stopped
@pytest.mark.timeout(300)
def test_postgres_restart_mid_run_loses_nothing_doubles_nothing(
    sqs, make_queue, endpoint_url, postgres_url, tmp_path
) -> None:
    # given: a worker draining 300 records into PostgreSQL
    made = [
        make_queue(f"restart{i}", visibility_timeout=30, max_receive_count=10) for i in range(3)
    ]
    queues = [url for url, _dlq in made]
    bodies = records(300, seed=31)
    effects = tmp_path / "effects.log"
    env = worker_env(endpoint_url, postgres_url, queues, effects)
    env["LAMBDA_DESTINATIONS_CONCURRENCY"] = "4"  # slow enough to be caught mid-run
    fill(sqs, queues, bodies)
    process = start_worker(env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while asyncio.run(stored_count(postgres_url)) < 30:
            assert time.monotonic() < deadline
            time.sleep(0.2)

        # when: the database goes away for a few seconds, then comes back
        pg_cluster("stop")
        try:
            time.sleep(4)
            assert process.poll() is None, "the worker exited while the database was down"
        finally:
            pg_cluster("start")
        wait_until_drained(sqs, queues, postgres_url, 300, [process], [tmp_path / "worker.log"])
        (code,) = stop([process])
    finally:
        reap(process)

    # then: nothing lost, nothing doubled, the worker never exited on its own
    assert code == 0
    assert asyncio.run(stored_count(postgres_url)) == 300
    assert queue_depth(sqs, [dlq for _url, dlq in made if dlq]) == 0  # nothing dead-lettered
    runs = Counter(effects.read_text().split())
    assert len(runs) == 300
    assert max(runs.values()) == 1
    log = (tmp_path / "worker.log").read_text()
    assert "store" in log  # it said the store was unavailable
    assert "Traceback" not in log
