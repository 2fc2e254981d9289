"""What the pages show, gathered from the store, SQS and operations/ (no HTML here).

Filters come from the query string with the same names and meanings as the options of
``failures list`` (``function``, ``error_type``, ``condition``, ``since``, ``until``, ``status``),
so a page's URL is its selection.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from multidict import MultiMapping

# capped: the templates cut long text with views.capped, as `failures show` cuts it in the CLI
from lambda_destinations._text import capped as capped
from lambda_destinations._urls import queue_name
from lambda_destinations.aws import NO_CREDENTIALS_FIX
from lambda_destinations.config import Settings
from lambda_destinations.console.charts import sparkline, trend
from lambda_destinations.console.jobs import Job
from lambda_destinations.errors import NO_REGION
from lambda_destinations.operations.detail import logs_command_line
from lambda_destinations.operations.detail import run_status as run_status
from lambda_destinations.operations.dlq import QueueRef, resolve_queue
from lambda_destinations.operations.function_logs import Controls
from lambda_destinations.operations.replay import FORCE_HINT, ErrorReason, SkipReason

# invoked_label, qualified_name: the templates show a replay's function as `replay` does
from lambda_destinations.operations.replay import invoked_label as invoked_label
from lambda_destinations.operations.stats import (
    FailureStats,
    check_window,
    failure_stats,
    hour_of,
    window_start,
)
from lambda_destinations.operations.stats import status_counts as count_by_status
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import CONNECTION_ERRORS, first_line, refused_line
from lambda_destinations.schemas import check_invoke_qualifier
from lambda_destinations.schemas import qualified_name as qualified_name
from lambda_destinations.store import (
    OWN_FAILURE_STATUSES,
    ROW_ID_MAX,
    FailureCount,
    FailureStatus,
    InvocationCursor,
    InvocationFilter,
    InvocationRow,
    OperatorAction,
    QuarantineCursor,
    QuarantineRow,
    Store,
    utcnow,
)
from lambda_destinations.times import parse_when, utc_text, window_backwards

FILTER_FIELDS = ("function", "error_type", "condition", "since", "until")
# A filter value past this is no function name, error type or time anyone typed: refused, and
# the store never sees it.
FILTER_VALUE_MAX = 1000
# The whole filter as a query string, past which a bulk action's ledger entry could not hold
# it: its target, ``failures?<query>``, is in an index (ix_operator_actions_target_at), and
# PostgreSQL's index entries hold 2,704 bytes at most (a random value does not compress).
FILTER_QUERY_MAX = 2000
PAGE_SIZE = 50
QUARANTINE_PAGE_SIZE = 100
# The rows of the groups page and of a failure's deliveries; a line says how many more.
GROUPS_SHOWN = 100
DELIVERIES_SHOWN = 100
_Row = TypeVar("_Row")


@dataclasses.dataclass(slots=True)
class Selection:
    """A filter as the form shows it (``values``) and as the store takes it (``filter``)."""

    values: dict[str, str]
    statuses: list[str]
    filter: InvocationFilter
    errors: list[str]

    def error_ids(self, name: str) -> str:
        """The ids of the error lines about field ``name``, for its ``aria-describedby`` ("" when
        none): a line is about the fields it names before its first colon."""
        return " ".join(
            f"filter-error-{i}"
            for i, line in enumerate(self.errors)
            if name in line.split(":", 1)[0].split()
        )

    def query(self, **extra: str) -> str:
        """The query string that selects the same failures (plus ``extra``, whose values stand
        in for the filter's own of the same name)."""
        from urllib.parse import urlencode

        return urlencode(self._pairs(**extra))

    def described(self) -> str:
        """The filter as a person reads it: ``function=orders-* status=open``."""
        return " ".join(f"{k}={v}" for k, v in self._pairs())

    def _pairs(self, **extra: str) -> list[tuple[str, str]]:
        # An extra value stands in for the filter's own (a group's function, not the glob):
        # a query string's first value is the one read.
        pairs = [(k, v) for k, v in self.values.items() if v and not extra.get(k)]
        pairs += [("status", s) for s in self.statuses]
        pairs += [(k, v) for k, v in extra.items() if v]
        return pairs


# An ISO 8601 time whose "+" offset was typed raw into an address: the query string read the
# "+" as a space ("2026-12-07T10:00:00 01:00").
_SPACED_OFFSET = re.compile(r"(\d{4}-\d\d-\d\d[T ][\d:.,]+) (\d\d(?::?\d\d)?)")


def _plus_offset(value: str) -> str:
    """``value``, a time whose "+" offset a query string read as a space, with its "+" back;
    any other value as it is (a space means nothing else in a time)."""
    return _SPACED_OFFSET.sub(r"\1+\2", value) if _SPACED_OFFSET.fullmatch(value) else value


def selection_from(query: MultiMapping[str], now: dt.datetime | None = None) -> Selection:
    """The filters of a query string; bad values are reported and left out, never guessed.

    A selection with errors selects nothing: a page shows the errors, not what the rest of
    the filter (or no filter) would select."""
    values = {name: query.get(name, "").strip() for name in FILTER_FIELDS}
    errors: list[str] = []
    for name in FILTER_FIELDS:  # the first of two would be a guess (a link made badly, say)
        if (given := len(query.getall(name, []))) > 1:
            errors.append(f"{name}: given {given} times: give one value")
            values[name] = ""
    for name in ("function", "error_type", "condition"):  # since and until are read below
        if len(value := values[name]) > FILTER_VALUE_MAX:
            errors.append(
                f"{name}: {len(value):,} characters, too long for a filter: use at most "
                f"{FILTER_VALUE_MAX:,}"
            )
            values[name] = ""  # left out: the form does not show it again
    times: dict[str, dt.datetime | None] = {}
    for name in ("since", "until"):
        times[name] = None
        values[name] = _plus_offset(values[name])
        if values[name]:
            try:
                times[name] = parse_when(values[name], now)
            except ValueError as exc:
                errors.append(f"{name}: {exc}")
    statuses = []
    for status in query.getall("status", []):
        if status in set(FailureStatus):
            statuses.append(status)
        else:
            known = ", ".join(FailureStatus)
            errors.append(f"status: {echoed(status)!r} is not a status (one of {known})")
    if times["since"] and times["until"] and times["since"] >= times["until"]:
        errors.append(window_backwards(times["since"], times["until"], "since", "until"))
        times["until"] = None
    selection = InvocationFilter(
        failed_only=True,
        function_glob=values["function"] or None,
        error_type=values["error_type"] or None,
        condition=values["condition"] or None,
        since=times["since"],
        until=times["until"],
        statuses=[FailureStatus(s) for s in statuses] or None,
    )
    chosen = Selection(values, statuses, selection, errors)
    if not errors and len(encoded := chosen.query()) > FILTER_QUERY_MAX:
        errors.append(
            f"filter: {len(encoded):,} characters in the address, more than a bulk action's "
            f"ledger entry holds ({FILTER_QUERY_MAX:,}): shorten function, error_type or condition"
        )
    return chosen


def qualifier_of(values: Mapping[str, str]) -> str | None:
    """The version or alias a replay form names (``qualifier``) instead of each record's own;
    None when left empty. ValueError, its line the command's, for one in no form Lambda's
    Invoke takes: nothing is to be invoked with it."""
    qualifier = values.get("qualifier", "").strip()
    if not qualifier:
        return None
    check_invoke_qualifier(qualifier)
    return qualifier


def encode_cursor(row: InvocationRow) -> str:
    cursor = InvocationCursor.after(row)
    return f"{cursor.occurred_at.isoformat()}|{cursor.first_seen_at.isoformat()}|{cursor.key}"


def decode_cursor(text: str) -> InvocationCursor | None:
    parts = text.split("|", 2)
    if len(parts) != 3:
        return None
    occurred, first = (_cursor_time(p) for p in parts[:2])
    if occurred is None or first is None:
        return None
    return InvocationCursor(occurred, first, parts[2])


def _cursor_time(text: str) -> dt.datetime | None:
    """A cursor's time, in UTC as the store holds times; None if it is not one (a hand-made
    one may have no zone, or fall before year 1 in UTC)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        return None


def encode_quarantine_cursor(row: QuarantineRow) -> str:
    cursor = QuarantineCursor.after(row)
    return f"{cursor.quarantined_at.isoformat()}|{cursor.id}"


def decode_quarantine_cursor(text: str) -> QuarantineCursor:
    """``?after=`` of the quarantine page; ValueError, a line for the page, if it is not one."""
    when, _, row_id = text.partition("|")
    at = _cursor_time(when)
    # "²" is a digit to str.isdigit, not to int(); an id past 64 bits names no row
    digits = row_id.isascii() and row_id.isdigit() and len(row_id) <= len(str(ROW_ID_MAX))
    if at is None or not digits or int(row_id) > ROW_ID_MAX:
        raise ValueError(not_a_place(text))
    return QuarantineCursor(at, int(row_id))


def not_a_place(after: str) -> str:
    """The line for an ``?after=`` that is no page's cursor."""
    return (
        f"after: {echoed(after)!r} is not a place in this list: follow the Older » link "
        "as it is, or start from the newest page"
    )


@dataclasses.dataclass(slots=True)
class Page:
    rows: list[InvocationRow]
    replays: dict[str, int]
    next_cursor: str | None


def page_cursor(selection: Selection, after: str) -> InvocationCursor | None:
    """The cursor ``?after=`` holds (None: the first page); a bad one is an error of
    ``selection``, never read as the first page."""
    if not after:
        return None
    cursor = decode_cursor(after)
    if cursor is None:
        selection.errors.append(not_a_place(after))
    return cursor


async def failures_page(
    store: Store, selection: InvocationFilter, cursor: InvocationCursor | None
) -> Page:
    """One page, newest first, after the cursor; one row more than shown says "there is more"."""
    wanted = dataclasses.replace(selection, limit=PAGE_SIZE + 1, after=cursor)
    rows, more = _one_page(await store.list_invocations(wanted), PAGE_SIZE)
    replays = await store.replay_counts([r.key for r in rows])
    return Page(rows, replays, encode_cursor(rows[-1]) if more else None)


def _one_page(rows: list[_Row], size: int) -> tuple[list[_Row], bool]:
    """The first ``size`` of ``rows`` (read ``size + 1``), and whether there is more."""
    return rows[:size], len(rows) > size


async def quarantine_page(
    store: Store, cursor: QuarantineCursor | None
) -> tuple[list[QuarantineRow], str | None]:
    """One page of the quarantine, newest first, after the cursor; and the next page's."""
    found = await store.list_quarantine(limit=QUARANTINE_PAGE_SIZE + 1, after=cursor)
    rows, more = _one_page(found, QUARANTINE_PAGE_SIZE)
    return rows, encode_quarantine_cursor(rows[-1]) if more else None


async def stored_request_ids(store: Store, request_ids: Sequence[str]) -> set[str]:
    """Which of ``request_ids`` the store holds a record of (a page links only to those)."""
    if not request_ids:
        return set()
    found = await store.list_invocations(
        InvocationFilter(failed_only=False, request_ids=list(request_ids))
    )
    return {r.request_id for r in found if r.request_id}


@dataclasses.dataclass(slots=True)
class Group:
    function_name: str | None
    error_type: str | None
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    points: str  # the sparkline
    trend: str


def groups_of(
    counts: Sequence[FailureCount], stats: FailureStats, *, limit: int | None = None
) -> list[Group]:
    """The groups of ``stats`` (most failures first), each with its hourly trend."""
    index = {hour: i for i, (hour, _) in enumerate(stats.hourly)}
    series: dict[tuple[str | None, str | None], list[int]] = {}
    for found in counts:
        per_hour = series.setdefault((found.function_name, found.error_type), [0] * len(index))
        slot = index.get(hour_of(found.first))
        if slot is not None:
            per_hour[slot] += found.count
    out = []
    for g in stats.groups[:limit]:
        hourly = series.get((g.function_name, g.error_type), [])
        out.append(
            Group(
                g.function_name,
                g.error_type,
                g.count,
                g.first_seen,
                g.last_seen,
                sparkline(hourly),
                trend(hourly),
            )
        )
    return out


def stats_window(selection: Selection) -> tuple[dt.datetime, dt.datetime]:
    """The window the statistics of ``selection`` cover: since to until, the last 24 hours
    before until (or now) without a since. ValueError, a line for the page, when it cannot."""
    until = selection.filter.until or utcnow()
    since = window_start(selection.filter.since, until)
    check_window(since, until)
    return since, until


async def grouped(
    store: Store, selection: InvocationFilter, window: tuple[dt.datetime, dt.datetime]
) -> tuple[FailureStats, list[FailureCount]]:
    """Counts by function x error type (and hour) over ``window`` (see :func:`stats_window`)."""
    since, until = window
    window_filter = dataclasses.replace(selection, since=since, until=until, limit=None)
    if window_filter.statuses is None:  # a replay's own record counts in its original's place
        window_filter.statuses = list(OWN_FAILURE_STATUSES)
    counts = await store.failure_counts(window_filter)
    return failure_stats(counts, since, until), counts


async def status_counts(store: Store) -> dict[str, int]:
    return await count_by_status(store, InvocationFilter(failed_only=True))


@dataclasses.dataclass(slots=True)
class QueueDepth:
    """A configured queue and its DLQ: how many messages wait in each."""

    name: str
    url: str | None
    visible: int | None
    in_flight: int | None
    dlq: QueueRef | None
    problem: str | None = None


async def queue_depths(sqs: Any, settings: Settings) -> list[QueueDepth]:
    """Each configured queue and its DLQ (from its redrive policy); a problem as text."""
    out = []
    for ident in settings.queues:
        try:
            ref = await resolve_queue(sqs, ident)
            dlq = await dlq_of(sqs, ref)
            out.append(QueueDepth(ref.name, ref.url, ref.visible, ref.in_flight, dlq))
        except Exception as exc:  # noqa: BLE001 - an unreachable endpoint, a missing queue: shown
            problem = problem_line(exc, settings)
            out.append(QueueDepth(queue_name(ident), None, None, None, None, problem))
    return out


# Whose credentials the console's AWS calls use: its own, not those of who reads the page.
CONSOLE_CREDENTIALS = "the console's AWS credentials"
# Where they are fixed: a running console keeps the keys it started with.
_KEYS_SET = " where the console runs, and start it again"


def problem_line(exc: BaseException, settings: Settings) -> str:
    """What went wrong asking AWS or the store, in one line; with the fix where the console
    knows it, as the commands say it (no region: botocore's "You must specify a region" names
    no setting; an endpoint not reached, the keys not taken, a permission they lack)."""
    if isinstance(exc, NoRegionError):
        return NO_REGION
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"the console has no AWS credentials: {NO_CREDENTIALS_FIX}, and start it again"
    if isinstance(exc, CONNECTION_ERRORS):
        return settings.unreachable(first_line(exc, typed=True))
    if isinstance(exc, ClientError):
        return refused_line(exc, credentials=CONSOLE_CREDENTIALS, set_where=_KEYS_SET)
    return first_line(exc, typed=True)


async def dlq_of(sqs: Any, ref: QueueRef) -> QueueRef | None:
    policy = ref.attributes.get("RedrivePolicy")
    if not policy:
        return None
    target = json.loads(policy).get("deadLetterTargetArn")
    return await resolve_queue(sqs, target) if target else None


def pretty_json(value: Any) -> str:
    """A JSON value as indented text (strings that hold JSON stay strings: shown as sent)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def error_text(row: InvocationRow) -> str:
    if row.error_type and row.error_message:
        return f"{row.error_type}: {row.error_message}"
    return row.error_type or row.error_message or ""


def stack_text(frames: Sequence[object]) -> str:
    """A stack trace's frames, one a line (as `failures show` prints them), for the page to cut
    as it cuts a payload."""
    return "".join(f"{frame}\n" for frame in frames)


# Characters of an error a list row shows; the failure's page shows it up to SHOWN_TEXT.
LIST_TEXT = 200


def clamped(text: str, limit: int = LIST_TEXT) -> str:
    """``text`` cut to about ``limit`` characters for a list row (at a space when one is near)."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ", limit - 20)
    return f"{cut[:space] if space > 0 else cut}…"


