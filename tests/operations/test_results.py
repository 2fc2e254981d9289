"""Asynchronous results: invoke_async against a moto Lambda, the worker storing the destination
record, and Results.get / wait reading it from both stores."""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import random
import re
import sqlite3
import time
import urllib.parse
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import aiobotocore.session
import boto3
import pytest
import sqlalchemy as sa
from ops_helpers import REGION, cli, row_of, seed, seed_sync

from lambda_destinations import (
    InvocationResult,
    Results,
    ResultTimeout,
    SyncResults,
    invoke_async,
    invoke_async_sync,
)
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError, StoreMisconfigured, StoreUrlError
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import FailureStatus, ReplayAttempt, ReplayOutcome, Store
from lambda_destinations.times import MAX_WAIT
from lambda_destinations.worker import Worker


def destination_record(request_id: str, function_arn: str, response: Any) -> dict[str, Any]:
    """The on-success record Lambda would deliver for ``request_id``."""
    record = success_record(random.Random(request_id))
    record["requestContext"]["requestId"] = request_id
    record["requestContext"]["functionArn"] = function_arn
    record["responsePayload"] = response
    return record


class Statements(list[float]):
    """When each statement a store sends through SQLAlchemy starts (time.monotonic)."""

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.first = asyncio.Event()
        loop = asyncio.get_running_loop()

        def started(*_args: Any) -> None:
            self.append(time.monotonic())
            loop.call_soon_threadsafe(self.first.set)  # SQLite reads in its own thread

        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", started)


async def test_invoke_then_wait_returns_the_record_the_worker_stores(
    lambda_endpoint: Any,
    make_queue: Callable[..., tuple[str, str | None]],
    settings_for: Callable[..., Settings],
    store_url: str,
    sqs: Any,
) -> None:
    # given: an invocation Lambda accepted, and an application waiting for its result
    arn = lambda_endpoint.create_function("orders-async")
    request_id = await invoke_async(
        "orders-async", {"orderId": 42}, endpoint_url=lambda_endpoint.url, region=REGION
    )
    assert request_id
    queue_url, _ = make_queue("results")
    settings = settings_for(queue_url, store=store_url)
    await seed(store_url, [])  # migrated, as the worker does at start
    async with Store.from_url(store_url) as worker_store, Results(store_url) as results:
        statements = Statements(results.store)
        returned_at: list[float] = []

        async def wait() -> InvocationResult:
            outcome = await results.wait(request_id, timeout=60)
            returned_at.append(time.monotonic())
            return outcome

        waiting = asyncio.create_task(wait())
        await statements.first.wait()
        await asyncio.sleep(0.5)  # the application waits; the record is not there yet

        # when: Lambda delivers the record and the worker stores it
        saves: list[tuple[float, float]] = []
        save = worker_store.save_invocation

        async def timed_save(*args: Any, **kwargs: Any) -> bool:
            began = time.monotonic()
            new = await save(*args, **kwargs)
            saves.append((began, time.monotonic()))
            return new

        worker_store.save_invocation = timed_save  # type: ignore[method-assign]
        record = destination_record(request_id, arn, {"ok": True, "orderId": 42})
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(record))
        worker = Worker(settings, store=worker_store)
        async with worker:
            running = asyncio.create_task(worker.run())
            try:
                outcome = await asyncio.wait_for(waiting, 60)
            finally:
                worker.stop()
                await running

    # then: the function's response, within 0.5 s of the commit
    assert outcome.succeeded
    assert outcome.request_id == request_id
    assert outcome.response == {"ok": True, "orderId": 42}
    assert outcome.function_name == "orders-async"
    assert len(saves) == 1
    save_began, saved = saves[0]
    assert returned_at[0] - saved < 0.5
    if store_url.startswith("postgresql"):
        # One read before waiting, one after the NOTIFY: nothing while the record was on its way.
        assert [t for t in statements[1:] if t < save_began] == []
        assert len(statements) == 2


async def test_get_returns_none_for_an_unknown_request_id(store_url: str) -> None:
    await seed(store_url, [])
    async with Results(store_url) as results:
        assert await results.get("4f1c2d3e-0000-4000-8000-000000000000") is None


