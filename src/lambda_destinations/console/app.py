"""The console's aiohttp application: its context, templates, security middleware, lifetime.

Routes live in one module per concern, each with its own ``routes = web.RouteTableDef()``:
``pages`` (what people read), ``actions`` (what they do, POST only), ``api`` (JSON for scripts
and the pages' own script). To add routes, add them to one of those tables, or add a module
with its own table and list it in ``ROUTE_MODULES``; handlers reach everything through
``request.app[CONSOLE]`` (a :class:`Console`), and check the token with
:func:`require_token` (JSON) or :meth:`Console.actor` (forms). A handler that asks AWS does
so inside :func:`lambda_destinations.console.bound.aws_bound`, which ends it at AWS_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import structlog
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError
from multidict import MultiDict

from lambda_destinations._json import dumps as json_dumps
from lambda_destinations._serving import AppRunner
from lambda_destinations._text import printable, visible
from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.console.jobs import JobBoard
from lambda_destinations.console.once import OnceForms
from lambda_destinations.console.security import (
    CSRF_FIELD,
    PROXY_HEADERS,
    PUBLIC_URL_EXAMPLE,
    TOKEN_ENV,
    PublicUrl,
    Refused,
    Sessions,
    check_form,
    check_sender,
    is_loopback,
    names_loopback,
    one_time_token,
    safe_next,
)
from lambda_destinations.console.views import problem_line
from lambda_destinations.errors import LambdaDestinationsError, StoreDataError
from lambda_destinations.retrying import first_line
from lambda_destinations.store import Store

ROUTE_MODULES = ("pages", "actions", "api")
log = structlog.get_logger("lambda_destinations.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleOptions:
    """How the console serves: where, with which token, and whether actions are offered."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str = ""
    read_only: bool = False
    # Whether a missing SQLite store is made (and migrated). The `console` command makes none:
    # started where no store is (outside dev's folder, say) it would serve an empty new one.
    create_store: bool = True
    # Whether the token is a new one made at start (no LAMBDA_DESTINATIONS_CONSOLE_TOKEN): then
    # only the sign-in URL printed at start holds it, and a 401 says so.
    token_generated: bool = False
    # Where browsers reach the console when a reverse proxy serves it (--public-url).
    public: PublicUrl = dataclasses.field(default_factory=PublicUrl)

    @property
    def open_reads(self) -> bool:
        """Reading needs no login when only this machine can connect: not through a proxy,
        which lets in whoever reaches it."""
        return is_loopback(self.host) and not self.public.origin

    def url(self, path: str = "/") -> str:
        """``path`` as browsers open it: at the public URL, if there is one."""
        return self.public.url(path) if self.public.origin else self.listen_url(path)

    def listen_url(self, path: str = "/") -> str:
        """``path`` at the address the console listens on."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


class Console:
    """What every handler needs: settings, the store, AWS clients, sessions, jobs and the
    forms being acted on."""

    def __init__(self, settings: Settings, options: ConsoleOptions) -> None:
        self.settings = settings
        self.options = options
        self.sessions = Sessions(options.token, options.public)
        self.jobs = JobBoard()
        self.once = OnceForms()
        self._store: Store | None = None
        self._aws: AwsClients | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("lambda_destinations.console", "templates"),
            autoescape=True,  # every value is text, never markup
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            finalize=_shown,
        )
        # A value inside one path segment: "/" and ":" are escaped too.
        self.templates.filters["segment"] = lambda value: quote(str(value), safe="")
        # A form's value, posted back as it is: HTML-escaped only, its controls kept.
        self.templates.filters["exact"] = self.templates.filters["escape"]
        # Every link's start: the path prefix a proxy strips (macros see globals too).
        self.templates.globals["root"] = options.public.root
        # Each form that acts carries a token of its own (actions.NONCE_FIELD): done once.
        self.templates.globals["one_time_token"] = one_time_token

    @property
    def store(self) -> Store:
        assert self._store is not None, "the console's store is opened at start-up"
        return self._store

    @property
    def aws(self) -> AwsClients:
        assert self._aws is not None, "the console's AWS clients are made at start-up"
        return self._aws

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        store_opened = Store.from_url(self.settings.store, create=self.options.create_store)
        async with store_opened as store, AwsClients(self.settings) as aws:
            await store.migrate()  # the action ledger may be newer than the store
            self._store, self._aws = store, aws
            try:
                yield
            finally:
                await self.jobs.cancel_all()
                self._store = self._aws = None

    async def actor(self, request: web.Request) -> tuple[str, MultiDict[str]]:
        """``console <user>`` for the ledger, and the form; Refused when not allowed."""
        if self.options.read_only:
            raise Refused("the console runs read-only (--read-only)")
        return await self.signed_in(request)

    async def signed_in(self, request: web.Request) -> tuple[str, MultiDict[str]]:
        """What :meth:`actor` checks but read-only mode, for a POST that changes no record (signing
        out): the same token, origin and CSRF checks."""
        # Who sends it first, from the headers: read first, a form of up to 8 MB was read and
        # held for any client, signed in or not.
        session = check_sender(self.sessions, request)
        form = await read_form(request)
        return f"console {check_form(session, form.get(CSRF_FIELD))}", form

    def render(
        self, request: web.Request, name: str, status: int = 200, **values: Any
    ) -> web.Response:
        session = self.sessions.of(request)
        text = self.templates.get_template(name).render(
            request_path=_return_path(request, values),
            here=request.path,  # the navigation marks the page it links to as the current one
            user=session.user if session else None,
            csrf=session.csrf if session else "",
            can_act=not self.options.read_only and session is not None,
            read_only=self.options.read_only,
            open_reads=self.options.open_reads,
            **values,
        )
        return web.Response(
            text=printable(text), status=status, content_type="text/html", charset="utf-8"
        )


CONSOLE = web.AppKey("console", Console)


def _shown(value: Any) -> Any:
    """Every text a page shows, with its controls and bidi controls escaped (``visible``), as
    the CLI shows it; a browser reorders text after U+202E as a terminal does. Markup (a macro,
    a form's value through ``| exact``) is left as it is."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return visible(value)
    return value


# The most a form may hold (aiohttp's client_max_size), and a sign-in form, which anyone may
# post: a token, a name and the page to go back to.
FORM_BYTES = 8 * 1024 * 1024
LOGIN_FORM_BYTES = 64 * 1024
_LOGIN_TOO_LARGE = "the sign-in form is too large (64 KB at most): send the token and a name"

# The longest a form's body may take to arrive (8 MB at 140 KB/s). A connection reading a body
# is not idle, and is never closed for a new one: without this, a client sending a byte now and
# then held it, and its file descriptor, for as long as it liked.
FORM_SECONDS = 60.0


async def read_form(request: web.Request, limit: int = FORM_BYTES) -> MultiDict[str]:
    """The text fields of the request's form, each one (``get`` gives a name's first value, as
    a query string's; the statuses checked in a filter are one name, each sent); 400 for a body
    that is no form the console reads (its line says why in plain words: Python's codec and
    parser texts name no fix), 408 for one that takes over FORM_SECONDS to arrive, 413 for one
    over ``limit`` bytes: by its Content-Length before any of it is read."""
    if (request.content_length or 0) > limit:
        raise _too_large(limit)
    try:
        async with asyncio.timeout(FORM_SECONDS):
            # A body without a Content-Length (chunked) is cut at the limit as it is read
            posted = await request.clone(client_max_size=limit).post()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    except TimeoutError:  # an OSError too: not the store's or AWS's, as guard would say
        raise web.HTTPRequestTimeout(
            text=f"the form took over {FORM_SECONDS:g} s to arrive: send it again\n"
        ) from None
    except (ValueError, LookupError, RuntimeError, web.RequestPayloadError) as exc:
        raise web.HTTPBadRequest(
            text=f"the form cannot be read ({_unreadable(exc)}): send it as the console's pages "
            "do (application/x-www-form-urlencoded, UTF-8)\n"
        ) from None
    form = MultiDict((k, v) for k, v in posted.items() if isinstance(v, str))
    if any("\x00" in key + value for key, value in form.items()):
        raise web.HTTPBadRequest(text="a form field holds a NUL character: remove it\n")
    return form


def _too_large(limit: int) -> web.HTTPRequestEntityTooLarge:
    """413 for a form over ``limit`` bytes (its line: :data:`_PLAIN`'s, or the sign-in's)."""
    if limit == LOGIN_FORM_BYTES:
        return web.HTTPRequestEntityTooLarge(limit, text=_LOGIN_TOO_LARGE)
    return web.HTTPRequestEntityTooLarge(limit)


def _unreadable(exc: Exception) -> str:
    """Why aiohttp could not read a form, as the sender can act on it."""
    if isinstance(exc, UnicodeDecodeError):
        return f"its bytes are not {exc.encoding.upper().replace('_', '-')}"
    if isinstance(exc, LookupError):  # a charset Python has no codec for
        return "its charset is unknown"
    if isinstance(exc, RuntimeError):  # a multipart part's Content-Transfer-Encoding
        return "a part's Content-Transfer-Encoding is unknown"
    if isinstance(exc, web.RequestPayloadError):  # Content-Encoding: gzip, a body that is not
        return "its Content-Encoding does not decode"
    return "its multipart body is incomplete or malformed"


def json_text(value: object) -> str:
    """``value`` as the JSON text of a response. A record may hold lone surrogates, which UTF-8
    cannot carry: U+FFFD, as ``result --json`` prints them (``json_dumps`` alone would make a
    response that fails to encode)."""
    return printable(json_dumps(value))


def _return_path(request: web.Request, values: dict[str, Any]) -> str:
    """Where signing in from this page comes back to: the page itself, but from the sign-in
    page where that page was to return."""
    if request.path == "/login":
        return str(values.get("next") or "/")
    return request.path_qs


def require_token(request: web.Request) -> None:
    """For JSON routes: the console's token as a bearer header, or a signed-in session."""
    console = request.app[CONSOLE]
    if console.sessions.bearer(request) or console.sessions.of(request) is not None:
        return
    sent = request.headers.get("Authorization", "").startswith("Bearer ")
    problem = (
        "the bearer token is not the console's"
        if sent
        else "send Authorization: Bearer <console token>"
    )
    raise web.HTTPUnauthorized(
        text=json_text({"error": f"{problem}{_token_source(console.options, sent)}"}),
        content_type="application/json",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _token_source(options: ConsoleOptions, sent: bool) -> str:
    """Where a 401's reader finds the token, as the end of its line ("" when it is the variable's
    and none was sent: the README's line on the API names it)."""
    if options.read_only and options.token_generated and options.open_reads:
        # Read-only on loopback prints no sign-in URL: the token made at start went to no one.
        return (
            f": a read-only console takes {TOKEN_ENV}'s value, and this one was started without "
            "it (it printed no sign-in URL): start it again with the variable set"
        )
    if options.token_generated:  # no variable holds it: dev's console, say
        where = "the one in the sign-in URL the console printed at start (/login?token=...)"
        return f": send {where}" if sent else f": the token is {where}"
    return f": send {TOKEN_ENV}'s value" if sent else ""


_PUBLIC = ("/login", "/static/", "/favicon.ico")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in where reading needs it, a loopback console's own Host (421 for another), and
    headers that keep pages from being framed or scripted by anything but the console's own
    file. The JSON API answers JSON, always."""
    console = request.app[CONSOLE]
    api = request.path.startswith("/api/")
    public = api or request.path.startswith(_PUBLIC)
    try:
        _refuse_unstripped(request, console.options.public.root)
        if not public and not console.options.open_reads and console.sessions.of(request) is None:
            # The address as sent, encoded whole: its own "&" would end the "next" parameter.
            raise web.HTTPSeeOther(f"/login?next={quote(request.raw_path, safe='/')}")
        misdirected = _misdirected(request) if console.options.open_reads else None
        if misdirected is not None:
            raise _json_error(web.HTTPMisdirectedRequest, misdirected, api)
        refuse_nul(request, api=api)
        response = await handler(request)
    except web.HTTPException as exc:
        _secure_headers(exc)
        raise
    except (LambdaDestinationsError, BotoCoreError, ClientError, OSError) as exc:
        response = _failed(request, exc, api=api)
    except Exception:
        if not api:
            raise  # aiohttp's own 500, and the traceback in the log
        log.exception("console request failed", path=request.path)
        response = web.json_response(
            {"error": "the console failed: see its log"}, status=500, dumps=json_text
        )
    _secure_headers(response)
    return response


def _refuse_unstripped(request: web.Request, root: str) -> None:
    """404 saying what to change for a request under the public URL's path prefix that no
    route takes: the proxy passed the prefix on, where it must strip it (sent to sign in
    first, the browser would come back under the prefix again, for ever)."""
    if not root or not (request.path + "/").startswith(root + "/"):
        return
    if request.match_info.http_exception is None:  # a page of the console's own after all
        return
    raise web.HTTPNotFound(
        text=f"the proxy passed the path prefix {root} on to the console, which serves at its "
        f"root: have the proxy strip it (nginx: location {root}/ {{ proxy_pass "
        "http://HOST:PORT/; }, the URL ending in /)\n"
    )


def _misdirected(request: web.Request) -> str | None:
    """Why a console on loopback, whose pages need no sign-in, refuses a request: its Host
    names another site (a browser sent there by DNS rebinding; a request without Host is no
    browser's), or a reverse proxy passed it on (anyone who reaches the proxy would read
    every record). None for a request from this machine."""
    host = request.headers.get("Host")
    if host is not None and not names_loopback(host):
        return _other_host(request)
    proxied = next((name for name in PROXY_HEADERS if name in request.headers), None)
    if proxied is None:
        return None
    return (
        f"the request came through a proxy (it has {proxied}), and this console on loopback "
        "lets anyone read without sign-in: start it with --public-url, the address browsers "
        f"open ({PUBLIC_URL_EXAMPLE}), and every page then needs the token"
    )


def _other_host(request: web.Request) -> str:
    """The line for a request whose Host is not this machine's, on a console on loopback."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = f":{sockname[1]}" if isinstance(sockname, tuple) and len(sockname) > 1 else ""
    return (
        "the Host header names another machine, and this console answers on loopback only "
        f"(a page of another site reading it through DNS rebinding, say): open it as "
        f"http://127.0.0.1{port}/ or http://localhost{port}/"
    )


# A value the store refuses (on PostgreSQL, one longer than an index entry holds): the
# database's own text names its internals, not what to change; the log keeps it.
_STORE_REFUSED = "the store cannot hold a value this request sent (one too long, say)"


def _failed(request: web.Request, exc: Exception, *, api: bool) -> web.Response:
    """The store or AWS failed: one line, as the request accepts it (a page, JSON, or plain
    text) and in the log, never a traceback page. Our own errors' lines are for people, without
    the Python class; botocore's and the system's keep it (``EndpointConnectionError: ...``)."""
    settings = request.app[CONSOLE].settings
    log.warning("console request failed", path=request.path, error=problem_line(exc, settings))
    # A value the store refuses is this request's (a filter, a reason): 400, and the line says
    # to change it rather than to try again (the same would fail).
    refused = isinstance(exc, StoreDataError)
    status = 400 if refused else 503
    if refused:
        problem = f"{_STORE_REFUSED}: shorten or correct it, and send it again"
    elif isinstance(exc, LambdaDestinationsError):
        problem = first_line(exc)
    else:
        problem = problem_line(exc, settings)
    if api:
        return web.json_response({"error": problem}, status=status, dumps=json_text)
    if not _wants_page(request):
        return web.Response(text=f"{problem}\n", status=status)
    shown = _STORE_REFUSED if refused else problem  # the page says what to do below it
    console = request.app[CONSOLE]
    return console.render(request, "error.html", status=status, problem=shown, refused=refused)


# What a route's part names, for the 404 of one holding a NUL (a record's id otherwise).
_NAMED_BY = {"job_id": "no job has an id", "name": "no queue has a name"}


def refuse_nul(request: web.Request, *, api: bool = False) -> None:
    """404 for an id with a NUL character, 400 for a query parameter with one.

    No record holds a NUL (PostgreSQL's text cannot): a request naming one is bad input, said
    so before the store sees it (PostgreSQL would fail on it, SQLite would find nothing)."""
    for part, value in request.match_info.items():
        if "\x00" in value:
            named = _NAMED_BY.get(part, "no record has an id")
            raise _json_error(web.HTTPNotFound, f"{named} with a NUL character", api)
    if any("\x00" in key + value for key, value in request.query.items()):
        raise _json_error(
            web.HTTPBadRequest, "a query parameter holds a NUL character: remove it", api
        )


def _json_error(kind: type[web.HTTPException], problem: str, api: bool) -> web.HTTPException:
    if api:
        return kind(text=json_text({"error": problem}), content_type="application/json")
    return kind(text=f"{problem}\n")


def _secure_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # "no-referrer" would make browsers send "Origin: null" on our own forms.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def under_root(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A redirect to a page of the console (``/login?next=…``, ``/jobs/ID``) under the path
    prefix of its public URL: the proxy strips the prefix from requests, and a browser sent to
    ``/jobs`` would leave the console for another page of the proxy's host."""
    root = request.app[CONSOLE].options.public.root
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _rooted(exc, root)
        raise
    _rooted(response, root)
    return response


def _rooted(response: web.StreamResponse, root: str) -> None:
    location = response.headers.get("Location", "")
    if root and location.startswith("/") and not location.startswith("//"):
        response.headers["Location"] = root + location


# aiohttp's own lines (no route, another method, a body over the limit), said for a person.
_PLAIN = {
    404: "there is no page at this address: start from the console's menu",
    405: "this address takes no {method}: act with the buttons of the console's pages",
    413: "the form is too large for the console (8 MB at most): send less",
}


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An error a browser gets as a page: title, the one line, a way back (error.html).

    Only for requests that accept HTML (a browser's do); scripts get the same line as text (for
    aiohttp's own answers too), and the JSON API as JSON. Outside :func:`guard`, so that its
    refusals become pages too.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type != "text/plain":
            raise
        if request.path.startswith("/api/"):
            return _api_error(exc, request)
        problem = _plain_line(exc, request)
        if not _wants_page(request):
            exc.text = f"{problem}\n"  # aiohttp's own "404: Not Found" said as a page says it
            raise
        response = request.app[CONSOLE].render(
            request,
            "error.html",
            status=exc.status,
            problem=problem,
            refused=False,
            title=exc.reason,
            back=_back(request),
        )
        for name in ("Allow", "WWW-Authenticate"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        _secure_headers(response)
        return response


def _plain_line(exc: web.HTTPException, request: web.Request) -> str:
    """The line of an error page: the handler's, or one for aiohttp's own answer."""
    problem = (exc.text or "").strip()
    plain = _PLAIN.get(exc.status)
    if plain and (
        problem.startswith("Maximum request body size") or problem == f"{exc.status}: {exc.reason}"
    ):
        return plain.format(method=request.method)
    return problem


# The JSON API's own lines for aiohttp's answers (no route, another method).
_API_PLAIN = {
    404: "no such API address: GET /api/invocations/{request_id} or /api/jobs/{job_id}",
    405: "the API takes GET, not {method}",
    413: "the request is too large",
}


def _api_error(exc: web.HTTPException, request: web.Request) -> web.Response:
    """``exc`` with its line as the API's JSON (``{"error": ...}``), as every API answer is."""
    problem = (exc.text or "").strip()
    if (plain := _API_PLAIN.get(exc.status)) and problem == f"{exc.status}: {exc.reason}":
        problem = plain.replace("{method}", request.method)
    headers = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
    response = web.json_response(
        {"error": problem}, status=exc.status, headers=headers, dumps=json_text
    )
    _secure_headers(response)
    return response


def _wants_page(request: web.Request) -> bool:
    return not request.path.startswith("/api/") and "text/html" in request.headers.get("Accept", "")


def _back(request: web.Request) -> str:
    """The console's page the browser came from (its ``Referer``, when on this site, without
    a DLQ's peek), else the overview. A Referer that is no URL (``http://[::1``) counts as
    none. Behind a proxy the Referer is the public URL's page, under its path prefix."""
    public = request.app[CONSOLE].options.public
    try:
        came_from = urlsplit(request.headers.get("Referer", ""))
    except ValueError:
        return "/"
    path = came_from.path
    if public.origin and f"{came_from.scheme}://{came_from.netloc}" == public.origin:
        path = path[len(public.root) :] if path.startswith(public.root + "/") else ""
    elif came_from.netloc != request.host:
        return "/"
    if not path or path == request.path:
        return "/"
    # Without a DLQ's peek, as signing in goes back: following the link would peek again.
    return safe_next(path + (f"?{came_from.query}" if came_from.query else ""))


def create_app(settings: Settings, options: ConsoleOptions) -> web.Application:
    """The console as an aiohttp application (served by :func:`serve`, or by a test)."""
    app = web.Application(middlewares=[under_root, error_pages, guard], client_max_size=FORM_BYTES)
    console = Console(settings, options)
    app[CONSOLE] = console

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with console.running():
            yield

    app.cleanup_ctx.append(lifetime)
    for name in ROUTE_MODULES:
        module = importlib.import_module(f"lambda_destinations.console.{name}")
        app.add_routes(module.routes)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/favicon.ico", _icon)
    return app


_STATIC = Path(__file__).parent / "static"
_STATIC_FILES = frozenset(path.name for path in _STATIC.iterdir() if path.is_file())


async def _static(request: web.Request) -> web.FileResponse:
    """The pages' stylesheet and script. aiohttp's static route answered a name it has no file
    for with an empty 404 (application/octet-stream), and its folder with "403: Forbidden":
    a name not here is the 404 of any other address."""
    name = request.match_info["name"]
    if name not in _STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(_STATIC / name)


async def _icon(request: web.Request) -> web.FileResponse:
    """The console's icon, at the address browsers ask for after each page whatever the page
    names (before: a 404, and a redirect to the sign-in page where reading needs it). A day in
    their cache: it never changes within a version."""
    response = web.FileResponse(_STATIC / "favicon.svg")
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.content_type = "image/svg+xml"
    return response


async def serve(
    settings: Settings, options: ConsoleOptions, ready: Callable[[ConsoleOptions], None]
) -> None:
    """Serve until cancelled; ``ready`` gets the options with the port actually listened on
    (``port=0`` picks a free one)."""
    runner = AppRunner(
        create_app(settings, options),
        server="console",
        too_long="the request is too long: shorten the filters (the address)",
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        addresses = runner.addresses  # (host, port, ...) of each listening socket
        port = int(addresses[0][1]) if addresses else options.port
        ready(dataclasses.replace(options, port=port))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
