"""A scheduled job (a digest, a replay, the pruning) whose worker died is taken up by another
replica within one ``claim_lease``, and never taken from a live one: real worker processes on
one store (a SQLite file, PostgreSQL), one SIGKILLed while it runs the job."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lambda_destinations.store import ScheduledJob, Store
from processes import reap

HERE = Path(__file__).parent
LEASE = 2.0

pytestmark = pytest.mark.slow


async def schedule_held_job(store_url: str) -> None:
    async with Store.from_url(store_url) as store:
        await store.migrate()
        due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        await store.schedule_job(ScheduledJob(key="held-1", kind="held", due_at=due, payload={}))


def runners(markers: Path) -> set[int]:
    """The processes that started the job, by the markers it left."""
    return {int(path.name.rsplit("-", 1)[1]) for path in markers.glob("job-held-1-*")}


def wait_for_runner(
    markers: Path, processes: list[subprocess.Popen[bytes]], seconds: float
) -> set[int]:
    deadline = time.monotonic() + seconds
    while not (found := runners(markers)):
        for process in processes:
            assert process.poll() is None, f"worker {process.pid} exited"
        if time.monotonic() > deadline:
            return found
        time.sleep(0.1)
    return found


@pytest.mark.timeout(180)
def test_a_job_whose_worker_was_killed_is_taken_up_within_a_claim_lease(
    make_queue, endpoint_url, store_url, tmp_path
) -> None:
    # given: two replicas on one store, a job due, claims of 2 s renewed every 0.5 s, and the
    # default handler_timeout (300 s)
    url, _ = make_queue("takeover")
    asyncio.run(schedule_held_job(store_url))
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "FAULT": "none",
        "MARKER_DIR": str(markers),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": store_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_CLAIM_LEASE": str(LEASE),
        "LAMBDA_DESTINATIONS_CLAIM_RENEW_INTERVAL": str(LEASE / 4),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    processes = []
    for n in range(2):
        with (tmp_path / f"worker{n}.log").open("wb") as log:
            command = [sys.executable, str(HERE / "faulty_worker.py"), "run"]
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
    try:
        (holder,) = wait_for_runner(markers, processes, 60)
        # while its worker lives and renews the lease, the other replica leaves the job alone
        time.sleep(LEASE * 4)
        assert runners(markers) == {holder}

        # when: the worker running it is killed
        (killed,) = [p for p in processes if p.pid == holder]
        (other,) = [p for p in processes if p.pid != holder]
        killed.kill()
        killed.wait(timeout=30)
        (markers / f"job-held-1-{holder}").unlink()

        # then: the other replica takes the job up once the lease lapsed (it waited
        # handler_timeout and a minute, six minutes, for a lease never renewed)
        taken = wait_for_runner(markers, [other], 60)
        assert taken == {other.pid}, "the job was not taken up within 60 s of its worker's death"
    finally:
        reap(*processes)