@pytest.mark.parametrize("request_id", ["\udcff\udcfe", "rid\x00nul", "lone-\ud800"])
async def test_an_id_no_record_can_be_stored_under_has_none(
    store_url: str, request_id: str
) -> None:
    # A command-line argument that is not UTF-8 arrives with surrogates: the store's text holds
    # none (nor NUL), so no record has that id; before, the read ended in StoreDataError.
    await seed(store_url, [])
    async with Results(store_url) as results:
        assert await results.get(request_id) is None
        with pytest.raises(ResultTimeout):
            await results.wait(request_id, timeout=30)  # at once: none will ever come


async def test_a_failure_record_returns_its_error(store_url: str) -> None:
    record = failure_record(
        random.Random(3),
        function="billing-worker",
        condition="RetriesExhausted",
        error=("TimeoutError", "Task timed out after 3.00 seconds", "python"),
    )
    request_id = record["requestContext"]["requestId"]
    await seed(store_url, [row_of(json.dumps(record))])
    async with Results(store_url) as results:
        got = await results.get(request_id)
        waited = await results.wait(request_id, timeout=5)
    assert got is not None
    assert got == waited
    assert not got.succeeded
    assert got.condition == "RetriesExhausted"
    assert got.error_type == "TimeoutError"
    assert got.error_message == "Task timed out after 3.00 seconds"
    assert got.as_dict()["state"] == "failed"
    assert got.as_dict()["error"] == {
        "type": "TimeoutError",
        "message": "Task timed out after 3.00 seconds",
    }
    assert got.status == "open"


async def test_a_request_id_read_from_a_file_or_upper_cased_is_read_as_lambda_wrote_it(
    sqlite_url: str,
) -> None:
    # given: a stored record, and its id as an application may hold it: read from a file with
    # its newline, or upper-cased by another system (`result` and the HTTP API read both)
    record = success_record(random.Random(5))
    request_id = record["requestContext"]["requestId"]
    await seed(sqlite_url, [row_of(json.dumps(record))])
    held = f" {request_id.upper()}\n"

    # when
    async with Results(sqlite_url) as results:
        got = await results.get(held)
        began = time.monotonic()
        waited = await results.wait(held, timeout=30)

    # then: found, and at once (before: None, and a wait of its whole timeout)
    assert got is not None
    assert got.request_id == request_id
    assert waited == got
    assert time.monotonic() - began < 5


async def test_a_wait_times_out_with_a_clear_result(store_url: str) -> None:
    await seed(store_url, [])
    async with Results(store_url) as results:
        began = time.monotonic()
        with pytest.raises(ResultTimeout) as caught:
            await results.wait("never-arrives", timeout=0.7)
    assert time.monotonic() - began >= 0.7
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.request_id == "never-arrives"
    assert "no result for request id never-arrives within 0.7 s" in str(caught.value)


def test_sync_wrappers_serve_scripts(lambda_endpoint: Any, sqlite_url: str) -> None:
    arn = lambda_endpoint.create_function("orders-sync")
    lambda_endpoint.start_recording()
    request_id = invoke_async_sync(
        "orders-sync", {"n": 1}, endpoint_url=lambda_endpoint.url, region=REGION
    )
    assert lambda_endpoint.invocations() == [("orders-sync", {"n": 1})]
    record = destination_record(request_id, arn, [1, 2, 3])
    seed_sync(sqlite_url, [row_of(json.dumps(record))])
    with SyncResults(sqlite_url) as results:
        assert results.get("unknown") is None
        outcome = results.wait(request_id, timeout=5)
    assert outcome.response == [1, 2, 3]
    assert outcome.as_dict()["state"] == "succeeded"


async def test_invoke_async_sends_the_qualifier_and_raw_bytes(
    lambda_endpoint: Any,
) -> None:
    lambda_endpoint.create_function("orders-qualified")
    client = boto3.client("lambda", region_name=REGION, endpoint_url=lambda_endpoint.url)
    client.publish_version(FunctionName="orders-qualified")
    lambda_endpoint.start_recording()
    first = await invoke_async(
        "orders-qualified",
        b'{"raw": true}',
        qualifier="1",
        endpoint_url=lambda_endpoint.url,
        region=REGION,
    )
    second = await invoke_async(
        "orders-qualified", None, endpoint_url=lambda_endpoint.url, region=REGION
    )
    assert first != second
    assert invoke_urls_and_bodies(lambda_endpoint) == [
        ("/2015-03-31/functions/orders-qualified/invocations?Qualifier=1", b'{"raw": true}'),
        ("/2015-03-31/functions/orders-qualified/invocations", b"null"),
    ]


