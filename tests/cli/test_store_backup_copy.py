"""`store backup` and `store copy`: a SQLite store backed up while a writer writes, and a
store's records carried to PostgreSQL (real files, the machine's PostgreSQL, a moto server and
real `run --once` workers), so that a message delivered again after the switch runs no effect
twice."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from freezable_proxy import FreezableProxy
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import DeliveryRow, OperatorAction, QuarantineRow, Store, utcnow
from processes import ctrl_c_as_in_a_terminal, reap

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
EFFECTS = """
from pathlib import Path
from lambda_destinations import handler

@handler("effect")
async def effect(record, context):
    with Path(context.options["file"]).open("a") as out:
        out.write(context.key + "\\n")
"""


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    done = cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def refused(code: int, *args: str, env: dict[str, str] | None = None) -> str:
    done = cli(*args, env=env)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.stdout == ""
    return lines[0]


def seed(url: str, n: int) -> None:
    """``n`` failure records and one quarantined message, as the worker saves them."""

    async def go() -> None:
        async with Store.from_url(url) as store:
            await store.migrate()
            await store.save_quarantine(quarantined("m-poison"))
            rng = random.Random(3)
            for i in range(n):
                await save_record(store, failure_record(rng, condition="RetriesExhausted"), i)

    asyncio.run(go())


def quarantined(message_id: str) -> QuarantineRow:
    return QuarantineRow(
        queue="q",
        message_id=message_id,
        body="not json",
        message_attributes={},
        reason="decode error",
        receive_count=1,
        quarantined_at=utcnow(),
    )


async def save_record(store: Store, record: dict[str, Any], i: int) -> None:
    """As the persist handler saves a record (its row, its delivery, the handler done)."""
    message = decode(json.dumps(record))
    delivery = DeliveryRow(key=message.key, message_id=f"m-{i}", queue="q", receive_count=1)
    await store.save_invocation(invocation_row(message, "q"), delivery, complete_handler="persist")


def count(path: Path, table: str = "invocations") -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- backup -----------------------------------------------------------------------------------


def test_a_backup_taken_while_a_writer_writes_holds_every_record_committed_before(
    tmp_path: Path,
) -> None:
    # given: a store in WAL mode that a writer (another process's connection, as the worker's
    # is) keeps writing to, and whose recent records are in the -wal file only
    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    asyncio.run(_migrate(url))
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as the worker: it checkpoints by itself
    committed = _insert(writer, 0, 300)
    stop = threading.Event()
    written = [committed]

    def keep_writing() -> None:
        n = committed
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("PRAGMA wal_autocheckpoint=0")
            while not stop.is_set():
                n = _insert(db, n, 5)
                written.append(n)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        # when
        out = ok(
            "store",
            "backup",
            str(tmp_path / "backup.db"),
            "--json",
            env={"LAMBDA_DESTINATIONS_STORE": url},
        )
        # (and a plain copy of the database file alone, at the same moment)
        plain = tmp_path / "plain.db"
        plain.write_bytes(path.read_bytes())
    finally:
        stop.set()
        thread.join()
        writer.close()
    # then: one file, checked, with at least every record committed before it began
    made = json.loads(out)
    backup = tmp_path / "backup.db"
    assert made["path"] == str(backup)
    assert made["bytes"] == backup.stat().st_size
    assert not Path(f"{backup}-wal").exists()
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    with contextlib.closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        keys = {k for (k,) in db.execute("SELECT key FROM invocations")}
    assert {f"k-{i}" for i in range(committed)} <= keys
    assert len(keys) <= written[-1]
    # and the plain copy misses them: what the writer committed is in the -wal file until a
    # checkpoint
    assert count(plain) < committed


async def _migrate(url: str) -> None:
    async with Store.from_url(url) as store:
        await store.migrate()


def _insert(db: sqlite3.Connection, start: int, n: int) -> int:
    db.execute("BEGIN IMMEDIATE")
    for i in range(start, start + n):
        db.execute(
            "INSERT INTO invocations (key, kind, envelope, occurred_at, queue, first_seen_at) "
            "VALUES (?, 'invocation', 'none', '2026-01-01 00:00:00.000000', 'q', "
            "'2026-01-01 00:00:00.000000')",
            (f"k-{i}",),
        )
    db.execute("COMMIT")
    return start + n


def test_a_backup_restored_in_place_opens_as_the_store(tmp_path: Path) -> None:
    # given: a backup of a store with open failures
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 3)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    before = json.loads(ok("failures", "list", "--json", env=env))
    ok("store", "backup", str(tmp_path / "backup.db"), env=env)
    # when: the store is lost and the backup put in its place
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'store.db'}{suffix}").unlink(missing_ok=True)
    (tmp_path / "backup.db").rename(tmp_path / "store.db")
    # then: it is up to date for this release and shows the same failures
    assert "up to date" in ok("migrate", "--check", env=env)
    assert json.loads(ok("failures", "list", "--json", env=env)) == before


def test_backup_refusals_are_one_line_each(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 1)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    (tmp_path / "there.db").write_text("keep me")

    said = refused(2, "store", "backup", str(tmp_path / "there.db"), env=env)
    assert (
        said == f"error: {tmp_path / 'there.db'} exists: give a new path, or --force to replace it"
    )
    assert (tmp_path / "there.db").read_text() == "keep me"
    said = refused(2, "store", "backup", str(tmp_path / "store.db"), "--force", env=env)
    assert "is the store itself" in said
    said = refused(2, "store", "backup", str(tmp_path / "no" / "b.db"), env=env)
    assert said.endswith("does not exist: create the folder, or give another path")
    # a file where its folder would be: no folder to create there
    for under in (tmp_path / "there.db" / "b.db", tmp_path / "there.db" / "sub" / "b.db"):
        said = refused(2, "store", "backup", str(under), env=env)
        assert said == f"error: {tmp_path / 'there.db'} is not a folder: give a path in a folder"
    # a folder this user may not write: the backup's failure, exit 1, nothing left behind
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        said = refused(1, "store", "backup", str(locked / "b.db"), env=env)
        assert "give a path in a folder this user may write" in said
    # --force replaces the file
    ok("store", "backup", str(tmp_path / "there.db"), "--force", env=env)
    assert count(tmp_path / "there.db") == 1


def test_a_backup_path_ending_in_a_slash_is_a_folder_not_a_file_name(tmp_path: Path) -> None:
    # given: a PATH written as a folder (`/backups/2026-12-07/`) that does not exist yet, or
    # that is a file: the backup was written as a file of that name
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 1)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    (tmp_path / "there.db").write_text("keep me")
    # when, then: refused, as a folder that is missing or not one
    said = refused(2, "store", "backup", f"{tmp_path / 'daily'}/", env=env)
    assert said == (
        f"error: {tmp_path / 'daily'} does not exist: create the folder, or give another path"
    )
    assert not (tmp_path / "daily").exists()
    said = refused(2, "store", "backup", f"{tmp_path / 'there.db'}/", "--force", env=env)
    assert said == f"error: {tmp_path / 'there.db'} is not a folder: give a path in a folder"
    assert (tmp_path / "there.db").read_text() == "keep me"


def test_backup_force_replaces_only_a_file(tmp_path: Path) -> None:
    # given: a PATH that is no file (a pipe, as /dev/null is a device): --force once renamed
    # the copy over it, and as root `store backup /dev/null --force` made /dev/null a file
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 1)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    # when
    said = refused(
        2, "store", "backup", str(pipe), "--force", env={"LAMBDA_DESTINATIONS_STORE": url}
    )
    # then
    assert said == (
        f"error: {pipe} is not a regular file: --force replaces only a file: give a file's path"
    )
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_a_backup_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 20)
    # 10 MB of bodies: more than SQLite's page cache, so the copy spills pages to its file
    # mid-way and keeps a rollback journal beside it (which the failure must not leave behind)
    asyncio.run(_quarantine_bodies(url, 40, 250_000))
    # /dev/full answers every write with ENOSPC: the target's folder is a small tmpfs instead
    # where one is at hand; the file size limit stands in for a full disk anywhere.
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    done = subprocess.run(
        [
            "/bin/sh",
            "-c",
            'ulimit -f 64 && exec "$@"',
            "sh",
            *ENTRY,
            "store",
            "backup",
            str(tmp_path / "b.db"),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot write {tmp_path / 'b.db'} (")
    assert not (tmp_path / "b.db").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.db")] == []


# What a `store backup` process runs: the backup's copy, held once it has begun (the file
# named by the last argument made) until the command is told to stop.
HELD_BACKUP = """
import sys
from pathlib import Path
from lambda_destinations.cli import main
from lambda_destinations.store import _backup

