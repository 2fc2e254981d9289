"""The egress proxy the environment names for a URL, chosen as botocore chooses it for AWS calls:
``HTTPS_PROXY`` for https://, ``HTTP_PROXY`` for http:// (or their lower-case names), none for a
host ``NO_PROXY`` lists. aiohttp takes none of them unless told, so the webhook handler asks
here; and what a proxy that refused a request, or could not be reached, means to a user."""

from __future__ import annotations

import base64
import dataclasses
import re
import urllib.request
from urllib.parse import unquote, urlsplit


@dataclasses.dataclass(frozen=True)
class Proxy:
    """A proxy: its URL as the environment gives it (credentials included: the HTTP client
    sends them as ``Proxy-Authorization``), and the variable that named it."""

    url: str
    variable: str

    @property
    def shown(self) -> str:
        """The proxy as a line names it: scheme, host and port, never its credentials. A URL
        urllib cannot split (an unclosed ``[``) is shown as far as its host goes."""
        try:
            parts = urlsplit(self.url)
            scheme, netloc = parts.scheme, parts.netloc
        except ValueError:
            scheme, _, rest = self.url.partition("://")
            netloc = re.split("[/?#]", rest, maxsplit=1)[0]
        return f"{scheme}://{netloc.rpartition('@')[2]}"

    @property
    def secrets(self) -> set[str]:
        """What a log line or an answer must not show: the credentials, also as sent."""
        parts = urlsplit(self.url)
        if parts.username is None and parts.password is None:
            return set()
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        sent = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {user, password, sent} - {""}


def proxy_for(url: str) -> Proxy | None:
    """The proxy for requests to ``url``, or None: no proxy set for its scheme, or ``NO_PROXY``
    lists its host (a name, a domain suffix such as ``.internal``, an address, or ``*``), or
    its host and port (``hooks.internal:8443``)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or _bypassed(parts.hostname or "", parts.netloc.rpartition("@")[2]):
        return None
    if "://" not in proxy:  # "proxy:3128", as curl and botocore take it
        proxy = f"http://{proxy}"
    return Proxy(proxy, f"{parts.scheme.upper()}_PROXY")


def _bypassed(host: str, host_port: str) -> bool:
    """Whether NO_PROXY (and, on macOS and Windows, the system's exceptions) sends ``host``
    straight there: as aiohttp reads it, by the host alone (``::1`` for ``[::1]``), and as
    botocore does, by the host and the port (``hooks.internal:8443``, ``[::1]``)."""
    return bool(urllib.request.proxy_bypass(host) or urllib.request.proxy_bypass(host_port))


def proxy_named(url: str) -> Proxy:
    """The environment's proxy at ``url``'s host and port, named by its variable: botocore's
    errors give the proxy's URL with its credentials masked (``http://***:***@host:port``)."""
    wanted = Proxy(url, "").shown
    for scheme, value in urllib.request.getproxies_environment().items():
        if scheme in ("http", "https"):
            candidate = Proxy(value if "://" in value else f"http://{value}", "")
            if candidate.shown == wanted:
                return Proxy(url, f"{scheme.upper()}_PROXY")
    return Proxy(url, "HTTPS_PROXY")


def proxy_problem(proxy: Proxy, error: object) -> str:
    """What the proxy did with a request, and what to change, never its credentials: it
    answered the tunnel's CONNECT with a refusal (``error`` has its ``status``), or it could not
    be reached (``error`` is, or has as ``os_error``, the OSError)."""
    status = getattr(error, "status", None)
    if isinstance(status, int) and status:
        return proxy_refusal(proxy, status, str(getattr(error, "message", "") or ""))
    cause = getattr(error, "os_error", error)
    said = getattr(cause, "strerror", None) or cause or "no answer"
    return (
        f"cannot connect to the proxy {proxy.shown} ({said}): check {proxy.variable} and that "
        "the proxy runs"
    )


def proxy_refusal(proxy: Proxy, status: int, said: str) -> str:
    """A proxy's refusal of a request (407: it wants credentials; 403: its policy), with what
    to change: credentials in the proxy's variable, or an allowed host or NO_PROXY."""
    answered = f"the proxy {proxy.shown} ({proxy.variable}) answered {status}"
    answered += f" {said}" if said else ""
    if status == 407:
        return (
            f"{answered}: it asks for credentials: give its user and password in "
            f"{proxy.variable}, before its host (user:password@host:port)"
        )
    return (
        f"{answered}: have the proxy allow the URL's host, or list the host in NO_PROXY when "
        "the worker reaches it without the proxy"
    )
