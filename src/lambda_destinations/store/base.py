"""The result store interface: one ABC, one module per backend, chosen by URL scheme.

The store holds what the worker must never lose or double:

- ``invocations``: one row per record key (request id + condition, or a stream batch), with the
  payloads and error fields, and every delivery of it;
- ``handler_runs``: which handlers have completed for a key, and live claims on running ones, so
  a redelivered message never repeats a side effect and two replicas never run the same handler;
- ``quarantine``: every message the worker could not process, raw body and reason.
- ``replays``: the replay ledger, one row per attempt to re-invoke a failed invocation.
- ``operator_actions``: what operators did by hand (ignore, reopen, an edited replay, a purge),
  who, when and why.

All writes are idempotent. Every method may raise
:class:`~lambda_destinations.errors.StoreUnavailable` when the database cannot be reached; the
worker treats that as a transient failure.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import datetime as dt
import enum
import importlib
import json
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from typing import Any

from lambda_destinations._lifetime import Lifetime, until_set
from lambda_destinations._text import storable_text
from lambda_destinations.errors import (
    NOT_MIGRATED,
    ConfigError,
    NewerSchema,
    StoreMisconfigured,
    StoreUrlError,
)
from lambda_destinations.redact import mask_url
from lambda_destinations.store._poll import RowPoll
from lambda_destinations.times import utcnow

# Row ids (a quarantined message's) are 64-bit integers: a larger number names no row, and the
# database's driver would fail on it rather than find nothing.
ROW_ID_MAX = 2**63 - 1
# How much free space reclaim_space gives back in one hold of the write lock: a multiple of
# every SQLite page size, so a step that frees all it may returns exactly this.
RECLAIM_STEP = 8 * 1024 * 1024


class FailureStatus(enum.StrEnum):
    """Where an operator is with a failed invocation."""

    OPEN = "open"
    REPLAYED = "replayed"
    RECOVERED = "recovered"
    IGNORED = "ignored"
    # The failure record of a replay attempt (its request id is the one the replay ledger
    # recorded): the original failure holds the status and lists the attempt, so this row is
    # no failure of its own to count, list as open or replay.
    REPLAY = "replay"


# The statuses of failures of their own: every one but a replay's own record (``replay``), which
# its original failure stands for. What failure statistics count unless asked for a status.
OWN_FAILURE_STATUSES = tuple(s for s in FailureStatus if s is not FailureStatus.REPLAY)


class PruneKind(enum.StrEnum):
    """What the retention settings keep for a time, each pruned on its own."""

    SUCCESSES = "successes"
    FAILURES = "failures"  # resolved: recovered or ignored, and replays' own failure records
    OPEN_FAILURES = "open-failures"
    QUARANTINE = "quarantine"
    REPLAYS = "replays"  # the replay ledger's attempts
    # Handler runs and deliveries of no stored record (a route without persist, or a copy of
    # a record that arrived after the record was pruned): kept as long as successes.
    UNSTORED = "unstored-runs"


@dataclasses.dataclass(frozen=True, slots=True)
class Vacuumed:
    """What a VACUUM did: the bytes the database file and its write-ahead log took on disk
    before it and after it."""

    bytes_before: int
    bytes_after: int


@dataclasses.dataclass(frozen=True, slots=True)
class Backup:
    """What a backup wrote: the file, its size in bytes, and the seconds the copy took."""

    path: Path
    bytes: int
    seconds: float


class RunState(enum.StrEnum):
    CLAIMED = "claimed"
    COMPLETED = "completed"


@dataclasses.dataclass(slots=True)
class InvocationRow:
    """One record key. Payloads are JSON values (already parsed), stored as JSON."""

    key: str
    kind: str  # "invocation" | "stream-failure" | "legacy-dlq"
    envelope: str  # "none" | "sns" | "eventbridge" | "s3"
    request_id: str | None
    function_arn: str | None
    function_name: str | None
    qualifier: str | None
    condition: str | None
    succeeded: bool | None
    approximate_invoke_count: int | None
    error_type: str | None
    error_message: str | None
    stack_trace: list[str] | None
    timestamp: dt.datetime | None  # the record's own timestamp
    request_payload: Any
    response_payload: Any
    record: Any  # the whole record as decoded from the body (JSON value)
    queue: str  # the queue URL it first arrived on
    first_seen_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    status: FailureStatus | None = None  # None for successes; OPEN for new failures
    status_by: str | None = None
    status_at: dt.datetime | None = None
    delivery_count: int = 0  # filled in by reads


@dataclasses.dataclass(slots=True)
class DeliveryRow:
    """One SQS delivery of a record key (a message may be delivered many times)."""

    key: str
    message_id: str
    queue: str
    receive_count: int
    received_at: dt.datetime = dataclasses.field(default_factory=utcnow)


@dataclasses.dataclass(slots=True)
class HandlerRun:
    key: str
    handler: str
    state: RunState
    owner: str | None
    # When the claim lapses; for a released claim (no owner), when it was released.
    claimed_until: dt.datetime | None
    completed_at: dt.datetime | None
    attempts: int
    last_error: str | None


@dataclasses.dataclass(slots=True)
class QuarantineRow:
    """A message the worker gave up on, kept whole so nothing it received is lost."""

    queue: str
    message_id: str
    body: str
    message_attributes: dict[str, Any]
    reason: str
    receive_count: int
    key: str | None = None  # set when the body decoded but a handler failed permanently
    quarantined_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    id: int | None = None  # assigned by the store
    # Until when a resend holds the message (``claim_quarantine``), as read; None when none
    # did since. A past time is a claim that lapsed (its resend was interrupted).
    resend_claimed_until: dt.datetime | None = None

    def resending(self, now: dt.datetime | None = None) -> bool:
        """Whether a resend holds the message now: another resend of it would skip it."""
        until = self.resend_claimed_until
        return until is not None and until > (now or utcnow())


@dataclasses.dataclass(slots=True, frozen=True, order=True)
class InvocationCursor:
    """Where a page of ``list_invocations`` ended: the next page starts after this row.

    The three fields are the list's total order (newest first, or oldest first: the same order
    read the other way), so a keyset page is one index range however deep it is, and rows
    arriving meanwhile never shift later pages. Cursors compare in that order, oldest first
    (``sorted(rows, key=InvocationCursor.after)``).
    """

    occurred_at: dt.datetime  # the record's timestamp, or first_seen_at when it has none
    first_seen_at: dt.datetime
    key: str

    @classmethod
    def after(cls, row: InvocationRow) -> InvocationCursor:
        return cls(row.timestamp or row.first_seen_at, row.first_seen_at, row.key)


@dataclasses.dataclass(slots=True, frozen=True, order=True)
class QuarantineCursor:
    """Where a page of ``list_quarantine`` ended (newest first): the next page starts after
    this row. Time, then id, is the list's total order: ties on the time are kept apart."""

    quarantined_at: dt.datetime
    id: int

    @classmethod
    def after(cls, row: QuarantineRow) -> QuarantineCursor:
        assert row.id is not None  # a row the store listed
        return cls(row.quarantined_at, row.id)


