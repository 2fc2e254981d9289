"""JSON for scripts and for the pages' own script. Every route here needs the console's token
(``Authorization: Bearer <token>``, or a signed-in session): call :func:`require_token` first.

To add an endpoint, add it to ``routes`` here (or to a module of its own listed in
``app.ROUTE_MODULES``) and reach the store and AWS through ``request.app[CONSOLE]``.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from lambda_destinations._request_ids import may_arrive, stored_id
from lambda_destinations.console.app import CONSOLE, json_text, require_token
from lambda_destinations.errors import StoreUnavailable
from lambda_destinations.operations.results import (
    InvocationResult,
    Results,
    ResultTimeout,
    unknown_result,
)

routes = web.RouteTableDef()


@routes.get("/api/jobs/{job_id}")
async def job(request: web.Request) -> web.Response:
    """A job's progress: done of total, counts by outcome, state."""
    require_token(request)
    found = request.app[CONSOLE].jobs.get(request.match_info["job_id"])
    if found is None:
        raise web.HTTPNotFound(
            text=json_text({"error": "no such job"}), content_type="application/json"
        )
    return web.json_response(found.as_dict(), dumps=json_text)


# A wait longer than this would hold a request (and proxies' timeouts) for too long; clients
# that need longer ask again.
MAX_WAIT = 60.0
# Waits held at once by this process: each holds a request, and reads its row before and after
# (on SQLite one query a tick looks for all of them meanwhile). Past this, 503 with Retry-After.
MAX_WAITS = 100
# How often a wait looks whether its client is still there: one that left ends its wait.
CLIENT_CHECK = 0.5
_waits = 0  # waits held now, in this process
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


# Any segment: aiohttp's default pattern takes no brace, and an id in braces (a GUID as some
# languages print it) is an id of no record, not an address of no API (another JSON shape).
@routes.get("/api/invocations/{request_id:[^/]+}")
async def invocation(request: web.Request) -> web.Response:
    """How an asynchronous invocation ended: the JSON of ``result --json`` (README, "The
    JSON"). 404 with ``"state": "unknown"`` while the store has no record of it; ``?wait=S``
    (at most 60) waits that long for the record first, as ``result --wait`` does: for a
    request id (or its store key), not for an id no record can come under."""
    require_token(request)
    request_id = stored_id(request.match_info["request_id"])
    wait = _wait_seconds(request.query.get("wait"))
    if not request_id:  # spaces alone (%20): Results refuses no id at all; none has a record
        return web.json_response(unknown_result(request_id), status=404, dumps=json_text)
    results = Results(request.app[CONSOLE].store)
    try:
        if wait and may_arrive(request_id):  # no record comes under another id: read it now
            outcome: InvocationResult | None = await _held_wait(request, results, request_id, wait)
        else:
            outcome = await results.get(request_id)
    except ResultTimeout:
        outcome = None
    except StoreUnavailable as exc:
        return web.json_response({"error": str(exc)}, status=503, dumps=json_text)
    if outcome is None:
        return web.json_response(unknown_result(request_id), status=404, dumps=json_text)
    return web.json_response(outcome.as_dict(), dumps=json_text)


async def _held_wait(
    request: web.Request, results: Results, request_id: str, seconds: float
) -> InvocationResult:
    """``results.wait``, while fewer than MAX_WAITS are held and as long as the client stays:
    aiohttp does not cancel a handler whose client left, and a wait would read on for nobody."""
    global _waits
    if _waits >= MAX_WAITS:
        raise web.HTTPServiceUnavailable(
            text=json_text(
                {"error": f"{MAX_WAITS} waits are held already: ask again shortly, or without wait"}
            ),
            content_type="application/json",
            headers={"Retry-After": "1"},
        )
    _waits += 1
    waiting = asyncio.ensure_future(results.wait(request_id, timeout=seconds))
    try:
        while not waiting.done():
            await asyncio.wait([waiting], timeout=CLIENT_CHECK)
            transport = request.transport
            if not waiting.done() and (transport is None or transport.is_closing()):
                raise ResultTimeout(request_id, seconds)  # nobody is there to answer
        return waiting.result()
    finally:
        waiting.cancel()
        _waits -= 1


def _wait_seconds(text: str | None) -> float:
    if text is None:
        return 0.0
    # Digits, as the README writes them: float() would also take "1_0", " 1 " and "1e1".
    seconds = float(text) if _SECONDS.fullmatch(text) else -1.0
    if not 0 <= seconds <= MAX_WAIT:  # NaN fails too
        raise web.HTTPBadRequest(
            text=json_text({"error": f"wait must be seconds from 0 to {MAX_WAIT:g}"}),
            content_type="application/json",
        )
    return seconds
