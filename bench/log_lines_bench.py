"""What a JSON log line costs to write, ordinary and oversize, through the worker's logging.

Usage: ``python bench/log_lines_bench.py [--n N] [--repeat R]``

Logging is configured as the image configures it (``configure_logging("json", "info")``), with
stderr pointed at /dev/null, and the fields the worker binds for each message bound. For each
kind of line the script times N log calls (CPU time of the process), keeps the best of R
repeats and prints microseconds a line and the bytes of the line written:

- ``acked``: a message's ordinary line (about 300 bytes), the kind written for every message;
- ``retried``: a handler's failure with its error's text (about 600 bytes);
- ``bug``: the first traceback of a handler's bug, 400 frames deep with an error of 3,000
  characters (about 35 kB as rendered: shortened to 16 KiB, since a container runtime splits a
  longer line);
- ``payload``: a handler's line with a dict of 200 kB (shortened the same way).

Run it on two checkouts (``PYTHONPATH=<checkout>/src``) to compare their costs: the script uses
only ``configure_logging``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars

from _args import at_least
from lambda_destinations.logs import configure_logging

IDS = {
    "queue": "orders-failure",
    "message_id": "9f2c1a4e-8d7b-4c1e-9a3f-2b6d5e4c3a21",
    "receive_count": 1,
    "request_id": "c1f4a2b3-5d6e-4f70-8a9b-0c1d2e3f4a5b",
    "function": "checkout",
}


def _ping(n: int) -> None:
    if n == 0:
        raise KeyError("customer_id " + "x" * 3000)
    _pong(n - 1)


def _pong(n: int) -> None:  # two functions in turn: Python's traceback folds no line of them
    _ping(n)


def _bug() -> BaseException:
    try:
        _ping(200)
    except KeyError as exc:
        return exc
    raise AssertionError("no exception")


def _lines(log: Any) -> dict[str, Callable[[], None]]:
    bug = _bug()
    payload = {f"item{n}": {"sku": f"SKU-{n:05d}", "note": "n" * 180} for n in range(1000)}
    return {
        "acked": lambda: log.info("message acked", handlers=["persist", "notify"], ms=12.5),
        "retried": lambda: log.warning(
            "handler notify failed (transient)",
            error="ThrottlingException: Rate exceeded " + "r" * 300,
            delay=4.0,
        ),
        "bug": lambda: log.error(
            "handler notify raised an unexpected error", error="KeyError", exc_info=bug
        ),
        "payload": lambda: log.warning("order seen", order=payload),
    }


def _best(call: Callable[[], None], n: int, repeat: int) -> float:
    """The CPU time of the process for one call, the best of ``repeat`` runs of ``n`` (CPU time:
    on a shared machine, the time others' processes take is not counted)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(n):
            call()
        best = min(best, time.process_time() - started)
    return best / n


class _Nowhere(io.TextIOBase):
    """A stderr that writes nothing and counts the characters it is given (the JSON lines are
    ASCII: one byte each)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=at_least(1), default=20_000)
    parser.add_argument("--repeat", type=at_least(1), default=5)
    args = parser.parse_args()
    sys.stderr = nowhere = _Nowhere()  # before the logger is made: it keeps the stderr it found
    try:
        configure_logging("json", "info")
        bind_contextvars(**IDS)
        lines = _lines(structlog.get_logger("bench"))
        sizes = {}
        for name, call in lines.items():
            before = nowhere.written
            call()
            sizes[name] = nowhere.written - before
        timed = {  # the oversize lines a hundredth as often, and at least once
            name: _best(
                call, args.n if name in ("acked", "retried") else -(-args.n // 100), args.repeat
            )
            for name, call in lines.items()
        }
    finally:  # a failure's traceback reaches the terminal, not the counter
        sys.stderr = sys.__stderr__
    print(f"python {sys.version.split()[0]}, structlog {structlog.__version__}")
    for name, seconds in timed.items():
        print(f"{name:8} {seconds * 1e6:9.1f} µs a line, {sizes[name]:7,} bytes")


if __name__ == "__main__":
    main()
