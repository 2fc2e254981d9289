"""What only the PostgreSQL backend must do: survive restarts, name what is missing."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from store_factories import (
    PAYLOAD_MARKER,
    DeliveryFactory,
    RowFactory,
    assert_refusal_shown_alone,
    insert_rows,
)
from structlog.testing import capture_logs

from lambda_destinations.errors import (
    StoreDataError,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
)
from lambda_destinations.store import InvocationFilter, Store, _sql
from lambda_destinations.store.migrations import MIGRATIONS, Migration
from lambda_destinations.store.postgres import MIGRATION_LOCK_KEY, PostgresStore

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
        ({"approximate_invoke_count": 2**31}, None, "is out of range for type integer"),
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


async def test_a_migration_longer_than_command_timeout_completes(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a next version whose statement outlasts the store's command_timeout (a table
    # rebuilt or indexed at millions of rows)
    def slow(conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_sleep(1.5)"))

    slow_version = Migration(len(MIGRATIONS) + 1, "slow", slow, oldest_writer=len(MIGRATIONS) + 1)
    monkeypatch.setattr(_sql, "MIGRATIONS", (*MIGRATIONS, slow_version))

    async with PostgresStore(postgres_url, command_timeout=0.5) as store:
        # when
        applied = await store.migrate()

    # then: it ran to its end rather than being cancelled (and rolled back) at the timeout
    assert applied == [m.version for m in (*MIGRATIONS, slow_version)]


async def _lock_waiters(admin: Any) -> int:
    """Connections waiting for the migration lock."""
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )


async def test_a_replica_waits_out_another_migration_longer_than_command_timeout(
    postgres_url: str,
) -> None:
    # given: another process migrating holds the lock
    holder = await asyncpg.connect(postgres_url)
    try:
        migrating = holder.transaction()
        await migrating.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        async with PostgresStore(postgres_url, command_timeout=0.5) as store:
            with capture_logs() as logs:
                # when: this one migrates, and waits past its command_timeout
                waiting = asyncio.create_task(store.migrate())
                while not await _lock_waiters(holder):  # noqa: ASYNC110 - another server's state
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # twice the command_timeout
                assert not waiting.done()
                await migrating.rollback()  # the other process's migration ends
                applied = await waiting
    finally:
        await holder.close()

    # then: it waited, said so once, and then migrated
    assert applied == [m.version for m in MIGRATIONS]
    said = [e["event"] for e in logs if e["event"].startswith("waiting for another process")]
    assert said == ["waiting for another process to finish migrating the store"]


async def test_a_busy_worker_reuses_its_connections_instead_of_opening_new_ones(
    postgres_url: str,
) -> None:
    # given: more store calls at once than the pool holds, as a worker's 32 handlers make
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        assert isinstance(store, PostgresStore)
        opened: list[object] = []
        sa.event.listen(store.engine.sync_engine, "connect", lambda *_: opened.append(1))
        everything = InvocationFilter(failed_only=False)

        # when: four bursts of 40 calls
        for _ in range(4):
            await asyncio.gather(*(store.count_invocations(everything) for _ in range(40)))

        # then: the connections of the first burst serve the others (a connection past the
        # pool's size was closed as soon as it was given back, and the next burst opened it
        # again: a PostgreSQL backend started, and stopped, for a few statements)
        assert 0 < len(opened) <= 20


async def test_the_url_pool_size_bounds_the_pool_and_the_timeout_line_says_how_to_raise_it(
    postgres_url: str,
) -> None:
    # given: a store of one connection (with sslmode: both parameters are taken together), and
    # another process holding a lock its reads wait for
    async with Store.from_url(
        f"{postgres_url}?sslmode=disable&pool_size=1", pool_timeout=0.5
    ) as store:
        await store.migrate()
        everything = InvocationFilter(failed_only=False)
        admin = await asyncpg.connect(postgres_url)
        try:
            locking, waiting = await _a_read_waiting_for_a_lock(store, admin)

            # when: a second call finds the one connection busy for pool_timeout
            with pytest.raises(StoreUnavailable) as info:
                await asyncio.wait_for(store.count_invocations(everything), 10)
            await locking.rollback()
            assert await asyncio.wait_for(waiting, 10) == 0
        finally:
            await admin.close()

    # then: one line naming the URL parameter, its value now and one to try
    message = str(info.value)
    assert "no free connection within pool_timeout" in message
    assert "raise the store URL's pool_size (1 now: …/db?pool_size=2" in message
    assert "\n" not in message


async def _a_read_waiting_for_a_lock(store: Store, admin: Any) -> tuple[Any, asyncio.Task[int]]:
    """``admin`` locks the invocations table in a transaction (returned, to roll back) and a
    count of the store's waits for it on the server (the task, returned)."""
    locking = admin.transaction()
    await locking.start()
    await admin.execute("LOCK TABLE invocations IN ACCESS EXCLUSIVE MODE")
    waiting = asyncio.create_task(store.count_invocations(InvocationFilter(failed_only=False)))
    while not await _lock_waiters_on_tables(admin):  # noqa: ASYNC110 - the server's state
        await asyncio.sleep(0.05)
    return locking, waiting