back_up = _backup.back_up
begun = Path(sys.argv.pop())

def held(source, target, *, replace, stop=None):
    begun.touch()
    if stop is None:
        return back_up(source, target, replace=replace)
    stop.wait(120)  # the Ctrl-C, taken by the command
    return back_up(source, target, replace=replace, stop=stop)

_backup.back_up = held
main()
"""


def test_a_backup_interrupted_by_ctrl_c_stops_and_leaves_no_file(tmp_path: Path) -> None:
    # given: a backup under way
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 3)
    begun = tmp_path / "begun"
    backup = subprocess.Popen(
        [sys.executable, "-c", HELD_BACKUP, "store", "backup", str(tmp_path / "b.db"), str(begun)],
        env={
            **os.environ,
            "LAMBDA_DESTINATIONS_STORE": url,
            "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    try:
        while not begun.exists() and backup.poll() is None:
            threading.Event().wait(0.01)
        # when: Ctrl-C (it went on to the end of the copy, then said `interrupted` and exited
        # 130, the whole backup under the name)
        backup.send_signal(signal.SIGINT)
        out, err = backup.communicate(timeout=180)
    finally:
        reap(backup)
    # then: interrupted, and nothing under the name nor beside it
    assert backup.returncode == 130, err
    assert (out, err.strip().splitlines()) == ("", ["interrupted"])
    assert not (tmp_path / "b.db").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.db")] == []


async def _quarantine_bodies(url: str, n: int, size: int) -> None:
    async with Store.from_url(url) as store:
        for i in range(n):
            row = quarantined(f"m-big-{i}")
            row.body = "x" * size
            await store.save_quarantine(row)


@pytest.mark.postgres
def test_backup_of_a_postgresql_store_says_pg_dump(postgres_url: str) -> None:
    said = refused(
        2,
        "store",
        "backup",
        "x.dump",
        env={"LAMBDA_DESTINATIONS_STORE": postgres_url + "?pool_size=5"},
    )
    assert "pg_dump --format=custom --file=lambda-destinations.dump" in said
    assert f"'{postgres_url}'" in said  # no pool_size: pg_dump refuses what libpq does not know


# -- copy -------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_copy_to_postgresql_shows_the_same_failures(tmp_path: Path, postgres_url: str) -> None:
    # given: a SQLite store with open failures and a quarantined message
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 25)
    sqlite_env = {"LAMBDA_DESTINATIONS_STORE": url}
    pg_env = {"LAMBDA_DESTINATIONS_STORE": postgres_url}
    # when: copied in batches smaller than a table
    out = ok("store", "copy", "--to", postgres_url, "--batch", "7", "--json", env=sqlite_env)
    # then: every table counted on both sides, and every read shows the same
    copied = json.loads(out)
    assert copied["ok"] is True
    tables = {t["table"]: t for t in copied["tables"]}
    assert tables["invocations"] == {
        "table": "invocations",
        "source_rows": 25,
        "copied": 25,
        "target_rows": 25,
    }
    assert tables["quarantine"]["target_rows"] == 1
    assert "schema_migrations" not in tables
    tomorrow = (utcnow() + dt.timedelta(days=1)).date().isoformat()
    window = ["--since", "2026-01-01", "--until", tomorrow]
    for args in (
        ["failures", "list", "--json"],
        ["failures", "stats", *window, "--json"],
        ["quarantine", "list", "--json"],
        ["replay", *window, "--dry-run", "--json"],
    ):
        assert json.loads(ok(*args, env=pg_env)) == json.loads(ok(*args, env=sqlite_env)), args
    first = json.loads(ok("failures", "list", "--json", env=sqlite_env))[0]["request_id"]
    shown = [
        json.loads(ok("failures", "show", first, "--json", env=e)) for e in (sqlite_env, pg_env)
    ]
    assert shown[0] == shown[1]
    # and new rows get new ids: the sequences were moved past the ids copied
    asyncio.run(_quarantine_one_more(postgres_url))


async def _quarantine_one_more(url: str) -> None:
    async with Store.from_url(url) as store:
        assert await store.save_quarantine(quarantined("m-after"))
        rows = await store.list_quarantine()
    assert sorted(row.id for row in rows) == [1, 2]


@pytest.mark.postgres
def test_copy_refuses_a_target_that_holds_records_and_a_rerun_finishes_the_job(
    tmp_path: Path, postgres_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 30)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    # given: a copy interrupted part-way (some of the invocations there, nothing else)
    asyncio.run(_copy_part(url, postgres_url, 12))
    # when: copied again without saying so: refused, nothing written
    said = refused(2, "store", "copy", "--to", postgres_url, env=env)
    assert said.startswith(f"error: {postgres_url} already holds records (invocations): ")
    assert "--skip-existing" in said
    # then: with --skip-existing the rest is added, and the counts match
    done = json.loads(
        ok("store", "copy", "--to", postgres_url, "--skip-existing", "--json", env=env)
    )
    tables = {t["table"]: t for t in done["tables"]}
    assert done["ok"] is True
    assert tables["invocations"]["copied"] == 18
    assert tables["invocations"]["target_rows"] == 30
    assert tables["deliveries"]["copied"] == 30


async def _copy_part(source_url: str, target_url: str, n: int) -> None:
    import sqlalchemy as sa

    from lambda_destinations.store._tables import invocations

    async with Store.from_url(source_url) as source, Store.from_url(target_url) as target:
        await target.migrate()
        async with source._read() as conn:  # type: ignore[attr-defined]
            rows = [
                dict(r._mapping)
                for r in (await conn.execute(sa.select(invocations).limit(n))).all()
            ]
        async with target._write(atomic=True) as conn:  # type: ignore[attr-defined]
            await conn.execute(sa.insert(invocations), rows)


@pytest.mark.postgres
def test_a_record_saved_into_a_table_copied_already_makes_the_counts_differ(
    tmp_path: Path, postgres_url: str
) -> None:
    # given: a SQLite store whose worker was not stopped: it saves one more record once the
    # copy has moved on from the invocations
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 5)
    saved: list[str] = []

    def progress(table: str, read: int, total: int) -> None:
        if table == "quarantine" and not saved:
            saved.append(table)
            worker = threading.Thread(target=asyncio.run, args=(_save_one_more(url),))
            worker.start()
            worker.join()

    # when: copied
    copies = asyncio.run(_copy(url, postgres_url, progress))
    # then: the record is not in the target, and the counts say so (they were the same, and
    # the copy said ok)
    assert saved
    invocations = {c.table: c for c in copies}["invocations"]
    assert (invocations.source_rows, invocations.target_rows) == (6, 5)
    assert not invocations.matches


async def _save_one_more(url: str) -> None:
    async with Store.from_url(url) as store:
        await save_record(store, failure_record(random.Random(4), condition="RetriesExhausted"), 99)


async def _copy(source_url: str, target_url: str, progress: Any) -> list[Any]:
    from lambda_destinations.store.transfer import copy_store

    async with Store.from_url(source_url) as source, Store.from_url(target_url) as target:
        return await copy_store(source, target, batch=2, progress=progress)


@pytest.mark.postgres
def test_text_with_nul_is_copied_to_postgresql_and_said(tmp_path: Path, postgres_url: str) -> None:
    # given: what a SQLite store holds as it is: a handler's error and an operator's reason
    # with a NUL in them (PostgreSQL's text has no NUL)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 3)
    asyncio.run(_nul_texts(url))
    # when: copied
    done = cli(
        "store",
        "copy",
        "--to",
        postgres_url,
        "--batch",
        "2",
        env={"LAMBDA_DESTINATIONS_STORE": url},
    )
    # then: every row there, NUL as U+FFFD, and the note says which tables
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "with U+FFFD in its place (handler_runs 1, operator_actions 1)" in done.stderr
    runs, actions = asyncio.run(_nul_texts_read(postgres_url))
    assert [run.last_error for run in runs] == ["HTTP 500: \ufffd"]
    assert [action.reason for action in actions] == ["typed \ufffd"]


async def _nul_texts(url: str) -> None:
    async with Store.from_url(url) as store:
        assert await store.claim_handler("k-nul", "webhook", "w", 30)
        await store.release_handler("k-nul", "webhook", "w", error="HTTP 500")
        action = OperatorAction(actor="console a", action="ignore", target="k-nul")
        action.reason = "typed"
        await store.add_action(action)
    # as an earlier release kept a handler's error and an operator's reason: as they were
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        db.execute("UPDATE handler_runs SET last_error = 'HTTP 500: ' || char(0)")
        db.execute("UPDATE operator_actions SET reason = 'typed ' || char(0)")
        db.commit()


async def _nul_texts_read(url: str) -> tuple[list[Any], list[Any]]:
    async with Store.from_url(url) as store:
        return await store.handler_runs("k-nul"), await store.actions("k-nul")


@pytest.mark.postgres
def test_a_row_the_source_cannot_read_stops_the_copy_in_one_line(
    tmp_path: Path, postgres_url: str
) -> None:
    # given: a SQLite store in which something else wrote text that is not UTF-8
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 5)
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db")) as db:
        db.execute("UPDATE quarantine SET reason = CAST(x'61ff62' AS TEXT)")
        db.commit()
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    # when: copied: one line that says where, why and what to do, exit 1 (after the progress
    # bars' labels of the tables copied before)
    done = cli("store", "copy", "--to", postgres_url, env=env)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    said = done.stderr.strip().splitlines()[-1]
    assert done.stderr.count("error:") == 1
    assert said.startswith("error: copying quarantine stopped: the source cannot read a row: ")
    assert "Could not decode to UTF-8 column 'reason'" in said
    assert said.endswith("then run the copy again with --skip-existing")
    # then: with the row corrected, the copy run again finishes the job
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db")) as db:
        db.execute("UPDATE quarantine SET reason = 'decode error'")
        db.commit()
    done = json.loads(
        ok("store", "copy", "--to", postgres_url, "--skip-existing", "--json", env=env)
    )
    assert done["ok"] is True


def test_copy_to_the_same_sqlite_file_by_another_path_is_the_store_itself(
    tmp_path: Path,
) -> None:
    # given: the store named by another spelling of its path (a `..`, a symlink)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 1)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    (tmp_path / "link.db").symlink_to(tmp_path / "store.db")
    itself = "error: --to names the store itself: give the URL of the store to copy into"
    for to in (
        f"sqlite:///{tmp_path}/../{tmp_path.name}/store.db",
        f"sqlite:///{tmp_path}/link.db",
    ):
        # when / then: refused as the same URL is, not as a target that holds records
        assert refused(2, "store", "copy", "--to", to, env=env) == itself
        assert refused(2, "store", "copy", "--to", to, "--skip-existing", env=env) == itself


@pytest.mark.postgres
def test_copy_refusals_name_the_option(tmp_path: Path, postgres_url: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 1)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    said = refused(3, "store", "copy", "--to", "mysql://x@h/db", env=env)
    assert said.startswith("error: store URL 'mysql://x@h/db' (--to): no known scheme")
    said = refused(3, "store", "copy", "--to", postgres_url + "_none", env=env)
    assert "(--to)" in said
    said = refused(2, "store", "copy", "--to", url, env=env)
    assert "names the store itself" in said
    # a source at an earlier schema version would lose columns: migrate it first
    with contextlib.closing(sqlite3.connect(tmp_path / "store.db")) as db:
        db.execute(
            "DELETE FROM schema_migrations "
            "WHERE version = (SELECT max(version) FROM schema_migrations)"
        )
        db.commit()
    said = refused(3, "store", "copy", "--to", postgres_url, env=env)
    assert "run `lambda-destinations migrate` on it first" in said
    # and a new SQLite target is not made for a copy refused
    target = tmp_path / "new" / "copy.db"
    said = refused(3, "store", "copy", "--to", f"sqlite:///{target}", env=env)
    assert "run `lambda-destinations migrate` on it first" in said
    assert not target.exists()


@pytest.mark.postgres
def test_a_copy_as_the_worker_user_names_the_grants_on_the_sequences(
    tmp_path: Path, postgres_url: str
) -> None:
    # given: a database the owner migrated, and the worker's user with the grants the README
    # and doctor give it (the tables' rows, USAGE on the sequences)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 3)
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    ok("migrate", env={"LAMBDA_DESTINATIONS_STORE": postgres_url})
    user = f"ld-Worker {random.randrange(10**6)}"
    server = urlsplit(postgres_url)
    netloc = f"{quote(user)}@{server.hostname}:{server.port or 5432}"
    as_worker = server._replace(netloc=netloc).geturl()
    grants = [
        f'CREATE ROLE "{user}" LOGIN',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{user}"',
        f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{user}"',
    ]
    asyncio.run(_as_admin(postgres_url, grants))
    try:
        # when: copied as that user
        done = cli("store", "copy", "--to", as_worker, env=env)
        assert done.returncode == 3, done.stderr
        assert "Traceback" not in done.stderr
        said = done.stderr.strip().splitlines()[-1]  # after the progress of the tables copied
        # then: one line with the GRANT that lets the copy move the sequences (it said to
        # grant the privileges on the tables the user has)
        assert "permission denied for sequence" in said
        assert "SELECT, INSERT, UPDATE and DELETE on the store's tables" not in said
        assert f'GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{user}"' in said
        assert said.endswith("then run the copy again with --skip-existing")
        # and with that grant, run again, the copy completes
        grant = f'GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{user}"'
        asyncio.run(_as_admin(postgres_url, [grant]))
        done = json.loads(
            ok("store", "copy", "--to", as_worker, "--skip-existing", "--json", env=env)
        )
        assert done["ok"] is True
    finally:
        asyncio.run(_as_admin(postgres_url, [f'DROP OWNED BY "{user}"', f'DROP ROLE "{user}"']))


async def _as_admin(url: str, statements: list[str]) -> None:
    import asyncpg

    admin = await asyncpg.connect(url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


# -- the switch: a message delivered again after the copy ---------------------------------------


@pytest.mark.postgres
def test_a_message_delivered_again_after_the_switch_runs_no_effect_twice(
    sqs, make_queue, endpoint_url: str, tmp_path: Path, postgres_url: str
) -> None:
    # given: a worker on SQLite that ran an effect for each of 4 failure records
    (tmp_path / "effects_mod.py").write_text(EFFECTS)
    effects = tmp_path / "effects.txt"
    config = tmp_path / "ld.toml"
    config.write_text(
        'handler_modules = ["effects_mod"]\n'
        '[[routes]]\nhandlers = ["persist", "effect"]\n'
        f'[handlers.effect]\nfile = "{effects}"\n'
    )
    queue, _dlq = make_queue("switch")
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "LAMBDA_DESTINATIONS_CONFIG": str(config),
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_QUEUES": queue,
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'store.db'}",
    }
    rng = random.Random(11)
    bodies = [json.dumps(failure_record(rng, condition="RetriesExhausted")) for _ in range(4)]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    ok("run", "--once", env=env)
    assert len(effects.read_text().splitlines()) == 4
    # when: the store is copied to PostgreSQL, and the same messages come again to a worker
    # on it (SQS delivers a message again after the switch: one in flight at the stop)
    ok("store", "copy", "--to", postgres_url, env=env)
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    ran = json.loads(
        ok(
            "run", "--once", "--json", env={**env, "LAMBDA_DESTINATIONS_STORE": postgres_url}
        ).splitlines()[-1]
    )
    # then: each is acknowledged as the duplicate it is, and no effect ran again
    assert ran["duplicates"] >= 4
    assert ran["acked"] == ran["received"]
    assert len(effects.read_text().splitlines()) == 4


def test_a_target_a_newer_release_migrated_is_named_in_the_refusal(tmp_path: Path) -> None:
    # given: a source at this release's schema, and a target a newer release migrated with a
    # version that lets no earlier release write
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 1)
    target = tmp_path / "newer.db"
    seed(f"sqlite:///{target}", 0)
    with contextlib.closing(sqlite3.connect(target)) as db:
        db.execute(
            "INSERT INTO schema_migrations (version, applied_at, oldest_writer) "
            "SELECT max(version) + 1, '2026-12-01 00:00:00.000000', max(version) + 1 "
            "FROM schema_migrations"
        )
        db.commit()
    env = {"LAMBDA_DESTINATIONS_STORE": url}
    # when: copied into it
    said = refused(3, "store", "copy", "--to", f"sqlite:///{target}", env=env)
    # then: the line says the store that is newer is the target, not the one copied from
    assert said.startswith(f"error: store sqlite:///{target} (--to): the store was migrated ")
    assert count(target, "invocations") == 0


def _cut_once_invocations_are_copied(
    monkeypatch: pytest.MonkeyPatch, cut: Callable[[], Awaitable[None]]
) -> None:
    """Have ``cut()`` end a copy once it has copied the invocations, before the next table."""
    from lambda_destinations.store import transfer

    keep_ids_after = transfer._keep_ids_after

    async def then_cut(source: Any, target: Any, table: Any) -> None:
        await keep_ids_after(source, target, table)
        if table.name == "invocations":
            await cut()

    monkeypatch.setattr(transfer, "_keep_ids_after", then_cut)


async def _ctrl_c() -> None:
    raise KeyboardInterrupt


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["interrupted", "connection lost"])
def test_a_copy_cut_short_says_the_rows_copied_stay_and_how_to_finish(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, cut: str
) -> None:
    from click.testing import CliRunner

    from lambda_destinations.cli import cli as main

    # given: a copy that stops once it has copied the invocations
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 7)
    # into PostgreSQL through a proxy that drops every connection once taken down
    parts = urlsplit(postgres_url)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)

    async def connection_lost() -> None:
        proxy.take_down()

    _cut_once_invocations_are_copied(
        monkeypatch, _ctrl_c if cut == "interrupted" else connection_lost
    )

    # when
    with proxy.running():
        proxied = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
        result = CliRunner().invoke(
            main, ["store", "copy", "--store", url, "--to", proxied, "--batch", "3"]
        )

    # then: its last lines say the 14 rows copied (the deliveries, then the invocations) stay
    # and to run it again with --skip-existing (they said `interrupted`, or the connection's
    # error, alone), and so run again it finishes
    assert result.exit_code == (130 if cut == "interrupted" else 4), result.output
    assert "Traceback" not in result.stderr
    said = result.stderr.strip().splitlines()
    if cut == "interrupted":
        assert said[-1] == "interrupted"
    assert said[-2 if cut == "interrupted" else -1].endswith(
        "the 14 rows copied so far stay in the target: run the copy again with "
        "--skip-existing to add the rest"
    ), said
    monkeypatch.undo()
    again = CliRunner().invoke(
        main, ["store", "copy", "--store", url, "--to", postgres_url, "--skip-existing", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ok"] is True


# What a `store copy` process runs: the copy, with the target database made to refuse every
# connection (ALLOW_CONNECTIONS false, its sessions ended) once the invocations are copied.
REFUSING_COPY = """
import asyncpg, sys
from lambda_destinations.cli import main
from lambda_destinations.store import transfer