def peek_error(described: Mapping[str, Any]) -> str:
    """A peeked message's error, or why it is not a record, and the worker's quarantine reason."""
    text = described.get("decode_error") or ""
    if not text:
        error_type, message = described.get("error_type"), described.get("error_message")
        text = f"{error_type}: {message}" if error_type and message else error_type or message or ""
    reason = described.get("quarantine_reason")
    return f"{text} [quarantined: {reason}]".strip() if reason else text


# The link of the logs page that reads every attempt: the lines name it as it is labelled.
ALL_ATTEMPTS = "All attempts"


def logs_command(row: InvocationRow, *, all_attempts: bool) -> str:
    """The command that prints the lines the logs page of ``row`` shows."""
    command = logs_command_line(row.request_id or row.key)
    return f"{command} --all-attempts" if all_attempts else command


def logs_controls(row: InvocationRow, *, all_attempts: bool) -> Controls:
    """What the logs page's lines name to read other lines: its link for every attempt, and
    the command for what the page does not read (another window, a log group, all lines)."""
    command = logs_command_line(row.request_id or row.key)
    return Controls(
        all_attempts=ALL_ATTEMPTS,
        window=f"{command} --since and --until set any window",
        log_group=f"{command} --log-group ",
        all_lines=f"{logs_command(row, all_attempts=all_attempts)} --limit 0 prints them all",
    )


