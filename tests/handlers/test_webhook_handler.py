"""The webhook handler through the worker, against a local HTTP server the test starts: one POST
per record, its signature, retries on 5xx, quarantine on 4xx, the in-doubt policy, the presets."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import pytest
import structlog
from aiohttp import web
from handler_helpers import (
    drain_until_acked,
    failure_record,
    send_records,
    settings_for_handlers,
)
from structlog.testing import capture_logs

from certificates import self_signed_certificate
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers.webhook import build, idempotency_key, retry_after
from lambda_destinations.schemas import decode
from lambda_destinations.store import RunState, Store
from lambda_destinations.worker import Worker

SECRET = "s3cr3t-signing-key"
TOKEN = "Bearer very-secret-token"


class Receiver:
    """An aiohttp server that keeps every request and answers from a script of statuses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []  # statuses to answer first, then 200
        self.delays: list[float] = []  # seconds to wait before answering, first requests
        self.echo = False  # a refusal quotes the request, as Express's "Cannot POST /path"
        self.refusal_headers: dict[str, str] = {}  # sent with every status of 300 or more
        self.refusal_text = "invalid_payload"  # the body of a refusal that does not echo
        self.held = 0  # the first requests to answer only once `gate` is set
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()  # set by each request
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(
            {
                "path": request.path,
                "target": request.raw_path,  # the request line's, as sent
                "headers": dict(request.headers),
                "raw": raw,
                "body": json.loads(raw),
                "at": asyncio.get_running_loop().time(),  # when it arrived, by the server's clock
            }
        )
        self.arrived.set()
        if self.held:
            self.held -= 1
            await self.gate.wait()
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        status = self.script.pop(0) if self.script else 200
        if status >= 300 and self.echo:
            # Authorization first: the reason keeps the answer's first 200 characters only
            headers = sorted(request.headers.items(), key=lambda item: item[0] != "Authorization")
            sent = " ".join(f"{k}: {v}" for k, v in headers)
            # the request line's target as it came on the wire, the HTTP client's encoding
            return web.Response(status=status, text=f"Cannot POST {request.raw_path}\n{sent}")
        if status < 300:
            return web.Response(status=status, text="ok")
        return web.Response(status=status, text=self.refusal_text, headers=self.refusal_headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/services/T000/B000/secret-path"

    async def stop(self) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_requests(self, count: int) -> None:
        async with asyncio.timeout(30):
            self.arrived.clear()
            while len(self.requests) < count:
                await self.arrived.wait()
                self.arrived.clear()


Answer = Callable[["RawEndpoint", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
STREAMED = 64 * 2**20  # bytes an endless answer writes at most, so an unbounded read ends
READ_BOUND = 2**20  # what a bounded reader leaves written: what it read, socket buffers


class RawEndpoint:
    """A TCP server speaking just enough HTTP/1.1 to answer a POST as aiohttp's server will not:
    an answer of gigabytes, a body cut short, headers then silence. It counts the POSTs, and
    the body bytes it wrote to the scripted answers before the client went away."""

    def __init__(self) -> None:
        self.posts = 0
        self.script: list[Answer] = []  # answers to the first POSTs, then 200 "ok"
        self.written: list[int] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            self.posts += 1
            answer = self.script.pop(0) if self.script else ok_answer
            await answer(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: what it was written is counted
        finally:
            self._open.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        for writer in list(self._open):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def ok_answer(_: RawEndpoint, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()


def endless_answer(status: int) -> Answer:
    """``status`` with a body said to be 4 GB, written as fast as the client takes it."""

    async def answer(
        endpoint: RawEndpoint, _: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # A small send buffer, so what was written is close to what the client took.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        writer.write(
            f"HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\n"
            "Content-Length: 4000000000\r\n\r\n".encode()
        )
        endpoint.written.append(0)
        chunk = b"too much: " + b"x" * 65526
        while endpoint.written[-1] < STREAMED:
            writer.write(chunk)
            await writer.drain()
            endpoint.written[-1] += len(chunk)

    return answer


async def cut_short_answer(
    _: RawEndpoint, __: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort")
    await writer.drain()


async def silent_answer(
    _: RawEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    await writer.drain()
    await reader.read()  # until the client closes


def bytes_answer(data: bytes) -> Answer:
    """``data`` as the whole answer, then the connection closed: a server of another protocol
    (SSH's banner, Redis's error quoting the request) or one that closes at once (b"")."""

    async def answer(
        _: RawEndpoint, __: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(data)
        await writer.drain()

    return answer


@pytest.fixture
async def raw_endpoint() -> AsyncIterator[RawEndpoint]:
    server = RawEndpoint()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def hook_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing secret and the Authorization header, for secret_env and headers_env."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("HOOK_AUTH", TOKEN)


def hook_settings(
    endpoint_url: str,
    queue: str,
    store: str,
    *,
    worker: dict[str, Any] | None = None,
    **options: Any,
) -> Settings:
    """Settings with the webhook ``hook`` of ``options``; ``worker``: the worker's own."""
    return settings_for_handlers(
        endpoint_url,
        queue,
        store=store,
        handlers={"hook": {"type": "webhook", "window": 0, **options}},
        chain=("persist", "hook"),
        **(worker or {}),
    )


def assert_signed(request: dict[str, Any]) -> None:
    """The request's signature header verifies with SECRET over its timestamp and raw body."""
    header = request["headers"]["X-Lambda-Destinations-Signature"]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match is not None
    expected = hmac.new(
        SECRET.encode(), match.group(1).encode() + b"." + request["raw"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(match.group(2), expected)


async def drain(settings: Settings) -> Any:
    async with Worker(settings) as worker:
        return await worker.run(once=True)


def key_of(record: dict[str, Any]) -> str:
    return decode(json.dumps(record)).key


async def test_one_post_per_record_across_duplicates_and_redeliveries(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: a record sent twice (a duplicate), and another record
    url, _ = make_queue("hook-once")
    first, second = failure_record("orders-api"), failure_record("billing-worker")
    send_records(sqs, url, [first, first, second])
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url)

    # when: drained, then the first record delivered once more
    await drain(settings)
    send_records(sqs, url, [first])
    await drain(settings)

    # then: one POST per record, each with its own stable idempotency key
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert sorted(keys) == sorted(
        idempotency_key("hook", key_of(record)) for record in (first, second)
    )
    bodies = {r["body"]["request_id"]: r["body"] for r in receiver.requests}
    body = bodies[first["requestContext"]["requestId"]]
    assert body["function_name"] == "orders-api"
    assert body["error_type"] == "TimeoutError"
    assert body["invoke_count"] == 3  # one field alone keeps its JSON type
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"


async def test_a_body_string_that_is_one_payload_key_keeps_its_json_value(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: body strings that are each exactly one field read by key, as the README's
    # `order = "{payload.orderId}"`, and one with text around it
    url, _ = make_queue("hook-keys")
    payload = {"orderId": 42, "items": [{"sku": "a-1"}], "paid": False}
    send_records(sqs, url, [failure_record(payload=payload)])
    body = {
        "order": "{payload.orderId}",
        "items": "{payload[items]}",
        "first": "{payload.items[0]}",
        "paid": "{payload.paid}",
        "none": "{payload.nope}",
        "text": "order {payload.orderId}",
    }
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url, body=body)

    # when
    await drain(settings)

    # then: before, each keyed field came as text ("42", '[{"sku":"a-1"}]', "false", "")
    (request,) = receiver.requests
    assert request["body"] == {
        "order": 42,
        "items": [{"sku": "a-1"}],
        "first": {"sku": "a-1"},
        "paid": False,
        "none": None,
        "text": "order 42",
    }


async def test_the_signature_verifies_and_secrets_stay_out_of_the_logs(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    hook_secrets: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_URL", receiver.url)
    url, _ = make_queue("hook-signed")
    send_records(sqs, url, [failure_record(payload={"orderId": "ord-1", "total": 12.5})])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url_env="HOOK_URL",
        secret_env="HOOK_SECRET",
        headers_env={"Authorization": "HOOK_AUTH"},
        headers={"X-Team": "orders"},
        body={
            "text": "{function_name}: {error_type}",
            "order": "{payload.orderId}",
            "p": "{payload}",
        },
    )

    with capture_logs() as logs:
        await drain(settings)

    (request,) = receiver.requests
    assert request["body"] == {
        "text": "orders-api: TimeoutError",
        "order": "ord-1",
        "p": {"orderId": "ord-1", "total": 12.5},
    }
    headers = request["headers"]
    assert headers["Authorization"] == TOKEN
    assert headers["X-Team"] == "orders"
    assert_signed(request)
    logged = json.dumps(logs, default=str)
    assert "webhook sent" in logged
    for secret in (SECRET, "very-secret-token", "secret-path"):
        assert secret not in logged


async def test_variables_are_read_from_the_secret_in_lambda_destinations_secrets(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: the URL and signing secret only as keys of one secret's JSON (as ECS gives a
    # Secrets Manager secret of key/value pairs whole), the header's variable in the
    # environment and in the secret (the environment's wins)
    monkeypatch.delenv("HOOK_URL", raising=False)
    monkeypatch.setenv("HOOK_AUTH", TOKEN)
    bundle = {"HOOK_URL": receiver.url, "HOOK_SECRET": SECRET, "HOOK_AUTH": "not-this-one"}
    monkeypatch.setenv("LAMBDA_DESTINATIONS_SECRETS", json.dumps(bundle))
    url, _ = make_queue("hook-bundle")
    send_records(sqs, url, [failure_record()])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url_env="HOOK_URL",
        secret_env="HOOK_SECRET",
        headers_env={"Authorization": "HOOK_AUTH"},
    )

    with capture_logs() as logs:
        await drain(settings)

    # then: posted to the secret's URL, signed with its secret, the environment's header
    (request,) = receiver.requests
    assert request["headers"]["Authorization"] == TOKEN
    assert_signed(request)
    logged = json.dumps(logs, default=str)
    assert "webhook sent" in logged
    assert SECRET not in logged
    assert "not-this-one" not in logged


@pytest.mark.parametrize(
    ("bundle", "line"),
    [
        (
            '{"HOOK_URL": "https://hooks.example.com/secret-path",',
            "LAMBDA_DESTINATIONS_SECRETS is not JSON (line 1, column 54): store it as key/value "
            "pairs",
        ),
        (
            '["https://hooks.example.com/secret-path"]',
            "LAMBDA_DESTINATIONS_SECRETS is JSON but not an object",
        ),
        (
            '{"HOOK_URL": ["https://hooks.example.com/secret-path"]}',
            "LAMBDA_DESTINATIONS_SECRETS's key 'HOOK_URL' holds a list, not text",
        ),
        (
            '{"OTHER": "https://hooks.example.com/secret-path"}',
            "handlers.hook.url_env: the environment variable HOOK_URL is not set, nor is it a "
            "key of LAMBDA_DESTINATIONS_SECRETS: add it to either",
        ),
        (
            '{"HOOK_URL": ""}',
            "handlers.hook.url_env: LAMBDA_DESTINATIONS_SECRETS's key HOOK_URL is empty: give it "
            "a value",
        ),
    ],
    ids=["not JSON", "not an object", "not text", "no such key", "empty"],
)
def test_a_secret_that_cannot_serve_is_named_without_its_value(
    bundle: str,
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    handler_settings: Callable[..., Settings],
) -> None:
    monkeypatch.delenv("HOOK_URL", raising=False)
    monkeypatch.setenv("LAMBDA_DESTINATIONS_SECRETS", bundle)

    with pytest.raises(ConfigError) as info:
        build("hook", {"url_env": "HOOK_URL"}, handler_settings("q"))

    assert str(info.value).startswith(line), info.value
    assert "secret-path" not in str(info.value)


@pytest.mark.parametrize("setting", ["secret_env", "headers_env"])
@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("environment", "s3cr3t-caf\udce9"),  # a byte of Latin-1, not UTF-8, in the variable
        ("secrets", "s3cr3t-\ud800"),  # JSON's escape of a lone surrogate
    ],
)
def test_a_secret_or_header_that_is_not_text_stops_the_start(
    setting: str,
    where: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    handler_settings: Callable[..., Settings],
) -> None:
    # given: a value UTF-8 cannot carry: signing failed with a traceback; a header lost it
    if where == "environment":
        monkeypatch.setenv("HOOK_VALUE", value)
    else:
        monkeypatch.setenv("LAMBDA_DESTINATIONS_SECRETS", json.dumps({"HOOK_VALUE": value}))
    options: dict[str, Any] = {"url": "https://hooks.example.com/hook"}
    options[setting] = "HOOK_VALUE" if setting == "secret_env" else {"X-Token": "HOOK_VALUE"}

    with pytest.raises(ConfigError) as info:
        build("hook", options, handler_settings("q"))

    # then: one line that names the setting and the variable, never the value
    assert "HOOK_VALUE holds a character that is not UTF-8 text" in str(info.value), info.value
    assert "s3cr3t" not in str(info.value)


async def test_credentials_in_the_url_are_sent_as_basic_auth(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    url, _ = make_queue("hook-basic")
    send_records(sqs, url, [failure_record()])
    with_credentials = receiver.url.replace("http://", "http://hook:p%40ss@")
    settings = hook_settings(endpoint_url, url, sqlite_url, url=with_credentials)

    stats = await drain(settings)

    assert stats.outcomes["ack"] == 1
    (request,) = receiver.requests
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"hook:p@ss").decode()


async def test_5xx_is_retried_with_the_same_idempotency_key(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    url, _ = make_queue("hook-5xx")
    send_records(sqs, url, [failure_record()])
    receiver.script = [503, 502]
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url)

    stats = await drain(settings)

    assert stats.outcomes["ack"] == 1
    assert len(receiver.requests) == 3
    assert len({r["headers"]["Idempotency-Key"] for r in receiver.requests}) == 1


def asking_to_wait(
    sqs: Any, make_queue: Callable[..., Any], receiver: Receiver, status: int, header: str | None
) -> str:
    """A new queue with one record, whose first POST ``receiver`` answers ``status`` with
    ``Retry-After: header`` (None: without the header)."""
    url, _ = make_queue(f"hook-retry-after-{status}")
    send_records(sqs, url, [failure_record()])
    receiver.script = [status]
    receiver.refusal_headers = {} if header is None else {"Retry-After": header}
    return url


@pytest.mark.parametrize("status", [429, 504])  # 504: in doubt, sent again (in_doubt = resend)
async def test_a_short_retry_after_is_waited_in_process(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    status: int,
) -> None:
    # given: a server that answers 429 (504) asking for 2 seconds, within the in-process budget
    url = asking_to_wait(sqs, make_queue, receiver, status, "2")
    worker = {"handler_retry_max_delay": 5.0}
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url, worker=worker)

    # when
    stats = await drain(settings)

    # then: the second POST came no sooner than asked (the server's own clock), in process
    assert stats.outcomes["ack"] == 1
    assert stats.outcomes["retry"] == 0
    first, second = receiver.requests
    assert second["at"] - first["at"] >= 2.0


def http_date_in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


# Each case's header made when the test runs (an HTTP date is an hour from then): a value made
# at collection would differ between pytest-xdist's workers, which must collect the same tests.
LONG_WAITS = {
    "seconds": (lambda: "120", 120),  # over the in-process budget: the queue waits, not a slot
    "http-date": (lambda: http_date_in(3600), 600),  # an hour: capped at retry_max
    "huge": (lambda: "9999999999", 600),  # the reason said "(Retry-After: 1e+10s)"
}


@pytest.mark.parametrize("case", LONG_WAITS)
async def test_a_long_retry_after_returns_the_message_to_the_queue_for_that_long(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    case: str,
) -> None:
    header, delay = LONG_WAITS[case][0](), LONG_WAITS[case][1]
    # given: a server that answers 503 asking for longer than in-process retries may wait
    url = asking_to_wait(sqs, make_queue, receiver, 503, header)
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=receiver.url, worker={"retry_max": 600.0}
    )

    # when
    with capture_logs() as logs:
        stats = await drain(settings)

    # then: one POST, and the message hidden for the delay asked, at most retry_max; the log
    # line says what was asked
    assert len(receiver.requests) == 1
    assert stats.outcomes["retry"] == 1
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert retried["delay"] == delay
    assert retried["retry_after"] >= delay
    assert "answered 503 (Retry-After: " in retried["reason"]
    if header.isdigit():
        assert f"answered 503 (Retry-After: {header}s)" in retried["reason"], retried["reason"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"


@pytest.mark.parametrize("header", ["soon", "-5", "1.5", "Mon, 99 Foo 2026"])
async def test_a_retry_after_that_is_not_a_delay_is_ignored(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    header: str,
) -> None:
    url = asking_to_wait(sqs, make_queue, receiver, 429, header)
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url)

    stats = await drain(settings)

    # retried in process with the backoff, as without the header
    assert stats.outcomes["ack"] == 1
    assert len(receiver.requests) == 2
    assert retry_after(header) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after(None) is None
    assert retry_after(" 30 ") == 30
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date past: no wait
    assert 290 <= (retry_after(http_date_in(300)) or 0) <= 300
    assert 290 <= (retry_after(http_date_in(300).removesuffix(" GMT")) or 0) <= 300


def test_an_http_date_retry_after_is_read_against_the_answers_date() -> None:
    # given: a server whose clock is an hour behind the worker's, asking for 5 minutes by date
    behind = time.time() - 3600
    sent = email.utils.formatdate(behind, usegmt=True)
    until = email.utils.formatdate(behind + 300, usegmt=True)

    # then: 5 minutes by the server's clock (by the worker's, the date is past: no wait); an
    # answer without a Date, or with one that is not a date, is read by the worker's clock
    assert retry_after(until, sent) == 300
    assert retry_after(until, "yesterday") == 0
    assert retry_after(until) == 0
    assert retry_after("30", sent) == 30


@pytest.mark.parametrize(
    ("status", "fix", "preset"),
    [
        (
            400,
            "the receiver refused the body: check the handler's body against what it expects",
            None,
        ),
        (  # a preset's handler has no body setting: the body is made from its message
            400,
            "the receiver refused the body: check the handler's message against what it expects",
            "slack",
        ),
        (  # a reason that gave the status alone
            401,
            "the receiver refused the credentials: check the handler's headers, headers_env, "
            "secret_env or the URL's user:password",
            None,
        ),
        (404, "the receiver has no such path: check the handler's url", None),
        (413, "the body is too large for the receiver: shorten the handler's body", None),
        (413, "the body is too large for the receiver: shorten the handler's message", "slack"),
        (418, None, None),  # no fix known: the status and the answer alone
    ],
)
async def test_4xx_quarantines_the_message_with_the_status_and_the_fix(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    status: int,
    fix: str | None,
    preset: str | None,
) -> None:
    url, dlq = make_queue(f"hook-{status}")
    send_records(sqs, url, [failure_record()])
    receiver.script = [status]
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=receiver.url, **({"preset": preset} if preset else {})
    )

    stats = await drain(settings)

    assert stats.outcomes["quarantine"] == 1
    assert len(receiver.requests) == 1  # not retried pointlessly
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    answered = f"answered {status}: invalid_payload"
    assert row.reason.endswith(f"{answered} ({fix})" if fix else answered), row.reason
    assert "secret-path" not in row.reason
    assert sqs.receive_message(QueueUrl=dlq).get("Messages")


@pytest.mark.parametrize(
    ("location", "points_to"),
    [
        ("https://hooks.example.com/services/T0K3N?key=T0K3N", "https://hooks.example.com"),
        ("/services/T0K3N", None),  # on the same server: its scheme, host and port
        ("ftp://files.example/T0K3N", ""),  # no http(s) URL: not shown
        ("http://[files.example/T0K3N", ""),  # no URL urllib can read: not shown
    ],
    ids=["other-host", "same-host", "not-http", "not-a-url"],
)
async def test_a_redirect_names_where_it_points_without_its_path(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    location: str,
    points_to: str | None,
) -> None:
    url, _ = make_queue("hook-redirect")
    send_records(sqs, url, [failure_record()])
    receiver.script = [301]
    receiver.refusal_headers = {"Location": location}
    # as Express answers res.redirect(): the body says the Location again, path and query
    receiver.refusal_text = f"Moved Permanently. Redirecting to {location}"
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url)

    with capture_logs() as logs:
        stats = await drain(settings)

    # it said "set the final URL" only: an http:// URL that the server sends to https:// left
    # the user to find out which URL that is
    assert stats.outcomes["quarantine"] == 1
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    where = receiver.url.split("/services")[0]
    shown = where if points_to is None else points_to
    pointed = f"; it points to {shown}" if shown else ""
    assert f"webhook {where} answered 301: Moved Permanently. Redirecting to " in row.reason
    assert row.reason.endswith(f" (redirects are not followed: set the final URL{pointed})"), (
        row.reason
    )
    # the answer's text said the Location's path and query, which the reason shows as ***
    assert "T0K3N" not in json.dumps(logs, default=str) + row.reason


async def test_a_refusal_with_characters_sqs_refuses_reaches_the_dlq_spelled_out(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: a refusal whose text holds what SQS refuses in an attribute (anything outside
    # XML's characters: ESC, NUL, U+FFFE; SQS answers InvalidParameterValue, "Invalid
    # characters found", and the DLQ got no copy), and a bidi control SQS takes
    url, dlq = make_queue("hook-controls")
    send_records(sqs, url, [failure_record()])
    receiver.script = [400]
    receiver.refusal_text = "bad \x1b[31mred\x00 \ufffe \u202e"
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url)

    # when
    stats = await drain(settings)

    # then: the DLQ's copy has the reason with those characters spelled out; the store's as
    # its text columns hold text (NUL as U+FFFD, which PostgreSQL's text cannot hold)
    assert stats.outcomes["quarantine"] == 1
    (message,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    reason = message["MessageAttributes"]["LambdaDestinations.Reason"]["StringValue"]
    assert "answered 400: bad \\x1b[31mred\\x00 \\ufffe \u202e (" in reason, reason
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert "answered 400: bad \x1b[31mred\ufffd \ufffe \u202e (" in row.reason


@pytest.mark.parametrize("status", [400, 500])
async def test_an_answer_that_echoes_the_request_keeps_its_secrets_out(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    hook_secrets: None,
    status: int,
) -> None:
    # given: a server that refuses, quoting the path, the query and the headers it was sent
    url, dlq = make_queue(f"hook-echo-{status}")
    send_records(sqs, url, [failure_record()])
    receiver.script, receiver.echo = [status] * 10, True
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url=f"{receiver.url}?token=query-secret&sig=a%2Fb%2Fc",
        secret_env="HOOK_SECRET",
        headers_env={"Authorization": "HOOK_AUTH"},
    )

    # when
    with capture_logs() as logs:
        await drain(settings)

    # then: the answer is quoted, with what the request carried masked
    shown = [json.dumps(logs, default=str)]
    if status == 400:
        async with Store.from_url(sqlite_url) as store:
            (row,) = await store.list_quarantine()
        (message,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
        shown += [row.reason, json.dumps(message["MessageAttributes"])]
        assert "answered 400: Cannot POST *** " in row.reason
    for text in shown:
        assert "Cannot POST" in text
        for secret in ("secret-path", "query-secret", "a/b/c", "a%2Fb%2Fc", "very-secret-token"):
            assert secret not in text


@pytest.mark.parametrize(
    ("target", "token", "on_the_wire"),
    [
        # aiohttp (yarl) sends %2F of a query as "/"
        ("/echo/x?token=Ab%2BCd%2FEf%3D12&sig=Zx+Yw+Vu99", "Ab%2BCd%2FEf%3D12", "Ab%2BCd/Ef%3D12"),
        # lower-case escapes go upper-case, %7e as "~"
        ("/echo/tk%7e%2fAb12?key=Cd%3bEf34", "tk%7e%2fAb12", "tk~%2FAb12"),
        ("/echo/tk%7e%2fAb12?key=Cd%3bEf34", "Cd%3bEf34", "Cd%3BEf34"),
        # some escapes kept, some not: neither decoding nor quoting again gives it
        ("/echo/x?key=Tk%2F%3Ay%3B99", "Tk%2F%3Ay%3B99", "Tk/:y%3B99"),
    ],
)
async def test_a_token_is_masked_in_the_encoding_the_client_sent_it(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    target: str,
    token: str,
    on_the_wire: str,
) -> None:
    # given: a server that refuses, quoting the request line's target as it arrived
    url, dlq = make_queue("hook-echo-encoded")
    send_records(sqs, url, [failure_record()])
    receiver.script, receiver.echo = [400], True
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=receiver.url.split("/services/")[0] + target
    )

    # when
    with capture_logs() as logs:
        await drain(settings)

    # then: the token went re-encoded, and is in none of them, whichever way it is spelled
    (request,) = receiver.requests
    assert on_the_wire in request["target"]
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    (message,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    dlq_reason = message["MessageAttributes"]["LambdaDestinations.Reason"]["StringValue"]
    spellings = {token, on_the_wire, unquote(token), unquote_plus(token), quote(unquote(token))}
    for text in (json.dumps(logs, default=str), row.reason, dlq_reason):
        assert "answered 400: Cannot POST " in text, text
        for spelling in spellings:
            assert spelling not in text, (spelling, text)


async def test_an_answer_that_echoes_the_basic_auth_of_the_url_keeps_it_out(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: credentials in the URL, sent as basic auth, and a server that quotes its headers
    url, _ = make_queue("hook-echo-basic")
    send_records(sqs, url, [failure_record()])
    receiver.script, receiver.echo = [400], True
    with_credentials = receiver.url.replace("http://", "http://hook:p%40ss-word@")
    settings = hook_settings(endpoint_url, url, sqlite_url, url=with_credentials)

    # when
    with capture_logs() as logs:
        await drain(settings)

    # then: the Authorization header it quotes is masked, as the header of headers_env is
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    encoded = base64.b64encode(b"hook:p@ss-word").decode()
    assert "Authorization: *** " in row.reason
    for text in (row.reason, json.dumps(logs, default=str)):
        assert encoded not in text
        assert "p@ss-word" not in text


@pytest.mark.parametrize(
    ("status", "outcome", "posts"), [(200, "ack", 1), (500, "ack", 2), (400, "quarantine", 1)]
)
async def test_an_endless_answer_is_read_no_further_than_the_reason_needs(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    raw_endpoint: RawEndpoint,
    status: int,
    outcome: str,
    posts: int,
) -> None:
    # given: an endpoint whose answer says 4 GB and streams as fast as it is read
    url, _ = make_queue(f"hook-endless-{status}")
    send_records(sqs, url, [failure_record()])
    raw_endpoint.script = [endless_answer(status)]
    settings = hook_settings(endpoint_url, url, sqlite_url, url=raw_endpoint.url)

    # when
    stats = await drain(settings)

    # then: the status decided, and the client stopped reading long before the end
    assert stats.outcomes[outcome] == 1
    assert raw_endpoint.posts == posts
    (written,) = raw_endpoint.written
    assert written < READ_BOUND, written
    if outcome == "quarantine":
        async with Store.from_url(sqlite_url) as store:
            (row,) = await store.list_quarantine()
        assert "answered 400: too much: xxx" in row.reason


@pytest.mark.parametrize("answer", [cut_short_answer, silent_answer], ids=["cut-short", "silent"])
async def test_a_2xx_completes_whatever_its_body_does(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    raw_endpoint: RawEndpoint,
    answer: Answer,
) -> None:
    url, _ = make_queue("hook-2xx-body")
    send_records(sqs, url, [failure_record()])
    raw_endpoint.script = [answer]
    settings = hook_settings(endpoint_url, url, sqlite_url, url=raw_endpoint.url, timeout="2s")

    stats = await drain(settings)

    assert stats.outcomes["ack"] == 1
    assert raw_endpoint.posts == 1


async def hook_run(store: str, record: Any) -> Any:
    """The webhook's handler run of ``record``."""
    async with Store.from_url(store) as opened:
        runs = await opened.handler_runs(key_of(record))
    return next(run for run in runs if run.handler == "hook")


@pytest.mark.parametrize("policy", ["resend", "skip"])
@pytest.mark.parametrize(
    ("answer", "began"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "'SSH-2.0-OpenSSH_9.6'"),
        (
            b"-ERR unknown command 'POST /hook/TOK3N-path'\r\n",
            "\"-ERR unknown command 'POST ***'\"",  # the URL's path masked
        ),
    ],
    ids=["ssh", "redis"],
)
async def test_an_endpoint_that_does_not_speak_http_is_retried_with_the_fix(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    raw_endpoint: RawEndpoint,
    policy: str,
    answer: bytes,
    began: str,
) -> None:
    # given: a URL whose port is another protocol's server
    url, _ = make_queue(f"hook-not-http-{policy}")
    record = failure_record()
    send_records(sqs, url, [record])
    raw_endpoint.script = [bytes_answer(answer)] * 3
    hook_url = raw_endpoint.url + "/TOK3N-path"
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=hook_url, in_doubt=policy, worker={"handler_attempts": 1}
    )

    # when
    with capture_logs() as logs:
        stats = await drain(settings)

    # then: retried (no HTTP server took it: not in doubt, so skip loses nothing), with one
    # line that says what answered and what to check; it said "in doubt (ClientResponseError):
    # webhook http://127.0.0.1:… (ClientResponseError) may have been sent"
    assert stats.outcomes["retry"] == 1
    run = await hook_run(sqlite_url, record)
    assert run.state != RunState.COMPLETED
    where = raw_endpoint.url.removesuffix("/hook")
    assert run.last_error.endswith(
        f"webhook {where}: the answer is not HTTP (it began {began}): check the handler's url, "
        "its port and http:// or https://"
    ), run.last_error
    assert "TOK3N" not in json.dumps(logs, default=str)


async def test_a_server_that_closes_without_an_answer_says_so(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    raw_endpoint: RawEndpoint,
) -> None:
    url, _ = make_queue("hook-closed")
    record = failure_record()
    send_records(sqs, url, [record])
    raw_endpoint.script = [bytes_answer(b"")]
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=raw_endpoint.url, worker={"handler_attempts": 1}
    )

    stats = await drain(settings)

    # the request went: in doubt, as before; the line says what happened, where it named the
    # exception's class twice
    assert stats.outcomes["retry"] == 1
    run = await hook_run(sqlite_url, record)
    where = raw_endpoint.url.removesuffix("/hook")
    assert run.last_error.endswith(
        f"in doubt (ServerDisconnectedError): webhook {where} (the server closed the connection "
        "without an answer) may have been sent; sent again (in_doubt = resend)"
    ), run.last_error


async def test_https_to_a_plain_http_port_says_to_use_http(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    url, _ = make_queue("hook-tls-plain")
    record = failure_record()
    send_records(sqs, url, [record])
    hook_url = receiver.url.replace("http://", "https://")
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=hook_url, worker={"handler_attempts": 1}
    )

    stats = await drain(settings)

    # it said "cannot connect ([SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006))"
    assert stats.outcomes["retry"] == 1
    assert not receiver.requests
    run = await hook_run(sqlite_url, record)
    assert re.search(
        r"webhook https://127\.0\.0\.1:\d+: the TLS handshake failed \([A-Z_]+\): the server at "
        r"that port does not speak TLS; use http://, or the port where it serves https://$",
        run.last_error,
    ), run.last_error


async def test_a_certificate_this_machine_does_not_trust_is_named(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    # given: an HTTPS receiver with a self-signed certificate
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    posts: list[str] = []

    async def take(request: web.Request) -> web.Response:
        posts.append(request.path)
        return web.Response(text="ok")

    app.router.add_post("/{tail:.*}", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        port = runner.addresses[0][1]
        url, _ = make_queue("hook-self-signed")
        record = failure_record()
        send_records(sqs, url, [record])
        settings = hook_settings(
            endpoint_url,
            url,
            sqlite_url,
            url=f"https://127.0.0.1:{port}/hook",
            worker={"handler_attempts": 1},
        )

        # when
        stats = await drain(settings)
    finally:
        await runner.cleanup()

    # then: retried (a certificate can be replaced on the server), the line names the problem
    assert stats.outcomes["retry"] == 1
    assert not posts
    run = await hook_run(sqlite_url, record)
    assert run.last_error.endswith(
        f"webhook https://127.0.0.1:{port}: the server's certificate is not trusted (self-signed "
        "certificate): name its CA's PEM file in cert_bundle, or give the server a certificate for "
        "the URL's host from a CA this machine "
        "trusts"
    ), run.last_error


@pytest.mark.parametrize(("policy", "posts"), [("resend", 2), ("skip", 1)])
async def test_a_request_without_answer_follows_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    policy: str,
    posts: int,
) -> None:
    url, _ = make_queue(f"hook-doubt-{policy}")
    send_records(sqs, url, [failure_record()])
    receiver.delays = [3.0]  # the first answer comes after the handler stopped waiting
    settings = hook_settings(
        endpoint_url, url, sqlite_url, url=receiver.url, timeout="1s", in_doubt=policy
    )

    stats = await drain(settings)

    assert stats.outcomes["ack"] == 1
    assert len(receiver.requests) == posts


@pytest.mark.parametrize("status", [504, 524])
@pytest.mark.parametrize(("policy", "posts"), [("resend", 2), ("skip", 1)])
async def test_a_gateway_timeout_is_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    status: int,
    policy: str,
    posts: int,
) -> None:
    # given: a gateway (a load balancer, Cloudflare) that took the POST to its upstream and
    # answered 504 (524) when the upstream gave no answer in time: the upstream may have acted
    url, _ = make_queue(f"hook-gateway-{status}-{policy}")
    record = failure_record()
    send_records(sqs, url, [record])
    receiver.script = [status]
    receiver.refusal_text = "upstream request timeout"
    settings = hook_settings(endpoint_url, url, sqlite_url, url=receiver.url, in_doubt=policy)

    stats = await drain(settings)

    # then: as a request whose own answer never came, the in_doubt policy decides; a resend
    # is on record
    assert stats.outcomes["ack"] == 1
    assert len(receiver.requests) == posts
    run = await hook_run(sqlite_url, record)
    assert run.state == RunState.COMPLETED
    assert run.last_error is not None
    assert f"in_doubt = {policy}" in run.last_error, run.last_error
    assert f"answered {status}: upstream request timeout" in run.last_error, run.last_error


@pytest.fixture
async def stalled_tls() -> AsyncIterator[str]:
    """An https:// URL whose server takes the connection and never answers the TLS handshake:
    no request can reach it."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # closed when the test ends, never written to

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("hook_timeout", "worker", "said"),
    [
        ("1s", {"handler_attempts": 1}, "no connection within timeout (1s)"),
        ("100s", {"handler_timeout": 1}, "hook ran over handler_timeout (1s)"),
    ],
)
async def test_a_request_stopped_before_its_connection_was_made_is_retried_not_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    stalled_tls: str,
    hook_timeout: str,
    worker: dict[str, Any],
    said: str,
) -> None:
    # given: in_doubt = skip, and a server that never completes the TLS handshake
    url, _ = make_queue("hook-unconnected")
    record = failure_record()
    send_records(sqs, url, [record])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url=stalled_tls,
        timeout=hook_timeout,
        in_doubt="skip",
        worker={"retry_base": 0, "retry_max": 0, **worker},
    )

    stats = await drain(settings)

    # then: nothing of the request was sent, so nothing is in doubt: skip does not count the
    # webhook done (the alert would be lost), the message is retried, the line says why
    assert stats.outcomes["retry"] == 1
    assert stats.outcomes["ack"] == 0
    run = await hook_run(sqlite_url, record)
    assert run.state != RunState.COMPLETED
    assert "in doubt" not in run.last_error, run.last_error
    assert said in run.last_error, run.last_error


async def assert_recorded_in_doubt(store: str, record: Any, cause: str, policy: str) -> None:
    """The webhook's run completed, its last_error the in-doubt note of a call cut off."""
    async with Store.from_url(store) as opened:
        runs = await opened.handler_runs(key_of(record))
    run = next(run for run in runs if run.handler == "hook")
    assert run.state == RunState.COMPLETED
    assert run.last_error is not None
    assert f"in doubt (cut off at {cause})" in run.last_error
    assert f"in_doubt = {policy}" in run.last_error


@pytest.mark.parametrize(("policy", "posts"), [("skip", 1), ("resend", 2)])
async def test_a_request_cut_off_by_shutdown_follows_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    policy: str,
    posts: int,
) -> None:
    # given: a receiver that answers the first POST only once the test lets it
    url, _ = make_queue(f"hook-shutdown-{policy}", visibility_timeout=120)
    record = failure_record()
    send_records(sqs, url, [record])
    receiver.held = 1
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url=receiver.url,
        timeout="100s",
        in_doubt=policy,
        worker={"shutdown_grace": 0.2},
    )

    # when: the worker stops while the POST waits for its answer, then a worker drains
    async with Worker(settings) as worker:
        running = asyncio.create_task(worker.run())
        await receiver.wait_for_requests(1)
        worker.stop()
        first = await running
    receiver.gate.set()
    # Released to show again just after the long poll cut short at shutdown ends at SQS.
    for _ in range(10):
        second = await drain(settings)
        if second.received:
            break

    # then: cut off mid-call, the POST is in doubt: skip never sends it again, resend does;
    # the handler run records it either way
    assert first.outcomes["release"] == 1
    assert second.outcomes["ack"] == 1
    assert len(receiver.requests) == posts
    await assert_recorded_in_doubt(sqlite_url, record, "shutdown", policy)


@pytest.mark.parametrize(("policy", "posts"), [("skip", 1), ("resend", 2)])
async def test_a_request_cut_off_by_handler_timeout_follows_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    policy: str,
    posts: int,
) -> None:
    # given: a receiver that never answers the first POST, a webhook timeout longer than
    # handler_timeout, and message retries without delay
    url, dlq = make_queue(f"hook-budget-{policy}", visibility_timeout=120)
    record = failure_record()
    send_records(sqs, url, [record])
    receiver.held = 1
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url=receiver.url,
        timeout="100s",
        in_doubt=policy,
        worker={"handler_timeout": 1, "retry_base": 0, "retry_max": 0},
    )

    # when: workers drain the queue until the message is acked
    with capture_logs() as logs:
        first, acked = await drain_until_acked(settings)

    # then: the start warned that the worker cuts the call off first; the call cut off is in
    # doubt: skip completes the run (acked at once), resend posts again on the next receive
    assert any(
        e["event"].startswith("handlers.hook.timeout (100s) is longer than handler_timeout (1s)")
        and e["log_level"] == "warning"
        for e in logs
    )
    assert first.outcomes["retry"] == (1 if policy == "resend" else 0)
    assert acked == 1
    assert len(receiver.requests) == posts
    await assert_recorded_in_doubt(sqlite_url, record, "handler_timeout", policy)
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


