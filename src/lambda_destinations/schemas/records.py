"""Pydantic models of the records Lambda sends to destinations and dead-letter queues.

Field names are snake_case in Python and AWS's own spelling on the wire (``requestContext``,
``KinesisBatchInfo``); models serialise back to AWS's spelling. Every model keeps fields it does
not know (``extra="allow"``): AWS adds fields over time and a record must never be lost to that.

Scalars are validated strictly (``approximateInvokeCount`` must be a JSON integer, not ``"3"``):
records are JSON written by Lambda, and a look-alike that is only nearly right is better
quarantined with a reason than guessed at. Timestamps are the exception; they arrive as text and
become timezone-aware UTC datetimes whether or not they carry milliseconds or a zone.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)
from pydantic.alias_generators import to_camel
from typing_extensions import TypeVar

RequestT = TypeVar("RequestT", default=Any)
ResponseT = TypeVar("ResponseT", default=Any)


def _as_utc(value: datetime) -> datetime:
    # Lambda writes "...Z"; a timestamp without a zone is taken to be UTC, as AWS means it.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:30, 9999-12-31T23:59-05:00: no UTC time
        raise ValueError("in UTC it falls outside the years 1 to 9999") from None


def _number_as_text(value: object) -> object:
    # Sequence numbers and Kafka offsets are documented as strings, but a number is the same
    # position; keep text so that 128-bit Kinesis sequence numbers stay exact.
    if type(value) is int:
        return str(value)
    return value


# Bounds on what no Lambda record holds but a database refuses. Request ids are UUIDs (36
# characters) and conditions a word: at 256 characters each the key "<requestId>:<condition>"
# fits a PostgreSQL index entry (2,704 bytes) in any characters. The invoke count is a few
# attempts (10,000 at most for a stream); the store's column is a 32-bit integer.
MAX_ID_LENGTH = 256
MAX_INVOKE_COUNT = 2**31 - 1

UtcDatetime = Annotated[datetime, Strict(False), AfterValidator(_as_utc)]
"""A datetime parsed from ISO 8601 text (or epoch seconds), always timezone-aware UTC."""

Position = Annotated[str, BeforeValidator(_number_as_text)]
"""A stream position (sequence number or offset): text, or an integer kept as text."""


class _Model(BaseModel):
    model_config = ConfigDict(
        strict=True,
        extra="allow",
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class RequestContext(_Model):
    """``requestContext``: which invocation, of which function, and why the record was sent.

    ``condition`` is an open set: ``Success``, ``RetriesExhausted``, ``EventAgeExceeded``,
    ``ZeroReservedConcurrency`` for asynchronous invocations, ``RetryAttemptsExhausted``,
    ``MaximumPayloadSizeExceeded`` ... for event-source mappings, and whatever AWS adds next.
    """

    request_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    function_arn: str = Field(min_length=1)
    condition: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    approximate_invoke_count: int = Field(ge=0, le=MAX_INVOKE_COUNT)


class ResponseContext(_Model):
    """``responseContext``: what the last attempt returned; absent when there was none.

    ``function_error`` is ``"Handled"`` or ``"Unhandled"`` when the function failed.
    """

    status_code: int | None = None
    executed_version: str | None = None
    function_error: str | None = None


class ErrorPayload(_Model):
    """The ``responsePayload`` of a failed invocation, for typed records.

    Use as the response type of a typed record for failure destinations:
    ``InvocationRecord[MyRequest, ErrorPayload]``. Python sends ``stackTrace``, Node.js
    ``trace``, Go neither.
    """

    # Lax, unlike the records: it sits beside the user's own payload models.
    model_config = ConfigDict(strict=False)

    error_type: str | None = None
    error_message: str | None = None
    stack_trace: list[Any] | str | None = None
    trace: list[Any] | str | None = None


class _Requested:
    """Shortcuts into the ``requestContext`` of a record (no fields of its own)."""

    if TYPE_CHECKING:
        request_context: RequestContext

    @property
    def request_id(self) -> str:
        """``requestContext.requestId``."""
        return self.request_context.request_id

    @property
    def condition(self) -> str:
        """``requestContext.condition``."""
        return self.request_context.condition


class InvocationRecord(_Requested, _Model, Generic[RequestT, ResponseT]):
    """The record of one asynchronous invocation, as Lambda sends it to a destination.

    Generic in its payloads: ``InvocationRecord`` takes any JSON value, while
    ``InvocationRecord[MyRequest, MyResponse]`` validates ``requestPayload`` and
    ``responsePayload`` into your own models (see :meth:`DecodedMessage.typed
    <lambda_destinations.schemas.DecodedMessage.typed>`). A payload is ``None`` when it is absent
    or JSON null.
    """

    version: str | None = None
    timestamp: UtcDatetime | None = None
    request_context: RequestContext
    request_payload: RequestT | None = None
    response_context: ResponseContext | None = None
    response_payload: ResponseT | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the invocation succeeded (condition ``Success``)."""
        return self.request_context.condition == "Success"


