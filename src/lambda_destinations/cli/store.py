"""``store backup`` and ``store copy``: a SQLite store backed up while the worker writes, and
a store's records carried into another (SQLite to PostgreSQL, or back)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from lambda_destinations.cli._app import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    fail,
    group,
)
from lambda_destinations.cli._common import dumps, opened_store, subcommand
from lambda_destinations.cli._numbers import Whole
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import plural, render_table
from lambda_destinations.config import Settings
from lambda_destinations.errors import (
    BackupError,
    ConfigError,
    NewerSchema,
    StoreMisconfigured,
    StoreUnavailable,
    StoreUrlProblem,
)
from lambda_destinations.redact import echoed, mask_url
from lambda_destinations.store import Backup, Store


@group("store")
def store_group() -> None:
    """Back up the store, or copy its records into another store (SQLite to PostgreSQL).

    \b
    Examples:
      lambda-destinations store backup /backups/results-$(date +%F).db
      lambda-destinations store copy --to postgresql://ld@db.internal/lambda_destinations
    """


# -- backup -----------------------------------------------------------------------------------


@subcommand(store_group, "backup")
@click.argument("path", type=click.Path())
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@settings_options
def backup_command(settings: Settings, path: str, force: bool, as_json: bool) -> None:
    """Copy a SQLite store, as of one moment, into a new file, while the worker writes.

    The copy holds every record committed before it began, opens on its own (no -wal file
    beside it) and passes SQLite's check; the worker's saves go on meanwhile. A PostgreSQL
    store is backed up with pg_dump: the command says how.

    \b
    Examples:
      lambda-destinations store backup /backups/results.db
      lambda-destinations store backup /backups/results.db --force
    """
    store = Store.from_url(settings.store, create=False)
    if (dump := store.dump_command()) is not None:
        fail(
            f"a PostgreSQL store is backed up with pg_dump, on a machine that reaches the "
            f"server itself (not a pooler): {dump} (restore into an empty database with "
            "pg_restore --no-owner --dbname=URL lambda-destinations.dump)",
            EXIT_USAGE,
        )
    target = _check_target(path, force, store)

    async def go() -> Backup | None:
        async with opened_store(settings, writes=False) as opened:
            return await opened.backup(target, replace=force)

    try:
        made = asyncio.run(go())
    except FileExistsError:
        _exists(target)
    except BackupError as exc:
        fail(str(exc), EXIT_FAILED)
    assert made is not None  # a SQLite file: refused in memory by opened_store
    if as_json:
        click.echo(
            dumps(
                {
                    "store": mask_url(settings.store),
                    "path": str(made.path),
                    "bytes": made.bytes,
                    "seconds": round(made.seconds, 3),
                }
            )
        )
        return
    click.echo(
        f"backed up {mask_url(settings.store)} to {made.path}: {_size(made.bytes)} "
        f"in {made.seconds:.1f} s"
    )


def _check_target(given: str, force: bool, store: Store) -> Path:
    """The backup's PATH; usage errors (exit 2) for one that cannot be: nothing is read before."""
    path = Path(given)
    try:
        path.exists()
    except OSError as exc:  # a name too long: before, OSError's traceback
        fail(f"cannot use {echoed(str(path))} ({exc.strerror}): give another path", EXIT_USAGE)
    live = getattr(store, "path", None)
    if live is not None and _same_file(path, Path(live)):
        fail(f"{path} is the store itself: give a path for the copy", EXIT_USAGE)
    if path.is_dir():
        fail(f"{path} is a directory: give the backup file's path in it", EXIT_USAGE)
    if given.endswith(("/", os.sep)):  # a folder (`/backups/today/`), not a file's name
        _no_folder(path / "backup")
    if not path.absolute().parent.is_dir():
        _no_folder(path)
    if path.exists() and not force:
        _exists(path)
    if path.exists() and not path.is_file():
        # a device or a pipe (/dev/null): the rename would put the copy in its place
        fail(
            f"{path} is not a regular file: --force replaces only a file: give a file's path",
            EXIT_USAGE,
        )
    return path