async def test_the_slack_preset_sends_text(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: a template whose own text pings on purpose, and an error message with markup
    url, _ = make_queue("hook-slack")
    record = failure_record("orders-api", message="<@U024BE7LH> <!channel>")
    send_records(sqs, url, [record])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        preset="slack",
        url=receiver.url,
        message="<!here> *{function_name}* failed: {error_type} ({request_id}) {error_message}",
    )

    await drain(settings)

    # then: the template's text as written, the record's values escaped (they pinged before)
    (request,) = receiver.requests
    assert request["body"] == {
        "text": "<!here> *orders-api* failed: TimeoutError "
        f"({record['requestContext']['requestId']}) &lt;@U024BE7LH&gt; &lt;!channel&gt;"
    }


async def test_a_lone_surrogate_in_the_record_is_sent_as_its_json_escape(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: a record whose error message and payload hold a lone surrogate, which JSON spells
    # and UTF-8 has no bytes for (dev's alerts retried such a record until the DLQ took it)
    url, _ = make_queue("hook-surrogate")
    record = failure_record("orders-api", message="\ud800", payload={"note": "a\udc00b"})
    send_records(sqs, url, [record])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        url=receiver.url,
        body={"text": "{error_message}", "payload": "{payload}"},
    )

    # when
    stats = await drain(settings)

    # then: one POST, its body JSON that reads back as the record's values
    assert stats.outcomes["ack"] == 1
    (request,) = receiver.requests
    assert request["body"] == {"text": "\ud800", "payload": {"note": "a\udc00b"}}
    assert b"\\ud800" in request["raw"]


