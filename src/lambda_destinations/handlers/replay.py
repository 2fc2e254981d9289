"""The built-in ``replay`` handler: invoke a failed function again, later, a few times at most.

::

    [handlers.retry-orders]
    type = "replay"
    error_types = ["Sandbox.Timedout", "*Timeout*"]   # globs; default: any
    conditions = ["RetriesExhausted"]                 # default: any failure condition
    functions = ["orders-*"]                          # globs; default: any
    budget = 3                                        # attempts per original request
    delay = "1m"                                      # before attempt 1; doubled each time
    max_delay = "1h"

On a failure record the policy matches, the handler schedules attempt 1 (a job in the store,
due after ``delay``); the worker's scheduler runs it: it records the attempt in the replay
ledger, invokes the original function ARN (with its qualifier) asynchronously
(``InvocationType=Event``) with the original ``requestPayload``, and records the request id
Lambda returned. When that new invocation's own record arrives, its request id finds the
attempt: a success marks it ``recovered`` (and the original invocation's status too); a failure
marks it ``failed`` and, while the budget lasts, schedules the next attempt for the original.
A failed replay's dead-letter message (its ``RequestID``) is linked so too: both records of it
continue the one chain (the next attempt's job is scheduled once), never a chain of their own.

Records that cannot be replayed — stream batch failures (an event-source mapping's batch, not
an asynchronous invocation's event, with or without its records); a legacy DLQ message
names no function unless ``legacy_function`` does — get a ledger entry saying why, and no
invocation. Effectively once: the handler is claimed per record key, the job is scheduled once
per (original, attempt), and the ledger's attempt is unique, so redeliveries never replay twice.
A failed invocation an on-failure destination and a dead-letter queue both recorded (two
records of one request id) is replayed once: the first record to get here records itself in
the store as the one replayed (:func:`first_of_invocation`); the other gets a ledger entry
naming it (``same-invocation``) and is never invoked, whatever becomes of the first's replay.
An Invoke that failed with an answer (throttling, 5xx) is tried again; one whose outcome is
unknown (the connection broke, the worker stopped) is left ``pending`` — in doubt — and never
repeated automatically. A function that no longer exists is permanent: the attempt is ``error``.

``replay-outcome`` is the same outcome linking alone, for routes of successes (or of failures
when automatic replay is off and only manual replays are made): one indexed read per record, no
claim, since what it writes is idempotent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from lambda_destinations._json import utf8
from lambda_destinations._text import cut
from lambda_destinations.aws import invoke_event
from lambda_destinations.config import (
    ROUTE_OUTCOMES,
    condition_problem,
    function_glob_problem,
    glob_problem,
)
from lambda_destinations.errors import (
    ConfigError,
    LambdaDestinationsError,
    PermanentError,
    TransientError,
)
from lambda_destinations.handlers.base import HandlerContext, delivery_of
from lambda_destinations.handlers.in_doubt import RESEND, SKIP, InDoubt, InDoubtOption
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.handlers.templates import Duration, parse_options
from lambda_destinations.retrying import (
    answered,
    answered_and_transient,
    classify,
    describe_error,
    in_process_retrying,
    with_fix,
)
from lambda_destinations.schemas import MessageKind, check_invoke_target
from lambda_destinations.store import (
    FailureStatus,
    InvocationRow,
    ReplayAttempt,
    ReplayOutcome,
    ScheduledJob,
    utcnow,
)

if TYPE_CHECKING:
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.jobs import JobContext
    from lambda_destinations.schemas import DecodedMessage
    from lambda_destinations.store import Store

T = TypeVar("T")

# Who asked for a replay, as the replay ledger records it.
TRIGGER_MANUAL = "manual"
TRIGGER_AUTOMATIC = "automatic"


class NotReplayable(LambdaDestinationsError):
    """A record that cannot be replayed; the message says why and what to do instead."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayTarget:
    """The invocation a replay makes: which function, with which bytes."""

    function_arn: str
    payload: bytes


