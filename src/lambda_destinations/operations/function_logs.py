"""A failed invocation's own log lines, read from its function's CloudWatch Logs log group: what
``failures logs`` shows.

Lambda writes an invocation's lines to a log stream of the function's log group: the START, END
and REPORT lines, which name the request id, the runtime's logger lines (Python's ``logging``,
Node's ``console``), which name it too (in the JSON log format as a ``requestId`` field of the
same text), and what the code prints, which names nothing. So the lines naming the request id
are found first (FilterLogEvents, the quoted request id its pattern), then every line of their
stream from the first to the last of each attempt, the printed ones with them: an execution
environment runs one invocation at a time, so what its stream holds between an invocation's
START and REPORT is that invocation's.

Lambda's asynchronous retries keep the request id, so every attempt's lines name it; the
window read decides which attempts are found (:func:`default_window`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lambda_destinations._text import line_feeds
from lambda_destinations.errors import LambdaDestinationsError
from lambda_destinations.redact import echoed
from lambda_destinations.times import utc_text

if TYPE_CHECKING:
    from lambda_destinations.aws import AwsClients
    from lambda_destinations.store import InvocationRow, Store

# Lambda's longest timeout: the last attempt began at most this long before its record.
LONGEST_RUN = dt.timedelta(minutes=15)
# The longest maximum event age of an asynchronous invocation: the first attempt began at most
# this long before the last.
LONGEST_EVENT_AGE = dt.timedelta(hours=6)
# Room for clocks, and for lines written as the record was sent.
SLACK = dt.timedelta(minutes=1)
_PAGE_MAX = 10_000  # FilterLogEvents' most events an answer
DEFAULT_LIMIT = 500  # lines read at most, unless told otherwise


@dataclasses.dataclass(frozen=True, slots=True)
class Controls:
    """How the reader of the lines reads other ones, in the words of the front end that shows
    them (``failures logs``' options; the console's link, and the command for the rest): the
    lines of this module name them."""

    all_attempts: str  # what reads back to the first attempt: "--all-attempts"
    window: str  # what sets the window, a clause: "--since and --until set the window"
    log_group: str  # what gives the log group, before its name: "--log-group "
    all_lines: str  # what reads past the limit: "--limit 0: all"


def default_window(moment: dt.datetime, *, all_attempts: bool) -> tuple[dt.datetime, dt.datetime]:
    """The window that holds the lines of the last attempt of an invocation whose record was
    written at ``moment`` (``all_attempts``: of every attempt)."""
    before = LONGEST_RUN + SLACK + (LONGEST_EVENT_AGE if all_attempts else dt.timedelta())
    return moment - before, moment + SLACK


def window_text(since: dt.datetime, until: dt.datetime) -> str:
    return f"{utc_text(since)} → {utc_text(until)} UTC"


class LogsNotRead(LambdaDestinationsError):
    """The lines could not be read: ``problem``, and ``fix``."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix


class LogGroupNotFound(LogsNotRead):
    """The log group does not exist (in the account and region read)."""


class LogsRefused(LogsNotRead):
    """AWS refused a call: a permission the credentials (or an account's role) lack."""


class NothingToRead(LogsNotRead):
    """The record names nothing to read the lines by: no request id, or no function (and no
    log group was given)."""


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: dt.datetime
    log_stream: str
    message: str
    event_id: str


@dataclasses.dataclass(slots=True)
class LogSource:
    """Where a function's lines are: its log group, in the function's region and account (None:
    the settings' region, the credentials' own account)."""

    log_group: str
    region: str | None = None
    account: str | None = None
    partition: str = "aws"
    # Why the function's configuration was not read, when it was not: its default log group
    # name was read instead (a custom one would be missed).
    unread_config: str | None = None

    def arn(self, region: str | None) -> str:
        """The log group's ARN, as IAM policies name it (its streams included)."""
        where = f"{self.region or region}:{self.account or 'ACCOUNT'}"
        return f"arn:{self.partition}:logs:{where}:log-group:{self.log_group}:*"


@dataclasses.dataclass(slots=True)
class FunctionLogs:
    source: LogSource
    since: dt.datetime
    until: dt.datetime
    lines: list[LogLine]
    more: bool  # the limit cut them short
    retention_days: int | None = None  # read when no line was found
    # When no line was found and the function is of an account whose logs were not read: what
    # to set (other_account).
    other_account: str | None = None


def default_log_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


