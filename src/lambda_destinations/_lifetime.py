"""``async with`` for the package's long-lived objects: opened on entry, closed on exit."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Self, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


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


def to_its_end(
    work: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """``work`` (a redrive's batch: its send and delete; a prune's batch and its count) run
    to its end even when the run is interrupted meanwhile (Ctrl-C cancels its tasks): cut in
    the middle, the send's answer would be lost (the batch in doubt, hidden in the DLQ for the
    visibility timeout), or the batch now in the target would stay in the DLQ as well, for the
    next run to send again; a prune's deleted rows would go uncounted. The interruption goes
    on once it is done."""

    @functools.wraps(work)
    async def whole(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        task = asyncio.ensure_future(work(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: the interruption is what goes on
            raise

    return whole
