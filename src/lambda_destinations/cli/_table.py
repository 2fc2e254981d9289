"""A small table renderer for people: aligned columns that fit the terminal, nothing else."""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence

from lambda_destinations._text import visible

_GAP = "  "
_MIN_FLEX = 12
_LEAST_SQUEEZED = 6  # a flex column's least in a terminal too narrow for _MIN_FLEX


def terminal_width() -> int | None:
    """The terminal's width, or None when stdout is not a terminal (tables are not cut)."""
    if sys.stdout is None or not sys.stdout.isatty():  # None: started with stdout closed
        return None
    return shutil.get_terminal_size((100, 24)).columns


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes: East Asian wide and fullwidth characters (CJK,
    most emoji) take two, combining marks and invisible format characters (zero width space and
    joiner, variation selectors) none, the rest one. ``len`` counts characters: a column of
    Chinese error messages, or one emoji in a cell, pushed the columns after it out of line and
    the line past the terminal's width."""
    if text.isascii():
        return len(text)
    return sum(_char_columns(char) for char in text)


def _char_columns(char: str) -> int:
    if unicodedata.category(char) in ("Mn", "Me", "Cf") and char != "\u00ad":  # soft hyphen: 1
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cut(text: str, width: int) -> str:
    """The longest start of ``text`` that takes at most ``width`` columns."""
    taken = 0
    for index, char in enumerate(text):
        taken += _char_columns(char)
        if taken > width:
            return text[:index]
    return text


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken at spaces, a word longer than a
    line broken where the line ends (as ``textwrap.wrap`` with ``break_long_words``, in
    columns)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        joined = f"{line} {word}" if line else word
        if columns(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        while columns(word) > width:
            head = _cut(word, width) or word[0]
            lines.append(head)
            word = word[len(head) :]
        line = word
    if line:
        lines.append(line)
    return lines


def _padded(text: str, width: int, *, right: bool) -> str:
    room = " " * max(0, width - columns(text))
    return room + text if right else text + room


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 message``, ``2 messages``; ``many`` for irregular plurals."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def cell(value: object) -> str:
    """A value on one line as a person reads it (controls and bidi controls escaped)."""
    if value is None or value == "":
        return "-"
    return visible(" ".join(value.split())) if isinstance(value, str) else str(value)


def field_lines(fields: Iterable[tuple[str, object]], width: int) -> list[str]:
    """``label  value`` lines, each label padded to ``width``; a value of several lines has its
    further lines under its first, indented to ``width``.

    A request id, a condition or an attribute is what a function or a message's sender wrote,
    and may hold a line break: its next line at the start of the output would read as a field
    of its own (``status       recovered`` under the real status). Controls and bidi controls
    are the caller's to escape (:func:`~lambda_destinations._text.visible`), once, over the
    whole text.
    """
    lines = []
    for label, value in fields:
        first, *rest = str(value).split("\n")
        lines.append(f"{label:<{width}}{first}")
        lines.extend(f"{'':<{width}}{line}" for line in rest)
    return lines


def attribute_lines(attributes: Iterable[tuple[str, str]]) -> list[str]:
    """A message's attributes (name, value as text), ``  Name = value`` each, as
    :func:`field_lines` (a value's further lines under its first)."""
    return [
        line
        for name, text in attributes
        for line in field_lines([(f"  {name} = ", text)], len(name) + 5)
    ]


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    flex: Sequence[int] = (),
    wrap: bool = False,
    right: Collection[int] = (),
    width: int | None = None,
    indent: str = "",
    starts: Mapping[int, int] | None = None,
) -> str:
    """``rows`` under ``headers``, columns aligned.

    When the table is wider than ``width`` (default: the terminal's; unlimited when output is
    not a terminal), the ``flex`` columns give up room, in the order given: their cells are cut
    with "…", or with ``wrap`` continued on further lines. ``right`` columns are right-aligned.

    ``starts`` (column: characters) are ids that are read by their start (``failures show
    5b06258e`` takes a request id's): where the flex columns at their least still leave the
    table too wide, those cells are shown as their first characters, no fewer than given and
    enough to tell the column's ids apart, with no "…" (what is shown can be copied as it is).
    Then, if it is still too wide, the flex columns go below their least, widest first, down
    to their header's width (or 6).
    """
    width = terminal_width() if width is None else width
    text = [[cell(v) for v in row] for row in rows]
    widths = _widths(headers, text)
    if width is not None and flex:
        room = width - len(indent)
        if _fit(widths, headers, flex, room, even=wrap) > 0 and starts:
            text = _starts_only(text, starts)
            widths = _widths(headers, text)
            _fit(widths, headers, flex, room, even=wrap)
        _squeeze(widths, headers, flex, room)
    lines = [_line(list(headers), widths, right, indent)]
    for row in text:
        cells = []
        for i, value in enumerate(row):
            if columns(value) <= widths[i]:
                cells.append([value])
            elif wrap:
                cells.append(_wrapped(value, widths[i]) or [""])
            else:
                cells.append([_cut(value, widths[i] - 1) + "…"])
        for n in range(max(len(c) for c in cells)):
            lines.append(_line([c[n] if n < len(c) else "" for c in cells], widths, right, indent))
    return "\n".join(lines)


