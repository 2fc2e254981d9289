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


@contextlib.asynccontextmanager
async def renewing(
    renew: Callable[[], Awaitable[bool]], interval: float, *, what: str, **fields: Any
) -> AsyncIterator[None]:
    """Call ``renew`` every ``interval`` seconds while the body runs; ``what`` (a running
    handler's claim, a running job's lease) names the lease in the warnings."""
    renewal = asyncio.create_task(_renew(renew, interval, what, fields), name=f"renew {what}")
    try:
        yield
    finally:
        renewal.cancel()
        # asyncio.wait, not await: never raises the renewal's cancellation as our own.
        await asyncio.wait({renewal})


async def _renew(
    renew: Callable[[], Awaitable[bool]], interval: float, what: str, fields: dict[str, Any]
) -> None:
    while True:
        # asyncio.sleep, not an injected one: tests of the retry policy shorten those.
        await asyncio.sleep(interval)
        try:
            held = await renew()
        except Exception as exc:  # noqa: BLE001 - the lease still covers the next try
            log.warning(f"could not renew {what}", error=describe_error(exc), **fields)
            continue
        if not held:
            log.warning(f"{what} lapsed and was taken: another worker may run it too", **fields)
            return
