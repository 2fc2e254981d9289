"""Handler slots: backpressure, first come first served, full batches without starving."""

from __future__ import annotations

import asyncio

from lambda_destinations.worker.worker import Slots


async def test_a_full_batch_is_taken_at_once_when_free() -> None:
    slots = Slots(32)

    assert await slots.reserve(10, least=10, patience=5.0) == 10
    assert slots.free == 22


async def test_a_poller_waits_for_a_full_batch_while_slots_come_back() -> None:
    slots = Slots(10)
    assert await slots.reserve(10) == 10
    slots.release(4)
    waiting = asyncio.ensure_future(slots.reserve(10, least=10, patience=5.0))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # four free: it holds out for ten

    slots.release(6)

    assert await waiting == 10


async def test_slots_held_by_slow_handlers_do_not_stop_the_poller() -> None:
    slots = Slots(10)
    assert await slots.reserve(1) == 1  # one slow handler holds a slot for good
    loop = asyncio.get_running_loop()
    started = loop.time()

    taken = await asyncio.wait_for(slots.reserve(10, least=10, patience=0.05), timeout=2.0)

    assert taken == 9
    assert loop.time() - started >= 0.05
    assert slots.free == 0


async def test_reservations_are_served_in_turn() -> None:
    slots = Slots(10)
    assert await slots.reserve(10) == 10
    first = asyncio.ensure_future(slots.reserve(10, least=5))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(slots.reserve(10, least=1))
    await asyncio.sleep(0)

    slots.release(3)  # enough for the second, not the first: the second waits its turn
    await asyncio.sleep(0)
    assert not first.done()
    assert not second.done()

    slots.release(7)
    assert await first == 10
    slots.release(2)
    assert await second == 2


async def test_a_cancelled_reservation_gives_back_what_it_was_granted() -> None:
    slots = Slots(4)
    assert await slots.reserve(4) == 4
    waiting = asyncio.ensure_future(slots.reserve(4, least=4, patience=5.0))
    await asyncio.sleep(0)

    waiting.cancel()
    slots.release(4)
    await asyncio.gather(waiting, return_exceptions=True)

    assert slots.free == 4