def invoke_urls_and_bodies(endpoint: Any) -> list[tuple[str, bytes]]:
    """(path and query, body) of every Invoke since start_recording."""
    endpoint._call("POST", "/moto-api/recorder/stop-recording")
    text = endpoint._call("GET", "/moto-api/recorder/download-recording").decode()
    found = []
    for line in filter(str.strip, text.splitlines()):
        entry = json.loads(line)
        path = urllib.parse.unquote(entry.get("url", "").split("://", 1)[-1].split("/", 1)[-1])
        if "/invocations" in path:
            body = entry.get("body") or ""
            raw = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
            found.append(("/" + path, raw))
    return found


def test_invoke_async_sync_takes_the_region_from_aws_region(
    lambda_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the region only where Lambda's runtime and the CLI look first (botocore reads
    # AWS_DEFAULT_REGION alone)
    lambda_endpoint.create_function("orders-region")
    lambda_endpoint.start_recording()
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    # when
    request_id = invoke_async_sync("orders-region", {"n": 2}, endpoint_url=lambda_endpoint.url)
    # then
    assert request_id
    assert lambda_endpoint.invocations() == [("orders-region", {"n": 2})]


@pytest.mark.parametrize(
    ("function", "qualifier", "message"),
    [
        (
            "orders api",
            None,
            "'orders api' is not a Lambda function name or ARN: write a name (orders-api), maybe "
            "with :alias or :version, or the function's ARN "
            "(arn:aws:lambda:us-east-1:123456789012:function:orders-api)",
        ),
        (
            "orders-api",
            "my alias with spaces",
            "'my alias with spaces' is not a version or alias: write a version number (7), an "
            "alias name (live) or $LATEST, 1 to 128 letters, digits, '-' or '_'",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live",
            "blue",
            "'blue' is not the version or alias "
            "'arn:aws:lambda:us-east-1:123456789012:function:orders-api:live' names ('live'), "
            "and Lambda refuses an Invoke given two: give it once, in the function or as the "
            "qualifier",
        ),
    ],
)
async def test_invoke_async_refuses_what_invoke_cannot_take_and_sends_nothing(
    function: str, qualifier: str | None, message: str, lambda_endpoint: Any
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    options = {"qualifier": qualifier, "endpoint_url": lambda_endpoint.url, "region": REGION}
    # before: sent to Invoke as given; moto took each and returned a request id
    whole = f"^{re.escape(message)}$"  # the line the CLI's invoke says after its option's name
    with pytest.raises(ValueError, match=whole):
        await invoke_async(function, {"n": 1}, **options)
    assert lambda_endpoint.invocations() == []


@pytest.mark.parametrize(
    ("function", "qualifier", "message"),
    [
        (
            None,
            None,
            "function must be a function name, ARN or partial ARN as a string, not None",
        ),
        (
            b"orders-api",
            None,
            "function must be a function name, ARN or partial ARN as a string, not bytes",
        ),
        (
            "orders-api",
            7,
            "qualifier must be a version or alias as a string (7, live, $LATEST) or None, not int",
        ),
    ],
)
def test_invoke_async_refuses_a_function_or_qualifier_that_is_no_str_and_sends_nothing(
    function: Any, qualifier: Any, message: str, lambda_endpoint: Any
) -> None:
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    options = {"qualifier": qualifier, "endpoint_url": lambda_endpoint.url, "region": REGION}
    # before: a TypeError from inside the check, "object of type 'NoneType' has no len()",
    # "cannot use a string pattern on a bytes-like object"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        invoke_async_sync(function, {"n": 1}, **options)
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        asyncio.run(invoke_async(function, {"n": 1}, **options))
    assert lambda_endpoint.invocations() == []


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1, 86401])
async def test_wait_refuses_a_timeout_that_is_not_seconds_from_0_to_a_day(
    sqlite_url: str, seconds: float
) -> None:
    await seed(sqlite_url, [])
    async with Results(sqlite_url) as results:
        with pytest.raises(ValueError, match=r"^timeout must be seconds from 0 to 86400 \(a day\)"):
            await results.wait("never-arrives", timeout=seconds)


