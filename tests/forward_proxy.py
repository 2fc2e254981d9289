"""A forward proxy the tests run, as companies put in front of a VPC's way out: HTTP requests in
absolute form (``POST http://host/path``) are sent on, ``CONNECT host:port`` opens a tunnel (for
https://). It keeps what went through it (``seen``: each request's target), can ask for
credentials (``credentials``: ``user:password``, else 407 with ``Proxy-Authenticate``) and can
refuse every request (``refuse``: a status, as a policy's 403), so a test can tell whether a
call took the proxy, went around it, or was refused by it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self, *, credentials: str | None = None, refuse: int | None = None) -> None:
        self.credentials = credentials
        self.refuse = refuse
        self.seen: list[str] = []  # "CONNECT host:port" or "POST http://host:port/path"
        self.authorizations: list[str | None] = []  # each request's Proxy-Authorization
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = dict(line.split(":", 1) for line in header_lines if ":" in line)  # names as sent
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        self.seen.append(f"{method} {target}")
        self.authorizations.append(headers.get("proxy-authorization"))
        if (refusal := self._refusal(headers)) is not None:
            writer.write(refusal)
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _pipe_both(reader, writer, *upstream)
            return
        await self._forward(method, target, header_lines, headers, reader, writer)

    def _refusal(self, headers: dict[str, str]) -> bytes | None:
        if self.refuse is not None:
            return _answer(self.refuse, "Forbidden", b"<html><title>Access Denied</title></html>")
        if self.credentials is None:
            return None
        expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
        if headers.get("proxy-authorization") == expected:
            return None
        return _answer(
            407,
            "Proxy Authentication Required",
            b"<html><title>407 Proxy Authentication Required</title></html>",
            extra='Proxy-Authenticate: Basic realm="proxy"\r\n',
        )

    async def _forward(
        self,
        method: str,
        target: str,
        header_lines: list[str],
        headers: dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        parts = urlsplit(target)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        kept = [
            line
            for line in header_lines
            if line and not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
        ]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream_reader, upstream_writer = await asyncio.open_connection(
            parts.hostname, parts.port or 80
        )
        lines = [f"{method} {path or '/'} HTTP/1.1", *kept, "Connection: close", "", ""]
        upstream_writer.write("\r\n".join(lines).encode("latin-1") + body)
        await upstream_writer.drain()
        writer.write(await upstream_reader.read())  # the answer, to the close
        await writer.drain()
        upstream_writer.close()


def _answer(status: int, phrase: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n{extra}Content-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()

    try:
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
    finally:
        upstream_writer.close()
