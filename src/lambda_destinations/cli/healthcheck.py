"""`healthcheck`: the container's HEALTHCHECK, asking the worker's ops server (no AWS imports)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import click

from lambda_destinations._urls import is_site_path
from lambda_destinations.cli._app import command, fail
from lambda_destinations.cli._numbers import FiniteFloatRange
from lambda_destinations.cli._options import settings_options
from lambda_destinations.config import Settings
from lambda_destinations.redact import echoed

# Longer than a container's HEALTHCHECK would wait; far below what a socket refuses.
MAX_TIMEOUT = 3600
# The most of an answer read: the ops server's are a few hundred bytes, its problems included.
MAX_BODY = 64 * 1024
# What --path keeps as typed: every printable ASCII character, a %-escape's % included.
_ASCII = "".join(map(chr, range(0x21, 0x7F)))
NOT_OURS = "is LAMBDA_DESTINATIONS_OPS_PORT the port the worker's ops server listens on?"


def _path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--path``: an absolute path on the ops server, as ``/readyz``; a character past ASCII
    percent-encoded as UTF-8, as a browser sends it (http.client sends ASCII alone)."""
    if not is_site_path(value):
        raise click.BadParameter(f"{value!r} is not a path: give one starting with /, as /readyz")
    return value if value.isascii() else quote(value, safe=_ASCII)


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
    shown = echoed(url)  # a --path pasted wrong is not repeated whole
    not_ours = settings.endpoint_fix() if settings.from_dev() else NOT_OURS
    try:
        status, content_type, body = _ask_within(url, seconds)
    except OSError as exc:  # a connection reset before any answer included
        fail(f"{shown}: {_no_answer(exc, seconds, settings)}")
    except http.client.HTTPException:  # a status line or headers that are not HTTP's
        fail(f"{shown}: answered something that is not HTTP: {not_ours}")
    if body is None:
        fail(f"{shown}: the answer stopped short: try again")
    problem = _problem(status, content_type, body, not_ours)
    if problem is not None:
        fail(f"{shown}: {problem}")
    click.echo(f"{url}: {status}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer, not followed: the ops server sends none, and a probe that
    followed one would ask another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _ask_within(url: str, seconds: float) -> tuple[int, str, bytes | None]:
    """``_ask`` bounded to ``seconds`` in all: a socket's timeout bounds each read alone, so a
    server sending a byte a second would hold the probe (and the container's HEALTHCHECK) for
    hours. ``TimeoutError`` when the whole answer took longer."""
    outcome: list[tuple[int, str, bytes | None] | BaseException] = []

    def ask() -> None:
        try:
            outcome.append(_ask(url, seconds))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=ask, name="healthcheck", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:  # still reading: the daemon thread ends with the process
        raise TimeoutError
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _ask(url: str, seconds: float) -> tuple[int, str, bytes | None]:
    """The status, content type (or "") and body of the answer: None for a body that stopped
    before the length its headers gave."""
    # No proxy: the worker is in this container, and urlopen would send the question to the
    # HTTP_PROXY a company's image sets (unless NO_PROXY lists the loopback), which cannot
    # reach it: a healthy worker found unhealthy, restarted again and again.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)
    try:
        response = opener.open(url, timeout=seconds)
    except urllib.error.HTTPError as exc:  # a status other than 2xx: still the answer
        response = exc
    status, headers = response.status or 0, response.headers
    with response:
        try:
            body: bytes | None = response.read(MAX_BODY)
        except http.client.IncompleteRead:  # a chunked body cut short
            body = None
    length = headers.get("Content-Length", "")
    if body is not None and length.isdigit() and len(body) < min(int(length), MAX_BODY):
        body = None  # fewer bytes than its length, the connection closed
    return status, headers.get("Content-Type", ""), body


def _problem(status: int, content_type: str, body: bytes, not_ours: str) -> str | None:
    """None for the ops server's 200; else what it said, or that it was not the ops server
    that answered (``not_ours``: what to check then)."""
    answer = _json_object(body)
    said = answer.get("status")
    if status == 200 and said in ("alive", "ready"):
        return None
    problems = answer.get("problems")
    if status == 503 and said == "failing" and isinstance(problems, list):
        return f"503, failing: {'; '.join(str(problem) for problem in problems)}"
    if status == 404 and body == b"404: Not Found":  # aiohttp's own, for a path it lacks
        return "404, the ops server has no such page: ask /healthz or /readyz (--path)"
    text = body.decode(errors="replace").strip()
    if status == 400 and text and "\n" not in text:  # its refusal of a request (too long)
        return f"400 {text}"
    of = f" ({content_type})" if content_type else ""
    return f"answered {status}{of}, which is no answer of the worker's ops server: {not_ours}"


def _json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or an empty one when it is none."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser takes
        return {}
    return value if isinstance(value, dict) else {}


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
