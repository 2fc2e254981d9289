"""``lambda-destinations decode``, through click's runner and once as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import lambda_destinations.cli.decode  # noqa: F401 - registers the command on `cli`
from lambda_destinations.cli._app import cli

EVENTS = Path(__file__).parents[1] / "events"


def run(*args: str, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["decode", *args], input=stdin)


def test_json_output_of_a_failure_record() -> None:
    result = run("--json", str(EVENTS / "invocation-retries-exhausted-python.json"))

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "invocation"
    assert summary["envelope"] == "none"
    assert summary["request_id"] == "e4b46cbf-b738-xmpl-8880-a18cdf61200e"
    assert summary["function_name"] == "my-function"
    assert summary["qualifier"] == "$LATEST"
    assert summary["condition"] == "RetriesExhausted"
    assert summary["succeeded"] is False
    assert summary["approximate_invoke_count"] == 3
    assert summary["error_type"] == "KeyError"
    # whole, as the README's --json table says: what the text shows in part, and the record
    record = json.loads((EVENTS / "invocation-retries-exhausted-python.json").read_text())
    trace = record["responsePayload"]["stackTrace"]  # Python's: entries of several lines
    assert summary["stack_trace"] == [line for entry in trace for line in entry.splitlines()]
    assert summary["request_payload"] == record["requestPayload"]
    assert summary["response_payload"] == record["responsePayload"]
    assert summary["record"] == record
    assert result.stderr == ""


def test_json_output_has_nulls_where_fields_are_absent() -> None:
    result = run("--json", str(EVENTS / "invocation-zero-reserved-concurrency.json"))

    summary = json.loads(result.stdout)
    assert summary["error_type"] is None
    assert summary["error_message"] is None
    assert set(summary) >= {
        "kind",
        "envelope",
        "request_id",
        "function_arn",
        "function_name",
        "qualifier",
        "condition",
        "succeeded",
        "approximate_invoke_count",
        "error_type",
        "error_message",
    }


def test_readable_output_is_aligned_and_shows_the_stack_trace() -> None:
    result = run(str(EVENTS / "invocation-retries-exhausted-python.json"))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "condition:                RetriesExhausted" in lines
    assert "succeeded:                no" in lines
    assert "error_type:               KeyError" in lines
    stack_at = next(i for i, line in enumerate(lines) if line.startswith("stack_trace:"))
    assert lines[stack_at].endswith(
        'File "/var/task/lambda_function.py", line 12, in lambda_handler'
    )
    assert lines[stack_at + 1].strip() == "order = load(order_id)"
    # Every value starts in the same column, continuation lines included.
    column = len("approximate_invoke_count: ")
    labelled = [line for line in lines if not line.startswith(" ")]
    assert all(line[:column].rstrip().endswith(":") for line in labelled)
    assert all(line[column - 1] == " " for line in labelled)
    assert lines[stack_at + 1].startswith(" " * column)


def test_readable_output_shows_the_time_in_utc_to_the_second() -> None:
    # given: the golden record, and the same record with its time written in another zone
    body = (EVENTS / "invocation-retries-exhausted-python.json").read_text()
    zoned = body.replace('"2019-11-14T18:21:44.102Z"', '"2019-11-14T19:51:44.102+01:30"')
    assert zoned != body

    # when
    results = [run("-", stdin=text) for text in (body, zoned)]

    # then: both as failures show prints a time; --json keeps ISO 8601
    for result in results:
        assert result.exit_code == 0, result.output
        assert "timestamp:                2019-11-14 18:21:44 UTC" in result.stdout.splitlines()
    assert json.loads(run("--json", "-", stdin=zoned).stdout)["timestamp"] == (
        "2019-11-14T18:21:44.102Z"
    )


@pytest.mark.parametrize(
    ("payload", "shown"), [("42", '"42"'), (42, "42"), ("{}", '"{}"'), ({}, "{}")]
)
def test_readable_output_quotes_a_string_payload(payload: object, shown: str) -> None:
    # before: the string "42" shown as 42, the number's line
    record = json.loads((EVENTS / "invocation-success.json").read_text())
    record["requestPayload"] = record["responsePayload"] = payload

    result = run("-", stdin=json.dumps(record))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":", 1)[1].strip() for line in lines if "_payload:" in line] == [shown] * 2


def test_readable_output_says_when_lambda_left_the_payloads_out() -> None:
    # Lambda drops the payloads of a record too large for its destination: before, the text
    # had no payload line at all, as for a record that never had one
    record = json.loads((EVENTS / "invocation-retries-exhausted-python.json").read_text())
    del record["requestPayload"], record["responsePayload"]

    result = run("-", stdin=json.dumps(record))

    assert result.exit_code == 0, result.output
    assert "request_payload:" in result.stdout
    assert "Lambda left the payloads out of the record" in result.stdout


def test_a_dead_letter_body_that_is_no_json_is_shown_as_text_said_so() -> None:
    message = {
        "Body": "order 42",
        "MessageAttributes": {
            "RequestID": {"DataType": "String", "StringValue": "r-1"},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": "boom"},
        },
    }

    result = run("--message", "-", stdin=json.dumps(message))

    assert result.exit_code == 0, result.output
    assert "request_payload: (not JSON) order 42" in " ".join(result.stdout.split())


def test_reads_standard_input() -> None:
    body = (EVENTS / "eventbridge-success.json").read_text()

    result = run("--json", "-", stdin=body)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["envelope"] == "eventbridge"


def test_whole_sqs_message_passes_its_attributes() -> None:
    result = run("--message", "--json", str(EVENTS / "legacy-dlq-message.json"))

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "legacy-dlq"
    assert summary["request_id"] == "9d2f4a10-xmpl-4c6e-8f1a-2b3c4d5e6f70"
    assert summary["error_type"] == "200"


def test_receive_message_response_with_one_message() -> None:
    message = json.loads((EVENTS / "legacy-dlq-message.json").read_text())

    result = run("--message", "--json", "-", stdin=json.dumps({"Messages": [message]}))

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "legacy-dlq"


def test_without_message_flag_a_whole_message_is_named_as_such() -> None:
    result = run(str(EVENTS / "legacy-dlq-message.json"))

    assert result.exit_code == 1
    assert result.stderr == (
        "error: not a Lambda record: looks like a whole SQS message rather than its body "
        "(decode its Body)\n"
    )


def test_a_dead_letter_body_alone_says_to_give_the_whole_message() -> None:
    # a DLQ message's body is the function's event: only its attributes make it a record
    alone = run("-", stdin='{"orderId": 7}')
    whole = run("--message", "-", stdin=json.dumps({"Body": '{"orderId": 7}'}))

    assert alone.exit_code == 1
    assert alone.stderr.endswith(
        "; a dead-letter queue's message is the function's own event, known by its "
        "attributes: give the whole SQS message with --message\n"
    )
    assert alone.stderr.count("\n") == 1
    # given --message already, the hint would be wrong: the message has no such attributes
    assert whole.exit_code == 1
    assert "--message" not in whole.stderr


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        ("", "error: body is empty\n"),
        ("[1, 2]", "error: body is a JSON array, not a Lambda record\n"),
        ("nope", "error: body is not JSON: Expecting value at line 1 column 1\n"),
    ],
)
def test_message_that_does_not_decode_exits_1_with_one_line(stdin: str, error: str) -> None:
    result = run("--json", "-", stdin=stdin)

    assert result.exit_code == 1
    assert result.stderr == error
    # scripts reading --json get the reason as an object too
    assert json.loads(result.stdout) == {
        "error": error.removeprefix("error: ").rstrip("\n"),
        "kind": "not-a-record",
    }


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        (
            "not json",
            "error: --message input is not JSON: Expecting value at line 1 column 1\n",
        ),
        ('{"Messages": []}', "error: --message input holds 0 messages; pass exactly one\n"),
        (
            '{"MessageId": "m"}',
            "error: --message input has no Body: expected an SQS message as ReceiveMessage "
            "returns it\n",
        ),
        # before: both "has no Body", for a Body that is there but no text, and for an array
        (
            '{"Body": 5}',
            "error: --message input's Body is a JSON number, not text: an SQS message's Body "
            "is the body as a JSON string\n",
        ),
        (
            "[]",
            "error: --message input is a JSON array, not an SQS message: expected one as "
            "ReceiveMessage returns it\n",
        ),
    ],
)
def test_bad_whole_message_input(stdin: str, error: str) -> None:
    result = run("--message", "-", stdin=stdin)

    assert result.exit_code == 1
    assert result.stderr == error


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        # before: "... Exceeds the limit (4300 digits) for integer string conversion: value
        # has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"
        (
            '{"Body": "{}", "n": ' + "1" * 5000 + "}",
            "--message input holds an integer of more than 4300 digits, more than a record "
            "may hold: send such a number as a string",
        ),
        # before: "... maximum recursion depth exceeded while decoding a JSON array from a
        # unicode string"
        (
            '{"Body": "{}", "n": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "--message input is nested too deeply: more than 512 levels of arrays and objects",
        ),
        # before: "... 'utf-8' codec can't decode byte 0xff in position 13: invalid start byte"
        (b'{"Body": "{}"}\xff', "--message input is not valid UTF-8: byte 0xff at position 14"),
    ],
)
def test_a_whole_message_is_judged_in_the_decoders_words(stdin: str | bytes, error: str) -> None:
    result = run("--message", "-", stdin=stdin)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {error}")
    assert result.stderr.count("\n") == 1


def test_a_whole_message_in_utf16_with_a_bom_decodes() -> None:
    # A file PowerShell's redirect wrote (`aws sqs receive-message ... > message.json`).
    body = (EVENTS / "invocation-success.json").read_text()
    message = json.dumps({"Body": body}).encode("utf-16")

    result = run("--json", "--message", "-", stdin=message)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["condition"] == "Success"


def test_unreadable_path_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"

    result = run(str(missing))

    assert result.exit_code == 2
    assert result.stderr == (
        f"error: cannot read {missing} (No such file or directory): give a file holding the "
        "message body, or - to read standard input\n"
    )


def test_an_empty_path_says_so_with_the_fix() -> None:
    # before: "error: cannot read : No such file or directory", no fix
    result = run("")

    assert result.exit_code == 2
    assert result.stderr == (
        "error: PATH is empty: give a file holding the message body, or - to read standard input\n"
    )


def test_directory_path_exits_2(tmp_path: Path) -> None:
    result = run(str(tmp_path))

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: cannot read {tmp_path} (Is a directory): give a")


def test_help_shows_examples() -> None:
    result = CliRunner().invoke(cli, ["decode", "--help"])

    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert "lambda-destinations decode --json body.json" in result.stdout
    assert "--message" in result.stdout


def test_real_process() -> None:
    command = [
        sys.executable,
        "-c",
        "from lambda_destinations.cli import main; main()",
        "decode",
        "--json",
        str(EVENTS / "sns-invocation-failure.json"),
    ]

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["envelope"] == "sns"
    assert summary["function_name"] == "send-invoice"
    assert summary["qualifier"] == "live"


def test_real_process_failure_is_one_line_without_traceback() -> None:
    command = [
        sys.executable,
        "-c",
        "from lambda_destinations.cli import main; main()",
        "decode",
        str(EVENTS / "s3-event-notification.json"),
    ]

    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 1
    assert done.stderr == (
        "error: not a Lambda record: s3://lambda-artifacts-xmpl/b21b84d653bb07b05b1e6b33684dc11b "
        "is not under aws/lambda/, where Lambda writes its records; filter the bucket's "
        "notification on the prefix aws/lambda/\n"
    )
