"""``prune``: delete what the retention settings no longer keep, and give the space back."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import click

from lambda_destinations.cli._app import EXIT_USAGE, command, fail
from lambda_destinations.cli._common import dumps, format_time, opened_store
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import render_table
from lambda_destinations.config import Settings
from lambda_destinations.store import PruneKind, Vacuumed
from lambda_destinations.times import parse_when, utcnow
from lambda_destinations.worker.retention import (
    PruneReport,
    cutoffs,
    prune_store,
    retention_days,
)


@command("prune")
@click.option(
    "--older-than",
    metavar="WHEN",
    help="Delete what is older than this (30d, 12h, or 2024-05-01) instead of each kind's "
    "retention; kinds kept forever, and open failures unless keep_open_failures_days is set, "
    "are kept.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option(
    "--vacuum",
    is_flag=True,
    help="SQLite: then rewrite the file to its smallest size (VACUUM: needs as much free disk "
    "as the file, and holds the write lock while it runs).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@settings_options
def prune_command(
    settings: Settings, older_than: str | None, dry_run: bool, vacuum: bool, as_json: bool
) -> None:
    """Delete what the retention settings no longer keep, in small batches.

    Successes are kept keep_successes_days (7), resolved failures keep_failures_days (90),
    open failures until resolved (or keep_open_failures_days), quarantined messages and replay
    attempts 90 days (an unresolved failure's attempts as long as it); an invocation's
    deliveries and handler runs go with it. The worker also prunes by itself every
    prune_interval seconds; this runs it now. Keep successes longer than the queues' message
    retention if a redelivered message must never run twice.

    \b
    Examples:
      lambda-destinations prune --dry-run
      lambda-destinations prune --older-than 30d
      lambda-destinations prune --vacuum
    """
    before = _cutoffs(settings, older_than)
    report = PruneReport()

    async def go() -> tuple[PruneReport, Vacuumed | None]:
        async with opened_store(settings, writes=not dry_run) as store:
            await prune_store(
                store, before, batch=settings.prune_batch, dry_run=dry_run, report=report
            )
            if vacuum and not store.vacuums:
                click.echo(
                    "note: --vacuum applies to SQLite only; PostgreSQL's autovacuum reclaims space",
                    err=True,
                )
            elif vacuum and dry_run:
                click.echo("note: --dry-run runs no VACUUM", err=True)
            elif vacuum:
                return report, await store.vacuum()
            return report, None

    try:
        report, vacuumed = asyncio.run(go())
    except BaseException:
        _say_cut_short(report)
        raise
    _print(report, before, vacuumed, as_json)
    if not before:  # an empty table said nothing of why
        click.echo(
            "nothing to prune: every kind is kept forever (keep_successes_days, "
            "keep_failures_days, keep_quarantine_days and keep_replays_days are 0, and "
            "--older-than keeps what they keep): set one above 0 to prune its kind",
            err=True,
        )


def _cutoffs(settings: Settings, older_than: str | None) -> dict[PruneKind, dt.datetime]:
    """Each kind's cutoff: its retention's, or ``--older-than`` (refused in the future)."""
    before = cutoffs(retention_days(settings))
    if older_than is None:
        return before
    try:
        moment = parse_when(older_than)
    except ValueError as exc:
        fail(f"--older-than: {exc}", EXIT_USAGE)
    if moment > utcnow():
        fail(
            f"--older-than {older_than} is in the future: nothing would be kept: give a "
            "past date or an age such as 30d",
            EXIT_USAGE,
        )
    return dict.fromkeys(before, moment)


def _print(
    report: PruneReport,
    before: dict[PruneKind, dt.datetime],
    vacuumed: Vacuumed | None,
    as_json: bool,
) -> None:
    if as_json:
        click.echo(
            dumps(
                {
                    "dry_run": report.dry_run,
                    "rows": {kind.value: n for kind, n in report.rows.items()},
                    "before": {kind.value: moment.isoformat() for kind, moment in before.items()},
                    "bytes_reclaimed": report.bytes_reclaimed,
                    "vacuum": dataclasses.asdict(vacuumed) if vacuumed else None,
                }
            )
        )
        return
    verb = "WOULD DELETE" if report.dry_run else "DELETED"
    rows = [[kind.value, format_time(before[kind]), report.rows.get(kind, 0)] for kind in before]
    if rows:  # none: every kind kept forever, which the caller's line says
        click.echo(render_table(["KIND", "OLDER THAN (UTC)", verb], rows, right=(2,)))
    if report.bytes_reclaimed:
        click.echo(f"{_size(report.bytes_reclaimed)} given back to the disk", err=True)
    if vacuumed:
        click.echo(
            f"VACUUM: the file and its write-ahead log took {_size(vacuumed.bytes_before)}, "
            f"now {_size(vacuumed.bytes_after)}",
            err=True,
        )


def _say_cut_short(report: PruneReport) -> None:
    """What a prune stopped midway (Ctrl-C, the store lost) deleted before it stopped: those
    rows are gone, though no table follows."""
    if report.dry_run or not any(report.rows.values()):
        return
    done = ", ".join(f"{kind.value} {n}" for kind, n in report.rows.items() if n)
    total = sum(report.rows.values())
    click.echo(
        f"stopped after deleting {total} row{'s' if total != 1 else ''} ({done}): the rest "
        "are left for the next prune (run it again, or the worker's own every prune_interval)",
        err=True,
    )


def _size(size: int) -> str:
    """Bytes as a person reads them: 12.3 MB, or 412 kB below a megabyte (a dev store)."""
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
