"""Keeping a lease in the store alive while the work it guards runs.

A running handler's claim and a running scheduled job are both leases: short, so that the
work of a worker that died is taken up by another within one lease, and renewed by the worker
while the work goes on, so that it is never taken from a live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from lambda_destinations.retrying import describe_error

log = structlog.get_logger("lambda_destinations.worker")


class Renewals:
    """The renewals of one worker's leases, every lease's: a store that stops answering fails
    each running handler's and job's renewal every interval, which said one warning each, 28 in
    1.5 s from four claims renewed every 0.2 s. The first failed renewal is told (a warning),
    the others are counted until one succeeds, which says ``renewing leases again``."""

    def __init__(self) -> None:
        self.failures = 0  # renewals failed since the last that succeeded

    def failed(self, what: str, exc: Exception, fields: dict[str, Any]) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning(f"could not renew {what}", error=describe_error(exc), **fields)

    def succeeded(self) -> None:
        if self.failures:
            log.info("renewing leases again", after_failures=self.failures)
            self.failures = 0


class LeaseLapsed(Exception):
    """The work was stopped: its lease ended unrenewed, and another worker may now take it."""


@contextlib.asynccontextmanager
async def renewing(
    renew: Callable[[], Awaitable[bool]],
    interval: float,
    renewals: Renewals,
    *,
    what: str,
    lease: float | None = None,
    taken_at: float | None = None,
    **fields: Any,
) -> AsyncIterator[None]:
    """Call ``renew`` every ``interval`` seconds while the body runs; ``what`` (a running
    handler's claim, a running job's lease) names the lease in the warnings, ``renewals`` tells
    the failures of the worker's renewals once.

    With ``lease`` (its seconds), the body is stopped, raising :class:`LeaseLapsed`, when the
    lease ends unrenewed (the store could not be reached), counted from ``taken_at`` (the
    loop's time when it was taken, or now) and from the start of each renewal that held, or
    when a renewal finds it taken: before another worker can take the work, not beside it.
    """
    loop = asyncio.get_running_loop()
    deadline = asyncio.timeout(None)
    try:
        async with deadline:
            if lease is not None:
                deadline.reschedule((loop.time() if taken_at is None else taken_at) + lease)
            stop = (deadline if lease is not None else None, lease or 0.0)
            renewal = asyncio.create_task(
                _renew(renew, interval, renewals, what, fields, stop), name=f"renew {what}"
            )
            try:
                yield
            finally:
                renewal.cancel()
                # asyncio.wait, not await: never raises the renewal's cancellation as our own.
                await asyncio.wait({renewal})
    except TimeoutError:
        if lease is not None and deadline.expired():
            raise LeaseLapsed(
                f"{what} was not renewed before it ended, or was taken by another worker"
            ) from None
        raise


async def _renew(
    renew: Callable[[], Awaitable[bool]],
    interval: float,
    renewals: Renewals,
    what: str,
    fields: dict[str, Any],
    stop: tuple[asyncio.Timeout | None, float],
) -> None:
    deadline, lease = stop
    loop = asyncio.get_running_loop()
    while True:
        # asyncio.sleep, not an injected one: tests of the retry policy shorten those.
        await asyncio.sleep(interval)
        started = loop.time()
        try:
            held = await renew()
        except Exception as exc:  # noqa: BLE001 - the lease still covers the next try
            renewals.failed(what, exc, fields)
            continue
        renewals.succeeded()
        if deadline is not None and not deadline.expired():
            # Held: the lease now ends one lease after this renewal began; taken: stop now.
            deadline.reschedule(started + lease if held else loop.time())
        if not held:
            if deadline is None:
                log.warning(f"{what} lapsed and was taken: another worker may run it too", **fields)
            return
