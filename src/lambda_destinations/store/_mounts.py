"""Whether a SQLite store's file is on a network file system, read from the mount table.

SQLite's WAL keeps its index in the ``-shm`` file, memory-mapped by every process that has the
database open: processes on two hosts (two tasks on one EFS volume during a rolling deploy)
each see their own copy, and its locks are only as good as the network file system's, so
commits can be lost or the file corrupted, silently, after the worker deleted their messages
from SQS. SQLite's own documentation says so: "WAL does not work over a network filesystem"
(https://www.sqlite.org/wal.html, https://www.sqlite.org/useovernet.html).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")

# The types /proc/self/mountinfo gives the mounts of file systems served over a network: NFS
# (EFS and Filestore mount as nfs4), SMB (Azure Files), and the cluster and FUSE-over-network
# ones (CephFS, GlusterFS, Lustre, AFS, sshfs).
NETWORK_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "fuse.ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "afs",
        "fuse.sshfs",
    }
)

_ESCAPE = re.compile(r"\\([0-7]{3})")


def file_system_type(path: Path, mountinfo: str) -> str | None:
    """The type of the file system holding ``path`` (which need not exist yet), as the mount
    table ``mountinfo`` (the text of a ``/proc/PID/mountinfo``) says: that of the deepest
    mount point above it, the last mounted where two share one. None when none is above it."""
    target = os.path.realpath(path)
    found: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        words = fields.split()
        if len(words) < 5 or not rest:
            continue
        point = _ESCAPE.sub(lambda match: chr(int(match[1], 8)), words[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (found is None or len(point) >= found[0]):
            found = (len(point), rest.split()[0])
    return None if found is None else found[1]


def network_file_system_problem(path: Path) -> str | None:
    """``"what is wrong: the fix"`` when ``path`` is on a network file system; None when it
    is not, or the mount table (MOUNTINFO) cannot be read (not Linux)."""
    found = network_file_system(path)
    return None if found is None else f"{found[0]}: {found[1]}"


def network_file_system(path: Path) -> tuple[str, str] | None:
    """What is wrong and the fix, apart, when ``path`` is on a network file system (see
    :func:`network_file_system_problem`)."""
    try:
        table = MOUNTINFO.read_text()
    except OSError:
        return None
    kind = file_system_type(path, table)
    if kind not in NETWORK_TYPES:
        return None
    return (
        f"{path} is on a network file system ({kind}), where SQLite's write-ahead log and "
        "locks do not hold (two hosts at once corrupt it)",
        "put the file on a local volume, or use PostgreSQL (postgresql://…) for a store that "
        "outlives the host or is shared",
    )
