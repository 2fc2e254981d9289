"""``failures list|show|logs|stats|ignore|reopen``: what failed, why, how often, since when."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from lambda_destinations._text import capped, visible
from lambda_destinations.cli._app import (
    EXIT_FAILED,
    echo_error,
    fail,
    group,
)
from lambda_destinations.cli._common import (
    WHOLE_ID_FIX,
    command_now,
    dumps,
    emit,
    format_time,
    function_option,
    iso,
    opened_store,
    operator_identity,
    output_options,
    say_more,
    say_no_failure,
    selection_options,
    since_option,
    stored_ids,
    subcommand,
    until_option,
    whole_ids,
)
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import field_lines, plural, render_table
from lambda_destinations.config import Settings
from lambda_destinations.operations.detail import (
    FailureDetail,
    carried_batch,
    failure_detail,
    logs_command_line,
    run_status,
    stream_read_command,
)
from lambda_destinations.operations.stats import (
    STATS_WINDOW_MAX,
    check_window,
    earlier_failure_hint,
    window_start,
)
from lambda_destinations.redact import echoed
from lambda_destinations.store import (
    OWN_FAILURE_STATUSES,
    FailureStatus,
    InvocationFilter,
    InvocationRow,
)
from lambda_destinations.times import window_backwards

if TYPE_CHECKING:
    from lambda_destinations.operations import FailureStats
    from lambda_destinations.store import Store

# The fields of a failure in --json/--ndjson/--csv, in this order (scripts rely on them).
FIELDS = (
    "request_id",
    "key",
    "kind",
    "function_arn",
    "function_name",
    "qualifier",
    "condition",
    "error_type",
    "error_message",
    "approximate_invoke_count",
    "timestamp",
    "first_seen_at",
    "status",
    "status_by",
    "replay_count",
    "delivery_count",
    "queue",
)
_CHART_WIDTH = 40
T = TypeVar("T")  # what `failures list` makes of each row: a JSON record, a table's cells
_HOUR_LINES = 30  # longer windows get a line a day
_BLOCKS = " ▁▂▃▄▅▆▇█"


@group("failures")
def failures_group() -> None:
    """Failed invocations in the store: list, show, logs, stats, ignore, reopen.

    \b
    Examples:
      lambda-destinations failures list --since 2h
      lambda-destinations failures list --function 'orders-*' --status open --json
      lambda-destinations failures show 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
      lambda-destinations failures logs 6c2d1f9e
      lambda-destinations failures stats --since 7d
      lambda-destinations failures ignore 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
    """


# `failures logs` is registered by its own module, imported when it runs: what reads the lines
# (operations.function_logs) was a cost of every other command's start-up (bench/MEASUREMENTS.md).
failures_group.lazy["logs"] = (
    "lambda_destinations.cli.failures_logs",
    "The function's own log lines of one failed invocation, from CloudWatch Logs.",
)


def failure_record(row: InvocationRow, replay_count: int) -> dict[str, Any]:
    """A failure as scripts see it (``--json``)."""
    return {
        **_fields_json(
            row,
            "request_id key kind function_arn function_name qualifier condition error_type "
            "error_message approximate_invoke_count timestamp first_seen_at status status_by",
        ),
        "replay_count": replay_count,
        **_fields_json(row, "delivery_count queue"),
    }


def function_label(row: InvocationRow) -> str | None:
    if row.function_name is None:
        return None
    if row.qualifier and row.qualifier != "$LATEST":
        return f"{row.function_name}:{row.qualifier}"
    return row.function_name


def error_label(error_type: str | None, message: str | None) -> str | None:
    if error_type and message:
        return f"{error_type}: {message}"
    return error_type or message


# -- list -------------------------------------------------------------------------------------


@subcommand(failures_group, "list")
@selection_options(limit_default=100)
@output_options
@settings_options
def list_command(settings: Settings, selection: InvocationFilter, output: str) -> None:
    """Failed invocations, newest first.

    \b
    Examples:
      lambda-destinations failures list
      lambda-destinations failures list --since 2h --function 'orders-*'
      lambda-destinations failures list --error-type TimeoutError --status open --limit 0
      lambda-destinations failures list --since 2024-05-01 --until 2024-05-02 --csv > may1.csv
      lambda-destinations failures list --json | jq -r '.[].request_id'

    Times are the records' own (when Lambda gave up), in UTC. Exit status 0, also when nothing
    matches.
    """

    if output != "table":
        records, _more, _hint = asyncio.run(
            _listed(settings, selection, failure_record, hint_at=None)
        )
        emit(output, records, FIELDS)
        return
    items, more, hint = asyncio.run(
        _listed(settings, selection, _table_cells, hint_at=command_now())
    )
    if not items:
        click.echo("no failures match", err=True)
        if hint:
            click.echo(hint, err=True)
        return
    click.echo(
        render_table(
            ["TIME (UTC)", "REQUEST ID", "FUNCTION", "CONDITION", "ERROR", "STATUS", "REPLAYS"],
            items,
            flex=(3, 2, 4),  # the error keeps its room longest: it says most
            right=(6,),
            starts={1: 8},  # `failures show 5b06258e`: an id's first characters are taken
        )
    )
    if more:
        say_more(len(items), "failures match")


def _table_cells(r: InvocationRow, replay_count: int) -> list[Any]:
    return [
        format_time(r.timestamp or r.first_seen_at),
        r.request_id,
        function_label(r),
        r.condition or r.kind,
        error_label(r.error_type, r.error_message),
        r.status.value if r.status else None,
        replay_count,
    ]


async def _listed(
    settings: Settings,
    selection: InvocationFilter,
    shape: Callable[[InvocationRow, int], T],
    *,
    hint_at: dt.datetime | None,
) -> tuple[list[T], bool, str | None]:
    """The rows of `failures list` as ``shape`` makes them of each row and its replay count,
    whether more match, and (given the command's now) when a --since window holds none, the
    line naming the newest earlier one. Read and shaped a page at a time: however many match
    (--limit 0), no more than a page's payloads are held at once."""
    async with opened_store(settings, writes=False) as store:
        # One row past the limit says whether more match (see say_more).
        limit = selection.limit
        wanted = selection if limit is None else dataclasses.replace(selection, limit=limit + 1)
        items: list[T] = []
        read = 0
        async for page in store.invocation_pages(wanted):
            read += len(page)
            rows = page if limit is None else page[: limit - len(items)]
            counts = await store.replay_counts([r.key for r in rows])
            items += [shape(r, counts[r.key]) for r in rows]
        hint = None
        if not items and selection.since is not None and hint_at is not None:
            hint = await earlier_failure_hint(store, selection, selection.since, hint_at)
        return items, limit is not None and read > limit, hint


# -- show -------------------------------------------------------------------------------------


@subcommand(failures_group, "show")
@click.argument("request_id", callback=stored_ids)
@click.option("--json", "as_json", is_flag=True, help="One JSON object with everything.")
@settings_options
def show_command(settings: Settings, request_id: str, as_json: bool) -> None:
    """Everything about one failure: payloads, error and stack trace, deliveries, handler
    runs and replays.

    REQUEST_ID is the Lambda request id, its first 4 or more characters when they start no
    other, or a record key (as `failures list --json` shows). Exits 1 when no record has it.

    \b
    Examples:
      lambda-destinations failures show 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
      lambda-destinations failures show 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f --json \\
        | jq .request_payload
    """

    async def go() -> FailureDetail | None:
        async with opened_store(settings, writes=False) as store:
            row = await stored_row(store, request_id)
            return None if row is None else await failure_detail(store, row)

    whole = asyncio.run(go())
    if whole is None:
        no_record(request_id)
    if as_json:
        click.echo(dumps(_whole_json(whole), indent=2))
    else:
        click.echo(visible(_whole_text(whole)))


async def stored_row(store: Store, request_id: str) -> InvocationRow | None:
    """The record a REQUEST_ID argument names (`show`, `logs`): a request id, its first
    characters, or a key."""
    (whole,) = await whole_ids(store, [request_id])
    return await store.get_invocation(whole)


def no_record(request_id: str) -> NoReturn:
    """Exit 1 with the line that says no record has ``request_id``."""
    fail(
        f"no record with request id or key {echoed(request_id)!r} in the store: " + WHOLE_ID_FIX,
        EXIT_FAILED,
    )


def _whole_json(whole: FailureDetail) -> dict[str, Any]:
    row = whole.row
    out = failure_record(row, len(whole.replays))
    out.update(
        _fields_json(
            row,
            "envelope succeeded status_at stack_trace request_payload response_payload record",
        ),
        deliveries=[
            _fields_json(d, "message_id queue receive_count received_at") for d in whole.deliveries
        ],
        handler_runs=[
            {
                **_fields_json(
                    r, "handler state owner attempts completed_at claimed_until last_error"
                ),
                "status": run_status(r),
            }
            for r in whole.runs
        ],
        replays=[
            _fields_json(
                a,
                "attempt trigger requested_by requested_at function_arn new_request_id outcome "
                "outcome_at detail",
            )
            for a in whole.replays
        ],
        other_keys=whole.others,
        replay_of=None
        if whole.replay_of is None
        else _fields_json(whole.replay_of, "original_key original_request_id attempt outcome"),
    )
    return out


def _fields_json(row: object, names: str) -> dict[str, Any]:
    """The named fields of a store row as JSON values: times in ISO 8601, enums by value."""
    out: dict[str, Any] = {}
    for name in names.split():
        value = getattr(row, name)
        if isinstance(value, dt.datetime):
            value = iso(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out[name] = value
    return out


def _fields_cells(row: object, names: str) -> list[Any]:
    """The named fields of a store row as table cells: times as ``format_time`` shows them."""
    values = [getattr(row, name) for name in names.split()]
    return [format_time(v) if isinstance(v, dt.datetime) else v for v in values]


def _pretty(value: Any, whole: str) -> str:
    """A JSON value pretty-printed and indented, its first 64 Ki characters (``capped``)."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return _indented(capped(text, whole)) or "  (empty)"


def _indented(text: str) -> str:
    # At line feeds only: str.splitlines also breaks at CR, NEL, U+2028 and others, which a
    # frame or a JSON string holds as text (visible spells the controls out).
    return "\n".join("  " + line for line in text.split("\n"))


# Where a stream failure record says its batch is (one of them is present).
_BATCH_INFOS = ("KinesisBatchInfo", "DDBStreamBatchInfo", "KafkaBatchInfo")


def _payload_lines(row: InvocationRow, where: str) -> list[str]:
    """The payloads; for a stream failure, the batch's place, and its records where the record
    carries them (an S3 destination's)."""
    record = row.record if isinstance(row.record, dict) else {}
    batch = next((name for name in _BATCH_INFOS if name in record), None)
    if row.kind != "stream-failure" or batch is None:
        return [
            *("", "request payload", _pretty(row.request_payload, where)),
            *("", "response payload", _pretty(row.response_payload, where)),
        ]
    lines = ["", f"batch ({batch})", _pretty(record[batch], where)]
    carried = carried_batch(row)
    if carried is None:
        lines.append(
            "  Lambda sends where the batch was, not its records: read them from the stream (or "
            "Kafka topic) before they expire, and reprocess them there (replay cannot)"
        )
        command = stream_read_command(record)
        if command is not None:
            lines += [
                "  its records, from the first (follow NextShardIterator if fewer come):",
                f"    {command}",
            ]
        return lines
    # An S3 destination's record carries the batch as the event-source mapping sent it.
    return [
        *lines,
        "",
        "payload (the batch's records, as the function received them)",
        _pretty(carried, where),
        "  reprocess these records with the stream's own tools (replay cannot: an asynchronous "
        "Invoke would drop the function's batchItemFailures)",
    ]


def _whole_text(whole: FailureDetail) -> str:
    row = whole.row
    # A record carries up to 1 MiB: each long block is cut, saying where the whole is.
    where = f"failures show {shlex.quote(row.key)} --json prints it whole"
    lines = field_lines(_summary_fields(whole), _LABELS)
    error = capped(error_label(row.error_type, row.error_message) or "-", where)
    lines += ["", *field_lines([("error", error)], _LABELS)]
    if row.stack_trace:
        trace = "\n".join(str(frame).rstrip("\n") for frame in row.stack_trace)
        lines += ["stack trace", _indented(capped(trace, where))]
    lines += _payload_lines(row, where)
    lines += _section(
        "deliveries",
        ["RECEIVED (UTC)", "MESSAGE ID", "RECEIVES", "QUEUE"],
        [_fields_cells(d, "received_at message_id receive_count queue") for d in whole.deliveries],
        flex=(3,),
        right=(2,),
    )
    lines += _section(
        "handler runs",
        ["HANDLER", "STATE", "ATTEMPTS", "COMPLETED (UTC)", "OWNER", "LAST ERROR"],
        [
            [r.handler, run_status(r), *_fields_cells(r, "attempts completed_at owner last_error")]
            for r in whole.runs
        ],
        right=(2,),
        flex=(5,),
        wrap=True,
    )
    lines += _replays_section(whole)
    return "\n".join(lines)


def _replays_section(whole: FailureDetail) -> list[str]:
    """The replay ledger's attempts; with an INVOKED column when one invoked another version
    or alias than the record names (``replay --qualifier``)."""
    headers = ["#", "REQUESTED (UTC)", "BY", "TRIGGER", "OUTCOME", "NEW REQUEST ID", "DETAIL"]
    fields = "attempt requested_at requested_by trigger outcome new_request_id detail"
    rows = [_fields_cells(a, fields) for a in whole.replays]
    if whole.invoked_elsewhere:
        # Imported here: the schemas package loads the decoder, which `list` does not need.
        from lambda_destinations.schemas import qualified_name

        headers.insert(4, "INVOKED")
        for row, attempt in zip(rows, whole.replays, strict=True):
            row.insert(4, qualified_name(attempt.function_arn))
    return _section("replays", headers, rows, right=(0,), flex=(len(headers) - 1,), wrap=True)


# The width of the labels of `failures show` ("request id   ...").
_LABELS = 13


def _summary_fields(whole: FailureDetail) -> list[tuple[str, str]]:
    """The record's identity, status, time and origin, one aligned field each."""
    row = whole.row
    status = row.status.value if row.status else ("succeeded" if row.succeeded else "-")
    if row.status_by:
        status += f"  (by {row.status_by}, {format_time(row.status_at)})"
    invoke = (
        f" after {row.approximate_invoke_count} attempts"
        if row.approximate_invoke_count and row.approximate_invoke_count > 1
        else ""
    )
    # A legacy DLQ message has no time of its own: only when the worker first received it.
    own = "none in the record" if row.timestamp is None else f"{format_time(row.timestamp)} UTC"
    fields = [
        ("request id", row.request_id or "-"),
        ("key", row.key),
        ("function", f"{function_label(row) or '-'}  ({row.function_arn or 'no ARN'})"),
        ("condition", f"{row.condition or '-'}{invoke}"),
        ("status", status),
        ("time", f"{own}  (first seen {format_time(row.first_seen_at)} UTC)"),
        ("kind", f"{row.kind}, envelope {row.envelope}"),
        ("queue", row.queue),
    ]
    if row.request_id:
        fields.append(("logs", logs_command_line(row.request_id)))
    if whole.others:
        fields.append(("also", ", ".join(whole.others)))
    if whole.replay_of is not None:
        of = whole.replay_of
        fields.append(
            (
                "replay of",
                f"{of.original_request_id or of.original_key}  "
                f"(attempt {of.attempt}, {of.outcome.value})",
            )
        )
    return fields


def _section(title: str, headers: list[str], rows: list[list[Any]], **table: Any) -> list[str]:
    """A titled, counted section of ``show``: a blank line, the title, then a table if any."""
    lines = ["", f"{title} ({len(rows)})"]
    if rows:
        lines.append(render_table(headers, rows, indent="  ", **table))
    return lines


# -- stats ------------------------------------------------------------------------------------


@subcommand(failures_group, "stats")
@since_option(
    help="Start of the window: 24h, 7d, or an ISO time [default: 24 hours before --until]."
)
@until_option()
@function_option(help="Function name, shell glob.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@settings_options
def stats_command(
    settings: Settings,
    since: dt.datetime | None,
    until: dt.datetime | None,
    function_glob: str | None,
    as_json: bool,
) -> None:
    """Failures by function and error type, with first and last seen, and a chart per hour.

    \b
    Examples:
      lambda-destinations failures stats                 the last 24 hours
      lambda-destinations failures stats --since 7d --function 'orders-*'
      lambda-destinations failures stats --since 2024-05-01 --until 2024-05-02 --json
    """
    if since is not None and since >= (until or command_now()):
        fail(window_backwards(since, until) if until else _since_ahead(since), 2)
    until = until or command_now()
    since = window_start(since, until)  # before until, or at it for an until at year 1's start
    try:
        check_window(since, until, names="--since and --until")
    except ValueError as exc:
        fail(str(exc), 2)
    # A replay's own failure record is not counted: its original failure stands for it.
    selection = InvocationFilter(
        failed_only=True,
        function_glob=function_glob,
        since=since,
        until=until,
        statuses=list(OWN_FAILURE_STATUSES),
    )

    # Imported here: the operations package imports the handlers, which `failures list` and
    # `show` do not need (start-up CPU).
    from lambda_destinations.operations.stats import failure_stats, status_counts

    async def go() -> tuple[FailureStats, str | None]:
        async with opened_store(settings, writes=False) as store:
            stats = failure_stats(await store.failure_counts(selection), since, until)
            stats.statuses = await status_counts(store, selection)
            hint = None
            if not stats.groups and not as_json:
                hint = await earlier_failure_hint(
                    store, selection, since, command_now(), longest=STATS_WINDOW_MAX
                )
            return stats, hint

    stats, hint = asyncio.run(go())
    if as_json:
        click.echo(dumps(stats.as_dict()))
    else:
        _show_stats(stats, since, until)
        if hint:
            click.echo(hint, err=True)


def _since_ahead(since: dt.datetime) -> str:
    """The line for a ``--since`` after now without ``--until``: the window ends now."""
    return (
        f"--since reads {format_time(since)} UTC, which is still to come, and the window ends "
        "now (no --until): give a time past (24h, 7d, 2024-05-01), or an --until after it"
    )


def _show_stats(stats: FailureStats, since: dt.datetime, until: dt.datetime) -> None:
    """A one-line total, then a table by function and error type, then the chart."""
    functions = len({g.function_name for g in stats.groups if g.function_name is not None})
    # A legacy DLQ message names no function: such failures are counted, not as a function.
    nameless = sum(g.count for g in stats.groups if g.function_name is None)
    none = f" and {nameless} naming none" if nameless else ""
    click.echo(
        f"{plural(stats.total, 'failure')} in {plural(functions, 'function')}{none}, "
        f"{format_time(since)} → {format_time(until)} UTC"
    )
    if not stats.groups:
        return
    click.echo(" · ".join(f"{n} {status}" for status, n in stats.statuses.items()))
    click.echo()
    click.echo(
        render_table(
            ["FUNCTION", "ERROR TYPE", "COUNT", "FIRST SEEN (UTC)", "LAST SEEN (UTC)"],
            [
                [
                    g.function_name,
                    g.error_type,
                    g.count,
                    format_time(g.first_seen),
                    format_time(g.last_seen),
                ]
                for g in stats.groups
            ],
            right=(2,),
            flex=(0, 1),
        )
    )
    click.echo()
    click.echo("\n".join(hourly_chart(stats.hourly)))


def hourly_chart(hourly: Sequence[tuple[dt.datetime, int]]) -> list[str]:
    """Failures per hour as text: a bar a line for about a day, else a line a day."""
    peak = max((n for _, n in hourly), default=0)
    if len(hourly) <= _HOUR_LINES:
        lines = ["failures per hour"]
        for hour, count in hourly:
            lines.append(f"  {hour:%m-%d %H}:00  {_bar(count, peak)} {count}".rstrip())
        return lines
    lines = [f"failures per hour, a line a day (each mark one hour, peak {peak}/h)"]
    days: dict[dt.date, list[int]] = {}
    for hour, count in hourly:
        days.setdefault(hour.date(), [0] * 24)[hour.hour] = count
    for day, counts in days.items():
        marks = "".join(_spark(n, peak) for n in counts)
        lines.append(f"  {day.isoformat()}  {marks}  {sum(counts)}")
    return lines


def _bar(count: int, peak: int) -> str:
    if count == 0 or peak == 0:
        return ""
    eighths = max(1, round(count / peak * _CHART_WIDTH * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def _spark(count: int, peak: int) -> str:
    if count == 0 or peak == 0:
        return "·"
    return _BLOCKS[max(1, round(count / peak * (len(_BLOCKS) - 1)))]


# -- ignore / reopen --------------------------------------------------------------------------


def _set_status(
    settings: Settings,
    request_ids: Sequence[str],
    status: FailureStatus,
    reason: str | None = None,
) -> None:
    # Imported here: only `ignore` and `reopen` use it, and the commands that read cost less
    # without.
    from lambda_destinations.operations.status import reopen, set_by

    by = set_by(operator_identity(), reason)  # the reason goes with who set the status
    command, verb = (
        ("ignore", "ignored") if status is FailureStatus.IGNORED else ("reopen", "reopened")
    )
    refused: list[str] = []  # the lines of replays' own records, left as they are
    marked: list[str] = []  # the keys of the failures marked

    async def go() -> tuple[int, int, int, int, list[str]]:
        async with opened_store(settings, writes=True) as store:
            statuses, missing = await _failures_named(store, request_ids)
            refused.extend(await _replays_own(store, statuses, command))
            keys = sorted(statuses)
            marked.extend(keys)
            # Set again all the same: who set it and why are the operator's now.
            already = sum(1 for was in statuses.values() if was is status)
            if status is FailureStatus.OPEN:  # recovered where a replay recovered
                reopened = await reopen(store, keys, by=by)
                stayed = sum(1 for was in statuses.values() if was is FailureStatus.RECOVERED)
                return (
                    reopened.changed - reopened.recovered,
                    reopened.recovered,
                    min(stayed, reopened.recovered),
                    already,
                    missing,
                )
            return await store.set_status(keys, status, by=by), 0, 0, already, missing

    # A failure a replay recovered is not reopened: it is not counted as reopened, and its
    # note says whether it was recovered already or is again (it was ignored).
    changed, recovered, stayed, already, missing = asyncio.run(go())
    notes = []
    if stayed:
        notes.append(f"{stayed} {'stays' if stayed == 1 else 'stay'} recovered: a replay succeeded")
    if recovered - stayed:
        notes.append(f"{recovered - stayed} back to recovered: a replay succeeded")
    if already:
        was = "ignored" if status is FailureStatus.IGNORED else "open"
        notes.append(f"{already} {was} already: who set it{' and why' if reason else ''} updated")
    kept = f" ({'; '.join(notes)})" if notes else ""
    # none found (or none to mark): the error lines alone, stdout empty
    if marked:
        click.echo(f"{verb} {changed} failure{'s' if changed != 1 else ''}{kept}")
    say_no_failure(missing)
    for line in refused:
        echo_error(line)
    if missing or refused:
        raise SystemExit(EXIT_FAILED)


async def _replays_own(
    store: Store, statuses: dict[str, FailureStatus | None], command: str
) -> list[str]:
    """Take the replays' own records (status ``replay``) out of ``statuses``: their status
    follows their original's (one failure is one open failure however often it was replayed),
    so they are left as they are. One error line each, naming the original to mark instead."""
    from lambda_destinations.operations.status import replayed_original

    lines = []
    for key in [key for key, was in statuses.items() if was is FailureStatus.REPLAY]:
        del statuses[key]
        row = await store.get_invocation(key)
        replayed = None if row is None else await replayed_original(store, row)
        of, instead = "", "its original failure (`failures show` names it)"
        if replayed is not None:
            attempt, original = replayed
            of = f" (attempt {attempt.attempt} of {original})"
            instead = f"lambda-destinations failures {command} {shlex.quote(original)}"
        lines.append(
            f"error: {echoed(key)} is a replay's own record{of}: its status follows the "
            f"original's: {instead} instead"
        )
    return lines


async def _failures_named(
    store: Store, request_ids: Sequence[str]
) -> tuple[dict[str, FailureStatus | None], list[str]]:
    """The failures these request ids (or record keys, or a request id's first characters)
    name, each key with its status, and the ids that name none."""
    request_ids = await whole_ids(store, request_ids)
    rows = await store.list_invocations(
        InvocationFilter(failed_only=True, request_ids=list(request_ids))
    )
    statuses = {r.key: r.status for r in rows}
    found_ids = {r.request_id for r in rows}
    missing = []
    for ident in request_ids:
        if ident in found_ids:
            continue
        row = await store.get_invocation(ident)  # a record key
        if row is None or row.succeeded is True:
            missing.append(ident)
        else:
            statuses[row.key] = row.status
    return statuses, missing


@subcommand(failures_group, "ignore")
@click.argument(
    "request_ids", nargs=-1, required=True, metavar="REQUEST_ID...", callback=stored_ids
)
@click.option("--reason", help="Why (kept with who ignored them, shown by `failures show`).")
@settings_options
def ignore_command(settings: Settings, request_ids: tuple[str, ...], reason: str | None) -> None:
    """Mark failures as handled: `failures list --status open` and `replay` leave them out.

    Exits 1 when a request id is not in the store (the others are still marked).

    \b
    Examples:
      lambda-destinations failures ignore 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
      lambda-destinations failures ignore 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f --reason "test data"
      lambda-destinations failures list --error-type ValueError --json \\
        | jq -r '.[].request_id' | xargs lambda-destinations failures ignore
    """
    _set_status(settings, request_ids, FailureStatus.IGNORED, reason)


@subcommand(failures_group, "reopen")
@click.argument(
    "request_ids", nargs=-1, required=True, metavar="REQUEST_ID...", callback=stored_ids
)
@settings_options
def reopen_command(settings: Settings, request_ids: tuple[str, ...]) -> None:
    """Mark failures open again (after `ignore`, say).

    A failure replayed before stays replayed in the ledger: `replay` skips it as replayed
    already unless given --force. Exits 1 when a request id is not in the store (the others
    are still marked).

    \b
    Examples:
      lambda-destinations failures reopen 6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f
    """
    _set_status(settings, request_ids, FailureStatus.OPEN)
