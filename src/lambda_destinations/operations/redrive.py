"""Dead-letter queues: put their messages back, or re-invoke what they hold.

Resolving a queue and looking into it (``peek``) are in ``operations.dlq``, which imports none
of what only a redrive needs (the replay, its handler, the S3 record reader).

Putting messages back (``redrive``) takes one of two paths:

- **SQS's own message move task** (``StartMessageMoveTask``), when the DLQ is the dead-letter
  queue of other SQS queues and the endpoint implements it: SQS moves the messages itself and
  we follow its progress.
- **moving them here**, otherwise (a DLQ of a Lambda function or an SNS subscription, which the
  move task refuses, or an endpoint without it): receive a batch, ``SendMessageBatch`` it to
  the target with the same body and message attributes, and only then ``DeleteMessageBatch``
  the messages that were sent. Killed at any moment, every message is in the DLQ (not yet
  sent, or received and hidden until its visibility timeout ends), in the target, or in both
  (sent, not yet deleted): never lost. The worker's idempotency absorbs the duplicate.

Message attributes are kept as they are, ``LambdaDestinations.Reason`` and ``.SourceQueue``
included (SQS's move task keeps them too): they tell the story of the last quarantine, and the
worker overwrites them if it quarantines the message again.

A redrive here moves the messages that were in the DLQ when it started, each at most once per
run, even while a worker quarantines them straight back: every message it sends carries
``LambdaDestinations.Redrive`` (the run's id), which the worker's quarantine keeps, so one that
comes back during the run is recognised, left in the DLQ and counted as come back; a message
sent to the DLQ after the run started (by ``SentTimestamp``) is left for the next run. Both
times are SQS's clock: the run's start is read from the ``Date`` of an SQS answer, as this
machine's clock may be minutes off (:func:`start_time`).

The mark (64 bytes: its name, type and value) goes only on a message that still fits the
target's ``MaximumMessageSize`` with it (SQS weighs the body and each message attribute): one a
few bytes short of the limit would be refused on every run, and stay in the DLQ for good. The
cost: should one sent without it come back during the run, it is still left alone (its
``SentTimestamp``, this run's send or the quarantine after it, is after the run started), but
counted as arrived rather than come back. Another run's mark on a message is dropped either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from lambda_destinations._lifetime import to_its_end
from lambda_destinations._urls import queue_name, queue_path
from lambda_destinations.aws import AwsClients
from lambda_destinations.errors import LambdaDestinationsError
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.handlers.replay import TRIGGER_MANUAL
from lambda_destinations.operations._rate import RateLimiter
from lambda_destinations.operations.dlq import (
    DEFAULT_MAX_MESSAGE_SIZE,
    max_message_size,
    receive,
    release,
    string_attribute,
)
from lambda_destinations.operations.replay import (
    ReplayResult,
    ReplayState,
    SkipReason,
    cut_short,
    replay_invocation,
)
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import (
    CONNECTION_ERRORS,
    NOT_IMPLEMENTED_CODES,
    SETUP_ERRORS,
    error_code,
)
from lambda_destinations.schemas import (
    DecodedMessage,
    DecodeError,
    decode,
    decode_object,
)
from lambda_destinations.schemas.s3 import RecordInS3, S3Object
from lambda_destinations.store import InvocationRow, ReplayAttempt, Store
from lambda_destinations.times import http_date
from lambda_destinations.worker.queues import (
    MAX_ATTRIBUTES,
    REASON_ATTRIBUTE,
    REDRIVE_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    sendable_attribute,
)
from lambda_destinations.worker.s3_records import ObjectUnread, read_record

# Reads the object S3's notice names (``read_record`` with the operator's credentials).
ReadObject = Callable[[S3Object], Awaitable[bytes]]

# How long a received message stays hidden while it is being moved: long enough for a send and
# a delete, short enough that a killed redrive's messages soon reappear in the DLQ.
DEFAULT_VISIBILITY = 60
_BATCH_TOO_LONG = {"AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong"}
_MOVE_TASK_DONE = {"COMPLETED", "CANCELLED", "FAILED"}
_NOT_SUPPORTED_CODES = {
    *NOT_IMPLEMENTED_CODES,
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "501",
    "500",
}


class MoveTaskUnsupported(LambdaDestinationsError):
    """The endpoint (or this queue) cannot run SQS's message move task; move messages here."""


# -- SQS's message move task ------------------------------------------------------------------


async def start_move_task(
    sqs: Any, source_arn: str, destination_arn: str | None, rate: int | None
) -> str:
    """Start SQS's move task; its handle. MoveTaskUnsupported when it cannot run here.

    Give ``sqs`` a client that does not retry (``max_attempts=1``): endpoints without the
    operation answer 500, which a retrying client would repeat for nothing.
    """
    kwargs: dict[str, Any] = {"SourceArn": source_arn}
    if destination_arn:
        kwargs["DestinationArn"] = destination_arn
    if rate:
        kwargs["MaxNumberOfMessagesPerSecond"] = rate
    try:
        response = await sqs.start_message_move_task(**kwargs)
    except ClientError as exc:
        said = _unsupported(exc)
        if said is not None:
            raise MoveTaskUnsupported(said) from exc
        raise
    return str(response["TaskHandle"])


