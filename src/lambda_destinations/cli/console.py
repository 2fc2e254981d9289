"""``console``: the browser console over the same store and settings as the other commands."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import TYPE_CHECKING

import click

from lambda_destinations._urls import listen_problem
from lambda_destinations.cli._app import EXIT_CONFIG, command, echo_error, fail
from lambda_destinations.cli._numbers import Whole
from lambda_destinations.cli._options import not_empty, settings_options
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError, LambdaDestinationsError
from lambda_destinations.redact import echoed

# The console (aiohttp, its templates, the AWS clients) is imported when it serves, so that
# `console --help` loads none of it.
if TYPE_CHECKING:
    from lambda_destinations.console import ConsoleOptions
    from lambda_destinations.console.security import PublicUrl

PUBLIC_URL_ENV = "LAMBDA_DESTINATIONS_CONSOLE_PUBLIC_URL"


# The shortest token a console beyond loopback takes (a new one is 32 characters).
MIN_EXPOSED_TOKEN = 16


def console_options(host: str, port: int, read_only: bool, public_url: str = "") -> ConsoleOptions:
    """The console's options; the token from the environment, or a new one."""
    from lambda_destinations.console import TOKEN_ENV, ConsoleOptions, new_token

    # A secret made from a file (kubectl create secret --from-file, echo > file) ends in a
    # newline no browser or Bearer header sends: kept, it matched nothing, locking everyone out.
    given = (os.environ.get(TOKEN_ENV) or "").strip()
    options = ConsoleOptions(
        host=host,
        port=port,
        token=given or new_token(),
        read_only=read_only,
        create_store=False,  # it serves the worker's store: a new, empty one would show nothing
        token_generated=not given,
        public=_public(public_url),
    )
    if not options.open_reads and len(options.token) < MIN_EXPOSED_TOKEN:
        # Beyond loopback the token is all that guards every page: a short one can be guessed.
        where = f"served at {echoed(public_url.strip())}" if public_url else f"on {host}"
        raise ConfigError(
            f"{TOKEN_ENV} is {len(options.token)} characters, too short for a console {where}: "
            f"give one of at least {MIN_EXPOSED_TOKEN} (python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'), or unset it to have a new one each start"
        )
    return options


def _public(url: str) -> PublicUrl:
    """``--public-url`` read (no proxy: empty); ConfigError naming what is wrong with it."""
    from lambda_destinations.console.security import PUBLIC_URL_EXAMPLE, PublicUrl

    if not url.strip():
        return PublicUrl()
    try:
        return PublicUrl.parse(url)
    except ValueError as exc:
        raise ConfigError(
            f"--public-url {echoed(url)!r}: {exc}: give the address browsers open, such as "
            f"{PUBLIC_URL_EXAMPLE}"
        ) from None


def announce(options: ConsoleOptions, *, indent: str = "") -> str:
    """Where the console is, and how to sign in to act (the login URL carries a new token)."""
    from lambda_destinations.console import TOKEN_ENV

    lines = [f"console    {options.url()}"]
    if options.public.origin:  # the first line, for a program that reads where it listens
        lines.insert(0, f"listening  {options.listen_url()}")
    if options.read_only:
        lines.append("           read-only: no actions")
    # Signing in is to act, or on a read-only console to read where reading needs it (beyond
    # loopback, behind a proxy): a token made at start is then in no hand but this line's.
    signs_in = not (options.read_only and options.open_reads)
    if signs_in and options.token_generated:
        lines.append(f"sign in    {options.url('/login?token=' + options.token)}")
    elif signs_in:
        lines.append(f"sign in    {options.url('/login')} with ${TOKEN_ENV}")
    if options.public.origin:
        lines.append("           behind a proxy: every page needs the token")
    elif not options.open_reads:
        lines.append("           not on loopback: every page needs the token")
    return "\n".join(indent + line for line in lines)


async def serve_alongside(settings: Settings, port: int) -> None:
    """The console on 127.0.0.1 next to another command (``dev``), until cancelled.

    A taken ``port`` falls back to a free one; a console that cannot start says why in one
    line and leaves the other command running.
    """
    from lambda_destinations.console import serve

    options = console_options("127.0.0.1", port, read_only=False)

    def ready(actual: ConsoleOptions) -> None:
        click.echo(announce(actual, indent="  "), err=True)

    try:
        try:
            await serve(settings, options, ready)
        except OSError:
            await serve(settings, dataclasses.replace(options, port=0), ready)
    except (OSError, LambdaDestinationsError) as exc:
        echo_error(f"  console    not started: {exc}")


@command("console")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=not_empty("give 0.0.0.0 for every interface, or 127.0.0.1 for this machine only"),
    help="Address to listen on.",
)
@click.option("--port", type=Whole(0, 65535), default=8000, show_default=True, help="0: any.")
@click.option(
    "--read-only", is_flag=True, help="Show everything, change nothing: no action, no DLQ peek."
)
@click.option(
    "--public-url",
    envvar=PUBLIC_URL_ENV,
    metavar="URL",
    callback=not_empty(
        "give the address browsers open, such as https://ops.example.com/, or leave the "
        "option out when no reverse proxy serves the console"
    ),
    help="The address browsers open when a reverse proxy serves the console "
    "(https://ops.example.com/, or with the path prefix the proxy strips).",
)
@settings_options
def console_command(
    settings: Settings, host: str, port: int, read_only: bool, public_url: str | None
) -> None:
    """Serve the browser console: failures, replays, DLQs and quarantine.

    Reading needs no sign-in on 127.0.0.1. Every action needs the token: set
    LAMBDA_DESTINATIONS_CONSOLE_TOKEN, or use the sign-in URL printed at start (a new token
    each start). Actions are recorded in the store with `console` and your name.

    \b
    Examples:
      lambda-destinations console
      lambda-destinations console --port 8080 --read-only
      LAMBDA_DESTINATIONS_CONSOLE_TOKEN=... lambda-destinations console --host 0.0.0.0
      lambda-destinations console --public-url https://tools.example.com/lambda-destinations/
    """
    from lambda_destinations.console import serve
    from lambda_destinations.store import Store

    # Before the port is bound: an in-memory store would show nothing, and keep no action.
    Store.from_url(settings.store, create=False).refuse_in_memory()
    options = console_options(host, port, read_only, public_url or "")

    def ready(actual: ConsoleOptions) -> None:
        click.echo(announce(actual), err=True)

    try:
        asyncio.run(serve(settings, options, ready))
    except OSError as exc:
        what, part = listen_problem(host, port, exc)
        fail(f"{what}: choose another --{part}", EXIT_CONFIG)
