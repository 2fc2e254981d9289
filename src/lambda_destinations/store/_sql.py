"""The queries, written once for both backends on SQLAlchemy Core, awaited.

:class:`SqlStore` implements every :class:`~lambda_destinations.store.base.Store` method. The
backend modules only say how to connect, which ``INSERT ... ON CONFLICT`` construct to use, how
write transactions and the migration lock are taken, where the lease clock comes from, and which
driver errors mean "unavailable".

Statements are built once per store and executed with plain parameter dicts, so SQLAlchemy
compiles each one once and reuses it (its compiled cache is keyed on the statement's structure).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import operator
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
import structlog

from lambda_destinations._text import storable_text
from lambda_destinations._urls import (
    AWS_QUEUE_HOST_LIKE,
    PORT_PROBLEM,
    arn_queue_url,
    queue_path,
    url_region,
)
from lambda_destinations.errors import (
    StoreDataError,
    StoreError,
    StoreMisconfigured,
    StoreUnavailable,
    StoreUrlError,
)
from lambda_destinations.redact import MASK, mask_url
from lambda_destinations.store._access import (
    StoreConnection,
    StoreEngine,
    from_row,
    make_storable,
    storable,
    text_columns,
)
from lambda_destinations.store._actions import ActionsMixin
from lambda_destinations.store._batch import Coalescer
from lambda_destinations.store._folding import fold, unfold
from lambda_destinations.store._jobs import JobsMixin
from lambda_destinations.store._ledger import LedgerMixin, replays
from lambda_destinations.store._retention import RetentionMixin
from lambda_destinations.store._tables import (
    deliveries,
    handler_runs,
    invocations,
    quarantine,
    schema_migrations,
)
from lambda_destinations.store._types import UTCDateTime
from lambda_destinations.store.base import (
    NO_ERROR_TYPE,
    DeliveryRow,
    FailureCount,
    FailureStatus,
    HandlerRun,
    InvocationCursor,
    InvocationFilter,
    InvocationRow,
    QuarantineCursor,
    QuarantineRow,
    RunState,
    Store,
)
from lambda_destinations.store.migration_15 import VERSION as OLDEST_WRITER_RECORDED
from lambda_destinations.store.migrations import (
    LATEST_VERSION,
    MIGRATIONS,
    SCHEMA_MIGRATIONS_AT_START,
    Migration,
    check_not_newer,
)
from lambda_destinations.times import utcnow

if TYPE_CHECKING:
    from lambda_destinations.store._glob import Glob

log = structlog.get_logger("lambda_destinations.store")
_R = TypeVar("_R", DeliveryRow, HandlerRun)

# The InvocationRow fields stored as columns of the same name, in the dataclass's order.
_INVOCATION_FIELDS = (
    "key",
    "kind",
    "envelope",
    "request_id",
    "function_arn",
    "function_name",
    "qualifier",
    "condition",
    "succeeded",
    "approximate_invoke_count",
    "error_type",
    "error_message",
    "stack_trace",
    "timestamp",
    "request_payload",
    "response_payload",
    "record",
    "queue",
    "first_seen_at",
    "status",
    "status_by",
    "status_at",
)
_invocation_fields = operator.attrgetter(*_INVOCATION_FIELDS)
# The fields that may hold text (the JSON values keep theirs exactly, see _types).
_TEXT_FIELDS = text_columns(invocations)

# The deliveries rows, and the first delivery the invocation row holds itself (migration_9).
_delivery_count = (
    sa.select(sa.func.count())
    .where(deliveries.c.key == invocations.c.key)
    .correlate(invocations)
    .scalar_subquery()
    + sa.case((invocations.c.first_message_id.is_not(None), 1), else_=0)
).label("delivery_count")
# What a key's row says of its first delivery and of the handler that stored it.
_STORED_AS = sa.select(
    invocations.c.key,
    invocations.c.saved_by,
    invocations.c.first_message_id,
    invocations.c.first_receive_count,
    invocations.c.queue,
    invocations.c.first_seen_at,
)
_SELECT_INVOCATIONS = sa.select(
    *(invocations.c[name] for name in _INVOCATION_FIELDS),
    invocations.c.payloads_in_columns,
    _delivery_count,
)
_PING = sa.text("SELECT 1")
# The version of the row a writing ping inserts and deletes (migrations count from 1).
_PROBE_VERSION = -1
# SQLAlchemy's asyncpg adapter prefixes the driver's error: "<class 'asyncpg.exceptions.X'>: ".
_ASYNCPG_CLASS = re.compile(r"^<class '(?:[\w.]+\.)?(?P<name>\w+)'>: ")
# asyncpg: "invalid input for query argument $10: <the value> (<why>)".
_ARGUMENT_VALUE = re.compile(r"(?P<argument>query argument \$\d+): .*(?= \()")
# PostgreSQL ends a line with the value it refused, quoted ("invalid input syntax for type
# integer: "<the value>""); the names it quotes (relations, constraints) come mid-line.
_QUOTED_VALUE = re.compile(r'(?P<what>: )".*"$')
# The lists' order; the key makes it total, so pages and tests are deterministic. Newest
# first reads the failures' indexes backwards, oldest first (a replay's) forwards.
_LIST_ORDER = (invocations.c.occurred_at, invocations.c.first_seen_at, invocations.c.key)
_NEWEST_FIRST = tuple(column.desc() for column in _LIST_ORDER)
# How many waited ids invocations_arrived asks for in one statement (each is bound twice).
_ARRIVED_CHUNK = 400
_OLDEST_FIRST = tuple(column.asc() for column in _LIST_ORDER)


def sql_error_line(exc: BaseException) -> str:
    """The database's (or driver's) one line about ``exc``, with no statement and no values.

    SQLAlchemy's text adds the statement and its parameters; asyncpg's adds a DETAIL line
    (which may quote the row) and the value of an argument it could not encode.
    """
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    line = _ASYNCPG_CLASS.sub(r"\g<name>: ", lines[0]) if lines else type(orig).__name__
    line = _ARGUMENT_VALUE.sub(rf"\g<argument>: {MASK}", line)
    return _QUOTED_VALUE.sub(rf'\g<what>"{MASK}"', line)


def _is_data_error(exc: BaseException) -> bool:
    """A value the database (or its driver) refuses, as opposed to a lost connection or a bug.

    SQLite's driver raises OverflowError, unwrapped, for an integer past 64 bits; PostgreSQL
    says SQLSTATE class 22 (data exception: asyncpg's own "value out of int32 range" too) or
    54000 (program limit exceeded: a key too long for its index entry).
    """
    if isinstance(exc, (sa.exc.DataError, UnicodeError, OverflowError)):
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = str(getattr(orig, "sqlstate", None) or "")
    if sqlstate.startswith("22") or sqlstate == "54000":
        return True
    return isinstance(exc, sa.exc.StatementError) and isinstance(
        orig, (ValueError, TypeError, OverflowError)
    )


def invocation_values(
    row: InvocationRow, delivery: DeliveryRow | None = None, saved_by: str | None = None
) -> dict[str, Any]:
    """The column values for ``row``: a new failure is OPEN unless a status is given.

    ``delivery``, the one that stores the row, is held by the row when it came in on the row's
    queue at its ``first_seen_at`` (as the persist handler makes them); ``saved_by`` is the
    handler that stores it (see migration_9).
    """
    values = dict(zip(_INVOCATION_FIELDS, _invocation_fields(row), strict=True))
    make_storable(values, _TEXT_FIELDS)
    if row.status is None and row.succeeded is not True:
        values["status"] = FailureStatus.OPEN
    values["occurred_at"] = row.timestamp or row.first_seen_at
    fold(values)
    values["saved_by"] = saved_by
    values["first_message_id"], values["first_receive_count"] = _held(row, delivery)
    return values


def insert_values(
    row: InvocationRow, delivery: DeliveryRow | None = None, saved_by: str | None = None
) -> dict[str, Any]:
    """:func:`invocation_values` as the save's INSERT takes them: the status as ``b_status``,
    and ``b_replay_of``, the request id of an open failure, which the INSERT looks up in the
    replay ledger (see :func:`_status_as_saved`)."""
    values = invocation_values(row, delivery, saved_by)
    status = values.pop("status")
    values["b_status"] = None if status is None else str(status)
    values["b_replay_of"] = values["request_id"] if status == FailureStatus.OPEN else None
    return values


def _status_as_saved(
    replay_of: sa.ColumnElement[Any] | None = None, status: sa.ColumnElement[Any] | None = None
) -> sa.ColumnElement[Any]:
    """The status a saved row gets: ``replay`` for an open failure whose request id the replay
    ledger recorded as an attempt's new invocation, else the one given.

    In the INSERT itself, so a save costs no round trip more: one probe of the ledger's
    new_request_id index per failure (none for a success, whose ``b_replay_of`` is NULL). A
    record saved before the ledger has its request id is marked by ``update_replay``.
    ``replay_of`` and ``status`` are the row's values: by default the binds ``b_replay_of``
    and ``b_status`` (PostgreSQL's batch insert gives columns of its recordset instead).
    """
    # Each bind appears once: PostgreSQL's many-rows INSERT numbers every appearance anew.
    # (``= NULL``, a success's, is never true.)
    if replay_of is None:
        replay_of = sa.bindparam("b_replay_of", type_=sa.Text)
    if status is None:
        status = sa.bindparam("b_status", type_=sa.Text)
    ledgered = sa.exists().where(replays.c.new_request_id == replay_of)
    return sa.case((ledgered, sa.literal(FailureStatus.REPLAY.value, sa.Text)), else_=status)


def _held(row: InvocationRow, delivery: DeliveryRow | None) -> tuple[str | None, int | None]:
    """The message id and receive count of the delivery ``row`` holds itself, if any."""
    if delivery is None or (delivery.queue, delivery.received_at) != (row.queue, row.first_seen_at):
        return None, None
    return delivery.message_id, delivery.receive_count


def delivery_values(delivery: DeliveryRow) -> dict[str, Any]:
    return {
        "key": delivery.key,
        "message_id": delivery.message_id,
        "queue": delivery.queue,
        "receive_count": delivery.receive_count,
        "received_at": delivery.received_at,
    }


@dataclasses.dataclass(slots=True)
class _Save:
    """One save_invocation call, as parameters ready to execute (not frozen: a frozen
    dataclass's ``__init__`` costs a call a field, and one is made for every message)."""

    invocation: dict[str, Any]
    delivery: dict[str, Any]
    # The handler the save completes, if any. Its completion row is made only for a key
    # stored already (see _save_others): a new row holds its completion (migration_9).
    handler: str | None
    key: str  # the invocation's, looked up a few times a save by the batch

    def holds_delivery(self, stored: Any) -> bool:
        """Is this save's delivery the one the stored row ``stored`` holds?"""
        return (
            stored is not None
            and stored.first_message_id == self.delivery["message_id"]
            and stored.first_receive_count == self.delivery["receive_count"]
        )


def first_of_each_key(saves: Sequence[_Save]) -> dict[str, _Save]:
    """The first save of each key in ``saves``: the one whose row the batch inserts."""
    firsts: dict[str, _Save] = {}
    for save in saves:
        firsts.setdefault(save.key, save)
    return firsts


@dataclasses.dataclass(frozen=True, slots=True)
class SaveOutcome:
    """What a batch's INSERT of its new rows leaves to do: ``new``, one per save; ``others``,
    the saves whose row was stored already (or by an earlier save of the batch); ``unfolded``,
    the new rows whose delivery is not held by the row (another queue than the row's)."""

    new: list[bool]
    others: list[_Save]
    unfolded: list[_Save]

    @classmethod
    def of(
        cls, saves: Sequence[_Save], firsts: dict[str, _Save], new_keys: set[str]
    ) -> SaveOutcome:
        # A key saved twice in one batch is new for the first caller only.
        new = [save.key in new_keys and firsts[save.key] is save for save in saves]
        others = [save for save, is_new in zip(saves, new, strict=True) if not is_new]
        unfolded = [
            save
            for save, is_new in zip(saves, new, strict=True)
            if is_new and save.invocation["first_message_id"] is None
        ]
        return cls(new, others, unfolded)


def _delivery_unless_held(insert: Any) -> Any:
    """INSERT of a delivery row, unless the key's invocation row holds that delivery."""
    key = sa.bindparam("key", type_=sa.Text)
    message_id = sa.bindparam("message_id", type_=sa.Text)
    receive_count = sa.bindparam("receive_count", type_=sa.Integer)
    inv = invocations.c
    held = sa.exists().where(
        inv.key == key,
        inv.first_message_id == message_id,
        inv.first_receive_count == receive_count,
    )
    values = sa.select(
        key,
        message_id,
        sa.bindparam("queue", type_=sa.Text),
        receive_count,
        sa.bindparam("received_at", type_=UTCDateTime),
    ).where(~held)
    names = ["key", "message_id", "queue", "receive_count", "received_at"]
    return insert(deliveries).from_select(names, values)


def _status_in(statuses: Sequence[FailureStatus]) -> sa.ColumnElement[bool]:
    """``status`` is one of ``statuses``, in the words that let an index serve the list.

    One status is one range of the (status, occurred_at) index, newest first. For several,
    the same index would give several ranges to merge and sort whole; the statuses left out
    instead (``NOT IN``) let the failures' time index be read newest first, filtering.
    """
    wanted = set(statuses)
    if len(wanted) == 1:
        return invocations.c.status == next(iter(wanted))
    others = [s for s in FailureStatus if s not in wanted]
    if not others:
        return invocations.c.status.is_not(None)
    return sa.and_(invocations.c.status.is_not(None), invocations.c.status.not_in(others))


def _invocation_from(row: Any) -> InvocationRow:
    values = dict(zip(_INVOCATION_FIELDS, row, strict=False))
    unfold(values, row.payloads_in_columns)
    return InvocationRow(**values, delivery_count=row.delivery_count)


def _list_order(selection: InvocationFilter) -> tuple[sa.UnaryExpression[Any], ...]:
    return _OLDEST_FIRST if selection.oldest_first else _NEWEST_FIRST


def _after(cursor: InvocationCursor, *, oldest_first: bool) -> list[sa.ColumnElement[bool]]:
    """Rows after ``cursor`` in the list's order: one range of the occurred_at index."""
    c = invocations.c
    values = (cursor.occurred_at, cursor.first_seen_at, cursor.key)
    columns = (c.occurred_at, c.first_seen_at, c.key)
    return _keyset_after(columns, values, (UTCDateTime, UTCDateTime, sa.Text), oldest_first)


def _keyset_after(
    columns: Sequence[sa.ColumnElement[Any]],
    values: Sequence[Any],
    types: Sequence[Any],
    oldest_first: bool = False,
) -> list[sa.ColumnElement[bool]]:
    """Rows after ``values`` in the order of ``columns`` (newest first, or oldest first).

    The plain bound on the first column (``<=``, ``>=`` oldest first) is what both planners
    turn into an index range; the row value comparison then places the cursor's own ties
    exactly.
    """
    row = sa.tuple_(*columns)
    cursor_row = sa.tuple_(*(sa.literal(v, t) for v, t in zip(values, types, strict=True)))
    if oldest_first:
        return [columns[0] >= values[0], row > cursor_row]
    return [columns[0] <= values[0], row < cursor_row]


class SqlStore(JobsMixin, LedgerMixin, ActionsMixin, RetentionMixin, Store):
    """A :class:`Store` on an engine whose calls are awaited (see ``StoreEngine``); subclasses
    supply the dialect's parts."""

    def __init__(self, url: str, *, group_commit: bool = True) -> None:
        super().__init__(url)
        self.display_url = mask_url(url)
        self._engine: StoreEngine | None = None
        self._tx_engine: StoreEngine | None = None
        self._build_statements()
        # Group commit of the worker's two per-message calls (see _batch.py); off, each call
        # is a batch of one (for comparison in bench/store_bench.py).
        self.group_commit = group_commit
        self._saves = Coalescer(self._save_batch, name="save_invocation")
        self._lookups = Coalescer(self._completed_batch, name="completed_handlers")
        self._told_newer = False  # of a newer schema this release may write to, said once

    # -- what a backend supplies ------------------------------------------------------------

    def _glob_condition(
        self, column: sa.ColumnElement[Any], pattern: str
    ) -> sa.ColumnElement[bool]:
        """``column`` matches the shell glob ``pattern`` (see _glob.py)."""
        # Imported here: only a selection by function name (--function) has a glob.
        from lambda_destinations.store._glob import compile_glob

        glob = compile_glob(pattern)
        if glob.never:
            return sa.false()
        if glob.literal is not None:
            return column == glob.literal
        return self._match_glob(column, glob)

    @abc.abstractmethod
    def _match_glob(self, column: sa.ColumnElement[Any], glob: Glob) -> sa.ColumnElement[bool]:
        """The database's own glob operator, one that cannot backtrack without bound."""

    @abc.abstractmethod
    def _insert(self, table: sa.Table) -> Any:
        """The dialect's ``INSERT`` construct (both have ``on_conflict_do_nothing/do_update``)."""

    @abc.abstractmethod
    async def _create_engine(self) -> StoreEngine:
        """A new engine for this store's URL (called by ``open``)."""

    @abc.abstractmethod
    def _lease_clock(self) -> tuple[sa.ColumnElement[dt.datetime], sa.ColumnElement[dt.datetime]]:
        """SQL for "now" and "when a claim taken now expires", as used by ``claim_handler``."""

    @abc.abstractmethod
    def _lease_params(self, ttl: float) -> dict[str, Any]:
        """The parameters the expressions of ``_lease_clock`` need for a claim of ``ttl`` s."""

    @abc.abstractmethod
    def _hour_of(self, moment: sa.ColumnElement[dt.datetime]) -> sa.ColumnElement[Any]:
        """An expression equal for the times of one UTC hour, and only for them."""

    @abc.abstractmethod
    def _unavailable_reason(self, exc: BaseException) -> str | None:
        """``"what happened: the fix"`` when ``exc`` means the store cannot be used, else None."""

    async def _last_id(
        self, conn: StoreConnection, table: sa.Table, column: sa.Column[Any]
    ) -> int | None:
        """The highest id ``table`` has handed out (its rows', or a counter's that remembers
        deleted ones); None when it has none (for ``store copy``)."""
        highest = (await conn.execute(sa.select(sa.func.max(column)))).scalar()
        return None if highest is None else int(highest)

    async def _reserve_ids(
        self, conn: StoreConnection, table: sa.Table, column: sa.Column[Any], last: int
    ) -> None:
        """Hand out ids after ``last`` from now on in ``table`` (``store copy`` inserts ids
        of its own); nothing where the next id is always past the highest row's."""

    async def _lock_migrations(self, conn: StoreConnection) -> None:
        """Serialize migrations across processes, for the rest of ``conn``'s transaction."""

    def _transaction_engine(self, engine: StoreEngine) -> StoreEngine:
        """The engine for transactions of several statements (PostgreSQL: not autocommit)."""
        return engine

    @contextlib.asynccontextmanager
    async def _migration_engine(self) -> AsyncIterator[StoreEngine]:
        """The engine ``migrate`` applies each version on (PostgreSQL: one without a statement
        timeout, see there)."""
        yield self._transaction_engine(self.engine)

    def _write_gate(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around every write transaction; SQLite queues this process's writers here."""
        return contextlib.nullcontext()

    # -- connections and errors -------------------------------------------------------------

    @property
    def engine(self) -> StoreEngine:
        if self._engine is None:
            raise RuntimeError(
                f"store {self.display_url} is not open: use `async with Store.from_url(url)`"
            )
        return self._engine

    def _misconfigured(self, exc: BaseException) -> bool:
        """Whether ``exc`` (unavailable) says the URL's database, user or grants are wrong."""
        return False

    def _unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        reason = self._unavailable_reason(exc)
        if reason is None:
            return None
        kind = StoreMisconfigured if self._misconfigured(exc) else StoreUnavailable
        return kind.at(self.display_url, reason)

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Turn "cannot reach / use the database" into StoreUnavailable; let bugs through."""
        try:
            yield
        except (sa.exc.SQLAlchemyError, OSError, UnicodeError, OverflowError) as exc:
            unavailable = self._unavailable(exc)
            if unavailable is not None:
                raise unavailable from exc
            if _is_data_error(exc):
                # No retry changes the value: the message is quarantined with this reason
                # instead of using up its receives.
                # Neither is raised from exc: SQLAlchemy's text holds the statement, and the
                # driver's its DETAIL ("Failing row contains (...)", the record's payloads).
                reason = sql_error_line(exc)[:300]
                raise StoreDataError(f"the store cannot hold this record: {reason}") from None
            if isinstance(exc, sa.exc.StatementError):
                raise StoreError(f"store {self.display_url}: {sql_error_line(exc)}") from None
            raise

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[StoreConnection]:
        """A connection for reads; each statement sees the latest commit (no BEGIN is sent)."""
        async with self._errors(), self.engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _write(self, *, atomic: bool = False) -> AsyncIterator[StoreConnection]:
        """A connection for writes, committed on success.

        ``atomic`` for several statements that must commit together; a single statement is
        atomic by itself, and on PostgreSQL skipping BEGIN and COMMIT saves two round trips.
        """
        engine = self.engine
        if atomic:
            if self._tx_engine is None:
                self._tx_engine = self._transaction_engine(engine)
            engine = self._tx_engine
        async with self._begin(engine) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _begin(self, engine: StoreEngine) -> AsyncIterator[StoreConnection]:
        """A write transaction on ``engine``, committed on success."""
        async with self._errors(), self._write_gate(), engine.begin() as conn:
            yield conn

    # -- lifetime ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        self._engine = await self._create_engine()
        try:
            # Connect now so a wrong URL or a server that is down is reported at start.
            await self.ping()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._saves.wait_idle()
        await self._lookups.wait_idle()
        engine, self._engine, self._tx_engine = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def ping(self, *, write: bool = False) -> None:
        async with self._read() as conn:
            await conn.execute(_PING)
        if write:
            # A row no migration has, inserted and deleted in one transaction: nothing stays,
            # but the commit must reach the disk (an UPDATE to the same value would not: SQLite
            # skips a cell it would rewrite unchanged).
            probe = schema_migrations.c.version == _PROBE_VERSION
            async with self._write(atomic=True) as conn:
                await conn.execute(
                    self._insert(schema_migrations)
                    .values(version=_PROBE_VERSION, applied_at=utcnow())
                    .on_conflict_do_nothing(index_elements=[schema_migrations.c.version])
                )
                await conn.execute(sa.delete(schema_migrations).where(probe))

    async def _applied_versions(self, conn: StoreConnection) -> set[int]:
        exists = await conn.run_sync(
            lambda sync: sa.inspect(sync).has_table(schema_migrations.name)
        )
        if not exists:
            return set()
        return set(await conn.scalars(sa.select(schema_migrations.c.version)))

    async def _newer_versions(
        self, conn: StoreConnection, applied: set[int]
    ) -> dict[int, int | None]:
        """The versions past this release's, each with the oldest writer it recorded."""
        if max(applied, default=0) <= LATEST_VERSION:
            return {}  # and a store before version 15 has no oldest_writer to read
        versions = schema_migrations.c
        rows = await conn.execute(
            sa.select(versions.version, versions.oldest_writer).where(
                versions.version > LATEST_VERSION
            )
        )
        return {version: oldest for version, oldest in rows}

    async def pending_migrations(self) -> list[int]:
        async with self._read() as conn:
            applied = await self._applied_versions(conn)
            newer = await self._newer_versions(conn, applied)
        check_not_newer(newer)  # so `migrate`, `doctor` and the worker's start refuse
        if newer and not self._told_newer:
            self._told_newer = True
            log.warning(
                "the store's schema is newer than this release's; its newer versions keep "
                "this release's writes valid",
                store=self.display_url,
                schema=max(newer),
                release_schema=LATEST_VERSION,
            )
        return [m.version for m in MIGRATIONS if m.version not in applied]

    async def migrate(self) -> list[int]:
        # Look without the lock first: replicas starting on a migrated database need not queue.
        pending = await self.pending_migrations()
        applied: list[int] = []
        if not pending:
            return applied
        async with self._migration_engine() as engine:
            for migration in MIGRATIONS:
                if migration.version in pending and await self._apply(engine, migration):
                    applied.append(migration.version)
        return applied

    async def _apply(self, engine: StoreEngine, migration: Migration) -> bool:
        """Apply ``migration`` in a transaction of its own; False if another process had."""
        async with self._begin(engine) as conn:
            # Under the lock, look again: another replica may have just applied it.
            await self._lock_migrations(conn)
            await conn.run_sync(SCHEMA_MIGRATIONS_AT_START.create, checkfirst=True)
            if migration.version in await self._applied_versions(conn):
                return False
            await conn.run_sync(migration.upgrade)
            recorded: dict[str, Any] = {"version": migration.version, "applied_at": utcnow()}
            # Before version 15 there is no column; version 15 fills it for those.
            if migration.version >= OLDEST_WRITER_RECORDED:
                recorded["oldest_writer"] = migration.oldest_writer
            await conn.execute(schema_migrations.insert(), recorded)
        return True

    # -- statements -------------------------------------------------------------------------

    def _build_statements(self) -> None:
        self._build_save_statements()
        self._build_claim_statements()
        self._build_read_statements()

    def _build_save_statements(self) -> None:
        """A record's row, its deliveries, what is done for each key, and completing a run."""
        insert = self._insert
        runs = handler_runs.c
        self._insert_invocation_only = (
            insert(invocations)
            .values(status=_status_as_saved())
            .on_conflict_do_nothing(index_elements=[invocations.c.key])
        )
        self._insert_invocation = self._insert_invocation_only.returning(invocations.c.key)
        delivery_id = [deliveries.c.key, deliveries.c.message_id, deliveries.c.receive_count]
        self._insert_delivery = insert(deliveries).on_conflict_do_nothing(
            index_elements=delivery_id
        )
        self._add_delivery = _delivery_unless_held(insert).on_conflict_do_nothing(
            index_elements=delivery_id
        )
        keys: sa.BindParameter[Any] = sa.bindparam("keys", expanding=True)
        # Completed runs, and the handler that stored the key's row (migration_9).
        self._completed_handlers = sa.union_all(
            sa.select(runs.key, runs.handler).where(
                runs.key.in_(keys), runs.state == RunState.COMPLETED
            ),
            sa.select(invocations.c.key, invocations.c.saved_by).where(
                invocations.c.key.in_(keys), invocations.c.saved_by.is_not(None)
            ),
        )
        self._stored_as = _STORED_AS.where(invocations.c.key.in_(keys))
        self._stored_of_key = _STORED_AS.where(invocations.c.key == sa.bindparam("key"))

        completion = insert(handler_runs).values(
            state=RunState.COMPLETED, claimed_until=None, attempts=1
        )
        # The first completion wins: completing twice keeps the first time and owner.
        self._complete = completion.on_conflict_do_update(
            index_elements=[runs.key, runs.handler],
            set_={
                "state": completion.excluded.state,
                "owner": completion.excluded.owner,
                "claimed_until": None,
                "completed_at": completion.excluded.completed_at,
                # A note on the completion (an in-doubt call) is kept; none keeps the last error.
                "last_error": sa.func.coalesce(completion.excluded.last_error, runs.last_error),
            },
            where=runs.state != RunState.COMPLETED,
        )

    def _build_claim_statements(self) -> None:
        """A handler run's lease: claim, renew, release."""
        insert = self._insert
        runs = handler_runs.c
        now, until = self._lease_clock()
        claim = insert(handler_runs).values(state=RunState.CLAIMED, claimed_until=until, attempts=1)
        # One statement, so atomic on both backends: the row is inserted, or taken over when
        # the claim on it was released, has expired, or is the caller's own; a completed run
        # (state != claimed) is never touched. A row comes back iff the caller now holds it.
        self._claim = claim.on_conflict_do_update(
            index_elements=[runs.key, runs.handler],
            set_={
                "owner": claim.excluded.owner,
                "claimed_until": claim.excluded.claimed_until,
                "attempts": runs.attempts + 1,
            },
            where=sa.and_(
                runs.state == RunState.CLAIMED,
                sa.or_(
                    runs.owner.is_(None),  # released
                    runs.claimed_until.is_(None),  # released by an earlier version
                    runs.claimed_until < now,
                    runs.owner == claim.excluded.owner,
                ),
            ),
        ).returning(runs.key)

        # The holder's own claim. Bind names differ from the column names: SQLAlchemy
        # reserves those for SET values.
        held = (
            runs.key == sa.bindparam("b_key"),
            runs.handler == sa.bindparam("b_handler"),
            runs.owner == sa.bindparam("b_owner"),
            runs.state == RunState.CLAIMED,
        )
        # A lease renewal: only the holder's own live (or just lapsed, not yet taken) claim.
        self._renew = (
            sa.update(handler_runs).where(*held).values(claimed_until=until).returning(runs.key)
        )

        self._release = (
            sa.update(handler_runs)
            .where(*held)
            .values(
                # No owner; the time it was released stays, so that retention can tell an old
                # run that never completed from one a delivery may still take up.
                owner=None,
                claimed_until=now,
                last_error=sa.func.coalesce(
                    sa.bindparam("b_error", type_=sa.Text), runs.last_error
                ),
            )
        )

    def _build_read_statements(self) -> None:
        """Quarantine rows, and the reads and status changes of the operator commands."""
        insert = self._insert
        runs = handler_runs.c
        self._insert_quarantine = (
            insert(quarantine)
            .on_conflict_do_nothing(index_elements=[quarantine.c.queue, quarantine.c.message_id])
            .returning(quarantine.c.id)
        )

        ident = sa.bindparam("ident", type_=sa.Text)
        self._get_invocation = (
            _SELECT_INVOCATIONS.where(
                sa.or_(invocations.c.key == ident, invocations.c.request_id == ident)
            )
            # An exact key beats a request id; among rows of one request id, the newest.
            .order_by(sa.case((invocations.c.key == ident, 0), else_=1), *_NEWEST_FIRST)
            .limit(1)
        )

        self._set_status = (
            sa.update(invocations)
            .where(invocations.c.key.in_(sa.bindparam("b_keys", expanding=True)))
            .values(
                status=sa.bindparam("b_status"),
                status_by=sa.bindparam("b_by"),
                status_at=sa.bindparam("b_at"),
            )
        )
        self._deliveries = (
            sa.select(deliveries)
            .where(deliveries.c.key == sa.bindparam("key"))
            .order_by(deliveries.c.received_at, deliveries.c.id)
        )
        self._handler_runs = (
            sa.select(handler_runs).where(runs.key == sa.bindparam("key")).order_by(runs.handler)
        )

    # -- the worker's path ------------------------------------------------------------------

    async def completed_handlers(self, key: str) -> frozenset[str]:
        if not self.group_commit:
            return (await self._completed_batch([key]))[0]
        return await self._lookups.submit(key)

    async def _completed_batch(self, keys: Sequence[str]) -> list[frozenset[str]]:
        async with self._read() as conn:
            return await conn.run_sync(self._completed_on, keys)

    def _completed_on(self, conn: sa.Connection, keys: Sequence[str]) -> list[frozenset[str]]:
        """One ``IN (...)`` query for many lookups; synchronous, so SQLite runs it in one hop."""
        rows = conn.execute(self._completed_handlers, {"keys": list(set(keys))})
        by_key: defaultdict[str, set[str]] = defaultdict(set)
        for key, handler in rows:
            by_key[key].add(handler)
        return [frozenset(by_key.get(key, ())) for key in keys]

    async def save_invocation(
        self,
        row: InvocationRow,
        delivery: DeliveryRow,
        *,
        complete_handler: str | None = None,
    ) -> bool:
        if delivery.key != row.key:
            raise ValueError(f"delivery of key {delivery.key!r} saved with row {row.key!r}")
        values = insert_values(row, delivery, complete_handler)
        save = _Save(values, delivery_values(delivery), complete_handler, values["key"])
        if not self.group_commit:
            return (await self._save_batch([save]))[0]
        return await self._saves.submit(save)

    async def _save_batch(self, saves: Sequence[_Save]) -> list[bool]:
        async with self._write(atomic=True) as conn:
            return await conn.run_sync(self._save_on, saves)

    def _save_on(self, conn: sa.Connection, saves: Sequence[_Save]) -> list[bool]:
        """Many save_invocation calls in one transaction.

        A new key's row holds its delivery and its completion (migration_9): a batch of new
        records is one statement. Saves of keys already stored add their delivery and, when
        another handler stored the row, their completion.

        Synchronous on purpose: PostgreSQL runs its two parts through ``run_sync`` (see
        postgres.py), SQLite the whole in its connection's thread as one hand-off (sqlite.py).
        """
        firsts = first_of_each_key(saves)
        new_keys = self._insert_invocations(conn, [s.invocation for s in firsts.values()])
        outcome = SaveOutcome.of(saves, firsts, new_keys)
        if outcome.others or outcome.unfolded:
            self._save_others(conn, outcome.others, outcome.unfolded)
        return outcome.new

    def _insert_invocations(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the rows (one per key) but those whose key exists; return the new keys."""
        return set(conn.execute(self._insert_invocation, rows).scalars())

    def _save_others(
        self, conn: sa.Connection, others: Sequence[_Save], unfolded: Sequence[_Save]
    ) -> None:
        """The delivery and completion rows of saves whose row was stored already (or whose
        delivery came in on another queue than the row's)."""
        keys = list({save.key for save in others})
        stored: dict[str, Any] = {}
        if keys:
            stored = {r.key: r for r in conn.execute(self._stored_as, {"keys": keys})}
        delivery_rows = [s.delivery for s in unfolded]
        completions: dict[tuple[str, str], dict[str, Any]] = {}
        now = utcnow()  # when the batch writes them: one clock read a batch, not one a save
        for save in others:
            row = stored.get(save.key)
            if not save.holds_delivery(row):
                delivery_rows.append(save.delivery)
            handler = save.handler
            if handler is not None and (row is None or row.saved_by != handler):
                # Two completions of one (key, handler) in one upsert would be an error on
                # PostgreSQL ("ON CONFLICT DO UPDATE command cannot affect row a second time").
                completions.setdefault(
                    (save.key, handler),
                    {"key": save.key, "handler": handler, "owner": None, "completed_at": now},
                )
        if delivery_rows:
            conn.execute(self._insert_delivery, delivery_rows)
        if completions:
            conn.execute(self._complete, list(completions.values()))

    async def add_delivery(self, delivery: DeliveryRow) -> None:
        async with self._write() as conn:
            await conn.execute(self._add_delivery, delivery_values(delivery))

    async def claim_handler(self, key: str, handler: str, owner: str, ttl: float) -> bool:
        params = {"key": key, "handler": handler, "owner": owner, **self._lease_params(ttl)}
        async with self._write() as conn:
            return (await conn.execute(self._claim, params)).first() is not None

    async def renew_claim(self, key: str, handler: str, owner: str, ttl: float) -> bool:
        params = {"b_key": key, "b_handler": handler, "b_owner": owner, **self._lease_params(ttl)}
        async with self._write() as conn:
            return (await conn.execute(self._renew, params)).first() is not None

    async def complete_handler(
        self, key: str, handler: str, owner: str, *, detail: str | None = None
    ) -> bool:
        values = {"key": key, "handler": handler, "owner": owner, "completed_at": utcnow()}
        values["last_error"] = storable(detail)
        async with self._write() as conn:
            result = await conn.execute(self._complete, values)
            return bool(result.rowcount)

    async def release_handler(
        self, key: str, handler: str, owner: str, error: str | None = None
    ) -> None:
        # A handler's error may quote a payload: NUL and lone surrogates as U+FFFD, as the
        # invocations' text columns hold them (PostgreSQL's text refuses a NUL).
        error = storable(error)
        async with self._write() as conn:
            params = {"b_key": key, "b_handler": handler, "b_owner": owner, "b_error": error}
            await conn.execute(self._release, {**params, **self._lease_params(0)})

    async def save_quarantine(self, row: QuarantineRow) -> bool:
        values = {
            "queue": row.queue,
            "message_id": row.message_id,
            "body": row.body,
            "message_attributes": row.message_attributes,
            # The worker's text, which may quote a payload: NUL and lone surrogates as U+FFFD,
            # as the invocations' text columns hold them. The body (SQS's text, which has
            # neither) and the attributes (JSON) are kept exactly.
            "reason": storable_text(row.reason),
            "receive_count": row.receive_count,
            "key": row.key,
            "quarantined_at": row.quarantined_at,
        }
        async with self._write() as conn:
            new_id = (await conn.execute(self._insert_quarantine, values)).scalar()
        if new_id is None:
            return False
        row.id = new_id
        return True

    async def record_dlq_copy(self, queue: str, message_id: str, dlq: str) -> None:
        stmt = (
            sa.update(quarantine)
            .where(quarantine.c.queue == queue, quarantine.c.message_id == message_id)
            .values(sent_to_dlq=dlq)
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    async def dlq_copy(self, queue: str, message_id: str) -> str | None:
        stmt = sa.select(quarantine.c.sent_to_dlq).where(
            quarantine.c.queue == queue, quarantine.c.message_id == message_id
        )
        async with self._read() as conn:
            dlq = (await conn.execute(stmt)).scalar()
        return None if dlq is None else str(dlq)

    # -- the operators' path ----------------------------------------------------------------

    async def get_invocation(self, key_or_request_id: str) -> InvocationRow | None:
        async with self._read() as conn:
            found = (await conn.execute(self._get_invocation, {"ident": key_or_request_id})).first()
        return None if found is None else _invocation_from(found)

    async def invocations_arrived(self, idents: Collection[str]) -> Collection[str]:
        """One query per 400 ids (SQLite takes at most 32766 parameters a statement): the keys
        and request ids of the rows that match, by the primary key and the request id's index."""
        wanted = list(dict.fromkeys(idents))
        found: set[str] = set()
        for start in range(0, len(wanted), _ARRIVED_CHUNK):
            chunk = wanted[start : start + _ARRIVED_CHUNK]
            c = invocations.c
            query = sa.select(c.key, c.request_id).where(
                sa.or_(c.key.in_(chunk), c.request_id.in_(chunk))
            )
            async with self._read() as conn:
                found.update(ident for row in await conn.execute(query) for ident in row)
        return found.intersection(wanted)

    async def request_ids_starting(self, prefix: str, *, limit: int) -> list[str]:
        async with self._read() as conn:
            found = await conn.execute(self.prefix_statement(prefix, limit))
            return [str(request_id) for request_id in found.scalars()]

    def prefix_statement(self, prefix: str, limit: int) -> sa.Select[Any]:
        """The request ids that start with ``prefix``: GLOB 'head*' on SQLite, LIKE 'head%' on
        PostgreSQL, a literal head that the request id's index can seek."""
        if not prefix or any(char in prefix for char in "*?[]\\"):
            raise ValueError(f"not the head of a request id: {prefix!r}")
        column = invocations.c.request_id
        return (
            sa.select(column)
            .distinct()
            .where(self._glob_condition(column, prefix + "*"))
            .order_by(column)
            .limit(limit)
        )

    def _where(self, selection: InvocationFilter) -> list[sa.ColumnElement[bool]]:
        c = invocations.c
        where: list[sa.ColumnElement[bool]] = []
        if selection.failed_only:
            # Every failure has a status, no success has one: the failures' partial indexes
            # (WHERE status IS NOT NULL) serve the query only when it says so in these words.
            where.append(c.status.is_not(None))
        if selection.function_glob is not None:
            where.append(self._glob_condition(c.function_name, selection.function_glob))
        if selection.error_type == NO_ERROR_TYPE:
            where.append(c.error_type.is_(None))
        elif selection.error_type is not None:
            where.append(c.error_type == selection.error_type)
        if selection.condition is not None:
            where.append(c.condition == selection.condition)
        if selection.since is not None:
            where.append(c.occurred_at >= selection.since)
        if selection.until is not None:
            where.append(c.occurred_at < selection.until)
        if selection.statuses is not None:
            where.append(_status_in(selection.statuses))
        if selection.request_ids is not None:
            where.append(c.request_id.in_(list(selection.request_ids)))
        if selection.after is not None:
            where.extend(_after(selection.after, oldest_first=selection.oldest_first))
        return where

    def list_statement(self, selection: InvocationFilter) -> sa.Select[Any]:
        """The query of :meth:`list_invocations` (``tests/store`` checks its plans).

        A page selects its keys first, from an index that holds the filters and the order, then
        reads those rows: where the database must sort the matches (a glob ``ledger-*`` is a
        range of the function-name index, not in time order) it sorts index entries, and never
        whole rows with their payloads.
        """
        where = self._where(selection)
        order = _list_order(selection)
        if selection.limit is None:
            return _SELECT_INVOCATIONS.where(*where).order_by(*order)
        return _SELECT_INVOCATIONS.where(
            invocations.c.key.in_(self.page_keys_statement(selection))
        ).order_by(*order)

    def page_keys_statement(self, selection: InvocationFilter) -> sa.Select[Any]:
        """The keys of a page of :meth:`list_statement`, in its order (its plan is tested)."""
        keys = sa.select(invocations.c.key).where(*self._where(selection))
        return keys.order_by(*_list_order(selection)).limit(selection.limit)

    def count_statement(
        self, selection: InvocationFilter, at_most: int | None = None
    ) -> sa.Select[Any]:
        """The query of :meth:`count_invocations` (``tests/store`` checks its plans)."""
        where = self._where(selection)
        if at_most is None:
            return sa.select(sa.func.count()).select_from(invocations).where(*where)
        matching = sa.select(sa.literal(1)).select_from(invocations).where(*where)
        return sa.select(sa.func.count()).select_from(matching.limit(at_most).subquery())

    async def list_invocations(self, selection: InvocationFilter) -> list[InvocationRow]:
        stmt = self.list_statement(selection)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_invocation_from(row) for row in rows]

    async def count_invocations(
        self, selection: InvocationFilter, *, at_most: int | None = None
    ) -> int:
        stmt = self.count_statement(selection, at_most)
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def failure_counts(self, selection: InvocationFilter) -> list[FailureCount]:
        if selection.limit is not None:
            raise ValueError("failure_counts counts every matching invocation: give no limit")
        c = invocations.c
        hour = self._hour_of(c.occurred_at)
        stmt = (
            sa.select(
                c.function_name,
                c.error_type,
                sa.func.count(),
                sa.func.min(c.occurred_at),
                sa.func.max(c.occurred_at),
            )
            .where(*self._where(selection))
            .group_by(c.function_name, c.error_type, hour)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [FailureCount(*row) for row in rows]

    def accounts_statement(self) -> sa.Select[Any]:
        """The query of :meth:`open_failure_accounts`: open failures per function ARN
        (``tests/store`` checks its plan)."""
        c = invocations.c
        selection = InvocationFilter(statuses=[FailureStatus.OPEN])
        return (
            sa.select(c.function_arn, sa.func.count())
            .where(*self._where(selection))
            .group_by(c.function_arn)
        )

    async def open_failure_accounts(self) -> dict[str, int]:
        # Imported here: the record models are no cost of a command that opens the store.
        from lambda_destinations.schemas import function_account

        async with self._read() as conn:
            rows = (await conn.execute(self.accounts_statement())).all()
        counts: dict[str, int] = defaultdict(int)
        for arn, count in rows:
            if arn and (account := function_account(arn)) is not None:
                counts[account] += int(count)
        return dict(counts)

    async def set_status(
        self, keys: Sequence[str], status: FailureStatus, by: str | None = None
    ) -> int:
        if not keys:
            return 0
        # Who, and an operator's reason (see operations.status.set_by): text from outside.
        params = {"b_keys": list(keys), "b_status": status, "b_by": storable(by), "b_at": utcnow()}
        async with self._write() as conn:
            return int((await conn.execute(self._set_status, params)).rowcount)

    async def deliveries(self, key: str) -> list[DeliveryRow]:
        rows, stored = await self._rows_of_key(self._deliveries, key, DeliveryRow)
        if stored is not None and stored.first_message_id is not None:
            first = DeliveryRow(
                key=key,
                message_id=stored.first_message_id,
                queue=stored.queue,
                receive_count=stored.first_receive_count,
                received_at=stored.first_seen_at,
            )
            rows = sorted([first, *rows], key=lambda row: row.received_at)
        return rows

    async def has_handled(self) -> bool:
        async with self._read() as conn:
            for table in (handler_runs, deliveries, invocations):
                probe = sa.select(sa.literal(1)).select_from(table).limit(1)
                if (await conn.execute(probe)).first() is not None:
                    return True
        return False

    async def handler_runs(self, key: str) -> list[HandlerRun]:
        rows, stored = await self._rows_of_key(self._handler_runs, key, HandlerRun)
        saved_by = None if stored is None else stored.saved_by
        if saved_by is not None and all(run.handler != saved_by for run in rows):
            stored_run = HandlerRun(
                key=key,
                handler=saved_by,
                state=RunState.COMPLETED,
                owner=None,
                claimed_until=None,
                completed_at=stored.first_seen_at,
                attempts=1,
                last_error=None,
            )
            rows = sorted([stored_run, *rows], key=lambda run: run.handler)
        return rows

    async def _rows_of_key(
        self, statement: sa.Select[Any], key: str, cls: type[_R]
    ) -> tuple[list[_R], Any]:
        """The rows ``statement`` selects for ``key``, as ``cls`` (its fields are columns), and
        what the key's invocation row says of its first delivery and its saver (or None)."""
        names = [field.name for field in dataclasses.fields(cls)]
        async with self._read() as conn:
            rows = (await conn.execute(statement, {"key": key})).all()
            stored = (await conn.execute(self._stored_of_key, {"key": key})).first()
        return [cls(**{name: row._mapping[name] for name in names}) for row in rows], stored

    async def list_quarantine(
        self,
        *,
        queue: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
        after: QuarantineCursor | None = None,
    ) -> list[QuarantineRow]:
        stmt = sa.select(*_QUARANTINE_ROW).order_by(
            quarantine.c.quarantined_at.desc(), quarantine.c.id.desc()
        )
        if queue is not None:
            stmt = stmt.where(_of_queue(queue))
        if since is not None:
            stmt = stmt.where(quarantine.c.quarantined_at >= since)
        if after is not None:
            # One range of the quarantined_at index, read backwards: on SQLite its entries end
            # in the id (the rowid), and PostgreSQL sorts only each time's ties (incrementally)
            at = (quarantine.c.quarantined_at, quarantine.c.id)
            values = (after.quarantined_at, after.id)
            stmt = stmt.where(*_keyset_after(at, values, (UTCDateTime, sa.BigInteger)))
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [from_row(QuarantineRow, r) for r in rows]

    async def get_quarantine(self, quarantine_id: int) -> QuarantineRow | None:
        stmt = sa.select(*_QUARANTINE_ROW).where(quarantine.c.id == quarantine_id)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else from_row(QuarantineRow, row)

    async def delete_quarantine(self, quarantine_id: int) -> bool:
        stmt = sa.delete(quarantine).where(quarantine.c.id == quarantine_id)
        async with self._write() as conn:
            deleted = (await conn.execute(stmt)).rowcount
        return bool(deleted)

    async def claim_quarantine(
        self, quarantine_id: int, ttl: float, *, as_read: QuarantineRow | None = None
    ) -> QuarantineRow | None:
        # One UPDATE, so atomic on both backends: of callers at once, one gets the row back.
        now, until = self._lease_clock()
        claimed_until = quarantine.c.resend_claimed_until
        stmt = (
            sa.update(quarantine)
            .where(
                quarantine.c.id == quarantine_id,
                sa.or_(claimed_until.is_(None), claimed_until < now),
            )
            .values(resend_claimed_until=until)
            .returning(*_QUARANTINE_ROW)
        )
        params = self._lease_params(ttl)
        if as_read is not None:
            # Unchanged since the caller read it: a resend made since (a --keep one leaves its
            # time there) is not made a second time.
            read = sa.bindparam("b_read", type_=UTCDateTime())
            stmt = stmt.where(claimed_until.is_not_distinct_from(read))
            params["b_read"] = as_read.resend_claimed_until
        async with self._write() as conn:
            row = (await conn.execute(stmt, params)).first()
        return None if row is None else from_row(QuarantineRow, row)

    async def release_quarantine(
        self, quarantine_id: int, *, sent: bool = False, as_read: QuarantineRow | None = None
    ) -> None:
        # Sent (and kept): the claim ends now rather than vanishing, so the row shows that a
        # resend was made since anyone read it. Not sent: the mark as it was before the claim
        # (cleared, a --keep resend made before would be made again by whoever read it first).
        _now, until = self._lease_clock()
        before = None if as_read is None else as_read.resend_claimed_until
        stmt = (
            sa.update(quarantine)
            .where(quarantine.c.id == quarantine_id)
            .values(resend_claimed_until=until if sent else before)
        )
        async with self._write() as conn:
            await conn.execute(stmt, self._lease_params(0) if sent else {})


# The columns a QuarantineRow holds: the worker's note of its DLQ copy is read apart
# (``dlq_copy``), so the operators' reads stay as they were before it.
_QUARANTINE_ROW = tuple(quarantine.c[field.name] for field in dataclasses.fields(QuarantineRow))


# A column the code reads is missing: the store was made by an older version.
OLDER_SCHEMA = (
    "the store's schema is older than this version of lambda-destinations: "
    "run `lambda-destinations migrate` (the worker also migrates at start)"
)


def parse_store_url(url: str, usage: str) -> sa.URL:
    """``url`` parsed; the one-line StoreUrlError naming ``usage`` when it is no URL (SQLAlchemy
    raises ValueError, not ArgumentError, for a port that is no number: ``postgresql://:/db``)
    or its port is out of range."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise url_error(url, f"not a URL; use {usage}") from exc
    # SQLAlchemy reads the password up to the first "@", "#", "/" and "?" included: the host
    # after a second "@" would be looked up (its database, after a "/" of the password), and
    # the port is checked as SQLAlchemy read it.
    if "@" in (parsed.host or "") or (parsed.password and "@" in (parsed.database or "")):
        raise url_error(url, f"an '@' in the password is written %40; use {usage}")
    if parsed.port is not None and not 0 <= parsed.port <= 65535:
        # SQLAlchemy takes any number, the drivers only when they connect
        raise url_error(url, f"{PORT_PROBLEM}; use {usage}")
    return parsed


def url_error(url: str, problem: str) -> StoreUrlError:
    """The one-line error for a store URL that cannot work; whoever read the URL from the
    settings or an argument names where it came from (StoreUrlError.named)."""
    return StoreUrlError.at(mask_url(url), problem)


def _of_queue(queue: str) -> sa.ColumnElement[bool]:
    """The quarantined messages of ``queue``: its name, the URL's last part; or its URL, told by
    its account and name, as the worker's endpoint may spell the host otherwise
    (``localstack:4566``); but not one whose AWS URL names another region than an AWS URL
    given does (a store that workers of two regions share: a namesake there is another queue);
    or its ARN, as that AWS URL.
    """
    column = quarantine.c.queue
    queue = arn_queue_url(queue) or queue  # an ARN names its queue as its AWS URL does
    suffix = "/" + (queue_path(queue) if "/" in queue else queue)
    # SQLite's LIKE ignores case, and SQS tells "Orders" from "orders": the ending compared
    # exactly too (substr from before the start, of a shorter URL, is the whole URL on both)
    exact = sa.func.substr(column, sa.func.length(column) - len(suffix) + 1) == suffix
    same = sa.and_(column.endswith(suffix, autoescape=True), exact)
    if (region := url_region(queue)) is not None:
        regional = sa.or_(*(column.like(host) for host in AWS_QUEUE_HOST_LIKE))
        here = sa.or_(column.like(f"%://sqs.{region}.%"), column.like(f"%://{region}.queue.%"))
        same = sa.and_(same, sa.or_(sa.not_(regional), here))
    return sa.or_(column == queue, same)
