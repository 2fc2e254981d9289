"""JSON log lines a container runtime passes whole: at most LINE_MAX bytes, the newline included.

Docker's json-file driver and the CRI runtimes Kubernetes runs on (containerd, CRI-O) split a
line of a container's stdout or stderr longer than 16 KiB into pieces, and a log collector
(Fluent Bit, Vector, promtail, the CloudWatch agent) reads each piece as broken JSON unless it
is set up to join them again. The first traceback of a handler's bug made a line of 35 kB; a
field holding a dict had no bound at all.

A line that fits is written as rendered; the only cost is its length, taken once. A longer one
is written again from its fields shortened to fit, and says so (``"truncated": true``):

- the fields a line is found by (KEPT: ``timestamp``, ``level``, the ids of the message, queue,
  handler and job) are kept whole, up to ID_MAX characters;
- the others share what is left: those that fit a fair share are kept whole, the bigger ones
  cut to the share (max-min fairness). Text keeps its start and end around ``… N characters
  cut …``, as the console's cap of a field does (``logs.LOGGED_MAX``); a dict or a list keeps
  its first entries, each cut the same way, and says how many more were ``left out``;
- a traceback (``exception``, ``stack``) keeps its exceptions' types and messages, and of each
  stack the outermost quarter of the frames that fit (where the worker called the handler) and
  the innermost others (the handler's own code, where it raised), with ``… N frames left
  out …`` between;
- with too many fields for each to show something, the last are left out (never ``event``,
  ``error`` nor a traceback), and a ``…`` field counts them.

Sizes are counted as the line is written: JSON with its escapes, all ASCII (``ensure_ascii``:
``é`` is ``\\u00e9``, six bytes), so a character is a byte.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

LINE_MAX = 16 * 1024

# Fields a line is found by: kept whole (cut past ID_MAX characters only, a sender's request id
# of a kilobyte being no id), never left out.
KEPT = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "queue",
        "dlq",
        "message_id",
        "request_id",
        "receive_count",
        "function",
        "handler",
        "job",
        "job_kind",
        "job_attempt",
        "truncated",
    }
)
ID_MAX = 256
# Fields shortened but never left out.
NEVER_LEFT_OUT = frozenset({"event", "error", "exception", "stack"})
TRACEBACKS = frozenset({"exception", "stack"})
# The least room a value is cut to (a field whose room would be smaller is left out); a key
# longer than KEY_MAX is cut to it.
VALUE_MIN = 1024
KEY_MAX = 128
# One line of a traceback (an exception's message of megabytes) is cut to at most this.
TRACEBACK_LINE_MAX = 2048
# Levels of dicts and lists inside one another fitted entry by entry; deeper ones are cut as
# their JSON text (each level writes its values once more to size them, and a value nested a
# thousand deep would pass Python's recursion limit).
DEPTH_MAX = 8


def fitted(line: str) -> str:
    """``line``, a JSON object as ``json.dumps`` writes it, if it fits in LINE_MAX bytes with
    its newline; else the line of its fields shortened to fit."""
    size = len(line) if line.isascii() else len(line.encode())  # isascii() is O(1)
    if size < LINE_MAX:
        return line
    fields = {**json.loads(line), "truncated": True}
    return json.dumps(_Fitting().fit_dict(fields, LINE_MAX - 1, top=True))


def _cost(value: Any) -> int:
    """Characters (bytes: all ASCII) of ``value`` written as JSON, quotes and escapes included."""
    if isinstance(value, str):  # the most common, at C speed
        return len(encode_basestring_ascii(value))
    return len(json.dumps(value))


def cut_middle(text: str, keep: int) -> str:
    """``text`` with its middle cut: ``keep`` characters of it, half from each end, around the
    count of those cut."""
    half = keep // 2
    return f"{text[:half]}\n… {len(text) - 2 * half:,} characters cut …\n{text[len(text) - half :]}"


def cut_text(text: str, room: int) -> str:
    """``text`` with its middle cut to fit in ``room`` characters of JSON (VALUE_MIN at least):
    as many characters of its start and end as fit."""
    low, high = 0, min(len(text), room)  # each character kept costs one at least
    while low < high:  # the most characters kept that fit (binary search)
        middle = (low + high + 1) // 2
        if _cost(cut_middle(text, middle)) <= room:
            low = middle
        else:
            high = middle - 1
    return cut_middle(text, low)


@dataclasses.dataclass(slots=True)
class _Entry:
    """One entry of a dict or a list being fitted: its key (None in a list), value, the cost of
    its value, and the cost around it (key, separators)."""

    key: str | None
    value: Any
    cost: int
    around: int
    fixed: bool = False  # kept as it is (an id, already cut to ID_MAX)
    droppable: bool = True

    @property
    def least(self) -> int:
        """The fewest characters the entry can be written in."""
        return self.around + (self.cost if self.fixed else min(self.cost, VALUE_MIN))


class _Fitting:
    """The fitting of one line's fields; each dict's and list's size counted once per level
    (DEPTH_MAX bounds the levels)."""

    def __init__(self) -> None:
        # id() of a dict or list: it (so that no other takes its id meanwhile) and its cost
        self._sizes: dict[int, tuple[Any, int]] = {}

    def cost(self, value: Any) -> int:
        """``value``'s characters written as JSON, as ``_cost`` counts them."""
        if not isinstance(value, dict | list):
            return _cost(value)
        known = self._sizes.get(id(value))
        if known is None:
            self._sizes[id(value)] = known = (value, _cost(value))
        return known[1]

    def fit(self, value: Any, room: int, key: str | None = None, depth: int = 0) -> Any:
        """``value`` as it fits in ``room`` characters of JSON; a dict or a list nested deeper
        than DEPTH_MAX is cut as its JSON text."""
        if self.cost(value) <= room:
            return value
        if isinstance(value, str):
            return _cut_traceback(value, room) if key in TRACEBACKS else cut_text(value, room)
        if isinstance(value, dict) and depth < DEPTH_MAX:
            return self.fit_dict(value, room, depth=depth + 1)
        if isinstance(value, list) and depth < DEPTH_MAX:
            return self.fit_list(value, room, depth + 1)
        return cut_text(json.dumps(value), room)  # or a number of thousands of digits

    def fit_dict(
        self, fields: dict[str, Any], room: int, *, top: bool = False, depth: int = 0
    ) -> dict[str, Any]:
        """``fields`` in ``room`` characters; at the top of a line, KEPT fields whole (but for
        ID_MAX) and none of NEVER_LEFT_OUT left out."""
        entries = []
        for key, value in fields.items():
            short = key if _cost(key) <= KEY_MAX else cut_text(key, KEY_MAX)
            kept = top and short in KEPT
            value = self.fit(value, ID_MAX, depth=depth) if kept else value
            entry = _Entry(short, value, self.cost(value), _cost(short) + 4, kept)
            entry.droppable = not (kept or (top and short in NEVER_LEFT_OUT))
            entries.append(entry)
        staying, left_out = _leave_out(entries, room, lambda n: {"…": f"{n:,} fields left out"})
        fitted = {str(e.key): self.fit(e.value, share, e.key, depth) for e, share in staying}
        return {**fitted, **({"…": f"{left_out:,} fields left out"} if left_out else {})}

    def fit_list(self, items: list[Any], room: int, depth: int) -> list[Any]:
        """``items`` in ``room`` characters: the first, and how many more were left out."""
        entries = [_Entry(None, item, self.cost(item), 2) for item in items]  # ", "
        staying, left_out = _leave_out(entries, room, lambda n: [f"… {n:,} items left out"])
        fitted = [self.fit(e.value, share, None, depth) for e, share in staying]
        return [*fitted, *([f"… {left_out:,} items left out"] if left_out else [])]


