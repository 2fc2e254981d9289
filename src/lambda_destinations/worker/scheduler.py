"""The in-worker scheduler: runs jobs kept in the store when they fall due.

Jobs are due replays (``replay``, from the replay handler's backoff) and alert digests
(``digest``, when an alert window ends). They live in the store, not in memory, so a restart
neither loses nor repeats them, and every replica runs a scheduler: each due job is *taken* with
a lease by exactly one of them (see :mod:`lambda_destinations.store._jobs`), renewed while the
job runs; a job whose worker died is taken again when its lease expires, within ``claim_lease``.

The loop reads when the next job is due (a plain read, cheap on both backends) and takes jobs
only when one is, so an idle worker costs the store one read per ``poll_interval``. A job ends
done, failed (a permanent error: kept with the reason), or is given back to run again later
with an exponential backoff (a transient error), up to ``max_attempts`` takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import structlog
from structlog.contextvars import bound_contextvars

from lambda_destinations._lifetime import until_set
from lambda_destinations.errors import ConfigError, StoreUnavailable, TransientError
from lambda_destinations.handlers.in_doubt import JOB_CALLS, JobCalls, in_doubt_note
from lambda_destinations.handlers.jobs import JobContext, JobRunner
from lambda_destinations.handlers.replay import run_replay_job
from lambda_destinations.handlers.storm import run_digest_job
from lambda_destinations.retrying import (
    asked_wait,
    backoff_delay,
    classify,
    describe_error,
    retry_delay,
)
from lambda_destinations.store import ScheduledJob, utcnow
from lambda_destinations.worker.leases import LeaseLapsed, Renewals, renewing
from lambda_destinations.worker.metrics import Metrics
from lambda_destinations.worker.retention import run_retention_job

if TYPE_CHECKING:
    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.registry import HandlerRegistry
    from lambda_destinations.store import Store

log = structlog.get_logger("lambda_destinations.scheduler")

# Job kind -> the function that runs it.
JOB_RUNNERS: dict[str, JobRunner] = {
    "replay": run_replay_job,
    "digest": run_digest_job,
    "retention": run_retention_job,
}

MAX_ERROR = 1000
RETENTION = dt.timedelta(days=14)  # ended jobs and alert windows are kept this long
PRUNE_EVERY = 3600.0  # seconds between two clean-ups


def retention_job(now: dt.datetime, interval: float) -> ScheduledJob:
    """The pruning job of the interval ``now`` falls in (its key names the interval), due one
    interval from ``now``. Kept in the store, it runs when due whoever is running then: a
    worker restarted more often than the interval still prunes once an interval."""
    slot = int(now.timestamp() // interval)
    due_at = now + dt.timedelta(seconds=interval)
    return ScheduledJob(key=f"retention:{slot}", kind="retention", due_at=due_at, payload={})


class Scheduler:
    """Takes due jobs from the store and runs them, until :meth:`stop`."""

    def __init__(
        self,
        *,
        store: Store,
        aws: AwsClients,
        registry: HandlerRegistry,
        settings: Settings,
        owner: str,
        poll_interval: float = 1.0,
        batch: int = 10,
        max_attempts: int = 10,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        # Told when the store cannot be reached: an idle worker's scheduler is often the first
        # to find out, and the worker then pauses receiving and is not ready until a ping
        # answers, as when a handler finds out.
        self.store_down: Callable[[StoreUnavailable], None] | None = None
        # Shared with the dispatcher's claims (the worker's): a store outage is told once.
        self.renewals = Renewals()
        self.store = store
        self.aws = aws
        self.registry = registry
        self.settings = settings
        self.owner = owner
        self.poll_interval = poll_interval
        self.batch = batch
        self.max_attempts = max_attempts
        self.sleep = sleep
        # A job may run for handler_timeout. Its lease is a claim's, renewed while it runs: a
        # slow run is never taken over while it is alive, and the jobs of a worker that died
        # are taken up by another within one claim_lease, not after a whole handler_timeout.
        self.timeout = settings.handler_timeout
        self.lease = settings.claim_lease
        self.jobs_run = 0
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._next_prune = 0.0
        self._next_retention = 0.0

    def stop(self) -> None:
        """Take no more jobs; the jobs in hand finish (see :meth:`wait_closed`)."""
        self._stopping.set()

    async def wait_closed(self, task: asyncio.Task[None], grace: float) -> None:
        """Wait up to ``grace`` seconds for ``task`` (running :meth:`run`), then cancel it."""
        self.stop()
        _done, pending = await asyncio.wait({task}, timeout=grace)
        for left in pending:
            log.warning("grace period over; cancelling scheduled jobs in progress")
            left.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """Run due jobs until stopped; store outages are waited out, never raised. The jobs
        in hand finish, or (this task cancelled) are given back."""
        try:
            await self._loop()
        except asyncio.CancelledError:
            for task in self._running:
                task.cancel()
            raise
        finally:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                # A job is not waited for: one that runs long (the pruning) holds back
                # none due after it; at most ``batch`` run at once.
                ran = len(await self._start_due())
                await self._prune()
            except Exception as exc:  # the scheduler never dies; it backs off
                failures += 1
                delay = backoff_delay(failures, self.poll_interval, 60.0)
                if isinstance(exc, StoreUnavailable):
                    log.warning(
                        f"scheduler cannot reach the store; retrying in {delay:.1f}s",
                        error=describe_error(exc),
                    )
                    if self.store_down is not None:
                        self.store_down(exc)
                else:
                    log.exception(f"scheduler failed; retrying in {delay:.1f}s")
                await self._wait(delay)
                continue
            failures = 0
            if not ran:
                await self._wait(self.poll_interval)

    async def run_due(self) -> int:
        """Take the jobs due now and run them (concurrently); return how many ran."""
        tasks = await self._start_due()
        await asyncio.gather(*tasks)
        return len(tasks)

    async def _start_due(self) -> list[asyncio.Task[None]]:
        """Start the jobs due now, as many as ``batch`` leaves room for beside those running."""
        room = self.batch - len(self._running)
        due = await self.store.next_job_due() if room > 0 else None
        if due is None or due > utcnow():
            return []
        taken_at = asyncio.get_running_loop().time()  # the leases end a lease from this
        jobs = await self.store.take_due_jobs(self.owner, limit=room, lease=self.lease)
        tasks = [asyncio.create_task(self._run_settled(job, taken_at)) for job in jobs]
        for task in tasks:
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return tasks

    async def _run_settled(self, job: ScheduledJob, taken_at: float) -> None:
        try:
            await self._run(job, taken_at)
        except Exception as exc:  # noqa: BLE001 - logged: the job's lease settles it
            # The job ran, or did not, but could not be settled (the store went away): its
            # lease expires and it runs again; runners judge what a rerun finds.
            log.warning("job not settled", job=job.key, error=describe_error(exc))

    async def _wait(self, seconds: float) -> None:
        await until_set(self._stopping, seconds)

    async def _prune(self) -> None:
        now = asyncio.get_running_loop().time()
        if now >= self._next_retention:
            # Every replica, and a restarted one, schedules the same key for each interval:
            # one job, one replica.
            self._next_retention = now + self.settings.prune_interval
            await self.store.schedule_job(retention_job(utcnow(), self.settings.prune_interval))
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        removed = await self.store.prune_jobs(utcnow() - RETENTION)
        if removed:
            log.info("forgot ended jobs and alert windows", rows=removed)

    def _runner(self, kind: str) -> JobRunner:
        runner = JOB_RUNNERS.get(kind)
        if runner is None:
            raise ConfigError(f"no runner for jobs of kind {kind!r}")
        return runner

    async def _run(self, job: ScheduledJob, taken_at: float) -> None:
        """Run one job and settle it: done, failed, or given back for later."""
        with bound_contextvars(job=job.key, job_kind=job.kind, job_attempt=job.attempts):
            context = JobContext(
                job=job,
                store=self.store,
                aws=self.aws,
                settings=self.settings,
                registry=self.registry,
                owner=self.owner,
                log=log,
                max_attempts=self.max_attempts,
                sleep=self.sleep,
            )
            calls = JobCalls()  # this task's: a call of the job the worker cuts off
            JOB_CALLS.set(calls)
            try:
                runner = self._runner(job.kind)
                async with self._renewing(job, taken_at), asyncio.timeout(self.timeout):
                    ran = await runner(job, context)
            except LeaseLapsed as exc:
                # Stopped before another replica may take it: never two runs at once.
                log.warning(f"job stopped: {exc}; it runs again on the replica that takes it")
                await self._give_back(job)
                return
            except asyncio.CancelledError:
                # Shutdown past its grace: give the job back at once rather than when the
                # lease expires. Runners leave their effects in a state a rerun can judge.
                ended, _note = await self._cut_off(job, calls, "cut off at shutdown")
                if not ended:
                    await self._give_back(job)
                raise
            except Exception as exc:  # noqa: BLE001 - every job error is settled, none escapes
                ended, note = await self._cut_off(job, calls, "cut off at handler_timeout")
                if not ended:
                    # A call cut off: its note is the job's error, so a resend is on record.
                    await self._settle_failure(job, exc if note is None else TransientError(note))
                return
            self.jobs_run += 1
            if ran is not False:  # False: nothing to do (an Invoke an earlier run made)
                self._count(job, "invoked")
            await self.store.finish_job(job.key)
            log.info("job done")

    async def _cut_off(
        self, job: ScheduledJob, calls: JobCalls, cause: str
    ) -> tuple[bool, str | None]:
        """Settle by its ``in_doubt`` policy the call of ``job`` the worker just cut off (a
        digest's), as the dispatcher does a handler's: whether that ended the job, and the
        in-doubt note (None when no call was under way).

        Resend: the job runs again. Skip: the call counts as done: one call of several (an
        SMS of a list) records its own step, and the job runs again for the rest; a call that
        is the whole job ends it, done, the note its ``last_error``.
        """
        mark, calls.sending = calls.sending, None
        if mark is None:
            return False, None
        note = in_doubt_note(mark.what, cause, skip=mark.skip)
        log.warning(note)
        if not mark.skip:
            return False, note
        try:
            if mark.step is not None:
                await self.store.complete_handler(job.key, mark.step, self.owner, detail=note)
                return False, note
            return await self.store.finish_job(job.key, error=note), note
        except Exception as exc:  # noqa: BLE001 - the lease lapses; the job runs again
            log.warning("could not record a call in doubt as done", error=describe_error(exc))
            return False, note

    async def _give_back(self, job: ScheduledJob) -> None:
        """Give ``job`` back to run again now, if this worker still holds it and can."""
        with contextlib.suppress(Exception):
            await self.store.retry_job(job.key, self.owner, due_at=utcnow())

    def _renewing(self, job: ScheduledJob, taken_at: float) -> AbstractAsyncContextManager[None]:
        """Renew this worker's lease on ``job`` every ``claim_renew_interval`` while it runs,
        and stop the job when the lease ends unrenewed (taken at ``taken_at``, loop time)."""

        async def renew() -> bool:
            return await self.store.renew_job(job.key, self.owner, lease=self.lease)

        interval = self.settings.claim_renew_interval
        return renewing(
            renew,
            interval,
            self.renewals,
            what="a running job's lease",
            lease=self.lease,
            taken_at=taken_at,
            job=job.key,
        )

    def _count(self, job: ScheduledJob, outcome: str) -> None:
        if self.metrics is not None and job.kind == "replay":
            self.metrics.replays.labels(outcome).inc()

    async def _settle_failure(self, job: ScheduledJob, exc: Exception) -> None:
        error = describe_error(exc)[:MAX_ERROR]
        kind = "permanent" if isinstance(exc, ConfigError) else classify(exc)
        # A job given up on has failed as surely as a permanent error's: replays_total says so.
        final = kind == "permanent" or job.attempts >= self.max_attempts
        self._count(job, "failed" if final else "retry")
        if kind == "permanent":
            log.warning("job failed permanently", error=error)
            await self.store.finish_job(job.key, failed=True, error=error)
            return
        if job.attempts >= self.max_attempts:
            log.error("job failed; giving up", error=error, attempts=job.attempts)
            await self.store.finish_job(
                job.key, failed=True, error=f"gave up after {job.attempts} tries: {error}"
            )
            return
        if kind == "unknown":
            log.error("job raised an unexpected error", error=error, exc_info=exc)
        delay = retry_delay(
            job.attempts, self.settings.retry_base, self.settings.retry_max, asked_wait(exc)
        )
        due_at = utcnow() + dt.timedelta(seconds=delay)
        log.warning("job will run again", error=error, delay=round(delay, 1))
        await self.store.retry_job(job.key, self.owner, due_at=due_at, error=error)
