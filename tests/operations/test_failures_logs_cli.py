"""`failures logs`: a failed invocation's own log lines, read from CloudWatch Logs on a moto
server over HTTP, run as a user runs the command.

moto's Lambda writes no log lines without Docker, so each test creates the function's log group
and puts in it the lines Lambda writes for an invocation: START, the code's own lines (the
runtime's logger names the request id, print does not), END and REPORT, in the text or the JSON
log format. moto's Lambda has no LoggingConfig either: a proxy adds it to its answer (the one
stand-in here, for a field moto lacks), and another answers AWS's refusal where moto allows all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from logs_helpers import (
    DENIED,
    GROUP,
    OTHER_ID,
    STREAM,
    invocation,
    lambda_logs,
    logs_client,
    millis,
    put,
    put_last_attempt,
    refusing_filter_log_events,
)
from ops_helpers import REGION, cli, cli_through, error_lines, failure_body, row_of, seed_sync

from accounts_endpoint import AccountsEndpoint
from lambda_destinations.simulate import function_arn
from lambda_destinations.store import InvocationRow
from tcp_proxy import AnswerCutter, aws_error


@pytest.fixture
def logs(endpoint_url: str) -> Iterator[Any]:
    with lambda_logs(endpoint_url) as client:
        yield client


def failure(minutes_ago: float = 10, n: int = 1) -> InvocationRow:
    """A RetriesExhausted record of orders-api:$LATEST (3 attempts), written ``minutes_ago``."""
    _, record = failure_body(n, minutes_ago=minutes_ago)
    record["requestContext"]["functionArn"] = function_arn("orders-api")
    return row_of(json.dumps(record))


def failure_at(**kwargs: Any) -> tuple[InvocationRow, str, dt.datetime]:
    """A failure (:func:`failure`), its request id and its record's time."""
    row = failure(**kwargs)
    assert row.request_id is not None
    assert row.timestamp is not None
    return row, row.request_id, row.timestamp


def logged_failure(client: Any, sqlite_url: str, **kwargs: Any) -> tuple[InvocationRow, str]:
    """A failure seeded in the store, its last attempt's lines in the log group (with another
    invocation's before and after it in the same stream); its request id."""
    row, rid, at = failure_at(**kwargs)
    put_last_attempt(client, rid, at)
    seed_sync(sqlite_url, [row])
    return row, rid


