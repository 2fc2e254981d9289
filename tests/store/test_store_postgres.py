"""What only the PostgreSQL backend must do: survive restarts, name what is missing."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from store_factories import PAYLOAD_MARKER, DeliveryFactory, RowFactory, assert_refusal_shown_alone

from lambda_destinations.errors import StoreDataError, StoreError, StoreUnavailable
from lambda_destinations.store import InvocationFilter, Store

pytestmark = pytest.mark.postgres


async def test_connections_dropped_by_the_server_are_replaced(
    postgres_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        row = make_row()
        await store.save_invocation(row, make_delivery(row), complete_handler="persist")

        # when: the server ends every connection of ours (as a restart or failover would)
        admin = await asyncpg.connect(postgres_url)
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert ended >= 1

        # then: the pool notices (pre-ping) and the next calls succeed
        assert await store.completed_handlers(row.key) == {"persist"}
        assert await store.claim_handler(row.key, "sms", "a", ttl=60) is True


async def test_a_missing_database_is_store_unavailable_naming_it(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/ld_no_such_database"

    with pytest.raises(StoreUnavailable, match='"ld_no_such_database" does not exist') as info:
        async with Store.from_url(url):
            pass

    assert "\n" not in str(info.value)


async def test_a_user_who_may_only_read_is_store_unavailable_naming_the_grants(
    postgres_reader: tuple[str, str], make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a migrated store, and a user who may read its tables and nothing more
    reader, as_reader = postgres_reader

    # when: that user's store saves a record
    async with Store.from_url(as_reader) as store:
        assert await store.list_invocations(InvocationFilter(failed_only=False)) == []
        row = make_row()
        with pytest.raises(StoreUnavailable) as info:
            await store.save_invocation(row, make_delivery(row), complete_handler="persist")

    # then: unavailable (the worker pauses receiving), in one line saying what to grant
    message = str(info.value)
    assert "permission denied for table invocations" in message
    assert f"grant {reader} SELECT, INSERT, UPDATE and DELETE" in message
    assert "\n" not in message


async def test_a_read_only_database_is_store_unavailable_saying_to_use_the_primary(
    postgres_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a migrated store whose database then takes no writes (as a standby would not)
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    finally:
        await admin.close()

    # when: a save
    async with Store.from_url(postgres_url) as store:
        row = make_row()
        with pytest.raises(StoreUnavailable) as info:
            await store.save_invocation(row, make_delivery(row), complete_handler="persist")

    # then: unavailable, in one line naming the fix
    assert "read-only transaction" in str(info.value)
    assert "point the store URL at the primary" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "constraint", "said"),
    [
        ({"approximate_invoke_count": 2**31}, None, "query argument $10: *** (value out of int32"),
        # a constraint the row breaks: PostgreSQL's DETAIL quotes the whole row
        ({"error_type": "Refused"}, "error_type <> 'Refused'", 'violates check constraint "c"'),
        # a value PostgreSQL quotes in its message (a cast the constraint makes)
        (
            {"error_message": PAYLOAD_MARKER},
            "error_message::int > 0",
            'invalid input syntax for type integer: "***"',
        ),
    ],
)
async def test_a_refused_save_names_the_error_without_the_statement_or_the_values(
    postgres_url: str,
    make_row: RowFactory,
    make_delivery: DeliveryFactory,
    fields: dict[str, Any],
    constraint: str | None,
    said: str,
) -> None:
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        if constraint:
            admin = await asyncpg.connect(postgres_url)
            try:
                await admin.execute(f"ALTER TABLE invocations ADD CONSTRAINT c CHECK({constraint})")
            finally:
                await admin.close()
        row = make_row(request_payload={"card": PAYLOAD_MARKER}, **fields)

        with pytest.raises((StoreError, StoreDataError)) as info:
            await store.save_invocation(row, make_delivery(row))

    assert_refusal_shown_alone(info.value, said)
