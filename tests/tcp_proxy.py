"""A TCP proxy the test controls, in front of the moto server: it passes everything through,
except that (after the first ``passes`` requests containing ``needle``, which pass whole) for
the next ``cuts`` requests containing ``needle`` it forwards the request and then closes the
connection before the answer comes back, so the caller cannot know the outcome; or, for the
next ``holds`` such requests, forwards the request and holds the answer back until the proxy
stops, so the caller waits until it gives up; or, for the next ``truncates``, passes on the
first part of the answer (its head, and the first bytes of its body) and then closes the
connection, as a reset in the middle of a download does.

With ``http`` it reads each request whole (HTTP/1.1 with a Content-Length, as botocore sends),
keeps the time of each one containing ``needle`` (``seen``: how often the caller tries), and
answers the next ``refusals`` of them itself with ``refusal`` (an AWS error, from
:func:`aws_error`), never sending them on: what moto cannot do, SQS's ``OverLimit`` or SES's
``Throttling``, as AWS answers it; or, with ``answer`` set, gives the answer it returns for such
a request, when it returns one: what AWS says to what moto takes (SQS's refusal of a batch
entry too long for the queue). It also keeps the access key that signed each request
(``keys``, from its Authorization header's ``Credential=``): moto checks no signature, so this
is how a test sees which credentials the worker used. And it keeps each request whole, in the
order it came (``requests``): how a test counts the calls a command made."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Literal

Protocol = Literal["json", "query", "rest-json", "rest-xml"]
_SIGNED_BY = re.compile(rb"Credential=([A-Za-z0-9]+)/")
_EXPECT_CONTINUE = re.compile(rb"(?im)^expect:[ \t]*100-continue\r\n")


def aws_error(status: int, code: str, message: str, protocol: Protocol) -> bytes:
    """An AWS error answer, whole, as each protocol has it: ``json`` as SQS (its JSON shape and
    the Query code botocore reads from ``x-amzn-query-error``), ``query`` as SNS (XML),
    ``rest-json`` as SES v2 and Lambda (the code in ``x-amzn-ErrorType``), ``rest-xml`` as S3."""
    headers = {"x-amzn-RequestId": "00000000-0000-4000-8000-000000000000"}
    if protocol == "query":
        body = (
            '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
            f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
        ).encode()
        headers["Content-Type"] = "text/xml"
    elif protocol == "rest-xml":  # S3
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>0000000000000000</RequestId></Error>"
        ).encode()
        headers["Content-Type"] = "application/xml"
    elif protocol == "json":
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-query-error"] = f"{code};Sender"
    else:
        body = json.dumps({"message": message}).encode()
        headers["Content-Type"] = "application/json"
        headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/"
    headers["Content-Length"] = str(len(body))
    lines = [f"HTTP/1.1 {status} Error", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def kms_refusal() -> bytes:
    """SQS's refusal (its JSON protocol) of a send to a queue whose KMS key the caller may not
    use."""
    return aws_error(
        400,
        "KMS.AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/erin is not authorized to perform: "
        "kms:GenerateDataKey on this resource",
        "json",
    )


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Pass ``data`` on a kilobyte at a time, as a slow or busy connection delivers it."""
    for start in range(0, len(data), 1024):
        writer.write(data[start : start + 1024])
        await writer.drain()
        await asyncio.sleep(0.002)


async def _cut_mid_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> None:
    """Pass on an answer's head and the first kilobyte of its body, then no more."""
    while (end := data.find(b"\r\n\r\n")) < 0 or len(data) < end + 4 + 1024:
        more = await reader.read(65536)
        if not more:
            break
        data += more
    writer.write(data[: data.find(b"\r\n\r\n") + 4 + 1024])
    await writer.drain()


