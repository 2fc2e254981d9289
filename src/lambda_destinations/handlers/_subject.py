"""The Subject of an SMTP message, folded so that every reader unfolds it to the very text.

The standard library's folder (``email.policy.SMTP``, which aiosmtplib flattens with) garbles
a long subject: the space before a non-ASCII word lands between two RFC 2047 encoded words,
where readers must drop it ("no válido — ñandú" arrives as "no  válido—ñandú"), and a word
too long for a line is encoded after a space that unfolding doubles. A subject whose words fit
on lines of 78 is folded here at its spaces (unfolding only removes the line breaks); any
other (non-ASCII, a word over a line, text that reads as an encoded word) is sent as encoded
words only, which readers join with nothing between them.
"""

from __future__ import annotations

import base64
import re
from typing import Any

NAME = "Subject"
_LINE = 78  # RFC 5322's recommended line length (998 is the limit)
_FIRST = len(NAME) + 2  # "Subject: "
# Bytes of UTF-8 in one encoded word: 42 make 56 base64 characters, an encoded word of 68,
# within RFC 2047's 75 and, after "Subject: ", within a line.
_WORD_BYTES = 42
_PLAIN = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")  # printable ASCII, single spaces
_SURROGATE = re.compile("[\ud800-\udfff]")


def fold_subject(subject: str, linesep: str = "\r\n") -> str:
    """``Subject: <subject>`` with its line breaks and the last ``linesep``."""
    if not subject:
        return f"{NAME}:{linesep}"
    lines = _plain_lines(subject)
    if lines is None:
        lines = _encoded_lines(subject)
    return linesep.join(lines) + linesep


def _plain_lines(subject: str) -> list[str] | None:
    """The subject as is, broken before spaces; None when it needs encoding: non-ASCII, a
    word longer than a line, spaces at an end or in a row, or "=?" (an encoded word's start,
    which a reader would decode)."""
    if not _PLAIN.fullmatch(subject) or "=?" in subject:
        return None
    first, *rest = subject.split(" ")
    lines = [f"{NAME}: {first}"]
    for word in rest:
        if len(lines[-1]) + 1 + len(word) <= _LINE:
            lines[-1] += " " + word
        elif 1 + len(word) <= _LINE:
            lines.append(" " + word)  # unfolded: the line break goes, the space stays
        else:
            return None
    return lines if len(lines[0]) <= _LINE else None


def _encoded_lines(subject: str) -> list[str]:
    """The subject as RFC 2047 encoded words (UTF-8, base64), one a line, each of whole
    characters; a lone surrogate (JSON may spell one) is sent as U+FFFD."""
    words: list[str] = []
    chunk = b""
    for char in _SURROGATE.sub("\ufffd", subject):
        encoded = char.encode()
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(_word(chunk))
            chunk = b""
        chunk += encoded
    words.append(_word(chunk))
    return [f"{NAME}: {words[0]}", *(" " + word for word in words[1:])]


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


class FoldedSubject(str):
    """A Subject value that folds itself (:func:`fold_subject`) when the message is flattened.

    ``message["Subject"] = FoldedSubject(text)``: the email package keeps a value with a
    ``name`` as its header object and asks it to ``fold``, whatever policy flattens it.
    """

    name = NAME

    def fold(self, *, policy: Any) -> str:
        return fold_subject(str(self), policy.linesep)
