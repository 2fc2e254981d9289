"""Retention on both backends: what goes, what stays, in batches, alongside saves."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from store_factories import DeliveryFactory, RowFactory

from lambda_destinations.store import (
    DeliveryRow,
    FailureStatus,
    InvocationFilter,
    PruneKind,
    QuarantineRow,
    Store,
    utcnow,
)
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome
from lambda_destinations.worker.retention import prune_store

NOW = utcnow()
OLD = NOW - dt.timedelta(days=30)
CUTOFF = NOW - dt.timedelta(days=7)
EVERY = (
    PruneKind.SUCCESSES,
    PruneKind.FAILURES,
    PruneKind.OPEN_FAILURES,
    PruneKind.QUARANTINE,
    PruneKind.REPLAYS,
    PruneKind.UNSTORED,
)


async def save(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory, **fields: object
) -> str:
    """A row with a delivery and a completed handler run; its key."""
    row = make_row(**fields)
    assert await store.save_invocation(row, make_delivery(row), complete_handler="persist")
    assert await store.claim_handler(row.key, "sms", "w1", ttl=60)
    await store.complete_handler(row.key, "sms", "w1")
    return row.key


def first_attempt(key: str, when: dt.datetime) -> ReplayAttempt:
    """A first manual replay of the record ``key``, requested at ``when``."""
    return ReplayAttempt(
        original_key=key,
        original_request_id=None,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
        attempt=1,
        trigger="manual",
        requested_by="cli ops@host",
        requested_at=when,
    )


async def keys_in(store: Store) -> set[str]:
    rows = await store.list_invocations(InvocationFilter(failed_only=False))
    return {row.key for row in rows}


async def test_each_kind_goes_after_its_cutoff_with_its_deliveries_and_runs(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: old and recent successes, failures open and resolved
    old_success = await save(
        store,
        make_row,
        make_delivery,
        succeeded=True,
        timestamp=OLD,
        first_seen_at=OLD,
        error_type=None,
    )
    new_success = await save(store, make_row, make_delivery, succeeded=True, timestamp=NOW)
    old_open = await save(store, make_row, make_delivery, timestamp=OLD, first_seen_at=OLD)
    old_ignored = await save(store, make_row, make_delivery, timestamp=OLD, first_seen_at=OLD)
    new_ignored = await save(store, make_row, make_delivery, timestamp=NOW)
    await store.set_status([old_ignored, new_ignored], FailureStatus.IGNORED, by="ops")

    # when: successes and resolved failures older than the cutoff are pruned
    for kind in (PruneKind.SUCCESSES, PruneKind.FAILURES):
        assert await store.count_prunable(kind, CUTOFF) == 1
        assert await store.prune(kind, CUTOFF, limit=100) == 1

    # then: those two went, with their deliveries and handler runs; the rest stayed
    assert await keys_in(store) == {new_success, old_open, new_ignored}
    for gone in (old_success, old_ignored):
        assert await store.deliveries(gone) == []
        assert await store.handler_runs(gone) == []
        assert await store.completed_handlers(gone) == frozenset()
    assert await store.completed_handlers(new_success) == {"persist", "sms"}
    assert len(await store.deliveries(old_open)) == 1
    # open failures go only when their own kind is pruned
    assert await store.prune(PruneKind.OPEN_FAILURES, CUTOFF, limit=100) == 1
    assert await keys_in(store) == {new_success, new_ignored}


async def test_a_failure_being_replayed_is_kept_as_an_open_one(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: an old failure whose replay is under way ("replayed": not resolved yet)
    replaying = await save(store, make_row, make_delivery, timestamp=OLD, first_seen_at=OLD)
    await store.set_status([replaying], FailureStatus.REPLAYED, by="worker")

    # when / then: pruning resolved failures leaves it (it went at once before), open ones not
    assert await store.count_prunable(PruneKind.FAILURES, CUTOFF) == 0
    assert await store.prune(PruneKind.FAILURES, CUTOFF, limit=100) == 0
    assert replaying in await keys_in(store)
    assert await store.prune(PruneKind.OPEN_FAILURES, CUTOFF, limit=100) == 1


async def test_pruning_goes_in_batches_of_the_limit(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    for _ in range(7):
        await save(store, make_row, make_delivery, succeeded=True, timestamp=OLD, first_seen_at=OLD)

    batches = [await store.prune(PruneKind.SUCCESSES, CUTOFF, limit=3) for _ in range(4)]

    assert batches == [3, 3, 1, 0]
    assert await keys_in(store) == set()


async def test_quarantine_and_replay_attempts_go_after_their_cutoff(store: Store) -> None:
    for n, when in enumerate((OLD, NOW)):
        await store.save_quarantine(
            QuarantineRow(
                queue="q",
                message_id=f"m-{n}",
                body="{",
                message_attributes={},
                reason="decode error: not JSON",
                receive_count=1,
                quarantined_at=when,
            )
        )
        await store.add_replay(first_attempt(f"k-{n}", when))

    report = await prune_store(
        store, {PruneKind.QUARANTINE: CUTOFF, PruneKind.REPLAYS: CUTOFF}, batch=10
    )

    assert report.rows == {PruneKind.QUARANTINE: 1, PruneKind.REPLAYS: 1}
    assert [q.message_id for q in await store.list_quarantine()] == ["m-1"]
    assert await store.replays("k-0") == []
    assert len(await store.replays("k-1")) == 1


async def test_the_attempts_of_a_failure_not_resolved_stay_with_it(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: old attempts of a failure replayed (its replay's record not in yet), of one open
    # again, of one recovered, and of a record the store never had (dlq redrive --reinvoke)
    replayed, reopened, recovered = [
        await save(store, make_row, make_delivery, timestamp=NOW, first_seen_at=NOW)
        for _ in range(3)
    ]
    new_request_ids = {}
    for n, key in enumerate((replayed, reopened, recovered, "k-unstored")):
        attempt = first_attempt(key, OLD)
        assert await store.add_replay(attempt)
        assert attempt.id is not None
        new_request_ids[key] = f"new-{n}"
        await store.update_replay(
            attempt.id, new_request_id=f"new-{n}", outcome=ReplayOutcome.INVOKED
        )
    await store.set_status([replayed], FailureStatus.REPLAYED, by="ops")
    await store.set_status([recovered], FailureStatus.RECOVERED, by="worker")

    counted = await prune_store(store, {PruneKind.REPLAYS: CUTOFF}, dry_run=True)
    report = await prune_store(store, {PruneKind.REPLAYS: CUTOFF}, batch=1)

    # then: an unresolved failure keeps its attempts, as it is kept itself: the outcome of its
    # replay is still to be written to them, and its replay's record is still told by them
    assert counted.rows == report.rows == {PruneKind.REPLAYS: 2}
    assert [a.attempt for a in await store.replays(replayed)] == [1]
    assert [a.attempt for a in await store.replays(reopened)] == [1]
    assert await store.replays(recovered) == []
    assert await store.replays("k-unstored") == []
    late = make_row(request_id=new_request_ids[replayed])
    assert await store.save_invocation(late, make_delivery(late))
    saved = await store.get_invocation(late.key)
    assert saved is not None
    assert saved.status is FailureStatus.REPLAY


async def test_a_dry_run_counts_the_attempts_a_pruning_of_open_failures_leaves(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: an old open failure with an old attempt, both past keep_open_failures_days and
    # keep_replays_days
    key = await save(store, make_row, make_delivery, timestamp=OLD, first_seen_at=OLD)
    assert await store.add_replay(first_attempt(key, OLD))
    cutoffs = {PruneKind.OPEN_FAILURES: CUTOFF, PruneKind.REPLAYS: CUTOFF}

    counted = await prune_store(store, cutoffs, dry_run=True)
    report = await prune_store(store, cutoffs)

    # then: the pruning deletes what the dry run counted, in the same order of kinds
    assert counted.rows == report.rows
    assert list(report.rows) == list(cutoffs)
    assert await keys_in(store) == set()


async def test_a_dry_run_counts_and_deletes_nothing(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    kept = {
        await save(store, make_row, make_delivery, timestamp=OLD, first_seen_at=OLD)
        for _ in range(3)
    }

    report = await prune_store(store, dict.fromkeys(EVERY, CUTOFF), dry_run=True)

    assert report.rows[PruneKind.OPEN_FAILURES] == 3
    assert sum(report.rows.values()) == 3
    assert await keys_in(store) == kept


async def test_pruning_while_saves_go_on_loses_no_new_record(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: 300 old successes
    for _ in range(300):
        await save(store, make_row, make_delivery, succeeded=True, timestamp=OLD, first_seen_at=OLD)

    # when: pruned in batches of 20 while 8 lanes save 400 new records
    async def lane() -> list[str]:
        keys = []
        for _ in range(50):
            row = make_row(timestamp=NOW)
            assert await store.save_invocation(row, make_delivery(row))
            keys.append(row.key)
        return keys

    report, *lanes = await asyncio.gather(
        prune_store(store, {PruneKind.SUCCESSES: CUTOFF}, batch=20), *(lane() for _ in range(8))
    )

    # then: every old one went, every new one is there
    assert report.rows[PruneKind.SUCCESSES] == 300
    assert await keys_in(store) == {key for keys in lanes for key in keys}


async def test_a_pruned_sqlite_file_gets_smaller(
    tmp_path: Path, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a file holding 40 records of 4 kB (closed: every page is in the file)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    async with Store.from_url(url) as store:
        await store.migrate()
        for _ in range(40):
            row = make_row(
                succeeded=True, timestamp=OLD, first_seen_at=OLD, record={"pad": "x" * 4000}
            )
            await store.save_invocation(row, make_delivery(row))
    full = (tmp_path / "store.db").stat().st_size

    # when: they are pruned
    async with Store.from_url(url) as store:
        report = await prune_store(store, {PruneKind.SUCCESSES: CUTOFF})

    # then: their pages went back to the file system
    assert report.rows[PruneKind.SUCCESSES] == 40
    assert report.bytes_reclaimed >= 40 * 4000
    assert (tmp_path / "store.db").stat().st_size < full - 40 * 4000


async def test_a_record_arriving_late_is_kept_for_its_retention_from_its_arrival(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a success a month old by its own time that arrived just now (a DLQ redriven late)
    late = await save(store, make_row, make_delivery, succeeded=True, timestamp=OLD)

    # when / then: pruning successes older than a week leaves it
    assert await store.count_prunable(PruneKind.SUCCESSES, CUTOFF) == 0
    assert await store.prune(PruneKind.SUCCESSES, CUTOFF, limit=100) == 0
    assert await keys_in(store) == {late}


async def test_a_record_dated_in_the_future_goes_by_its_arrival(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: records that arrived a month ago dated in the year 2099 and in the year 9999 (a
    # wrong clock), and one dated a day from now that arrived just now
    far = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
    last = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    for when in (far, last):
        await save(store, make_row, make_delivery, timestamp=when, first_seen_at=OLD)
    tomorrow = await save(store, make_row, make_delivery, timestamp=NOW + dt.timedelta(days=1))

    # when / then: pruning open failures older than a week takes the two that arrived long ago
    assert await store.count_prunable(PruneKind.OPEN_FAILURES, CUTOFF) == 2
    assert await store.prune(PruneKind.OPEN_FAILURES, CUTOFF, limit=100) == 2
    assert await keys_in(store) == {tomorrow}


async def test_a_record_whose_handler_is_claimed_keeps_its_row_and_the_claim(
    store: Store, other_store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: an old record whose email handler a delivery is running right now
    row = make_row(succeeded=True, timestamp=OLD, first_seen_at=OLD)
    assert await store.save_invocation(row, make_delivery(row), complete_handler="persist")
    assert await store.claim_handler(row.key, "email", "worker-a", ttl=60)

    # when: retention prunes successes older than a week, even older than a second ago
    assert await store.count_prunable(PruneKind.SUCCESSES, NOW) == 0
    assert await store.prune(PruneKind.SUCCESSES, utcnow(), limit=100) == 0

    # then: the record and the claim stay: another replica cannot take the handler up
    assert await keys_in(store) == {row.key}
    assert await other_store.claim_handler(row.key, "email", "worker-b", ttl=60) is False

    # when: the run completes, the record goes with its runs at the next pruning
    await store.complete_handler(row.key, "email", "worker-a")
    assert await store.prune(PruneKind.SUCCESSES, CUTOFF, limit=100) == 1
    assert await store.handler_runs(row.key) == []


async def test_runs_and_deliveries_of_no_stored_record_go_after_their_cutoff(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a route without persist: handler runs (completed, released after an error, held)
    # and a duplicate's delivery, for records no invocation row holds; and a stored record's
    for key in ("done", "failed", "held"):
        assert await store.claim_handler(key, "sms", "w1", ttl=60)
    await store.complete_handler("done", "sms", "w1")
    await store.release_handler("failed", "sms", "w1", error="SNS refused the number")
    await store.add_delivery(
        DeliveryRow(key="done", message_id="m-dup", queue="q", receive_count=2)
    )
    stored = await save(store, make_row, make_delivery, succeeded=True, timestamp=NOW)

    # when: pruned with a cutoff before them, then one after them
    assert await store.count_prunable(PruneKind.UNSTORED, CUTOFF) == 0
    assert await store.prune(PruneKind.UNSTORED, CUTOFF, limit=100) == 0
    later = utcnow() + dt.timedelta(seconds=1)
    assert await store.count_prunable(PruneKind.UNSTORED, later) == 3

    # then: the completed and the released run go in batches of the limit, then the delivery;
    # the run a delivery holds stays (its claim lapses in a minute), so does the stored record's
    assert [await store.prune(PruneKind.UNSTORED, later, limit=2) for _ in range(3)] == [2, 1, 0]
    assert await store.handler_runs("done") == []
    assert await store.handler_runs("failed") == []
    assert await store.deliveries("done") == []
    assert [run.owner for run in await store.handler_runs("held")] == ["w1"]
    assert await store.completed_handlers(stored) == {"persist", "sms"}