async def log_source(aws: AwsClients, function_arn: str, log_group: str | None) -> LogSource:
    """Where the lines of ``function_arn`` are: ``log_group`` when given, else the one the
    function's LoggingConfig names (GetFunctionConfiguration), else ``/aws/lambda/NAME``. A
    refusal to read the configuration, or a function no longer there, leaves the default and
    says why in ``unread_config``."""
    from botocore.exceptions import ClientError

    from lambda_destinations.retrying import (
        CREDENTIAL_CODES,
        DENIED_CODES,
        AccountRefusal,
        error_code,
        first_line,
    )
    from lambda_destinations.schemas import FunctionArn

    arn = FunctionArn.parse(function_arn)
    source = LogSource(log_group or "", arn.region, arn.account, arn.partition)
    if log_group:
        return source
    source.log_group = default_log_group(arn.function_name)
    lam = await aws.client_in(source.account, "lambda", region=source.region)
    try:
        qualifier = {"Qualifier": arn.qualifier} if arn.qualifier else {}
        config = await lam.get_function_configuration(FunctionName=arn.unqualified, **qualifier)
    except ClientError as exc:
        code = error_code(exc)
        refused = code in DENIED_CODES - CREDENTIAL_CODES and not isinstance(exc, AccountRefusal)
        if not refused and code != "ResourceNotFoundException":
            raise
        source.unread_config = f"GetFunctionConfiguration failed ({first_line(exc)})"
        return source
    named = (config.get("LoggingConfig") or {}).get("LogGroup")
    if named:
        source.log_group = str(named)
    return source


async def read_lines(
    logs: Any, group: str, request_id: str, since: dt.datetime, until: dt.datetime, limit: int
) -> tuple[list[LogLine], bool]:
    """The lines of ``request_id`` in ``group`` between ``since`` and ``until``, in time order,
    at most ``limit`` (0: all); whether there were more."""
    window = {"startTime": _millis(since), "endTime": _millis(until)}
    named, more = await _filtered(logs, group, limit, filterPattern=f'"{request_id}"', **window)
    found = {line.event_id: line for line in named}
    # Where each line came in the reads, the last read of it winning: a stream's span gives
    # its lines in the order written, where several share a millisecond (a printed line and
    # the logger's, which alone names the request id: the first read had it without the other).
    rank = {line.event_id: n for n, line in enumerate(named)}
    read = 0  # the lines of the spans read so far
    for stream, first, last in sorted(_attempts(named, request_id), key=lambda span: span[1]):
        if limit and sum(1 for line in found.values() if line.timestamp < first) >= limit:
            more = True  # the first `limit` lines are all before this attempt
            break
        span = {"startTime": _millis(first), "endTime": _millis(last)}
        around, cut = await _filtered(logs, group, limit, logStreamNames=[stream], **span)
        found.update((line.event_id, line) for line in around)
        rank.update((line.event_id, n) for n, line in enumerate(around, start=len(named) + read))
        read += len(around)
        more = more or cut
    lines = sorted(
        found.values(), key=lambda line: (line.timestamp, line.log_stream, rank[line.event_id])
    )
    if limit and len(lines) > limit:
        return lines[:limit], True
    return lines, more


async def _filtered(logs: Any, group: str, limit: int, **params: Any) -> tuple[list[LogLine], bool]:
    """FilterLogEvents' lines, page after page, at most ``limit`` (0: all); whether more."""
    lines: list[LogLine] = []
    token = None
    while True:
        size = min(_PAGE_MAX, limit - len(lines)) if limit else _PAGE_MAX
        page = await logs.filter_log_events(
            logGroupName=group, limit=size, **params, **({"nextToken": token} if token else {})
        )
        lines += [_line(event) for event in page.get("events", [])]
        token = page.get("nextToken")
        if not token:
            return lines, False
        if limit and len(lines) >= limit:
            return lines, True


def _line(event: dict[str, Any]) -> LogLine:
    return LogLine(
        timestamp=dt.datetime.fromtimestamp(int(event.get("timestamp", 0)) / 1000, dt.UTC),
        log_stream=str(event.get("logStreamName", "")),
        message=str(event.get("message", "")),
        event_id=str(event.get("eventId", "")),
    )


def _attempts(named: list[LogLine], request_id: str) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """Each attempt's stream and the times of its first and last line naming the request id:
    a stream's lines are split where a START line (``platform.start`` in the JSON log format)
    begins another attempt in the same execution environment."""
    spans: list[tuple[str, dt.datetime, dt.datetime]] = []
    current: dict[str, int] = {}  # stream -> index of its attempt in spans
    for line in sorted(named, key=lambda line: line.timestamp):
        index = current.get(line.log_stream)
        if index is None or starts_attempt(line.message, request_id):
            current[line.log_stream] = len(spans)
            spans.append((line.log_stream, line.timestamp, line.timestamp))
        else:
            stream, first, _ = spans[index]
            spans[index] = (stream, first, line.timestamp)
    return spans


