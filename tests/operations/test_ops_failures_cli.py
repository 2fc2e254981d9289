"""`failures list|show|stats|ignore|reopen`, run as a user runs them, on a real SQLite store."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
import random
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import xform_name
from ops_helpers import (
    ENTRY,
    cli,
    cli_in_a_terminal,
    error_lines,
    failure_body,
    row_of,
    seed_sync,
    send_all,
    table_with_stream,
)

from lambda_destinations.simulate import kinesis_failure, success_record
from lambda_destinations.store import FailureStatus, InvocationFilter, Store
from lambda_destinations.store.base import ReplayOutcome
from ledger_helpers import replayed_once

EVENTS = Path(__file__).parents[1] / "events"

JSON_FIELDS = {
    "request_id",
    "function_arn",
    "function_name",
    "qualifier",
    "condition",
    "error_type",
    "error_message",
    "approximate_invoke_count",
    "timestamp",
    "status",
    "replay_count",
}

# The fix an unknown request id's line gives.
WHOLE = (
    ": give a whole request id or key, as `failures list` shows them, or the first 4 or more "
    "characters of the request id"
)


@pytest.fixture
def seeded(sqlite_url: str) -> dict[str, Any]:
    """Failures of two functions at known times, a stream failure, a success, an ignored one."""
    bodies = {
        "orders_timeout": failure_body(1, minutes_ago=300)[0],
        "orders_value": failure_body(
            2, error=("ValueError", "invalid order id: 'abc'", "python"), minutes_ago=30
        )[0],
        "billing_timeout": failure_body(3, function="billing-worker", minutes_ago=120)[0],
        "billing_age": failure_body(
            4, function="billing-worker", condition="EventAgeExceeded", minutes_ago=180
        )[0],
        "ignored": failure_body(5, function="email-sender", minutes_ago=60)[0],
    }
    stream_record = kinesis_failure(random.Random(6))
    stream_record["timestamp"] = "2026-11-20T10:00:00.000Z"  # a fixed day in the past: listed last
    stream = json.dumps(stream_record)
    success = json.dumps(success_record(random.Random(7)))
    rows = {name: row_of(body) for name, body in bodies.items()}
    rows["stream"] = row_of(stream)
    rows["success"] = row_of(success)
    rows["ignored"].status = FailureStatus.IGNORED
    seed_sync(sqlite_url, list(rows.values()))
    return rows


def as_json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_shows_failures_newest_first_and_never_successes(cli_env, seeded) -> None:
    result = cli("failures", "list", "--json", env=cli_env)

    listed = as_json(result)
    expected = [
        seeded[name].request_id
        for name in (
            "orders_value",
            "ignored",
            "billing_timeout",
            "billing_age",
            "orders_timeout",
        )
    ]
    # the stream failure is dated a fixed day in the past: last
    assert [f["request_id"] for f in listed] == [*expected, seeded["stream"].request_id]
    assert seeded["success"].request_id not in {f["request_id"] for f in listed}
    assert all(set(f) >= JSON_FIELDS for f in listed)
    first = listed[0]
    assert first["function_name"] == "orders-api"
    assert first["error_type"] == "ValueError"
    assert first["error_message"] == "invalid order id: 'abc'"
    assert first["condition"] == "RetriesExhausted"
    assert first["approximate_invoke_count"] == 3
    assert first["status"] == "open"
    assert first["replay_count"] == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--function", "billing-*"], {"billing_timeout", "billing_age"}),
        (["--function", "orders-api", "--error-type", "TimeoutError"], {"orders_timeout"}),
        (["--condition", "EventAgeExceeded"], {"billing_age"}),
        # the function never ran: no error type, which the tables show as "-"
        (["--error-type", "-", "--function", "billing-*"], {"billing_age"}),
        (["--since", "150m"], {"orders_value", "ignored", "billing_timeout"}),
        (["--since", "4h", "--until", "90m"], {"billing_timeout", "billing_age"}),
        (["--status", "ignored"], {"ignored"}),
        (["--status", "open", "--function", "*-api"], {"orders_value", "orders_timeout"}),
        (["--limit", "2"], {"orders_value", "ignored"}),
    ],
)
def test_list_filters(cli_env, seeded, args, expected) -> None:
    listed = as_json(cli("failures", "list", "--json", *args, env=cli_env))

    assert {f["request_id"] for f in listed} == {seeded[name].request_id for name in expected}


def test_list_takes_iso_times(cli_env, seeded) -> None:
    since = seeded["billing_timeout"].timestamp.isoformat()

    listed = as_json(cli("failures", "list", "--json", "--since", since, env=cli_env))

    assert {f["request_id"] for f in listed} == {
        seeded[name].request_id for name in ("orders_value", "ignored", "billing_timeout")
    }


def test_list_as_a_table_ndjson_and_csv(cli_env, seeded) -> None:
    table = cli("failures", "list", "--limit", "3", env=cli_env)
    every_one = cli("failures", "list", "--limit", "6", env=cli_env)
    ndjson = cli("failures", "list", "--ndjson", env=cli_env)
    as_csv = cli("failures", "list", "--csv", env=cli_env)

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "(UTC)", "REQUEST", "ID"]
    assert len(lines) == 4
    assert seeded["orders_value"].request_id in lines[1]
    assert "ValueError: invalid order id: 'abc'" in lines[1]
    assert "the newest 3 shown; more failures match" in table.stderr
    assert len(every_one.stdout.splitlines()) == 7
    assert "more failures match" not in every_one.stderr  # the six are all there are
    objects = [json.loads(line) for line in ndjson.stdout.splitlines()]
    assert len(objects) == 6
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["request_id"] for r in rows] == [o["request_id"] for o in objects]
    assert set(rows[0]) >= JSON_FIELDS


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_text(cli_env, sqlite_url) -> None:
    # given: a failure whose error type and message begin as spreadsheet formulas do
    formula = '=HYPERLINK("http://example.invalid","x")'
    body, _ = failure_body(8, error=(formula, "+cmd|' /C calc'!A0", "python"))
    seed_sync(sqlite_url, [row_of(body)])

    listed = cli("failures", "list", "--csv", env=cli_env)
    as_json = cli("failures", "list", "--json", env=cli_env)

    assert listed.returncode == 0, listed.stderr
    [row] = list(csv.DictReader(io.StringIO(listed.stdout)))
    # then: each such cell starts with an apostrophe, which a spreadsheet shows as text ...
    assert row["error_type"] == "'" + formula
    assert row["error_message"].startswith("'+cmd|")
    assert row["function_name"] == "orders-api"
    # ... and --json keeps the values as they are
    assert json.loads(as_json.stdout)[0]["error_type"] == formula


def test_csv_cells_keep_escape_sequences_as_they_are(cli_env, sqlite_url) -> None:
    # given: a failure whose error text holds terminal escape sequences, a comma, a quote and
    # a line break
    message = 'before \x1b[31mred\x1b[0m, "quoted"\nafter'
    body, _ = failure_body(9, error=("Esc\x1b[2JType", message, "python"))
    seed_sync(sqlite_url, [row_of(body)])

    listed = cli("failures", "list", "--csv", env=cli_env)

    # then: the file read back holds the values the store holds
    assert listed.returncode == 0, listed.stderr
    [row] = list(csv.DictReader(io.StringIO(listed.stdout, newline="")))
    assert row["error_type"] == "Esc\x1b[2JType"
    assert row["error_message"] == message


def test_list_of_nothing_says_so_and_exits_0(cli_env, seeded) -> None:
    result = cli("failures", "list", "--function", "nothing-*", env=cli_env)

    assert result.returncode == 0
    assert result.stdout == ""
    assert "no failures match" in result.stderr


@pytest.fixture
def backlog(sqlite_url: str) -> dict[str, Any]:
    """What a first run leaves after draining queues that held records for days: failures
    whose own times are 3 and 9 days old, none from today."""
    bodies = {
        "newest": failure_body(11, minutes_ago=3 * 24 * 60)[0],
        "oldest": failure_body(12, function="billing-worker", minutes_ago=9 * 24 * 60)[0],
    }
    rows = {name: row_of(body) for name, body in bodies.items()}
    seed_sync(sqlite_url, list(rows.values()))
    return rows


@pytest.mark.parametrize(
    "args",
    [["list", "--since", "2h"], ["stats"], ["list", "--since", "1d", "--function", "orders-*"]],
)
def test_a_window_that_misses_a_backlog_names_its_newest_failure_and_the_since(
    cli_env, backlog, args
) -> None:
    # when: the window (2 hours; stats' default 24) holds none of the days-old records
    result = cli("failures", *args, env=cli_env)

    # then: besides saying nothing matches, it says when the newest earlier one is from and
    # the --since that shows it (it said "no failures match", or "0 failures", and nothing
    # more, as if the records the first run stored were lost)
    assert result.returncode == 0, result.stderr
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.startswith("no failures since ")
    newest = backlog["newest"].timestamp
    assert f"the newest before is from {newest:%Y-%m-%d %H:%M} UTC (--since 4d shows it)" in hint
    shown = cli("failures", "list", "--since", "4d", "--json", env=cli_env)
    assert backlog["newest"].request_id in {f["request_id"] for f in as_json(shown)}


@pytest.mark.parametrize("command", ["list", "stats"])
def test_a_window_that_ends_before_now_names_its_end_in_the_line_of_the_newest_before(
    cli_env, sqlite_url, backlog, command
) -> None:
    # given: besides the backlog, a failure of ten minutes ago
    seed_sync(sqlite_url, [row_of(failure_body(13, minutes_ago=10)[0])])

    # when: a window from 2 days ago to an hour ago, which holds none
    result = cli("failures", command, "--since", "2d", "--until", "1h", env=cli_env)

    # then: the line says the window held none, naming both its ends (it said "no failures
    # since" the window's start, with one ten minutes old in the store)
    assert result.returncode == 0, result.stderr
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.startswith("no failures from "), hint
    assert " UTC to " in hint.split(";")[0], hint
    newest = backlog["newest"].timestamp
    assert hint.endswith(
        f"the newest before is from {newest:%Y-%m-%d %H:%M} UTC (--since 4d shows it)"
    )


def test_stats_name_a_window_they_cover_for_a_failure_older_than_their_longest(
    cli_env, sqlite_url
) -> None:
    # given: one failure, still open, of 400 days ago (open failures are kept for ever)
    seed_sync(sqlite_url, [row_of(failure_body(14, minutes_ago=400 * 24 * 60)[0])])

    # when: the last 24 hours' statistics, which hold none
    result = cli("failures", "stats", env=cli_env)

    # then: the line names a window stats cover that holds it (it said "--since DATE shows
    # it", which stats refuse: a window of more than 366 days up to now)
    assert result.returncode == 0, result.stderr
    hint = result.stderr.strip().splitlines()[-1]
    window = hint.rsplit("(", 1)[1].removesuffix(" shows it)").split()
    assert window[0] == "--since", hint
    shown = cli("failures", "stats", *window, "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["total"] == 1


def test_a_window_with_nothing_before_it_either_says_only_that_nothing_matches(
    cli_env, backlog
) -> None:
    result = cli("failures", "list", "--since", "2h", "--function", "nothing-*", env=cli_env)

    assert result.returncode == 0
    assert result.stderr.strip() == "no failures match"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--since", "yesterday"], "--since: 'yesterday' is neither a duration"),
        # before: taken, read as 1111-11-11 11:11:11 (fromisoformat's)
        (["--since", "1" * 30], f"--since: '{'1' * 30}' is neither a duration"),
        (["--until", "2h", "--since", "1h"], "--since must be before --until"),
        (["--json", "--csv"], "choose one of --json, --ndjson and --csv"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli_env, args, needle) -> None:
    result = cli("failures", "list", *args, env=cli_env)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr


@pytest.mark.parametrize("command", ["list", "stats"])
def test_a_window_that_ends_before_it_starts_says_which_goes_where(cli_env, command) -> None:
    # when: the durations are swapped, as "from 1 hour ago until 2 hours ago"
    result = cli(
        "failures",
        command,
        "--since",
        "2024-05-01T12:00Z",
        "--until",
        "2024-05-01T11:00Z",
        env=cli_env,
    )
    swapped = cli("failures", command, "--since", "1h", "--until", "2h", env=cli_env)

    # then: the line gives both times and the way round (it said only "--since must be before
    # --until", which "--since 1h --until 2h" seems to be)
    assert result.returncode == swapped.returncode == 2
    assert result.stderr == (
        "error: --since must be before --until: they read 2024-05-01 12:00:00 and 2024-05-01 "
        "11:00:00 UTC; a duration counts back from now, so the longer one goes with --since "
        "(--since 3h --until 1h)\n"
    ), result.stderr
    assert swapped.stderr.startswith("error: --since must be before --until: they read ")
    assert "so the longer one goes with --since (--since 3h --until 1h)" in swapped.stderr


@pytest.mark.parametrize(
    "command", [("failures", "list"), ("failures", "stats"), ("replay", "--dry-run")]
)
@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("orders-api:live", "orders-api"),  # as the tables show a record's function
        ("arn:aws:lambda:us-east-1:123456789012:function:orders-api:12", "orders-api"),
    ],
)
def test_a_function_with_a_qualifier_or_an_arn_is_refused_naming_the_name(
    cli_env, seeded, command, given: str, name: str
) -> None:
    # when: the FUNCTION cell of `failures list` (or an ARN) given as --function
    result = cli(*command, "--function", given, env=cli_env)

    # then: refused (no name holds a colon: it matched nothing, "no failures match"), naming
    # the name that matches
    assert (result.returncode, result.stdout) == (2, "")
    assert error_lines(result) == [
        f"error: Invalid value for '--function': '{given}' is no function name (a qualifier or "
        "an ARN): --function matches the name alone, which takes in every version and alias of "
        f"the function: give --function {name}"
    ]


def test_stats_since_a_time_to_come_says_the_window_ends_now(cli_env) -> None:
    # when: a --since after now and no --until (a year typed wrong), as `failures list` takes
    result = cli("failures", "stats", "--since", "2999-01-01", env=cli_env)

    # then: no --until to put first: the window ends now, and the line says so
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: --since reads 2999-01-01 00:00:00 UTC, which is still to come, and the window "
        "ends now (no --until): give a time past (24h, 7d, 2024-05-01), or an --until after it\n"
    )


def test_show_prints_the_whole_record(cli_env, seeded, sqlite_url) -> None:
    # given: the record was replayed once
    row = seeded["orders_value"]

    async def replayed() -> None:
        async with Store.from_url(sqlite_url) as store:
            await replayed_once(store, row, ReplayOutcome.INVOKED, new_request_id="new-rid-1")

    asyncio.run(replayed())

    # when
    result = cli("failures", "show", row.request_id or "", env=cli_env)

    # then
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"request id   {row.request_id}" in out
    assert "error        ValueError: invalid order id: 'abc'" in out
    assert "stack trace" in out
    assert 'File "/var/task/app.py", line 42, in handler' in out
    # the payload, pretty-printed
    payload = json.dumps(row.request_payload, indent=2)
    assert "\n".join("  " + line for line in payload.splitlines()) in out
    assert "deliveries (1)" in out
    assert "msg-1" in out
    assert "handler runs (1)" in out
    assert "persist" in out
    assert "replays (1)" in out
    assert "new-rid-1" in out
    assert "cli ops@host" in out


@pytest.mark.parametrize(
    ("event", "batch", "where"),
    [
        ("stream-kinesis.json", "KinesisBatchInfo", '"shardId": "shardId-000000000001"'),
        ("stream-dynamodb.json", "DDBStreamBatchInfo", '"batchSize": 1'),
        ("stream-kafka-msk.json", "KafkaBatchInfo", '"firstRecordOffset": "2210"'),
    ],
)
def test_show_of_a_stream_failure_says_where_its_batch_is(
    cli_env, sqlite_url, event: str, batch: str, where: str
) -> None:
    # given: a stream's on-failure record, which carries no payload
    row = row_of((EVENTS / event).read_text())
    seed_sync(sqlite_url, [row])

    # when
    result = cli("failures", "show", row.key, env=cli_env)

    # then: the batch's place, and what to do; not two empty payloads (before: "request
    # payload (none)", "response payload (none)", and the batch nowhere but in the key)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"batch ({batch})" in out
    assert where in out
    assert "read them from the stream (or Kafka topic) before they expire" in out
    assert "request payload" not in out


def _run_aws_cli(line: str, endpoint_url: str) -> dict[str, Any]:
    """Run an ``aws SERVICE OPERATION --option value …`` line, as the AWS CLI would, with
    boto3 against moto (the AWS CLI is not installed here): each option must be a member of
    the operation's input in botocore's model, named as the CLI names it; ``--region`` picks
    the client's region, ``--query ShardIterator --output text`` the one field."""
    _, service, operation, *args = shlex.split(line)
    client = boto3.client(service, region_name="us-east-1", endpoint_url=endpoint_url)
    model = client.meta.service_model.operation_model(
        client.meta.method_to_api_mapping[xform_name(operation.replace("-", "_"))]
    )
    members = {xform_name(m).replace("_", "-"): m for m in model.input_shape.members}
    options = dict(zip(args[::2], args[1::2], strict=True))
    query = options.pop("--query", None)
    options.pop("--output", None)
    region = options.pop("--region")
    client = boto3.client(service, region_name=region, endpoint_url=endpoint_url)
    params: dict[str, Any] = {}
    for option, value in options.items():
        member = members[option.removeprefix("--")]  # KeyError: no such option
        shape = model.input_shape.members[member]
        params[member] = int(value) if shape.type_name == "integer" else value
    answer: dict[str, Any] = getattr(client, xform_name(model.name))(**params)
    return {"text": answer[query]} if query else answer


