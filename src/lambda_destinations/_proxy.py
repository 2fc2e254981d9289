"""The egress proxy the environment names for a URL, chosen as botocore chooses it for AWS calls:
``HTTPS_PROXY`` for https://, ``HTTP_PROXY`` for http:// (or their lower-case names), none for a
host ``NO_PROXY`` lists. aiohttp takes none of them unless told, so the webhook handler asks
here."""

from __future__ import annotations

import base64
import dataclasses
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
        """The proxy as a line names it: scheme, host and port, never its credentials."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

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
    lists its host (a name, a domain suffix such as ``.internal``, an address, or ``*``)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    # proxy_bypass: NO_PROXY (and, on macOS and Windows, the system's exceptions), as
    # botocore and aiohttp read it
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    if "://" not in proxy:  # "proxy:3128", as curl and botocore take it
        proxy = f"http://{proxy}"
    return Proxy(proxy, f"{parts.scheme.upper()}_PROXY")
