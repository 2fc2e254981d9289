"""One message, start to end: decode, route, run the chain once per key, settle the outcome.

Every message ends in exactly one outcome (see DESIGN.md, "Delivery semantics"):

- **ack**: every handler of its chain has completed for the record's key (now or on an earlier
  delivery); the message is deleted in a batch.
- **retry**: a handler failed in a way that may pass; the message's visibility is set to a
  backoff computed from ``ApproximateReceiveCount``, so SQS's redrive policy moves it to the DLQ
  after ``maxReceiveCount`` receives.
- **quarantine**: it can never succeed (it does not decode, or a handler failed permanently);
  it is kept in the store's quarantine, sent to the queue's DLQ with the reason as message
  attributes, then deleted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import structlog
from structlog.contextvars import bind_contextvars

from lambda_destinations._text import cut, sqs_text
from lambda_destinations._urls import queue_name
from lambda_destinations.errors import (
    Outcome,
    QuarantineMessage,
    RetryMessage,
    StoreDataError,
    StoreUnavailable,
    TransientError,
)
from lambda_destinations.handlers.base import (
    Delivery,
    Handler,
    HandlerContext,
    delivery_of,
    reads_record_only,
    records_completion,
)
from lambda_destinations.handlers.in_doubt import in_doubt_note
from lambda_destinations.redact import redact
from lambda_destinations.retrying import (
    SETUP_ERRORS,
    asked_wait,
    aws_fix,
    classify,
    describe_error,
    is_transient,
    retry_delay,
    retry_transient,
    with_fix,
)
from lambda_destinations.schemas import DecodedMessage, DecodeError, decode, decode_object
from lambda_destinations.schemas.s3 import RecordInS3, S3Object, S3TestEvent
from lambda_destinations.store import DeliveryRow, HandlerRun, QuarantineRow, RunState, utcnow
from lambda_destinations.worker.batching import BatchSender
from lambda_destinations.worker.leases import Renewals, renewing
from lambda_destinations.worker.metrics import CountedSqs, Metrics, bounded_condition
from lambda_destinations.worker.queues import (
    DLQ_GONE,
    MAX_ATTRIBUTES,
    NO_DLQ,
    OUR_ATTRIBUTES,
    REASON_ATTRIBUTE,
    REDRIVE_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    arn_name,
    dead_letter_target,
    is_missing_queue,
    policy_max_receive_count,
    policy_target,
    redrive_policy,
    sendable_attribute,
    storable_attributes,
)
from lambda_destinations.worker.s3_records import MAX_OBJECT_BYTES, ObjectUnread, read_record
from lambda_destinations.worker.tracebacks import TracebackLog

if TYPE_CHECKING:
    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.routing import Router
    from lambda_destinations.store import Store
    from lambda_destinations.worker.queues import QueueInfo

log = structlog.get_logger("lambda_destinations.worker")

MAX_REASON = 1000
# What a quarantine's reason on a message's last receive ends with: how an operator sends it
# back (the store's copy, or the DLQ's), as README's "Quarantine" and "Redrive" say.
PUT_BACK = (
    "once what failed is fixed or has passed, send it back to its queue "
    "(`lambda-destinations quarantine resend`, or `dlq redrive` of its DLQ)"
)
MAX_VISIBILITY = 43200  # SQS: seconds a message may stay hidden, counted from its receipt
# Recording a completed side effect: tries for about this long (the waits double up to half of
# it), as the README promises, before the message is retried and the effect may repeat.
COMPLETE_RETRY_SECONDS = 30.0
COMPLETE_ATTEMPTS = 10


@dataclasses.dataclass(slots=True)
class InFlight:
    """A received message the worker has not settled yet."""

    queue: QueueInfo
    message: dict[str, Any]
    visibility: int  # seconds a receive or heartbeat hides it for
    extend_at: float  # loop time at which the heartbeat extends its visibility
    settled: bool = False  # an outcome has been applied (its batch call may still be under way)
    # Loop time the receive that brought it was sent: SQS's 12-hour limit on its visibility
    # counts from its receipt (None: not known, the limit is taken whole).
    received_at: float | None = None
    # A record Lambda wrote to S3, which this message is the bucket's notice of: the object
    # and its bytes, once read (decoded from them, not from the body).
    record_object: S3Object | None = None
    record_body: bytes | None = None
    record_bytes: int | None = None  # its bytes counted in flight, once room was made for them

    @property
    def message_id(self) -> str:
        return str(self.message.get("MessageId", ""))

    @property
    def receipt(self) -> str:
        return str(self.message["ReceiptHandle"])

    @property
    def receive_count(self) -> int:
        try:
            return int(self.message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        except (TypeError, ValueError):
            return 1


@dataclasses.dataclass(slots=True)
class Stats:
    """Counts since start, for the live summary, the `--once` report and /metrics."""

    received: int = 0
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    kinds: Counter[str] = dataclasses.field(default_factory=Counter)
    duplicates: int = 0
    # Acked messages whose delete SQS did not confirm (refused, or not answered before the
    # shutdown deadline): they come back, and are acked again as duplicates.
    unconfirmed: int = 0
    # The signal that stopped the worker (its number), 0 for none: a job it cut short did not
    # drain its queues.
    stopped_by: int = 0
    decode_errors: int = 0
    handler_runs: Counter[str] = dataclasses.field(default_factory=Counter)
    sqs_calls: Counter[str] = dataclasses.field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "acked": self.outcomes[Outcome.ACK] - self.unconfirmed,
            "retried": self.outcomes[Outcome.RETRY],
            "quarantined": self.outcomes[Outcome.QUARANTINE],
            "released": self.outcomes[Outcome.RELEASE],
            "duplicates": self.duplicates,
            "unconfirmed": self.unconfirmed,
            "decode_errors": self.decode_errors,
            "kinds": dict(self.kinds),
            "handler_runs": dict(self.handler_runs),
            "sqs_calls": dict(self.sqs_calls),
        }


async def _no_wait(size: int) -> None:
    return None


def _decode(item: InFlight) -> DecodedMessage:
    """Decode a received message, or the S3 object read for it: the same answer, a new one,
    each call (decode is pure)."""
    if item.record_object is not None and item.record_body is not None:
        return decode_object(item.record_body, item.record_object)
    message = item.message
    return decode(message.get("Body", ""), message.get("MessageAttributes"))


class HandlerFailed(Exception):
    """A handler did not complete; carries its name and whether retrying can help."""

    def __init__(self, handler: str, error: BaseException, *, permanent: bool) -> None:
        super().__init__(f"handler {handler}: {with_fix(error, describe_error(error))}")
        self.handler = handler
        self.error = error
        self.permanent = permanent

    def given_up(self) -> str:
        """Its text on the message's last receive: a fix that says the call is tried again
        says that nothing tries it again."""
        fix = with_fix(self.error, describe_error(self.error), last_try=True)
        return f"handler {self.handler}: {fix}"


class RetryAsked(RetryMessage):
    """A handler's own RetryMessage, named by the handler that raised it (the worker's own,
    a claim held elsewhere or a handler over its timeout, name it in their reason)."""

    def __init__(self, handler: str, asked: RetryMessage) -> None:
        super().__init__(asked.reason, delay=asked.delay)
        self.handler = handler

    def given_up(self) -> str:
        """Its reason on the message's last receive, where no retry follows."""
        return f"handler {self.handler} asked for a retry: {self.reason}"


