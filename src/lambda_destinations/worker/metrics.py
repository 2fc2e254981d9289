"""The worker's Prometheus metrics, in a registry of its own (no process-wide state).

The page has no ``*_created`` series: prometheus_client adds one to every counter and
histogram child (a timestamp, as many series again); every counter whose labels are known is
on the page at 0 from the start instead (see :meth:`Metrics.zero`), which is what ``rate()``
needs. They are left out here, not with ``disable_created_metrics()``, which is process-wide.

Every label value is bounded: queue names come from the configuration, handler names from the
routes, conditions and kinds from a small set (a condition outside it counts as ``other``),
operations and outcomes from the code. Never a request id or a message id.
"""

from __future__ import annotations

import inspect
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lambda_destinations._version import version
from lambda_destinations.errors import Outcome

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
        # An event-source mapping's (Kinesis, DynamoDB, Kafka) on-failure records: every
        # stream failure counted as "other" without them.
        "RetryAttemptsExhausted",
        "MaximumPayloadSizeExceeded",
        "",
    }
)
AGE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 4 * 86400, 14 * 86400)
RECEIVE_BUCKETS = (1, 2, 3, 4, 5, 10, 20, 50, 100)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
# The label values each counter can take, known before anything happens (see Metrics.zero).
# An ack of a message whose every handler had completed counts as "duplicate" (dispatch.ack).
OUTCOMES = (*(outcome.value for outcome in Outcome), "duplicate")
ERROR_CLASSES = ("transient", "permanent", "timeout")
# How a read of an S3 object a notice named ended: its record read; never readable (gone, too
# big: the message is quarantined); failed this time (refused, unreachable: it is retried).
S3_READ_OUTCOMES = ("read", "unreadable", "failed")
# Every SQS operation the worker calls (aws_operations' WORKER entries for SQS).
SQS_OPERATIONS = (
    "ReceiveMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibilityBatch",
    "SendMessage",
    "GetQueueAttributes",
    "GetQueueUrl",
)
# The batch calls whose answer lists the entries SQS refused (Failed).
BATCH_OPERATIONS = ("DeleteMessageBatch", "ChangeMessageVisibilityBatch")
REPLAY_OUTCOMES = ("invoked", "retry", "failed")
# queue_messages' role: a queue the worker polls, or the DLQ a polled queue's redrive policy
# names (a queue that is both is sampled as both, one series set each).
POLLED, DLQ = "polled", "dlq"


S = TypeVar("S", "CountedValue", "Observed")


class _Family(Collector, Generic[S]):
    """A labelled series family the worker updates per message, shown as prometheus_client
    shows its own (the same names and samples; no ``_created``, as the page has none), without
    its cost per update.

    prometheus_client's ``inc`` and ``observe`` take a lock per value and walk a histogram's
    buckets in Python: five updates a message cost 39 thousand instructions (see
    bench/MEASUREMENTS.md). Here a series' values are plain floats. They are updated on the
    worker's event loop alone, and read at a scrape in the ops server's thread: under the
    GIL a float's read and a dict's or list's copy are whole, so a scrape sees each value
    whole, as with the library's locks (which lock one value at a time, not a histogram).
    """

    type = ""

    def __init__(
        self, registry: CollectorRegistry, name: str, documentation: str, labels: tuple[str, ...]
    ) -> None:
        self.name = f"{PREFIX}_{name}"
        self.documentation = documentation
        self.labelnames = labels
        self._series: dict[tuple[str, ...], S] = {}
        if not labels:
            self.labels()  # shown from the start, at 0, as the library's unlabelled metrics
        registry.register(self)

    def labels(self, *values: str) -> S:
        """The series of these label values (in the order of the family's label names)."""
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected")
            series = self._series[values] = self._new()
        return series

    def _new(self) -> S:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        family = Metric(self.name, self.documentation, self.type)
        for values, series in self._series.copy().items():
            labels = dict(zip(self.labelnames, values, strict=True))
            self._samples(family, labels, series)
        yield family

    def _samples(self, family: Metric, labels: dict[str, str], series: S) -> None:
        raise NotImplementedError


class CountedValue:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class FastCounter(_Family[CountedValue]):
    type = "counter"

    def _new(self) -> CountedValue:
        return CountedValue()

    def _samples(self, family: Metric, labels: dict[str, str], series: CountedValue) -> None:
        family.add_sample(f"{self.name}_total", labels, series.value)


class Observed:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0.0] * len(bounds)  # each bucket's own, not cumulative
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount <= math.inf:  # NaN falls in no bucket, as in prometheus_client
            self.counts[bisect_left(self._bounds, amount)] += 1