def starts_attempt(message: str, request_id: str) -> bool:
    """Whether ``message`` is the first line of an attempt (START, or ``platform.start``)."""
    text = message.lstrip()
    if text.startswith("START RequestId:"):
        return True
    return text.startswith("{") and '"platform.start"' in text and request_id in text


def _millis(moment: dt.datetime) -> int:
    return max(0, int(moment.timestamp() * 1000))


async def retention_days(logs: Any, group: str) -> int | None:
    """How many days ``group`` keeps its lines; None when for ever, or when that cannot be read
    (it only explains an empty answer: a refusal of it is no reason to fail)."""
    from botocore.exceptions import ClientError

    try:
        page = await logs.describe_log_groups(logGroupNamePrefix=group, limit=1)
    except ClientError:
        return None
    for found in page.get("logGroups", []):
        if found.get("logGroupName") == group and found.get("retentionInDays"):
            return int(found["retentionInDays"])
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class LogsQuery:
    """Which lines to read: of ``request_id``, of the function ``function_arn`` (None: a record
    naming none, whose ``log_group`` must be given), between ``since`` and ``until``."""

    request_id: str
    function_arn: str | None
    log_group: str | None
    since: dt.datetime
    until: dt.datetime
    limit: int  # 0: all


async def with_its_function(store: Store, row: InvocationRow) -> InvocationRow:
    """``row``, or, when it names no function (a dead-letter queue's message) but has a request
    id, another record of that request id that names one: the on-failure destination's, when
    both recorded the failure (AWS sends to both). Its lines are found through that function,
    where the DLQ message alone needed its log group given."""
    if row.function_arn is not None or not row.request_id:
        return row
    from lambda_destinations.store import InvocationFilter

    others = await store.list_invocations(InvocationFilter(request_ids=[row.request_id]))
    return next((other for other in others if other.function_arn is not None), row)


