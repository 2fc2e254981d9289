"""Constants and factory types for the store tests (imported by name: tests/ is no package)."""

from __future__ import annotations

import datetime as dt
import random
import traceback
from collections.abc import Callable
from typing import Any

from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.retrying import describe_error
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import messages
from lambda_destinations.store import DeliveryRow, InvocationRow
from lambda_destinations.store._sql import insert_values

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:{name}:$LATEST"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

RowFactory = Callable[..., InvocationRow]
DeliveryFactory = Callable[..., DeliveryRow]
PAYLOAD_MARKER = "card-4111111111111111"  # in a refused row's payload: in no error text


def assert_refusal_shown_alone(exc: BaseException, said: str) -> None:
    """``exc``'s line (as the worker logs it) says ``said`` in one line, and neither it nor
    its traceback holds the statement or the row's values."""
    line = describe_error(exc)
    logged = "".join(traceback.format_exception(exc))
    assert said in line
    assert "\n" not in line
    for text in (line, logged):
        assert PAYLOAD_MARKER not in text
        assert "INSERT INTO" not in text


def insert_rows() -> list[dict[str, Any]]:
    """The save INSERT's parameters for simulated records as the worker makes them, odd text
    included (NUL, a lone surrogate), every seventh with a payload of another JSON type: for
    the tests that a backend's own insert stores what SQLAlchemy's would."""
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    decoded = [decode(m.body) for m in messages(60, seed=5, poison_every=0) if not m.attributes]
    rows = []
    for index, message in enumerate(decoded):
        delivery = DeliveryRow(
            key=message.key, message_id=f"m-{index}", queue=queue, receive_count=1
        )
        row = invocation_row(message, queue, delivery.received_at)
        if index % 7 == 0:
            row.request_payload = random.Random(index).choice(["a\x00b \ud800 é", 12, [1, None]])
            row.error_message = "nul \x00 and é"
        rows.append(insert_values(row, delivery, "persist" if index % 2 else None))
    return rows
