"""Group commit: how concurrent calls are batched, and how failures reach their callers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from lambda_destinations.errors import StoreUnavailable
from lambda_destinations.store._batch import Coalescer


class Recorder:
    """A run_batch that records its batches, yields to the loop once, and fails on demand."""

    def __init__(self, fail: Exception | None = None, bad: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.bad = bad
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(0)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if self.bad in items:
            raise ValueError(f"bad item {self.bad}")
        return [item * 10 for item in items]


async def test_a_lone_call_runs_alone_and_calls_of_one_turn_run_together() -> None:
    run = Recorder()
    coalescer = Coalescer(run, name="test")

    assert await coalescer.submit(1) == 10
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(2, 12)))

    assert results == [n * 10 for n in range(2, 12)]
    # the ten calls were made in one turn of the loop: they went as one batch
    assert run.batches == [[1], list(range(2, 12))]


async def test_calls_made_while_a_batch_runs_go_as_the_next_batch() -> None:
    run = Recorder()
    coalescer = Coalescer(run, name="test")

    first = asyncio.ensure_future(asyncio.gather(*(coalescer.submit(n) for n in range(3))))
    await asyncio.sleep(0)  # the callers queue their items
    await asyncio.sleep(0)  # the batch starts and is in flight
    later = await asyncio.gather(*(coalescer.submit(n) for n in range(3, 6)))

    assert await first == [0, 10, 20]
    assert later == [30, 40, 50]
    assert run.batches == [[0, 1, 2], [3, 4, 5]]


async def test_batches_are_capped() -> None:
    run = Recorder()
    coalescer = Coalescer(run, name="test", max_batch=4)

    await asyncio.gather(*(coalescer.submit(n) for n in range(10)))

    assert [len(b) for b in run.batches] == [4, 4, 2]


async def test_store_unavailable_reaches_every_caller_as_its_own_exception() -> None:
    coalescer = Coalescer(Recorder(fail=StoreUnavailable("store x is unavailable")), name="t")

    results = await asyncio.gather(*(coalescer.submit(n) for n in range(5)), return_exceptions=True)

    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert {str(r) for r in results} == {"store x is unavailable"}
    assert len({id(r) for r in results[1:]}) == 4


async def test_another_error_fails_only_the_item_that_caused_it() -> None:
    run = Recorder(bad=3)
    coalescer = Coalescer(run, name="test")

    results = await asyncio.gather(*(coalescer.submit(n) for n in range(6)), return_exceptions=True)

    assert [r for n, r in enumerate(results) if n != 3] == [0, 10, 20, 40, 50]
    assert isinstance(results[3], ValueError)
    assert [0, 1, 2, 3, 4, 5] in run.batches  # tried together first, then one by one
    assert [4] in run.batches


async def _caller(coalescer: Coalescer[int, int], item: int) -> int:
    """A caller as the store's are: a task awaiting its submission's future."""
    return await coalescer.submit(item)


async def test_a_cancelled_caller_is_skipped_and_others_are_served() -> None:
    # given: a first call held in flight, and two more queued behind it
    run = Recorder()
    run.gate.clear()
    coalescer = Coalescer(run, name="test")
    first = asyncio.create_task(_caller(coalescer, 1))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(_caller(coalescer, n)) for n in (2, 3)]
    await asyncio.sleep(0)

    # when: the caller of 2 gives up before its batch starts
    queued[0].cancel()
    await asyncio.sleep(0)
    run.gate.set()
    await coalescer.wait_idle()

    assert first.done()
    assert queued[1].done()
    assert await queued[1] == 30
    with pytest.raises(asyncio.CancelledError):
        await queued[0]
    assert run.batches == [[1], [3]]
