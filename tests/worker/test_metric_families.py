"""The per-message metrics (FastCounter, FastHistogram) show on /metrics exactly as
prometheus_client's own Counter and Histogram would."""

from __future__ import annotations

import math
import sys
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from lambda_destinations.worker.metrics import (
    PREFIX,
    FastCounter,
    FastHistogram,
    WithoutCreated,
)

BUCKETS = (0.1, 1, 5, 60)
# On a bound, between bounds, below the first, past the last, infinite, not a number.
AMOUNTS = (0.1, 0.05, 0.0, 1, 3.2, 5, 59.99, 60, 61, 1e9, math.inf, math.nan, 0.7)


def pages(registry: CollectorRegistry) -> tuple[str, str]:
    """The text format and OpenMetrics, as /metrics shows them (no ``_created`` series)."""
    shown = WithoutCreated(registry)
    return generate_latest(shown).decode(), generate_openmetrics(shown).decode()


def test_counts_and_observations_render_as_prometheus_client_renders_them() -> None:
    ours, theirs = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    name = f"{PREFIX}_things"
    fast_counter = FastCounter(ours, "things", "Things, by kind.", ("queue", "kind"))
    counter = Counter(name, "Things, by kind.", ("queue", "kind"), registry=theirs)
    fast_age = FastHistogram(ours, "age_seconds", "Age.", (), BUCKETS)
    age = Histogram(f"{PREFIX}_age_seconds", "Age.", buckets=BUCKETS, registry=theirs)
    fast_took = FastHistogram(ours, "took_seconds", "Took.", ("handler",), BUCKETS)
    took = Histogram(
        f"{PREFIX}_took_seconds", "Took.", ("handler",), buckets=BUCKETS, registry=theirs
    )
    fast_counter.labels("q", "never")  # a series at 0
    counter.labels("q", "never")
    for i, amount in enumerate(AMOUNTS):
        kind = "a" if i % 3 else "b"
        fast_counter.labels("q", kind).inc()
        counter.labels("q", kind).inc()
        fast_counter.labels("r", kind).inc(2.5)
        counter.labels("r", kind).inc(2.5)
        fast_age.observe(amount)
        age.observe(amount)
        handler = "persist" if amount == amount and amount < 5 else "notify"
        fast_took.labels(handler).observe(amount)
        took.labels(handler).observe(amount)

    assert pages(ours) == pages(theirs)
    with pytest.raises(ValueError, match="non-negative"):
        fast_counter.labels("q", "a").inc(-1)
    with pytest.raises(ValueError, match="2 label values"):
        fast_counter.labels("q")


def test_a_scrape_in_another_thread_while_new_series_appear() -> None:
    registry = CollectorRegistry(auto_describe=True)
    counter = FastCounter(registry, "things", "Things.", ("n",))
    histogram = FastHistogram(registry, "took", "Took.", ("n",), BUCKETS)
    errors: list[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                generate_latest(registry)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
                return

    reader = threading.Thread(target=scrape)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    reader.start()
    try:
        for n in range(3_000):
            counter.labels(str(n)).inc()
            histogram.labels(str(n)).observe(n)
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(interval)
    assert errors == []
    assert registry.get_sample_value(f"{PREFIX}_things_total", {"n": "2999"}) == 1
