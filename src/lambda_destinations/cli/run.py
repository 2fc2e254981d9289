"""`run` (the worker) and `migrate` (the store's schema)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import click
import structlog

from lambda_destinations.cli._app import (
    EXIT_OK,
    EXIT_TASK_FAILED,
    EXIT_UNREACHABLE,
    command,
    fail,
    say_last,
)
from lambda_destinations.cli._common import aws_errors
from lambda_destinations.cli._numbers import Whole
from lambda_destinations.cli._options import hide_password, settings_options
from lambda_destinations.config import Settings

# The worker, its handlers and the store are imported by the commands that run them, so that
# `run --help` and `migrate --help` load none of them.
if TYPE_CHECKING:
    from lambda_destinations.handlers.registry import HandlerRegistry
    from lambda_destinations.worker import OpsServer, Stats, Worker

log = structlog.get_logger("lambda_destinations.cli")


ABORT_RELEASE = 1.0  # a second signal: seconds spent trying to release what is in flight
ABORT_GRACE = 0.5  # past the second signal's release attempt, exit even if the loop is stuck


def exit_now(code: int) -> None:
    """Leave the process at once (buffers flushed), skipping the event loop's clean-up."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


# SIGHUP as SIGTERM: a closed terminal or ssh session sends it, and its default action would
# end the process at once, in-flight messages hidden and their claims held until they expire.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def install_signal_handlers(worker: Worker) -> Callable[[], None]:
    """SIGTERM/SIGINT/SIGHUP stop the worker gracefully; a second one exits at once."""
    loop = asyncio.get_running_loop()
    received: list[int] = []
    aborting: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        if received:
            if aborting:
                return
            # Try for at most a second to make what is in flight visible again; the rest
            # reappears when its visibility timeout ends: nothing is lost.
            log.warning("second signal; releasing what is in flight and exiting at once")
            code = 128 + signum
            timer = threading.Timer(ABORT_RELEASE + ABORT_GRACE, exit_now, args=(code,))
            timer.daemon = True
            timer.start()
            aborting.append(asyncio.create_task(worker.abort(ABORT_RELEASE)))
            aborting[0].add_done_callback(lambda _done: exit_now(code))
            return
        received.append(signum)
        worker.stats.stopped_by = signum
        log.info(
            "signal received; shutting down (again to exit at once)",
            signal=signal.Signals(signum).name,
        )
        worker.stop()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)

    return remove


@contextlib.asynccontextmanager
async def ops_server(
    worker: Worker, host: str, *, any_port_if_taken: bool = False
) -> AsyncIterator[OpsServer | None]:
    """The ops server (probes, metrics) for the worker's whole life, start-up included."""
    settings = worker.settings
    if not settings.ops_port:
        yield None
        return
    from lambda_destinations.worker import OpsServer

    ops = OpsServer(
        host=settings.ops_host or host,
        port=settings.ops_port,
        health=worker.health,
        readiness=worker.readiness,
        metrics=worker.metrics.render,
    )
    await ops.start(
        any_port_if_taken=any_port_if_taken
        and settings.ops_port == Settings.model_fields["ops_port"].default
    )
    worker.spawn("ops-server", ops.watch())
    try:
        yield ops
    finally:
        await ops.close()