def logs_query(
    row: InvocationRow,
    controls: Controls,
    *,
    all_attempts: bool = False,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    log_group: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> LogsQuery:
    """What to read for ``row``: the window of its last attempt (``all_attempts``: of every
    attempt), or from ``since`` to ``until`` where given. NothingToRead for a record whose
    lines cannot be found (no request id; no function, unless ``log_group``)."""
    if not row.request_id:
        raise NothingToRead(
            f"the record {echoed(row.key)!r} has no request id, which the function's lines "
            "would name",
            "read its log group in CloudWatch Logs around its time",
        )
    if row.function_arn is None and not log_group:
        raise NothingToRead(
            f"the record names no function ({row.kind})",
            f"give its log group, {controls.log_group}/aws/lambda/NAME",
        )
    start, end = default_window(row.timestamp or row.first_seen_at, all_attempts=all_attempts)
    return LogsQuery(
        row.request_id, row.function_arn, log_group, since or start, until or end, limit
    )


async def function_logs(aws: AwsClients, query: LogsQuery, controls: Controls) -> FunctionLogs:
    """The lines ``query`` names, read in the function's account with the role the accounts
    table names for it. Raises LogGroupNotFound or LogsRefused (a line and a fix each,
    ``controls`` named in it); any other AWS error as it is."""
    from botocore.exceptions import ClientError

    if query.function_arn is None:
        source = LogSource(query.log_group or "")
    else:
        source = await log_source(aws, query.function_arn, query.log_group)
    logs = await aws.client_in(source.account, "logs", region=source.region)
    try:
        lines, more = await read_lines(
            logs, source.log_group, query.request_id, query.since, query.until, query.limit
        )
    except ClientError as exc:
        raise await _not_read(aws, source, exc, controls) from exc
    found = FunctionLogs(source, query.since, query.until, lines, more)
    if not lines:
        found.retention_days = await retention_days(logs, source.log_group)
        found.other_account = await other_account(aws, source.account)
    return found


async def _not_read(
    aws: AwsClients, source: LogSource, exc: Exception, controls: Controls
) -> Exception:
    """What FilterLogEvents' error ``exc`` says, restated: a log group not found, a refusal
    naming the permission on the group's ARN; ``exc`` itself for any other."""
    from lambda_destinations.retrying import (
        CREDENTIAL_CODES,
        DENIED_CODES,
        AccountRefusal,
        aws_fix,
        error_code,
        first_line,
    )

    code = error_code(exc)
    account = source.account
    if code in DENIED_CODES - CREDENTIAL_CODES or isinstance(exc, AccountRefusal):
        role = aws.role_arn(account)
        credentials = f"{role}, the role of accounts.{account}" if role else "the AWS credentials"
        fix = aws_fix(exc, credentials=credentials, on=source.arn(aws.region))
        operation = getattr(exc, "operation_name", "FilterLogEvents")
        return LogsRefused(f"{operation} was refused ({first_line(exc)})", fix or "")
    if code != "ResourceNotFoundException":
        return exc
    other = await other_account(aws, account)
    # The account read: the credentials' own when no role of the function's is set.
    read = await aws.own_account() if other is not None else account
    where = f"account {read}, " if read else ""
    region = source.region or aws.region
    problem = f"log group {source.log_group} not found in {where}region {region}"
    fix = (
        "the function has not logged yet, or logs to another group: "
        f"give it, {controls.log_group}NAME"
    )
    if source.unread_config:
        fix += f" ({source.unread_config}: its LoggingConfig, which may name one, was not read)"
    return LogGroupNotFound(problem, other or fix)


async def other_account(aws: AwsClients, account: str | None) -> str | None:
    """When ``account``, a function's, is neither the credentials' own nor in the accounts
    table: what to set to read its logs (the credentials' own account was read instead)."""
    if account is None or aws.role_arn(account) is not None:
        return None
    own = await aws.own_account()
    if own is None or own == account:
        return None
    return (
        f"the function is in account {account}, and the AWS credentials are account {own}'s, "
        f"whose logs were read: set a role of account {account} to assume for it, "
        f'[accounts.{account}] role_arn = "arn:aws:iam::{account}:role/NAME" in the TOML file, '
        "allowed logs:FilterLogEvents on the function's log group"
    )


def log_text(lines: Sequence[LogLine]) -> str:
    """Each line after its time, its own line breaks indented under its first; the stream's
    name before the first line of each stream. Not yet escaped: each front end shows it as it
    shows every text (``visible``)."""
    out: list[str] = []
    stream = None
    for line in lines:
        if line.log_stream != stream:
            stream = line.log_stream
            out.append(f"stream {stream}")
        time = utc_text(line.timestamp)
        first, *rest = line_feeds(line.message).rstrip("\n").split("\n")
        out.append(f"{time}  {first}")
        out += [" " * (len(time) + 2) + more for more in rest]
    return "\n".join(out)


def log_notes(
    row: InvocationRow, found: FunctionLogs, controls: Controls, *, widened: bool, now: dt.datetime
) -> list[str]:
    """What to say beside the lines: where they came from, or why none, and what to read next.
    ``widened``: the window is wider than the last attempt's."""
    count = len(found.lines)
    window = window_text(found.since, found.until)
    where = f"log group {found.source.log_group}"
    if not count:
        notes = [f"no line of request id {row.request_id} in {where}, {window}"]
        if row.condition == "ZeroReservedConcurrency":
            notes.append("Lambda did not run the function (its reserved concurrency is 0)")
        return notes + _empty_hints(row, found, controls, widened=widened, now=now)
    notes = [f"{count} line{'s' if count != 1 else ''} from {where}, {window}"]
    if found.more:
        notes.append(f"the first {count} shown; more lines match ({controls.all_lines})")
    attempts = row.approximate_invoke_count or 1
    if row.kind == "stream-failure":
        notes.append(
            "Lambda retries a stream batch in new invocations, each with a request id of its "
            "own: the others' lines are in the same log group, before these"
        )
    elif not widened and (shown := _attempts_shown(row, found)) < attempts:
        notes.append(
            f"{shown} of {attempts} attempts in the window; {controls.all_attempts} reads back "
            "to the first"
        )
    return notes


def _attempts_shown(row: InvocationRow, found: FunctionLogs) -> int:
    """How many attempts' START lines the lines hold (at least one: lines were found)."""
    request_id = row.request_id or ""
    return max(1, sum(1 for line in found.lines if starts_attempt(line.message, request_id)))


def _empty_hints(
    row: InvocationRow, found: FunctionLogs, controls: Controls, *, widened: bool, now: dt.datetime
) -> list[str]:
    """What may explain a window with no line: its width, the group's retention, an account
    whose logs were not read."""
    hints = []
    if not widened:
        hints.append(f"{controls.all_attempts} reads back to the first attempt; {controls.window}")
    moment = row.timestamp or row.first_seen_at
    days = found.retention_days
    if days is not None and moment < now - dt.timedelta(days=days):
        hints.append(
            f"the log group keeps lines {days} days, and the record is from "
            f"{utc_text(moment)} UTC: its lines have expired"
        )
    if found.other_account:
        hints.append(found.other_account)
    return hints