# What an on-success record's page says in place of the actions: nothing needs a replay.
SUCCEEDED = "this invocation succeeded (its on-success record)"


def function_label(row: InvocationRow) -> str:
    if row.function_name is None:
        return ""
    if row.qualifier and row.qualifier != "$LATEST":
        return f"{row.function_name}:{row.qualifier}"
    return row.function_name


def when(moment: dt.datetime | None) -> str:
    return "" if moment is None else utc_text(moment)


def action_outcome(action: OperatorAction) -> str:
    """What became of a DLQ's action when it did not do what it names ("" when it did): a
    purge SQS refused (nothing deleted), a redrive an error stopped (its line: what it moved
    and what stays). The ledger keeps them as the actions they were asked as."""
    detail = action.detail if isinstance(action.detail, dict) else {}
    if refused := detail.get("refused"):
        return f"refused, nothing done: {refused}"
    if error := detail.get("error"):
        return f"stopped: {error}"
    return ""


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    """What became of the action just done, said on the page the browser comes back to."""

    ok: bool
    text: str


_REPLAY_ACTIONS = ("replay", "edit-replay")


def replay_notice(
    actions: Sequence[OperatorAction], named: str, row: InvocationRow
) -> Notice | None:
    """The outcome of the replay whose ledger entry ``?replayed=<id>`` names, in its words.

    Only an id comes from the URL; the text is the ledger's (an id not of this failure's
    replays shows nothing)."""
    if not (named.isascii() and named.isdigit() and len(named) < 20):
        return None
    for action in actions:
        if action.id == int(named) and action.action in _REPLAY_ACTIONS:
            result = action.detail.get("result") if isinstance(action.detail, dict) else None
            return _replay_notice(result, row) if isinstance(result, dict) else None
    return None


