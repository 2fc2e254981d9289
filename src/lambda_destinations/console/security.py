"""Who may do what in the console: the token, sessions, and refusing cross-site requests.

Reading needs no login when the console listens on a loopback address only; anywhere else
every page needs a session. Every action (a POST) needs a session made with the console's token
and carries that session's CSRF token; the browser's ``Origin`` and ``Sec-Fetch-Site`` headers,
where sent, must say the request comes from the console's own pages. Scripts may instead send
``Authorization: Bearer <token>`` (no cookie is involved, so no cross-site request can use it).

Behind a reverse proxy the console is told its public address (:class:`PublicUrl`): the origin
browsers send, the path prefix the proxy strips, and whether cookies are ``Secure``. Headers a
proxy adds (``X-Forwarded-*``, ``Forwarded``) are never believed: anyone can send them.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from aiohttp import web

from lambda_destinations._urls import host_name_problem, is_site_path

SESSION_COOKIE = "ld_console"
# The sign-in link's token, taken in by the server: the cookie names a short-lived slot.
LINK_COOKIE = "ld_console_link"
CSRF_FIELD = "csrf"
# A DLQ page's query parameter that peeks at its messages (a receive: their counts go up).
PEEK_PARAM = "peek"
TOKEN_ENV = "LAMBDA_DESTINATIONS_CONSOLE_TOKEN"  # noqa: S105 - a variable name
LINK_REFUSED = (
    "The link's token is not this console's (a console without "
    "LAMBDA_DESTINATIONS_CONSOLE_TOKEN prints a new one each start): open the link it printed "
    "last, or type the token."
)
_SESSION_SECONDS = 12 * 3600
_LINK_SECONDS = 600
_NAME_MAX = 64
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a proxy adds to the requests it passes on: one of them on a request to a console that
# was not told it stands behind one says that it does.
PROXY_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Real-IP",
)
PUBLIC_URL_EXAMPLE = "https://ops.example.com/ or https://tools.example.com/lambda-destinations/"


@dataclasses.dataclass(frozen=True, slots=True)
class PublicUrl:
    """Where browsers reach a console that a reverse proxy serves (``--public-url``).

    ``origin`` is what a browser sends as ``Origin`` from the console's pages (``""``: no proxy,
    the request's own scheme and Host are the console's); ``root`` the path prefix the proxy
    strips before passing a request on (``/lambda-destinations``, or ``""`` at the root of its
    host): every link, redirect and cookie path starts with it.
    """

    origin: str = ""
    root: str = ""

    @classmethod
    def parse(cls, url: str) -> PublicUrl:
        """The public address ``url`` names; ValueError saying what is wrong with it."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise ValueError("it is no URL (a bad port, or a [ without its ])") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError("it names no http(s) scheme and host")
        if parts.username is not None or parts.query or parts.fragment or "#" in url:
            raise ValueError("it may hold no user, query or fragment")
        if not parts.hostname.isascii():
            raise ValueError("its host is not ASCII: write it as browsers send it (xn--…)")
        if (problem := host_name_problem(parts.hostname)) is not None:
            raise ValueError(problem)
        root = parts.path.rstrip("/")
        if root and not _plain_root(root):
            raise ValueError("its path may hold only letters, digits and - . _ ~ between slashes")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if port is not None and port != _DEFAULT_PORTS[scheme]:
            host = f"{host}:{port}"  # a browser's Origin leaves the default port out
        return cls(f"{scheme}://{host}", root)

    @property
    def secure(self) -> bool:
        """Whether browsers reach the console over TLS: its cookies then go over TLS only."""
        return self.origin.startswith("https://")

    def url(self, path: str = "/") -> str:
        """``path`` of the console (``/login``) as browsers reach it."""
        return f"{self.origin}{self.root}{path}"

    def set_cookie(self, response: web.StreamResponse, name: str, value: str, **kw: Any) -> None:
        """``response.set_cookie`` with the path under the root, ``Secure`` behind TLS."""
        path = self.root + kw.pop("path")
        response.set_cookie(name, value, path=path, secure=self.secure or None, **kw)

    def del_cookie(self, response: web.StreamResponse, name: str, path: str) -> None:
        response.del_cookie(name, path=self.root + path, secure=self.secure or None)