def last_reason(error: str, last: str) -> str:
    """A reason on a message's last receive: ``error`` and ``last`` (:meth:`Dispatcher.
    last_receive`, which says what to do), ``error`` cut so that ``last`` fits in the reason's
    MAX_REASON characters (a long error cut at the end took the way back with it)."""
    return f"{cut(error, MAX_REASON - len(last) - 2)}; {last}"


class HandlerCancelled(TransientError):
    """A handler raised CancelledError though the worker did not cancel it."""

    def __init__(self, handler: str, in_doubt: str | None = None) -> None:
        super().__init__(
            f"handler {handler} raised CancelledError, but the worker did not cancel it "
            "(something cancelled a task it awaited)" + (f"; {in_doubt}" if in_doubt else "")
        )


class HandlerExited(Exception):
    """A handler raised a BaseException that is no Exception: SystemExit (``sys.exit()`` in its
    code, or a library's), KeyboardInterrupt, GeneratorExit (while its task runs it: see
    ``_closing``), or a class of its own. Never the worker's own stop
    (its signals are the event loop's handlers, which raise nothing; CancelledError is handled
    apart), so it is the handler's error, retried as any unexpected one: let through, it ended
    the worker (``sys.exit(0)`` with exit code 0), or its message's task, the message released
    to come back at once, again and again."""

    def __init__(self, handler: str, exc: BaseException) -> None:
        what = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else describe_error(exc)
        super().__init__(
            f"handler {handler} raised {what}: a handler must raise an Exception, never exit "
            "or raise a BaseException"
        )


def _returned_when_cut_off(handler: str, timeout: float) -> None:
    """A handler that caught the CancelledError of ``handler_timeout`` and returned: its run
    counts as done (a return says so, and it may have finished its work after all), said once
    per call, as a handler that goes on past its timeout is named."""
    log.warning(
        f"handler {handler} returned after handler_timeout ({timeout:g}s) cancelled it: it "
        "caught the CancelledError, so its run counts as done; if it gave up its work there, "
        "let CancelledError through (or re-raise it) and the message is retried",
        handler=handler,
    )


def _cancelled(task: asyncio.Task[Any] | None) -> bool:
    """Whether ``task`` itself is being cancelled (a CancelledError it raises is then ours)."""
    return task is None or task.cancelling() > 0


