"""`replay` against a moto Lambda endpoint (its own process) and a real SQLite store."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import random
import signal
import socketserver
import subprocess
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from ops_helpers import (
    ENTRY,
    NO_CREDENTIALS,
    cli,
    error_lines,
    failure_body,
    row_of,
    seed_sync,
)

from lambda_destinations.aws import AwsClients
from lambda_destinations.cli import cli as cli_group
from lambda_destinations.config import Settings
from lambda_destinations.operations import RateLimiter
from lambda_destinations.operations.replay import ReplayResult, ReplayState, replay_invocation
from lambda_destinations.simulate import kinesis_failure, legacy_dlq
from lambda_destinations.store import FailureStatus, InvocationFilter, InvocationRow, Store
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome
from processes import ctrl_c_as_in_a_terminal, reap

# Payloads a replay must carry exactly: nesting, unicode, numbers, null, an array at the top.
PAYLOADS: list[Any] = [
    {"orderId": "ord-1", "items": [{"sku": "a", "qty": 2}], "total": 12.5, "gift": None},
    {"name": "Zoë ✓ 東京", "quote": 'say "hi"', "big": 12345678901234567890, "neg": -0.25},
    [1, "two", {"three": [3.0, True, False]}],
]

# The fix an unknown request id's line gives.
WHOLE = (
    ": give a whole request id or key, as `failures list` shows them, or the first 4 or more "
    "characters of the request id"
)


@pytest.fixture
def function(lambda_endpoint) -> str:  # type: ignore[no-untyped-def]
    name = f"orders-{uuid.uuid4().hex[:8]}"
    lambda_endpoint.create_function(name)
    return name


@pytest.fixture
def failures(function: str, sqlite_url: str) -> list[InvocationRow]:
    """Three failures of ``function`` with the payloads above, in the store."""
    rows = [
        row_of(failure_body(n, function=function, minutes_ago=10 - n, payload=payload)[0])
        for n, payload in enumerate(PAYLOADS, start=1)
    ]
    seed_sync(sqlite_url, rows)
    return rows


async def _ledger(url: str, keys: list[str]) -> dict[str, list[ReplayAttempt]]:
    async with Store.from_url(url) as store:
        return {key: await store.replays(key) for key in keys}


def ledger(url: str, rows: list[InvocationRow]) -> dict[str, list[ReplayAttempt]]:
    return asyncio.run(_ledger(url, [r.key for r in rows]))


def statuses(url: str, rows: list[InvocationRow]) -> dict[str, FailureStatus | None]:
    async def go() -> dict[str, FailureStatus | None]:
        async with Store.from_url(url) as store:
            found = await store.list_invocations(
                InvocationFilter(request_ids=[r.request_id or "" for r in rows])
            )
            return {r.key: r.status for r in found}

    return asyncio.run(go())


def test_a_stream_failure_carrying_its_batch_is_not_invoked_and_says_why(
    lambda_endpoint, lambda_env, sqlite_url
) -> None:
    # given: a Kinesis batch's record from an S3 destination, which carries the batch
    record = kinesis_failure(random.Random(9))
    record["payload"] = {"Records": [{"kinesis": {"sequenceNumber": "1", "data": "e30="}}]}
    stream = row_of(json.dumps(record))
    seed_sync(sqlite_url, [stream])
    lambda_endpoint.start_recording()

    # when
    result = cli("replay", stream.request_id or "", "--dry-run", "--json", env=lambda_env)

    # then: skipped for what is true of it (not "carries no request payload")
    assert result.returncode == 0, result.stderr
    (skipped,) = json.loads(result.stdout)["results"]
    assert skipped["state"] == "skipped"
    assert "would drop the function's batchItemFailures" in skipped["detail"]
    assert "no request payload" not in skipped["detail"]
    assert lambda_endpoint.invocations() == []


def test_dry_run_lists_what_would_be_invoked_and_invokes_nothing(
    lambda_endpoint, lambda_env, failures, sqlite_url
) -> None:
    # given: the three failures and a stream batch failure, which has no payload
    stream = row_of(json.dumps(kinesis_failure(random.Random(9))))
    seed_sync(sqlite_url, [stream])
    ids = [r.request_id or "" for r in [*failures, stream]]
    lambda_endpoint.start_recording()

    # when
    result = cli("replay", *ids, "--dry-run", "--json", env=lambda_env)

    # then: exactly the three, with their functions; the stream failure skipped with why
    assert result.returncode == 0, result.stderr
    planned = {p["request_id"]: p for p in json.loads(result.stdout)["results"]}
    for row in failures:
        assert planned[row.request_id]["state"] == "would-invoke"
        assert planned[row.request_id]["function_arn"] == row.function_arn
        assert planned[row.request_id]["attempt"] == 1
    skipped = planned[stream.request_id]
    assert skipped["state"] == "skipped"
    assert "stream batch failure carries no request payload" in skipped["detail"]
    assert "would invoke 3 · skipped 1 · errors 0" in result.stderr
    assert lambda_endpoint.invocations() == []
    assert all(attempts == [] for attempts in ledger(sqlite_url, failures).values())
    assert set(statuses(sqlite_url, failures).values()) == {FailureStatus.OPEN}


def test_a_replay_of_failures_days_old_says_how_old_the_oldest_is_before_it_asks(
    lambda_endpoint, lambda_env, failures, function, sqlite_url
) -> None:
    # given: besides the three fresh failures, one from a backlog drained at a first start,
    # 10 days old: older than any event Lambda's own retries would still run
    old = row_of(failure_body(9, function=function, minutes_ago=10 * 24 * 60)[0])
    seed_sync(sqlite_url, [old])
    lambda_endpoint.start_recording()

    # when: a dry run of the lot, a run that asks (no answer comes), a dry run of the fresh
    dry = cli("replay", "--since", "14d", "--dry-run", env=lambda_env)
    asked = cli("replay", "--since", "14d", env=lambda_env)
    fresh = cli("replay", "--since", "1h", "--dry-run", env=lambda_env)

    # then: the line names the oldest record's age and time, and that its function runs it
    # now (replay said nothing of the age; the plan shows no time at all)
    line = (
        f"the oldest of these failed 10 days ago ({old.timestamp:%Y-%m-%d %H:%M} UTC): its "
        "function runs that payload now, as a new event"
    )
    assert dry.returncode == 0, dry.stderr
    assert line in dry.stderr
    assert line in asked.stderr
    assert asked.stderr.index(line) < asked.stderr.index("Invoke 4 failed invocations")
    assert fresh.returncode == 0, fresh.stderr
    assert "the oldest of these" not in fresh.stderr
    assert lambda_endpoint.invocations() == []


def test_a_selection_of_nothing_says_so_and_invokes_nothing(
    lambda_endpoint, lambda_env, failures
) -> None:
    lambda_endpoint.start_recording()

    result = cli("replay", "--function", "no-such-function-*", "--yes", env=lambda_env)

    # before: only "invoked 0 · skipped 0 · errors 0"
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        "no failures match",
        "invoked 0 · skipped 0 · errors 0",
    ]
    assert result.stdout == ""
    assert lambda_endpoint.invocations() == []


def test_replay_invokes_with_the_original_payloads_and_fills_the_ledger(
    lambda_endpoint, lambda_env, failures, function, sqlite_url
) -> None:
    lambda_endpoint.start_recording()

    result = cli("replay", "--function", function, "--yes", "--rate", "0", "--json", env=lambda_env)

    assert result.returncode == 0, result.stderr
    # Lambda received each original payload, for the function (and qualifier) of its record,
    # oldest failure first
    invoked = lambda_endpoint.invocations()
    assert invoked == [(row.function_arn, row.request_payload) for row in failures]
    assert [payload for _, payload in invoked] == PAYLOADS
    # the ledger has one attempt each, linked to the new request id Lambda returned
    results = {r["request_id"]: r for r in json.loads(result.stdout)["results"]}
    attempts = ledger(sqlite_url, failures)
    for row in failures:
        (attempt,) = attempts[row.key]
        assert attempt.outcome is ReplayOutcome.INVOKED
        assert attempt.attempt == 1
        assert attempt.trigger == "manual"
        assert attempt.requested_by.startswith("cli ")
        assert "@" in attempt.requested_by
        assert attempt.function_arn == row.function_arn
        assert attempt.original_request_id == row.request_id
        assert attempt.new_request_id
        assert attempt.new_request_id == results[row.request_id]["new_request_id"]
        assert attempt.outcome_at is not None
    assert len({a[0].new_request_id for a in attempts.values()}) == 3
    assert set(statuses(sqlite_url, failures).values()) == {FailureStatus.REPLAYED}
    listed = json.loads(
        cli("failures", "list", "--function", function, "--json", env=lambda_env).stdout
    )
    assert {f["replay_count"] for f in listed} == {1}


def test_a_limit_replays_the_newest_failures_oldest_first(
    lambda_endpoint, lambda_env, failures, function
) -> None:
    lambda_endpoint.start_recording()

    result = cli(
        "replay", "--function", function, "--limit", "2", "--yes", "--rate", "0", env=lambda_env
    )

    # then: `--limit` keeps the newest two, as `failures list --limit` lists them, and they are
    # invoked in the order they failed, as the console's bulk replay invokes its own
    assert result.returncode == 0, result.stderr
    assert [payload for _, payload in lambda_endpoint.invocations()] == PAYLOADS[1:]


def test_replayed_records_are_skipped_unless_forced(
    lambda_endpoint, lambda_env, failures, function, sqlite_url
) -> None:
    # given: replayed once
    first = cli("replay", "--function", function, "--yes", "--rate", "0", env=lambda_env)
    assert first.returncode == 0, first.stderr
    lambda_endpoint.start_recording()

    # when: again, then forced
    again = cli("replay", "--function", function, "--yes", env=lambda_env)
    skipped_invocations = lambda_endpoint.invocations()
    lambda_endpoint.start_recording()
    forced = cli(
        "replay", failures[0].request_id or "", "--force", "--yes", "--json", env=lambda_env
    )

    # then
    assert again.returncode == 0
    assert "invoked 0 · skipped 3" in again.stderr
    assert "replayed already (attempt 1, invoked" in again.stdout
    assert skipped_invocations == []
    assert forced.returncode == 0, forced.stderr
    assert lambda_endpoint.invocations() == [(failures[0].function_arn, PAYLOADS[0])]
    attempts = ledger(sqlite_url, failures)[failures[0].key]
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, ReplayOutcome.INVOKED),
        (2, ReplayOutcome.INVOKED),
    ]


def _at_the_question(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``lambda-destinations`` started with its input a pipe, once it asks its question."""
    process = subprocess.Popen(
        [*ENTRY, *args],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    said = b""
    while b"[y/N]: " not in said:
        chunk = os.read(process.stderr.fileno(), 65536)
        assert chunk, f"it ended without asking: {said.decode()}"
        said += chunk
    return process


def test_a_forced_replay_skips_a_record_another_run_replayed_after_its_plan(
    lambda_endpoint, lambda_env, failures, sqlite_url
) -> None:
    # given: a failure replayed once, and an operator's forced replay of it at its question
    # (its plan: attempt 2)
    request_id = failures[0].request_id or ""
    assert cli("replay", request_id, "--yes", env=lambda_env).returncode == 0
    asking = _at_the_question("replay", request_id, "--force", "--json", env=lambda_env)
    lambda_endpoint.start_recording()

    # when: another operator's forced replay of it runs meanwhile, then the first says yes
    other = cli("replay", request_id, "--force", "--yes", env=lambda_env)
    out, err = asking.communicate(b"y\n", timeout=60)

    # then: the one more invocation the first asked for was made, by the other; the first
    # skips it rather than invoke a third time, and says who replayed it since its plan
    assert other.returncode == 0, other.stderr
    assert asking.returncode == 0, err.decode()
    assert lambda_endpoint.invocations() == [(failures[0].function_arn, PAYLOADS[0])]
    (result,) = json.loads(out)["results"]
    assert (result["state"], result["skip"]) == ("skipped", "concurrent")
    assert result["detail"].startswith("attempt 2 (")
    assert "after this run's plan" in result["detail"]
    attempts = ledger(sqlite_url, failures)[failures[0].key]
    assert [a.attempt for a in attempts] == [1, 2]


def test_without_yes_it_asks_first(lambda_endpoint, lambda_env, failures, function) -> None:
    lambda_endpoint.start_recording()

    declined = cli("replay", "--function", function, env=lambda_env, input="n\n")
    unanswered = cli("replay", "--function", function, env=lambda_env, input="")
    nothing = lambda_endpoint.invocations()
    lambda_endpoint.start_recording()
    accepted = cli("replay", "--function", function, env=lambda_env, input="y\n")

    assert declined.returncode == 6  # declined: nothing was changed
    assert "Invoke 3 failed invocations of 1 function again at 10/s?" in declined.stderr
    assert declined.stderr.splitlines()[-1].endswith("aborted: nothing was changed")
    # No answer (stdin at its end, as with no terminal): the prompt's line is ended, and the
    # line after it names --yes.
    assert unanswered.returncode == 6
    assert unanswered.stderr.splitlines()[-2:] == [
        "Invoke 3 failed invocations of 1 function again at 10/s? [y/N]: ",
        "aborted: no answer came (no terminal?): nothing was changed; give --yes to go ahead "
        "without asking",
    ]
    assert nothing == []
    assert accepted.returncode == 0, accepted.stderr
    assert len(lambda_endpoint.invocations()) == 3


def test_a_legacy_dlq_message_needs_its_function_named(
    lambda_endpoint, lambda_env, function, sqlite_url
) -> None:
    message = legacy_dlq(random.Random(4))
    row = row_of(message.body, message.attributes)
    seed_sync(sqlite_url, [row])
    lambda_endpoint.start_recording()

    unnamed = cli("replay", row.request_id or "", "--yes", "--json", env=lambda_env)
    named = cli(
        "replay", row.request_id or "", "--yes", "--legacy-function", function, env=lambda_env
    )

    assert unnamed.returncode == 0
    (result,) = json.loads(unnamed.stdout)["results"]
    assert result["state"] == "skipped"
    assert "--legacy-function" in result["detail"]
    assert named.returncode == 0, named.stderr
    assert lambda_endpoint.invocations() == [(function, json.loads(message.body))]


def test_a_failure_its_destination_and_its_dlq_both_recorded_is_invoked_once(
    lambda_endpoint, lambda_env, failures, function, sqlite_url
) -> None:
    # given: a function with an on-failure destination and a dead-letter queue: Lambda sends
    # the same failed event to both, two records of one request id
    original = failures[0]
    message = legacy_dlq(random.Random(4))
    attributes = {
        **message.attributes,
        "RequestID": {"DataType": "String", "StringValue": original.request_id},
    }
    dlq_copy = row_of(json.dumps(original.request_payload), attributes)
    seed_sync(sqlite_url, [dlq_copy])
    ids = (original.request_id or "", "--legacy-function", function)
    lambda_endpoint.start_recording()

    # when: both are selected, in a dry run, a replay, then a replay again
    planned = cli("replay", *ids, "--dry-run", "--json", env=lambda_env)
    first = cli("replay", *ids, "--yes", "--json", env=lambda_env)
    again = cli("replay", *ids, "--status", "open", "--yes", "--json", env=lambda_env)

    # then: invoked once, the other record skipped, saying which record was replayed
    assert lambda_endpoint.invocations() == [(original.function_arn, PAYLOADS[0])]
    assert first.returncode == 0, first.stderr
    for result in (planned, first, again):
        states = {r["key"]: r for r in json.loads(result.stdout)["results"]}
        copy = states[dlq_copy.key]
        assert copy["state"] == "skipped", result.stdout
        assert original.key in copy["detail"]
    assert json.loads(planned.stdout)["would_invoke"] == 1
    assert json.loads(first.stdout)["invoked"] == 1
    assert json.loads(again.stdout)["invoked"] == 0
    assert ledger(sqlite_url, [dlq_copy])[dlq_copy.key] == []


def test_no_selection_is_a_usage_error(lambda_env) -> None:
    result = cli("replay", env=lambda_env)

    assert result.returncode == 2
    assert error_lines(result)[0].startswith("error: name request ids or a filter")


def test_an_unknown_request_id_exits_1(lambda_env, failures) -> None:
    result = cli("replay", "no-such-request", "--yes", env=lambda_env)

    assert result.returncode == 1
    assert error_lines(result) == [
        "error: no failure with request id or key 'no-such-request'" + WHOLE
    ]


def test_an_unreachable_lambda_endpoint_exits_4_and_the_ledger_says_so(
    lambda_env, failures, sqlite_url
) -> None:
    env = {**lambda_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:1"}

    result = cli("replay", failures[0].request_id or "", "--yes", env=env)

    assert result.returncode == 4
    assert len(error_lines(result)) == 1
    assert "cannot reach http://127.0.0.1:1" in error_lines(result)[0]
    assert "Traceback" not in result.stderr
    (attempt,) = ledger(sqlite_url, failures[:1])[failures[0].key]
    assert attempt.outcome is ReplayOutcome.ERROR
    assert attempt.detail is not None
    assert "EndpointConnectionError" in attempt.detail
    # an attempt that never reached Lambda does not block the next one
    assert statuses(sqlite_url, failures[:1])[failures[0].key] is FailureStatus.OPEN


class _NotFound(http.server.BaseHTTPRequestHandler):
    """Lambda's answer to an Invoke of a function it does not have (deleted since)."""

    status, code, message = 404, "ResourceNotFoundException", "Function not found"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"Type": "User", "message": self.message}).encode()
        self.send_response(self.status)
        self.send_header("x-amzn-ErrorType", self.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _replayed_with(
    answer: type[_NotFound], env: dict[str, str], row: InvocationRow, *options: str
) -> subprocess.CompletedProcess[str]:
    """``replay`` of ``row`` against a Lambda endpoint that gives every Invoke ``answer``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        return cli(
            "replay",
            row.request_id or "",
            "--yes",
            *options,
            env={**env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint},
        )
    finally:
        server.shutdown()
        server.server_close()


def test_an_invoke_lambda_refused_is_an_error_of_kind_refused_in_the_json(
    lambda_env, failures, sqlite_url
) -> None:
    # given: a Lambda that has no such function; when
    result = _replayed_with(_NotFound, lambda_env, failures[0], "--json")

    # then: an error, refused (nothing ran), which scripts can tell from one in doubt
    assert result.returncode == 1
    (replayed,) = json.loads(result.stdout)["results"]
    assert (replayed["state"], replayed["error"]) == ("error", "refused")
    assert "ResourceNotFoundException" in replayed["detail"]
    (attempt,) = ledger(sqlite_url, failures[:1])[failures[0].key]
    assert attempt.outcome is ReplayOutcome.ERROR
    assert statuses(sqlite_url, failures[:1])[failures[0].key] is FailureStatus.OPEN


class _Denied(_NotFound):
    """Lambda's answer to an Invoke the caller's keys are not allowed to make."""

    status, code, message = 403, "AccessDeniedException", "User: ops is not authorized"


def test_an_invoke_lambda_denies_names_the_operator_s_credentials_in_the_ledger(
    lambda_env, failures, sqlite_url
) -> None:
    # given: a Lambda that refuses the operator's keys; when
    result = _replayed_with(_Denied, lambda_env, failures[0])

    # then: the ledger's entry names the keys the command ran with, not the console's or the
    # worker's (the console's replays name its own)
    assert result.returncode == 1
    (attempt,) = ledger(sqlite_url, failures[:1])[failures[0].key]
    assert attempt.outcome is ReplayOutcome.ERROR
    assert attempt.detail is not None
    assert attempt.detail.endswith(
        "User: ops is not authorized: check the AWS credentials and that they are allowed "
        "lambda:InvokeFunction"
    )


class _KeysNotTaken(_NotFound):
    """Lambda's answer to an Invoke signed with keys AWS does not know."""

    status, code = 403, "UnrecognizedClientException"
    message = "The security token included in the request is invalid."


def test_an_invoke_whose_keys_aws_does_not_take_says_to_fix_them_not_that_it_is_retried(
    lambda_env, failures, sqlite_url
) -> None:
    # given: a Lambda that does not take the operator's keys; when
    result = _replayed_with(_KeysNotTaken, lambda_env, failures[0])

    # then: the ledger says what to do; it said "the call is tried again" (the worker's words),
    # which no command does
    assert result.returncode == 1
    (attempt,) = ledger(sqlite_url, failures[:1])[failures[0].key]
    assert attempt.detail is not None
    assert "tried again" not in attempt.detail
    assert attempt.detail.endswith(
        "is invalid.: AWS did not take the credentials (expired, unknown, or this machine's "
        "clock is off): fix AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or sign "
        "in again (aws sso login)"
    )


class _Throttled(_NotFound):
    """Lambda's answer to an Invoke over the function's concurrency or the account's rate."""

    status, code, message = 429, "TooManyRequestsException", "Rate Exceeded."


def test_a_replay_still_throttled_after_its_tries_says_nothing_tries_it_again(
    lambda_env, failures, sqlite_url
) -> None:
    # given: a Lambda that throttles every Invoke; when
    result = _replayed_with(_Throttled, lambda_env, failures[0], "--json")

    # then: refused (nothing ran), and the fix says what the operator can do, not that it is
    # "tried again with backoff" (the worker's words: the command tried and gave up)
    assert result.returncode == 1
    (replayed,) = json.loads(result.stdout)["results"]
    assert (replayed["state"], replayed["error"]) == ("error", "refused")
    (attempt,) = ledger(sqlite_url, failures[:1])[failures[0].key]
    assert attempt.outcome is ReplayOutcome.ERROR
    for detail in (replayed["detail"], attempt.detail):
        assert "tried again" not in detail
        assert detail.endswith(
            "AWS throttled Invoke (a rate quota of the account, or of the function's "
            "concurrency) on each try: nothing was done; run it again later, sending fewer at "
            "once (a command's --rate), or ask AWS to raise the quota"
        )


def test_a_lambda_endpoint_botocore_refuses_ends_the_replay_at_exit_3_with_nothing_in_doubt(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a failure, and botocore's own variable naming a Lambda endpoint it cannot use
    (row,) = [row_of(failure_body(1)[0])]
    seed_sync(sqlite_url, [row])
    monkeypatch.delenv("LAMBDA_DESTINATIONS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", "http://my_host:4566")

    # when
    result = CliRunner().invoke(
        cli_group, ["replay", row.request_id or "", "--yes", "--store", sqlite_url]
    )

    # then: the endpoint's line and exit 3; the attempt ended as an error, since no client
    # could be made and nothing was sent (before: "in doubt, may have reached Lambda", which
    # a later replay skips without --force, and exit 1)
    assert result.exit_code == 3, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: the endpoint 'http://my_host:4566' (AWS_ENDPOINT_URL_LAMBDA)")
    (attempt,) = ledger(sqlite_url, [row])[row.key]
    assert attempt.outcome is ReplayOutcome.ERROR
    assert "in doubt" not in (attempt.detail or "")


class HangUpServer:
    """An HTTP endpoint that reads each request and hangs up without an answer: whether what
    was sent took effect cannot be known. Counts the connections, one per request sent."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.recv(65536)
                outer.requests += 1

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hang_up() -> Iterator[HangUpServer]:
    server = HangUpServer()
    try:
        yield server
    finally:
        server.close()


def test_an_invoke_whose_answer_never_came_is_not_sent_again_and_stays_in_doubt(
    lambda_env, failures, sqlite_url, hang_up
) -> None:
    env = {**lambda_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": hang_up.url}
    request_id = failures[0].request_id or ""

    first = cli("replay", request_id, "--yes", env=env)
    again = cli("replay", request_id, "--yes", env=env)

    # sent once: neither botocore nor our retries repeat an Invoke that may have run
    assert hang_up.requests == 1
    assert first.returncode == 4
    assert len(error_lines(first)) == 1
    assert "Traceback" not in first.stderr
    (attempt,) = ledger(sqlite_url, failures[:1])[failures[0].key]
    assert attempt.outcome is ReplayOutcome.PENDING
    assert attempt.detail is not None
    assert attempt.detail.startswith("in doubt, may have reached Lambda")
    # the next replay skips it until an operator forces it
    assert again.returncode == 0, again.stderr
    assert "may have reached Lambda: --force to replay again" in again.stdout


def test_filters_narrow_the_request_ids_and_keys_work_too(lambda_env, failures) -> None:
    first, second, _ = failures

    narrowed = cli(
        "replay",
        first.request_id or "",
        "--function",
        "other-*",
        "--dry-run",
        "--json",
        env=lambda_env,
    )
    by_key = cli("replay", second.key, "--dry-run", "--json", env=lambda_env)

    assert narrowed.returncode == 0, narrowed.stderr
    assert json.loads(narrowed.stdout)["results"] == []
    assert by_key.returncode == 0, by_key.stderr
    assert [(p["key"], p["state"]) for p in json.loads(by_key.stdout)["results"]] == [
        (second.key, "would-invoke")
    ]


@pytest.mark.parametrize("named", ["keys", "a request id and a key"])
def test_failures_named_by_key_are_replayed_oldest_first_too(
    lambda_env, failures, named: str
) -> None:
    # given: the oldest and the newest failure, named in that order, the newest by its key
    # (as `failures list --json` gives it), the oldest by its key or its request id
    first, _, third = failures
    oldest = first.key if named == "keys" else first.request_id or ""

    # when
    result = cli("replay", oldest, third.key, "--dry-run", "--json", env=lambda_env)

    # then: in the order they failed, as every replay invokes them (the newest came first)
    assert result.returncode == 0, result.stderr
    keys = [p["key"] for p in json.loads(result.stdout)["results"]]
    assert keys == [first.key, third.key]


def test_limit_holds_for_failures_named_by_key_too(lambda_env, failures) -> None:
    # given: three failures named, two by their key, and --limit 2
    first, second, third = failures

    # when
    result = cli(
        "replay",
        first.request_id or "",
        second.key,
        third.key,
        "--limit",
        "2",
        "--dry-run",
        "--json",
        env=lambda_env,
    )

    # then: the newest two, oldest first (the keys were added past the limit: three)
    assert result.returncode == 0, result.stderr
    keys = [p["key"] for p in json.loads(result.stdout)["results"]]
    assert keys == [second.key, third.key]


@pytest.mark.parametrize("again", ["its key", "its request id"])
def test_a_failure_named_twice_is_invoked_once_and_reported_once(
    lambda_endpoint, lambda_env, failures, again: str
) -> None:
    # given: one failure named by its key, then again (a paste, a shell loop's repeat)
    first = failures[0]
    lambda_endpoint.start_recording()

    # when
    result = cli(
        "replay",
        first.key,
        first.key if again == "its key" else first.request_id or "",
        "--yes",
        "--json",
        env=lambda_env,
    )

    # then: one Invoke, and one result that says so: not two, nor one skipped as itself
    assert result.returncode == 0, result.stderr
    assert len(lambda_endpoint.invocations()) == 1
    report = json.loads(result.stdout)
    assert [(r["key"], r["state"]) for r in report["results"]] == [(first.key, "invoked")]
    assert (report["invoked"], report["skipped"]) == (1, 0)
    assert "invoked 1 · skipped 0 · errors 0" in result.stderr


def _paced_run(
    endpoint_url: str,
    sqlite_url: str,
    failures: list[InvocationRow],
    sleep: Callable[[Store], Callable[[float], Awaitable[None]]],
) -> list[ReplayResult]:
    """Replay ``failures`` in order through a limiter of one invocation a second on a clock
    that stands still, whose waits ``sleep(store)`` makes."""
    settings = Settings(endpoint_url=endpoint_url, region="us-east-1", store=sqlite_url, queues=[])

    async def go() -> list[ReplayResult]:
        async with Store.from_url(sqlite_url) as store, AwsClients(settings) as aws:
            limiter = RateLimiter(1.0, clock=lambda: 0.0, sleep=sleep(store))
            lam = await aws.lambda_invoker()
            rows = [await store.get_invocation(r.key) for r in failures]
            return [
                await replay_invocation(
                    store, lam, row, trigger="manual", requested_by="t", limiter=limiter
                )
                for row in rows
                if row is not None
            ]

    return asyncio.run(go())


def test_the_rate_paces_invocations_and_a_skipped_record_waits_for_nothing(
    lambda_endpoint, lambda_env, failures, function, sqlite_url
) -> None:
    # given: the oldest failure replayed already (by another run, say), and a limiter that
    # records each wait
    first = cli("replay", failures[0].request_id or "", "--yes", env=lambda_env)
    assert first.returncode == 0, first.stderr
    lambda_endpoint.start_recording()
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    # when: all three go through the limiter, oldest first
    results = _paced_run(lambda_endpoint.url, sqlite_url, failures, lambda _store: record)

    # then: the replayed one is skipped without a turn; the two others take one each
    assert [r.state for r in results] == [
        ReplayState.SKIPPED,
        ReplayState.INVOKED,
        ReplayState.INVOKED,
    ]
    assert waits == [1.0]  # the second invocation waits its second; the skip waited for none
    assert [p for _, p in lambda_endpoint.invocations()] == PAYLOADS[1:]


def test_a_failure_ignored_while_it_waits_its_turn_is_not_replayed(
    lambda_endpoint, failures, sqlite_url
) -> None:
    # given: a paced run of the three failures; while the second waits its turn, another
    # operator ignores it (the limiter's sleep does it)
    lambda_endpoint.start_recording()

    def ignore_the_second(store: Store) -> Callable[[float], Awaitable[None]]:
        async def sleep(seconds: float) -> None:
            await store.set_status([failures[1].key], FailureStatus.IGNORED, by="cli ann@box")

        return sleep

    # when
    results = _paced_run(lambda_endpoint.url, sqlite_url, failures, ignore_the_second)

    # then: the ignored one is skipped with who ignored it; the others are invoked
    assert [r.state for r in results] == [
        ReplayState.INVOKED,
        ReplayState.SKIPPED,
        ReplayState.INVOKED,
    ]
    assert results[1].detail == "ignored by cli ann@box meanwhile"
    assert [p for _, p in lambda_endpoint.invocations()] == [PAYLOADS[0], PAYLOADS[2]]
    assert ledger(sqlite_url, failures)[failures[1].key] == []


def test_an_attempt_another_run_is_making_is_not_called_interrupted(
    lambda_endpoint, lambda_env, failures, sqlite_url
) -> None:
    # given: another run recorded its attempt and is waiting for Lambda's answer (two
    # operators replaying the same selection at once: seen with two bulk replays in a probe)
    async def begin() -> None:
        async with Store.from_url(sqlite_url) as store:
            attempt = ReplayAttempt(
                original_key=failures[0].key,
                original_request_id=failures[0].request_id,
                function_arn=failures[0].function_arn or "",
                attempt=1,
                trigger="manual",
                requested_by="cli other@host",
            )
            assert await store.add_replay(attempt)

    asyncio.run(begin())
    lambda_endpoint.start_recording()

    # when
    run = cli("replay", failures[0].request_id or "", "--yes", env=lambda_env)

    # then: skipped, and told it may be under way rather than that it was cut off
    assert run.returncode == 0, run.stderr
    assert lambda_endpoint.invocations() == []
    assert "was interrupted" not in run.stdout
    assert "has no outcome yet: another run may be invoking it now" in run.stdout


class ScriptedLambda:
    """Lambda's Invoke, scripted: the first ``answered`` requests are accepted (202 and a
    request id); each one after is hung up on without an answer (``then="hang-up"``), or held
    unanswered until the server closes (``then="hold"``: a call still under way). Counts the
    requests; ``held`` is set when one is held."""

    def __init__(self, answered: int, then: str) -> None:
        self.answered, self.then, self.requests = answered, then, 0
        self.held = threading.Event()
        self._closing = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests += 1
                if outer.requests > outer.answered:
                    if outer.then == "hold":
                        outer.held.set()
                        outer._closing.wait(60)
                    self.close_connection = True  # no answer: whether it ran is unknown
                    return
                self.send_response(202)
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


def _states(run: subprocess.CompletedProcess[str]) -> list[tuple[str, str | None, str | None]]:
    return [(r["state"], r["error"], r["skip"]) for r in json.loads(run.stdout)["results"]]


# The ledger's detail (and the result's) of an Invoke cut off before its answer came.
CUT_OFF = "in doubt, may have reached Lambda: interrupted mid-call"
CUT_SHORT = [("invoked", None, None), ("error", "in-doubt", None), ("skipped", None, "interrupted")]


def test_a_replay_that_loses_the_endpoint_midway_says_what_was_sent_and_what_was_not(
    lambda_env, failures, sqlite_url
) -> None:
    # given: a Lambda that takes the first Invoke and hangs up on the second
    server = ScriptedLambda(answered=1, then="hang-up")
    env = {**lambda_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": server.url}
    ids = [r.request_id or "" for r in failures]
    try:
        # when
        cut = cli("replay", *ids, "--yes", "--json", env=env)
        server.answered = 99  # the endpoint is back
        again = cli("replay", *ids, "--yes", env=env)
    finally:
        server.close()

    # then: the line of what stopped it, after the report of what was sent and what was not
    assert cut.returncode == 4, cut.stderr
    assert len(error_lines(cut)) == 1
    assert "Traceback" not in cut.stderr
    assert _states(cut) == CUT_SHORT
    assert (
        f"stopped after invoking 1 of 3; {ids[1]} was cut off mid-call and may have reached "
        "Lambda" in cut.stderr
    )
    assert "1 not sent (the same replay again sends them" in cut.stderr
    # and the same replay again sends only the one not sent: nothing twice
    assert again.returncode == 0, again.stderr
    assert server.requests == 3
    assert [len(ledger(sqlite_url, failures)[r.key]) for r in failures] == [1, 1, 1]


def test_a_replay_stopped_by_ctrl_c_midway_says_what_was_sent_and_what_was_not(
    lambda_env, failures, sqlite_url
) -> None:
    # given: a Lambda that takes the first Invoke and is slow to answer the second
    server = ScriptedLambda(answered=1, then="hold")
    env = {**os.environ, **lambda_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": server.url}
    ids = [r.request_id or "" for r in failures]
    try:
        with subprocess.Popen(
            [*ENTRY, "replay", *ids, "--yes", "--json"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_in_a_terminal,
        ) as process:
            try:
                # when: Ctrl-C while the second Invoke waits for its answer
                assert server.held.wait(60), process.communicate()
                process.send_signal(signal.SIGINT)
                out, err = process.communicate(timeout=30)
            finally:
                reap(process)
        server.answered = 99
        again = cli(
            "replay",
            *ids,
            "--yes",
            env=lambda_env | {"LAMBDA_DESTINATIONS_ENDPOINT_URL": server.url},
        )
    finally:
        server.close()

    # then: interrupted, after the report of each record: invoked, in doubt, not sent
    assert process.returncode == 130, err
    assert "Traceback" not in err
    run = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert _states(run) == CUT_SHORT
    assert json.loads(out)["results"][1]["detail"] == CUT_OFF
    assert f"stopped after invoking 1 of 3; {ids[1]} was cut off mid-call" in err
    assert err.rstrip().endswith("interrupted")
    # the ledger says the cut-off attempt was interrupted; the same replay again skips it, says
    # so, and sends only the one not sent
    (attempt,) = ledger(sqlite_url, failures)[failures[1].key]
    assert (attempt.outcome, attempt.detail) == (ReplayOutcome.PENDING, CUT_OFF)
    assert again.returncode == 0, again.stderr
    assert "was interrupted and may have reached Lambda: --force" in again.stdout
    assert server.requests == 3


def test_a_replay_without_aws_credentials_stops_in_one_line_and_leaves_nothing_in_doubt(
    lambda_endpoint, lambda_env, failures, sqlite_url
) -> None:
    # given: an operator whose credentials are not set (expired, another shell)
    no_credentials = {
        **lambda_env,
        **NO_CREDENTIALS,
    }
    ids = [r.request_id or "" for r in failures]
    lambda_endpoint.start_recording()

    # when
    run = cli("replay", *ids, "--yes", env=no_credentials)

    # then: one line, the configuration's exit code, and the rest not sent
    assert run.returncode == 3, run.stderr
    assert error_lines(run) == [
        "error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE, or run with a role"
    ]
    assert "stopped after invoking 0 of 3; 2 not sent" in run.stderr
    # nothing was sent, and the ledger says so: no attempt is left in doubt, so the replay
    # again, with credentials, sends all three without --force
    (attempt,) = ledger(sqlite_url, failures)[failures[0].key]
    assert attempt.outcome is ReplayOutcome.ERROR
    again = cli("replay", *ids, "--yes", env=lambda_env)
    assert again.returncode == 0, again.stdout
    assert [p for _, p in lambda_endpoint.invocations()] == PAYLOADS
