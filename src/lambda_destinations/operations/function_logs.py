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
from typing import TYPE_CHECKING, Any

from lambda_destinations.errors import LambdaDestinationsError
from lambda_destinations.times import utc_text

if TYPE_CHECKING:
    from lambda_destinations.aws import AwsClients

# Lambda's longest timeout: the last attempt began at most this long before its record.
LONGEST_RUN = dt.timedelta(minutes=15)
# The longest maximum event age of an asynchronous invocation: the first attempt began at most
# this long before the last.
LONGEST_EVENT_AGE = dt.timedelta(hours=6)
# Room for clocks, and for lines written as the record was sent.
SLACK = dt.timedelta(minutes=1)
_PAGE_MAX = 10_000  # FilterLogEvents' most events an answer


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
    for stream, first, last in sorted(_attempts(named, request_id), key=lambda span: span[1]):
        if limit and sum(1 for line in found.values() if line.timestamp < first) >= limit:
            more = True  # the first `limit` lines are all before this attempt
            break
        span = {"startTime": _millis(first), "endTime": _millis(last)}
        around, cut = await _filtered(logs, group, limit, logStreamNames=[stream], **span)
        found.update((line.event_id, line) for line in around)
        more = more or cut
    lines = sorted(found.values(), key=lambda line: (line.timestamp, line.log_stream))
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


async def function_logs(aws: AwsClients, query: LogsQuery, roles: dict[str, str]) -> FunctionLogs:
    """The lines ``query`` names. ``roles``: the role ARN of each account of the accounts table,
    whose calls are made as that role. Raises LogGroupNotFound or LogsRefused (a line and a
    fix each); any other AWS error as it is."""
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
        raise await _not_read(aws, source, exc, roles) from exc
    found = FunctionLogs(source, query.since, query.until, lines, more)
    if not lines:
        found.retention_days = await retention_days(logs, source.log_group)
        found.other_account = await other_account(aws, source.account, roles)
    return found


async def _not_read(
    aws: AwsClients, source: LogSource, exc: Exception, roles: dict[str, str]
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
        role = roles.get(account or "")
        credentials = f"{role}, the role of accounts.{account}" if role else "the AWS credentials"
        fix = aws_fix(exc, credentials=credentials, on=source.arn(aws.region))
        operation = getattr(exc, "operation_name", "FilterLogEvents")
        return LogsRefused(f"{operation} was refused ({first_line(exc)})", fix or "")
    if code != "ResourceNotFoundException":
        return exc
    where = f"account {account}, " if account else ""
    region = source.region or aws.region
    problem = f"log group {source.log_group} not found in {where}region {region}"
    fix = "the function has not logged yet, or logs to another group: give it, --log-group NAME"
    if source.unread_config:
        fix += f" ({source.unread_config}: its LoggingConfig, which may name one, was not read)"
    if (other := await other_account(aws, account, roles)) is not None:
        fix = other
    return LogGroupNotFound(problem, fix)


async def other_account(aws: AwsClients, account: str | None, roles: dict[str, str]) -> str | None:
    """When ``account``, a function's, is neither the credentials' own nor in the accounts
    table: what to set to read its logs (the credentials' own account was read instead)."""
    if account is None or account in roles:
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
