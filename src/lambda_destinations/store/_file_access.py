"""Whether this process's user may read and write a SQLite store's files, in SQLite's stead.

SQLite answers a file its user may not open with "unable to open database file" and a
read-only one with "attempt to write a readonly database", and opens a read-only file for
reading without a word: neither says that it is the file's permissions, nor whose.
"""

from __future__ import annotations

import os
import pwd
import resource
import stat
from pathlib import Path

# Bytes of room below which a file is taken to have none left (the disk full, or the file
# size limit reached): SQLite's I/O error is put down to that, and a writing ping fails.
NO_ROOM = 1024 * 1024

# The files SQLite keeps beside the database file in WAL mode, with the file's permissions.
_SIDE_FILES = ("-wal", "-shm")


def access_problem(path: Path) -> str | None:
    """``"what is wrong: the fix"`` when this user may not read and write ``path`` (or the
    ``-wal`` and ``-shm`` beside it, or create them in its folder); None when it may, when
    the file is not there (said elsewhere), and for root, whom permissions do not stop."""
    try:
        found = path.stat()
    except OSError:
        return None
    if problem := _file_problem(path, found):
        return problem
    for side in (path.with_name(path.name + suffix) for suffix in _SIDE_FILES):
        try:
            found = side.stat()
        except OSError:  # SQLite creates it when it opens the file
            if problem := folder_problem(path.parent.absolute(), "the file's -wal and -shm"):
                return problem
            continue
        if problem := _file_problem(side, found):
            return problem
    return None


def _file_problem(file: Path, found: os.stat_result) -> str | None:
    """The problem when this user may not read and write ``file``, its fix included."""
    if os.access(file, os.R_OK | os.W_OK):
        return None
    if _read_only_file_system(file):
        return (
            f"{file} is on a read-only file system: move the store to a writable one, or "
            "mount it read-write"
        )
    what = "read-only" if os.access(file, os.R_OK) else "neither readable nor writable"
    return (
        f"{file} is {what} for user {_me()} ({_mode_and_owner(found)}): fix its permissions or "
        f"owner ({_fix(file, found, 'chmod 600')})"
    )


def creation_problem(path: Path) -> str | None:
    """``"what is wrong: the fix"`` when this user may not create the file at ``path``: the
    nearest folder of its path that exists is not writable for it (its missing folders would
    be made there); None when it is."""
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder_problem(folder, "the file")


def folder_problem(folder: Path, creates: str) -> str | None:
    """The problem when this user may not create files in ``folder`` (SQLite creates
    ``creates`` there), its fix included; None when it may, or ``folder`` is no folder."""
    try:
        found = folder.stat()
    except OSError:
        return None
    if not stat.S_ISDIR(found.st_mode) or os.access(folder, os.W_OK | os.X_OK):
        return None
    if _read_only_file_system(folder):
        return (
            f"the folder {folder} is on a read-only file system, and SQLite creates {creates} "
            "there: move the store to a writable one, or mount it read-write"
        )
    return (
        f"the folder {folder} ({_mode_and_owner(found)}) is not writable for user {_me()}, and "
        f"SQLite creates {creates} there: fix its permissions or owner "
        f"({_fix(folder, found, 'chmod u+rwx')})"
    )


def _mode_and_owner(found: os.stat_result) -> str:
    return f"mode {stat.S_IMODE(found.st_mode):03o}, owner {_user_name(found.st_uid)}"


def _fix(path: Path, found: os.stat_result, chmod: str) -> str:
    """The command that lets this user at ``path``: ``chmod`` for its owner, else a ``chown``
    to this user's uid (a number: the host of a container's volume knows no image's names)."""
    return f"{chmod} {path}" if found.st_uid == os.geteuid() else f"chown {os.geteuid()} {path}"


def _read_only_file_system(path: Path) -> bool:
    """Whether ``path`` is on a file system mounted read-only (which stops root too)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _me() -> str:
    return _user_name(os.geteuid())


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's uid with no passwd entry
        return str(uid)


def no_room(path: Path, largest: int, fix: str) -> tuple[str, str] | None:
    """Why ``path`` has no room to grow, and the fix (``fix`` for a full disk), when that is
    so: the disk holding it with under NO_ROOM free, or this process's file size limit within
    NO_ROOM of ``largest`` (the size of the largest of its files); None otherwise."""
    try:
        disk = os.statvfs(path.absolute().parent)
    except OSError:
        return None
    # The blocks this process may fill: root's include those the file system keeps for it.
    free = (disk.f_bfree if os.geteuid() == 0 else disk.f_bavail) * disk.f_frsize
    if free < NO_ROOM:
        return f"the disk holding the file has {free // 1024} KiB free", fix
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and largest + NO_ROOM >= limit:
        return (
            f"the file is at or near this process's file size limit, {limit} bytes",
            "raise the limit (ulimit -f)",
        )
    return None