async def _lock_waiters_on_tables(admin: Any) -> int:
    """Connections waiting for a table's lock in the test's database."""
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )


_LOST = re.compile(
    r"store \S+ is unavailable: (PostgreSQL at \S+ closed the connection \([^()]+\)|lost the "
    r"connection to PostgreSQL at \S+): the next call connects again; if this goes on, check "
    r"that the server is up and reachable"
)


async def _terminate(admin: Any, condition: str = "true") -> int:
    """End the backends of the test's database but ``admin``'s, as pg_terminate_backend does
    in a restart or a failover; how many."""
    return int(
        await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND {condition}"
        )
    )


async def test_a_connection_ended_under_a_call_is_one_line_with_what_the_server_said(
    postgres_url: str,
) -> None:
    # given: a read waiting for a lock another process holds
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        everything = InvocationFilter(failed_only=False)
        admin = await asyncpg.connect(postgres_url)
        try:
            locking, waiting = await _a_read_waiting_for_a_lock(store, admin)

            # when: the server ends the read's connection
            assert await _terminate(admin, "wait_event_type = 'Lock'") == 1
            with pytest.raises(StoreUnavailable) as info:
                await asyncio.wait_for(waiting, 10)
            await locking.rollback()
        finally:
            await admin.close()

        # then: one line with the server's reason and what to do, not asyncpg's account of it
        message = str(info.value)
        assert _LOST.fullmatch(message), message
        assert "closed the connection (terminating connection due to administrator command)" in (
            message
        )
        # and the next call does connect again
        assert await store.count_invocations(everything) == 0


async def test_connections_ended_while_busy_give_only_the_clear_line(postgres_url: str) -> None:
    # given: a store busy with many calls at once
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        everything = InvocationFilter(failed_only=False)
        said: list[str] = []
        stop = asyncio.Event()

        async def busy() -> None:
            while not stop.is_set():
                try:
                    await store.count_invocations(everything)
                except StoreUnavailable as exc:
                    said.append(str(exc))

        # when: the server ends its connections again and again (a connection ended between
        # two calls once read "cannot switch to state 11; another operation (2) is in
        # progress", asyncpg's words for a FATAL message that came in before the close)
        admin = await asyncpg.connect(postgres_url)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(20):
                    group.create_task(busy())
                for _ in range(15):
                    await asyncio.sleep(0.02)
                    await _terminate(admin)
                stop.set()
        finally:
            await admin.close()

    # then: every failure is the clear line
    assert said
    assert [line for line in said if not _LOST.fullmatch(line)] == []


