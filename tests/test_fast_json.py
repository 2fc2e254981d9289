"""The hot path's JSON: compiled parsers' speed, the standard library's values and errors."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_destinations._json import dumps, loads, strict_loads

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_values_survive_a_round_trip_as_the_standard_library_reads_them(value: object) -> None:
    text = dumps(value)
    assert loads(text) == json.loads(text) == value


def test_integers_past_64_bits_stay_exact() -> None:
    big = 123456789012345678901234567890
    assert loads(f'{{"id": {big}}}') == {"id": big}
    assert json.loads(dumps({"id": big})) == {"id": big}


def test_what_the_fast_parser_refuses_is_read_as_json_reads_it() -> None:
    assert loads('"\\ud800"') == json.loads('"\\ud800"')  # a lone surrogate
    assert math.isinf(loads("1e999"))


def test_errors_are_the_fallbacks_own() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting property name"):
        loads("{oops")


def test_keys_that_are_not_strings_are_written_as_json_writes_them() -> None:
    assert json.loads(dumps({1: "a"})) == {"1": "a"}


def test_a_number_from_a_sqlite_json_column_is_returned_as_it_is() -> None:
    assert loads(42) == 42  # type: ignore[arg-type]


@given(json_values)
def test_strict_parsing_reads_every_json_value(value: object) -> None:
    assert strict_loads(dumps(value)) == value


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("NaN", "NaN is not a JSON value"),
        ('{"a": [Infinity]}', "Infinity is not a JSON value"),
        ("-Infinity", "-Infinity is not a JSON value"),
        ("1e999", "1e999 is too large for a JSON number"),
        ('{"total": -1e999}', "-1e999 is too large for a JSON number"),
        ('"\\ud800"', "lone surrogate"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        # before: Python's own line, naming sys.set_int_max_str_digits() as the fix
        ("-" + "9" * 5000, r"^-9{39}… \(5,000 digits\) is too large for a JSON number$"),
    ],
)
def test_strict_parsing_refuses_what_only_python_reads_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        strict_loads(text)
    assert len(str(refused.value).splitlines()) == 1
    assert "sys." not in str(refused.value)
