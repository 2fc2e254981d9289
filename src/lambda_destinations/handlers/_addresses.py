"""Address headers (From, To, Cc, Reply-To) as sent: names in encoded words a reader joins
back to the very name, and an SMTP message's headers folded at their spaces.

The standard library's folder (which aiosmtplib flattens with) decodes a name and encodes it
again where it breaks the line, between two RFC 2047 encoded words, whose white space readers
drop: a space at that point was lost ("paiement, région" arrived as "paiement,région"). Here a
name other than ASCII is encoded in words of at most 68 characters (RFC 2047 allows 75), each
ending after one of the name's spaces where it can, and the header is folded only at the
spaces between them, which unfolding keeps and decoding drops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.charset import Charset
from typing import Any

_LINE = 78  # RFC 5322's recommended line length (998 is the limit)
# RFC 2047 allows an encoded word 75 characters; 68 fit after the longest name, "Reply-To: "
_WORD = 68
_UTF8 = Charset("utf-8")  # encoded words in base64 ("=?utf-8?b?…?=")
# A space that may break the line: one alone (a name's double space stays on its line), and
# not within <…> (a quoted local part's)
_FOLD = re.compile(r"(?<! ) (?! )(?![^<]*>)")


def _encoded(text: str) -> str:
    return _UTF8.header_encode(text)


def encoded_name(name: str) -> str:
    """``name`` as RFC 2047 encoded words of at most 68 characters, between them a space that
    is not the name's: each word ends after a space of the name where one fits, so that a
    reader that keeps the space between words (the email package's) shows one more there,
    never one less."""
    words: list[str] = []
    text = ""
    for piece in re.split(r"(?<= )", name):
        if len(_encoded(text + piece)) <= _WORD:
            text += piece
            continue
        if text:
            words.append(_encoded(text))
        text = ""
        for char in piece:  # a piece too long for a word alone is split between characters
            if text and len(_encoded(text + char)) > _WORD:
                words.append(_encoded(text))
                text = ""
            text += char
    if text:
        words.append(_encoded(text))
    return " ".join(words)


def fold_addresses(name: str, addresses: Sequence[str], linesep: str = "\r\n") -> str:
    """``name: <addresses>`` with its line breaks and the last ``linesep``: broken at spaces
    into lines of 78 where the words allow (a longer word on a line of its own)."""
    tokens = [
        word
        for index, value in enumerate(addresses)
        for word in _FOLD.split(value + ("," if index < len(addresses) - 1 else ""))
    ]
    lines = [f"{name}:"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) <= _LINE or lines[-1] == f"{name}:":
            lines[-1] += " " + token
        else:
            lines.append(" " + token)
    return linesep.join(lines) + linesep


class FoldedAddresses(str):
    """An address header's value that folds itself (:func:`fold_addresses`) when the message
    is flattened: ``message["To"] = FoldedAddresses("To", addresses)``, each address as
    :func:`~lambda_destinations.handlers.email.address` wrote it. The email package keeps a
    value with a ``name`` as its header object and asks it to ``fold``."""

    name: str
    addresses: tuple[str, ...]

    def __new__(cls, name: str, addresses: Sequence[str]) -> FoldedAddresses:
        value = super().__new__(cls, ", ".join(addresses))
        value.name = name
        value.addresses = tuple(addresses)
        return value

    def fold(self, *, policy: Any) -> str:
        return fold_addresses(self.name, self.addresses, policy.linesep)
