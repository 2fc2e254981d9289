"""``decode()``: one SQS message body in, one typed :class:`DecodedMessage` or a DecodeError out.

The body is parsed once with :mod:`json`; the envelope and the kind of record are told apart by
their keys; the record is validated by its pydantic model; the fields the worker routes and
stores by are computed once, here. Nothing but :class:`DecodeError` leaves :func:`decode`,
whatever the input: the worker quarantines a message that does not decode, with the reason.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lambda_destinations.schemas._private import (
    BOM,
    is_blank,
    json_kind,
    key_text,
    loads,
    one_line,
    short_repr,
    stack_lines,
    text_or_none,
    validation_reason,
)
from lambda_destinations.schemas.arn import FunctionArn
from lambda_destinations.schemas.envelopes import (
    Envelope,
    Unwrapped,
    marks_dead_letter,
    unwrap,
)
from lambda_destinations.schemas.errors import DecodeError
from lambda_destinations.schemas.records import (
    InvocationRecord,
    LegacyDlqMessage,
    StreamFailureRecord,
)
from lambda_destinations.schemas.s3 import S3Notice, S3Object, check_s3_notice

M = TypeVar("M", bound=BaseModel)

_STREAM_BATCH_KEYS = ("KinesisBatchInfo", "DDBStreamBatchInfo", "KafkaBatchInfo")
_LEGACY_CONDITION = "legacy-dlq"


# What `summarize` says a message that does not decode is.
NOT_A_RECORD = "not-a-record"


class MessageKind(enum.StrEnum):
    """What a decoded message is."""

    INVOCATION = "invocation"
    STREAM_FAILURE = "stream-failure"
    LEGACY_DLQ = "legacy-dlq"


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """A decoded message: the validated record plus the fields the worker routes and stores by.

    ``key`` is the idempotency key: ``"<requestId>:<condition>"`` for invocation records,
    ``"stream:<function ARN>:<stream ARN or Kafka source>:<shard or partition>:<start>-<end>"``
    for stream failures (several Kafka partitions are joined with ``,``; the function is in it,
    as each function reading a stream reports its own failure of a batch),
    ``"<RequestID>:legacy-dlq"`` for dead-letter messages. The same record yields the same key
    whatever its envelope.

    ``record_json`` is the record as received (after the envelope), for storage; treat it, and
    the payloads, as read-only: they are shared with ``record``, not copied.
    """

    kind: MessageKind
    envelope: Envelope
    record: InvocationRecord | StreamFailureRecord | LegacyDlqMessage
    key: str
    request_id: str | None
    function: FunctionArn | None
    condition: str | None
    succeeded: bool | None
    approximate_invoke_count: int | None
    error_type: str | None
    error_message: str | None
    stack_trace: list[str] | None
    timestamp: datetime | None
    request_payload: Any
    response_payload: Any
    record_json: Any

    def summary(self) -> dict[str, Any]:
        """The message in one flat JSON-able object, as ``lambda-destinations decode --json``."""
        function = self.function
        return {
            "kind": self.kind.value,
            "envelope": self.envelope.value,
            "key": self.key,
            "request_id": self.request_id,
            "function_arn": function.arn if function else None,
            "function_name": function.function_name if function else None,
            "qualifier": function.qualifier if function else None,
            "region": function.region if function else None,
            "account": function.account if function else None,
            "condition": self.condition,
            "succeeded": self.succeeded,
            "approximate_invoke_count": self.approximate_invoke_count,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "timestamp": _iso(self.timestamp),
        }

    def typed(self, model: type[M]) -> M:
        """Validate the record into ``model``, e.g. ``InvocationRecord[MyRequest, MyResponse]``.

        Raises :class:`DecodeError` naming the first field that does not fit, so a handler can
        let it propagate and the message is quarantined with that reason.
        """
        try:
            return model.model_validate(self.record_json)
        except ValidationError as exc:
            raise DecodeError(
                f"record does not fit {_model_name(model)}: {validation_reason(exc)}"
            ) from exc
        except RecursionError:
            raise DecodeError(
                f"record does not fit {_model_name(model)}: nested too deeply"
            ) from None


# The keys of DecodedMessage.summary, each None.
_NO_SUMMARY: dict[str, Any] = dict.fromkeys(
    (
        "kind",
        "envelope",
        "key",
        "request_id",
        "function_arn",
        "function_name",
        "qualifier",
        "region",
        "account",
        "condition",
        "succeeded",
        "approximate_invoke_count",
        "error_type",
        "error_message",
        "timestamp",
    )
)


def summarize(
    body: str | bytes, message_attributes: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """:meth:`DecodedMessage.summary` of a message, with ``decode_error`` (None when it decodes).

    A message that does not decode has the same keys, each None but ``kind`` (``not-a-record``)
    and ``decode_error`` (the reason): the rows of a list of messages all have one shape.
    """
    try:
        decoded = decode(body, message_attributes)
    except DecodeError as exc:
        return {**_NO_SUMMARY, "kind": NOT_A_RECORD, "decode_error": exc.reason}
    return {**decoded.summary(), "decode_error": None}


def decode(
    body: str | bytes, message_attributes: Mapping[str, Any] | None = None
) -> DecodedMessage:
    """Decode one SQS message body (and its message attributes) into a :class:`DecodedMessage`.

    ``message_attributes`` is the ``MessageAttributes`` of the SQS message as ReceiveMessage
    returns it (``{"RequestID": {"StringValue": "...", "DataType": "String"}}``); plain string
    values are accepted too. A message whose attributes carry ``RequestID`` and ``ErrorCode`` or
    ``ErrorMessage`` is a legacy dead-letter message, whatever its body.

    Raises :class:`DecodeError` with a one-line reason, and nothing else, for any input.
    """
    try:
        return _decode(body, message_attributes)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("message is nested too deeply to decode") from None
    except Exception as exc:  # the contract: only DecodeError leaves decode(), a bug included
        raise DecodeError(
            f"decoder failed on this message ({type(exc).__name__}: {one_line(str(exc))})"
        ) from exc


def decode_object(body: str | bytes, location: S3Object) -> DecodedMessage:
    """Decode the content of the S3 object a :class:`~lambda_destinations.schemas.s3.RecordInS3`
    named: the record Lambda wrote there, with envelope ``s3``. Raises :class:`DecodeError`,
    naming the object, for anything else (another notice included: one object never leads to a
    second)."""
    try:
        decoded = decode(body)
    except S3Notice:
        raise DecodeError(f"S3 object {location} holds S3's notice, not a Lambda record") from None
    except DecodeError as exc:
        raise DecodeError(f"S3 object {location}: {exc.reason}") from exc
    return replace(decoded, envelope=Envelope.S3)


def _decode(body: str | bytes, message_attributes: Mapping[str, Any] | None) -> DecodedMessage:
    text = _body_text(body)
    dlq = _dlq_attributes(message_attributes, "message attribute")
    if dlq is not None:
        return _legacy(text, dlq, Envelope.NONE)
    if is_blank(text):
        raise DecodeError("body is empty")
    doc = loads(text, "body")
    if not isinstance(doc, dict):
        raise DecodeError(f"body is {json_kind(doc)}, not a Lambda record")
    unwrapped = unwrap(doc)
    record = unwrapped.record
    if record is None:
        # An SNS-delivered dead-letter message: the attributes travel inside the notification.
        dlq = _dlq_attributes(unwrapped.attributes, "SNS message attribute")
        if dlq is None:  # pragma: no cover - unwrap returns no record only for marked ones
            raise DecodeError("SNS message attributes carry RequestID but no error")
        return _legacy(unwrapped.text or "", dlq, unwrapped.envelope)
    try:
        if "requestContext" not in record:
            check_s3_notice(record)  # S3's notice of a record Lambda wrote to a bucket
            raise DecodeError(_not_a_record(record, unwrapped.envelope))
        for name in _STREAM_BATCH_KEYS:
            if name in record:
                return _stream_failure(record, unwrapped)
        return _invocation(record, unwrapped)
    except DecodeError as exc:
        if unwrapped.where and not isinstance(exc, S3Notice):
            raise DecodeError(f"{unwrapped.where}: {exc.reason}") from exc
        raise


def _body_text(body: object, what: str = "body", encoding: str = "utf-8") -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            return bytes(body).decode(encoding)
        except UnicodeDecodeError as exc:
            bad = exc.object[exc.start]
            name = "UTF-8" if encoding == "utf-8" else encoding.upper()
            raise DecodeError(
                f"{what} is not valid {name}: byte {bad:#04x} at position {exc.start}"
            ) from None
    raise DecodeError(f"{what} must be str or bytes, not {type(body).__name__}")


def load_file(data: bytes, what: str) -> Any:
    """Parse ``data``, a file a person made, as JSON in the decoder's words (:class:`DecodeError`
    naming ``what``: not JSON, nested too deeply, an integer too long ...). Unlike a body, it
    may be UTF-16 or UTF-32 and start with a byte order mark, as a shell's redirect writes it
    (PowerShell's): it is read as :func:`json.loads` reads bytes."""
    encoding = json.detect_encoding(data)
    return loads(_body_text(data, what, encoding).removeprefix(BOM), what)


def _invocation(record: dict[str, Any], unwrapped: Unwrapped) -> DecodedMessage:
    try:
        model: InvocationRecord = InvocationRecord.model_validate(record)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc)) from None
    context = model.request_context
    condition = context.condition
    succeeded = condition == "Success"
    function_error = (
        model.response_context.function_error if model.response_context is not None else None
    )
    payload = model.response_payload
    error_type = error_message = None
    trace = None
    # A successful response may hold anything, "errorType" included: only read error fields
    # when the record says the invocation failed.
    if (not succeeded or function_error is not None) and isinstance(payload, dict):
        error_type = text_or_none(payload.get("errorType"))
        error_message = text_or_none(payload.get("errorMessage"))
        raw_trace = payload.get("stackTrace")
        trace = stack_lines(raw_trace if raw_trace is not None else payload.get("trace"))
    if error_type is None or not error_type.strip():
        # An empty errorType names no type: the tables would show it as none ("-"), which
        # `--error-type -` selects, and it did not; the function error ("Unhandled") names it.
        error_type = function_error or None
    return _requested(
        MessageKind.INVOCATION,
        unwrapped,
        model,
        record,
        key=f"{context.request_id}:{condition}",
        succeeded=succeeded,
        error_type=error_type,
        error_message=error_message,
        stack_trace=trace,
        request_payload=model.request_payload,
        response_payload=payload,
    )


