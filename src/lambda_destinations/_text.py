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