def _replay_notice(result: Mapping[str, Any], row: InvocationRow) -> Notice:
    state, detail = result.get("state"), result.get("detail")
    if state == "invoked":
        return Notice(
            True,
            f"Replayed: attempt {result.get('attempt')} invoked "
            f"{invoked_label(result.get('function_arn'), result.get('record_function_arn'))}, "
            f"new request id {result.get('new_request_id')}.",
        )
    if state == "skipped":
        return Notice(False, f"Not replayed: {skip_reason(row, result.get('skip'), detail)}.")
    return Notice(False, f"The replay failed: {detail or state}.")


def skip_reason(row: InvocationRow, skip: str | None, detail: str | None) -> str:
    """Why a replay of ``row`` is (or was) skipped, worded for the console: what the command
    line says to do (``--force``, ``--legacy-function``) the console does otherwise, or not."""
    detail = detail or ""
    if skip in (SkipReason.ALREADY_REPLAYED, SkipReason.IN_DOUBT):
        # Edit and replay replays again whatever was replayed before (the payload can stay).
        again = "use Edit the payload, then replay (on the failure's page) to run it again"
        return f"{detail.removesuffix(FORCE_HINT)}: {again}"
    if skip == SkipReason.NOT_REPLAYABLE and row.kind == "legacy-dlq" and not row.function_arn:
        # An edited replay needs a function too: the console has no way to name one.
        return (
            "this legacy DLQ record names no function, and the console cannot choose one: "
            f"replay it with `lambda-destinations replay {row.request_id or row.key} "
            "--legacy-function NAME`"
        )
    if skip == SkipReason.NOT_REPLAYABLE and row.status is FailureStatus.REPLAY:
        return (
            "this is a replay's own record: replay the failure it replays instead "
            "(its page names it under Replay of)"
        )
    return detail


