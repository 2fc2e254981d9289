"""A moto server behind a proxy that checks accounts as AWS does, where moto does not.

moto keeps each account's resources apart (the account of a request is its access key's: keys
from STS AssumeRole are the role's account), but its Lambda without Docker invokes any ARN it
is given, whoever signs, and its STS lets anyone assume any role. AWS refuses both: an Invoke
of a function in another account than the caller's, unless the function's resource-based
policy allows the caller (AccessDeniedException), and an AssumeRole whose role does not trust
the caller (AccessDenied). This proxy answers those two refusals itself, as AWS words them, and
passes every other request to moto unchanged (but a GetCallerIdentity it is told to answer as
an emulator would, ``said_account``). It is the one stand-in of these tests: for the
cross-account checks of IAM, which no local server makes.

moto also serves every SQS call from the caller's account, whatever account the queue's URL
names; AWS serves it from the queue's (its owner lets others in by its queue policy). So the
proxy tells moto the account a call's ``QueueUrl`` (or ``QueueOwnerAWSAccountId``) names, and
one worker reaches queues of several accounts, as it does on AWS: :meth:`sqs_of` makes them.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
# The header moto takes a call's account from, before the access key's.
_MOTO_ACCOUNT = "x-moto-account-id"
_KEY = re.compile(r"Credential=([A-Z0-9]+)/")
_FUNCTION_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:([0-9]{12}):function:")


@dataclass
class AccountsEndpoint:
    """The proxy's URL, what it let through and what it refused."""

    moto_url: str
    # Role ARNs whose trust policy names nobody: AssumeRole of them is refused.
    untrusting: set[str] = field(default_factory=set)
    # Role ARNs whose AssumeRole the proxy reads and answers by closing the connection (STS
    # cut off mid-call: the request was sent, no answer came).
    cut_off: set[str] = field(default_factory=set)
    # (function as Invoke named it, the account of the keys that signed it), for each Invoke
    # passed on to moto.
    invoked: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)
    # account -> the account GetCallerIdentity says for keys of that account: what an
    # emulator that keeps every role in one account answers (AWS never does).
    said_account: dict[str, str] = field(default_factory=dict)
    url: str = ""
    _accounts: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint_url(self) -> str:
        return self.url

    def account_of(self, key: str) -> str:
        """The account moto gives the access key ``key`` (its signature is not checked)."""
        if key not in self._accounts:
            sts = boto3.client(
                "sts",
                region_name=REGION,
                endpoint_url=self.moto_url,
                aws_access_key_id=key,
                aws_secret_access_key="unchecked",
            )
            self._accounts[key] = sts.get_caller_identity()["Account"]
        return self._accounts[key]

    def sqs_of(self, account: str) -> Any:
        """A boto3 SQS client through the proxy whose calls moto serves from ``account``: one
        to create that account's queues with (their URLs name it)."""
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=self.url)

        def in_account(request: Any, **_kwargs: Any) -> None:
            request.headers[_MOTO_ACCOUNT] = account

        sqs.meta.events.register("before-sign.sqs.*", in_account)
        return sqs

    @contextlib.contextmanager
    def running(self) -> Iterator[AccountsEndpoint]:
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = urllib.parse.parse_qs(body.decode(errors="replace"))
                if form.get("Action") == ["AssumeRole"] and form.get("RoleArn", [""])[0] in (
                    endpoint.cut_off
                ):
                    self.close_connection = True
                    return
                refusal = endpoint._refusal(self.path, self.headers.get("Authorization", ""), body)
                if refusal is None:
                    status, headers, body = endpoint._forward(self, body)
                else:
                    status, headers, body = refusal
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    def _refusal(
        self, path: str, authorization: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        found = _KEY.search(authorization)
        caller = self.account_of(found[1]) if found else "123456789012"
        parts = urllib.parse.urlsplit(path).path.split("/")
        if len(parts) == 5 and parts[2] == "functions" and parts[4] == "invocations":
            function = urllib.parse.unquote(parts[3])
            named = _FUNCTION_ACCOUNT.match(function)
            if named is not None and named[1] != caller:
                self.refused.append((function, caller))
                message = (
                    f"User: arn:aws:sts::{caller}:assumed-role/worker/session is not authorized "
                    f"to perform: lambda:InvokeFunction on resource: {function} because no "
                    "resource-based policy allows the lambda:InvokeFunction action"
                )
                payload = json.dumps({"Type": "User", "Message": message}).encode()
                return (
                    403,
                    [
                        ("x-amzn-ErrorType", "AccessDeniedException"),
                        ("Content-Type", "application/json"),
                    ],
                    payload,
                )
            self.invoked.append((function, caller))
            return None
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        if form.get("Action") == ["GetCallerIdentity"] and caller in self.said_account:
            said = self.said_account[caller]
            xml = (
                '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<GetCallerIdentityResult><Arn>arn:aws:sts::{said}:assumed-role/r/s</Arn>"
                f"<UserId>AROA:s</UserId><Account>{said}</Account></GetCallerIdentityResult>"
                "<ResponseMetadata><RequestId>0</RequestId></ResponseMetadata>"
                "</GetCallerIdentityResponse>"
            )
            return 200, [("Content-Type", "text/xml")], xml.encode()
        if form.get("Action") == ["AssumeRole"]:
            role = form.get("RoleArn", [""])[0]
            if role in self.untrusting:
                message = (
                    f"User: arn:aws:sts::{caller}:assumed-role/worker/session is not authorized "
                    f"to perform: sts:AssumeRole on resource: {role}"
                )
                xml = (
                    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                    f"<Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message>"
                    "</Error><RequestId>0</RequestId></ErrorResponse>"
                )
                return 403, [("Content-Type", "text/xml")], xml.encode()
            self.assumed.append(role)
        return None

    def _forward(
        self, request: http.server.BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        # http.client, not urllib: urllib gives a body without a Content-Type a form's, and
        # moto then reads an Invoke's payload as a Query call's parameters.
        target = urllib.parse.urlsplit(self.moto_url)
        connection = http.client.HTTPConnection(target.netloc, timeout=30)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            if owner := _queue_owner(request.headers.get("X-Amz-Target", ""), body):
                headers[_MOTO_ACCOUNT] = owner
            connection.request(request.command, request.path, body=body, headers=headers)
            response = connection.getresponse()
            status, answer, got = response.status, response.read(), response.getheaders()
        finally:
            connection.close()
        dropped = ("content-length", "transfer-encoding", "connection", "server", "date")
        return status, [(k, v) for k, v in got if k.lower() not in dropped], answer


def _queue_owner(target: str, body: bytes) -> str | None:
    """The account an SQS call's queue is of, as its URL (or QueueOwnerAWSAccountId) names
    it; None for any other call, or one that names no account (CreateQueue: the caller's)."""
    if not target.startswith("AmazonSQS."):
        return None
    asked = json.loads(body or b"{}")
    if owner := asked.get("QueueOwnerAWSAccountId"):
        return str(owner)
    path = urllib.parse.urlsplit(str(asked.get("QueueUrl", ""))).path.split("/")
    return path[1] if len(path) == 3 and re.fullmatch(r"[0-9]{12}", path[1]) else None
