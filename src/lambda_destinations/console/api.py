"""JSON for scripts and for the pages' own script. Every route here needs the console's token
(``Authorization: Bearer <token>``, or a signed-in session): call :func:`require_token` first.

To add an endpoint, add it to ``routes`` here (or to a module of its own listed in
``app.ROUTE_MODULES``) and reach the store and AWS through ``request.app[CONSOLE]``.
"""

from __future__ import annotations

from aiohttp import web

from lambda_destinations._json import dumps as json_dumps
from lambda_destinations._text import printable
from lambda_destinations.console.app import CONSOLE, require_token
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
        raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json")
    return web.json_response(found.as_dict())


# A wait longer than this would hold a request (and proxies' timeouts) for too long; clients
# that need longer ask again.
MAX_WAIT = 60.0


@routes.get("/api/invocations/{request_id}")
async def invocation(request: web.Request) -> web.Response:
    """How an asynchronous invocation ended: the JSON of ``result --json`` (README, "The
    JSON"). 404 with ``"state": "unknown"`` while the store has no record of it; ``?wait=S``
    (at most 60) waits that long for the record first."""
    require_token(request)
    request_id = request.match_info["request_id"]
    wait = _wait_seconds(request.query.get("wait"))
    results = Results(request.app[CONSOLE].store)
    try:
        if wait:
            outcome: InvocationResult | None = await results.wait(request_id, timeout=wait)
        else:
            outcome = await results.get(request_id)
    except ResultTimeout:
        outcome = None
    except StoreUnavailable as exc:
        return web.json_response({"error": str(exc)}, status=503)
    if outcome is None:
        return web.json_response(unknown_result(request_id), status=404)
    return web.json_response(outcome.as_dict(), dumps=_json_text)


def _json_text(value: object) -> str:
    # A record may hold lone surrogates, which the UTF-8 response cannot: U+FFFD, as `result
    # --json` prints them.
    return printable(json_dumps(value))


def _wait_seconds(text: str | None) -> float:
    if text is None:
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT:  # NaN fails too
        raise web.HTTPBadRequest(
            text=f'{{"error": "wait must be seconds from 0 to {MAX_WAIT:g}"}}',
            content_type="application/json",
        )
    return seconds
