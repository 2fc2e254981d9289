"""A rate limiter for operator commands: at most ``rate`` operations per second, evenly spaced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """``await limiter.acquire(n)`` before doing ``n`` operations; ``rate`` None or 0: no limit.

    The schedule is kept as "the earliest time the next operation may start", advanced before
    sleeping, so concurrent callers share the rate without a lock and a burst never exceeds it.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate or None
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def acquire(self, n: int = 1) -> None:
        if self.rate is None or n <= 0:
            return
        now = self._clock()
        start = max(now, self._next)
        self._next = start + n / self.rate
        if start > now:
            await self._sleep(start - now)