# What became of a bulk replay's records, worded as the plan and `replay` word them.
_SKIPPED: dict[str, str] = {
    SkipReason.ALREADY_REPLAYED: "replayed already, by another run or someone else (Edit the "
    "payload, then replay, on the failure's page, runs it again)",
    # Both kinds of pending attempt: one interrupted, and one another run may be making now
    # (replayed again at once, it would be invoked twice).
    SkipReason.IN_DOUBT: "in doubt: an earlier attempt was interrupted and may have reached "
    "Lambda, or has no outcome yet because another run may be invoking it now (each failure's "
    "page names it and says which)",
    SkipReason.HANDLED: "ignored, or recovered by a replay, by someone else while the job ran",
    SkipReason.CONCURRENT: "replayed by another process at the same moment",
    SkipReason.NOT_REPLAYABLE: "cannot be replayed: a stream batch, a legacy DLQ "
    "record naming no function, or a replay's own record",
}
_ERRORS: dict[str, str] = {
    ErrorReason.REFUSED: "Lambda refused the Invoke call: nothing ran, and the failure stays "
    "open for another run",
    ErrorReason.IN_DOUBT: "in doubt, may have reached Lambda: the Invoke call's answer was "
    "lost, so it may have run; a later run skips it (Edit the payload, then replay, on the "
    "failure's page, runs it again once you know it did not run)",
}
_ORDER = {"invoked": 0, "skipped": 1, "error": 2}
_OUTCOME_LABELS = {"error": "errors"}  # the tally's words, as `replay` prints it
_NOT_REACHED = {
    "running": "not reached yet",
    "done": "left the selection before the job came to them: ignored, or recovered by a "
    "replay, by someone else meanwhile, or pruned",
    "failed": "the job stopped at the error below",
    "cancelled": "the job was cancelled: the console stopped",
}


