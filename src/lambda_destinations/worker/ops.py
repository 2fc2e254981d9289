"""The ops HTTP server: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

Served by aiohttp (already a dependency of aiobotocore) on an event loop of its own, in a
thread of its own: the worker's loop may be busy or blocked (a handler calling ``time.sleep``,
a long template), and a probe that waited behind it timed out, restarting a worker that was
working through a backlog. The answers come from the worker's state, read from this thread:

- ``/healthz``: 200 while every long-lived task is alive, the worker's loop has not been
  blocked for over 5 s (``LOOP_BLOCKED``), every poller has finished a receive or a backoff
  recently, and no handler runs past ``handler_timeout``; otherwise 503 with a JSON body naming
  what is wrong (a blocked loop: the handler and the line holding it).
- ``/readyz``: 200 once started (store open and migrated, queues described) and while the
  store and SQS answer; 503 while starting, while either is lost (the store's own error, as
  its warning says it), once shutdown began, and once a ``--once`` job's queues answered empty.
- ``/metrics``: from :mod:`prometheus_client` (thread-safe): OpenMetrics to a request that
  asks for it (Prometheus does), else the text format; gzipped when the request accepts it.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import re
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiohttp import web

from lambda_destinations._serving import AppRunner
from lambda_destinations._urls import listen_problem
from lambda_destinations.errors import ConfigError

log = structlog.get_logger("lambda_destinations.worker")

# problems: an empty list means healthy (or ready).
Probe = Callable[[], list[str]]
# The page and its Content-Type, in the format a request's Accept header asks for.
Render = Callable[[str], tuple[bytes, str]]
WATCH_INTERVAL = 1.0
# RFC 9110 12.4.2: a weight is 0 to 1 with at most three decimals.
_QVALUE = re.compile(r"q=(0(\.[0-9]{0,3})?|1(\.0{0,3})?)", re.IGNORECASE)


def _weight(params: list[str]) -> float:
    """The q of one Accept-Encoding element's parameters: 1 when none is given, 0 (not
    acceptable) when it is not a weight, as a header we cannot read promises nothing."""
    for param in params:
        name = param.split("=", 1)[0].strip().lower()
        if name == "q":
            found = _QVALUE.fullmatch(param.replace(" ", ""))
            return float(found.group(1)) if found else 0.0
    return 1.0


def _gzip_wanted(accept_encoding: str) -> bool:
    """Whether a response may be gzipped for this Accept-Encoding (RFC 9110 12.5.3).

    gzip (or its alias x-gzip) must be acceptable, by name or by ``*``, with a weight over 0:
    ``q=0`` says "not acceptable" (prometheus_client's ``gzip_accepted`` read only the name,
    gzipping for ``gzip;q=0``). A request that weighs identity above gzip gets identity; no
    header, or one naming neither, gets identity, which is always acceptable.
    """
    weights: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, *params = element.split(";")
        coding = coding.strip().lower()
        if coding:
            weights[coding] = _weight(params)
    star = weights.get("*", 0.0)
    gzip_q = weights.get("gzip", weights.get("x-gzip", star))
    return gzip_q > 0 and gzip_q >= weights.get("identity", 0.0)


class OpsServer:
    """Binds at :meth:`start`; :meth:`watch` is its supervised task; :meth:`close` ends it.

    The server runs on a loop of its own in a thread of its own, from :meth:`start` to
    :meth:`close`; ``health``, ``readiness`` and ``metrics`` are called in that thread.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        health: Probe,
        readiness: Probe,
        metrics: Render,
    ) -> None:
        self.host = host
        self.port = port
        self._health = health
        self._readiness = readiness
        self._metrics = metrics
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._render_metrics)
        # Probe requests are answered at once; a short shutdown keeps the one deadline.
        self._runner = AppRunner(
            app,
            server="ops",
            too_long=(
                "the request is too long: a request line or header over 8190 bytes "
                "(/healthz, /readyz and /metrics need no query)"
            ),
        )
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def addresses(self) -> list[Any]:
        return list(self._runner.addresses)

    async def start(self, *, any_port_if_taken: bool = False) -> None:
        """Bind, or ConfigError with one line naming the setting to change.

        ``any_port_if_taken``: when the port is in use, take a free one instead (``dev``, where
        the ops server is a convenience and the port was not chosen).
        """
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ops-server", daemon=True
        )
        self._thread.start()
        try:
            await self._in_thread(self._start(any_port_if_taken))
        except BaseException:
            await self._end_thread()
            raise

    async def _in_thread(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the server's loop, waiting for it on this one."""
        assert self._loop is not None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _end_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()

    async def _start(self, any_port_if_taken: bool) -> None:
        await self._runner.setup()
        try:
            await self._bind(self.port)
        except OSError as exc:
            if any_port_if_taken and exc.errno == errno.EADDRINUSE:
                await self._bind(0)
                self.port = self._runner.addresses[0][1]
                log.info("the ops port was taken; using another", port=self.port)
                self._started = True
                return
            await self._runner.cleanup()
            what, part = listen_problem(self.host, self.port, exc)
            fix = (
                "LAMBDA_DESTINATIONS_OPS_PORT to a free port (0 turns the ops server off)"
                if part == "port"
                else "LAMBDA_DESTINATIONS_OPS_HOST to an address of this machine (0.0.0.0: all)"
            )
            raise ConfigError(f"ops server: {what}: set {fix}") from None
        self._started = True

    async def _bind(self, port: int) -> None:
        site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
        await site.start()
        log.info("ops server listening", host=self.host, port=self._runner.addresses[-1][1])

    async def watch(self) -> None:
        """Runs while the server is up; raises once it no longer listens."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            thread = self._thread
            if self._started and (
                not self._runner.addresses or not thread or not thread.is_alive()
            ):
                raise RuntimeError(f"the ops server on {self.host}:{self.port} stopped listening")

    async def close(self) -> None:
        self._started = False
        if self._loop is not None:
            try:
                await self._in_thread(self._runner.cleanup())
            finally:
                await self._end_thread()

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._answer(self._health(), "alive")

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._answer(self._readiness(), "ready")

    async def _render_metrics(self, request: web.Request) -> web.Response:
        # As prometheus_client's own servers answer (exposition.make_wsgi_app).
        body, content_type = self._metrics(request.headers.get("Accept", ""))
        headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if _gzip_wanted(request.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    @staticmethod
    def _answer(problems: list[str], good: str) -> web.Response:
        if problems:
            return web.json_response({"status": "failing", "problems": problems}, status=503)
        return web.json_response({"status": good})
