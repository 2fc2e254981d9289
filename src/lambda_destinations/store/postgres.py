"""The store shared by many replicas: PostgreSQL, through asyncpg.

Replicas compete for the same messages, so the two things that must hold across processes are
done by the database: claims are one atomic ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
timed by the server's clock (replicas' clocks may disagree), and migrations run under a
transaction-scoped advisory lock, so that replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import getpass
import os
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import await_

from lambda_destinations._text import not_utf8
from lambda_destinations._urls import ascii_domain
from lambda_destinations.errors import StoreMisconfigured, StoreUnavailable
from lambda_destinations.store._access import StoreConnection, StoreEngine
from lambda_destinations.store._glob import Glob
from lambda_destinations.store._listen import InvocationListener
from lambda_destinations.store._sql import (
    OLDER_SCHEMA,
    SaveOutcome,
    SqlStore,
    _Save,
    _status_as_saved,
    first_of_each_key,
    parse_store_url,
    url_error,
)
from lambda_destinations.store._tables import invocations, metadata
from lambda_destinations.store._types import UTCDateTime, load_store_json, store_jsonb
from lambda_destinations.store.base import InvocationRow
from lambda_destinations.store.migrations import Migration

# pg_advisory_xact_lock key for migrations: "LDMIGRAT" in ASCII, so it is recognisable in
# pg_locks and unlikely to collide with another application's locks.
MIGRATION_LOCK_KEY = 0x4C44_4D49_4752_4154

log = structlog.get_logger("lambda_destinations.store")

# SQLSTATE classes meaning the server cannot serve us now: connection exception, invalid
# authorization, invalid catalog name (no such database), insufficient resources (too many
# connections, disk full), operator intervention (shutdown, recovery, cancelled by admin).
_UNAVAILABLE_CLASSES = ("08", "28", "3D", "53", "57")
_UNDEFINED_TABLE = "42P01"
# Permission denied: no retry helps, and no record is at fault; the user needs grants.
_INSUFFICIENT_PRIVILEGE = "42501"
# A read-only transaction: a standby, or a database set default_transaction_read_only.
_READ_ONLY = "25006"
_UNDEFINED_COLUMN = "42703"
# What asyncpg raises when the connection ended under a call.
_CONNECTION_DOES_NOT_EXIST = "08003"
# The connection's prepared statement is missing (26000), or one of its name is there
# (42P05): a pooler in transaction mode gave the statement another server connection.
_PREPARED_STATEMENT_LOST = ("26000", "42P05")
# A statement the server cancelled: its statement_timeout, or pg_cancel_backend.
_QUERY_CANCELED = "57014"
# Too many connections: the role's or the database's CONNECTION LIMIT, or max_connections.
_TOO_MANY_CONNECTIONS = "53300"
# No such database; no such user, or a wrong password (or pg_hba.conf refuses it).
_NO_DATABASE = "3D000"
# Object not in prerequisite state: sent as FATAL at connect, a database that takes no
# connections (ALTER DATABASE … ALLOW_CONNECTIONS false, or one being made a template).
_NOT_ACCEPTING = "55000"
_AUTHENTICATION = ("28000", "28P01")


# The privileges the worker, the commands and the console need on each table of the store in
# the current schema, and on the sequences that number their rows (serial ids), that the
# connected user lacks.
_MISSING_GRANTS = sa.text(
    """
    SELECT c.relname, p.privilege
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
    CROSS JOIN unnest(CASE c.relkind WHEN 'S' THEN ARRAY['USAGE']
        ELSE ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE'] END) AS p(privilege)
    WHERE (c.relkind IN ('r', 'p') AND c.relname = ANY(:tables)
           OR c.relkind = 'S' AND EXISTS (
               SELECT 1 FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
               WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND t.relname = ANY(:tables)))
      AND NOT (CASE c.relkind WHEN 'S' THEN has_sequence_privilege(c.oid, p.privilege)
               ELSE has_table_privilege(c.oid, p.privilege) END)
    """
)
_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "USAGE")

_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# Connections each process keeps open (the URL's pool_size). The most is concurrency's (1000
# messages at once): a pool larger than that would sit idle, and a number past it is more
# likely a typo (a zero too many) than a plan, one that would let a replica take every
# connection of a server (PostgreSQL's max_connections is 100 by default).
DEFAULT_POOL_SIZE = 20
MOST_POOL_SIZE = 1000


def _closing_briefly(engine: AsyncEngine) -> AsyncEngine:
    """``engine``, whose pool closes each connection as it terminates one: a graceful close
    that waits at most 2 s for the server, then drops the connection. asyncpg's plain close
    waits for the server's answer for ever: a database that stopped answering held
    ``dispose()``, and the process, after its work was done."""
    dialect: Any = engine.sync_engine.dialect
    dialect.do_close = dialect.do_terminate
    return engine


def _pinging_briefly(engine: AsyncEngine, seconds: float) -> AsyncEngine:
    """``engine``, whose pool's pre-ping waits ``seconds`` (connect_timeout's) for the server's
    answer, then drops the connection, which the pool replaces. The ping waited for
    command_timeout (60 s) on a connection that stopped answering (a hung server, a firewall
    dropping an idle connection's packets): every call, a console page or a save, held that
    long before the error, past a reverse proxy's 60 s."""
    dialect: Any = engine.sync_engine.dialect

    async def ping(connection: Any) -> None:
        async with asyncio.timeout(seconds):
            await connection._async_ping()

    def do_ping(connection: Any) -> bool:
        try:
            await_(ping(connection))
        except TimeoutError as exc:
            connection._connection.terminate()  # a disconnect: the pool connects anew
            connection._handle_exception(exc)
        except Exception as exc:  # noqa: BLE001 - as SQLAlchemy's own ping: translated
            connection._handle_exception(exc)
        return True

    dialect.do_ping = do_ping
    return engine


def _read_only_sessions_replaced(engine: AsyncEngine) -> AsyncEngine:
    """``engine``, whose pool replaces its connections when one is refused a write as read
    only: the session is (a standby, or default_transaction_read_only set when it began), and
    stays so. Kept, it refused every write after a failover made the address the primary's,
    or the setting was taken off, until the process restarted."""

    @sa.event.listens_for(engine.sync_engine, "handle_error")
    def _read_only(context: sa.engine.ExceptionContext) -> None:
        if _answered(context.original_exception)[1] == _READ_ONLY:
            context.is_disconnect = True  # SQLAlchemy invalidates the pool's connections

    return engine


def _url_options(url: str, query: dict[str, Any]) -> tuple[dict[str, str], int | None, bool]:
    """The URL's parameters: those asyncpg is given (``sslmode``, or ``ssl``), the pool's
    ``pool_size`` (None if not given) and ``pgbouncer``, checked here so that a typo is one
    line at start, not a TypeError deep in the driver."""
    # SQLAlchemy drops a parameter given no value (`?pool_size=`): read them off the URL, so
    # that one is refused, not taken for the default.
    given = parse_qsl(url.rpartition("@")[2].partition("?")[2], keep_blank_values=True)
    blank = [name for name, value in given if not value]
    query = {**dict.fromkeys(blank, ""), **query}
    unknown = sorted(set(query) - {"sslmode", "ssl", "pool_size", "pgbouncer"})
    if unknown:
        # A schema by the URL: a pooler drops or refuses what a connection asks at start, and
        # the tables would be made in another schema; the user's own setting holds anywhere.
        schema = (
            ": for a schema other than public, set the user's search_path (ALTER ROLE … IN "
            "DATABASE … SET search_path = …)"
            if unknown[0] in ("search_path", "options", "schema", "currentSchema")
            else ""
        )
        raise url_error(
            url,
            f"unknown parameter {unknown[0]!r}: the URL takes only sslmode "
            f"({', '.join(_SSL_MODES)}), pool_size and pgbouncer{schema}",
        )
    if blank and not unknown:
        raise url_error(url, f"{blank[0]} has no value: give {blank[0]}=… or leave it out")
    pool_size = _pool_size(url, query.pop("pool_size", None))
    pgbouncer = _pgbouncer(url, query.pop("pgbouncer", "false"))
    # Given twice, the value is a tuple: of two modes, say, each of which it takes.
    if len(query) > 1 or any(not isinstance(value, str) for value in query.values()):
        raise url_error(url, "give sslmode once")
    if not query:
        return {}, pool_size, pgbouncer
    value = next(iter(query.values()))
    if value not in _SSL_MODES:
        raise url_error(url, f"sslmode must be one of {', '.join(_SSL_MODES)}")
    return {"ssl": value}, pool_size, pgbouncer


def _pgbouncer(url: str, value: str | tuple[str, ...]) -> bool:
    """The URL's ``pgbouncer``: whether a pooler in transaction mode stands before the server."""
    if value in ("true", "false"):
        return value == "true"
    raise url_error(
        url,
        "pgbouncer must be true (PgBouncer, or another pooler, in transaction pooling mode "
        "between this process and the server) or false (the default)",
    )


def _pool_size(url: str, value: str | tuple[str, ...] | None) -> int | None:
    """The URL's ``pool_size`` as a number (SQLAlchemy gives a repeated one as a tuple)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise url_error(url, "give pool_size once")
    # The value is not repeated: the URL's query values are masked in every line.
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MOST_POOL_SIZE:
        return int(value)
    raise url_error(
        url,
        f"pool_size must be a whole number from 1 to {MOST_POOL_SIZE} (the connections "
        f"each process keeps open; {DEFAULT_POOL_SIZE} if not given)",
    )


# The sequence of a serial column, as a quoted name (the ids `store copy` inserts move none on).
_SEQUENCE = sa.text("SELECT pg_get_serial_sequence(:table, :column)")
_RESERVE = sa.text("SELECT setval(pg_get_serial_sequence(:table, :column), :last)")


def _serial(table: sa.Table, column: sa.Column[Any]) -> dict[str, str]:
    return {"table": table.name, "column": column.name}


class _RecordsetInsert:
    """The save's INSERT of a batch's new rows as one statement of one bound value: the rows as
    one JSON document, read back by ``jsonb_to_recordset``.

    SQLAlchemy's many-rows INSERT binds every value of every row (about 27 a row, 400 for a
    batch of 15), each processed in Python and encoded by asyncpg, in a statement whose text,
    and so whose plan, is new for each number of rows. Here one ``orjson.dumps`` writes the
    batch, and the statement is the same for any batch (prepared once per connection). The
    values go in as SQLAlchemy's types would put them: JSON by :func:`store_jsonb` (what the
    engine's serializer is; a JSON null is SQL NULL in the recordset, as ``none_as_null``
    has it), datetimes in UTC (a naive one refused), and the status by the same expression as
    the one-row INSERT's (``_status_as_saved``).
    """

    def __init__(self, names: Sequence[str], dialect: sa.Dialect) -> None:
        """``names``: the keys of the rows (``insert_values``'), each row holding them all."""
        self.names = tuple(names)
        columns = [name for name in names if name in invocations.c]
        types = {name: invocations.c[name].type for name in columns}
        self._json = [name for name in columns if isinstance(types[name], sa.JSON)]
        self._times = [name for name in columns if isinstance(types[name], UTCDateTime)]
        rows = (
            sa.func.jsonb_to_recordset(sa.bindparam("rows", type_=JSONB))
            .table_valued(*[sa.column(name, self._type(types.get(name))) for name in names])
            .render_derived(name="u", with_types=True)
        )
        status = _status_as_saved(rows.c.b_replay_of, rows.c.b_status)
        statement = (
            postgresql_dml.insert(invocations)
            .from_select([*columns, "status"], sa.select(*[rows.c[n] for n in columns], status))
            .on_conflict_do_nothing(index_elements=[invocations.c.key])
            .returning(invocations.c.key)
        )
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        # The rows' document, and the statement's own values (the literal 'replay', which
        # SQLAlchemy binds too), in the statement's order.
        self._order = [
            None if name == "rows" else compiled.binds[name].effective_value
            for name in compiled.positiontup or ()
        ]

    @staticmethod
    def _type(column_type: sa.types.TypeEngine[Any] | None) -> sa.types.TypeEngine[Any]:
        """A recordset column's type: the table column's, as PostgreSQL names it."""
        if column_type is None or isinstance(column_type, sa.String):
            return sa.Text()  # b_status, b_replay_of; VARCHAR(n) and the enums' text
        if isinstance(column_type, sa.JSON):
            return JSONB()
        if isinstance(column_type, UTCDateTime):
            return sa.DateTime(timezone=True)
        return column_type

    def params(self, rows: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
        """The statement's values: ``rows`` as one JSON document (a value missing from a row
        is NULL), and its own."""
        listed = []
        for row in rows:
            values = dict(row)
            for name in self._json:
                if (value := values.get(name)) is not None:
                    values[name] = orjson.Fragment(store_jsonb(value))
            for name in self._times:
                if (value := values.get(name)) is not None:
                    values[name] = UTCDateTime.to_utc(value)
            listed.append(values)
        document = orjson.dumps(listed).decode()
        return tuple(document if value is None else value for value in self._order)


class PostgresStore(SqlStore):
    """A store in a PostgreSQL database (``postgresql://user:password@host:5432/dbname``).

    Options: ``pool_size``/``max_overflow`` (connections per process; the URL's ``pool_size``
    parameter, if given, is used instead of the argument), ``connect_timeout`` and
    ``pool_timeout`` (seconds to wait for a connection before StoreUnavailable),
    ``command_timeout`` (seconds a statement may run).
    """

    def __init__(
        self,
        url: str,
        *,
        # Every connection stays open once made: SQLAlchemy closes a connection past
        # pool_size as soon as it is given back, and a worker whose handlers keep the pool
        # full opened (and PostgreSQL forked a backend for) a new one every few statements.
        pool_size: int = DEFAULT_POOL_SIZE,
        max_overflow: int = 0,
        connect_timeout: float = 10.0,
        pool_timeout: float = 30.0,
        command_timeout: float | None = 60.0,
        group_commit: bool = True,
        echo: bool = False,
        create: bool = True,  # SQLite's option: a PostgreSQL database is never created
    ) -> None:
        parsed = parse_store_url(url, "postgresql://user@host:5432/dbname")
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise url_error(url, "use postgresql://user@host:5432/dbname")
        if not parsed.database:
            raise url_error(url, "name the database: postgresql://user@host:5432/dbname")
        if not _host_name(parsed.host or ""):
            raise url_error(
                url, f"{parsed.host!r} is not a host name: use postgresql://user@host:5432/dbname"
            )
        if (where := not_utf8(url)) is not None:  # asyncpg's encoder raised a traceback
            raise url_error(url, f"it is not UTF-8 text ({where}): write it in UTF-8")
        _refuse_nameless_user(url, parsed)
        connect_query, url_pool_size, self._pgbouncer = _url_options(url, dict(parsed.query))
        # The host in Punycode by IDNA 2008 as every other host here: given as Unicode, the
        # resolver took it by Python's IDNA 2003 codec (faß.example as fass.example, another
        # domain).
        host = ascii_domain(parsed.host) if parsed.host else parsed.host
        self._sa_url = parsed.set(drivername="postgresql+asyncpg", host=host, query=connect_query)
        self._pool_size = url_pool_size or pool_size
        connect_args = self._connect_args(connect_timeout, command_timeout)
        self._engine_options: dict[str, Any] = {
            "echo": echo,
            "hide_parameters": True,  # a record's payloads never reach an error or the echo
            # Reads and single-statement writes need no BEGIN/COMMIT round trips, and the
            # pre-ping is one round trip instead of three (asyncpg's adapter wraps it in a
            # transaction otherwise). Several statements use _transaction_engine. Behind a
            # transaction-mode pooler every statement is in a transaction: the adapter parses
            # it and runs it in two round trips, which must reach the same server connection.
            "isolation_level": "READ COMMITTED" if self._pgbouncer else "AUTOCOMMIT",
            "json_serializer": store_jsonb,
            "json_deserializer": load_store_json,
            # A replica outlives database restarts and failovers: test each connection as it
            # leaves the pool, so a stale one is replaced instead of failing a message.
            "pool_pre_ping": True,
            "pool_size": self._pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
            "connect_args": connect_args,
        }
        self._insert_statement: _RecordsetInsert | None = None
        super().__init__(url, group_commit=group_commit)
        self._listener = InvocationListener(self._listening_engine)
        self._told_waiting = False  # for another process's migration, see _lock_migrations

    def dump_command(self) -> str | None:
        # libpq's URL: its sslmode, none of the pool's parameters (pg_dump refuses them).
        ssl = self._sa_url.query.get("ssl")
        url = self._sa_url.set(drivername="postgresql", query={"sslmode": ssl} if ssl else {})
        return (
            "pg_dump --format=custom --file=lambda-destinations.dump "
            f"'{url.render_as_string(hide_password=True)}'"
        )

    def _connect_args(self, timeout: float, command_timeout: float | None) -> dict[str, Any]:
        """What asyncpg is given for each connection."""
        connect_args: dict[str, Any] = {
            "timeout": timeout,
            "command_timeout": command_timeout,
            "server_settings": {"application_name": "lambda-destinations"},
        }
        if self._pgbouncer:
            # A transaction-mode pooler gives each transaction whichever server connection is
            # free: a statement prepared (named, and cached) on one is missing on the next, or
            # another client's of the same name is run instead. No cache (asyncpg's, and
            # SQLAlchemy's adapter's) makes each statement unnamed, parsed and run in its
            # transaction (see the isolation level).
            connect_args |= {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
        return connect_args

    def _listening_engine(self) -> AsyncEngine:
        engine = self.engine  # raises if the store is not open
        assert isinstance(engine, AsyncEngine)  # _create_engine's
        return engine

    async def close(self) -> None:
        await self._listener.close()
        await super().close()

    async def wait_for_invocation(
        self,
        request_id: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the row is read once more at the end
    ) -> InvocationRow | None:
        """Read the row once, then wait for the database's NOTIFY of it (migration 4): no
        query runs while waiting. Notifications come after the commit, so the read they wake
        sees the row; LISTEN is in place before every read, so none falls in a gap. A database
        without the trigger (workers older than this reader) is read with the backoff."""
        if self._pgbouncer:  # a LISTEN holds no server connection of a pooler's: read
            return await super().wait_for_invocation(request_id, timeout=timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        async with self._listener.watch(request_id) as arrived:
            while True:
                async with self._errors():
                    announced = await self._listener.listen()
                if not announced:  # no trigger (an older schema): read the row as SQLite does
                    left = max(deadline - loop.time(), 0.0)
                    return await super().wait_for_invocation(request_id, timeout=left)
                done, row = await self._read_or_wait(request_id, arrived, deadline)
                if done:
                    return row

    async def _save_batch(self, saves: Sequence[_Save]) -> list[bool]:
        """``_save_on`` in two parts: two round trips for the usual batch, not four.

        Each round trip waits for the event loop, which the worker keeps busy: in a drain on
        LocalStack a batch of about 15 saves took 12-16 ms (median) with the pool's pre-ping,
        BEGIN, the INSERT and COMMIT, and 9.5-13 ms without BEGIN and COMMIT. So the new rows
        go in as one ``INSERT ... ON CONFLICT DO NOTHING`` on the pool's autocommit connection,
        atomic by itself; what is left (the delivery and completion rows of keys stored
        already, the delivery rows new rows do not hold), usually nothing, follows in a
        transaction of its own. Should that fail, the new rows stay stored: when their
        messages come back (or the batch is run again one save at a time) they count as
        duplicates, as after a crash between a commit and its delete. Nothing is lost or run
        twice.
        """
        firsts = first_of_each_key(saves)
        async with self._write() as conn:
            new_keys = await conn.run_sync(
                self._insert_invocations, [save.invocation for save in firsts.values()]
            )
        outcome = SaveOutcome.of(saves, firsts, new_keys)
        if outcome.others or outcome.unfolded:
            async with self._write(atomic=True) as conn:
                await conn.run_sync(self._save_others, outcome.others, outcome.unfolded)
        return outcome.new

    def _insert_invocations(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the rows (one per key) but those whose key exists; return the new keys: as
        one JSON document (:class:`_RecordsetInsert`, made for the rows' keys)."""
        if not rows:
            return set()
        statement = self._insert_statement
        if statement is None or statement.names != tuple(rows[0]):
            statement = self._insert_statement = _RecordsetInsert(tuple(rows[0]), conn.dialect)
        try:
            params = statement.params(rows)
        except (TypeError, ValueError) as exc:  # a value its type refused (a naive datetime)
            # As SQLAlchemy would raise it, so that _errors() sees what it knows.
            raise sa.exc.StatementError(str(exc), statement.sql, None, exc) from exc
        return set(conn.exec_driver_sql(statement.sql, params).scalars())

    _overlapping_writers = True  # READ COMMITTED: see LedgerMixin

    def _insert(self, table: sa.Table) -> postgresql_dml.Insert:
        return postgresql_dml.insert(table)

    def _match_glob(self, column: sa.ColumnElement[Any], glob: Glob) -> sa.ColumnElement[bool]:
        like = column.like(glob.like(), escape="\\")
        if not glob.has_sets:
            return like
        # LIKE has no bracket expressions: it narrows, the (automaton, non-backtracking)
        # regular expression decides.
        return sa.and_(like, column.regexp_match(glob.regex()))

    async def _create_engine(self) -> AsyncEngine:
        return self._new_engine()

    def _new_engine(self, **options: Any) -> AsyncEngine:
        """An engine of the URL, ``options`` over the store's: its pool's connections closed and
        pinged within bounds, and replaced once refused a write as read only."""
        engine = _closing_briefly(
            create_async_engine(self._sa_url, **{**self._engine_options, **options})
        )
        ping_seconds = self._engine_options["connect_args"]["timeout"]
        return _read_only_sessions_replaced(_pinging_briefly(engine, ping_seconds))

    def _transaction_engine(self, engine: StoreEngine) -> StoreEngine:
        assert isinstance(engine, AsyncEngine)
        return engine.execution_options(isolation_level="READ COMMITTED")

    @contextlib.asynccontextmanager
    async def _migration_engine(self) -> AsyncIterator[StoreEngine]:
        """One connection without ``command_timeout``: a version's statements over a large
        table, and a replica's wait for another's migration, take as long as they take (cut
        at 60 s, the migration was rolled back and tried again for ever, and the wait was
        reported as PostgreSQL unreachable)."""
        connect_args = {**self._engine_options["connect_args"], "command_timeout": None}
        engine = self._new_engine(pool_size=1, connect_args=connect_args)
        try:
            yield self._transaction_engine(engine)
        finally:
            await engine.dispose()

    async def _apply(self, engine: StoreEngine, migration: Migration) -> bool:
        try:
            return await super()._apply(engine, migration)
        except StoreMisconfigured as exc:
            # A user that may read and write the tables, not create or alter them: the grants
            # the worker needs are not the fix, a migration by the schema's owner is.
            orig, sqlstate = _answered(exc.__cause__ or exc)
            if sqlstate != _INSUFFICIENT_PRIVILEGE:
                raise
            problem = (
                f"{_first_line(orig)}: {self._user} may not create or alter the store's "
                "tables: migrate as the user that owns the schema and the tables "
                f"(LAMBDA_DESTINATIONS_STORE=postgresql://OWNER@{self._address}/"
                f"{self._sa_url.database} lambda-destinations migrate); {self._user} then needs "
                "only SELECT, INSERT, UPDATE and DELETE on them"
            )
            raise StoreMisconfigured.at(self.display_url, problem) from exc.__cause__

    async def _applied_versions(self, conn: StoreConnection) -> set[int]:
        applied = await super()._applied_versions(conn)
        if applied:
            return applied
        # No tables seen: a search_path naming no schema the user may use hides them (and
        # leaves a migration nowhere to create them), which "no tables yet" would not say.
        usable = sa.text("SELECT current_schema(), current_setting('search_path')")
        schema, search_path = (await conn.execute(usable)).one()
        if schema is None:
            problem = (
                f"the search_path of {self._user} ({search_path}) names no schema it may use: "
                f"GRANT USAGE ON SCHEMA {search_path} TO {self._user} (and CREATE to the user "
                "that migrates), or set its search_path (ALTER ROLE … IN DATABASE "
                f"{self._sa_url.database} SET search_path = …)"
            )
            raise StoreMisconfigured.at(self.display_url, problem)
        return applied

    async def _last_id(
        self, conn: StoreConnection, table: sa.Table, column: sa.Column[Any]
    ) -> int | None:
        highest = await super()._last_id(conn, table, column)
        # The sequence remembers the ids of rows deleted since.
        sequence = (await conn.execute(_SEQUENCE, _serial(table, column))).scalar()
        if sequence is not None:
            state = sa.text(f"SELECT last_value, is_called FROM {sequence}")
            async with self._sequence_grants():
                given = (await conn.execute(state)).one()
            if given.is_called:
                highest = max(highest or 0, int(given.last_value))
        return highest

    async def _reserve_ids(
        self, conn: StoreConnection, table: sa.Table, column: sa.Column[Any], last: int
    ) -> None:
        # Never back: past the target's own rows and ids too.
        last = max(last, await self._last_id(conn, table, column) or 0)
        async with self._sequence_grants():
            await conn.execute(_RESERVE, {**_serial(table, column), "last": last})

    @contextlib.asynccontextmanager
    async def _sequence_grants(self) -> AsyncIterator[None]:
        """A sequence ``store copy`` may not read or move, as the grants that let it: the
        worker's (USAGE) are not enough, and the line for a table's privileges named them."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            orig, sqlstate = _answered(exc)
            if sqlstate != _INSUFFICIENT_PRIVILEGE:
                raise
            schema = "<the store's schema>"
            with contextlib.suppress(StoreUnavailable):
                schema = await self.schema() or schema
            user = self._sa_url.username
            problem = (
                f"{_first_line(orig)}: store copy reads the id sequences and moves them past "
                "the ids it copies, which takes SELECT and UPDATE on them (the worker needs only "
                "USAGE): have their owner run GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "
                f"{schema} TO {_quoted(user) if user else 'the user'}, or copy as the owner; "
                "then run the copy again with --skip-existing"
            )
            raise StoreMisconfigured.at(self.display_url, problem) from None

    async def _lock_migrations(self, conn: StoreConnection) -> None:
        # A migration has no time limit (see _migration_engine), a DBA's statement_timeout or
        # lock_timeout for the user neither: cut, a version over a large table was rolled
        # back and tried again for ever. For this transaction only.
        await conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        await conn.execute(sa.text("SET LOCAL lock_timeout = 0"))
        # Released by the transaction's end; a second replica waits here, then finds the
        # version recorded and skips it.
        taken = sa.select(sa.func.pg_try_advisory_xact_lock(MIGRATION_LOCK_KEY))
        if (await conn.execute(taken)).scalar():
            return
        if not self._told_waiting:  # once: the wait may come again for each version
            self._told_waiting = True
            log.info(
                "waiting for another process to finish migrating the store",
                store=self.display_url,
            )
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))

    def _lease_clock(self) -> tuple[sa.ColumnElement[dt.datetime], sa.ColumnElement[dt.datetime]]:
        now = sa.func.now(type_=UTCDateTime())
        return now, now + sa.bindparam("ttl", type_=sa.Interval())

    def _hour_of(self, moment: sa.ColumnElement[dt.datetime]) -> sa.ColumnElement[Any]:
        # In UTC, not the session's zone: a zone half an hour off would split UTC's hours.
        return sa.func.date_trunc("hour", sa.func.timezone("UTC", moment))

    def _lease_params(self, ttl: float) -> dict[str, Any]:
        return {"ttl": dt.timedelta(seconds=ttl)}

    @property
    def _address(self) -> str:
        """``host:port`` of the server the URL names; an IPv6 address in its brackets, as a
        URL has it (``[::1]:5432``)."""
        host = self._sa_url.host or "localhost"
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self._sa_url.port or 5432}"

    @property
    def _user(self) -> str:
        """The user the URL connects as, for the lines that say what it may not do."""
        return self._sa_url.username or "the store's user"

    async def pooler_problem(self) -> str | None:
        """A pooler in transaction mode before the server, without ``pgbouncer=true``: two
        connections open at once that are given the same server process, which no server
        does. A pooler with a free server connection to spare for the second may go unseen
        (never the other way round); what it does then is said by the line of the error it
        causes."""
        if self._pgbouncer:
            return None
        # The pool's own connection (idle: doctor's reads are done) and one more, of an engine
        # of its own (the URL's pool_size may be 1): two in all, as a user the DBA allows only
        # two may have (two more, beside the pool's, failed with "too many connections").
        engine = create_async_engine(self._sa_url, **{**self._engine_options, "pool_size": 1})
        backend = sa.text("SELECT pg_backend_pid()")
        try:
            async with self._errors(), self.engine.connect() as one, engine.connect() as other:
                first = (await one.execute(backend)).scalar()
                second = (await other.execute(backend)).scalar()
        finally:
            await _closing_briefly(engine).dispose()
        if first != second:
            return None
        return (
            "two connections open at once were given one server process: a pooler in "
            "transaction mode (PgBouncer's pool_mode = transaction) stands before the server"
        )

    async def write_problems(self) -> list[str]:
        """The store's tables (and their id sequences) whose privileges the user lacks."""
        async with self._read() as conn:
            rows = (await conn.execute(_MISSING_GRANTS, {"tables": sorted(metadata.tables)})).all()
        lacking: dict[str, list[str]] = {}
        for name, privilege in rows:
            lacking.setdefault(name, []).append(privilege)
        # One line per set of privileges, naming every relation that lacks just those.
        by_set: dict[tuple[str, ...], list[str]] = {}
        for name in sorted(lacking):
            privileges = tuple(p for p in _PRIVILEGES if p in lacking[name])
            by_set.setdefault(privileges, []).append(name)
        return [
            f"{self._user} may not {', '.join(privileges)} on {', '.join(names)}"
            for privileges, names in by_set.items()
        ]

    async def schema(self) -> str | None:
        """The first schema of the user's search_path that exists (the store's tables are
        there: a URL may not name a schema), quoted as an identifier where it must be."""
        async with self._read() as conn:
            found = (await conn.execute(sa.text("SELECT quote_ident(current_schema())"))).scalar()
        return None if found is None else str(found)

    def _unavailable_reason(self, exc: BaseException) -> str | None:
        fix = (
            f"check that PostgreSQL is running and reachable at "
            f"{self._address} "
            "and that the store URL names the right database and user"
        )
        if isinstance(exc, sa.exc.TimeoutError):
            # The pool's own timeout: every connection is busy.
            busy = _first_line(exc)
            return f"no free connection within pool_timeout ({busy}): {self._more_connections()}"
        orig, sqlstate = _answered(exc)
        if (ssl := _ssl_problem(orig)) is not None:
            return ssl
        if (answered := self._answered_reason(orig, sqlstate)) is not None:
            return answered
        if _connection_lost(exc, sqlstate):
            return self._lost(orig)
        if isinstance(orig, TimeoutError):  # asyncpg's, with no text: the line said only that
            return f"PostgreSQL at {self._address} did not answer in time ({self._bounds()}): {fix}"
        unavailable = (
            isinstance(orig, OSError)
            or isinstance(exc, sa.exc.InterfaceError | sa.exc.OperationalError)
            or (isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)
            or sqlstate[:2] in _UNAVAILABLE_CLASSES
        )
        if not unavailable:
            return None
        return f"{_first_line(orig)}: {fix}"

    def _answered_reason(self, orig: BaseException, sqlstate: str) -> str | None:
        """The line for what the server answered with ``sqlstate``, where it has a fix of its
        own; else None."""
        if sqlstate == _UNDEFINED_TABLE:
            return "the store has no tables yet: run `lambda-destinations migrate`"
        if sqlstate == _UNDEFINED_COLUMN:
            return f"{_first_line(orig)}: {OLDER_SCHEMA}"
        if sqlstate == _READ_ONLY:
            return (
                f"{_first_line(orig)}: the database takes no writes (a standby, or "
                "default_transaction_read_only): point the store URL at the primary"
            )
        if sqlstate == _NO_DATABASE:
            return (
                f"{_first_line(orig)}: set the store URL to the right database "
                "name, or create that database"
            )
        if sqlstate in _AUTHENTICATION:
            return (
                f"{_first_line(orig)}: fix the user or password in the store URL "
                "(or the server's pg_hba.conf)"
            )
        if sqlstate == _INSUFFICIENT_PRIVILEGE:
            return (
                f"{_first_line(orig)}: grant {self._user} SELECT, INSERT, UPDATE and DELETE on the "
                "store's tables (the worker writes; so do replays, edits and pruning)"
            )
        if sqlstate in _PREPARED_STATEMENT_LOST and not self._pgbouncer:
            return (
                f"{_first_line(orig)}: a pooler in transaction mode (PgBouncer's "
                "pool_mode = transaction) gives each transaction another server connection: "
                "add pgbouncer=true to the store URL (…/db?pgbouncer=true), or connect to "
                "the server itself"
            )
        if sqlstate == _QUERY_CANCELED:
            return (
                f"{_first_line(orig)}: the server cancelled the statement (the "
                "statement_timeout set for this user or database, or pg_cancel_backend): "
                f"raise that timeout for {self._user} (ALTER ROLE … SET statement_timeout), "
                "or look for slow queries"
            )
        if sqlstate == _TOO_MANY_CONNECTIONS:
            return f"{_first_line(orig)}: {self._fewer_connections()}"
        if sqlstate == _NOT_ACCEPTING and _server_said(orig) is not None:
            return (
                f"{_first_line(orig)}: its owner stopped its connections (ALTER DATABASE … "
                "ALLOW_CONNECTIONS false, as for maintenance); the next call connects once "
                "they are allowed again (ALTER DATABASE … ALLOW_CONNECTIONS true)"
            )
        return None

    def _lost(self, orig: BaseException) -> str:
        """The line for a connection that ended under a call (a restart, a failover,
        pg_terminate_backend, the network): what the server said, if it did, not asyncpg's
        account of it."""
        where = f"PostgreSQL at {self._address}"
        said = _server_said(orig)
        what = (
            f"{where} closed the connection ({said})" if said else f"lost the connection to {where}"
        )
        return (
            f"{what}: the next call connects again; if this goes on, check that the server is "
            "up and reachable"
        )

    def _bounds(self) -> str:
        """How long a connection and a statement wait for the server."""
        args = self._engine_options["connect_args"]
        statement = args["command_timeout"]
        limit = "no limit" if statement is None else f"{statement:g} s"
        return f"{args['timeout']:g} s to connect, {limit} for a statement"

    def _more_connections(self) -> str:
        """How to let this process have more connections, for a pool whose every one is busy."""
        if self._pool_size >= MOST_POOL_SIZE:
            return f"look for slow queries (pool_size is {MOST_POOL_SIZE}, its most)"
        # "…/db?": a whole URL here would have its query value masked in the line.
        more = min(self._pool_size * 2, MOST_POOL_SIZE)
        return (
            f"raise the store URL's pool_size ({self._pool_size} now: …/db?pool_size={more}, "
            "within PostgreSQL's max_connections for every replica), or look for slow queries"
        )

    def _fewer_connections(self) -> str:
        """How to fit this process's connections in the server's limits."""
        fewer = max(self._pool_size // 2, 1)
        return (
            f"each process keeps up to pool_size connections open ({self._pool_size} now), "
            "and every replica, command and console counts: lower the store URL's pool_size "
            f"(…/db?pool_size={fewer}), or raise the limit (the user's or the database's "
            "CONNECTION LIMIT, the server's max_connections)"
        )

    def _misconfigured(self, exc: BaseException) -> bool:
        orig, sqlstate = _answered(exc)
        if _ssl_problem(orig) is not None:
            return True
        if sqlstate in _PREPARED_STATEMENT_LOST:
            return not self._pgbouncer
        return sqlstate in (_NO_DATABASE, *_AUTHENTICATION, _INSUFFICIENT_PRIVILEGE)


def _refuse_nameless_user(url: str, parsed: sa.URL) -> None:
    """Refuse a URL without a user when this process has no user name, which asyncpg (as
    libpq) connects as then: it raised getpass's KeyError (a traceback) for each connection."""
    if parsed.username or os.environ.get("PGUSER"):
        return
    try:
        getpass.getuser()
    except (KeyError, OSError):  # OSError from Python 3.13
        raise url_error(
            url,
            f"the URL names no user, and this process's uid {os.getuid()} has no name to "
            "connect as (no passwd entry, no USER: an arbitrary uid, as OpenShift runs "
            "images): name it, postgresql://user@host:5432/dbname, or set PGUSER",
        ) from None


def _ssl_problem(orig: BaseException) -> str | None:
    """What an sslmode the server or this machine cannot meet needs changed, or None: no retry
    changes the server's answer or the files this machine has (configuration, exit 3)."""
    if _no_ssl(orig):
        return (
            f"{_first_line(orig)}: the server takes no SSL connections: set sslmode=prefer "
            "or disable in the store URL, or turn SSL on at the server"
        )
    if isinstance(orig, FileNotFoundError) and (ca := _missing_ca_file()) is not None:
        return (
            f"PGSSLROOTCERT names {ca}, which does not exist: set it to the file of the CA "
            "that signed the server's certificate, or unset it"
        )
    if _no_root_certificate(orig):
        return (
            f"{_first_line(orig)}: sslmode=verify-ca and verify-full check the server's "
            "certificate against a CA file: set PGSSLROOTCERT to the CA's certificate file "
            "(or put it at that path), or use sslmode=require"
        )
    return None


def _missing_ca_file() -> str | None:
    """The CA file PGSSLROOTCERT names when it does not exist (asyncpg reads it for every
    SSL connection, and says only "No such file or directory"), else None."""
    path = os.environ.get("PGSSLROOTCERT")
    return path if path and not os.path.exists(path) else None


def _no_root_certificate(orig: BaseException) -> bool:
    """Whether sslmode=verify-* found no CA file to check the server's certificate with."""
    # asyncpg's ClientConfigurationError (a ValueError), under SQLAlchemy's adapter's error
    cause = orig.__cause__ if orig.__cause__ is not None else orig
    return isinstance(cause, ValueError) and str(cause).startswith("root certificate file")


def _no_ssl(orig: BaseException) -> bool:
    """Whether the server answered a URL's sslmode=require (or verify-*) that it takes no SSL:
    the server is there, and no retry changes its answer."""
    return isinstance(orig, ConnectionError) and "rejected SSL upgrade" in str(orig)


def _answered(exc: BaseException) -> tuple[BaseException, str]:
    """The driver's error under SQLAlchemy's wrapper, and its SQLSTATE ("" for none)."""
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    return orig, getattr(orig, "sqlstate", None) or ""


def _connection_lost(exc: BaseException, sqlstate: str) -> bool:
    """Whether the connection ``exc`` came on has ended. asyncpg's own words for it are no
    help to an operator: "connection was closed in the middle of operation", or, when the
    server's last message came in before the connection closed, "cannot switch to state 11;
    another operation (2) is in progress"; SQLAlchemy marks both invalidated (it found the
    connection closed)."""
    invalidated = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    return invalidated or sqlstate == _CONNECTION_DOES_NOT_EXIST


def _server_said(orig: BaseException) -> str | None:
    """The server's FATAL error that ended a connection ("terminating connection due to
    administrator command"), which asyncpg keeps as a cause; None if it sent none. Only a
    FATAL one: another (a statement's, which may quote a value) never ends a connection."""
    cause: BaseException | None = orig
    for _ in range(5):  # the adapter's error, asyncpg's, the server's
        if cause is None:
            return None
        # severity_en is never translated (lc_messages); severity is, on servers before 9.6
        severity = getattr(cause, "severity_en", None) or getattr(cause, "severity", None)
        if severity in ("FATAL", "PANIC"):
            return _first_line(cause)
        cause = cause.__cause__
    return None


def _host_name(host: str) -> bool:
    """Can the resolver be given ``host`` (IDNA-encoded, no NUL), to answer yes or no?"""
    try:
        ascii_domain(host)
    except UnicodeError:
        return False
    return "\x00" not in host


def _quoted(name: str) -> str:
    """``name`` as a GRANT takes it: as it is when PostgreSQL would read it unchanged."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
