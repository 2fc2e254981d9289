"""The port of a URL, checked when the settings are read rather than when a client connects."""

from __future__ import annotations

import urllib.parse

PORT_PROBLEM = "the port is not a number from 0 to 65535"


def check_port(url: str) -> None:
    """ValueError (naming no part of the URL, which may hold a password) when the URL's port
    is no number from 0 to 65535: urllib checks the port only when asked, and aiohttp and the
    database drivers only when they connect, with a traceback."""
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(PORT_PROBLEM) from None