class StreamBatchInfo(_Model):
    """``KinesisBatchInfo`` / ``DDBStreamBatchInfo``: where the discarded batch sits in its stream.

    The records themselves are not included; read them from the stream before they expire.
    """

    shard_id: str
    start_sequence_number: Position
    end_sequence_number: Position
    approximate_arrival_of_first_record: UtcDatetime | None = None
    approximate_arrival_of_last_record: UtcDatetime | None = None
    batch_size: int | None = None
    stream_arn: str


class KafkaPartitionRange(_Model):
    """One entry of ``KafkaBatchInfo.recordsInfo``, keyed ``"<topic>-<partition>"``."""

    first_record_offset: Position
    last_record_offset: Position
    first_record_timestamp: UtcDatetime | None = None
    last_record_timestamp: UtcDatetime | None = None


class KafkaRecordInfo(_Model):
    """``KafkaBatchInfo.recordInfo``: the one record of a single-record failure."""

    offset: Position
    timestamp: UtcDatetime | None = None


class KafkaBatchInfo(_Model):
    """``KafkaBatchInfo`` (Amazon MSK and self-managed Kafka): the discarded batch's offsets.

    Either ``recordsInfo`` (per topic-partition ranges, for SQS, SNS and S3 destinations) or
    ``recordInfo`` (one record, for Kafka-topic destinations) is present.
    """

    batch_size: int | None = None
    event_source_arn: str | None = None
    bootstrap_servers: str | None = None
    payload_size: int | None = None
    records_info: dict[str, KafkaPartitionRange] | None = None
    record_info: KafkaRecordInfo | None = None

    @model_validator(mode="after")
    def _has_positions(self) -> Self:
        if not self.records_info and self.record_info is None:
            raise ValueError("KafkaBatchInfo has neither recordsInfo nor recordInfo")
        return self


class StreamSource(enum.StrEnum):
    """The kind of event-source mapping a stream failure record comes from."""

    KINESIS = "kinesis"
    DYNAMODB = "dynamodb"
    KAFKA = "kafka"


class StreamFailureRecord(_Requested, _Model):
    """The on-failure record of a Kinesis, DynamoDB Streams or Kafka event-source mapping.

    Exactly one of the batch infos is present. ``payload`` holds the original batch where Lambda
    includes it (S3 and Kafka-topic destinations); SQS and SNS destinations carry no payload.
    """

    version: str | None = None
    timestamp: UtcDatetime | None = None
    request_context: RequestContext
    response_context: ResponseContext | None = None
    kinesis_batch_info: StreamBatchInfo | None = Field(default=None, alias="KinesisBatchInfo")
    ddb_stream_batch_info: StreamBatchInfo | None = Field(default=None, alias="DDBStreamBatchInfo")
    kafka_batch_info: KafkaBatchInfo | None = Field(default=None, alias="KafkaBatchInfo")
    payload: Any = None

    @model_validator(mode="after")
    def _one_batch_info(self) -> Self:
        present = [
            name
            for name, info in (
                ("KinesisBatchInfo", self.kinesis_batch_info),
                ("DDBStreamBatchInfo", self.ddb_stream_batch_info),
                ("KafkaBatchInfo", self.kafka_batch_info),
            )
            if info is not None
        ]
        if len(present) != 1:
            found = " and ".join(present) if present else "none"
            raise ValueError(
                "expected exactly one of KinesisBatchInfo, DDBStreamBatchInfo, KafkaBatchInfo; "
                f"found {found}"
            )
        return self

    @property
    def source(self) -> StreamSource:
        """Which kind of stream the batch was read from."""
        if self.kinesis_batch_info is not None:
            return StreamSource.KINESIS
        if self.ddb_stream_batch_info is not None:
            return StreamSource.DYNAMODB
        return StreamSource.KAFKA


class LegacyDlqMessage(_Model):
    """A message from a function's dead-letter queue: the original event and three attributes.

    Not a record Lambda writes as JSON: it is assembled from the SQS (or SNS) message attributes
    ``RequestID``, ``ErrorCode`` (the HTTP status code, as text) and ``ErrorMessage`` (the first
    KB of the error), with the body as ``body``: the parsed JSON when ``body_is_json``, else the
    text exactly as received.
    """

    request_id: str = Field(alias="RequestID", min_length=1, max_length=MAX_ID_LENGTH)
    error_code: str | None = Field(default=None, alias="ErrorCode")
    error_message: str | None = Field(default=None, alias="ErrorMessage")
    body: Any = None
    body_is_json: bool = False
