"""A TCP proxy in front of the moto server that a test can freeze: connections stay open,
bytes stop flowing both ways, so SQS "stops answering" without refusing anything. Or take
down: every open connection is dropped and each new one is closed as soon as it is accepted,
so SQS is "away" until the test brings it back. Or answer garbage: every request is answered 200
with an HTML page (a captive portal, a misconfigured proxy), until the test brings SQS back."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

# What a captive portal or a misconfigured proxy answers in place of SQS: a 200, with a page.
_PAGE = b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head></html>"


def _answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


class FreezableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.frozen = threading.Event()
        self.down = threading.Event()  # set by take_down(), cleared by bring_back()
        self.garbage = threading.Event()  # set by answer_garbage(), cleared by bring_back()
        self._garbage = _answer(_PAGE)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0.1))
        self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down.is_set():
            writer.close()  # accepted, then dropped before a byte is answered
            return
        if self.garbage.is_set():
            await _answer_garbage(reader, writer, self._garbage)
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            end.close()
            self._writers.discard(end)

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    def _close_all(self) -> None:
        self._drop_all()
        self._loop.stop()

    def take_down(self) -> None:
        """Drop every open connection and each new one until bring_back()."""
        self.down.set()
        self._loop.call_soon_threadsafe(self._drop_all)

    def answer_garbage(self, body: bytes = _PAGE) -> None:
        """Drop every open connection; answer each request 200 with ``body`` (an HTML page)
        until bring_back()."""
        self._garbage = _answer(body)
        self.garbage.set()
        self._loop.call_soon_threadsafe(self._drop_all)

    def bring_back(self) -> None:
        self.down.clear()
        self.garbage.clear()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._hold()
            writer.write(data)
            await writer.drain()
        # One end closed: so is the other (PostgreSQL closes its end after a client's
        # Terminate, and the client waits for that), unless frozen, which holds closes too.
        await self._hold()
        writer.close()

    async def _hold(self) -> None:
        while self.frozen.is_set():  # noqa: ASYNC110 - set from the test's thread
            await asyncio.sleep(0.05)  # hold the bytes: the endpoint stops answering

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        self._thread.start()
        self._ready.wait(10)
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            self.frozen.clear()
            self.down.clear()
            self._loop.call_soon_threadsafe(self._close_all)
            self._thread.join(5)


async def _answer_garbage(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes
) -> None:
    """Read one request (its headers and body) and send ``answer``."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                await reader.readexactly(int(value))
        writer.write(answer)
        await writer.drain()
    writer.close()
