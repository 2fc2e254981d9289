"""The Subject of an SMTP message, folded so that every reader unfolds it to the very text.

The standard library's folder (``email.policy.SMTP``, which aiosmtplib flattens with) garbles
a long subject: the space before a non-ASCII word lands between two RFC 2047 encoded words,
where readers must drop it ("no válido — ñandú" arrives as "no  válido—ñandú"), and a word
too long for a line is encoded after a space that unfolding doubles. A subject whose words fit
on lines of 78 is folded here at its spaces (unfolding only removes the line breaks); any
other (non-ASCII, a word over a line, text that reads as an encoded word) is sent as encoded
words only (``email.header.Header``, whose words hold the spaces), which readers join with
nothing between them.
"""

from __future__ import annotations

import re
from email.header import Header
from typing import Any

NAME = "Subject"
_LINE = 78  # RFC 5322's recommended line length (998 is the limit)
_BREAK = "\n"  # between the encoded lines, before they are joined with the policy's linesep
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
    """The subject as RFC 2047 encoded words only (the standard library's ``Header``, in
    UTF-8), on lines of at most 78; a lone surrogate (JSON may spell one) is sent as U+FFFD."""
    header = Header(_SURROGATE.sub("\ufffd", subject), "utf-8", header_name=NAME)
    return f"{NAME}: {header.encode(linesep=_BREAK, maxlinelen=_LINE)}".split(_BREAK)


class FoldedSubject(str):
    """A Subject value that folds itself (:func:`fold_subject`) when the message is flattened.

    ``message["Subject"] = FoldedSubject(text)``: the email package keeps a value with a
    ``name`` as its header object and asks it to ``fold``, whatever policy flattens it.
    """

    name = NAME

    def fold(self, *, policy: Any) -> str:
        return fold_subject(str(self), policy.linesep)
