"""Real servers for the acting handlers' tests, and ways to read back what they received.

- SNS SMS and SES email: a moto server; what it sent is read back from its
  ``/moto-api/data.json`` (``sns.SMS``, ``ses.Message``; SES v2 sends are recorded there too).
- Lambda: a moto server of its own (``RecordingMoto``), started as a separate process
  (``python -m moto.server``) with ``{"lambda": {"use_docker": false}}`` and moto's request
  recorder on, writing to a file of its own. moto keeps no invocation payloads, so the recording
  (every HTTP request the server received, bodies included) is how a test reads back which
  function was invoked, how, and with what. No function is created on it: moto's Lambda without
  Docker accepts an Invoke of any name (EMULATORS.md), and ``data.json`` stops working on a
  server once a function exists. The worker uses one endpoint for every service, so tests that
  replay and notify run SQS, SNS and SES on this server too.
- A Lambda stand-in (``LambdaStandIn``) for what moto cannot do: answer an Invoke of a missing
  function with ``ResourceNotFoundException``, or throttle. It serves the real Invoke REST API
  (``POST /2015-03-31/functions/{name}/invocations``) over HTTP to the real botocore client,
  and keeps the invocations it accepted.
- SMTP: a real aiosmtpd server on 127.0.0.1, plain, STARTTLS or TLS, optionally requiring
  authentication, that can answer with 4xx or 5xx codes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

from lambda_destinations.config import RouteConfig, Settings, load_settings
from lambda_destinations.store import JobState, ScheduledJob, Store
from lambda_destinations.worker import Worker
from processes import free_port, reap

REGION = "us-east-1"
ACCOUNT = "123456789012"


def http_text(method: str, url: str, body: Any = None, *, timeout: float = 10) -> str:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - local server
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        text: str = response.read().decode()
    return text


def http_json(method: str, url: str, body: Any = None, *, timeout: float = 10) -> Any:
    return json.loads(http_text(method, url, body, timeout=timeout))


# -- SNS and SES, read back from what a moto server recorded as sent --------------------------


def moto_data(endpoint_url: str, *, attempts: int = 5) -> dict[str, Any]:
    # All of the server's state, every queued message included: with hundreds of messages on
    # a machine loaded by parallel tests it took more than ten seconds to answer. It once
    # answered 500 while a worker sent SMS and deleted messages (CI, 4 December 2026; a minute
    # of four threads doing that beside 423 dumps did not bring it again): the emulator's own
    # failure, not the worker's, so it is asked again; a 500 that stays fails the test.
    for attempt in range(1, attempts + 1):
        try:
            data: dict[str, Any] = http_json(
                "GET", f"{endpoint_url}/moto-api/data.json", timeout=60
            )
        except urllib.error.HTTPError as exc:
            exc.close()  # its response's socket, which a later test would see collected
            if exc.code != 500 or attempt == attempts:
                raise
            time.sleep(0.5)
        else:
            return data
    raise AssertionError("unreachable")


def sms_to(endpoint_url: str, number: str) -> list[str]:
    """The text of every SMS the moto server published to ``number``, oldest first."""
    sent = moto_data(endpoint_url).get("sns", {}).get("SMS", [])
    return [sms["message"] for sms in sent if sms["phone_number"] == number]


@dataclasses.dataclass(frozen=True)
class SentEmail:
    source: str
    destinations: dict[str, list[str]]
    subject: str
    body: str  # the HTML part when there is one, else the text


def emails_to(endpoint_url: str, address: str) -> list[SentEmail]:
    """Every SES email (v1 or v2) the moto server sent to ``address`` (To, Cc or Bcc)."""
    sent = moto_data(endpoint_url).get("ses", {}).get("Message", [])
    return [
        SentEmail(m["source"], m["destinations"], m["subject"], m["body"])
        for m in sent
        if any(address in values for values in m["destinations"].values())
    ]


def unique_number() -> str:
    """A valid US number (NANP 202 area, 2xx exchange) unique to the test."""
    return f"+1202{uuid.uuid4().int % 8_000_000 + 2_000_000:07d}"


def verify_sender(endpoint_url: str, address: str) -> None:
    """SES refuses unverified senders (moto too): verify ``address`` with SES v2."""
    client = boto3.client("sesv2", region_name=REGION, endpoint_url=endpoint_url)
    client.create_email_identity(EmailIdentity=address)


def unique_address(name: str = "oncall") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def function_name_of(function: str) -> str:
    """The name in a function name or (qualified) ARN."""
    if ":function:" in function:
        return function.split(":function:", 1)[1].split(":")[0]
    return function


# -- Lambda: moto in a process of its own -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Invocation:
    """One Invoke request a Lambda server received."""

    function: str  # as in the URL: a name or an ARN
    qualifier: str | None
    invocation_type: str
    payload: Any
    region: str = REGION  # the region the request was signed for: the Lambda that took it


class RecordingMoto:
    """A moto server process that records every request it receives (see the module doc)."""

    def __init__(self, process: subprocess.Popen[bytes], endpoint_url: str, workdir: Path):
        self.process = process
        self.endpoint_url = endpoint_url
        self.workdir = workdir

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url)

    def make_queue(self, name: str) -> str:
        """A standard queue with a DLQ (three receives), named uniquely; its URL."""
        sqs = self.client("sqs")
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        dlq = sqs.create_queue(QueueName=f"{unique}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "3"})
        url: str = sqs.create_queue(
            QueueName=unique, Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "30"}
        )["QueueUrl"]
        return url

    def recorded(self) -> list[dict[str, Any]]:
        text = http_text("GET", f"{self.endpoint_url}/moto-api/recorder/download-recording")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def invocations(self, function_name: str | None = None) -> list[Invocation]:
        """The Invoke requests received so far (of one function when named), oldest first."""
        found = []
        for entry in self.recorded():
            url = urllib.parse.urlsplit(entry["url"])
            parts = url.path.split("/")
            if entry["method"] != "POST" or len(parts) != 5 or parts[4] != "invocations":
                continue
            function = urllib.parse.unquote(parts[3])
            if function_name is not None and function_name_of(function) != function_name:
                continue
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            found.append(
                Invocation(
                    function=function,
                    qualifier=urllib.parse.parse_qs(url.query).get("Qualifier", [None])[0],
                    invocation_type=headers.get("x-amz-invocation-type", "RequestResponse"),
                    payload=json.loads(body) if body else None,
                )
            )
        return found

    def sns_publishes(self, number: str) -> list[dict[str, list[str]]]:
        """The parameters of every SNS Publish to ``number`` the server received."""
        found = []
        for entry in self.recorded():
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode()
            params = urllib.parse.parse_qs(body)
            if params.get("Action") == ["Publish"] and params.get("PhoneNumber") == [number]:
                found.append(params)
        return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            self.process.kill()
            self.process.wait(10)


def start_recording_moto() -> RecordingMoto:
    workdir = Path(tempfile.mkdtemp(prefix="ld-moto-"))
    port = free_port()
    env = {
        **os.environ,
        "MOTO_RECORDER_FILEPATH": str(workdir / "recording.jsonl"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            http_text("POST", f"{endpoint}/moto-api/config", {"lambda": {"use_docker": False}})
            break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                output = (workdir / "server.log").read_text(errors="replace")
                reap(process)
                raise RuntimeError(f"moto server did not start: {output[-2000:]}") from None
            time.sleep(0.1)
    http_text("POST", f"{endpoint}/moto-api/recorder/reset-recording")
    http_text("POST", f"{endpoint}/moto-api/recorder/start-recording")
    return RecordingMoto(process, endpoint, workdir)


# The region of a request's SigV4 signature (Credential=KEY/DATE/REGION/SERVICE/aws4_request).
_SIGNED_REGION = re.compile(r"Credential=[^/]+/[0-9]+/([a-z0-9-]+)/")


class LambdaStandIn:
    """The Lambda Invoke API for what moto cannot do: missing functions and throttling.

    Functions in ``functions`` answer 202 with a new request id and are recorded; any other
    name answers 404 ``ResourceNotFoundException``, as Lambda does for a deleted function.
    ``throttle`` answers that many calls with 429 ``TooManyRequestsException`` first (or with
    ``refusal``: status, code and message). ``hang_up``: an Invoke of a function that exists
    is read, then the connection closed unanswered (its outcome in doubt).
    ``elsewhere``: the functions of other regions than REGION. A request is answered as the
    Lambda of the region it was signed for answers it, from that region's functions: an ARN
    of another region is refused as Lambda refuses it (404, "Functions from 'eu-west-1' are
    not reachable in this region ('us-east-1')").
    """

    def __init__(
        self,
        functions: set[str],
        *,
        throttle: int = 0,
        refusal: tuple[int, str, str] = (429, "TooManyRequestsException", "Rate exceeded"),
        elsewhere: dict[str, set[str]] | None = None,
    ) -> None:
        self.functions = functions
        self.elsewhere = elsewhere or {}
        self.throttle = throttle
        self.refusal = refusal
        self.hang_up = False
        self.received: list[Invocation] = []
        self.answered: list[int] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                parts = url.path.split("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                function = urllib.parse.unquote(parts[3]) if len(parts) > 3 else ""
                name = function_name_of(function)
                signed = _SIGNED_REGION.search(self.headers.get("Authorization", ""))
                region = signed[1] if signed else REGION
                named = function.split(":")[3] if function.startswith("arn:") else region
                if stand_in.throttle > 0:
                    stand_in.throttle -= 1
                    self._error(*stand_in.refusal)
                    return
                if named != region:
                    self._error(
                        404,
                        "ResourceNotFoundException",
                        f"Functions from '{named}' are not reachable in this region ('{region}')",
                    )
                    return
                there = stand_in.functions if region == REGION else stand_in.elsewhere.get(region)
                if name not in (there or ()):
                    self._error(
                        404,
                        "ResourceNotFoundException",
                        f"Function not found: arn:aws:lambda:{region}:{ACCOUNT}:function:{name}",
                    )
                    return
                if stand_in.hang_up:
                    self.close_connection = True
                    return
                stand_in.received.append(
                    Invocation(
                        function=function,
                        qualifier=urllib.parse.parse_qs(url.query).get("Qualifier", [None])[0],
                        invocation_type=self.headers.get("X-Amz-Invocation-Type", ""),
                        payload=json.loads(body) if body else None,
                        region=region,
                    )
                )
                stand_in.answered.append(202)
                self.send_response(202)
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _error(self, status: int, code: str, message: str) -> None:
                stand_in.answered.append(status)
                payload = json.dumps({"Type": "User", "message": message}).encode()
                self.send_response(status)
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> LambdaStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- SMTP: a real aiosmtpd server --------------------------------------------------------------


class _Mailbox:
    """The aiosmtpd handler: keeps messages; can answer with an error code instead."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # each message's bytes as the server received them
        self.envelopes: list[tuple[str, list[str]]] = []
        self.data_errors: list[str] = []  # answers to DATA, used up one per message
        self.rcpt_error: str | None = None  # the answer to every RCPT TO when set
        self.rcpt_errors: dict[str, str] = {}  # the answer to RCPT TO of one address
        # The first messages taken, then their reply withheld: the connection closed at once
        # (hang_ups), or the reply delayed that many seconds (reply_delays).
        self.hang_ups = 0
        self.reply_delays: list[float] = []
        # The next DATA commands answered before their 354: the connection closed at once
        # (go_ahead_hang_ups), or the 354 delayed that many seconds (go_ahead_delays).
        self.go_ahead_hang_ups = 0
        self.go_ahead_delays: list[float] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.rcpt_error is not None:
            return self.rcpt_error
        if address in self.rcpt_errors:
            return self.rcpt_errors[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_errors:
            return self.data_errors.pop(0)
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.raw.append(envelope.original_content)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.hang_ups:
            self.hang_ups -= 1
            server.transport.abort()
        elif self.reply_delays:
            await asyncio.sleep(self.reply_delays.pop(0))
        return "250 Message accepted for delivery"


class _Smtpd(SMTP):
    """aiosmtpd's server, with the mailbox's say over what comes before DATA's 354."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        mailbox = self.event_handler
        assert isinstance(mailbox, _Mailbox)
        if mailbox.go_ahead_hang_ups and self.transport is not None:
            mailbox.go_ahead_hang_ups -= 1
            self.transport.abort()
            return
        if mailbox.go_ahead_delays:
            await asyncio.sleep(mailbox.go_ahead_delays.pop(0))
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Smtpd(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """aiosmtpd on 127.0.0.1: ``security`` "none", "starttls" or "tls"; ``login`` requires AUTH.

    ``refusal`` is the reply to a refused login, formatted with the ``login`` and ``password``
    given (a careless server's "535 bad credentials alerts:<password>"); aiosmtpd's own without.
    ``smtputf8``: whether it offers SMTPUTF8 (aiosmtpd's controller does by default).
    """

    def __init__(
        self,
        *,
        security: str = "none",
        login: tuple[str, str] | None = None,
        certificate: tuple[Path, Path] | None = None,
        refusal: str | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.mailbox = _Mailbox()
        self.port = free_port()
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        if security != "none":
            assert certificate is not None
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
            if security == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if login is not None:
            expected = LoginPassword(login[0].encode(), login[1].encode())

            def authenticator(
                server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
            ) -> AuthResult:
                ok = auth_data == expected
                if ok:
                    self.logins.append(login[0])
                said = None
                if not ok and refusal is not None:
                    given = {k: v.decode() for k, v in auth_data._asdict().items()}
                    said = refusal.format(**given)
                return AuthResult(success=ok, handled=False, message=said)

            # aiosmtpd knows TLS from STARTTLS only, and warns about AUTH required without
            # it: elsewhere AUTH is offered (and checked) but not required.
            starttls = security == "starttls"
            kwargs.update(
                authenticator=authenticator, auth_required=starttls, auth_require_tls=starttls
            )
        self.controller = _Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="mail.test",
            enable_SMTPUTF8=smtputf8,
            **kwargs,
        )

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@contextlib.contextmanager
def running(server: SmtpServer) -> Any:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- records and running the worker ------------------------------------------------------------

FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{{name}}"


def failure_record(
    function: str = "orders-api",
    *,
    error_type: str | None = "TimeoutError",
    message: str = "Task timed out after 3.00 seconds",
    condition: str = "RetriesExhausted",
    request_id: str | None = None,
    qualifier: str | None = "$LATEST",
    payload: Any = None,
) -> dict[str, Any]:
    """An asynchronous invocation's failure record, as Lambda sends it to a destination."""
    request_id = request_id or str(uuid.uuid4())
    arn = FUNCTION_ARN.format(name=function) + (f":{qualifier}" if qualifier else "")
    response: dict[str, Any] = {"errorMessage": message}
    if error_type is not None:
        response["errorType"] = error_type
        response["stackTrace"] = [
            '  File "/var/task/app.py", line 42, in handler\n    return process(event)\n',
            f'  File "/var/task/orders.py", line 17, in process\n    raise {error_type}(...)\n',
        ]
    return {
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": arn,
            "condition": condition,
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload if payload is not None else {"orderId": request_id[:8]},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": response,
    }


def success_record(
    function: str = "orders-api", *, request_id: str, qualifier: str | None = "$LATEST"
) -> dict[str, Any]:
    arn = FUNCTION_ARN.format(name=function) + (f":{qualifier}" if qualifier else "")
    return {
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": arn,
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": {"orderId": "o-1"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"ok": True},
    }


def kinesis_failure_record(function: str = "stream-reader") -> dict[str, Any]:
    """A stream event-source mapping's failure record: no request payload to replay."""
    return {
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": FUNCTION_ARN.format(name=function),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": "49601189658422359378836298521827638475320189012309704706",
            "endSequenceNumber": "49601189658422359378836298522902373528957594348623495170",
            "approximateArrivalOfFirstRecord": "2026-11-20T10:00:00.000Z",
            "approximateArrivalOfLastRecord": "2026-11-20T10:00:01.000Z",
            "batchSize": 2,
            "streamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders",
        },
    }


def settings_for_handlers(
    endpoint_url: str,
    *queues: str,
    store: str,
    handlers: dict[str, dict[str, Any]],
    chain: tuple[str, ...],
    routes: list[RouteConfig] | None = None,
    **overrides: Any,
) -> Settings:
    """Worker settings for ``queues``: ``handlers`` tables, and one route running ``chain``
    (or the given ``routes``); fast retries and long polls of a second."""
    values: dict[str, Any] = {
        "queues": list(queues),
        "endpoint_url": endpoint_url,
        "region": REGION,
        "store": store,
        "wait_time": 1,
        "concurrency": 16,
        "retry_base": 1.0,
        "retry_max": 2.0,
        "handler_retry_max_delay": 1.0,
        "shutdown_grace": 5.0,
        "handlers": handlers,
        "routes": routes or [RouteConfig(handlers=chain)],
    }
    values.update(overrides)
    return load_settings(**values)


def send_records(sqs: Any, url: str, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), 10):
        entries = [
            {"Id": str(n), "MessageBody": json.dumps(record)}
            for n, record in enumerate(records[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


async def eventually(check: Any, *, within: float = 60.0, interval: float = 0.2) -> Any:
    """Call ``check`` (sync calls run in a thread) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        if asyncio.iscoroutinefunction(check):
            result = await check()
        else:
            result = await asyncio.to_thread(check)
            if asyncio.iscoroutine(result):  # a lambda around a coroutine function
                result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {check}")
        await asyncio.sleep(interval)


async def drain_until_acked(settings: Settings) -> tuple[Any, int]:
    """The first drain's stats, and the acks of it or of the drains after it, until one acks
    (a message retried comes back to a later drain)."""
    async with Worker(settings) as worker:
        first = await worker.run(once=True)
    acked = first.outcomes["ack"]
    for _ in range(10):
        if acked:
            break
        async with Worker(settings) as worker:
            acked = (await worker.run(once=True)).outcomes["ack"]
    return first, acked


@contextlib.asynccontextmanager
async def running_worker(worker: Any) -> Any:
    """A started worker's ``run()`` in the background; stopped (gracefully) on exit."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        await task


async def digest_ended(store: Store) -> ScheduledJob | None:
    """The one digest job ``store`` holds, once it has ended (done or failed)."""
    (job,) = await store.list_jobs(kind="digest") or [None]
    return job if job is not None and job.state is not JobState.PENDING else None
