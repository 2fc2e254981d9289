"""What the operator commands share: selection filters, output formats, times, AWS errors."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import getpass
import io
import json
import shlex
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import click

from lambda_destinations._request_ids import stored_id
from lambda_destinations._text import json_escaped
from lambda_destinations.cli._app import (
    EXIT_USAGE,
    EndpointUnreachable,
    ValueRefused,
    describe_aws_error,
    echo_error,
    fail,
    first_line,
    reports_errors,
)
from lambda_destinations.cli._numbers import LIMIT_MAX, FiniteFloatRange, Whole
from lambda_destinations.cli._options import not_empty
from lambda_destinations.cli._output import takes
from lambda_destinations.config import OUTSIDE_DEV, Settings
from lambda_destinations.errors import NO_REGION
from lambda_destinations.operations.detail import AmbiguousId, whole_id
from lambda_destinations.redact import echoed
from lambda_destinations.store import FailureStatus, InvocationFilter, Store
from lambda_destinations.times import parse_when, utc_text, utcnow, window_backwards

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def operator_identity() -> str:
    """Who runs this command, for the replay ledger and status changes: ``cli user@host``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no USER variable and no passwd entry (some containers)
        user = "unknown"
    return f"cli {user}@{socket.gethostname()}"


def subcommand(
    group: click.Group, name: str, **kwargs: Any
) -> Callable[[Callable[P, R]], click.Command]:
    """Register a command of ``group`` whose user errors are reported in one line."""

    def decorate(func: Callable[P, R]) -> click.Command:
        return group.command(name, **kwargs)(reports_errors(func))

    return decorate


# -- times ------------------------------------------------------------------------------------


_NOW = "lambda_destinations.now"


@contextlib.asynccontextmanager
async def opened_store(settings: Settings, *, writes: bool) -> AsyncIterator[Store]:
    """The store of a one-shot command, never created here. A command that ``writes`` refuses a
    store a newer release migrated with a version that does not let this release write
    (NewerSchema, exit 3) before it changes anything: this release's rows could break what that
    schema expects. Reading goes on. An in-memory store is refused (StoreUrlError, exit 3): it
    would be empty, and what the command writes gone when it exits. So is a database with no
    tables (StoreMisconfigured, exit 3): it is not the worker's, or was never migrated; no
    retry brings its tables, where exit 4 ("cannot be reached") says one might."""
    store = Store.from_url(settings.store, create=False)
    store.refuse_in_memory()  # settings_options names where the URL was set
    async with store:
        await store.check_tables(writes=writes)
        yield store


def command_now() -> dt.datetime:
    """The one "now" of the running command: ``--since 366d`` and a missing ``--until`` (now)
    are 366 days apart, not a few microseconds more."""
    meta = click.get_current_context().meta
    if _NOW not in meta:
        meta[_NOW] = utcnow()
    moment: dt.datetime = meta[_NOW]
    return moment


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_when(value, command_now())
    except ValueError as exc:
        raise ValueRefused(f"--{param.name}: {exc}") from None


def since_option(default: str | None = None, help: str | None = None) -> Callable[[F], F]:
    return click.option(
        "--since",
        callback=_when,
        default=default,
        show_default=default is not None,
        help=help
        or "Only failures at or after this time: 2h, 30m, 7d, or 2024-05-01T12:00Z (UTC "
        "without a zone).",
    )


def until_option(help: str | None = None) -> Callable[[F], F]:
    return click.option(
        "--until",
        callback=_when,
        help=help or "Only failures before this time (same forms as --since).",
    )


# The fix for a request id or key the store has no failure under.
WHOLE_ID_FIX = (
    "give a whole request id or key, as `failures list` shows them, or the first 4 or more "
    "characters of the request id"
)


async def whole_ids(store: Store, idents: Sequence[str]) -> list[str]:
    """``idents`` with the first characters of a request id replaced by the whole one (see
    ``whole_id``); exits 2 on one that starts several."""
    try:
        return [await whole_id(store, ident) for ident in idents]
    except AmbiguousId as exc:
        fail(str(exc), EXIT_USAGE)


def say_no_failure(idents: Sequence[str]) -> None:
    """One error line per request id or key that matches no failure, with the fix (an id cut
    short or mistyped is the usual cause), as `failures show` says it."""
    for ident in idents:
        echo_error(f"error: no failure with request id or key {echoed(ident)!r}: {WHOLE_ID_FIX}")


def say_more(shown: int, more: str) -> None:
    """The line under a table ``--limit`` cut, when more match: a list reads one row past its
    limit to know (a count would read every match, and grow with the store)."""
    click.echo(f"the newest {shown} shown; more {more} (--limit 0: all)", err=True)


