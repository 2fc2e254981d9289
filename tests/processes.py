"""Starting and ending the processes a test runs: the command line, a free port for a server,
limits on a child's files, and reaping whatever state the test left them in."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

# The command line, as the installed entry point runs it.
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on: the kernel's pick for port 0, closed again at
    once, so a server the test starts next can take it (or a client finds it refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def debian_program(name: str, package: str, require: str) -> str:
    """The path of ``name``, a program of Debian's ``package``; the test skips without it, or
    fails where the variable ``require`` (LAMBDA_DESTINATIONS_REQUIRE_...) is 1: CI installs
    the package and must run these tests. ``/usr/sbin`` is searched too (nginx is there)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        reason = f"needs {name}, of Debian's {package} package (apt-get install {package})"
        if os.environ.get(require) == "1":
            pytest.fail(f"{reason}; {require}=1 forbids skipping")
        pytest.skip(reason)
    return found


def prometheus_tool(name: str = "prometheus") -> str:
    """One of Debian's ``prometheus`` package's programs (``prometheus``, ``promtool``)."""
    return debian_program(name, "prometheus", "LAMBDA_DESTINATIONS_REQUIRE_PROMETHEUS")


def pgbouncer_program() -> str:
    return debian_program("pgbouncer", "pgbouncer", "LAMBDA_DESTINATIONS_REQUIRE_PGBOUNCER")


def nginx_program() -> str:
    """nginx, the reverse proxy the console is tested behind."""
    return debian_program("nginx", "nginx-light", "LAMBDA_DESTINATIONS_REQUIRE_NGINX")


def listening(process: subprocess.Popen[Any], port: int, seconds: float = 30) -> bool:
    """Whether a server ``process`` the test started listens on ``port`` of 127.0.0.1 within
    ``seconds`` (False as soon as it has exited)."""
    deadline = time.monotonic() + seconds
    while process.poll() is None and time.monotonic() < deadline:
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.connect(("127.0.0.1", port))
            return True
        time.sleep(0.05)
    return False


def ctrl_c_as_in_a_terminal() -> None:
    """In the child, before it runs: SIGINT at its default action, as a terminal's foreground
    command has it. A suite started in the background (``make check &``, a CI runner's
    ``nohup … &``) ignores SIGINT, and a child inherits that: Python then installs no handler,
    and a Ctrl-C sent to the child would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def reap(*processes: subprocess.Popen[Any]) -> None:
    """Kill each process that still runs and wait for it, so that no ``Popen`` outlives its
    test unwaited: one collected later, during another test, warns "subprocess is still
    running", which this suite's warnings-as-errors would charge to that other test."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def start_console(
    env: dict[str, str], *extra: str, migrate: bool = False
) -> tuple[subprocess.Popen[str], str]:
    """``lambda-destinations console --port 0`` as a process, and its address from the line it
    prints at start (where it listens, when it names a public URL too); with ``migrate``, the
    store of ``env`` is made first (the console makes none). Its stderr stays open for the test
    to read on; the test ends it (``reap``)."""
    if migrate:
        made = subprocess.run([*ENTRY, "migrate"], env=env, capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
    process = subprocess.Popen(
        [*ENTRY, "console", "--port", "0", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"(?:console|listening)\s+(http://\S+?)/?$", line.strip())
        if found:
            return process, found[1]
        if not line and process.poll() is not None:
            break
    reap(process)
    said = process.stderr.read()[-2000:]
    process.stderr.close()
    pytest.fail(f"the console did not start: {said}")


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: the child's files may not grow past ``limit`` bytes (ulimit -f; Python
    ignores SIGXFSZ, so a write past it fails with EFBIG, which SQLite calls a disk I/O
    error)."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


# Run in on_a_small_disk's namespace (argv: the folder, the bytes to leave free, the commands to
# run first as JSON, then the command to run in its place): run those, each required to
# succeed, fill the disk but for those bytes, then become the last command.
_FILL_THEN_RUN = """
import json, os, subprocess, sys
folder, leave, first, command = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]
for each in first:
    made = subprocess.run(each, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
with open(f"{folder}/filler", "wb", buffering=0) as filler:
    try:
        while True:
            filler.write(bytes(4096))
    except OSError:
        pass
os.truncate(f"{folder}/filler", max(0, os.path.getsize(f"{folder}/filler") - leave))
os.execvp(command[0], command)
"""


def on_a_small_disk(
    folder: Path,
    *command: str,
    leave: int,
    first: Sequence[Sequence[str]] = (),
    size: str = "4m",
) -> list[str]:
    """The command line that runs ``command`` with ``folder`` on a tmpfs of ``size`` filled but
    for ``leave`` bytes, after the commands ``first`` (a ``migrate``) ran there with room, in a
    mount namespace of its own (no privileges needed where unprivileged user namespaces are
    allowed); skips the test where none can be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) for a small tmpfs")
    folder.mkdir(exist_ok=True)
    mount = f'mount -t tmpfs -o size={size} tmpfs "$1" && shift && exec "$@"'
    namespace = [unshare, "-rm", "sh", "-c", mount, "sh", str(folder)]
    probe = subprocess.run([*namespace, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    fill = [sys.executable, "-c", _FILL_THEN_RUN, str(folder), str(leave), json.dumps(first)]
    return [*namespace, *fill, *command]