async def run_worker(
    settings: Settings,
    *,
    once: bool,
    registry: HandlerRegistry | None = None,
    on_started: Callable[[Worker], Awaitable[None]] | None = None,
    ops_host: str = "0.0.0.0",  # noqa: S104 - a container's probes come from outside it
    local: bool = False,
    on_listening: Callable[[Settings], None] | None = None,
) -> Stats:
    """Start, run until stopped (or drained), stop: the one path the CLI and `dev` share.

    With ``once``, SQS or the store unreachable for ``once_timeout`` raises StartTimedOut.
    ``local`` (``dev``): a default ops port in use is replaced by a free one.
    ``on_listening`` gets the settings with the ops port the ops server took, once it
    listens and before the worker starts (``dev`` writes them for the folder's commands).
    """
    from lambda_destinations.worker import Worker

    worker = Worker(settings, registry=registry)
    worker.check_settings()  # a setting's own error before the ops port's, which may be taken
    remove = install_signal_handlers(worker)
    try:
        async with ops_server(worker, ops_host, any_port_if_taken=local) as ops:
            if on_listening is not None:
                on_listening(settings.model_copy(update={"ops_port": ops.port if ops else 0}))
            await worker.start(give_up_after=settings.once_timeout if once else None)
            try:
                if on_started is not None:
                    await on_started(worker)
                return await worker.run(once=once)
            finally:
                await worker.close()
                if worker.abandoned:
                    # Handlers that ignore cancellation would hold asyncio.run() past the
                    # deadline; their messages were released already.
                    log.warning(
                        "handlers ignored cancellation; exiting without them: a handler must "
                        "let CancelledError through (re-raise it after any clean-up)",
                        count=worker.abandoned,
                        handlers=worker.running_handlers(),
                    )
                    exit_now(EXIT_TASK_FAILED if worker.supervisor.failures else EXIT_OK)
    finally:
        remove()


def run_or_exit(main: Coroutine[Any, Any, Stats], event_loop: str = "auto") -> Stats:
    """asyncio.run(main) on the ``event_loop`` setting's loop, turning a dead task, an
    unreachable start or a store gone from under the worker into one line + code."""
    try:
        return _run_to_the_end(main, event_loop)
    finally:
        # A Ctrl-C before the loop ran ``main`` (the worker's modules still importing) leaves
        # it unstarted: closed, it says nothing; left, Python warned it was never awaited.
        main.close()


def _run_to_the_end(main: Coroutine[Any, Any, Stats], event_loop: str) -> Stats:
    from lambda_destinations.errors import StoreGone
    from lambda_destinations.worker import StartTimedOut, TaskFailed

    # A fatal signal in C code (SQLite's mapping of its -shm file gives SIGBUS when the file
    # turns unwritable under it) ends the process at once: without this, with no line at all.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    try:
        with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
            return runner.run(main)
    except TaskFailed as exc:
        fail(str(exc), EXIT_TASK_FAILED)
    except (StartTimedOut, StoreGone) as exc:
        fail(str(exc), EXIT_UNREACHABLE)


def loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the worker's loop: uvloop's for ``auto`` (when installed) and ``uvloop``;
    None, asyncio's own, for ``asyncio`` (the settings refused ``uvloop`` without it)."""
    if event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def summary_line(summary: dict[str, Any]) -> str:
    """The counts of ``Stats.as_dict()`` a person reads: what came in and how each ended."""
    line = (
        "received {received} · acked {acked} · retried {retried} · quarantined {quarantined} "
        "· released {released} · duplicates {duplicates}".format(**summary)
    )
    if unconfirmed := summary.get("unconfirmed"):
        line += f" · unconfirmed {unconfirmed}"
    return line


def print_summary(stats: Stats, *, as_json: bool) -> None:
    summary = stats.as_dict()
    click.echo(json.dumps(summary) if as_json else summary_line(summary))


def end_job(stats: Stats) -> None:
    """After a ``--once`` job's summary: a job a signal cut short exits as a command that
    signal stopped (130 for Ctrl-C), its queues not drained; one whose acked messages' deletes
    SQS did not all confirm did not end clean either: one line saying so, exit 4."""
    if signum := stats.stopped_by:
        words = "interrupted" if signum == signal.SIGINT else "terminated"
        say_last(
            f"{words}: the queues were not drained (the summary counts what was)", 128 + signum
        )
        raise SystemExit(128 + signum)
    if stats.unconfirmed:
        fail(
            f"SQS did not confirm the deletes of {stats.unconfirmed} acked messages: they come "
            "back when their visibility timeout ends, and a run then acks them as duplicates "
            "(their handlers do not run again): mend what the warnings above name (SQS away, a "
            "permission refused) and run it again",
            EXIT_UNREACHABLE,
        )


