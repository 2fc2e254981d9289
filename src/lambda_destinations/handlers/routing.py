"""Routing: which ordered handler chain a record goes through."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fnmatch import fnmatchcase

from lambda_destinations.config import RouteConfig
from lambda_destinations.handlers.base import Handler
from lambda_destinations.schemas import DecodedMessage

SUCCESS = "success"
FAILURE = "failure"
ANY = "any"


def condition_matches(wanted: str, message: DecodedMessage) -> bool:
    """``success``/``failure``/``any`` by outcome, anything else as an exact condition."""
    lowered = wanted.lower()
    if lowered == ANY:
        return True
    if lowered == SUCCESS:
        return message.succeeded is True
    if lowered == FAILURE:
        return message.succeeded is not True
    return message.condition == wanted


def queue_matches(glob: str, queue_name: str, queue_url: str) -> bool:
    """Whether a route's ``queue`` glob matches the queue, by its name or URL."""
    return fnmatchcase(queue_name, glob) or fnmatchcase(queue_url, glob)


def routes_of_no_queue(
    routes: Sequence[RouteConfig], queues: Sequence[tuple[str, str]]
) -> list[str]:
    """Each route whose ``queue`` glob matches none of ``queues`` (name, URL), as
    ``routes.N (condition=… queue=… -> handlers)``: such a route never runs (a typo, or a
    queue left out of ``queues``), and its records go to a later route."""
    return [
        f"routes.{index} ({route.described()})"
        for index, route in enumerate(routes)
        if route.queue is not None
        and not any(queue_matches(route.queue, name, url) for name, url in queues)
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A rule and its chain; every field that is set must match."""

    chain: tuple[Handler, ...]
    condition: str = ANY
    function: str | None = None
    error_type: str | None = None
    queue: str | None = None

    def matches(self, message: DecodedMessage, queue_name: str, queue_url: str) -> bool:
        if not condition_matches(self.condition, message):
            return False
        if self.function is not None:
            name = message.function.function_name if message.function else None
            if name is None or not fnmatchcase(name, self.function):
                return False
        if self.error_type is not None and (
            message.error_type is None or not fnmatchcase(message.error_type, self.error_type)
        ):
            return False
        return self.queue is None or queue_matches(self.queue, queue_name, queue_url)


class Router:
    """The first matching route wins; a record no route matches goes to ``default``."""

    def __init__(self, routes: list[Route], default: tuple[Handler, ...]) -> None:
        self.routes = routes
        self.default = default

    def chain_for(
        self, message: DecodedMessage, queue_name: str, queue_url: str
    ) -> tuple[Handler, ...]:
        for route in self.routes:
            if route.matches(message, queue_name, queue_url):
                return route.chain
        return self.default

    def handler_names(self) -> list[str]:
        """Every handler a record can be given, each once, in route order."""
        return [handler.name for handler in self.handlers()]

    def handlers(self) -> list[Handler]:
        """Every handler a record can be given, each once (by name), in route order."""
        chains = [route.chain for route in self.routes] + [self.default]
        return list({handler.name: handler for chain in chains for handler in chain}.values())