def replay_target(row: InvocationRow, *, legacy_function: str | None = None) -> ReplayTarget:
    """The function and payload a replay of ``row`` invokes; NotReplayable says why not.

    ``legacy_function`` (a name or ARN) is used for legacy DLQ messages, which do not say
    which function they came from.
    """
    if row.succeeded is True:
        raise NotReplayable("the invocation succeeded: there is nothing to replay")
    if row.status == FailureStatus.REPLAY:
        raise NotReplayable(
            "this failure is a replay's own record: replay the original failure instead "
            "(`failures show` names it)"
        )
    if row.kind == "stream-failure":
        raise NotReplayable(_stream_not_replayable(row))
    function = row.function_arn or (legacy_function if row.kind == "legacy-dlq" else None)
    if not function:
        raise NotReplayable(
            "a legacy DLQ message does not name its function: pass --legacy-function NAME"
        )
    if row.kind == "invocation" and not (
        isinstance(row.record, dict) and "requestPayload" in row.record
    ):
        raise NotReplayable("the record carries no requestPayload to replay")
    return ReplayTarget(function, original_payload(row))


def _stream_not_replayable(row: InvocationRow) -> str:
    """Why a stream batch failure is not replayed: with its batch (an S3 destination's record)
    or without (only the batch's place)."""
    if row.request_payload is None:
        return (
            "a stream batch failure carries no request payload (only the shard and sequence "
            "range): reprocess the batch from the stream instead"
        )
    # An event-source mapping invokes synchronously and reads the function's answer (its
    # batchItemFailures); an asynchronous Invoke of the same batch would drop that answer, so
    # records the function reports failed would be lost without a word.
    return (
        "a stream batch failure is not replayed by an asynchronous Invoke, which would drop the "
        "function's batchItemFailures: reprocess the batch the record carries (`failures show` "
        "prints it) with the stream's own tools"
    )


def original_payload(row: InvocationRow) -> bytes:
    """The event the function was invoked with, as bytes for Invoke.

    JSON payloads are serialised again (the same JSON value; key order and spacing may differ
    from the bytes Lambda first received). A legacy DLQ body that is not JSON is sent exactly
    as received.
    """
    record = row.record
    if (
        row.kind == "legacy-dlq"
        and isinstance(record, dict)
        and record.get("bodyIsJson") is False
        and isinstance(row.request_payload, str)
    ):
        return row.request_payload.encode()
    return utf8(row.request_payload, separators=(",", ":"))


REPLAY_KIND = "replay"
MAX_DETAIL = 1000
# A pending attempt whose detail starts so failed with an answer from Lambda: nothing ran, and
# the next run of its job may invoke again. Any other pending attempt is in doubt.
WILL_RETRY = "Invoke failed, will retry: "
# What an operator runs for an Invoke its job's last run gave up, once it can pass.
REPLAY_IT = "replay it (`lambda-destinations replay`)"


def replay_job_key(original_key: str, attempt: int) -> str:
    return f"replay:{original_key}:{attempt}"


def _cut(text: str) -> str:
    return cut(text, MAX_DETAIL)


def _worker(owner: str) -> str:
    """``requested_by`` for automatic replays: the worker, without the delivery suffix."""
    return f"worker {owner.split('/', 1)[0]}"


# -- one replay per failed invocation ----------------------------------------------------------

# AWS sends a failed asynchronous invocation's event to its on-failure destination and to its
# dead-letter queue both when both are configured: two records (two keys) of one request id.
# The first of them to reach a replay handler is the one replayed: it records itself as the
# completion of this handler run, keyed by the request id, which the store keeps once (the first
# completion wins, with its owner), across the worker's deliveries and the replicas alike.
ONE_REPLAY = "replay"
# The skip's name, as the command line's ``replay`` calls it (``SkipReason.SAME_INVOCATION``).
SAME_INVOCATION = "same-invocation"


def invocation_claim_key(request_id: str) -> str:
    """The handler-run key the records of one failed invocation share (no record's key: those
    end in a condition, or start with ``stream:``)."""
    return f"invocation:{request_id}"


def same_invocation(first: str) -> str:
    return f"the same invocation as {first}, the record replayed ({SAME_INVOCATION})"


