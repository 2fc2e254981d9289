"""Helpers shared by the decoder modules: JSON parsing, short descriptions, error reasons."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from lambda_destinations.schemas.errors import DecodeError

_REPR_LIMIT = 60


def _reject_constant(name: str) -> NoReturn:
    # json accepts NaN and Infinity by default; they are not JSON, and a record holding them
    # could not be stored as JSON again.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        # Read as infinity, it would be stored as null: the record would not be kept as sent.
        raise ValueError(f"{text[:40]} is too large for a double")
    return number


# Immutable once built; shared so that each call does not build a decoder (json.loads does the
# same with its own default decoder). The standard library's scanner, in C, calls back into
# Python for floats only, which records rarely hold; it keeps integers of any size exact.
# Faster parsers were tried and each needed a scan of the whole text first (pydantic_core reads
# 1e309 as infinity, orjson reads a 20-digit integer as a float), which cost more than the
# parse: see bench/MEASUREMENTS.md.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# Not accepted: no AWS service writes one, so a body that starts with it came from a sender
# that must be fixed (what Lambda wrote is JSON alone), and a record is never altered silently.
BOM = "\ufeff"
# Python's words for an integer past sys.get_int_max_str_digits() (they tell a developer how
# to raise the limit; an operator is told what the record holds instead).
_INT_DIGITS = re.compile(r"\blimit \(\d+ digits\) for integer string conversion")

# The most levels of arrays and objects a record may have. json's scanner recurses once a level
# and counts its caller's frames, so without a bound of its own the answer depended on who asked
# (decode read 970 levels, the worker's deeper stack refused them); this leaves the code that
# handles a record (the store's JSON, templates, indented output) some 400 frames.
MAX_DEPTH = 512
# Nesting is counted on the text's structure alone, with bytes operations that cost little
# next to the parse: escaped backslashes and quotes dropped, then every byte but quotes and
# brackets, then the strings between quotes; brackets become one kind ("[" and "]").
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"[]{}')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def _too_deep(text: str) -> bool:
    """Whether ``text`` nests arrays and objects more than MAX_DEPTH levels deep."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # most records: microseconds
        return False
    # UTF-8 spells other characters in bytes 0x80 and up: no quote or bracket among them.
    data = text.encode("utf-8", "surrogatepass").replace(b"\\\\", b"").replace(b'\\"', b"")
    # '""' is a string without brackets, or two strings with nothing between: gone either way.
    brackets = data.translate(_ONE_KIND, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:  # strings holding brackets
        brackets = b"".join(brackets.split(b'"')[::2])
    for depth in range(MAX_DEPTH):
        # Each pass takes away the innermost level: "[]" pairs present before it began.
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            # All taken (valid JSON), or brackets that do not pair (JSON's error to name): a
            # parse goes as deep as the levels taken and the openings never closed.
            return depth + inner.count(b"[") > MAX_DEPTH
        brackets = inner
    return bool(brackets)


def loads(text: str, what: str) -> Any:
    """Parse ``text`` as JSON or raise :class:`DecodeError` saying why, naming ``what``."""
    if _too_deep(text):
        raise DecodeError(
            f"{what} is nested too deeply: more than {MAX_DEPTH} levels of arrays and objects, "
            "the most a record may have; nest the function's payloads less deeply"
        )
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        if exc.pos == 0 and text.startswith(BOM):
            # Looked for only once parsing failed: the hot path pays nothing for it.
            raise DecodeError(
                f"{what} starts with a byte order mark (U+FEFF): JSON senders must not write "
                "one (RFC 8259, section 8.1); send the JSON text alone"
            ) from None
        # Some of json's messages end in "at" of their own ("Invalid control character at").
        said = exc.msg.removesuffix(" at")
        raise DecodeError(
            f"{what} is not JSON: {said} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise DecodeError(f"{what} is nested too deeply to decode") from None
    except ValueError as exc:
        # Integers past sys.get_int_max_str_digits(), NaN, Infinity and 1e999 land here.
        if _INT_DIGITS.search(str(exc)):
            raise DecodeError(
                f"{what} holds an integer of more than {sys.get_int_max_str_digits()} digits, "
                "more than a record may hold: send such a number as a string"
            ) from None
        raise DecodeError(f"{what} is not JSON the decoder accepts: {one_line(str(exc))}") from None


def is_blank(text: str) -> bool:
    """Whether ``text`` is empty or only whitespace."""
    return not text or text.isspace()


def json_kind(value: Any) -> str:
    """Describe the JSON type of ``value`` with its article: "a JSON array", "JSON null"."""
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"a {type(value).__name__}"


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def short_repr(value: Any) -> str:
    """A short, safe description of a JSON value for an error reason.

    Scalars are shown (cut to a few dozen characters); containers are named by type. Huge
    integers are not converted to text, which can itself fail (``sys.int_info``'s digit limit).
    """
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return "a very large number" if value.bit_length() > 128 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        shown = value if len(value) <= _REPR_LIMIT else f"{value[: _REPR_LIMIT - 3]}..."
        return repr(shown)
    return json_kind(value)


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# pydantic's words that name Python's types and classes ("a valid dictionary or instance of
# ResponseContext") or its own parsing ("unable to parse raw data as a unicode string"), in a
# record's: what the JSON should have held.
_MESSAGES = {
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "list_type": "expected a JSON array",
    "string_unicode": (
        "holds a lone surrogate (a \\ud800-\\udfff escape without its pair), which is not text"
    ),
}


def validation_reason(exc: ValidationError, what: str = "record") -> str:
    """Turn a pydantic error into one line naming the first bad field by its JSON path."""
    errors = exc.errors(include_url=False, include_context=False)
    if not errors:  # pragma: no cover - pydantic always reports at least one
        return f"invalid {what}"
    first = errors[0]
    loc = _location(first["loc"])
    kind = first["type"]
    message = _MESSAGES.get(kind) or first["msg"].removeprefix("Value error, ")
    if kind == "missing":
        reason = f"missing field {loc}" if loc else f"invalid {what}: {message}"
    elif loc:
        reason = f"invalid field {loc}: {message}"
        given = first.get("input")
        # A container is named by its kind, for a wrong type only: a rule about a whole object
        # (one of its fields, say) is about the object the field names.
        if "input" in first and (not isinstance(given, dict | list) or kind.endswith("_type")):
            reason += f" (got {short_repr(given)})"
    else:
        reason = f"invalid {what}: {message}"
    if len(errors) > 1:
        more = len(errors) - 1
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return one_line(reason, 400)


def text_or_none(value: Any) -> str | None:
    """A string field of an error payload: strings as they are, other JSON compactly, else None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return None


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else short_repr(value)


def _lines(text: str) -> list[str]:
    """``text``'s lines, ended by a line feed (or CR LF) alone, as a frame's text ends them:
    ``str.splitlines`` also breaks at CR, NEL, U+2028 and others, which a frame's source line
    may hold in a string literal (the frame was then shown as two)."""
    lines = text.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def stack_lines(value: Any) -> list[str] | None:
    """Normalise ``stackTrace`` (Python, Java, Ruby, .NET) or ``trace`` (Node.js) into lines.

    Runtimes disagree: Python sends frames that each hold two lines ("File ..., line n, in f"
    and the source line); the old Python 2.7/3.6 runtimes sent ``[file, line, function, code]``
    lists; Node.js sends one line per entry; some custom runtimes send one string.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return _lines(value)
    if not isinstance(value, list):
        return None
    lines: list[str] = []
    for entry in value:
        if isinstance(entry, str):
            lines.extend(_lines(entry))
        elif isinstance(entry, list) and len(entry) == 4:
            file, line, function, code = (_scalar(part) for part in entry)
            lines.append(f'  File "{file}", line {line}, in {function}')
            if code:
                lines.append(f"    {code}")
        else:
            lines.append(text_or_none(entry) or "")
    return lines


_NOT_TEXT = re.compile("[\\x00\\ud800-\\udfff]")


def key_text(key: str) -> str:
    """``key`` with NUL and lone surrogates spelled as JSON escapes (``\\ud800``): a record key
    is stored as text by every backend, and neither database's text holds those characters."""
    if key.isascii() and "\x00" not in key:
        return key
    return _NOT_TEXT.sub(lambda found: f"\\u{ord(found.group()):04x}", key)
