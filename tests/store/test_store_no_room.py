"""A SQLite file with no room to grow, met by a command: a full disk, the file size limit.

SQLite says "database or disk is full" only when a write into the file finds the disk full;
opening a file that no process has open sizes its ``-shm`` file, and that fails as a "disk I/O
error", as does a write past the process's file size limit. Each line still says what to do.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]

# Run in a private mount namespace on a small tmpfs (argv: the folder, ENTRY as JSON): make a
# store, fill the disk, then ask the store for something, as an operator would.
ON_A_FULL_DISK = """
import json, os, subprocess, sys
folder, entry = sys.argv[1], json.loads(sys.argv[2])
env = {**os.environ, "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{folder}/store.db"}
made = subprocess.run([*entry, "migrate"], env=env, capture_output=True, text=True)
assert made.returncode == 0, made.stderr
with open(f"{folder}/filler", "wb") as filler:
    try:
        while True:
            filler.write(bytes(64 * 1024))
            filler.flush()
    except OSError:
        pass
listed = subprocess.run([*entry, "failures", "list"], env=env, capture_output=True, text=True)
print(json.dumps({"code": listed.returncode, "stderr": listed.stderr}))
"""


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_write_past_the_file_size_limit_names_the_limit(tmp_path: Path) -> None:
    # given: a process whose files may not grow past 64 KiB (ulimit -f; Python ignores
    # SIGXFSZ, so a write past it fails with EFBIG, which SQLite calls a disk I/O error)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    limit = 64 * 1024

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # when: migrate writes the store's tables
    result = subprocess.run(
        [*ENTRY, "migrate", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limited,
    )

    # then: one line naming the limit and its fix (it said "check the disk holding the file")
    assert result.returncode == 4, result.stderr
    assert error_lines(result.stderr) == [
        f"error: store {url} (--store) is unavailable: disk I/O error (the file reached this "
        f"process's file size limit, {limit} bytes): raise the limit (ulimit -f)"
    ]


def test_a_full_disk_says_to_free_space_where_sqlite_says_disk_io_error(tmp_path: Path) -> None:
    # given: a tmpfs of 4 MiB in a mount namespace of our own (no privileges needed where
    # unprivileged user namespaces are allowed)
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) for a small tmpfs")
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = 'mount -t tmpfs -o size=4m tmpfs "$1" && shift && exec "$@"'
    probe = subprocess.run(
        [unshare, "-rm", "sh", "-c", mount, "sh", str(folder), "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")

    # when: a store is made on it, the disk filled, and `failures list` run (a read: the
    # store has no -shm file, since no process has it open)
    script = [sys.executable, "-c", ON_A_FULL_DISK, str(folder), json.dumps(ENTRY)]
    inside = subprocess.run(
        [unshare, "-rm", "sh", "-c", mount, "sh", str(folder), *script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inside.returncode == 0, inside.stderr
    listed = json.loads(inside.stdout)

    # then: one line that says to free space (it said "check the disk holding the file")
    assert listed["code"] == 4, listed["stderr"]
    [line] = error_lines(listed["stderr"])
    url = f"sqlite:///{folder / 'store.db'}"
    assert re.fullmatch(
        re.escape(f"error: store {url} (LAMBDA_DESTINATIONS_STORE) is unavailable: ")
        + r"disk I/O error \(the disk holding the file has \d+ KiB free\): "
        + re.escape("free space on the disk holding the file"),
        line,
    ), line