keep_ids_after = transfer._keep_ids_after

async def then_refuse(source, target, table):
    await keep_ids_after(source, target, table)
    if table.name == "invocations":
        base, name = sys.argv[-1].rsplit("/", 1)
        admin = await asyncpg.connect(base + "/postgres")
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                name,
            )
        finally:
            await admin.close()

transfer._keep_ids_after = then_refuse
main()
"""


@pytest.mark.postgres
def test_a_target_that_stops_taking_connections_mid_copy_is_one_line_and_the_way_on(
    tmp_path: Path, postgres_url: str
) -> None:
    # given: a store of 7 records, and a target database that refuses every connection once
    # the invocations are copied (SQLSTATE 55000, "… is not currently accepting connections")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    seed(url, 7)
    env = {**os.environ, "LAMBDA_DESTINATIONS_STORE": url, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}
    try:
        # when: copied by a real process
        done = subprocess.run(
            [sys.executable, "-c", REFUSING_COPY, "store", "copy", "--to", postgres_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        asyncio.run(_allow_connections(postgres_url))
    # then: one line naming --to, the refusal and the way on, exit 4 (the store cannot be
    # reached), no traceback
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("error:") == 1, done.stderr
    said = done.stderr.strip().splitlines()[-1]
    assert said.startswith(f"error: store {postgres_url} (--to) is unavailable: "), said
    assert "is not currently accepting connections" in said
    assert said.endswith(
        "the 14 rows copied so far stay in the target: run the copy again with "
        "--skip-existing to add the rest"
    ), said
    # and so run again, once the database takes connections, it finishes
    again = json.loads(
        ok("store", "copy", "--to", postgres_url, "--skip-existing", "--json", env=env)
    )
    assert again["ok"] is True


async def _allow_connections(url: str) -> None:
    import asyncpg

    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()
