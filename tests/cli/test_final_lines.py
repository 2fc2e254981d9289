"""The line a command ends on (its error, `interrupted`, `terminated`) in the log format asked
for: with JSON logs a JSON object a log pipeline parses, else the plain line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lambda_destinations.cli._app import Terminated, _interrupted, fail
from lambda_destinations.logs import configure_logging

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]


def cli(*args: str, log_format: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": log_format},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_with_json_logs_a_settings_error_is_one_json_line() -> None:
    # before: `error: setting 'concurrency' …` in plain text, the one line a pipeline reading
    # the container's JSON logs could not parse
    result = cli(
        "run",
        "--concurrency",
        "5",
        "--queues",
        "q",
        "--config",
        "/nonexistent.toml",
        log_format="json",
    )
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.splitlines()
    logged = json.loads(line)
    assert logged["level"] == "error"
    assert logged["exit_code"] == 3
    assert "/nonexistent.toml" in logged["event"]
    assert not logged["event"].startswith("error:")


def test_with_json_logs_a_commands_error_is_one_json_line_its_secrets_masked() -> None:
    store = "postgresql://app:hunter2@127.0.0.1:1/results"
    result = cli("failures", "list", "--store", store, log_format="json")
    assert result.returncode == 4, result.stderr
    [line] = result.stderr.splitlines()
    logged = json.loads(line)
    assert (logged["level"], logged["exit_code"]) == ("error", 4)
    assert "postgresql://app:***@127.0.0.1:1/results" in logged["event"]
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("log_format", ["auto", "console"])
def test_without_json_asked_for_the_error_stays_a_plain_line(log_format: str) -> None:
    # auto writes JSON logs where stderr is no terminal (here), yet a script or a person reading
    # stderr in a file keeps the plain line
    result = cli("failures", "list", "--store", "sqlite:///nonexistent/x.db", log_format=log_format)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: store URL 'sqlite:///nonexistent")


@pytest.mark.parametrize(
    ("interruption", "event", "code"),
    [(Terminated(), "terminated", 143), (KeyboardInterrupt(), "interrupted", 130)],
)
def test_with_json_logs_an_interruption_is_one_json_line_at_warning(
    interruption: KeyboardInterrupt, event: str, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info")
    with pytest.raises(SystemExit) as leaving:
        _interrupted(interruption)
    assert leaving.value.code == code
    logged = json.loads(capsys.readouterr().err)
    assert (logged["event"], logged["level"], logged["exit_code"]) == (event, "warning", code)


def test_with_console_logs_an_error_is_the_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    configure_logging("console", "info")  # a later configuration's format is the one
    with pytest.raises(SystemExit):
        fail("it broke: fix it", 3)
    assert capsys.readouterr().err == "error: it broke: fix it\n"


@pytest.mark.parametrize(
    ("interruption", "event"), [(Terminated(), "terminated"), (KeyboardInterrupt(), "interrupted")]
)
def test_with_json_logs_the_last_line_is_written_whatever_log_level_leaves_out(
    interruption: KeyboardInterrupt, event: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # log_level error leaves warnings out: the line a command ends on is not a log line among
    # others, and with none the container's log would end without saying why the process did
    configure_logging("json", "error")
    with pytest.raises(SystemExit):
        _interrupted(interruption)
    logged = json.loads(capsys.readouterr().err)
    assert (logged["event"], logged["level"]) == (event, "warning")
