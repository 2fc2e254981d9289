"""Constants and factory types for the store tests (imported by name: tests/ is no package)."""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Callable

from lambda_destinations.retrying import describe_error
from lambda_destinations.store import DeliveryRow, InvocationRow

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
