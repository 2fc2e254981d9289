"""Glob translation, checked against fnmatch.fnmatchcase: SQLite's GLOB (sqlite3 here), and the
LIKE and regular expression PostgreSQL is given (with Python's re standing in for the regex).

That the databases read them the same way through the store is checked in
test_store_behaviour.py.
"""

from __future__ import annotations

import fnmatch
import re
import sqlite3
import warnings

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lambda_destinations.store._glob import compile_glob

ALPHABET = "ab-_]![^*?\\.é%\n"


def sqlite_matches(pattern: str, name: str) -> bool:
    glob = compile_glob(pattern)
    if glob.never:
        return False
    if glob.literal is not None:
        return name == glob.literal
    with sqlite3.connect(":memory:") as conn:
        (hit,) = conn.execute("SELECT ? GLOB ?", (name, glob.sqlite_glob())).fetchone()
    return bool(hit)


def like_to_regex(like: str) -> str:
    parts, escaped = [], False
    for char in like:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
    return "(?s)" + "".join(parts)


def postgres_matches(pattern: str, name: str) -> bool:
    glob = compile_glob(pattern)
    if glob.never:
        return False
    if glob.literal is not None:
        return name == glob.literal
    if re.fullmatch(like_to_regex(glob.like()), name) is None:
        return False
    if not glob.has_sets:
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "possible nested set" and friends would be bugs
        return re.search(glob.regex(), name) is not None


@settings(max_examples=400, deadline=None)
@given(st.text(ALPHABET, max_size=8), st.text(ALPHABET, max_size=8))
@example("[!]", "!")
@example("[z-a]x", "x")
@example("[!z-a]", "q")
@example("[z-a!]", "q")  # fnmatch's own quirk: this matches any character
@example("*\n", "a\n")
@example("[]-^]", "^")
@example("[!^]", "^")
@example("[^]", "^")
@example("[!-]", "a")
@example("[*?[]x", "[x")
def test_globs_mean_what_fnmatchcase_means(pattern: str, name: str) -> None:
    expected = fnmatch.fnmatchcase(name, pattern)
    assert sqlite_matches(pattern, name) == expected
    assert postgres_matches(pattern, name) == expected


@pytest.mark.parametrize(
    ("pattern", "sqlite", "like"),
    [
        ("orders-*", "orders-*", "orders-%"),
        ("*api?", "*api?", "%api_"),
        ("**a", "*a", "%a"),
        ("[!a-c]x", "[^a-c]x", "_x"),
        ("100%_*", "100%_*", "100\\%\\_%"),
        ("a[*]", "a[*]", "a_"),
    ],
)
def test_translation(pattern: str, sqlite: str, like: str) -> None:
    glob = compile_glob(pattern)

    assert glob.sqlite_glob() == sqlite
    assert glob.like() == like


def test_a_glob_without_wildcards_is_a_literal_and_an_empty_range_matches_nothing() -> None:
    assert compile_glob("orders-api").literal == "orders-api"
    assert compile_glob("[z-a]").never
