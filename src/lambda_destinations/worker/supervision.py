"""Supervision of the worker's long-lived tasks: none may die silently.

A long-lived task (a poller, the heartbeat, the store watcher, the scheduler, the ops server,
the metrics sampler, or one a deployment adds) is started with :meth:`Supervisor.spawn`. If it
ends with an exception, or returns while it was meant to run until shutdown, its traceback is
logged, ``/healthz`` names it, and the supervisor's ``on_failure`` callback runs (the worker
shuts down as on SIGTERM and the command exits with ``EXIT_TASK_FAILED``), so an orchestrator
restarts the process instead of leaving it idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from lambda_destinations.redact import redact

log = structlog.get_logger("lambda_destinations.worker")

# A task ended by a CancelledError the worker did not send it.
CANCELLED = "CancelledError: cancelled, though the worker did not cancel it"
MAX_REASON = 300  # characters of a failure's text /healthz and the exit line show


class TaskFailed(Exception):
    """A supervised task died; the worker stopped because of it."""

    def __init__(self, failures: dict[str, str]) -> None:
        names = ", ".join(sorted(failures))
        first = next(iter(failures.values()))
        super().__init__(f"the worker's {names} task failed ({first}); restart the worker")
        self.failures = dict(failures)


def _reason(exc: BaseException) -> str:
    """The error's type and the first line of its text, redacted before it is cut."""
    lines = str(exc).strip().splitlines()
    text = redact(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)
    return text[:MAX_REASON]


def _cancellation(task: asyncio.Task[Any]) -> BaseException | None:
    """A cancelled task's CancelledError, whose context holds where it arose (for the log)."""
    try:
        task.result()
    except asyncio.CancelledError as cancelled:
        return cancelled
    return None


class Supervisor:
    """Starts long-lived tasks, keeps a reference to each, and reports any that dies."""

    def __init__(self, on_failure: Callable[[str, BaseException | None], None]) -> None:
        self._on_failure = on_failure
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._closing = False
        # name -> what went wrong, for /healthz and the exit line.
        self.failures: dict[str, str] = {}

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, may_return: bool = False
    ) -> asyncio.Task[Any]:
        """Run ``coro`` as the supervised task ``name`` (unique among live tasks).

        ``may_return``: the task may end normally before shutdown (a poller in ``--once``);
        otherwise returning early counts as a failure too.
        """
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise ValueError(f"a supervised task named {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._ended(name, done, may_return))
        return task

    def task(self, name: str) -> asyncio.Task[Any] | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return list(self._tasks)

    def _ended(self, name: str, task: asyncio.Task[Any], may_return: bool) -> None:
        if task.cancelled():
            # Cancelled by whoever stops it (shutdown, the loop's end: task.cancel() counts in
            # cancelling()), or ended by a CancelledError no one sent it: a future it awaited
            # was cancelled elsewhere. That task died as any other that raises.
            if task.cancelling() or self._closing:
                return
            reason, exc = CANCELLED, _cancellation(task)
        else:
            exc = task.exception()
            if exc is None and (may_return or self._closing):
                return
            # One line, secrets masked: /healthz and the exit line show it (an embedder's task
            # may die with a URL's password or a page of HTML in its text; the traceback is
            # logged).
            reason = _reason(exc) if exc is not None else "ended unexpectedly"
        self.failures[name] = reason
        log.error(
            "a long-lived task failed; stopping the worker", task=name, error=reason, exc_info=exc
        )
        self._on_failure(name, exc)

    async def cancel(self, *names: str, wait: float | None = None) -> None:
        """Cancel the named tasks (every task when none is named); wait at most ``wait`` s."""
        chosen = [self._tasks[n] for n in names if n in self._tasks] if names else None
        if chosen is None:
            self._closing = True
            chosen = list(self._tasks.values())
        for task in chosen:
            task.cancel()
        if chosen:
            await asyncio.wait(chosen, timeout=wait)

    def closing(self) -> None:
        """From now on, tasks that end are ending because of shutdown, not failing."""
        self._closing = True
