"""``doctor``: check the configuration against the live endpoint, one row per check.

Each check ends ``ok``, ``warn`` (works, but something will bite later) or ``error`` (records
will be lost, dead-lettered for nothing, or not read at all), with the fix for anything not
ok. A check that could not run because an endpoint or the store did not answer is an error
marked ``unreachable``, so the command can exit with the code for that (4); so is a SQLite
store with no room to grow, whose reads may answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import math
import os
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.parsers import ResponseParserError

from lambda_destinations._urls import queue_name
from lambda_destinations.aws import AwsClients, CredentialsUnavailable, all_items, no_role_fix
from lambda_destinations.config import OUTSIDE_DEV, Settings
from lambda_destinations.errors import (
    ConfigError,
    NewerSchema,
    StoreMisconfigured,
    StoreUnavailable,
    StoreUrlError,
    StoreUrlProblem,
)
from lambda_destinations.handlers.registry import replay_outcomes_linked, routed_notifiers
from lambda_destinations.handlers.routing import routes_of_no_queue
from lambda_destinations.operations._reads import Reads
from lambda_destinations.operations.handler_checks import (
    Check,
    Status,
    aws_error_row,
    caught,
    check_handlers,
    error_text,
    function_names,
    unforeseen,
)
from lambda_destinations.redact import mask_url
from lambda_destinations.retrying import (
    CONNECTION_ERRORS,
    DENIED_CODES,
    AccountRefusal,
    describe_error,
    error_code,
    not_aws_answer,
    said_not_aws,
)
from lambda_destinations.schemas.s3 import LAMBDA_PREFIX, notification_configuration
from lambda_destinations.store import (
    InvocationFilter,
    Store,
    creation_problem,
    network_file_system,
)
from lambda_destinations.times import duration_unit
from lambda_destinations.worker.queues import (
    DEFAULT_VISIBILITY,
    arn_name,
    check_url_region,
    is_missing_queue,
    named_alike,
    named_alike_problem,
    parse_arn,
    policy_target,
    polled_dlq,
    polled_dlqs,
    queue_lookup,
    same_queue,
)

# After a heartbeat is due, this long must remain before the message would reappear: the
# heartbeat loop's tick (up to 1 s), the batching of the call, and the call itself.
HEARTBEAT_MARGIN_ERROR = 2.0
HEARTBEAT_MARGIN_WARN = 10.0
SQS_MAX_VISIBILITY = 43200  # 12 h: SQS's limit on a message's total hidden time
SHORT_RETRY_WINDOW = 60.0
# Seconds an AWS call may go unanswered (twice) before its row says the endpoint does not
# answer: doctor makes no long poll; listing a page of functions or log groups takes far less.
DOCTOR_READ_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Queue:
    """What the Lambda checks need of a polled queue."""

    name: str
    arn: str
    url: str


def retry_delays(settings: Settings, max_receive_count: int) -> list[float]:
    """The longest delay after each failed receive, 1..maxReceiveCount.

    The same schedule as :func:`lambda_destinations.retrying.backoff_delay` without its jitter
    (which only shortens delays, to no less than half).
    """
    return [
        min(settings.retry_max, math.ldexp(settings.retry_base, min(n - 1, 32)))
        for n in range(1, max_receive_count + 1)
    ]


# What the redrive check reads of a DLQ: its retention, what it holds, its KMS key.
_DLQ_ATTRIBUTES = [
    "MessageRetentionPeriod",
    "ApproximateNumberOfMessages",
    "KmsMasterKeyId",
    "QueueArn",
]


def _duration(seconds: float) -> str:
    amount, unit = duration_unit(seconds)
    precision = {"s": "g", "min": ".0f"}.get(unit, ".1f")
    return f"{amount:{precision}} {unit}"


async def _event_invoke_configs(
    lam: Any, names: Iterable[str]
) -> list[tuple[str, list[dict[str, Any]] | BaseException]]:
    """Each function's event-invoke configs, by name (or the error that kept them), 8 at once."""
    semaphore = asyncio.Semaphore(8)

    async def configs(name: str) -> tuple[str, list[dict[str, Any]] | BaseException]:
        async with semaphore:
            try:
                found = await all_items(
                    lam,
                    "list_function_event_invoke_configs",
                    "FunctionEventInvokeConfigs",
                    FunctionName=name,
                )
            except (ClientError, BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
                return name, exc
            return name, found

    return await asyncio.gather(*(configs(n) for n in sorted(names)))


async def _event_source_mappings(
    lam: Any, names: Iterable[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The event-source mappings of the functions ``names``, each with its function's name:
    listed all at once, a page per 100 mappings, rather than a call per function."""
    found = await all_items(lam, "list_event_source_mappings", "EventSourceMappings")
    wanted = set(names)
    mappings: list[tuple[str, dict[str, Any]]] = []
    for mapping in found:
        arn = str(mapping.get("FunctionArn") or "")  # …:function:NAME, or …:NAME:QUALIFIER
        name = arn.split(":")[6] if arn.count(":") >= 6 else ""
        if name in wanted:
            mappings.append((name, mapping))
    return sorted(mappings, key=lambda found: (found[0], _mapping_source(found[1])))


def _is_unreachable(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_ERRORS)


def _listed(things: Sequence[str], shown: int = 3) -> str:
    """``things`` joined for a row: the first ``shown``, then how many more."""
    more = len(things) - shown
    return ", ".join(things[:shown]) + (f" and {more} more" if more > 0 else "")


class Doctor:
    """Runs the checks; ``await Doctor(settings).run()`` gives the rows in order."""

    def __init__(self, settings: Settings, *, function_glob: str | None = None) -> None:
        self.settings = settings
        self.function_glob = function_glob
        self.checks: list[Check] = []
        # (queue, its DLQ, the DLQ's retention, the queue's): DLQs that keep messages no longer
        # than their queue, said in one row once every queue is checked.
        self._short_dlqs: list[tuple[str, str, int, int]] = []
        # (name, URL, visible messages) of each polled queue that holds some: a backlog.
        self._waiting: list[tuple[str, str, int]] = []
        # Whether the store holds no record (or does not exist yet), asked of it only when
        # those queues hold some: False when it cannot tell, as the store's own rows say why.
        self._store_empty = False
        # Each KMS key of the account's own (SSE-KMS) that encrypts a polled queue or its DLQ,
        # with the queues it encrypts: asked of KMS once each, after the queues.
        self._keys: dict[str, list[str]] = {}
        # Of those, each key of a DLQ (the worker sends quarantined copies there), with that
        # DLQ's ARN: SQS's encryption context when it asks KMS for a data key.
        self._dlq_keys: dict[str, str] = {}
        # The account of the credentials (None until STS says), and how many open failures
        # the store holds of each account's functions, asked of it once the account is known.
        self._own_account: str | None = None
        self._failure_accounts: dict[str, int] = {}
        self._reads = Reads()
        # What could not be read and may point a destination at a polled queue (an ordered set).
        self._unread: dict[str, None] = {}
        # The queues whose subscription of each topic awaits confirmation, by the topic's ARN.
        self._pending: dict[str, list[str]] = {}

    def add(
        self, check: str, status: Status, detail: str, fix: str = "", *, unreachable: bool = False
    ) -> None:
        self.checks.append(Check(check, status, detail, fix, unreachable))

    def _read_failed(
        self, check: str, exc: BaseException, status: Status, detail: str, fix: str
    ) -> None:
        """The row of a read that failed: ``detail`` and ``fix`` for what the check foresees
        (the credentials refused, an answer no AWS service gives, no answer), a failed row
        naming the operation and AWS's code for any other AWS error (a 5xx, a throttle)."""
        if unforeseen(exc):
            self.checks.append(aws_error_row(check, exc))
        else:
            self.add(check, status, detail, fix)

    def _not_answered(
        self,
        check: str,
        exc: BaseException,
        status: Status,
        service: str,
        about: str = "",
        then: str = "",
    ) -> None:
        """The row of a call ``service`` did not answer (or answered in no AWS way), ``about``
        what, and ``then`` what that leaves; unreachable when the endpoint was not reached."""
        self.add(
            check,
            status,
            f"{service} did not answer{about} ({error_text(exc)}){then}",
            "check the endpoint and the network",
            unreachable=_is_unreachable(exc),
        )

    async def run(self) -> list[Check]:
        settings = self.settings
        self._check_settings()
        handlers_checked = False
        if settings.resolved_region() is None:
            self._no_region()
        else:
            # No long poll among its calls: an endpoint that never answers is said in
            # seconds, not after the worker's long-poll timeout (wait_time + 15 s) a try.
            async with AwsClients(
                settings, max_attempts=2, read_timeout=DOCTOR_READ_TIMEOUT
            ) as aws:
                if await self._check_credentials(aws):
                    # Each part that reads AWS is caught: an AWS error one lets through is
                    # its failed row, and the run goes on.
                    await caught("accounts", self._check_accounts(aws), self.checks)
                    queues = await caught("queues", self._check_queues(aws), self.checks)
                    self._check_dlq_retention()
                    await caught("kms keys", self._check_keys(aws), self.checks)
                    if queues is not None:
                        self._check_route_queues(queues)
                        lambda_checks = self._check_lambda(aws, queues)
                        await caught("lambda destinations", lambda_checks, self.checks)
                    self.checks.extend(await check_handlers(settings, aws, self._reads))
                    handlers_checked = True
        if not handlers_checked:
            # What needs no AWS call (each handler's settings, its SMTP server) is said whatever
            # the credentials say: `run` refuses a bad setting before it asks AWS anything.
            self.checks.extend(await check_handlers(settings, None))
        await self._check_store()
        self._check_failure_accounts()
        await self._check_backlog()
        return self.checks

    def _no_region(self) -> None:
        if (profile := self.settings.missing_profile()) is not None:
            # botocore reads AWS_DEFAULT_PROFILE before AWS_PROFILE
            named = (
                "AWS_DEFAULT_PROFILE" if os.environ.get("AWS_DEFAULT_PROFILE") else "AWS_PROFILE"
            )
            detail = (
                f"no AWS region is configured: the AWS profile '{profile}' ({named}) is not in "
                "the AWS config file"
            )
            self.add("aws region", "error", detail, f"fix {named}, or set AWS_REGION")
            return
        self.add(
            "aws region",
            "error",
            "no AWS region is configured",
            "set AWS_REGION (or LAMBDA_DESTINATIONS_REGION)",
        )

    # -- settings ---------------------------------------------------------------------------

    def _check_settings(self) -> None:
        settings = self.settings
        if not settings.queues:
            self.add(
                "queues configured",
                "error",
                "no queues to poll",
                "set LAMBDA_DESTINATIONS_QUEUES to queue URLs or names"
                + (f"; {OUTSIDE_DEV}" if settings.outside_dev() else ""),
            )
        else:
            self.add(
                "queues configured",
                "ok",
                f"{len(settings.queues)}: " + ", ".join(queue_name(q) for q in settings.queues),
            )
        budget = settings.handler_timeout * settings.handler_attempts
        if budget > SQS_MAX_VISIBILITY:
            self.add(
                "handler budget",
                "warn",
                f"handler_timeout × handler_attempts = {_duration(budget)}, more than the 12 h "
                "SQS lets a message stay hidden: the message would reappear while it runs",
                "lower LAMBDA_DESTINATIONS_HANDLER_TIMEOUT or _HANDLER_ATTEMPTS",
            )

        linked = replay_outcomes_linked(settings)
        if linked is False:
            self.add(
                "replay outcomes",
                "warn",
                "a route replays failures, but no route of successes links a replay's outcome: "
                "replays that recover stay unmarked",
                'add replay-outcome to a route with condition = "success"',
            )
        elif linked:
            self.add("replay outcomes", "ok", "a route of successes links them")

    # -- credentials and queues -------------------------------------------------------------

    async def _check_credentials(self, aws: AwsClients) -> bool:
        """False when nothing else on AWS can be checked (no credentials, no endpoint)."""
        where = self.settings.shown_endpoint()
        try:
            await aws.check_credentials()
        except CredentialsUnavailable as exc:
            self.add("aws credentials", "error", exc.problem, exc.fix)
            return False
        try:
            sts = await aws.client("sts")
            identity = await sts.get_caller_identity()
        except (NoCredentialsError, PartialCredentialsError) as exc:
            self.add(
                "aws credentials",
                "error",
                f"no usable AWS credentials ({error_text(exc)})",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role",
            )
            return False
        except NoRegionError:
            self.add("aws credentials", "error", "no AWS region", "set AWS_REGION")
            return False
        except CONNECTION_ERRORS as exc:
            self.add(
                "aws endpoint",
                "error",
                f"{where} does not answer ({error_text(exc)})",
                self.settings.endpoint_fix(),
                unreachable=True,
            )
            return False
        except (ClientError, ResponseParserError) as exc:
            return self._sts_refused(exc)
        except BotoCoreError as exc:
            self.add("aws credentials", "error", error_text(exc), "check the AWS configuration")
            return False
        self.add("aws credentials", "ok", f"{identity.get('Arn')} at {where}")
        self._own_account = identity.get("Account")
        return True

    async def _check_accounts(self, aws: AwsClients) -> None:
        """A row per account of the accounts table: its role can be assumed (as Lambda calls
        there assume it), and the credentials got are that account's."""
        for account, role in sorted(self.settings.accounts.items()):
            check = f"account {account}"
            try:
                sts = await aws.client_in(account, "sts")
                identity = await sts.get_caller_identity()
            except AccountRefusal as exc:  # STS refused the role: the line replays say
                self.add(check, "error", describe_error(exc), exc.fix)
                continue
            except CONNECTION_ERRORS as exc:
                self.add(
                    check,
                    "error",
                    f"STS does not answer ({error_text(exc)})",
                    self.settings.endpoint_fix(),
                    unreachable=True,
                )
                continue
            except (ClientError, BotoCoreError, ResponseParserError) as exc:
                self.add(check, "error", f"cannot assume {role.role_arn} ({error_text(exc)})")
                continue
            got = identity.get("Account")
            if got != account:
                self.add(
                    check,
                    "error",
                    f"{role.role_arn} was assumed, but its credentials are account {got}'s: "
                    f"Lambda calls made with them are not made in account {account}",
                    f"check accounts.{account}.role_arn"
                    + (
                        f"; {self.settings.shown_endpoint()} may be an emulator that keeps "
                        "every role in one account"
                        if self.settings.endpoint_url
                        else ""
                    ),
                )
                continue
            self.add(check, "ok", f"{role.role_arn} assumed ({identity.get('Arn')})")

    def _sts_refused(self, exc: ClientError | ResponseParserError) -> bool:
        """The row of an STS error (its XML parser's too); whether the checks on AWS go on."""
        if self._not_aws("aws endpoint", exc):  # a web server or a proxy: no AWS call would do
            return False
        if error_code(exc) in DENIED_CODES:
            self.add(
                "aws credentials",
                "error",
                f"the credentials were refused ({error_text(exc)})",
                "check the access key, its secret and session token, and the clock",
            )
            return False
        # An endpoint without STS (an emulator): the queue checks will tell.
        self.add(
            "aws credentials",
            "warn",
            f"could not ask STS who we are ({error_text(exc)})",
            "none needed if the queue checks pass",
        )
        return True

    def _not_aws(self, check: str, exc: BaseException) -> bool:
        """Add ``check``'s error row when ``exc`` is an answer no AWS service gives (a web
        server's page, an empty 404), naming the endpoint and where it was set; whether it was.

        A failed check (1), not an unreachable one (4): the endpoint answered, as the other
        commands take such an answer (exit 1).
        """
        answer = not_aws_answer(exc)
        if answer is None:
            return False
        where = self.settings.shown_endpoint()
        fix = self.settings.not_aws_fix()
        self.add(check, "error", said_not_aws(answer, by=where), fix)
        return True

    async def _check_queues(self, aws: AwsClients) -> list[_Queue] | None:
        """One group of rows per configured queue; None when SQS cannot be asked at all."""
        sqs = await aws.client("sqs")
        polled: list[_Queue] = []
        targets: list[tuple[str, str | None, str | None]] = []  # (name, ARN, DLQ ARN)
        listed: list[tuple[str, str]] = []  # (as configured, ARN)
        seen: dict[str, str] = {}
        queues_in = self.settings.set_in("queues")
        for configured in self.settings.queues:
            name = queue_name(configured)
            try:
                if "://" in configured:
                    check_url_region(sqs, configured, queues_in=queues_in)
                    url = configured
                else:
                    lookup = queue_lookup(sqs, configured, queues_in=queues_in)
                    url = (await sqs.get_queue_url(**lookup))["QueueUrl"]
                response = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            except ConfigError as exc:  # an ARN that is no queue's, a URL or ARN of another region
                wrong, _, fix = str(exc).partition(": ")
                self.add(f"queue {name}", "error", wrong, fix)
                continue
            except CONNECTION_ERRORS as exc:
                self.add(
                    f"queue {name}",
                    "error",
                    f"SQS does not answer ({error_text(exc)})",
                    self.settings.endpoint_fix(),
                    unreachable=True,
                )
                return None
            except (ClientError, ResponseParserError) as exc:
                if self._queue_refused(name, configured, exc, aws.region):
                    return None  # not an AWS endpoint: every queue would get the same
                continue
            attributes: dict[str, str] = response.get("Attributes", {})
            arn = attributes.get("QueueArn", "")
            if problem := same_queue(seen, configured, arn or url):
                self.add(f"queue {name}", "error", problem, f"list it once in {queues_in}")
                continue
            self.add(f"queue {name}", "ok", f"exists and is readable ({url})")
            polled.append(_Queue(name, arn, url))
            self._note_key(attributes, name)
            if waiting := int(attributes.get("ApproximateNumberOfMessages", "0")):
                self._waiting.append((name, url, waiting))
            self._check_standard(name, attributes)
            self._check_visibility(name, attributes)
            dlq = await self._check_redrive(sqs, name, attributes)
            await self._check_queue_writes(sqs, _Queue(name, arn, url), dlq)
            targets.append((name, arn, _readable_target(attributes)))
            listed.append((configured, arn))
        self._flag_polled_dlqs(targets)
        self._flag_named_alike(listed, targets)
        return polled

    def _flag_named_alike(
        self, listed: list[tuple[str, str]], queues: list[tuple[str, str | None, str | None]]
    ) -> None:
        """An error row for two polled queues of one name (of two accounts), and for two such
        DLQs of polled queues: the worker refuses to start with them."""
        queues_in = self.settings.set_in("queues")
        for pair in named_alike((configured, arn) for configured, arn in listed if arn):
            check = f"queue {arn_name(pair[3])}: name"
            self.add(check, "error", *named_alike_problem(pair, queues_in))
        for pair in named_alike((name, dlq) for name, _arn, dlq in queues if dlq):
            wrong, fix = named_alike_problem(pair, queues_in, dlqs=True)
            self.add(f"{pair[2]}: dead-letter queue", "error", wrong, fix)

    def _flag_polled_dlqs(self, queues: list[tuple[str, str | None, str | None]]) -> None:
        """An error row for each polled queue that is another polled queue's DLQ, in place of
        its redrive policy's row when that is an error (no policy: not the advice it needs)."""
        queues_in = self.settings.set_in("queues")
        for dlq, source in polled_dlqs(queues):
            row = Check(f"{dlq}: dead-letter queue", "error", *polled_dlq(dlq, source, queues_in))
            redrive = f"{dlq}: redrive policy"
            at = next((i for i, c in enumerate(self.checks) if c.check == redrive), 0)
            replaced = self.checks[at].check == redrive and self.checks[at].status == "error"
            self.checks[at : at + replaced] = [row]

    def _check_route_queues(self, queues: Sequence[_Queue]) -> None:
        """A row for each route whose ``queue`` matches none of the polled queues, once every
        configured queue was found (a queue not found would make its routes look astray)."""
        if len(queues) != len(self.settings.queues):
            return
        fix = (
            f"fix its queue in {self.settings.set_in('routes')}, or add the queue to "
            f"{self.settings.set_in('queues')}"
        )
        # Matched as the worker matches them: by the name in the queue's URL (a queue given by
        # ARN is named by the whole ARN in these rows) or by the URL.
        polled = [(queue_name(q.url), q.url) for q in queues]
        for route in routes_of_no_queue(self.settings.routes, polled):
            self.add(
                "route queue",
                "warn",
                f"{route} matches none of the polled queues: it never runs",
                fix,
            )

    def _queue_refused(
        self, name: str, configured: str, exc: ClientError | ResponseParserError, region: str | None
    ) -> bool:
        """The row of an error SQS gave about a queue; True when the endpoint is no AWS one."""
        if self._not_aws(f"queue {name}", exc):
            return True
        queues_in = self.settings.set_in("queues")
        if is_missing_queue(exc):
            self.add(
                f"queue {name}",
                "error",
                f"{configured} does not exist (in {region})",
                f"create it, or fix {queues_in} (and the region)",
            )
        elif error_code(exc) in DENIED_CODES:
            self.add(
                f"queue {name}",
                "error",
                f"the credentials may not read it ({error_text(exc)})",
                "allow sqs:GetQueueUrl, GetQueueAttributes, ReceiveMessage, "
                "DeleteMessage, ChangeMessageVisibility and SendMessage (to its DLQ)",
            )
        else:
            self._read_failed(f"queue {name}", exc, "error", error_text(exc), "")
        return False

    def _check_standard(self, name: str, attributes: dict[str, str]) -> None:
        if attributes.get("FifoQueue", "false").lower() == "true":
            self.add(
                f"{name}: standard queue",
                "error",
                "a FIFO queue: Lambda cannot send destination records to FIFO queues",
                "use a standard queue as the destination, and poll that",
            )
        else:
            self.add(f"{name}: standard queue", "ok", "standard")

    def _check_visibility(self, name: str, attributes: dict[str, str]) -> None:
        settings = self.settings
        queue_visibility = int(attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY))
        check = f"{name}: visibility timeout"
        if not queue_visibility and not settings.visibility_timeout:
            self.add(
                check,
                "warn",
                f"0 s (queue's): it hides nothing it hands out, so the worker asks "
                f"{DEFAULT_VISIBILITY} s (SQS's default) instead",
                "set the queue's VisibilityTimeout, or LAMBDA_DESTINATIONS_VISIBILITY_TIMEOUT",
            )
            return
        visibility = settings.visibility_timeout or queue_visibility
        source = "visibility_timeout setting" if settings.visibility_timeout else "queue's"
        due = visibility * settings.heartbeat_fraction
        margin = visibility - due
        detail = (
            f"{visibility} s ({source}); the heartbeat extends it after {due:g} s, "
            f"{margin:g} s before the message would reappear"
        )
        # The setting, where it is set, overrides the queue's: raising the queue's does nothing.
        raised = settings.set_in("visibility_timeout")
        if not settings.visibility_timeout:
            raised = f"the queue's VisibilityTimeout (or {raised})"
        enough = math.ceil(HEARTBEAT_MARGIN_WARN / (1 - settings.heartbeat_fraction))
        fix = f"raise {raised} to {enough} s or more, or lower "
        fix += settings.set_in("heartbeat_fraction")
        if margin < HEARTBEAT_MARGIN_ERROR:
            self.add(
                check,
                "error",
                detail + ": too little for the heartbeat, so handlers running longer than "
                f"{visibility} s see their message delivered again",
                fix,
            )
        elif margin < HEARTBEAT_MARGIN_WARN:
            self.add(check, "warn", detail + ": little room for a slow heartbeat call", fix)
        else:
            covered = min(settings.handler_timeout, SQS_MAX_VISIBILITY)
            self.add(check, "ok", detail + f"; handlers up to {_duration(covered)} stay covered")

    async def _check_redrive(
        self, sqs: Any, name: str, attributes: dict[str, str]
    ) -> _Queue | None:
        """The redrive policy's rows; its DLQ, when it exists and answers."""
        check = f"{name}: redrive policy"
        policy_text = attributes.get("RedrivePolicy")
        if not policy_text:
            self.add(
                check,
                "error",
                "no redrive policy: a record that keeps failing is retried until it expires, "
                "and quarantined messages are kept in the store only",
                "give the queue a RedrivePolicy (deadLetterTargetArn, maxReceiveCount 5 or more)",
            )
            return None
        try:
            policy = json.loads(policy_text)
            max_receive_count = int(policy["maxReceiveCount"])
            dlq_arn = str(policy["deadLetterTargetArn"])
            _region, account, dlq_name = parse_arn(dlq_arn)
        except (ValueError, KeyError, TypeError) as exc:
            self.add(check, "error", f"unreadable RedrivePolicy ({exc})", "set it again")
            return None
        try:
            dlq = await self._read_dlq(sqs, dlq_arn, account, dlq_name)
        except ClientError as exc:
            if is_missing_queue(exc):
                self.add(
                    check,
                    "error",
                    f"its dead-letter queue {dlq_name} does not exist: SQS cannot move "
                    "failing messages anywhere",
                    f"create {dlq_name}, or point the RedrivePolicy at an existing queue",
                )
            else:
                self._read_failed(
                    check,
                    exc,
                    "error",
                    f"its dead-letter queue {dlq_name} cannot be read ({error_text(exc)})",
                    "allow sqs:GetQueueUrl and sqs:GetQueueAttributes on it",
                )
            return None
        except (BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self._not_answered(check, exc, "error", "SQS", about=f" about {dlq_name}")
            return None
        self.add(check, "ok", f"to {dlq_name} after {max_receive_count} receives")
        self._note_key(dlq["Attributes"], dlq_name)
        key = dlq["Attributes"].get("KmsMasterKeyId")
        if key in self._keys:
            self._dlq_keys.setdefault(key, dlq["Attributes"].get("QueueArn", ""))
        self._check_dlq_messages(name, dlq_name, dlq["Attributes"])
        retention = int(attributes.get("MessageRetentionPeriod", "345600"))
        dlq_retention = int(dlq["Attributes"].get("MessageRetentionPeriod", "345600"))
        self._check_backoff(name, max_receive_count, retention, dlq_name, dlq_retention)
        return _Queue(dlq_name, dlq_arn, dlq["QueueUrl"])

    async def _read_dlq(self, sqs: Any, arn: str, account: str, name: str) -> dict[str, Any]:
        """SQS's answer of the DLQ ``arn``'s attributes, with its ``QueueUrl``: read once however
        many queues share it."""

        async def read() -> dict[str, Any]:
            found = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            answer: dict[str, Any] = await sqs.get_queue_attributes(
                QueueUrl=found["QueueUrl"],
                AttributeNames=_DLQ_ATTRIBUTES,
            )
            return {**answer, "QueueUrl": found["QueueUrl"]}

        return await self._reads.once(("sqs dlq", arn), read)

    async def _check_queue_writes(self, sqs: Any, queue: _Queue, dlq: _Queue | None) -> None:
        """A row of what the worker writes: it deletes and changes the visibility of the
        queue's messages, and sends quarantined ones to its DLQ. Each call is tried so that
        it can change nothing (:data:`_NO_RECEIPT`, an empty batch): its answer says whether
        the credentials may make it."""
        check = f"{queue.name}: writes"
        try:
            refused = [
                write
                for write, allowed in [
                    (_DELETE, await _allowed(_probe_delete(sqs, queue.url))),
                    (_VISIBILITY, await _allowed(_probe_visibility(sqs, queue.url))),
                ]
                if not allowed
            ]
            if dlq is not None and not await self._reads.once(
                ("sqs send", dlq.arn), lambda: _probe_send(sqs, dlq.url)
            ):
                refused.append(_SEND)
        except ClientError as exc:  # not a refusal: an error no probe expects
            self.checks.append(aws_error_row(check, exc))
            return
        except (BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self._not_answered(check, exc, "error", "SQS")
            return
        if not refused:
            writes = ["DeleteMessage", "ChangeMessageVisibility"]
            writes += [f"SendMessage to {dlq.name}"] if dlq is not None else []
            self.add(check, "ok", f"{', '.join(writes[:-1])} and {writes[-1]} allowed")
            return
        self.add(
            check, "error", _refused_writes(refused, queue, dlq), _writes_fix(refused, queue, dlq)
        )

    def _check_dlq_messages(self, name: str, dlq_name: str, attributes: dict[str, str]) -> None:
        """A row for a DLQ that holds messages: those SQS moved there (before the worker ran
        too, without its reason) and those the worker quarantined, and how to see and bring
        them back. Not a warning: holding them is what a DLQ is for."""
        held = int(attributes.get("ApproximateNumberOfMessages", "0"))
        if held:
            self.add(
                f"{name}: DLQ messages",
                "ok",
                f"{dlq_name} holds about {held} message{'s' if held != 1 else ''} (dead-lettered "
                "by SQS, before the worker ran too, or quarantined by it): `dlq peek "
                f"{dlq_name}` shows them, `dlq redrive {dlq_name}` puts them back",
            )

    def _note_key(self, attributes: dict[str, str], name: str) -> None:
        """Count the queue ``name`` among those its KMS key encrypts, when it is a key of the
        account's own (SSE-KMS): SQS's own key (``alias/aws/sqs``) is always there."""
        key = attributes.get("KmsMasterKeyId")
        if key and not key.endswith("alias/aws/sqs") and name not in self._keys.get(key, []):
            self._keys.setdefault(key, []).append(name)

    async def _check_keys(self, aws: AwsClients) -> None:
        """A row per KMS key that encrypts a polled queue or its DLQ: one that is disabled,
        scheduled for deletion or gone leaves the queue's messages unread, and Lambda's records
        unsent (it encrypts them with the key)."""
        if not self._keys:
            return
        kms = await aws.client("kms")
        for key, names in self._keys.items():
            check, used = f"kms key {key}", ", ".join(names)
            try:
                metadata = (await kms.describe_key(KeyId=key))["KeyMetadata"]
            except ClientError as exc:
                if error_code(exc) == "NotFoundException":
                    self.add(
                        check,
                        "error",
                        f"does not exist: nothing can read or send messages of {used}",
                        "set their encryption to a key that exists, or to SQS-managed (SSE-SQS)",
                    )
                else:
                    self._read_failed(
                        check,
                        exc,
                        "warn",
                        f"its state cannot be read ({error_text(exc)}); it encrypts {used}",
                        "allow kms:DescribeKey on it to these credentials",
                    )
                continue
            except (BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
                self._not_answered(check, exc, "warn", "KMS", then=f"; it encrypts {used}")
                continue
            self._add_key_state(check, used, metadata)
            if metadata.get("KeyState") == "Enabled" and key in self._dlq_keys:
                await self._try_key(kms, key, self._dlq_keys[key])

    async def _try_key(self, kms: Any, key: str, dlq_arn: str) -> None:
        """The row of a try of ``key`` as SQS uses it when the worker sends to a DLQ it
        encrypts: a data key made (kms:GenerateDataKey), then decrypted (kms:Decrypt), with
        SQS's encryption context. Nothing is encrypted or kept with it."""
        check = f"kms key {key}: use"
        context = {"aws:sqs:arn": dlq_arn} if dlq_arn else {}
        fix = f"allow kms:GenerateDataKey and kms:Decrypt on {key} to these credentials (the "
        fix += "worker's role), in the key's policy"
        action = "kms:GenerateDataKey"
        try:
            made = await kms.generate_data_key(
                KeyId=key, KeySpec="AES_256", EncryptionContext=context
            )
            action = "kms:Decrypt"
            await kms.decrypt(
                CiphertextBlob=made["CiphertextBlob"], KeyId=key, EncryptionContext=context
            )
        except ClientError as exc:
            # A warning: a key policy may allow these only through SQS (kms:ViaService),
            # which the worker's sends go through and a direct try cannot.
            refused = f"{action} refused ({error_text(exc)}): the worker cannot send a "
            refused += "quarantined message's copy to the DLQ it encrypts, unless the key's "
            refused += "policy allows it only through SQS (kms:ViaService)"
            self._read_failed(check, exc, "warn", refused, fix)
            return
        except (BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self._not_answered(check, exc, "warn", "KMS")
            return
        self.add(
            check,
            "ok",
            "these credentials may make and decrypt its data keys, as "
            "sending to the DLQ it encrypts needs",
        )

    def _add_key_state(self, check: str, used: str, metadata: dict[str, Any]) -> None:
        """The row of a key KMS described: enabled, or what keeps it from encrypting."""
        state, key_id = str(metadata.get("KeyState")), metadata.get("KeyId", "")
        unusable = f"nothing can read the messages of {used}, nor send any to them"
        if state == "Enabled":
            self.add(check, "ok", f"enabled; encrypts {used}")
        elif state == "PendingDeletion":
            deleted = metadata.get("DeletionDate")
            when = f" on {deleted:%Y-%m-%d %H:%M} UTC" if deleted else ""
            self.add(
                check,
                "error",
                f"scheduled for deletion{when}: {unusable}, and once it is deleted the "
                "messages it encrypted are lost",
                f"aws kms cancel-key-deletion --key-id {key_id}, then aws kms enable-key "
                f"--key-id {key_id}",
            )
        elif state == "Disabled":
            self.add(
                check, "error", f"disabled: {unusable}", f"aws kms enable-key --key-id {key_id}"
            )
        else:  # PendingImport, Unavailable (its custom key store disconnected), Creating...
            self.add(check, "error", f"{state}: {unusable}", "see the key's state in KMS")

    def _check_backoff(
        self,
        name: str,
        max_receive_count: int,
        retention: int,
        dlq_name: str,
        dlq_retention: int,
    ) -> None:
        check = f"{name}: retry backoff"
        # The waits between a failing record's receives: on the last, it is quarantined.
        delays = retry_delays(self.settings, max_receive_count)[:-1]
        window = sum(delays)
        schedule = " + ".join(f"{d:g}" for d in delays[:6]) + (" + …" if len(delays) > 6 else "")
        detail = (
            f"a failing record reaches the DLQ after about {_duration(window)} "
            f"({schedule} s, quarantined on receive {max_receive_count}, its last); "
            f"the queue keeps messages {_duration(retention)}"
        )
        if max_receive_count < 2:
            self.add(
                check,
                "error",
                f"maxReceiveCount {max_receive_count}: a record is dead-lettered on its first "
                "failure, with no retry",
                "raise maxReceiveCount in the queue's RedrivePolicy (5 or more)",
            )
        elif window >= retention:
            self.add(
                check,
                "error",
                detail + ": messages expire before they are dead-lettered, and are lost",
                "lower LAMBDA_DESTINATIONS_RETRY_MAX or maxReceiveCount, or raise the "
                "queue's MessageRetentionPeriod",
            )
        elif window < SHORT_RETRY_WINDOW:
            self.add(
                check,
                "warn",
                detail + ": an outage longer than that sends every record to the DLQ",
                "raise maxReceiveCount or LAMBDA_DESTINATIONS_RETRY_BASE",
            )
        else:
            self.add(check, "ok", detail)
        if dlq_retention <= retention:
            self._short_dlqs.append((name, dlq_name, dlq_retention, retention))
        else:
            self.add(f"{name}: DLQ retention", "ok", f"{_duration(dlq_retention)}")

    def _check_dlq_retention(self) -> None:
        """One warning for every DLQ that keeps messages no longer than its queue: a row per
        queue said the same words again (ten queues, ten rows). A single queue's row keeps its
        name, ``QUEUE: DLQ retention``."""
        short, self._short_dlqs = self._short_dlqs, []
        if not short:
            return
        # The DLQs and their queues, by the two retentions (several queues may share a DLQ).
        groups: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
        for name, dlq_name, dlq_retention, retention in short:
            dlqs, queues = groups.setdefault((dlq_retention, retention), ([], []))
            if dlq_name not in dlqs:
                dlqs.append(dlq_name)
            queues.append(name)
        said = "; ".join(
            f"{', '.join(dlqs)} {'keeps' if len(dlqs) == 1 else 'keep'} messages "
            f"{_duration(dlq_retention)}, no longer than {'its' if len(dlqs) == 1 else 'their'} "
            f"{'queue' if len(queues) == 1 else 'queues'} ({_duration(retention)})"
            for (dlq_retention, retention), (dlqs, queues) in groups.items()
        )
        # SQS keeps a message's original enqueue time when it moves it to a standard DLQ.
        self.add(
            f"{short[0][0]}: DLQ retention" if len(short) == 1 else "DLQ retention",
            "warn",
            f"{said}; a message's age counts from its first enqueue, so dead-lettered records "
            "can expire almost at once",
            _dlq_retention_fix(groups),
        )

    # -- Lambda event-invoke configurations -------------------------------------------------

    async def _check_lambda(self, aws: AwsClients, queues: Sequence[_Queue]) -> None:
        polled = {q.arn: q.name for q in queues if q.arn}
        lam = await aws.client("lambda")
        names = await self._checked_functions(aws)
        if names is None:
            return
        fed: set[str] = set()
        with_destinations = 0
        for name, found in await _event_invoke_configs(lam, names):
            if isinstance(found, BaseException):
                self._read_failed(
                    f"function {name}",
                    found,
                    "warn",
                    f"event-invoke config not readable ({error_text(found)})",
                    "allow lambda:ListFunctionEventInvokeConfigs",
                )
                self._unread[f"function {name}'s event-invoke config"] = None
                continue
            for config in found:
                with_destinations += await self._check_destinations(aws, name, config, polled, fed)
        mapped = await self._check_mappings(aws, lam, names, polled, fed)
        if mapped is None:
            self._unread["the event-source mappings"] = None
        with_destinations += mapped or 0
        checked = f"{len(names)} function{'s' if len(names) != 1 else ''}"
        if self.function_glob is not None:
            checked += f" matching {self.function_glob!r}"
        # Said beside a conclusion drawn from what was read, which what was not may undo.
        caveat = (
            f"; not readable, so not counted: {_listed(list(self._unread))}" if self._unread else ""
        )
        if not with_destinations:
            self.add(
                "lambda destinations",
                "warn",
                f"none of {checked} has a destination (a queue, a topic, a bus or a bucket)"
                + caveat,
                "set a function's asynchronous-invocation destination, or its event-source "
                "mapping's on-failure destination, to a polled queue (or narrow the check with "
                "--function)",
            )
            return
        for arn, name in polled.items():
            if arn not in fed:
                self.add(
                    f"{name}: fed by a function",
                    "warn",
                    f"no destination of {checked} points at it (EventBridge rules are not checked)"
                    + caveat,
                    "point a function's destination at it, or stop polling it",
                )

    async def _checked_functions(self, aws: AwsClients) -> list[str] | None:
        """The names of the functions to check (those --function matches); None, and the row
        that says why, when there are none to check."""
        try:
            names = await function_names(aws, self._reads)
        except (ClientError, BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self._read_failed(
                "lambda destinations",
                exc,
                "warn",
                f"not checked: the Lambda API did not answer ({error_text(exc)})",
                "allow lambda:ListFunctions, lambda:ListFunctionEventInvokeConfigs and "
                "lambda:ListEventSourceMappings to check that functions send their records to "
                "the polled queues",
            )
            return None
        if self.function_glob is None:
            return names
        listed = len(names)
        names = [n for n in names if fnmatch.fnmatchcase(n, self.function_glob)]
        if not names:  # a typo, or another region's functions: say so, not "none of 0"
            self.add(
                "lambda destinations",
                "warn",
                f"not checked: no function matches --function {self.function_glob!r} "
                f"(of the {listed} function{'s' if listed != 1 else ''} in {aws.region})",
                "give --function a glob that matches their names (case counts), or leave "
                "it out to check them all",
            )
            return None
        return names

    async def _check_destinations(
        self,
        aws: AwsClients,
        name: str,
        config: dict[str, Any],
        polled: dict[str, str],
        fed: set[str],
    ) -> int:
        """Check the destinations of one event-invoke config; how many it has."""
        destinations = config.get("DestinationConfig") or {}
        count = 0
        # Lambda writes an asynchronous invocation's records to a bucket under this prefix.
        records_under = f"{LAMBDA_PREFIX}async/{name}/"
        for which, label in (("OnSuccess", "on-success"), ("OnFailure", "on-failure")):
            arn = (destinations.get(which) or {}).get("Destination")
            if arn:
                count += 1
                check = f"function {_function_label(name, config)} {label}"
                await self._check_destination(aws, check, arn, records_under, polled, fed)
        return count

    async def _check_mappings(
        self, aws: AwsClients, lam: Any, names: list[str], polled: dict[str, str], fed: set[str]
    ) -> int | None:
        """Check the on-failure destination of each event-source mapping of the functions
        ``names`` (where a Kinesis, DynamoDB Streams or Kafka mapping sends the record of a
        batch it discards); how many have one, None when the mappings cannot be listed."""
        try:
            mappings = await _event_source_mappings(lam, names)
        except (ClientError, BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self._read_failed(
                "event-source mappings",
                exc,
                "warn",
                f"not readable ({error_text(exc)}): their on-failure destinations are not checked",
                "allow lambda:ListEventSourceMappings",
            )
            return None
        count = 0
        for name, mapping in mappings:
            destinations = mapping.get("DestinationConfig") or {}
            arn = (destinations.get("OnFailure") or {}).get("Destination")
            if arn:
                count += 1
                function = _function_label(name, mapping)
                check = f"function {function} on-failure ({_mapping_source(mapping)})"
                # A mapping's records go under its own UUID, a folder per shard or partition.
                records_under = f"{LAMBDA_PREFIX}{mapping.get('UUID', '')}/"
                await self._check_destination(aws, check, arn, records_under, polled, fed)
        return count

    async def _check_destination(
        self,
        aws: AwsClients,
        check: str,
        arn: str,
        records_under: str,
        polled: dict[str, str],
        fed: set[str],
    ) -> None:
        """The row of one destination (``check``): where its records reach. ``records_under``
        is the key prefix under which Lambda writes them, when the destination is a bucket."""
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        target = arn.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        if service == "sqs":
            self._add_reach(
                check,
                "",
                [arn],
                polled,
                fed,
                f"→ queue {target}, which the worker does not poll: its records are never read",
                f"add {target} to {self.settings.set_in('queues')}, or point the destination "
                "at a polled queue",
            )
        elif service == "sns":
            await self._check_topic(aws, check, arn, target, polled, fed)
        elif service == "s3":
            await self._check_bucket(aws, check, arn, records_under, polled, fed)
        elif service == "events":
            self.add(
                check,
                "warn",
                f"→ EventBridge bus {target}: cannot verify that a rule forwards to a polled queue",
                "check that a rule on the bus targets a polled queue",
            )
        # A Lambda function, or a mapping's Kafka topic (kafka://…), is not ours to check.

    async def _check_topic(
        self,
        aws: AwsClients,
        check: str,
        topic_arn: str,
        topic: str,
        polled: dict[str, str],
        fed: set[str],
    ) -> None:
        endpoints = await self._subscribed_queues(aws, check, topic_arn, topic)
        if endpoints is None:
            return
        missed = f"→ SNS topic {topic}, which no polled queue subscribes to"
        fix = f"subscribe a polled queue to {topic}, or poll the queue that is subscribed"
        if pending := [polled[a] for a in self._pending.get(topic_arn, []) if a in polled]:
            missed = (
                f"→ SNS topic {topic}, whose subscription of queue {', '.join(pending)} is "
                "pending confirmation: SNS sends it nothing until it is confirmed"
            )
            fix = (
                f"subscribe the queue to {topic} from the queue's own account (`aws sns "
                "subscribe`, which confirms it), or open the SubscribeURL of the "
                "SubscriptionConfirmation message SNS sent the queue"
            )
        self._add_reach(check, f"SNS topic {topic} → ", endpoints, polled, fed, missed, fix)

    async def _subscribed_queues(
        self, aws: AwsClients, check: str, topic_arn: str, topic: str, via: str = ""
    ) -> list[str] | None:
        """The ARNs of the queues subscribed to a topic; None, and a warning, when its
        subscriptions cannot be read."""

        async def read_subscriptions() -> list[dict[str, Any]]:
            sns = await aws.client("sns")
            return await all_items(
                sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=topic_arn
            )

        try:
            subscriptions = await self._reads.once(
                ("sns subscriptions", topic_arn), read_subscriptions
            )
        except (ClientError, BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self._read_failed(
                check,
                exc,
                "warn",
                f"→ {via}SNS topic {topic}: its subscriptions cannot be read ({error_text(exc)})",
                "allow sns:ListSubscriptionsByTopic",
            )
            self._unread[f"topic {topic}'s subscriptions"] = None
            return None
        queues = [s for s in subscriptions if s.get("Protocol") == "sqs"]
        # One of another account's topic awaits its confirmation by the queue's owner: SNS
        # lists it with this ARN and sends it nothing until then.
        pending = [s for s in queues if s.get("SubscriptionArn") == "PendingConfirmation"]
        self._pending[topic_arn] = [s.get("Endpoint", "") for s in pending]
        return [s.get("Endpoint", "") for s in queues if s not in pending]

    async def _check_bucket(
        self,
        aws: AwsClients,
        check: str,
        bucket_arn: str,
        prefix: str,
        polled: dict[str, str],
        fed: set[str],
    ) -> None:
        """An S3 bucket as the on-failure destination: Lambda writes each record there as an
        object under ``prefix`` (``aws/lambda/async/FUNCTION/``, a mapping's
        ``aws/lambda/UUID/``), which the worker reads only when the bucket's event
        notification of it reaches a polled queue (directly, or through an SNS topic a polled
        queue subscribes to)."""
        bucket = bucket_arn.rsplit(":", 1)[-1]
        notification = await self._bucket_notification(aws, check, bucket_arn)
        if notification is None:
            return
        queues = _notified(notification, "QueueConfigurations", "QueueArn", prefix)
        if any(arn in polled for arn in queues):
            self._add_reach(check, f"S3 bucket {bucket} → ", queues, polled, fed, "", "")
            return
        for topic_arn in _notified(notification, "TopicConfigurations", "TopicArn", prefix):
            topic = topic_arn.rsplit(":", 1)[-1]
            via = f"S3 bucket {bucket} → "
            endpoints = await self._subscribed_queues(aws, check, topic_arn, topic, via)
            if endpoints is None:
                return
            if any(arn in polled for arn in endpoints):
                via += f"SNS topic {topic} → "
                self._add_reach(check, via, endpoints, polled, fed, "", "")
                return
        if "EventBridgeConfiguration" in notification:
            self.add(
                check,
                "warn",
                f"→ S3 bucket {bucket}, which sends its events to EventBridge: cannot verify "
                "that a rule forwards its records' objects to a polled queue",
                "check that a rule on the default bus targets a polled queue",
            )
            return
        self.add(
            check,
            "error",
            f"→ S3 bucket {bucket}, whose event notifications send no record Lambda writes "
            f"there (under {prefix}) to a polled queue: the worker never reads them",
            _bucket_notification_fix(bucket_arn, polled),
        )

    async def _bucket_notification(
        self, aws: AwsClients, check: str, bucket_arn: str
    ) -> dict[str, Any] | None:
        """A bucket's notification configuration; None, and the row that says why, when it
        cannot be read."""
        bucket = bucket_arn.rsplit(":", 1)[-1]

        async def read_notification() -> dict[str, Any]:
            s3 = await aws.client("s3")
            found: dict[str, Any] = await s3.get_bucket_notification_configuration(Bucket=bucket)
            return found

        try:
            found = await self._reads.once(("s3 notification", bucket), read_notification)
        except ClientError as exc:
            if error_code(exc) == "NoSuchBucket":
                self.add(
                    check,
                    "error",
                    f"→ S3 bucket {bucket}, which does not exist: Lambda cannot write the "
                    "records there, and they are lost",
                    f"create the bucket {bucket}, or point the destination at a polled queue",
                )
            else:
                self._read_failed(
                    check,
                    exc,
                    "warn",
                    f"→ S3 bucket {bucket}: its event notifications cannot be read "
                    f"({error_text(exc)})",
                    f"allow s3:GetBucketNotificationConfiguration on {bucket_arn}",
                )
                self._unread[f"bucket {bucket}'s notifications"] = None
            return None
        except (BotoCoreError, ResponseParserError, *CONNECTION_ERRORS) as exc:
            self.add(
                check,
                "warn",
                f"→ S3 bucket {bucket}: S3 did not answer ({error_text(exc)})",
                "check the endpoint and the network",
                unreachable=_is_unreachable(exc),
            )
            self._unread[f"bucket {bucket}'s notifications"] = None
            return None
        return found

    def _add_reach(
        self,
        check: str,
        via: str,
        queue_arns: list[str],
        polled: dict[str, str],
        fed: set[str],
        missed: str,
        fix: str,
    ) -> None:
        """One row: ok when a destination reaches polled queues (``via`` a topic, say), which
        then count as fed; an error (``missed``, ``fix``) when it reaches none."""
        reached = [polled[arn] for arn in queue_arns if arn in polled]
        if reached:
            fed.update(arn for arn in queue_arns if arn in polled)
            self.add(check, "ok", f"→ {via}queue {', '.join(reached)} (polled)")
        else:
            self.add(check, "error", missed, fix)

    # -- the store --------------------------------------------------------------------------

    def _named(self, exc: StoreUrlProblem) -> str:
        """The line of an error about the store URL, naming where the URL came from."""
        return str(exc.named(self.settings.origin("store")))

    async def _check_store(self) -> None:
        url = self.settings.store
        shown = mask_url(url)
        path = _sqlite_path(url)
        self._check_file_system(path)
        if path is not None and not path.exists():
            self._no_file_yet(shown, path)
            return
        try:
            opened = Store.from_url(url, create=False)
            opened.refuse_in_memory()  # it would answer, empty, and keep nothing
            async with opened as store:
                await store.ping()
                pending = await store.pending_migrations()
                unwritable = None if pending else await store.write_problems()
                schema = await store.schema() if unwritable else None
                pooled = await store.pooler_problem()
                no_room = store.no_room()
                if not pending:
                    await self._read_for_later_rows(store)
        except StoreUnavailable as exc:
            # A wrong database, user or password is answered: configuration, not unreachable.
            misconfigured = isinstance(exc, StoreMisconfigured)
            self.add("store", "error", self._named(exc), "", unreachable=not misconfigured)
            return
        except NewerSchema as exc:  # a rollback: the store answers, its schema is not ours
            self.add("store", "ok", f"{shown} answers")
            self.add("store schema", "error", str(exc), "")
            return
        except StoreUrlError as exc:  # its line says the fix
            self.add("store", "error", self._named(exc), "")
            return
        except ConfigError as exc:
            self.add("store", "error", str(exc), "fix the store URL")
            return
        self.add("store", "ok", f"{shown} answers")
        if pooled:
            fix = "add pgbouncer=true to the store URL (…/db?pgbouncer=true)"
            self.add("store pooler", "error", pooled, fix)
        if pending:
            self.add(
                "store schema",
                "error",
                f"migrations {', '.join(map(str, pending))} not applied",
                "run `lambda-destinations migrate` (the worker also migrates at start)",
            )
        else:
            self.add("store schema", "ok", "migrated")
        if path is not None:
            self._check_room(no_room)
        self._check_writes(unwritable, sqlite=path is not None, schema=schema or "public")

    def _no_file_yet(self, shown: str, path: Path) -> None:
        """The row of a SQLite store whose file does not exist: the worker creates it, unless
        its folder is not this user's to write (a container's volume owned by another uid)."""
        self._store_empty = True
        if (problem := creation_problem(path)) is not None:
            detail = f"{shown}: the file does not exist, and the worker cannot create it: {problem}"
            self.add("store", "error", detail, "")
            return
        self.add(
            "store",
            "error",
            f"{shown}: the file does not exist yet",
            f"{OUTSIDE_DEV}, or set LAMBDA_DESTINATIONS_STORE"
            if self.settings.outside_dev()
            else "run `lambda-destinations migrate` (the worker also creates and migrates it)",
        )

    def _check_file_system(self, path: Path | None) -> None:
        """A SQLite file on a network file system, which the worker refuses (exit 3)."""
        if path is not None and (remote := network_file_system(path)) is not None:
            self.add("store file", "error", *remote)

    def _check_failure_accounts(self) -> None:
        """A warning per account, neither the credentials' own nor in the accounts table,
        whose functions have open failures: Lambda refuses a replay of them."""
        own = self._own_account
        if own is None:
            return
        for account, count in sorted(self._failure_accounts.items()):
            if account == own or account in self.settings.accounts:
                continue
            self.add(
                f"failures of account {account}",
                "warn",
                f"{count} open failure{'s' if count != 1 else ''} of functions in account "
                f"{account}, which is neither the credentials' own ({own}) nor in the accounts "
                "table: Lambda refuses their replay",
                no_role_fix(account, own, many=True),
            )

    async def _read_for_later_rows(self, store: Store) -> None:
        """What the rows after the store checks ask of it, on the connection its check opened:
        whether it is empty (when the queues hold a backlog: is this its first start?), and
        the accounts of its open failures (when the credentials' own is known)."""
        if self._waiting:
            one = InvocationFilter(failed_only=False, limit=1)
            self._store_empty = not await store.list_invocations(one)
        if self._own_account is not None:
            self._failure_accounts = await store.open_failure_accounts()

    async def _check_backlog(self) -> None:
        """A row for the messages the polled queues hold: a warning when notifiers are routed
        and the store holds no record yet (a first start on queues that gathered records for
        days: every failure among them alerts, however old)."""
        if not self._waiting:
            return
        total = sum(n for _, _, n in self._waiting)
        detail = f"about {total} message{'s' if total != 1 else ''} wait (" + ", ".join(
            f"{name} {n}" for name, _, n in self._waiting
        )
        waiting = [(queue_name(url), url) for _, url, _ in self._waiting]  # as the worker names
        notifiers = routed_notifiers(self.settings, waiting)
        # dev creates its queues empty and sends fresh records, which its alert channel is
        # there to show: never a backlog gathered before.
        if not notifiers or self.settings.from_dev() or not self._store_empty:
            self.add("queue backlog", "ok", detail + "): the worker handles them as it runs")
            return
        self.add(
            "queue backlog",
            "warn",
            detail + ") and the store holds no record yet: the worker's first start handles "
            "them all, and the failures among them alert through "
            + ", ".join(notifiers)
            + " however old they are (the first of each function and error type at once, "
            "the rest in digests)",
            'store them first without alerts, `LAMBDA_DESTINATIONS_ROUTES=\'[{"handlers": '
            '["persist"]}]\' lambda-destinations run --once`, then look at them with '
            "`failures list --since 14d`",
        )

    def _check_writes(self, unwritable: list[str] | None, *, sqlite: bool, schema: str) -> None:
        """What keeps the store's user from writing (the store's own write_problems): a
        PostgreSQL user's grants, on the tables of ``schema``; a SQLite file's permissions;
        nothing when it cannot tell."""
        if unwritable == []:
            self.add("store grants", "ok", "the user may read and write every table")
        elif unwritable and sqlite:
            # A read-only file answers every read: the worker's first save fails.
            self.add("store file", "error", "; ".join(unwritable), "")
        elif unwritable:
            self.add(
                "store grants",
                "error",
                "; ".join(unwritable),
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema}, and "
                f"USAGE ON ALL SEQUENCES IN SCHEMA {schema}, to that user: the worker writes, "
                "and so do replays, edits and pruning",
            )

    def _check_room(self, no_room: tuple[str, str] | None) -> None:
        """A SQLite file's room to grow (the store's own no_room): where it has none, reads
        still answer, but the worker's writing ping fails and receiving stays paused."""
        if no_room is None:
            self.add("store room", "ok", "room to grow, on its disk and under the file size limit")
            return
        problem, fix = no_room
        # Exit 4 as when the disk is so full the store cannot even be read (`store`), and as
        # `migrate` and `run --once` exit on a full disk: the store is unavailable to the worker.
        self.add(
            "store room",
            "error",
            f"{problem}: the worker keeps receiving paused until there is room",
            fix,
            unreachable=True,
        )


_RECORD_EVENTS = frozenset({"s3:ObjectCreated:*", "s3:ObjectCreated:Put"})


def _notified(notification: dict[str, Any], kind: str, arn_key: str, key_prefix: str) -> list[str]:
    """The targets (``arn_key``) of a bucket's notifications of ``kind`` that fire when Lambda
    writes a record under ``key_prefix``: on every new object, or every ``Put``, with no
    key filter that leaves the record out."""
    found = []
    for config in notification.get(kind) or []:
        if not _RECORD_EVENTS & set(config.get("Events") or []):
            continue
        rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
        by_name = {str(r.get("Name", "")).lower(): str(r.get("Value", "")) for r in rules}
        # Lambda's keys end with a request id: no suffix a filter would name
        if key_prefix.startswith(by_name.get("prefix", "")) and not by_name.get("suffix"):
            found.append(str(config.get(arn_key, "")))
    return found


def _bucket_notification_fix(bucket_arn: str, polled: dict[str, str]) -> str:
    """The command that sends a bucket's new records to the polled failure queue (the first
    polled queue whose name says so, else the first), and the queue policy it needs."""
    bucket = bucket_arn.rsplit(":", 1)[-1]
    if not polled:
        return f"send {bucket}'s s3:ObjectCreated:* events under {LAMBDA_PREFIX} to a polled queue"
    failing = [arn for arn, name in polled.items() if "fail" in name.lower()]
    queue_arn = (failing or list(polled))[0]
    configuration = notification_configuration(queue_arn)
    return (
        f"aws s3api put-bucket-notification-configuration --bucket {bucket} "
        f"--notification-configuration '{json.dumps(configuration)}' (it replaces the "
        f"bucket's notifications: keep the others in it), and let {polled[queue_arn]}'s "
        "policy allow s3.amazonaws.com sqs:SendMessage with aws:SourceArn "
        f"{bucket_arn}"
    )


# A receipt handle no message has: a delete or a visibility change of it, once the credentials
# may make the call, is answered with the entry's failure (ReceiptHandleIsInvalid), and
# refused whole (AccessDenied) when they may not. No message is deleted or made visible.
_NO_RECEIPT = "lambda-destinations-doctor-probe-not-a-receipt-handle"
_PROBE_ENTRY = {"Id": "doctor", "ReceiptHandle": _NO_RECEIPT}
# SQS's answer to a SendMessageBatch of no entry, made once the credentials may send: a batch
# of none sends nothing, whatever the endpoint, where a message sent would be a dead letter.
_EMPTY_BATCH = frozenset({"AWS.SimpleQueueService.EmptyBatchRequest", "EmptyBatchRequest"})
# Each write the worker makes: its IAM action, and what the worker does without it.
_DELETE = (
    "sqs:DeleteMessage",
    "a message handled is never deleted: it is received again after each visibility timeout "
    "until SQS dead-letters it",
)
_VISIBILITY = (
    "sqs:ChangeMessageVisibility",
    "no retry backoff and no visibility heartbeat: a handler running past the visibility "
    "timeout sees its message delivered again",
)
_SEND = (
    "sqs:SendMessage",
    "a quarantined message is kept in the store only, never in the DLQ",
)


async def _allowed(call: Awaitable[object], answered: frozenset[str] = frozenset()) -> bool:
    """Whether the credentials may make ``call``: False when it is refused, True when it is
    answered, or fails with a code of ``answered`` (given once the permission is checked)."""
    try:
        await call
    except ClientError as exc:
        code = error_code(exc)
        if code in DENIED_CODES:
            return False
        if code in answered:
            return True
        raise
    return True


async def _probe_delete(sqs: Any, url: str) -> object:
    return await sqs.delete_message_batch(QueueUrl=url, Entries=[_PROBE_ENTRY])


async def _probe_visibility(sqs: Any, url: str) -> object:
    entry = {**_PROBE_ENTRY, "VisibilityTimeout": 0}
    return await sqs.change_message_visibility_batch(QueueUrl=url, Entries=[entry])


async def _probe_send(sqs: Any, url: str) -> bool:
    return await _allowed(sqs.send_message_batch(QueueUrl=url, Entries=[]), _EMPTY_BATCH)


def _refused_writes(refused: list[tuple[str, str]], queue: _Queue, dlq: _Queue | None) -> str:
    """What the worker cannot do with these credentials, and what follows, in one line."""
    return "; ".join(
        f"{action} refused on {dlq.name if action == _SEND[0] and dlq else queue.name}: {then}"
        for action, then in refused
    )


def _writes_fix(refused: list[tuple[str, str]], queue: _Queue, dlq: _Queue | None) -> str:
    """The grants that give the worker its writes: the actions, each on its queue's ARN."""
    on_queue = [action for action, _ in refused if action != _SEND[0]]
    grants = [f"{' and '.join(on_queue)} on {queue.arn or queue.url}"] if on_queue else []
    if dlq is not None and any(action == _SEND[0] for action, _ in refused):
        grants.append(f"sqs:SendMessage on {dlq.arn}")
    return f"allow {', and '.join(grants)} to these credentials (the worker's role)"


def _readable_target(attributes: dict[str, str]) -> str | None:
    """The DLQ ARN of a queue's RedrivePolicy; None when it has none or it is unreadable
    (its redrive row says so)."""
    try:
        return policy_target(attributes.get("RedrivePolicy"))
    except (ValueError, AttributeError):
        return None


def _function_label(name: str, config: dict[str, Any]) -> str:
    arn = str(config.get("FunctionArn") or "")
    qualifier = arn.split(":")[7] if arn.count(":") >= 7 else None
    return f"{name}:{qualifier}" if qualifier else name


# The event sources whose ARN names what a mapping reads, and the word for it.
_SOURCE_KINDS = {"kinesis": "Kinesis stream", "dynamodb": "DynamoDB table", "sqs": "SQS queue"}


def _mapping_source(mapping: dict[str, Any]) -> str:
    """What an event-source mapping reads, in a few words: ``Kinesis stream orders``,
    ``DynamoDB table carts``, ``Kafka topic payments`` (MSK or a self-managed cluster)."""
    if topics := mapping.get("Topics"):
        return f"Kafka topic {', '.join(map(str, topics))}"
    parts = str(mapping.get("EventSourceArn") or "").split(":", 5)
    if len(parts) == 6 and parts[2] in _SOURCE_KINDS:
        # stream/NAME (…/consumer/C:… for a stream's consumer), table/NAME/stream/LABEL, NAME
        resource = parts[5].split("/")
        return f"{_SOURCE_KINDS[parts[2]]} {resource[1] if len(resource) > 1 else resource[0]}"
    return f"mapping {mapping.get('UUID', '')}"


def _sqlite_path(url: str) -> Path | None:
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # Store.from_url says what is wrong
        return None
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def exit_status(checks: Iterable[Check]) -> Literal["ok", "failed", "unreachable"]:
    """``unreachable`` when any error is an unreachable endpoint or store, else ``failed``
    when any check is an error, else ``ok`` (warnings do not fail)."""
    errors = [c for c in checks if c.status == "error"]
    if any(c.unreachable for c in errors):
        return "unreachable"
    return "failed" if errors else "ok"


MAX_RETENTION = 14 * 86400  # SQS's MessageRetentionPeriod at most, seconds


def _dlq_retention_fix(groups: dict[tuple[int, int], tuple[list[str], list[str]]]) -> str:
    """Raise the DLQs' retention; where a DLQ already keeps the most SQS allows (14 days), the
    queue's must come down instead: raising it is no fix there."""
    every_dlq = list(dict.fromkeys(dlq for dlqs, _ in groups.values() for dlq in dlqs))
    whose = f"{every_dlq[0]}'s" if len(every_dlq) == 1 else "their"
    at_most = [
        queue
        for (dlq_kept, _), (_, queues) in groups.items()
        if dlq_kept >= MAX_RETENTION
        for queue in queues
    ]
    if not at_most:
        return f"raise {whose} MessageRetentionPeriod (14 days is the most SQS allows)"
    lower = f"lower the MessageRetentionPeriod of {', '.join(at_most)}"
    lower += " below 14 days (its DLQ already keeps the most SQS allows), so a dead-lettered "
    lower += "record still has days there"
    if len(at_most) == sum(len(queues) for _, queues in groups.values()):
        return lower
    return f"raise the other DLQs' MessageRetentionPeriod (14 days at most); {lower}"
