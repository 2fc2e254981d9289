"""A PostgreSQL store going away under handlers that hold claims, through a proxy in front of the
server: what the log says of the leases the worker cannot renew meanwhile."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from structlog.testing import capture_logs
from worker_helpers import (
    CountingHandler,
    postgres_proxy,
    registry_with,
    routed,
    send_bodies,
    until,
)

from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker


@pytest.mark.postgres
async def test_leases_that_cannot_be_renewed_in_a_store_outage_are_told_once_not_each(
    sqs, make_queue, settings_for, postgres_url
) -> None:
    # given: four handlers running at once, each holding its claim, renewed every 0.2 s, in a
    # PostgreSQL store reached through a proxy
    url, _ = make_queue("leases")
    rng = random.Random(41)
    send_bodies(sqs, url, [json.dumps(success_record(rng)) for _ in range(4)])
    handler = CountingHandler(sleep=4.0)
    async with postgres_proxy(postgres_url) as (proxy, through):
        settings = settings_for(url, store=through, claim_lease=30.0, claim_renew_interval=0.2)
        settings = routed(settings, "count")
        worker = Worker(settings, registry=registry_with(settings, handler))
        with capture_logs() as logs:
            async with worker:
                running = asyncio.create_task(worker.run())
                assert await until(lambda: len(handler.calls) == 4)
                # when: the store goes away for 1.5 s (about 7 renewals of each claim) and
                # comes back while the handlers still run
                proxy.take_down()
                await asyncio.sleep(1.5)
                proxy.bring_back()
                assert await until(lambda: sum(handler.runs.values()) == 4, seconds=20)
                await asyncio.sleep(0.5)
                worker.stop()
                await running

    # then: one warning says the renewals fail, not one a claim each time, and one line that
    # they succeed again
    failed = [e for e in logs if e["event"].startswith("could not renew")]
    assert len(failed) == 1, [e["event"] for e in failed]
    assert "StoreUnavailable" in failed[0]["error"]
    again = [e for e in logs if e["event"] == "renewing leases again"]
    assert len(again) == 1, again
    assert again[0]["after_failures"] >= 4
    assert dict(handler.runs) == dict.fromkeys(handler.runs, 1)
