"""`invoke` and `result`: the request id, the outcome, and the exit codes 0, 1, 5 (and 2, 4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import ENTRY, cli, error_lines, row_of, seed_sync

from lambda_destinations.simulate import failure_record, success_record
from processes import ctrl_c_as_in_a_terminal, reap


def success_body(request_id: str, response: object) -> str:
    record = success_record(random.Random(request_id), function="orders-api")
    record["requestContext"]["requestId"] = request_id
    record["responsePayload"] = response
    return json.dumps(record)


def test_invoke_prints_the_request_id_and_sends_the_payload(
    lambda_endpoint: Any, lambda_env: dict[str, str], tmp_path: Path
) -> None:
    lambda_endpoint.create_function("orders-api")
    event = tmp_path / "event.json"
    event.write_text('{"orderId": 7}')
    lambda_endpoint.start_recording()
    inline = cli("invoke", "orders-api", "--payload", '{"orderId": 42}', env=lambda_env)
    from_file = cli("invoke", "orders-api", "--payload", f"@{event}", "--json", env=lambda_env)
    assert inline.returncode == 0, inline.stderr
    assert from_file.returncode == 0, from_file.stderr
    request_id = inline.stdout.strip()
    assert len(request_id.splitlines()) == 1
    assert request_id
    invoked = json.loads(from_file.stdout)
    assert invoked["state"] == "invoked"
    assert invoked["request_id"] not in ("", request_id)
    assert lambda_endpoint.invocations() == [
        ("orders-api", {"orderId": 42}),
        ("orders-api", {"orderId": 7}),
    ]


def test_invoke_refuses_a_payload_that_is_not_json(lambda_env: dict[str, str]) -> None:
    for payload in ("{orderId: 42}", "@/no/such/event.json"):
        result = cli("invoke", "orders-api", "--payload", payload, env=lambda_env)
        assert result.returncode == 2
        [line] = error_lines(result)
        assert "--payload" in line
        assert "Traceback" not in result.stderr


def test_invoke_payload_at_sign_alone_names_no_file(
    lambda_env: dict[str, str], tmp_path: Path
) -> None:
    # before: "--payload: cannot read  (Is a directory)": the empty name read as the folder
    result = cli("invoke", "orders-api", "--payload", "@", env=lambda_env, cwd=tmp_path)
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: --payload: '@' names no file: give @FILE, or @- for standard input"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "orders api",
        "orders-api/",
        "arn:aws:lambda:us-east-1:12345:function:orders-api",  # a short account id
        "f" * 65,
    ],
)
def test_invoke_refuses_a_function_name_lambda_cannot_take(
    name: str, lambda_endpoint: Any, lambda_env: dict[str, str]
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    result = cli("invoke", name, env=lambda_env)
    # before: sent to Invoke, which moto took (exit 0) and Lambda's own model refuses
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: Invalid value for 'FUNCTION': {name!r} is not a Lambda function name or ARN: "
        "write a name (orders-api), maybe with :alias or :version, or the function's ARN "
        "(arn:aws:lambda:us-east-1:123456789012:function:orders-api)"
    )
    assert lambda_endpoint.invocations() == []


@pytest.mark.parametrize(
    ("qualifier", "shown"),
    [
        ("", "''"),
        ("my alias with spaces", "'my alias with spaces'"),
        ("q" * 200, "'" + "q" * 80 + "… (200 characters)'"),
        ("live\x1b[2J", "'live\\x1b[2J'"),  # the escape spelled out, as click's own lines do
    ],
)
def test_invoke_refuses_a_qualifier_lambda_cannot_take(
    qualifier: str, shown: str, lambda_endpoint: Any, lambda_env: dict[str, str]
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    result = cli("invoke", "orders-api", "--qualifier", qualifier, env=lambda_env)
    # before: sent to Invoke, which moto took (exit 0, a request id) and Lambda's model refuses
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: Invalid value for '--qualifier': {shown} is not a version or alias: write a "
        "version number (7), an alias name (live) or $LATEST, 1 to 128 letters, digits, "
        "'-' or '_'"
    )
    assert lambda_endpoint.invocations() == []


@pytest.mark.parametrize(
    "function",
    [
        "orders-api:live",
        "123456789012:function:orders-api:live",
        "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live",
    ],
)
def test_invoke_refuses_a_qualifier_other_than_the_function_s_own(
    function: str, lambda_endpoint: Any, lambda_env: dict[str, str]
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    # --qualifier first: click reads it before FUNCTION
    result = cli("invoke", "--qualifier", "blue", function, env=lambda_env)
    # before: sent to Invoke, which moto took; Lambda refuses it (InvalidParameterValueException:
    # "The derived qualifier from the function name does not match the specified qualifier.")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"error: Invalid value for '--qualifier': 'blue' is not the version or alias "
        f"{function!r} names ('live'), and Lambda refuses an Invoke given two: give it once, "
        "in the function or as the qualifier"
    )
    assert lambda_endpoint.invocations() == []


def test_invoke_sends_a_qualifier_the_function_also_ends_with(
    lambda_endpoint: Any, lambda_env: dict[str, str]
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    result = cli("invoke", "orders-api:$LATEST", "--qualifier", "$LATEST", env=lambda_env)
    assert result.returncode == 0, result.stderr
    assert lambda_endpoint.invocations() == [("orders-api:$LATEST", {})]


NOT_YET = "0c7e6a35-2b8f-4d1e-9a4c-5f3b2e1d0a9b"


def test_result_exit_codes_say_success_failure_and_unknown(
    sqlite_url: str, cli_env: dict[str, str]
) -> None:
    # given: a success and a failure stored by the worker
    failure = failure_record(
        random.Random(5),
        function="billing",
        condition="RetriesExhausted",
        error=("ValueError", "bad order", "python"),
    )
    seed_sync(
        sqlite_url,
        [row_of(success_body("rid-ok", {"total": 12.5})), row_of(json.dumps(failure))],
    )
    failed_id = failure["requestContext"]["requestId"]

    # when
    ok = cli("result", "rid-ok", env=cli_env)
    ok_json = cli("result", "rid-ok", "--json", env=cli_env)
    failed = cli("result", failed_id, "--json", env=cli_env)
    # a request id (a UUID) not stored yet; an id that is none is test_dev_results's
    unknown = cli("result", NOT_YET, env=cli_env)
    waited = cli("result", NOT_YET, "--wait", "1s", "--json", env=cli_env)

    # then
    assert ok.returncode == 0, ok.stderr
    assert "succeeded (Success)" in ok.stdout
    assert '{"total": 12.5}' in ok.stdout
    assert ok_json.returncode == 0
    shown = json.loads(ok_json.stdout)
    assert shown["state"] == "succeeded"
    assert shown["response"] == {"total": 12.5}
    assert shown["error"] is None
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["error"] == {"type": "ValueError", "message": "bad order"}
    assert unknown.returncode == 5
    [line] = error_lines(unknown)
    assert f"no result for request id {NOT_YET} yet" in line
    assert waited.returncode == 5
    assert json.loads(waited.stdout) == {"request_id": NOT_YET, "state": "unknown"}
    assert "within 1 s" in error_lines(waited)[0]


def test_result_of_an_unknown_request_id_says_retention_may_have_pruned_it(
    cli_env: dict[str, str], sqlite_url: str
) -> None:
    # given: a store whose retention prunes successes after 3 days (failures kept for ever):
    # the record of a request id kept longer may have been stored, and deleted since
    seed_sync(sqlite_url, [])
    env = {
        **cli_env,
        "LAMBDA_DESTINATIONS_KEEP_SUCCESSES_DAYS": "3",
        "LAMBDA_DESTINATIONS_KEEP_FAILURES_DAYS": "0",
    }

    # when
    unknown = cli("result", NOT_YET, env=env)
    forever = cli("result", NOT_YET, env={**env, "LAMBDA_DESTINATIONS_KEEP_SUCCESSES_DAYS": "0"})

    # then: the line says so (before: only that it may be running, or the worker not)
    assert unknown.returncode == 5, unknown.stderr
    [line] = error_lines(unknown)
    assert line.endswith(
        "or it was pruned, older than the store keeps records (successes 3 days)"
    ), line
    assert forever.returncode == 5, forever.stderr
    [line] = error_lines(forever)
    assert "pruned" not in line


@pytest.mark.parametrize("ident", [f"{NOT_YET}x", f"{NOT_YET}:", "stream:x"])
def test_result_does_not_wait_on_an_id_no_record_can_come_under(
    cli_env: dict[str, str], sqlite_url: str, ident: str
) -> None:
    # given: a request id with more after it than a key's :Condition, or no request id at all
    seed_sync(sqlite_url, [])

    # when: a wait of a day (the command's own timeout is far shorter)
    waited = cli("result", ident, "--wait", "24h", "--json", env=cli_env, timeout=60)

    # then: answered at once, as the HTTP API answers it (before: the first two waited the day)
    assert waited.returncode == 5, waited.stderr
    assert json.loads(waited.stdout) == {"request_id": ident, "state": "unknown"}


@pytest.mark.parametrize("ident", [f"{NOT_YET}.", f"{NOT_YET}x", f"{NOT_YET}:"])
def test_result_of_a_request_id_with_more_after_it_says_so_not_that_it_waited(
    cli_env: dict[str, str], sqlite_url: str, ident: str
) -> None:
    # given: a request id pasted with what followed it (the full stop of a sentence, say)
    seed_sync(sqlite_url, [])

    # when
    waited = cli("result", ident, "--wait", "30s", env=cli_env, timeout=60)

    # then: the line says what to give; before, "within 30 s: the invocation may still be
    # running", for a wait that never ran and a record that never comes under that id
    assert waited.returncode == 5, waited.stderr
    [line] = error_lines(waited)
    assert "within" not in line
    assert "still be running" not in line
    assert "a Lambda request id has 36 characters" in line
    assert f"give {NOT_YET} alone" in line


@pytest.mark.parametrize(
    ("ident", "fix"),
    [
        (f'"{NOT_YET}"', f"give {NOT_YET} alone"),  # copied from JSON, with its quotes
        (f"{{{NOT_YET}}}", f"give {NOT_YET} alone"),  # a GUID as some languages print it
        (f"urn:uuid:{NOT_YET}", f"give {NOT_YET} alone"),
        (NOT_YET[:-1] + "g", "8-4-4-4-12 hexadecimal digits"),  # whole, one character mistyped
        (NOT_YET.replace("-", "_"), "8-4-4-4-12 hexadecimal digits"),
    ],
)
def test_result_of_an_id_given_whole_but_not_as_lambda_writes_it_says_what_to_fix(
    cli_env: dict[str, str], sqlite_url: str, ident: str, fix: str
) -> None:
    # given: a request id given whole, with what surrounds it or mistyped
    seed_sync(sqlite_url, [])

    # when
    shown = cli("result", ident, env=cli_env)

    # then: the line says what to fix; before, "a Lambda request id has 36 characters ...
    # give it whole", for an id of 36 characters or more, given whole
    assert shown.returncode == 5, shown.stderr
    [line] = error_lines(shown)
    assert fix in line
    assert "give it whole" not in line


def test_invoke_wait_prints_the_response_once_the_record_is_stored(
    lambda_endpoint: Any, lambda_env: dict[str, str], sqlite_url: str
) -> None:
    # given: a migrated store and a function
    seed_sync(sqlite_url, [])
    lambda_endpoint.create_function("orders-api")
    process = subprocess.Popen(
        [*ENTRY, "invoke", "orders-api", "--payload", "{}", "--wait", "60s"],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **lambda_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        request_id = process.stdout.readline().strip()
        assert request_id, process.stderr.read() if process.stderr else ""

        # when: the worker stores the invocation's record
        seed_sync(sqlite_url, [row_of(success_body(request_id, {"ok": True}))])
        out, err = process.communicate(timeout=60)
    finally:
        reap(process)
    # then
    assert process.returncode == 0, err
    assert "succeeded (Success)" in out
    assert 'response    {"ok": true}' in out


def test_invoke_wait_times_out_with_exit_5(
    lambda_endpoint: Any, lambda_env: dict[str, str], sqlite_url: str
) -> None:
    seed_sync(sqlite_url, [])
    lambda_endpoint.create_function("orders-api")
    result = cli("invoke", "orders-api", "--wait", "0.5s", env=lambda_env)
    assert result.returncode == 5
    assert result.stdout.strip()  # the request id, printed before waiting
    [line] = error_lines(result)
    assert "within 0.5 s" in line


async def _listening(admin_url: str, store_url: str) -> bool:
    """Whether a connection of the store's database LISTENs: a `--wait` waiting on PostgreSQL."""
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        found = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN %'",
            store_url.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()
    return bool(found)


