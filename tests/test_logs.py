"""What the log lines show of what a function or a message's sender wrote."""

from __future__ import annotations

import json

import pytest
import structlog

from lambda_destinations.logs import configure_logging

# An error type that clears the screen, writes the clipboard (OSC 52, no "=" so that no quote
# makes the renderer quote it) and reverses the rest of the line; a request id that forges a
# line.
ERROR_TYPE = "Err\x1b[2J\x1b]52;c;ZXZpbGxs\x07\u202e"
REQUEST_ID = "req-1\rX\x08"
EVENT = "order failed\n2026-12-05T11:00:00Z [error    ] forged"
CONTROLS = ("\x1b", "\x07", "\u202e", "\r", "\x08")


def _logged(fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    configure_logging(fmt, "debug")  # type: ignore[arg-type]
    try:
        log = structlog.get_logger("test").bind(request_id=REQUEST_ID)
        log.warning("order failed", error=ERROR_TYPE)
        log.warning(EVENT)
        try:
            raise ValueError(f"bad order {ERROR_TYPE}")
        except ValueError:
            log.exception("handler raised")
    finally:
        structlog.reset_defaults()
    return capsys.readouterr().err


def test_the_console_shows_a_records_control_characters_as_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _logged("console", capsys)
    for control in CONTROLS:
        assert control not in err
    assert "error='Err\\x1b[2J\\x1b]52;c;ZXZpbGxs\\x07\\u202e'" in err
    assert "request_id='req-1\\rX\\x08'" in err
    # The event stays on its line: nothing begins a line of its own but the traceback.
    assert "\n2026-12-05T11:00:00Z [error    ] forged" not in err
    assert "'order failed\\n2026-12-05T11:00:00Z [error    ] forged'" in err
    assert "ValueError: bad order Err\\x1b[2J\\x1b]52;c;ZXZpbGxs\\x07\\u202e" in err


def test_json_lines_keep_the_values_exact(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.loads(line) for line in _logged("json", capsys).splitlines()]
    assert lines[0]["error"] == ERROR_TYPE
    assert lines[0]["request_id"] == REQUEST_ID
    assert lines[1]["event"] == EVENT
    assert ERROR_TYPE in lines[2]["exception"]
