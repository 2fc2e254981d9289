"""aiohttp's runner for our HTTP servers (the console, the ops server, dev's endpoint).

A request aiohttp's parser refuses never reaches the application (its middlewares, its routes):
aiohttp answers it with the parser's own text (for a request line over 8190 bytes, the whole
line back) and logs a traceback. aiohttp offers no setting for that answer, so our runner makes
the same server with a request handler of its own, which answers such a request with one short
400 that says what to change, and logs one line; so is a body that does not decode, which
aiohttp meets after the answer.

aiohttp also keeps every connection a client opens, idle or half a request, for up to an hour,
with no limit on their number: a few hundred idle sockets (a slowloris, a careless network)
take the process's file descriptors, and the health probes beside them, and the worker's own
connections, fail. Our server keeps at most ``MAX_CONNECTIONS``: one more closes the oldest
connection that is idle (no request being answered), so a new one, a probe's, is served.

A request refused before its body was read (the console's 403 for another site, its 413 by
Content-Length) is answered with ``Connection: close`` and the connection's end right after
the answer: aiohttp kept the connection and read the rest of the body, to throw it away, for
up to 10 s, a large upload's worth of reading for a request already refused. The server still
reads what comes for up to ``LINGER_SECONDS`` before it closes the socket: closing it with the
client's bytes unread makes the kernel reset the connection, and the client may lose the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong

log = structlog.get_logger("lambda_destinations.http")

# Connections each server keeps open at once before it closes idle ones: more than the
# console's waits (100) and a few browsers, far fewer than a process's 1,024 file descriptors.
MAX_CONNECTIONS = 128
# How long a connection answered before its request's body came whole still reads it (to
# throw it away) before it closes: aiohttp's 10 s held it for a slow upload already refused.
LINGER_SECONDS = 2.0


class _RequestHandler(web.RequestHandler):
    """aiohttp's connection handler, but a request it cannot parse is one line, not a trace."""

    def __init__(self, manager: web.Server, *, server: str, too_long: str, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server_name = server
        self._too_long = too_long

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, BadHttpMessage):
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            problem = self._too_long
        else:  # a header aiohttp cannot read, or no HTTP at all (a TLS hello on a plain port)
            problem = f"the request is not HTTP this server reads ({type(exc).__name__})"
        # Not HTTP at all is what port scanners send: aiohttp too keeps that out of the log.
        say = log.debug if isinstance(exc, BadHttpMethod) else log.warning
        say("request refused", server=self._server_name, client=request.remote, problem=problem)
        response = web.Response(status=400, text=f"{problem}\n")
        response.force_close()
        return response

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        # A refusal while the body still comes (a 403, a 413 by Content-Length): say the
        # connection closes, and end it after the answer (the client sees the end at once).
        # A body that failed to decode is not read on: aiohttp closes at once, after its line.
        body = request.content
        refused = resp.status >= 400 and not body.is_eof() and body.exception() is None
        if refused and not resp.prepared:
            resp.force_close()
        answered = await super().finish_response(request, resp, start_time)
        transport = self.transport
        if refused and not resp.keep_alive and transport is not None and transport.can_write_eof():
            transport.write_eof()
        return answered

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A body that does not decode (Content-Encoding: gzip on bytes that are not) fails where
        # aiohttp reads what the handler left of it, after the answer: the request's fault, one
        # line; aiohttp closes the connection either way.
        exc = kw.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            problem = f"the body does not decode: {str(exc).splitlines()[-1].strip()}"
            log.warning("request refused", server=self._server_name, problem=problem)
            return
        super().log_exception(*args, **kw)


def _idle(handler: web.RequestHandler) -> bool:
    """Whether a connection answers no request and holds none read whole: it waits for one, or
    for the rest of one (aiohttp's own fields: it has no public word for this)."""
    # Read with defaults that mean "busy": an aiohttp without these fields closes no connection
    # for a new one (as before this limit), rather than failing every connection made.
    return getattr(handler, "_current_request", True) is None and not getattr(
        handler, "_messages", True
    )


class _Server(web.Server):
    def __init__(self, made: web.Server, *, server: str, too_long: str) -> None:
        super().__init__(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **made._kwargs,  # what the runner gave aiohttp's own server
        )
        self._server_name = server
        self._too_long = too_long
        self._crowded = False

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        # In the order they came; one closed stays listed until its task ends.
        connections = getattr(self, "_connections", {})  # aiohttp's own list
        still_open = [h for h in connections if h.transport is not None]
        crowded = len(still_open) > MAX_CONNECTIONS
        if crowded and not self._crowded:  # once until it is over, not once a connection
            log.warning(
                "too many connections",
                server=self._server_name,
                problem=f"over {MAX_CONNECTIONS} connections are open: the oldest idle ones "
                "are closed for new ones",
            )
        self._crowded = crowded
        if crowded:
            # The longest-open one that answers no request, so that the one just made is served.
            oldest = next((h for h in still_open if h is not handler and _idle(h)), None)
            if oldest is not None:
                oldest.force_close()

    def __call__(self) -> web.RequestHandler:
        return _RequestHandler(
            self,
            loop=self._loop,
            server=self._server_name,
            too_long=self._too_long,
            **self._kwargs,
        )


class AppRunner(web.AppRunner):
    """``web.AppRunner`` without an access log, that gives open requests half a second at
    shutdown, and whose server answers a request its parser refuses with one short 400:
    ``too_long`` for a request line or header over 8190 bytes, and which closes the oldest idle
    connection for a new one past ``MAX_CONNECTIONS``. ``server`` names the server in the log
    line."""

    def __init__(self, app: web.Application, *, server: str, too_long: str, **kwargs: Any) -> None:
        # At shutdown, requests still open (a result wait of up to a minute, a long poll) get
        # half a second, not aiohttp's 60 s: `dev` and `console` stop at once on Ctrl-C.
        kwargs.setdefault("shutdown_timeout", 0.5)
        kwargs.setdefault("lingering_time", LINGER_SECONDS)
        super().__init__(app, access_log=None, **kwargs)
        self._server_name = server
        self._too_long = too_long

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(made, server=self._server_name, too_long=self._too_long)
