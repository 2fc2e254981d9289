"""Text as UTF-8 can carry it, for what is written out: the CLI's stdout, the console's pages.

JSON may spell lone or reversed surrogates (``"\\ud800"``); the store keeps them exactly in its
JSON columns (see ``store._types``), but UTF-8 has no bytes for them, so writing such a value
to a terminal, a pipe or an HTTP response fails. They are shown as U+FFFD instead.
"""

from __future__ import annotations

import re

# In a Python string every surrogate is lone: JSON's valid pairs decode to one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with each surrogate replaced by U+FFFD, so that it encodes as UTF-8."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


# What neither store backend's text holds (PostgreSQL: no NUL, no surrogates; SQLite: no
# surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """``value`` as both store backends' text can hold it: NUL and lone surrogates become U+FFFD.

    For text columns (error message, function name): the record's JSON column keeps the
    original exactly.
    """
    return _UNSTORABLE.sub("\ufffd", value)