# Where each preset's body holds its text.
PRESET_TEXT: dict[str, Callable[[Any], str]] = {
    "slack": lambda body: body["text"],
    "pagerduty": lambda body: body["payload"]["summary"],
    "teams": lambda body: body["attachments"][0]["content"]["body"][0]["text"],
    "discord": lambda body: body["content"],
}


# Each text preset's limit, and a body's size as the limit counts it: Slack truncates `text`
# past 40,000 characters, Discord refuses `content` past 2,000, and Teams fails a message past
# about 28 KB (counted in UTF-16) after its webhook answered 202.
PRESET_LIMITS: dict[str, tuple[int, Callable[[dict[str, Any]], int]]] = {
    "slack": (40_000, lambda request: len(PRESET_TEXT["slack"](request["body"]))),
    "discord": (2_000, lambda request: len(PRESET_TEXT["discord"](request["body"]))),
    "teams": (28_000, lambda request: len(request["raw"].decode().encode("utf-16-le"))),
}


@pytest.mark.parametrize("preset", PRESET_LIMITS)
async def test_a_preset_keeps_its_text_within_the_services_limit(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    preset: str,
) -> None:
    # given: a message of 45,000 characters outside ASCII, over each service's limit
    url, _ = make_queue(f"hook-{preset}-long")
    send_records(sqs, url, [failure_record(message="é" * 9000)])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        preset=preset,
        url=receiver.url,
        message="{error_message}" * 5,
    )

    # when
    stats = await drain(settings)

    # then: sent, cut with an ellipsis (so a reader sees that it was) no shorter than the limit
    # needs: a character more would not fit
    assert stats.outcomes["ack"] == 1
    (request,) = receiver.requests
    limit, size = PRESET_LIMITS[preset]
    assert limit - 2 < size(request) <= limit
    assert PRESET_TEXT[preset](request["body"]).endswith("é…")


