"""A thread that names the handler blocking the event loop, while it blocks.

One event loop runs every handler, the pollers, the visibility heartbeat and the ops server:
a handler that calls ``time.sleep``, a blocking client or long CPU work stalls them all, and
nothing on the loop can say so until the block ends (a loop that never comes back says
nothing at all). This thread can: the heartbeat beats on every tick, and when no beat has come
for ``threshold`` seconds the thread reads the loop thread's stack and logs which handler, and
which line of it, holds the loop, once per handler and line; and ``/healthz``, answered from a
thread of its own (see ops.py), asks it whether the loop is blocked (:meth:`LoopWatchdog.blocked`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import structlog

from lambda_destinations.handlers.base import Handler

log = structlog.get_logger(__name__)

THRESHOLD = 5.0  # seconds without a beat before the loop counts as blocked
# Seconds this thread may wake past its time before it counts the process as having been
# stopped meanwhile (SIGSTOP, a paused container or VM): no beat came then, but the loop was no
# more blocked than this thread, and beats again as soon as it runs.
PAUSED = 1.0
_OURS = os.path.join(Path(__file__).parents[1], "")  # with its separator: not a sibling's


def handler_codes(handlers: Iterable[Handler]) -> dict[CodeType, str]:
    """The code each handler runs as (a function handler's function, or a handler object's
    ``__call__``), by which its frame is found on the stack, with the handler's name."""
    codes: dict[CodeType, str] = {}
    for handler in handlers:
        target: Any = getattr(handler, "func", None) or type(handler).__call__
        code = getattr(target, "__code__", None)
        if isinstance(code, CodeType):
            codes.setdefault(code, handler.name)
    return codes


class LoopWatchdog:
    """Watches the loop of the thread that makes it, from a daemon thread of its own."""

    def __init__(self, codes: Mapping[CodeType, str], threshold: float | None = None) -> None:
        self._codes = codes
        self._threshold = THRESHOLD if threshold is None else threshold
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._interval = min(1.0, self._threshold / 4)
        self._looked = self._last  # when this thread last looked
        self._said: set[tuple[str, str]] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        """The loop is running (called on the loop, by the heartbeat)."""
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        reported = None  # the beat whose block was looked at: each block is looked at once
        while not self._stopped.wait(self._interval):
            now = time.monotonic()
            if now - self._looked > self._interval + PAUSED:
                # The process was stopped: the time without a beat is counted from now.
                self._last = max(self._last, now)
            self._looked = now
            last = self._last
            blocked = now - last
            if blocked > self._threshold and reported != last:
                reported = last
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    self._report(frame, blocked)

    def blocked(self) -> str | None:
        """What holds the loop, when no beat came for over ``threshold`` seconds (called from
        another thread than the loop's); None while the loop runs, or once stopped."""
        now = time.monotonic()
        blocked = now - self._last
        if self._stopped.is_set() or blocked <= self._threshold:
            return None
        if now - self._looked > self._interval + PAUSED:
            return None  # the process was stopped, this thread too: it has not looked since
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:  # the loop's thread has ended
            return None
        return _blocked_by(*self._blocker(frame), blocked)

    def _report(self, frame: FrameType, blocked: float) -> None:
        handler, where = self._blocker(frame)
        if (handler or "", where) in self._said:
            return
        self._said.add((handler or "", where))
        log.warning(
            f"{_blocked_by(handler, where, blocked)}: visibility heartbeats and every other "
            "message wait meanwhile, and /healthz answers 503; run blocking work with "
            "asyncio.to_thread (said once for each line)",
            handler=handler,
        )

    def _blocker(self, frame: FrameType) -> tuple[str | None, str]:
        """The handler whose frame is on the stack, and where it is: its own line, then the
        line the stack ends at in another file (a library's blocking call)."""
        innermost: FrameType | None = frame
        outside = None  # the innermost frame not of this package
        while innermost is not None:
            name = self._codes.get(innermost.f_code)
            if name is not None:
                where = _line(innermost)
                if outside is not None and outside is not innermost:
                    where += f", in {_line(outside)}"
                return name, where
            if outside is None and not innermost.f_code.co_filename.startswith(_OURS):
                outside = innermost
            innermost = innermost.f_back
        return None, _line(outside or frame)


def _blocked_by(handler: str | None, where: str, blocked: float) -> str:
    by = f"by handler {handler} " if handler else ""
    return f"the event loop has been blocked for {blocked:.0f}s {by}at {where}"


def _line(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"
