"""A SQLite store copied, as of one moment, into a file of its own while the worker writes.

SQLite's online backup API copies the database's pages inside one read transaction, opened on
the source before the first page and held to the last: in WAL mode a reader never blocks the
writer, so the worker's saves go on, and the copy holds every commit made before it began and
none made after. The pages are copied a few thousand at a time, so that a Ctrl-C ends the copy
at the next step (the read transaction held across the steps keeps them one snapshot: without
it, each commit of the worker would start the copy again). A plain ``cp`` of the file does not:
what the worker committed since its last checkpoint is in the ``-wal`` file, not the database
file, and a checkpoint writing pages while ``cp`` reads them can tear the copy.

The copy is written to a hidden file beside the target, checked (``PRAGMA quick_check``),
made a single file (``journal_mode=DELETE``: no ``-wal`` to carry along), synced, and only then
given the target's name, so a full disk or an interruption never leaves a half-written backup
under that name.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from lambda_destinations.errors import BackupError
from lambda_destinations.store._file_access import no_room
from lambda_destinations.store.base import Backup

_FULL = (
    "free space on the disk it goes to (it needs about the store's size), "
    "or give a path on another disk"
)
# Pages copied a step (16 MB of 4 kB pages): how soon a Ctrl-C ends the copy.
_PAGES = 4096


class BackupStopped(Exception):
    """The backup was asked to stop (a Ctrl-C): nothing was left under the target's name."""


def back_up(
    source: sqlite3.Connection,
    target: Path,
    *,
    replace: bool,
    stop: threading.Event | None = None,
) -> Backup:
    """Copy ``source``'s database into ``target``; FileExistsError if ``target`` exists and
    not ``replace``, BackupError if it cannot be written, BackupStopped once ``stop`` is set."""
    started = time.perf_counter()
    stop = stop or threading.Event()
    partial = _partial_file(target)
    try:
        with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            _copy_pages(source, copy, stop)
            copy.execute("PRAGMA journal_mode=DELETE")
            copy.set_progress_handler(stop.is_set, 10_000)  # a Ctrl-C ends the check too
            problem = copy.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise BackupError(f"the copy in {target} failed its check ({problem})")
        _sync(partial)
        if stop.is_set():
            raise BackupStopped
        if replace:
            os.replace(partial, target)
        else:
            os.link(partial, target)  # refuses a target made meanwhile, unlike a rename
        _sync(target.parent)
    except (sqlite3.Error, OSError) as exc:
        if stop.is_set():
            raise BackupStopped from None
        if isinstance(exc, FileExistsError):
            raise
        if (room := _no_room(partial)) is not None:
            raise BackupError(
                f"cannot write {target} ({_reason(exc)}: {room[0]}): {room[1]}"
            ) from None
        if not _target_problem(exc):
            raise  # the store's own (a damaged file, its disk): the store says which
        raise BackupError(f"cannot write {target} ({_reason(exc)}): {_fix(exc)}") from None
    finally:
        # A copy that failed part-way may leave its rollback journal (or, before it was made
        # one file, its -wal and -shm: it is the store's copy, in WAL mode) beside it.
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{partial}{suffix}")
    return Backup(target, target.stat().st_size, time.perf_counter() - started)


def _copy_pages(
    source: sqlite3.Connection, copy: sqlite3.Connection, stop: threading.Event
) -> None:
    """Every page of ``source`` into ``copy``, as of one moment, step by step until ``stop``."""

    def step(_status: int, _remaining: int, _pages: int) -> None:
        if stop.is_set():
            raise BackupStopped  # sqlite3 ends the backup, and raises it

    with _snapshot(source):
        if stop.is_set():
            raise BackupStopped
        source.backup(copy, pages=_PAGES, progress=step)


@contextlib.contextmanager
def _snapshot(source: sqlite3.Connection) -> Iterator[None]:
    """A read transaction on ``source`` for the block: every step of the backup reads it."""
    if source.in_transaction:
        yield
        return
    source.execute("BEGIN")
    try:
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read begins
        yield
    finally:
        source.execute("ROLLBACK")


def _partial_file(target: Path) -> Path:
    """A new, empty, owner-only file beside ``target`` (the same file system, for the rename)."""
    for attempt in range(100):
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}-{attempt}")
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        except OSError as exc:
            raise BackupError(f"cannot write {target} ({_reason(exc)}): {_fix(exc)}") from None
        return partial
    raise BackupError(f"cannot write {target}: remove the .{target.name}.partial-* files beside it")


def _no_room(partial: Path) -> tuple[str, str] | None:
    """Why the copy could not grow, when its disk is full or it reached the file size limit."""
    try:
        size = partial.stat().st_size
    except OSError:
        size = 0
    return no_room(partial, size, _FULL)


def _target_problem(exc: BaseException) -> bool:
    """Whether ``exc`` is about the file written (room, permissions), not the store read."""
    if isinstance(exc, OSError):
        return True
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_CANTOPEN"))


def _sync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _fix(exc: BaseException) -> str:
    text = _reason(exc).lower()
    if "full" in text or "no space" in text or "quota" in text:
        return _FULL
    if "permission" in text or "read-only" in text or "readonly" in text:
        return "give a path in a folder this user may write"
    return "give a path on a disk that works"