# Rows a page of :meth:`Store.invocation_pages` and :meth:`Store.quarantine_pages` reads: a
# page of payloads or bodies of 10 KB each is 5 MB.
PAGE = 500

# The error type that selects the failures with none, as the tables show them: the function
# never ran (throttled, too old, no concurrency left) or failed without saying a type.
NO_ERROR_TYPE = "-"


@dataclasses.dataclass(slots=True)
class InvocationFilter:
    """Selection for operator commands; every field narrows, None means any."""

    failed_only: bool = True
    function_glob: str | None = None
    error_type: str | None = None  # NO_ERROR_TYPE: the failures with none
    condition: str | None = None
    since: dt.datetime | None = None  # on the record's timestamp (first_seen_at when absent)
    until: dt.datetime | None = None  # since <= t < until: consecutive windows never overlap
    statuses: Sequence[FailureStatus] | None = None
    request_ids: Sequence[str] | None = None
    limit: int | None = None
    after: InvocationCursor | None = None  # keyset pagination: rows after this one
    # The order: newest first, unless this (a replay's, as the failures happened).
    oldest_first: bool = False


@dataclasses.dataclass(slots=True, frozen=True)
class FailureCount:
    """Invocations of one function with one error type whose time falls in one hour."""

    function_name: str | None
    error_type: str | None
    count: int
    first: dt.datetime  # the earliest record's time (``occurred_at``): also names the hour
    last: dt.datetime


