"""JSON log lines fit in 16 KiB, the size past which a container runtime splits a line."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_destinations._json_lines import LINE_MAX, fitted
from lambda_destinations.logs import configure_logging

IDS = {
    "queue": "orders-failure",
    "message_id": "9f2c1a4e-8d7b-4c1e-9a3f-2b6d5e4c3a21",
    "request_id": "c1f4a2b3-5d6e-4f70-8a9b-0c1d2e3f4a5b",
    "receive_count": 3,
    "function": "checkout",
    "handler": "notify",
}
STAMP = {"level": "error", "timestamp": "2026-12-05T11:00:00.000000Z"}


def _line(**fields: Any) -> str:
    return json.dumps({**IDS, **fields, **STAMP})


def _written(line: str) -> dict[str, Any]:
    """What a collector reads: one line of at most LINE_MAX bytes, its newline included, that is
    a JSON object keeping the ids, level and timestamp whole, and says whether it was cut."""
    out = fitted(line)
    assert len((out + "\n").encode()) <= LINE_MAX
    read: dict[str, Any] = json.loads(out)
    assert {key: read[key] for key in (*IDS, *STAMP)} == {**IDS, **STAMP}
    assert read.get("truncated", False) is (out != line)
    return read


def test_a_line_that_fits_is_written_as_rendered() -> None:
    line = _line(event="handler notify failed", error="KeyError: 'customer_id'")
    assert fitted(line) is line
    # the longest line that fits (its newline the 16,384th byte), and one byte more
    filler = "x" * (LINE_MAX - 1 - len(_line(event="")))
    assert len(_line(event=filler)) == LINE_MAX - 1
    assert fitted(_line(event=filler)) == _line(event=filler)
    longer = _written(_line(event=filler + "y"))
    assert longer["truncated"] is True
    assert longer["event"].startswith("xxx")
    assert longer["event"].endswith("xxy")
    assert re.search(r"\n… \d+ characters cut …\n", longer["event"])


def test_bytes_are_counted_as_written_escapes_and_all() -> None:
    # 3,000 characters, but 18,000 bytes on the line: "é" is written \u00e9
    read = _written(_line(event="order failed", note="é" * 3000))
    assert read["truncated"] is True
    assert read["event"] == "order failed"
    assert read["note"].startswith("éé")
    assert read["note"].endswith("éé")
    assert "characters cut" in read["note"]


def _raise_deep(depth: int, message: str) -> None:
    """Raises ValueError(message) from ``depth`` frames down, two functions in turn (Python's
    traceback then repeats no line it could fold)."""

    def ping(n: int) -> None:
        if n == 0:
            raise ValueError(message)
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    ping(depth)


def _traceback(depth: int, message: str) -> str:
    try:
        _raise_deep(depth, message)
    except ValueError:
        return structlog.processors.format_exc_info(None, "error", {"exc_info": True})["exception"]
    raise AssertionError("no exception")


def test_a_deep_traceback_keeps_its_ends_and_counts_the_frames_left_out() -> None:
    # given: the traceback of a bug 400 calls deep, whose message is 100 kB
    whole = _traceback(400, "bad order " + "x" * 100_000 + " end")
    assert len(whole) > 3 * LINE_MAX

    # when
    read = _written(_line(event="handler notify raised an unexpected error", exception=whole))

    # then: the outermost frame, the innermost ones (where it was raised), the exception's type
    # and its message's start and end; the frames between counted
    shown = read["exception"]
    lines = shown.split("\n")
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].endswith("in _traceback")
    (left_out,) = re.findall(r"^  … (\d+) frames left out …$", shown, re.MULTILINE)
    frames = [line for line in lines if line.startswith('  File "')]
    assert len(frames) + int(left_out) == whole.count('\n  File "')
    assert len(frames) > 20  # as many as fit
    assert frames[-1].endswith("in ping")
    assert "raise ValueError(message)" in shown
    assert re.search(r"\nValueError: bad order x+\n… [\d,]+ characters cut …\nx+ end$", shown)


def test_a_traceback_chain_leaves_frames_out_of_its_longest_stack() -> None:
    # given: a deep bug, re-raised by the handler as another error
    try:
        try:
            _raise_deep(400, "deep")
        except ValueError as exc:
            raise KeyError("customer_id") from exc
    except KeyError:
        whole = structlog.processors.format_exc_info(None, "error", {"exc_info": True})
    read = _written(_line(event="handler raised", exception=whole["exception"]))

    # then: both exceptions and the handler's own frame, frames left out of the deep stack only
    shown = read["exception"]
    assert shown.count("frames left out") == 1
    assert "ValueError: deep\n\nThe above exception was the direct cause" in shown
    assert shown.endswith("raise KeyError(\"customer_id\") from exc\nKeyError: 'customer_id'")


def test_a_dict_keeps_its_first_keys_and_counts_the_others() -> None:
    payload = {f"item{n}": {"sku": f"SKU-{n:05d}", "note": "x" * 100} for n in range(500)}
    read = _written(_line(event="order", payload=payload))
    shown = read["payload"]
    kept = [key for key in shown if key != "…"]
    assert kept == [f"item{n}" for n in range(len(kept))]
    assert all(shown[key] == payload[key] for key in kept)  # each kept whole
    assert shown["…"] == f"{500 - len(kept)} fields left out"


def test_nested_dicts_and_lists_fit_and_stay_json() -> None:
    deep: Any = {"leaf": "y" * 5_000, "numbers": list(range(2_000))}
    for level in range(40):
        deep = {f"level{level}": deep, "items": [deep] if level % 7 == 0 else []}
    read = _written(_line(event="nested", record=deep, payload=[deep, "z" * 30_000]))
    assert read["event"] == "nested"
    assert read["truncated"] is True


def test_many_fields_leave_the_last_out_never_the_event_nor_the_traceback() -> None:
    fields = {f"field{n}": "v" * 400 for n in range(2000)}
    read = _written(_line(event="e" * 30_000, exception=_traceback(100, "boom"), **fields))
    assert read["event"].startswith("eee")
    assert read["exception"].endswith("ValueError: boom")
    kept = [key for key in read if key.startswith("field")]
    assert kept == [f"field{n}" for n in range(len(kept))]
    assert read["…"] == f"{2000 - len(kept):,} fields left out"


def test_an_id_of_a_kilobyte_is_cut_all_the_same() -> None:
    out = fitted(json.dumps({"event": "e", "request_id": "r" * 1000, "note": "n" * 20_000}))
    read = json.loads(out)
    assert len(out) < LINE_MAX
    assert read["request_id"].startswith("rrr")
    assert "characters cut" in read["request_id"]


text = st.text(max_size=4) | st.builds(
    lambda piece, times: piece * times, st.text(min_size=1, max_size=3), st.integers(0, 12_000)
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(text, inner, max_size=30),
    max_leaves=60,
)


names = st.text(max_size=20).filter(lambda name: name not in {*IDS, *STAMP, "truncated"})


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(names, values, max_size=40), text)
def test_any_event_is_written_in_16_kib(fields: dict[str, Any], event: str) -> None:
    read = _written(_line(**{**fields, "event": event}))
    assert read["event"] == event or read["truncated"] is True
    assert isinstance(read["event"], str)


def test_the_standard_librarys_records_fit_too(capsys: pytest.CaptureFixture[str]) -> None:
    # given: a library's record of 40 kB with a traceback, in the JSON configuration
    configure_logging("json", "info")
    try:
        try:
            _raise_deep(300, "é" * 10_000)
        except ValueError:
            logging.getLogger("botocore.hooks").exception("answer: %s", "a" * 40_000)
        structlog.get_logger("test").error("payload", record={"k": ["v" * 1000] * 100})
    finally:
        structlog.reset_defaults()

    # then
    lines = capsys.readouterr().err.encode().split(b"\n")[:-1]
    assert len(lines) == 2
    for line in lines:
        assert len(line) + 1 <= LINE_MAX
        assert json.loads(line)["truncated"] is True
    record = json.loads(lines[0])
    assert record["logger"] == "botocore.hooks"
    assert record["event"].startswith("answer: aaa")
    assert "frames left out" in record["exception"]