def _stream_failure(record: dict[str, Any], unwrapped: Unwrapped) -> DecodedMessage:
    try:
        model = StreamFailureRecord.model_validate(record)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc)) from None
    response = model.response_context
    return _requested(
        MessageKind.STREAM_FAILURE,
        unwrapped,
        model,
        record,
        key=_stream_key(model),
        succeeded=False,
        error_type=response.function_error if response is not None else None,
        request_payload=model.payload,
    )


def _requested(
    kind: MessageKind,
    unwrapped: Unwrapped,
    model: InvocationRecord | StreamFailureRecord,
    record: dict[str, Any],
    *,
    key: str,
    succeeded: bool,
    error_type: str | None,
    request_payload: Any,
    error_message: str | None = None,
    stack_trace: list[str] | None = None,
    response_payload: Any = None,
) -> DecodedMessage:
    """A message of a record with a ``requestContext``: the fields both kinds take from it."""
    context = model.request_context
    return DecodedMessage(
        kind=kind,
        envelope=unwrapped.envelope,
        record=model,
        key=key_text(key),
        request_id=context.request_id,
        function=_function(context.function_arn),
        condition=context.condition,
        succeeded=succeeded,
        approximate_invoke_count=context.approximate_invoke_count,
        error_type=error_type,
        error_message=error_message,
        stack_trace=stack_trace,
        timestamp=model.timestamp,
        request_payload=request_payload,
        response_payload=response_payload,
        record_json=record,
    )


