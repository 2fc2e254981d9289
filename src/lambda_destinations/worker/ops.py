"""The ops HTTP server: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``.

Served by aiohttp (already a dependency of aiobotocore) in the worker's own event loop, so a
blocked loop shows as a probe that does not answer. The answers come from the worker:

- ``/healthz``: 200 while every long-lived task is alive, every poller has finished a receive
  or a backoff recently, and no handler runs past ``handler_timeout``; otherwise 503 with a JSON
  body naming what is wrong.
- ``/readyz``: 200 once started (store open and migrated, queues described) and while the
  store and SQS answer; 503 while starting, while either is lost (the store's own error, as
  its warning says it), and once shutdown began.
- ``/metrics``: Prometheus text format, from :mod:`prometheus_client`.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from lambda_destinations._serving import AppRunner
from lambda_destinations._urls import listen_problem
from lambda_destinations.errors import ConfigError
from lambda_destinations.worker.metrics import CONTENT_TYPE

log = structlog.get_logger("lambda_destinations.worker")

# problems: an empty list means healthy (or ready).
Probe = Callable[[], list[str]]
WATCH_INTERVAL = 1.0


class OpsServer:
    """Binds at :meth:`start`; :meth:`watch` is its supervised task; :meth:`close` ends it."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        health: Probe,
        readiness: Probe,
        metrics: Callable[[], bytes],
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
            too_long="the request is too long: /healthz, /readyz and /metrics need no query",
        )
        self._started = False

    @property
    def addresses(self) -> list[Any]:
        return list(self._runner.addresses)

    async def start(self, *, any_port_if_taken: bool = False) -> None:
        """Bind, or ConfigError with one line naming the setting to change.

        ``any_port_if_taken``: when the port is in use, take a free one instead (``dev``, where
        the ops server is a convenience and the port was not chosen).
        """
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
            if self._started and not self._runner.addresses:
                raise RuntimeError(f"the ops server on {self.host}:{self.port} stopped listening")

    async def close(self) -> None:
        self._started = False
        await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._answer(self._health(), "alive")

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._answer(self._readiness(), "ready")

    async def _render_metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    @staticmethod
    def _answer(problems: list[str], good: str) -> web.Response:
        if problems:
            return web.json_response({"status": "failing", "problems": problems}, status=503)
        return web.json_response({"status": good})
