"""The pruning job runs inside the worker's scheduler while the worker writes: on SQLite and
PostgreSQL, with a real moto queue. Old records go; every record the worker stores stays."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random

import pytest
from worker_helpers import send_bodies

from lambda_destinations.aws import AwsClients
from lambda_destinations.handlers import HandlerRegistry
from lambda_destinations.simulate import success_record
from lambda_destinations.store import (
    DeliveryRow,
    InvocationFilter,
    InvocationRow,
    JobState,
    Store,
    utcnow,
)
from lambda_destinations.worker import Worker
from lambda_destinations.worker.scheduler import Scheduler

OLD = utcnow() - dt.timedelta(days=30)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("postgres_url")
    return url


def old_success(n: int) -> tuple[InvocationRow, DeliveryRow]:
    key = f"old-{n}:Success"
    row = InvocationRow(
        key=key,
        kind="invocation",
        envelope="none",
        request_id=f"old-{n}",
        function_arn=None,
        function_name="orders-api",
        qualifier=None,
        condition="Success",
        succeeded=True,
        approximate_invoke_count=1,
        error_type=None,
        error_message=None,
        stack_trace=None,
        timestamp=OLD,
        request_payload={"n": n},
        response_payload=None,
        record={"n": n},
        queue="q",
        first_seen_at=OLD,
    )
    return row, DeliveryRow(key=key, message_id=f"m-{n}", queue="q", receive_count=1)


async def stored(url: str) -> set[str]:
    async with Store.from_url(url) as store:
        rows = await store.list_invocations(InvocationFilter(failed_only=False))
    return {row.key for row in rows}


async def test_the_pruning_job_runs_while_the_worker_writes(
    sqs, make_queue, settings_for, any_store_url: str
) -> None:
    # given: 300 successes a month old in the store, and 300 new ones in the queue
    async with Store.from_url(any_store_url) as store:
        await store.migrate()
        for n in range(300):
            assert await store.save_invocation(*old_success(n), complete_handler="persist")
    url, _dlq = make_queue("success")
    rng = random.Random(5)
    records = [success_record(rng) for _ in range(300)]
    send_bodies(sqs, url, [json.dumps(r) for r in records])
    new_keys = {f"{r['requestContext']['requestId']}:Success" for r in records}
    settings = settings_for(url, store=any_store_url, prune_interval=0.5, prune_batch=25)

    # when: the worker drains the queue; its scheduler takes the pruning job meanwhile
    async with Worker(settings) as worker:
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(120):
                await asyncio.sleep(0.5)
                if await stored(any_store_url) == new_keys:
                    break
        finally:
            worker.stop()
            stats = await running

    # then: the old records went, each new one was stored once, and a job did it
    assert await stored(any_store_url) == new_keys
    # (moto now and then hands out a message again while its delete is under way, see
    # EMULATORS.md: that delivery is acked as a duplicate, its record not stored again)
    assert stats.outcomes["ack"] == 300 + stats.duplicates
    async with Store.from_url(any_store_url) as store:
        jobs = await store.list_jobs(kind="retention")
        assert await store.deliveries("old-1:Success") == []
        assert await store.handler_runs("old-1:Success") == []
    assert any(job.state is JobState.DONE for job in jobs)


async def test_a_worker_restarted_more_often_than_prune_interval_still_prunes(
    settings_for, any_store_url: str
) -> None:
    # given: 5 successes a month old, and a pruning every 2 s
    async with Store.from_url(any_store_url) as store:
        await store.migrate()
        for n in range(5):
            assert await store.save_invocation(*old_success(n), complete_handler="persist")
    settings = settings_for("q", store=any_store_url, prune_interval=2)
    aws = AwsClients(settings)

    # when: the worker's scheduler is restarted every 1.5 s, four times (a deploy, a task
    # replaced, a crash: more often than prune_interval)
    try:
        for _ in range(4):
            async with Store.from_url(any_store_url) as store:
                registry = HandlerRegistry(settings)
                scheduler = Scheduler(
                    store=store, aws=aws, registry=registry, settings=settings, owner="w1"
                )
                task = asyncio.create_task(scheduler.run())
                await asyncio.sleep(1.5)
                await scheduler.wait_closed(task, grace=5)
    finally:
        await aws.close()

    # then: the pruning ran all the same (before: each start waited a whole interval before
    # it scheduled the first pruning, and a restart forgot the wait: it never ran)
    assert await stored(any_store_url) == set()
