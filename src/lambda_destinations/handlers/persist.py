"""The built-in `persist` handler: one row per record key, every delivery, in the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers.base import HandlerContext, delivery_of
from lambda_destinations.schemas import DecodedMessage
from lambda_destinations.store import DeliveryRow, FailureStatus, InvocationRow
from lambda_destinations.times import utcnow


def invocation_row(
    message: DecodedMessage, queue_url: str, first_seen_at: dt.datetime | None = None
) -> InvocationRow:
    """The store row for a decoded message, first seen now unless ``first_seen_at`` says."""
    function = message.function
    return InvocationRow(
        key=message.key,
        kind=str(message.kind),
        envelope=str(message.envelope),
        request_id=message.request_id,
        function_arn=function.arn if function else None,
        function_name=function.function_name if function else None,
        qualifier=function.qualifier if function else None,
        condition=message.condition,
        succeeded=message.succeeded,
        approximate_invoke_count=message.approximate_invoke_count,
        error_type=message.error_type,
        error_message=message.error_message,
        stack_trace=message.stack_trace,
        timestamp=message.timestamp,
        request_payload=message.request_payload,
        response_payload=message.response_payload,
        record=message.record_json,
        queue=queue_url,
        status=None if message.succeeded is True else FailureStatus.OPEN,
        first_seen_at=first_seen_at or utcnow(),
    )


class PersistHandler:
    """Writes the invocation, its delivery and its own completion in one transaction (one
    row: the invocation row holds the other two, see store/migration_9.py).

    It needs no claim: the insert is idempotent by key, so two workers racing on a duplicate
    both succeed and still leave one row.
    """

    _records_completion = True  # see handlers.base.records_completion
    _reads_record_only = True  # see handlers.base.reads_record_only

    def __init__(self, name: str = "persist") -> None:
        self.name = name

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        delivery = DeliveryRow(
            key=message.key,
            message_id=context.message_id,
            queue=context.queue_url,
            receive_count=context.receive_count,
        )
        worker = delivery_of(context)
        # First seen when this delivery was received: the row then holds the delivery.
        row = invocation_row(message, context.queue_url, delivery.received_at)
        new = await worker.store.save_invocation(row, delivery, complete_handler=self.name)
        # Whether the record was stored before: the dispatcher may have taken this delivery
        # for a repeat already (a claimed handler before persist completed on an earlier one).
        # A second persist of the route ([handlers.archive] of type persist) finds the row the
        # first one saved for this very delivery: that is no repeat.
        if not worker.recorded:
            worker.repeated = not new
        worker.recorded = True  # the save holds this delivery in the row, or added its row


def build(name: str, options: dict[str, Any], settings: Settings) -> PersistHandler:
    if options:
        raise ConfigError(
            f"handlers.{name}: the persist handler takes no settings (got {', '.join(options)})"
        )
    return PersistHandler(name)
