"""Lambda destination records: models, envelopes and ``decode()`` (pure, no I/O)."""

from lambda_destinations.schemas._private import MAX_DEPTH, json_kind
from lambda_destinations.schemas.arn import (
    FunctionArn,
    check_invoke_qualifier,
    check_invoke_target,
    function_account,
    invoke_function_name,
    invoke_function_region,
    qualified_name,
    requalified,
)
from lambda_destinations.schemas.decoder import (
    NO_REQUEST_CONTEXT,
    DecodedMessage,
    MessageKind,
    decode,
    decode_object,
    load_file,
    summarize,
)
from lambda_destinations.schemas.envelopes import Envelope
from lambda_destinations.schemas.errors import DecodeError
from lambda_destinations.schemas.records import (
    ErrorPayload,
    InvocationRecord,
    KafkaBatchInfo,
    KafkaPartitionRange,
    KafkaRecordInfo,
    LegacyDlqMessage,
    RequestContext,
    ResponseContext,
    StreamBatchInfo,
    StreamFailureRecord,
    StreamSource,
)

__all__ = [
    "MAX_DEPTH",
    "NO_REQUEST_CONTEXT",
    "DecodeError",
    "DecodedMessage",
    "Envelope",
    "ErrorPayload",
    "FunctionArn",
    "InvocationRecord",
    "KafkaBatchInfo",
    "KafkaPartitionRange",
    "KafkaRecordInfo",
    "LegacyDlqMessage",
    "MessageKind",
    "RequestContext",
    "ResponseContext",
    "StreamBatchInfo",
    "StreamFailureRecord",
    "StreamSource",
    "check_invoke_qualifier",
    "check_invoke_target",
    "decode",
    "decode_object",
    "function_account",
    "invoke_function_name",
    "invoke_function_region",
    "json_kind",
    "load_file",
    "qualified_name",
    "requalified",
    "summarize",
]
