"""The handler protocol, the context a handler gets, and the decorator for user handlers."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable

from pydantic import BaseModel

from lambda_destinations.errors import QuarantineMessage
from lambda_destinations.schemas import DecodedMessage, DecodeError

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.store import Store


@dataclasses.dataclass(slots=True)
class Delivery:
    """The worker's side of one delivery, shared by the worker and the built-in handlers only.

    User handlers are not given it: what they need is on :class:`HandlerContext`. Built-ins
    reach it with :func:`delivery_of`.

    Attributes:
        store: the result store.
        aws: AWS clients sharing the configured endpoint and region.
        settings: the worker's settings.
        owner: who claims handler runs for this delivery (worker, message id, receive count).
        repeated: set by a handler that records its own completion and found its effect
            already in place (a duplicate delivery); the worker counts it as one.
        recorded: set by a handler whose save recorded this delivery (persist, new record or
            not): the worker then adds no delivery row of its own for a duplicate.
        in_doubt: set by a handler whose call was in doubt and not sent again
            (``in_doubt = "skip"``), or whose call reached some recipients only (an email's
            refused for good at RCPT TO): the note the worker keeps in the handler run
            (``last_error``) when it completes.
        sending: the acting call under way, from just before it is sent until its answer
            (handlers/in_doubt.py ``sending``): a call the worker cuts off meanwhile (shutdown,
            ``handler_timeout``) is in doubt.
    """

    store: Store
    aws: AwsClients
    settings: Settings
    owner: str
    repeated: bool = False
    recorded: bool = False
    in_doubt: str | None = None
    sending: Sending | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class Sending:
    """An acting call that may have been sent and is not answered yet.

    Attributes:
        what: the call, as the in-doubt note names it (``webhook https://host``).
        skip: its handler's ``in_doubt`` policy is ``"skip"`` (else ``"resend"``).
        step: the completion this one call records apart (one SMS of several recipients,
            ``storm.send_once``); None when the handler run's own completion records it.
    """

    what: str
    skip: bool
    step: str | None = None


@dataclasses.dataclass(slots=True, frozen=True)
class HandlerContext:
    """What a handler may know about the message it handles.

    Return from the handler to say done; raise :class:`~lambda_destinations.errors.RetryMessage`
    (``delay=`` seconds) to have the message delivered again later, or
    :class:`~lambda_destinations.errors.QuarantineMessage` to quarantine it with a reason.

    Attributes:
        queue_url: the queue the message was received from.
        queue_name: that queue's name (the last part of the URL).
        message_id: the SQS message id (kept across redrives to and from a DLQ).
        receive_count: ``ApproximateReceiveCount``: 1 on the first delivery.
        key: the record's idempotency key (request id + condition, or stream batch).
        log: a logger bound to queue, message id, request id, function and receive count.
        options: the handler's own ``[handlers.NAME]`` table, without ``type`` (empty when
            there is none).
    """

    queue_url: str
    queue_name: str
    message_id: str
    receive_count: int
    key: str
    log: FilteringBoundLogger
    options: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )
    _delivery: Delivery | None = dataclasses.field(default=None, repr=False, compare=False)


def delivery_of(context: HandlerContext) -> Delivery:
    """The worker's side of ``context``'s delivery: for built-in handlers, not user code."""
    if context._delivery is None:
        raise RuntimeError("this handler needs the worker: its context has no delivery")
    return context._delivery


@runtime_checkable
class Handler(Protocol):
    """An async callable ``(message, context) -> None`` with a name.

    Returning means done: the run is recorded as completed for the record's key and never
    repeated for it. Raise :class:`~lambda_destinations.errors.TransientError` (or let a
    throttling / connection error through) to have it retried, or
    :class:`~lambda_destinations.errors.PermanentError` to quarantine the message.
    """

    name: str

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None: ...


def records_completion(handler: Handler) -> bool:
    """Whether ``handler`` writes its own completion atomically with its effect.

    Built-ins only (``persist``, ``replay-outcome``), by a private ``_records_completion``
    attribute: such a handler is idempotent, so a route made only of them runs without looking
    up completions first, and a duplicate delivery calls it again, changing nothing (it sets
    ``repeated`` on the delivery then). All other handlers are claimed before they run and
    marked completed after.
    """
    return getattr(handler, "_records_completion", False) is True


def reads_record_only(handler: Handler) -> bool:
    """Whether ``handler`` may be given the very decoded message every handler of the chain sees.

    Built-ins only, by a private ``_reads_record_only`` attribute: they never change a record.
    The models are frozen but the payloads are plain dicts and lists, so any other handler is
    given a copy of its own: a payload it changes is not what ``persist`` stores, nor what a
    later handler (``replay``) sends.
    """
    return getattr(handler, "_reads_record_only", False) is True


HandlerFunc = Callable[..., Awaitable[object]]
F = TypeVar("F", bound=HandlerFunc)

_MARK = "__lambda_destinations_handler__"


@dataclasses.dataclass(slots=True)
class FunctionHandler:
    """A plain async function used as a handler.

    ``model`` is the record model its first parameter is annotated with
    (``InvocationRecord[MyRequest, MyResponse]``): the record is validated into it before the
    call, and a record that does not fit is quarantined with the reason. None passes the
    :class:`DecodedMessage` itself.
    """

    name: str
    func: HandlerFunc
    model: type[BaseModel] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warned_return: bool = dataclasses.field(default=False, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, func: HandlerFunc, options: Mapping[str, Any] | None = None) -> Self:
        """Wrap ``func``, reading the model from its signature now rather than per message."""
        return cls(
            name=name,
            func=func,
            model=payload_model(func),
            options=types.MappingProxyType(dict(options or {})),
        )

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        if self.options:
            # A copy of its own for each call: a list or table of its settings the handler
            # changes (options["to"].append(...)) must not carry over to the next message.
            options = types.MappingProxyType(copy.deepcopy(dict(self.options)))
            context = dataclasses.replace(context, options=options)
        if self.model is None:
            returned = await self.func(message, context)
        else:
            try:
                record = message.typed(self.model)
            except DecodeError as exc:
                raise QuarantineMessage(f"handler {self.name}: {exc.reason}") from None
            returned = await self.func(record, context)
        if returned is not None:
            self._returned(returned, context)

    def _returned(self, value: object, context: HandlerContext) -> None:
        """A handler's return value, which says nothing: an awaitable it forgot to await is
        its error (the effect never happened); anything else is warned of, once."""
        if inspect.isawaitable(value):
            what = type(value).__name__
            if inspect.iscoroutine(value):
                what = f"the coroutine {value.__qualname__}()"
                value.close()  # else Python warns it was never awaited, naming our line
            raise TypeError(
                f"handler {self.name} returned {what} without awaiting it, so it never ran: "
                "await it in the handler"
            )
        if self.warned_return:
            return
        self.warned_return = True
        what = repr(value) if isinstance(value, bool) else f"a {type(value).__name__}"
        context.log.warning(
            f"handler {self.name} returned {what}, which the worker ignores: the run counts "
            "as done (raise RetryMessage, TransientError or QuarantineMessage to say otherwise; "
            "said once)"
        )


def payload_model(func: HandlerFunc) -> type[BaseModel] | None:
    """The record model ``func``'s first parameter is annotated with; None for DecodedMessage.

    Raises TypeError naming the function when its hints do not resolve or name something else.
    """
    where = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # noqa: BLE001 - any failure to resolve is the same user error
        raise TypeError(f"handler {where}: cannot resolve its type hints ({exc})") from None
    signature = inspect.signature(func)
    try:
        signature.bind(None, None)
    except TypeError:
        raise TypeError(f"handler {where} must take two parameters: (message, context)") from None
    first = next(iter(signature.parameters))
    hint = hints.get(first, Any)
    if hint is Any or hint is DecodedMessage:
        return None
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    raise TypeError(
        f"handler {where}: its first parameter is annotated {hint!r}; "
        "use DecodedMessage or InvocationRecord[MyRequest, MyResponse]"
    )


@typing.overload
def handler(name: F, /) -> F: ...


@typing.overload
def handler(name: str | None = None) -> Callable[[F], F]: ...


def handler(name: str | F | None = None) -> F | Callable[[F], F]:
    """Mark an async function as a handler, found by name when its module is imported.

    List the module in ``handler_modules`` and the name in a route::

        @handler("notify-oncall")
        async def notify(message: DecodedMessage, context: HandlerContext) -> None: ...

    ``@handler`` or ``@handler()`` names it after the function (``notify``). Annotate the first
    parameter ``InvocationRecord[MyRequest, MyResponse]`` to have the record validated into
    your payload models before the call.
    """
    if callable(name):  # bare @handler: given the function itself, not a name
        return handler()(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"@handler(name) takes the handler's name as text, not {name!r}")

    def mark(func: F) -> F:
        is_async = inspect.iscoroutinefunction(func)  # not in the if: it would narrow func
        if not is_async:
            raise TypeError(
                _not_async(f"handler {func.__qualname__}", func, "must be an async function")
            )
        setattr(func, _MARK, name or func.__name__)
        return func

    return mark


def _not_async(what: str, func: Any, said: str) -> str:
    """``what`` (the handler) and ``said``, why ``func`` is none; but an ``async def`` that
    yields is an async generator, never run by a call, and said so."""
    if inspect.isasyncgenfunction(func):
        return f"{what} is an async generator (it yields): a handler returns, it does not yield"
    return f"{what} {said}"


def marked_name(obj: object) -> str | None:
    """The name given by :func:`handler`, or None for an unmarked object."""
    value = getattr(obj, _MARK, None)
    return value if isinstance(value, str) else None


def as_handler(name: str, obj: Any, options: Mapping[str, Any] | None = None) -> Handler:
    """Wrap a function or accept an object that already is a handler."""
    if isinstance(obj, Handler):
        if not inspect.iscoroutinefunction(type(obj).__call__):
            raise TypeError(
                f"{name} is a handler object whose __call__ is not async: define it with "
                "`async def __call__(self, message, context)`"
            )
        if options:
            raise TypeError(f"{name} is a handler object: it takes no settings")
        return obj
    if inspect.iscoroutinefunction(obj):
        return FunctionHandler.of(name, obj, options)
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        said = "is a plain function: define it with `async def`"
        raise TypeError(_not_async(name, obj, said))
    raise TypeError(
        f"{name} is of type {type(obj).__name__}, not an async function or a handler object: point "
        "at an `async def` function, or an object with a name and an "
        "`async def __call__(self, message, context)`"
    )
