"""Replaying a failed invocation: invoke the function again, asynchronously, with the original
payload, and keep every attempt in the store's replay ledger.

The order of writes makes an interrupted replay visible rather than silent: the attempt is
recorded as ``pending`` first, then Lambda is invoked, then the attempt gets the new request id
and ``invoked`` and the record's status becomes ``replayed``. An attempt left ``pending`` means
"Lambda may or may not have received it"; it counts as a replay, so nothing is replayed twice by
accident, and ``force`` replays it again.

Used by ``lambda-destinations replay``, ``dlq redrive --reinvoke`` and the automatic ``replay``
handler (``trigger="automatic"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import shlex
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lambda_destinations.aws import invoke_event
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers.replay import (
    SAME_INVOCATION,
    NotReplayable,
    ReplayTarget,
    link_arrived,
    replay_target,
)
from lambda_destinations.operations._rate import RateLimiter
from lambda_destinations.operations.status import replayed_original
from lambda_destinations.retrying import (
    CONNECTION_ERRORS,
    OPERATOR_CREDENTIALS,
    SETUP_ERRORS,
    answered,
    answered_and_transient,
    describe_error,
    in_process_retrying,
    with_fix,
)
from lambda_destinations.schemas import FunctionArn, qualified_name, requalified
from lambda_destinations.store import (
    FailureStatus,
    InvocationFilter,
    InvocationRow,
    ReplayAttempt,
    ReplayOutcome,
    Store,
)
from lambda_destinations.times import utc_text

_DETAIL_LIMIT = 1000
# What a failure selected for a replay may become before its turn, by someone else's hand.
_HANDLED = (FailureStatus.IGNORED, FailureStatus.RECOVERED)
# How the command line replays a record again; the console words it its own way (and strips it).
FORCE_HINT = ": --force to replay again"
IN_DOUBT = "in doubt, may have reached Lambda"
# The ledger's detail of an attempt whose Invoke was cut off before its answer came.
CUT_OFF = f"{IN_DOUBT}: interrupted mid-call"
_LEDGER_READ = 5.0  # seconds to read, once cut short, what became of the replay under way


class ReplayState(enum.StrEnum):
    """What became of one record in a replay run."""

    INVOKED = "invoked"  # Lambda accepted the new invocation
    WOULD_INVOKE = "would-invoke"  # a dry run: this is what would be invoked
    SKIPPED = "skipped"  # not invoked; ``skip`` says why
    ERROR = "error"  # the Invoke call failed; ``error`` says whether it may have run


class SkipReason(enum.StrEnum):
    NOT_REPLAYABLE = "not-replayable"  # no payload (stream batch), no function, a success
    ALREADY_REPLAYED = "already-replayed"  # an earlier attempt reached Lambda (use force)
    IN_DOUBT = "in-doubt"  # an earlier attempt was interrupted: it may have reached Lambda
    # Another process recorded the same attempt just now, or (a forced replay) replayed the
    # record after the plan that numbered this one.
    CONCURRENT = "concurrent"
    # Another record of its request id is invoked in this run (the automatic replay handler's
    # ledger says so too, of the record it does not replay).
    SAME_INVOCATION = SAME_INVOCATION
    HANDLED = "handled"  # ignored or recovered by someone else while it waited its turn
    INTERRUPTED = "interrupted"  # not sent: the run stopped (Ctrl-C, an error) before its turn


class ErrorReason(enum.StrEnum):
    """Which way an Invoke call failed, for a result whose state is ``error``."""

    REFUSED = "refused"  # Lambda answered with an error: nothing ran, a later replay may try
    IN_DOUBT = "in-doubt"  # its answer was lost: it may have run; skipped later unless forced


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayResult:
    """One record's replay, for tables and ``--json``."""

    key: str
    request_id: str | None
    function_arn: str | None
    state: ReplayState
    attempt: int | None = None
    new_request_id: str | None = None
    skip: SkipReason | None = None
    error: ErrorReason | None = None
    detail: str | None = None
    payload_bytes: int | None = None
    # The function ARN the record names, when the replay invokes another qualifier of it
    # (``replay --qualifier``); ``function_arn`` is the one invoked.
    record_function_arn: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "request_id": self.request_id,
            "function_arn": self.function_arn,
            "state": self.state.value,
            "attempt": self.attempt,
            "new_request_id": self.new_request_id,
            "skip": self.skip.value if self.skip else None,
            "error": self.error.value if self.error else None,
            "detail": self.detail,
            "payload_bytes": self.payload_bytes,
            "record_function_arn": self.record_function_arn,
        }


