"""A SQLite file with no room to grow: a full disk, the file size limit.

SQLite says "database or disk is full" only when a write into the file finds the disk full;
opening a file that no process has open sizes its ``-shm`` file, and that fails as a "disk I/O
error", as does a write past the process's file size limit. Each line still says what to do.
And a writing ping, which tells the worker it may receive again, fails while the file has
almost no room left, although its one row would still fit. A checkpoint that finds no room
to copy the WAL into the file fails silently when SQLite makes it at close: `migrate` makes its
own, and says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from lambda_destinations.store import Store
from processes import ENTRY, file_size_limit, on_a_small_disk

# Run on a disk full but for a few bytes, the store made there first (argv: its URL): ask the
# store for something as an operator would (`failures list`), and ping it with a write as the
# worker's store watcher does.
LIST_AND_PING = """
import asyncio, json, os, subprocess, sys
from lambda_destinations.store import Store
url, entry = sys.argv[1], json.loads(sys.argv[2])
env = {**os.environ, "LAMBDA_DESTINATIONS_STORE": url}
listed = subprocess.run([*entry, "failures", "list"], env=env, capture_output=True, text=True)

async def ping():
    try:
        async with Store.from_url(url) as store:
            await store.ping(write=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "answered"

print(json.dumps({"code": listed.returncode, "stderr": listed.stderr, "ping": asyncio.run(ping())}))
"""

# Ping a store with a write (argv: its URL), as the worker's store watcher does.
PING = """
import asyncio, json, sys
from lambda_destinations.store import Store

async def ping():
    try:
        async with Store.from_url(sys.argv[1]) as store:
            await store.ping(write=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "answered"

print(json.dumps(asyncio.run(ping())))
"""


def on_a_small_tmpfs(tmp_path: Path, leave: int) -> dict[str, Any]:
    """LIST_AND_PING's findings, on a tmpfs of 4 MiB filled but for ``leave`` bytes after a
    store was made there (see processes.on_a_small_disk)."""
    folder = tmp_path / "disk"
    url = f"sqlite:///{folder}/store.db"
    command = on_a_small_disk(
        folder,
        *[sys.executable, "-c", LIST_AND_PING, url, json.dumps(ENTRY)],
        leave=leave,
        first=[[*ENTRY, "migrate", "--store", url]],
    )
    inside = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert inside.returncode == 0, inside.stderr
    found: dict[str, Any] = json.loads(inside.stdout)
    return found


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_write_past_the_file_size_limit_names_the_limit(tmp_path: Path) -> None:
    # given: a process whose files may not grow past 64 KiB
    url = f"sqlite:///{tmp_path / 'store.db'}"
    limit = 64 * 1024

    # when: migrate writes the store's tables
    result = subprocess.run(
        [*ENTRY, "migrate", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=file_size_limit(limit),
    )

    # then: one line naming the limit and its fix (it said "check the disk holding the file")
    assert result.returncode == 4, result.stderr
    assert error_lines(result.stderr) == [
        f"error: store {url} (--store) is unavailable: disk I/O error (the file is at or near "
        f"this process's file size limit, {limit} bytes): raise the limit (ulimit -f)"
    ]


def test_a_full_disk_says_to_free_space_where_sqlite_says_disk_io_error(tmp_path: Path) -> None:
    # given / when: a store on a tmpfs filled to the last byte, and `failures list` run (a
    # read: the store has no -shm file, since no process has it open)
    found = on_a_small_tmpfs(tmp_path, leave=0)

    # then: one line that says to free space (it said "check the disk holding the file")
    assert found["code"] == 4, found["stderr"]
    [line] = error_lines(found["stderr"])
    url = f"sqlite:///{tmp_path / 'disk' / 'store.db'}"
    assert re.fullmatch(
        re.escape(f"error: store {url} (LAMBDA_DESTINATIONS_STORE) is unavailable: ")
        + r"disk I/O error \(the disk holding the file has \d+ KiB free\): "
        + re.escape("free space on the disk holding the file"),
        line,
    ), line


def test_a_writing_ping_fails_on_a_disk_full_but_for_a_few_pages(tmp_path: Path) -> None:
    # given / when: a store on a tmpfs filled but for 256 KiB, pinged with a write, as the
    # worker's watcher does before it resumes receiving
    found = on_a_small_tmpfs(tmp_path, leave=256 * 1024)

    # then: a read still answers (`failures list` exits 0), but the ping fails, saying to free
    # space: its one row fits there, a batch of saves does not, and the worker resumed to fail
    # a round of messages at every pause for as long as the disk stayed full
    assert found["code"] == 0, found["stderr"]
    url = f"sqlite:///{tmp_path / 'disk' / 'store.db'}"
    assert re.fullmatch(
        re.escape(f"StoreUnavailable: store {url} is unavailable: ")
        + r"the disk holding the file has \d+ KiB free: "
        + re.escape("free space on the disk holding the file"),
        found["ping"],
    ), found["ping"]


def test_a_writing_ping_fails_near_the_file_size_limit(tmp_path: Path) -> None:
    # given: a migrated store, and a process whose files may grow by 256 KiB at most: room for
    # the ping's one row, not for a batch of saves
    path = tmp_path / "store.db"
    made = subprocess.run(
        [*ENTRY, "migrate", "--store", f"sqlite:///{path}"], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    limit = path.stat().st_size + 256 * 1024

    # when: it pings the store with a write
    pinged = subprocess.run(
        [sys.executable, "-c", PING, f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=file_size_limit(limit),
    )

    # then: the ping fails, naming the limit and its fix (it answered)
    assert pinged.returncode == 0, pinged.stderr
    assert json.loads(pinged.stdout) == (
        f"StoreUnavailable: store sqlite:///{path} is unavailable: the file is at or near this "
        f"process's file size limit, {limit} bytes: raise the limit (ulimit -f)"
    )


# Migrate the store at its URL (argv), then check it: both exit codes and outputs, as JSON.
MIGRATE_THEN_CHECK = """
import json, subprocess, sys
entry = json.loads(sys.argv[2])
found = []
for extra in ([], ["--check"]):
    command = [*entry, "migrate", "--store", sys.argv[1], *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    found.append({"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr})
print(json.dumps(found))
"""


async def migrated_sizes(path: Path) -> tuple[int, int]:
    """The bytes a migration writes to the WAL, and the database file's once they are in it."""
    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        wal = await asyncio.to_thread(os.path.getsize, f"{path}-wal")
    return wal, await asyncio.to_thread(os.path.getsize, path)


def test_migrate_whose_wal_cannot_be_copied_into_the_file_says_so(tmp_path: Path) -> None:
    # given: a disk with room for the migrations' WAL (and the -shm file), not for the pages
    # the checkpoint then copies into the database file: about half of those
    wal, size = asyncio.run(migrated_sizes(tmp_path / "sized.db"))
    leave = wal + 48 * 1024 + size // 2
    folder = tmp_path / "disk"
    url = f"sqlite:///{folder}/store.db"
    command = on_a_small_disk(
        folder, sys.executable, "-c", MIGRATE_THEN_CHECK, url, json.dumps(ENTRY), leave=leave
    )

    # when: migrate runs there, then migrate --check
    inside = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert inside.returncode == 0, inside.stderr
    migrated, checked = json.loads(inside.stdout)

    # then: migrate says what it applied, and in one line that the WAL could not be copied into
    # the file, the fix, and that the log keeps the changes; exit 4 (it exited 0, the disk
    # left full, with nothing said)
    assert migrated["stdout"].startswith(f"{url}: applied 1, 2, "), migrated
    assert error_lines(migrated["stderr"]) == [
        f"error: store {url} (--store) is unavailable: the schema is up to date, but its "
        "write-ahead log (the file's -wal) could not be copied into the database file: "
        "database or disk is full: free space on the disk holding the file; the log keeps "
        "every change meanwhile, and the next process to open the store copies it"
    ], migrated
    assert migrated["code"] == 4
    # and the migrations are there, in the WAL
    assert checked["stdout"] == f"{url}: up to date\n", checked
