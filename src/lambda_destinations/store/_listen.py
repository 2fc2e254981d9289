"""Waiting for invocation rows on PostgreSQL: one LISTEN connection per store, no polling.

Migration 4 makes the database NOTIFY the request id (a prefix of it) whenever an invocation
row is inserted, when the inserting transaction commits. A waiter registers its request id here,
makes sure the store LISTENs, reads the row once, and then runs no query until a notification
for its request id (or the loss of the listening connection) wakes it to read the row again.
Every waiter of the process shares the one connection, so a thousand waiters hold one
connection, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from lambda_destinations.store.migrations import NOTIFY_CHANNEL, NOTIFY_PREFIX_CHARS

_TRIGGER_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM pg_trigger "
    "WHERE tgname = 'invocations_notify' AND tgrelid = to_regclass('invocations'))"
)


def announced_as(ident: str) -> set[str]:
    """The notifications that may announce a row of ``ident``, a request id or a store key.

    The trigger announces a row's request id, never its key: a key (``REQUEST_ID:Condition``)
    is announced by the text before one of its colons (each, as a request id may hold one too;
    a wrong one only wakes the waiter to read once more)."""
    cuts = [index for index, char in enumerate(ident) if char == ":"]
    return {ident[:end][:NOTIFY_PREFIX_CHARS] for end in [*cuts, len(ident)]}


class InvocationListener:
    """The store's LISTEN connection and the waiters it wakes, by request id."""

    def __init__(self, engine: Callable[[], AsyncEngine]) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection of _conn
        self._lost: list[AsyncConnection] = []
        self._lock = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def watch(self, request_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when a row of ``request_id`` may have arrived (or the connection
        dropped); call :meth:`listen` before each read, so no notification falls in a gap."""
        event = asyncio.Event()
        payloads = announced_as(request_id)
        for payload in payloads:
            self._waiters.setdefault(payload, set()).add(event)
        try:
            yield event
        finally:
            for payload in payloads:
                waiters = self._waiters.get(payload)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[payload]

    async def listen(self) -> bool:
        """LISTEN on a connection of the store's pool, unless already listening; False, and
        not listening, when the database sends no NOTIFY (not migrated to version 4: a reader
        newer than the store's workers), so that the caller reads the row instead.

        A connection lost while it is being set up is replaced once; a second failure (the
        database is away) is raised."""
        async with self._lock:
            await self._discard_lost()
            if self._conn is not None:
                return True
            try:
                return await self._connect()
            except Exception:  # noqa: BLE001 - one more try on a new connection, below
                await self._discard_lost()
            return await self._connect()

    async def _connect(self) -> bool:
        conn = await self._engine().connect()
        try:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            if not await driver.fetchval(_TRIGGER_EXISTS):
                await conn.close()
                return False
            self._conn, self._driver = conn, driver
            driver.add_termination_listener(self._terminated)
            await driver.add_listener(NOTIFY_CHANNEL, self._notified)
        except BaseException:
            if self._conn is conn:
                self._conn = self._driver = None
            await _discard(conn)
            raise
        return True

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn, self._driver = self._conn, None, None
            if conn is not None:
                self._lost.append(conn)
            await self._discard_lost()

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    def _terminated(self, connection: Any) -> None:
        # Notifications sent while no one listens are lost: wake every waiter to read its row
        # again, after listening on a new connection. (A connection closed earlier may report
        # its end late: only the current one's counts.)
        if connection is not self._driver or self._conn is None:
            return
        self._lost.append(self._conn)
        self._conn = self._driver = None
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _discard_lost(self) -> None:
        lost, self._lost = self._lost, []
        for conn in lost:
            await _discard(conn)


async def _discard(conn: AsyncConnection) -> None:
    """Close a listening connection for good: it must not go back to the pool still LISTENing."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()
