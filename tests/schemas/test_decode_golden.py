"""decode() on golden messages built from AWS's documented examples, one per kind and envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lambda_destinations.schemas import (
    DecodedMessage,
    DecodeError,
    Envelope,
    InvocationRecord,
    LegacyDlqMessage,
    MessageKind,
    StreamFailureRecord,
    StreamSource,
    decode,
)

EVENTS = Path(__file__).parents[1] / "events"


def body_of(name: str) -> str:
    return (EVENTS / name).read_text()


def decode_file(name: str) -> DecodedMessage:
    return decode(body_of(name))


def decode_sqs_message(name: str) -> DecodedMessage:
    message = json.loads(body_of(name))
    return decode(message["Body"], message["MessageAttributes"])


def test_success_record() -> None:
    decoded = decode_file("invocation-success.json")

    assert decoded.kind is MessageKind.INVOCATION
    assert decoded.envelope is Envelope.NONE
    assert isinstance(decoded.record, InvocationRecord)
    assert decoded.key == "8f5e2a3c-1f0b-xmpl-9b6e-52d1c0a4be77:Success"
    assert decoded.request_id == "8f5e2a3c-1f0b-xmpl-9b6e-52d1c0a4be77"
    assert decoded.condition == "Success"
    assert decoded.succeeded is True
    assert decoded.approximate_invoke_count == 1
    assert decoded.error_type is None
    assert decoded.error_message is None
    assert decoded.stack_trace is None
    assert decoded.timestamp == datetime(2019, 11, 14, 18, 16, 5, 568000, tzinfo=UTC)
    assert decoded.request_payload["orderId"] == "ord-1001"
    assert decoded.response_payload == {
        "orderId": "ord-1001",
        "status": "CONFIRMED",
        "receipt": "r-889",
    }


def test_success_record_with_a_version_qualified_arn() -> None:
    function = decode_file("invocation-success.json").function

    assert function is not None
    assert (function.function_name, function.qualifier) == ("checkout", "7")
    assert function.is_version
    assert function.unqualified == "arn:aws:lambda:us-east-2:123456789012:function:checkout"


def test_python_failure_has_its_stack_trace_as_lines() -> None:
    decoded = decode_file("invocation-retries-exhausted-python.json")

    assert decoded.condition == "RetriesExhausted"
    assert decoded.succeeded is False
    assert decoded.approximate_invoke_count == 3
    assert decoded.error_type == "KeyError"
    assert decoded.error_message == "order 9e07af03-ce31-xmpl-36dce652cb4f not found"
    assert decoded.stack_trace == [
        '  File "/var/task/lambda_function.py", line 12, in lambda_handler',
        "    order = load(order_id)",
        '  File "/var/task/orders.py", line 40, in load',
        '    raise KeyError(f"order {order_id} not found")',
    ]
    assert decoded.function is not None
    assert decoded.function.qualifier == "$LATEST"


def test_node_failure_has_its_trace_and_an_alias_arn() -> None:
    decoded = decode_file("invocation-retries-exhausted-node.json")

    assert decoded.error_type == "TypeError"
    assert decoded.stack_trace is not None
    assert decoded.stack_trace[0].startswith("TypeError: Cannot read properties")
    assert len(decoded.stack_trace) == 3
    assert decoded.function is not None
    assert decoded.function.qualifier == "live"
    assert not decoded.function.is_version
    assert decoded.function.region == "eu-west-1"
    # No milliseconds in this record's timestamp.
    assert decoded.timestamp == datetime(2023, 3, 2, 10, 0, 7, tzinfo=UTC)


def test_failure_without_error_type_falls_back_to_function_error() -> None:
    decoded = decode_file("invocation-retries-exhausted-no-trace.json")

    assert decoded.error_type == "Unhandled"
    assert decoded.error_message is not None
    assert decoded.error_message.endswith("Process exited before completing request")
    assert decoded.stack_trace is None


@pytest.mark.parametrize(
    ("name", "condition"),
    [
        ("invocation-event-age-exceeded.json", "EventAgeExceeded"),
        ("invocation-zero-reserved-concurrency.json", "ZeroReservedConcurrency"),
    ],
)
def test_failure_without_a_response(name: str, condition: str) -> None:
    decoded = decode_file(name)

    assert isinstance(decoded.record, InvocationRecord)
    assert decoded.record.response_context is None
    assert decoded.response_payload is None
    assert decoded.condition == condition
    assert decoded.succeeded is False
    assert decoded.approximate_invoke_count == 0
    assert decoded.error_type is None
    assert decoded.key.endswith(f":{condition}")
    assert decoded.request_payload is not None


def test_unqualified_arn() -> None:
    function = decode_file("invocation-event-age-exceeded.json").function

    assert function is not None
    assert function.qualifier is None
    assert function.function_name == "nightly-report"
    assert function.unqualified == function.arn


def test_latest_published_qualifier_of_a_managed_instances_function() -> None:
    # Lambda Managed Instances publish "$LATEST.PUBLISHED", and invoke it for an unqualified
    # ARN: its records were quarantined as naming no Lambda function.
    decoded = decode_file("invocation-retries-exhausted-latest-published.json")

    function = decoded.function
    assert function is not None
    assert (function.function_name, function.qualifier) == ("thumbnailer", "$LATEST.PUBLISHED")
    assert not function.is_version
    assert function.unqualified == "arn:aws:lambda:us-east-2:123456789012:function:thumbnailer"
    assert decoded.error_type == "Error"
    assert decoded.key == "3f6a1c2e-55d0-xmpl-9c1b-7e0d4a8b2f61:RetriesExhausted"


def test_kinesis_on_failure_record() -> None:
    decoded = decode_file("stream-kinesis.json")

    assert decoded.kind is MessageKind.STREAM_FAILURE
    assert isinstance(decoded.record, StreamFailureRecord)
    assert decoded.record.source is StreamSource.KINESIS
    info = decoded.record.kinesis_batch_info
    assert info is not None
    assert info.batch_size == 500
    assert info.approximate_arrival_of_first_record == datetime(
        2019, 11, 14, 0, 38, 4, 835000, tzinfo=UTC
    )
    assert decoded.key == (
        "stream:arn:aws:lambda:us-east-2:123456789012:function:myfunction:"
        "arn:aws:kinesis:us-east-2:123456789012:stream/mystream:shardId-000000000001:"
        "49601189658422359378836298521827638475320189012309704722-"
        "49601189658422359378836298522902373528957594348623495186"
    )
    assert decoded.condition == "RetryAttemptsExhausted"
    assert decoded.succeeded is False
    assert decoded.error_type == "Unhandled"
    assert decoded.request_payload is None


def test_two_functions_failing_on_one_kinesis_batch_have_two_keys() -> None:
    # Every function reading a stream reports its own discarded batch: a second consumer's
    # failure on the same record was taken for a redelivery of the first's, and never stored.
    first = decode_file("stream-kinesis-bisected.json")
    second = decode_file("stream-kinesis-bisected-other-consumer.json")

    assert isinstance(first.record, StreamFailureRecord)
    assert isinstance(second.record, StreamFailureRecord)
    assert first.record.kinesis_batch_info == second.record.kinesis_batch_info
    assert first.key != second.key
    assert first.key.startswith("stream:arn:aws:lambda:eu-west-1:123456789012:function:billing:")
    assert second.key.startswith(
        "stream:arn:aws:lambda:eu-west-1:123456789012:function:analytics:live:"
    )
    assert first.key.endswith(second.key.split(":live:", 1)[1])


def test_dynamodb_on_failure_record() -> None:
    decoded = decode_file("stream-dynamodb.json")

    assert decoded.kind is MessageKind.STREAM_FAILURE
    assert isinstance(decoded.record, StreamFailureRecord)
    assert decoded.record.source is StreamSource.DYNAMODB
    assert decoded.key == (
        "stream:arn:aws:lambda:us-east-2:123456789012:function:myfunction:"
        "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/"
        "2019-11-14T00:04:06.388:shardId-00000001573689847184-864758bb:"
        "800000000003126276362-800000000003126276362"
    )
    assert decoded.request_id == "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81"


def test_msk_on_failure_record_keys_every_partition_in_order() -> None:
    decoded = decode_file("stream-kafka-msk.json")

    assert isinstance(decoded.record, StreamFailureRecord)
    assert decoded.record.source is StreamSource.KAFKA
    kafka = decoded.record.kafka_batch_info
    assert kafka is not None
    assert kafka.records_info is not None
    assert set(kafka.records_info) == {"orders-0", "orders-1"}
    assert decoded.key == (
        "stream:arn:aws:lambda:us-east-1:123456789012:function:myfunction:"
        "arn:aws:kafka:us-east-1:123456789012:cluster/vpc-2priv-2pub/"
        "751d2973-a626-431c-9d4e-d7975eb44dd7-2:orders-0:1024-1278,orders-1:2210-2455"
    )


def test_self_managed_kafka_record_without_response_context() -> None:
    decoded = decode_file("stream-kafka-self-managed.json")

    assert isinstance(decoded.record, StreamFailureRecord)
    assert decoded.record.response_context is None
    assert decoded.condition == "MaximumPayloadSizeExceeded"
    assert decoded.error_type is None
    assert decoded.key == (
        "stream:arn:aws:lambda:us-west-2:123456789012:function:ingest:prod:"
        "kafka-1.internal.example.com:9092,kafka-2.internal.example.com:9092"
        ":clicks-3:880211-880310"
    )
    assert decoded.function is not None
    assert decoded.function.qualifier == "prod"


def test_kafka_single_record_info_takes_the_partition_from_the_payload() -> None:
    record = json.loads(body_of("stream-kafka-msk.json"))
    record["KafkaBatchInfo"].pop("recordsInfo")
    record["KafkaBatchInfo"]["recordInfo"] = {"offset": 100, "timestamp": "2019-11-14T18:16:04Z"}
    record["payload"] = {"eventSource": "aws:kafka", "records": {"my-topic-0": [{"offset": 100}]}}

    decoded = decode(json.dumps(record))

    assert decoded.key.endswith(":my-topic-0:100-100")
    assert decoded.request_payload == record["payload"]

    del record["payload"]
    assert decode(json.dumps(record)).key.endswith(
        ":request-316aa6d0-8154-xmpl-9af7-85d5f4a6bc81:100-100"
    )


def test_legacy_dlq_message() -> None:
    decoded = decode_sqs_message("legacy-dlq-message.json")

    assert decoded.kind is MessageKind.LEGACY_DLQ
    assert decoded.envelope is Envelope.NONE
    assert isinstance(decoded.record, LegacyDlqMessage)
    assert decoded.key == "9d2f4a10-xmpl-4c6e-8f1a-2b3c4d5e6f70:legacy-dlq"
    assert decoded.request_id == "9d2f4a10-xmpl-4c6e-8f1a-2b3c4d5e6f70"
    assert decoded.condition is None
    assert decoded.function is None
    assert decoded.succeeded is False
    assert decoded.error_type == "200"
    assert decoded.error_message is not None
    assert decoded.error_message.endswith("Task timed out after 3.00 seconds")
    # The body is the original event, parsed: here an S3 notification, which is fine in a DLQ.
    assert decoded.request_payload["Records"][0]["eventSource"] == "aws:s3"
    assert decoded.record_json["bodyIsJson"] is True


def test_legacy_dlq_message_with_a_body_that_is_not_json() -> None:
    decoded = decode(
        "not json at all {",
        {"RequestID": "req-1", "ErrorCode": "500", "ErrorMessage": "boom"},
    )

    assert decoded.kind is MessageKind.LEGACY_DLQ
    assert decoded.request_payload == "not json at all {"
    assert isinstance(decoded.record, LegacyDlqMessage)
    assert decoded.record.body_is_json is False
    assert decoded.key == "req-1:legacy-dlq"


def test_legacy_dlq_attributes_in_lambdas_own_sqs_event_spelling() -> None:
    attributes = {
        "RequestID": {"stringValue": "req-2", "dataType": "String"},
        "ErrorCode": {"stringValue": "200", "dataType": "Number"},
    }

    decoded = decode('{"job": 7}', attributes)

    assert decoded.request_id == "req-2"
    assert decoded.error_message is None
    assert decoded.request_payload == {"job": 7}


def test_sns_delivered_legacy_dlq_message() -> None:
    decoded = decode_file("sns-legacy-dlq.json")

    assert decoded.kind is MessageKind.LEGACY_DLQ
    assert decoded.envelope is Envelope.SNS
    assert decoded.request_id == "1c2d3e4f-xmpl-4a5b-8c9d-0e1f2a3b4c5d"
    assert decoded.error_message == "Unhandled exception: boom"
    assert decoded.request_payload == "plain text event that is not JSON"


def test_sns_wrapped_record_decodes_like_the_bare_one() -> None:
    wrapped = decode_file("sns-invocation-failure.json")
    bare = decode_file("invocation-retries-exhausted-node.json")

    assert wrapped.envelope is Envelope.SNS
    assert wrapped.kind is MessageKind.INVOCATION
    assert wrapped.key == bare.key
    assert wrapped.record == bare.record
    assert wrapped.record_json == json.loads(body_of("invocation-retries-exhausted-node.json"))


def test_sns_record_with_a_request_id_attribute_but_no_error_is_a_record() -> None:
    # A publisher's own RequestID attribute (no ErrorCode, no ErrorMessage) does not make a
    # dead-letter message: raw delivery on (the attributes on the SQS message) decoded the
    # record, raw delivery off quarantined it ("SNS message attributes carry RequestID but no
    # error").
    notification = json.loads(body_of("sns-invocation-success-with-attributes.json"))
    sqs_attributes = {
        name: {"DataType": value["Type"], "StringValue": value["Value"]}
        for name, value in notification["MessageAttributes"].items()
    }

    wrapped = decode_file("sns-invocation-success-with-attributes.json")
    raw = decode(notification["Message"], sqs_attributes)

    bare = decode_file("invocation-success.json")
    assert (wrapped.kind, wrapped.envelope) == (MessageKind.INVOCATION, Envelope.SNS)
    assert (raw.kind, raw.envelope) == (MessageKind.INVOCATION, Envelope.NONE)
    assert wrapped.key == raw.key == bare.key
    assert wrapped.record == raw.record == bare.record


@pytest.mark.parametrize(
    ("name", "bare_name", "succeeded"),
    [
        ("eventbridge-success.json", "invocation-success.json", True),
        ("eventbridge-failure.json", "invocation-retries-exhausted-python.json", False),
    ],
)
def test_eventbridge_wrapped_record(name: str, bare_name: str, succeeded: bool) -> None:
    wrapped = decode_file(name)
    bare = decode_file(bare_name)

    assert wrapped.envelope is Envelope.EVENTBRIDGE
    assert wrapped.succeeded is succeeded
    assert wrapped.key == bare.key
    assert wrapped.summary() | {"envelope": "none"} == bare.summary()


def test_sns_wrapped_stream_failure_record() -> None:
    notification = json.loads(body_of("sns-invocation-failure.json"))
    notification["Message"] = body_of("stream-kinesis.json")

    decoded = decode(json.dumps(notification))

    assert decoded.kind is MessageKind.STREAM_FAILURE
    assert decoded.envelope is Envelope.SNS


def test_bytes_body_decodes_like_text() -> None:
    text = body_of("invocation-success.json")

    assert decode(text.encode()).record == decode(text).record


@pytest.mark.parametrize("condition", ["Success", "RetriesExhausted", "SomethingAwsAddsNextYear"])
def test_condition_is_an_open_set(condition: str) -> None:
    record = json.loads(body_of("invocation-retries-exhausted-python.json"))
    record["requestContext"]["condition"] = condition

    decoded = decode(json.dumps(record))

    assert decoded.condition == condition
    assert decoded.succeeded is (condition == "Success")
    assert decoded.key == f"e4b46cbf-b738-xmpl-8880-a18cdf61200e:{condition}"


@pytest.mark.parametrize(
    "payload", [None, "a string", 42, 3.5, True, [1, "two", None], {"nested": {"a": [1]}}]
)
def test_payloads_are_any_json_value(payload: Any) -> None:
    record = json.loads(body_of("invocation-success.json"))
    record["requestPayload"] = payload
    record["responsePayload"] = payload

    decoded = decode(json.dumps(record))

    assert decoded.request_payload == payload
    assert decoded.response_payload == payload


def test_absent_payloads_are_none() -> None:
    record = json.loads(body_of("invocation-success.json"))
    del record["requestPayload"], record["responsePayload"], record["responseContext"]

    decoded = decode(json.dumps(record))

    assert decoded.request_payload is None
    assert decoded.response_payload is None


def test_successful_response_holding_error_fields_is_not_an_error() -> None:
    record = json.loads(body_of("invocation-success.json"))
    record["responsePayload"] = {"errorType": "NotAnError", "errorMessage": "just data"}

    decoded = decode(json.dumps(record))

    assert decoded.error_type is None
    assert decoded.error_message is None


def test_request_id_need_not_be_a_uuid() -> None:
    record = json.loads(body_of("invocation-success.json"))
    record["requestContext"]["requestId"] = "req:42/retry"

    assert decode(json.dumps(record)).key == "req:42/retry:Success"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2019-11-14T18:16:05.568Z", datetime(2019, 11, 14, 18, 16, 5, 568000, tzinfo=UTC)),
        ("2019-11-14T18:16:05Z", datetime(2019, 11, 14, 18, 16, 5, tzinfo=UTC)),
        ("2019-11-14T18:16:05", datetime(2019, 11, 14, 18, 16, 5, tzinfo=UTC)),
        ("2019-11-14T20:16:05+02:00", datetime(2019, 11, 14, 18, 16, 5, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(timestamp: str, expected: datetime) -> None:
    record = json.loads(body_of("invocation-success.json"))
    record["timestamp"] = timestamp

    decoded = decode(json.dumps(record))

    assert decoded.timestamp == expected
    assert decoded.timestamp is not None
    assert decoded.timestamp.tzinfo is UTC


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+05:30", "9999-12-31T23:59:59-05:00"])
def test_a_timestamp_with_no_utc_time_is_named_as_the_invalid_field(timestamp: str) -> None:
    record = json.loads(body_of("invocation-success.json"))
    record["timestamp"] = timestamp

    with pytest.raises(
        DecodeError, match=r"invalid field timestamp: .*outside the years 1 to 9999"
    ):
        decode(json.dumps(record))


def test_stack_trace_shapes_of_other_runtimes() -> None:
    record = json.loads(body_of("invocation-retries-exhausted-python.json"))
    # The Python 2.7/3.6 runtimes sent [file, line, function, code] lists.
    record["responsePayload"]["stackTrace"] = [
        ["/var/task/lambda_function.py", 3, "lambda_handler", "raise Exception('x')"]
    ]

    decoded = decode(json.dumps(record))

    assert decoded.stack_trace == [
        '  File "/var/task/lambda_function.py", line 3, in lambda_handler',
        "    raise Exception('x')",
    ]


def test_a_frame_holding_a_line_separator_stays_one_line() -> None:
    record = json.loads(body_of("invocation-retries-exhausted-python.json"))
    # a source line with U+2028 and a CR in a string literal; frames end at line feeds alone
    record["responsePayload"]["stackTrace"] = [
        '  File "/var/task/f.py", line 3, in h\r\n    s = "a\u2028b\rc\x85d"\n',
        "at node (x.js:1:2)\u2028more",
    ]

    decoded = decode(json.dumps(record))

    assert decoded.stack_trace == [
        '  File "/var/task/f.py", line 3, in h',
        '    s = "a\u2028b\rc\x85d"',
        "at node (x.js:1:2)\u2028more",
    ]


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_error_type_is_none_and_the_function_error_names_it(empty: str) -> None:
    record = json.loads(body_of("invocation-retries-exhausted-python.json"))
    record["responsePayload"]["errorType"] = empty
    no_function_error = json.loads(json.dumps(record))
    no_function_error["responseContext"].pop("functionError", None)

    assert decode(json.dumps(record)).error_type == "Unhandled"
    assert decode(json.dumps(no_function_error)).error_type is None


def test_summary_has_the_documented_keys() -> None:
    summary = decode_file("invocation-retries-exhausted-python.json").summary()

    assert summary == {
        "kind": "invocation",
        "envelope": "none",
        "key": "e4b46cbf-b738-xmpl-8880-a18cdf61200e:RetriesExhausted",
        "request_id": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "function_arn": "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
        "function_name": "my-function",
        "qualifier": "$LATEST",
        "region": "us-east-2",
        "account": "123456789012",
        "condition": "RetriesExhausted",
        "succeeded": False,
        "approximate_invoke_count": 3,
        "error_type": "KeyError",
        "error_message": "order 9e07af03-ce31-xmpl-36dce652cb4f not found",
        "timestamp": "2019-11-14T18:21:44.102Z",
    }
    assert json.loads(json.dumps(summary)) == summary