class ReplayOutcome(enum.StrEnum):
    """Where one replay attempt stands.

    ``PENDING``: recorded, Lambda not (yet) asked; ``INVOKED``: Lambda accepted the new
    invocation; ``RECOVERED`` / ``FAILED``: the new invocation's own record arrived and says how
    it ended; ``ERROR``: the Invoke call itself failed, nothing ran.
    """

    PENDING = "pending"
    INVOKED = "invoked"
    RECOVERED = "recovered"
    FAILED = "failed"
    ERROR = "error"


@dataclasses.dataclass(slots=True)
class ReplayAttempt:
    """One attempt to re-invoke a failed invocation with its original payload (the ledger)."""

    original_key: str  # the failed record's key
    original_request_id: str | None
    function_arn: str  # what was (to be) invoked, qualified when the record was
    attempt: int  # 1, 2, ... per original_key
    trigger: str  # "automatic" | "manual"
    requested_by: str  # who: "worker <owner>" or "cli <user>@<host>"
    requested_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    new_request_id: str | None = None  # the RequestId Lambda returned for the new invocation
    outcome: ReplayOutcome = ReplayOutcome.PENDING
    outcome_at: dt.datetime | None = None
    detail: str | None = None
    id: int | None = None  # assigned by the store


@dataclasses.dataclass(slots=True)
class OperatorAction:
    """One thing an operator did by hand, kept in the store (the action ledger)."""

    actor: str  # "console alice", "cli user@host"
    action: str  # "ignore", "reopen", "replay", "edit-replay", "bulk-replay", "purge", ...
    target: str  # a record key, a queue URL, or a description of a selection
    reason: str | None = None
    detail: Any = None  # a JSON value: the edited payload, counts, the replay attempt
    # The console form's one-time token: one action a token, in every console process at once
    # (the store keeps each token once).
    nonce: str | None = None
    at: dt.datetime = dataclasses.field(default_factory=utcnow)
    id: int | None = None  # assigned by the store


# -- scheduled jobs and alert windows (their queries: store/_jobs.py) ---------------------------


class JobState(enum.StrEnum):
    """Where a scheduled job stands: ``pending`` until it ran to an end, done or failed."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclasses.dataclass(slots=True)
class ScheduledJob:
    """Work due at ``due_at``; ``payload`` is any JSON object the job's runner understands."""

    key: str  # unique: scheduling the same key again changes nothing
    kind: str  # which runner: "replay", "digest"
    due_at: dt.datetime
    payload: dict[str, Any]
    state: JobState = JobState.PENDING
    owner: str | None = None  # the worker holding the lease
    leased_until: dt.datetime | None = None
    attempts: int = 0  # times the job was taken (counts the current run)
    last_error: str | None = None
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    finished_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AlertAdmission:
    """Where one record landed in its scope's alert window.

    ``send_now`` for the first alerts of the window; the rest are folded into its digest.
    ``digest_scheduled`` is True for the one call that scheduled the digest.
    """

    ordinal: int  # 1 for the record that opened the window
    send_now: bool
    window_start: dt.datetime
    window_end: dt.datetime
    digest_scheduled: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class AlertWindow:
    """What a window collected: ``admitted`` records, first and last admitted at."""

    scope: str
    window_start: dt.datetime
    admitted: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None


def scope_of(*parts: str) -> str:
    """One text for a scope's parts (notifier, function, error type), unambiguous whatever
    they contain, and as the store's text holds it (a record's error type may hold a NUL or a
    lone surrogate: U+FFFD, as the record's own error type is stored)."""
    return storable_text(json.dumps(list(parts), separators=(",", ":"), ensure_ascii=False))


# What an in-memory store loses for a one-shot command: each opens a database of its own.
KEPT_BY_NO_COMMAND = "each command opens a new, empty one, gone when it exits"