def _leave_out(
    entries: list[_Entry], room: int, marker: Callable[[int], Any]
) -> tuple[list[tuple[_Entry, int]], int]:
    """The entries that stay, each with the room of its value, and how many were left out (the
    last droppable ones, until each that stays can show VALUE_MIN characters at least);
    ``marker(n)`` is what says that n were left out, as a container of its own."""
    need = sum(entry.least for entry in entries)
    said = _cost(marker(len(entries)))  # the most it can take
    out: set[int] = set()
    for index in range(len(entries) - 1, -1, -1):
        if need + (said if out else 0) <= room:
            break
        if entries[index].droppable:
            need -= entries[index].least
            out.add(index)
    staying = [entry for index, entry in enumerate(entries) if index not in out]
    if out:
        room -= said
    return list(zip(staying, _shares(staying, room), strict=True)), len(out)


def _shares(entries: list[_Entry], room: int) -> list[int]:
    """The room of each entry's value: the whole of it where it fits a fair share of ``room``,
    the bigger ones an equal share of what the others leave (max-min fairness)."""
    shares = [entry.cost for entry in entries]
    left = room - sum(e.around + (e.cost if e.fixed else 0) for e in entries)
    order = sorted((i for i, e in enumerate(entries) if not e.fixed), key=shares.__getitem__)
    for done, index in enumerate(order):
        share = left // (len(order) - done)
        if shares[index] > share:
            for bigger in order[done:]:
                shares[bigger] = share
            break
        left -= shares[index]
    return shares


