"""An asyncio face for a synchronous SQLAlchemy engine: each call runs in a thread.

The SQLite store's one way of reaching its file. Every statement is SQLAlchemy's, on the
standard library's ``sqlite3`` driver, run by a thread of the store's: writes by its one writer
thread (so one thread owns every write transaction, in the order they were asked for), reads by
a few reader threads (so a long report does not hold up the worker's commits). The connections
offer what the store's queries use of SQLAlchemy's ``AsyncConnection`` (``execute``,
``exec_driver_sql``, ``scalars``, ``run_sync``), so the queries are written once for both
backends; PostgreSQL keeps SQLAlchemy's own asyncio engine on asyncpg.

A call's result is complete when it comes back: its rows were fetched in the thread, and the
loop never touches the driver. A connection is used by one call at a time: a caller interrupted
while its call runs (cancelled, or an exception a signal handler raised in it) waits for that
call to end before the connection is used again (to roll back or to close), and each call and
the close hold the connection's lock in their thread, so no two threads ever use one connection
at once (sqlite3 crashes the process when one closes a connection another is using).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


async def in_thread(
    executor: Executor, work: Callable[[], T], *, interrupt: Callable[[], None] | None = None
) -> T:
    """``work()`` in ``executor``; a caller interrupted meanwhile still waits for it to end.

    Whatever interrupts it: a cancellation, or an exception raised in the coroutine by a signal
    handler (KeyboardInterrupt, a timer's) while the thread works. Had it gone on at once, the
    code after it (a rollback, a close) would use the connection beside the thread still on it.

    The thread hands its outcome to the loop itself (:class:`_Handoff`), rather than through
    ``run_in_executor``'s chained futures and ``asyncio.shield``: a store call costs the loop one
    turn fewer and about 90 thousand instructions less (bench/MEASUREMENTS.md, 7 December).
    ``interrupt``, called (on the loop's thread) when the caller is interrupted, asks a long
    work to end early, so the wait for its end is short.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    handoff = _Handoff(future)
    executor.submit(handoff.run, loop, work)
    try:
        return await future
    except GeneratorExit:
        raise  # the coroutine is being closed, and may not await (the connection's lock holds)
    except BaseException:
        if handoff.future is not None:  # the work goes on in the thread: wait for its end
            if interrupt is not None:
                interrupt()
            handoff.waiting = True
            handoff.future = loop.create_future()
            await _finished(handoff.future)
        raise


class _Handoff:
    """One call of :func:`in_thread`: the future its caller awaits, settled by the thread's
    ``run`` on the loop's thread, where it is then forgotten (None: the work ended)."""

    __slots__ = ("future", "waiting")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future: asyncio.Future[Any] | None = future
        # The caller was interrupted: the future, a new one, says only that the work ended.
        self.waiting = False

    def run(self, loop: asyncio.AbstractEventLoop, work: Callable[[], Any]) -> None:
        """In the thread: ``work()``, its result or exception handed to the loop."""
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, as an executor would
            outcome: tuple[bool, Any] = (False, exc)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._settle, *outcome)

    def _settle(self, ok: bool, value: Any) -> None:
        future, self.future = self.future, None
        if future is None or future.done():  # cancelled: its caller waits on a new one
            return
        if self.waiting:
            future.set_result(None)
        elif ok:
            future.set_result(value)
        else:
            future.set_exception(value)


async def _finished(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, whatever it ends with, however often this is cancelled."""
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])


def _complete(result: sa.CursorResult[Any]) -> sa.Result[Any]:
    """``result`` with its rows fetched, so that nothing of it reads the driver later."""
    if not result.returns_rows:
        return result  # no rows; its rowcount was kept at execution (preserve_rowcount)
    return result.freeze()()


class ThreadConnection:
    """One connection of a :class:`ThreadEngine`, each call run by ``executor``."""

    def __init__(self, conn: sa.Connection, executor: Executor) -> None:
        self.sync_connection = conn
        self._executor = executor
        # Held by the thread running a call on the connection: should a caller go on before
        # its call ended (an interruption in_thread cannot see, between the submission and the
        # await), the next call, the close included, waits here in its thread.
        self._lock = threading.Lock()

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_connection.dialect

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(connection, *args, **kwargs)`` in the thread, on the synchronous connection."""
        return await self.call(functools.partial(fn, self.sync_connection, *args, **kwargs))

    async def call(self, work: Callable[[], T]) -> T:
        """``work()`` in the connection's thread, holding the connection's lock."""

        def locked() -> T:
            with self._lock:
                return work()

        return await in_thread(self._executor, locked)

    async def execute(self, statement: Any, parameters: Any = None) -> sa.Result[Any]:
        return await self.run_sync(lambda conn: _complete(conn.execute(statement, parameters)))

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> sa.Result[Any]:
        return await self.run_sync(
            lambda conn: _complete(conn.exec_driver_sql(statement, parameters))
        )

    async def scalars(self, statement: Any, parameters: Any = None) -> sa.ScalarResult[Any]:
        return (await self.execute(statement, parameters)).scalars()


class ThreadEngine:
    """A synchronous engine, its writer thread and its reader threads.

    ``connect()`` gives a connection for reads (each statement sees the latest commit: the
    driver begins no transaction before a read); ``begin()`` a transaction on the writer
    thread, committed when the block ends without an error, rolled back when it raises.
    """

    def __init__(
        self, sync_engine: sa.Engine, writer: Executor, readers: Executor, *, connections: int
    ) -> None:
        self.sync_engine = sync_engine
        self.writer = writer
        self.readers = readers
        # At most ``connections`` connections of this face at once, the rest waiting here on
        # the loop: a thread waiting in the pool for a connection that only a later call (a
        # close, queued behind it) would give back would wait forever.
        self._connections = asyncio.Semaphore(connections)
        self._in_use = 0
        self._closed = False

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_engine.dialect

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[ThreadConnection]:
        async with self._connection(self.readers) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[ThreadConnection]:
        async with self._connection(self.writer) as conn:
            transaction = await conn.call(conn.sync_connection.begin)
            try:
                yield conn
            except BaseException:
                await conn.call(transaction.rollback)
                raise
            await conn.call(transaction.commit)

    @contextlib.asynccontextmanager
    async def _connection(self, executor: Executor) -> AsyncIterator[ThreadConnection]:
        if self._closed:
            raise RuntimeError("the engine is closed")
        async with self._connections:
            self._in_use += 1
            try:
                sync_conn = await in_thread(executor, self.sync_engine.connect)
                conn = ThreadConnection(sync_conn, executor)
                try:
                    yield conn
                finally:
                    await conn.call(conn.sync_connection.close)
            finally:
                self._in_use -= 1
                if self._closed and not self._in_use:
                    self._stop_threads()

    async def dispose(self) -> None:
        """Close the pool's idle connections (as SQLAlchemy's engines do)."""
        await in_thread(self.writer, self.sync_engine.dispose)

    async def close(self) -> None:
        """Dispose of the pool, and let the threads go once the connections still in use (a
        read that outlived the store, say) are given back; no new one is given out."""
        self._closed = True
        await self.dispose()
        if not self._in_use:
            self._stop_threads()

    def _stop_threads(self) -> None:
        self.writer.shutdown(wait=False)
        self.readers.shutdown(wait=False)