def _closing(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> bool:
    """Whether a GeneratorExit that reached a coroutine ``task`` runs is the coroutine being
    closed (``coro.close()``, or a pending task's coroutine collected), not one its code raised.

    A close comes from outside while the coroutine is suspended: from another task, or from no
    task at all (a garbage collection, the loop gone). Its own code raises only while its task
    runs it. A task being cancelled is left its own way out, as CancelledError's.
    """
    return task is None or asyncio.current_task(loop) is not task or _cancelled(task)


class KeyLocks:
    """One turn at a time per record key, so deliveries of one record in this worker take turns.

    A key stays in the table while any delivery holds it *or waits for it*: dropping it when it
    is merely free (a waiter handed its turn but not yet running) would let the next delivery
    take a second turn beside the woken one. Turns are given in arrival order. An uncontended
    key costs a table entry only: no lock, no future.
    """

    def __init__(self) -> None:
        # key -> deliveries waiting for it (its holder is not in the queue)
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def hold(self, key: str) -> _KeyTurn:
        """``async with locks.hold(key):`` runs its body while no other delivery holds ``key``."""
        return _KeyTurn(self, key)

    def _free(self, key: str) -> bool:
        """Take ``key``'s turn if no delivery holds it (as almost none does): True if taken."""
        if key in self._waiting:
            return False
        self._waiting[key] = collections.deque()
        return True

    async def _take(self, key: str) -> None:
        """Wait for ``key``'s turn, held by another delivery (see :meth:`_free`)."""
        waiting = self._waiting[key]
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give(key)  # handed the turn just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    waiting.remove(turn)
            raise

    def _give(self, key: str) -> None:
        """End the holder's turn: hand it to the first delivery still waiting, if any."""
        waiting = self._waiting[key]
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del self._waiting[key]


class _KeyTurn:
    __slots__ = ("_key", "_locks")

    def __init__(self, locks: KeyLocks, key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        if not self._locks._free(self._key):  # uncontended, no await
            await self._locks._take(self._key)

    async def __aexit__(self, *exc_info: object) -> None:
        self._locks._give(self._key)


class Dispatcher:
    """Processes received messages and applies their outcomes."""

    # The renewals of claims, the scheduler's (the worker's: see Renewals), set by the worker.
    renewals: Renewals

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        router: Router,
        aws: AwsClients,
        sqs: Any,
        acks: BatchSender,
        visibility: BatchSender,
        owner: str,
        stats: Stats,
        queues: list[QueueInfo] | None = None,
        metrics: Metrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        # Handler calls under way: id -> (handler name, loop time it started), for /healthz.
        self.running: dict[int, tuple[str, float]] = {}
        self.store = store
        self.router = router
        self.aws = aws
        self.sqs = CountedSqs(sqs, self.metrics)  # its calls that fail are in sqs_errors
        self.acks = acks
        self.visibility = visibility
        self.owner = owner
        self.stats = stats
        self.sleep = sleep
        # Waits for room for an S3 object of so many bytes within bytes_in_flight, and counts
        # them in flight (until the message ends): the worker sets it. A notice is a few hundred
        # bytes, where its object may take megabytes.
        self.room_to_read: Callable[[int], Awaitable[None]] = _no_wait
        # The polled queues as last described (the worker's list): an entry is replaced when
        # its queue's redrive policy names another DLQ (see follow_redrive_policy).
        self.queues = queues if queues is not None else []
        self._policy_lock = asyncio.Lock()
        self.missing_dlqs: set[str] = set()  # DLQs found deleted: said once (dlq_missing)
        # A claim is a lease: renewed while its handler runs, so a crashed worker's claims
        # free within one lease (see _renewing).
        self.claim_ttl = settings.claim_lease
        self._key_locks = KeyLocks()
        self._tracebacks = TracebackLog()  # handler bugs whose traceback was logged, and when
        # Claims of this worker's own finished deliveries that the store refused to release
        # (it was down): (key, handler) -> owner. The next delivery of the key here releases
        # it first, instead of waiting the claim out as if another worker were running it.
        self._unreleased: dict[tuple[str, str], str] = {}
        # Cleared while the store cannot be reached: pollers stop receiving, so messages are
        # not received again and again (each receive counts toward maxReceiveCount).
        self.store_ok = asyncio.Event()
        self.store_ok.set()
        self.store_lost = asyncio.Event()
        self.store_error: str | None = None  # the last failure that paused receiving
        # Messages sent back to their queues because the store refused them, since the store
        # last took one (acked or quarantined): a job that ends with some has not drained its
        # queues, however empty they answer (see Worker.run).
        self.refused_by_store = 0
        # When the worker started on a store that held no record handled (epoch seconds), until
        # the first message received before then says so (see _warn_handled_elsewhere).
        self.new_store_since: float | None = None

    def store_down(self, error: BaseException | None = None) -> None:
        """Note that the store failed (with ``error``, which the watcher's line names); the
        worker pauses receiving until a ping succeeds."""
        if error is not None:
            self.store_error = describe_error(error)
        if self.store_ok.is_set():
            self.store_ok.clear()
            self.store_lost.set()

    def store_refused(self, error: StoreUnavailable) -> None:
        """A message goes back to its queue because the store refused it: counted, and
        receiving paused (store_down)."""
        self.refused_by_store += 1
        self.store_down(error)

    async def process(self, item: InFlight) -> Outcome:
        """Decode, run the chain, settle. Never raises but for cancellation.

        Runs in a task of its own (Worker._start), whose copy of the context dies with it: the
        log fields bound here need no unbinding.
        """
        queue = item.queue.name
        try:
            decoded = await self._decoded(item)
        except (S3TestEvent, ObjectUnread) as exc:
            bind_contextvars(
                queue=queue, message_id=item.message_id, receive_count=item.receive_count
            )
            return await self._not_yet_decoded(item, exc)
        except DecodeError as exc:
            bind_contextvars(
                queue=queue, message_id=item.message_id, receive_count=item.receive_count
            )
            self.stats.decode_errors += 1
            self.metrics.records_by(item.queue.name, "invalid", "").inc()
            return await self.quarantine(item, f"decode error: {exc.reason}")
        self.stats.kinds[decoded.kind.value] += 1  # the value, not the enum's repr, in logs
        self.metrics.records_by(
            item.queue.name, decoded.kind.value, bounded_condition(decoded.condition)
        ).inc()
        function = decoded.function.function_name if decoded.function else None
        bind_contextvars(
            queue=queue,
            message_id=item.message_id,
            receive_count=item.receive_count,
            request_id=decoded.request_id,
            function=function,
        )
        if self.new_store_since is not None and item.receive_count > 1:
            self._warn_handled_elsewhere(item)
        # Deliveries of one record inside this worker take turns, so a duplicate finds the
        # first one's completions instead of a live claim to wait out.
        async with self._key_locks.hold(decoded.key):
            return await self._run_chain(item, decoded)

    async def _decoded(self, item: InFlight) -> DecodedMessage:
        """The message decoded; for S3's notice of a record Lambda wrote to a bucket, the
        object read (once, its bytes counted in flight) and the record in it decoded."""
        try:
            return _decode(item)
        except RecordInS3 as notice:  # decode_object raises none: this runs once a message
            location = notice.location
            if item.record_bytes is None:  # the notice says the size; else, the most read
                size = location.size if location.size is not None else MAX_OBJECT_BYTES
                size = min(size, MAX_OBJECT_BYTES)
                await self.room_to_read(size)
                item.record_bytes = size  # counted: the worker takes it out when this ends
            body = await self._read(location)
            item.record_object, item.record_body = location, body
            log.debug("record read from S3", object=str(location), size=len(body))
            return _decode(item)

    async def _read(self, location: S3Object) -> bytes:
        """The object's bytes, each read counted by how it ended (s3_reads_total)."""
        reads = self.metrics.s3_reads
        try:
            body = await read_record(self.aws, location)
        except ObjectUnread:
            reads.labels("failed").inc()
            raise
        except DecodeError:
            reads.labels("unreadable").inc()
            raise
        reads.labels("read").inc()
        return body

    async def _not_yet_decoded(self, item: InFlight, exc: S3TestEvent | ObjectUnread) -> Outcome:
        """S3's test event is acknowledged (S3 sends it once, when a bucket's notification
        configuration names the queue); an object that could not be read is retried, and
        quarantined with the reason on the message's last receive."""
        if isinstance(exc, S3TestEvent):
            log.info("S3 test event acknowledged", bucket=exc.bucket)
            return await self.ack(item)
        if last := self.last_receive(item):
            return await self.quarantine(item, last_reason(exc.reason, last))
        return await self.retry(item, exc.reason, asked=exc.asked)

    def _warn_handled_elsewhere(self, item: InFlight) -> None:
        """Warn once when a message first received before the worker started on a new store
        comes: the handlers that ran for it are on record in whatever store was used then (a
        store URL changed in a deploy), so they run again."""
        since = self.new_store_since
        first = item.message.get("Attributes", {}).get("ApproximateFirstReceiveTimestamp")
        if since is None or not str(first).isdigit() or int(str(first)) >= since * 1000:
            return
        self.new_store_since = None
        log.warning(
            "a message received before this worker started on a new, empty store: if another "
            "store recorded what ran for it (the store URL changed), its handlers run again "
            "(a second SMS, email, webhook or replay), as will those of every such message; "
            "set store back to that one until the queues have drained"
        )

    async def _run_chain(self, item: InFlight, decoded: DecodedMessage) -> Outcome:
        chain = self.router.chain_for(decoded, item.queue.name, item.queue.url)
        # One owner per delivery: two deliveries of one record in this same worker must not
        # share a claim (a claim is renewed for its own owner).
        owner = f"{self.owner}/{item.message_id}/{item.receive_count}"
        delivery = Delivery(store=self.store, aws=self.aws, settings=self.settings, owner=owner)
        context = HandlerContext(
            queue_url=item.queue.url,
            queue_name=item.queue.name,
            message_id=item.message_id,
            receive_count=item.receive_count,
            key=decoded.key,
            log=log,
            _delivery=delivery,
        )
        try:
            if all(records_completion(handler) for handler in chain):
                # Each handler writes its effect and its completion idempotently in one go:
                # running it again on a duplicate changes nothing, so no lookup first (a
                # duplicate says so through delivery.repeated).
                pending, again = list(chain), False
            else:
                pending, again = await self._pending(chain, decoded.key, delivery)
            max_receive_count = self.current(item.queue).max_receive_count
            last_receive = max_receive_count is not None and (
                item.receive_count >= max_receive_count
            )
            for handler in pending:
                # A user handler gets a decode of its own (a third of copy.deepcopy's cost): a
                # payload it changes is not what persist stores or a later handler sees. The
                # built-ins share one decode, so the default route pays nothing for this.
                given = decoded if reads_record_only(handler) else _decode(item)
                await self._run_handler(handler, given, context, last_receive=last_receive)
            # A duplicate's delivery goes on record, unless a handler's save put it there
            # (persist, left pending after a claimed handler completed on an earlier delivery):
            # add_delivery would then change nothing, for a write transaction of its own.
            if again and delivery.repeated and not delivery.recorded:
                await self.store.add_delivery(
                    DeliveryRow(decoded.key, item.message_id, item.queue.url, item.receive_count)
                )
            if delivery.repeated:
                self.stats.duplicates += 1
        except RetryMessage as exc:
            if last := self.last_receive(item):
                asked = exc.given_up() if isinstance(exc, RetryAsked) else exc.reason
                return await self.quarantine(item, last_reason(asked, last), key=decoded.key)
            return await self.retry(item, exc.reason, delay=exc.delay)
        except QuarantineMessage as exc:
            return await self.quarantine(item, exc.reason, key=decoded.key)
        except HandlerFailed as exc:
            if exc.permanent:
                return await self.quarantine(item, str(exc), key=decoded.key)
            if last := self.last_receive(item):
                reason = last_reason(exc.given_up(), last)
                return await self.quarantine(item, reason, key=decoded.key)
            return await self.retry(item, str(exc), asked=asked_wait(exc.error))
        except StoreUnavailable as exc:
            self.store_refused(exc)
            return await self.retry(item, str(exc))
        return await self.ack(item, duplicate=delivery.repeated)

    def last_receive(self, item: InFlight) -> str | None:
        """What a quarantine's reason adds when ``item`` is on its last receive before its
        queue dead-letters it: retried, it would reach the DLQ with no reason, its last
        error said nowhere but a log line. None on any other receive, or with no DLQ."""
        queue = self.current(item.queue)
        count = queue.max_receive_count
        if count is None or item.receive_count < count or not queue.dlq_url:
            return None
        return (
            f"still failing on receive {item.receive_count}, the last the queue's redrive "
            f"policy allows (maxReceiveCount {count}): quarantined with this reason rather than "
            f"dead-lettered without one, and no retry follows; {PUT_BACK}"
        )

    async def _pending(
        self, chain: Sequence[Handler], key: str, delivery: Delivery
    ) -> tuple[list[Handler], bool]:
        """The handlers of ``chain`` (one at least of which the worker claims) to run for
        ``key``, and whether this delivery repeats one already handled (``delivery.repeated``
        set so)."""
        completed = await self.store.completed_handlers(key)
        pending = [handler for handler in chain if handler.name not in completed]
        # A duplicate or a redelivery after a lost delete: every claimed handler completed
        # before, and what is left (nothing, or replay-outcome, which keeps no completion row)
        # changes nothing. persist, if it is left, says otherwise when it stores the record for
        # the first time.
        again = len(pending) < len(chain) and all(map(records_completion, pending))
        delivery.repeated = again
        if not pending:
            log.debug("duplicate delivery; every handler already completed")
        return pending, again

    async def _run_handler(
        self,
        handler: Handler,
        decoded: DecodedMessage,
        context: HandlerContext,
        *,
        last_receive: bool = False,
    ) -> None:
        claims = not records_completion(handler)
        delivery = delivery_of(context)
        if claims and not await self._acquire(handler.name, context, last_receive=last_receive):
            return  # a concurrent delivery of the same record just completed it
        try:
            if claims:
                async with self._renewing(context.key, handler.name, delivery.owner):
                    await self._call(handler, decoded, context)
            else:
                await self._call(handler, decoded, context)
        except BaseException as exc:
            if claims:
                await self._drop_claim(handler.name, context, exc)
            raise
        if claims:
            await self._complete(context.key, handler.name, delivery.owner, delivery.in_doubt)
            delivery.in_doubt = None
        self.stats.handler_runs[handler.name] += 1

    async def _drop_claim(self, handler: str, context: HandlerContext, exc: BaseException) -> None:
        """Drop our claim so the next delivery may run ``handler``; keep why it failed.

        Even when cancelled (shutdown), the claim must not linger until it expires. A call cut
        off by that cancellation is in doubt: under ``in_doubt = "skip"`` the run completes
        instead, and the call is not sent again; under ``"resend"`` the release keeps the note.
        """
        delivery = delivery_of(context)
        error = describe_error(exc)[:1000]
        if isinstance(exc, asyncio.CancelledError):
            cut = await self._cut_off(handler, context, "cut off at shutdown", record_run=True)
            if cut is not None:
                error, done = cut
                if done:
                    return
        try:
            await self.store.release_handler(context.key, handler, delivery.owner, error=error)
        except Exception:  # noqa: BLE001 - the handler's own error is what propagates
            self._unreleased[(context.key, handler)] = delivery.owner

    async def _cut_off(
        self, handler: str, context: HandlerContext, cause: str, *, record_run: bool
    ) -> tuple[str, bool] | None:
        """Settle by its ``in_doubt`` policy the call the worker just cut off (the delivery's
        ``sending`` mark, cleared here): None when no call was under way, else the note and
        whether the handler run is done with the call.

        Skip: a call that is the whole run completes it (``record_run``: here, at shutdown;
        otherwise the note waits in ``delivery.in_doubt`` for the caller, whose run returns);
        one call of several (an SMS of a list) completes its own step, and the run is retried
        for the rest. Resend: the note, for the run's error; the next try sends again. Only
        on this path: no store round trip is added to a call that is answered.
        """
        delivery = delivery_of(context)
        mark, delivery.sending = delivery.sending, None
        if mark is None:
            return None
        note = in_doubt_note(mark.what, cause, skip=mark.skip)
        log.warning(note, handler=handler)
        delivery.in_doubt = note  # kept if this run completes after all (settle_in_doubt's way)
        if not mark.skip:
            return note, False
        if mark.step is None and not record_run:
            return note, True
        try:
            await self.store.complete_handler(
                context.key, mark.step or handler, delivery.owner, detail=note
            )
        except Exception as exc:  # noqa: BLE001 - the claim lapses; the next delivery resends
            log.warning("could not record a call in doubt as done", error=describe_error(exc))
            return note, False
        return note, mark.step is None

    async def _acquire(self, handler: str, context: HandlerContext, *, last_receive: bool) -> bool:
        """Claim ``handler`` for this delivery; False when another delivery completed it.

        A live claim held elsewhere is waited out by a retry timed to its lease. On the
        message's last receive before the queue dead-letters it, the wait happens here instead
        (the heartbeat keeps the message hidden), so a claim never sends a message to the DLQ.
        """
        stale = self._unreleased.get((context.key, handler))
        if stale is not None:
            # That delivery is over (deliveries of a key take turns here): its claim is ours
            # to drop. If the store still refuses, this message is retried.
            await self.store.release_handler(context.key, handler, stale)
            del self._unreleased[(context.key, handler)]
        loop = asyncio.get_running_loop()
        # A live holder renews for as long as its handler may run, in-process retries included.
        give_up = loop.time() + self.settings.handler_timeout * self.settings.handler_attempts
        while not await self.store.claim_handler(
            context.key, handler, delivery_of(context).owner, self.claim_ttl
        ):
            run = next(
                (r for r in await self.store.handler_runs(context.key) if r.handler == handler),
                None,
            )
            if run is not None and run.state == RunState.COMPLETED:
                return False
            wait = self._claim_wait(run, context.receive_count)
            if not last_receive or loop.time() + wait > give_up + self.claim_ttl:
                raise RetryMessage(
                    f"handler {handler} is running in another worker for this record", delay=wait
                )
            log.info("waiting for another worker's claim on the last receive", handler=handler)
            await self.sleep(wait)
        return True

    def _renewing(self, key: str, handler: str, owner: str) -> AbstractAsyncContextManager[None]:
        """Renew this delivery's claim every ``claim_renew_interval`` while the handler runs."""

        async def renew() -> bool:
            return await self.store.renew_claim(key, handler, owner, self.claim_ttl)

        return renewing(
            renew,
            self.settings.claim_renew_interval,
            self.renewals,
            what="a running handler's claim",
            handler=handler,
        )

    def _claim_wait(self, run: HandlerRun | None, receive_count: int) -> float:
        """How long a delivery waits for a handler another delivery holds the claim on.

        A duplicate received alongside the first delivery usually finds it done a few seconds
        later. After that, waiting until the claim expires costs one receive where polling every
        few seconds would spend the queue's ``maxReceiveCount`` on a long handler, or on the
        claim of a worker that crashed, and dead-letter a message nobody failed.
        """
        short = max(self.settings.retry_base, 5.0)
        if run is None or run.owner is None or run.claimed_until is None:  # released
            wait = short
        else:
            # Whole seconds, as visibility is, and one more: the claim must have expired by
            # then. Clamped to the claim's lifetime: the database's clock may not be ours.
            seconds = (run.claimed_until - utcnow()).total_seconds()
            remaining = min(max(math.ceil(seconds), 0), math.ceil(self.claim_ttl)) + 1.0
            wait = min(short, remaining) if receive_count <= 1 else remaining
        return min(self.settings.retry_max, wait)

    async def _attempt(
        self, handler: Handler, decoded: DecodedMessage, context: HandlerContext
    ) -> None:
        """One call of ``handler`` within ``handler_timeout``; a call the budget or a
        CancelledError of the handler's own cuts off is settled by its ``in_doubt`` policy."""
        token = object()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        self.running[id(token)] = (handler.name, loop.time())
        # asyncio.timeout, not wait_for: no extra task per call.
        budget = asyncio.timeout(self.settings.handler_timeout)
        try:
            async with budget:
                await handler(decoded, context)
            if budget.expired():
                _returned_when_cut_off(handler.name, self.settings.handler_timeout)
        except TimeoutError as exc:
            if not budget.expired():
                raise  # the handler's own (a client's timeout): transient, retried here
            self.metrics.handler_errors.labels(handler.name, "timeout").inc()
            over = f"ran over handler_timeout ({self.settings.handler_timeout:g}s)"
            cut = await self._cut_off(
                handler.name, context, "cut off at handler_timeout", record_run=False
            )
            if cut is not None and cut[1]:
                return  # in_doubt = skip: the call counts as done
            # A handler over its budget is retried by message, never in process.
            reason = f"handler {handler.name} {over}"
            raise RetryMessage(reason if cut is None else f"{reason}; {cut[0]}") from exc
        except asyncio.CancelledError as exc:
            if _cancelled(asyncio.current_task()):
                raise  # the worker's own cancellation (shutdown): see _drop_claim
            # The handler raised it itself (it awaited a task something else cancelled):
            # its error, retried as any transient one, not a shutdown.
            cut = await self._cut_off(handler.name, context, "CancelledError", record_run=False)
            if cut is not None and cut[1]:
                return
            raise HandlerCancelled(handler.name, None if cut is None else cut[0]) from exc
        except GeneratorExit as exc:
            if _closing(loop, task):
                raise  # this coroutine is being closed: nothing may be awaited, it goes on up
            # Out of the handler's own code (``raise GeneratorExit``, a generator's throw()
            # it did not catch): its error, as SystemExit is.
            raise HandlerExited(handler.name, exc) from exc
        except RetryMessage as exc:  # the handler's own: named, for its message's last receive
            raise RetryAsked(handler.name, exc) from exc
        except Exception:
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, a class of the handler's
            raise HandlerExited(handler.name, exc) from exc
        finally:
            del self.running[id(token)]

    async def _call(
        self, handler: Handler, decoded: DecodedMessage, context: HandlerContext
    ) -> None:
        started = asyncio.get_running_loop().time()
        duration = self.metrics.handler_duration_by(handler.name)
        try:
            await retry_transient(
                lambda: self._attempt(handler, decoded, context),
                attempts=self.settings.handler_attempts,
                max_delay=self.settings.handler_retry_max_delay,
                sleep=self.sleep,
            )
        except RetryMessage:
            raise  # asked for by the handler (not an error), or a timeout (counted as one)
        except QuarantineMessage:
            # Asked for by the handler, or its record does not fit its model (@handler's
            # typed()): the call failed for good, as a PermanentError's does.
            self.metrics.handler_errors.labels(handler.name, "permanent").inc()
            raise
        except DecodeError as exc:
            # DecodedMessage.typed(): the record does not fit the handler's model. Permanent.
            self.metrics.handler_errors.labels(handler.name, "permanent").inc()
            raise QuarantineMessage(f"handler {handler.name}: {exc.reason}") from exc
        except Exception as exc:
            # Told already: the store's outage has its warning (once a pause, with its fix),
            # and each message's retry line names the error; a warning a message said it again.
            told = isinstance(exc, StoreUnavailable) and not self.store_ok.is_set()
            if isinstance(exc, StoreUnavailable):
                # The handler's own store calls failed (persist's save is its whole effect):
                # pause receiving as for the dispatcher's own, or every message received
                # meanwhile fails the same way and counts a receive toward its DLQ.
                self.store_refused(exc)
            kind = classify(exc)
            error_class = "permanent" if kind == "permanent" else "transient"
            self.metrics.handler_errors.labels(handler.name, error_class).inc()
            if told:
                log.debug(f"handler {handler.name} failed ({kind})", error=describe_error(exc))
            elif kind != "unknown" or isinstance(exc, SETUP_ERRORS):  # no credentials: no bug
                log.warning(f"handler {handler.name} failed ({kind})", error=describe_error(exc))
            else:
                self._log_unexpected(handler.name, exc)
            raise HandlerFailed(handler.name, exc, permanent=kind == "permanent") from exc
        finally:
            duration.observe(asyncio.get_running_loop().time() - started)

    def _log_unexpected(self, handler: str, exc: Exception) -> None:
        """A handler's bug: its traceback once (and again every few minutes while it lasts),
        not at every delivery (see worker/tracebacks.py)."""
        message = f"handler {handler} raised an unexpected error"
        logged = self._tracebacks.logged_at(handler, exc)
        if logged is None:
            log.error(message, error=describe_error(exc), exc_info=exc)
            return
        when = dt.datetime.fromtimestamp(logged, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.error(message, error=describe_error(exc), traceback=f"as logged at {when}")

    async def _complete(
        self, key: str, handler: str, owner: str, detail: str | None = None
    ) -> None:
        # The side effect happened: recording that is worth half a minute of tries (longer
        # than a database restart takes), or a later delivery would run it again once the
        # claim expires.
        recorded = await retry_transient(
            lambda: self.store.complete_handler(key, handler, owner, detail=detail),
            attempts=COMPLETE_ATTEMPTS,
            max_delay=COMPLETE_RETRY_SECONDS,
            sleep=self.sleep,
        )
        if not recorded:
            await self._completed_elsewhere(key, handler, owner)

    async def _completed_elsewhere(self, key: str, handler: str, owner: str) -> None:
        """Say so when another delivery completed ``handler`` while this one ran it: this
        worker stopped for longer than its claim (frozen, paused, cut off from the store), the
        claim lapsed and was taken, and the effect happened twice. (A completion of this
        delivery's own, whose answer was lost and was tried again, is no double.)"""
        try:
            runs = await self.store.handler_runs(key)
        except Exception:  # noqa: BLE001 - the completion is recorded; only the warning is lost
            return
        run = next((r for r in runs if r.handler == handler), None)
        if run is None or run.owner == owner:
            return
        log.warning(
            f"handler {handler} ran twice for this record: another delivery ran it and completed "
            "it while this worker held no live claim (it stopped for longer than claim_lease)",
            handler=handler,
            completed_by=run.owner,
        )

    # -- outcomes ---------------------------------------------------------------------------

    async def ack(self, item: InFlight, *, duplicate: bool = False) -> Outcome:
        item.settled = True
        self.refused_by_store = 0
        self.stats.outcomes[Outcome.ACK] += 1
        # A duplicate is deleted as an ack is; it counts apart so acks count records once.
        outcome = "duplicate" if duplicate else Outcome.ACK.value
        self.metrics.messages_by(item.queue.name, outcome).inc()
        # Not awaited: the slot is free once the outcome is decided; the batch goes out within
        # milliseconds and is flushed at shutdown. A lost delete means a redelivery, which
        # idempotency absorbs.
        self.acks.submit(
            item.queue.url, {"ReceiptHandle": item.receipt}, answered=self._ack_answered
        )
        return Outcome.ACK

    def _ack_answered(self, deleted: bool) -> None:
        if not deleted:
            self.stats.unconfirmed += 1

    async def retry(
        self,
        item: InFlight,
        reason: str,
        *,
        delay: float | None = None,
        asked: float | None = None,
    ) -> Outcome:
        """Hide ``item`` for ``delay``, else for the backoff or the wait the failure ``asked``
        (a Retry-After), at most ``retry_max``; within SQS's 12 hours from the receipt."""
        if delay is None:
            delay = retry_delay(
                item.receive_count, self.settings.retry_base, self.settings.retry_max, asked
            )
        seconds = max(0, min(self._visibility_left(item), round(delay)))
        item.settled = True
        self.stats.outcomes[Outcome.RETRY] += 1
        self.metrics.messages_by(item.queue.name, Outcome.RETRY.value).inc()
        # The wait asked for is logged beside the delay, so a shorter one (capped) shows.
        extra = {} if asked is None else {"retry_after": asked}
        log.info("message will be retried", reason=reason, delay=seconds, **extra)
        self.visibility.submit(
            item.queue.url, {"ReceiptHandle": item.receipt, "VisibilityTimeout": seconds}
        )
        return Outcome.RETRY

    @staticmethod
    def _visibility_left(item: InFlight) -> int:
        """Seconds SQS still lets ``item`` be hidden for: 12 hours from its receipt, past which
        it refuses a visibility change (and the message would show again at once)."""
        if item.received_at is None:
            return MAX_VISIBILITY
        elapsed = asyncio.get_running_loop().time() - item.received_at
        return max(0, MAX_VISIBILITY - math.ceil(elapsed))

    async def quarantine(self, item: InFlight, reason: str, *, key: str | None = None) -> Outcome:
        """Store, DLQ (with the reason), then delete; a failure on the way retries instead.

        The store first: its insert is idempotent by message, so the retry after a failed DLQ
        send keeps one row, and while the store fails nothing has been sent yet. (Sent first,
        each receive that the store then failed added another copy to the DLQ.) A message the
        store can never hold (``StoreDataError``) goes on to the DLQ, which keeps the one copy;
        without a DLQ it stays in its queue, retried, as nothing else would keep it. Once the
        DLQ took the copy, the row says so: a delivery again (its delete lost) is deleted then,
        without another copy; a row that does not say so sends it (a copy may repeat, none is
        lost).
        """
        # The reason reaches the DLQ's attributes, the store and the logs: no addresses there.
        reason = redact(reason)[:MAX_REASON]
        message = item.message
        attributes = message.get("MessageAttributes") or {}
        row = QuarantineRow(
            queue=item.queue.url,
            message_id=item.message_id,
            body=message.get("Body", ""),
            message_attributes=storable_attributes(attributes),
            reason=reason,
            receive_count=item.receive_count,
            key=key,
        )
        try:
            # Two deliveries of one message in this worker at once (its visibility lapsed while
            # the first quarantined it) take turns: the second finds the first's note.
            async with self._key_locks.hold(f"quarantine {row.queue} {row.message_id}"):
                # A delivery again after a lost delete: the DLQ has its copy, which SQS took.
                if (copied := await self.store.dlq_copy(row.queue, row.message_id)) is not None:
                    return await self._quarantined_again(item, copied)
                sent = await self._keep_and_send(item, row, attributes)
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):
                self.store_refused(exc)
            elif not is_transient(exc) and not isinstance(exc, StoreDataError):
                log.exception("quarantine failed")  # a bug: the traceback is the report
            return await self.retry(item, f"quarantine failed: {describe_error(exc)}")
        item.settled = True
        self.refused_by_store = 0
        self.stats.outcomes[Outcome.QUARANTINE] += 1
        self.metrics.messages_by(item.queue.name, Outcome.QUARANTINE.value).inc()
        log.warning("message quarantined", reason=reason, dlq=sent)
        # Not awaited: the slot is free once the outcome is decided; the batch goes out within
        # milliseconds and is flushed at shutdown. A lost delete means a redelivery, which
        # idempotency absorbs.
        self.acks.submit(item.queue.url, {"ReceiptHandle": item.receipt})
        return Outcome.QUARANTINE

    async def _quarantined_again(self, item: InFlight, dlq: str) -> Outcome:
        """Delete a message quarantined before whose delete was lost: its row says the DLQ
        ``dlq`` took its copy, so another copy would be a second one there."""
        self.stats.duplicates += 1
        log.info("quarantined message delivered again", dlq=dlq)
        return await self.ack(item, duplicate=True)

    async def _keep_and_send(
        self, item: InFlight, row: QuarantineRow, attributes: dict[str, Any]
    ) -> str | None:
        """The store copy, then the DLQ one; raises when neither will keep the message.
        The URL of the DLQ that took its copy, or None."""
        queue = self.current(item.queue)
        refused: StoreDataError | None = None
        try:
            await self._keep_quarantined(row)
        except StoreDataError as exc:
            if not queue.dlq_url:
                raise
            refused = exc
        if not queue.dlq_url:
            return None
        sent = await self._send_to_dlq(item, queue, row.reason, attributes)
        if sent and refused is None:
            await self._record_dlq_copy(row, sent)
        if refused is not None:
            if not sent:
                raise refused  # neither keeps it: it stays in its queue
            log.warning(
                "the store cannot keep the quarantined message: the DLQ copy is the only one",
                error=describe_error(refused),
            )
        return sent

    async def _record_dlq_copy(self, row: QuarantineRow, dlq: str) -> None:
        """Note on the message's row that ``dlq`` has its copy. A failure only means that a
        delivery again (a delete lost) sends another copy, as before: the message is deleted
        all the same, since the DLQ and the store both keep it."""
        try:
            await self.store.record_dlq_copy(row.queue, row.message_id, dlq)
        except Exception as exc:  # noqa: BLE001 - the copy is in the DLQ: only its note is lost
            log.warning(
                "the store did not note the DLQ copy: a delivery again would send another",
                dlq=dlq,
                error=describe_error(exc),
            )

    async def _keep_quarantined(self, row: QuarantineRow) -> None:
        """Save the quarantine row; without its key when the store cannot hold the key (a
        stream batch's over hundreds of partitions, past PostgreSQL's index entry): the key
        only links the row to a record, which the store refused for the same reason."""
        try:
            await self.store.save_quarantine(row)
        except StoreDataError:
            if row.key is None:
                raise
            await self.store.save_quarantine(dataclasses.replace(row, key=None))

    async def _send_to_dlq(
        self, item: InFlight, queue: QueueInfo, reason: str, attributes: dict[str, Any]
    ) -> str | None:
        """Send the DLQ copy; the DLQ's URL, or None when it refused it (the store copy is then
        the one). A DLQ that does not exist sends the queue's redrive policy to be read again:
        when it names another DLQ now, the copy goes there."""
        # A redrive's mark first: it must survive the cut to ten attributes.
        names = sorted(attributes, key=lambda name: name != REDRIVE_ATTRIBUTE)
        kept = {
            name: sendable_attribute(attributes[name])
            for name in names[: MAX_ATTRIBUTES - OUR_ATTRIBUTES]
        }
        # The reason may quote a server's answer or a function's error: SQS refuses a control
        # character in it, and with it the whole copy.
        kept[REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": sqs_text(reason)}
        kept[SOURCE_ATTRIBUTE] = {"DataType": "String", "StringValue": item.queue.url}
        body = item.message.get("Body", "") or " "
        tried: set[str] = set()
        while (dlq := queue.dlq_url) and dlq not in tried:
            tried.add(dlq)
            try:
                await self.sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=kept)
            except Exception as exc:
                if is_transient(exc):
                    raise
                if not is_missing_queue(exc):
                    # Too large with our attributes, say, or not allowed: the store keeps it
                    # whole. The line names the DLQ, which the refusal may not.
                    log.warning(
                        "the DLQ refused the quarantined message",
                        dlq=queue.dlq_url,
                        error=describe_error(exc),
                        **({"fix": fix} if (fix := aws_fix(exc)) else {}),
                    )
                    return None
                gone = queue.dlq_url
                queue = await self._reread_redrive_policy(queue)
                if queue.dlq_url == gone:
                    # Deleted, and the policy still names it: the store's copy is the one.
                    # Said once, with what to do: every quarantine of this queue meets the same
                    # until it is back. (A policy that changed said so as it was followed.)
                    self.dlq_missing(gone)
                continue
            self.dlq_found(dlq)
            return dlq
        return None

    def dlq_missing(self, url: str) -> None:
        """Warn that the DLQ ``url`` does not exist, unless that was said since it was last
        found (by a quarantine or the depth sampler, whichever first): one line for its
        absence, not one for each message quarantined meanwhile."""
        if url in self.missing_dlqs:
            return
        self.missing_dlqs.add(url)
        log.warning(f"the DLQ {queue_name(url)} does not exist", dlq=url, fix=DLQ_GONE)

    def dlq_found(self, url: str) -> None:
        """Say that the DLQ ``url``, said to be missing, exists again."""
        if url in self.missing_dlqs:
            self.missing_dlqs.discard(url)
            log.info(f"the DLQ {queue_name(url)} exists again", dlq=url)

    # -- the DLQ a queue's redrive policy names -----------------------------------------------

    def current(self, queue: QueueInfo) -> QueueInfo:
        """``queue`` as last described: its DLQ may have changed since a poller took it."""
        for described in self.queues:  # a plain loop: every message asks, and there are few
            if described.url == queue.url:
                return described
        return queue

    async def _reread_redrive_policy(self, queue: QueueInfo) -> QueueInfo:
        """``queue`` after its DLQ was found gone: as its redrive policy has it now. A policy
        that cannot be read leaves it as it was (the store keeps what is quarantined)."""
        async with self._policy_lock:
            if (now := self.current(queue)) is not queue:
                return now  # another quarantine, or the depth sampler, read it meanwhile
            try:
                return await self._follow(queue, await redrive_policy(self.sqs, queue.url))
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning(
                    f"the redrive policy of {queue.name} cannot be read",
                    error=describe_error(exc),
                )
                return queue

    async def follow_redrive_policy(self, queue: QueueInfo, policy: str | None) -> QueueInfo:
        """``queue`` as the redrive policy ``policy`` (just read from SQS) has it."""
        async with self._policy_lock:
            return await self._follow(self.current(queue), policy)

    async def _follow(self, queue: QueueInfo, policy: str | None) -> QueueInfo:
        """``queue`` as ``policy`` has it: its DLQ, then its maxReceiveCount. A change replaces
        its entry in :attr:`queues`, so each quarantine from now on sends to that DLQ, and each
        message's last receive is told by that count."""
        now = await self._follow_dlq(queue, policy)
        now = self._follow_count(now, policy_max_receive_count(policy))
        if now is not queue:
            self.queues[:] = [now if q.url == queue.url else q for q in self.queues]
        return now

    async def _follow_dlq(self, queue: QueueInfo, policy: str | None) -> QueueInfo:
        """``queue`` switched to the DLQ ``policy`` names, when that is another one (or the one
        it named and that did not exist then, now found)."""
        target = policy_target(policy)
        if target == queue.dlq_arn and (queue.dlq_url or not target):
            return queue
        dlq_arn, dlq_url, _count = await dead_letter_target(self.sqs, policy)
        if target == queue.dlq_arn and not dlq_url:
            return queue  # the DLQ it names still does not exist: said already
        if dlq_url:
            log.info(
                f"queue {queue.name} now dead-letters to {queue_name(dlq_url)}",
                queue=queue.name,
                dlq=dlq_url,
            )
        elif dlq_arn:
            log.warning(
                f"queue {queue.name} now dead-letters to {arn_name(dlq_arn)}, which does not exist",
                queue=queue.name,
                fix=DLQ_GONE,
            )
        else:
            log.warning(NO_DLQ, queue=queue.name)
        return dataclasses.replace(queue, dlq_arn=dlq_arn, dlq_url=dlq_url)

    @staticmethod
    def _follow_count(queue: QueueInfo, count: int | None) -> QueueInfo:
        """``queue`` with the maxReceiveCount ``count``, said in one line when it changed
        alone (a policy given or taken away is said by its DLQ's line)."""
        was = queue.max_receive_count
        if count == was:
            return queue
        if count is not None and was is not None:
            log.info(
                f"queue {queue.name} maxReceiveCount now {count} (was {was})",
                queue=queue.name,
                max_receive_count=count,
            )
        return dataclasses.replace(queue, max_receive_count=count)
