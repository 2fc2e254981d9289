"""Group commit: concurrent calls of one store operation run together, one batch at a time.

The worker makes the same two store calls for every message, from many coroutines at once. Each
call on its own costs a transaction (and on SQLite a hand-off to the store's thread, about as
dear as the SQL). A :class:`Coalescer` starts a batch on the event loop's
next turn after the first call, with every call made by then; while that batch is in flight it
queues the calls that arrive, and when it finishes, the queue goes as the next batch. There is no
timer: a lone call waits one turn of the loop, and under load the batches grow by themselves to
about the number of callers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from lambda_destinations.errors import StoreUnavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(slots=True)
class _Call(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class Coalescer(Generic[T, R]):
    """Submit items one by one; ``run_batch`` receives them in lists and returns one result each.

    A batch that raises StoreUnavailable fails each of its callers with a copy of it (they would
    all fail alone too). Any other exception may come from one bad item, so the items of that
    batch are then run one by one and only the culprit's caller sees it.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        max_batch: int = 100,
    ) -> None:
        self._run_batch = run_batch
        self._name = name
        self._max_batch = max_batch
        self._queue: list[_Call[T, R]] = []
        self._task: asyncio.Task[None] | None = None
        # Set while no batch runs, in a caller's task or in _task.
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, item: T) -> asyncio.Future[R]:
        """Run ``item`` in the next batch: the future of its result (or of its exception).

        A plain function, not a coroutine: the caller awaits the future itself, one coroutine
        fewer a call (one a message)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(item, future))
        if self._idle.is_set():
            # The batch starts in a task of its own, on the loop's next turn: the calls made
            # meanwhile (the other messages of one receive, typically) go with it, rather
            # than this one going alone and theirs as a second batch.
            self._idle.clear()
            self._task = asyncio.create_task(self._drain(), name=self._name)
        # A caller cancelled while it awaits the future cancels it too: its item, queued, is
        # skipped, or, in flight, runs anyway, which the idempotent store operations allow.
        return future

    async def wait_idle(self) -> None:
        """Return when nothing is queued or running (for close)."""
        await self._idle.wait()

    async def _drain(self) -> None:
        batch: list[_Call[T, R]] = []
        try:
            while True:
                if not self._queue:
                    # The callers just answered usually call again at once (the next message):
                    # let them run first, so that their calls join the next batch rather than
                    # each starting a batch of one.
                    await asyncio.sleep(0)
                    if not self._queue:
                        break
                batch = [c for c in self._queue[: self._max_batch] if not c.future.done()]
                del self._queue[: self._max_batch]
                if batch:
                    await self._run(batch)
                batch = []
        except BaseException as exc:
            # Cancelled (the loop is closing) or a bug here: nobody may wait forever, and the
            # callers are told, so a bug is not lost with this task. Cancellation goes on.
            for call in (*batch, *self._queue):
                _fail(call, StoreUnavailable(f"{self._name} stopped before this ran: {exc!r}"))
            self._queue.clear()
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._task = None
            self._idle.set()

    async def _run(self, batch: list[_Call[T, R]]) -> None:
        try:
            results = await self._run_batch([c.item for c in batch])
        except StoreUnavailable as exc:
            for call in batch:
                # One exception object per caller: a shared one would collect every caller's
                # traceback frames.
                copy = StoreUnavailable(*exc.args)
                copy.__cause__ = exc.__cause__
                _fail(call, copy)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, never swallowed
            if len(batch) == 1:
                _fail(batch[0], exc)
            else:
                for call in batch:
                    await self._run([call])
        else:
            for call, result in zip(batch, results, strict=True):
                if not call.future.done():
                    call.future.set_result(result)


def _fail(call: _Call[T, R], exc: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(exc)
