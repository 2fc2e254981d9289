"""The SQLite store's threads (_threaded.py): one connection is used by one thread at a time,
however the call on it is interrupted.

A call interrupted by something other than a cancellation (an exception a signal handler raises
in the coroutine: Ctrl-C's KeyboardInterrupt, a timer's, pytest-timeout's) went on in its
thread, while the connection was closed in another: sqlite3 then crashes the process
(SIGSEGV), at once or later."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lambda_destinations.store import Store
from lambda_destinations.store._threaded import ThreadEngine, in_thread


class Interrupted(BaseException):
    """What a signal handler raises in the coroutine running when the signal comes."""


async def interrupted_once(coro: Coroutine[Any, Any, Any], when: threading.Event) -> BaseException:
    """Run ``coro`` as a task would, but throw Interrupted into it at the await it waits at
    once ``when`` is set; return what it ended with."""
    throw: BaseException | None = None
    thrown = False
    while True:
        try:
            waited = coro.send(None) if throw is None else coro.throw(throw)
        except BaseException as ended:  # what it ends with is the result
            return ended
        throw = None
        assert isinstance(waited, asyncio.Future)
        waited._asyncio_future_blocking = False
        if not thrown and await asyncio.to_thread(when.wait, 0.2):
            thrown = True
            throw = Interrupted()
            continue
        await asyncio.wait([waited])


async def seen(happened: list[str], event: str) -> None:
    """Wait up to 5 s for ``event`` to be in ``happened``."""
    for _ in range(100):
        if event in happened:
            return
        await asyncio.sleep(0.05)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.from_url(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        await opened.migrate()
        yield opened


async def test_a_call_interrupted_in_its_thread_keeps_the_connection_until_it_ends(
    store: Store,
) -> None:
    # given: a read on one of the store's reader threads, busy in the driver until released
    engine = store.engine
    assert isinstance(engine, ThreadEngine)
    happened: list[str] = []
    sa.event.listen(engine.sync_engine, "checkin", lambda *_: happened.append("closed"))
    busy, release = threading.Event(), threading.Event()

    def report(conn: sa.Connection) -> None:
        busy.set()
        release.wait(10)
        conn.exec_driver_sql("SELECT 1").all()
        happened.append("read ended")

    async def read() -> None:
        async with engine.connect() as conn:
            await conn.run_sync(report)

    # when: the coroutine is interrupted while its thread works, and the work ends later
    asyncio.get_running_loop().call_later(0.5, release.set)
    ended = await interrupted_once(read(), busy)

    # then: the interruption reached the caller only once the work had ended, and the
    # connection was closed after the read, not beside it in another thread
    assert isinstance(ended, Interrupted)
    release.set()
    await seen(happened, "read ended")
    assert happened == ["read ended", "closed"]


async def test_a_commit_whose_coroutine_is_closed_keeps_the_connection_until_it_ends(
    store: Store,
) -> None:
    # given: a save's commit in the writer thread, busy until released
    file = store._file
    assert file is not None
    conn = store._loop_conn = file.sync_engine.connect()
    happened: list[str] = []
    busy, release = threading.Event(), threading.Event()

    def committing(_conn: sa.Connection) -> None:
        busy.set()
        release.wait(10)
        happened.append("commit ended")

    sa.event.listen(conn, "commit", committing)
    sa.event.listen(file.sync_engine.pool, "invalidate", lambda *_: happened.append("closed"))
    transaction = conn.begin()
    conn.exec_driver_sql("CREATE TABLE written (x)")

    # when: the coroutine committing is closed (GeneratorExit: a task destroyed at the
    # loop's end, say) while its thread commits, and the commit ends later
    commit = store._commit_in_thread(transaction)
    assert isinstance(commit.send(None), asyncio.Future)
    assert await asyncio.to_thread(busy.wait, 5)
    commit.close()
    release.set()
    await seen(happened, "closed")

    # then: the connection was closed after the commit, in its thread, not beside it
    assert happened == ["commit ended", "closed"]
    assert store._loop_conn is None


async def test_a_cancelled_call_returns_only_once_its_work_ended() -> None:
    # given: work in a thread, busy until released
    executor = concurrent.futures.ThreadPoolExecutor(1)
    busy, release = threading.Event(), threading.Event()
    happened: list[str] = []

    def work() -> None:
        busy.set()
        release.wait(10)
        happened.append("work ended")

    call = asyncio.create_task(in_thread(executor, work))
    await asyncio.to_thread(busy.wait, 5)

    # when: its caller is cancelled twice while the work goes on
    call.cancel()
    await asyncio.sleep(0.05)
    call.cancel()
    asyncio.get_running_loop().call_later(0.2, release.set)

    # then: the cancellation reaches the caller after the work ended, not before
    with pytest.raises(asyncio.CancelledError):
        await call
    happened.append("caller went on")
    assert happened == ["work ended", "caller went on"]
    executor.shutdown()