@dataclasses.dataclass(frozen=True, slots=True)
class JobReason:
    """How many of one outcome's records ended so, why, and the first one's detail."""

    count: int
    text: str
    first: str = ""  # whole: a replay's detail is cut at 1,000 characters already


@dataclasses.dataclass(frozen=True, slots=True)
class JobOutcome:
    """How many of a job's records ended one way (``label``), and why, by reason."""

    label: str
    count: int
    reasons: list[JobReason]


def job_outcomes(job: Job) -> list[JobOutcome]:
    """What became of every record a job acts on: each outcome with its reasons, and for a bulk
    job those of its selection it has not reached (the rest of its count)."""
    outcomes = []
    for outcome, count in sorted(job.counts.items(), key=lambda item: _ORDER.get(item[0], 3)):
        words = _ERRORS if outcome == "error" else _SKIPPED
        firsts = job.first_detail.get(outcome, {})
        reasons = [
            JobReason(n, words.get(r, r), firsts.get(r, ""))
            for r, n in job.reasons.get(outcome, {}).items()
        ]
        outcomes.append(JobOutcome(_OUTCOME_LABELS.get(outcome, outcome), count, reasons))
    if job.kind.startswith("bulk-") and job.done < job.total:
        left = job.total - job.done
        reason = JobReason(left, _NOT_REACHED[job.state])
        outcomes.append(JobOutcome("not reached", left, [reason]))
    return outcomes
