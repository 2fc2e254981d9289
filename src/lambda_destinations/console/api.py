"""JSON for scripts and for the pages' own script. Every route here needs the console's token
(``Authorization: Bearer <token>``, or a signed-in session): call :func:`require_token` first.

To add an endpoint, add it to ``routes`` here (or to a module of its own listed in
``app.ROUTE_MODULES``) and reach the store and AWS through ``request.app[CONSOLE]``.
"""

from __future__ import annotations

from aiohttp import web

from lambda_destinations.console.app import CONSOLE, require_token

routes = web.RouteTableDef()


@routes.get("/api/jobs/{job_id}")
async def job(request: web.Request) -> web.Response:
    """A job's progress: done of total, counts by outcome, state."""
    require_token(request)
    found = request.app[CONSOLE].jobs.get(request.match_info["job_id"])
    if found is None:
        raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json")
    return web.json_response(found.as_dict())