# A frame's first line, as Python writes a traceback (an exception group's are behind "| ").
_FRAME = re.compile(r'[ |]*File "')
_REPEATED = re.compile(r"[ |]*\[Previous line repeated ")


@dataclasses.dataclass(slots=True)
class _Stack:
    """The frames of one exception's traceback, outermost first, each its lines; ``kept`` of
    them shown: a quarter (one at least) from the outermost, where the worker called the
    handler, the others from the innermost, the handler's own code and where it raised."""

    frames: list[list[str]]
    kept: int = 0
    # the cost of the frames before each one (a frame's lines' quotes pay for their "\n"s)
    before: list[int] = dataclasses.field(default_factory=lambda: [0])

    def add(self, frame: list[str]) -> None:
        self.frames.append(frame)
        self.kept = len(self.frames)

    def grew(self, line: str) -> None:
        self.frames[-1].append(line)

    def ends(self) -> tuple[int, int]:
        """How many frames are shown from the outermost, and from the innermost."""
        if self.kept == len(self.frames):
            return self.kept, 0
        outer = max(1, self.kept // 4)
        return outer, self.kept - outer

    def cost(self) -> int:
        """Characters of the lines shown, in JSON (the stack is complete when first asked)."""
        if len(self.before) <= len(self.frames):  # counted once
            for frame in self.frames:
                self.before.append(self.before[-1] + sum(_cost(line) for line in frame))
        outer, inner = self.ends()
        total = self.before[-1]
        marker = _cost(self._marker()) if inner else 0
        return self.before[outer] + total - self.before[len(self.frames) - inner] + marker

    def _marker(self) -> str:
        first = self.frames[0][0]
        indent = first[: len(first) - len(first.lstrip(" |"))]
        return f"{indent}… {len(self.frames) - self.kept:,} frames left out …"

    def lines(self) -> list[str]:
        outer, inner = self.ends()
        if not inner:
            return [line for frame in self.frames for line in frame]
        shown = [*self.frames[:outer], [self._marker()], *self.frames[len(self.frames) - inner :]]
        return [line for frame in shown for line in frame]


def _parts(text: str) -> list[str | _Stack]:
    """A traceback's lines, its frames (a ``File`` line and the lines under it) gathered in
    stacks; each line cut to TRACEBACK_LINE_MAX."""
    parts: list[str | _Stack] = []
    stack: _Stack | None = None  # the one the line before was a frame's line of
    indent = 0  # of that frame's File line
    for line in text.split("\n"):
        if _cost(line) > TRACEBACK_LINE_MAX:
            line = cut_text(line, TRACEBACK_LINE_MAX)
        depth = len(line) - len(line.lstrip(" |"))
        if _FRAME.match(line):
            if stack is None:
                stack = _Stack([])
                parts.append(stack)
            stack.add([line])
            indent = depth
        elif stack is not None and (depth > indent or _REPEATED.match(line)):
            stack.grew(line)
        else:
            parts.append(line)
            stack = None
    return parts


def _cut_traceback(text: str, room: int) -> str:
    """A traceback in ``room`` characters: its exceptions' types and messages, and of each
    stack its ends, frames left out of the longest stack first; cut as any text where even one
    frame of each end does not fit."""
    parts = _parts(text)
    stacks = [part for part in parts if isinstance(part, _Stack)]
    size = sum(_cost(part) for part in parts if isinstance(part, str))
    size += sum(stack.cost() for stack in stacks)
    while size > room and stacks:
        stack = max(stacks, key=lambda s: s.kept)
        if stack.kept <= 2:
            break
        size -= stack.cost()
        stack.kept -= 1
        size += stack.cost()
    shortened = "\n".join(
        line for part in parts for line in ([part] if isinstance(part, str) else part.lines())
    )
    return shortened if _cost(shortened) <= room else cut_text(shortened, room)
