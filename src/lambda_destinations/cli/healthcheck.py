"""`healthcheck`: the container's HEALTHCHECK, asking the worker's ops server (no AWS imports)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import click

from lambda_destinations._urls import is_site_path
from lambda_destinations.cli._app import command, fail
from lambda_destinations.cli._numbers import FiniteFloatRange
from lambda_destinations.cli._options import settings_options
from lambda_destinations.config import Settings

# Longer than a container's HEALTHCHECK would wait; far below what a socket refuses.
MAX_TIMEOUT = 3600


def _path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--path``: an absolute path on the ops server, as ``/readyz``."""
    if not is_site_path(value):
        raise click.BadParameter(f"{value!r} is not a path: give one starting with /, as /readyz")
    return value


@command("healthcheck")
@click.option(
    "--path", default="/healthz", show_default=True, callback=_path, help="/healthz or /readyz."
)
@click.option(
    "--timeout",
    "seconds",
    type=FiniteFloatRange(min=0, min_open=True, max=MAX_TIMEOUT),
    default=3.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
@settings_options
def healthcheck_command(settings: Settings, path: str, seconds: float) -> None:
    """Ask this container's worker for its health: exit 0 when it answers 200, else 1.

    For a container's HEALTHCHECK: it needs nothing beyond the image.

    \b
    Examples:
      lambda-destinations healthcheck
      lambda-destinations healthcheck --path /readyz
    """
    if not settings.ops_port:
        fail("the ops server is off (LAMBDA_DESTINATIONS_OPS_PORT=0): nothing to ask")
    url = f"http://{_loopback_or(settings.ops_host)}:{settings.ops_port}{path}"
    # No proxy: the worker is in this container, and urlopen would send the question to the
    # HTTP_PROXY a company's image sets (unless NO_PROXY lists the loopback), which cannot
    # reach it: a healthy worker found unhealthy, restarted again and again.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=seconds) as response:
            click.echo(f"{url}: {response.status}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # the ops server's own 404 body is "404: Not Found"
            fail(f"{url}: 404, the ops server has no such page: ask /healthz or /readyz (--path)")
        fail(f"{url}: {exc.code} {exc.read().decode(errors='replace')[:500]}")
    except OSError as exc:
        fail(f"{url}: {_no_answer(exc, seconds, settings)}")


def _loopback_or(host: str | None) -> str:
    """The host to ask, as a URL writes it: loopback for a server listening on every address
    of its family (``::`` listens on IPv6 alone, so it is asked on ``::1``, not 127.0.0.1), an
    IPv6 address in brackets."""
    host = host or "127.0.0.1"
    if host == "0.0.0.0":  # noqa: S104 - listening on every IPv4 address: ask on loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]" if ":" in host else host


def _no_answer(exc: OSError, seconds: float, settings: Settings) -> str:
    """Why the ops server did not answer, and what to check: urllib wraps the socket's error
    in one whose text is ``<urlopen error [Errno 111] Connection refused>``."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        if settings.from_dev():  # the port dev wrote in this folder: dev's own ops server
            return f"nothing listens there: {settings.endpoint_fix()}"
        return (
            "nothing listens there: is the worker running, with the LAMBDA_DESTINATIONS_OPS_PORT "
            "it was started with?"
        )
    if isinstance(reason, TimeoutError):
        return f"no answer within {seconds:g} s (--timeout)"
    if isinstance(reason, socket.gaierror):
        return (
            f"the host does not resolve ({reason.strerror or reason}): set "
            "LAMBDA_DESTINATIONS_OPS_HOST as the worker has it, or leave it unset for loopback"
        )
    detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
    return f"no answer ({detail})"
