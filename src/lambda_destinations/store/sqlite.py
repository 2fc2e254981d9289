"""The embedded default store: one SQLite file, on the standard library's ``sqlite3``.

One engine, SQLAlchemy's synchronous one, reaches the file, through the store's threads
(_threaded.py): every write transaction runs on the store's one writer thread, reads on a few
reader threads, and the event loop awaits them.

WAL journaling lets readers proceed while one writer writes, and lets several processes share
the file. Every write transaction starts with ``BEGIN IMMEDIATE``, which takes the write lock
up front: a deferred transaction that reads first and writes later can fail with "database is
locked" at once, without waiting for ``busy_timeout``. Within one process, writers queue on an
asyncio lock instead of spinning in SQLite's busy handler (which sleeps in steps of up to 100 ms).

One exception, measured: the worker's saves write their statements on the event loop's own
thread, on a connection of their own that never waits. Each statement is a few dozen
microseconds of SQLite, less than handing it to a thread costs (every statement in a thread
gives the interpreter's lock back and forth with the loop). The batch's commit, one hand-off,
goes to the writer thread: it writes the WAL's frames and, at ``synchronous=FULL``, syncs them,
which stalled the loop for milliseconds. What else could stall the loop goes there too: a write
lock held by another process (the batch is then run there, waiting up to ``busy_timeout``) and
the WAL checkpoint, which copies pages into the database file and syncs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import operator
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.sqlite import dml as sqlite_dml

from lambda_destinations.errors import StoreGone, StoreMisconfigured, StoreUnavailable
from lambda_destinations.store._access import StoreConnection
from lambda_destinations.store._file_access import access_problem, creation_problem, no_room
from lambda_destinations.store._mounts import network_file_system_problem
from lambda_destinations.store._sql import (
    OLDER_SCHEMA,
    SqlStore,
    _Save,
    parse_store_url,
    url_error,
)
from lambda_destinations.store._threaded import ThreadEngine, in_thread
from lambda_destinations.store._types import UTCDateTime, load_store_json, store_json
from lambda_destinations.store.base import RECLAIM_STEP, Backup, Vacuumed
from lambda_destinations.times import utcnow

if TYPE_CHECKING:
    from lambda_destinations.store._glob import Glob

# SQLite result codes (by name, extended codes included: SQLITE_IOERR_WRITE is an I/O error)
# that mean the database cannot be used right now, with what to do about it.
_FIXES = {
    "SQLITE_BUSY": "another process held the write lock for longer than this one waits",
    "SQLITE_CANTOPEN": "check that the file's directory exists and is writable",
    "SQLITE_READONLY": "check that the file and its directory are writable",
    "SQLITE_IOERR": "check the disk holding the file",
    "SQLITE_FULL": "free space on the disk holding the file",
    "SQLITE_NOTADB": "the file is not a SQLite database: point the store at another path",
    "SQLITE_CORRUPT": "the file is damaged: restore it from a backup, or start a new one",
}
# What holds the write lock for seconds on end.
_LONG_WRITERS = "`prune --vacuum` and `migrate` hold it while they run"
T = TypeVar("T")
log = structlog.get_logger("lambda_destinations.store")
# Saves between two checkpoints of the WAL: about the 1,000 pages after which SQLite would
# checkpoint by itself, at six to eight pages a record.
CHECKPOINT_EVERY = 150
# The WAL's size past which a checkpoint waits for readers to let it start again (RESTART), and
# the size SQLite cuts it back to when it starts again (journal_size_limit).
WAL_RESTART_BYTES = 16 * 1024 * 1024
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
# The page size of a new file. A page holds whole rows only: 4 KiB pages hold two rows of 1.4 to
# 2 kB and one of 2 to 4 kB, so a record of 2 kB cost 4 kB of table; 16 KiB pages leave less
# than a row unused in 16 KiB (README, "The store at scale"). Each page written to the WAL is
# four times larger: a save writes two to three times the bytes (its CPU did not change).
PAGE_SIZE = 16 * 1024
# Threads reading the file at once (the console's pages and reports, the operator commands):
# a long report does not hold up the worker's commits on the writer thread.
READER_THREADS = 4
# Connections open at once for reads and write transactions (past these, callers wait their
# turn); the worker's saves, lookups and checkpoints have their own beside them.
CONNECTIONS = 10
_NOT_MIGRATED = "the store has no tables yet: run `lambda-destinations migrate`"


# SQLite's counter of an AUTOINCREMENT table (a row appears with the table's first insert).
_SEQUENCE = sa.text("SELECT seq FROM sqlite_sequence WHERE name = :name")
_RESERVE = (
    sa.text(
        "INSERT INTO sqlite_sequence (name, seq) SELECT :name, :last "
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = :name)"
    ),
    sa.text("UPDATE sqlite_sequence SET seq = max(seq, :last) WHERE name = :name"),
)


class _Prepared:
    """A statement compiled once for SQLite, with each parameter's bind processing, for
    executing on the driver's cursor directly.

    The worker's saves are many small rows of a few fixed statements: SQLAlchemy's work per
    execution (building the parameters, its result objects) then costs as much CPU as SQLite's
    own. The SQL and the processors are SQLAlchemy's (but for two of our own types, below), so
    the rows stored are the same.
    """

    def __init__(self, statement: Any, dialect: sa.Dialect, keys: Iterable[str]) -> None:
        keys = set(keys)
        compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        # Values fixed in the statement (a literal, which SQLAlchemy binds too), for the names
        # the rows do not hold, each with its place: put there in every row, in order, rather
        # than merged into a copy of each row's dict.
        self._fixed = [
            (index, compiled.binds[name].effective_value)
            for index, name in enumerate(names)
            if name not in keys
        ]
        # Every row holds the same keys (invocation_values makes them): one C call takes the
        # parameters out in order, and only the columns that need it are processed.
        self._names = [name for name in names if name in keys]
        self._take = operator.itemgetter(*self._names) if len(self._names) > 1 else None
        self._processed = [
            (index, process)
            for index, name in enumerate(names)
            if (process := _bind_processor(compiled.binds[name].type, dialect)) is not None
        ]

    def params(self, values: dict[str, Any]) -> list[Any]:
        try:
            row = list(self._take(values)) if self._take else [values[n] for n in self._names]
        except KeyError:  # a row of other keys: each missing one is NULL, as SQLAlchemy has it
            row = [values.get(name) for name in self._names]
        for index, value in self._fixed:
            row.insert(index, value)
        # Every processor keeps None as None (SQL NULL): it is passed as it is. A value the
        # row holds twice in a row (the record's time is also its occurred_at) is processed once.
        done: Any = None
        done_by: Any = None
        text: Any = None
        for index, process in self._processed:
            value = row[index]
            if value is None:
                continue
            if value is not done or process is not done_by:
                done, done_by, text = value, process, process(value)
            row[index] = text
        return row


def _bind_processor(kind: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> Any:
    """What SQLAlchemy would do to a value of ``kind`` before SQLite gets it (None: nothing).

    Two are ours, the same text in less time: UTCDateTime's, and JSON's, which SQLAlchemy wraps
    around the engine's serializer (store_json) to handle its JSON.NULL marker, never passed
    here.
    """
    if isinstance(kind, UTCDateTime):
        return _utc_text
    if isinstance(kind, sa.JSON):
        return store_json
    process = kind.dialect_impl(dialect).bind_processor(dialect)
    if isinstance(kind, sa.Boolean) and process is not None:
        return functools.partial(_boolean_int, process)
    return process


def _boolean_int(strict: Callable[[Any], Any], value: Any) -> Any:
    """A Boolean's 1 or 0, as SQLAlchemy's ``strict`` makes it (and refuses what is no bool),
    without its two calls for the two values a row holds."""
    if value is True:
        return 1
    if value is False:
        return 0
    return strict(value)


# None for None, in C (no Python frame): sqlite3's adapter for None, see _create_engine.
_NO_ADAPTERS: dict[None, None] = {}
_NULL = _NO_ADAPTERS.get
# "00" to "99": a datetime's text is made of them, taken from here rather than formatted.
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


def _utc_text(value: dt.datetime) -> str:
    """The text UTCDateTime's bind processing stores in SQLite, made in a fraction of its time.

    Each number's digits come from :data:`_TWO_DIGITS` (the year's in two halves, the
    microseconds' from the seven digits of one million more): ``%`` formatting's seven ``%0Nd``
    cost a save about 8 thousand instructions a datetime, three datetimes a row.
    """
    if value.tzinfo is not dt.UTC:
        value = UTCDateTime.to_utc(value)
    two = _TWO_DIGITS
    year = value.year
    return (
        f"{two[year // 100]}{two[year % 100]}-{two[value.month]}-{two[value.day]} "
        f"{two[value.hour]}:{two[value.minute]}:{two[value.second]}."
        f"{str(value.microsecond + 1_000_000)[1:]}"
    )


class SQLiteStore(SqlStore):
    """A store in one SQLite file (``sqlite:///relative.db``, ``sqlite:////absolute.db``).

    ``busy_timeout`` (seconds) is how long a write waits for another process's write lock before
    StoreUnavailable. With ``create`` (the default) a missing file and its directories are
    created, owner-only; without it the file must exist.

    Durability: ``synchronous=FULL`` by default, so a commit (and with it every message the
    worker then deletes from SQS) survives power loss and an OS crash; the group commit spreads
    one fsync over a batch of saves. ``?synchronous=normal`` in the URL trades that for speed:
    in WAL mode the last commits before a power loss or an OS crash can be lost after their
    messages were deleted (a process crash loses nothing either way).
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 5.0,
        group_commit: bool = True,
        echo: bool = False,
        create: bool = True,
    ) -> None:
        parsed = parse_store_url(url, "sqlite:///path/to/file.db")
        if parsed.drivername not in ("sqlite", "sqlite+aiosqlite"):
            raise url_error(url, "use sqlite:///path/to/file.db")
        if parsed.username or parsed.password or parsed.host or parsed.port:
            raise url_error(
                url, "a SQLite URL has no host; use sqlite:///relative.db or sqlite:////abs.db"
            )
        synchronous = str(parsed.query.get("synchronous", "full")).lower()
        if synchronous not in ("full", "normal"):
            raise url_error(url, "synchronous is full (the default) or normal")
        self.synchronous = synchronous.upper()
        parsed = parsed.difference_update_query(["synchronous"])
        if parsed.query:
            raise url_error(
                url,
                "a SQLite store URL takes no parameters but ?synchronous=normal: "
                "remove the others from '?' on",
            )
        database = parsed.database or ""
        self.path = None if database in ("", ":memory:") else plain_path(url, database)
        if self.path is not None:
            database = str(self.path)
        self._sa_url = parsed.set(drivername="sqlite+pysqlite", database=database or None)
        # Whether open() may create the file and its missing directories (the worker and
        # `migrate`), or must find the file there (the commands that only read or edit it).
        self.create = create
        self.busy_timeout = busy_timeout
        self._echo = echo
        self._write_lock = asyncio.Lock()
        # The engine of a file while the store is open (None in memory): the worker's saves
        # and lookups use its synchronous engine directly (see _save_batch and _hot).
        self._file: ThreadEngine | None = None
        self._prepared: _Prepared | None = None
        # The event loop's connection for saves, and the checkpoint it leaves to the thread.
        self._loop_conn: sa.Connection | None = None
        self._saved_since_checkpoint = 0
        self._checkpoint: asyncio.Task[None] | None = None
        # The file the store opened (device, inode): a write checks it is still the one at
        # the path, see _check_file.
        self._opened: tuple[int, int] | None = None
        super().__init__(url, group_commit=group_commit)

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def _insert(self, table: sa.Table) -> sqlite_dml.Insert:
        return sqlite_dml.insert(table)

    def _match_glob(self, column: sa.ColumnElement[Any], glob: Glob) -> sa.ColumnElement[bool]:
        # SQLite's GLOB stops early when a star's rest cannot match: no blow-up with many stars.
        return column.op("GLOB", is_comparison=True)(glob.sqlite_glob())

    async def _create_engine(self) -> ThreadEngine:
        if self.path is not None:
            # The worker and `migrate` write (and create it): never on a network file system.
            if self.create and (remote := network_file_system_problem(self.path)) is not None:
                raise StoreMisconfigured.at(self.display_url, remote)
            prepare_file(self.url, self.path, create=self.create)
            # The worker and `migrate` (create) write: a read-only file is opened for reading
            # without a word, and would fail only at the first save.
            if self.create and (problem := access_problem(self.path)) is not None:
                raise StoreMisconfigured.at(self.display_url, problem)
            self._opened = _file_id(self.path)
        # The pool never makes a thread wait (ThreadEngine bounds its connections instead):
        # a file's pool keeps CONNECTIONS open and opens more while the worker's own (its
        # saves, lookups and checkpoints) are out.
        options: dict[str, Any] = {"pool_size": CONNECTIONS, "max_overflow": -1}
        # Used by the store's threads, one at a time (see _threaded.py).
        connect_args: dict[str, Any] = {"timeout": self.busy_timeout, "check_same_thread": False}
        if self.path is None:
            # In memory, every connection would see a database of its own: one for all.
            options = {"poolclass": sa.pool.StaticPool}
        else:
            # The file is there now. A connection opened later (the pool opens more as they
            # are needed) must not create an empty file where this one was deleted: opened
            # read-write only, it fails instead, and _check_file says why.
            uri = f"{self.path.absolute().as_uri()}?mode=rw"
            options["creator"] = functools.partial(sqlite3.connect, uri, uri=True, **connect_args)
        engine = sa.create_engine(
            self._sa_url,
            echo=self._echo,
            hide_parameters=True,  # a record's payloads never reach an error or the echo
            connect_args=connect_args,
            json_serializer=store_json,
            json_deserializer=load_store_json,
            # SQLAlchemy already ends every transaction it began; the pool's extra ROLLBACK on
            # check-in would be one more statement per transaction.
            pool_reset_on_return=None,
            # An UPDATE's or DELETE's rowcount, read after the result left the thread.
            execution_options={"preserve_rowcount": True},
            **options,
        )
        sa.event.listen(engine, "connect", self._on_connect)
        # sqlite3 looks every parameter that is not an int, float or str up in its adapters,
        # and for one not found asks its protocol class for ``__adapt__``: an AttributeError
        # made and dropped, about 1,300 instructions for each NULL a row binds (a save's row
        # binds about eleven). Found, None is bound as NULL as before. Once for the process.
        sqlite3.register_adapter(type(None), _NULL)
        writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")
        if self.path is None:
            # Its one connection, used in turn.
            return ThreadEngine(engine, writer, readers=writer, connections=CONNECTIONS)
        readers = concurrent.futures.ThreadPoolExecutor(
            READER_THREADS, thread_name_prefix="sqlite-read"
        )
        self._file = ThreadEngine(engine, writer, readers, connections=CONNECTIONS)
        return self._file

    async def close(self) -> None:
        engine = self._engine
        await super().close()
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
            self._checkpoint = None
        self._drop_loop_conn(after=self._file.writer if self._file is not None else None)
        self._file = None
        if isinstance(engine, ThreadEngine):
            await engine.close()  # after the checkpoint, which may have connected meanwhile

    async def _hot(self, work: Callable[[sa.Connection], T], *, write: bool) -> T:
        """Run ``work`` on a connection of the file's engine in the writer thread, in one
        hand-off (a transaction, committed, if ``write``)."""
        file = self._file
        if file is None:
            raise RuntimeError(f"store {self.display_url} is not open")
        engine = file.sync_engine

        def run() -> T:
            with engine.begin() if write else engine.connect() as conn:
                return work(conn)

        if not write:
            async with self._errors():
                return await in_thread(file.writer, run)
        async with self._errors(), self._write_gate():
            return await in_thread(file.writer, run)

    async def _save_batch(self, saves: Sequence[_Save]) -> list[bool]:
        if self._file is None:
            return await super()._save_batch(saves)
        async with self._errors(), self._write_gate():
            begun = self._save_here(self._file.sync_engine, saves)
            if begun is not None:
                results, transaction = begun
                await self._commit_in_thread(transaction)
        if begun is None:
            # Another process holds the write lock: wait for it in the thread, not on the loop.
            results = await self._hot(functools.partial(self._save_on, saves=saves), write=True)
        self._saved_since_checkpoint += len(saves)
        if self._saved_since_checkpoint >= CHECKPOINT_EVERY and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._saved_since_checkpoint = 0
            self._checkpoint = asyncio.create_task(self._checkpoint_wal(), name="wal-checkpoint")
        return results

    def _save_here(
        self, engine: sa.Engine, saves: Sequence[_Save]
    ) -> tuple[list[bool], sa.RootTransaction] | None:
        """Write the batch on the loop's connection, uncommitted, and return its results and
        its transaction; None, having written nothing, if another process holds the lock.

        The connection's ``busy_timeout`` is 0, so it never sleeps, and it never checkpoints
        by itself (``wal_autocheckpoint=0``): _checkpoint_wal does that in the thread.
        """
        conn = self._loop_conn
        fresh = conn is None
        if conn is None:
            conn = self._loop_conn = engine.connect()
        try:
            if fresh:
                cursor = conn.connection.cursor()
                cursor.execute("PRAGMA busy_timeout=0")
                cursor.execute("PRAGMA wal_autocheckpoint=0")
                cursor.close()
            transaction = conn.begin()
            try:
                return self._save_on(conn, saves), transaction
            except BaseException:
                transaction.rollback()
                raise
        except BaseException as exc:
            if _sqlite_code(exc).startswith("SQLITE_BUSY"):
                return None  # the transaction never began: BEGIN IMMEDIATE is what failed
            self._drop_loop_conn()  # a fresh one next time, whatever state this one is in
            raise

    async def _commit_in_thread(self, transaction: sa.RootTransaction) -> None:
        """Commit the loop's connection in the store's thread, under the caller's write gate.

        The commit is where the time goes: the WAL's frames are written and, at
        ``synchronous=FULL``, synced. The loop meanwhile goes on receiving and decoding, and the
        saves it makes gather for the next batch. Nothing else uses the connection until the
        commit returns (the gate is held); a caller cancelled meanwhile waits for it all the
        same, and the connection is not used again.
        """
        file = self._file
        if file is None:
            raise RuntimeError(f"store {self.display_url} is not open")
        try:
            await in_thread(file.writer, transaction.commit)
        except BaseException:
            # Closed in the writer thread, after the commit: should this coroutine have been
            # closed (GeneratorExit, which in_thread cannot wait through), the commit may still
            # run there, and sqlite3 crashes the process when a connection is closed beside it.
            self._drop_loop_conn(after=file.writer)
            raise

    def _drop_loop_conn(self, after: concurrent.futures.Executor | None = None) -> None:
        """Forget the loop's connection and close it: here, or in ``after``'s thread once the
        work already given to it has run (at once if that executor is shut down)."""
        conn, self._loop_conn = self._loop_conn, None
        if conn is None:
            return
        if after is not None:
            with contextlib.suppress(RuntimeError):  # shut down: nothing runs there any more
                after.submit(_close_unpooled, conn)
                return
        _close_unpooled(conn)

    async def _checkpoint_wal(self) -> None:
        """Copy the WAL's pages into the database file, in the thread, while no save of this
        process writes; a failure is logged, and the next one is tried after CHECKPOINT_EVERY
        saves.

        A checkpoint that races the saves never catches up with them, and a WAL whose every
        page is not yet copied is never started again from its beginning: it grew by about
        30 KiB a record for as long as saves kept coming. Holding the write gate lets the
        checkpoint copy everything, so the next save restarts the WAL (and SQLite cuts the file
        to ``journal_size_limit``). Past ``WAL_RESTART_BYTES``, a RESTART checkpoint also
        starts the WAL again itself when no reader holds an old snapshot, and does what PASSIVE
        does when one does, without waiting: it holds the write lock while it waits, and it
        waited up to ``busy_timeout`` for a reader that kept its snapshot (a `store backup`), so
        the saves stopped for that long every CHECKPOINT_EVERY saves, and another process's
        writes (the console's) failed with "database is locked". Such a reader's snapshot keeps
        the WAL growing until it ends, whatever the checkpoint does.
        """
        mode = "RESTART" if self._bytes("-wal") > WAL_RESTART_BYTES else "PASSIVE"
        try:
            await self.checkpoint(mode)
        except Exception as exc:  # noqa: BLE001 - the next one is due after CHECKPOINT_EVERY saves
            log.warning(
                "could not checkpoint the SQLite WAL; will try again",
                store=self.display_url,
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )

    async def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the WAL's pages into the database file now (``PRAGMA wal_checkpoint(mode)``),
        in the thread, while no save of this process writes; StoreUnavailable, with the fix,
        when that fails.

        SQLite also checkpoints when the last connection to the file closes, but says nothing
        when that fails (a disk with room for the WAL and not for the pages copied out of it):
        the commits stay in the WAL, safe, and the file is left on a full disk. PASSIVE waits
        for no other process: pages a reader still needs are left for a later checkpoint.
        """
        file = self._file
        if file is None:
            return
        engine = file.sync_engine

        def run() -> None:
            with engine.connect() as conn:
                # A RESTART waiting for readers would hold the write lock (_checkpoint_wal).
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                try:
                    conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").all()
                finally:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")

        async with self._errors(), self._write_gate():
            await in_thread(file.writer, run)

    async def reclaim_space(self, *, max_bytes: int = RECLAIM_STEP) -> int:
        """Free pages back to the file system (``auto_vacuum=INCREMENTAL`` files only), then a
        checkpoint, which is when the database file itself gets shorter."""
        if self._file is None:
            return 0

        def work(conn: sa.Connection) -> int:
            # The file's own page size: 16 KiB for a file this store created, 4 KiB for one
            # created before (which keeps its pages until a VACUUM).
            page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
            pages = max(1, max_bytes // page_size)
            before = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            # Each step of the statement frees one page: run it to its end (executescript
            # does; a cursor's execute stops after the first).
            driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.executescript(f"PRAGMA incremental_vacuum({pages})")
            after = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            return (before - after) * page_size

        freed = await self._hot(work, write=True)
        if freed:
            await self._checkpoint_wal()
        return freed

    vacuums = True

    async def vacuum(self) -> Vacuumed | None:
        if self._file is None:
            return None

        def taken() -> int:
            """What the store takes on disk: the file and its WAL (its -shm, a few pages, aside)."""
            return self._bytes() + self._bytes("-wal")

        def work(conn: sa.Connection) -> Vacuumed:
            before = taken()
            # Takes effect through the VACUUM, also on a file created before it was the default.
            conn.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
            return Vacuumed(bytes_before=before, bytes_after=taken())

        return await self._hot(work, write=True)

    async def backup(self, target: Path, *, replace: bool = False) -> Backup | None:
        """See :func:`._backup.back_up`: one read transaction on a reader thread, so the
        worker's saves go on while it copies."""
        file = self._file
        if file is None:
            return None
        engine = file.sync_engine
        # Imported here: the commands that only read the store never back it up.
        from lambda_destinations.store._backup import back_up

        stop = threading.Event()  # set by a Ctrl-C: the copy ends at its next step

        def run() -> Backup:
            with engine.connect() as conn:
                driver = conn.connection.driver_connection
                assert isinstance(driver, sqlite3.Connection)
                return back_up(driver, target, replace=replace, stop=stop)

        async with self._errors():
            return await in_thread(file.readers, run, interrupt=stop.set)

    def _bytes(self, suffix: str = "") -> int:
        """The size now of the database file, or of its ``-wal`` or ``-shm`` (0 if there is
        none, or in memory; a file gone is _check_file's to say at the next write)."""
        if self.path is None:
            return 0
        try:
            return self.path.with_name(self.path.name + suffix).stat().st_size
        except OSError:
            return 0

    async def _completed_batch(self, keys: Sequence[str]) -> list[frozenset[str]]:
        if self._file is None:
            return await super()._completed_batch(keys)
        return await self._hot(functools.partial(self._completed_on, keys=keys), write=False)

    def _insert_invocations(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        if self._prepared is None:
            self._prepared = _Prepared(self._insert_invocation_only, conn.dialect, rows[0])
        insert = self._prepared
        new_keys: set[str] = set()
        cursor = driver.cursor()
        try:
            # One execute per invocation: its rowcount (0 when the key exists) says if it is new.
            for row in rows:
                cursor.execute(insert.sql, insert.params(row))
                if cursor.rowcount == 1:
                    new_keys.add(row["key"])
        except sqlite3.Error as exc:
            # As SQLAlchemy would raise it, so that _errors() sees what it knows.
            raise sa.exc.DBAPIError.instance(insert.sql, None, exc, sqlite3.Error) from exc
        except (TypeError, ValueError) as exc:  # a parameter its type refused (a naive datetime)
            raise sa.exc.StatementError(str(exc), insert.sql, None, exc) from exc
        finally:
            cursor.close()
        return new_keys

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 driver begins a transaction just before the first INSERT, UPDATE or
        # DELETE of a transaction, never before a SELECT: with "IMMEDIATE" that BEGIN takes the
        # write lock up front, and reads run in autocommit. This costs no statement of its own
        # (in the store's threads, every statement is a hop to the thread). Every
        # write transaction here writes first; migrate begins explicitly (_lock_migrations).
        dbapi_connection.isolation_level = "IMMEDIATE"
        cursor = dbapi_connection.cursor()
        try:
            if self.path is not None:
                cursor.execute("PRAGMA page_count")
                if cursor.fetchone()[0] == 0:
                    # A new file: its page size, and freed pages will go back to the file system
                    # when the pruning job asks (PRAGMA incremental_vacuum). Only possible
                    # before the first table (the page size: before auto_vacuum, too) and the
                    # journal mode are written; an older file keeps both until a VACUUM
                    # (README, "Retention" and "The store at scale").
                    cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
                    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
                # Persistent in the file; repeating it on a WAL database changes nothing.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            # FULL unless the URL asks for NORMAL: in WAL mode NORMAL may lose the last
            # commits on power loss, after the worker deleted their messages from SQS.
            cursor.execute(f"PRAGMA synchronous={self.synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            # No table has a foreign key yet; on, so that one added later is enforced here as
            # PostgreSQL would enforce it.
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    async def _last_id(
        self, conn: StoreConnection, table: sa.Table, column: sa.Column[Any]
    ) -> int | None:
        highest = await super()._last_id(conn, table, column)
        if not table.dialect_options["sqlite"]["autoincrement"]:
            return highest
        # AUTOINCREMENT's counter remembers the ids of rows deleted since (migration 13).
        counter = await conn.execute(_SEQUENCE, {"name": table.name})
        return max((v for v in (highest, counter.scalar()) if v is not None), default=None)

    async def _reserve_ids(
        self, conn: StoreConnection, table: sa.Table, column: sa.Column[Any], last: int
    ) -> None:
        if table.dialect_options["sqlite"]["autoincrement"]:
            for statement in _RESERVE:
                await conn.execute(statement, {"name": table.name, "last": last})

    async def _lock_migrations(self, conn: StoreConnection) -> None:
        # The first statement of the transaction: take the write lock before reading which
        # versions are applied, so that a second process waits here and then sees them.
        await conn.exec_driver_sql("BEGIN IMMEDIATE")

    @contextlib.asynccontextmanager
    async def _write_gate(self) -> AsyncIterator[None]:
        async with self._write_lock:
            try:
                yield
            except Exception:
                self._check_file()  # a write that failed because the file went says so
                raise
            self._check_file()

    async def ping(self, *, write: bool = False) -> None:
        self._check_file()  # first: a new connection would create a missing file
        await super().ping(write=write)
        if write and (no_room := self.no_room()) is not None:
            # The ping's one row still fits on a disk full but for a few pages, where a batch
            # of saves does not: the worker would resume, and fail a round of messages (each
            # a receive nearer its DLQ) at every pause, for as long as the disk stays full.
            raise StoreUnavailable.at(self.display_url, f"{no_room[0]}: {no_room[1]}")

    def _check_file(self) -> None:
        """Raise StoreGone if the file at the path is no longer the one open.

        Deleted (or replaced) while open, the old file lives on, unseen, for as long as its
        connections do: a write that went there would be acknowledged and lost. Checked after
        each write transaction, before its callers are answered (one ``stat``), and by the
        ping, so the worker stops (StoreGone) rather than resuming into it.
        """
        if self.path is None or self._opened is None:
            return
        now = _file_id(self.path)
        if now != self._opened:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreGone.at(
                self.display_url,
                f"{self.path} was {what} while open, and what is written to the old file is "
                "lost: restart to open the file now there (a missing one is created and "
                "migrated)",
            )

    def _lease_clock(self) -> tuple[sa.ColumnElement[dt.datetime], sa.ColumnElement[dt.datetime]]:
        # One machine, one clock: the caller's is as good as the database's.
        return (
            sa.bindparam("now", type_=UTCDateTime()),
            sa.bindparam("until", type_=UTCDateTime()),
        )

    def _hour_of(self, moment: sa.ColumnElement[dt.datetime]) -> sa.ColumnElement[Any]:
        # UTCDateTime keeps UTC text, "YYYY-MM-DD HH:MM:SS.ffffff": its first 13 characters.
        return sa.func.substr(moment, 1, 13)

    def _lease_params(self, ttl: float) -> dict[str, Any]:
        now = utcnow()
        return {"now": now, "until": now + dt.timedelta(seconds=ttl)}

    def _unavailable_reason(self, exc: BaseException) -> str | None:
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        if not isinstance(orig, sqlite3.Error):
            return None
        message = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        if message.startswith("no such table"):
            return f"{message}: {_NOT_MIGRATED}"
        if message.startswith("no such column"):
            return f"{message}: {OLDER_SCHEMA}"
        name = _sqlite_code(exc)
        if (problem := self._access_problem(name)) is not None:
            return problem
        for code, fix in _FIXES.items():
            if name == code or name.startswith(code + "_"):
                if code == "SQLITE_BUSY":
                    # No setting changes the wait (busy_timeout is not a URL parameter): the
                    # fix is the other process's end.
                    fix += f" ({self.busy_timeout:g} s): retry once it is done ({_LONG_WRITERS})"
                if code == "SQLITE_IOERR" and (no_room := self.no_room()) is not None:
                    return f"{message} ({no_room[0]}): {no_room[1]}"
                return f"{message}: {fix}"
        return None

    def _access_problem(self, code: str) -> str | None:
        """What keeps this user from the file, when SQLite's ``code`` (cannot open, read-only)
        may be that: the file's permissions, not an outage."""
        if self.path is None or not code.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")):
            return None
        return access_problem(self.path)

    def _misconfigured(self, exc: BaseException) -> bool:
        # The file's permissions: a command exits 3; a running worker waits, as for an outage.
        # A file that is not a SQLite database never becomes one: `run` and `dev` exit 3 at
        # start rather than wait for it.
        code = _sqlite_code(exc)
        return code == "SQLITE_NOTADB" or self._access_problem(code) is not None

    async def write_problems(self) -> list[str] | None:
        """The file's permissions when this user may not write it (a read-only file is opened
        for reading without a word); None otherwise: the rest SQLite says at the first write."""
        problem = None if self.path is None else access_problem(self.path)
        return None if problem is None else [problem]

    def no_room(self) -> tuple[str, str] | None:
        """Why the file has no room to grow, and the fix, when that is so: the disk holding it
        with under NO_ROOM free, or this process's file size limit within NO_ROOM of the
        largest of its files. None otherwise (and in memory).

        SQLite says SQLITE_FULL when a write into the file finds the disk full, but an I/O
        error when the ``-shm`` file cannot be sized (which opening a file no other process has
        open does, a read too) and when a write passes the file size limit (EFBIG): "check
        the disk" named neither cause.
        """
        if self.path is None:
            return None
        largest = max(self._bytes(suffix) for suffix in ("", "-wal", "-shm"))
        return no_room(self.path, largest, _FIXES["SQLITE_FULL"])


def plain_path(url: str, database: str) -> Path:
    """The file a SQLite URL names: ``~`` expanded; URIs and odd names refused."""
    if database.startswith("~"):
        expanded = os.path.expanduser(database)
        if expanded.startswith("~"):
            raise url_error(url, f"cannot expand {database.split('/')[0]!r}: write the full path")
        database = expanded
    if database.lower().startswith("file:") or "\x00" in database:
        raise url_error(url, "not a plain path: use sqlite:///relative.db or sqlite:////abs.db")
    return Path(database)


def prepare_file(url: str, path: Path, *, create: bool) -> None:
    """Make sure ``path`` can be opened: created owner-only (0600, its new folders 0700) when
    ``create``, else required to exist, so that reading never leaves a file behind.

    SQLite gives the ``-wal`` and ``-shm`` files the database file's permissions.
    """
    try:
        found = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        found = None
    except OSError as exc:  # a name too long, a folder on the way this user may not enter
        raise url_error(
            url,
            f"cannot open the file it names ({exc.strerror}): point the store at another path",
        ) from exc
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise url_error(url, f"{path} is a directory, not a database file")
    if found is not None:
        return
    if not create:
        raise url_error(
            url,
            f"{path} does not exist: point the store at the worker's database, "
            "or create it with `lambda-destinations migrate`",
        )
    try:
        missing = _missing_folders(path.parent)
        for folder in missing:
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)  # whatever the umask
        if missing:
            log.info("created the store's directory", directory=str(path.parent.absolute()))
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        path.chmod(0o600)
    except FileExistsError:
        return  # another process was first
    except OSError as exc:
        created = exc.filename or path
        # A folder this user may not write (a container's volume owned by another uid, say):
        # its mode, its owner and the chown.
        problem = creation_problem(path)
        raise url_error(
            url,
            f"cannot create {created}: {problem}"
            if problem
            else f"cannot create {created} ({exc.strerror}): use a path in a writable directory",
        ) from exc


def _file_id(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, None if there is none."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist, outermost first."""
    missing: list[Path] = []
    absolute = folder.absolute()
    while not absolute.exists() and absolute != absolute.parent:
        missing.append(absolute)
        absolute = absolute.parent
    return missing[::-1]


def _sqlite_code(exc: BaseException) -> str:
    """SQLite's result code name for ``exc`` (``SQLITE_BUSY``...), or "" if it has none."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return getattr(orig, "sqlite_errorname", None) or ""


def _close_unpooled(conn: sa.Connection) -> None:
    """Close ``conn`` and its driver's connection, not returning it to the pool: its pragmas
    must not reach the threads' connections."""
    with contextlib.suppress(Exception):
        conn.invalidate()
        conn.close()
