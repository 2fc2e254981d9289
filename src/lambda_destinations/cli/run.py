"""`run` (the worker) and `migrate` (the store's schema)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import click
import structlog

from lambda_destinations.cli._app import EXIT_OK, command
from lambda_destinations.cli._options import hide_password, settings_options
from lambda_destinations.config import Settings
from lambda_destinations.handlers.registry import HandlerRegistry
from lambda_destinations.store import Store
from lambda_destinations.worker import Stats, Worker

log = structlog.get_logger("lambda_destinations.cli")


def install_signal_handlers(worker: Worker) -> Callable[[], None]:
    """SIGTERM/SIGINT stop the worker gracefully; a second one exits at once."""
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:
            # Unsettled messages reappear when their visibility timeout ends: nothing is lost.
            os._exit(128 + signum)
        received.append(signum)
        log.info("signal received; shutting down (again to exit at once)", signal=signum)
        worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    return remove


async def run_worker(
    settings: Settings,
    *,
    once: bool,
    registry: HandlerRegistry | None = None,
    on_started: Callable[[Worker], Awaitable[None]] | None = None,
) -> Stats:
    """Start, run until stopped (or drained), stop: the one path the CLI and `dev` share."""
    worker = Worker(settings, registry=registry)
    remove = install_signal_handlers(worker)
    try:
        async with worker:
            if on_started is not None:
                await on_started(worker)
            return await worker.run(once=once)
    finally:
        remove()


def print_summary(stats: Stats, *, as_json: bool) -> None:
    summary = stats.as_dict()
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        "received {received} · acked {acked} · retried {retried} · quarantined {quarantined} "
        "· released {released} · duplicates {duplicates}".format(**summary)
    )


@command("run")
@click.option("--once", is_flag=True, help="Drain the queues until they answer empty, then exit.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    help="Messages handled at once, 1 to 1000 [env: LAMBDA_DESTINATIONS_CONCURRENCY].",
)
@click.option("--json", "as_json", is_flag=True, help="With --once: print the summary as JSON.")
@settings_options
def run_command(settings: Settings, once: bool, concurrency: int | None, as_json: bool) -> None:
    """Run the worker on the configured queues.

    \b
    Examples:
      LAMBDA_DESTINATIONS_QUEUES=orders-failures lambda-destinations run
      lambda-destinations run --queues https://sqs.us-east-1.amazonaws.com/123456789012/q --once
      lambda-destinations run --config lambda-destinations.toml

    Stops on SIGTERM or Ctrl-C: in-flight handlers get the grace period, unfinished messages
    are made visible again, then it exits 0. A second signal exits at once.
    """
    if concurrency is not None:
        settings = settings.model_copy(update={"concurrency": concurrency})
    stats = asyncio.run(run_worker(settings, once=once))
    if once:
        print_summary(stats, as_json=as_json)
    raise SystemExit(EXIT_OK)


@command("migrate")
@click.option("--check", is_flag=True, help="Only report pending migrations; exit 1 if any.")
@settings_options
def migrate_command(settings: Settings, check: bool) -> None:
    """Apply the store's pending schema migrations (the worker also does at start).

    \b
    Examples:
      lambda-destinations migrate --store postgresql://app@db.internal/results
      lambda-destinations migrate --check
    """

    async def go() -> tuple[list[int], list[int]]:
        async with Store.from_url(settings.store) as store:
            pending = await store.pending_migrations()
            if check:
                return pending, []
            return pending, await store.migrate()

    pending, applied = asyncio.run(go())
    where = hide_password(settings.store)
    if check:
        if pending:
            click.echo(f"{where}: pending migrations {', '.join(map(str, pending))}")
            raise SystemExit(1)
        click.echo(f"{where}: up to date")
        return
    message: Any = ", ".join(map(str, applied)) if applied else "nothing to apply"
    click.echo(f"{where}: {message if not applied else 'applied ' + message}")