def _stream_key(model: StreamFailureRecord) -> str:
    # Each function (each event-source mapping) reading a stream sends its own record when it
    # discards a batch, and several of them fail on the same bad record: the batch alone would
    # take the second function's failure for a redelivery of the first's.
    return f"stream:{model.request_context.function_arn}:{_batch_position(model)}"


def _batch_position(model: StreamFailureRecord) -> str:
    info = model.kinesis_batch_info or model.ddb_stream_batch_info
    if info is not None:
        return (
            f"{info.stream_arn}:{info.shard_id}"
            f":{info.start_sequence_number}-{info.end_sequence_number}"
        )
    kafka = model.kafka_batch_info
    if kafka is None:  # pragma: no cover - the model's validator requires one batch info
        raise DecodeError("invalid record: no batch info")
    source = kafka.event_source_arn or kafka.bootstrap_servers or "kafka"
    if kafka.records_info:
        ranges = ",".join(
            f"{partition}:{span.first_record_offset}-{span.last_record_offset}"
            for partition, span in sorted(kafka.records_info.items())
        )
        return f"{source}:{ranges}"
    single = kafka.record_info
    if single is None:  # pragma: no cover - KafkaBatchInfo's validator requires one of them
        raise DecodeError("invalid field KafkaBatchInfo: no recordsInfo or recordInfo")
    partition = _kafka_partition(model.payload) or f"request-{model.request_id}"
    return f"{source}:{partition}:{single.offset}-{single.offset}"


