"""``async with`` for the package's long-lived objects: opened on entry, closed on exit."""

from __future__ import annotations

import abc
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