def _plain_root(root: str) -> bool:
    """Whether a public URL's path is plain segments (``/tools/lambda-destinations``): no
    ``.``, ``..`` or empty segment, nothing a browser or proxy would rewrite or escape."""
    segments = root.split("/")[1:]
    return root.startswith("/") and all(
        segment not in ("", ".", "..")
        and all(c.isascii() and (c.isalnum() or c in "-._~") for c in segment)
        for segment in segments
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A person signed in with the token: their name goes into the ledger."""

    user: str
    csrf: str
    expires: float


class Refused(web.HTTPForbidden):
    """An action the console will not do; the text says why."""

    def __init__(self, why: str) -> None:
        super().__init__(text=f"refused: {why}\n", content_type="text/plain")


def _exact(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def one_time_token() -> str:
    """A form's token that its action is done once, however often the form is posted."""
    return secrets.token_urlsafe(16)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def names_loopback(host: str) -> bool:
    """Whether a request's ``Host`` header names this machine: ``localhost``, a loopback address
    (``127.0.0.1``, ``[::1]``), with a port or without.

    A console on loopback serves its pages without sign-in: a page on another site whose name
    the attacker points at 127.0.0.1 (DNS rebinding) would be same-origin with it and could read
    every record from the operator's browser. Such a request still names that other site here.
    """
    name = host.strip().lower()
    if name.startswith("["):
        name, bracket, port = name[1:].partition("]")
        if not bracket or port[:1] not in ("", ":"):
            return False
        port = port[1:]
    else:
        name, _, port = name.partition(":")  # an IPv6 address without brackets is no Host
    if port and not port.isdigit():
        return False
    return name != "" and is_loopback(name)


def clean_user(name: str) -> str | None:
    """A user name fit for the ledger (printable, one line, at most 64 characters), or None."""
    name = " ".join(name.split())
    if not name or len(name) > _NAME_MAX or not name.isprintable():
        return None
    return name


def name_problem(name: str) -> str:
    """Why :func:`clean_user` refuses ``name``, as the sign-in page says it: a name of a
    length it takes was refused for a character, which "up to 64 characters" does not name."""
    name = " ".join(name.split())
    if name and len(name) <= _NAME_MAX:
        return (
            "Type your name without control or format characters (such as U+202E or a "
            "zero-width joiner): the ledger records it as text."
        )
    return f"Give your name (up to {_NAME_MAX} characters): the ledger records who did what."


class Sessions:
    """Sessions by random id, in memory: a restart of the console signs everyone out.

    The sign-in link (``/login?token=…``) is taken in at once: its token never goes into a
    page (Back would show it again), and the browser is sent on to ``/login`` without it,
    holding a cookie that names a slot here. The slot stands for the token for ten minutes,
    once: the form then only asks the person's name. ``public`` says where browsers reach the
    console: its cookies' path and ``Secure``, the ``Origin`` its pages send."""

    def __init__(self, token: str, public: PublicUrl | None = None) -> None:
        self._token = token
        self.public = public or PublicUrl()
        self._sessions: dict[str, Session] = {}
        self._links: dict[str, float] = {}  # slot id: when it expires

    def token_matches(self, candidate: str) -> bool:
        """Whether ``candidate`` is the token. A header's bytes that are not UTF-8 reach here as
        lone surrogates (aiohttp decodes with ``surrogateescape``): encoded as they are, they
        match nothing, where ``.encode()`` would raise. A console given no token (a mounted
        ``create_app`` with ``ConsoleOptions()``'s default) takes none: an empty token field or
        ``Bearer`` with nothing after it would otherwise have matched it."""
        if not self._token:
            return False
        return hmac.compare_digest(_exact(candidate), _exact(self._token))

    def open(self, user: str) -> tuple[str, Session]:
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), time.monotonic() + _SESSION_SECONDS)
        self._sessions[session_id] = session
        return session_id, session

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def of(self, request: web.Request) -> Session | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        session = self._sessions.get(session_id) if session_id else None
        if session is None or session.expires < time.monotonic():
            return None
        return session

    def bearer(self, request: web.Request) -> bool:
        """Whether the request carries ``Authorization: Bearer <the token>``."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def take_link(self, token: str) -> str | None:
        """A slot standing for the link's token, or None for a token that is not the console's."""
        if not self.token_matches(token):
            return None
        self._forget_expired()
        slot = secrets.token_urlsafe(32)
        self._links[slot] = time.monotonic() + _LINK_SECONDS
        return slot

    def link_of(self, request: web.Request) -> str | None:
        """The request's slot from a sign-in link, while it stands for the token."""
        slot = request.cookies.get(LINK_COOKIE)
        expires = self._links.get(slot) if slot else None
        return slot if expires is not None and expires >= time.monotonic() else None

    def forget_link(self, slot: str) -> None:
        self._links.pop(slot, None)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for session_id in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[session_id]
        for slot in [k for k, expires in self._links.items() if expires < now]:
            del self._links[slot]


