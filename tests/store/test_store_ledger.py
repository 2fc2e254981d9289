"""The replay ledger, on every backend: attempts, their uniqueness, outcomes and counts."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa
from store_factories import ARN, DeliveryFactory, RowFactory

from lambda_destinations.store import (
    OWN_FAILURE_STATUSES,
    DeliveryRow,
    FailureStatus,
    InvocationFilter,
    InvocationRow,
    Store,
)
from lambda_destinations.store._sql import SqlStore
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome


def attempt(key: str = "req-1:RetriesExhausted", n: int = 1, **fields: object) -> ReplayAttempt:
    values: dict[str, object] = {
        "original_key": key,
        "original_request_id": key.split(":", 1)[0],
        "function_arn": ARN.format(name="orders-api"),
        "attempt": n,
        "trigger": "manual",
        "requested_by": "cli ops@host",
    }
    values.update(fields)
    return ReplayAttempt(**values)  # type: ignore[arg-type]


async def test_an_attempt_is_stored_whole_and_gets_an_id(store: Store) -> None:
    # given
    requested_at = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    first = attempt(requested_at=requested_at, detail="from the CLI")

    # when
    added = await store.add_replay(first)

    # then
    assert added is True
    assert isinstance(first.id, int)
    (stored,) = await store.replays(first.original_key)
    assert stored == first
    assert stored.outcome is ReplayOutcome.PENDING
    assert stored.requested_at == requested_at
    assert stored.outcome_at is None


async def test_the_same_attempt_number_twice_writes_nothing(store: Store) -> None:
    first = attempt(n=1, requested_by="worker a")
    again = attempt(n=1, requested_by="worker b")

    assert await store.add_replay(first) is True
    assert await store.add_replay(again) is False

    assert again.id is None
    stored = await store.replays(first.original_key)
    assert [(r.attempt, r.requested_by) for r in stored] == [(1, "worker a")]


async def test_concurrent_replicas_claim_one_attempt_number_once(
    store: Store, other_store: Store
) -> None:
    # given: six writers on two connections racing for attempt 1 of one record
    racers = [attempt(n=1, requested_by=f"worker {i}") for i in range(6)]

    # when
    results = await asyncio.gather(
        *((store if i % 2 else other_store).add_replay(racer) for i, racer in enumerate(racers))
    )

    # then: exactly one won, and it is the one stored
    assert sorted(results) == [False] * 5 + [True]
    winner = racers[results.index(True)]
    (stored,) = await store.replays(winner.original_key)
    assert stored.requested_by == winner.requested_by


async def test_attempts_are_listed_oldest_first_per_key(store: Store) -> None:
    for n in (2, 1, 3):
        await store.add_replay(attempt("a:RetriesExhausted", n))
    await store.add_replay(attempt("b:RetriesExhausted", 1))

    listed = await store.replays("a:RetriesExhausted")

    assert [r.attempt for r in listed] == [1, 2, 3]
    assert {r.original_key for r in listed} == {"a:RetriesExhausted"}
    assert await store.replays("nothing:here") == []


async def test_attempt_numbers_start_at_one(store: Store) -> None:
    with pytest.raises(ValueError, match="count from 1"):
        await store.add_replay(attempt(n=0))


async def test_update_sets_request_id_outcome_and_its_time(store: Store) -> None:
    # given
    first = attempt()
    await store.add_replay(first)
    assert first.id is not None
    before = dt.datetime.now(dt.UTC)

    # when: Lambda accepted the new invocation
    await store.update_replay(first.id, new_request_id="new-1", outcome=ReplayOutcome.INVOKED)

    # then
    (stored,) = await store.replays(first.original_key)
    assert stored.new_request_id == "new-1"
    assert stored.outcome is ReplayOutcome.INVOKED
    assert stored.outcome_at is not None
    assert stored.outcome_at >= before - dt.timedelta(seconds=1)
    assert stored.detail is None

    # when: later its own record says it recovered; omitted fields stay as they were
    await store.update_replay(first.id, outcome=ReplayOutcome.RECOVERED, detail="Success")

    (stored,) = await store.replays(first.original_key)
    assert stored.outcome is ReplayOutcome.RECOVERED
    assert stored.new_request_id == "new-1"
    assert stored.detail == "Success"


async def test_detail_alone_keeps_the_outcome_and_its_time(store: Store) -> None:
    first = attempt()
    await store.add_replay(first)
    assert first.id is not None

    await store.update_replay(first.id, detail="a note")

    (stored,) = await store.replays(first.original_key)
    assert stored.detail == "a note"
    assert stored.outcome is ReplayOutcome.PENDING
    assert stored.outcome_at is None


async def test_an_attempts_text_with_a_nul_is_kept_as_text_can_hold_it(store: Store) -> None:
    # A record's request id and an Invoke's error (which may quote an answer) come from
    # outside; PostgreSQL's text holds no NUL: kept with U+FFFD, as the invocations' text.
    first = attempt("k:RetriesExhausted", original_request_id="r\x00", detail="not replayed: \x00")
    second = attempt(requested_by="worker a\x00b")
    assert await store.add_replay(first)
    assert await store.add_replay(second)
    assert second.id is not None

    await store.update_replay(second.id, new_request_id="n\x00", detail="Invoke: a\x00b")

    (one,) = await store.replays(first.original_key)
    (two,) = await store.replays(second.original_key)
    assert (one.original_request_id, one.detail) == ("r\ufffd", "not replayed: \ufffd")
    assert (two.requested_by, two.new_request_id) == ("worker a\ufffdb", "n\ufffd")
    assert two.detail == "Invoke: a\ufffdb"


async def test_updating_an_unknown_attempt_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError, match="no replay attempt with id 999"):
        await store.update_replay(999, outcome=ReplayOutcome.ERROR)
    with pytest.raises(KeyError, match="no replay attempt with id 999"):
        await store.update_replay(999)


async def test_an_attempt_is_found_by_the_new_request_id(store: Store) -> None:
    first, second = attempt(n=1), attempt(n=2)
    for a in (first, second):
        await store.add_replay(a)
    assert first.id is not None
    assert second.id is not None
    await store.update_replay(first.id, new_request_id="lambda-rid-1")
    await store.update_replay(second.id, new_request_id="lambda-rid-2")

    found = await store.replay_for_request("lambda-rid-2")

    assert found is not None
    assert (found.id, found.attempt, found.original_key) == (second.id, 2, second.original_key)
    assert await store.replay_for_request("unknown") is None


async def test_counts_cover_every_key_asked_for(store: Store) -> None:
    for n in (1, 2, 3):
        await store.add_replay(attempt("a:RetriesExhausted", n))
    await store.add_replay(attempt("b:RetriesExhausted", 1))

    counts = await store.replay_counts(["a:RetriesExhausted", "b:RetriesExhausted", "c:none"])

    assert counts == {"a:RetriesExhausted": 3, "b:RetriesExhausted": 1, "c:none": 0}
    assert await store.replay_counts([]) == {}


async def test_counts_of_one_outcome_leave_the_other_attempts_out(store: Store) -> None:
    # given: a key replayed twice (failed, then recovered), one replayed once (failed)
    first, second, other = attempt("a:x", 1), attempt("a:x", 2), attempt("b:x", 1)
    for a, outcome in ((first, "failed"), (second, "recovered"), (other, "failed")):
        await store.add_replay(a)
        assert a.id is not None
        await store.update_replay(a.id, outcome=ReplayOutcome(outcome))

    counts = await store.replay_counts(["a:x", "b:x", "c:x"], outcome=ReplayOutcome.RECOVERED)

    assert counts == {"a:x": 1, "b:x": 0, "c:x": 0}


async def test_counts_of_many_keys_are_queried_in_chunks(store: Store) -> None:
    keys = [f"k-{i}:RetriesExhausted" for i in range(1203)]
    for key in keys[::100]:
        await store.add_replay(attempt(key, 1))

    counts = await store.replay_counts(keys)

    assert len(counts) == len(keys)
    assert sum(counts.values()) == len(keys[::100])
    assert all(counts[key] == 1 for key in keys[::100])


async def test_replay_and_status_together_as_the_replay_command_uses_them(
    store: Store, make_row: RowFactory, make_delivery
) -> None:
    # given: a stored failure
    row = make_row()
    await store.save_invocation(row, make_delivery(row))

    # when: it is replayed and marked so
    await store.add_replay(attempt(row.key, 1, original_request_id=row.request_id))
    await store.set_status([row.key], FailureStatus.REPLAYED, by="cli ops@host")

    # then
    (listed,) = await store.list_invocations(InvocationFilter(statuses=[FailureStatus.REPLAYED]))
    assert listed.key == row.key
    assert listed.status_by == "cli ops@host"
    assert (await store.replay_counts([row.key]))[row.key] == 1


async def _replayed(store: Store, row: InvocationRow, new_request_id: str) -> ReplayAttempt:
    """``row`` saved and replayed once: Lambda gave the new invocation ``new_request_id``."""
    await store.save_invocation(row, DeliveryRow(row.key, "m-original", row.queue, 1))
    first = attempt(row.key)
    await store.add_replay(first)
    assert first.id is not None
    await store.update_replay(
        first.id, new_request_id=new_request_id, outcome=ReplayOutcome.INVOKED
    )
    return first


async def _statuses(store: Store, *rows: InvocationRow) -> list[FailureStatus | None]:
    found = [await store.get_invocation(row.key) for row in rows]
    return [row.status if row else None for row in found]


async def test_a_replays_failure_record_is_no_open_failure_of_its_own(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a failure, replayed; then the replay's own failure record and another failure
    original = make_row()
    await _replayed(store, original, "new-1")
    replay = make_row(key="new-1:RetriesExhausted", request_id="new-1")
    other = make_row()

    # when: both are saved as the worker saves them, in one batch
    await asyncio.gather(
        store.save_invocation(replay, make_delivery(replay)),
        store.save_invocation(other, make_delivery(other)),
    )

    # then: the replay's record is kept, as a replay; one open failure besides the original
    assert await _statuses(store, original, replay, other) == [
        FailureStatus.OPEN,
        FailureStatus.REPLAY,
        FailureStatus.OPEN,
    ]
    open_ = await store.list_invocations(InvocationFilter(statuses=[FailureStatus.OPEN]))
    assert {r.key for r in open_} == {original.key, other.key}
    counted = await store.failure_counts(InvocationFilter(statuses=list(OWN_FAILURE_STATUSES)))
    assert sum(c.count for c in counted) == 2


async def test_a_replays_record_saved_before_the_ledger_has_its_request_id_is_marked_then(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: the replay's failure record (and its success, which has no status) stored before
    # the replay recorded the new request id (a fast function, a slow replayer)
    original = make_row()
    replay = make_row(key="new-2:RetriesExhausted", request_id="new-2")
    await store.save_invocation(replay, make_delivery(replay))
    assert await _statuses(store, replay) == [FailureStatus.OPEN]

    # when
    await _replayed(store, original, "new-2")

    # then
    assert await _statuses(store, original, replay) == [FailureStatus.OPEN, FailureStatus.REPLAY]


async def test_an_ignored_record_is_left_as_it_is_when_the_ledger_learns_its_request_id(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    original, replay = make_row(), make_row(key="new-3:RetriesExhausted", request_id="new-3")
    await store.save_invocation(replay, make_delivery(replay))
    await store.set_status([replay.key], FailureStatus.IGNORED, by="cli ops@host")

    await _replayed(store, original, "new-3")

    assert await _statuses(store, replay) == [FailureStatus.IGNORED]


async def test_the_table_has_the_unique_attempt_and_request_id_index(store: Store) -> None:
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:

        def inspect(sync: sa.Connection) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
            inspector = sa.inspect(sync)
            unique = [tuple(u["column_names"]) for u in inspector.get_unique_constraints("replays")]
            indexes = [tuple(i["column_names"]) for i in inspector.get_indexes("replays")]
            return unique, indexes

        unique, indexes = await conn.run_sync(inspect)
    assert ("original_key", "attempt") in unique
    assert ("new_request_id",) in indexes
