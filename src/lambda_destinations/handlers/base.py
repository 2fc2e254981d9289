"""The handler protocol, the context a handler gets, and the decorator for user handlers."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.schemas import DecodedMessage
    from lambda_destinations.store import Store


@dataclasses.dataclass(slots=True)
class HandlerContext:
    """What a handler may know and use about the message it handles.

    Attributes:
        queue_url: the queue the message was received from.
        queue_name: that queue's name (the last part of the URL).
        message_id: the SQS message id (kept across redrives to and from a DLQ).
        receive_count: ``ApproximateReceiveCount``: 1 on the first delivery.
        key: the record's idempotency key (request id + condition, or stream batch).
        owner: this worker's identity, used for claims on handler runs.
        store: the result store.
        aws: AWS clients sharing the configured endpoint and region.
        settings: the worker's settings.
        log: a logger bound to queue, message id, request id, function and receive count.
        repeated: set by a ``records_completion`` handler that found its effect already in
            place (a duplicate delivery); the worker counts it as one.
        in_doubt: set by a handler whose call was in doubt and not sent again
            (``in_doubt = "skip"``); the worker keeps it in the handler run.
    """

    queue_url: str
    queue_name: str
    message_id: str
    receive_count: int
    key: str
    owner: str
    store: Store
    aws: AwsClients
    settings: Settings
    log: FilteringBoundLogger
    repeated: bool = False
    in_doubt: str | None = None


@runtime_checkable
class Handler(Protocol):
    """An async callable ``(message, context) -> None`` with a name.

    Returning means done: the run is recorded as completed for the record's key and never
    repeated for it. Raise :class:`~lambda_destinations.errors.TransientError` (or let a
    throttling / connection error through) to have it retried, or
    :class:`~lambda_destinations.errors.PermanentError` to quarantine the message.

    ``records_completion`` handlers write their own completion atomically with their effect (as
    ``persist`` does), and idempotently: a route made only of them is run without looking up
    completions first, so a duplicate delivery calls them again and that call must change
    nothing (set ``context.repeated`` then). All other handlers are claimed before they run and
    marked completed after.
    """

    name: str
    records_completion: bool

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None: ...


HandlerFunc = Callable[["DecodedMessage", HandlerContext], Awaitable[None]]
F = TypeVar("F", bound=HandlerFunc)

_MARK = "__lambda_destinations_handler__"


@dataclasses.dataclass(slots=True)
class FunctionHandler:
    """A plain async function used as a handler."""

    name: str
    func: HandlerFunc
    records_completion: bool = False

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        await self.func(message, context)


def handler(name: str | None = None) -> Callable[[F], F]:
    """Mark an async function as a handler, found by name when its module is imported.

    List the module in ``handler_modules`` and the name in a route::

        @handler("notify-oncall")
        async def notify(message: DecodedMessage, context: HandlerContext) -> None: ...
    """

    def mark(func: F) -> F:
        is_async = inspect.iscoroutinefunction(func)
        if not is_async:
            raise TypeError(f"handler {func.__qualname__} must be an async function")
        setattr(func, _MARK, name or func.__name__)
        return func

    return mark


def marked_name(obj: object) -> str | None:
    """The name given by :func:`handler`, or None for an unmarked object."""
    value = getattr(obj, _MARK, None)
    return value if isinstance(value, str) else None


def as_handler(name: str, obj: Any) -> Handler:
    """Wrap a function or accept an object that already is a handler."""
    if isinstance(obj, Handler):
        return obj
    if inspect.iscoroutinefunction(obj):
        return FunctionHandler(name=name, func=obj)
    raise TypeError(f"{name} is not an async function or a handler object")
