"""Store fixtures: an open, migrated store per backend, and row factories."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from store_factories import ARN, QUEUE, T0, DeliveryFactory, RowFactory

from lambda_destinations.store import DeliveryRow, InvocationRow, Store


@pytest.fixture
async def unmigrated_store(store_url: str) -> AsyncIterator[Store]:
    """An open store on an empty database."""
    async with Store.from_url(store_url) as store:
        yield store


@pytest.fixture
async def store(unmigrated_store: Store) -> Store:
    """An open, migrated store (SQLite or PostgreSQL: see ``store_url``)."""
    await unmigrated_store.migrate()
    return unmigrated_store


@pytest.fixture
async def other_store(store: Store) -> AsyncIterator[Store]:
    """A second store on the same database, as another replica (or process) would have."""
    async with Store.from_url(store.url) as other:
        yield other


@pytest.fixture
def make_row() -> RowFactory:
    """Failure rows with unique keys and request ids; keyword arguments override fields."""
    counter = itertools.count(1)

    def make(**fields: Any) -> InvocationRow:
        n = next(counter)
        name = fields.pop("function_name", "orders-api")
        values: dict[str, Any] = {
            "key": f"req-{n}:RetriesExhausted",
            "kind": "invocation",
            "envelope": "none",
            "request_id": f"req-{n}",
            "function_arn": ARN.format(name=name),
            "function_name": name,
            "qualifier": "$LATEST",
            "condition": "RetriesExhausted",
            "succeeded": False,
            "approximate_invoke_count": 3,
            "error_type": "TimeoutError",
            "error_message": "timed out",
            "stack_trace": ['  File "/var/task/app.py", line 1, in handler'],
            "timestamp": T0 + dt.timedelta(minutes=n),
            "request_payload": {"orderId": n},
            "response_payload": {"errorType": "TimeoutError"},
            "record": {"version": "1.0"},
            "queue": QUEUE,
        }
        values.update(fields)
        return InvocationRow(**values)

    return make


@pytest.fixture
def make_delivery() -> DeliveryFactory:
    """A delivery of ``row`` (a new message id unless given)."""
    counter = itertools.count(1)

    def make(row: InvocationRow, **fields: Any) -> DeliveryRow:
        values: dict[str, Any] = {
            "key": row.key,
            "message_id": f"msg-{next(counter)}",
            "queue": row.queue,
            "receive_count": 1,
        }
        values.update(fields)
        return DeliveryRow(**values)

    return make
