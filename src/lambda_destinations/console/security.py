"""Who may do what in the console: the token, sessions, and refusing cross-site requests.

Reading needs no login when the console listens on a loopback address only; anywhere else
every page needs a session. Every action (a POST) needs a session made with the console's token
and carries that session's CSRF token; the browser's ``Origin`` and ``Sec-Fetch-Site`` headers,
where sent, must say the request comes from the console's own pages. Scripts may instead send
``Authorization: Bearer <token>`` (no cookie is involved, so no cross-site request can use it).
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import secrets
import time

from aiohttp import web

from lambda_destinations._urls import is_site_path

SESSION_COOKIE = "ld_console"
CSRF_FIELD = "csrf"
TOKEN_ENV = "LAMBDA_DESTINATIONS_CONSOLE_TOKEN"  # noqa: S105 - a variable name
_SESSION_SECONDS = 12 * 3600
_NAME_MAX = 64


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


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def clean_user(name: str) -> str | None:
    """A user name fit for the ledger (printable, one line, at most 64 characters), or None."""
    name = " ".join(name.split())
    if not name or len(name) > _NAME_MAX or not name.isprintable():
        return None
    return name


class Sessions:
    """Sessions by random id, in memory: a restart of the console signs everyone out."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._sessions: dict[str, Session] = {}

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token.encode())

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

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for session_id in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[session_id]


def same_origin(request: web.Request) -> bool:
    """Whether the browser says the request comes from the console's own pages.

    Browsers send ``Sec-Fetch-Site`` on every request and ``Origin`` on every POST; a request
    with neither comes from a program, which still needs the session cookie and its CSRF token.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def check_action(sessions: Sessions, request: web.Request, form_csrf: str | None) -> str:
    """The acting user's name, or Refused: no token, another site, or a stale form."""
    if sessions.bearer(request):
        return "token"
    if not same_origin(request):
        raise Refused("the request comes from another site")
    session = sessions.of(request)
    if session is None:
        raise Refused("actions need the console's token: sign in at /login")
    if form_csrf is None or not hmac.compare_digest(form_csrf.encode(), session.csrf.encode()):
        raise Refused("the form is stale or was not made by the console: reload the page")
    return session.user


def safe_next(target: str | None) -> str:
    """A path on this site to go back to after signing in (never another site).

    Browsers drop tabs and newlines from a URL and read a backslash as ``/``: ``/<tab>/evil.com``
    would leave for ``//evil.com``. A target holding any of them, or a space, is refused whole."""
    return target if target and is_site_path(target) else "/"
