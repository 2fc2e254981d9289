"""Shell globs (``orders-*``, ``*api?``, ``[!a-c]*``) in each database's own matching operator.

The meaning is :func:`fnmatch.fnmatchcase`'s, quirks included; the tokenizer follows CPython's
``fnmatch.translate`` step by step. Each database matches with an operator that cannot be made to
backtrack without bound (a glob of many stars, ``*a*a*a*a*a*c``, made a regular expression run for
minutes against one row): SQLite's ``GLOB``, and PostgreSQL's ``LIKE``, with a bracket expression
(which ``LIKE`` lacks) also checked by PostgreSQL's regular expressions, an automaton that does
not backtrack either.
"""

from __future__ import annotations

import dataclasses
import string

_PUNCTUATION = frozenset(string.punctuation) - {"_"}
_STAR = "*"
_ANY = "?"


@dataclasses.dataclass(frozen=True, slots=True)
class CharSet:
    """A bracket expression: one character in (or, ``negated``, not in) the ranges."""

    negated: bool
    ranges: tuple[tuple[str, str], ...]  # (first, last), inclusive; a single is (c, c)


Token = str | CharSet  # "*", "?", a CharSet, or ("=" + a literal character)


@dataclasses.dataclass(frozen=True, slots=True)
class Glob:
    """A parsed glob: ``literal`` when it has no wildcard, ``never`` when nothing matches."""

    tokens: tuple[Token, ...]
    literal: str | None = None
    never: bool = False

    @property
    def has_sets(self) -> bool:
        return any(isinstance(t, CharSet) for t in self.tokens)

    def sqlite_glob(self) -> str:
        """The pattern for SQLite's ``GLOB`` (case-sensitive, as fnmatchcase)."""
        return "".join(_sqlite_token(t) for t in self.tokens)

    def like(self) -> str:
        """A ``LIKE`` pattern (escape character ``\\``); a bracket expression becomes ``_``,
        so with sets this only narrows, and :meth:`regex` decides."""
        return "".join(_like_token(t) for t in self.tokens)

    def regex(self) -> str:
        """An anchored regular expression read the same way by Python and PostgreSQL (ARE)."""
        return "(?s)\\A" + "".join(_regex_token(t) for t in self.tokens) + "\\Z"


def compile_glob(pattern: str) -> Glob:
    """Parse ``pattern`` as :func:`fnmatch.fnmatchcase` reads it."""
    if not any(c in pattern for c in "*?["):
        return Glob(tokens=tuple("=" + c for c in pattern), literal=pattern)
    tokens: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not tokens or tokens[-1] != _STAR:
                tokens.append(_STAR)
        elif c == "?":
            tokens.append(_ANY)
        elif c == "[":
            j = _bracket_end(pattern, i)
            if j is None:
                tokens.append("=[")
                continue
            charset = _bracket(pattern, i, j)
            if charset is None:
                return Glob(tokens=(), never=True)
            tokens.append(charset)
            i = j + 1
        else:
            tokens.append("=" + c)
    return Glob(tokens=tuple(tokens))


def _bracket_end(pattern: str, i: int) -> int | None:
    """The index of the ``]`` closing the bracket expression opened before ``i``, if any."""
    j, n = i, len(pattern)
    if j < n and pattern[j] == "!":
        j += 1
    if j < n and pattern[j] == "]":
        j += 1
    while j < n and pattern[j] != "]":
        j += 1
    return j if j < n else None


def _chunks(pattern: str, i: int, j: int) -> list[str]:
    """fnmatch's chunks of ``pattern[i:j]``, split at range hyphens, reversed ranges dropped."""
    if "-" not in pattern[i:j]:
        return [pattern[i:j]]
    chunks: list[str] = []
    k = i + 2 if pattern[i] == "!" else i + 1
    while (k := pattern.find("-", k, j)) >= 0:
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
    return chunks


def _bracket(pattern: str, i: int, j: int) -> Token | None:
    """The token for the bracket expression ``pattern[i:j]``; None if it matches nothing.

    Mirrors fnmatch: ``!`` negates, a ``]`` first is literal, ``-`` between two characters is a
    range; the last character of one chunk and the first of the next form a range.
    """
    chunks = _chunks(pattern, i, j)
    flat = "-".join(chunks)
    if not flat:
        return None
    if flat == "!":
        return _ANY
    negated = flat[0] == "!"
    if negated:
        chunks[0] = chunks[0][1:]
    ranges: list[tuple[str, str]] = []
    last = len(chunks) - 1
    for n, chunk in enumerate(chunks):
        start = 1 if n > 0 else 0
        stop = len(chunk) - 1 if n < last else len(chunk)
        if n > 0:
            ranges.append((chunks[n - 1][-1], chunk[0]))
        ranges.extend((c, c) for c in chunk[start:stop])
    return CharSet(negated=negated, ranges=tuple(ranges))


# -- SQLite GLOB ------------------------------------------------------------------------------

# Characters with a meaning inside GLOB's brackets at some position: kept out of ranges and
# placed where they are literal (``]`` and ``-`` first, ``^`` anywhere but first).
_SQLITE_AWKWARD = "]-^"


def _sqlite_token(token: Token) -> str:
    if isinstance(token, CharSet):
        return _sqlite_set(token)
    if token in (_STAR, _ANY):
        return token
    char = token[1]
    return f"[{char}]" if char in "*?[" else char


def _sqlite_set(charset: CharSet) -> str:
    specials: list[str] = []
    members: list[str] = []
    for first, last in charset.ranges:
        for char in _SQLITE_AWKWARD:
            if first <= char <= last and char not in specials:
                specials.append(char)
        members.extend(_split_range(first, last))
    if not charset.negated and not members and specials == ["^"]:
        return "^"  # a literal outside brackets
    head = "".join(c for c in "]-" if c in specials)
    tail = "^" if "^" in specials else ""
    if not head and not members and tail:  # "[^^]": a negated caret
        return "[^^]"
    return "[" + ("^" if charset.negated else "") + head + "".join(members) + tail + "]"


def _split_range(first: str, last: str) -> list[str]:
    """``first``-``last`` as GLOB members, without the awkward characters (placed apart)."""
    pieces: list[str] = []
    start = first
    for char in sorted(_SQLITE_AWKWARD):
        if start <= char <= last:
            if start < char:
                pieces.append(_member(start, chr(ord(char) - 1)))
            start = chr(ord(char) + 1)
    if start <= last:
        pieces.append(_member(start, last))
    return pieces


def _member(first: str, last: str) -> str:
    return first if first == last else f"{first}-{last}"


# -- PostgreSQL LIKE and regular expressions -------------------------------------------------


def _like_token(token: Token) -> str:
    if isinstance(token, CharSet) or token == _ANY:
        return "_"
    if token == _STAR:
        return "%"
    char = token[1]
    return "\\" + char if char in "\\%_" else char


def _escape(char: str) -> str:
    # A backslash before ASCII punctuation means "this character" in both dialects, in and out
    # of brackets; letters, digits and non-ASCII must not be escaped (``\d``, ``\y`` are classes
    # or constraints).
    return "\\" + char if char in _PUNCTUATION else char


def _regex_token(token: Token) -> str:
    if isinstance(token, CharSet):
        members = "".join(
            _escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in token.ranges
        )
        return "[" + ("^" if token.negated else "") + members + "]"
    if token == _STAR:
        return ".*"
    if token == _ANY:
        return "."
    return _escape(token[1])
