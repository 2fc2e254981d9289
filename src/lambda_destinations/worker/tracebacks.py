"""Which handler errors' tracebacks the log shows: once per bug, not once per delivery.

A handler that raises an error of no known kind (a bug: ``KeyError``, ``AttributeError``, a
library's own exception) is logged with its traceback, the report a developer needs. A bug that
every record meets raised it at every delivery of every message, the same traceback each time
(1 to 32 KiB a line): a worker that ran on for hours wrote one per failed delivery, the log's
volume growing with the traffic and nothing new in it.

The traceback of one bug, the handler and the path its exception was raised along (each
frame's file and line), is now logged once, and again at most every TRACEBACK_EVERY seconds
while it lasts; the deliveries between are one short line each, with the error's text and
when its traceback was logged. The table of bugs seen is bounded (the oldest forgotten
first): label-free and small, whatever a handler raises.
"""

from __future__ import annotations

import collections
import time

# Seconds between two logs of one traceback while its bug lasts.
TRACEBACK_EVERY = 300.0
# Bugs remembered; past it the oldest is forgotten (its next traceback is logged again).
REMEMBERED = 64

Signature = tuple[str, str, tuple[tuple[str, int], ...]]


def signature(handler: str, exc: BaseException) -> Signature:
    """The handler, the exception's type and the path it was raised along: each frame's file
    and line. Its last frame alone would not tell two bugs apart whose exception one library's
    line raised (``json.loads`` called wrong in two places of a handler): the second's
    traceback was not logged, the first's shown for it. One exception object raised again (a
    handler that keeps one) carries its earlier raises' frames after the latest's, from the
    same first frame again: the path ends there."""
    frames: list[tuple[str, int]] = []
    tb = exc.__traceback__
    while tb is not None:
        frame = (tb.tb_frame.f_code.co_filename, tb.tb_lineno or 0)
        if frames and frame == frames[0]:
            break
        frames.append(frame)
        tb = tb.tb_next
    return (handler, f"{type(exc).__module__}.{type(exc).__qualname__}", tuple(frames))


class TracebackLog:
    """When each bug's traceback was last logged (wall clock, for the line that refers to it)."""

    def __init__(self, every: float = TRACEBACK_EVERY, remembered: int = REMEMBERED) -> None:
        self._every = every
        self._remembered = remembered
        self._logged: collections.OrderedDict[Signature, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._logged)

    def logged_at(self, handler: str, exc: BaseException, now: float | None = None) -> float | None:
        """None when ``exc``'s traceback is to be logged now (noted as logged); else when it
        last was (a time.time())."""
        now = time.time() if now is None else now
        key = signature(handler, exc)
        last = self._logged.get(key)
        if last is not None and now - last < self._every:
            return last
        self._logged[key] = now
        self._logged.move_to_end(key)
        while len(self._logged) > self._remembered:
            self._logged.popitem(last=False)
        return None
