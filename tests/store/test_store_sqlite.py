"""What only the SQLite backend does: file handling, pragmas, locking, sharing a file."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from store_factories import (
    PAYLOAD_MARKER,
    DeliveryFactory,
    RowFactory,
    assert_refusal_shown_alone,
    insert_rows,
)

from lambda_destinations.errors import ConfigError, StoreError, StoreUnavailable
from lambda_destinations.store import FailureStatus, InvocationFilter, Store
from lambda_destinations.store._tables import metadata
from lambda_destinations.store._types import UTCDateTime, load_store_json, store_json
from lambda_destinations.store.migrations import MIGRATIONS
from lambda_destinations.store.sqlite import (
    CHECKPOINT_EVERY,
    JOURNAL_SIZE_LIMIT,
    PAGE_SIZE,
    WAL_RESTART_BYTES,
    SQLiteStore,
    _Prepared,
    _utc_text,
)


async def test_every_connection_gets_the_pragmas(sqlite_url: str) -> None:
    async with Store.from_url(sqlite_url, busy_timeout=2.5) as store:
        assert isinstance(store, SQLiteStore)
        async with store.engine.connect() as conn:
            got = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in (
                    "journal_mode",
                    "synchronous",
                    "busy_timeout",
                    "foreign_keys",
                    "journal_size_limit",
                )
            }

    assert got == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL: a commit the worker acknowledges survives power loss
        "busy_timeout": 2500,
        "foreign_keys": 1,
        "journal_size_limit": JOURNAL_SIZE_LIMIT,
    }


async def test_a_new_store_file_can_give_freed_pages_back(sqlite_url: str) -> None:
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
        async with store.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar()

    assert mode == 2  # INCREMENTAL: the pruning job's incremental_vacuum shrinks the file


async def test_a_new_store_file_has_pages_of_16_kib(
    sqlite_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
        row = make_row()
        assert await store.save_invocation(row, make_delivery(row)) is True
        async with store.engine.connect() as conn:
            size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar()
            mode = (await conn.exec_driver_sql("PRAGMA auto_vacuum")).scalar()

    # two rows of 1.5 kB no longer take a 4 KiB page each; auto_vacuum is set all the same
    assert (size, mode) == (PAGE_SIZE, 2) == (16 * 1024, 2)


async def test_a_file_with_smaller_pages_keeps_them_and_works(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given a store file made before, with SQLite's default pages of 4 KiB
    path = tmp_path / "older.db"
    with sqlite3.connect(path) as older:
        older.execute("PRAGMA page_size=4096")
        older.execute("PRAGMA journal_mode=WAL")
        older.execute("CREATE TABLE before_this_version (id INTEGER PRIMARY KEY)")
    older.close()

    # when this version opens it, migrates it and saves into it
    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        row = make_row()
        assert await store.save_invocation(row, make_delivery(row)) is True
        got = await store.get_invocation(row.key)

    # then the pages stay as they were (only a VACUUM outside WAL mode changes them)
    assert got is not None
    assert got.key == row.key
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA page_size").fetchone() == (4096,)
    reopened.close()


@pytest.mark.parametrize(
    ("query", "level"), [("", 2), ("?synchronous=full", 2), ("?synchronous=NORMAL", 1)]
)
async def test_saves_commit_with_full_sync_unless_the_url_names_normal(
    sqlite_url: str, query: str, level: int, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    async with Store.from_url(sqlite_url + query) as store:
        assert isinstance(store, SQLiteStore)
        await store.migrate()
        row = make_row()
        # the worker's hot path: saves on the synchronous engine's connections
        assert await store.save_invocation(row, make_delivery(row)) is True
        assert store._file is not None
        with store._file.sync_engine.connect() as conn:
            hot = conn.exec_driver_sql("PRAGMA synchronous").scalar()
        async with store.engine.connect() as conn:
            other = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
    assert (hot, other) == (level, level)


async def test_an_unknown_synchronous_level_is_one_clear_line(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="synchronous is full"):
        Store.from_url(sqlite_url + "?synchronous=off")


async def test_missing_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "not" / "there" / "yet" / "store.db"

    async with Store.from_url(f"sqlite:///{path}") as store:
        assert await store.migrate() == [m.version for m in MIGRATIONS]

    assert path.is_file()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///{tmp}", "is a directory"),
        ("sqlite:///{tmp}/file.txt/store.db", "cannot create .*Not a directory"),
        ("sqlite://user@host/store.db", "has no host"),
        ("sqlite+pysqlite:///{tmp}/store.db", "use sqlite:///"),
    ],
)
async def test_a_bad_path_or_url_is_one_clear_line(tmp_path: Path, url: str, problem: str) -> None:
    (tmp_path / "file.txt").write_text("not a directory")

    with pytest.raises(ConfigError, match=problem) as info:
        async with Store.from_url(url.format(tmp=tmp_path)):
            pass

    assert "\n" not in str(info.value)
    assert str(info.value).startswith("store URL '")


async def test_a_lock_held_too_long_is_store_unavailable(tmp_path: Path) -> None:
    # given: another process (here, another connection) holding the write lock
    path = tmp_path / "store.db"
    async with Store.from_url(f"sqlite:///{path}", busy_timeout=0.05) as store:
        await store.migrate()
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")

            # then: writes wait busy_timeout, then fail in one line that names the fix, one
            # that can be made (it said "raise busy_timeout", which no setting or URL sets)
            with pytest.raises(StoreUnavailable, match="write lock") as info:
                await store.claim_handler("k", "sms", "a", ttl=60)
            assert "\n" not in str(info.value)
            assert "(0.05 s): retry once it is done" in str(info.value)
            assert "raise busy_timeout" not in str(info.value)
            assert str(path) in str(info.value)
            # reads go on meanwhile (WAL)
            assert await store.completed_handlers("k") == frozenset()
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        # and once the lock is gone, the store works again
        assert await store.claim_handler("k", "sms", "a", ttl=60) is True


async def test_a_save_waits_for_another_process_lock_in_the_thread_not_on_the_loop(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory, hold_write_lock: Any
) -> None:
    # given: another process (here, another connection) holding the write lock
    path = tmp_path / "store.db"
    async with Store.from_url(f"sqlite:///{path}", busy_timeout=5.0) as store:
        await store.migrate()
        first = make_row()
        assert await store.save_invocation(first, make_delivery(first)) is True
        holder = hold_write_lock(path)
        row = make_row()
        save = asyncio.create_task(store.save_invocation(row, make_delivery(row)))
        # when: the loop keeps time meanwhile
        loop = asyncio.get_running_loop()
        gaps = []
        for _ in range(20):
            before = loop.time()
            await asyncio.sleep(0.02)
            gaps.append(loop.time() - before)
        # then: the save waits, and not on the loop: no tick came anywhere near the 5 s a
        # wait in SQLite's busy handler on the loop's thread would have stalled it for
        assert not save.done()
        assert max(gaps) < 2.5
        holder.execute("ROLLBACK")

        # and: it goes through once the lock is released, and the next save too
        assert await asyncio.wait_for(save, timeout=5) is True
        again = make_row()
        assert await store.save_invocation(again, make_delivery(again)) is True
        assert await store.count_invocations(InvocationFilter()) == 3


async def test_a_save_behind_a_lock_held_past_busy_timeout_is_store_unavailable(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory, hold_write_lock: Any
) -> None:
    path = tmp_path / "store.db"
    async with Store.from_url(f"sqlite:///{path}", busy_timeout=0.05) as store:
        await store.migrate()
        holder = hold_write_lock(path)
        row = make_row()
        with pytest.raises(StoreUnavailable, match="write lock"):
            await store.save_invocation(row, make_delivery(row))
        holder.execute("ROLLBACK")
        # then: nothing half-written; the same save works now
        assert await store.get_invocation(row.key) is None
        assert await store.save_invocation(row, make_delivery(row)) is True


@pytest.mark.parametrize("what", ["deleted", "replaced by another file"])
async def test_a_file_deleted_or_replaced_under_an_open_store_takes_no_more_writes(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory, what: str
) -> None:
    # given: an open store that has saved a record
    path = tmp_path / "store.db"
    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        first = make_row()
        assert await store.save_invocation(first, make_delivery(first)) is True

        # when: its file goes (as `rm` would), or another takes its place
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        if what != "deleted":
            sqlite3.connect(path).close()

        # then: a save, and the ping the worker resumes by, are refused, naming what happened
        # (before, the save went to the deleted file, and its message was acknowledged)
        row = make_row()
        with pytest.raises(StoreUnavailable, match=f"{path} was {what} while open"):
            await store.save_invocation(row, make_delivery(row))
        with pytest.raises(StoreUnavailable, match="restart to open the file now there"):
            await store.ping()

    # and a store opened anew works on the file now there
    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        assert await store.save_invocation(row, make_delivery(row)) is True


async def test_a_batch_commits_off_the_loop_and_a_cancel_waits_for_its_commit(
    tmp_path: Path,
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a store whose next commit stalls (a slow disk's fsync) until released
    async with Store.from_url(f"sqlite:///{tmp_path / 'store.db'}") as store:
        await store.migrate()
        first = make_row()
        assert await store.save_invocation(first, make_delivery(first)) is True
        committing, release = threading.Event(), threading.Event()
        commit = sa.RootTransaction.commit

        def stalled(transaction: sa.RootTransaction) -> None:
            committing.set()
            release.wait(10)
            commit(transaction)

        monkeypatch.setattr(sa.RootTransaction, "commit", stalled)
        row = make_row()
        save = asyncio.create_task(store.save_invocation(row, make_delivery(row)))
        assert await asyncio.to_thread(committing.wait, 10)

        # when: the loop goes on meanwhile, and the batch's task is cancelled (as at shutdown)
        batch = store._saves._task
        assert batch is not None
        batch.cancel()
        await asyncio.sleep(0.1)

        # then: the batch waits for its commit, and its caller is told after
        assert not batch.done()
        assert not save.done()
        release.set()
        with pytest.raises(StoreUnavailable):
            await save
        monkeypatch.undo()
        # and: the record was committed whole, and the store goes on with a fresh connection
        assert await store.get_invocation(row.key) is not None
        again = make_row()
        assert await store.save_invocation(again, make_delivery(again)) is True
        assert await store.count_invocations(InvocationFilter()) == 3


async def test_a_long_read_holds_up_neither_saves_nor_other_reads(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a report that takes seconds, on one of the store's reader threads
    count_to = 5_000_000
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
        "SELECT count(*) FROM c"
    )
    async with Store.from_url(f"sqlite:///{tmp_path / 'store.db'}") as store:
        await store.migrate()
        assert isinstance(store, SQLiteStore)

        async def report() -> int:
            async with store.engine.connect() as conn:
                return int((await conn.exec_driver_sql(slow, (count_to,))).scalar_one())

        reading = asyncio.create_task(report())
        await asyncio.sleep(0.2)

        # when: the worker saves, an operator edits and another page is read meanwhile
        row = make_row()
        saved = await store.save_invocation(row, make_delivery(row))
        edited = await store.set_status([row.key], FailureStatus.IGNORED)
        counted = await store.count_invocations(InvocationFilter())

        # then: each was done while the report still ran, and the report ends as it would
        assert not reading.done()
        assert (saved, edited, counted) == (True, 1, 1)
        assert await reading == count_to


async def test_saves_reach_the_database_file_through_background_checkpoints(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a migrated store (the loop's connection never checkpoints by itself)
    path = tmp_path / "store.db"
    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        migrated_size = path.stat().st_size

        # when: many batches of saves, as the worker makes them
        async def save_one() -> bool:
            row = make_row()
            return await store.save_invocation(row, make_delivery(row))

        for _ in range(3 * CHECKPOINT_EVERY // 30):
            assert all(await asyncio.gather(*(save_one() for _ in range(30))))

        # then: the pages were copied into the database file while the store is open
        deadline = asyncio.get_running_loop().time() + 10
        while path.stat().st_size <= migrated_size:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint happened"
            await asyncio.sleep(0.05)
        assert await store.count_invocations(InvocationFilter()) == 3 * CHECKPOINT_EVERY


async def test_the_wal_stays_bounded_while_saves_never_stop(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a store saving batches back to back, and another store reading all the while
    path = tmp_path / "store.db"
    wal = tmp_path / "store.db-wal"
    largest = 0
    async with Store.from_url(f"sqlite:///{path}") as store, Store.from_url(store.url) as reader:
        await store.migrate()
        stop = asyncio.Event()

        async def read() -> None:
            nonlocal largest
            while not stop.is_set():
                await reader.list_invocations(InvocationFilter(limit=20))
                largest = max(largest, wal.stat().st_size if wal.exists() else 0)
                await asyncio.sleep(0.01)

        async def lane() -> None:
            for _ in range(100):
                row = make_row()
                assert await store.save_invocation(row, make_delivery(row))

        # when: 3,200 saves by 32 lanes that never pause
        reading = asyncio.create_task(read())
        try:
            await asyncio.gather(*(lane() for _ in range(32)))
        finally:
            stop.set()
            await reading
        largest = max(largest, wal.stat().st_size)

        # then: the checkpoints let the WAL start again from its beginning
        # (about 1 MB here, 4.2 MB once under a full CI run's load; 15 MB and growing, about
        # 30 KiB a record, when the checkpoint raced the saves)
        assert largest < WAL_RESTART_BYTES // 2
        assert await store.count_invocations(InvocationFilter()) == 3200


async def test_a_reader_holding_a_snapshot_stalls_neither_saves_nor_other_processes_writes(
    tmp_path: Path,
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a WAL past the size where a checkpoint tries to start it again, and another
    # process reading one snapshot all the while (a `store backup`, a long export)
    monkeypatch.setattr("lambda_destinations.store.sqlite.WAL_RESTART_BYTES", 0)
    path = tmp_path / "store.db"
    async with (
        Store.from_url(f"sqlite:///{path}", busy_timeout=2.0) as store,
        Store.from_url(f"sqlite:///{path}", busy_timeout=2.0) as console,
    ):
        await store.migrate()
        first = make_row()
        assert await store.save_invocation(first, make_delivery(first))
        reader = sqlite3.connect(path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM invocations").fetchall()
            loop = asyncio.get_running_loop()
            slowest = 0.0

            async def save_one() -> bool:
                nonlocal slowest
                row = make_row()
                began = loop.time()
                saved = await store.save_invocation(row, make_delivery(row))
                slowest = max(slowest, loop.time() - began)
                return saved

            # when: the worker saves past several checkpoints, and an operator edits meanwhile
            async def edit() -> list[int]:
                edited = []
                for _ in range(6):
                    edited.append(await console.set_status([first.key], FailureStatus.IGNORED))
                    await asyncio.sleep(0.05)
                return edited

            editing = asyncio.create_task(edit())
            for _ in range(4 * CHECKPOINT_EVERY // 30):
                assert all(await asyncio.gather(*(save_one() for _ in range(30))))
            edited = await editing
        finally:
            reader.execute("ROLLBACK")
            reader.close()

        # then: no checkpoint held the write lock waiting for the reader (busy_timeout, 2 s,
        # each time): the saves went on, and the other process's edits were not refused
        # with "database is locked"
        assert slowest < 1.0
        assert edited == [1] * 6
        assert await store.count_invocations(InvocationFilter()) == 1 + 4 * CHECKPOINT_EVERY


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
async def test_an_in_memory_store_works(
    url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    async with Store.from_url(url) as store:
        await store.migrate()
        assert await store.save_invocation(row, make_delivery(row)) is True
        assert await store.count_invocations(InvocationFilter()) == 1


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from lambda_destinations.store import DeliveryRow, InvocationRow, Store

    async def main(url, prefix, n):
        async with Store.from_url(url) as store:
            for i in range(n):
                key = f"{prefix}-{i}"
                row = InvocationRow(
                    key=key, kind="invocation", envelope="none", request_id=key,
                    function_arn=None, function_name="f", qualifier=None, condition=None,
                    succeeded=False, approximate_invoke_count=1, error_type=None,
                    error_message=None, stack_trace=None, timestamp=None,
                    request_payload=None, response_payload=None, record={}, queue="q",
                )
                delivery = DeliveryRow(key=key, message_id=key, queue="q", receive_count=1)
                await store.save_invocation(row, delivery, complete_handler="persist")
                await store.claim_handler("shared", "sms", prefix, ttl=60)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_two_processes_share_one_file(sqlite_url: str) -> None:
    # given: a migrated file
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()

    # when: two processes write to it at the same time
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, sqlite_url, prefix, "100", stderr=asyncio.subprocess.PIPE
        )
        for prefix in ("p1", "p2")
    ]
    errors = [(await p.communicate())[1].decode() for p in procs]

    # then: both succeeded, every row is there, and one process holds the shared claim
    assert [p.returncode for p in procs] == [0, 0], errors
    async with Store.from_url(sqlite_url) as store:
        assert await store.count_invocations(InvocationFilter()) == 200
        [run] = await store.handler_runs("shared")
        assert run.owner in ("p1", "p2")


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 11, 21, 13, 0, 28, 861947, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),  # no microseconds
        dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(999, 12, 31, 23, 59, 59, 1, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2000, 10, 9, 8, 7, 6, 50, tzinfo=dt.UTC),
    ],
)
def test_the_fast_datetime_text_is_what_sqlalchemy_stores(value: dt.datetime) -> None:
    dialect = sqlite_dialect.dialect()
    sqlalchemy_text = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)

    assert _utc_text(value) == sqlalchemy_text(value)


def test_the_fast_datetime_text_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _utc_text(dt.datetime(2026, 11, 21, 13, 0))


def test_the_prepared_insert_stores_what_sqlalchemy_would() -> None:
    # given: rows as the worker saves them (simulated records, odd text included), and two
    # empty databases
    rows = insert_rows()
    engines = [
        sa.create_engine("sqlite://", json_serializer=store_json, json_deserializer=load_store_json)
        for _ in range(2)
    ]
    store = SQLiteStore("sqlite://")
    store._build_statements()
    statement = store._insert_invocation_only

    # when: one through SQLAlchemy's own execution, the other through _Prepared on the cursor
    for engine in engines:
        metadata.create_all(engine)
    with engines[0].begin() as conn:
        conn.execute(statement, rows)
    with engines[1].begin() as conn:
        prepared = _Prepared(statement, conn.dialect, rows[0])
        cursor = conn.connection.driver_connection.cursor()
        for values in rows:
            cursor.execute(prepared.sql, prepared.params(values))

    # then: the stored rows are the same, byte for byte
    stored = []
    for engine in engines:
        with engine.connect() as conn:
            stored.append(conn.exec_driver_sql("SELECT * FROM invocations ORDER BY key").all())
    assert len(stored[0]) == len(rows)
    assert stored[0] == stored[1]


async def test_a_refused_save_names_the_error_without_the_statement_or_the_values(
    sqlite_url: str, tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a trigger that refuses some rows, as a constraint would
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
    with sqlite3.connect(tmp_path / "store.db") as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON invocations "
            "WHEN NEW.error_type = 'Refused' BEGIN SELECT RAISE(ABORT, 'row refused'); END"
        )
    row = make_row(error_type="Refused", request_payload={"card": PAYLOAD_MARKER})

    async with Store.from_url(sqlite_url) as store:
        with pytest.raises(StoreError) as info:
            await store.save_invocation(row, make_delivery(row))

    assert_refusal_shown_alone(info.value, "row refused")


async def test_a_writing_ping_fails_where_reads_answer_but_writes_are_refused(
    tmp_path: Path, hold_write_lock: Any
) -> None:
    # given: a store whose write lock another process holds: reads answer, writes wait
    path = tmp_path / "store.db"
    async with Store.from_url(f"sqlite:///{path}", busy_timeout=1.0) as store:
        await store.migrate()
        holder = hold_write_lock(path)

        # when / then: a plain ping answers, a writing one is refused
        await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.ping(write=True)

        # and: once the lock goes, the writing ping answers and leaves no row behind
        holder.execute("ROLLBACK")
        await store.ping(write=True)
        assert await store.pending_migrations() == []
    rows = sqlite3.connect(path).execute("SELECT version FROM schema_migrations").fetchall()
    assert sorted(v for (v,) in rows) == [m.version for m in MIGRATIONS]