def format_time(moment: dt.datetime | None, *, seconds: bool = True) -> str:
    if moment is None:
        return "-"
    return utc_text(moment, "%Y-%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


# -- numbers ----------------------------------------------------------------------------------


def rate_option(*, default: float, help: str) -> Callable[[F], F]:
    """``--rate``: invocations (or messages) per second at most, 0 for no limit."""
    return click.option(
        "--rate",
        type=FiniteFloatRange(min=0, max=100_000),
        default=default,
        show_default=bool(default),
        help=help,
    )


def legacy_function_option(help: str) -> Callable[[F], F]:
    """``--legacy-function``: what to invoke for legacy DLQ messages, which name no function."""
    return click.option(
        "--legacy-function", metavar="NAME|ARN", help=help, callback=invokable_function
    )


def invokable_function(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """A callback: ``value`` as given when it has a form Lambda's Invoke takes (a usage error
    naming the forms when not). Checked before any record is read or Invoke sent: otherwise
    each legacy message's Invoke is refused, or ``invoke``'s by Lambda."""
    if value is not None:
        invokable(value, None)
    return value


def invokable_qualifier(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """A callback: ``value`` as given when it has a form Invoke's Qualifier takes (a version,
    an alias, $LATEST); a usage error naming the forms when not."""
    if value is not None:
        invokable(None, value)
    return value


def invokable(function: str | None, qualifier: str | None, *, param: str | None = None) -> None:
    """A usage error (``param``'s, or that of the parameter being checked) when Lambda's Invoke
    could never take ``function`` with ``qualifier`` (or, with no function, ``qualifier`` of
    any function): nothing is invoked."""
    # Imported here: the schemas package would make every command's start slower.
    from lambda_destinations.schemas import check_invoke_qualifier, check_invoke_target

    try:
        if function is not None:
            check_invoke_target(function, qualifier)
        elif qualifier is not None:
            check_invoke_qualifier(qualifier)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=None if param is None else [param]) from None


# -- request ids ------------------------------------------------------------------------------


def stored_ids(
    _ctx: click.Context, _param: click.Parameter, value: str | tuple[str, ...]
) -> str | tuple[str, ...]:
    """A REQUEST_ID argument's callback: each one as :func:`stored_id` makes it; an empty one
    is a usage error (an unset shell variable: no record has it), as `result ''` says."""
    ids = (value,) if isinstance(value, str) else value
    for ident in ids:
        _ID_GIVEN(_ctx, _param, ident)
    if isinstance(value, str):
        return stored_id(value)
    return tuple(stored_id(one) for one in value)


_ID_GIVEN = not_empty(WHOLE_ID_FIX)


# -- selecting failures -----------------------------------------------------------------------

STATUS_CHOICE = click.Choice([s.value for s in FailureStatus], case_sensitive=False)


def selection_options(
    *, limit_default: int | None
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """The filters every command selecting failures takes; the command gets ``selection``.

    ``selection.statuses`` is None unless ``--status`` was given; ``selection.limit`` is None
    for ``--limit 0``.
    """

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            function_glob: str | None,
            error_type: str | None,
            condition: str | None,
            since: dt.datetime | None,
            until: dt.datetime | None,
            status: tuple[str, ...],
            limit: int | None,
            **kwargs: Any,
        ) -> R:
            if since is not None and until is not None and since >= until:
                fail(window_backwards(since, until), EXIT_USAGE)
            selection = InvocationFilter(
                failed_only=True,
                function_glob=function_glob,
                error_type=error_type,
                condition=condition,
                since=since,
                until=until,
                statuses=[FailureStatus(s.lower()) for s in status] or None,
                limit=limit or None,
            )
            return func(*args, selection=selection, **kwargs)

        decorated: Callable[..., R] = wrapper
        for option in reversed(_selection_option_list(limit_default)):
            decorated = option(decorated)
        return decorated

    return decorate


def _selection_option_list(limit_default: int | None) -> list[Callable[[F], F]]:
    """The click options of :func:`selection_options`, in the order --help lists them."""
    return [
        function_option(help="Function name, shell glob: 'orders-*'."),
        click.option(
            "--error-type",
            callback=not_empty(
                "give an error type (TimeoutError), or - for the failures with none"
            ),
            help="Exact error type: TimeoutError; - for none (the function never ran).",
        ),
        click.option(
            "--condition",
            callback=not_empty(
                "give a condition (RetriesExhausted, EventAgeExceeded), or leave the option "
                "out for every one"
            ),
            help="Exact condition: RetriesExhausted, EventAgeExceeded.",
        ),
        since_option(),
        until_option(),
        click.option(
            "--status",
            type=STATUS_CHOICE,
            multiple=True,
            help=(
                "open, replayed, recovered, ignored or replay (a replay's own record); "
                "repeat for several."
            ),
        ),
        click.option(
            "--limit",
            type=Whole(min=0, max=LIMIT_MAX),
            default=limit_default,
            show_default=limit_default is not None,
            help="At most this many, newest first (0: no limit).",
        ),
    ]


_FUNCTION_GIVEN = not_empty(
    "give a function name or a shell glob ('orders-*'), or leave the option out for every function"
)


def _function_glob(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """``--function``'s callback: an empty one is refused (it matched no function: "no
    failures match"), and so is one with a qualifier or an ARN (``orders-api:live``, as the
    tables show a record's function): no function name holds a colon, so it matched none."""
    value = _FUNCTION_GIVEN(ctx, param, value)
    if value is None or ":" not in value:
        return value
    name = value.rsplit(":function:", 1)[-1].split(":", 1)[0]
    raise click.BadParameter(
        f"{echoed(value)!r} is no function name (a qualifier or an ARN): --function matches "
        "the name alone, which takes in every version and alias of the function: give "
        f"--function {shlex.quote(name) if name else 'NAME'}"
    )


def function_option(help: str) -> Callable[[F], F]:
    """``--function GLOB`` (see :func:`_function_glob`)."""
    return click.option(
        "--function", "function_glob", metavar="GLOB", callback=_function_glob, help=help
    )


def has_filters(selection: InvocationFilter) -> bool:
    return any(
        value is not None
        for value in (
            selection.function_glob,
            selection.error_type,
            selection.condition,
            selection.since,
            selection.until,
            selection.statuses,
        )
    )


# -- output -----------------------------------------------------------------------------------


def output_options(func: Callable[..., R]) -> Callable[..., R]:
    """``--json`` / ``--ndjson`` / ``--csv``; the command gets ``output`` ("table" by default)."""

    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, as_ndjson: bool, as_csv: bool, **kwargs: Any) -> R:
        flags = {"json": as_json, "ndjson": as_ndjson, "csv": as_csv}
        chosen = [name for name, on in flags.items() if on]
        if len(chosen) > 1:
            fail("choose one of --json, --ndjson and --csv", EXIT_USAGE)
        return func(*args, output=chosen[0] if chosen else "table", **kwargs)

    decorated: Callable[..., R] = wrapper
    for option in reversed(
        [
            click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts."),
            click.option("--ndjson", "as_ndjson", is_flag=True, help="One JSON object a line."),
            click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line."),
        ]
    ):
        decorated = option(decorated)
    return decorated


def dumps(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON: characters as they are, but what a terminal acts on as JSON's escapes
    (:func:`~lambda_destinations._text.json_escaped`), or every one that is not ASCII where
    stdout's encoding has no bytes for one of them (see :func:`takes`)."""
    text = json_escaped(json.dumps(value, default=str, indent=indent, ensure_ascii=False))
    return text if takes(text) else json.dumps(value, default=str, indent=indent)


def emit(output: str, records: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Print ``records`` as JSON, NDJSON or CSV (``output`` is not "table")."""
    if output == "json":
        click.echo(dumps(list(records)))
    elif output == "ndjson":
        for record in records:
            click.echo(dumps(record))
    elif output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: _csv_cell(v) for k, v in record.items()})
        # color=True: click would drop what looks like a terminal colour code (ESC [ ... m)
        # from output that is not a terminal, and so change the cells of a CSV file.
        click.echo(buffer.getvalue(), nl=False, color=True)
    else:  # pragma: no cover - callers print tables themselves
        raise ValueError(output)


# A text cell a spreadsheet would run as a formula begins with one of these (Lambda's error
# text can carry what a caller sent): such a cell gets an apostrophe, which shows it as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


# -- AWS errors -------------------------------------------------------------------------------


@contextlib.contextmanager
def aws_errors(
    settings: Settings, stopped: Callable[[], str | None] = lambda: None
) -> Iterator[None]:
    """AWS errors a user can cause, as one line and the documented exit code; ``stopped``
    says, after the error, what the command had done when it stopped (None: nothing)."""
    # Imported here: botocore and tenacity cost the commands that only read the store.
    from lambda_destinations.retrying import CONNECTION_ERRORS

    def said(line: str) -> str:
        done = stopped()
        return line if done is None else f"{line}; {done}"

    try:
        yield
    except CONNECTION_ERRORS as exc:
        # The fix reads dev's file, where dev's settings came from.
        raise EndpointUnreachable(said(settings.unreachable(first_line(exc)))) from None
    except Exception as exc:
        known = describe_aws_error(
            exc, endpoint=settings.shown_endpoint(), not_aws_fix=settings.not_aws_fix()
        )
        if known is None:
            raise
        line, code = known
        if line == NO_REGION and settings.outside_dev():
            line = f"{line}; {OUTSIDE_DEV}"  # dev's settings, region included, are elsewhere
        fail(said(line), code)
