"""Constants and factory types for the store tests (imported by name: tests/ is no package)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from lambda_destinations.store import DeliveryRow, InvocationRow

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:{name}:$LATEST"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

RowFactory = Callable[..., InvocationRow]
DeliveryFactory = Callable[..., DeliveryRow]