def _read_as_printed(command: str, endpoint_url: str) -> list[dict[str, Any]]:
    """The records the printed ``aws … get-records … --shard-iterator "$(aws …)"`` reads."""
    outer, inner = command.split(' --shard-iterator "$(', 1)
    iterator = _run_aws_cli(inner.removesuffix(')"'), endpoint_url)["text"]
    records: list[dict[str, Any]] = _run_aws_cli(
        f"{outer} --shard-iterator {shlex.quote(iterator)}", endpoint_url
    )["Records"]
    return records


def _printed_read_command(cli_env: dict[str, str], sqlite_url: str, record: Any) -> str:
    """The stored ``record``'s `failures show`: the command it prints to read the batch."""
    row = row_of(json.dumps(record))
    seed_sync(sqlite_url, [row])
    out = cli("failures", "show", row.key, env=cli_env)
    assert out.returncode == 0, out.stderr
    (command,) = [line.strip() for line in out.stdout.splitlines() if "get-records" in line]
    return command


def test_show_of_a_kinesis_failure_gives_the_command_that_reads_its_batch(
    cli_env, sqlite_url, endpoint_url
) -> None:
    # given: a stream holding five records, and the failure of a batch of its 2nd to 4th
    kinesis = boto3.client("kinesis", region_name="us-east-2", endpoint_url=endpoint_url)
    name = f"orders-{random.randrange(10**9)}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    put = [
        kinesis.put_record(StreamName=name, Data=f"r{i}".encode(), PartitionKey="k")
        for i in range(5)
    ]
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    record = json.loads((EVENTS / "stream-kinesis.json").read_text())
    record["KinesisBatchInfo"].update(
        shardId=put[1]["ShardId"],
        startSequenceNumber=put[1]["SequenceNumber"],
        endSequenceNumber=put[3]["SequenceNumber"],
        batchSize=3,
        streamArn=arn,
    )

    # when
    command = _printed_read_command(cli_env, sqlite_url, record)

    # then: the command it prints reads the batch's three records (before: "read them from
    # the stream", and no command)
    assert command.startswith(f"aws kinesis get-records --region us-east-2 --stream-arn {arn} ")
    assert " --limit 3 " in command
    read = _read_as_printed(command, endpoint_url)
    assert [r["Data"] for r in read] == [b"r1", b"r2", b"r3"]