@pytest.mark.parametrize("seconds", ["5", None, True])
async def test_wait_refuses_a_timeout_that_is_no_number(sqlite_url: str, seconds: Any) -> None:
    await seed(sqlite_url, [])
    async with Results(sqlite_url) as results:
        with pytest.raises(TypeError, match=r"^timeout must be a number of seconds, not "):
            await results.wait("never-arrives", timeout=seconds)


@pytest.mark.parametrize("store", [None, 5, b"sqlite:///x.db"])
def test_results_takes_a_store_url_or_a_store(store: Any) -> None:
    with pytest.raises(TypeError, match=r"^Results takes a store URL \(str\) or an open Store"):
        Results(store)
    with pytest.raises(TypeError, match=r"^SyncResults takes a store URL \(str\), not "):
        SyncResults(store)


@pytest.mark.parametrize("request_id", [12345, None, b"abc"])
async def test_a_request_id_that_is_no_str_is_refused_not_unknown(
    sqlite_url: str, request_id: Any
) -> None:
    await seed(sqlite_url, [])
    async with Results(sqlite_url) as results:
        with pytest.raises(TypeError, match=r"^request_id must be a str, not "):
            await results.get(request_id)
        with pytest.raises(TypeError, match=r"^request_id must be a str, not "):
            await results.wait(request_id, timeout=0)


@pytest.mark.parametrize(
    ("request_id", "what"), [("", "empty"), ("  ", "blank"), ("\t\n", "blank")]
)
async def test_an_empty_request_id_is_refused_at_once(
    store_url: str, request_id: str, what: str
) -> None:
    # before: get said None ("not yet") and wait waited its whole timeout
    await seed(store_url, [])
    message = (
        f"^request_id is {what}: give the request id invoke_async returned \\(Lambda's, a UUID\\)$"
    )
    async with Results(store_url) as results:
        with pytest.raises(ValueError, match=message):
            await results.get(request_id)
        with pytest.raises(ValueError, match=message):
            await results.wait(request_id, timeout=MAX_WAIT)
    await asyncio.to_thread(_sync_refuses, store_url, request_id, message)


def _sync_refuses(store_url: str, request_id: str, message: str) -> None:
    with SyncResults(store_url) as results:
        with pytest.raises(ValueError, match=message):
            results.get(request_id)
        with pytest.raises(ValueError, match=message):
            results.wait(request_id, timeout=MAX_WAIT)


def test_sync_results_refuses_a_request_id_that_is_no_str(sqlite_url: str) -> None:
    seed_sync(sqlite_url, [])
    with SyncResults(sqlite_url) as results:
        with pytest.raises(TypeError, match=r"^request_id must be a str, not int$"):
            results.get(12345)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^timeout must be seconds from 0 to 86400"):
            results.wait("abc", timeout=float("nan"))


async def test_results_outside_async_with_says_how_to_open_it(sqlite_url: str) -> None:
    await seed(sqlite_url, [])
    results = Results(sqlite_url)
    expected = r"^Results is not open: use it as `async with Results\(url\) as results:`$"
    with pytest.raises(RuntimeError, match=expected):
        await results.get("abc")
    async with results:
        assert await results.get("abc") is None
    with pytest.raises(RuntimeError, match=expected):
        await results.wait("abc", timeout=0)


def test_sync_results_not_open_or_closed_says_what_to_do(sqlite_url: str) -> None:
    seed_sync(sqlite_url, [])
    unopened = SyncResults(sqlite_url)
    with pytest.raises(RuntimeError, match=r"^this SyncResults is not open: use it as `with "):
        unopened.get("abc")
    with SyncResults(sqlite_url) as results:
        assert results.get("abc") is None
    closed = r"^this SyncResults is closed: open a new one, `with SyncResults\(url\) as results:`$"
    with pytest.raises(RuntimeError, match=closed):
        results.get("abc")
    with pytest.raises(RuntimeError, match=closed), results:
        pass


async def test_sync_results_inside_async_code_points_to_results(sqlite_url: str) -> None:
    await seed(sqlite_url, [])
    inside = r"^SyncResults blocks, so it cannot run inside async code: use `async with Results"
    with pytest.raises(RuntimeError, match=inside):
        SyncResults(sqlite_url).__enter__()


_WEST_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders-west"