def same_origin(request: web.Request, public: PublicUrl) -> bool:
    """Whether the browser says the request comes from the console's own pages.

    Browsers send ``Sec-Fetch-Site`` on every request and ``Origin`` on every POST; a request
    with neither comes from a program, which still needs the session cookie and its CSRF token.
    Behind a proxy the console's origin is the public one (``https://ops.example.com``) only:
    the scheme and Host of the proxy's request are not the browser's (``http://`` with the
    public Host would let a page served without TLS there act).
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == (public.origin or f"{request.scheme}://{request.host}")


def check_sender(sessions: Sessions, request: web.Request) -> Session | None:
    """The session of the request's sender (None for the token as a bearer header), or Refused:
    no token, or another site. From the headers alone: the form is read only after it."""
    if sessions.bearer(request):
        return None
    if not same_origin(request, sessions.public):
        raise Refused("the request comes from another site")
    session = sessions.of(request)
    if session is None:
        raise Refused("actions need the console's token: sign in at /login")
    return session


def check_form(session: Session | None, form_csrf: str | None) -> str:
    """The acting user's name (``token`` for a bearer), or Refused for a stale form."""
    if session is None:
        return "token"
    if form_csrf is None or not hmac.compare_digest(_exact(form_csrf), _exact(session.csrf)):
        raise Refused("the form is stale or was not made by the console: reload the page")
    return session.user


def take_link(sessions: Sessions, token: str, target: str) -> web.HTTPSeeOther:
    """The answer to the sign-in link: on to ``/login`` without the token, holding its slot
    (or saying the token is not the console's). ``Lax``: the link is often opened from another
    site (a chat, a terminal), and the slot must come back on that first visit's form."""
    where = f"/login?next={quote(target, safe='/')}"
    slot = sessions.take_link(token)
    if slot is None:
        return web.HTTPSeeOther(where + "&link=refused")
    response = web.HTTPSeeOther(where)
    sessions.public.set_cookie(
        response,
        LINK_COOKIE,
        slot,
        max_age=_LINK_SECONDS,
        httponly=True,
        samesite="Lax",
        path="/login",
    )
    return response


def safe_next(target: str | None) -> str:
    """A path on this site to go back to after signing in (never another site), without a DLQ's
    peek.

    Browsers drop tabs and newlines from a URL and read a backslash as ``/``: ``/<tab>/evil.com``
    would leave for ``//evil.com``. A target holding any of them, or a space, is refused whole.
    ``?peek=`` is the one GET that does something (it receives the DLQ's messages): the sign-in
    form posted from the console's own page would send the browser on to it as the console's
    own request, for another site's link (``/login?next=/dlqs/q?peek=50``) or the peek page's
    own "Sign in to act", which would peek again. The DLQ's page is shown without it."""
    if not target or not is_site_path(target):
        return "/"
    parts = urlsplit(target)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if all(name != PEEK_PARAM for name, _ in pairs):
        return target
    query = urlencode([(name, value) for name, value in pairs if name != PEEK_PARAM])
    return urlunsplit(("", "", parts.path, query, parts.fragment))
