"""``failures logs``: the function's own log lines of one failed invocation, from CloudWatch Logs.

A module of its own, imported when the command runs (``failures_group.lazy``): the reading of
the lines (``operations.function_logs``) is no part of the other `failures` commands' start-up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import click

from lambda_destinations._text import visible
from lambda_destinations.cli._app import EXIT_CONFIG, EXIT_FAILED, EXIT_USAGE, echo_error, fail
from lambda_destinations.cli._common import (
    aws_errors,
    command_now,
    dumps,
    iso,
    opened_store,
    since_option,
    stored_ids,
    subcommand,
    until_option,
)
from lambda_destinations.cli._numbers import LIMIT_MAX, Whole
from lambda_destinations.cli._options import not_empty, settings_options
from lambda_destinations.cli.failures import failures_group, no_record, stored_row
from lambda_destinations.config import Settings
from lambda_destinations.operations.function_logs import (
    DEFAULT_LIMIT,
    Controls,
    FunctionLogs,
    LogLine,
    LogsQuery,
    log_notes,
    log_text,
    with_its_function,
)
from lambda_destinations.store import InvocationRow
from lambda_destinations.times import utc_text, window_backwards

# The options the lines of `failures logs` name.
_CONTROLS = Controls(
    all_attempts="--all-attempts",
    window="--since and --until set the window",
    log_group="--log-group ",
    all_lines="--limit 0: all",
)


@subcommand(failures_group, "logs")
@click.argument("request_id", callback=stored_ids)
@click.option(
    "--all-attempts",
    is_flag=True,
    help="Read back to the first attempt: from 6 h 16 min before the record's time (Lambda's "
    "longest event age and run).",
)
@since_option(
    help="Start of the window: 2h, 30m, 7d, or an ISO time [default: 16 minutes before the "
    "record's time, when its last attempt had begun]."
)
@until_option(help="End of the window (same forms) [default: 1 minute after the record's time].")
@click.option(
    "--log-group",
    metavar="NAME",
    callback=not_empty(
        "give the log group's name (/aws/lambda/NAME), or leave the option out for the "
        "function's own"
    ),
    help="The log group to read [default: the one the function's LoggingConfig names, else "
    "/aws/lambda/NAME].",
)
@click.option(
    "--limit",
    type=Whole(min=0, max=LIMIT_MAX),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="At most this many lines (0: no limit).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of lines, for scripts.")
@settings_options
def logs_command(
    settings: Settings,
    request_id: str,
    all_attempts: bool,
    since: dt.datetime | None,
    until: dt.datetime | None,
    log_group: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The function's own log lines of one failed invocation, from CloudWatch Logs.

    REQUEST_ID as `failures show` takes it. The lines are those naming the request id (START,
    END, REPORT, the runtime's logger) and every line of their log stream between them (what
    the code printed). By default the window holds the last attempt; Lambda's retries keep the
    request id, so --all-attempts (or --since) finds the earlier ones too.

    Exits 0 (also when the window holds no line: stderr says how to widen it), 1 when the
    record or the log group is not there, 3 when AWS refuses the call.

    \b
    Examples:
      lambda-destinations failures logs 6c2d1f9e
      lambda-destinations failures logs 6c2d1f9e --all-attempts
      lambda-destinations failures logs 6c2d1f9e --json | jq -r '.[].message'
    """
    if all_attempts and since is not None:
        fail("give --all-attempts or --since, not both", EXIT_USAGE)
    row = asyncio.run(_row_named(settings, request_id))
    query = _logs_query(row, all_attempts, since, until, log_group, limit)
    found = _read_logs(settings, query)
    if as_json:
        click.echo(dumps([_log_json(found.source.log_group, line) for line in found.lines]))
    elif found.lines:
        click.echo(visible(log_text(found.lines)))
    widened = all_attempts or since is not None
    for note in log_notes(row, found, _CONTROLS, widened=widened, now=command_now()):
        echo_error(note)


async def _row_named(settings: Settings, request_id: str) -> InvocationRow:
    async with opened_store(settings, writes=False) as store:
        row = await stored_row(store, request_id)
        if row is None:
            no_record(request_id)
        return await with_its_function(store, row)


def _logs_query(
    row: InvocationRow,
    all_attempts: bool,
    since: dt.datetime | None,
    until: dt.datetime | None,
    log_group: str | None,
    limit: int,
) -> LogsQuery:
    """What `failures logs` reads for ``row``; a usage error (2) for what cannot be read."""
    from lambda_destinations.operations.function_logs import NothingToRead, logs_query

    try:
        query = logs_query(
            row,
            _CONTROLS,
            all_attempts=all_attempts,
            since=since,
            until=until,
            log_group=log_group,
            limit=limit,
        )
    except NothingToRead as exc:
        fail(str(exc), EXIT_USAGE)
    if query.since >= query.until:
        given = {"given_since": since is not None, "given_until": until is not None}
        fail(_backwards(query, row, **given), EXIT_USAGE)
    return query


def _backwards(
    query: LogsQuery, row: InvocationRow, *, given_since: bool, given_until: bool
) -> str:
    """The line for a window that ends before it starts: the two times as read, or, where one
    end was not given, where the window puts that end by default (the record's time)."""
    if given_since == given_until:  # both given (neither can be: the default window is not)
        return window_backwards(query.since, query.until)
    moment = row.timestamp or row.first_seen_at
    if given_since:
        return (
            f"--since reads {utc_text(query.since)} UTC, and without --until the window ends "
            f"a minute after the record's time, {utc_text(query.until)} UTC: give an earlier "
            "--since, or an --until after it"
        )
    minutes = round((moment - query.since) / dt.timedelta(minutes=1))
    hours, minutes = divmod(minutes, 60)
    before = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return (
        f"--until reads {utc_text(query.until)} UTC, and without --since the window starts "
        f"{before} before the record's time, {utc_text(query.since)} UTC: give a later "
        "--until, or a --since before it"
    )


def _read_logs(settings: Settings, query: LogsQuery) -> FunctionLogs:
    """The lines, or the line that says why not (1: no log group, 3: refused, 4: unreachable)."""
    from lambda_destinations.aws import AwsClients
    from lambda_destinations.operations.function_logs import (
        LogGroupNotFound,
        LogsRefused,
        function_logs,
    )

    async def go() -> FunctionLogs:
        async with AwsClients(settings) as aws:
            return await function_logs(aws, query, _CONTROLS)

    with aws_errors(settings):
        try:
            return asyncio.run(go())
        except LogGroupNotFound as exc:
            fail(str(exc), EXIT_FAILED)
        except LogsRefused as exc:
            fail(str(exc), EXIT_CONFIG)


def _log_json(log_group: str, line: LogLine) -> dict[str, Any]:
    return {
        "timestamp": iso(line.timestamp),
        "log_group": log_group,
        "log_stream": line.log_stream,
        "message": line.message,
    }
