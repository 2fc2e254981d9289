"""Batched SQS calls: deletes and visibility changes gathered ten at a time per queue.

Each submitted entry gets a future that is resolved once its batch call has answered: True
when SQS accepted the entry, False when SQS refused it (an expired receipt handle, typically:
the message will come back and idempotency absorbs it). A batch whose call fails with a
transient error is tried again a few times; then its entries resolve False, never raise.

While SQS is away, a queue's batches that fail are one warning (with the error and its fix)
when they begin to, a reminder at most every REMINDER_EVERY seconds, and one line when a batch
call is answered again (``failed_batches``, ``failed_entries``, ``outage_seconds``): messages
ending one by one go out in batches of one, and a warning each was a warning a message.

At shutdown, :meth:`flush` takes a deadline: no retry waits past it, and a call SQS has not
answered by then is abandoned (its entries resolve False). ``confirmed`` counts the entries SQS
accepted, so the worker reports only what SQS confirmed.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from lambda_destinations.retrying import aws_fix, backoff_delay, describe_error, is_transient
from lambda_destinations.worker.outage import REMINDER_EVERY
from lambda_destinations.worker.queues import is_missing_queue

MAX_BATCH = 10  # SQS's limit for every *Batch call

log = structlog.get_logger("lambda_destinations.worker")


SendBatch = Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any]]]
# Told of SQS refusing an entry, with the batch response's item (Code, Message, SenderFault).
Refused = Callable[[dict[str, Any]], None]


@dataclasses.dataclass(slots=True)
class _Pending:
    entry: dict[str, Any]
    done: asyncio.Future[bool]
    refused: Refused | None = None
    answered: Callable[[bool], None] | None = None


@dataclasses.dataclass(slots=True)
class _Failing:
    """A queue's batch calls failing: since when (loop time), how many, the next reminder."""

    since: float
    reminder_at: float
    batches: int = 0
    entries: int = 0


