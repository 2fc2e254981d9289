"""``async with`` for the package's long-lived objects: opened on entry, closed on exit."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from typing import Self


class Lifetime(abc.ABC):
    """Use as ``async with thing:``; ``open()`` on entry, ``close()`` on exit, whatever happened."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Acquire what the object holds (connections, servers, tasks)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what :meth:`open` acquired."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def until_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``: whether it is set.

    ``asyncio.timeout``, not ``wait_for``: no task of its own per wait, so none is left never
    started (a "coroutine 'Event.wait' was never awaited" warning) when its loop closes first.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
