"""Runs a Python program and records its drain window, for bench/compare.py.

usage: python compare_probe.py OUT.json SCRIPT [ARGS...]

Every aiobotocore call goes through ``AioBaseClient._make_api_call``; wrapped here, it marks
the monotonic clock, the process's CPU time (every thread's) and the part of it spent in the
kernel (system time) when the first ReceiveMessage starts and each time a delete returns. At
exit, OUT.json gets the first mark, the last delete's mark and the count of messages deleted:
the drain window, with the interpreter's start-up, connecting and the closing empty receives
left out. The program runs unchanged.
"""

from __future__ import annotations

import argparse
import atexit
import json
import resource
import runpy
import sys
import time
from pathlib import Path
from typing import Any

from aiobotocore.client import AioBaseClient

DELETES = ("DeleteMessageBatch", "DeleteMessage")


def _mark() -> tuple[float, float, float]:
    return (
        time.monotonic(),
        time.process_time(),
        resource.getrusage(resource.RUSAGE_SELF).ru_stime,
    )


def install(window: dict[str, Any]) -> None:
    """Wrap the client's one call path so that it marks the window's start and end."""
    original = AioBaseClient._make_api_call

    async def marked(self: AioBaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "ReceiveMessage" and "start" not in window:
            window["start"] = _mark()
        result = await original(self, operation, params)
        if operation in DELETES:
            window["end"] = _mark()
            window["deleted"] += len(result.get("Successful", [])) if "Entries" in params else 1
        return result

    AioBaseClient._make_api_call = marked  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run SCRIPT and write its drain window to OUT (for bench/compare.py)."
    )
    parser.add_argument("out", metavar="OUT.json", help="where the window is written")
    parser.add_argument("script", metavar="SCRIPT", help="the Python program to run")
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER, help="its arguments")
    given = parser.parse_args()
    out, script, args = given.out, given.script, given.args
    if not Path(script).is_file():
        parser.error(f"SCRIPT {script} is no file: name the Python program to run")
    window: dict[str, Any] = {"deleted": 0}
    install(window)
    atexit.register(lambda: Path(out).write_text(json.dumps(window)))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
