"""Asynchronous results for applications: invoke now, read the function's outcome later.

An application starts work with :func:`invoke_async` (Lambda ``Invoke`` with
``InvocationType=Event``), keeps the request id Lambda returns, and answers at once. Lambda
delivers the invocation's record to a destination queue; the worker stores it by request id; the
application (or another one: the console serves the same JSON over HTTP) reads the outcome with
:class:`Results`, which reads any store::

    request_id = await invoke_async("orders-api", {"orderId": 42})
    ...
    async with Results("postgresql://app@db/results") as results:
        outcome = await results.get(request_id)            # None while unknown
        outcome = await results.wait(request_id, timeout=30)  # or ResultTimeout

``SyncResults`` and :func:`invoke_async_sync` do the same for scripts without an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import math
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import NoRegionError

from lambda_destinations._lifetime import Lifetime
from lambda_destinations._request_ids import stored_id
from lambda_destinations._text import storable_text
from lambda_destinations.aws import invoke_event
from lambda_destinations.config import standard_region
from lambda_destinations.errors import (
    ConfigError,
    LambdaDestinationsError,
    StoreUrlProblem,
)
from lambda_destinations.redact import echoed
from lambda_destinations.retrying import answered_and_transient, in_process_retrying
from lambda_destinations.schemas import MessageKind, check_invoke_target, invoke_function_region
from lambda_destinations.store import (
    FailureStatus,
    InvocationFilter,
    InvocationRow,
    ReplayOutcome,
    Store,
)
from lambda_destinations.times import MAX_WAIT

T = TypeVar("T")


class ResultTimeout(LambdaDestinationsError, TimeoutError):
    """No record of the request id arrived within the wait (it may still come later)."""

    def __init__(self, request_id: str, timeout: float) -> None:
        super().__init__(
            f"no result for request id {request_id} within {timeout:g} s: the invocation may "
            "still be running or retrying, or its record has not reached the store yet"
        )
        self.request_id = request_id
        self.timeout = timeout


@dataclasses.dataclass(frozen=True, slots=True)
class InvocationResult:
    """How an asynchronous invocation ended, as its destination record says.

    ``response`` is the function's return value on success; on failure it is Lambda's error
    payload, and ``error_type`` / ``error_message`` say what failed (both None for a failure
    without a function error, such as ``EventAgeExceeded``).
    """

    request_id: str
    succeeded: bool
    condition: str | None
    function_name: str | None
    function_arn: str | None
    qualifier: str | None
    response: Any
    error_type: str | None
    error_message: str | None
    approximate_invoke_count: int | None
    timestamp: dt.datetime | None  # the record's own time (when Lambda finished with it)
    stored_at: dt.datetime  # when the store first saw the record
    status: str | None  # failures only: open, replayed, recovered, ignored, replay
    # A recovered failure's: the request id of the replay that succeeded, whose own record
    # has the function's response (None when the replay ledger no longer holds it).
    recovered_by: str | None = None

    @classmethod
    def from_row(cls, row: InvocationRow, *, recovered_by: str | None = None) -> InvocationResult:
        return cls(
            request_id=row.request_id or row.key,
            succeeded=row.succeeded is True,
            condition=row.condition,
            function_name=row.function_name,
            function_arn=row.function_arn,
            qualifier=row.qualifier,
            response=row.response_payload,
            error_type=row.error_type,
            error_message=row.error_message,
            approximate_invoke_count=row.approximate_invoke_count,
            timestamp=row.timestamp,
            stored_at=row.first_seen_at,
            status=None if row.status is None else str(row.status),
            recovered_by=recovered_by,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``result --json`` and ``GET /api/invocations/{request_id}``."""
        return {
            "request_id": self.request_id,
            "state": "succeeded" if self.succeeded else "failed",
            "condition": self.condition,
            "function_name": self.function_name,
            "function_arn": self.function_arn,
            "qualifier": self.qualifier,
            "response": self.response,
            "error": (
                None if self.succeeded else {"type": self.error_type, "message": self.error_message}
            ),
            "approximate_invoke_count": self.approximate_invoke_count,
            "timestamp": _iso(self.timestamp),
            "stored_at": _iso(self.stored_at),
            "status": self.status,
            "recovered_by": self.recovered_by,
        }


