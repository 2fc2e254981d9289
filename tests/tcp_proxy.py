"""A TCP proxy the test controls, in front of the moto server: it passes everything through,
except that (after the first ``passes`` requests containing ``needle``, which pass whole) for
the next ``cuts`` requests containing ``needle`` it forwards the request and then closes the
connection before the answer comes back, so the caller cannot know the outcome; or, for the
next ``holds`` such requests, forwards the request and holds the answer back until the proxy
stops, so the caller waits until it gives up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class AnswerCutter:
    def __init__(self, upstream: str, needle: bytes) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port.rstrip("/")))
        self.needle = needle
        self.passes = 0  # requests with the needle still to pass whole before any is cut or held
        self.cuts = 0  # answers still to cut
        self.cut = 0  # answers cut so far
        self.holds = 0  # answers still to hold back
        self.held = 0  # answers held back so far
        self.holding = asyncio.Event()  # set once an answer is held back
        self._stopped = asyncio.Event()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        doomed: list[bool],
        held: list[bool],
        *,
        answers: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not answers and self.passes > 0 and self.needle in data:
                    self.passes -= 1
                elif not answers and self.cuts > 0 and self.needle in data:
                    self.cuts -= 1
                    doomed[0] = True
                elif not answers and self.holds > 0 and self.needle in data:
                    self.holds -= 1
                    held[0] = True
                if answers and doomed[0]:
                    self.cut += 1
                    return  # the request reached the service; its answer is lost
                if answers and held[0]:
                    self.held += 1
                    self.holding.set()
                    await self._stopped.wait()  # the request reached the service; no answer
                    return
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
            self._pipe(reader, up_writer, doomed, held, answers=False),
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
