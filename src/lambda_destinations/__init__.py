"""lambda-destinations: a worker for AWS Lambda asynchronous-invocation destination queues.

The application-side API is importable from here: :func:`invoke_async` starts an asynchronous
invocation and returns its request id; :class:`Results` (or :class:`SyncResults`) reads its
outcome from the store once the worker has stored its destination record. Like ``__version__``
they are imported on first use, so ``import lambda_destinations`` stays cheap for the command
line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lambda_destinations import _version

if TYPE_CHECKING:
    from lambda_destinations.operations.results import (
        InvocationResult,
        Results,
        ResultTimeout,
        SyncResults,
        invoke_async,
        invoke_async_sync,
    )

_RESULTS = "lambda_destinations.operations.results"
_LAZY = {
    "InvocationResult": _RESULTS,
    "ResultTimeout": _RESULTS,
    "Results": _RESULTS,
    "SyncResults": _RESULTS,
    "invoke_async": _RESULTS,
    "invoke_async_sync": _RESULTS,
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version.version()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "InvocationResult",
    "ResultTimeout",
    "Results",
    "SyncResults",
    "__version__",
    "invoke_async",
    "invoke_async_sync",
]