async def move_task_available(sqs: Any, source_arn: str) -> bool | None:
    """Whether the endpoint runs SQS's move task, asked without starting one (for a dry run):
    None when its answer does not tell (credentials without ``sqs:ListMessageMoveTasks``).

    Give ``sqs`` a client that does not retry, as for ``start_move_task``.
    """
    try:
        await sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)
    except ClientError as exc:
        return False if _unsupported(exc) is not None else None
    return True


def _unsupported(exc: ClientError) -> str | None:
    """How an endpoint said it has no message move task; None when ``exc`` says another thing."""
    code = error_code(exc) or ""
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code not in _NOT_SUPPORTED_CODES and status not in (500, 501):
        return None
    message = _message(exc)
    if not message or message.startswith("<"):  # an HTML error page
        message = "not implemented by the endpoint"
    # botocore gives the status as the code when the answer names none: say it once.
    said = f"HTTP {status or '?'}" + (f" {code}" if code and code != str(status) else "")
    return f"{said}: {message}"


async def move_task_status(sqs: Any, source_arn: str, task_handle: str) -> dict[str, Any]:
    """The task's entry from ListMessageMoveTasks (status, moved, to move, failure reason)."""
    response = await sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)
    for task in response.get("Results", []):
        if task.get("TaskHandle") in (None, task_handle):
            return dict(task)
    return {"Status": "UNKNOWN"}


async def follow_move_task(
    sqs: Any,
    source_arn: str,
    task_handle: str,
    *,
    on_progress: Callable[[int, int | None], None] = lambda moved, total: None,
    poll: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, Any]:
    """Poll the task until it ends; report (moved, to move) on the way; its last status."""
    while True:
        status = await move_task_status(sqs, source_arn, task_handle)
        total = status.get("ApproximateNumberOfMessagesToMove")
        on_progress(
            int(status.get("ApproximateNumberOfMessagesMoved", 0)),
            int(total) if total is not None else None,
        )
        if status.get("Status") in _MOVE_TASK_DONE:
            return status
        await sleep(poll)


# -- moving messages here ---------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class MoveReport:
    """What a redrive did: moved, left in the DLQ (by reason), and problems."""

    moved: int = 0
    by_target: Counter[str] = dataclasses.field(default_factory=Counter)
    left: Counter[str] = dataclasses.field(default_factory=Counter)  # reason -> count
    failed: Counter[str] = dataclasses.field(default_factory=Counter)  # send errors
    duplicated: int = 0  # sent, then the delete from the DLQ failed: in both queues
    in_doubt: int = 0  # the send's answer was lost: maybe in the target, and left in the DLQ
    came_back: int = 0  # moved by this run, then quarantined again while it ran: left
    arrived: int = 0  # sent to the DLQ after this run started: left for the next one
    # Still hidden in the DLQ when the run ended, received by someone else (an interrupted
    # redrive, a consumer): this run could not see them; they show after their visibility ends.
    hidden: int = 0
    # The target whose refusal of a send (a permission, its KMS key, the queue gone) stopped
    # the run: that batch stays in the DLQ, counted in ``left``.
    refused_by: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.duplicated and not self.in_doubt and not self.hidden

    def as_dict(self) -> dict[str, Any]:
        return {
            "moved": self.moved,
            "by_target": dict(self.by_target),
            "left_in_dlq": dict(self.left),
            "send_failures": dict(self.failed),
            "duplicated": self.duplicated,
            "in_doubt": self.in_doubt,
            "came_back": self.came_back,
            "arrived_during_run": self.arrived,
            "hidden": self.hidden,
        }


def left_undone(outcome: Mapping[str, Any]) -> list[str]:
    """What a move left undone (``MoveReport.as_dict``), a line each: `dlq redrive` prints
    them after what it moved, the console's redrive lists them on its job's page."""
    lines = [f"{n} left in the DLQ: {reason}" for reason, n in outcome["left_in_dlq"].items()]
    for reason, n in outcome["send_failures"].items():
        lines.append(f"{n} not sent ({reason}), left in the DLQ")
    if outcome["duplicated"]:
        lines.append(f"{outcome['duplicated']} sent but not deleted (now in both queues)")
    if outcome["in_doubt"]:
        lines.append(
            f"{outcome['in_doubt']} in doubt (the send's answer was lost: maybe in the target "
            "too, the worker's idempotency absorbs a copy), left in the DLQ for the next run"
        )
    if outcome["came_back"]:
        lines.append(f"{outcome['came_back']} came back (quarantined again), left in the DLQ")
    if outcome["arrived_during_run"]:
        lines.append(f"{outcome['arrived_during_run']} arrived during the redrive, left")
    if outcome["hidden"]:
        lines.append(f"about {outcome['hidden']} hidden in the DLQ, not seen ({HIDDEN})")
    return lines


def stopped_after(report: MoveReport, expected: int | None = None) -> str:
    """What a move an error stopped midway had done, to follow that error's line: how many it
    moved (of about ``expected``) and where, what it left undone, and the way on."""
    of = "" if expected is None else f" of about {expected}"
    line = f"the redrive stopped after moving {report.moved}{of} messages"
    if report.by_target:
        line += f" ({', '.join(f'{n} to {queue_name(t)}' for t, n in report.by_target.items())})"
    if report.refused_by is not None:
        line += f" when {queue_name(report.refused_by)} refused a send"
    undone = left_undone(report.as_dict())
    return "; ".join(
        [line, *undone, "the rest stay in the DLQ too: run the redrive again once that is fixed"]
    )


