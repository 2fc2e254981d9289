"""The behaviour every store backend shares: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import fnmatch
import json
import random
from typing import Any

import pytest
import sqlalchemy as sa
from store_factories import ARN, QUEUE, T0, DeliveryFactory, RowFactory
from structlog.testing import capture_logs

from lambda_destinations.errors import NewerSchema, StoreDataError, StoreUnavailable
from lambda_destinations.operations.status import reopen, set_by
from lambda_destinations.store import (
    DeliveryRow,
    FailureStatus,
    InvocationFilter,
    InvocationRow,
    QuarantineRow,
    RunState,
    Store,
    _sql,
    utcnow,
)
from lambda_destinations.store._sql import SqlStore
from lambda_destinations.store._tables import deliveries, handler_runs, invocations, metadata
from lambda_destinations.store._types import JSON_TEXT_KEY
from lambda_destinations.store.base import ReplayAttempt
from lambda_destinations.store.migrations import LATEST_VERSION, MIGRATIONS, Migration
from lambda_destinations.store.sqlite import SQLiteStore

ALL = InvocationFilter(failed_only=False)


# -- migrations -------------------------------------------------------------------------------


async def test_migrate_applies_pending_versions_once(unmigrated_store: Store) -> None:
    every_version = [m.version for m in MIGRATIONS]

    assert await unmigrated_store.pending_migrations() == every_version
    assert await unmigrated_store.migrate() == every_version
    assert await unmigrated_store.pending_migrations() == []
    assert await unmigrated_store.migrate() == []


async def test_replicas_starting_together_migrate_once(store_url: str) -> None:
    stores = [Store.from_url(store_url) for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        results = await asyncio.gather(*(store.migrate() for store in stores))
        pending = await stores[0].pending_migrations()
    finally:
        for store in stores:
            await store.close()

    # Each version runs in its own locked transaction, so replicas may share the work (one
    # applies 1, another 2 and 3) but no version is ever applied twice or skipped.
    applied = sorted(version for result in results for version in result)
    assert applied == [m.version for m in MIGRATIONS]
    assert pending == []


async def test_a_failed_migration_leaves_nothing_behind(
    unmigrated_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a next version that creates a table, then fails
    next_version = len(MIGRATIONS) + 1

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (id INTEGER)"))
        raise RuntimeError("the last migration failed")

    monkeypatch.setattr(
        _sql,
        "MIGRATIONS",
        (*MIGRATIONS, Migration(next_version, "broken", broken, oldest_writer=next_version)),
    )

    # when
    with pytest.raises(RuntimeError, match="the last migration failed"):
        await unmigrated_store.migrate()

    # then: the earlier versions stay applied; the broken one is pending, its table rolled back
    assert await unmigrated_store.pending_migrations() == [next_version]
    assert isinstance(unmigrated_store, SqlStore)
    async with unmigrated_store.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert "half_done" not in tables
    assert "invocations" in tables


async def _oldest_writers(store: Store) -> dict[int, int | None]:
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT version, oldest_writer FROM schema_migrations"))
    return {version: oldest for version, oldest in rows}


async def test_each_applied_version_records_its_oldest_writer(store: Store) -> None:
    assert await _oldest_writers(store) == {m.version: m.oldest_writer for m in MIGRATIONS}


async def test_version_15_records_the_oldest_writers_of_the_versions_before_it(
    unmigrated_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a store at version 14, its schema_migrations as version 14 made it
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:14])
    assert await unmigrated_store.migrate() == list(range(1, 15))

    # when
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:15])
    assert await unmigrated_store.migrate() == [15]

    # then: every version says what its Migration declares
    assert await _oldest_writers(unmigrated_store) == {
        m.version: m.oldest_writer for m in MIGRATIONS[:15]
    }


def _newer_release(*oldest_writers: int) -> tuple[Migration, ...]:
    """The migrations of a newer release: this release's, then versions with these oldest
    writers (they change nothing else)."""
    newer = (
        Migration(LATEST_VERSION + n, f"newer {n}", lambda conn: None, oldest_writer=oldest)
        for n, oldest in enumerate(oldest_writers, 1)
    )
    return (*MIGRATIONS, *newer)


async def test_a_store_whose_newer_versions_let_this_release_write_is_used(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a newer release migrated the store with two additive versions
    additive = MIGRATIONS[-1].oldest_writer
    monkeypatch.setattr(_sql, "MIGRATIONS", _newer_release(additive, additive))
    assert await store.migrate() == [LATEST_VERSION + 1, LATEST_VERSION + 2]

    # when: this release starts on it (migrating, then looking again)
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS)
    with capture_logs() as logs:
        assert await store.migrate() == []
        assert await store.pending_migrations() == []

    # then: it goes on, and says once that the schema is newer
    said = [e for e in logs if "newer" in e["event"]]
    assert [(e["log_level"], e["schema"], e["release_schema"]) for e in said] == [
        ("warning", LATEST_VERSION + 2, LATEST_VERSION)
    ]


async def test_a_store_with_a_newer_version_that_refuses_this_release_is_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a newer release applied an additive version, then one earlier releases misread
    additive, breaking = MIGRATIONS[-1].oldest_writer, LATEST_VERSION + 2
    monkeypatch.setattr(_sql, "MIGRATIONS", _newer_release(additive, breaking))
    assert await store.migrate() == [LATEST_VERSION + 1, breaking]

    # when / then: this release refuses it, naming the version that refuses it
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS)
    refused = f"schema {breaking} lets no release before {breaking} write"
    for call in (store.migrate, store.pending_migrations):
        with pytest.raises(NewerSchema, match=refused):
            await call()


async def test_an_unmigrated_store_says_to_migrate(unmigrated_store: Store) -> None:
    with pytest.raises(StoreUnavailable, match="run `lambda-destinations migrate`") as info:
        await unmigrated_store.completed_handlers("any")
    assert "\n" not in str(info.value)


def _schema(sync: sa.Connection) -> dict[str, Any]:
    """Tables as the database has them: columns, keys, indexes (not types: reflection differs)."""
    inspector = sa.inspect(sync)
    schema = {}
    for table in inspector.get_table_names():
        schema[table] = {
            "columns": {c["name"]: c["nullable"] for c in inspector.get_columns(table)},
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(tuple(i["column_names"]) for i in inspector.get_indexes(table)),
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
        }
    return schema


async def test_migrated_schema_matches_the_tables_the_queries_use(store: Store) -> None:
    # given: a database built by the migrations, and one built from _tables.metadata
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        migrated = await conn.run_sync(_schema)
    async with Store.from_url(store.url) as fresh:
        assert isinstance(fresh, SqlStore)
        async with fresh.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
        async with fresh.engine.connect() as conn:
            declared = await conn.run_sync(_schema)

    # then: the same tables, columns, nullability, keys and indexes
    assert migrated == declared
    assert set(migrated) == {t.name for t in metadata.sorted_tables}


# -- saving and reading invocations -----------------------------------------------------------

JSON_VALUES = [
    {"orderId": 7, "items": [{"sku": "a", "qty": 2}], "gift": None},
    [1, "two", 3.5, None, True, {"nested": []}],
    'a plain string with ünïcode ✓ and "quotes"',
    42,
    -1.25,
    True,
    False,
    None,
    {},
    [],
    {"deep": {"deeper": {"deepest": [[[{"x": 10**15}]]]}}},
    # numbers SQLite's NUMERIC affinity turned into others: past 64 bits (a double), an
    # integral float (an integer)
    10**20 + 1,
    12345678901234567890,
    1.0,
    # floats jsonb's numeric gave back as others: from 1e16 on, an integer of as many digits;
    # a negative zero, zero
    1e16,
    {"amount": 1.5e300, "rate": -0.0, "small": 2.5e-7},
    [-0.0, -2e20, 1.7976931348623157e308],
    {"past_64_bits": 2**70, "float": 1e20},
    # the key the store wraps a value jsonb cannot hold under, in a payload of its own
    {JSON_TEXT_KEY: "[1,2]"},
    {JSON_TEXT_KEY: '"a\\u0000b"'},
]


@pytest.mark.parametrize("payload", JSON_VALUES, ids=lambda v: type(v).__name__)
async def test_save_and_get_round_trip_every_field(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory, payload: Any
) -> None:
    # given: every field set, in a zone other than UTC
    plus_two = dt.timezone(dt.timedelta(hours=2))
    row = make_row(
        envelope="eventbridge",
        qualifier="live",
        stack_trace=["line 1", "line 2 ✓"],
        timestamp=dt.datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=plus_two),
        request_payload=payload,
        response_payload=payload,
        record={"requestPayload": payload},
        first_seen_at=dt.datetime(2024, 5, 1, 12, 31, tzinfo=dt.UTC),
        status=FailureStatus.REPLAYED,
        status_by="ops@example.com",
        status_at=dt.datetime(2024, 5, 2, 9, 0, tzinfo=plus_two),
    )

    # when
    assert await store.save_invocation(row, make_delivery(row)) is True
    got = await store.get_invocation(row.key)

    # then: equal field by field, times aware and in UTC
    assert got is not None
    assert got == dataclasses.replace(row, delivery_count=1)
    # and of the same type: 1.0 == 1 in Python, not in JSON text
    assert json.dumps(got.response_payload, sort_keys=True) == json.dumps(payload, sort_keys=True)
    for value in (got.timestamp, got.first_seen_at, got.status_at):
        assert value is not None
        assert value.utcoffset() == dt.timedelta(0)
    assert got.timestamp == dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)


async def test_absent_optional_fields_come_back_as_none(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row(
        kind="stream-failure",
        request_id=None,
        function_arn=None,
        function_name=None,
        qualifier=None,
        condition=None,
        succeeded=None,
        approximate_invoke_count=None,
        error_type=None,
        error_message=None,
        stack_trace=None,
        timestamp=None,
        request_payload=None,
        response_payload=None,
    )
    await store.save_invocation(row, make_delivery(row))

    got = await store.get_invocation(row.key)

    assert got == dataclasses.replace(row, status=FailureStatus.OPEN, delivery_count=1)


async def test_new_failures_are_open_and_successes_have_no_status(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    failure = make_row(succeeded=False)
    success = make_row(succeeded=True, condition="Success", error_type=None)
    unknown = make_row(succeeded=None)
    given = make_row(status=FailureStatus.IGNORED)
    for row in (failure, success, unknown, given):
        await store.save_invocation(row, make_delivery(row))

    statuses = {r.key: r.status for r in await store.list_invocations(ALL)}

    assert statuses == {
        failure.key: FailureStatus.OPEN,
        success.key: None,
        unknown.key: FailureStatus.OPEN,
        given.key: FailureStatus.IGNORED,
    }
    assert failure.status is None  # the caller's row is not changed


async def test_naive_datetimes_are_refused(store: Store, make_row: RowFactory) -> None:
    row = make_row(timestamp=dt.datetime(2024, 5, 1, 12, 0))
    # a data error: permanent, so the worker quarantines the message with this reason
    with pytest.raises(StoreDataError, match="timezone-aware"):
        await store.save_invocation(row, _delivery_of(row))
    assert await store.count_invocations(ALL) == 0


async def test_values_the_database_cannot_hold_are_data_errors(
    store: Store, make_row: RowFactory
) -> None:
    # given: a count past 64 bits (refused by both), past 32 bits and a key past an index
    # entry's size (refused by PostgreSQL; SQLite holds them)
    key = "".join(random.Random(9).choices("abcdefghijklmnopqrstuvwxyz", k=10_000))
    rows = [
        make_row(approximate_invoke_count=2**63),
        make_row(approximate_invoke_count=2**31),
        make_row(key=key, request_id=key),
    ]
    refused_by_both = 1 if isinstance(store, SQLiteStore) else 3

    # when
    results = [
        await asyncio.gather(store.save_invocation(row, _delivery_of(row)), return_exceptions=True)
        for row in rows
    ]

    # then: a data error (permanent: the worker quarantines the message) or stored, never
    # another error (which the worker would retry with a traceback)
    refused = [result for (result,) in results if result is not True]
    assert all(isinstance(error, StoreDataError) for error in refused), refused
    assert len(refused) == refused_by_both
    assert "the store cannot hold this record" in str(refused[0])


def _delivery_of(row: Any) -> Any:
    from lambda_destinations.store import DeliveryRow

    return DeliveryRow(key=row.key, message_id="m-naive", queue=QUEUE, receive_count=1)


async def test_a_duplicate_save_keeps_one_row(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    delivery = make_delivery(row)

    first = await store.save_invocation(row, delivery)
    again = await store.save_invocation(dataclasses.replace(row, error_message="changed"), delivery)

    assert (first, again) == (True, False)
    assert await store.count_invocations(ALL) == 1
    got = await store.get_invocation(row.key)
    assert got is not None
    assert got.error_message == "timed out"  # the first save wins
    assert got.delivery_count == 1


async def test_deliveries_are_recorded_once_per_message_and_receive_count(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    first = make_delivery(row, message_id="m-1", receive_count=1, received_at=T0)
    await store.save_invocation(row, first)

    await store.save_invocation(row, first)  # redelivered after a lost delete
    await store.add_delivery(first)
    await store.add_delivery(
        make_delivery(row, message_id="m-1", receive_count=2, received_at=T0 + dt.timedelta(1))
    )
    await store.add_delivery(
        make_delivery(row, message_id="m-2", receive_count=1, received_at=T0 + dt.timedelta(2))
    )

    deliveries = await store.deliveries(row.key)
    assert [(d.message_id, d.receive_count) for d in deliveries] == [
        ("m-1", 1),
        ("m-1", 2),
        ("m-2", 1),
    ]
    assert deliveries[0] == first
    got = await store.get_invocation(row.key)
    assert got is not None
    assert got.delivery_count == 3


async def test_a_delivery_may_be_recorded_for_a_key_with_no_row(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # A route without the persist handler: its duplicates are still recorded as delivered.
    row = make_row()
    await store.add_delivery(make_delivery(row))

    assert [d.key for d in await store.deliveries(row.key)] == [row.key]
    assert await store.get_invocation(row.key) is None


async def test_a_store_knows_whether_it_handled_anything(
    store: Store, other_store: Store, make_row: RowFactory
) -> None:
    # new: nothing handled; a claim alone (a route without persist) is a record handled
    assert await store.has_handled() is False
    row = make_row()
    assert await store.claim_handler(row.key, "oncall", "w1", 30) is True

    assert await other_store.has_handled() is True


async def test_get_invocation_by_key_or_by_newest_row_of_a_request_id(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: one request failing twice under two conditions, and a row whose key is that id
    older = make_row(key="r-1:EventAgeExceeded", request_id="r-1", timestamp=T0)
    newer = make_row(
        key="r-1:RetriesExhausted", request_id="r-1", timestamp=T0 + dt.timedelta(hours=1)
    )
    keyed = make_row(key="r-1", request_id="other", timestamp=T0 - dt.timedelta(days=1))
    for row in (older, newer):
        await store.save_invocation(row, make_delivery(row))

    # then: by request id, the newest; by exact key, that row even if older
    by_request = await store.get_invocation("r-1")
    assert by_request is not None
    assert by_request.key == newer.key
    await store.save_invocation(keyed, make_delivery(keyed))
    by_key = await store.get_invocation("r-1")
    assert by_key is not None
    assert by_key.key == "r-1"
    assert await store.get_invocation("no-such-thing") is None


async def test_concurrent_saves_are_each_recorded_once(
    store: Store,
    other_store: Store,
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
) -> None:
    # given: 40 distinct records, and one record delivered 20 times, from two replicas at once
    rows = [make_row() for _ in range(40)]
    hot = make_row()
    saves = [store.save_invocation(r, make_delivery(r), complete_handler="persist") for r in rows]
    saves += [
        (store if n % 2 else other_store).save_invocation(
            hot, make_delivery(hot, message_id=f"hot-{n}"), complete_handler="persist"
        )
        for n in range(20)
    ]

    # when
    results = await asyncio.gather(*saves)

    # then: every distinct record is new once; the hot one is new for exactly one caller
    assert results[:40] == [True] * 40
    assert results[40:].count(True) == 1
    assert await store.count_invocations(ALL) == 41
    assert len(await store.deliveries(hot.key)) == 20
    completed = await asyncio.gather(*(store.completed_handlers(r.key) for r in [*rows, hot]))
    assert set(completed) == {frozenset({"persist"})}


async def test_a_batch_of_new_and_stored_keys_saves_each_as_one_call_would(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # Deliveries as the persist handler makes them (received when the row was first seen), so
    # each row holds its own: PostgreSQL then inserts such a batch's rows in one statement,
    # and the rows of the keys it finds stored in a transaction after it.
    def held(row: InvocationRow) -> DeliveryRow:
        return make_delivery(row, received_at=row.first_seen_at)

    # given: two records stored already, one of them by another handler
    stored = [make_row(), make_row()]
    await store.save_invocation(stored[0], held(stored[0]), complete_handler="persist")
    await store.save_invocation(stored[1], held(stored[1]), complete_handler="audit")
    fresh = [make_row() for _ in range(8)]

    # when: they arrive again, each once, in one batch with eight new records
    results = await asyncio.gather(
        *(
            store.save_invocation(r, held(r), complete_handler="persist")
            for r in [fresh[0], stored[0], *fresh[1:5], stored[1], *fresh[5:]]
        )
    )

    # then: new for the new keys only; the stored keys keep their row and gain a delivery,
    # and the one stored by another handler gains this handler's completion
    assert results == [True, False, True, True, True, True, False, True, True, True]
    assert await store.count_invocations(ALL) == 10
    assert [len(await store.deliveries(r.key)) for r in stored] == [2, 2]
    assert await store.completed_handlers(stored[0].key) == {"persist"}
    assert await store.completed_handlers(stored[1].key) == {"persist", "audit"}
    for row in fresh:
        assert len(await store.deliveries(row.key)) == 1
        assert await store.completed_handlers(row.key) == {"persist"}


async def test_one_record_saved_many_times_at_once_is_new_for_one_caller(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # The first save runs at once; the ten behind it go to the database as one batch.
    first, hot = make_row(), make_row()

    results = await asyncio.gather(
        store.save_invocation(first, make_delivery(first)),
        *(store.save_invocation(hot, make_delivery(hot)) for _ in range(10)),
    )

    assert results[0] is True
    assert results[1:].count(True) == 1
    assert len(await store.deliveries(hot.key)) == 10


async def test_a_bad_row_fails_only_its_own_save(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # Saves that arrive together are written together; one bad row must not fail the others.
    good = [make_row() for _ in range(10)]
    bad = make_row(timestamp=dt.datetime(2024, 5, 1))

    results = await asyncio.gather(
        *(store.save_invocation(r, make_delivery(r)) for r in [*good[:5], bad, *good[5:]]),
        return_exceptions=True,
    )

    assert results[:5] == [True] * 5
    assert isinstance(results[5], StoreDataError)
    assert results[6:] == [True] * 5
    assert await store.count_invocations(ALL) == 10


# -- handler runs: completion and claims ------------------------------------------------------


async def test_completed_handlers_lists_completions_only(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    assert await store.completed_handlers(row.key) == frozenset()

    await store.save_invocation(row, make_delivery(row), complete_handler="persist")
    await store.complete_handler(row.key, "email", "worker-a")
    await store.claim_handler(row.key, "sms", "worker-a", ttl=60)

    assert await store.completed_handlers(row.key) == {"persist", "email"}
    assert await store.completed_handlers("another-key") == frozenset()


async def test_completed_handlers_answers_many_keys_at_once(store: Store) -> None:
    keys = [f"k-{n}" for n in range(30)]
    for n, key in enumerate(keys):
        for handler in ("persist", "sms", "email")[: n % 4]:
            await store.complete_handler(key, handler, "worker-a")

    answers = await asyncio.gather(*(store.completed_handlers(k) for k in [*keys, *keys]))

    expected = [frozenset(("persist", "sms", "email")[: n % 4]) for n in range(30)]
    assert answers == expected * 2


async def test_claim_is_held_renewed_released_and_completed(store: Store) -> None:
    # given: a claim by a
    assert await store.claim_handler("k", "sms", "a", ttl=60) is True

    # then: b may not take it; a renews it; b cannot release a's claim
    assert await store.claim_handler("k", "sms", "b", ttl=60) is False
    assert await store.claim_handler("k", "sms", "a", ttl=60) is True
    await store.release_handler("k", "sms", "b", error="not mine")
    assert await store.claim_handler("k", "sms", "b", ttl=60) is False

    # when: a releases with an error, b claims it
    await store.release_handler("k", "sms", "a", error="SNS throttled")
    assert await store.claim_handler("k", "sms", "b", ttl=60) is True
    await store.release_handler("k", "sms", "b")  # no error: the last one is kept

    [run] = await store.handler_runs("k")
    assert run.state == RunState.CLAIMED
    # no owner, and the time of the release (retention ages a run never completed by it)
    assert run.owner is None
    assert run.claimed_until is not None
    assert abs((run.claimed_until - utcnow()).total_seconds()) < 60
    assert run.attempts == 3
    assert run.last_error == "SNS throttled"

    # when: completed, no one claims it again, not even the owner
    assert await store.claim_handler("k", "sms", "c", ttl=60) is True
    await store.complete_handler("k", "sms", "c")
    for owner in ("a", "b", "c"):
        assert await store.claim_handler("k", "sms", owner, ttl=60) is False
    [run] = await store.handler_runs("k")
    assert run.state == RunState.COMPLETED
    assert run.owner == "c"
    assert run.completed_at is not None
    assert run.completed_at.tzinfo is not None


async def test_a_claim_is_renewed_by_its_owner_only_without_counting_an_attempt(
    store: Store,
) -> None:
    # given: a's claim of one lease
    assert await store.claim_handler("k", "sms", "a", ttl=5) is True
    (before,) = await store.handler_runs("k")

    # when: a renews it for longer; b tries to
    assert await store.renew_claim("k", "sms", "a", ttl=60) is True
    assert await store.renew_claim("k", "sms", "b", ttl=60) is False

    # then: a's claim reaches further, still one attempt; b holds nothing
    (after,) = await store.handler_runs("k")
    assert before.claimed_until is not None
    assert after.claimed_until is not None
    assert after.claimed_until - before.claimed_until > dt.timedelta(seconds=50)
    assert (after.owner, after.attempts) == ("a", 1)
    await store.complete_handler("k", "sms", "a")
    assert await store.renew_claim("k", "sms", "a", ttl=60) is False
    assert await store.renew_claim("nothing", "sms", "a", ttl=60) is False


async def test_an_expired_claim_is_taken_over(store: Store) -> None:
    # A negative ttl makes a claim that has already expired: no sleeping in tests.
    assert await store.claim_handler("k", "sms", "a", ttl=-1) is True

    assert await store.claim_handler("k", "sms", "b", ttl=60) is True
    assert await store.claim_handler("k", "sms", "a", ttl=60) is False
    [run] = await store.handler_runs("k")
    assert run.owner == "b"
    assert run.claimed_until is not None
    assert run.claimed_until > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)


async def test_a_handler_error_with_a_nul_is_kept_as_text_can_hold_it(store: Store) -> None:
    # A handler's error may quote a payload; PostgreSQL's text holds no NUL: a release that
    # failed on it would leave the claim until it expires.
    assert await store.claim_handler("k", "webhook", "a", ttl=60)
    await store.release_handler("k", "webhook", "a", error="HTTP 500: a\x00b")
    [run] = await store.handler_runs("k")
    assert (run.owner, run.last_error) == (None, "HTTP 500: a\ufffdb")
    assert await store.claim_handler("k", "webhook", "a", ttl=60)
    assert await store.complete_handler("k", "webhook", "a", detail="sent \x00 twice")
    [run] = await store.handler_runs("k")
    assert run.last_error == "sent \ufffd twice"


async def test_who_set_a_status_and_why_with_a_nul_is_kept_as_text_can_hold_it(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # `failures ignore --reason`, the console: an operator's reason goes into status_by.
    rows = [make_row(), make_row()]
    for row in rows:
        await store.save_invocation(row, make_delivery(row))

    assert await store.set_status(
        [rows[0].key], FailureStatus.IGNORED, by=set_by("cli u", "a\x00b")
    )
    reopened = await reopen(store, [rows[1].key], by=set_by("console c\x00", "d\x00e"))

    assert reopened.changed == 1
    ignored, opened = [await store.get_invocation(row.key) for row in rows]
    assert ignored is not None
    assert (ignored.status, ignored.status_by) == (FailureStatus.IGNORED, "cli u — a\ufffdb")
    assert opened is not None
    assert (opened.status, opened.status_by) == (FailureStatus.OPEN, "console c\ufffd — d\ufffde")


async def test_complete_without_claim_and_twice_keeps_the_first(store: Store) -> None:
    await store.complete_handler("k", "email", "a")
    [first] = await store.handler_runs("k")

    await store.complete_handler("k", "email", "b")
    [second] = await store.handler_runs("k")

    assert first.state == second.state == RunState.COMPLETED
    assert (second.owner, second.completed_at) == ("a", first.completed_at)
    assert second.attempts == 1


async def test_exactly_one_of_many_concurrent_claimers_wins(
    store: Store, other_store: Store
) -> None:
    # given: 60 owners on two store instances (two replicas) claiming the same run at once
    claims = [
        (store if n % 2 else other_store).claim_handler("k", "sms", f"owner-{n}", ttl=60)
        for n in range(60)
    ]

    results = await asyncio.gather(*claims)

    assert results.count(True) == 1
    winner = f"owner-{results.index(True)}"
    [run] = await store.handler_runs("k")
    assert run.owner == winner


async def test_exactly_one_claimer_takes_over_an_expired_claim(
    store: Store, other_store: Store
) -> None:
    assert await store.claim_handler("k", "sms", "crashed", ttl=-1) is True

    results = await asyncio.gather(
        *(
            (store if n % 2 else other_store).claim_handler("k", "sms", f"owner-{n}", ttl=60)
            for n in range(40)
        )
    )

    assert results.count(True) == 1


async def test_handler_runs_of_a_key(store: Store) -> None:
    await store.complete_handler("k", "persist", "a")
    await store.claim_handler("k", "email", "a", ttl=60)
    await store.complete_handler("other", "persist", "a")

    runs = await store.handler_runs("k")

    assert [(r.handler, r.state) for r in runs] == [
        ("email", RunState.CLAIMED),
        ("persist", RunState.COMPLETED),
    ]
    assert all(r.key == "k" for r in runs)


# -- quarantine -------------------------------------------------------------------------------


def _quarantined(message_id: str, queue: str = QUEUE, **fields: Any) -> QuarantineRow:
    values: dict[str, Any] = {
        "queue": queue,
        "message_id": message_id,
        "body": '{"not": "a record"}',
        "message_attributes": {"ErrorCode": {"DataType": "String", "StringValue": "500"}},
        "reason": "decode error: not an invocation record",
        "receive_count": 1,
    }
    values.update(fields)
    return QuarantineRow(**values)


async def test_quarantine_keeps_each_message_once(store: Store) -> None:
    row = _quarantined("m-1", key="r-1:RetriesExhausted", quarantined_at=T0)

    assert await store.save_quarantine(row) is True
    assert row.id is not None
    duplicate = _quarantined("m-1", reason="another reason")
    assert await store.save_quarantine(duplicate) is False

    [kept] = await store.list_quarantine()
    assert kept == row
    assert kept.reason == "decode error: not an invocation record"


async def test_a_quarantined_message_s_dlq_copy_is_noted_on_its_row_only(store: Store) -> None:
    # given: two messages of one queue kept, and one of another queue with the same id
    for queue, message_id in ((QUEUE, "m-1"), (QUEUE, "m-2"), (QUEUE + "-2", "m-1")):
        await store.save_quarantine(_quarantined(message_id, queue, quarantined_at=T0))
    # when: the first one's copy is noted as taken by a DLQ
    dlq = QUEUE + "-dlq"
    await store.record_dlq_copy(QUEUE, "m-1", dlq)
    # then: its row says so, and no other row does (nor a message the store does not keep)
    assert await store.dlq_copy(QUEUE, "m-1") == dlq
    assert await store.dlq_copy(QUEUE, "m-2") is None
    assert await store.dlq_copy(QUEUE + "-2", "m-1") is None
    assert await store.dlq_copy(QUEUE, "m-3") is None


async def test_list_quarantine_newest_first_by_queue_with_limit(store: Store) -> None:
    other_queue = QUEUE + "-2"
    for n in range(5):
        queue = other_queue if n == 2 else QUEUE
        at = T0 + dt.timedelta(minutes=n)
        await store.save_quarantine(_quarantined(f"m-{n}", queue, quarantined_at=at))

    everything = await store.list_quarantine()
    mine = await store.list_quarantine(queue=QUEUE)
    top = await store.list_quarantine(queue=QUEUE, limit=2)

    assert [q.message_id for q in everything] == ["m-4", "m-3", "m-2", "m-1", "m-0"]
    assert [q.message_id for q in mine] == ["m-4", "m-3", "m-1", "m-0"]
    assert [q.message_id for q in top] == ["m-4", "m-3"]


async def test_list_quarantine_by_queue_name_and_since(store: Store) -> None:
    # given: messages of queues whose names share an ending, or would match another's name
    # read as a LIKE pattern, a minute apart
    name = QUEUE.rsplit("/", 1)[1]
    base = QUEUE.rsplit("/", 1)[0]
    queues = [QUEUE, f"{base}/x{name}", f"{base}/a_b%c", QUEUE, f"{base}/aXbYYc"]
    for n, queue in enumerate(queues):
        at = T0 + dt.timedelta(minutes=n)
        await store.save_quarantine(_quarantined(f"m-{n}", queue, quarantined_at=at))

    by_name = await store.list_quarantine(queue=name)
    wild = await store.list_quarantine(queue="a_b%c")  # "_" and "%" match only themselves
    recent = await store.list_quarantine(since=T0 + dt.timedelta(minutes=3))
    both = await store.list_quarantine(queue=name, since=T0 + dt.timedelta(minutes=1))

    assert [q.message_id for q in by_name] == ["m-3", "m-0"]
    assert [q.message_id for q in wild] == ["m-2"]
    assert [q.message_id for q in recent] == ["m-4", "m-3"]
    assert [q.message_id for q in both] == ["m-3"]


async def test_list_quarantine_by_queue_tells_names_apart_by_case(store: Store) -> None:
    # given: two queues whose names differ in case alone, as SQS's may (two queues to it)
    base = QUEUE.rsplit("/", 1)[0]
    lower, upper = f"{base}/orders", f"{base}/Orders"
    for n, queue in enumerate([lower, upper]):
        await store.save_quarantine(_quarantined(f"m-{n}", queue, quarantined_at=T0))

    # when: named by name, and by URL
    by_name = await store.list_quarantine(queue="orders")
    by_url = await store.list_quarantine(queue=upper)

    # then: that queue's alone (before, on SQLite, whose LIKE ignores case: both, and
    # `quarantine resend --all --queue orders` resent the other queue's messages too)
    assert [q.message_id for q in by_name] == ["m-0"]
    assert [q.message_id for q in by_url] == ["m-1"]


async def test_list_quarantine_by_url_is_by_account_and_name_whatever_the_host(
    store: Store,
) -> None:
    # given: a queue as a worker in a container reached it, and a namesake in another account
    ours = "http://localstack:4566/000000000000/orders"
    theirs = "http://localstack:4566/111111111111/orders"
    for n, queue in enumerate([ours, theirs]):
        await store.save_quarantine(_quarantined(f"m-{n}", queue, quarantined_at=T0))

    # when: the operator names the queue by the URL their own endpoint gives it
    by_url = await store.list_quarantine(queue="http://localhost:4566/000000000000/orders")

    # then: that queue's message (before: none, the URLs' hosts differing)
    assert [q.message_id for q in by_url] == ["m-0"]


async def test_list_quarantine_by_an_aws_url_leaves_out_the_namesake_of_another_region(
    store: Store,
) -> None:
    # given: a store that workers of two regions share, each quarantining from a queue of one
    # account and name; and one that a worker reached through another endpoint
    east = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    west = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
    legacy_west = "https://eu-west-1.queue.amazonaws.com/123456789012/orders"
    local = "http://localstack:4566/123456789012/orders"
    for n, queue in enumerate([east, west, legacy_west, local]):
        await store.save_quarantine(_quarantined(f"m-{n}", queue, quarantined_at=T0))

    # when: named by one region's URL, by the other's, by name, and by an ARN (as the
    # worker's queues and `dlq peek` take it)
    by_east = await store.list_quarantine(queue=east)
    by_west = await store.list_quarantine(queue=west)
    by_name = await store.list_quarantine(queue="orders")
    by_arn = await store.list_quarantine(queue="arn:aws:sqs:eu-west-1:123456789012:orders")

    # then: each region's own, and the one whose host names no region (before: all four,
    # another region's messages listed, and resent by `resend --all --queue`, as this queue's)
    assert sorted(q.message_id for q in by_east) == ["m-0", "m-3"]
    assert sorted(q.message_id for q in by_west) == ["m-1", "m-2", "m-3"]
    assert sorted(q.message_id for q in by_name) == ["m-0", "m-1", "m-2", "m-3"]
    # the ARN as its region's URL (before: none, an ARN compared as a queue's name)
    assert sorted(q.message_id for q in by_arn) == ["m-1", "m-2", "m-3"]


async def test_a_quarantined_message_is_read_by_id_and_forgotten_once(store: Store) -> None:
    row = _quarantined("m-1", key="r-1:RetriesExhausted", quarantined_at=T0)
    other = _quarantined("m-2", quarantined_at=T0)
    await store.save_quarantine(row)
    await store.save_quarantine(other)
    assert row.id is not None
    assert other.id is not None

    assert await store.get_quarantine(row.id) == row
    assert await store.get_quarantine(row.id + other.id + 100) is None
    assert await store.delete_quarantine(row.id) is True
    assert await store.delete_quarantine(row.id) is False

    assert await store.get_quarantine(row.id) is None
    assert [q.message_id for q in await store.list_quarantine()] == ["m-2"]


async def test_of_resends_at_once_one_claims_the_quarantined_message(
    store: Store, other_store: Store
) -> None:
    # given: a quarantined message, and six resends of it at once from two replicas
    row = _quarantined("m-1", quarantined_at=T0)
    await store.save_quarantine(row)
    assert row.id is not None
    quarantine_id = row.id

    # when
    claims = await asyncio.gather(
        *((store if n % 2 else other_store).claim_quarantine(quarantine_id, 60) for n in range(6))
    )

    # then: exactly one holds it, and gets the message whole, with its claim
    held = [claim for claim in claims if claim is not None]
    assert [_unclaimed(claim) for claim in held] == [row]
    assert await other_store.claim_quarantine(quarantine_id, 60) is None
    # a list taken meanwhile says it is held, and until when
    (listed,) = await other_store.list_quarantine()
    assert listed.resend_claimed_until == held[0].resend_claimed_until
    assert listed.resending()
    assert listed.resend_claimed_until is not None
    assert 50 < (listed.resend_claimed_until - utcnow()).total_seconds() <= 60
    # released (a --keep resend, a refused send), it may be claimed again; deleted, never
    await store.release_quarantine(quarantine_id)
    assert await store.get_quarantine(quarantine_id) == row  # no claim left
    again = await other_store.claim_quarantine(quarantine_id, 60)
    assert again is not None
    assert _unclaimed(again) == row
    assert await store.delete_quarantine(quarantine_id) is True
    assert await store.claim_quarantine(quarantine_id, 60) is None


async def test_a_lapsed_resend_claim_is_taken_again(store: Store) -> None:
    # given: a resend claimed the message and died (its claim ends at once)
    row = _quarantined("m-1", quarantined_at=T0)
    await store.save_quarantine(row)
    assert row.id is not None
    lapsed = await store.claim_quarantine(row.id, -1)
    assert lapsed is not None
    assert _unclaimed(lapsed) == row

    # then: the message is still there, held by no resend, and the next resend may take it
    found = await store.get_quarantine(row.id)
    assert found is not None
    assert _unclaimed(found) == row
    assert not found.resending()
    taken = await store.claim_quarantine(row.id, 60)
    assert taken is not None
    assert _unclaimed(taken) == row


def _unclaimed(row: QuarantineRow) -> QuarantineRow:
    """``row`` without the claim a resend put on it (what was saved)."""
    return dataclasses.replace(row, resend_claimed_until=None)


async def test_a_resent_messages_id_is_never_given_to_another(store: Store) -> None:
    # given: two quarantined messages, the newest of them resent (its row deleted)
    first, newest = _quarantined("m-1"), _quarantined("m-2")
    for row in (first, newest):
        assert await store.save_quarantine(row)
    assert first.id is not None
    assert newest.id is not None
    assert await store.delete_quarantine(newest.id)

    # when: the worker quarantines another message (the resent copy, say)
    again = _quarantined("m-3")
    assert await store.save_quarantine(again)

    # then: it has an id of its own; a Resend of the old id finds nothing to send
    assert again.id is not None
    assert again.id > newest.id
    assert await store.get_quarantine(newest.id) is None


# -- operators: filters, counts, status -------------------------------------------------------


@pytest.fixture
async def dataset(store: Store, make_row: RowFactory, make_delivery: DeliveryFactory) -> Store:
    """Eight rows, one hour apart, newest last; see the filter tests for what each holds."""
    rows = [
        make_row(key="a", function_name="orders-api", error_type="TimeoutError"),
        make_row(key="b", function_name="orders-worker", error_type="KeyError"),
        make_row(
            key="c", function_name="payments-api", condition="EventAgeExceeded", error_type=None
        ),
        make_row(key="d", function_name="ordersapi", error_type=None, succeeded=True),
        make_row(key="e", function_name="orders_api", status=FailureStatus.RECOVERED),
        make_row(key="f", function_name="Orders-api", request_id="shared"),
        make_row(key="g", function_name="orders-api2", request_id="shared", timestamp=None),
        make_row(key="h", function_name=None, kind="stream-failure"),
    ]
    for n, row in enumerate(rows):
        if row.timestamp is not None:
            row.timestamp = T0 + dt.timedelta(hours=n)
        row.first_seen_at = T0 + dt.timedelta(hours=n, minutes=30)
        await store.save_invocation(row, make_delivery(row))
    return store


FILTERS = {
    "all failures, newest first": (InvocationFilter(), "hgfecba"),
    "successes too": (InvocationFilter(failed_only=False), "hgfedcba"),
    "glob star": (InvocationFilter(function_glob="orders-*"), "gba"),
    "glob question mark": (InvocationFilter(function_glob="*api?"), "g"),
    "glob is case-sensitive": (InvocationFilter(function_glob="Orders-*"), "f"),
    "glob underscore is literal": (InvocationFilter(function_glob="orders_api"), "e"),
    "glob class": (InvocationFilter(function_glob="[op]*-api"), "ca"),
    "glob negated class": (InvocationFilter(function_glob="[!o]*"), "fc"),
    "error type": (InvocationFilter(error_type="KeyError"), "b"),
    # as the tables show a failure with none (the function never ran): d succeeded
    "no error type": (InvocationFilter(error_type="-"), "c"),
    "condition": (InvocationFilter(condition="EventAgeExceeded"), "c"),
    "since, inclusive": (InvocationFilter(since=T0 + dt.timedelta(hours=5)), "hgf"),
    "until, exclusive": (InvocationFilter(until=T0 + dt.timedelta(hours=2)), "ba"),
    "since and until in another zone": (
        InvocationFilter(
            since=dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=-1))),
            until=dt.datetime(2024, 5, 1, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=+2))),
        ),
        "fe",  # 15:00Z <= t < 18:00Z; d succeeded
    ),
    "statuses": (InvocationFilter(statuses=[FailureStatus.RECOVERED]), "e"),
    "several statuses": (
        InvocationFilter(statuses=[FailureStatus.RECOVERED, FailureStatus.OPEN], limit=3),
        "hgf",
    ),
    "request ids": (InvocationFilter(request_ids=["shared", "none-such"]), "gf"),
    "limit": (InvocationFilter(limit=2), "hg"),
    "filters combine": (
        InvocationFilter(
            function_glob="orders*", error_type="TimeoutError", until=T0 + dt.timedelta(hours=1)
        ),
        "a",
    ),
    "nothing matches": (InvocationFilter(function_glob="[z-a]"), ""),
}


@pytest.mark.parametrize(("selection", "expected"), FILTERS.values(), ids=FILTERS.keys())
async def test_list_and_count_invocations(
    dataset: Store, selection: InvocationFilter, expected: str
) -> None:
    listed = await dataset.list_invocations(selection)

    assert "".join(row.key for row in listed) == expected
    unlimited = dataclasses.replace(selection, limit=None)
    assert await dataset.count_invocations(unlimited) == len(
        await dataset.list_invocations(unlimited)
    )


async def test_a_row_without_timestamp_sorts_and_filters_by_first_seen(dataset: Store) -> None:
    # g has no timestamp; it was first seen at T0 + 6h30, between f (5h) and h (7h)
    selection = InvocationFilter(since=T0 + dt.timedelta(hours=6), until=T0 + dt.timedelta(hours=7))

    assert [r.key for r in await dataset.list_invocations(selection)] == ["g"]


async def test_set_status(dataset: Store) -> None:
    before = dt.datetime.now(dt.UTC)

    changed = await dataset.set_status(["a", "b", "nope"], FailureStatus.IGNORED, by="ops")

    assert changed == 2
    ignored = await dataset.list_invocations(InvocationFilter(statuses=[FailureStatus.IGNORED]))
    assert [r.key for r in ignored] == ["b", "a"]
    for row in ignored:
        assert row.status_by == "ops"
        assert row.status_at is not None
        assert row.status_at >= before - dt.timedelta(seconds=1)
    assert await dataset.set_status([], FailureStatus.OPEN) == 0


# -- globs: the database agrees with fnmatch.fnmatchcase --------------------------------------

GLOB_ALPHABET = "ab-_]![^*?\\.é"


async def test_function_globs_match_like_fnmatchcase(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: function names full of glob and regex metacharacters
    rng = random.Random(7)
    names = sorted(
        {"".join(rng.choice(GLOB_ALPHABET) for _ in range(rng.randint(1, 5))) for _ in range(60)}
    )
    for name in names:
        row = make_row(function_name=name)
        await store.save_invocation(row, make_delivery(row))
    key_to_name = {r.key: r.function_name for r in await store.list_invocations(ALL)}

    # when: many random globs select rows
    mismatches = []
    for _ in range(150):
        glob = "".join(rng.choice(GLOB_ALPHABET) for _ in range(rng.randint(1, 5)))
        rows = await store.list_invocations(InvocationFilter(function_glob=glob))
        got = sorted(key_to_name[r.key] or "" for r in rows)
        expected = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        if got != expected:
            mismatches.append((glob, got, expected))

    # then: exactly fnmatchcase's answers
    assert mismatches == []


# -- failures ---------------------------------------------------------------------------------


async def test_a_closed_port_is_store_unavailable_in_one_line() -> None:
    url = "postgresql://postgres:s3cret@127.0.0.1:1/lambda"

    with pytest.raises(StoreUnavailable) as info:
        async with Store.from_url(url, connect_timeout=2):
            pass

    message = str(info.value)
    assert "\n" not in message
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    assert "check that PostgreSQL is running" in message


async def test_a_closed_store_says_how_to_open_it(store_url: str) -> None:
    store = Store.from_url(store_url)

    with pytest.raises(RuntimeError, match="not open"):
        await store.completed_handlers("k")


async def test_data_outlives_the_store_object(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    await store.save_invocation(row, make_delivery(row), complete_handler="persist")
    await store.close()

    async with Store.from_url(store.url) as reopened:
        assert await reopened.pending_migrations() == []
        assert await reopened.completed_handlers(row.key) == {"persist"}


async def test_open_failure_accounts_count_the_open_failures_of_each_functions_account(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: open failures of functions of two accounts (two functions and two qualifiers in
    # one), a failure that was replayed, a success, and a failure whose record names no ARN
    other = "arn:aws:lambda:eu-west-1:111122223333:function:{name}"
    rows = [
        make_row(function_name="orders-api"),
        make_row(function_name="billing"),
        make_row(function_arn=other.format(name="orders-api")),
        make_row(function_arn=other.format(name="orders-api") + ":live"),
        make_row(function_arn=other.format(name="orders-api") + ":live"),
        make_row(function_arn=other.format(name="replayed")),
        make_row(function_arn=other.format(name="fine"), succeeded=True),
        make_row(function_arn=None),
    ]
    for row in rows:
        await store.save_invocation(row, make_delivery(row))
    await store.set_status([rows[5].key], FailureStatus.REPLAYED)

    # when
    accounts = await store.open_failure_accounts()

    # then: the open failures only, by the account of each function's ARN
    assert accounts == {"123456789012": 2, "111122223333": 3}


async def test_failure_counts_are_per_function_error_type_and_utc_hour(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: failures at 12:01, 12:59 (orders-api, timeout), 13:00 (orders-api, timeout),
    # 12:30 (orders-api, no error type), 12:10 (billing, timeout), one success and one failure
    # outside the window; times given in UTC-05:30 count by the UTC hour
    half_past = dt.timezone(dt.timedelta(hours=-5, minutes=-30))
    at = [
        ("orders-api", "TimeoutError", False, T0 + dt.timedelta(minutes=1)),
        (
            "orders-api",
            "TimeoutError",
            False,
            (T0 + dt.timedelta(minutes=59)).astimezone(half_past),
        ),
        ("orders-api", "TimeoutError", False, T0 + dt.timedelta(hours=1)),
        ("orders-api", None, False, T0 + dt.timedelta(minutes=30)),
        ("billing", "TimeoutError", False, T0 + dt.timedelta(minutes=10)),
        ("orders-api", None, True, T0 + dt.timedelta(minutes=20)),
        ("orders-api", "TimeoutError", False, T0 + dt.timedelta(hours=2)),
    ]
    for function, error, succeeded, when in at:
        row = make_row(
            function_name=function, error_type=error, succeeded=succeeded, timestamp=when
        )
        await store.save_invocation(row, make_delivery(row))

    # when
    counts = await store.failure_counts(
        InvocationFilter(since=T0, until=T0 + dt.timedelta(hours=2))
    )

    # then
    found = sorted(
        (c.function_name or "", c.error_type or "", c.count, c.first, c.last) for c in counts
    )
    assert found == [
        (
            "billing",
            "TimeoutError",
            1,
            T0 + dt.timedelta(minutes=10),
            T0 + dt.timedelta(minutes=10),
        ),
        ("orders-api", "", 1, T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=30)),
        ("orders-api", "TimeoutError", 1, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=1)),
        (
            "orders-api",
            "TimeoutError",
            2,
            T0 + dt.timedelta(minutes=1),
            T0 + dt.timedelta(minutes=59),
        ),
    ]
    assert all(c.first.tzinfo is not None for c in counts)
    glob = InvocationFilter(function_glob="bill*", since=T0, until=T0 + dt.timedelta(hours=2))
    assert [c.count for c in await store.failure_counts(glob)] == [1]


async def test_a_records_payloads_are_stored_once_and_read_back_whole(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a record whose payloads the columns also hold (as the decoder shares them)
    request = {"orderId": 7, "items": ["a" * 500]}
    response = {"errorType": "TimeoutError", "trace": ["b" * 500]}
    record = {"version": "1.0", "requestPayload": request, "responsePayload": response}
    same_value = {"version": "1.0", "requestPayload": dict(request), "responsePayload": None}
    first = make_row(request_payload=request, response_payload=response, record=record)
    second = make_row(request_payload=request, response_payload=None, record=same_value)
    other = make_row(request_payload={"x": 1}, response_payload=None, record={"requestPayload": 2})
    for row in (first, second, other):
        await store.save_invocation(row, make_delivery(row))

    # then: each payload is in the store once
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        stored = dict(
            (await conn.execute(sa.select(invocations.c.key, invocations.c.record))).all()
        )
    assert stored[first.key] == {"version": "1.0"}
    assert stored[second.key] == {"version": "1.0"}
    assert stored[other.key] == {"requestPayload": 2}  # not the column's value: kept
    # and reads give every record back as it came
    for row in (first, second, other):
        got = await store.get_invocation(row.key)
        assert got is not None
        assert got.record == row.record
        assert got.request_payload == row.request_payload


async def test_a_stream_failures_batch_is_stored_once_and_read_back_whole(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a stream failure's record from an S3 destination, whose batch the decoder also
    # gives as the request payload (up to 8 MiB: stored twice, it took twice the room)
    batch = {"eventSource": "aws:kafka", "records": {"orders-0": [{"value": "x" * 2000}]}}
    record = {"version": "1.0", "KafkaBatchInfo": {"batchSize": 1}, "payload": batch}
    row = make_row(kind="stream-failure", request_payload=batch, record=record)

    # when
    await store.save_invocation(row, make_delivery(row))

    # then: the record column does not hold the batch again, and a read gives it back whole
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        stored = (
            await conn.execute(sa.select(invocations.c.record).where(invocations.c.key == row.key))
        ).scalar_one()
    assert stored == {"version": "1.0", "KafkaBatchInfo": {"batchSize": 1}}
    got = await store.get_invocation(row.key)
    assert got is not None
    assert got.record == record
    assert got.request_payload == batch


async def _table_rows(store: Store, table: sa.Table) -> int:
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar())


async def test_a_saved_record_is_one_row_holding_its_delivery_completion_and_trace(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a record as the decoder and the persist handler make it
    trace = ['  File "/var/task/app.py", line 1, in handler']
    response = {"errorType": "TimeoutError", "stackTrace": trace}
    context = {
        "requestId": "req-9",
        "functionArn": ARN.format(name="orders-api"),
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    record = {"version": "1.0", "requestContext": context, "responsePayload": response}
    row = make_row(
        key="req-9:RetriesExhausted",
        request_id="req-9",
        stack_trace=trace,
        response_payload=response,
        record=record,
    )
    first = make_delivery(row, received_at=row.first_seen_at)

    # when
    assert await store.save_invocation(row, first, complete_handler="persist")

    # then: no delivery row, no completion row; the record keeps what no column holds
    assert await _table_rows(store, deliveries) == 0
    assert await _table_rows(store, handler_runs) == 0
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(invocations.c.record, invocations.c.stack_trace).where(
                    invocations.c.key == row.key
                )
            )
        ).one()
    assert stored.record == {"version": "1.0"}
    assert stored.stack_trace is None
    # and every read says what three rows said before
    got = await store.get_invocation(row.key)
    assert got is not None
    assert got.record == record
    assert got.stack_trace == trace
    assert got.delivery_count == 1
    assert await store.deliveries(row.key) == [first]
    runs = await store.handler_runs(row.key)
    assert [(run.handler, run.state) for run in runs] == [("persist", RunState.COMPLETED)]
    assert await store.completed_handlers(row.key) == frozenset({"persist"})


async def test_later_saves_of_a_stored_record_add_their_delivery_and_other_completions(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    first = make_delivery(row, received_at=row.first_seen_at)
    assert await store.save_invocation(row, first, complete_handler="persist")

    # when: a redelivery saved by the same handler, then the record saved by another one
    again = make_delivery(row, message_id=first.message_id, receive_count=2)
    assert not await store.save_invocation(row, again, complete_handler="persist")
    assert not await store.save_invocation(row, first, complete_handler="persist")  # a retry
    other = make_delivery(row)
    assert not await store.save_invocation(row, other, complete_handler="archive")

    # then: each delivery once; a completion row for the other handler only
    assert [d.receive_count for d in await store.deliveries(row.key)] == [1, 2, 1]
    assert await _table_rows(store, deliveries) == 2
    runs = await store.handler_runs(row.key)
    assert [(run.handler, run.state) for run in runs] == [
        ("archive", RunState.COMPLETED),
        ("persist", RunState.COMPLETED),
    ]
    assert await _table_rows(store, handler_runs) == 1
    assert await store.completed_handlers(row.key) == frozenset({"persist", "archive"})
    got = await store.get_invocation(row.key)
    assert got is not None
    assert got.delivery_count == 3


async def test_rows_stored_before_version_9_read_as_they_did(
    unmigrated_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a store at version 8 holding a record saved as version 8 saved it: three rows
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:8])
    assert await unmigrated_store.migrate() == list(range(1, 9))
    assert isinstance(unmigrated_store, SqlStore)
    key = "req-1:RetriesExhausted"
    # Only the columns version 8 has are named: the statements render those alone.
    async with unmigrated_store.engine.begin() as conn:
        await conn.execute(
            sa.insert(invocations),
            {
                "key": key,
                "kind": "invocation",
                "envelope": "none",
                "request_id": "req-1",
                "occurred_at": T0,
                "queue": QUEUE,
                "first_seen_at": T0,
                "record": {"version": "1.0"},
                "status": FailureStatus.OPEN,
            },
        )
        await conn.execute(
            sa.insert(deliveries),
            {
                "key": key,
                "message_id": "m-1",
                "queue": QUEUE,
                "receive_count": 1,
                "received_at": T0,
            },
        )
        await conn.execute(
            sa.insert(handler_runs),
            {"key": key, "handler": "persist", "state": RunState.COMPLETED, "attempts": 1},
        )

    # when: version 9 (and those after it) is applied
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS)
    assert await unmigrated_store.migrate() == [m.version for m in MIGRATIONS[8:]]

    # then: the record reads as before
    got = await unmigrated_store.get_invocation(key)
    assert got is not None
    assert got.record == {"version": "1.0"}
    assert got.delivery_count == 1
    assert [d.message_id for d in await unmigrated_store.deliveries(key)] == ["m-1"]
    runs = await unmigrated_store.handler_runs(key)
    assert [(run.handler, run.state) for run in runs] == [("persist", RunState.COMPLETED)]
    assert await unmigrated_store.completed_handlers(key) == frozenset({"persist"})


async def test_a_writing_ping_leaves_the_migrations_as_they_were(
    store: Store, other_store: Store
) -> None:
    # when: two replicas ping by writing at once, twice
    for _ in range(2):
        await asyncio.gather(store.ping(write=True), other_store.ping(write=True))

    # then: no version was added, and none is pending
    assert await store.pending_migrations() == []
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        versions = (await conn.execute(sa.text("SELECT version FROM schema_migrations"))).all()
    assert sorted(v for (v,) in versions) == [m.version for m in MIGRATIONS]


async def test_version_12_marks_the_replays_own_failures_stored_before_it(
    unmigrated_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
) -> None:
    # given: a store at version 11, where a replay's failure was stored as an open failure
    # (its request id the ledger's new one), beside a failure of its own and an ignored replay's
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:11])
    assert await unmigrated_store.migrate() == list(range(1, 12))
    original, own, replayed, ignored = (make_row() for _ in range(4))
    for row in (original, own, replayed, ignored):
        assert await unmigrated_store.save_invocation(row, make_delivery(row))
    await unmigrated_store.set_status([ignored.key], FailureStatus.IGNORED, by="ops")
    for n, row in enumerate((replayed, ignored), start=1):
        assert await unmigrated_store.add_replay(
            ReplayAttempt(
                original_key=original.key,
                original_request_id=original.request_id,
                function_arn=ARN.format(name="orders-api"),
                attempt=n,
                trigger="automatic",
                requested_by="worker w1",
                new_request_id=row.request_id,
            )
        )
    assert (await unmigrated_store.get_invocation(replayed.key)).status == FailureStatus.OPEN  # type: ignore[union-attr]

    # when: version 12 is applied
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:12])
    assert await unmigrated_store.migrate() == [12]

    # then: the replay's open failure is marked; the others are as they were
    statuses = {
        row.key: (await unmigrated_store.get_invocation(row.key)).status  # type: ignore[union-attr]
        for row in (original, own, replayed, ignored)
    }
    assert statuses == {
        original.key: FailureStatus.OPEN,
        own.key: FailureStatus.OPEN,
        replayed.key: FailureStatus.REPLAY,
        ignored.key: FailureStatus.IGNORED,
    }


async def test_version_13_keeps_the_quarantined_messages_and_their_ids(
    unmigrated_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a store at version 12 holding three quarantined messages, one held by a resend,
    # and the newest resent (its id free to be taken again there, on SQLite)
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:12])
    assert await unmigrated_store.migrate() == list(range(1, 13))
    rows = [_quarantined(f"m-{n}", key=f"r-{n}:RetriesExhausted") for n in range(1, 5)]
    for row in rows:
        assert await unmigrated_store.save_quarantine(row)
    assert all(row.id is not None for row in rows)
    held = await unmigrated_store.claim_quarantine(rows[1].id, 60)  # type: ignore[arg-type]
    assert held is not None
    assert await unmigrated_store.delete_quarantine(rows[3].id)  # type: ignore[arg-type]

    # when: version 13 is applied
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:13])
    assert await unmigrated_store.migrate() == [13]

    # then: the rows are as they were, ids and claim included
    kept = await unmigrated_store.list_quarantine()
    assert sorted(kept, key=lambda q: q.id or 0) == [rows[0], held, rows[2]]
    # and from now on no id is given twice: the newest resent, the next message has a new id
    assert await unmigrated_store.delete_quarantine(rows[2].id)  # type: ignore[arg-type]
    later = _quarantined("m-5")
    assert await unmigrated_store.save_quarantine(later)
    assert later.id is not None
    assert later.id > rows[2].id  # type: ignore[operator]
    # and the table keeps its indexes and its one message a queue constraint
    assert isinstance(unmigrated_store, SqlStore)
    async with unmigrated_store.engine.connect() as conn:
        schema = await conn.run_sync(_schema)
    assert {("key",), ("quarantined_at",)} <= set(schema["quarantine"]["indexes"])
    assert schema["quarantine"]["unique"] == [("queue", "message_id")]


async def test_version_16_reads_a_row_kept_before_it_as_no_dlq_copy_known(
    unmigrated_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a store at version 15 keeping a quarantined message (its DLQ copy not noted)
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:15])
    assert await unmigrated_store.migrate() == list(range(1, 16))
    row = _quarantined("m-1", key="r-1:RetriesExhausted")
    assert await unmigrated_store.save_quarantine(row)

    # when: version 16 is applied
    monkeypatch.setattr(_sql, "MIGRATIONS", MIGRATIONS[:16])
    assert await unmigrated_store.migrate() == [16]

    # then: the row is as it was, and says no DLQ took it (a delivery again sends a copy)
    assert await unmigrated_store.list_quarantine() == [row]
    assert await unmigrated_store.dlq_copy(QUEUE, "m-1") is None
    await unmigrated_store.record_dlq_copy(QUEUE, "m-1", "dlq")
    assert await unmigrated_store.dlq_copy(QUEUE, "m-1") == "dlq"


async def test_request_ids_starting_a_head_are_found_once_each_in_order(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: request ids sharing heads, one with two records (two conditions), and ids holding
    # LIKE's own wildcards, which a head must match as the characters they are
    ids = ["ab12-2", "ab12-1", "ab13", "a%12", "a_12", "b"]
    rows = [make_row(key=f"{i}:RetriesExhausted", request_id=i) for i in ids]
    rows.append(make_row(key="ab12-1:EventAgeExceeded", request_id="ab12-1"))
    for row in rows:
        assert await store.save_invocation(row, make_delivery(row)) is True

    # when / then
    assert await store.request_ids_starting("ab12", limit=5) == ["ab12-1", "ab12-2"]
    assert await store.request_ids_starting("ab", limit=2) == ["ab12-1", "ab12-2"]
    assert await store.request_ids_starting("a%", limit=5) == ["a%12"]
    assert await store.request_ids_starting("a_", limit=5) == ["a_12"]
    assert await store.request_ids_starting("c", limit=5) == []
    with pytest.raises(ValueError, match="not the head of a request id"):
        await store.request_ids_starting("ab*", limit=5)