def test_the_invocations_lines_are_shown_and_no_other_invocations(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    # given: the failure's lines between two other invocations' in its stream, and another
    # invocation's lines at the same time in another stream
    row, rid = logged_failure(logs, sqlite_url)

    # when: named by its first 8 characters, as `failures list` shows it
    result = cli("failures", "logs", rid[:8], env=cli_env)

    # then: its lines, the printed one too, each after its time; none of the others
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"stream {STREAM}"
    assert out[1].endswith(f"  START RequestId: {rid} Version: $LATEST")
    assert out[1][:19] == (row.timestamp - dt.timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S")
    assert out[3].endswith("  printed without a request id")
    # a traceback's carriage returns are its line breaks, indented under its first line
    assert out[4].endswith("  [ERROR] TimeoutError: card service")
    assert out[5] == " " * 21 + "Traceback (most recent call last):"
    # what the function wrote cannot drive the terminal
    assert "colour \\x1b[31mred\\x1b[0m and \\u202eevil" in result.stdout
    assert "\x1b" not in result.stdout
    assert out[-1].endswith(f"  REPORT RequestId: {rid}\tDuration: 3000.00 ms\tStatus: timeout")
    assert len(out) == 10
    for other in ("before", "after", "elsewhere", OTHER_ID):
        assert other not in result.stdout
    assert result.stderr.splitlines() == [
        f"7 lines from log group {GROUP}, "
        f"{(row.timestamp - dt.timedelta(minutes=16)):%Y-%m-%d %H:%M:%S} → "
        f"{(row.timestamp + dt.timedelta(minutes=1)):%Y-%m-%d %H:%M:%S} UTC",
        "1 of 3 attempts in the window; --all-attempts reads back to the first",
    ]


def test_show_points_at_the_logs_command(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    _, rid = logged_failure(logs, sqlite_url)

    result = cli("failures", "show", rid, env=cli_env)

    assert result.returncode == 0, result.stderr
    assert f"logs         lambda-destinations failures logs {rid}\n" in result.stdout


def test_json_gives_each_line_exactly(cli_env: dict[str, str], sqlite_url: str, logs: Any) -> None:
    row, rid = logged_failure(logs, sqlite_url)

    result = cli("failures", "logs", rid, "--json", "--limit", "3", env=cli_env)

    assert result.returncode == 0, result.stderr
    lines = json.loads(result.stdout)
    assert [set(line) for line in lines] == [
        {"timestamp", "log_group", "log_stream", "message"}
    ] * 3
    assert lines[0]["message"] == f"START RequestId: {rid} Version: $LATEST\n"
    assert lines[2]["message"] == "printed without a request id\n"
    assert {line["log_group"] for line in lines} == {GROUP}
    assert {line["log_stream"] for line in lines} == {STREAM}
    first = dt.datetime.fromisoformat(lines[0]["timestamp"])
    assert row.timestamp is not None
    assert first == (row.timestamp - dt.timedelta(seconds=30)).replace(
        microsecond=first.microsecond
    )
    assert "the first 3 shown; more lines match (--limit 0: all)" in result.stderr

    whole = json.loads(cli("failures", "logs", rid, "--json", env=cli_env).stdout)
    assert whole[-3]["message"] == "colour \x1b[31mred\x1b[0m and \u202eevil\n"  # as written


def test_lines_in_the_json_log_format_are_found(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    # given: the JSON log format, where the request id is a field of each line the platform
    # and the runtime's logger write
    row, rid, at = failure_at()
    own = [
        json.dumps({"level": "ERROR", "requestId": rid, "message": "card declined"}),
        "printed: no JSON, no request id",
    ]
    put(
        logs,
        STREAM,
        invocation(rid, at - dt.timedelta(minutes=2), own, json_format=True),
    )
    put(logs, STREAM, invocation(OTHER_ID, at, ["later"], json_format=True))
    seed_sync(sqlite_url, [row])

    result = cli("failures", "logs", rid, "--json", env=cli_env)

    assert result.returncode == 0, result.stderr
    messages = [line["message"] for line in json.loads(result.stdout)]
    assert len(messages) == 5
    assert '"platform.start"' in messages[0]
    assert messages[1:3] == [own[0], own[1]]
    assert '"platform.report"' in messages[4]


def test_earlier_attempts_are_read_with_all_attempts(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    # given: lines of the request id only 3 hours before its record (an earlier attempt)
    row, rid, at = failure_at()
    put(logs, STREAM, invocation(rid, at - dt.timedelta(hours=3), ["first try"]))
    seed_sync(sqlite_url, [row])

    # when: the last attempt's window, then every attempt's
    last = cli("failures", "logs", rid, env=cli_env)
    every = cli("failures", "logs", rid, "--all-attempts", env=cli_env)

    # then: none in the first, said with the window and how to widen it; found in the second
    assert last.returncode == 0, last.stderr
    assert last.stdout == ""
    assert last.stderr.splitlines() == [
        f"no line of request id {rid} in log group {GROUP}, "
        f"{(at - dt.timedelta(minutes=16)):%Y-%m-%d %H:%M:%S} → "
        f"{(at + dt.timedelta(minutes=1)):%Y-%m-%d %H:%M:%S} UTC",
        "--all-attempts reads back to the first attempt; --since and --until set the window",
    ]
    assert every.returncode == 0, every.stderr
    assert "first try" in every.stdout
    assert "attempts in the window" not in every.stderr


def test_no_line_of_a_record_older_than_the_groups_retention_says_they_expired(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    row = failure(minutes_ago=20 * 24 * 60)  # 20 days
    put(logs, STREAM, invocation(OTHER_ID, dt.datetime.now(dt.UTC), ["today"]))
    logs.put_retention_policy(logGroupName=GROUP, retentionInDays=7)
    seed_sync(sqlite_url, [row])

    result = cli("failures", "logs", row.request_id or "", env=cli_env)

    assert result.returncode == 0, result.stderr
    assert "the log group keeps lines 7 days, and the record is from " in result.stderr
    assert result.stderr.rstrip().endswith("UTC: its lines have expired")


def test_a_missing_log_group_is_one_line_exit_1(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    row = failure()
    seed_sync(sqlite_url, [row])

    result = cli("failures", "logs", row.request_id or "", env=cli_env)

    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"error: log group {GROUP} not found in account 123456789012, region {REGION}: the "
        "function has not logged yet, or logs to another group: give it, --log-group NAME "
        "(GetFunctionConfiguration failed (ResourceNotFoundException: "
    ), line
    assert line.endswith("its LoggingConfig, which may name one, was not read)")
    assert result.stdout == ""


def test_a_legacy_dlq_message_needs_its_log_group(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    # given: a legacy DLQ message (no function named), received now
    rid = "9d2f4a10-1111-4c6e-8f1a-2b3c4d5e6f70"
    attributes = {"RequestID": rid, "ErrorCode": "200", "ErrorMessage": "Task timed out"}
    row = row_of('{"order": 1}', attributes)
    seed_sync(sqlite_url, [row])
    put(logs, STREAM, invocation(rid, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3), ["x"]))

    without = cli("failures", "logs", rid, env=cli_env)
    given = cli("failures", "logs", rid, "--log-group", GROUP, env=cli_env)

    assert without.returncode == 2, without.stderr
    assert error_lines(without) == [
        "error: the record names no function (legacy-dlq): give its log group, "
        "--log-group /aws/lambda/NAME"
    ]
    assert given.returncode == 0, given.stderr
    assert f"START RequestId: {rid}" in given.stdout


def test_a_dlq_message_beside_its_destinations_record_is_read_through_that_function(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    # given: a failure its on-failure destination and its dead-letter queue both recorded (AWS
    # sends both when both are configured), the DLQ message received last, so the newest of
    # the request id's records; the last attempt's lines in the function's log group
    row, rid, at = failure_at()
    put_last_attempt(logs, rid, at)
    attributes = {"RequestID": rid, "ErrorCode": "200", "ErrorMessage": "card service"}
    seed_sync(sqlite_url, [row, row_of('{"order": 1}', attributes)])

    # when: named by its request id, as `failures list` and `result` print it
    result = cli("failures", "logs", rid, env=cli_env)

    # then: its lines, through the function the destination's record names (before: exit 2,
    # "the record names no function (legacy-dlq): give its log group")
    assert result.returncode == 0, result.stderr
    assert f"START RequestId: {rid} Version: $LATEST" in result.stdout
    assert f"from log group {GROUP}" in result.stderr


def test_a_missing_log_group_names_the_region_of_the_aws_profile(
    cli_env: dict[str, str], sqlite_url: str, logs: Any, profile_region: dict[str, str]
) -> None:
    # given: a legacy DLQ message (no function, so no region, named); the region set in the
    # AWS config file's profile alone
    attributes = {"RequestID": "9d2f4a10-2222-4c6e-8f1a-2b3c4d5e6f70", "ErrorCode": "200"}
    row = row_of('{"order": 1}', attributes)
    seed_sync(sqlite_url, [row])
    env = {**cli_env, **profile_region}
    del env["LAMBDA_DESTINATIONS_REGION"]

    # when: its lines are asked of a log group that does not exist
    result = cli(
        "failures", "logs", attributes["RequestID"], "--log-group", "/aws/lambda/gone", env=env
    )

    # then: the line names the region asked, the profile's (before: "region None")
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result)
    assert line.startswith("error: log group /aws/lambda/gone not found in "), line
    assert f"region {REGION}: " in line


def test_an_endpoint_not_reached_is_one_line_exit_4(
    cli_env: dict[str, str], sqlite_url: str
) -> None:
    row = failure()
    seed_sync(sqlite_url, [row])
    env = {**cli_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:9"}

    result = cli("failures", "logs", row.request_id or "", env=env)

    assert result.returncode == 4, result.stderr
    (line,) = error_lines(result)
    assert line.startswith("error: cannot reach http://127.0.0.1:9 (")
    assert "Traceback" not in result.stderr


def test_a_refusal_names_the_permission_on_the_log_groups_arn(
    cli_env: dict[str, str], sqlite_url: str, logs: Any, endpoint_url: str
) -> None:
    # given: CloudWatch Logs refuses FilterLogEvents (the proxy answers as AWS does)
    _, rid = logged_failure(logs, sqlite_url)
    proxy = refusing_filter_log_events(endpoint_url)

    # when
    code, out, err, _ = asyncio.run(cli_through(proxy, cli_env, "failures", "logs", rid))

    # then
    assert code == 3, err
    assert err.decode().splitlines() == [
        f"error: FilterLogEvents was refused ({DENIED}): "
        "check the AWS credentials and that they are allowed logs:FilterLogEvents on "
        f"arn:aws:logs:{REGION}:123456789012:log-group:{GROUP}:*"
    ]
    assert out == b""


class LoggingConfigEndpoint(AccountsEndpoint):
    """moto's Lambda behind a proxy that adds a LoggingConfig to GetFunctionConfiguration's
    answer, as Lambda gives it for a function logging to a group of its own: moto has none."""

    log_groups: dict[str, str]

    def _forward(
        self, request: http.server.BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        status, headers, answer = super()._forward(request, body)
        path = urllib.parse.unquote(urllib.parse.urlsplit(request.path).path)
        if status == 200 and path.endswith("/configuration"):
            config = json.loads(answer)
            group = self.log_groups.get(config.get("FunctionName", ""))
            if group:
                config["LoggingConfig"] = {"LogFormat": "Text", "LogGroup": group}
                answer = json.dumps(config).encode()
        return status, headers, answer


def test_the_log_group_the_functions_logging_config_names_is_read(
    lambda_endpoint: Any, sqlite_url: str
) -> None:
    # given: orders-api logs to a shared group, which holds the failure's lines
    lambda_endpoint.create_function("orders-api")
    shared = "/shared/orders"
    proxy = LoggingConfigEndpoint(lambda_endpoint.url)
    proxy.log_groups = {"orders-api": shared}
    client = logs_client(lambda_endpoint.url)
    row, rid, at = failure_at()
    put(client, STREAM, invocation(rid, at - dt.timedelta(minutes=1), ["shared"]), shared)
    seed_sync(sqlite_url, [row])
    try:
        with proxy.running() as endpoint:
            env = {
                "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint.url,
                "LAMBDA_DESTINATIONS_STORE": sqlite_url,
                "LAMBDA_DESTINATIONS_REGION": REGION,
            }
            result = cli("failures", "logs", rid, env=env)
    finally:
        client.delete_log_group(logGroupName=shared)

    assert result.returncode == 0, result.stderr
    assert "  shared" in result.stdout
    assert result.stderr.startswith(f"4 lines from log group {shared}, ")


def test_a_refused_function_configuration_leaves_the_default_group_said_only_when_missing(
    cli_env: dict[str, str], sqlite_url: str, logs: Any, endpoint_url: str
) -> None:
    # given: Lambda refuses GetFunctionConfiguration; the default group holds the lines of one
    # failure and not the other's function's
    _, rid = logged_failure(logs, sqlite_url)
    _, record = failure_body(2)
    record["requestContext"]["functionArn"] = function_arn("billing-worker")
    missing = row_of(json.dumps(record))
    seed_sync(sqlite_url, [missing])
    proxy = AnswerCutter(endpoint_url, b"/configuration", http=True)
    proxy.refusals = 2
    proxy.refusal = aws_error(
        403, "AccessDeniedException", "not authorized: lambda:GetFunctionConfiguration", "rest-json"
    )

    # when
    found = asyncio.run(cli_through(proxy, cli_env, "failures", "logs", rid))
    not_found = asyncio.run(
        cli_through(proxy, cli_env, "failures", "logs", missing.request_id or "")
    )

    # then: both were asked, and refused; the found lines need no word of it
    assert proxy.refused == 2
    code, out, err, _ = found
    assert code == 0, err
    assert f"START RequestId: {rid}" in out.decode()
    assert "GetFunctionConfiguration" not in err.decode()
    code, out, err, _ = not_found
    assert code == 1, err
    assert err.decode().splitlines() == [
        "error: log group /aws/lambda/billing-worker not found in account 123456789012, region "
        f"{REGION}: the function has not logged yet, or logs to another group: give it, "
        "--log-group NAME (GetFunctionConfiguration failed (AccessDeniedException: not "
        "authorized: lambda:GetFunctionConfiguration): its LoggingConfig, which may name one, "
        "was not read)"
    ]


def test_a_function_of_another_account_is_read_with_the_role_of_its_account(
    cli_env: dict[str, str], sqlite_url: str, endpoint_url: str, tmp_path: Any
) -> None:
    # given: a failure of account A's function, its lines in A's log group (moto keeps each
    # account's apart: keys from AssumeRole are the role's account's)
    other = "111122223333"
    role = f"arn:aws:iam::{other}:role/lambda-destinations-read"
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint_url)
    keys = sts.assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    theirs = boto3.client(
        "logs",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
    )
    _, record = failure_body(3)
    record["requestContext"]["functionArn"] = f"arn:aws:lambda:{REGION}:{other}:function:orders-api"
    row = row_of(json.dumps(record))
    rid = row.request_id or ""
    assert row.timestamp is not None
    put(theirs, STREAM, invocation(rid, row.timestamp - dt.timedelta(minutes=1), ["theirs"]))
    seed_sync(sqlite_url, [row])
    config = tmp_path / "accounts.toml"
    config.write_text(f'[accounts.{other}]\nrole_arn = "{role}"\n')
    try:
        # when: without a role for A, then with one
        without = cli("failures", "logs", rid, env=cli_env)
        with_role = cli(
            "failures", "logs", rid, env={**cli_env, "LAMBDA_DESTINATIONS_CONFIG": str(config)}
        )
    finally:
        theirs.delete_log_group(logGroupName=GROUP)

    # then: our own account's logs were read, and the line says so (before: "not found in
    # account A", which was not read) and what to set; the role reads A's
    assert without.returncode == 1, without.stderr
    (line,) = error_lines(without)
    assert line.startswith(f"error: log group {GROUP} not found in account 123456789012, ")
    assert line.endswith(
        f"the function is in account {other}, and the AWS credentials are account "
        f"123456789012's, whose logs were read: set a role of account {other} to assume for "
        f'it, [accounts.{other}] role_arn = "arn:aws:iam::{other}:role/NAME" in the TOML file, '
        "allowed logs:FilterLogEvents on the function's log group"
    )
    assert with_role.returncode == 0, with_role.stderr
    assert "  theirs" in with_role.stdout


def test_a_since_after_the_default_end_names_that_end_not_an_until_never_given(
    cli_env: dict[str, str], sqlite_url: str
) -> None:
    # given: a failure of three days ago; a window by default ends a minute after its time
    row, rid, at = failure_at(minutes_ago=3 * 24 * 60)
    seed_sync(sqlite_url, [row])

    # when: the lines of the last hour are asked for, with no --until
    result = cli("failures", "logs", rid, "--since", "1h", env=cli_env)

    # then: one line naming the end the window has without --until, and both ways out (it
    # said "--since must be before --until", an --until the operator never gave)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    end = (at + dt.timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert line.startswith("error: --since reads "), line
    assert f"the window ends a minute after the record's time, {end} UTC" in line
    assert line.endswith("give an earlier --since, or an --until after it"), line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("options", "before"), [([], "16 min"), (["--all-attempts"], "6 h 16 min")]
)
def test_an_until_before_the_default_start_names_that_start_not_a_since_never_given(
    cli_env: dict[str, str], sqlite_url: str, options: list[str], before: str
) -> None:
    # given: a failure of ten minutes ago
    row, rid, at = failure_at(minutes_ago=10)
    seed_sync(sqlite_url, [row])

    # when: the window is to end seven hours ago, with no --since
    result = cli("failures", "logs", rid, "--until", "7h", *options, env=cli_env)

    # then: one line naming where the window starts without --since
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    start = at - dt.timedelta(minutes=16) - (dt.timedelta(hours=6) if options else dt.timedelta())
    assert line.startswith("error: --until reads "), line
    expected = f"the window starts {before} before the record's time, "
    assert f"{expected}{start:%Y-%m-%d %H:%M:%S} UTC" in line, line
    assert line.endswith("give a later --until, or a --since before it"), line


def test_lines_of_the_same_millisecond_keep_the_order_they_were_written_in(
    cli_env: dict[str, str], sqlite_url: str, logs: Any
) -> None:
    # given: the last attempt's lines, three of them written in the same millisecond: a
    # printed line, the runtime logger's line (which names the request id), another printed
    row, rid, at = failure_at()
    seed_sync(sqlite_url, [row])
    start = at - dt.timedelta(seconds=30)
    same = start + dt.timedelta(seconds=1)
    written = [
        (start, f"START RequestId: {rid} Version: $LATEST\n"),
        (same, "printed before the logger's line\n"),
        (same, f"[INFO]\t{rid}\tthe logger's line\n"),
        (same, "printed after it\n"),
        (same + dt.timedelta(seconds=1), f"END RequestId: {rid}\n"),
    ]
    put(logs, STREAM, written[:1])  # the group and stream; then the rest in the order written
    logs.put_log_events(
        logGroupName=GROUP,
        logStreamName=STREAM,
        logEvents=[{"timestamp": millis(t), "message": text} for t, text in written[1:]],
    )

    # when
    result = cli("failures", "logs", rid, "--json", env=cli_env)

    # then: in the order the function wrote them (the logger's line came first: the lines
    # naming the request id were placed before the others of their millisecond)
    assert result.returncode == 0, result.stderr
    assert [line["message"] for line in json.loads(result.stdout)] == [t for _, t in written]
