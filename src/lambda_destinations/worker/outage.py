"""One queue's receives failing, shared by all its pollers: the log lines of an SQS outage, what
/readyz reports, and the wake-up of pollers backing off once SQS answers again.

An outage of a queue begins with the first receive that fails, whichever poller sent it, and
ends with the first that succeeds of those sent after it began: a long poll sent before (another
poller's, open for up to wait_time) answers of SQS as it was then, and credentials refused or a
queue deleted since do not fail it. The log says it once per queue, not once per poller:

- ``cannot receive from Q; retrying in 1.0s`` (a warning, with the error and the fix) when it
  begins;
- ``still cannot receive from Q (N failures in Ms); retrying in 30.0s`` (a warning) at most
  every REMINDER_EVERY seconds while it lasts, the first one that long after the beginning;
- ``receiving again`` (with ``after_failures`` and ``outage_seconds``) when it ends;
- ``stopping; still cannot receive from Q (N failures in Ms)`` (a warning) when the worker
  stops during it, or the pending ``receiving again`` of a flapping one (below), so that every
  outage the log began it also closes.

An endpoint that flaps is one outage, not one a flap: a receive that fails again within
REMINDER_EVERY of the end continues the outage (/readyz names the queue again at once), with no
new warning. Its reminders go on (with ``brief_recoveries`` in the line: the ends that did not
hold), and its ends are not said again until one holds: the first receive that succeeds
REMINDER_EVERY after the last end says ``receiving again`` for the whole outage, from its first
failure to that end, with ``brief_recoveries``.

Each poller keeps its own backoff (and failure count, for the delay), so an endpoint still away
sees the pollers one by one, never all at once. A success wakes the queue's other pollers out of
their backoff: the queue answers, they receive now rather than sleep out up to RECONNECT_MAX.
A failure wakes no one.
"""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger("lambda_destinations.worker")

# Seconds: at most one "still cannot receive" line per queue this often; and how long a queue
# must answer after an outage before a failure begins another one, not the same one again.
REMINDER_EVERY = 30.0


class QueueOutage:
    """The failing receives of one queue (see the module's docstring)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.began: float | None = None  # loop time of the outage's first failure; None: none
        self.failures = 0  # failed receives of the outage, every poller's
        self.brief_recoveries = 0  # ends of the outage that did not hold
        self.error: BaseException | None = None  # the last failed receive's (the worker sets it)
        self._failing_since = 0.0  # loop time the receives last began to fail
        # Loop time the outage last ended (None: failing); kept until it holds REMINDER_EVERY.
        self._ended: float | None = None
        self._reminder_at = 0.0  # loop time from which the next reminder may be logged
        self._back = asyncio.Event()  # set when the outage ends: pollers backing off wake

    @property
    def failing(self) -> bool:
        """True from a failed receive until one succeeds (/readyz is 503 meanwhile)."""
        return self.began is not None and self._ended is None

    @property
    def failing_since(self) -> float | None:
        """Loop time the receives last began to fail, while they fail: a flapping outage's
        latest failing, not its first (None while they succeed)."""
        return self._failing_since if self.failing else None

    def failed(self, now: float, retry_in: float, **fields: str) -> None:
        """Count a failed receive; log it if it begins the outage or a reminder is due.

        ``fields`` (the error, the fix, the endpoint) go on the line as they are.
        """
        self._settle(now)
        if not self.failing:
            self._failing_since = now
        if self.began is None:
            self.began, self.failures, self.brief_recoveries = now, 1, 0
            self._back = asyncio.Event()
            self._reminder_at = now + REMINDER_EVERY
            message = f"cannot receive from {self.queue}; retrying in {retry_in:.1f}s"
            log.warning(message, queue=self.queue, **fields)
            return
        self.failures += 1
        if self._ended is not None:  # failing again soon after its end: the same outage
            self._ended = None
            self.brief_recoveries += 1
            self._back = asyncio.Event()
        if now < self._reminder_at:
            return
        self._reminder_at = now + REMINDER_EVERY
        self._say_failing(f"still cannot receive from {self.queue}", now, retry_in, **fields)

    def stopped(self, now: float) -> None:
        """Say what the log has not yet said of the outage as the worker stops: that the queue
        still cannot receive (its failures and length so far), or the end of a flapping one
        that had not held REMINDER_EVERY yet. Nothing once its end was said."""
        self._settle(now)
        if self.began is None:
            return
        if self.failing:
            self._say_failing(f"stopping; still cannot receive from {self.queue}", now)
        elif self.brief_recoveries:
            assert self._ended is not None
            self._say_back(self._ended - self.began)
        self.began = self._ended = None

    def _say_failing(
        self, words: str, now: float, retry_in: float | None = None, **fields: str
    ) -> None:
        assert self.began is not None
        seconds = round(now - self.began, 1)
        flaps = f", {self.brief_recoveries} brief recoveries" if self.brief_recoveries else ""
        retry = "" if retry_in is None else f"; retrying in {retry_in:.1f}s"
        log.warning(
            f"{words} ({self.failures} failures in {seconds:.0f}s{flaps}){retry}",
            queue=self.queue,
            failures=self.failures,
            outage_seconds=seconds,
            brief_recoveries=self.brief_recoveries,
            **fields,
        )

    def succeeded(self, now: float, *, sent: float | None = None) -> None:
        """End the outage, if there is one, and wake the pollers backing off; say so at its
        first end, or once an end has held (:meth:`_settle`). A receive ``sent`` before the
        receives began to fail ends nothing: it says nothing of SQS now."""
        self._settle(now)
        if not self.failing or (sent is not None and sent < self._failing_since):
            return
        assert self.began is not None
        self._ended = now
        self._back.set()
        if not self.brief_recoveries:
            self._say_back(now - self.began)

    def _settle(self, now: float) -> None:
        """Forget an outage whose end has held REMINDER_EVERY; one that flapped says it now."""
        if self.began is None or self._ended is None or now - self._ended < REMINDER_EVERY:
            return
        if self.brief_recoveries:
            self._say_back(self._ended - self.began)
        self.began = self._ended = None

    def _say_back(self, seconds: float) -> None:
        log.info(
            "receiving again",
            queue=self.queue,
            after_failures=self.failures,
            outage_seconds=round(seconds, 1),
            brief_recoveries=self.brief_recoveries,
        )

    async def back_off(self, delay: float, stopping: asyncio.Event) -> None:
        """Sleep ``delay`` seconds; less if a receive of the queue succeeds meanwhile (the
        outage ends) or the worker stops."""
        waits = [
            asyncio.ensure_future(self._back.wait()),
            asyncio.ensure_future(stopping.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