def _no_folder(path: Path) -> NoReturn:
    """The usage error for a PATH whose folder is not one: missing, or a file in its place
    (creating the folder, as a missing one's line said, cannot work there)."""
    for above in path.parents:
        if above.exists():
            if not above.is_dir():
                fail(f"{above} is not a folder: give a path in a folder", EXIT_USAGE)
            break
    fail(f"{path.parent} does not exist: create the folder, or give another path", EXIT_USAGE)


def _same_sqlite_file(source: Store, target: Store) -> bool:
    """Whether two SQLite stores are one file, however their URLs spell its path."""
    live, copy = getattr(source, "path", None), getattr(target, "path", None)
    return live is not None and copy is not None and _same_file(Path(copy), Path(live))


def _same_file(path: Path, live: Path) -> bool:
    with contextlib.suppress(OSError):
        if path.exists() and path.samefile(live):
            return True
    names = {live.absolute(), *(live.absolute().with_name(live.name + s) for s in ("-wal", "-shm"))}
    return path.absolute() in names


def _exists(path: Path) -> NoReturn:
    fail(f"{path} exists: give a new path, or --force to replace it", EXIT_USAGE)


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


# -- copy -------------------------------------------------------------------------------------


@subcommand(store_group, "copy")
@click.option(
    "--to", "to_url", required=True, metavar="URL", help="The store to copy into: postgresql://…"
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Keep the rows the target already holds and add the missing ones (a copy that was "
    "interrupted, run again).",
)
@click.option(
    "--batch",
    type=Whole(min=1, max=10_000),
    default=500,
    show_default=True,
    help="Rows per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the per-table counts as JSON.")
@settings_options
def copy_command(
    settings: Settings, to_url: str, skip_existing: bool, batch: int, as_json: bool
) -> None:
    """Copy every record of the store into another, ids and keys kept; migrates the target.

    Stop the worker first: rows it writes during the copy may be missed. A target that holds
    records is refused, unless --skip-existing; the counts of both sides are compared at the
    end (exit 1 if they differ).

    \b
    Examples:
      lambda-destinations store copy --to postgresql://ld@db.internal/lambda_destinations
      lambda-destinations store copy --to postgresql://ld@db.internal/lambda_destinations \\
          --skip-existing
    """
    from lambda_destinations.store.transfer import (
        CopyStopped,
        TableCopy,
        TargetNotEmpty,
        copy_store,
        same_schema,
    )

    same = to_url.strip() == settings.store.strip()
    with _target_errors(to_url):
        target = Store.from_url(to_url)
        target.refuse_in_memory("the copy would be gone when the command exits")
    if same or _same_sqlite_file(Store.from_url(settings.store, create=False), target):
        fail("--to names the store itself: give the URL of the store to copy into", EXIT_USAGE)

    progress = _Progress()

    async def go() -> list[TableCopy]:
        async with opened_store(settings, writes=False) as source:
            await same_schema(source)  # before the target is opened: a refusal makes no file
            with _target_errors(to_url, progress.kept):
                async with target:
                    with progress:
                        return await copy_store(
                            source,
                            target,
                            batch=batch,
                            skip_existing=skip_existing,
                            progress=progress.update,
                        )

    try:
        copies = asyncio.run(go())
    except KeyboardInterrupt:
        if kept := progress.kept():
            click.echo(f"interrupted: {kept}", err=True)
        raise
    except TargetNotEmpty as exc:
        fail(str(exc), EXIT_USAGE)
    except CopyStopped as exc:
        fail(str(exc), EXIT_FAILED)
    except NewerSchema as exc:  # the target's, met as it is migrated (the source's is not one)
        fail(f"store {mask_url(to_url)} (--to): {exc}", EXIT_CONFIG)
    _print_copies(settings.store, to_url, copies, as_json)
    _check_copies(copies)


def _check_copies(copies: list[Any]) -> None:
    """The notes and the failure a finished copy ends with: NULs replaced, counts that differ."""
    if replaced := [f"{c.table} {c.nul_replaced}" for c in copies if c.nul_replaced]:
        click.echo(
            f"note: text values with a NUL character, which PostgreSQL's text cannot hold, "
            f"were copied with U+FFFD in its place ({', '.join(replaced)})",
            err=True,
        )
    differ = [c for c in copies if not c.matches]
    if differ:
        counts = ", ".join(f"{c.table} {c.source_rows} → {c.target_rows}" for c in differ)
        fail(
            f"the counts differ ({counts}): was a worker writing to either store? Stop it, then "
            "run the copy again with --skip-existing",
            EXIT_FAILED,
        )


@contextlib.contextmanager
def _target_errors(to_url: str, kept: Callable[[], str | None] = lambda: None) -> Iterator[None]:
    """The target's URL and connection errors as one line naming ``--to`` (not the store
    setting, which the shared options would name); ``kept`` says, after a connection error
    of either store, what the copy had copied when it stopped (None: nothing)."""
    shown = mask_url(to_url)
    try:
        yield
    except StoreUrlProblem as error:
        exc = _saying_kept(error, kept())
        if exc.shown is not None and exc.shown != shown:
            raise exc from None  # the source's
        config = isinstance(exc, ConfigError | StoreMisconfigured)
        code = EXIT_CONFIG if config else EXIT_UNREACHABLE
        fail(str(exc.named("--to")), code)


def _saying_kept(exc: StoreUrlProblem, kept: str | None) -> StoreUrlProblem:
    """``exc``, a lost connection's, saying what the copy ``kept`` (as ``dlq redrive`` says
    what it moved); a URL or configuration problem, met before any row, as it is."""
    if kept is None or not isinstance(exc, StoreUnavailable) or isinstance(exc, StoreMisconfigured):
        return exc
    if exc.shown is None:
        return type(exc)(f"{exc}; {kept}")
    return type(exc).at(exc.shown, f"{exc.problem}; {kept}", exc.origin)


class _Progress:
    """One progress bar a table, on stderr; counts the rows copied."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._bar: Any = None
        self._table: str | None = None
        self._shown = 0
        self.copied = 0  # rows in batches the target committed, every table's

    def kept(self) -> str | None:
        """What a copy cut short leaves, and the way on; None before any row was copied (a
        plain run again then finishes it)."""
        if not self.copied:
            return None
        return (
            f"the {plural(self.copied, 'row')} copied so far stay in the target: run the copy "
            "again with --skip-existing to add the rest"
        )

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def update(self, table: str, read: int, total: int) -> None:
        if table != self._table:
            self._stack.close()
            self._table, self._shown = table, 0
            self._bar = self._stack.enter_context(
                click.progressbar(
                    length=max(total, 1), label=f"{table:<18}", file=sys.stderr, show_pos=True
                )
            )
        self._bar.update(read - self._shown)
        self.copied += read - self._shown
        self._shown = read


def _print_copies(source: str, target: str, copies: list[Any], as_json: bool) -> None:
    if as_json:
        click.echo(
            dumps(
                {
                    "source": mask_url(source),
                    "target": mask_url(target),
                    "ok": all(c.matches for c in copies),
                    "tables": [
                        {
                            "table": c.table,
                            "source_rows": c.source_rows,
                            "copied": c.copied,
                            "target_rows": c.target_rows,
                        }
                        for c in copies
                    ],
                }
            )
        )
        return
    rows = [[c.table, c.source_rows, c.copied, c.target_rows] for c in copies]
    click.echo(render_table(["TABLE", "SOURCE", "COPIED", "TARGET"], rows, right=(1, 2, 3)))
    click.echo(f"copied {mask_url(source)} to {mask_url(target)}", err=True)
