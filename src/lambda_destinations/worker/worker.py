"""The worker: one poller per queue, bounded concurrency, heartbeat, two-phase shutdown.

Use as::

    async with Worker(settings) as worker:
        await worker.run()            # until stop() (SIGTERM), or
        await worker.run(once=True)   # until every queue answers empty
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import structlog
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from lambda_destinations._lifetime import Lifetime, until_set
from lambda_destinations._urls import queue_name
from lambda_destinations.aws import AwsClients, CredentialsUnavailable
from lambda_destinations.config import Settings
from lambda_destinations.errors import (
    ConfigError,
    LambdaDestinationsError,
    Outcome,
    StoppedBeforeStart,
    StoreGone,
    StoreMisconfigured,
    StoreUnavailable,
)
from lambda_destinations.handlers.in_doubt import cut_off_first
from lambda_destinations.handlers.registry import (
    HandlerRegistry,
    configured_handlers,
    replay_outcomes_linked,
)
from lambda_destinations.handlers.routing import routes_of_no_queue
from lambda_destinations.handlers.storm import unsendable_digests
from lambda_destinations.redact import mask_url
from lambda_destinations.retrying import (
    DENIED_CODES,
    SETUP_ERRORS,
    aws_fix,
    backoff_delay,
    describe_error,
    error_code,
    first_line,
    is_transient,
    kms_refused,
)
from lambda_destinations.store import Store
from lambda_destinations.worker.batching import MAX_BATCH, BatchSender, SendBatch
from lambda_destinations.worker.dispatch import Dispatcher, InFlight, Stats
from lambda_destinations.worker.metrics import DLQ, POLLED, CountedSqs, Metrics, TimedStore
from lambda_destinations.worker.outage import REMINDER_EVERY, QueueOutage
from lambda_destinations.worker.protection import TaskProtection
from lambda_destinations.worker.queues import (
    DLQ_GONE,
    NO_DLQ,
    QueueInfo,
    arn_name,
    asked_visibility,
    check_configured_queue,
    configured_name,
    describe_queue,
    is_missing_queue,
    named_alike,
    named_alike_problem,
    polled_dlq,
    polled_dlqs,
    same_queue,
    unhidden_warning,
)
from lambda_destinations.worker.scheduler import Scheduler
from lambda_destinations.worker.supervision import Supervisor, TaskFailed
from lambda_destinations.worker.watchdog import LoopWatchdog, handler_codes

log = structlog.get_logger("lambda_destinations.worker")

ONCE_WAIT_TIME = 1  # seconds of long poll that count as "empty" in --once mode
RECEIVE_GRACE = 10.0  # seconds past the long poll before a receive counts as stuck
FULL_BATCH_PATIENCE = 0.1  # seconds a poller waits for a full batch of room, then takes fewer
# Messages received ahead of the free handler slots, as a share of `concurrency`: while every
# slot is busy, the next ones are already here, not one receive round trip away.
RECEIVE_AHEAD = 1.0
RECONNECT_BASE = 1.0
RECONNECT_MAX = 30.0
# A poller's backoff after failed receives ends at this many seconds for each poller of its
# queue, RECONNECT_MAX at most. The queue's first poller to try again sees SQS back and wakes the
# others; a poller alone sleeps its whole backoff past SQS's return: it retries every 10 s at
# most (one receive per 5-10 s is no load), where three of them each keep RECONNECT_MAX.
RECONNECT_MAX_PER_POLLER = 10.0
# Shutdown: every phase after the grace period fits in this margin (see _shutdown).
SHUTDOWN_MARGIN = 2.5
CANCEL_WAIT = 1.0  # of the margin, what cancelled handlers get to end
# Seconds past the end of a long poll cancelled at shutdown before what is released shows again
# (the poll's end at SQS comes a little after ours: the request's way there, its clock).
RELEASE_MARGIN = 1.0
FLUSH_RESERVE = 1.0  # of the margin, what is always left for the last flush
CLOSE_RESERVE = 0.5  # past the margin (3 s in all), what closing the store gets at least
CLOSE_WAIT = 3.0  # closing the store when no shutdown began (a start that failed)
ABORT_RELEASE = 1.0  # a second signal: seconds spent trying to release what is in flight
HANDLER_OVERRUN = 1.0  # seconds past handler_timeout before /healthz reports a handler
# One event loop runs every handler, poller and the heartbeat: code that blocks it (time.sleep,
# blocking I/O) stalls them all and holds shutdown past its deadline. A heartbeat this many
# seconds late is a blocked loop, which the watchdog's thread names while it lasts, and for
# which /healthz answers 503 (naming it too).
LOOP_BLOCKED = 5.0
BACKGROUND = ("heartbeat", "store-watcher", "queue-metrics", "task-protection")
SAMPLE_TIMEOUT = 10.0
# A polled queue's receives answered QueueDoesNotExist: the start of the fix a warning (and a
# job that gives up on the queue) names.
QUEUE_GONE = "the queue was deleted: create it again"
# The system attributes a receive asks for: the receive count (retries, the DLQ's last
# receive, logs) and the sent time (the message age metric); the first receive's time only
# while the worker watches for messages received before it started on a new store.
SYSTEM_ATTRIBUTES = ("ApproximateReceiveCount", "SentTimestamp")
FIRST_RECEIVE = "ApproximateFirstReceiveTimestamp"
DEPTH_ATTRIBUTES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


class Slots:
    """Room for received messages; pollers reserve before they receive (backpressure).

    Reservations are served first come, first served: a poller that has just released its
    slots cannot take them straight back while another poller waits, so a poller on a busy
    queue is never starved by pollers long-polling idle ones.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        # Each waiter: [most, least, future]; least drops to 1 when its patience runs out.
        self._waiters: collections.deque[list[Any]] = collections.deque()

    @property
    def free(self) -> int:
        return self._free

    async def reserve(self, most: int, least: int = 1, *, patience: float | None = None) -> int:
        """Wait for at least ``least`` free slots, in turn; take up to ``most``.

        With ``patience``, wait that long for ``least``, then take any free slot: slots held
        by slow handlers must not keep a poller from using the others.
        """
        least = max(1, min(least, most, self.size))
        if not self._waiters and self._free >= least:
            taken = min(most, self._free)
            self._free -= taken
            return taken
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[int] = loop.create_future()
        waiter = [most, least, granted]
        self._waiters.append(waiter)
        impatient = None
        if patience is not None and least > 1:
            impatient = loop.call_later(patience, self._settle_for_less, waiter)
        try:
            return await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(granted.result())  # granted just as we were cancelled
            else:
                self._waiters = collections.deque(w for w in self._waiters if w is not waiter)
            raise
        finally:
            if impatient is not None:
                impatient.cancel()

    def release(self, count: int = 1) -> None:
        self._free += count
        self._grant()

    def overdraw(self, count: int) -> None:
        """Take ``count`` more than was reserved (a receive brought more than its room): no
        reservation is granted until as many have been released."""
        self._free -= count

    def _settle_for_less(self, waiter: list[Any]) -> None:
        waiter[1] = 1
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._free >= self._waiters[0][1]:
            most, _least, granted = self._waiters.popleft()
            if granted.done():
                continue
            taken = min(most, self._free)
            self._free -= taken
            granted.set_result(taken)