@command("run")
@click.option("--once", is_flag=True, help="Drain the queues until they answer empty, then exit.")
@click.option(
    "--concurrency",
    type=Whole(1, 1000),
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

    Stops on SIGTERM, SIGHUP or Ctrl-C: in-flight handlers get the grace period, unfinished
    messages are made visible again, then it exits 0 (`--once`: 130 after the summary, 143
    for SIGTERM: not drained). A second signal exits at once. Exits 7
    when one of its long-lived tasks died (restart it), 4 when `--once` cannot reach SQS or
    the store.
    """
    if concurrency is not None:
        settings = settings.model_copy(update={"concurrency": concurrency})
    if as_json and not once:
        # Warned, not refused (dev refuses it): a deployment that passes it must keep starting.
        log.warning(
            "--json goes with --once, whose summary it prints as JSON; ignored, the worker "
            "runs on (--log-format json: its logs as JSON)"
        )
    with aws_errors(settings):  # a start refused by the endpoint: its line names where it was set
        stats = run_or_exit(
            run_worker(settings, once=once, on_started=_collect_less), settings.event_loop
        )
    if once:
        print_summary(stats, as_json=as_json)
        end_job(stats)
    raise SystemExit(EXIT_OK)


async def _collect_less(worker: Worker) -> None:
    """``run`` has a process of its own: spend less of each message on the cyclic garbage
    collector (in ``bench/compare.py``-sized drains, about 60 µs a message with Python's
    defaults, 25 after the freeze, none with the threshold). What exists once the worker has
    started (modules, clients, settings, compiled statements) lives as long as it does: frozen,
    no collection walks it again. Each message allocates and frees thousands of objects, nearly
    all freed by their reference counts; a first-generation threshold of 10,000 rather than 700
    lets them go before a collection looks at them, and still collects what cycles leave."""
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


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

    from lambda_destinations.errors import StoreMisconfigured, StoreUnavailable
    from lambda_destinations.store import Store

    opened = Store.from_url(settings.store)
    opened.refuse_in_memory("it would be migrated, then gone when the command exits")
    where = hide_password(settings.store)
    path = getattr(opened, "path", None)
    if check and path is not None and not path.exists():
        # --check only reads: it says so of a SQLite file not made yet, and does not make one
        # (empty, 16 KB, beside the path a worker was meant to find).
        from lambda_destinations.store.migrations import MIGRATIONS

        versions = ", ".join(str(m.version) for m in MIGRATIONS)
        click.echo(f"{where}: {path} does not exist yet; pending migrations {versions}")
        raise SystemExit(1)

    async def go() -> tuple[list[int], list[int], StoreUnavailable | None]:
        async with opened as store:
            pending = await store.pending_migrations()
            if check:
                return pending, [], None
            applied = await store.migrate()
            try:
                # SQLite checkpoints at close too, but says nothing when that fails.
                await store.checkpoint()
            except StoreMisconfigured:
                raise  # a read-only file: nothing could have been applied, exit 3
            except StoreUnavailable as exc:
                return pending, applied, exc
            return pending, applied, None

    pending, applied, unfolded = asyncio.run(go())
    if check:
        if pending:
            click.echo(f"{where}: pending migrations {', '.join(map(str, pending))}")
            raise SystemExit(1)
        click.echo(f"{where}: up to date")
        return
    message: Any = ", ".join(map(str, applied)) if applied else "nothing to apply"
    click.echo(f"{where}: {message if not applied else 'applied ' + message}")
    if unfolded is not None:
        # Applied and safe, but the store is left on a disk with no room: exit 4, as for a
        # migration the disk stopped part-way, not 0 for a worker to start on it.
        raise StoreUnavailable.at(
            unfolded.shown or where,
            "the schema is up to date, but its write-ahead log (the file's -wal) could not be "
            f"copied into the database file: {unfolded.problem or unfolded}; the log keeps "
            "every change meanwhile, and the next process to open the store copies it",
        ) from unfolded