async def test_invoke_async_refuses_an_arn_of_another_region_than_its_client(
    lambda_endpoint: Any,
) -> None:
    # given: Lambda refuses such an Invoke ("Functions from 'eu-west-1' are not reachable in
    # this region ('us-east-1')"); moto invokes its own region's function of that name
    lambda_endpoint.create_function("orders-west")
    lambda_endpoint.start_recording()
    said = (
        f"^'{_WEST_ARN}' is a function of eu-west-1, and {{whose}} us-east-1: Lambda invokes "
        r"only its own region's functions: use a client of eu-west-1 \(without lambda_client= "
        r"and region=, invoke_async makes one for the ARN's region\)$"
    )
    # when / then: nothing is sent, for a region given or a client's
    with pytest.raises(ValueError, match=said.format(whose="region= is")):
        await invoke_async(_WEST_ARN, {"n": 1}, endpoint_url=lambda_endpoint.url, region=REGION)
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "lambda", region_name=REGION, endpoint_url=lambda_endpoint.url
    ) as client:
        with pytest.raises(ValueError, match=said.format(whose="the lambda_client given is for")):
            await invoke_async(_WEST_ARN, {"n": 1}, lambda_client=client)
    assert lambda_endpoint.invocations() == []


async def test_invoke_async_refuses_a_client_that_is_not_aiobotocore_s_and_sends_nothing(
    lambda_endpoint: Any,
) -> None:
    # given: boto3's client, whose invoke blocks and returns a dict: it sent the Invoke, and
    # then "object dict can't be used in 'await' expression": the function ran, the request id
    # was lost, and an application that tried again invoked it twice
    lambda_endpoint.create_function("orders-api")
    lambda_endpoint.start_recording()
    blocking = boto3.client("lambda", region_name=REGION, endpoint_url=lambda_endpoint.url)
    session = aiobotocore.session.get_session()
    said = r"^lambda_client must be an aiobotocore client of Lambda .*, not {what}"
    # when / then: refused before anything is sent
    with pytest.raises(TypeError, match=said.format(what="a boto3 client")):
        await invoke_async("orders-api", {"n": 1}, lambda_client=blocking)
    async with session.create_client(
        "sqs", region_name=REGION, endpoint_url=lambda_endpoint.url
    ) as sqs:
        with pytest.raises(TypeError, match=said.format(what="a client of sqs")):
            await invoke_async("orders-api", {"n": 1}, lambda_client=sqs)
    assert lambda_endpoint.invocations() == []


async def test_invoke_async_invokes_an_arn_in_its_own_region(
    lambda_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a function of eu-west-1, and the standard region another one
    west = boto3.client("lambda", region_name="eu-west-1", endpoint_url=lambda_endpoint.url)
    west.create_function(
        FunctionName="orders-west",
        Runtime="python3.12",
        Role=lambda_endpoint.role_arn,
        Handler="app.handler",
        Code={"ZipFile": _zipped_handler()},
    )
    monkeypatch.setenv("AWS_REGION", REGION)
    try:
        lambda_endpoint.start_recording()
        # when: the client is made for the ARN's region (Lambda of us-east-1 would refuse it;
        # moto would invoke its own region's function of that name)
        request_id = await invoke_async(_WEST_ARN, {"n": 3}, endpoint_url=lambda_endpoint.url)
        # then
        assert request_id
        assert lambda_endpoint.invocations_by_region() == [("eu-west-1", _WEST_ARN, {"n": 3})]
    finally:
        west.delete_function(FunctionName="orders-west")


def _zipped_handler() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        (
            {"amount": float("nan")},
            ValueError,
            "payload is not JSON (Out of range float values are not JSON compliant): send a "
            "JSON value (finite numbers, None for none, nothing that holds itself), or bytes",
        ),
        (
            [float("inf")],
            ValueError,
            "payload is not JSON (Out of range float values are not JSON compliant): send a "
            "JSON value (finite numbers, None for none, nothing that holds itself), or bytes",
        ),
        (
            {1, 2},
            TypeError,
            "payload must be a JSON value (dict, list, str, number, bool or None) or bytes: "
            "Object of type set is not JSON serializable",
        ),
    ],
)
async def test_invoke_async_refuses_a_payload_json_cannot_hold_and_sends_nothing(
    lambda_endpoint: Any, payload: Any, kind: type[Exception], message: str
) -> None:
    lambda_endpoint.create_function("orders-nan")
    lambda_endpoint.start_recording()
    # before: NaN and infinity were sent as null ({"amount": null}), the value lost unsaid
    with pytest.raises(kind, match=f"^{re.escape(message)}$"):
        await invoke_async("orders-nan", payload, endpoint_url=lambda_endpoint.url, region=REGION)
    assert lambda_endpoint.invocations() == []