TargetChooser = Callable[[Mapping[str, Any]], "str | tuple[None, str]"]


def target_chooser(to: str | None, sources: Sequence[str]) -> TargetChooser:
    """Where each message goes: ``--to``, else its source queue.

    With one source queue, there. With several, the queue named by the message's
    ``LambdaDestinations.SourceQueue`` attribute (set by the worker's quarantine) when it is
    one of them; a message without one, or naming another queue, stays in the DLQ, with the
    reason. The attribute is the queue's URL as the worker's endpoint spells it, which may not
    be this one's (``localstack:4566`` in a container, ``localhost:4566`` outside it; a VPC
    endpoint; SQS's legacy host): a queue is told by its account and name, the URL's path.
    """
    if to:
        return lambda message: to
    if len(sources) == 1:
        only = sources[0]
        return lambda message: only
    known = {queue_path(url): url for url in sources}

    def choose(message: Mapping[str, Any]) -> str | tuple[None, str]:
        source = string_attribute(message.get("MessageAttributes") or {}, SOURCE_ATTRIBUTE)
        if source is None:
            return (None, "several source queues and no LambdaDestinations.SourceQueue: use --to")
        found = known.get(queue_path(source))
        if found is None:
            return (
                None,
                f"its LambdaDestinations.SourceQueue, {echoed(queue_name(source))}, is none of "
                "the DLQ's source queues: use --to",
            )
        return found

    return choose


def send_entry(
    message: Mapping[str, Any],
    index: int,
    *,
    fifo: bool,
    run: str | None = None,
    max_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
) -> dict[str, Any] | None:
    """The SendMessageBatch entry that carries ``message`` on: same body and attributes, and
    the redrive's ``run`` id (instead of an earlier run's) when it fits: SQS's limit of ten
    attributes leaves room for it, and the message stays within the target's ``max_size`` (its
    MaximumMessageSize; None when SQS did not tell it, taken as SQS's old default) with it.

    A message the quarantine's ``LambdaDestinations.Reason`` and ``.SourceQueue`` took past
    ``max_size`` goes without them, as it was sent to its queue (a DLQ may take longer messages
    than the queue whose DLQ it is: SQS's default grew to 1 MiB in 2025). None when it does not
    fit even so (a known ``max_size``): SQS would refuse it, on every run."""
    body = message.get("Body", "")
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
    choices = _attribute_choices(message.get("MessageAttributes") or {}, run)
    limit = DEFAULT_MAX_MESSAGE_SIZE if max_size is None else max_size
    attributes = next(
        (
            choice
            for choice in choices
            if len(choice) <= MAX_ATTRIBUTES and message_size(body, choice) <= limit
        ),
        None,
    )
    if attributes is None:
        if max_size is not None:
            return None
        attributes = choices[-1]  # the least, for a limit SQS did not tell: it judges
    if attributes:
        entry["MessageAttributes"] = attributes
    system = message.get("Attributes", {})
    if trace := system.get("AWSTraceHeader"):
        entry["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": trace}
        }
    if fifo:
        entry["MessageGroupId"] = system.get("MessageGroupId") or "redrive"
        # Not the message's own deduplication id: SQS drops ("accepted successfully but not
        # delivered") a send of it within five minutes of the first, which a message that
        # failed fast is, and the redrive would then delete the only copy. The DLQ's message
        # id is new with each dead-lettering, and a second run's send of one that is in the
        # target already (its delete lost, its send in doubt) is dropped as it should be.
        entry["MessageDeduplicationId"] = str(message.get("MessageId"))
    return entry


# What the worker's quarantine adds to a message it sends to the DLQ: the story of that
# quarantine, which the worker writes again should it quarantine the message again.
_QUARANTINE_ATTRIBUTES = frozenset({REASON_ATTRIBUTE, SOURCE_ATTRIBUTE})


def _attribute_choices(
    attributes: Mapping[str, Any], run: str | None
) -> list[dict[str, dict[str, Any]]]:
    """The message attributes a message may go on with, best first: all of them with the run's
    mark, all of them, then without the quarantine's with the mark, and without."""
    own = {
        name: sendable_attribute(value)
        for name, value in attributes.items()
        if run is None or name != REDRIVE_ATTRIBUTE  # another run's mark: this one's instead
    }
    bare = {name: value for name, value in own.items() if name not in _QUARANTINE_ATTRIBUTES}
    if run is None:
        return [own, bare]
    mark = {REDRIVE_ATTRIBUTE: {"DataType": "String", "StringValue": run}}
    return [{**own, **mark}, own, {**bare, **mark}, bare]


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """The bytes SQS weighs against a queue's MaximumMessageSize: the body's (UTF-8) and, for
    each message attribute (as :func:`sendable_attribute` has it), those of its name, data type
    and value. System attributes (AWSTraceHeader) weigh nothing."""
    size = len(body.encode())
    for name, value in attributes.items():
        data = value.get("BinaryValue")
        if not isinstance(data, bytes):
            data = str(value.get("StringValue", "")).encode()
        size += len(name.encode()) + len(str(value.get("DataType", "")).encode()) + len(data)
    return size