def test_show_of_a_dynamodb_stream_failure_gives_the_command_that_reads_its_batch(
    cli_env, sqlite_url, endpoint_url
) -> None:
    # given: a table's stream holding three changes, and the failure of a batch of the last two
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint_url)
    streams = boto3.client("dynamodbstreams", region_name="us-east-1", endpoint_url=endpoint_url)
    table = f"carts-{random.randrange(10**9)}"
    arn = table_with_stream(dynamodb, table)
    for i in range(3):
        dynamodb.put_item(TableName=table, Item={"id": {"S": f"c{i}"}})
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    changes = streams.get_records(ShardIterator=iterator)["Records"]
    record = json.loads((EVENTS / "stream-dynamodb.json").read_text())
    record["DDBStreamBatchInfo"].update(
        shardId=shard,
        startSequenceNumber=changes[1]["dynamodb"]["SequenceNumber"],
        endSequenceNumber=changes[2]["dynamodb"]["SequenceNumber"],
        batchSize=2,
        streamArn=arn,
    )

    # when
    command = _printed_read_command(cli_env, sqlite_url, record)

    # then: the command it prints reads the batch's two changes
    read = _read_as_printed(command, endpoint_url)
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in read] == ["c1", "c2"]


def test_show_of_a_stream_failure_from_s3_prints_the_batch_it_carries(cli_env, sqlite_url) -> None:
    # given: a Kafka batch's record as an S3 destination writes it, with the batch's records
    record = json.loads((EVENTS / "stream-kafka-msk.json").read_text())
    # (AWS's example: "the payload field contains the original invocation record as an
    # escaped JSON string")
    event = {"eventSource": "aws:kafka", "records": {"orders-0": [{"offset": 2210}]}}
    record["payload"] = json.dumps(event)
    row = row_of(json.dumps(record))
    seed_sync(sqlite_url, [row])

    # when
    out = cli("failures", "show", row.key, env=cli_env)

    # then: the records, and no claim that Lambda sent only where the batch was
    assert out.returncode == 0, out.stderr
    assert "payload (the batch's records, as the function received them)" in out.stdout
    assert '"offset": 2210' in out.stdout
    assert '\n      "orders-0": [\n' in out.stdout  # the event pretty-printed, not one line
    assert "not its records" not in out.stdout
    assert "an asynchronous Invoke would drop the function's batchItemFailures" in out.stdout