async def test_the_recordset_insert_stores_what_sqlalchemy_would(postgres_url: str) -> None:
    # given: rows as the worker saves them (simulated records, odd text included), a store
    rows = insert_rows()
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
        read = sa.text("SELECT * FROM invocations ORDER BY key")

        # when: once through SQLAlchemy's many-rows INSERT, once as one JSON document
        stored = []
        for insert in (
            lambda conn, rows: set(conn.execute(store._insert_invocation, rows).scalars()),
            store._insert_invocations,
        ):
            async with store._write() as conn:
                await conn.execute(sa.text("DELETE FROM invocations"))
                new = await conn.run_sync(insert, rows)
                stored.append((new, (await conn.execute(read)).all()))

    # then: the same keys are new, and the stored rows are the same, column for column
    assert stored[0][0] == {values["key"] for values in rows}
    assert len(stored[0][1]) == len(rows)
    assert stored[0] == stored[1]


@contextlib.asynccontextmanager
async def _a_user(postgres_url: str, options: str = "", *then: str) -> AsyncIterator[str]:
    """A user of the test's own (``CREATE ROLE … LOGIN {options}``), then ``then`` run in the
    test's database (``{user}`` naming it): the store URL as that user. Dropped at the end."""
    user = f"ld_user_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE ROLE "{user}" LOGIN {options}')
        for statement in then:
            await admin.execute(statement.format(user=f'"{user}"'))
        parts = urlsplit(postgres_url)
        yield parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 5432}").geturl()
    finally:
        await admin.execute(f'DROP OWNED BY "{user}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        await admin.close()


_MAY_WRITE = (
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {user}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {user}",
)


async def test_a_user_who_may_not_create_tables_is_told_to_migrate_as_the_owner(
    postgres_url: str,
) -> None:
    # given: a user of an empty database who may not create in its schema (a DBA's setup: the
    # tables are the owner's, the worker's user only reads and writes them)
    revoke = "REVOKE CREATE ON SCHEMA public FROM PUBLIC"
    async with _a_user(postgres_url, "", revoke) as url, Store.from_url(url) as store:
        # when: it migrates (as `run` does at start, and `migrate`)
        with pytest.raises(StoreMisconfigured) as info:
            await store.migrate()

    # then: one line naming what it may not do and the command to migrate as the owner, not
    # the grants of a user whose tables exist
    message = str(info.value)
    user = urlsplit(url).username
    assert "permission denied for schema public" in message
    assert f"{user} may not create or alter the store's tables" in message
    host = f"{urlsplit(url).hostname}:{urlsplit(url).port or 5432}"
    database = url.rsplit("/", 1)[1]
    migrate = f"LAMBDA_DESTINATIONS_STORE=postgresql://OWNER@{host}/{database} lambda-destinations"
    assert f"{migrate} migrate" in message
    assert "\n" not in message


async def test_a_statement_timeout_of_the_database_cuts_no_migration(postgres_url: str) -> None:
    # given: a DBA's statement_timeout for the database, and another process migrating,
    # holding the lock for longer than that
    database = postgres_url.rsplit("/", 1)[1]
    holder = await asyncpg.connect(postgres_url)
    try:
        await holder.execute(f"ALTER DATABASE \"{database}\" SET statement_timeout = '200ms'")
        migrating = holder.transaction()
        await migrating.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        async with Store.from_url(postgres_url) as store:
            # when: this one migrates, and waits past the timeout
            waiting = asyncio.create_task(store.migrate())
            while not await _lock_waiters(holder):  # noqa: ASYNC110 - another server's state
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # five times the timeout
            await migrating.rollback()
            applied = await waiting
    finally:
        await holder.close()

    # then: the wait (and the migration) ran to its end, as the README says migrations do
    assert applied == [m.version for m in MIGRATIONS]


async def test_a_statement_the_servers_timeout_cancels_is_one_line_naming_it(
    postgres_url: str,
) -> None:
    # given: a migrated store whose database cancels statements after 200 ms, and a read that
    # waits for a lock longer than that
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f"ALTER DATABASE \"{database}\" SET statement_timeout = '200ms'")
        async with Store.from_url(postgres_url) as store:
            locking = admin.transaction()
            await locking.start()
            await admin.execute("LOCK TABLE invocations IN ACCESS EXCLUSIVE MODE")
            # when
            with pytest.raises(StoreUnavailable) as info:
                await store.count_invocations(InvocationFilter(failed_only=False))
            await locking.rollback()
    finally:
        await admin.close()

    # then: unavailable (its message retried), in one line naming the setting, not "reachable"
    message = str(info.value)
    assert "canceling statement due to statement timeout" in message
    assert "raise that timeout for postgres (ALTER ROLE … SET statement_timeout)" in message
    assert "reachable" not in message
    assert "\n" not in message


