"""The reads of AWS one ``doctor`` run makes, each once, shared by its checks and its handlers'.

Many destinations name one topic or bucket (fifty functions, one failure topic), many queues one
DLQ, many handlers one SES sender or the account's SMS settings, and every replay handler needs
the functions doctor has already listed; SNS throttles ListSubscriptionsByTopic at a low rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class Reads:
    """A run's reads, each made once, by key: what is read, and of what ("" for the account's
    own settings, such as its SMS attributes).

    The first check to need a thing starts its read; every other, at once or later, awaits
    the same answer, or the same error, and says its own row from it.
    """

    def __init__(self) -> None:
        self._started: dict[tuple[str, str], asyncio.Task[Any]] = {}

    async def once(self, key: tuple[str, str], read: Callable[[], Awaitable[T]]) -> T:
        """What ``read`` gave (or raised) for ``key``, read the first time it is asked."""
        task = self._started.get(key)
        if task is None or task.cancelled():
            task = self._started[key] = asyncio.ensure_future(read())
        # One check cancelled leaves the read to the others that await it.
        return cast(T, await asyncio.shield(task))