async def first_of_invocation(message: DecodedMessage, store: Store) -> str | None:
    """The key of the record of ``message``'s failed invocation that is replayed, when it is
    another record's; None when it is this one's (now, or on an earlier delivery of it).

    Recorded before the replay is scheduled: a delivery that stops in between is delivered
    again, finds itself the first, and schedules it then (scheduling is idempotent).
    """
    if message.request_id is None:
        return None
    key = invocation_claim_key(message.request_id)
    if await store.complete_handler(key, ONE_REPLAY, message.key):
        return None
    first = next((r.owner for r in await store.handler_runs(key) if r.handler == ONE_REPLAY), None)
    if first is None:  # pragma: no cover - the completion above found it
        raise TransientError(f"the replay of request id {message.request_id} is not readable yet")
    return None if first == message.key else first


# -- the policy ---------------------------------------------------------------------------------


class ReplayOptions(InDoubtOption):
    """The ``[handlers.NAME]`` table of a ``replay`` handler."""

    model_config = ConfigDict(extra="forbid")

    # At most once by default: a second invocation of a function is rarely harmless.
    in_doubt: InDoubt = SKIP

    error_types: list[str] | None = None
    conditions: list[str] | None = None
    functions: list[str] | None = None
    budget: int = Field(default=3, ge=1, le=50)
    delay: Duration = Field(default=60.0, ge=0, le=7 * 86400)
    max_delay: Duration = Field(default=3600.0, ge=0, le=7 * 86400)
    legacy_function: str | None = None

    @field_validator("error_types", "conditions", "functions", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("legacy_function")
    @classmethod
    def _invokable(cls, value: str | None) -> str | None:
        # Checked at start: otherwise each legacy DLQ message's replay is scheduled, and only
        # its Invoke, after the delay, finds the name malformed.
        if value is not None:
            check_invoke_target(value)
        return value

    @field_validator("error_types", "conditions", "functions")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list matches nothing: leave the setting out to match any")
        return value

    @field_validator("functions", "error_types")
    @classmethod
    def _globs(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        # Functions are matched against the record's function name alone, as a route's function
        # is: an ARN or name:alias (or a glob with spaces around it) matches nothing, and the
        # handler would replay nothing, unsaid.
        for glob in value or ():
            problem = (
                function_glob_problem(glob, "a replay handler's functions are globs")
                if info.field_name == "functions"
                else glob_problem(glob, "error type", "error_types")
            )
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("conditions")
    @classmethod
    def _lambdas_conditions(cls, value: list[str] | None) -> list[str] | None:
        # Compared with the record's condition as it is: a route's outcome (failure) or a
        # condition spelt otherwise than Lambda spells it matches no record.
        for condition in value or ():
            if condition.lower() in ROUTE_OUTCOMES:
                raise ValueError(
                    f"{condition!r} names no record's condition: a replay handler's "
                    "conditions are Lambda's (RetriesExhausted, EventAgeExceeded); leave "
                    "conditions out to replay every failure"
                )
            if problem := condition_problem(condition, outcomes=False):
                raise ValueError(problem)
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayPolicy:
    """Which failures are retryable, how often and how soon."""

    error_types: tuple[str, ...] | None = None
    conditions: tuple[str, ...] | None = None
    functions: tuple[str, ...] | None = None
    budget: int = 3
    delay: float = 60.0
    max_delay: float = 3600.0

    def matches(self, message: DecodedMessage) -> bool:
        if message.succeeded:
            return False
        if self.conditions is not None and message.condition not in self.conditions:
            return False
        if self.functions is not None:
            name = message.function.function_name if message.function else None
            if name is None or not any(fnmatchcase(name, glob) for glob in self.functions):
                return False
        if self.error_types is not None:
            error = message.error_type
            if error is None or not any(fnmatchcase(error, glob) for glob in self.error_types):
                return False
        return True

    def delay_for(self, attempt: int) -> float:
        """Seconds before ``attempt`` (1, 2, ...): ``delay`` doubled each time, capped."""
        return float(min(self.max_delay, self.delay * 2 ** min(attempt - 1, 32)))


def _reason(message: DecodedMessage) -> str:
    what = message.error_type or "failure"
    return f"{what} ({message.condition})" if message.condition else what


# -- outcome linking ----------------------------------------------------------------------------


async def link_outcome(
    store: Store, attempt: ReplayAttempt, message: DecodedMessage | InvocationRow, by: str
) -> None:
    """The record of a replayed invocation arrived (``message``, or its stored row): mark its
    attempt (and the original).

    Idempotent: a redelivered record changes nothing more.
    """
    assert attempt.id is not None
    if message.succeeded:
        if attempt.outcome is not ReplayOutcome.RECOVERED:
            await store.update_replay(attempt.id, outcome=ReplayOutcome.RECOVERED)
            await store.set_status([attempt.original_key], FailureStatus.RECOVERED, by=by)
    elif attempt.outcome in (ReplayOutcome.PENDING, ReplayOutcome.INVOKED):
        error = ": ".join(p for p in (message.error_type, message.error_message) if p)
        await store.update_replay(
            attempt.id,
            outcome=ReplayOutcome.FAILED,
            detail=_cut(f"failed again ({_failed_how(message)}): {error or 'no error given'}"),
        )


def _failed_how(message: DecodedMessage | InvocationRow) -> str:
    """The condition a replay failed with, or (a dead-letter message names none) where it was
    recorded."""
    return message.condition or "dead-letter queue"


async def link_arrived(store: Store, new_request_id: str, by: str) -> None:
    """Link the record of a replay's new invocation stored before the ledger had its request
    id: the worker found no attempt for it then. Called once the ledger has it.

    The worker looks the ledger up after its route's ``persist`` saved the record, the
    replayer here after the ledger's commit, so one of the two sees the other's write.
    """
    arrived = await store.get_invocation(new_request_id)
    if arrived is None or arrived.request_id != new_request_id or arrived.succeeded is None:
        return
    attempt = await store.replay_for_request(new_request_id)  # as linked meanwhile, if it was
    if attempt is None:
        return
    if arrived.succeeded and attempt.outcome is ReplayOutcome.RECOVERED:
        # Linked by the worker since the ledger's commit, perhaps before the replayer's
        # status `replayed`, which would then have overwritten `recovered`.
        await store.set_status([attempt.original_key], FailureStatus.RECOVERED, by=by)
        return
    await link_outcome(store, attempt, arrived, by)


# The records a replay's new invocation can have: its destination's, and its dead-letter queue's
# (AWS sends a failed invocation's event to both when both are configured, a replay's too; the
# DLQ message's ``RequestID`` attribute is the new request id the ledger recorded).
_REPLAY_RECORD_KINDS = (MessageKind.INVOCATION, MessageKind.LEGACY_DLQ)


async def _attempt_for(message: DecodedMessage, store: Store) -> ReplayAttempt | None:
    if message.kind not in _REPLAY_RECORD_KINDS or message.request_id is None:
        return None
    return await store.replay_for_request(message.request_id)


class ReplayOutcomeHandler:
    """``replay-outcome``: links a replayed invocation's record to its ledger attempt.

    No claim (it records its own completion): a record that is no replay costs one indexed
    read and writes nothing; one that is writes idempotent updates.
    """

    _records_completion = True
    _reads_record_only = True  # see handlers.base.reads_record_only

    def __init__(self, name: str = "replay-outcome") -> None:
        self.name = name

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        delivery = delivery_of(context)
        attempt = await _attempt_for(message, delivery.store)
        if attempt is not None:
            await link_outcome(delivery.store, attempt, message, _worker(delivery.owner))
            context.log.info(
                "replay outcome recorded",
                original=attempt.original_key,
                attempt=attempt.attempt,
                succeeded=message.succeeded,
            )


# -- the handler --------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class ReplayHandler:
    """Schedules replays of retryable failures; links replays' own records to the ledger."""

    _reads_record_only = True  # see handlers.base.reads_record_only

    name: str
    policy: ReplayPolicy
    _: dataclasses.KW_ONLY
    legacy_function: str | None = None
    in_doubt: InDoubt = SKIP

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        store, log = delivery_of(context).store, context.log
        previous = await _attempt_for(message, store)
        if previous is not None:
            # This record is a replay's own outcome.
            # Both its records (destination and dead-letter queue) link it, and may both
            # schedule the next attempt: the job is scheduled once per (original, attempt).
            await link_outcome(store, previous, message, _worker(delivery_of(context).owner))
            if message.succeeded:
                return
            await self._next_attempt(previous, message, context)
            return
        if not self.policy.matches(message):
            log.debug("failure not retryable by policy", handler=self.name)
            return
        row = invocation_row(message, context.queue_url)
        try:
            target = replay_target(row, legacy_function=self.legacy_function)
        except NotReplayable as exc:
            await self._not_replayable(message, str(exc), context)
            return
        first = await first_of_invocation(message, delivery_of(context).store)
        if first is not None:
            context.log.info(
                "not replayed: the same invocation as another record",
                handler=self.name,
                first=first,
            )
            await self._not_replayed(message, same_invocation(first), context)
            return
        await self._schedule(
            context,
            original_key=message.key,
            original_request_id=message.request_id,
            function_arn=target.function_arn,
            attempt=1,
            payload=original_payload(row).decode(),
            reason=_reason(message),
        )

    async def _next_attempt(
        self, previous: ReplayAttempt, message: DecodedMessage, context: HandlerContext
    ) -> None:
        attempt = previous.attempt + 1
        fields = {"original": previous.original_key, "attempt": previous.attempt}
        if message.kind is MessageKind.LEGACY_DLQ and not self.policy.matches(message):
            # A dead-letter message names no condition and no function (its error code is no
            # error type), so a policy with filters misses it; then it decides nothing, as for
            # an original failure: the destination's record of the same invocation does.
            context.log.debug("replay failed again; its DLQ copy decides nothing", **fields)
            return
        if not self.policy.matches(message) or attempt > self.policy.budget:
            if attempt > self.policy.budget:
                context.log.warning("replay failed again; the replay budget is spent", **fields)
            else:
                context.log.info("replay failed again; no longer retryable by policy", **fields)
            # Nothing more will happen on its own: it needs a person again.
            delivery = delivery_of(context)
            await delivery.store.set_status(
                [previous.original_key], FailureStatus.OPEN, by=_worker(delivery.owner)
            )
            return
        row = invocation_row(message, context.queue_url)
        await self._schedule(
            context,
            original_key=previous.original_key,
            original_request_id=previous.original_request_id,
            function_arn=previous.function_arn,
            attempt=attempt,
            payload=original_payload(row).decode(),
            reason=_reason(message),
        )

    async def _schedule(
        self,
        context: HandlerContext,
        *,
        original_key: str,
        original_request_id: str | None,
        function_arn: str,
        attempt: int,
        payload: str,
        reason: str,
    ) -> None:
        delay = self.policy.delay_for(attempt)
        job = ScheduledJob(
            key=replay_job_key(original_key, attempt),
            kind=REPLAY_KIND,
            due_at=utcnow() + dt.timedelta(seconds=delay),
            payload={
                "handler": self.name,
                "original_key": original_key,
                "original_request_id": original_request_id,
                "function_arn": function_arn,
                "attempt": attempt,
                "payload": payload,
                "reason": reason,
                "in_doubt": self.in_doubt,
            },
        )
        new = await delivery_of(context).store.schedule_job(job)
        context.log.info(
            "replay scheduled" if new else "replay was scheduled already",
            handler=self.name,
            original=original_key,
            attempt=attempt,
            delay=delay,
            function_arn=function_arn,
        )

    async def _not_replayable(
        self, message: DecodedMessage, reason: str, context: HandlerContext
    ) -> None:
        context.log.warning("failure cannot be replayed", handler=self.name, reason=reason)
        await self._not_replayed(message, reason, context)

    async def _not_replayed(
        self, message: DecodedMessage, reason: str, context: HandlerContext
    ) -> None:
        """The ledger's entry for a failure not replayed: attempt 1, ``error``, saying why."""
        function = message.function.arn if message.function else self.legacy_function
        if function is None:
            return  # the ledger names a function; the log line is the record of it
        delivery = delivery_of(context)
        await delivery.store.add_replay(
            ReplayAttempt(
                original_key=message.key,
                original_request_id=message.request_id,
                function_arn=function,
                attempt=1,
                trigger=TRIGGER_AUTOMATIC,
                requested_by=_worker(delivery.owner),
                outcome=ReplayOutcome.ERROR,
                detail=_cut(f"not replayed: {reason}"),
            )
        )


# -- the scheduled job --------------------------------------------------------------------------


async def _retry_answered(
    call: Callable[[], Awaitable[T]], context: JobContext, attempts: int
) -> T:
    """``call()``, tried again in process only after transient errors Lambda answered with
    (an Invoke whose outcome is in doubt is never repeated)."""
    retrying = in_process_retrying(
        attempts,
        context.settings.handler_retry_max_delay,
        sleep=context.sleep,
        retry_if=answered_and_transient,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


async def run_replay_job(job: ScheduledJob, context: JobContext) -> bool:
    """The scheduler's runner for ``replay`` jobs: ledger, Invoke, ledger, status. False when
    it invoked nothing: ``replays_total{outcome="invoked"}`` counts the Invokes made."""
    if await _a_replays_record(job, context):
        return False
    attempt = await _recorded_attempt(job, context)
    if attempt is None:
        return False  # made by an earlier run of the job, and counted then
    assert attempt.id is not None
    client = await context.aws.lambda_invoker()
    payload = str(job.payload["payload"]).encode()
    try:
        new_request_id = await _retry_answered(
            lambda: invoke_event(client, attempt.function_arn, payload),
            context,
            context.settings.handler_attempts,
        )
    except Exception as exc:
        raise await _failed_invoke(exc, job, context, attempt) from exc
    await _invoked(context, attempt, new_request_id)
    return True


async def _a_replays_record(job: ScheduledJob, context: JobContext) -> bool:
    """Whether the job's failure turned out to be a replay's own record (it arrived before the
    ledger had its request id, so the handler took it for a failure of its own): its original
    is the one replayed, so this one never is."""
    original_key = str(job.payload["original_key"])
    row = await context.store.get_invocation(original_key)
    if row is None or row.key != original_key or row.status != FailureStatus.REPLAY:
        return False
    context.log.warning(
        "not replayed: the failure is a replay's own record (its original is replayed)",
        original=original_key,
    )
    return True


async def _recorded_attempt(job: ScheduledJob, context: JobContext) -> ReplayAttempt | None:
    """The job's attempt in the ledger: added now, or found from an earlier run that is to
    invoke again (None: that run's Invoke was answered already)."""
    store, spec = context.store, job.payload
    original_key, number = str(spec["original_key"]), int(spec["attempt"])
    why = _cut(f"automatic ({spec.get('handler')}): {spec.get('reason')}")
    attempt = ReplayAttempt(
        original_key=original_key,
        original_request_id=spec.get("original_request_id"),
        function_arn=str(spec["function_arn"]),
        attempt=number,
        trigger=TRIGGER_AUTOMATIC,
        requested_by=_worker(context.owner),
        detail=why,
    )
    if await store.add_replay(attempt):
        return attempt
    found = next((a for a in await store.replays(original_key) if a.attempt == number), None)
    if found is None or found.id is None:  # pragma: no cover - add_replay said it exists
        raise TransientError(f"replay attempt {number} of {original_key} is not readable yet")
    if found.outcome is not ReplayOutcome.PENDING:
        context.log.info("replay attempt already made", attempt=number, outcome=str(found.outcome))
        return None
    if not (found.detail or "").startswith(WILL_RETRY):
        raise PermanentError(
            f"replay attempt {number} of {original_key} was interrupted while invoking "
            "and may have reached Lambda: it is not repeated automatically "
            "(`lambda-destinations replay --force` if it did not)"
        )
    # No longer marked: if this run is interrupted too, the attempt is in doubt.
    await store.update_replay(found.id, detail=_cut(f"{why}; Invoke run {job.attempts}"))
    return found


async def _failed_invoke(
    exc: Exception, job: ScheduledJob, context: JobContext, attempt: ReplayAttempt
) -> LambdaDestinationsError:
    """Record a failed Invoke in the ledger; the error the job ends with (transient: the
    job runs again and invokes again)."""
    assert attempt.id is not None
    store, error, function = context.store, describe_error(exc), attempt.function_arn
    more_runs = job.attempts < context.max_attempts
    # On the job's last run, a throttled Invoke's fix says nothing tries it again, and what
    # does once it can pass.
    error = with_fix(exc, error, last_try=not more_runs, then=REPLAY_IT)
    if answered(exc) and classify(exc) == "transient" and more_runs:
        await store.update_replay(attempt.id, detail=_cut(WILL_RETRY + error))
        return TransientError(f"Invoke of {function} failed: {error}")
    if answered(exc):
        # Lambda said no (the function is gone, the payload is refused): nothing ran.
        await store.update_replay(attempt.id, outcome=ReplayOutcome.ERROR, detail=_cut(error))
        await _given_up(context, attempt)
        return PermanentError(f"Invoke of {function} refused: {error}")
    if job.payload.get("in_doubt") == RESEND and more_runs:
        # The next run of the job invokes again (see WILL_RETRY): at least once.
        await store.update_replay(attempt.id, detail=_cut(f"{WILL_RETRY}in doubt: {error}"))
        return TransientError(
            f"Invoke of {function} in doubt ({error}); invoking again (in_doubt = resend)"
        )
    await store.update_replay(attempt.id, detail=_cut(f"in doubt: {error}"))
    await _given_up(context, attempt)
    return PermanentError(
        f"Invoke of {function} may or may not have reached Lambda ({error}); "
        "left pending, not repeated"
    )


async def _given_up(context: JobContext, attempt: ReplayAttempt) -> None:
    """The attempt's Invoke is given up, and nothing more happens on its own: the original,
    ``replayed`` by an earlier attempt of its chain, needs a person again (``open``), as when
    the budget is spent; left ``replayed``, it was out of ``--status open`` for good."""
    store, original_key = context.store, attempt.original_key
    row = await store.get_invocation(original_key)
    if row is not None and row.key == original_key and row.status is FailureStatus.REPLAYED:
        await store.set_status([original_key], FailureStatus.OPEN, by=_worker(context.owner))


async def _invoked(context: JobContext, attempt: ReplayAttempt, new_request_id: str) -> None:
    """Record an Invoke Lambda accepted: the ledger, the failure's status, and (when the new
    invocation's success record is in already) its recovery."""
    assert attempt.id is not None
    store, original_key = context.store, attempt.original_key
    requested_by = _worker(context.owner)
    await store.update_replay(
        attempt.id, new_request_id=new_request_id, outcome=ReplayOutcome.INVOKED
    )
    await store.set_status([original_key], FailureStatus.REPLAYED, by=requested_by)
    context.log.info(
        "replayed",
        original=original_key,
        attempt=attempt.attempt,
        function_arn=attempt.function_arn,
        new_request_id=new_request_id,
    )
    # The new invocation's record is normally seconds away; if it was faster than the two
    # writes above (and persisted), link it now, or nothing would.
    await link_arrived(store, new_request_id, requested_by)


# -- factories ----------------------------------------------------------------------------------


def build(name: str, options: dict[str, Any], settings: Settings) -> ReplayHandler:
    parsed = parse_options(ReplayOptions, name, options)
    if parsed.max_delay < parsed.delay:
        raise ConfigError(
            f"handlers.{name}.max_delay: {parsed.max_delay:g}s is below delay ({parsed.delay:g}s): "
            "raise max_delay, or lower delay"
        )
    policy = ReplayPolicy(
        error_types=tuple(parsed.error_types) if parsed.error_types else None,
        conditions=tuple(parsed.conditions) if parsed.conditions else None,
        functions=tuple(parsed.functions) if parsed.functions else None,
        budget=parsed.budget,
        delay=parsed.delay,
        max_delay=parsed.max_delay,
    )
    return ReplayHandler(
        name, policy, legacy_function=parsed.legacy_function, in_doubt=parsed.in_doubt
    )


def build_outcome(name: str, options: dict[str, Any], settings: Settings) -> ReplayOutcomeHandler:
    if options:
        raise ConfigError(
            f"handlers.{name}: the replay-outcome handler takes no settings "
            f"(got {', '.join(options)})"
        )
    return ReplayOutcomeHandler(name)
