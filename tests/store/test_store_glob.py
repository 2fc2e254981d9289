"""Glob translation, checked against fnmatch.fnmatchcase with Python's re (SQLite's REGEXP).

That PostgreSQL reads the same regexes the same way is checked in test_store_behaviour.py.
"""

from __future__ import annotations

import fnmatch
import re
import warnings

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lambda_destinations.store._glob import compile_glob

ALPHABET = "ab-_]![^*?\\.é\n"


def matches(pattern: str, name: str) -> bool:
    glob = compile_glob(pattern)
    if glob.literal is not None:
        return name == glob.literal
    if glob.regex is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "possible nested set" and friends would be bugs
        return re.search(glob.regex, name) is not None


@given(st.text(ALPHABET, max_size=8), st.text(ALPHABET, max_size=8))
@example("[!]", "!")
@example("[z-a]x", "x")
@example("[!z-a]", "q")
@example("[z-a!]", "q")  # fnmatch's own quirk: this matches any character
@example("*\n", "a\n")
def test_globs_mean_what_fnmatchcase_means(pattern: str, name: str) -> None:
    assert matches(pattern, name) == fnmatch.fnmatchcase(name, pattern)


@pytest.mark.parametrize(
    ("pattern", "literal", "regex"),
    [
        ("orders-api", "orders-api", None),
        ("orders-*", None, r"(?s)\Aorders\-.*\Z"),
        ("*api?", None, r"(?s)\A.*api.\Z"),
        ("**a", None, r"(?s)\A.*a\Z"),
        ("[!a-c]x", None, r"(?s)\A[^a-c]x\Z"),
        ("[z-a]", None, None),
    ],
)
def test_translation(pattern: str, literal: str | None, regex: str | None) -> None:
    glob = compile_glob(pattern)

    assert (glob.literal, glob.regex) == (literal, regex)