def test_show_says_what_each_handler_run_is(cli_env, seeded, sqlite_url) -> None:
    # given: a record with a handler running, one failed and released (shown as "claimed",
    # as the one running was), one whose worker stopped holding it, and one completed
    row = seeded["orders_value"]

    async def runs() -> None:
        async with Store.from_url(sqlite_url) as store:
            assert await store.claim_handler(row.key, "text", "w1", 300)
            assert await store.claim_handler(row.key, "mail", "w1", 300)
            await store.release_handler(row.key, "mail", "w1", error="SMTP 535: login refused")
            assert await store.claim_handler(row.key, "hook", "w2", 0.01)
            assert await store.claim_handler(row.key, "page", "w1", 300)
            await store.complete_handler(row.key, "page", "w1")

    asyncio.run(runs())
    time.sleep(0.05)  # the claim of "hook" lapses

    # when
    table = cli("failures", "show", row.key, env=cli_env)
    shown = as_json(cli("failures", "show", row.key, "--json", env=cli_env))

    # then
    assert table.returncode == 0, table.stderr
    statuses = {"text": "running", "mail": "failed", "hook": "claim expired", "page": "completed"}
    for handler, status in statuses.items():
        (line,) = [x.strip() for x in table.stdout.splitlines() if x.strip().startswith(handler)]
        assert line.removeprefix(handler).lstrip().startswith(f"{status} "), line
    assert "SMTP 535: login refused" in table.stdout
    by_handler = {r["handler"]: r for r in shown["handler_runs"]}
    assert {h: by_handler[h]["status"] for h in statuses} == statuses
    assert by_handler["mail"]["state"] == "claimed"  # the store's own, as it was


def test_show_masks_the_numbers_an_sms_handler_recorded_each_send_under(
    cli_env, seeded, sqlite_url
) -> None:
    # given: an sms handler with two numbers, each send recorded under the number
    row = seeded["orders_value"]

    async def runs() -> None:
        async with Store.from_url(sqlite_url) as store:
            for number in ("+14155552671", "+33612345678"):
                await store.complete_handler(row.key, f"oncall#{number}", "w1")

    asyncio.run(runs())

    # when
    table = cli("failures", "show", row.key, env=cli_env)
    shown = as_json(cli("failures", "show", row.key, "--json", env=cli_env))

    # then: the numbers are masked, as in logs, and still told apart
    assert table.returncode == 0, table.stderr
    for output in (table.stdout, json.dumps(shown)):
        assert "4155552671" not in output
        assert "612345678" not in output
    assert {"oncall#+14*****2671", "oncall#+33*****5678"} <= {
        r["handler"] for r in shown["handler_runs"]
    }
    assert "oncall#+14*****2671" in table.stdout


def test_show_as_json_has_payloads_deliveries_and_replays(cli_env, seeded) -> None:
    row = seeded["billing_timeout"]

    shown = as_json(cli("failures", "show", row.key, "--json", env=cli_env))

    assert shown["request_id"] == row.request_id
    assert shown["request_payload"] == row.request_payload
    assert shown["response_payload"] == row.response_payload
    assert shown["stack_trace"] == row.stack_trace
    assert [d["message_id"] for d in shown["deliveries"]] == ["msg-2"]
    assert [r["handler"] for r in shown["handler_runs"]] == ["persist"]
    assert shown["replays"] == []


def test_show_cuts_each_long_block_at_64_ki_characters_and_json_keeps_it_whole(
    cli_env, sqlite_url
) -> None:
    # given: a failure with a 1 MB payload, a 100,000-character error message and a stack
    # trace of 5,000 frames
    _, record = failure_body(8, payload={"blob": "p" * 1_000_000})
    response = record["responsePayload"]
    response["errorMessage"] = "m" * 100_000
    response["stackTrace"] = [f'  File "/var/task/app.py", line {n}, in f' for n in range(5000)]
    row = row_of(json.dumps(record))
    seed_sync(sqlite_url, [row])

    # when
    text = cli("failures", "show", row.request_id or "", env=cli_env)
    whole = as_json(cli("failures", "show", row.request_id or "", "--json", env=cli_env))

    # then: each block is its first 65,536 characters, then one line saying where the whole is
    assert text.returncode == 0, text.stderr
    where = f"characters; failures show {row.key} --json prints it whole"
    error = f"{row.error_type}: {'m' * 100_000}"
    cut = "… cut: the first 65,536 of"
    # (under the error, as a field's further lines are)
    assert (
        f"error        {error[:65536]}\n             {cut} {len(error):,} {where}\n" in text.stdout
    )
    trace = "\n".join(response["stackTrace"])
    last_frame = trace[:65536].splitlines()[-1]
    assert f"  {last_frame}\n  {cut} {len(trace):,} {where}\n\nrequest payload" in text.stdout
    payload = json.dumps(row.request_payload, indent=2)
    assert f"  {cut} {len(payload):,} {where}\n\nresponse payload" in text.stdout
    assert "p" * 65_500 in text.stdout
    # (the response payload holds the error and trace too: the fourth block cut)
    assert text.stdout.count("… cut:") == 4
    assert len(text.stdout) < 5 * 65_536  # the four blocks cut, indented, and the rest
    # and --json is whole and exact
    assert whole["request_payload"] == row.request_payload
    assert whole["error_message"] == "m" * 100_000
    assert whole["stack_trace"] == row.stack_trace