async def test_the_slack_preset_cuts_its_text_before_an_escape_never_inside_one(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, receiver: Receiver
) -> None:
    # given: a message of 80,000 characters once its "<" are Slack's "&lt;"
    url, _ = make_queue("hook-slack-cut")
    send_records(sqs, url, [failure_record(message="<" * 10_000)])
    message = "{error_message}{error_message}"
    settings = hook_settings(
        endpoint_url, url, sqlite_url, preset="slack", url=receiver.url, message=message
    )

    # when
    await drain(settings)

    # then: before, "…&lt;&lt…", an escape cut that Slack shows as "&lt"
    (request,) = receiver.requests
    text = request["body"]["text"]
    assert len(text) <= 40_000
    assert text.endswith("&lt;…")


@pytest.mark.parametrize("preset", PRESET_TEXT)
async def test_a_preset_message_that_renders_blank_sends_the_default(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    preset: str,
) -> None:
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    url, _ = make_queue(f"hook-blank-{preset}")
    send_records(sqs, url, [failure_record("orders-api")])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        preset=preset,
        url=receiver.url,
        routing_key_env="PD_KEY" if preset == "pagerduty" else None,
        message="{payload.nope}",
    )

    await drain(settings)

    (request,) = receiver.requests
    text = PRESET_TEXT[preset](request["body"])
    assert text.startswith("orders-api failed (RetriesExhausted): TimeoutError: Task timed out")


