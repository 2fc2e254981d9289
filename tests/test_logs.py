"""What the log lines show of what a function or a message's sender wrote."""

from __future__ import annotations

import dataclasses
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


class _Url:
    """An object of a handler's with a repr of its own: a password, an escape, a carriage
    return in it (a yarl URL, an aiohttp response name their URL)."""

    def __repr__(self) -> str:
        return "URL('postgresql://app:pw42x@db/app')\x1b[2J\r"


class _Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("a bug in the handler's exception class")


class _Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("a bug in the handler's class")


def _deep(levels: int) -> list[object]:
    nested: list[object] = []
    for _ in range(levels):
        nested = [nested]
    return nested


# What a handler may log of a record and of its own objects: what JSON has no value for (NaN,
# an integer past Python's 4,300 digits, a tuple key), objects with their own repr, a payload
# nested deeper than the recursion limit lets a walk through it go (JSON parsers take it).
ODD_VALUES: dict[str, object] = {
    "ratio": float("nan"),
    "limit": float("inf"),
    "amount": 10**5000,
    "counts": {("eu-west-1", "fn"): 3},
    "url": _Url(),
    "error": _Unsayable("x"),
    "shape": _Unshowable(),
    "payload": _deep(500),
}


def _logged_odd_values(fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    configure_logging(fmt, "info")  # type: ignore[arg-type]
    try:
        log = structlog.get_logger("test")
        for key, value in ODD_VALUES.items():
            log.info("handler saw", **{key: value})  # none raises
        log.info(_Url())
    finally:
        structlog.reset_defaults()
    return capsys.readouterr().err


def _strict(name: str) -> object:
    raise AssertionError(f"{name} is no JSON a log pipeline reads")


def test_what_a_handler_logs_is_one_strict_json_object_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given/when: a handler logs values JSON cannot carry as they are
    err = _logged_odd_values("json", capsys)

    # then: a line each, JSON as strict parsers read it (no NaN), no password
    lines = [json.loads(line, parse_constant=_strict) for line in err.splitlines()]
    assert len(lines) == len(ODD_VALUES) + 1
    fields = {key: line[key] for line in lines for key in line if key in ODD_VALUES}
    assert fields["ratio"] == "nan"
    assert fields["limit"] == "inf"
    assert fields["amount"] == "<an integer of 16,610 bits>"
    assert fields["counts"] == {"('eu-west-1', 'fn')": 3}
    assert fields["url"] == "URL('postgresql://app:***@db/app')\x1b[2J\r"
    assert fields["error"] == "(its text could not be made: RuntimeError)"
    assert fields["shape"] == "<_Unshowable object: its repr() failed>"
    assert "… nested more than 64 levels deep" in json.dumps(fields["payload"], ensure_ascii=False)
    assert lines[-1]["event"] == "URL('postgresql://app:***@db/app')\x1b[2J\r"
    assert "pw42x" not in err


def test_the_console_shows_a_handlers_objects_masked_and_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given/when: a handler logs the same values, on the console
    err = _logged_odd_values("console", capsys)

    # then: a line each, the objects' own reprs escaped and masked
    assert len(err.splitlines()) == len(ODD_VALUES) + 1
    for control in CONTROLS:
        assert control not in err
    assert "pw42x" not in err
    assert "url=URL('postgresql://app:***@db/app')\\x1b[2J\\x0d" in err
    assert "amount='<an integer of 16,610 bits>'" in err
    assert "shape=<_Unshowable object: its repr() failed>" in err


# A library's log call whose arguments do not fit its format (a bug of that library's), one of
# them holding a URL's password.
MISFORMATTED = """
import logging, sys
from lambda_destinations.logs import configure_logging

configure_logging(sys.argv[1], "info")
logging.getLogger("aiobotocore.endpoint").warning("retry %s of %d", "1", "http://u:pw42x@h/")
print("the library carried on")
"""


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_librarys_log_call_that_does_not_fit_its_format_is_one_masked_line(fmt: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", MISFORMATTED, fmt], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, "the library carried on\n")
    [line] = done.stderr.splitlines()  # no "--- Logging error ---" and its traceback
    assert "pw42x" not in line
    assert "retry %s of %d" in line
    assert "http://u:***@h/" in line
    if fmt == "json":
        assert json.loads(line)["logger"] == "aiobotocore.endpoint"


@dataclasses.dataclass
class _Login:
    user: str
    password: str


# Secrets quoted in a text as code writes them: an object's repr (a dataclass, a model), a dict
# a library logs as its message, JSON in an error's text; an empty one stays.
QUOTED_SECRETS = """
import json, logging, sys
import structlog
from lambda_destinations.logs import configure_logging

configure_logging(sys.argv[1], "info")
logging.getLogger("aiobotocore.client").warning({"user": "app", "password": "pw42x one"})
structlog.get_logger().warning("login refused", login=sys.argv[2], empty="password=''")
structlog.get_logger().warning(json.dumps({"api_key": "pw42x\\\\\\"two", "n": 1}))
"""


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_secret_quoted_in_a_text_never_reaches_a_log_line(fmt: str) -> None:
    login = repr(_Login("app", "pw42x's"))
    done = subprocess.run(
        [sys.executable, "-c", QUOTED_SECRETS, fmt, login],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(done.stderr.splitlines()) == 3
    assert "pw42x" not in done.stderr
    shown = done.stderr.replace('\\"', '"').replace("\\'", "'")  # as JSON or repr escape it
    assert "'user': 'app', 'password': '***'" in shown
    assert "user='app', password=\"***\")" in shown
    assert "password=''" in shown
    assert '{"api_key": "***", "n": 1}' in shown
