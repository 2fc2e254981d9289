"""Small things a newcomer notices: plurals, values in logs, one JSON shape, help, completion."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_destinations.config import Settings
from lambda_destinations.handlers.storm import DEFAULT_DIGEST, Digest
from lambda_destinations.simulate import failure_record, legacy_dlq

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
EVENTS = Path(__file__).parents[1] / "events"


def cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> Any:
    return subprocess.run(
        [*ENTRY, *args],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **(env or {})},
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_a_digest_of_one_says_failure() -> None:
    now = dt.datetime.now(dt.UTC)
    digest = Digest("oncall", "orders-api", "TimeoutError", 300, now, now, 4, 3, now, now)

    text = DEFAULT_DIGEST.format(**digest.fields())

    assert text == "1 more failure of orders-api / TimeoutError in the last 5 minutes"


def test_decode_json_on_bad_input_prints_an_error_object() -> None:
    result = cli("decode", "--json", "-", stdin="not json at all")

    assert result.returncode == 1
    shown = json.loads(result.stdout)
    assert shown["kind"] == "not-a-record"
    assert shown["error"].startswith("body is not JSON")
    assert result.stderr.startswith("error: body is not JSON")


def test_decode_message_shows_a_legacy_error_code_as_a_code(tmp_path: Path) -> None:
    message = legacy_dlq(random.Random(1))
    path = tmp_path / "message.json"
    path.write_text(json.dumps({"Body": message.body, "MessageAttributes": message.attributes}))

    result = cli("decode", "--message", str(path))

    assert result.returncode == 0, result.stderr
    assert "error_code:" in result.stdout
    assert "error_type:" not in result.stdout


def test_simulate_help_offers_queue_not_queues() -> None:
    shown = cli("simulate", "--help").stdout
    assert "--queue " in shown
    assert "--queues" not in shown


def test_setting_options_name_the_variable_the_settings_read() -> None:
    # click wraps the help: join it again before looking for a variable's name
    shown = " ".join(cli("run", "--help").stdout.split())

    named = set(re.findall(r"LAMBDA_DESTINATIONS_([A-Z_]+)", shown))

    # the region is ours first (the README's table), the SDKs' AWS_REGION after it
    assert "[env: LAMBDA_DESTINATIONS_REGION, else AWS_REGION]" in shown
    assert "[env: LAMBDA_DESTINATIONS_LOG_FORMAT]" in shown
    assert {name.lower() for name in named} <= set(Settings.model_fields)


def test_completion_prints_a_script_that_completes_commands() -> None:
    script = cli("completion", "bash")
    completes = cli(
        env={
            "_LAMBDA_DESTINATIONS_COMPLETE": "bash_complete",
            "COMP_WORDS": "lambda-destinations quarantine re",
            "COMP_CWORD": "2",
        }
    )

    assert script.returncode == 0
    assert "_LAMBDA_DESTINATIONS_COMPLETE=bash_complete" in script.stdout
    assert completes.stdout.split() == ["plain,resend"]


def test_logs_show_kinds_and_signals_by_value_and_ignore_keeps_its_reason(
    endpoint_url: str, sqlite_url: str
) -> None:
    # given: a failure on a queue, drained with JSON logs
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint_url)
    url = sqs.create_queue(QueueName=f"polish-{os.getpid()}")["QueueUrl"]
    record = failure_record(random.Random(5))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    env = {
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_QUEUES": url,
    }
    try:
        ran = cli("run", "--once", env=env)
    finally:
        sqs.delete_queue(QueueUrl=url)

    # then: the stop line counts kinds by their values
    stopped = [json.loads(line) for line in ran.stderr.splitlines() if "worker stopped" in line]
    assert stopped[0]["kinds"] == {"invocation": 1}
    assert "MessageKind" not in ran.stderr

    # and: ignore --reason is kept and shown
    request_id = record["requestContext"]["requestId"]
    ignored = cli("failures", "ignore", request_id, "--reason", "test data", env=env)
    assert ignored.returncode == 0, ignored.stderr
    assert ignored.stdout.strip() == "ignored 1 failure"
    shown = json.loads(cli("failures", "show", request_id, "--json", env=env).stdout)
    assert shown["status"] == "ignored"
    assert shown["status_by"].endswith("— test data")


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lambda_destinations", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("lambda-destinations, version ")


HELP_AND_VERSION = [("--help",), ("--version",), ("failures", "list", "--help")]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("args", HELP_AND_VERSION)
def test_help_and_version_to_a_full_disk_are_one_line(args: tuple[str, ...]) -> None:
    # given: stdout where every write fails, as a full disk under `> file` does
    with open("/dev/full", "w") as full:
        # when: click itself prints the help or the version there
        done = subprocess.run(
            [*ENTRY, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )

    # then: the README's exit code 1 and its one line, as every other command's output
    # (a traceback and exit 120 before)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: cannot write the output (No space left on device): free space where it goes, "
        "or send it elsewhere"
    ]


@pytest.mark.parametrize("args", HELP_AND_VERSION)
def test_help_and_version_to_a_reader_gone_end_quietly(args: tuple[str, ...]) -> None:
    # given: stdout a pipe whose reader has gone (`| head` that has read enough)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*ENTRY, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write_end)

    # then: 141, as a tool that SIGPIPE ends, and nothing on stderr
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


def complete(*words: str) -> Any:
    """What bash's completion gets for the last of ``words`` (click's bash_complete)."""
    line = ["lambda-destinations", *words]
    env = {
        "_LAMBDA_DESTINATIONS_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(line),
        "COMP_CWORD": str(len(line) - 1),
    }
    return cli(env=env)


@pytest.mark.parametrize(
    "words",
    [
        ("failures", "list", "--since", "yesterday", "--js"),
        ("result", "6c2d1f9e", "--wait", "2d", "--js"),
        ("invoke", "''", "--js"),
    ],
)
def test_a_bad_value_earlier_on_the_line_prints_nothing_into_the_shell(
    words: tuple[str, ...],
) -> None:
    # A value the command would refuse, typed before the word being completed: the error line
    # was printed over the shell's prompt, and nothing completed.
    done = complete(*words)

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split() == ["plain,--json"]


def test_decode_completes_file_names() -> None:
    # `decode body.json`: its PATH completed nothing, where the shell offers files for a path
    done = complete("decode", "bo")

    assert done.stdout.split() == ["file,bo"]


def _stdin_closed() -> None:
    os.close(0)  # as `<&-` or a service started with no input leaves it


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("decode", "-"),
            "error: cannot read standard input (Bad file descriptor): give a file holding the "
            "message body, or - to read standard input",
        ),
        (
            ("invoke", "orders-api", "--payload", "@-"),
            "error: --payload: cannot read - (Bad file descriptor): name a readable file",
        ),
    ],
)
def test_reading_a_closed_standard_input_is_one_line(args: tuple[str, ...], line: str) -> None:
    # given: a command told to read standard input, started without one
    env = {**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", "AWS_REGION": "us-east-1"}

    # when
    result = subprocess.run(
        [*ENTRY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=None,
        preexec_fn=_stdin_closed,
    )

    # then: the usage error reading a file gives (before: an AttributeError's traceback)
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")


def _store_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'store.db'}",
    }


def _run_with_closed(fd: int, args: tuple[str, ...], env: dict[str, str]) -> Any:
    """The command started with file descriptor ``fd`` closed, as `>&-` (1) or `2>&-` (2)
    leaves it; the other of stdout and stderr captured."""
    return subprocess.run(
        [*ENTRY, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(fd),
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [("--version",), ("config",), ("completion", "bash"), ("failures", "stats", "--json")],
)
def test_output_to_a_closed_stdout_is_one_line_not_success(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # given: a command whose job is its output, started with stdout closed (`>&-`)
    env = _store_env(tmp_path)
    assert cli("migrate", env=env).returncode == 0

    # when
    done = _run_with_closed(1, args, env)

    # then: the README's exit code 1 and its one line, not a success that wrote nothing
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "error: cannot write the output: stdout is closed (>&-): send it somewhere, "
        "as > /dev/null does to drop it"
    ]


def test_a_command_runs_with_stderr_closed(tmp_path: Path) -> None:
    # given: stderr closed at start (`2>&-`), where only the logs and error lines go
    env = _store_env(tmp_path)

    # when
    done = _run_with_closed(2, ("config", "--json"), env)

    # then: its output as ever (an AttributeError, unseen, and exit 1 before)
    assert done.returncode == 0
    assert "settings" in json.loads(done.stdout)