def test_show_of_an_unknown_request_exits_1_in_one_line(cli_env, seeded) -> None:
    result = cli("failures", "show", "no-such-request", env=cli_env)

    assert result.returncode == 1
    assert error_lines(result) == [
        "error: no record with request id or key 'no-such-request' in the store: "
        "give a whole request id or key, as `failures list` shows them, or the first 4 or more "
        "characters of the request id"
    ]


@pytest.mark.parametrize(
    "args", [("failures", "show"), ("failures", "ignore"), ("result",), ("dlq", "peek")]
)
def test_a_pasted_100_kb_argument_is_cut_in_its_error_line(
    cli_env, seeded, args: tuple[str, ...]
) -> None:
    pasted = "x" * 100_000

    result = cli(*args, pasted, env=cli_env)

    (line,) = error_lines(result)
    assert f"{'x' * 80}… (100,000 characters)" in line
    assert len(line) < 400


def test_stats_count_by_function_and_error_type_with_an_hourly_chart(cli_env, seeded) -> None:
    as_text = cli("failures", "stats", "--since", "6h", env=cli_env)
    stats = as_json(cli("failures", "stats", "--since", "6h", "--json", env=cli_env))

    groups = {(g["function_name"], g["error_type"]): g["count"] for g in stats["groups"]}
    assert groups == {
        ("orders-api", "TimeoutError"): 1,
        ("orders-api", "ValueError"): 1,
        ("billing-worker", "TimeoutError"): 1,
        ("billing-worker", None): 1,
        ("email-sender", "TimeoutError"): 1,
    }
    assert stats["total"] == 5
    assert sum(h["count"] for h in stats["hourly"]) == 5
    assert len(stats["hourly"]) in (6, 7)
    assert as_text.returncode == 0, as_text.stderr
    assert as_text.stdout.startswith("5 failures in 3 functions")
    assert "failures per hour" in as_text.stdout
    assert as_text.stdout.count("█") >= 5


def test_stats_say_how_many_are_open_and_how_many_were_handled(cli_env, seeded) -> None:
    # given: of the five failures in the window, one ignored (seeded so) and one a replay
    # recovered
    asyncio.run(_set_status(cli_env, seeded["orders_value"].key, FailureStatus.RECOVERED))

    # when
    as_text = cli("failures", "stats", "--since", "6h", env=cli_env)
    stats = as_json(cli("failures", "stats", "--since", "6h", "--json", env=cli_env))

    # then: the counts by status add up to the total, as the console's overview counts them
    assert stats["statuses"] == {"open": 3, "replayed": 0, "recovered": 1, "ignored": 1}
    assert sum(stats["statuses"].values()) == stats["total"] == 5
    assert as_text.stdout.splitlines()[1] == "3 open · 0 replayed · 1 recovered · 1 ignored"


async def _set_status(env: dict[str, str], key: str, status: FailureStatus) -> None:
    async with Store.from_url(env["LAMBDA_DESTINATIONS_STORE"]) as store:
        await store.set_status([key], status, by="test")


def test_stats_over_a_week_draw_a_line_a_day(cli_env, seeded) -> None:
    result = cli("failures", "stats", "--since", "7d", env=cli_env)

    assert result.returncode == 0, result.stderr
    assert "a line a day" in result.stdout
    day_lines = [line for line in result.stdout.splitlines() if line.startswith("  20")]
    assert len(day_lines) in (7, 8)


def test_ignore_then_reopen_by_request_id(cli_env, seeded, sqlite_url) -> None:
    ids = [seeded["orders_value"].request_id, seeded["billing_timeout"].request_id]

    ignored = cli("failures", "ignore", *ids, env=cli_env)

    assert ignored.returncode == 0, ignored.stderr
    assert ignored.stdout.strip() == "ignored 2 failures"

    async def statuses() -> dict[str | None, tuple[FailureStatus | None, str | None]]:
        async with Store.from_url(sqlite_url) as store:
            rows = await store.list_invocations(InvocationFilter(request_ids=ids))
            return {r.request_id: (r.status, r.status_by) for r in rows}

    after = asyncio.run(statuses())
    assert {status for status, _ in after.values()} == {FailureStatus.IGNORED}
    assert all(by is not None and by.startswith("cli ") and "@" in by for _, by in after.values())

    reopened = cli("failures", "reopen", ids[0], env=cli_env)

    assert reopened.returncode == 0
    assert asyncio.run(statuses())[ids[0]][0] is FailureStatus.OPEN


def test_ignoring_a_failure_ignored_already_says_so(cli_env, seeded, sqlite_url) -> None:
    # The second ignore said "ignored 1 failure", as if the first had not been taken.
    rid = seeded["orders_value"].request_id

    async def status_by() -> str | None:
        async with Store.from_url(sqlite_url) as store:
            rows = await store.list_invocations(InvocationFilter(request_ids=[rid]))
            return rows[0].status_by

    first = cli("failures", "ignore", rid, "--reason", "test data", env=cli_env)
    again = cli("failures", "ignore", rid, "--reason", "known bug", env=cli_env)
    by_after_again = asyncio.run(status_by())
    reopened = cli("failures", "reopen", rid, env=cli_env)
    open_again = cli("failures", "reopen", rid, env=cli_env)

    assert first.stdout.strip() == "ignored 1 failure", first.stderr
    assert again.stdout.strip() == (
        "ignored 1 failure (1 ignored already: who set it and why updated)"
    )
    assert (by_after_again or "").endswith("known bug")
    assert reopened.stdout.strip() == "reopened 1 failure"
    assert open_again.stdout.strip() == "reopened 1 failure (1 open already: who set it updated)"