async def target_max_size(sqs: Any, url: str) -> int | None:
    """The queue's MaximumMessageSize; None when SQS does not tell it (credentials without
    ``sqs:GetQueueAttributes`` on it): :func:`send_entry` then takes it as
    DEFAULT_MAX_MESSAGE_SIZE, and a message too long even so is left to SQS to judge."""
    try:
        response = await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["MaximumMessageSize"]
        )
    except ClientError:
        return None
    attributes = response.get("Attributes", {})
    return max_message_size(attributes) if "MaximumMessageSize" in attributes else None


class _Budget:
    """How many more messages may be received (``--limit``), shared by the movers."""

    def __init__(self, limit: int | None) -> None:
        self.remaining = limit

    def take(self, most: int) -> int:
        if self.remaining is None:
            return most
        taken = min(most, self.remaining)
        self.remaining -= taken
        return taken

    def give_back(self, count: int) -> None:
        if self.remaining is not None:
            self.remaining += count


async def move_messages(
    sqs: Any,
    dlq_url: str,
    choose_target: TargetChooser,
    *,
    rate: float | None = None,
    concurrency: int = 4,
    limit: int | None = None,
    visibility: int = DEFAULT_VISIBILITY,
    on_moved: Callable[[int], None] = lambda n: None,
    run: str | None = None,
    sender: Any = None,
    max_sizes: Mapping[str, int] | None = None,
    report: MoveReport | None = None,
) -> MoveReport:
    """Move the DLQ's messages to their targets: send first, delete after (see the module doc).

    Moves only what was in the DLQ when it started (by SQS's clock), each message once (``run``
    names this run in the messages it sends; a new one by default). Stops when a receive brings
    nothing new (or ``limit`` messages were received). Messages that stay (no target, the send
    failed, came back, arrived later, the send is in doubt) are made visible again at the end;
    those someone else holds hidden then are counted in ``hidden``: this run did not see them.

    ``sender`` sends the batches: give it a client that sends each request once
    (``AwsClients.sender("sqs")``): a botocore retry of a send whose answer was lost would put a
    second copy in the target; without it, such a send is in doubt (``in_doubt``).
    ``max_sizes``: targets' MaximumMessageSize read already. ``report`` (else a new one) is
    filled in also when an error stops the run midway (:func:`stopped_after`).
    """
    report = MoveReport() if report is None else report
    limiter, budget = RateLimiter(rate), _Budget(limit)
    started = await started_by_sqs(sqs, dlq_url)  # by SQS's clock, as SentTimestamp is
    pass_ = _Pass(run or uuid.uuid4().hex, started, report, dict(max_sizes or {}))

    async def mover() -> None:
        while True:
            wanted = budget.take(10)
            if wanted == 0:
                return
            # Wait for the rate before receiving, not after: received messages are hidden, and
            # an interruption while they wait would leave them hidden for the whole timeout.
            await limiter.acquire(wanted)
            batch = await receive(sqs, dlq_url, wanted, visibility)
            budget.give_back(wanted - len(batch))
            fresh, again = pass_.sort(batch)
            # Moved before and shown again (a delete SQS lost): it is in the target already.
            await _delete(sqs, dlq_url, again)
            if not fresh and not again:
                return  # empty, or only messages this run leaves there: the DLQ is done
            for target, messages in pass_.by_target(fresh, choose_target).items():
                # SQS names every FIFO queue so, and wants a group id for what is sent to one
                fifo = queue_name(target).endswith(".fifo")
                on_moved(await _move_to(sqs, sender, dlq_url, target, messages, pass_, fifo))

    try:
        await _together(mover, concurrency)
    finally:
        await asyncio.shield(pass_.leave(sqs, dlq_url))
    report.hidden = await hidden_count(sqs, dlq_url)
    return report


def wall_clock_ms() -> int:
    """This machine's clock, in ms since the epoch (a function of its own: tests set it wrong)."""
    return int(time.time() * 1000)


async def started_by_sqs(sqs: Any, dlq_url: str) -> int:
    """When a run starts by SQS's clock, the one that stamps ``SentTimestamp`` (ms since the
    epoch): the ``Date`` of SQS's answer to a look at the DLQ (see :func:`start_time`)."""
    before = wall_clock_ms()
    try:
        response = await sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
    except ClientError as exc:
        response = exc.response  # a refusal is dated too; the run says it when it matters
    return start_time(before, wall_clock_ms(), answer_date_ms(response))


def answer_date_ms(response: Mapping[str, Any]) -> int | None:
    """The ``Date`` header of an AWS answer, in ms since the epoch; None without one."""
    when = http_date(response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date"))
    return None if when is None else int(when.timestamp() * 1000)


def start_time(before: int, after: int, date: int | None) -> int:
    """A run's start by SQS's clock, from this machine's just ``before`` and ``after`` an SQS
    answer dated ``date`` (ms; None: no Date header, this machine's clock as it is).

    The header has whole seconds: SQS's clock read from ``date`` to a second later when it
    answered. A clock that agrees with that is kept, to the millisecond: a message sent to the
    DLQ a moment before the run is moved. One that does not is wrong (a laptop minutes behind
    would leave every message as arrived; one ahead would move those that arrive during the
    run), and the start is then ``date``, the earliest SQS's clock can have read: a message
    sent after the start must not be moved (it may be one this run sent that came back without
    its mark, and would be moved twice), so one sent in the second before waits for the next
    run instead.
    """
    if date is None or (date <= after and before < date + 1000):
        return before
    return date


async def _together(work: Callable[[], Coroutine[Any, Any, None]], copies: int) -> None:
    """Run ``copies`` of ``work`` at once; the first error ends them all, raised as itself (not
    as an ExceptionGroup), so the command says it in one line."""
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, copies)):
                group.create_task(work())
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None