def unknown_result(request_id: str) -> dict[str, Any]:
    """The JSON shape for a request id of which the store has no record (yet)."""
    return {"request_id": request_id, "state": "unknown"}


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


# Where a store URL of Results came from, for the line that says what is wrong with it.
_GIVEN = "given to Results"
# What an in-memory store URL would give Results: "no tables yet", and no record ever.
_IN_MEMORY = "Results would open a new, empty one that no worker writes to"


class Results(Lifetime):
    """Reads invocation outcomes from a store, by request id.

    Give a store URL (opened here, never migrated: the worker migrates) or an open
    :class:`Store` (left open). Use as ``async with Results(url) as results:``. The record of
    an invocation reaches the store only if its function has a destination queue that the
    worker polls and a route that persists it (the default route does).
    """

    def __init__(self, store: str | Store) -> None:
        if not isinstance(store, str | Store):
            raise TypeError(
                f"Results takes a store URL (str) or an open Store, not {type(store).__name__}"
            )
        self._own = isinstance(store, str)
        # A store handed in open is the caller's to open; one made here waits for `async with`.
        self._open = not self._own
        # A reader never creates the store: a missing file is a wrong URL, said in one line.
        try:
            self.store = Store.from_url(store, create=False) if isinstance(store, str) else store
        except StoreUrlProblem as exc:
            raise exc.named(_GIVEN) from None

    async def open(self) -> None:
        try:
            await self._open_store()
        except StoreUrlProblem as exc:
            if not self._own:  # a store handed in open: its URL is the caller's to name
                raise
            raise exc.named(_GIVEN) from None
        self._open = True

    async def _open_store(self) -> None:
        if self._own:
            # Here, not at construction: the CLI refuses one first, in its own words.
            self.store.refuse_in_memory(_IN_MEMORY)
            await self.store.open()
        try:
            await self.store.check_tables()  # the database given is not the worker's: exit 3
        except BaseException:
            if self._own:
                await self.store.close()
            raise

    async def close(self) -> None:
        if self._own:
            self._open = False
            await self.store.close()

    def _check_open(self) -> None:
        # The store's own complaint would name Store.from_url, which the caller never used.
        if not self._open:
            raise RuntimeError(
                "Results is not open: use it as `async with Results(url) as results:`"
            )

    async def get(self, request_id: str) -> InvocationResult | None:
        """The outcome of ``request_id``; None while the store has no record of it.

        The id is read as ``result`` reads it: spaces around it dropped (a line of a file), a
        request id in lower case, as Lambda writes it."""
        request_id = _check_request_id(request_id)
        self._check_open()
        if not holdable(request_id):
            return None  # no record is stored under it (see holdable)
        row = await self.store.get_invocation(request_id)
        return None if row is None else await self._outcome(row, request_id)

    async def wait(
        self,
        request_id: str,
        *,
        timeout: float = 30.0,  # noqa: ASYNC109 - the end of the wait is a result of its own
    ) -> InvocationResult:
        """The outcome of ``request_id`` as soon as its record is stored; :class:`ResultTimeout`
        after ``timeout`` seconds without it.

        PostgreSQL wakes the wait by NOTIFY (no query runs while waiting); on SQLite one query
        a tick looks for every waited id of the store (at most 0.2 s apart).
        """
        request_id = _check_request_id(request_id)
        _check_timeout(timeout)
        self._check_open()
        if not holdable(request_id):
            raise ResultTimeout(request_id, timeout)  # none will ever come (see holdable)
        row = await self.store.wait_for_invocation(request_id, timeout=timeout)
        if row is None:
            raise ResultTimeout(request_id, timeout)
        return await self._outcome(row, request_id)

    async def _outcome(self, row: InvocationRow, ident: str) -> InvocationResult:
        """The outcome of the invocation ``ident`` names, whose newest record is ``row``.

        A failure both its on-failure destination and its dead-letter queue recorded has two
        records (two keys, one request id), and the DLQ message, received later, is often the
        newest: it names no condition, function or response. Read by request id, such a
        failure is its destination's record, with the status of whichever record a replay
        recovered (the replay handler replays the first to reach it). A key reads its own. A
        recovered failure names the replay that succeeded."""
        rows = [row]
        if row.succeeded is False and row.key != ident:
            rows = await self.store.list_invocations(InvocationFilter(request_ids=[ident]))
            shown = next((r for r in rows if r.kind != MessageKind.LEGACY_DLQ), row)
            statuses = {r.status for r in rows}
            status = next(
                (s for s in (FailureStatus.RECOVERED, FailureStatus.REPLAYED) if s in statuses),
                shown.status,
            )
            row = dataclasses.replace(shown, status=status)
        recovered = next((r for r in rows if r.status == FailureStatus.RECOVERED), None)
        by = None if recovered is None else await self._recovered_by(recovered.key)
        return InvocationResult.from_row(row, recovered_by=by)

    async def _recovered_by(self, key: str) -> str | None:
        """The request id of the last replay of ``key`` that recovered it, as the ledger has it."""
        attempts = await self.store.replays(key)
        return next(
            (
                a.new_request_id
                for a in reversed(attempts)
                if a.outcome == ReplayOutcome.RECOVERED and a.new_request_id
            ),
            None,
        )


