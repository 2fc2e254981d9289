"""Ending the processes a test started, whatever state the test left them in."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

# The command line, as the installed entry point runs it.
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]


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
    prints at start; with ``migrate``, the store of ``env`` is made first (the console makes
    none). Its stderr stays open for the test to read on; the test ends it (``reap``)."""
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
        found = re.search(r"console\s+(http://\S+?)/?$", line.strip())
        if found:
            return process, found[1]
        if not line and process.poll() is not None:
            break
    reap(process)
    pytest.fail(f"the console did not start: {process.stderr.read()[-2000:]}")


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: the child's files may not grow past ``limit`` bytes (ulimit -f; Python
    ignores SIGXFSZ, so a write past it fails with EFBIG, which SQLite calls a disk I/O
    error)."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited
