"""JSON on the hot path: fast parsers where they give what the standard library gives.

Every message the worker handles is parsed once or twice and stored as a few JSON columns.
:mod:`json` costs several times what the compiled libraries cost:

- parsing goes through ``pydantic_core.from_json`` (already installed with pydantic), which
  keeps integers of any size exact and refuses NaN and Infinity. Text it refuses (a lone
  surrogate, nesting past its limit) goes to the standard library's decoder, which accepts it
  or raises its own error, with its own message;
- writing goes through orjson; values it cannot write (integers past 64 bits, keys that are not
  strings) are written by :mod:`json`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson
import pydantic_core


def loads(text: str, fallback: Callable[[str], Any] = json.loads) -> Any:
    """The value of the JSON ``text``, as ``fallback`` (json.loads) would read it.

    A number is returned as it is: SQLite hands back a JSON column holding one as a number.
    """
    if not isinstance(text, str):
        return text
    try:
        return pydantic_core.from_json(text, allow_inf_nan=False, cache_strings=False)
    except ValueError:
        return fallback(text)


def strict_loads(text: str) -> Any:
    """The value of the JSON ``text``, for JSON a person typed that is sent on (a payload).

    ValueError, whose text is one line for the user, for what :func:`json.loads` accepts and
    other parsers refuse: ``NaN``, ``Infinity``, a number too large for a double (``1e999``),
    an integer of more digits than Python converts (4,300), a lone surrogate (``"\\ud800"``: no
    UTF-8 can carry it), and nesting too deep to handle.
    """
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_integer
        )
        json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError(
            "it holds a lone surrogate (\\ud800 to \\udfff) UTF-8 cannot carry"
        ) from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:40]} is too large for a JSON number")
    return number


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # Python's line names sys.set_int_max_str_digits(), no fix for a payload
        digits = len(text.lstrip("-"))
        raise ValueError(
            f"{text[:40]}… ({digits:,} digits) is too large for a JSON number"
        ) from None


def utf8(value: Any, *, separators: tuple[str, str] | None = None) -> bytes:
    """JSON bytes for ``value`` to send (an Invoke's payload, a webhook's body), non-ASCII as
    UTF-8; with a lone surrogate (``"\\ud800"``: JSON spells one, UTF-8 has no bytes for it)
    every non-ASCII character is a ``\\uXXXX`` escape instead, the same value read back."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=separators, default=str).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=separators, default=str).encode()


def dumps(value: Any) -> str:
    """Compact JSON text for ``value``."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
