"""Claims are leases: renewed while a handler runs, freed within one lease when a worker dies."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import CountingHandler, receive_all, registry_with, routed, run_until

from lambda_destinations.schemas import decode
from lambda_destinations.simulate import success_record
from lambda_destinations.store import RunState, Store, utcnow
from lambda_destinations.worker import Worker
from processes import reap

HERE = Path(__file__).parent


async def test_a_running_handler_keeps_its_claim_by_renewing_it_one_lease_at_a_time(
    sqs, make_queue, settings_for
) -> None:
    # given: a handler that runs for three leases
    url, dlq = make_queue("lease")
    body = json.dumps(success_record(random.Random(31)))
    sqs.send_message(QueueUrl=url, MessageBody=body)
    settings = routed(settings_for(url, claim_lease=1.0, claim_renew_interval=0.25), "count")
    key = decode(body).key
    started = asyncio.Event()

    class Slow(CountingHandler):
        async def __call__(self, message: Any, context: Any) -> None:
            started.set()
            await super().__call__(message, context)

    handler = Slow(sleep=3.0)
    seen: list[tuple[bool, float]] = []

    async def watch(store: Store) -> None:
        # when: another owner tries to take the claim once the first lease is long over
        await started.wait()
        await asyncio.sleep(2.0)
        taken = await store.claim_handler(key, "count", "another-worker", ttl=1.0)
        (run,) = await store.handler_runs(key)
        assert run.claimed_until is not None
        seen.append((taken, (run.claimed_until - utcnow()).total_seconds()))

    async with Store.from_url(settings.store) as store:
        await store.migrate()
        worker = Worker(settings, registry=registry_with(settings, handler), store=store)
        async with worker:
            watcher = asyncio.create_task(watch(store))
            stats = await run_until(worker, lambda: handler.runs, seconds=30)
            await watcher
        (run,) = await store.handler_runs(key)

    # then: the claim was still held (renewed) and reached at most one lease ahead
    ((taken, ahead),) = seen
    assert not taken
    assert 0 < ahead <= 1.0
    assert handler.runs == {key: 1}
    assert stats.outcomes["ack"] == 1
    assert (run.state, run.attempts) == (RunState.COMPLETED, 1)
    assert receive_all(sqs, dlq) == []


def test_a_killed_workers_claim_frees_within_one_lease_and_never_dead_letters(
    sqs, make_queue, endpoint_url, sqlite_url, tmp_path, monkeypatch
) -> None:
    # given: a worker process whose handler hangs, on a queue that dead-letters at 3 receives
    url, dlq = make_queue("killed", visibility_timeout=2, max_receive_count=3)
    body = json.dumps(success_record(random.Random(32)))
    sqs.send_message(QueueUrl=url, MessageBody=body)
    key = decode(body).key
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {
        "PYTHONPATH": str(HERE),
        "MARKER_DIR": str(markers),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_CLAIM_LEASE": "3",
        "LAMBDA_DESTINATIONS_CLAIM_RENEW_INTERVAL": "1",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": json.dumps(["slow_handlers"]),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["stuck-once"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "run"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(markers.glob("started-*")):
            assert process.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the handler never started"
            time.sleep(0.1)
        time.sleep(4.0)  # past the first lease: the claim lives on only by renewal
        held = asyncio.run(_runs(sqlite_url, key))
        # when: the worker is killed mid-handler
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        reap(process)
    assert [(run.state, run.claimed_until is not None) for run in held] == [
        (RunState.CLAIMED, True)
    ]
    assert held[0].claimed_until is not None
    assert held[0].claimed_until > utcnow()

    # then: a new worker runs the handler once the dead claim's lease is over; nothing is
    # dead-lettered, however the receives fall against the lease
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from lambda_destinations.config import load_settings

    settings = load_settings(retry_base=1.0, retry_max=4.0)
    asyncio.run(_drain(settings, markers, sqs, dlq))
    assert list(markers.glob("done-*"))
    runs = asyncio.run(_runs(sqlite_url, key))
    assert [run.state for run in runs] == [RunState.COMPLETED]
    assert receive_all(sqs, dlq) == []
    assert receive_all(sqs, url) == []


async def _runs(url: str, key: str):  # type: ignore[no-untyped-def]
    async with Store.from_url(url) as store:
        return await store.handler_runs(key)


async def _drain(settings, markers: Path, sqs, dlq: str) -> None:  # type: ignore[no-untyped-def]
    async with Worker(settings) as worker:
        await run_until(
            worker, lambda: list(markers.glob("done-*")) or receive_all(sqs, dlq), seconds=60
        )


@pytest.mark.parametrize(("lease", "renew"), [(30.0, 30.0), (10.0, 20.0)], ids=["equal", "longer"])
def test_a_renewal_interval_not_below_the_lease_is_refused(settings_for, lease, renew) -> None:
    from lambda_destinations.errors import ConfigError

    with pytest.raises(ConfigError, match="claim_renew_interval"):
        settings_for("q", claim_lease=lease, claim_renew_interval=renew)


@pytest.mark.parametrize("renew", [1e-9, 0.05])
def test_a_renewal_interval_below_a_tenth_of_a_second_is_refused(settings_for, renew) -> None:
    # a renewal is a store write: an interval of a nanosecond renewed in a loop (before: taken)
    from lambda_destinations.errors import ConfigError

    with pytest.raises(ConfigError, match="claim_renew_interval"):
        settings_for("q", claim_renew_interval=renew)