class BatchSender:
    """Gathers entries per queue URL and sends them with one batch call per ten.

    ``send(queue_url, entries)`` makes the call (entries carry an ``Id``); its response has the
    ``Failed`` list of SQS batch responses. A batch goes out when ten entries wait or
    ``max_delay`` seconds after the first one arrived, whichever comes first.
    """

    def __init__(
        self,
        name: str,
        send: SendBatch,
        *,
        max_delay: float = 0.02,
        attempts: int = 4,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self._send = send
        self._max_delay = max_delay
        self._attempts = attempts
        self._sleep = sleep
        self._waiting: dict[str, list[_Pending]] = {}
        # queue URL -> the timer that sends its partial batch (a plain callback: no task)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._deadline: float | None = None  # loop time; no retry waits past it
        self._sending = 0  # entries whose call has not been answered yet
        self.confirmed = 0  # entries SQS accepted
        self.refused = 0  # entries SQS refused, or whose call failed or was abandoned
        self._failing: dict[str, _Failing] = {}  # queue URL -> its batch calls failing

    def submit(
        self,
        queue_url: str,
        entry: dict[str, Any],
        *,
        refused: Refused | None = None,
        answered: Callable[[bool], None] | None = None,
    ) -> asyncio.Future[bool]:
        """Queue ``entry`` (without ``Id``) for ``queue_url``; the future says if it was taken.
        ``refused``, when given, says SQS's refusal of the entry in place of the warning;
        ``answered`` is called with what the future holds as it is resolved (before its
        callbacks run: counts a flush's caller reads once it returns)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(queue_url, [])
        waiting.append(_Pending(entry, future, refused, answered))
        if len(waiting) >= MAX_BATCH:
            self._dispatch(queue_url)
        elif queue_url not in self._timers:
            self._timers[queue_url] = asyncio.get_running_loop().call_later(
                self._max_delay, self._after_delay, queue_url, context=contextvars.Context()
            )
        return future

    @property
    def unanswered(self) -> int:
        """Entries submitted and not answered yet (waiting or in a call under way)."""
        return self._sending + sum(len(waiting) for waiting in self._waiting.values())

    async def flush(self, deadline: float | None = None) -> int:
        """Send everything waiting and wait for every call under way, until ``deadline``.

        ``deadline`` is in loop time; calls not answered by then are cancelled and their
        entries resolve False. Returns how many entries were left unanswered.
        """
        if deadline is not None:
            self._deadline = deadline
        for queue_url in list(self._waiting):
            self._dispatch(queue_url)
        left = 0
        try:
            async with asyncio.timeout_at(deadline):
                while self._inflight:
                    await asyncio.gather(*list(self._inflight), return_exceptions=True)
        except TimeoutError:
            left = self.unanswered
            for task in list(self._inflight):
                task.cancel()
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self._close_failing()
        return left

    def _close_failing(self) -> None:
        """The last flush: say of each queue whose batches still fail what the log began."""
        now = asyncio.get_running_loop().time()
        for queue_url, failing in self._failing.items():
            log.warning(
                f"stopping; {self.name} batches still failing ({failing.batches} batches in "
                f"{now - failing.since:.0f}s)",
                queue=queue_url,
                failed_batches=failing.batches,
                failed_entries=failing.entries,
                outage_seconds=round(now - failing.since, 1),
            )
        self._failing.clear()

    def _after_delay(self, queue_url: str) -> None:
        self._timers.pop(queue_url, None)
        self._dispatch(queue_url)

    def _dispatch(self, queue_url: str) -> None:
        timer = self._timers.pop(queue_url, None)
        if timer is not None:
            timer.cancel()
        waiting = self._waiting.pop(queue_url, [])
        for start in range(0, len(waiting), MAX_BATCH):
            self._track(self._call(queue_url, waiting[start : start + MAX_BATCH]))

    def _track(self, coro: Any) -> None:
        # Keep a reference to every task so none is collected mid-flight, and surface errors.
        # A context of its own: the batch's lines are no one message's (the log fields bound
        # for the message whose entry filled or began the batch).
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, context=contextvars.Context()
        )
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("batch task failed", batch=self.name, error=repr(exc))

    async def _call(self, queue_url: str, batch: list[_Pending]) -> None:
        entries = [{**pending.entry, "Id": str(index)} for index, pending in enumerate(batch)]
        self._sending += len(batch)
        try:
            for attempt in range(1, self._attempts + 1):
                try:
                    response = await self._send(queue_url, entries)
                    break
                except Exception as exc:  # noqa: BLE001 - a failed batch must never raise
                    delay = backoff_delay(attempt, 0.2, 5.0)
                    if not is_transient(exc) or attempt == self._attempts or self._past(delay):
                        self._failed(queue_url, exc, len(entries))
                        self._resolve(batch, set(range(len(batch))))
                        return
                    await self._sleep(delay)
            self._answered(queue_url)
            failed = {int(item["Id"]) for item in response.get("Failed", [])}
            for item in response.get("Failed", []):
                if (told := batch[int(item["Id"])].refused) is not None:
                    told(item)
                    continue
                log.warning(
                    f"{self.name} refused by SQS",
                    queue=queue_url,
                    code=item.get("Code"),
                    reason=item.get("Message"),
                )
            self._resolve(batch, failed)
        except asyncio.CancelledError:
            self._resolve(batch, set(range(len(batch))))
            raise
        finally:
            self._sending -= len(batch)

    def _failed(self, queue_url: str, exc: BaseException, entries: int) -> None:
        """Count a batch call that failed; say so if it begins the queue's failing, or a
        reminder is due."""
        now = asyncio.get_running_loop().time()
        failing = self._failing.get(queue_url)
        if failing is None:
            failing = self._failing[queue_url] = _Failing(now, now + REMINDER_EVERY)
            words = f"{self.name} batch failed"
        elif now >= failing.reminder_at:
            failing.reminder_at = now + REMINDER_EVERY
            words = (
                f"{self.name} batches still failing ({failing.batches + 1} batches in "
                f"{now - failing.since:.0f}s)"
            )
        else:
            words = ""
        failing.batches += 1
        failing.entries += entries
        if words:
            log.warning(
                f"{words}; {_what_becomes(exc)}",
                queue=queue_url,
                error=describe_error(exc),
                entries=entries,
                **({"fix": fix} if (fix := aws_fix(exc)) else {}),
            )

    def _answered(self, queue_url: str) -> None:
        """A batch call of the queue was answered: the end of its failing, if it was."""
        failing = self._failing.pop(queue_url, None)
        if failing is None:
            return
        log.info(
            f"{self.name} batches answered again",
            queue=queue_url,
            failed_batches=failing.batches,
            failed_entries=failing.entries,
            outage_seconds=round(asyncio.get_running_loop().time() - failing.since, 1),
        )

    def _past(self, delay: float) -> bool:
        """Would waiting ``delay`` seconds end past the shutdown deadline?"""
        if self._deadline is None:
            return False
        return asyncio.get_running_loop().time() + delay >= self._deadline

    def _resolve(self, batch: list[_Pending], failed: set[int]) -> None:
        for index, pending in enumerate(batch):
            if not pending.done.done():
                taken = index not in failed
                pending.done.set_result(taken)
                if taken:
                    self.confirmed += 1
                else:
                    self.refused += 1
                if pending.answered is not None:
                    pending.answered(taken)


def _what_becomes(exc: BaseException) -> str:
    """What becomes of the messages of a batch that failed: delivered again, unless their
    queue was deleted (it said they would be then too)."""
    if is_missing_queue(exc):
        return "the queue was deleted, and its messages with it"
    return "the messages will be delivered again"