class FastHistogram(_Family[Observed]):
    type = "histogram"

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        buckets: tuple[float, ...],
    ) -> None:
        self.bounds = (*map(float, buckets), math.inf)
        # Each bound's ``le`` label, as prometheus_client writes it (``1.0``, ``+Inf``).
        self._le = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        super().__init__(registry, name, documentation, labels)

    def observe(self, amount: float) -> None:
        """For a histogram without labels."""
        self.labels().observe(amount)

    def _new(self) -> Observed:
        return Observed(self.bounds)

    def _samples(self, family: Metric, labels: dict[str, str], series: Observed) -> None:
        cumulative = 0.0
        for le, count in zip(self._le, series.counts.copy(), strict=True):
            cumulative += count
            family.add_sample(f"{self.name}_bucket", {**labels, "le": le}, cumulative)
        family.add_sample(f"{self.name}_count", labels, cumulative)
        family.add_sample(f"{self.name}_sum", labels, series.sum)


def bounded_condition(condition: str | None) -> str:
    """The condition as a label value: a known one, or ``other``."""
    value = condition or ""
    return value if value in KNOWN_CONDITIONS else "other"


class WithoutCreated(Collector):
    """A registry's metrics without the ``*_created`` samples of their children."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = f"{metric.name}_created"
            metric.samples = [sample for sample in metric.samples if sample.name != created]
            yield metric


class Metrics:
    """What /metrics shows. One instance per worker; ``render()`` gives the page."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = self._per_message_counter(
            "messages", "Messages settled, by outcome.", "queue", "outcome"
        )
        self.records = self._per_message_counter(
            "records",
            "Messages decoded, by record kind and condition (invalid: did not decode).",
            "queue",
            "kind",
            "condition",
        )
        self.handler_duration = self._histogram(
            "handler_duration_seconds",
            "Time one handler call took, in-process retries included.",
            DURATION_BUCKETS,
            "handler",
        )
        self.handler_errors = self._counter(
            "handler_errors",
            "Handler calls that did not complete, by class (transient, permanent, timeout).",
            "handler",
            "error_class",
        )
        self.in_flight = self._gauge("in_flight", "Messages received and not settled yet.")
        self.message_age = self._histogram(
            "message_age_seconds", "Seconds from SentTimestamp to receipt.", AGE_BUCKETS
        )
        self.receive_count = self._histogram(
            "receive_count", "ApproximateReceiveCount of received messages.", RECEIVE_BUCKETS
        )
        self._ages, self._receive_counts = self.message_age.labels(), self.receive_count.labels()
        self.receives = self._per_message_counter(
            "receives",
            "ReceiveMessage calls answered, by queue and whether they were empty.",
            "queue",
            "empty",
        )
        self._sqs_metrics()
        self._store_metrics()
        self.queue_messages = self._gauge(
            "queue_messages",
            "Messages in each polled queue and its DLQ (role polled or dlq; state visible, "
            "in_flight, delayed).",
            "queue",
            "role",
            "state",
        )
        self.replays = self._counter(
            "replays", "Scheduled replays run, by outcome (invoked, retry, failed).", "outcome"
        )
        self.build_info = self._gauge("build_info", "The running version.", "version")
        self.build_info.labels(version=version()).set(1)
        # What is counted per message, by label values.
        self.messages_by = self.messages.labels
        self.records_by = self.records.labels
        self.receives_by = self.receives.labels
        self.handler_duration_by = self.handler_duration.labels

    def _sqs_metrics(self) -> None:
        self.sqs_errors = self._counter(
            "sqs_errors", "SQS calls that failed, by operation.", "operation"
        )
        # At 0 before the worker starts: the calls that describe the queues while it waits for
        # SQS count too, and an increase from 0 is what rate() sees (see zero).
        for operation in SQS_OPERATIONS:
            self.sqs_errors.labels(operation)
        # Entries, not calls: an answered call counts in no sqs_errors series, whatever it
        # refused (an expired receipt handle, typically: the message comes back).
        self.sqs_batch_entries_failed = self._counter(
            "sqs_batch_entries_failed",
            "Entries SQS refused in a batch call it answered (its Failed list), by operation.",
            "operation",
        )
        for operation in BATCH_OPERATIONS:
            self.sqs_batch_entries_failed.labels(operation)
        self.s3_reads = self._counter(
            "s3_reads",
            "Records read from S3 objects a notice named, by outcome (read, unreadable, failed).",
            "outcome",
        )
        for outcome in S3_READ_OUTCOMES:
            self.s3_reads.labels(outcome)

    def _store_metrics(self) -> None:
        self.store_seconds = self._histogram(
            "store_seconds", "Time the store took, by operation.", STORE_BUCKETS, "operation"
        )
        self.store_errors = self._counter(
            "store_errors", "Store calls that raised, by operation.", "operation"
        )
        self.receiving_paused = self._gauge(
            "receiving_paused",
            "1 while receiving is paused because the store is unavailable, else 0.",
        )

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(f"{PREFIX}_{name}", documentation, labels, registry=self.registry)

    def _per_message_counter(self, name: str, documentation: str, *labels: str) -> FastCounter:
        return FastCounter(self.registry, name, documentation, labels)

    def _gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", documentation, labels, registry=self.registry)

    def _histogram(
        self, name: str, documentation: str, buckets: tuple[float, ...], *labels: str
    ) -> FastHistogram:
        return FastHistogram(self.registry, name, documentation, labels, buckets)

    def zero(self, queues: list[str], handlers: list[str]) -> None:
        """Put every series whose label values are known now on the page, at 0 (each SQS
        operation's failures are, from the start).

        Prometheus reads ``rate()`` and ``increase()`` from a series' first sample: a series
        that appears with its first event, at 1, shows no increase, so the first quarantine
        (or handler error, or failed SQS call) since the worker started would never fire an
        alert on ``rate(...) > 0``. At 0 from the start, it does.
        """
        for queue in queues:
            for outcome in OUTCOMES:
                self.messages_by(queue, outcome)
            for empty in ("true", "false"):
                self.receives_by(queue, empty)
            self.records_by(queue, "invalid", "")
        for name in handlers:
            self.handler_duration_by(name)
            for error_class in ERROR_CLASSES:
                self.handler_errors.labels(name, error_class)
        for outcome in REPLAY_OUTCOMES:
            self.replays.labels(outcome)

    @staticmethod
    def track(gauge: Gauge, read: Callable[[], float]) -> None:
        """Read ``gauge``'s value from the worker at each scrape (``in_flight``,
        ``receiving_paused``): never out of step with the state it shows."""
        gauge.set_function(lambda: float(read()))

    def observe_received(self, message: dict[str, Any], now: float | None = None) -> None:
        """Age and receive count of one received message."""
        attributes = message.get("Attributes") or {}
        try:
            sent = int(attributes["SentTimestamp"]) / 1000.0
        except (KeyError, TypeError, ValueError):
            pass
        else:
            self._ages.observe(max(0.0, (now or time.time()) - sent))
        try:
            count = int(attributes["ApproximateReceiveCount"])
        except (KeyError, TypeError, ValueError):
            pass
        else:
            self._receive_counts.observe(count)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The page and its Content-Type, in the format ``accept`` (a request's Accept header)
        asks for: OpenMetrics when it names it (as Prometheus does), else the text format."""
        encode, content_type = choose_encoder(accept)
        return encode(WithoutCreated(self.registry)), content_type


class _Wrapping:
    """An object whose chosen methods are wrapped, each once, on first use (:meth:`_wrap`);
    everything else passes through untouched."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._wrapped: dict[str, Any] = {}

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is not None:
            return wrapped
        value = getattr(self._inner, name)
        wrapper = self._wrap(name, value)
        if wrapper is None:
            return value
        self._wrapped[name] = wrapper
        return wrapper

    def _wrap(self, name: str, value: Any) -> Callable[..., Any] | None:
        """``value`` (the attribute ``name``) wrapped, or None to pass it through."""
        raise NotImplementedError


class TimedStore(_Wrapping):
    """The store, with the time of each of its coroutine methods in ``store_seconds`` and
    the calls that raised in ``store_errors``.

    Everything else (attributes, plain methods) passes through untouched.
    """

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        super().__init__(inner, metrics)
        # Each operation's errors at 0 from the start, not from its first call: a write made
        # rarely (a quarantine's) may fail on its first call, and a series that appears at 1
        # shows no increase, so LambdaDestinationsStoreErrors would not fire (see Metrics.zero).
        for name in dir(type(inner)):
            if self._timed(name, getattr(type(inner), name, None)):
                metrics.store_errors.labels(operation=name)

    @staticmethod
    def _timed(name: str, value: Any) -> bool:
        return not name.startswith("_") and inspect.iscoroutinefunction(value)

    def _wrap(self, name: str, value: Any) -> Callable[..., Any] | None:
        if not self._timed(name, value):
            return None
        histogram = self._metrics.store_seconds.labels(name)
        errors = self._metrics.store_errors.labels(operation=name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            except Exception:
                errors.inc()
                raise
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed

    async def __aenter__(self) -> Any:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._inner.__aexit__(*exc_info)


class CountedSqs(_Wrapping):
    """An SQS client whose calls that raise are counted in ``sqs_errors``, by API name.

    Only the operations of ``SQS_OPERATIONS`` are counted (the label's values stay that set);
    anything else passes through untouched. A call cancelled is not counted: a caller that
    bounds its call with a timeout of its own counts that timeout itself.
    """

    def _wrap(self, name: str, value: Any) -> Callable[..., Any] | None:
        operation = self._inner.meta.method_to_api_mapping.get(name)
        if operation not in SQS_OPERATIONS:
            return None
        errors = self._metrics.sqs_errors.labels(operation)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await value(*args, **kwargs)
            except Exception:
                errors.inc()
                raise

        return counted
