"""Messages the worker quarantined: described for people, and sent back to their queue.

The store keeps every quarantined message whole (body, attributes, reason). When the queue has
no DLQ the store holds the only copy, so this is the way back: ``resend`` sends the body and
the message's own attributes to the queue it came from, then forgets the stored copy (unless
asked to keep it). Interrupted between the two, the message is in both places, and the
worker's idempotency absorbs the duplicate.
"""

from __future__ import annotations

import json
from typing import Any

from lambda_destinations.store import QuarantineRow, Store
from lambda_destinations.worker.queues import sendable_attribute

# The worker's own attributes, added when it sent the message to a DLQ: not the message's.
_OWN_ATTRIBUTE_PREFIX = "LambdaDestinations."


def describe_quarantined(row: QuarantineRow, *, body: bool = False) -> dict[str, Any]:
    """A quarantined message as one flat JSON-able dict (the documented ``--json`` shape)."""
    # Imported here: the schemas (pydantic models) cost `quarantine list` on a store with
    # nothing quarantined.
    from lambda_destinations.schemas import DecodeError, decode

    out: dict[str, Any] = {
        "id": row.id,
        "quarantined_at": row.quarantined_at.isoformat(),
        "queue": row.queue,
        "message_id": row.message_id,
        "receive_count": row.receive_count,
        "reason": row.reason,
        "key": row.key,
    }
    try:
        decoded = decode(row.body, row.message_attributes or None)
    except DecodeError as exc:
        out.update(kind="not-a-record", decode_error=exc.reason)
    else:
        out.update(decoded.summary())
        out["decode_error"] = None
    if body:
        out["body"] = row.body
        out["message_attributes"] = row.message_attributes
    return out


def pretty_body(text: str) -> str:
    """The body as indented JSON when it is JSON, else as it is.

    Also as it is when it is nested too deeply to parse or indent (``[[[...]]]``, which the
    worker quarantines for that reason): ``quarantine show``, ``dlq peek --body`` and the
    console's quarantine page must still show it.
    """
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


async def resend(store: Store, sqs: Any, row: QuarantineRow, *, keep: bool = False) -> str:
    """Send ``row``'s message back to its queue; forget the stored copy unless ``keep``.

    Returns the new SQS message id.
    """
    attributes = {
        name: sendable_attribute(value)
        for name, value in (row.message_attributes or {}).items()
        if not name.startswith(_OWN_ATTRIBUTE_PREFIX)
    }
    request: dict[str, Any] = {"QueueUrl": row.queue, "MessageBody": row.body}
    if attributes:
        request["MessageAttributes"] = attributes
    answer = await sqs.send_message(**request)
    if not keep and row.id is not None:
        await store.delete_quarantine(row.id)
    return str(answer.get("MessageId", ""))
