"""Handlers: the protocol, routing, and the built-ins.

The names are imported on first use: ``from lambda_destinations import handler`` and a command
that needs one built-in (the replay's target) do not import every built-in handler (the SMS
handler's phone-number data, the e-mail and webhook clients).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lambda_destinations.handlers.base import FunctionHandler, Handler, HandlerContext, handler
    from lambda_destinations.handlers.registry import HandlerRegistry
    from lambda_destinations.handlers.routing import Route, Router

_BASE = "lambda_destinations.handlers.base"
_ROUTING = "lambda_destinations.handlers.routing"
_LAZY = {
    "FunctionHandler": _BASE,
    "Handler": _BASE,
    "HandlerContext": _BASE,
    "handler": _BASE,
    "HandlerRegistry": "lambda_destinations.handlers.registry",
    "Route": _ROUTING,
    "Router": _ROUTING,
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FunctionHandler",
    "Handler",
    "HandlerContext",
    "HandlerRegistry",
    "Route",
    "Router",
    "handler",
]
