"""Waiting for invocation rows where the database announces none: one read for every waiter.

SQLite has no NOTIFY (nor has PostgreSQL behind a transaction-mode pooler, or without
migration 4's trigger), so a waiter must read. Each reading its own row a few times a second
made 50 waiters 250 queries a second (the console holds up to 100 waits). Here the waiters of a
store register their ids, and one task asks in one query which of them have a row (every 20 ms,
backing off to every 200 ms, and from 20 ms again when a waiter joins); a waiter reads its own
row only when that query finds it, as a NOTIFY would wake it (see :mod:`._listen`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from lambda_destinations._lifetime import until_set

# How often the waited ids are looked for: the first time again after 20 ms, then doubling up
# to 200 ms, so a row is seen within about 0.2 s of its commit.
POLL_FIRST = 0.02
POLL_MAX = 0.2

# Which of the ids given have a row: the ids (keys or request ids) found.
Arrived = Callable[[Collection[str]], Awaitable[Collection[str]]]


class RowPoll:
    """The waiters of one store and the task that looks for their rows, by id."""

    def __init__(self, arrived: Arrived) -> None:
        self._arrived = arrived
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._joined: asyncio.Event | None = None  # the task's, set when a waiter joins

    @contextlib.asynccontextmanager
    async def watch(self, ident: str) -> AsyncIterator[asyncio.Event]:
        """An event set when a row of ``ident`` may have arrived (or the look failed: the
        waiter's own read then raises the store's error); the task runs while anyone waits."""
        event = asyncio.Event()
        self._waiters.setdefault(ident, set()).add(event)
        if self._task is None or self._task.done():
            self._joined = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._joined), name="row-poll")
        elif self._joined is not None:
            self._joined.set()  # look soon for the newcomer too
        try:
            yield event
        finally:
            self._leave(ident, event)

    def _leave(self, ident: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(ident)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[ident]
        if not self._waiters and self._task is not None:
            self._task.cancel()  # nobody waits: no task is left behind to read for nobody
            self._task = self._joined = None

    async def _run(self, joined: asyncio.Event) -> None:
        delay = POLL_FIRST
        while self._waiters:
            await until_set(joined, delay)
            delay = POLL_FIRST if joined.is_set() else min(delay * 2, POLL_MAX)
            joined.clear()
            try:
                found = await self._arrived(list(self._waiters))
            except Exception:  # noqa: BLE001 - each waiter reads, and meets the error itself
                found = list(self._waiters)
            for ident in found:
                for event in self._waiters.get(ident, ()):
                    event.set()