def holdable(request_id: str) -> bool:
    """Whether a record can be stored under ``request_id``: the store's text holds no NUL and
    no lone surrogate (a record whose id has one is stored with U+FFFD instead), so an id with
    one (a command-line argument that is not UTF-8, say) has no record, on either backend."""
    return storable_text(request_id) == request_id


def _check_request_id(request_id: object) -> str:
    """The id as the store has it (:func:`stored_id`: ``result`` and the HTTP API read it so).

    Any other type, or no id at all, matches no row: the read would say None ("not yet"),
    and a wait would wait its whole timeout, for a caller's bug (the CLI refuses it too)."""
    if not isinstance(request_id, str):
        raise TypeError(f"request_id must be a str, not {type(request_id).__name__}")
    if not request_id.strip():
        raise ValueError(
            f"request_id is {'empty' if not request_id else 'blank'}: give the request id "
            "invoke_async returned (Lambda's, a UUID)"
        )
    return stored_id(request_id)


def _check_timeout(timeout: object) -> None:
    """A wait of a finite number of seconds, at most a day (the CLI's ``--wait``): NaN and
    infinity would wait forever."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not (math.isfinite(timeout) and 0 <= timeout <= MAX_WAIT):
        raise ValueError(f"timeout must be seconds from 0 to {MAX_WAIT} (a day), not {timeout!r}")


class SyncResults:
    """:class:`Results` for scripts: the same methods, blocking, on a private event loop.

    ``with SyncResults(url) as results: outcome = results.wait(request_id, timeout=30)``.
    """

    def __init__(self, store_url: str) -> None:
        if not isinstance(store_url, str):
            raise TypeError(f"SyncResults takes a store URL (str), not {type(store_url).__name__}")
        self._results = Results(store_url)
        self._runner = asyncio.Runner()
        self._state = "new"  # then "open", then "closed"

    def __enter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(self._unusable())
        try:
            self._run(self._results.__aenter__())
        except BaseException:
            # Its event loop (and the loop's sockets) would stay open until garbage collection.
            self._runner.close()
            self._state = "closed"
            raise
        self._state = "open"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._runner.run(self._results.__aexit__(exc_type, exc, tb))
        finally:
            self._runner.close()
            self._state = "closed"

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the private loop, or say what to use instead (asyncio's own errors name its
        Runner, which the caller never met)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop running in this thread: the blocking call is the right one
        else:
            coroutine.close()
            raise RuntimeError(
                "SyncResults blocks, so it cannot run inside async code: use "
                "`async with Results(url) as results:` and await its methods there"
            )
        return self._runner.run(coroutine)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._state != "open":
            coroutine.close()
            raise RuntimeError(self._unusable())
        return self._run(coroutine)

    def _unusable(self) -> str:
        if self._state == "new":
            return "this SyncResults is not open: use it as `with SyncResults(url) as results:`"
        # Its event loop is closed with it: a closed one cannot be opened again.
        return (
            f"this SyncResults is {'already open' if self._state == 'open' else 'closed'}: "
            "open a new one, `with SyncResults(url) as results:`"
        )

    def get(self, request_id: str) -> InvocationResult | None:
        return self._call(self._results.get(request_id))

    def wait(self, request_id: str, *, timeout: float = 30.0) -> InvocationResult:
        return self._call(self._results.wait(request_id, timeout=timeout))


def _as_orjson_writes(value: Any) -> Any:
    """A value the standard library cannot write (a datetime, a UUID, a dataclass), as the
    JSON orjson writes of it, which payloads were sent as before NaN was refused; TypeError
    for one neither can."""
    try:
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable") from None


def invocation_payload(payload: Any) -> bytes:
    """The bytes Invoke sends: ``bytes`` as they are, anything else as JSON.

    ``ValueError`` for NaN or infinity (JSON has no such number: it would be sent as ``null``),
    ``TypeError`` for a value JSON cannot hold (a set, an object), each naming the payload."""
    if isinstance(payload, bytes):
        return payload
    try:
        text = json.dumps(
            payload,
            allow_nan=False,
            ensure_ascii=False,
            separators=(",", ":"),
            default=_as_orjson_writes,
        )
    except ValueError as exc:  # NaN or infinity (or a value that holds itself)
        raise ValueError(
            f"payload is not JSON ({exc}): send a JSON value (finite numbers, None for none, "
            "nothing that holds itself), or bytes"
        ) from None
    except TypeError as exc:
        raise TypeError(
            f"payload must be a JSON value (dict, list, str, number, bool or None) or bytes: {exc}"
        ) from None
    except RecursionError:
        raise ValueError("payload is nested too deeply for JSON: send it as bytes") from None
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON spells it as \udXXX, UTF-8 cannot
        return json.dumps(payload, separators=(",", ":")).encode()


async def invoke_async(
    function: str,
    payload: Any = None,
    *,
    qualifier: str | None = None,
    lambda_client: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    attempts: int = 3,
) -> str:
    """Invoke ``function`` (a name or ARN) asynchronously and return the request id Lambda
    assigned, which its destination record will carry.

    ``payload`` is any JSON value, or ``bytes`` sent as they are. ``lambda_client`` is an
    aiobotocore Lambda client to reuse; without one a client is made for the call (standard
    AWS credentials; ``region``, else the region of a function ARN, else the standard one;
    ``endpoint_url`` for an emulator). Throttling and other errors Lambda answered are tried
    again, up to ``attempts`` in all; a call whose answer was lost is not sent again (Lambda may
    have taken it) and its error is raised.

    Raises ``ValueError``, and sends nothing, when ``function`` is in no form Invoke takes, or
    is the ARN of another region than the client's, or ``qualifier`` is no version or alias, or
    another than the one ``function`` ends with (the check the CLI's ``invoke`` makes, with its
    line), or ``payload`` is no JSON (NaN); ``TypeError`` for an argument of the wrong type;
    :class:`ConfigError` when no region is set anywhere.
    """
    check_invoke_target(function, qualifier)
    _check_options(region=region, endpoint_url=endpoint_url, attempts=attempts)
    body = invocation_payload(payload)
    named = invoke_function_region(function)
    if lambda_client is not None:
        _check_client(lambda_client)
        client_region = getattr(getattr(lambda_client, "meta", None), "region_name", None)
        _check_region(function, named, client_region, "the lambda_client given is for")
        return await _invoke(lambda_client, function, body, qualifier, attempts)
    _check_region(function, named, region, "region= is")
    # botocore's own retries would send an Invoke again after a lost answer: one attempt.
    config = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})
    creating = get_session().create_client(
        "lambda",
        endpoint_url=endpoint_url,
        region_name=region or named or standard_region(),
        config=config,
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(creating)
        except NoRegionError:
            raise ConfigError(
                "no AWS region for invoke_async: pass region='us-east-1' (the function's "
                "region), give the function's ARN, or set AWS_REGION"
            ) from None
        return await _invoke(client, function, body, qualifier, attempts)


def _check_options(*, region: object, endpoint_url: str | None, attempts: object) -> None:
    """TypeError or ValueError, one line, for options botocore would refuse with its own
    words (or tenacity with a comparison of int and str)."""
    for name, value in (("region", region), ("endpoint_url", endpoint_url)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        # No scheme, so mask_url finds no password: one before an "@" is hidden here.
        _user, at, rest = endpoint_url.rpartition("@")
        shown = f"***@{rest}" if at else endpoint_url
        raise ValueError(
            f"endpoint_url {echoed(shown)!r} is not an http:// or https:// URL: write one as "
            "http://127.0.0.1:4566, or None for AWS itself"
        )
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise TypeError(f"attempts must be an int, not {type(attempts).__name__}")
    if attempts < 1:
        raise ValueError(f"attempts must be 1 or more (1: no retry), not {attempts}")


def _check_client(client: object) -> None:
    """TypeError, before anything is sent, for a client that is not aiobotocore's for Lambda.

    boto3's blocks: its invoke would send the Invoke, and only then fail to be awaited, the
    request id of a function that runs lost (an application trying again invokes it twice).
    Another service's client has no invoke, or another one."""
    from aiobotocore.client import AioBaseClient
    from botocore.client import BaseClient

    if isinstance(client, AioBaseClient):
        service = client.meta.service_model.service_name
        if service == "lambda":
            return
        what = f"a client of {service}"
    elif isinstance(client, BaseClient):
        what = "a boto3 client"
    else:
        return  # another client with Lambda's invoke (a test's, a wrapper): the caller's choice
    raise TypeError(
        "lambda_client must be an aiobotocore client of Lambda "
        "(aiobotocore.session.get_session().create_client('lambda')), not "
        f"{what}: give none, and invoke_async makes one (invoke_async_sync where no event "
        "loop runs)"
    )