async def test_the_pagerduty_preset_sends_a_trigger_event(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    url, _ = make_queue("hook-pd")
    record = failure_record("orders-api")
    send_records(sqs, url, [record])
    settings = hook_settings(
        endpoint_url,
        url,
        sqlite_url,
        preset="pagerduty",
        url=receiver.url,
        routing_key_env="PD_KEY",
        severity="critical",
    )

    await drain(settings)

    (request,) = receiver.requests
    body = request["body"]
    request_id = record["requestContext"]["requestId"]
    assert body["routing_key"] == "R0UT1NGKEY0000000000000000000000"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == key_of(record)
    payload = body["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == record["requestContext"]["functionArn"]
    assert payload["component"] == "orders-api"
    assert payload["summary"].startswith("orders-api failed (RetriesExhausted): TimeoutError")
    assert payload["custom_details"]["request_id"] == request_id


async def test_the_pagerduty_preset_keeps_within_the_events_api_limits(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Receiver,
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a message longer than PagerDuty's 1024-character summary (it refuses it with 400)
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    url, _ = make_queue("hook-pd-long")
    send_records(sqs, url, [failure_record(message="x" * 3000)])
    options = {"preset": "pagerduty", "url": receiver.url, "routing_key_env": "PD_KEY"}
    settings = hook_settings(
        endpoint_url, url, sqlite_url, **options, message="{summary} {details}"
    )

    # when: a record, and a digest body whose dedup_key (it holds the error type) is too long
    await drain(settings)
    hook = build("pd", options, handler_settings("q"))
    long_key = "digest:pd:orders-api:" + "E" * 300 + ":2026-12-01T10:00:00.000Z"
    with capture_logs():
        body = {"dedup_key": long_key, "payload": {"summary": "s"}}
        await hook.post(body, key="k", log=structlog.get_logger())

    # then
    record, digest = (request["body"] for request in receiver.requests)
    assert len(record["payload"]["summary"]) == 1024
    assert record["payload"]["summary"].endswith("…")
    assert digest["dedup_key"] == hashlib.sha256(long_key.encode()).hexdigest()


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            {"headers": {"X-Token": "abc\r\nX-Evil: 1"}},
            r"^handlers\.hook\.headers\.X-Token: the value has a line break",
        ),
        ({"headers": {"X-Token": "abc\x01"}}, r"^handlers\.hook\.headers\.X-Token: the value"),
        (
            {"headers_env": {"X-Token": "PROBE_HDR"}},
            r"^handlers\.hook\.headers_env\.X-Token: the environment variable PROBE_HDR holds",
        ),
        ({"headers": {"X Token": "abc"}}, r"^handlers\.hook\.headers\.'X Token': not a header"),
        ({"signature_header": "X-Sig:"}, r"^handlers\.hook\.signature_header: not a header"),
    ],
)
def test_a_header_that_cannot_be_sent_stops_the_start(
    headers: dict[str, Any],
    message: str,
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_HDR", "abc\r\nX-Evil: 1")
    with pytest.raises(ConfigError) as info:
        build("hook", {"url": "https://x.example/hook", **headers}, handler_settings("q"))

    text = str(info.value)
    assert re.search(message, text), text
    assert "\n" not in text
    assert "X-Evil" not in text  # a header value may be a secret: never shown


@pytest.mark.parametrize(
    "preset",
    [
        {"preset": "slack"},
        {"preset": "pagerduty", "routing_key_env": "PD_KEY"},
        {"preset": "teams"},
        {"preset": "discord"},
    ],
)
@pytest.mark.parametrize("setting", ["message", "digest_message"])
def test_a_preset_message_error_names_the_setting_written(
    preset: dict[str, str],
    setting: str,
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    options = {"url": "https://x.example/hook", setting: "{", **preset}

    with pytest.raises(ConfigError) as info:
        build("w", options, handler_settings("q"))

    assert str(info.value).startswith(f"handlers.w.{setting}: not a valid template"), info.value


@pytest.mark.parametrize("setting", ["url_env", "secret_env"])
def test_a_variable_set_empty_is_named_empty_not_unset(
    setting: str, monkeypatch: pytest.MonkeyPatch, handler_settings: Callable[..., Settings]
) -> None:
    monkeypatch.setenv("HOOK_EMPTY", "")
    options = {setting: "HOOK_EMPTY"}
    if setting != "url_env":
        options["url"] = "https://x.example/x"

    with pytest.raises(ConfigError) as info:
        build("hook", options, handler_settings("q"))

    assert str(info.value) == (
        f"handlers.hook.{setting}: the environment variable HOOK_EMPTY is empty: give it a value"
    )


def test_the_log_names_an_ipv6_host_in_its_brackets(
    handler_settings: Callable[..., Settings],
) -> None:
    hook = build("hook", {"url": "http://[::1]:8080/pw"}, handler_settings("q"))
    assert hook.where == "http://[::1]:8080"  # it said http://::1:8080, which reads otherwise


@pytest.mark.parametrize(
    "options", [{"url": "http://::1:8080/pw"}, {"url_env": "HOOK_URL_V6"}], ids=["url", "url_env"]
)
def test_an_unbracketed_ipv6_host_is_named_with_the_fix(
    options: dict[str, Any],
    handler_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_URL_V6", "http://::1:8080/pw")
    with pytest.raises(ConfigError) as info:
        build("hook", options, handler_settings("q"))

    setting = "url_env: HOOK_URL_V6" if "url_env" in options else "url"
    assert str(info.value) == (
        f"handlers.hook.{setting}: an IPv6 address in a URL goes in brackets, its port after "
        "them: http://[::1]:8080/…"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"handlers\.hook: give url"),
        ({"url": "ftp://example.com"}, r"handlers\.hook\.url: the URL must be http"),
        ({"url": "https://x.example:99999/x"}, r"handlers\.hook\.url: the port is not a number"),
        ({"url": "https://x.example:0/pw"}, r"handlers\.hook\.url: the port is not a number"),
        # hosts no request can reach: each POST failed, retried as if it might pass
        ({"url": "https://a..example/pw"}, r"handlers\.hook\.url: the URL's host is not a host"),
        ({"url": "https://x example/pw"}, r"handlers\.hook\.url: the URL's host is not a host"),
        ({"url": "https://x.example\x00/pw"}, r"handlers\.hook\.url: the URL's host is not"),
        # a host no DNS holds, and digits and dots aiohttp refuses (it reads no 127.1): each
        # POST failed ("cannot connect (InvalidUrlClientError)"), retried as if it might pass
        ({"url": f"https://{('a' * 60 + '.') * 4}example.com/pw"}, r"has 255 characters, .* 253"),
        (
            {"url": "http://127.1:8080/pw"},
            r"\.url: the URL cannot be sent: its host '127\.1' is no",
        ),
        ({"url": "http://2130706433/pw"}, r"its host '2130706433' is no IPv4 address"),
        ({"url": "http://10.0.0.300/pw"}, r"its host '10\.0\.0\.300' is no IPv4 address"),
        # an IPv6 address without brackets: "with a host" or "the port is not a number" was said
        ({"url": "http://::1:8080/pw"}, r"handlers\.hook\.url: an IPv6 address in a URL goes in"),
        ({"url": "https://2001:db8::1/pw"}, r"\.url: .* in brackets, .*: https://\[::1\]:8080/…$"),
        ({"url": "http://[::1/pw"}, r"handlers\.hook\.url: the URL's host has a \[ without its \]"),
        # URLs aiohttp cannot read (urllib reads them otherwise): a traceback at start
        ({"url": "http://[::1]x/pw"}, r"handlers\.hook\.url: the URL cannot be sent \(Invalid"),
        ({"url": "http://x.example\\@y.example/pw"}, r"\.url: the URL cannot be sent \(.*backsl"),
        (
            {"url": "https://u:pw@x.example/x", "headers": {"authorization": "Bearer t"}},
            r"handlers\.hook\.url: the URL has credentials .* keep one of them$",
        ),
        # basic auth is sent in Latin-1: each POST raised UnicodeEncodeError, retried to the DLQ
        (
            {"url": "https://u:pw%E2%82%AC@x.example/x"},
            r"handlers\.hook\.url: the URL's credentials .* cannot carry",
        ),
        ({"url": "https://x.example", "body": {"t": "{record.__class__}"}}, r"body\.t: template"),
        # TOML's nan and inf, which JSON has not: every POST sent NaN, which receivers refuse
        ({"url": "https://x.example", "body": {"n": [float("nan")]}}, r"body\.n\[0\]: nan is not"),
        ({"url": "https://x.example", "digest_body": {"t": float("-inf")}}, r"body\.t: -inf is no"),
        ({"url": "https://x.example", "secret_env": "NOT_SET_ANYWHERE"}, r"secret_env: .* not set"),
        ({"preset": "pagerduty"}, "needs routing_key_env"),
        ({"preset": "slack", "url": "https://x.example", "body": {}}, "fills body itself"),
        ({"preset": "teams", "url": "https://x.example", "body": {}}, "fills body itself"),
        ({"preset": "discord", "url": "https://x.example", "digest_body": {}}, "fills body"),
        ({"preset": "discord"}, r"handlers\.hook: give url"),
        ({"url": "https://x.example", "in_doubt": "maybe"}, r"\.in_doubt: Input should be"),
    ],
)
def test_bad_settings_stop_the_start_naming_the_setting(
    options: dict[str, Any], message: str, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("hook", options, handler_settings("q"))

    text = str(info.value)
    assert text.startswith("handlers.hook")
    assert "pw" not in text
    assert re.search(message, text), text
