"""lambda-destinations: a worker for AWS Lambda asynchronous-invocation destination queues.

Two small APIs are importable from here:

- for handler authors: :func:`handler` marks an async function ``(record, context)`` as a
  handler; its first parameter is a :class:`DecodedMessage` or an
  ``InvocationRecord[MyRequest, MyResponse]`` validated before the call; :class:`HandlerContext`
  is what it knows about the message; :class:`RetryMessage`, :class:`QuarantineMessage`,
  :class:`TransientError` and :class:`PermanentError` end the message another way than done.
- for applications: :func:`invoke_async` starts an asynchronous invocation and returns its
  request id; :class:`Results` (or :class:`SyncResults`) reads its outcome from the store once
  the worker has stored its destination record.

Like ``__version__`` they are imported on first use, so ``import lambda_destinations`` stays
cheap for the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lambda_destinations import _version
from lambda_destinations._lazy import lazy_names

if TYPE_CHECKING:
    from lambda_destinations.errors import (
        PermanentError,
        QuarantineMessage,
        RetryMessage,
        TransientError,
    )
    from lambda_destinations.handlers.base import HandlerContext, handler
    from lambda_destinations.operations.results import (
        InvocationResult,
        Results,
        ResultTimeout,
        SyncResults,
        invoke_async,
        invoke_async_sync,
    )
    from lambda_destinations.schemas import DecodedMessage, ErrorPayload, InvocationRecord

_RESULTS = "lambda_destinations.operations.results"
_ERRORS = "lambda_destinations.errors"
_HANDLERS = "lambda_destinations.handlers.base"
_SCHEMAS = "lambda_destinations.schemas"
_LAZY = {
    "DecodedMessage": _SCHEMAS,
    "ErrorPayload": _SCHEMAS,
    "HandlerContext": _HANDLERS,
    "InvocationRecord": _SCHEMAS,
    "PermanentError": _ERRORS,
    "QuarantineMessage": _ERRORS,
    "RetryMessage": _ERRORS,
    "TransientError": _ERRORS,
    "handler": _HANDLERS,
    "InvocationResult": _RESULTS,
    "ResultTimeout": _RESULTS,
    "Results": _RESULTS,
    "SyncResults": _RESULTS,
    "invoke_async": _RESULTS,
    "invoke_async_sync": _RESULTS,
}


_lazy_attribute = lazy_names(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version.version()
    return _lazy_attribute(name)


__all__ = [
    "DecodedMessage",
    "ErrorPayload",
    "HandlerContext",
    "InvocationRecord",
    "InvocationResult",
    "PermanentError",
    "QuarantineMessage",
    "ResultTimeout",
    "Results",
    "RetryMessage",
    "SyncResults",
    "TransientError",
    "__version__",
    "handler",
    "invoke_async",
    "invoke_async_sync",
]