async def test_invoke_async_sends_a_lone_surrogate_as_json_escapes_it(
    lambda_endpoint: Any,
) -> None:
    lambda_endpoint.create_function("orders-surrogate")
    lambda_endpoint.start_recording()
    # before: UnicodeEncodeError, "'utf-8' codec can't encode character '\ud800'"
    await invoke_async(
        "orders-surrogate", {"name": "é\ud800"}, endpoint_url=lambda_endpoint.url, region=REGION
    )
    assert invoke_urls_and_bodies(lambda_endpoint) == [
        ("/2015-03-31/functions/orders-surrogate/invocations", b'{"name":"\\u00e9\\ud800"}')
    ]


@pytest.mark.parametrize(
    ("options", "kind", "message"),
    [
        ({"region": 5}, TypeError, "region must be a str or None, not int"),
        ({"endpoint_url": 5}, TypeError, "endpoint_url must be a str or None, not int"),
        ({"attempts": "3"}, TypeError, "attempts must be an int, not str"),
        ({"attempts": 0}, ValueError, "attempts must be 1 or more (1: no retry), not 0"),
        (
            {"endpoint_url": "app:s3cret@localhost:4566"},
            ValueError,
            "endpoint_url '***@localhost:4566' is not an http:// or https:// URL: write one as "
            "http://127.0.0.1:4566, or None for AWS itself",
        ),
    ],
)
def test_invoke_async_refuses_options_of_the_wrong_kind_in_one_line(
    options: dict[str, Any], kind: type[Exception], message: str
) -> None:
    # before: "expected string or bytes-like object, got 'int'", "'int' object is not
    # iterable", "'>' not supported between instances of 'int' and 'str'", attempts=0 taken
    # as 1, and botocore's "Invalid endpoint: app:s3cret@localhost:4566"
    base = {"endpoint_url": "http://127.0.0.1:9", "region": REGION}
    with pytest.raises(kind, match=f"^{re.escape(message)}$"):
        invoke_async_sync("orders-api", {"n": 1}, **{**base, **options})


def test_invoke_async_without_a_region_says_where_to_give_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    # before: botocore's NoRegionError, "You must specify a region."
    with pytest.raises(ConfigError) as caught:
        invoke_async_sync("orders-api", {"n": 1}, endpoint_url="http://127.0.0.1:9")
    assert str(caught.value) == (
        "no AWS region for invoke_async: pass region='us-east-1' (the function's region), "
        "give the function's ARN, or set AWS_REGION"
    )


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_results_of_an_in_memory_store_says_to_give_the_workers(url: str) -> None:
    expected = (
        f"store URL '{url}' (given to Results): an in-memory database: Results would open a "
        "new, empty one that no worker writes to; give a file path such as "
        "sqlite:///lambda-destinations.db, or postgresql://user@host/db"
    )
    # before: "it has no tables yet: run `lambda-destinations migrate`", which gives none either
    with pytest.raises(StoreUrlError, match=f"^{re.escape(expected)}$"), SyncResults(url):
        pass


def test_sync_results_that_cannot_open_leaves_no_event_loop_open(tmp_path: Any) -> None:
    # given: a SQLite file that is no store (no tables): opening it fails
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()
    results = SyncResults(f"sqlite:///{path}")
    # when
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StoreMisconfigured, match="it has no tables yet"):
            results.__enter__()
        del results
        gc.collect()
    # then: before, "unclosed event loop" (and its socket) until garbage collection
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_a_payload_orjson_writes_is_sent_as_it_was_and_nan_is_still_refused() -> None:
    """Payloads went out through orjson, which writes a datetime, a UUID or a dataclass (and
    NaN as null): refusing NaN must not refuse what an application already sends."""
    import dataclasses
    import datetime as dt
    import uuid

    from lambda_destinations.operations.results import invocation_payload

    @dataclasses.dataclass
    class Order:
        id: int

    sent = invocation_payload(
        {
            "at": dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC),
            "id": uuid.UUID(int=7),
            "order": Order(3),
            "name": "café",
        }
    )
    assert json.loads(sent) == {
        "at": "2026-12-05T09:30:00+00:00",
        "id": "00000000-0000-0000-0000-000000000007",
        "order": {"id": 3},
        "name": "café",
    }
    with pytest.raises(ValueError, match="payload is not JSON"):
        invocation_payload({"when": [dt.date(2026, 1, 1), float("inf")]})


