"""Long actions (bulk replay, bulk ignore, redrive) run as jobs whose progress pages show.

Each job is an asyncio task the board keeps a reference to; its outcome (or the exception that
ended it) is recorded on the job, and the board cancels what still runs when the console stops.
A job may name what it acts on (a DLQ's URL): while it runs, the board starts no other job on
that target (a second redrive of a DLQ would move each message twice).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from lambda_destinations.retrying import first_line
from lambda_destinations.store import utcnow

_KEEP = 200  # finished jobs kept for their pages


@dataclasses.dataclass(slots=True)
class Job:
    """One long action: how far it is and how it ended."""

    id: str
    kind: str
    title: str
    actor: str
    total: int
    done: int = 0
    state: str = "running"  # running | done | failed | cancelled
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    # Per outcome, how many for each reason (a bulk replay's skips: ``already-replayed``, ...).
    reasons: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    # Per outcome and reason, the detail of the first record that ended so (an error's text).
    first_detail: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)
    started_at: Any = dataclasses.field(default_factory=utcnow)
    finished_at: Any = None
    target: str | None = None  # what it acts on, alone (a DLQ's URL)

    def step(
        self, outcome: str, n: int = 1, reason: str | None = None, detail: str | None = None
    ) -> None:
        """``n`` more records ended as ``outcome`` (for ``reason``: ``detail`` is kept for the
        first of them alone)."""
        self.done += n
        self.counts[outcome] = self.counts.get(outcome, 0) + n
        if reason is not None:
            why = self.reasons.setdefault(outcome, {})
            why[reason] = why.get(reason, 0) + n
            if detail is not None:
                self.first_detail.setdefault(outcome, {}).setdefault(reason, detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "actor": self.actor,
            "total": self.total,
            "done": self.done,
            "state": self.state,
            "counts": dict(self.counts),
            "reasons": {outcome: dict(why) for outcome, why in self.reasons.items()},
            "first_detail": {outcome: dict(d) for outcome, d in self.first_detail.items()},
            "errors": list(self.errors[-20:]),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class JobStopped(Exception):
    """An error stopped the job's work midway: the job's own line (the error, what the work had
    done, the way on), shown whole on its page rather than the error's first line alone."""


class JobRunning(Exception):
    """A job on the same target runs already: ``job``."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} ({job.title}) runs on {job.target}")
        self.job = job


class JobBoard:
    """The console's jobs, newest first; every task is tracked and its end recorded."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        return list(reversed(self._jobs.values()))

    def running_on(self, target: str) -> Job | None:
        """The job acting on ``target`` that still runs, if any."""
        for job in self._jobs.values():
            if job.target == target and job.state == "running":
                return job
        return None

    def start(
        self,
        kind: str,
        title: str,
        actor: str,
        total: int,
        work: Callable[[Job], Awaitable[None]],
        *,
        target: str | None = None,
    ) -> Job:
        """Run ``work`` as a new job; with ``target``, only if no job on it runs (else
        :class:`JobRunning`). Checked and started with no await between: requests at once
        cannot both pass."""
        if target is not None and (running := self.running_on(target)) is not None:
            raise JobRunning(running)
        job = Job(secrets.token_hex(8), kind, title, actor, total, target=target)
        self._jobs[job.id] = job
        self._forget_old()
        task = asyncio.create_task(self._run(job, work), name=f"console-job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await work(job)
            job.state = "done"
        except asyncio.CancelledError:
            job.state = "cancelled"
            raise
        except JobStopped as exc:
            job.state = "failed"
            job.errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown on the job page; the console goes on
            job.state = "failed"
            job.errors.append(first_line(exc, limit=500, typed=True))
        finally:
            job.finished_at = utcnow()

    async def cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state != "running"]
        for job_id in finished[: max(0, len(self._jobs) - _KEEP)]:
            del self._jobs[job_id]
