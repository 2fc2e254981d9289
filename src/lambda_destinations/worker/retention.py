"""Retention: delete what the settings no longer keep, in small batches, and give the space back.

The worker's scheduler runs :func:`run_retention_job` every ``prune_interval`` seconds, on one
replica at a time (the job is taken with a lease like every scheduled job); ``lambda-destinations
prune`` runs :func:`prune_store` by hand. Both delete in transactions of ``prune_batch`` rows and
yield to the worker's saves between two of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lambda_destinations._lifetime import to_its_end
from lambda_destinations.store import RECLAIM_STEP, PruneKind, Store, utcnow

if TYPE_CHECKING:
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.jobs import JobContext
    from lambda_destinations.store import ScheduledJob

# A job runs at most this long (and at most half its timeout); what is left waits for the next.
JOB_BUDGET = 120.0


def retention_days(settings: Settings) -> dict[PruneKind, float]:
    """Days each kind is kept; a kind kept forever (0) is left out."""
    days = {
        PruneKind.SUCCESSES: settings.keep_successes_days,
        PruneKind.FAILURES: settings.keep_failures_days,
        PruneKind.OPEN_FAILURES: settings.keep_open_failures_days,
        PruneKind.QUARANTINE: settings.keep_quarantine_days,
        PruneKind.REPLAYS: settings.keep_replays_days,
        PruneKind.UNSTORED: settings.keep_successes_days,
    }
    return {kind: value for kind, value in days.items() if value > 0}


def cutoffs(
    days: Mapping[PruneKind, float], now: dt.datetime | None = None
) -> dict[PruneKind, dt.datetime]:
    """The time before which each kind goes."""
    now = now or utcnow()
    return {kind: now - dt.timedelta(days=value) for kind, value in days.items()}


@dataclasses.dataclass(slots=True)
class PruneReport:
    """What one pruning did (or, for a dry run, would do)."""

    rows: dict[PruneKind, int] = dataclasses.field(default_factory=dict)
    bytes_reclaimed: int = 0  # free pages given back to the file system (SQLite)
    complete: bool = True  # False when the time budget ran out first
    dry_run: bool = False


async def prune_store(
    store: Store,
    before: Mapping[PruneKind, dt.datetime],
    *,
    batch: int = 500,
    dry_run: bool = False,
    budget: float | None = None,
    report: PruneReport | None = None,
) -> PruneReport:
    """Delete every kind's rows older than its cutoff, ``batch`` rows per transaction.

    Between two batches the event loop runs other work (the worker's saves wait for the write
    lock at most one batch). With ``budget`` (seconds), stops when it is spent. ``report``,
    when given, is filled as the batches go: cut short (Ctrl-C), it counts what was deleted,
    the batch under way finished first.
    """
    report = report or PruneReport()
    report.dry_run = dry_run
    if dry_run:
        for kind, cutoff in before.items():
            report.rows[kind] = await store.count_prunable(kind, cutoff)
        return report
    deadline = None if budget is None else time.monotonic() + budget
    report.rows = dict.fromkeys(before, 0)
    # The attempts before the open failures: an attempt stays with its failure while it is not
    # resolved, and the failure pruned first would free them in this run, which a dry run (that
    # deletes no failure) cannot count; they go in the next pruning.
    for kind, cutoff in sorted(before.items(), key=lambda item: item[0] != PruneKind.REPLAYS):
        while True:
            if deadline is not None and time.monotonic() > deadline:
                report.complete = False
                return report
            deleted = await _prune_batch(store, report, kind, cutoff, batch)
            await asyncio.sleep(0)  # let waiting saves take the write lock
            if deleted < batch:
                break
    if sum(report.rows.values()):
        report.bytes_reclaimed = await _reclaim(store, deadline)
    return report


@to_its_end
async def _prune_batch(
    store: Store, report: PruneReport, kind: PruneKind, cutoff: dt.datetime, batch: int
) -> int:
    """One batch of ``kind``, counted in ``report``: to its end, so that the count is true."""
    deleted = await store.prune(kind, cutoff, limit=batch)
    report.rows[kind] += deleted
    return deleted


async def _reclaim(store: Store, deadline: float | None) -> int:
    """Give freed pages back in steps of a few MB, each a short hold of the write lock; the
    bytes given back."""
    total = 0
    while deadline is None or time.monotonic() < deadline:
        freed = await store.reclaim_space(max_bytes=RECLAIM_STEP)
        total += freed
        if freed < RECLAIM_STEP:
            break
        await asyncio.sleep(0)
    return total


async def run_retention_job(job: ScheduledJob, context: JobContext) -> None:
    """The scheduler's ``retention`` job: prune by the worker's settings, within a budget."""
    settings = context.settings
    budget = min(JOB_BUDGET, settings.handler_timeout / 2)
    report = await prune_store(
        context.store,
        cutoffs(retention_days(settings)),
        batch=settings.prune_batch,
        budget=budget,
    )
    deleted = {kind.value: n for kind, n in report.rows.items() if n}
    if deleted or not report.complete:
        context.log.info(
            "pruned what retention no longer keeps",
            deleted=deleted,
            bytes_reclaimed=report.bytes_reclaimed,
            complete=report.complete,
        )
