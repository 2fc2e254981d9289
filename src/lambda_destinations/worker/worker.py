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
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import structlog

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError, Outcome, StoppedBeforeStart
from lambda_destinations.handlers.registry import HandlerRegistry, replay_outcomes_linked
from lambda_destinations.redact import mask_url
from lambda_destinations.retrying import backoff_delay, is_transient
from lambda_destinations.store import Store
from lambda_destinations.worker.batching import MAX_BATCH, BatchSender
from lambda_destinations.worker.dispatch import Dispatcher, InFlight, Stats, describe_error
from lambda_destinations.worker.protection import TaskProtection
from lambda_destinations.worker.queues import QueueInfo, describe_queue
from lambda_destinations.worker.scheduler import Scheduler

log = structlog.get_logger("lambda_destinations.worker")

ONCE_WAIT_TIME = 1  # seconds of long poll that count as "empty" in --once mode
RECEIVE_GRACE = 10.0  # seconds past the long poll before a receive counts as stuck
FULL_BATCH_PATIENCE = 0.1  # seconds a poller waits for a full batch of slots, then takes fewer
RECONNECT_BASE = 1.0
RECONNECT_MAX = 30.0


class Slots:
    """Free handler slots; pollers reserve before they receive (backpressure).

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


def worker_identity() -> str:
    """host:pid:random, unique per worker, used to own claims on handler runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Drains Lambda destination queues into handler chains."""

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
        self._own_store = store is None
        self.store = store or Store.from_url(settings.store)
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
        )
        self._slots = Slots(settings.concurrency)
        self.protection = TaskProtection(
            settings.ecs_agent_uri if settings.task_protection else None,
            minutes=settings.task_protection_minutes,
        )
        self._stopping = asyncio.Event()
        self._inflight: dict[str, InFlight] = {}
        self._tasks: set[asyncio.Task[Outcome]] = set()
        self._pollers: list[asyncio.Task[None]] = []
        self._share = MAX_BATCH
        self._sqs: Any = None
        self._dispatcher: Dispatcher | None = None
        self._acks: BatchSender | None = None
        self._visibility: BatchSender | None = None
        self.ready = False

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store (migrated) and the queues, waiting out unreachable endpoints."""
        if not self.settings.queues:
            raise ConfigError(
                "no queues to poll: set LAMBDA_DESTINATIONS_QUEUES to queue URLs or names"
            )
        if self.store.in_memory:
            raise ConfigError(
                f"LAMBDA_DESTINATIONS_STORE={self.settings.store} is an in-memory database: "
                "every record acknowledged would be lost when the worker exits; "
                "use sqlite:///path/to/file.db or postgresql://user@host/db"
            )
        if replay_outcomes_linked(self.settings) is False:
            log.warning(
                "a route replays failures, but no route of successes links a replay's outcome: "
                "replays that recover stay unmarked; add replay-outcome to the route of successes"
            )
        await self.aws.__aenter__()
        self._sqs = await self.aws.client("sqs")
        if self._own_store:
            await self._until_reachable("store", self._open_store)
        for configured in self.settings.queues:
            info = await self._until_reachable(
                "SQS", functools.partial(describe_queue, self._sqs, configured)
            )
            if info.fifo:
                raise ConfigError(
                    f"queue {info.name} is FIFO; Lambda destinations are standard queues: "
                    "fix LAMBDA_DESTINATIONS_QUEUES"
                )
            if info.dlq_url is None:
                log.warning(
                    "queue has no dead-letter queue: quarantined messages are kept in the "
                    "store only, and retries never end; add a RedrivePolicy",
                    queue=info.name,
                )
            self.queues.append(info)
        self._acks = BatchSender("delete", self._delete_batch, sleep=self._sleep)
        self._visibility = BatchSender("visibility", self._visibility_batch, sleep=self._sleep)
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
            sleep=self._sleep,
        )
        self.ready = True
        log.info(
            "worker started",
            queues=[q.name for q in self.queues],
            store=mask_url(self.store.url) if hasattr(self.store, "url") else None,
            concurrency=self.settings.concurrency,
            owner=self.owner,
        )

    async def _open_store(self) -> None:
        await self.store.open()
        applied = await self.store.migrate()
        if applied:
            log.info("store migrated", versions=applied)

    async def close(self) -> None:
        self.ready = False
        if self._own_store:
            with contextlib.suppress(Exception):
                await self.store.close()
        await self.aws.__aexit__(None, None, None)

    async def _until_reachable(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Call until it answers; one log line per backoff while the endpoint is away."""
        failures = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                delay = backoff_delay(failures, RECONNECT_BASE, RECONNECT_MAX)
                log.warning(
                    f"cannot reach {what}; retrying in {delay:.1f}s",
                    error=describe_error(exc),
                    endpoint=self.settings.endpoint_url if what == "SQS" else None,
                )
                await self._sleep_unless_stopping(delay)
                if self._stopping.is_set():
                    raise StoppedBeforeStart(
                        f"stopped while waiting for {what}, before the worker started"
                    ) from exc

    # -- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin shutdown: stop receiving; in-flight work gets the grace period."""
        if not self._stopping.is_set():
            log.info("stopping", in_flight=len(self._inflight))
            self._stopping.set()

    async def run(self, *, once: bool = False) -> Stats:
        """Poll until stop() — or with ``once``, until every queue answers empty."""
        if self._dispatcher is None:
            raise RuntimeError("Worker.run() before start(); use `async with Worker(...)`")
        # Enough pollers that each can ask for a full batch of ten within its share.
        per_queue = self.settings.pollers_per_queue or max(
            1, self.settings.concurrency // (MAX_BATCH * len(self.queues))
        )
        # Each poller may hold at most its share of the slots through a long poll, so pollers
        # of idle queues can never sit on all of them.
        self._share = max(
            1, min(MAX_BATCH, self.settings.concurrency // (per_queue * len(self.queues)))
        )
        self._pollers = [
            asyncio.create_task(self._poll(queue, once=once), name=f"poll:{queue.name}:{n}")
            for queue in self.queues
            for n in range(per_queue)
        ]
        heartbeat = asyncio.create_task(self._background(), name="heartbeat")
        scheduler = asyncio.create_task(self.scheduler.run(), name="scheduler")
        stop_wait = asyncio.create_task(self._stopping.wait(), name="stop-wait")
        try:
            if once:
                drained: asyncio.Future[Any] = asyncio.gather(*self._pollers)
                await asyncio.wait(
                    [drained, stop_wait],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not self._stopping.is_set():
                    # Every queue answered empty: let what is in flight finish normally.
                    await self._wait_tasks(None)
            else:
                await stop_wait
        finally:
            await self._shutdown(heartbeat, scheduler)
            stop_wait.cancel()
        return self.stats

    async def _shutdown(self, heartbeat: asyncio.Task[None], scheduler: asyncio.Task[None]) -> None:
        # Phase 1: stop receiving. A receive cancelled mid-flight may have taken messages we
        # never saw: they come back when their visibility timeout ends, nothing is lost.
        # The scheduler takes no more jobs; those in hand finish in phase 2's time.
        self.scheduler.stop()
        for poller in self._pollers:
            poller.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        # Phase 2: in-flight handlers get the grace period, then are cancelled.
        pending = await self._wait_tasks(self.settings.shutdown_grace)
        if pending:
            log.warning("grace period over; cancelling handlers", count=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Phase 3: unsettled messages were released as their tasks ended; flush the batches.
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await self.scheduler.wait_closed(scheduler, self.settings.shutdown_grace)
        assert self._visibility is not None
        assert self._acks is not None
        await self._acks.flush()
        await self._visibility.flush()
        if self.stats.outcomes[Outcome.RELEASE]:
            log.info("released unfinished messages", count=self.stats.outcomes[Outcome.RELEASE])
        log.info("worker stopped", **self.stats.as_dict())

    async def _wait_tasks(self, grace: float | None) -> set[asyncio.Task[Outcome]]:
        if not self._tasks:
            return set()
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        return pending

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def _poll(self, queue: QueueInfo, *, once: bool) -> None:
        """Receive while there is room; one clear line per backoff when SQS is away."""
        failures = 0
        wait_time = (
            min(self.settings.wait_time, ONCE_WAIT_TIME) if once else self.settings.wait_time
        )
        visibility = self.settings.visibility_timeout or queue.visibility_timeout
        request: dict[str, Any] = {
            "QueueUrl": queue.url,
            "WaitTimeSeconds": wait_time,
            "AttributeNames": ["All"],
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self.settings.visibility_timeout:
            request["VisibilityTimeout"] = self.settings.visibility_timeout
        assert self._dispatcher is not None
        while not self._stopping.is_set():
            await self._dispatcher.store_ok.wait()
            # Waiting a moment for a full batch of free slots, not one, keeps receives (and
            # deletes) in batches of ten: fewer calls per message for the same backpressure.
            room = await self._slots.reserve(
                self._share, least=self._share, patience=FULL_BATCH_PATIENCE
            )
            self.stats.sqs_calls["ReceiveMessage"] += 1
            try:
                # A receive that outlives its long poll by far is stuck (a half-open
                # connection, an endpoint that hangs): give up on it rather than hold the
                # reserved slots forever.
                async with asyncio.timeout(wait_time + RECEIVE_GRACE):
                    response = await self._sqs.receive_message(MaxNumberOfMessages=room, **request)
            except asyncio.CancelledError:
                self._slots.release(room)
                raise
            except Exception as exc:  # noqa: BLE001 - a poller never dies; it backs off
                self._slots.release(room)
                failures += 1
                delay = backoff_delay(failures, RECONNECT_BASE, RECONNECT_MAX)
                log.warning(
                    f"cannot receive from {queue.name}; retrying in {delay:.1f}s",
                    error=describe_error(exc),
                    queue=queue.name,
                )
                await self._sleep_unless_stopping(delay)
                continue
            if failures:
                log.info("receiving again", queue=queue.name, after_failures=failures)
                failures = 0
            messages = response.get("Messages", [])
            self._slots.release(room - len(messages))
            now = asyncio.get_running_loop().time()
            for message in messages:
                self._start(queue, message, visibility, now)
            if once and not messages:
                return

    def _start(
        self, queue: QueueInfo, message: dict[str, Any], visibility: int, now: float
    ) -> None:
        assert self._dispatcher is not None
        item = InFlight(
            queue=queue,
            message=message,
            visibility=visibility,
            extend_at=now + visibility * self.settings.heartbeat_fraction,
        )
        self.stats.received += 1
        token = message.get("ReceiptHandle", "")
        self._inflight[token] = item
        self.protection.in_flight(len(self._inflight))
        task = asyncio.create_task(self._dispatcher.process(item))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, token))

    def _finished(self, task: asyncio.Task[Outcome], token: str) -> None:
        self._tasks.discard(task)
        self._slots.release(1)
        item = self._inflight.pop(token, None)
        self.protection.in_flight(len(self._inflight))
        if item is not None and not item.settled:
            # Cancelled at shutdown (or a bug): make it visible again at once, not in minutes.
            assert self._visibility is not None
            item.settled = True
            self.stats.outcomes[Outcome.RELEASE] += 1
            self._visibility.submit(
                item.queue.url, {"ReceiptHandle": item.receipt, "VisibilityTimeout": 0}
            )
        if not task.cancelled() and (exc := task.exception()) is not None:
            # process() settles every message itself; reaching here is a bug worth a trace.
            log.error("message task failed", error=describe_error(exc), exc_info=exc)

    async def _background(self) -> None:
        """The heartbeat, the store watcher and ECS task protection, ended together at shutdown."""
        await asyncio.gather(self._heartbeat(), self._watch_store(), self.protection.run())

    async def _watch_store(self) -> None:
        """While the store is unreachable, ping it with backoff; then let pollers receive."""
        assert self._dispatcher is not None
        dispatcher = self._dispatcher
        while True:
            await dispatcher.store_lost.wait()
            failures = 0
            while True:
                failures += 1
                delay = backoff_delay(failures, RECONNECT_BASE, RECONNECT_MAX)
                log.warning(f"store unavailable; receiving paused, retrying in {delay:.1f}s")
                await self._sleep_unless_stopping(delay)
                try:
                    await self.store.ping()
                except Exception as exc:  # noqa: BLE001 - the watcher must outlive any error
                    if not is_transient(exc):
                        log.error("store ping failed", error=describe_error(exc))
                    continue
                break
            dispatcher.store_lost.clear()
            dispatcher.store_ok.set()
            log.info("store reachable again; receiving", after_failures=failures)

    async def _heartbeat(self) -> None:
        """Extend the visibility of messages whose handlers are still running."""
        shortest = min((q.visibility_timeout for q in self.queues), default=30)
        shortest = min(shortest, self.settings.visibility_timeout or shortest)
        tick = max(0.05, min(1.0, shortest * self.settings.heartbeat_fraction / 2))
        assert self._visibility is not None
        while True:
            await asyncio.sleep(tick)
            now = asyncio.get_running_loop().time()
            for item in list(self._inflight.values()):
                if item.settled or item.extend_at > now:
                    continue
                item.extend_at = now + item.visibility * self.settings.heartbeat_fraction
                self._visibility.submit(
                    item.queue.url,
                    {"ReceiptHandle": item.receipt, "VisibilityTimeout": item.visibility},
                )
                log.debug(
                    "visibility extended", message_id=item.message_id, seconds=item.visibility
                )

    # -- batch calls ------------------------------------------------------------------------

    async def _delete_batch(self, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.stats.sqs_calls["DeleteMessageBatch"] += 1
        response: dict[str, Any] = await self._sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=entries
        )
        return response

    async def _visibility_batch(
        self, queue_url: str, entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        self.stats.sqs_calls["ChangeMessageVisibilityBatch"] += 1
        response: dict[str, Any] = await self._sqs.change_message_visibility_batch(
            QueueUrl=queue_url, Entries=entries
        )
        return response