def _kafka_partition(payload: Any) -> str | None:
    # A single-record failure names no partition; the payload (when Lambda includes it) does,
    # as the one key of payload.records. Without it the request id keeps keys apart.
    if isinstance(payload, dict):
        records = payload.get("records")
        if isinstance(records, dict) and len(records) == 1:
            (partition,) = records
            return str(partition)
    return None


# A queue's records come from a few functions: each ARN is parsed once (FunctionArn is frozen).
_parse_arn = functools.lru_cache(maxsize=1024)(FunctionArn.parse)


def _function(arn: str) -> FunctionArn:
    try:
        return _parse_arn(arn)
    except ValueError as exc:
        raise DecodeError(f"invalid field requestContext.functionArn: {exc}") from None


def _dlq_attributes(attributes: Any, what: str) -> tuple[str, str | None, str | None] | None:
    """``(RequestID, ErrorCode, ErrorMessage)`` when ``attributes`` mark a dead-letter message."""
    if attributes is None:
        return None
    if not isinstance(attributes, Mapping):
        raise DecodeError(f"{what}s must be a mapping, not {type(attributes).__name__}")
    if not marks_dead_letter(attributes):
        return None
    request_id = _attribute_value(attributes, "RequestID", what)
    if not request_id:
        raise DecodeError(f"{what} RequestID is empty")
    return (
        request_id,
        _attribute_value(attributes, "ErrorCode", what),
        _attribute_value(attributes, "ErrorMessage", what),
    )


def _attribute_value(attributes: Mapping[str, Any], name: str, what: str) -> str | None:
    # SQS ReceiveMessage: {"StringValue", "DataType"}; Lambda's SQS event: {"stringValue", ...};
    # SNS notification: {"Type", "Value"}; callers may also pass the plain string.
    value = attributes.get(name)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if _is_binary(value):
            raise DecodeError(f"invalid {what} {name}: expected a string value, got a Binary value")
        for field in ("StringValue", "stringValue", "Value"):
            text = value.get(field)
            if isinstance(text, str):
                return text
    raise DecodeError(f"invalid {what} {name}: expected a string value, got {short_repr(value)}")


def _is_binary(value: Mapping[str, Any]) -> bool:
    """Whether an attribute is of type Binary (``Binary.custom`` too), in any of the spellings."""
    kind = value.get("DataType", value.get("dataType", value.get("Type")))
    if isinstance(kind, str):
        return kind.split(".", 1)[0] == "Binary"
    return "BinaryValue" in value or "binaryValue" in value