def invoked_label(function_arn: str | None, record_function_arn: str | None) -> str | None:
    """The function a replay invokes, as its plan and result show it: ``function_arn``, or,
    when a qualifier replaced the record's (``record_function_arn``), the record's version or
    alias and the one invoked (``orders-api:12 → orders-api:live``)."""
    if record_function_arn is None:
        return function_arn
    return f"{qualified_name(record_function_arn)} → {qualified_name(function_arn)}"


def version_hints(planned: Iterable[ReplayResult], *, choose: str = "--qualifier") -> list[str]:
    """One line a function whose records to invoke name a published version (digits): a
    version never changes, so the replay runs the code that failed again, not the fix deployed
    since (a new version, the alias moved to it). An alias the other records of that function
    name is the one suggested. ``choose`` is how the reader names a qualifier instead (the
    command's option, the console's field). Told from the ARNs alone: no call to Lambda."""
    versions: dict[str, set[str]] = {}
    aliases: dict[str, str] = {}
    for result in planned:
        try:
            arn = FunctionArn.parse(result.function_arn or "")
        except ValueError:
            continue  # a legacy message's --legacy-function, as given
        name, qualifier = arn.function_name, arn.qualifier
        if arn.is_version and result.state is ReplayState.WOULD_INVOKE:
            versions.setdefault(name, set()).add(qualifier or "")
        elif qualifier is not None and not qualifier.startswith("$"):
            aliases.setdefault(name, qualifier)
    lines = []
    for name, numbers in sorted(versions.items()):
        listed = ", ".join(sorted(numbers, key=int))
        which = f"version {listed}'s" if len(numbers) == 1 else f"versions {listed}'"
        alias = aliases.get(name)
        instead = (
            f"{choose} {alias} runs the alias's"
            if alias
            else f"{choose} ALIAS (or '$LATEST') runs the code deployed since"
        )
        lines.append(
            f"{name}: replays run {which} code again (a published version never changes); {instead}"
        )
    return lines


async def cut_short(
    store: Store, planned: ReplayResult, *, requested_by: str
) -> ReplayResult | None:
    """What became of the record ``planned``, whose replay was under way when its run was cut
    short: the ledger says (the attempt ``requested_by`` recorded, numbered as planned or
    after: invoked, refused, or in doubt); None when it recorded none, so nothing was sent. In
    doubt too when the store cannot say."""
    result = dataclasses.replace(
        planned, state=ReplayState.ERROR, error=ErrorReason.IN_DOUBT, detail=CUT_OFF
    )
    try:
        async with asyncio.timeout(_LEDGER_READ):
            attempts = await store.replays(planned.key)
    except Exception:  # noqa: BLE001 - the store failed too: it cannot say what was sent
        return dataclasses.replace(result, detail=f"{IN_DOUBT}: the store could not say")
    number = planned.attempt or 0
    ours = [a for a in attempts if a.requested_by == requested_by and a.attempt >= number]
    if not ours:
        return None
    attempt = ours[-1]
    result = dataclasses.replace(result, attempt=attempt.attempt)
    if attempt.outcome is ReplayOutcome.INVOKED:
        return dataclasses.replace(
            result,
            state=ReplayState.INVOKED,
            error=None,
            detail=None,
            new_request_id=attempt.new_request_id,
        )
    if attempt.outcome is ReplayOutcome.ERROR:
        return dataclasses.replace(result, error=ErrorReason.REFUSED, detail=attempt.detail)
    return dataclasses.replace(result, detail=attempt.detail or CUT_OFF)


def counted_attempt(row: InvocationRow, previous: Sequence[ReplayAttempt]) -> ReplayAttempt | None:
    """The latest attempt that counts as a replay (any outcome but ``error``), if any."""
    for attempt in reversed(previous):
        if attempt.outcome is not ReplayOutcome.ERROR:
            return attempt
    return None