class AnswerCutter:
    def __init__(self, upstream: str, needle: bytes, *, http: bool = False) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port.rstrip("/")))
        self.needle = needle
        self.http = http  # requests read whole: they can be counted and refused
        self.passes = 0  # requests with the needle still to pass whole before any is cut or held
        self.cuts = 0  # answers still to cut
        self.cut = 0  # answers cut so far
        self.holds = 0  # answers still to hold back
        self.held = 0  # answers held back so far
        self.refusals = 0  # (http) requests with the needle still to answer with `refusal`
        self.refusal = b""  # that answer, whole (aws_error)
        self.refused = 0  # requests answered here (`refusal`, `answer`) so far
        # (http) the answer, whole, to give a request with the needle instead of sending it on;
        # None: send it on
        self.answer: Callable[[bytes], bytes | None] | None = None
        self.seen: list[float] = []  # (http) loop time of each request with the needle
        self.keys: list[tuple[str, bool]] = []  # (http) each request's access key, needle in it
        self.requests: list[bytes] = []  # (http) each request, whole, refused ones too
        self.holding = asyncio.Event()  # set once an answer is held back
        self.trickles = 0  # answers still to pass on a kilobyte at a time, with pauses between
        self.truncates = 0  # answers still to cut mid-body: their first part passes, then no more
        self._stopped = asyncio.Event()

    async def _request(
        self, reader: asyncio.StreamReader, caller: asyncio.StreamWriter | None = None
    ) -> bytes:
        """(http) The next request on the connection, whole; b"" once the caller closed it."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if caller is not None and _EXPECT_CONTINUE.search(head):
            # botocore sends a PutObject's body once told to go on: said here, as a proxy may,
            # and not asked of the service (its own 100 would come after)
            head = _EXPECT_CONTINUE.sub(b"", head)
            caller.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await caller.drain()
        return head + await reader.readexactly(length)

    def _note(self, request: bytes) -> None:
        """(http) Keep a request, and the access key that signed it."""
        self.requests.append(request)
        if signed := _SIGNED_BY.search(request):
            self.keys.append((signed[1].decode(), self.needle in request))

    def _own_answer(self, request: bytes) -> bytes | None:
        """(http) The answer to give ``request`` here rather than send it on; None: send it."""
        if self.answer is not None and (answer := self.answer(request)) is not None:
            return answer
        if self.refusals > 0:
            self.refusals -= 1
            return self.refusal
        return None

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        doomed: list[bool],
        held: list[bool],
        *,
        answers: bool,
        caller: asyncio.StreamWriter | None = None,
    ) -> None:
        try:
            while data := await (
                self._request(reader, caller) if self.http and not answers else reader.read(65536)
            ):
                if self.http and not answers:
                    self._note(data)
                if self.http and not answers and self.needle in data:
                    self.seen.append(asyncio.get_running_loop().time())
                    if caller is not None and (answer := self._own_answer(data)) is not None:
                        self.refused += 1
                        caller.write(answer)  # AWS's answer; the service never sees it
                        await caller.drain()
                        continue
                if not answers and self.passes > 0 and self.needle in data:
                    self.passes -= 1
                elif not answers and self.cuts > 0 and self.needle in data:
                    self.cuts -= 1
                    doomed[0] = True
                elif not answers and self.holds > 0 and self.needle in data:
                    self.holds -= 1
                    held[0] = True
                elif not answers and self.trickles > 0 and self.needle in data:
                    self.trickles -= 1
                    held.append(True)  # the answer comes a kilobyte at a time
                elif not answers and self.truncates > 0 and self.needle in data:
                    self.truncates -= 1
                    doomed.append(True)  # the answer's first part comes, then the connection ends
                if answers and doomed[0]:
                    self.cut += 1
                    return  # the request reached the service; its answer is lost
                if answers and len(doomed) > 1:
                    self.cut += 1
                    await _cut_mid_body(reader, writer, data)
                    return
                if answers and held[0]:
                    self.held += 1
                    self.holding.set()
                    await self._stopped.wait()  # the request reached the service; no answer
                    return
                if answers and len(held) > 1:
                    await _trickle(writer, data)
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        doomed, held = [False], [False]
        await asyncio.gather(
            self._pipe(reader, up_writer, doomed, held, answers=False, caller=writer),
            self._pipe(up_reader, writer, doomed, held, answers=True),
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            self._stopped.set()
            server.close()