class BytesInFlight:
    """The bytes of the messages being handled, within ``bytes_in_flight``.

    A message starts when its body fits (one always may, alone); an S3 object that a running
    message's notice names waits for room of its own, from before it is read until its message
    ends. One object always may while no other is held: a waiter holds none, so none waits for
    another waiter.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self._objects = 0
        self._waiters: list[asyncio.Future[None]] = []

    def fits(self, size: int, *, alone: bool) -> bool:
        return alone or self.held + size <= self.budget

    async def room_for_object(self, size: int) -> None:
        """Wait until an object of ``size`` bytes fits, then hold it."""
        while self._objects and self.held + size > self.budget:
            freed = asyncio.get_running_loop().create_future()
            self._waiters.append(freed)
            await freed
        self._objects += 1
        self.held += size

    def object_done(self, size: int) -> None:
        """An object's message ended: its room is free, and every waiter looks again."""
        self.held -= size
        self._objects -= 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def worker_identity() -> str:
    """host:pid:random, unique per worker, used to own claims on handler runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StartTimedOut(LambdaDestinationsError):
    """SQS or the store stayed unreachable for ``once_timeout`` while a job was starting."""


class StoreLostTimedOut(StartTimedOut):
    """The store stayed unavailable for ``once_timeout`` while a job ran: it stopped, its
    messages back on their queues (the same exit as at start)."""


class ReceiveTimedOut(StartTimedOut):
    """A job's receives from a queue failed for ``once_timeout`` (SQS away, a permission
    refused): it stopped, what it had received back on its queues (the same exit as at start)."""


class StoreRefusedJob(StoreLostTimedOut):
    """A job's queues answered empty, but the store had refused its last messages (sent back
    to their queues, hidden for their retry delay) and taken none since: not drained. A full
    disk does that while it still has room for the watcher's ping, not for a save."""