async def replay_invocation(
    store: Store,
    lambda_client: Any,
    row: InvocationRow,
    *,
    trigger: str,
    requested_by: str,
    force: bool = False,
    dry_run: bool = False,
    legacy_function: str | None = None,
    invoke_attempts: int = 3,
    payload: bytes | None = None,
    qualifier: str | None = None,
    limiter: RateLimiter | None = None,
    on_recorded: Callable[[ReplayAttempt], None] = lambda attempt: None,
    credentials: str = OPERATOR_CREDENTIALS,
    planned: int | None = None,
) -> ReplayResult:
    """Replay one failed record: ledger first, then Invoke, then the outcome and the status.

    Skips (and says why) records that cannot be replayed and, unless ``force``, records
    already replayed. ``dry_run`` decides everything but writes and invokes nothing.
    ``invoke_attempts`` tries in all for transient errors Lambda answered (throttling, say):
    use a client that does not retry by itself (``AwsClients.lambda_invoker``). An Invoke
    Lambda refused ends the attempt as ``error``: nothing ran, and a later replay may try
    again. One whose outcome is in doubt (the connection broke, the answer never came) is left
    pending: no later replay repeats it without ``force``. Either is in the result; a connection
    error or no credentials (or region), met by every other replay too, is raised once recorded.
    ``payload`` replaces the original request payload (an operator's edit, the caller keeps).
    ``qualifier`` (a version, an alias, ``$LATEST``) is invoked instead of the record's (the
    ledger keeps the ARN invoked): the code deployed since, not the version that failed.
    ``limiter`` paces the invocations alone: a record skipped waits for no turn.
    ``on_recorded`` hears the attempt once the ledger has it, before Lambda is called (a caller
    cut short after it asks :func:`cut_short` what became of it).
    ``credentials``: whose keys a refused Invoke's ledger entry names (a command's, the console's).
    ``planned``: the attempt a plan the operator agreed to numbered: ``force`` then skips a
    record another run replayed since (two operators forcing one replay), not invoking twice.
    """
    target_of = functools.partial(
        _target, legacy_function=legacy_function, payload=payload, qualifier=qualifier
    )
    decide = functools.partial(_decide, store, row, target_of, force=force, planned=planned)
    invoke = functools.partial(
        _invoke_recorded, store, lambda_client, tries=invoke_attempts, credentials=credentials
    )
    result, target = await decide()
    if target is not None and limiter is not None and not dry_run:
        await limiter.acquire()  # then decided again: its status may have changed meanwhile
        result, target = await _handled_meanwhile(store, row, result) or await decide()
    if target is None:
        return result
    if dry_run:
        return dataclasses.replace(result, state=ReplayState.WOULD_INVOKE)
    attempt = _attempt(row, target, result, trigger=trigger, requested_by=requested_by)
    if not await store.add_replay(attempt):
        return _recorded_elsewhere(result, attempt)
    on_recorded(attempt)
    result = await invoke(attempt, target, result)
    await _mark_invoked(store, row, result, requested_by)
    return result


def _recorded_elsewhere(result: ReplayResult, attempt: ReplayAttempt) -> ReplayResult:
    """The skip of an attempt whose number another process recorded first."""
    return dataclasses.replace(
        result,
        skip=SkipReason.CONCURRENT,
        detail=f"attempt {attempt.attempt} was recorded by another process just now",
    )


def _attempt(
    row: InvocationRow,
    target: ReplayTarget,
    result: ReplayResult,
    *,
    trigger: str,
    requested_by: str,
) -> ReplayAttempt:
    """The ledger's entry of the attempt ``result`` numbers, before it is recorded."""
    assert result.attempt is not None  # _decide numbers every attempt it lets through
    return ReplayAttempt(
        original_key=row.key,
        original_request_id=row.request_id,
        function_arn=target.function_arn,
        attempt=result.attempt,
        trigger=trigger,
        requested_by=requested_by,
    )


async def _mark_invoked(store: Store, row: InvocationRow, result: ReplayResult, by: str) -> None:
    """An invoked replay: its original ``replayed``, and a record of the new invocation that
    came in before the ledger had its request id linked to the attempt."""
    if result.state is not ReplayState.INVOKED:
        return
    await store.set_status([row.key], FailureStatus.REPLAYED, by=by)
    assert result.new_request_id is not None
    await link_arrived(store, result.new_request_id, by)


