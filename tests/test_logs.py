"""What the log lines show of what a function or a message's sender wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


# What a process writes besides structlog's own events: a library's record over two lines, one
# with a traceback and a URL's password, asyncio's report of a task nobody awaited, a warning.
OTHERS = """
import asyncio, gc, logging, sys, warnings
from lambda_destinations.logs import configure_logging

configure_logging(sys.argv[1], "info")
logging.getLogger("botocore.hooks").warning("first line\\nsecond line")
logging.getLogger("botocore.hooks").info("below the level")
try:
    raise ValueError("bad answer")
except ValueError:
    logging.getLogger("aiohttp.client").exception("call to http://u:pw42x@h/ failed")

async def lost():
    raise RuntimeError("nobody awaited me")

async def main():
    asyncio.get_running_loop().create_task(lost())
    await asyncio.sleep(0.01)

asyncio.run(main())
gc.collect()
warnings.warn("an old API", DeprecationWarning, stacklevel=1)
"""


def _others(fmt: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", OTHERS, fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_the_standard_librarys_records_and_warnings_are_json_lines_too() -> None:
    lines = [json.loads(line) for line in _others("json")]  # each line one object
    by_logger = {line["logger"]: line for line in lines}
    assert set(by_logger) == {"botocore.hooks", "aiohttp.client", "asyncio", "py.warnings"}
    for line in lines:
        assert line["timestamp"].endswith("Z")
        assert line["level"] in ("warning", "error")
    assert by_logger["botocore.hooks"]["event"] == "first line\nsecond line"
    failed = by_logger["aiohttp.client"]
    assert failed["event"] == "call to http://u:***@h/ failed"
    assert failed["exception"].endswith("ValueError: bad answer")
    assert "nobody awaited me" in by_logger["asyncio"]["exception"]
    assert "DeprecationWarning: an old API" in by_logger["py.warnings"]["event"]


def test_the_console_writes_a_librarys_record_on_one_line() -> None:
    lines = _others("console")
    assert not [line for line in lines if line.startswith("second line")]
    assert [line for line in lines if "'first line\\nsecond line'" in line]
    assert not [line for line in lines if "pw42x" in line]


@pytest.mark.parametrize(
    ("env", "coloured"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False)],
    ids=["terminal", "no-color", "dumb-terminal"],
)
def test_console_lines_on_a_terminal_are_coloured_unless_no_color_or_a_dumb_terminal(
    env: dict[str, str], coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: stderr a terminal (a pseudo-terminal's), and the environment
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    leader, follower = os.openpty()
    with open(follower, "w") as terminal, open(leader, "rb", buffering=0) as screen:
        monkeypatch.setattr(sys, "stderr", terminal)

        # when: the worker logs a line
        configure_logging("console", "info")
        try:
            structlog.get_logger("test").info("worker started", queues=["q"])
        finally:
            structlog.reset_defaults()
        shown = screen.read(4096)

    # then: colour codes only where the terminal is asked for them
    assert b"worker started" in shown
    assert (b"\x1b[" in shown) is coloured
