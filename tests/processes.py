"""Ending the processes a test started, whatever state the test left them in."""

from __future__ import annotations

import subprocess
from typing import Any


def reap(*processes: subprocess.Popen[Any]) -> None:
    """Kill each process that still runs and wait for it, so that no ``Popen`` outlives its
    test unwaited: one collected later, during another test, warns "subprocess is still
    running", which this suite's warnings-as-errors would charge to that other test."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
