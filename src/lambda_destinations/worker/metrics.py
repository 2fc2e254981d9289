"""The worker's Prometheus metrics, in a registry of its own (no process-wide state).

Every label value is bounded: queue names come from the configuration, handler names from the
routes, conditions and kinds from a small set (a condition outside it counts as ``other``),
operations and outcomes from the code. Never a request id or a message id.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from lambda_destinations._version import version

PREFIX = "lambda_destinations"
# Conditions Lambda and the event-source mappings are known to send; others count as "other"
# (the decoder accepts any condition, a label must not).
KNOWN_CONDITIONS = frozenset(
    {
        "Success",
        "RetriesExhausted",
        "EventAgeExceeded",
        "ZeroReservedConcurrency",
        "RecursiveInvocationLoop",
        "FunctionError",
        "UnhandledError",
        "",
    }
)
AGE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 4 * 86400, 14 * 86400)
RECEIVE_BUCKETS = (1, 2, 3, 4, 5, 10, 20, 50, 100)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def bounded_condition(condition: str | None) -> str:
    """The condition as a label value: a known one, or ``other``."""
    value = condition or ""
    return value if value in KNOWN_CONDITIONS else "other"


class Metrics:
    """What /metrics shows. One instance per worker; ``render()`` gives the text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            f"{PREFIX}_messages", "Messages settled, by outcome.", ["queue", "outcome"], registry=r
        )
        self.records = Counter(
            f"{PREFIX}_records",
            "Messages decoded, by record kind and condition (invalid: did not decode).",
            ["queue", "kind", "condition"],
            registry=r,
        )
        self.handler_duration = Histogram(
            f"{PREFIX}_handler_duration_seconds",
            "Time one handler call took, in-process retries included.",
            ["handler"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.handler_errors = Counter(
            f"{PREFIX}_handler_errors",
            "Handler calls that did not complete, by class (transient, permanent, timeout).",
            ["handler", "error_class"],
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight", "Messages received and not settled yet.", registry=r
        )
        self.message_age = Histogram(
            f"{PREFIX}_message_age_seconds",
            "Seconds from SentTimestamp to receipt.",
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.receive_count = Histogram(
            f"{PREFIX}_receive_count",
            "ApproximateReceiveCount of received messages.",
            buckets=RECEIVE_BUCKETS,
            registry=r,
        )
        self.receives = Counter(
            f"{PREFIX}_receives",
            "ReceiveMessage calls answered, by queue and whether they were empty.",
            ["queue", "empty"],
            registry=r,
        )
        self.sqs_errors = Counter(
            f"{PREFIX}_sqs_errors",
            "SQS calls that failed, by operation.",
            ["operation"],
            registry=r,
        )
        self.store_seconds = Histogram(
            f"{PREFIX}_store_seconds",
            "Time the store took, by operation.",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.queue_messages = Gauge(
            f"{PREFIX}_queue_messages",
            "Messages in each polled queue and its DLQ (visible, in_flight, delayed).",
            ["queue", "state"],
            registry=r,
        )
        self.replays = Counter(
            f"{PREFIX}_replays",
            "Scheduled replays run, by outcome (invoked, retry, failed).",
            ["outcome"],
            registry=r,
        )
        self.build_info = Gauge(
            f"{PREFIX}_build_info", "The running version.", ["version"], registry=r
        )
        self.build_info.labels(version=version()).set(1)

    def track_in_flight(self, count: Callable[[], int]) -> None:
        """Read the in-flight count from the worker at each scrape."""
        self.in_flight.set_function(lambda: float(count()))

    def observe_received(self, message: dict[str, Any], now: float | None = None) -> None:
        """Age and receive count of one received message."""
        attributes = message.get("Attributes") or {}
        with contextlib.suppress(KeyError, TypeError, ValueError):
            sent = int(attributes["SentTimestamp"]) / 1000.0
            self.message_age.observe(max(0.0, (now or time.time()) - sent))
        with contextlib.suppress(KeyError, TypeError, ValueError):
            self.receive_count.observe(int(attributes["ApproximateReceiveCount"]))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TimedStore:
    """The store, with the time of each of its coroutine methods in ``store_seconds``.

    Everything else (attributes, plain methods) passes through untouched.
    """

    def __init__(self, store: Any, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._wrapped: dict[str, Any] = {}

    @property
    def inner(self) -> Any:
        return self._store

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is not None:
            return wrapped
        value = getattr(self._store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(value):
            return value
        histogram = self._metrics.store_seconds.labels(operation=name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        self._wrapped[name] = timed
        return timed

    async def __aenter__(self) -> Any:
        await self._store.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._store.__aexit__(*exc_info)