def _check_region(function: str, named: str | None, client: str | None, whose: str) -> None:
    """ValueError when ``function`` is an ARN of another region than the client's: Lambda
    refuses it ("Functions from 'eu-west-1' are not reachable in this region"), and an
    emulator may take it as its own region's function."""
    if named is None or client is None or named == client:
        return
    raise ValueError(
        f"{echoed(function)!r} is a function of {named}, and {whose} {client}: Lambda "
        f"invokes only its own region's functions: use a client of {named} (without "
        "lambda_client= and region=, invoke_async makes one for the ARN's region)"
    )


async def _invoke(
    client: Any, function: str, body: bytes, qualifier: str | None, attempts: int
) -> str:
    async for attempt in in_process_retrying(
        max(attempts, 1), 10.0, retry_if=answered_and_transient
    ):
        with attempt:
            return await invoke_event(client, function, body, qualifier=qualifier)
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def invoke_async_sync(function: str, payload: Any = None, **options: Any) -> str:
    """:func:`invoke_async` for scripts without an event loop (same arguments)."""
    return asyncio.run(invoke_async(function, payload, **options))


__all__ = [
    "InvocationResult",
    "ResultTimeout",
    "Results",
    "SyncResults",
    "invocation_payload",
    "invoke_async",
    "invoke_async_sync",
    "unknown_result",
]
