"""JSON on the hot path: orjson where it gives what the standard library gives, json otherwise.

orjson parses and writes several times faster than :mod:`json`, which matters for every message
the worker decodes and stores. Where the two would differ, :mod:`json` decides, so values and
errors stay those of the standard library:

- orjson reads integers past 64 bits as floats (losing digits): text with a run of 19 or more
  digits goes to json, which keeps them exact;
- text orjson refuses goes to json, which accepts it (a lone surrogate, ``1e999``) or raises
  its own error, with its own message;
- values orjson cannot write (integers past 64 bits, keys that are not strings) are written by
  json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

_LONG_DIGITS = re.compile(r"\d{19}")


def loads(text: str, fallback: Callable[[str], Any] = json.loads) -> Any:
    """The value of the JSON ``text``, as ``fallback`` (json.loads) would read it.

    A number is returned as it is: SQLite hands back a JSON column holding one as a number.
    """
    if not isinstance(text, str):
        return text
    if not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # json accepts it, or says why not in its own words
    return fallback(text)


def dumps(value: Any) -> str:
    """Compact JSON text for ``value``."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
