"""Handlers: the protocol, routing, and the built-ins."""

from lambda_destinations.handlers.base import FunctionHandler, Handler, HandlerContext, handler
from lambda_destinations.handlers.registry import HandlerRegistry
from lambda_destinations.handlers.routing import Route, Router

__all__ = [
    "FunctionHandler",
    "Handler",
    "HandlerContext",
    "HandlerRegistry",
    "Route",
    "Router",
    "handler",
]