class Store(Lifetime):
    """A result store. Use as ``async with Store.from_url(url) as store:``."""

    url: str

    def __init__(self, url: str, **options: Any) -> None:
        """Backends take the URL and their own keyword options; nothing connects before open()."""
        self.url = url
        self._row_poll = RowPoll(self.invocations_arrived)

    @property
    def in_memory(self) -> bool:
        """True when what is stored is gone once the process exits (SQLite's ``:memory:``)."""
        return False

    def refuse_in_memory(self, lost: str = KEPT_BY_NO_COMMAND, origin: str | None = None) -> None:
        """StoreUrlError (exit 3) when this store is in memory, ``lost`` saying what that loses
        and ``origin`` where the URL was set: for the CLI and the worker, which open the store
        of the user's settings. Tests and library code use an in-memory store on purpose, so
        from_url takes one."""
        if self.in_memory:
            raise StoreUrlError.at(
                mask_url(self.url),
                f"an in-memory database: {lost}; give a file path such as "
                "sqlite:///lambda-destinations.db, or postgresql://user@host/db",
                origin,
            )

    @staticmethod
    def from_url(url: str, **options: Any) -> Store:
        """The backend for ``url``'s scheme, imported lazily (``sqlite:///``, ``postgresql://``)."""
        return open_store_class(url)(url, **options)

    # -- lifetime ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (a pool for server databases). Does not migrate."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self, *, write: bool = False) -> None:
        """Raise StoreUnavailable unless a trivial query succeeds; with ``write``, unless a
        write that leaves nothing behind also reaches the disk (a full disk, a read-only file
        or a held write lock answer a read, not a write)."""

    @abc.abstractmethod
    async def migrate(self) -> list[int]:
        """Apply pending migrations in order; return the versions applied (empty if none)."""

    @abc.abstractmethod
    async def pending_migrations(self) -> list[int]:
        """The versions not applied yet; NewerSchema if a newer release migrated the store with
        a version that does not let this release write."""

    async def check_tables(self, *, writes: bool = False) -> None:
        """Refuse a database with no tables (StoreMisconfigured, exit 3: not the worker's, or
        never migrated; no retry brings its tables), and, when the caller ``writes``, one a
        newer release migrated with a version this release may not write (NewerSchema).
        Reading a newer schema goes on."""
        try:
            pending = await self.pending_migrations()
        except NewerSchema:
            if writes:
                raise
            return
        if 1 in pending:
            raise StoreMisconfigured.at(mask_url(self.url), NOT_MIGRATED)

    async def checkpoint(self) -> None:
        """Copy what a journal of the store's own holds into its main file now (SQLite's WAL),
        raising StoreUnavailable when that fails; nothing for a server's database."""

    def no_room(self) -> tuple[str, str] | None:
        """Why the store has no room to grow, and the fix, when the backend can tell (a SQLite
        file's disk nearly full, the file size limit nearly reached); None otherwise. The
        worker's writing ping fails then, and `doctor` reports it."""
        return None

    async def pooler_problem(self) -> str | None:
        """Why the store's connections cannot work as they are set (for `doctor`): a pooler
        in transaction mode the URL does not name; None when none is seen."""
        return None

    async def write_problems(self) -> list[str] | None:
        """What keeps this store's user from writing its tables (for `doctor`): empty when
        nothing does, None when the backend cannot tell before a write (SQLite tells a file
        this user may not write, and says the rest then)."""
        return None

    async def schema(self) -> str | None:
        """The schema that holds the store's tables, as SQL names it (quoted where it must
        be), where the backend has schemas; None otherwise. For `doctor`'s GRANT."""
        return None

    # -- the worker's path ------------------------------------------------------------------

    @abc.abstractmethod
    async def completed_handlers(self, key: str) -> frozenset[str]:
        """The names of the handlers recorded as completed for ``key``."""

    @abc.abstractmethod
    async def save_invocation(
        self,
        row: InvocationRow,
        delivery: DeliveryRow,
        *,
        complete_handler: str | None = None,
    ) -> bool:
        """Insert the invocation unless its key exists, add the delivery, and mark
        ``complete_handler`` completed, all in one transaction. True if the row is new."""

    @abc.abstractmethod
    async def add_delivery(self, delivery: DeliveryRow) -> None:
        """Record a delivery of a key already stored (idempotent per message id + receive count)."""

    @abc.abstractmethod
    async def claim_handler(self, key: str, handler: str, owner: str, ttl: float) -> bool:
        """Claim a handler run for ``ttl`` seconds.

        True when the caller may run it: no completed run exists and no other owner holds an
        unexpired claim. A claim by the same owner is renewed. Expired claims are taken over.
        """

    @abc.abstractmethod
    async def renew_claim(self, key: str, handler: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s claim to ``ttl`` seconds from now, as its worker does while the
        handler runs. False when the claim is no longer the owner's (taken over or gone)."""

    @abc.abstractmethod
    async def complete_handler(
        self, key: str, handler: str, owner: str, *, detail: str | None = None
    ) -> bool:
        """Mark the run completed (whoever held the claim); idempotent. ``detail`` (an in-doubt
        call, say) is kept as the run's ``last_error``. False when it was completed already
        (the first completion, its time and owner, is kept)."""

    @abc.abstractmethod
    async def release_handler(
        self, key: str, handler: str, owner: str, error: str | None = None
    ) -> None:
        """Drop ``owner``'s claim so a later delivery may run the handler; keep ``error``."""

    @abc.abstractmethod
    async def save_quarantine(self, row: QuarantineRow) -> bool:
        """Keep a quarantined message; idempotent per (queue, message id). True if new."""

    @abc.abstractmethod
    async def record_dlq_copy(self, queue: str, message_id: str, dlq: str) -> None:
        """Note on a quarantined message's row that the DLQ ``dlq`` took its copy (SQS
        answered the send): a delivery of it again is deleted without another copy."""

    @abc.abstractmethod
    async def dlq_copy(self, queue: str, message_id: str) -> str | None:
        """The DLQ a quarantined message's copy was sent to (``record_dlq_copy``); None when
        it has no row, or none is known to have reached a DLQ."""

    # -- the operators' path ----------------------------------------------------------------

    @abc.abstractmethod
    async def get_invocation(self, key_or_request_id: str) -> InvocationRow | None:
        """By exact key, else by request id (the newest row of that request id)."""

    @abc.abstractmethod
    async def request_ids_starting(self, prefix: str, *, limit: int) -> list[str]:
        """Up to ``limit`` request ids of stored records that start with ``prefix``, in order."""

    async def wait_for_invocation(
        self,
        request_id: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the row is read once more at the end
    ) -> InvocationRow | None:
        """The invocation of ``request_id`` as soon as it is stored, waiting at most ``timeout``
        seconds; None when it has not arrived by then (it is read once more at the end).

        This default reads the row once, then waits until one query for every waiter of the
        store (:class:`RowPoll`: 20 ms doubling to 200 ms) finds it, and reads it again.
        PostgreSQL overrides it: it LISTENs, and runs no query while waiting.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        async with self._row_poll.watch(request_id) as arrived:
            while True:
                done, row = await self._read_or_wait(request_id, arrived, deadline)
                if done:
                    return row

    async def _read_or_wait(
        self, request_id: str, arrived: asyncio.Event, deadline: float
    ) -> tuple[bool, InvocationRow | None]:
        """One turn of a wait: read the row; (True, the row) once it is there or the time is
        up, else wait until ``arrived`` is set (or the deadline), and (False, None)."""
        arrived.clear()
        row = await self.get_invocation(request_id)
        left = deadline - asyncio.get_running_loop().time()
        if row is not None or left <= 0:
            return True, row
        await until_set(arrived, left)  # then read once more and give up
        return False, None

    @abc.abstractmethod
    async def invocations_arrived(self, idents: Collection[str]) -> Collection[str]:
        """Which of ``idents`` (keys or request ids) have a row, in one query: for the waiters'
        shared poll (:class:`RowPoll`)."""

    @abc.abstractmethod
    async def list_invocations(self, selection: InvocationFilter) -> list[InvocationRow]:
        """Newest first (by record timestamp, then first seen, then key); oldest first when
        the selection says ``oldest_first``."""

    async def invocation_pages(
        self, selection: InvocationFilter, *, page: int | None = None
    ) -> AsyncIterator[list[InvocationRow]]:
        """What :meth:`list_invocations` answers (at most ``selection.limit`` rows, in its
        order), read a keyset page of ``page`` rows at a time: a caller that lets each page go
        holds at most one page's payloads, however many rows match (``page``: :data:`PAGE`)."""
        page = page or PAGE
        left, after = selection.limit, selection.after
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            rows = await self.list_invocations(
                dataclasses.replace(selection, limit=size, after=after)
            )
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = InvocationCursor.after(rows[-1])
            left = None if left is None else left - len(rows)

    @abc.abstractmethod
    async def count_invocations(
        self, selection: InvocationFilter, *, at_most: int | None = None
    ) -> int:
        """How many match; with ``at_most``, counting stops there (a result of ``at_most``
        means "at least that many"), so the count costs at most that many index entries."""

    @abc.abstractmethod
    async def failure_counts(self, selection: InvocationFilter) -> list[FailureCount]:
        """Counts per function, error type and UTC hour of the record's time, counted by the
        database (``failures stats`` over millions of rows reads no payload). Any order."""

    @abc.abstractmethod
    async def open_failure_accounts(self) -> dict[str, int]:
        """How many open failures each account has, by the account their function's ARN names
        (a record without one is in none): the accounts a replay of them calls Lambda in.
        Read through the index of statuses and grouped by the database, which answers one row
        per function ARN but reads every open failure: 0.55 s for the 160,000 open failures of
        a SQLite store of a million records (``doctor`` asks it once)."""

    @abc.abstractmethod
    async def set_status(
        self, keys: Sequence[str], status: FailureStatus, by: str | None = None
    ) -> int:
        """Set the failure status of these keys; return how many rows changed."""

    @abc.abstractmethod
    async def deliveries(self, key: str) -> list[DeliveryRow]:
        """Oldest first."""

    @abc.abstractmethod
    async def handler_runs(self, key: str) -> list[HandlerRun]: ...

    @abc.abstractmethod
    async def has_handled(self) -> bool:
        """Whether the store keeps a trace of any record handled (a record, a delivery or a
        handler run): False for a new store, which knows of no effect already made."""

    @abc.abstractmethod
    async def list_quarantine(
        self,
        *,
        queue: str | None = None,
        since: dt.datetime | None = None,
        limit: int | None = None,
        after: QuarantineCursor | None = None,
    ) -> list[QuarantineRow]:
        """Newest first; ``queue`` a queue's URL, name or ARN, ``since`` the earliest kept,
        ``after`` where the page before ended (keyset pagination)."""

    async def quarantine_pages(
        self, *, queue: str | None = None, page: int | None = None
    ) -> AsyncIterator[list[QuarantineRow]]:
        """What :meth:`list_quarantine` answers for ``queue``, read a keyset page of ``page``
        rows at a time (:data:`PAGE`): a caller that lets each page go holds at most one
        page's bodies."""
        page, after = page or PAGE, None
        while rows := await self.list_quarantine(queue=queue, limit=page, after=after):
            yield rows
            if len(rows) < page:
                return
            after = QuarantineCursor.after(rows[-1])

    @abc.abstractmethod
    async def get_quarantine(self, quarantine_id: int) -> QuarantineRow | None:
        """One quarantined message by its id, or None."""

    @abc.abstractmethod
    async def delete_quarantine(self, quarantine_id: int) -> bool:
        """Forget a quarantined message (it was sent back to its queue); False if unknown."""

    @abc.abstractmethod
    async def claim_quarantine(
        self, quarantine_id: int, ttl: float, *, as_read: QuarantineRow | None = None
    ) -> QuarantineRow | None:
        """Hold a quarantined message for ``ttl`` seconds, to resend it; None if it is gone or
        held by an unexpired claim (another resend). Of callers at once, exactly one gets it.
        With ``as_read`` (the row as the caller read it), None too when a resend was made
        since that read (``release_quarantine(sent=True)``).

        The holder sends the message, then deletes it (``delete_quarantine``) or lets it go
        (``release_quarantine``); a holder that dies leaves the claim to lapse."""

    @abc.abstractmethod
    async def release_quarantine(
        self, quarantine_id: int, *, sent: bool = False, as_read: QuarantineRow | None = None
    ) -> None:
        """Drop the claim on a quarantined message: another resend may take it now. ``sent``:
        it was sent and its copy kept; a resend that read the row before does not send it.
        Not sent, the row gets back the mark it had ``as_read`` (the claim's): an earlier
        --keep resend's stays, and a caller that read the row before this claim may send it."""

    # -- the replay ledger ------------------------------------------------------------------

    @abc.abstractmethod
    async def add_replay(self, attempt: ReplayAttempt) -> bool:
        """Record an attempt and set ``attempt.id``; unique per (original key, attempt number).

        False, and nothing written, when that attempt number exists for the key: another
        process is replaying the same record.
        """

    @abc.abstractmethod
    async def replays(self, original_key: str) -> list[ReplayAttempt]:
        """Every attempt for a failed record, oldest first."""

    @abc.abstractmethod
    async def replay_for_request(self, new_request_id: str) -> ReplayAttempt | None:
        """The attempt whose new invocation got this request id (its own record links back)."""

    @abc.abstractmethod
    async def update_replay(
        self,
        replay_id: int,
        *,
        new_request_id: str | None = None,
        outcome: ReplayOutcome | None = None,
        detail: str | None = None,
    ) -> None:
        """Set the given fields (None leaves a field as it is); ``outcome_at`` with ``outcome``.

        Raises KeyError when no attempt has ``replay_id``.
        """

    @abc.abstractmethod
    async def replay_counts(
        self, keys: Sequence[str], *, outcome: ReplayOutcome | None = None
    ) -> dict[str, int]:
        """How many attempts each key has (those with ``outcome`` only, when given); every key
        asked for is in the result (0 if none). One query a few hundred keys."""

    # -- the action ledger (store/_actions.py) ----------------------------------------------

    @abc.abstractmethod
    async def add_action(self, action: OperatorAction) -> int:
        """Keep ``action``; set and return its id."""

    @abc.abstractmethod
    async def add_action_once(self, action: OperatorAction) -> int | None:
        """Keep ``action`` and return its id, unless an action with its ``nonce`` is kept
        already: then keep nothing and return None. The check and the insert are one statement,
        so two processes given the same form act once between them."""

    @abc.abstractmethod
    async def action_by_nonce(self, nonce: str) -> OperatorAction | None:
        """The action kept with the form's one-time token ``nonce`` (add_action_once), or None."""

    @abc.abstractmethod
    async def set_action_detail(self, action_id: int, detail: Any) -> None:
        """Replace the detail of the action ``action_id`` (what became of an action kept
        before it ran)."""

    @abc.abstractmethod
    async def actions(self, target: str, *, limit: int | None = 100) -> list[OperatorAction]:
        """The actions on ``target`` (a record key or a queue URL), newest first."""

    # -- scheduled jobs and alert windows (store/_jobs.py) ----------------------------------
    # Due replays and alert digests, run by the worker's scheduler (worker/scheduler.py); alert
    # windows, which fold alert storms into digests (handlers/storm.py).

    @abc.abstractmethod
    async def schedule_job(self, job: ScheduledJob) -> bool:
        """Keep ``job`` until it is due; True if new, False (nothing changed) if its key exists."""

    @abc.abstractmethod
    async def take_due_jobs(self, owner: str, *, limit: int, lease: float) -> list[ScheduledJob]:
        """Lease up to ``limit`` due jobs to ``owner`` for ``lease`` seconds, soonest first.

        Atomic: two workers never get the same job while its lease lasts; a job whose lease
        expired (its worker died) is taken again. Each take counts in ``attempts``.
        """

    @abc.abstractmethod
    async def next_job_due(self) -> dt.datetime | None:
        """When the soonest pending job not leased by anyone is due, on the caller's clock
        (leases and due times are judged by the store's); None when there is none."""

    @abc.abstractmethod
    async def finish_job(self, key: str, *, failed: bool = False, error: str | None = None) -> bool:
        """End a pending job as done, or failed (keeping ``error``); False if it had already
        ended."""

    @abc.abstractmethod
    async def retry_job(
        self, key: str, owner: str, *, due_at: dt.datetime, error: str | None = None
    ) -> bool:
        """Give back ``owner``'s lease and run the job again at ``due_at``; False when the
        lease is no longer ``owner``'s (it expired and another worker took the job)."""

    @abc.abstractmethod
    async def renew_job(self, key: str, owner: str, *, lease: float) -> bool:
        """Extend ``owner``'s lease on a pending job to ``lease`` seconds from now; False when
        the lease is no longer ``owner``'s (it expired and another worker took the job)."""

    @abc.abstractmethod
    async def get_job(self, key: str) -> ScheduledJob | None: ...

    @abc.abstractmethod
    async def list_jobs(
        self,
        *,
        kind: str | None = None,
        state: JobState | None = None,
        limit: int | None = None,
    ) -> list[ScheduledJob]:
        """Soonest due first."""

    @abc.abstractmethod
    async def prune(self, kind: PruneKind, before: dt.datetime, *, limit: int) -> int:
        """Delete up to ``limit`` rows of ``kind`` older than ``before`` in one short
        transaction, an invocation with its deliveries and handler runs; return how many
        (invocations, quarantined messages or replay attempts) went. Call again until 0."""

    @abc.abstractmethod
    async def count_prunable(self, kind: PruneKind, before: dt.datetime) -> int:
        """How many rows :meth:`prune` would delete for ``kind`` and ``before`` (a dry run)."""

    async def reclaim_space(self, *, max_bytes: int = RECLAIM_STEP) -> int:
        """Give up to ``max_bytes`` of free pages back to the file system; return how many
        bytes went back.

        SQLite only (a file created with ``auto_vacuum=INCREMENTAL``); PostgreSQL's autovacuum
        reuses the space of deleted rows by itself.
        """
        return 0

    vacuums = False
    """Whether :meth:`vacuum` does anything (SQLite; PostgreSQL's autovacuum does it there)."""

    async def vacuum(self) -> Vacuumed | None:
        """Rewrite the database to its smallest size (SQLite's VACUUM; it also turns on
        incremental auto-vacuum for a file created before it), and say what it took on disk
        before and after. Nothing on PostgreSQL (None)."""
        return None

    async def backup(self, target: Path, *, replace: bool = False) -> Backup | None:
        """Copy the store, as of one moment, into the new file ``target`` while the worker
        writes (SQLite); FileExistsError when ``target`` exists and not ``replace``,
        BackupError when it cannot be written. None where the database's own tool does it
        (PostgreSQL: :meth:`dump_command`)."""
        return None

    def dump_command(self) -> str | None:
        """The command that backs this store up, for a database whose own tool does it
        (PostgreSQL's pg_dump), the password masked; None for a backend :meth:`backup` serves."""
        return None

    @abc.abstractmethod
    async def prune_jobs(self, before: dt.datetime) -> int:
        """Forget jobs that ended, and alert windows that ended, before ``before``; return the
        number of rows removed."""

    @abc.abstractmethod
    async def admit_alert(
        self,
        scope: str,
        key: str,
        *,
        window: float,
        send_first: int,
        digest_kind: str,
        digest_payload: dict[str, Any],
        settle: float = 2.0,
    ) -> AlertAdmission:
        """Admit record ``key`` to the current alert window of ``scope`` (``window`` seconds,
        opened by the first admission after the last one ended).

        The first ``send_first`` records of a window are to be sent now; the first one held
        back schedules the window's digest job (``digest_kind``, key
        ``digest:<scope>:<window start>``, due ``settle`` seconds after the window ends, with
        ``digest_payload`` plus the scope, the window and how many went out before it), and
        every record after it is held back too. So a ``send_first`` changed while a window is
        open (a deploy) neither leaves held records without a digest nor sends one the digest
        counts. Idempotent per (scope, key): a redelivered record gets the same window, ordinal
        and answer, and counts once.
        """

    @abc.abstractmethod
    async def alert_window(self, scope: str, window_start: dt.datetime) -> AlertWindow:
        """How many records a window of ``scope`` admitted, and when the first and last were."""


# scheme -> "module:class", imported only when used so SQLite users never import asyncpg.
_BACKENDS = {
    "sqlite": "lambda_destinations.store.sqlite:SQLiteStore",
    "postgresql": "lambda_destinations.store.postgres:PostgresStore",
    "postgres": "lambda_destinations.store.postgres:PostgresStore",
}


def open_store_class(url: str) -> type[Store]:
    """The Store subclass for ``url``'s scheme; ConfigError naming the fix otherwise."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    target = _BACKENDS.get(scheme)
    if target is None:
        raise StoreUrlError.at(
            mask_url(url),
            "no known scheme: use sqlite:///path/to/file.db or postgresql://user@host/db",
        )
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
        if module_name.endswith("postgres"):
            importlib.import_module("asyncpg")  # SQLAlchemy would import it only when connecting
    except ImportError as exc:
        raise ConfigError(
            f"the {scheme} store needs a package that is not installed ({exc.name}): "
            "pip install 'lambda-destinations[postgres]'"
        ) from None
    cls: type[Store] = getattr(module, class_name)
    return cls