class Worker(Lifetime):
    """Drains Lambda destination queues into handler chains."""

    _drained = False  # a --once job's queues answered empty: it takes no more work

    # Queue name -> its receives failing or not, shared by its pollers (one log line per
    # queue, /readyz, a success waking them): made once the queues are described.
    _outages: dict[str, QueueOutage]
    _reconnect_max: float  # a poller's longest backoff: set as the pollers are spawned
    _counted_sqs: CountedSqs  # the SQS client, its calls that fail counted: made at start
    _watchdog: LoopWatchdog | None = None  # while the heartbeat beats: /healthz asks it

    def __init__(
        self,
        settings: Settings,
        *,
        registry: HandlerRegistry | None = None,
        store: Store | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.registry = registry or HandlerRegistry(settings)
        self.router = self.registry.router()  # a bad route fails here, at start
        self.metrics = Metrics()
        self._own_store = store is None
        # Every store call is timed for /metrics (lambda_destinations_store_seconds).
        self.store = cast(Store, TimedStore(store or Store.from_url(settings.store), self.metrics))
        self.aws = AwsClients(settings)
        self.owner = worker_identity()
        self.stats = Stats()
        self.queues: list[QueueInfo] = []
        self._sleep = sleep
        # Due replays and alert digests, kept in the store (see worker/scheduler.py).
        self.scheduler = Scheduler(
            store=self.store,
            aws=self.aws,
            registry=self.registry,
            settings=settings,
            owner=self.owner,
            sleep=sleep,
            metrics=self.metrics,
        )
        self.supervisor = Supervisor(self._task_failed)
        # Room for messages received and not finished: the handler slots and as many again
        # received ahead. Messages wait in _ready, in receive order, for a handler slot.
        self._room = Slots(settings.concurrency + receive_ahead(settings.concurrency))
        self._ready: collections.deque[InFlight] = collections.deque()
        self._running, self._bytes = 0, BytesInFlight(settings.bytes_in_flight)  # tasks, bytes
        self.protection = TaskProtection(
            settings.ecs_agent_uri if settings.task_protection else None,
            minutes=settings.task_protection_minutes,
        )
        self._stopping = asyncio.Event()
        self._gave_up: StartTimedOut | StoreGone | None = None  # what run() then raises
        self._stop_at: float | None = None  # loop time shutdown began
        self._inflight: dict[str, InFlight] = {}
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self._pollers: list[str] = []
        self._receiving: dict[str, float | None] = {}  # poller -> its receive's start, or None
        self._poll_ends: dict[str, float] = {}  # poller -> loop time its last long poll ends
        self._polls_open_until = 0.0  # when the polls cancelled at shutdown end (see _release)
        self._receive_failures: dict[str, int] = {}  # poller -> failures in a row (its backoff)
        self._releases: list[asyncio.Future[bool]] | None = None  # the shutdown's: _release
        self._share = MAX_BATCH
        self._sqs: Any = None
        self._dispatcher: Dispatcher | None = None
        self._acks: BatchSender | None = None
        self._visibility: BatchSender | None = None
        self._waiting_for = "starting"
        self.abandoned = 0  # handler tasks that ignored cancellation past the deadline
        self.ready = False  # started: store open and migrated, queues described
        self._track_gauges()

    def _track_gauges(self) -> None:
        """The gauges /metrics reads from the worker itself at each scrape."""
        self.metrics.track(self.metrics.in_flight, lambda: self.in_flight)
        self.metrics.track(self.metrics.receiving_paused, lambda: self.receiving_paused)

    @property
    def in_flight(self) -> int:
        """Messages received and not settled yet."""
        return len(self._inflight)

    @property
    def receiving_paused(self) -> bool:
        """True while receiving is paused because the store is unavailable: from a store call
        refused until the watcher's ping answers (not before the worker has started)."""
        return self._dispatcher is not None and not self._dispatcher.store_ok.is_set()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a supervised long-lived task: if it dies, the worker stops."""
        return self.supervisor.spawn(name, coro)

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self) -> None:
        """:meth:`start` without a deadline (``async with worker:``)."""
        await self.start()

    def check_settings(self) -> None:
        """Refuse settings no worker can run with (no queues, an in-memory store) before
        anything is opened or bound: ``run`` asks this before it starts its ops server."""
        if not self.settings.queues:
            raise ConfigError(
                f"no queues to poll: set {self.settings.set_in('queues')} to queue URLs or names"
            )
        self.store.refuse_in_memory(
            "every record acknowledged would be lost when the worker exits",
            self.settings.origin("store"),
        )
        queues_in = self.settings.set_in("queues")
        for configured in self.settings.queues:  # what SQS need not be asked about
            check_configured_queue(self.aws.region, configured, queues_in=queues_in)

    async def start(self, *, give_up_after: float | None = None) -> None:
        """Open the store (migrated) and the queues, waiting out unreachable endpoints.

        With ``give_up_after`` (seconds), raise StartTimedOut when SQS or the store stays
        unreachable that long (``run --once``). A start that fails closes whatever it opened.
        """
        self.check_settings()
        if replay_outcomes_linked(self.settings) is False:
            log.warning(
                "a route replays failures, but no route of successes links a replay's outcome: "
                "replays that recover stay unmarked; add replay-outcome to the route of successes"
            )
        for name in configured_handlers(self.settings):
            if line := cut_off_first(name, self.registry.get(name), self.settings.handler_timeout):
                log.warning(line)
        # Each queue's and handler's series at 0 before anything is waited for: a worker that
        # waits at start (SQS or the store away) shows no receive, and the alert on that fires.
        queues = [configured_name(configured) for configured in self.settings.queues]
        self.metrics.zero(queues, self.router.handler_names())
        try:
            await self._open(give_up_after)
        except BaseException:
            await self.close()
            raise
        self.ready = True
        self._warn_routes_of_no_queue()
        log.info(
            "worker started",
            queues=[q.name for q in self.queues],
            store=mask_url(self.store.url) if hasattr(self.store, "url") else None,
            concurrency=self.settings.concurrency,
            owner=self.owner,
            event_loop=loop_name(),
        )

    def _warn_routes_of_no_queue(self) -> None:
        """Warn of each route whose ``queue`` matches none of the polled queues: it never
        runs, and its records go to a later route, with nothing else to say so."""
        polled = [(queue.name, queue.url) for queue in self.queues]
        for route in routes_of_no_queue(self.settings.routes, polled):
            log.warning(
                f"route {route} matches none of the polled queues: it never runs",
                fix=f"fix its queue in {self.settings.set_in('routes')}, or add the queue to "
                f"{self.settings.set_in('queues')}",
            )

    def _refuse_named_alike(self, queues_in: str) -> None:
        """ConfigError for two queues of one name (of two accounts) polled, or two such DLQs:
        their outages, pollers, series and lines would be one queue's (see README)."""
        listed = zip(self.settings.queues, self.queues, strict=True)
        polled = ((configured, q.arn) for configured, q in listed if q.arn)
        for pair in named_alike(polled):
            raise ConfigError(": ".join(named_alike_problem(pair, queues_in)))
        dlqs = ((q.name, q.dlq_arn) for q in self.queues if q.dlq_arn)
        for pair in named_alike(dlqs):
            raise ConfigError(": ".join(named_alike_problem(pair, queues_in, dlqs=True)))

    async def _open_aws(self, give_up: float | None) -> None:
        await self.aws.__aenter__()
        # A credential_process or a web identity's STS that does not answer held the start,
        # SIGTERM notwithstanding, with /readyz saying only "starting"; and a job (give_up)
        # past its once_timeout, for as long as the source stayed silent.
        self._waiting_for = "waiting for AWS credentials"
        try:
            async with asyncio.timeout_at(give_up):
                await self._unless_stopped("AWS credentials", self.aws.check_credentials)
        except TimeoutError:
            source, fix = self.aws.credentials_source()
            raise StartTimedOut(
                f"AWS credentials did not come for {self.settings.once_timeout:g}s from "
                f"{source}: {fix}, and run it again"
            ) from None
        self._sqs = await self.aws.client("sqs")
        # The calls that fail are counted in sqs_errors; a receive and a depth sample count
        # their own (their timeouts too), on the client itself.
        self._counted_sqs = CountedSqs(self._sqs, self.metrics)

    async def _open(self, give_up_after: float | None) -> None:
        loop = asyncio.get_running_loop()
        give_up = None if give_up_after is None else loop.time() + give_up_after
        await self._open_aws(give_up)
        if self._own_store:
            await self._until_reachable("store", self._open_store, give_up)
        seen: dict[str, str] = {}
        queues_in = self.settings.set_in("queues")
        for configured in self.settings.queues:
            describe = functools.partial(
                describe_queue, self._counted_sqs, configured, queues_in=queues_in
            )
            info = await self._until_reachable("SQS", describe, give_up)
            check_queue(info, queues_in, self.settings.visibility_timeout)
            if problem := same_queue(seen, configured, info.arn or info.url):
                raise ConfigError(f"{problem}: list it once in {queues_in}")
            self.queues.append(info)
        for dlq, source in polled_dlqs((q.name, q.arn, q.dlq_arn) for q in self.queues):
            raise ConfigError(": ".join(polled_dlq(dlq, source, queues_in)))
        self._refuse_named_alike(queues_in)
        self._outages = {queue.name: QueueOutage(queue.name) for queue in self.queues}
        self._acks = BatchSender(
            "delete", self._batch_call("DeleteMessageBatch"), sleep=self._sleep
        )
        self._visibility = BatchSender(
            "visibility", self._batch_call("ChangeMessageVisibilityBatch"), sleep=self._sleep
        )
        self._dispatcher = Dispatcher(
            settings=self.settings,
            store=self.store,
            router=self.router,
            aws=self.aws,
            sqs=self._sqs,
            acks=self._acks,
            visibility=self._visibility,
            owner=self.owner,
            stats=self.stats,
            queues=self.queues,
            metrics=self.metrics,
            sleep=self._sleep,
        )
        # The scheduler's store failures pause receiving and unready /readyz as a handler's do.
        self.scheduler.store_down = self._dispatcher.store_down
        self._dispatcher.renewals = self.scheduler.renewals  # a store outage told once
        self._dispatcher.room_to_read = self._bytes.room_for_object
        with contextlib.suppress(StoreUnavailable):  # only warnings hang on these
            if not await self.store.has_handled():
                self._dispatcher.new_store_since = time.time()
            if gone := await unsendable_digests(self.store, self.registry):
                log.warning(
                    "alert digests are due from notifiers this configuration does not have "
                    "(renamed or removed): they will fail, and the alerts their windows held "
                    "back go unsent; put the [handlers.NAME] tables back until they are sent",
                    handlers=gone,
                )

    async def _open_store(self) -> None:
        origin = self.settings.origin("store")
        try:
            await self.store.open()
        except StoreMisconfigured as exc:
            # The first connection: no such database or user, a wrong password. No wait mends
            # that (exit 3); met later, while running, it is waited out as any outage.
            raise ConfigError(str(exc.named(origin))) from None
        except StoreUnavailable as exc:  # waited out; each line says where the URL came from
            raise exc.named(origin) from exc.__cause__
        try:
            applied = await self.store.migrate()
        except StoreUnavailable as exc:  # a read-only standby, a grant not given: waited out
            raise exc.named(origin) from exc.__cause__
        if applied:
            log.info("store migrated", versions=applied)

    async def close(self) -> None:
        self.ready = False
        if self._own_store:
            await self._close_store()
        await self.aws.close()

    async def _close_store(self) -> None:
        """Close the store within the shutdown's deadline (CLOSE_WAIT when none began): a
        database that stopped answering would hold its connections' close, and the process,
        for ever after "worker stopped". Everything is settled by then."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT
        if self._stop_at is not None:
            margin = self.settings.shutdown_grace + SHUTDOWN_MARGIN + CLOSE_RESERVE
            deadline = max(self._stop_at + margin, loop.time() + CLOSE_RESERVE)
        store = mask_url(self.store.url) if hasattr(self.store, "url") else None
        try:
            async with asyncio.timeout_at(deadline):
                await self.store.close()
        except TimeoutError:
            log.warning(
                "the store did not answer as the worker closed it; exiting without waiting "
                "(nothing is lost: every message was settled or released before)",
                store=store,
            )
        except Exception as exc:  # noqa: BLE001 - closing: nothing left to save, only to say
            log.warning("the store could not be closed", store=store, error=describe_error(exc))

    async def _until_reachable(
        self, what: str, call: Callable[[], Awaitable[Any]], give_up: float | None
    ) -> Any:
        """Call until it answers, retrying at least every RECONNECT_MAX_PER_POLLER seconds (one
        caller, like a queue's only poller: it is back within seconds of the endpoint). The
        log says it as a poller's outage does: a warning at the first failure, a reminder at
        most every REMINDER_EVERY seconds, and a line when it answers."""
        failures = 0
        self._waiting_for = f"waiting for {what}"
        loop = asyncio.get_running_loop()
        began = remind_at = loop.time()
        while True:
            try:
                answer = await self._unless_stopped(what, call)
            except Exception as exc:
                # A page in place of AWS's answer at start (not a 5xx): a wrong endpoint, exit 1
                if not is_transient(exc) or isinstance(exc, ResponseParserError):
                    raise
                failures += 1
                # /readyz says why it waits, as the warning does (a full disk, not "unreachable").
                self._waiting_for = f"waiting for {what}: {describe_error(exc)}"
                now = loop.time()
                delay = _until_give_up(
                    backoff_delay(failures, RECONNECT_BASE, RECONNECT_MAX_PER_POLLER), now, give_up
                )
                if delay is None:
                    raise StartTimedOut(_stayed_away(what, self.settings, exc)) from None
                if now >= remind_at:
                    remind_at = now + REMINDER_EVERY
                    said = (
                        f"still cannot reach {what} ({failures} failures in {now - began:.0f}s)"
                        if failures > 1
                        else f"cannot reach {what}"
                    )
                    # The endpoint is SQS's: the store's error names its own server or file.
                    where = {"endpoint": self.settings.shown_endpoint()} if what == "SQS" else {}
                    log.warning(
                        f"{said}; retrying in {delay:.1f}s",
                        error=describe_error(exc),
                        failures=failures,
                        **where,
                    )
                await self._sleep_unless_stopping(delay)
                if self._stopping.is_set():
                    raise StoppedBeforeStart(
                        f"stopped while waiting for {what}, before the worker started"
                    ) from exc
            else:
                if failures:
                    waited = round(loop.time() - began, 1)
                    log.info(f"reached {what}", after_failures=failures, waited_seconds=waited)
                return answer

    async def _unless_stopped(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()``, given up when the worker is stopped meanwhile: a store that stopped
        answering mid-migration (which has no statement timeout) held the start, SIGTERM
        notwithstanding, for as long as it stayed away."""
        attempt = asyncio.ensure_future(call())
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not attempt.done():
                attempt.cancel()
                await asyncio.wait({attempt}, timeout=CANCEL_WAIT)
        if attempt.cancelled() or not attempt.done():
            raise StoppedBeforeStart(
                f"stopped while waiting for {what}, which did not answer, before the worker started"
            )
        return attempt.result()

    def _receive_fix(self, exc: BaseException) -> dict[str, str]:
        """What a failed receive's warning adds: the fix, and the endpoint when SQS gave no
        answer (refused, reset, timed out) rather than an error of its own, which says what."""
        if is_missing_queue(exc):
            return {
                "fix": f"{QUEUE_GONE} (receiving resumes by itself), or take it out of "
                f"{self.settings.set_in('queues')} and restart"
            }
        if isinstance(exc, ClientError):
            fix = aws_fix(exc)  # a refused permission: which one; a throttled receive: why
            if fix and error_code(exc) in DENIED_CODES:
                fix = f"{fix}; receiving resumes by itself once they are"
            elif fix and kms_refused(error_code(exc)):
                fix = f"{fix}; its messages stay unread until then (receiving resumes by itself)"
            return {"fix": fix} if fix else {}
        if isinstance(exc, SETUP_ERRORS):  # the credentials' source failed, not SQS
            unavailable = CredentialsUnavailable.of(exc)
            return {"fix": f"{unavailable.fix}; receiving resumes by itself once it answers"}
        return {
            "endpoint": self.settings.shown_endpoint(),
            "fix": "receiving resumes by itself once SQS answers; if it stays away, "
            + self.settings.endpoint_fix(),
        }

    # -- health ------------------------------------------------------------------------------

    def running_handlers(self) -> list[str]:
        """The handlers running now, each named once (after shutdown: those left behind)."""
        running = self._dispatcher.running.values() if self._dispatcher else ()
        return sorted({handler for handler, _started in running})

    def health(self) -> list[str]:
        """What keeps the worker from being alive (/healthz); empty when all is well.

        Asked from the ops server's thread, while the loop may be blocked: it reads the
        worker's tables through copies, and the clock, not the loop's (one clock: asyncio's
        and uvloop's ``loop.time()`` both read the monotonic clock).
        """
        failures = list(self.supervisor.failures.items())
        problems = [f"task {name} failed: {why}" for name, why in failures]
        if not self.ready or self._stopping.is_set():
            return problems
        watchdog = self._watchdog
        if watchdog is not None and (blocked := watchdog.blocked()):
            problems.append(blocked)
        now = time.monotonic()
        stuck = 2 * self.settings.wait_time + RECEIVE_GRACE
        for name, since in list(self._receiving.items()):
            if since is not None and now - since > stuck:
                problems.append(f"poller {name}: a receive has been under way {now - since:.0f}s")
        assert self._dispatcher is not None
        limit = self.settings.handler_timeout + HANDLER_OVERRUN
        for handler, started in list(self._dispatcher.running.values()):
            if now - started > limit:
                problems.append(
                    f"handler {handler} has run {now - started:.0f}s, past handler_timeout"
                )
        return problems

    def readiness(self) -> list[str]:
        """What keeps the worker from taking work (/readyz); empty when ready."""
        # _drained, _stop_at: a --once job whose queues answered empty ends its last handlers,
        # then shuts down with no stop().
        if self._stopping.is_set() or self._drained or self._stop_at is not None:
            return ["shutting down"]
        if not self.ready:
            return [self._waiting_for]
        problems = []
        assert self._dispatcher is not None
        if self.receiving_paused:
            # The error that paused receiving, or the watcher's last ping's, as its warning
            # says it (redacted): a full disk is not an unreachable server, and its fix differs.
            problems.append(self._dispatcher.store_error or "the store is unavailable")
        # Clear at a queue's first successful receive, whichever poller's: the others, asleep
        # in their backoff, are woken by it (see QueueOutage).
        outages = list(self._outages.items())  # a copy: asked from the ops server's thread
        failing = sorted(name for name, outage in outages if outage.failing)
        if failing:
            # Why, as the warning says it: SQS away and credentials that cannot be got differ
            # in what to do (the first failing queue's error: most often all fail alike).
            error = next((o.error for _n, o in sorted(outages) if o.failing and o.error), None)
            why = "" if error is None else f" ({first_line(error, limit=200)})"
            problems.append(f"SQS: receives failing on {', '.join(failing)}{why}")
        return problems + [f"task {name} failed" for name in list(self.supervisor.failures)]

    def _task_failed(self, name: str, exc: BaseException | None) -> None:
        self.stop()

    # -- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin shutdown: stop receiving; in-flight work gets the grace period."""
        if not self._stopping.is_set():
            log.info("stopping", in_flight=len(self._inflight))
            with contextlib.suppress(RuntimeError):
                self._stop_at = asyncio.get_running_loop().time()
            # From now on a long-lived task that returns ends because of the stop: a poller
            # whose receive came back just now sees the stop and returns before run() wakes to
            # shut down, and was then reported as failed (exit code of a failed task).
            self.supervisor.closing()
            self._releases = []  # the shutdown's releases, counted as SQS confirms them
            self._stopping.set()

    async def run(self, *, once: bool = False) -> Stats:
        """Poll until stop() — or with ``once``, until every queue answers empty.

        Raises TaskFailed, after the same shutdown as stop(), when a supervised task died.
        """
        if self._dispatcher is None:
            raise RuntimeError("Worker.run() before start(); use `async with Worker(...)`")
        self._spawn_tasks(once=once)
        stop_wait = asyncio.create_task(self._stopping.wait(), name="stop-wait")
        try:
            if once:
                pollers = [task for n in self._pollers if (task := self.supervisor.task(n))]
                drained: asyncio.Future[Any] = asyncio.gather(*pollers, return_exceptions=True)
                await asyncio.wait([drained, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                self._drained = drained.done()
                # Every queue answered empty: let what is in flight finish normally (a
                # signal meanwhile shuts down within the grace period).
                while self._tasks and not self._stopping.is_set():
                    waiting: set[asyncio.Future[Any]] = {*self._tasks, stop_wait}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                self._check_drained()
            else:
                await stop_wait
        finally:
            await self._shutdown()
            stop_wait.cancel()
        if self.supervisor.failures:
            raise TaskFailed(self.supervisor.failures)
        if self._gave_up is not None:
            raise self._gave_up
        return self.stats

    def _check_drained(self) -> None:
        """A job whose queues answered empty after the store refused its last messages did not
        drain them: it ends as one that gave up on the store (StoreRefusedJob, exit 4), not as
        done (exit 0)."""
        assert self._dispatcher is not None
        refused = self._dispatcher.refused_by_store
        if not refused or self._stopping.is_set() or self._gave_up is not None:
            return
        error = self._dispatcher.store_error
        self._gave_up = StoreRefusedJob(
            f"the store refused the last {refused} messages of the job, and took none after "
            f"them ({error}); they go back to their queues: fix the store and run it again"
        )
        log.error("store refused the job's last messages; stopping", count=refused, error=error)

    def _spawn_tasks(self, *, once: bool) -> None:
        # Enough pollers that each can ask for a full batch of ten within the handler slots;
        # the room beyond them lets each receive its next batch while the last one runs.
        per_queue = self.settings.resolved_pollers_per_queue()
        # Every poller keeps a long poll open: one that waited for room held its queue unread
        # until another poll ended (up to wait_time), when pollers outnumber the room (more
        # queues than twice the concurrency, or many pollers a queue). What is in flight stays
        # bounded as before: a receive may bring ten whatever room it holds (see _poll).
        if (pollers := per_queue * len(self.queues)) > self._room.size:
            self._room = Slots(pollers)
        # Each poller may hold at most its share of the room through a long poll, so pollers
        # of idle queues can never sit on all of it.
        self._share = max(1, min(MAX_BATCH, self._room.size // pollers))
        self._reconnect_max = min(RECONNECT_MAX, RECONNECT_MAX_PER_POLLER * per_queue)
        for queue in self.queues:
            for n in range(per_queue):
                name = f"poller:{queue.name}:{n}"
                self._pollers.append(name)
                self._receiving[name] = None
                self.supervisor.spawn(name, self._poll(queue, name, once=once), may_return=once)
        self.supervisor.spawn("heartbeat", self._heartbeat())
        # It returns only once it has stopped the worker (a job gave up, the store is gone).
        self.supervisor.spawn("store-watcher", self._watch_store(once=once), may_return=True)
        self.supervisor.spawn("scheduler", self.scheduler.run())
        if self.settings.queue_metrics_interval > 0:
            self.supervisor.spawn("queue-metrics", self._sample_queues())
        if self.protection.enabled:
            self.supervisor.spawn("task-protection", self.protection.run())

    async def _shutdown(self) -> None:
        """Every phase inside one deadline: shutdown_grace + SHUTDOWN_MARGIN from stop()."""
        loop = asyncio.get_running_loop()
        if self._releases is None:  # a --once run's shutdown, with no stop()
            self._releases = []
        if self._stop_at is None:  # a --once run's shutdown: it begins now
            self._stop_at = loop.time()
        grace_end = self._stop_at + self.settings.shutdown_grace
        hard_end = grace_end + SHUTDOWN_MARGIN
        self.supervisor.closing()
        # Phase 1: stop receiving. A receive cancelled mid-flight may have taken messages we
        # never saw: they come back when their visibility timeout ends, nothing is lost. Its
        # long poll goes on at SQS until it ends, so what is released meanwhile stays hidden
        # until then (see _release).
        self.scheduler.stop()
        self._polls_open_until = max(
            (self._poll_ends[name] for name, since in self._receiving.items() if since is not None),
            default=0.0,
        )
        await self.supervisor.cancel(*self._pollers, wait=CANCEL_WAIT)
        for outage in self._outages.values():  # the pollers are gone: close each open outage
            outage.stopped(loop.time())
        self._release_ready()
        # Phase 2: in-flight handlers and the scheduler's jobs share the grace period.
        scheduler = self.supervisor.task("scheduler")
        waiting: set[asyncio.Task[Any]] = set(self._tasks)
        if scheduler is not None:
            waiting.add(scheduler)
        if waiting:
            await asyncio.wait(waiting, timeout=max(0.0, grace_end - loop.time()))
        # Phase 3: cancel what is left; what ignores cancellation is left behind, and every
        # message not settled is released (visible again at once) whatever its task does.
        left = [task for task in waiting if not task.done()]
        if left:
            log.warning("grace period over; cancelling handlers and jobs", count=len(left))
            for task in left:
                task.cancel()
            cancel_end = min(loop.time() + CANCEL_WAIT, hard_end - FLUSH_RESERVE)
            await asyncio.wait(left, timeout=max(0.0, cancel_end - loop.time()))
        self.abandoned = sum(1 for task in left if not task.done())
        self._release_unsettled()
        await self.supervisor.cancel(*BACKGROUND, wait=0.5)
        # Phase 4: the last deletes and visibility changes, until the deadline at most.
        await self._final_flush(hard_end)
        log.info("worker stopped", **self.stats.as_dict())

    async def _final_flush(self, deadline: float) -> None:
        assert self._acks is not None
        assert self._visibility is not None
        acks, visibility = self._acks, self._visibility
        unanswered = sum(await asyncio.gather(acks.flush(deadline), visibility.flush(deadline)))
        releases = self._releases or []
        released = sum(1 for f in releases if f.done() and not f.cancelled() and f.result())
        if released:
            log.info("released unfinished messages; SQS confirmed", count=released)
        if unrelease := len(releases) - released:
            log.warning(
                "releases SQS did not confirm: those messages come back when their "
                "visibility timeout ends",
                count=unrelease,
            )
        if unanswered:
            log.warning(
                "SQS did not answer before the shutdown deadline: unconfirmed deletes and "
                "visibility changes; those messages come back (idempotency absorbs repeats)",
                unanswered=unanswered,
                deletes_confirmed=acks.confirmed,
            )

    def _release_unsettled(self) -> None:
        for item in list(self._inflight.values()):
            if not item.settled:
                self._release(item)

    def _release(self, item: InFlight) -> None:
        """Make an unsettled message visible again at once; counted once SQS confirms it.

        At once, unless a long poll cancelled at shutdown is still open at SQS: cancelling the
        request does not end it there, and a message visible before it ends would be taken
        by it, then hidden for the whole visibility timeout with one more receive counted
        toward the DLQ. Such a message shows again just after the poll ends (at most
        ``wait_time`` + RELEASE_MARGIN seconds)."""
        assert self._visibility is not None
        item.settled = True
        left = self._polls_open_until + RELEASE_MARGIN - asyncio.get_running_loop().time()
        hidden = math.ceil(left) if self._polls_open_until and left > 0 else 0
        future = self._visibility.submit(
            item.queue.url, {"ReceiptHandle": item.receipt, "VisibilityTimeout": hidden}
        )
        # Kept for the shutdown's count only: one made while running (its task failed) is
        # counted in the stats once confirmed, as every release is, and not kept for ever.
        if self._releases is not None:
            self._releases.append(future)
        queue = item.queue.name

        def confirmed(done: asyncio.Future[bool]) -> None:
            if not done.cancelled() and done.result():
                self.stats.outcomes[Outcome.RELEASE] += 1
                self.metrics.messages_by(queue, Outcome.RELEASE.value).inc()

        future.add_done_callback(confirmed)

    async def abort(self, seconds: float = ABORT_RELEASE) -> None:
        """Second signal: try for at most ``seconds`` to release what is in flight."""
        if self._visibility is None:
            return
        self._release_unsettled()
        await self._visibility.flush(asyncio.get_running_loop().time() + seconds)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        await until_set(self._stopping, delay)

    async def _poll(self, queue: QueueInfo, name: str, *, once: bool) -> None:
        """Receive while there is room; when SQS is away, back off (QueueOutage logs it).

        Every receive asks for ten (SQS's most), whatever the room: one call per ten messages
        even at concurrency 1. The room is the handler slots and as many again
        (RECEIVE_AHEAD), so the next messages are received while every slot is busy; what a
        receive brings beyond its room is held too, and the next receives wait until as many
        have finished. A received message waits in _ready, in receive order, for a handler
        slot; it counts as in flight: the heartbeat extends its visibility like a running
        one's, and shutdown makes every message still waiting visible again at once.
        """
        wait_time = (
            min(self.settings.wait_time, ONCE_WAIT_TIME) if once else self.settings.wait_time
        )
        # Asked for by every receive: the heartbeat extends by it, so a queue's visibility
        # timeout shortened while running (read at start) hid a long handler's message too
        # briefly, and it was received again, one more receive toward the DLQ, each time.
        visibility = asked_visibility(self.settings.visibility_timeout, queue)
        assert self._dispatcher is not None
        watching = self._dispatcher.new_store_since is not None
        request = receive_request(queue, wait_time, visibility, first_receive=watching)
        self._receive_failures[name] = 0
        while not self._stopping.is_set():
            await self._dispatcher.store_ok.wait()
            # Waiting a moment for a full batch of room, not one, keeps deletes in batches of
            # ten: fewer calls per message for the same backpressure.
            room = await self._room.reserve(
                self._share, least=self._share, patience=FULL_BATCH_PATIENCE
            )
            if watching and self._dispatcher.new_store_since is None:
                # The new store's warning was given: the first receive's time is read no more.
                watching = False
                request = receive_request(queue, wait_time, visibility)
            sent = asyncio.get_running_loop().time()
            messages = await self._receive(queue, name, request, room, wait_time)
            if messages is None:
                if once and self._receiving_given_up(queue):
                    return
                continue
            if len(messages) > room:
                self._room.overdraw(len(messages) - room)
            else:
                self._room.release(room - len(messages))
            now = asyncio.get_running_loop().time()
            self._ready.extend(
                self._track(queue, message, visibility, now, sent) for message in messages
            )
            self._start_ready()
            if once and not messages:
                return

    def _receiving_given_up(self, queue: QueueInfo) -> bool:
        """A job (``once``) stops once a queue's receives have failed for ``once_timeout``,
        with none succeeding meanwhile: run() raises ReceiveTimedOut. False while less."""
        outage = self._outages[queue.name]
        # Since the receives last began to fail: a flapping endpoint, received from between
        # its failures, is one outage in the log, not one that has lasted since its first.
        since = outage.failing_since
        if since is None or asyncio.get_running_loop().time() - since < self.settings.once_timeout:
            return False
        if self._gave_up is None and (error := outage.error) is not None:
            fix = aws_fix(error) or "check that SQS answers"
            if is_missing_queue(error):  # SQS answered: the queue is not there
                fix = f"{QUEUE_GONE}, or take it out of {self.settings.set_in('queues')}"
            self._gave_up = ReceiveTimedOut(
                f"cannot receive from {queue.name} for {self.settings.once_timeout:g}s while "
                f"the job ran ({describe_error(error)}): {fix}, and run it again (what it "
                "received goes back to its queues)"
            )
        self.stop()
        return True

    def _start_ready(self) -> None:
        """Start waiting messages, in receive order, while handler slots are free.

        None starts while the store is away (the watcher calls this again once it is back) or
        once shutdown has begun (those are released instead: _release_ready).
        """
        assert self._dispatcher is not None
        store_ok = self._dispatcher.store_ok
        while (
            self._ready
            and self._running < self.settings.concurrency
            and self._fits(self._ready[0])
            and store_ok.is_set()
            and not self._stopping.is_set()
        ):
            self._begin(self._ready.popleft())

    def _fits(self, item: InFlight) -> bool:
        """Whether ``item`` may start within ``bytes_in_flight``; one always may.

        A record's objects take up to some 30 times its JSON's bytes once decoded: 32 records
        near SQS's 1 MiB at once (``concurrency`` alone) would take about a gigabyte."""
        return self._bytes.fits(_body_size(item), alone=self._running == 0)

    def _release_ready(self) -> None:
        """Make every message still waiting for a handler slot visible again at once; but for
        one on its last receive, which the queue would dead-letter at its next receive with no
        reason: that one is handled in the grace period, as those already running are (past
        ``concurrency``: they are few), and quarantined should it fail."""
        assert self._dispatcher is not None
        last = self._dispatcher.last_receive
        while self._ready:
            item = self._ready.popleft()
            if last(item) and self._dispatcher.store_ok.is_set():
                self._begin(item)
                continue
            self._inflight.pop(self._token(item), None)
            self._room.release(1)
            self._release(item)
        self.protection.in_flight(len(self._inflight))

    async def _receive(
        self, queue: QueueInfo, name: str, request: dict[str, Any], room: int, wait_time: int
    ) -> list[dict[str, Any]] | None:
        """One receive of up to ten messages; None after a failure and its backoff.

        ``room`` is the slots the poller reserved for it: given back when the receive fails.
        The queue's QueueOutage says the failures, once per queue, and the recovery.
        """
        self.stats.sqs_calls["ReceiveMessage"] += 1
        loop = asyncio.get_running_loop()
        self._receiving[name] = sent = loop.time()
        self._poll_ends[name] = loop.time() + wait_time
        outage = self._outages[queue.name]
        try:
            # A receive that outlives its long poll by far is stuck (a half-open connection,
            # an endpoint that hangs): give up on it rather than hold the reserved slots.
            async with asyncio.timeout(wait_time + RECEIVE_GRACE):
                response = await self._sqs.receive_message(MaxNumberOfMessages=MAX_BATCH, **request)
        except asyncio.CancelledError:
            self._room.release(room)
            raise
        except Exception as exc:  # noqa: BLE001 - a poller never dies; it backs off
            self._room.release(room)
            self.metrics.sqs_errors.labels("ReceiveMessage").inc()  # every failure, logged or not
            self._receive_failures[name] += 1
            delay = backoff_delay(self._receive_failures[name], RECONNECT_BASE, self._reconnect_max)
            outage.error = exc
            outage.failed(loop.time(), delay, error=describe_error(exc), **self._receive_fix(exc))
            response = None
        finally:
            self._receiving[name] = None
        if response is None:
            # After the receive's end: a backoff (up to 30 s, past 2 long polls of 10 s + 10 s)
            # is no receive under way, which /healthz would call stuck.
            await outage.back_off(delay, self._stopping)
            return None
        self._receive_failures[name] = 0
        outage.succeeded(loop.time(), sent=sent)
        messages: list[dict[str, Any]] = response.get("Messages", [])
        self.metrics.receives_by(queue.name, "true" if not messages else "false").inc()
        now = time.time()
        for message in messages:
            self.metrics.observe_received(message, now)
        return messages

    def _track(
        self, queue: QueueInfo, message: dict[str, Any], visibility: int, now: float, sent: float
    ) -> InFlight:
        """Count a received message in flight (the heartbeat extends it from now on); ``sent``
        is when its receive was sent, no later than SQS's receipt."""
        item = InFlight(
            queue=queue,
            message=message,
            visibility=visibility,
            extend_at=now + visibility * self.settings.heartbeat_fraction,
            received_at=sent,
        )
        self.stats.received += 1
        self._inflight[self._token(item)] = item
        self.protection.in_flight(len(self._inflight))
        return item

    def _begin(self, item: InFlight) -> None:
        """Start handling a tracked message in a slot reserved for it."""
        assert self._dispatcher is not None
        token, size = self._token(item), _body_size(item)
        self._running += 1
        self._bytes.held += size
        task = asyncio.create_task(self._dispatcher.process(item))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, token, size))

    @staticmethod
    def _token(item: InFlight) -> str:
        """The key of a message in flight: its receipt handle."""
        return str(item.message.get("ReceiptHandle", ""))

    def _finished(self, task: asyncio.Task[Outcome], token: str, size: int) -> None:
        self._tasks.discard(task)
        self._running -= 1
        self._room.release(1)
        item = self._inflight.pop(token, None)
        self._bytes.held -= size
        if item is not None and item.record_bytes is not None:  # an S3 object's room
            self._bytes.object_done(item.record_bytes)
        self.protection.in_flight(len(self._inflight))
        if item is not None and not item.settled:
            # Cancelled at shutdown (or a bug): make it visible again at once, not in minutes.
            self._release(item)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # process() settles every message itself; reaching here is a bug worth a trace.
            log.error("message task failed", error=describe_error(exc), exc_info=exc)
        self._start_ready()

    async def _watch_store(self, *, once: bool = False) -> None:
        """While the store is unreachable, ping it with backoff; then let pollers receive.

        A store can answer a ping and still refuse writes (a full disk, another process
        holding SQLite's write lock): lost again within RECONNECT_MAX of coming back, it is
        the same outage, and the backoff goes on from where it was, so such an outage costs
        one round of failed messages per pause, the pauses growing to RECONNECT_MAX, not one
        every second. A job (``once``) gives up when an outage lasts ``once_timeout``: it
        stops, and run() raises StoreLostTimedOut.
        """
        assert self._dispatcher is not None
        dispatcher = self._dispatcher
        loop = asyncio.get_running_loop()
        failures, back_at, lost_at = 0, -math.inf, 0.0
        while True:
            await dispatcher.store_lost.wait()
            if loop.time() - back_at > RECONNECT_MAX:
                failures, lost_at = 0, loop.time()  # a new outage, not the last one again
            give_up = lost_at + self.settings.once_timeout if once else None
            answered = await self._reconnect_store(failures, give_up=give_up)
            lasted = round(loop.time() - lost_at, 1)
            if answered is None:
                if self._gave_up is None:  # stopped (a signal): the outage's end, in the log
                    log.warning(
                        "stopping; the store is still unavailable",
                        error=dispatcher.store_error,
                        outage_seconds=lasted,
                    )
                return  # gave up, or stopped: no ping more
            failures, back_at = answered, loop.time()
            dispatcher.store_lost.clear()
            dispatcher.store_ok.set()
            self._start_ready()
            log.info(
                "store reachable again; receiving", after_failures=failures, outage_seconds=lasted
            )

    async def _reconnect_store(self, failures: int, *, give_up: float | None) -> int | None:
        """Ping the store with backoff (``failures`` already counted) until it answers; how
        many pings failed, those included. Each line says the last error: what paused
        receiving, then the ping's own. None once the worker is stopping, or if the next ping
        would come after ``give_up``
        (the worker is then stopping, StoreLostTimedOut noted for run()), or if the ping says
        the store is gone for good (StoreGone, noted the same way: a restart mends it)."""
        assert self._dispatcher is not None
        error = self._dispatcher.store_error
        loop = asyncio.get_running_loop()
        while True:
            failures += 1
            delay = _until_give_up(
                backoff_delay(failures, RECONNECT_BASE, RECONNECT_MAX), loop.time(), give_up
            )
            if delay is None:
                self._gave_up = StoreLostTimedOut(
                    f"the store stayed unavailable for {self.settings.once_timeout:g}s while "
                    f"the job ran ({error}); its messages go back to their queues: fix the "
                    "store and run it again"
                )
                log.error("store unavailable for too long; stopping", error=error)
                self.stop()
                return None
            log.warning(
                f"store unavailable; receiving paused, retrying in {delay:.1f}s", error=error
            )
            await self._sleep_unless_stopping(delay)
            if self._stopping.is_set():
                # Nothing is received any more: a ping would only come again at once, and
                # again, for the whole grace period (no backoff sleeps once stopping).
                return None
            try:
                # A write: a store that answers reads but refuses writes stays paused.
                await self.store.ping(write=True)
            except StoreGone as exc:
                self._gave_up = exc
                log.error("store gone; stopping, to be restarted", error=describe_error(exc))
                self.stop()
                return None
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any store error
                if not is_transient(exc):
                    log.error("store ping failed", error=describe_error(exc))
                self._dispatcher.store_down(exc)  # the latest error, for /readyz and the line
                error = self._dispatcher.store_error
                continue
            return failures

    async def _heartbeat(self) -> None:
        """Extend the visibility of messages whose handlers are still running."""
        setting = self.settings.visibility_timeout
        shortest = min((asked_visibility(setting, q) for q in self.queues), default=30)
        tick = max(0.05, min(1.0, shortest * self.settings.heartbeat_fraction / 2))
        loop = asyncio.get_running_loop()
        assert self._dispatcher is not None
        # Beaten on every tick: a thread of its own names the handler that stops the beats.
        watchdog = LoopWatchdog(handler_codes(self._dispatcher.router.handlers()), LOOP_BLOCKED)
        watchdog.start()
        self._watchdog = watchdog  # /healthz asks it whether the loop is blocked
        overran: set[int] = set()
        try:
            while True:
                watchdog.beat()
                await asyncio.sleep(tick)
                self._extend_due(loop.time())
                self._warn_overruns(loop.time(), overran)
        finally:
            watchdog.stop()  # the heartbeat's end (shutdown) is no blocked loop

    def _warn_overruns(self, now: float, warned: set[int]) -> None:
        """Warn once of each handler run going on past ``handler_timeout``, whose cancellation
        then it did not end at (``warned``: the runs warned of, kept to the running ones)."""
        assert self._dispatcher is not None
        running = self._dispatcher.running
        warned.intersection_update(running)
        limit = self.settings.handler_timeout + HANDLER_OVERRUN
        for run, (handler, started) in list(running.items()):
            if run not in warned and now - started > limit:
                warned.add(run)
                log.warning(
                    f"handler {handler} has run {now - started:.0f}s, past handler_timeout "
                    f"({self.settings.handler_timeout:g}s), though cancelled then: it holds "
                    "its message and a handler slot until it ends; let CancelledError through "
                    "(re-raise it after any clean-up)",
                    handler=handler,
                )

    def _extend_due(self, now: float) -> None:
        assert self._visibility is not None
        for item in list(self._inflight.values()):
            if item.settled or item.extend_at > now:
                continue
            item.extend_at = now + item.visibility * self.settings.heartbeat_fraction
            self._visibility.submit(
                item.queue.url,
                {"ReceiptHandle": item.receipt, "VisibilityTimeout": item.visibility},
                refused=functools.partial(self._not_extended, item),
            )
            log.debug("visibility extended", message_id=item.message_id, seconds=item.visibility)

    def _not_extended(self, item: InFlight, refusal: dict[str, Any]) -> None:
        """SQS refused to extend ``item``'s visibility. A refusal of the request's own (its
        receipt: the message deleted, or received again after its visibility ended; or past
        SQS's 12 hours) is the same at every beat: it is extended no more, and said once (it
        was a warning at every beat, naming no message). SQS's own fault is tried again."""
        if item.settled or not refusal.get("SenderFault", True):
            log.debug(
                "visibility not extended", message_id=item.message_id, code=refusal.get("Code")
            )
            return
        item.extend_at = math.inf
        log.warning(
            "SQS refused to extend the visibility of a message being handled; extended no "
            "more: its handler runs on (it was deleted, or received again after its visibility "
            "timeout ended: a redelivery's handlers wait for this one's claim)",
            message_id=item.message_id,
            code=refusal.get("Code"),
            reason=refusal.get("Message"),
        )

    async def _sample_queues(self) -> None:
        """Queue depths for /metrics: one GetQueueAttributes per queue (and DLQ) per interval.

        A polled queue's call also reads its redrive policy: one that names another DLQ now is
        followed (the dispatcher sends quarantined copies there), and the DLQs sampled follow;
        so is another maxReceiveCount (the receive on which a claim is waited out).
        """
        assert self._dispatcher is not None
        # DLQs found deleted (here or by a quarantine): warned of once, until they are back.
        missing = self._dispatcher.missing_dlqs
        sampled: set[str] = set()  # the DLQs of the last round
        while True:
            for queue in list(self.queues):
                await self._sample_queue(queue.url, queue.name, polled=queue)
            dlqs = {q.dlq_url: queue_name(q.dlq_url) for q in self.queues if q.dlq_url}
            for url in sampled - dlqs.keys():
                self._forget_depth(queue_name(url), DLQ)  # no queue's DLQ any more
                missing.discard(url)
            sampled = set(dlqs)
            for url, name in dlqs.items():
                await self._sample_queue(url, name)
            await asyncio.sleep(self.settings.queue_metrics_interval)

    async def _sample_queue(self, url: str, name: str, *, polled: QueueInfo | None = None) -> None:
        names = [*DEPTH_ATTRIBUTES, "RedrivePolicy"] if polled else list(DEPTH_ATTRIBUTES)
        role = POLLED if polled else DLQ
        try:
            async with asyncio.timeout(SAMPLE_TIMEOUT):
                response = await self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            # SQS being away is no reason to stop sampling; the pollers report it too. The
            # depths last read are not the depths now: they leave the page (a series that
            # is absent, not one that stays at its last value, is what an alert can tell).
            self.metrics.sqs_errors.labels("GetQueueAttributes").inc()
            self._forget_depth(name, role)
            log.debug("queue depth not sampled", queue=name, error=describe_error(exc))
            self._note_missing_dlq(url, exc)
            return
        attributes = response.get("Attributes", {})
        if "ApproximateNumberOfMessages" not in attributes:
            # Not SQS's answer, which has every attribute asked for (a proxy's JSON): no depth,
            # and no redrive policy, which read from it would be one removed.
            self.metrics.sqs_errors.labels("GetQueueAttributes").inc()
            self._forget_depth(name, role)
            log.debug("queue depth not sampled", queue=name, error="no queue depth in the answer")
            return
        assert self._dispatcher is not None
        self._dispatcher.dlq_found(url)
        for attribute, state in DEPTH_ATTRIBUTES.items():
            if attribute in attributes:
                depth = int(attributes[attribute])
                self.metrics.queue_messages.labels(name, role, state).set(depth)
        if polled is not None:
            await self._follow_policy(polled, attributes.get("RedrivePolicy"))

    async def _follow_policy(self, polled: QueueInfo, policy: str | None) -> None:
        """Follow a polled queue's redrive policy when its DLQ or maxReceiveCount changed."""
        assert self._dispatcher is not None
        try:
            async with asyncio.timeout(SAMPLE_TIMEOUT):
                await self._dispatcher.follow_redrive_policy(polled, policy)
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            # Its DLQ's URL not found now: the next sample, or a quarantine, tries again.
            log.debug("redrive policy not followed", queue=polled.name, error=describe_error(exc))

    def _forget_depth(self, name: str, role: str) -> None:
        """Take a queue's depth series in ``role`` (polled, dlq) off the page."""
        for state in DEPTH_ATTRIBUTES.values():
            with contextlib.suppress(KeyError):  # never sampled
                self.metrics.queue_messages.remove(name, role, state)

    def _note_missing_dlq(self, url: str, exc: BaseException) -> None:
        """Warn once when a DLQ was deleted: no poller reads it, so without this line its
        absent depth series (the DLQ alert's input) would be the only sign of it."""
        if not is_missing_queue(exc):
            return
        if not any(q.dlq_url == url for q in self.queues):
            return  # a polled queue: its pollers warn, with the fix
        assert self._dispatcher is not None
        self._dispatcher.dlq_missing(url)

    # -- batch calls ------------------------------------------------------------------------

    def _batch_call(self, operation: str) -> SendBatch:
        """The SQS batch call ``operation`` (``DeleteMessageBatch``...), counted in the stats
        and, when it fails or SQS refuses some of its entries, in the metrics."""
        method = getattr(self._counted_sqs, xform_name(operation))
        refused = self.metrics.sqs_batch_entries_failed.labels(operation)

        async def call(queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.stats.sqs_calls[operation] += 1
            response: dict[str, Any] = await method(QueueUrl=queue_url, Entries=entries)
            refused.inc(len(response.get("Failed", [])))
            return response

        return call


def _body_size(item: InFlight) -> int:
    """The size of a message's body, in characters (its bytes, for JSON in ASCII)."""
    body = item.message.get("Body")
    return len(body) if isinstance(body, str) else 0


def receive_ahead(concurrency: int) -> int:
    """How many messages the pollers may hold beyond the handler slots."""
    return max(1, round(concurrency * RECEIVE_AHEAD))


def check_queue(info: QueueInfo, queues_in: str, visibility_setting: int | None) -> None:
    """Refuse a FIFO queue; warn about a queue without a DLQ, and one hiding nothing it hands
    out that no ``visibility_setting`` covers. ``queues_in``: where the queues were set, for
    the fix."""
    if info.fifo:
        raise ConfigError(
            f"queue {info.name} is FIFO; Lambda destinations are standard queues: fix {queues_in}"
        )
    if info.visibility_timeout == 0 and visibility_setting is None:
        log.warning(unhidden_warning(info), queue=info.name)
    if info.dlq_arn and info.dlq_url is None:
        # "Add a RedrivePolicy" would be wrong advice: it has one, naming a queue not there.
        log.warning(
            f"the DLQ {arn_name(info.dlq_arn)} that the redrive policy of {info.name} names "
            "does not exist",
            queue=info.name,
            fix=DLQ_GONE,
        )
    elif info.dlq_url is None:
        log.warning(NO_DLQ, queue=info.name)


def receive_request(
    queue: QueueInfo, wait_time: int, visibility: int, *, first_receive: bool = False
) -> dict[str, Any]:
    """The ReceiveMessage parameters of a poller, but for MaxNumberOfMessages; with the
    first receive's time when ``first_receive``."""
    return {
        "QueueUrl": queue.url,
        "WaitTimeSeconds": wait_time,
        # Only the system attributes the worker reads: every other one is parsed for nothing.
        "MessageSystemAttributeNames": [
            *SYSTEM_ATTRIBUTES,
            *([FIRST_RECEIVE] if first_receive else []),
        ],
        # A legacy dead-letter message is told by its message attributes: all of them.
        "MessageAttributeNames": ["All"],
        "VisibilityTimeout": visibility,
    }


def _until_give_up(delay: float, now: float, give_up: float | None) -> float | None:
    """The backoff ``delay``, cut short to end at ``give_up`` (loop time; None: never); None
    once that has come. The last try is made at ``give_up``: a job says the store or SQS
    stayed away for once_timeout once it has waited that long, not when the next backoff
    would end past it (as much as half the timeout early)."""
    if give_up is None:
        return delay
    if now >= give_up:
        return None
    return min(delay, give_up - now)


def _stayed_away(what: str, settings: Settings, exc: BaseException) -> str:
    """The line of a job that gave up waiting for SQS or the store at start.

    The store's error ends with its own fix (a PostgreSQL server's address, the disk holding
    a SQLite file): a fix added after it would be a second, and for SQLite a wrong one.
    """
    seconds = settings.once_timeout
    if isinstance(exc, StoreUnavailable):
        return f"{what} stayed unreachable for {seconds:g}s: {exc}"
    fix = (
        settings.endpoint_fix()  # names where the endpoint was set, or dev's folder
        if what == "SQS"
        else "check the store URL and that the database server is up"
    )
    return f"{what} stayed unreachable for {seconds:g}s ({describe_error(exc)}): {fix}"


def loop_name() -> str:
    """The running event loop's kind: ``uvloop`` or ``asyncio`` (the event_loop setting)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