async def hidden_count(sqs: Any, url: str) -> int:
    """How many messages of ``url`` are in flight (received and not yet visible again), by
    SQS's approximate count."""
    response = await sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    return int(response.get("Attributes", {}).get("ApproximateNumberOfMessagesNotVisible", 0))


@to_its_end
async def _move_to(
    sqs: Any,
    sender: Any,
    dlq_url: str,
    target: str,
    messages: list[dict[str, Any]],
    pass_: _Pass,
    fifo: bool,
) -> int:
    """Send ``messages`` to ``target`` (with ``sender``, or ``sqs`` when None), then delete
    from the DLQ those sent; how many moved."""
    report = pass_.report
    entries: list[dict[str, Any]] = []
    try:
        max_size = await pass_.max_size(sqs, target)
        entries = _entries(target, messages, report, fifo=fifo, run=pass_.run, max_size=max_size)
        sent, doubtful = await _send(sender or sqs, target, messages, entries, report)
    except Exception as exc:
        # Refused, or not sent at all (a send whose answer was lost returns as in doubt): the
        # batch stays, released with the rest at the end rather than hidden for the timeout.
        for message in messages:
            pass_.stay(pass_.newest_receipt(message), None)  # a failed send
        refused = isinstance(exc, ClientError)
        # those too long for the target are counted already, as such
        report.failed[REFUSED if refused else NOT_SENT_STOPPED] += len(entries or messages)
        if refused and report.refused_by is None:
            report.refused_by = target
        raise
    finally:
        messages = [pass_.newest_receipt(m) for m in messages]
    moved = pass_.settle(messages, sent, doubtful)
    # Only now, with the copy safely in the target, may the original go: also when this task
    # is cancelled meanwhile (SIGTERM cancels every task at once), by a delete again.
    try:
        report.duplicated += await _delete(sqs, dlq_url, moved)
    except asyncio.CancelledError:
        report.duplicated += await _delete(sqs, dlq_url, moved)
        report.moved += len(moved)
        report.by_target[target] += len(moved)
        raise
    report.moved += len(moved)
    report.by_target[target] += len(moved)
    return len(moved)


CAME_BACK = "came back during this redrive"
ARRIVED = "arrived after this redrive started"
IN_DOUBT = "the send's answer was lost: it may be in the target as well"
REFUSED = "refused"  # a send whose refusal stopped the run
NOT_SENT_STOPPED = "the redrive stopped before sending them"
HIDDEN = (
    "received by an interrupted run or another consumer: run again once their visibility "
    "timeout ends"
)