async def test_writes_come_back_when_the_database_takes_them_again(
    postgres_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: a store whose database took no writes when its connection began (as a standby
    # before a failover, or default_transaction_read_only), refusing a save
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        async with Store.from_url(postgres_url) as store:
            row = make_row()
            with pytest.raises(StoreUnavailable, match="read-only transaction"):
                await store.save_invocation(row, make_delivery(row), complete_handler="persist")

            # when: the database takes writes again
            await admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')

            # then: the next save is stored (the read-only session was not kept in the pool)
            assert await store.save_invocation(row, make_delivery(row), complete_handler="persist")
            assert await store.completed_handlers(row.key) == {"persist"}
    finally:
        await admin.close()


async def test_too_many_connections_is_one_line_naming_pool_size(postgres_url: str) -> None:
    # given: a user the server lets have no more connections (its CONNECTION LIMIT reached by
    # other replicas)
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    async with _a_user(postgres_url, "CONNECTION LIMIT 0", *_MAY_WRITE) as url:
        # when
        with pytest.raises(StoreUnavailable) as info:
            async with Store.from_url(f"{url}?pool_size=8"):
                pass

    # then: unavailable, not misconfigured (other replicas may stop), in one line naming the
    # URL's pool_size and the limits
    assert not isinstance(info.value, StoreMisconfigured)
    message = str(info.value)
    assert "too many connections for role" in message
    assert "each process keeps up to pool_size connections open (8 now)" in message
    assert "lower the store URL's pool_size (…/db?pool_size=4)" in message
    assert "CONNECTION LIMIT" in message
    assert "reachable" not in message
    assert "\n" not in message


async def test_behind_pgbouncer_with_pgbouncer_true_replicas_work(
    pgbouncer_url: str, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    # given: two replicas through PgBouncer in transaction pooling mode, one server
    # connection between them, the URL saying so
    url = f"{pgbouncer_url}?pgbouncer=true"
    async with Store.from_url(url) as one, Store.from_url(url) as other:
        # when: both migrate, save, claim and read at once
        applied = await asyncio.gather(one.migrate(), other.migrate())
        assert sorted(applied[0] + applied[1]) == [m.version for m in MIGRATIONS]
        rows = [make_row() for _ in range(20)]
        saved = await asyncio.gather(
            *(
                (one if n % 2 else other).save_invocation(
                    row, make_delivery(row), complete_handler="persist"
                )
                for n, row in enumerate(rows)
            )
        )
        claims = await asyncio.gather(
            one.claim_handler(rows[0].key, "sms", "one", ttl=60),
            other.claim_handler(rows[0].key, "sms", "other", ttl=60),
        )
        listed = await other.list_invocations(InvocationFilter(failed_only=False))
        late = make_row()
        waiting = asyncio.create_task(one.wait_for_invocation(late.request_id, timeout=30))
        await other.save_invocation(late, make_delivery(late), complete_handler="persist")
        arrived = await waiting

    # then: every statement ran where it was parsed: each row stored once, one claim won
    assert saved == [True] * 20
    assert sorted(claims) == [False, True]
    assert {row.key for row in listed} == {row.key for row in rows}
    assert arrived is not None
    assert arrived.key == late.key


async def test_a_pooled_connection_that_stopped_answering_fails_the_call_within_the_timeouts(
    postgres_url: str,
) -> None:
    # given: a store whose pool holds a connection made through a proxy, which then stops
    # passing bytes (a server that hangs, a firewall dropping an idle connection's packets)
    from freezable_proxy import FreezableProxy

    parts = urlsplit(postgres_url)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    with proxy.running():
        through = postgres_url.replace(f":{parts.port or 5432}/", f":{proxy.port}/")
        async with Store.from_url(through, connect_timeout=2.0, command_timeout=60.0) as store:
            await store.migrate()
            await store.list_invocations(InvocationFilter())
            proxy.frozen.set()
            # when: the next call takes that connection from the pool
            loop = asyncio.get_running_loop()
            began = loop.time()
            with pytest.raises(StoreUnavailable):
                await store.list_invocations(InvocationFilter())
            took = loop.time() - began
            proxy.frozen.clear()
            # then: it failed within the ping's bound and one connect's, not command_timeout's
            # (60 s, and a console page or a worker's save held as long); the store is
            # usable again once the server answers
            assert took < 10, took
            assert await store.list_invocations(InvocationFilter()) == []


async def test_a_server_that_takes_the_connection_and_never_answers_is_said_so_with_the_bound(
    postgres_url: str,
) -> None:
    # given: a proxy that accepts the connection and passes no byte
    from freezable_proxy import FreezableProxy

    parts = urlsplit(postgres_url)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.frozen.set()
    with proxy.running():
        through = postgres_url.replace(f":{parts.port or 5432}/", f":{proxy.port}/")
        store = Store.from_url(through, connect_timeout=1.5, command_timeout=60.0)
        # when: the store is opened
        with pytest.raises(StoreUnavailable) as failed:
            await store.open()
    # then: the line says the server did not answer, and within what; before: "TimeoutError"
    assert (
        f"PostgreSQL at 127.0.0.1:{proxy.port} did not answer in time (1.5 s to connect, "
        "60 s for a statement): check that PostgreSQL is running" in str(failed.value)
    ), str(failed.value)


async def test_a_search_path_of_a_schema_the_user_may_not_use_is_named_not_missing_tables(
    postgres_url: str,
) -> None:
    # given: a schema of the store's own (a DBA's setup), and a user whose search_path names
    # it, granted the tables' rights but not USAGE on the schema
    schema = f"ld_schema_{uuid.uuid4().hex[:8]}"
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        setup = (
            f'ALTER ROLE {{user}} IN DATABASE "{database}" SET search_path = "{schema}"',
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {{user}}',
        )
        # when: it reads the store's schema (doctor, every command) and migrates (`run`)
        async with _a_user(postgres_url, "", *setup) as url, Store.from_url(url) as store:
            with pytest.raises(StoreMisconfigured) as reading:
                await store.pending_migrations()
            with pytest.raises(StoreMisconfigured) as migrating:
                await store.migrate()
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()

    # then: one line naming the schema it may not use and the GRANT, not "no tables yet"
    user = urlsplit(url).username
    for info in (reading, migrating):
        message = str(info.value)
        assert f"GRANT USAGE ON SCHEMA {schema} TO {user}" in message, message
        assert "no tables yet" not in message
        assert "\n" not in message


async def test_the_pooler_check_fits_in_two_connections_of_a_user(postgres_url: str) -> None:
    # given: a migrated store, and a user the DBA allows two connections (a command's one
    # and another)
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    async with (
        _a_user(postgres_url, "CONNECTION LIMIT 2", *_MAY_WRITE) as url,
        Store.from_url(url) as store,
    ):
        # when: doctor's store checks run as that user, the pooler's last
        await store.ping()
        pending = await store.pending_migrations()
        pooled = await store.pooler_problem()

    # then: they answer, and no pooler is seen, rather than "too many connections"
    assert pending == []
    assert pooled is None