def test_a_request_id_pasted_upper_cased_or_with_spaces_is_found(cli_env, seeded) -> None:
    # Lambda writes request ids in lower case; one copied from an upper-cased view, or with the
    # spaces a terminal selection brings, was "no record with request id or key" (exit 1).
    row = seeded["orders_value"]
    pasted = f" {str(row.request_id).upper()} "

    shown = cli("failures", "show", pasted, "--json", env=cli_env)
    by_key = cli(
        "failures", "show", f" {str(row.request_id).upper()}:RetriesExhausted", env=cli_env
    )
    ignored = cli("failures", "ignore", pasted, env=cli_env)
    reopened = cli("failures", "reopen", pasted, env=cli_env)
    planned = cli("replay", pasted, "--dry-run", "--json", env=cli_env)

    assert as_json(shown)["request_id"] == row.request_id
    assert by_key.returncode == 0, by_key.stderr
    assert ignored.stdout.strip() == "ignored 1 failure", ignored.stderr
    assert reopened.stdout.strip() == "reopened 1 failure", reopened.stderr
    assert [r["request_id"] for r in as_json(planned)["results"]] == [row.request_id]


def test_reopen_puts_a_recovered_failure_back_to_recovered(cli_env, store_url) -> None:
    # given: two failures replayed, one whose replay recovered, one whose replay failed again
    fixed = row_of(failure_body(21, minutes_ago=40)[0])
    again = row_of(failure_body(22, minutes_ago=30)[0])
    seed_sync(store_url, [fixed, again])

    async def replayed(row: Any, outcome: ReplayOutcome, status: FailureStatus) -> None:
        async with Store.from_url(store_url) as store:
            await replayed_once(store, row, outcome, new_request_id="new-rid")
            await store.set_status([row.key], status, by="cli ops@host")

    asyncio.run(replayed(fixed, ReplayOutcome.RECOVERED, FailureStatus.RECOVERED))
    asyncio.run(replayed(again, ReplayOutcome.FAILED, FailureStatus.REPLAYED))
    env = {**cli_env, "LAMBDA_DESTINATIONS_STORE": store_url}
    ids = [fixed.request_id or "", again.request_id or ""]

    # when: both are ignored with a reason, then reopened
    ignored = cli("failures", "ignore", *ids, "--reason", "looked at", env=env)
    reopened = cli("failures", "reopen", *ids, env=env)
    again_reopened = cli("failures", "reopen", *ids, env=env)

    # then: the one a replay fixed is recovered again, the other open; neither time is the
    # recovered one counted as reopened
    assert ignored.returncode == 0, ignored.stderr
    assert reopened.returncode == 0, reopened.stderr
    assert reopened.stdout.strip() == "reopened 1 failure (1 back to recovered: a replay succeeded)"
    assert again_reopened.stdout.strip() == (
        "reopened 1 failure (1 stays recovered: a replay succeeded; "
        "1 open already: who set it updated)"
    )

    async def statuses() -> dict[str | None, FailureStatus | None]:
        async with Store.from_url(store_url) as store:
            rows = await store.list_invocations(InvocationFilter(request_ids=ids))
            return {r.request_id: r.status for r in rows}

    assert asyncio.run(statuses()) == {
        fixed.request_id: FailureStatus.RECOVERED,
        again.request_id: FailureStatus.OPEN,
    }


def test_a_replay_s_own_record_is_neither_ignored_nor_reopened(cli_env, store_url) -> None:
    # given: a failure replayed, and its replay's own failure record (status `replay`)
    original = row_of(failure_body(31, minutes_ago=40)[0])
    seed_sync(store_url, [original])

    async def replayed() -> None:
        async with Store.from_url(store_url) as store:
            await replayed_once(store, original, ReplayOutcome.FAILED, new_request_id="new-rid")
            await store.set_status([original.key], FailureStatus.REPLAYED, by="cli ops@host")

    asyncio.run(replayed())
    replay_record = dataclasses.replace(
        row_of(failure_body(32, minutes_ago=30)[0]), request_id="new-rid"
    )
    replay_record = dataclasses.replace(replay_record, key="new-rid:RetriesExhausted")
    seed_sync(store_url, [replay_record])
    env = {**cli_env, "LAMBDA_DESTINATIONS_STORE": store_url}

    # when: an operator ignores it, then reopens it (as one would a failure of its own)
    ignored = cli("failures", "ignore", "new-rid", env=env)
    reopened = cli("failures", "reopen", "new-rid", env=env)
    planned = cli("replay", "--status", "open", "--dry-run", "--json", env=env)

    # then: its status stays `replay` (it is no open failure of its own, and no replay
    # selection invokes it), and each command says which record to mark instead
    fix = (
        "error: new-rid:RetriesExhausted is a replay's own record (attempt 1 of "
        f"{original.request_id}): its status follows the original's: {{}} "
        f"{original.request_id} instead"
    )
    assert (ignored.returncode, ignored.stdout) == (1, "")
    assert error_lines(ignored) == [fix.format("lambda-destinations failures ignore")]
    assert (reopened.returncode, reopened.stdout) == (1, "")
    assert error_lines(reopened) == [fix.format("lambda-destinations failures reopen")]
    assert as_json(planned)["results"] == []

    async def status() -> FailureStatus | None:
        async with Store.from_url(store_url) as store:
            row = await store.get_invocation(replay_record.key)
            assert row is not None
            return row.status

    assert asyncio.run(status()) is FailureStatus.REPLAY


def test_ignore_of_an_unknown_id_marks_the_others_and_exits_1(cli_env, seeded) -> None:
    known = seeded["orders_value"].request_id

    result = cli("failures", "ignore", known, "nope", env=cli_env)

    assert result.returncode == 1
    assert result.stdout.strip() == "ignored 1 failure"
    assert error_lines(result) == ["error: no failure with request id or key 'nope'" + WHOLE]
    listed = as_json(cli("failures", "list", "--status", "ignored", "--json", env=cli_env))
    assert known in {f["request_id"] for f in listed}


def test_show_ignore_and_replay_take_the_start_of_a_request_id(cli_env, sqlite_url) -> None:
    # given: three failures, two of whose request ids start the same
    ids = [
        "aaaa1111-0000-4000-8000-000000000001",
        "aaaa2222-0000-4000-8000-000000000002",
        "bbbb3333-0000-4000-8000-000000000003",
    ]
    rows = []
    for n, request_id in enumerate(ids):
        _, record = failure_body(n + 1, minutes_ago=10 + n)
        record["requestContext"]["requestId"] = request_id
        rows.append(row_of(json.dumps(record)))
    seed_sync(sqlite_url, rows)

    # when: each command is given their first characters
    shown = cli("failures", "show", "bbbb", "--json", env=cli_env)
    ignored = cli("failures", "ignore", "AAAA1", "bbbb3333-00", env=cli_env)
    too_short = cli("failures", "show", "bbb", env=cli_env)
    ambiguous = {
        words: cli(*words, env=cli_env)
        for words in [("failures", "show", "aaaa"), ("replay", "aaaa", "--dry-run")]
    }

    # then: one request id each starts is the one meant
    assert as_json(shown)["request_id"] == ids[2]
    assert ignored.stdout == "ignored 2 failures\n", ignored.stderr
    listed = as_json(cli("failures", "list", "--status", "ignored", "--json", env=cli_env))
    assert {f["request_id"] for f in listed} == {ids[0], ids[2]}
    # fewer than 4 characters are no start: not found, as before
    assert too_short.returncode == 1
    assert error_lines(too_short) == [
        "error: no record with request id or key 'bbb' in the store" + WHOLE
    ]
    # and one that several start names them and exits 2, doing nothing
    for result in ambiguous.values():
        assert result.returncode == 2, result.stderr
        assert error_lines(result) == [
            f"error: 'aaaa' starts more than one request id ({ids[0]}, {ids[1]}): give more of "
            "it, or the whole one"
        ]
        assert result.stdout == ""