async def _handled_meanwhile(
    store: Store, row: InvocationRow, result: ReplayResult
) -> tuple[ReplayResult, None] | None:
    """The skip of ``row`` when, since it was selected, it became ignored or recovered."""
    now = await store.get_invocation(row.key)
    if now is None or now.status is row.status or now.status not in _HANDLED:
        return None
    by = f" by {now.status_by}" if now.status_by else ""
    detail = f"{now.status}{by} meanwhile"
    return dataclasses.replace(result, attempt=None, skip=SkipReason.HANDLED, detail=detail), None


async def _decide(
    store: Store,
    row: InvocationRow,
    target_of: Callable[[InvocationRow], tuple[ReplayResult, ReplayTarget | None]],
    *,
    force: bool,
    planned: int | None = None,
) -> tuple[ReplayResult, ReplayTarget | None]:
    """Whether ``row`` is to be replayed now: its target (``target_of``, :func:`_target`) and
    the attempt's number in the result, or None and the result says why not (it cannot be
    replayed, or it was already; forced, it was since the plan that numbered it ``planned``)."""
    result, target = target_of(row)
    if target is None:
        return await _naming_the_original(store, row, result), None
    previous = await store.replays(row.key)
    if not force:
        skipped = _already_replayed(row, previous) or await _replayed_as_another(store, row)
    else:
        skipped = _replayed_since(previous, planned)
    if skipped is not None:
        return dataclasses.replace(result, skip=skipped[0], detail=skipped[1]), None
    number = max((a.attempt for a in previous), default=0) + 1
    return dataclasses.replace(result, attempt=number), target


async def _naming_the_original(
    store: Store, row: InvocationRow, result: ReplayResult
) -> ReplayResult:
    """``result`` (a skip), whose detail names the original failure and its replay command when
    ``row`` is a replay's own record."""
    replayed = await replayed_original(store, row)
    if replayed is None:
        return result
    attempt, original = replayed
    # The original was replayed (this record is that replay's): the command named must not be
    # one that only skips it as replayed already.
    first = await store.get_invocation(attempt.original_key)
    again = first is not None and _already_replayed(first, await store.replays(first.key))
    detail = (
        f"this failure is a replay's own record (attempt {attempt.attempt} of "
        f"{original}): replay the original instead: lambda-destinations replay "
        f"{shlex.quote(original)}{' --force' if again else ''}"
    )
    return dataclasses.replace(result, detail=detail)


def _target(
    row: InvocationRow,
    *,
    legacy_function: str | None,
    payload: bytes | None,
    qualifier: str | None,
) -> tuple[ReplayResult, ReplayTarget | None]:
    """What a replay of ``row`` would invoke (None: it cannot be replayed, the result says why):
    its function with ``qualifier`` instead of its own, when given.

    The result is a skip until the replay goes further.
    """
    result = ReplayResult(
        key=row.key,
        request_id=row.request_id,
        function_arn=row.function_arn,
        state=ReplayState.SKIPPED,
    )
    try:
        target = replay_target(row, legacy_function=legacy_function)
    except NotReplayable as exc:
        return dataclasses.replace(result, skip=SkipReason.NOT_REPLAYABLE, detail=str(exc)), None
    function = target.function_arn
    if qualifier is not None:
        function = requalified(function, qualifier)
    target = ReplayTarget(function, target.payload if payload is None else payload)
    result = dataclasses.replace(
        result,
        function_arn=target.function_arn,
        payload_bytes=len(target.payload),
        record_function_arn=row.function_arn if function != row.function_arn else None,
    )
    return result, target