async def test_a_failure_with_a_dead_letter_message_too_shows_the_destination_s_record(
    store_url: str,
) -> None:
    # given: a failure both its on-failure destination and its dead-letter queue recorded (AWS
    # sends both when both are configured); the DLQ message, which names no condition, function
    # or response, was received after the destination's record; the replay handler replayed the
    # DLQ's record (the first to reach it), and the replay succeeded
    record = failure_record(
        random.Random(7),
        function="billing-worker",
        condition="RetriesExhausted",
        error=("ValueError", "bad order", "python"),
    )
    request_id = record["requestContext"]["requestId"]
    attributes = {"RequestID": request_id, "ErrorCode": "200", "ErrorMessage": "bad order"}
    dlq = row_of('{"orderId": 42}', attributes)
    await seed(store_url, [row_of(json.dumps(record)), dlq])
    async with Store.from_url(store_url) as store:
        await store.set_status([dlq.key], FailureStatus.RECOVERED, by="replay")

    # when
    async with Results(store_url) as results:
        got = await results.get(request_id)
        waited = await results.wait(request_id, timeout=5)
        by_key = await results.get(dlq.key)

    # then: the destination's record, with the invocation's status (before: the DLQ message's,
    # condition, function and response None, error type "200")
    assert got is not None
    assert waited == got
    assert got.condition == "RetriesExhausted"
    assert got.function_name == "billing-worker"
    assert got.error_type == "ValueError"
    assert got.response == record["responsePayload"]
    assert got.status == "recovered"
    # a store key still reads its own record
    assert by_key is not None
    assert by_key.error_type == "200"


async def test_a_failure_a_replay_recovered_names_the_replay_whose_record_has_the_response(
    store_url: str,
) -> None:
    # given: a failure replayed twice, the first replay failed and the second succeeded, as
    # the replay and replay-outcome handlers record it
    record = failure_record(random.Random(9), function="billing", condition="RetriesExhausted")
    failed = row_of(json.dumps(record))
    second_id = "5e0c1f6a-9b7d-4c2e-8f3a-2d4b6c8e0a1f"
    replayed_ok = row_of(json.dumps(destination_record(second_id, record_arn(record), {"ok": 1})))
    await seed(store_url, [failed, replayed_ok])
    async with Store.from_url(store_url) as store:
        for attempt, (new_id, outcome) in enumerate(
            [
                ("0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", ReplayOutcome.FAILED),
                (second_id, ReplayOutcome.RECOVERED),
            ],
            start=1,
        ):
            tried = ReplayAttempt(
                original_key=failed.key,
                original_request_id=failed.request_id,
                function_arn=record_arn(record),
                attempt=attempt,
                trigger="automatic",
                requested_by="worker test",
            )
            assert await store.add_replay(tried)
            assert tried.id is not None
            await store.update_replay(tried.id, new_request_id=new_id, outcome=outcome)
        await store.set_status([failed.key], FailureStatus.RECOVERED, by="replay")

    # when: the application reads the outcome of the request id it kept
    async with Results(store_url) as results:
        got = await results.get(str(failed.request_id))
        succeeded = await results.get(second_id)

    # then: it names the replay whose record has the function's response (before: only
    # "recovered", and nothing an application could read the response by)
    assert got is not None
    assert got.status == "recovered"
    assert got.recovered_by == second_id
    assert got.as_dict()["recovered_by"] == second_id
    assert succeeded is not None
    assert succeeded.recovered_by is None
    assert succeeded.as_dict()["recovered_by"] is None
    # and: `result` says which request id to read (before: "`failures show` names it")
    shown = await asyncio.to_thread(
        cli, "result", str(failed.request_id), env={"LAMBDA_DESTINATIONS_STORE": store_url}
    )
    assert shown.returncode == 1, shown.stderr  # that invocation failed
    assert (
        f"status      recovered (replay {second_id} succeeded: `result {second_id}` has its "
        "response)"
    ) in shown.stdout.splitlines()


def record_arn(record: dict[str, Any]) -> str:
    return str(record["requestContext"]["functionArn"])