@pytest.mark.parametrize("verb", ["ignore", "reopen"])
def test_ids_none_of_which_exist_print_nothing_on_stdout(cli_env, seeded, verb: str) -> None:
    result = cli("failures", verb, "nope", "nope-2", env=cli_env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert error_lines(result) == [
        "error: no failure with request id or key 'nope'" + WHOLE,
        "error: no failure with request id or key 'nope-2'" + WHOLE,
    ]


def test_an_unreachable_store_exits_4_in_one_line(cli_env) -> None:
    env = {**cli_env, "LAMBDA_DESTINATIONS_STORE": "postgresql://nobody@127.0.0.1:1/none"}

    result = cli("failures", "list", env=env)

    assert result.returncode == 4
    assert len(error_lines(result)) == 1
    assert "Traceback" not in result.stderr


def test_the_worker_fills_what_failures_list_shows(cli_env, sqs, make_queue) -> None:
    # given: records on a queue, drained by the worker
    url, _ = make_queue("ops-e2e")
    bodies = [failure_body(n, minutes_ago=n)[0] for n in range(1, 6)]
    send_all(sqs, url, bodies)
    ran = cli("run", "--once", env={**cli_env, "LAMBDA_DESTINATIONS_QUEUES": url})
    assert ran.returncode == 0, ran.stderr

    # when
    listed = as_json(cli("failures", "list", "--json", env=cli_env))

    # then: newest first, as the records say
    expected = [json.loads(b)["requestContext"]["requestId"] for b in bodies]
    assert [f["request_id"] for f in listed] == expected


def test_a_store_of_an_older_schema_says_to_migrate_in_one_line(
    cli_env, seeded, sqlite_url
) -> None:
    # given: a store made by an older version (a column this version reads is not there)
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE invocations RENAME COLUMN function_name TO function_named")

    # when
    result = cli("failures", "list", env=cli_env)

    # then: one line that names the fix, the store's exit code, no traceback
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert "no such column" in line
    assert "run `lambda-destinations migrate`" in line


# Commands that print what they read, with a table, JSON and CSV among them.
PRINTING = [
    ("failures", "list", "--since", "30d"),
    ("failures", "list", "--json"),
    ("failures", "list", "--csv"),
    ("failures", "stats", "--since", "30d"),
    ("prune", "--dry-run"),
]


def run_printing_to(
    args: tuple[str, ...], store_url: str, cwd: Path, **stdout: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command on ``store_url`` with the given stdout (or ``preexec_fn``) and stderr
    captured."""
    return subprocess.run(
        [*ENTRY, *args, "--store", store_url],
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        cwd=cwd,
        **stdout,
    )


@pytest.mark.parametrize("args", PRINTING)
def test_a_reader_that_stops_reading_ends_the_command_quietly(
    args: tuple[str, ...], seeded: dict[str, Any], sqlite_url: str, tmp_path: Path
) -> None:
    # given: stdout a pipe whose reader has gone (a `| head` that has read enough)
    read_end, write_end = os.pipe()
    os.close(read_end)

    # when: the command writes its answer there
    try:
        result = run_printing_to(args, sqlite_url, tmp_path, stdout=write_end)
    finally:
        os.close(write_end)

    # then: it stops as a tool killed by SIGPIPE would, 141 and no error line (a broken pipe
    # is a ConnectionError, once reported as "cannot reach the AWS endpoint")
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        # the table on stdout, then the note that more failures match on stderr
        (("failures", "list", "--limit", "1"), 141),
        # a failure's line on stderr: its exit code says it still
        (("failures", "show", "no-such-failure"), 1),
    ],
)
def test_a_reader_of_stderr_that_stops_reading_is_no_unreachable_endpoint(
    args: tuple[str, ...], code: int, seeded: dict[str, Any], sqlite_url: str, tmp_path: Path
) -> None:
    # given: stderr a pipe whose reader has gone (`2>&1 | head`, a pager quit)
    read_end, write_end = os.pipe()
    os.close(read_end)

    # when: the command writes its note or its error line there
    try:
        result = subprocess.run(
            [*ENTRY, *args, "--store", sqlite_url],
            stdout=subprocess.PIPE,
            stderr=write_end,
            timeout=60,
            cwd=tmp_path,
        )
    finally:
        os.close(write_end)

    # then: 141 as for stdout's reader gone, or the command's own code; a broken pipe is a
    # ConnectionError, and was reported as "cannot reach the AWS endpoint" (exit 1 or 4)
    assert result.returncode == code


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("args", PRINTING)
def test_an_output_that_cannot_be_written_is_one_line(
    args: tuple[str, ...], seeded: dict[str, Any], sqlite_url: str, tmp_path: Path
) -> None:
    # given: stdout where every write fails, as a full disk under `> file` does
    with open("/dev/full", "w") as full:
        # when: the command writes its answer there
        result = run_printing_to(args, sqlite_url, tmp_path, stdout=full)

    # then: one line that says so, exit 1, and no traceback, not even at the exit's last flush
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: cannot write the output (No space left on device): free space where it goes, "
        "or send it elsewhere"
    ]


def test_a_table_with_stdout_closed_is_one_line_not_a_traceback(
    seeded: dict[str, Any], sqlite_url: str, tmp_path: Path
) -> None:
    # given: a command started with stdout closed (`>&-`: Python's sys.stdout is then None)
    # when: it prints a table, which asks whether stdout is a terminal
    args = ("failures", "list", "--since", "30d")
    result = run_printing_to(args, sqlite_url, tmp_path, preexec_fn=lambda: os.close(1))

    # then: no traceback, and no success claimed for a table no one got: one line, exit 1
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: cannot write the output: stdout is closed (>&-): send it somewhere, as "
        "> /dev/null does to drop it"
    ]


def test_stats_over_366_days_to_now_are_one_window_and_367_are_refused(cli_env, seeded) -> None:
    # "now" is taken once: --since 366d and the --until it defaults to are 366 days apart
    whole_year = cli("failures", "stats", "--since", "366d", "--json", env=cli_env)
    too_long = cli("failures", "stats", "--since", "367d", env=cli_env)

    assert whole_year.returncode == 0, whole_year.stderr
    assert as_json(whole_year)["total"] >= 5
    assert too_long.returncode == 2
    (line,) = error_lines(too_long)
    assert "cover at most 366 days at a time: narrow --since and --until" in line


def test_stats_with_only_an_until_cover_the_24_hours_before_it(cli_env, seeded) -> None:
    # the stream failure is the one of 2026-11-20 10:00 UTC, days before the others
    stats = as_json(cli("failures", "stats", "--until", "2026-11-20T12:00Z", "--json", env=cli_env))

    assert (stats["since"], stats["until"]) == (
        "2026-11-19T12:00:00+00:00",
        "2026-11-20T12:00:00+00:00",
    )
    assert stats["total"] == 1
    assert len(stats["hourly"]) == 24


def _long_failures(sqlite_url: str) -> list[str]:
    """Three failures of a function with a long name and a long error; their request ids."""
    error = ("ValidationError", "the payments provider answered 422 after 30.03 s " * 2, "python")
    rows = [
        row_of(
            failure_body(40 + n, function="orders-api-payment-processor-production", error=error)[0]
        )
        for n in range(3)
    ]
    seed_sync(sqlite_url, rows)
    return [str(row.request_id) for row in rows]


@pytest.mark.parametrize("width", [80, 200])
def test_list_on_a_terminal_fits_its_width(cli_env, sqlite_url: str, width: int) -> None:
    # given: failures whose table is 220 columns wide
    request_ids = _long_failures(sqlite_url)

    # when: it is listed on a terminal of 80 columns, and of 200
    status, lines = cli_in_a_terminal("failures", "list", env=cli_env, width=width)

    # then: no line is wider than the terminal (none is broken in two), one row a failure
    assert status == 0, lines
    assert len(lines) == 4, lines
    assert max(len(line) for line in lines) <= width, lines
    shown = [line.split()[2] for line in lines[1:]]
    if width == 200:  # the request ids whole
        assert sorted(shown) == sorted(request_ids)
    else:  # their starts, which `failures show` takes
        assert all(len(start) >= 8 and "…" not in start for start in shown)
        assert sorted(r for r in request_ids for s in shown if r.startswith(s)) == sorted(
            request_ids
        )
        found = cli("failures", "show", shown[0], "--json", env=cli_env)
        assert as_json(found)["request_id"].startswith(shown[0])


def test_list_into_a_pipe_and_as_json_stays_whole(cli_env, sqlite_url: str) -> None:
    request_ids = _long_failures(sqlite_url)

    piped = cli("failures", "list", env={**cli_env, "COLUMNS": "80"})
    as_list = as_json(cli("failures", "list", "--json", env={**cli_env, "COLUMNS": "80"}))

    assert piped.returncode == 0, piped.stderr
    assert sorted(line.split()[2] for line in piped.stdout.splitlines()[1:]) == sorted(request_ids)
    assert max(len(line) for line in piped.stdout.splitlines()) > 200  # nothing cut
    assert sorted(r["request_id"] for r in as_list) == sorted(request_ids)


@pytest.mark.parametrize("limit", ["0", "5"])
def test_list_reads_the_store_a_page_at_a_time(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    from click.testing import CliRunner

    from lambda_destinations.cli import cli as main
    from lambda_destinations.store import base

    # given: 8 failures, and pages of 3 rows
    seed_sync(
        sqlite_url,
        [row_of(failure_body(n, minutes_ago=n)[0]) for n in range(8)],
    )
    monkeypatch.setattr(base, "PAGE", 3, raising=False)
    store_class = type(Store.from_url(sqlite_url))
    asked: list[int | None] = []
    list_invocations = store_class.list_invocations

    async def spied(self: Store, selection: InvocationFilter) -> Any:
        asked.append(selection.limit)
        return await list_invocations(self, selection)  # type: ignore[arg-type]

    monkeypatch.setattr(store_class, "list_invocations", spied)

    # when: listed, all of them (--limit 0) or 5
    result = CliRunner().invoke(
        main, ["failures", "list", "--store", sqlite_url, "--limit", limit, "--json"]
    )

    # then: read in pages of at most 3 rows (a page's payloads held at once, not every
    # one's), and the list is the store's, in its order
    assert result.exit_code == 0, result.output
    assert asked
    assert all(n is not None and n <= 3 for n in asked), asked
    assert len(asked) >= 2
    monkeypatch.undo()
    whole = asyncio.run(_listed_at_once(sqlite_url))
    listed = [record["request_id"] for record in json.loads(result.stdout)]
    assert listed == whole[: int(limit) or None]


async def _listed_at_once(url: str) -> list[str]:
    async with Store.from_url(url) as store:
        return [row.request_id for row in await store.list_invocations(InvocationFilter())]


def test_show_of_a_record_with_no_time_of_its_own_says_so_and_when_it_was_first_seen(
    sqlite_url: str,
) -> None:
    # given: a legacy dead-letter queue message: no time of its own, only when it was received
    rid = "9d2f4a10-3333-4c6e-8f1a-2b3c4d5e6f70"
    row = row_of('{"order": 1}', {"RequestID": rid, "ErrorCode": "200"})
    seed_sync(sqlite_url, [row])

    # when
    result = cli("failures", "show", rid, env={"LAMBDA_DESTINATIONS_STORE": sqlite_url})

    # then: the time line says it has none, and that the first seen time is UTC too (it read
    # "- UTC  (first seen ...)", a UTC beside no time and none beside the one there is)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("time ")]
    assert line.split(None, 1)[1] == (
        f"none in the record  (first seen {row.first_seen_at:%Y-%m-%d %H:%M:%S} UTC)"
    )


def test_stats_counts_the_failures_that_name_no_function_apart_from_the_functions(
    sqlite_url: str,
) -> None:
    # given: a failure of orders-api and two legacy dead-letter queue messages (no function)
    legacy = [
        row_of(
            '{"order": 1}',
            {"RequestID": f"9d2f4a10-444{n}-4c6e-8f1a-2b3c4d5e6f70", "ErrorCode": "200"},
        )
        for n in range(2)
    ]
    seed_sync(sqlite_url, [row_of(failure_body(21, minutes_ago=10)[0]), *legacy])

    # when
    result = cli("failures", "stats", env={"LAMBDA_DESTINATIONS_STORE": sqlite_url})

    # then: one function, and two that name none (it said "3 failures in 2 functions")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 failures in 1 function and 2 naming none, "), result.stdout
