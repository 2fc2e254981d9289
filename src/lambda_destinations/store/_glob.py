"""Shell globs (``orders-*``, ``*api?``) as regular expressions both databases agree on.

The meaning is :func:`fnmatch.fnmatchcase`'s, quirks included; the tokenizer follows CPython's
``fnmatch.translate`` step by step. Its output cannot be used directly: PostgreSQL's regular
expressions (ARE) have no atomic groups or ``(?s:...)`` groups. The regex written here uses only
what Python's ``re`` (SQLite's REGEXP, installed by SQLAlchemy) and ARE read the same way:
a leading ``(?s)``, ``\\A`` and ``\\Z``, ``.``, ``.*``, bracket expressions, and backslash before
ASCII punctuation for a literal.
"""

from __future__ import annotations

import dataclasses
import string

_PUNCTUATION = frozenset(string.punctuation) - {"_"}


@dataclasses.dataclass(frozen=True, slots=True)
class Glob:
    """A translated glob: ``literal`` if it has no wildcard, else ``regex`` (None: matches none)."""

    literal: str | None
    regex: str | None


def _escape(char: str) -> str:
    # A backslash before ASCII punctuation means "this character" in both dialects, in and out
    # of brackets; letters, digits and non-ASCII must not be escaped (``\d``, ``\y`` are classes
    # or constraints).
    return "\\" + char if char in _PUNCTUATION else char


def _bracket(pattern: str, i: int, j: int) -> str | None:
    """The regex for the bracket expression ``pattern[i:j]`` (between ``[`` and ``]``).

    None for an expression that matches nothing. Mirrors fnmatch: ``!`` negates, a ``]`` first is
    literal, ``-`` between two characters is a range, reversed ranges are dropped.
    """
    stuff = pattern[i:j]
    if "-" not in stuff:
        chunks = [stuff]
    else:
        chunks = []
        k = i + 2 if pattern[i] == "!" else i + 1
        while True:
            k = pattern.find("-", k, j)
            if k < 0:
                break
            chunks.append(pattern[i:k])
            i = k + 1
            k = k + 3
        chunk = pattern[i:j]
        if chunk:
            chunks.append(chunk)
        else:
            chunks[-1] += "-"
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
    flat = "-".join(chunks)
    if not flat:
        return None
    if flat == "!":
        return "."
    negated = flat[0] == "!"
    if negated:
        chunks[0] = chunks[0][1:]
    # Joined chunks: the last character of one chunk and the first of the next form a range;
    # everything else is a literal member.
    members: list[str] = []
    last = len(chunks) - 1
    for n, chunk in enumerate(chunks):
        start = 1 if n > 0 else 0
        stop = len(chunk) - 1 if n < last else len(chunk)
        if n > 0:
            members.append(f"{_escape(chunks[n - 1][-1])}-{_escape(chunk[0])}")
        members.extend(_escape(c) for c in chunk[start:stop])
    return "[" + ("^" if negated else "") + "".join(members) + "]"


def compile_glob(pattern: str) -> Glob:
    """Translate ``pattern`` for :meth:`sqlalchemy.ColumnOperators.regexp_match`."""
    if not any(c in pattern for c in "*?["):
        return Glob(literal=pattern, regex=None)
    parts: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not parts or parts[-1] != ".*":
                parts.append(".*")
        elif c == "?":
            parts.append(".")
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                parts.append(_escape("["))
            else:
                bracket = _bracket(pattern, i, j)
                if bracket is None:
                    return Glob(literal=None, regex=None)
                parts.append(bracket)
                i = j + 1
        else:
            parts.append(_escape(c))
    # (?s): "." matches a newline, as in fnmatch. \A and \Z anchor at the very ends in both
    # dialects (Python's "$" would also match before a trailing newline).
    return Glob(literal=None, regex="(?s)\\A" + "".join(parts) + "\\Z")
