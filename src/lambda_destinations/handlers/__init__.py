"""Handlers: the protocol, routing, and the built-ins.

The names are imported on first use: ``from lambda_destinations import handler`` and a command
that needs one built-in (the replay's target) do not import every built-in handler (the SMS
handler's phone-number data, the e-mail and webhook clients).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambda_destinations._lazy import lazy_names

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


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "FunctionHandler",
    "Handler",
    "HandlerContext",
    "HandlerRegistry",
    "Route",
    "Router",
    "handler",
]
