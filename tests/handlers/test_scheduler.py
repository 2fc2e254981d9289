"""The in-worker scheduler: how it settles jobs that cannot run, and how it stops."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.errors import PermanentError, TransientError
from lambda_destinations.handlers import HandlerRegistry
from lambda_destinations.handlers.jobs import JobContext
from lambda_destinations.store import (
    JobState,
    ReplayAttempt,
    ReplayOutcome,
    ScheduledJob,
    Store,
    utcnow,
)
from lambda_destinations.worker.metrics import Metrics
from lambda_destinations.worker.scheduler import Scheduler


@pytest.fixture
async def scheduler(
    jobs_store: Store, handler_settings: Callable[..., Settings]
) -> AsyncIterator[Scheduler]:
    settings = handler_settings("q")
    aws = AwsClients(settings)
    yield Scheduler(
        store=jobs_store,
        aws=aws,
        registry=HandlerRegistry(settings),
        settings=settings,
        owner="w1",
        poll_interval=0.1,
        max_attempts=2,
    )
    await aws.close()


def due(key: str, kind: str, **payload: object) -> ScheduledJob:
    return ScheduledJob(key=key, kind=kind, due_at=utcnow(), payload=dict(payload))


async def test_a_job_of_an_unknown_kind_fails_with_the_reason(
    scheduler: Scheduler, jobs_store: Store
) -> None:
    await jobs_store.schedule_job(due("mystery:1", "mystery"))

    assert await scheduler.run_due() == 1

    job = await jobs_store.get_job("mystery:1")
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.last_error == "ConfigError: no runner for jobs of kind 'mystery'"


async def test_a_digest_for_a_notifier_no_longer_configured_fails_with_the_reason(
    scheduler: Scheduler, jobs_store: Store
) -> None:
    await jobs_store.schedule_job(due("digest:x", "digest", handler="gone-sms"))

    await scheduler.run_due()

    job = await jobs_store.get_job("digest:x")
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.last_error is not None
    assert "the digest's notifier is gone from the configuration" in job.last_error
    assert "handler 'gone-sms' is not defined" in job.last_error


async def test_a_transient_failure_runs_again_later_then_gives_up(
    scheduler: Scheduler, jobs_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    async def flaky(job: ScheduledJob, context: JobContext) -> None:
        calls.append(job.attempts)
        raise ConnectionResetError("reset by peer")

    monkeypatch.setattr(scheduler, "_runner", lambda kind: flaky)
    await jobs_store.schedule_job(due("flaky:1", "flaky"))

    before = utcnow()
    await scheduler.run_due()
    first = await jobs_store.get_job("flaky:1")
    await asyncio.sleep(1.1)  # retry_base 1 s: the next run is due within a second
    await scheduler.run_due()
    second = await jobs_store.get_job("flaky:1")

    assert calls == [1, 2]
    assert first is not None
    assert first.state is JobState.PENDING
    assert first.last_error == "ConnectionResetError: reset by peer"
    assert before + dt.timedelta(seconds=0.5) <= first.due_at <= utcnow() + dt.timedelta(seconds=1)
    assert second is not None
    assert second.state is JobState.FAILED
    assert second.last_error == "gave up after 2 tries: ConnectionResetError: reset by peer"


async def test_a_jobs_error_with_a_nul_settles_the_job(
    scheduler: Scheduler, jobs_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An error quoting a payload with a NUL: PostgreSQL's text holds none, and a settling that
    # failed on it would end the scheduler's loop.
    async def quoting(job: ScheduledJob, context: JobContext) -> None:
        raise (TransientError if job.key == "flaky:1" else PermanentError)("payload a\x00b")

    monkeypatch.setattr(scheduler, "_runner", lambda kind: quoting)
    await jobs_store.schedule_job(due("flaky:1", "flaky"))
    await jobs_store.schedule_job(due("bad:1", "bad"))

    assert await scheduler.run_due() == 2

    flaky, bad = await jobs_store.get_job("flaky:1"), await jobs_store.get_job("bad:1")
    assert flaky is not None
    assert (flaky.state, flaky.owner) == (JobState.PENDING, None)
    assert flaky.last_error == "TransientError: payload a\ufffdb"
    assert bad is not None
    assert (bad.state, bad.last_error) == (JobState.FAILED, "PermanentError: payload a\ufffdb")


async def test_a_replay_given_up_on_counts_as_failed_not_as_a_retry(
    scheduler: Scheduler, jobs_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a scheduled replay whose Invoke fails for good reasons that pass (max_attempts 2)
    async def unreachable(job: ScheduledJob, context: JobContext) -> None:
        raise ConnectionResetError("reset by peer")

    scheduler.metrics = metrics = Metrics()
    monkeypatch.setattr(scheduler, "_runner", lambda kind: unreachable)
    await jobs_store.schedule_job(due("replay:1", "replay"))

    # when: it runs, is retried, and is given up on
    await scheduler.run_due()
    await asyncio.sleep(1.1)  # retry_base 1 s: the next run is due within a second
    await scheduler.run_due()

    # then: one retry and one failure, so an alert on failed replays sees it
    job = await jobs_store.get_job("replay:1")
    assert job is not None
    assert job.state is JobState.FAILED

    def replays(outcome: str) -> float | None:
        sample = "lambda_destinations_replays_total"
        return metrics.registry.get_sample_value(sample, {"outcome": outcome})

    assert replays("retry") == 1
    assert replays("failed") == 1


@pytest.mark.parametrize(("asked", "wait"), [(1.8, 1.8), (3600, 2.0)])
async def test_a_transient_failure_that_asks_for_a_wait_runs_no_sooner_nor_after_retry_max(
    scheduler: Scheduler,
    jobs_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    asked: float,
    wait: float,
) -> None:
    # given: a digest whose webhook answered 429 with a Retry-After (the backoff is 0.5-1 s,
    # retry_max 2 s)
    async def throttled(job: ScheduledJob, context: JobContext) -> None:
        raise TransientError("answered 429", retry_after=asked)

    monkeypatch.setattr(scheduler, "_runner", lambda kind: throttled)
    await jobs_store.schedule_job(due("throttled:1", "throttled"))

    # when
    before = utcnow()
    await scheduler.run_due()

    # then: due again no sooner than asked, and no later than retry_max
    job = await jobs_store.get_job("throttled:1")
    assert job is not None
    assert job.state is JobState.PENDING
    seconds = dt.timedelta(seconds=wait)
    assert before + seconds <= job.due_at <= utcnow() + seconds


async def test_stop_ends_the_loop_and_an_idle_scheduler_only_reads(
    scheduler: Scheduler, jobs_store: Store
) -> None:
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.35)

    await scheduler.wait_closed(task, grace=5)

    assert task.done()
    assert not task.cancelled()
    assert scheduler.jobs_run == 0


async def test_a_long_job_holds_back_no_job_due_after_it(
    scheduler: Scheduler, jobs_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a long job (the pruning runs up to 2 minutes), and a digest due a moment later
    ran: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def runner(job: ScheduledJob, context: JobContext) -> None:
        if job.kind == "long":
            await asyncio.sleep(3)
        ran[job.key] = loop.time()

    monkeypatch.setattr(scheduler, "_runner", lambda kind: runner)
    start = loop.time()
    await jobs_store.schedule_job(due("long:1", "long"))
    soon = ScheduledJob(
        key="soon:1", kind="soon", due_at=utcnow() + dt.timedelta(seconds=0.5), payload={}
    )
    await jobs_store.schedule_job(soon)

    # when
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(1.5)
    soon_ran = dict(ran)
    await scheduler.wait_closed(task, grace=5)

    # then: the second ran when due (before: only once the long one had ended, 3 s), and the
    # long one was let finish when the scheduler stopped
    assert "soon:1" in soon_ran
    assert soon_ran["soon:1"] - start < 1.5
    assert set(ran) == {"long:1", "soon:1"}
    job = await jobs_store.get_job("long:1")
    assert job is not None
    assert job.state is JobState.DONE


async def test_a_long_job_past_the_grace_is_given_back_when_the_scheduler_stops(
    scheduler: Scheduler, jobs_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def long(job: ScheduledJob, context: JobContext) -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(scheduler, "_runner", lambda kind: long)
    await jobs_store.schedule_job(due("long:1", "long"))
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.5)

    await scheduler.wait_closed(task, grace=0.5)

    assert task.done()
    job = await jobs_store.get_job("long:1")
    assert job is not None
    assert job.state is JobState.PENDING
    assert job.owner is None  # given back at once, not left to its lease


@pytest.mark.postgres
async def test_a_replica_whose_clock_is_behind_takes_up_a_dead_workers_job_within_its_lease(
    postgres_url: str,
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: on PostgreSQL, a job taken by a worker that died (a lease of 0.5 s, never
    # renewed), and a replica whose clock is five minutes behind the server's
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        await store.schedule_job(due("dead:1", "dead"))
        assert len(await store.take_due_jobs("dead-worker", limit=1, lease=0.5)) == 1
        await asyncio.sleep(1)
        behind = dt.timedelta(minutes=5)
        for module in ("lambda_destinations.store._jobs", "lambda_destinations.worker.scheduler"):
            monkeypatch.setattr(f"{module}.utcnow", lambda: dt.datetime.now(dt.UTC) - behind)
        settings = handler_settings("q")
        aws = AwsClients(settings)
        replica = Scheduler(
            store=store, aws=aws, registry=HandlerRegistry(settings), settings=settings, owner="w2"
        )
        ran: list[str] = []

        async def runner(job: ScheduledJob, context: JobContext) -> None:
            ran.append(job.key)

        monkeypatch.setattr(replica, "_runner", lambda kind: runner)

        # when: the replica looks for due jobs, the lease having lapsed by the server's clock
        try:
            taken = await replica.run_due()
        finally:
            await aws.close()

        # then: it takes the job up now (before: only once its own clock passed the lease's
        # end, five minutes later; a dead worker's jobs waited as long as the clocks differ)
        assert (taken, ran) == (1, ["dead:1"])


async def test_a_job_whose_lease_cannot_be_renewed_stops_before_another_replica_takes_it(
    jobs_store: Store,
    other_jobs_store: Store,
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: two replicas on one store and a job of 4 s; the first takes it with a lease of 1 s
    # renewed every 0.25 s, and cannot reach the store (its renewals fail); the second, whose
    # renewals hold, leases for 30 s (a loaded machine's stall must not stop its run)
    settings = handler_settings("q", claim_lease=1.0, claim_renew_interval=0.25)
    second_settings = handler_settings("q", claim_lease=30.0, claim_renew_interval=0.25)
    aws = AwsClients(settings)
    replicas = [
        Scheduler(
            store=store,
            aws=aws,
            registry=HandlerRegistry(replica_settings),
            settings=replica_settings,
            owner=owner,
            poll_interval=0.1,
        )
        for store, owner, replica_settings in (
            (jobs_store, "w1", settings),
            (other_jobs_store, "w2", second_settings),
        )
    ]
    loop = asyncio.get_running_loop()
    runs: dict[str, tuple[float, float]] = {}

    async def runner(job: ScheduledJob, context: JobContext) -> None:
        start = loop.time()
        try:
            await asyncio.sleep(4)
        finally:
            runs[context.owner] = (start, loop.time())

    async def unreachable(*args: object, **kwargs: object) -> bool:
        raise ConnectionRefusedError("connection refused")

    for replica in replicas:
        monkeypatch.setattr(replica, "_runner", lambda kind: runner)
    monkeypatch.setattr(jobs_store, "renew_job", unreachable)
    await jobs_store.schedule_job(due("long:1", "long"))

    # when: the first replica takes the job, then the second one looks for due jobs too
    try:
        first = asyncio.create_task(replicas[0].run_due())
        await asyncio.sleep(0.2)
        second = asyncio.create_task(replicas[1].run())
        await first
        await asyncio.sleep(0.5)
        await replicas[1].wait_closed(second, grace=10)
    finally:
        await aws.close()

    # then: the first replica's run stopped before the second replica's began (before: it ran
    # its 4 s on, beside the second one's, from when the lease lapsed at 1 s)
    (w1_start, w1_end), (w2_start, _w2_end) = runs["w1"], runs["w2"]
    assert w1_end - w1_start < 1.5
    assert w1_end <= w2_start
    job = await other_jobs_store.get_job("long:1")
    assert job is not None
    assert (job.state, job.attempts) == (JobState.DONE, 2)


async def test_a_replay_whose_invoke_was_answered_on_an_earlier_run_is_not_counted_again(
    scheduler: Scheduler, jobs_store: Store
) -> None:
    # given: a replay job whose Invoke an earlier run made (the ledger says invoked), run again
    # because that run ended before the job was marked done (a store outage, a restart)
    function = "arn:aws:lambda:us-east-1:123456789012:function:orders"
    attempt = ReplayAttempt(
        original_key="orders-req-1:RetriesExhausted",
        original_request_id="orders-req-1",
        function_arn=function,
        attempt=1,
        trigger="automatic",
        requested_by="worker w0",
        new_request_id="new-req-1",
        outcome=ReplayOutcome.INVOKED,
    )
    await jobs_store.add_replay(attempt)
    spec = {"original_key": attempt.original_key, "function_arn": function, "attempt": 1}
    await jobs_store.schedule_job(due("replay:orders-req-1:1", "replay", payload="{}", **spec))
    scheduler.metrics = metrics = Metrics()
    metrics.zero([], [])  # each outcome's series at 0, as the worker's start puts them

    # when: it runs, and finds the Invoke made
    assert await scheduler.run_due() == 1

    # then: done, with no replay counted as invoked (before: 1, the same Invoke counted twice)
    job = await jobs_store.get_job("replay:orders-req-1:1")
    assert job is not None
    assert job.state is JobState.DONE
    sample = "lambda_destinations_replays_total"
    assert metrics.registry.get_sample_value(sample, {"outcome": "invoked"}) == 0