async def _invoke_recorded(
    store: Store,
    lambda_client: Any,
    attempt: ReplayAttempt,
    target: ReplayTarget,
    result: ReplayResult,
    *,
    tries: int,
    credentials: str,
) -> ReplayResult:
    """Invoke the recorded ``attempt`` and write its outcome to the ledger.

    ``result`` completed: invoked, or an error when Lambda refused it or its outcome is in
    doubt. A connection error, or no credentials or region, is raised once the attempt is
    recorded either way. A refusal's fix names ``credentials``.
    """
    assert attempt.id is not None
    try:
        async for retry in in_process_retrying(tries, 30.0, retry_if=answered_and_transient):
            with retry:
                new_request_id = await invoke_event(
                    lambda_client, target.function_arn, target.payload
                )
    except asyncio.CancelledError:
        # Cut off before the answer (Ctrl-C, a shutdown): it may have run. Said in the ledger,
        # so that a later replay says so rather than "another run may be invoking it now".
        with contextlib.suppress(Exception):
            await store.update_replay(attempt.id, detail=CUT_OFF)
        raise
    except Exception as exc:
        detail = _describe(exc, credentials)
        # A setting that keeps the client from being made (an endpoint botocore refuses):
        # nothing was sent, and every other replay would fail alike.
        unusable = isinstance(exc, ConfigError)
        if unusable or answered(exc):
            # Lambda did not take the invocation: the attempt ends here and a later replay
            # may try again without force.
            error = ErrorReason.REFUSED
            await store.update_replay(attempt.id, outcome=ReplayOutcome.ERROR, detail=detail)
        else:
            # It may have run: left pending (as a cancellation leaves it), never repeated
            # without force.
            error = ErrorReason.IN_DOUBT
            detail = f"{IN_DOUBT}: {detail}"
            await store.update_replay(attempt.id, detail=detail)
        if unusable or isinstance(exc, (*CONNECTION_ERRORS, *SETUP_ERRORS)):
            raise  # the endpoint is away, no credentials: every other replay would fail alike
        return dataclasses.replace(result, state=ReplayState.ERROR, error=error, detail=detail)
    await store.update_replay(
        attempt.id, new_request_id=new_request_id, outcome=ReplayOutcome.INVOKED
    )
    return dataclasses.replace(result, state=ReplayState.INVOKED, new_request_id=new_request_id)


def _already_replayed(
    row: InvocationRow, previous: Sequence[ReplayAttempt]
) -> tuple[SkipReason, str] | None:
    counted = counted_attempt(row, previous)
    if counted is not None:
        when = utc_text(counted.requested_at) + " UTC"
        if counted.outcome is ReplayOutcome.PENDING:
            # With no detail, the run that made it wrote nothing after it: it may still be
            # waiting for Lambda (two operators replaying at once), or it died mid-call.
            state = (
                "was interrupted and may have reached Lambda"
                if counted.detail
                else "has no outcome yet: another run may be invoking it now, or it stopped "
                "mid-call and may have reached Lambda"
            )
            return (
                SkipReason.IN_DOUBT,
                f"attempt {counted.attempt} ({when}, {counted.requested_by}) {state}{FORCE_HINT}",
            )
        new = f", new request id {counted.new_request_id}" if counted.new_request_id else ""
        return (
            SkipReason.ALREADY_REPLAYED,
            f"replayed already (attempt {counted.attempt}, {counted.outcome.value}, {when}{new})"
            f"{FORCE_HINT}",
        )
    if row.status == FailureStatus.REPLAYED:
        by = f" by {row.status_by}" if row.status_by else ""
        return SkipReason.ALREADY_REPLAYED, f"marked replayed{by}{FORCE_HINT}"
    return None


def _replayed_since(
    previous: Sequence[ReplayAttempt], planned: int | None
) -> tuple[SkipReason, str] | None:
    """Why a forced replay planned as attempt ``planned`` is not made: another run made that
    attempt (or a later one) since the plan, and it counts (it was not refused)."""
    if planned is None:
        return None
    since = [a for a in previous if a.attempt >= planned and a.outcome is not ReplayOutcome.ERROR]
    if not since:
        return None
    made = since[-1]
    new = f", new request id {made.new_request_id}" if made.new_request_id else ""
    return (
        SkipReason.CONCURRENT,
        f"attempt {made.attempt} ({utc_text(made.requested_at)} UTC, {made.requested_by}, "
        f"{made.outcome.value}{new}) was made by another run after this run's plan: "
        "--force again to replay once more",
    )


async def _replayed_as_another(store: Store, row: InvocationRow) -> tuple[SkipReason, str] | None:
    """Why ``row`` is not replayed when another record of its request id was: one failed
    invocation both an on-failure destination and a dead-letter queue recorded is invoked once."""
    if not row.request_id:
        return None
    for other in await store.list_invocations(InvocationFilter(request_ids=[row.request_id])):
        if other.key == row.key:
            continue
        skipped = _already_replayed(other, await store.replays(other.key))
        if skipped is not None:
            return skipped[0], f"the same invocation as {other.key}, whose {skipped[1]}"
    return None


def _describe(exc: BaseException, credentials: str) -> str:
    """The error in one line, cut, then what to do about it (a refused Invoke's permission,
    naming ``credentials``)."""
    described = " ".join(describe_error(exc).split())[:_DETAIL_LIMIT]
    return with_fix(exc, described, credentials=credentials)