async def _lock_out(admin_url: str, store_url: str) -> None:
    """The store's database becomes unreachable: its connections ended, new ones refused."""
    import asyncpg

    database = store_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
    finally:
        await admin.close()


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["ctrl-c", "store lost"])
def test_invoke_json_wait_cut_short_still_prints_the_request_id(
    lambda_endpoint: Any,
    lambda_env: dict[str, str],
    postgres_url: str,
    pg_admin_url: str,
    cut: str,
) -> None:
    # given: a function invoked with --json --wait, waiting for its record (nothing printed
    # yet: the JSON comes with the outcome)
    seed_sync(postgres_url, [])
    lambda_endpoint.create_function("orders-api")
    env = {**os.environ, **lambda_env, "LAMBDA_DESTINATIONS_STORE": postgres_url}
    process = subprocess.Popen(
        [*ENTRY, "invoke", "orders-api", "--wait", "60s", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    try:
        deadline = time.monotonic() + 60  # a bound, not a timed assertion
        while process.poll() is None and time.monotonic() < deadline:
            if asyncio.run(_listening(pg_admin_url, postgres_url)):
                break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()

        # when: the wait is cut short, by Ctrl-C or by the store going away
        if cut == "ctrl-c":
            process.send_signal(signal.SIGINT)
        else:
            asyncio.run(_lock_out(pg_admin_url, postgres_url))
        out, err = process.communicate(timeout=60)
    finally:
        reap(process)

    # then: the function was invoked, and the script still gets its request id, to read the
    # outcome later (before: nothing on stdout, the id lost)
    assert process.returncode == (130 if cut == "ctrl-c" else 4), err
    invoked = json.loads(out)
    assert invoked["state"] == "invoked"
    assert invoked["request_id"]
    assert set(invoked) == {"request_id", "state"}


def test_result_says_a_failure_a_replay_recovered(sqlite_url: str, cli_env: dict[str, str]) -> None:
    # given: a failure whose replay succeeded (its status, as the replay-outcome handler sets it)
    failure = failure_record(random.Random(6), function="billing", condition="RetriesExhausted")
    seed_sync(sqlite_url, [row_of(json.dumps(failure))])
    failed_id = failure["requestContext"]["requestId"]
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db, db:
        db.execute("UPDATE invocations SET status = 'recovered' WHERE request_id = ?", [failed_id])

    # when
    shown = cli("result", failed_id, env=cli_env)

    # then: the text says so, as the JSON's status does (before: no status line), and the
    # exit code stays that of a failed invocation
    assert shown.returncode == 1
    assert "status      recovered (a replay succeeded: `failures show` names its request id)" in (
        shown.stdout.splitlines()
    )


def test_result_on_a_store_never_migrated_says_so(cli_env: dict[str, str]) -> None:
    result = cli("result", "rid-1", env=cli_env)
    # the file does not exist (a reader never creates it): the store's URL is the thing to fix
    assert result.returncode == 3
    [line] = error_lines(result)
    assert "lambda-destinations migrate" in line


def test_result_of_an_empty_request_id_is_a_usage_error(cli_env: dict[str, str]) -> None:
    # before: exit 5, "no result for request id  yet"
    result = cli("result", "", env=cli_env)
    assert result.returncode == 2
    assert "give the request id Lambda returned" in result.stderr


def test_result_on_an_empty_postgresql_database_is_a_configuration_error(
    postgres_url: str, cli_env: dict[str, str]
) -> None:
    # A database with no tables is the wrong one (or not migrated): exit 3, as a missing SQLite
    # file is, not 4 ("cannot be reached"), which a script would retry for ever.
    result = cli("result", "rid-1", env={**cli_env, "LAMBDA_DESTINATIONS_STORE": postgres_url})
    assert result.returncode == 3, result.stderr
    [line] = error_lines(result)
    assert "has no tables yet" in line


def test_invoke_wait_checks_the_store_before_it_invokes(
    lambda_endpoint: Any, lambda_env: dict[str, str]
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    result = cli("invoke", "orders-api", "--wait", "5s", env=lambda_env)  # never made
    assert result.returncode == 3  # the file does not exist: the store's URL is the thing to fix
    assert result.stdout == ""
    assert "lambda-destinations migrate" in error_lines(result)[0]
    assert lambda_endpoint.invocations() == []


def test_invoke_refuses_nan_infinity_and_numbers_past_a_double(lambda_env: dict[str, str]) -> None:
    # json.loads reads them, Lambda and the store do not: the ledger would hold null
    for payload in ("NaN", '{"total": Infinity}', "-Infinity", "1e999"):
        result = cli("invoke", "orders-api", "--payload", payload, env=lambda_env)
        assert result.returncode == 2, payload
        [line] = error_lines(result)
        assert "--payload is not JSON (" in line, line
        assert "Traceback" not in result.stderr
