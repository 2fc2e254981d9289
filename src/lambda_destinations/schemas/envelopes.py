"""Envelopes a record can arrive in: none, an SNS notification, or an EventBridge event (or an
S3 object, which a notice in one of these names: schemas/s3.py).

Detection is by keys, on the JSON already parsed once: an SNS notification (raw message
delivery off) has ``Type: "Notification"``, ``TopicArn`` and ``Message`` (the record, as a
string); an EventBridge event from a Lambda destination has ``source: "lambda"``, a
``detail-type`` of "Lambda Function Invocation Result - Success" or "... - Failure", and the
record as ``detail``. Anything else is taken to be a bare record and judged by the decoder.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambda_destinations.schemas._private import is_blank, json_kind, loads, short_repr
from lambda_destinations.schemas.errors import DecodeError
from lambda_destinations.schemas.s3 import check_s3_event

EVENTBRIDGE_SOURCE = "lambda"

# The documentation prints these with an en dash; the events themselves carry a hyphen.
EVENTBRIDGE_DETAIL_TYPES = frozenset(
    f"Lambda Function Invocation Result {dash} {outcome}"
    for dash in ("-", "\N{EN DASH}")
    for outcome in ("Success", "Failure")
)


class Envelope(enum.StrEnum):
    """How the record was wrapped on its way to the queue."""

    NONE = "none"
    SNS = "sns"
    EVENTBRIDGE = "eventbridge"
    S3 = "s3"  # read from the S3 object a notification named (schemas/s3.py)


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """The content of an envelope.

    ``record`` is the record's JSON object, or ``None`` when the content is the original event
    of a dead-letter message (SNS-delivered DLQ), in which case ``text`` holds it and
    ``attributes`` the SNS message attributes that identify it.
    """

    envelope: Envelope
    record: dict[str, Any] | None
    text: str | None = None
    attributes: Any = None
    where: str = ""


def marks_dead_letter(attributes: Mapping[str, Any]) -> bool:
    """Whether message attributes mark a function's dead-letter message: ``RequestID`` with
    ``ErrorCode`` or ``ErrorMessage``, as Lambda sets them (``RequestID`` alone may be anyone's)."""
    return "RequestID" in attributes and ("ErrorCode" in attributes or "ErrorMessage" in attributes)


def is_sns_notification(doc: dict[str, Any]) -> bool:
    """Whether ``doc`` has the shape of an SNS message (any ``Type``) as SQS receives it."""
    return isinstance(doc.get("Type"), str) and "TopicArn" in doc and "Message" in doc


def is_eventbridge_event(doc: dict[str, Any]) -> bool:
    """Whether ``doc`` has the shape of an EventBridge event (any source)."""
    return "detail-type" in doc and "detail" in doc and "source" in doc


def unwrap(doc: dict[str, Any]) -> Unwrapped:
    """Take ``doc`` out of its envelope; raise :class:`DecodeError` for envelopes of other kinds.

    SNS notifications whose ``MessageAttributes`` mark a dead-letter message (RequestID, and
    ErrorCode or ErrorMessage) are dead-letter messages
    from a function whose DLQ is an SNS topic: they are returned with ``record=None`` and the
    message text, for the caller to decode as a legacy DLQ message.
    """
    if is_sns_notification(doc):
        return _unwrap_sns(doc)
    if is_eventbridge_event(doc):
        return _unwrap_eventbridge(doc)
    return Unwrapped(Envelope.NONE, doc)


def _unwrap_sns(doc: dict[str, Any]) -> Unwrapped:
    kind = doc["Type"]
    if kind != "Notification":
        raise DecodeError(_not_a_notification(kind, doc.get("TopicArn")))
    message = doc["Message"]
    if not isinstance(message, str):
        raise DecodeError(f"SNS Message is {json_kind(message)}, not a string")
    attributes = doc.get("MessageAttributes")
    if isinstance(attributes, dict) and marks_dead_letter(attributes):
        return Unwrapped(Envelope.SNS, None, text=message, attributes=attributes, where="SNS")
    if is_blank(message):
        raise DecodeError("SNS Message is empty")
    inner = loads(message, "SNS Message")
    if not isinstance(inner, dict):
        raise DecodeError(f"SNS Message is {json_kind(inner)}, not a Lambda record")
    return Unwrapped(Envelope.SNS, inner, where="SNS Message")


def _unwrap_eventbridge(doc: dict[str, Any]) -> Unwrapped:
    source = doc.get("source")
    detail_type = doc.get("detail-type")
    if (
        source != EVENTBRIDGE_SOURCE
        or not isinstance(detail_type, str)
        or detail_type not in EVENTBRIDGE_DETAIL_TYPES
    ):
        check_s3_event(doc)  # S3's notice of a record Lambda wrote to a bucket
        raise DecodeError(
            "not a Lambda record: looks like an EventBridge event from source "
            f"{short_repr(source)} with detail-type {short_repr(detail_type)}; match only "
            'source "lambda" in the EventBridge rule that sends to this queue (and "aws.s3" '
            'for a bucket\'s "Object Created", where Lambda writes records to a bucket)'
        )
    detail = doc["detail"]
    if not isinstance(detail, dict):
        raise DecodeError(f"EventBridge detail is {json_kind(detail)}, not a Lambda record")
    return Unwrapped(Envelope.EVENTBRIDGE, detail, where="EventBridge detail")


def _not_a_notification(kind: str, topic_arn: object) -> str:
    """What an SNS message other than a notification says of the queue's subscription."""
    said = f"not a Lambda record: looks like an SNS {short_repr(kind)} message"
    topic = (
        f"topic {short_repr(topic_arn.rsplit(':', 1)[-1])}"
        if isinstance(topic_arn, str) and topic_arn
        else "the topic"
    )
    if kind == "SubscriptionConfirmation":
        # A subscription another account made (the topic's owner) waits for the queue's owner:
        # until confirmed, no notification of the topic reaches the queue.
        return (
            f"{said}: the queue's subscription to {topic} is pending, and SNS sends the queue "
            "nothing until it is confirmed; open the SubscribeURL this message holds, or "
            "subscribe the queue from its own account (`aws sns subscribe`, which confirms it)"
        )
    if kind == "UnsubscribeConfirmation":
        return (
            f"{said}: the queue's subscription to {topic} was deleted, and SNS sends the queue "
            "nothing more from it; if that was not meant, subscribe the queue again "
            "(`aws sns subscribe`)"
        )
    return said