@dataclasses.dataclass(slots=True)
class _Pass:
    """What one redrive run has seen, so each message is moved at most once."""

    run: str
    # by SQS's clock (``start_time``): messages sent to the DLQ after it are not the run's
    started_ms: int
    report: MoveReport
    # target URL -> its MaximumMessageSize (None: SQS did not tell it), read at the target's
    # first send (under the lock: movers sending to it at once ask once)
    max_sizes: dict[str, int | None] = dataclasses.field(default_factory=dict)
    reading: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    moved: set[str] = dataclasses.field(default_factory=set)
    # Being sent by a mover now, with the receipts of later receives: a second mover that
    # receives one of these (its visibility ended while the first was still sending) leaves it
    # alone rather than sending it again, and the first deletes or releases it with the newest
    # receipt, the one SQS honours once the message was received again.
    moving: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # message id -> (why it stays, or None for a failed send; its latest receipt): a message
    # seen again after its visibility ended is counted once, and released with the receipt
    # that is still valid.
    staying: dict[str, tuple[str | None, str]] = dataclasses.field(default_factory=dict)

    def sort(self, batch: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
        """(messages to move, messages moved before and shown again); the rest stay."""
        fresh: list[dict[str, Any]] = []
        again: list[dict[str, Any]] = []
        for message in batch:
            message_id = message["MessageId"]
            if message_id in self.moved:
                again.append(message)
            elif message_id in self.staying:
                self.staying[message_id] = (self.staying[message_id][0], message["ReceiptHandle"])
            elif message_id in self.moving:
                # the mover sending it deletes it, or leaves it for a later pass
                self.moving[message_id].append(message["ReceiptHandle"])
            elif (
                string_attribute(message.get("MessageAttributes") or {}, REDRIVE_ATTRIBUTE)
                == self.run
            ):
                self.report.came_back += 1
                self.stay(message, CAME_BACK)
            elif int(message.get("Attributes", {}).get("SentTimestamp", 0)) > self.started_ms:
                self.report.arrived += 1
                self.stay(message, ARRIVED)
            else:
                self.moving[message_id] = []
                fresh.append(message)
        return fresh, again

    async def max_size(self, sqs: Any, target: str) -> int | None:
        """The target's MaximumMessageSize, read once a run."""
        async with self.reading:
            if target not in self.max_sizes:
                self.max_sizes[target] = await target_max_size(sqs, target)
        return self.max_sizes[target]

    def newest_receipt(self, message: dict[str, Any]) -> dict[str, Any]:
        """``message``, no longer being sent, with the receipt of its latest receive."""
        later = self.moving.pop(message["MessageId"], [])
        return {**message, "ReceiptHandle": later[-1]} if later else message

    def stay(self, message: Mapping[str, Any], reason: str | None) -> None:
        self.staying[message["MessageId"]] = (reason, message["ReceiptHandle"])

    def by_target(
        self, fresh: list[dict[str, Any]], choose_target: TargetChooser
    ) -> dict[str, list[dict[str, Any]]]:
        """The messages to move, by target; those without one stay, with the reason."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for message in fresh:
            target = choose_target(message)
            if isinstance(target, tuple):
                self.stay(message, target[1])
            else:
                grouped.setdefault(target, []).append(message)
        return grouped

    def settle(
        self, messages: list[dict[str, Any]], sent: set[str], doubtful: set[str]
    ) -> list[dict[str, Any]]:
        """After a send: the messages now in the target (to delete from the DLQ); the rest stay,
        in doubt or not sent."""
        for message in messages:
            if message["MessageId"] in doubtful:
                self.stay(message, IN_DOUBT)
            elif message["MessageId"] not in sent:
                self.stay(message, None)  # the send failed
        self.report.in_doubt += len(doubtful)
        moved = [m for m in messages if m["MessageId"] in sent]
        self.moved.update(m["MessageId"] for m in moved)
        return moved

    async def leave(self, sqs: Any, dlq_url: str) -> None:
        """At the end: count what stays and why, and make it visible in the DLQ again."""
        for reason, _ in self.staying.values():
            if reason is not None and reason not in (CAME_BACK, ARRIVED, IN_DOUBT):
                self.report.left[reason] += 1
        if self.staying:
            await release(sqs, dlq_url, [receipt for _, receipt in self.staying.values()])


def _entries(
    target: str,
    messages: Sequence[dict[str, Any]],
    report: MoveReport,
    *,
    fifo: bool,
    run: str | None,
    max_size: int | None,
) -> list[dict[str, Any]]:
    """The SendMessageBatch entries of ``messages`` (each one's ``Id`` its index there) for
    ``target``, whose MaximumMessageSize is ``max_size``. A message too long for it has none
    and is counted in ``report``: SQS would refuse it on every run (an emulator, with the
    others of its batch), and it stays in the DLQ, saying why."""
    entries: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        entry = send_entry(message, index, fifo=fifo, run=run, max_size=max_size)
        if entry is None:
            report.failed[too_long_for(target, max_size)] += 1
        else:
            entries.append(entry)
    return entries


async def _send(
    sqs: Any,
    target: str,
    messages: Sequence[dict[str, Any]],
    entries: Sequence[dict[str, Any]],
    report: MoveReport,
) -> tuple[set[str], set[str]]:
    """Send ``entries`` (:func:`_entries` of ``messages``) to ``target``: (the message ids now
    in it, those whose send is in doubt)."""
    ids = [m["MessageId"] for m in messages]
    sending = [ids[int(entry["Id"])] for entry in entries]
    if not entries:
        return set(), set()
    try:
        response = await sqs.send_message_batch(QueueUrl=target, Entries=entries)
    except ClientError as exc:
        if error_code(exc) in _BATCH_TOO_LONG:
            # Ten large messages can exceed the batch size limit: one at a time instead.
            unsent = [messages[int(entry["Id"])] for entry in entries]
            return await _send_one_by_one(sqs, target, unsent, entries, report)
        if not _in_doubt(exc):
            raise
        return set(), set(sending)
    except (HTTPClientError, BotoConnectionError) as exc:
        if not _in_doubt(exc):
            report.failed[f"not sent: {exc}"] += len(sending)
            return set(), set()
        return set(), set(sending)
    for failure in response.get("Failed", []):
        report.failed[f"{failure.get('Code')}: {failure.get('Message', '')}".strip()] += 1
    return {ids[int(s["Id"])] for s in response.get("Successful", [])}, set()


async def _send_one_by_one(
    sqs: Any,
    target: str,
    messages: Sequence[dict[str, Any]],
    entries: Sequence[dict[str, Any]],
    report: MoveReport,
) -> tuple[set[str], set[str]]:
    sent: set[str] = set()
    doubtful: set[str] = set()
    for message, entry in zip(messages, entries, strict=True):
        single = {k: v for k, v in entry.items() if k != "Id"}
        try:
            await sqs.send_message(QueueUrl=target, **single)
        except (ClientError, HTTPClientError, BotoConnectionError) as exc:
            if _in_doubt(exc):
                doubtful.add(message["MessageId"])
            else:
                report.failed[f"{error_code(exc) or 'not sent'}: {_message(exc)}"] += 1
            continue
        sent.add(message["MessageId"])
    return sent, doubtful


def too_long_for(target: str, max_size: int | None) -> str:
    """Why a message stays in the DLQ, unsent, when it is longer than ``target`` takes."""
    return (
        f"longer than the MaximumMessageSize of {queue_name(target)}, {max_size} bytes, with "
        "its message attributes: raise that, or redrive it with --to a queue that takes it"
    )


def _in_doubt(exc: Exception) -> bool:
    """Whether a failed send may have reached SQS: its answer was lost (a dropped connection, a
    read timeout) or the service failed while handling it (HTTP 5xx). A connection that was
    never made, or an error SQS answered (4xx), sent nothing."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return int(status) >= 500
    return not isinstance(exc, EndpointConnectionError | ConnectTimeoutError)


async def _delete(sqs: Any, url: str, messages: Sequence[Mapping[str, Any]]) -> int:
    """Delete from the DLQ; how many deletes failed (those messages are now in both queues)."""
    if not messages:
        return 0
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    response = await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    return len(response.get("Failed", []))


# -- re-invoking what a DLQ holds -------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ReinvokeReport:
    """What ``dlq redrive --reinvoke`` did with each message."""

    results: list[tuple[str, ReplayResult | None, str | None]] = dataclasses.field(
        default_factory=list
    )  # (message id, replay result, why the message stays when it is not a record)
    deleted: int = 0
    # Notices whose object could not be read this time (refused, unreachable): they stay.
    unread: int = 0
    # Cut short (Ctrl-C, the endpoint lost): the message whose replay was under way, its result
    # in ``results`` (invoked, in doubt, or not sent).
    cut: str | None = None

    @property
    def invoked(self) -> int:
        return sum(1 for _, r, _ in self.results if r and r.state is ReplayState.INVOKED)

    @property
    def would_invoke(self) -> int:
        """How many a dry run would invoke (each such entry names its function_arn)."""
        return sum(1 for _, r, _ in self.results if r and r.state is ReplayState.WOULD_INVOKE)

    @property
    def errors(self) -> int:
        return sum(1 for _, r, _ in self.results if r and r.state is ReplayState.ERROR)

    def as_dict(self) -> dict[str, Any]:
        return {
            "invoked": self.invoked,
            "would_invoke": self.would_invoke,
            "errors": self.errors,
            "deleted": self.deleted,
            "unread": self.unread,
            "messages": [
                {"message_id": mid, **(r.as_dict() if r else _NOT_REPLAYED), "why": why}
                for mid, r, why in self.results
            ],
        }


# The entry of a message that is no failure record: the keys of ReplayResult.as_dict, null but
# its state, so that every entry of the report has one shape.
_NOT_REPLAYED: dict[str, Any] = {
    **dict.fromkeys(field.name for field in dataclasses.fields(ReplayResult)),
    "state": ReplayState.SKIPPED.value,
}


# Why a message received stays in the DLQ, unsent, when the run stops before its turn.
NOT_SENT = "not sent: the redrive stopped before its turn; it stays in the DLQ"


def _replayable_message(message: Mapping[str, Any]) -> tuple[DecodedMessage | None, str | None]:
    """The message's failure record, or why it has none; S3's notice of a record is raised
    (:class:`RecordInS3`): the run reads the object it names."""
    try:
        decoded = decode(message.get("Body", ""), message.get("MessageAttributes") or None)
    except RecordInS3:
        raise
    except DecodeError as exc:
        return None, f"not a Lambda record ({exc.reason})"
    return _replayable(decoded)


def _replayable(decoded: DecodedMessage) -> tuple[DecodedMessage | None, str | None]:
    if decoded.succeeded is True:
        return None, "a success record: nothing to re-invoke (move it with dlq redrive)"
    return decoded, None


def object_reader(aws: AwsClients) -> ReadObject:
    """The ``read_object`` of :func:`reinvoke_messages`: the operator's own credentials read
    the object (s3:GetObject), and a refused read names them, as the worker's names its own."""

    async def read(location: S3Object) -> bytes:
        return await read_record(aws, location, credentials="the AWS credentials")

    return read


def _may_delete(result: ReplayResult) -> bool:
    """The message's work is done: invoked now, or replayed for sure by an earlier run."""
    if result.state is ReplayState.INVOKED:
        return True
    return result.state is ReplayState.SKIPPED and result.skip is SkipReason.ALREADY_REPLAYED


async def reinvoke_messages(
    sqs: Any,
    lambda_client: Any,
    store: Store,
    dlq_url: str,
    *,
    read_object: ReadObject,
    requested_by: str,
    force: bool = False,
    dry_run: bool = False,
    legacy_function: str | None = None,
    rate: float | None = None,
    limit: int | None = None,
    visibility: int = DEFAULT_VISIBILITY,
    on_done: Callable[[int], None] = lambda n: None,
    report: ReinvokeReport | None = None,
) -> ReinvokeReport:
    """Re-invoke the function of each failure record (or legacy DLQ message) in the DLQ.

    Each message is recorded in the replay ledger, invoked, then deleted; a rerun after an
    interruption finds the ledger entry and deletes without invoking again. Messages that are
    not replayable stay in the DLQ and are made visible again at the end. S3's notice of a
    record Lambda wrote to a bucket is replayed as the record ``read_object`` reads from the
    object it names. A dry run receives and releases (and reads), and invokes nothing.
    ``report`` (else a new one) is filled in also when the run is cut short: each message
    received, invoked, in doubt or not sent.
    """
    run = _Reinvoke(
        sqs,
        lambda_client,
        store,
        dlq_url,
        read_object=read_object,
        requested_by=requested_by,
        force=force,
        dry_run=dry_run,
        legacy_function=legacy_function,
        limiter=RateLimiter(rate),
        on_done=on_done,
        report=ReinvokeReport() if report is None else report,
    )
    try:
        while limit is None or len(run.outcomes) < limit:
            wanted = 10 if limit is None else min(10, limit - len(run.outcomes))
            batch = await receive(sqs, dlq_url, wanted, visibility)
            if not batch:
                break
            # Each one held from its receipt: cut short, those not looked at yet are released
            # too, rather than hidden from the next run for the visibility timeout.
            run.in_hand.update({m["MessageId"]: m["ReceiptHandle"] for m in batch})
            for message in batch:
                await run.look_at(message)
    finally:
        await run.finish()
    return run.report


@dataclasses.dataclass
class _Reinvoke:
    """One ``reinvoke_messages`` run: what it does with each message, and what it holds."""

    sqs: Any
    lambda_client: Any
    store: Store
    dlq_url: str
    read_object: ReadObject
    requested_by: str
    force: bool
    dry_run: bool
    legacy_function: str | None
    limiter: RateLimiter
    on_done: Callable[[int], None]
    report: ReinvokeReport = dataclasses.field(default_factory=ReinvokeReport)
    # message id -> (replay result, why it stays); a message seen again (its visibility ended
    # during a long run) is looked at again, and counted once.
    outcomes: dict[str, tuple[ReplayResult | None, str | None]] = dataclasses.field(
        default_factory=dict
    )
    # message id -> latest receipt of every message received and not deleted: released at the
    # end, also when interrupted, so nothing stays hidden for the whole visibility timeout.
    in_hand: dict[str, str] = dataclasses.field(default_factory=dict)
    # message ids of the notices whose object could not be read on their latest look
    unread: set[str] = dataclasses.field(default_factory=set)

    async def look_at(self, message: dict[str, Any]) -> None:
        """Replay the message's record (unless it is none), and delete it once that is done."""
        message_id = message["MessageId"]
        first_look = message_id not in self.outcomes
        self.in_hand[message_id] = message["ReceiptHandle"]
        decoded, why = await self._record_of(message_id, message)
        if decoded is None:
            self.outcomes[message_id] = (None, why)
        else:
            if not self.dry_run:
                await self.limiter.acquire()
            result = await self._replay(message_id, invocation_row(decoded, self.dlq_url))
            if first_look or result.state is not ReplayState.SKIPPED:
                self.outcomes[message_id] = (result, None)
            deletable = not self.dry_run and _may_delete(result)
            if deletable and not await _delete(self.sqs, self.dlq_url, [message]):
                self.report.deleted += 1
                self.in_hand.pop(message_id)
        if first_look:
            self.on_done(1)

    async def _record_of(
        self, message_id: str, message: Mapping[str, Any]
    ) -> tuple[DecodedMessage | None, str | None]:
        """The message's failure record, or why it has none; for S3's notice of one, the record
        read from the object it names. A refused read leaves the message for the next run, an
        unreachable S3 stops the run, as an unreachable Lambda does (every read would fail)."""
        self.unread.discard(message_id)
        try:
            return _replayable_message(message)
        except RecordInS3 as notice:
            location = notice.location
        try:
            body = await self.read_object(location)
        except ObjectUnread as exc:
            self.unread.add(message_id)
            why = f"its record in S3 was not read ({exc.reason}); it stays for the next run"
            cause = exc.__cause__
            if cause is not None and isinstance(cause, (*CONNECTION_ERRORS, *SETUP_ERRORS)):
                self.outcomes[message_id] = (None, why)
                raise cause from None
            return None, why
        except DecodeError as exc:
            return None, f"its record in S3 cannot be read ({exc.reason})"
        try:
            return _replayable(decode_object(body, location))
        except DecodeError as exc:
            return None, f"not a Lambda record ({exc.reason})"

    async def _replay(self, message_id: str, row: InvocationRow) -> ReplayResult:
        """The replay of ``row``; cut short, what became of it is the report's ``cut``."""
        recorded: list[ReplayAttempt] = []
        try:
            return await replay_invocation(
                self.store,
                self.lambda_client,
                row,
                trigger=TRIGGER_MANUAL,
                requested_by=self.requested_by,
                force=self.force,
                dry_run=self.dry_run,
                legacy_function=self.legacy_function,
                on_recorded=recorded.append,
            )
        except BaseException:
            planned = ReplayResult(row.key, row.request_id, row.function_arn, ReplayState.SKIPPED)
            became = None
            if recorded:  # the ledger says whether it was invoked, refused, or is in doubt
                planned = dataclasses.replace(planned, attempt=recorded[0].attempt)
                became = await cut_short(self.store, planned, requested_by=self.requested_by)
            not_sent = dataclasses.replace(
                planned, attempt=None, skip=SkipReason.INTERRUPTED, detail=NOT_SENT
            )
            self.outcomes[message_id] = (became or not_sent, None)
            self.report.cut = message_id
            raise

    async def finish(self) -> None:
        """Fill the report in (cut short, those received and not sent too), and make every
        message still held visible again."""
        self.report.results = [(mid, result, why) for mid, (result, why) in self.outcomes.items()]
        unsent = [mid for mid in self.in_hand if mid not in self.outcomes]  # cut short
        self.report.results += [(mid, None, NOT_SENT) for mid in unsent]
        self.report.unread = len(self.unread)
        if self.in_hand:
            await asyncio.shield(release(self.sqs, self.dlq_url, list(self.in_hand.values())))


def _message(exc: Exception) -> str:
    answered = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
    text = str(answered.get("Message") or exc)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:200]
