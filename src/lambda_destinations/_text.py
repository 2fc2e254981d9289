"""Text as UTF-8 can carry it and as a reader sees it, for what is written out: the CLI's
stdout, the console's pages.

JSON may spell lone or reversed surrogates (``"\\ud800"``); the store keeps them exactly in its
JSON columns (see ``store._types``), but UTF-8 has no bytes for them, so writing such a value
to a terminal, a pipe or an HTTP response fails. They are shown as U+FFFD instead.

Stored text is what a function or a message's sender wrote: shown to a person, its control and
bidi characters are spelled as escapes (:func:`visible`), so that it cannot drive the terminal
or reorder what is read around it ("Trojan Source").

What is sent to SQS is text it takes (:func:`sqs_text`).

A notification's text is made for its reader the same way: a header holds one line
(:func:`one_line`), a body its lines (:func:`multi_line`), neither a control character, and a
payload shown in a body is JSON whose escapes keep it exact (:func:`json_lines`).
"""

from __future__ import annotations

import json
import re

# In a Python string every surrogate is lone: JSON's valid pairs decode to one character.
_SURROGATE = re.compile("[\ud800-\udfff]")


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` - 1 characters and an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """``text`` with each surrogate replaced by U+FFFD, so that it encodes as UTF-8."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def not_utf8(text: str) -> str | None:
    """Where ``text`` is not UTF-8 text, as its problem says it (``"byte 0xff"``; a lone
    surrogate that came from no byte by its code point), or None when it is. Python decodes a
    command-line argument or an environment variable's bytes that are not UTF-8 as lone
    surrogates U+DC80 to U+DCFF (``surrogateescape``), which no UTF-8 encoder (SQLite's,
    asyncpg's, a JSON payload's) takes."""
    if text.isascii() or (found := _SURROGATE.search(text)) is None:
        return None
    point = ord(found.group())
    return f"byte {point - 0xDC00:#04x}" if 0xDC80 <= point <= 0xDCFF else f"U+{point:04X}"


# What neither store backend's text holds (PostgreSQL: no NUL, no surrogates; SQLite: no
# surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """``value`` as both store backends' text can hold it: NUL and lone surrogates become U+FFFD.

    For text columns (an error message, a function name, an operator's reason): the JSON
    columns keep the original exactly.
    """
    if value.isascii() and "\x00" not in value:
        return value  # nearly every value: no regular expression to run
    return _UNSTORABLE.sub("\ufffd", value)


# What a terminal or a browser acts on instead of showing it: the C0 controls but tab and line
# feed (ESC starts a terminal's escape sequences; CR and backspace write over what is shown),
# DEL, the C1 controls (0x9b is a one-byte CSI to some terminals), and the bidi controls
# (Unicode's Bidi_Control: ALM U+061C, LRM/RLM U+200E/F, LRE..RLO U+202A-U+202E, LRI..PDI
# U+2066-U+2069), which reorder the rest of a line: "txt.exe" after U+202E reads "exe.txt".
# The other invisible format characters (category Cf) are left as they are: ZWJ and ZWNJ
# (U+200D, U+200C) join emoji sequences and Indic and Persian letters, tags (U+E0020-U+E007F)
# spell flags such as Scotland's, soft hyphen, ZWSP and word joiner break or bind words; none
# moves text, and escaping them would spoil legitimate text.
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with each control character and bidi control spelled as an escape (``\\x1b``,
    ``\\u202e``), for a person to read: the CLI's text output, the console's pages.

    Tab and line feed stay (multi-line payloads and stack traces keep their lines). JSON output
    does not pass here: its own escapes keep every value exact. The escapes are printable ASCII,
    so text that passed here once is left as it is the second time.
    """
    return _UNSHOWN.sub(_escape, text)


def unshown(text: str) -> bool:
    """Whether ``text`` holds a character :func:`visible` would spell as an escape."""
    return _UNSHOWN.search(text) is not None


# What SQS refuses in a message body or attribute, InvalidParameterValue "Invalid characters
# found": anything outside XML's characters (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
# #x10000-#x10FFFF), so the C0 controls but tab, LF and CR, lone surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def sqs_text(text: str) -> str:
    """``text`` as SQS takes it in a message attribute: each character it refuses spelled as
    an escape (``\\x1b``), as :func:`visible` spells it. A quarantine reason quotes what a
    server answered or a function wrote, and one ESC in it made the DLQ refuse the whole copy.
    """
    return _NOT_XML.sub(_escape, text)


SHOWN_TEXT = 64 * 1024  # characters of one payload, body, error or detail shown to a person


def capped(text: str, whole: str, limit: int = SHOWN_TEXT) -> str:
    """``text`` as a page or the CLI's text output shows it: its first ``limit`` characters,
    then a line saying how much was left out and ``whole``, where to read it all.

    A record carries up to 1 MiB (SQS's limit), which pretty-printed is several MB: a list of
    them, or a failure with its record and edits, would make a page of tens of MB that the
    browser struggles to open, and a terminal scrolls for minutes.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… cut: the first {limit:,} of {len(text):,} characters; {whole}"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# The C0 controls, DEL and the C1 controls: no header or other one-line field carries them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """``text`` on one line: each run of whitespace and control characters (C0, DEL, C1)
    becomes one space, and the ends are trimmed.

    A space, not U+FFFD or an escape (:func:`visible`): ``str.split`` already takes several
    controls for whitespace (vertical tab, form feed, 0x1c-0x1f, NEL), so the rest follow
    them; a space keeps apart the words a control stood between, and collapses away beside
    one, where a replacement character or ``\\x1b`` would put noise in every inbox's list.
    """
    return " ".join(_CONTROL.sub(" ", text).split())


# Where a line ends, as Unicode's line breaking (UAX #14) says a line must: CR LF, a lone CR or
# LF, NEL, vertical tab, form feed, and the line and paragraph separators.
_LINE_END = re.compile("\r\n|[\n\x0b\x0c\r\x85\u2028\u2029]")
# What a body shows as U+FFFD, once line ends are line feeds: the C0 controls but tab and line
# feed (NUL, which RFC 5322 refuses in a message; ESC, which starts a terminal's escape
# sequences; backspace), DEL, the C1 controls, the bidi embeddings, overrides and isolates
# (U+202A-U+202E, U+2066-U+2069: a value ending in U+202E reverses the rest of its line, the
# template's own text included), and lone surrogates (UTF-8 has no bytes for them, and the
# email package fails on them).
_UNREADABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def line_feeds(text: str) -> str:
    """``text`` with each line end (:data:`_LINE_END`) a line feed."""
    return _LINE_END.sub("\n", text)


def multi_line(text: str) -> str:
    """``text`` as a message body shows it: each line end (:data:`_LINE_END`) a line feed,
    tabs kept, and every other control character, bidi embedding, override or isolate, and
    lone surrogate replaced by U+FFFD.

    U+FFFD, not a space (:func:`one_line`) or an escape (:func:`visible`): a body's reader
    sees that a character was there, words stay apart, and no backslash reads as the
    function's own text. The bidi marks (ALM, LRM, RLM) stay: they only place neutral
    characters such as punctuation beside right-to-left words, which Arabic and Hebrew text
    needs, and cannot reverse a word or reach past their line.
    """
    return _UNREADABLE.sub("\ufffd", line_feeds(text))


# What JSON may leave raw in a string but a body's reader must not get raw: the line and
# paragraph separators and NEL (a mail client breaks the line there, so one string reads as
# two lines, or a value as the JSON around it), DEL and the C1 controls, the bidi controls
# (as in _UNSHOWN: they reorder what is read around them) and lone surrogates (UTF-8 has no
# bytes for them). JSON's own escapes already cover the C0 controls.
_RAW_UNSAFE = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_JSON_UNSAFE = re.compile(f"[{_RAW_UNSAFE}\ud800-\udfff]")
# The same but lone surrogates, for JSON written out: stdout writes those as U+FFFD (printable).
_JSON_ACTED_ON = re.compile(f"[{_RAW_UNSAFE}]")


def json_lines(value: object) -> str:
    """``value`` as indented JSON for a message body: the characters of :data:`_JSON_UNSAFE`
    as ``\\uXXXX`` escapes, the rest as it is.

    Still JSON, and of the same value: those characters only occur inside strings, where an
    escape reads back as the character. (A lone high surrogate followed by a lone low one reads
    back as their pair's character, as in any JSON.)
    """
    text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return _JSON_UNSAFE.sub(_json_escape, text)


def json_escaped(text: str) -> str:
    """The JSON ``text`` with what a terminal acts on but JSON may leave raw in a string (the
    C1 controls: U+009B is a CSI to xterm, which reads them in UTF-8; DEL; the bidi controls;
    the line and paragraph separators) as ``\\uXXXX`` escapes: still JSON of the same value,
    which cannot drive the terminal it is printed on or reorder its lines. (JSON escapes the
    C0 controls, ESC among them, itself.)"""
    return _JSON_ACTED_ON.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


# One of JSON's escapes: a surrogate pair's two (one character), one \uXXXX, or a backslash and
# the character it escapes.
_JSON_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.",
    re.DOTALL,
)
_LONGEST_ESCAPE = 12  # a surrogate pair's: \ud83d\ude00


def json_cut(text: str, limit: int) -> str:
    """The first ``limit`` characters of the JSON ``text``, fewer when the limit falls inside
    an escape: the cut is before it, so the text shown never ends in half of one (``\\u20``,
    or ``\\ud83d`` without its pair)."""
    if len(text) <= limit:
        return text
    # Scan the escapes near the limit from where one may start: a backslash starts one only
    # when the backslashes just before it pair up (``\\\\`` is one), so begin at the start of
    # the run of backslashes that the window's start is in.
    start = max(0, limit - _LONGEST_ESCAPE)
    while start > 0 and text[start - 1] == "\\":
        start -= 1
    for match in _JSON_ESCAPE.finditer(text, start, limit + _LONGEST_ESCAPE):
        if match.start() >= limit:
            break
        if match.end() > limit:
            return text[: match.start()]
    return text[:limit]