def _legacy(
    text: str, dlq: tuple[str, str | None, str | None], envelope: Envelope
) -> DecodedMessage:
    request_id, error_code, error_message = dlq
    body: Any = text
    is_json = False
    if not is_blank(text):
        try:
            body = loads(text, "body")
            is_json = True
        except DecodeError:
            pass  # the original event need not be JSON: keep the text exactly as received
    # The record as the store keeps it: the three attributes and the body, in AWS's spelling.
    record_json = {
        "RequestID": request_id,
        "ErrorCode": error_code,
        "ErrorMessage": error_message,
        "body": body,
        "bodyIsJson": is_json,
    }
    try:
        record = LegacyDlqMessage.model_validate(record_json)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc)) from None
    return DecodedMessage(
        kind=MessageKind.LEGACY_DLQ,
        envelope=envelope,
        record=record,
        key=key_text(f"{request_id}:{_LEGACY_CONDITION}"),
        request_id=request_id,
        function=None,
        condition=None,
        succeeded=False,
        approximate_invoke_count=None,
        error_type=error_code,
        error_message=error_message,
        stack_trace=None,
        timestamp=None,
        request_payload=body,
        response_payload=None,
        record_json=record_json,
    )


# The reason for a JSON object with no requestContext (and no shape a producer is known by):
# `decode` without --message adds that a dead-letter queue's body is such an object.
NO_REQUEST_CONTEXT = "not a Lambda record: no requestContext"


def _not_a_record(doc: dict[str, Any], envelope: Envelope) -> str:
    looks_like = _looks_like(doc, envelope)
    if looks_like:
        return f"not a Lambda record: looks like {looks_like}"
    keys = sorted(str(key) for key in doc)
    if not keys:
        return "not a Lambda record: the JSON object is empty"
    shown = ", ".join(short_repr(key) for key in keys[:6])
    more = f" and {len(keys) - 6} more" if len(keys) > 6 else ""
    return f"{NO_REQUEST_CONTEXT} (keys: {shown}{more})"


def _looks_like(doc: dict[str, Any], envelope: Envelope) -> str | None:
    """Name the producer of a well-known JSON shape that is not a Lambda record."""
    records = doc.get("Records")
    if isinstance(records, list):
        first = records[0] if records and isinstance(records[0], dict) else {}
        source = first.get("eventSource", first.get("EventSource"))
        known = {  # S3's own are notices of records in S3 (schemas/s3.py)
            "aws:sns": "an SNS event for a Lambda function",
            "aws:sqs": "an SQS event for a Lambda function",
            "aws:kinesis": "a Kinesis event for a Lambda function",
            "aws:dynamodb": "a DynamoDB Streams event for a Lambda function",
        }
        if isinstance(source, str) and source in known:
            return known[source]
        return "a batch of event records (Records), not a Lambda record"
    context = doc.get("context")
    if isinstance(context, dict) and "partnerResourceArn" in context:
        return "an EventBridge Pipes failure record"
    if "detail-type" in doc and "source" in doc:
        if envelope is Envelope.SNS:
            # A rule whose target is an SNS topic the queue subscribes to: with raw message
            # delivery the queue receives the event itself, which decodes.
            return (
                "an EventBridge event inside an SNS notification (nested envelopes are not "
                "decoded): turn on raw message delivery for the queue's subscription to the topic"
            )
        if envelope is not Envelope.NONE:
            return "an EventBridge event inside another envelope (nested envelopes are not decoded)"
        # unwrap() takes every event with a detail: this one has none to hold a record.
        return "an EventBridge event without a detail, where the record would be"
    if "TopicArn" in doc and "Type" in doc:
        if envelope is not Envelope.NONE:
            return "an SNS message inside another envelope (nested envelopes are not decoded)"
        # unwrap() takes every SNS message with a Message and a Type in text: not this one.
        if "Message" not in doc:
            return "an SNS message without a Message, where the record would be"
        return f"an SNS message of Type {short_repr(doc['Type'])}, where SNS writes a word"
    if "ReceiptHandle" in doc and ("Body" in doc or "body" in doc):
        return "a whole SQS message rather than its body (decode its Body)"
    if isinstance(doc.get("Messages"), list):
        return "an SQS ReceiveMessage response rather than a message body"
    if "AlarmName" in doc and "NewStateValue" in doc:
        return "a CloudWatch alarm notification"
    return None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _model_name(model: type[BaseModel]) -> str:
    return model.__name__