def _widths(headers: Sequence[str], text: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width: its widest cell or header."""
    widths = [columns(h) for h in headers]
    for row in text:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], columns(value))
    return widths


def _starts_only(text: list[list[str]], starts: Mapping[int, int]) -> list[list[str]]:
    """``text`` with the cells of each of ``starts``' columns as their first characters: at
    least as many as given, and as many more as the column's ids need to stay apart."""
    sizes = {}
    for column, least in starts.items():
        ids = {row[column] for row in text} - {"-"}
        size = least
        while len({one[:size] for one in ids}) < len(ids):
            size += 1
        sizes[column] = size
    return [
        [value[: sizes[i]] if i in sizes and value != "-" else value for i, value in enumerate(row)]
        for row in text
    ]


def _fit(
    widths: list[int], headers: Sequence[str], flex: Sequence[int], width: int, *, even: bool
) -> int:
    """Narrow the ``flex`` columns until the table fits ``width`` (or they reach a minimum);
    how many columns too wide it still is.

    ``even``: always the widest first, so wrapped columns share the room; otherwise in the
    order given, each down to its minimum before the next.
    """
    excess = sum(widths) + len(_GAP) * (len(widths) - 1) - width
    floors = {i: max(_MIN_FLEX, columns(headers[i])) for i in flex}
    if even:
        return _narrow_widest(widths, flex, floors, excess)
    for i in flex:
        if excess <= 0:
            return excess
        taken = max(0, min(excess, widths[i] - floors[i]))
        widths[i] -= taken
        excess -= taken
    return excess


def _squeeze(widths: list[int], headers: Sequence[str], flex: Sequence[int], width: int) -> None:
    """The last resort of a terminal narrower than the table at its least: the ``flex``
    columns below their least, widest first, down to their header's width or 6 (a table wider
    than the terminal has each of its lines broken in two, and its columns no longer line
    up)."""
    excess = sum(widths) + len(_GAP) * (len(widths) - 1) - width
    floors = {i: max(_LEAST_SQUEEZED, columns(headers[i])) for i in flex}
    _narrow_widest(widths, flex, floors, excess)


def _narrow_widest(
    widths: list[int], flex: Sequence[int], floors: Mapping[int, int], excess: int
) -> int:
    """Take ``excess`` columns off the widest ``flex`` column, one at a time, none below its
    floor; how many could not be taken."""
    while excess > 0:
        candidates = [i for i in flex if widths[i] > floors[i]]
        if not candidates:
            return excess
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return excess


def _line(values: Sequence[str], widths: Sequence[int], right: Collection[int], indent: str) -> str:
    parts = [_padded(value, widths[i], right=i in right) for i, value in enumerate(values)]
    return (indent + _GAP.join(parts)).rstrip()
