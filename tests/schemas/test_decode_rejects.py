"""decode() rejects whatever is not a Lambda record with a DecodeError and a specific reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lambda_destinations.schemas import MAX_DEPTH, DecodeError, Envelope, decode

EVENTS = Path(__file__).parents[1] / "events"


def golden(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def reason_for(body: Any, attributes: Any = None) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(body, attributes)
    assert "\n" not in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)
    return caught.value.reason


def sns(message: str, **extra: Any) -> str:
    notification = golden("sns-invocation-failure.json")
    notification["Message"] = message
    notification.update(extra)
    return json.dumps(notification)


def record(**changes: Any) -> dict[str, Any]:
    base = golden("invocation-retries-exhausted-python.json")
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "body is empty"),
        (b"", "body is empty"),
        ("  \n\t ", "body is empty"),
        (
            "{",
            "body is not JSON: "
            "Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        ("not json", "body is not JSON: Expecting value at line 1 column 1"),
        ('{"a": 1} trailing', "body is not JSON: Extra data at line 1 column 10"),
        # json's message ends in "at" itself ("Invalid control character at"): said once
        ('{"a": "x\ny"}', "body is not JSON: Invalid control character at line 1 column 9"),
        ('{"a": NaN}', "body is not JSON the decoder accepts: NaN is not valid JSON"),
        (
            '{"a": -1.5E+400}',
            "body is not JSON the decoder accepts: -1.5E+400 is too large for a double",
        ),
        ("[]", "body is a JSON array, not a Lambda record"),
        ('"a string"', "body is a JSON string, not a Lambda record"),
        ("42", "body is a JSON number, not a Lambda record"),
        ("true", "body is a JSON boolean, not a Lambda record"),
        ("null", "body is JSON null, not a Lambda record"),
        ("{}", "not a Lambda record: the JSON object is empty"),
        (b"\xff\xfe{}", "body is not valid UTF-8: byte 0xff at position 0"),
    ],
)
def test_bodies_that_are_not_records(body: str | bytes, reason: str) -> None:
    assert reason_for(body) == reason


BOM = (
    "starts with a byte order mark (U+FEFF): JSON senders must not write one "
    "(RFC 8259, section 8.1); send the JSON text alone"
)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("\ufeff" + json.dumps(record()), f"body {BOM}"),
        (b"\xef\xbb\xbf" + json.dumps(record()).encode(), f"body {BOM}"),
        ('\ufeff{"a": 1e400}', f"body {BOM}"),  # the other parser's way in
        ("\ufeff", f"body {BOM}"),
        (sns("\ufeff" + json.dumps(record())), f"SNS Message {BOM}"),
    ],
)
def test_a_byte_order_mark_is_named(body: str | bytes, reason: str) -> None:
    # before: "body is not JSON: Expecting value at line 1 column 1"
    assert reason_for(body) == reason


def test_body_of_the_wrong_type() -> None:
    assert reason_for(None) == "body must be str or bytes, not NoneType"
    assert reason_for(12) == "body must be str or bytes, not int"


def test_object_without_request_context_names_its_keys() -> None:
    body = json.dumps({"orderId": "o-1", "status": "NEW"})

    assert reason_for(body) == "not a Lambda record: no requestContext (keys: 'orderId', 'status')"


def test_record_without_request_context() -> None:
    body = golden("invocation-success.json")
    del body["requestContext"]

    assert reason_for(json.dumps(body)).startswith("not a Lambda record: no requestContext")


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        (
            {"approximateInvokeCount": "3"},
            "invalid field requestContext.approximateInvokeCount: "
            "Input should be a valid integer (got '3')",
        ),
        (
            {"approximateInvokeCount": -1},
            "invalid field requestContext.approximateInvokeCount: "
            "Input should be greater than or equal to 0 (got -1)",
        ),
        (
            {"approximateInvokeCount": 2.0},
            "invalid field requestContext.approximateInvokeCount: "
            "Input should be a valid integer (got 2.0)",
        ),
        (
            {"approximateInvokeCount": 2**31},  # the store's column is a 32-bit integer
            "invalid field requestContext.approximateInvokeCount: "
            "Input should be less than or equal to 2147483647 (got 2147483648)",
        ),
        (
            {"requestId": None},
            "invalid field requestContext.requestId: Input should be a valid string (got null)",
        ),
        (
            {"requestId": "r" * 257},  # the record's key must fit a PostgreSQL index entry
            "invalid field requestContext.requestId: "
            f"String should have at most 256 characters (got '{'r' * 57}...')",
        ),
        (
            {"condition": "C" * 257},
            "invalid field requestContext.condition: "
            f"String should have at most 256 characters (got '{'C' * 57}...')",
        ),
        (
            {"condition": ""},
            "invalid field requestContext.condition: "
            "String should have at least 1 character (got '')",
        ),
        (
            {"functionArn": "arn:aws:sqs:us-east-1:123456789012:queue"},
            "invalid field requestContext.functionArn: "
            "not a Lambda function ARN: 'arn:aws:sqs:us-east-1:123456789012:queue'",
        ),
    ],
)
def test_bad_request_context_fields(context: dict[str, Any], reason: str) -> None:
    body = record()
    body["requestContext"].update(context)

    assert reason_for(json.dumps(body)) == reason


def test_missing_field_is_named() -> None:
    body = record()
    del body["requestContext"]["functionArn"]

    assert reason_for(json.dumps(body)) == "missing field requestContext.functionArn"


def test_several_problems_are_counted() -> None:
    body = record()
    body["requestContext"] = {"requestId": 1}

    assert reason_for(json.dumps(body)) == (
        "invalid field requestContext.requestId: Input should be a valid string (got 1) "
        "(and 3 more problems)"
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"requestContext": [1, 2]},
            "invalid field requestContext: expected a JSON object (got a JSON array)",
        ),
        # before: "Input should be a valid dictionary or instance of ResponseContext", naming
        # a Python class to whoever reads the quarantine
        (
            {"responseContext": "Unhandled"},
            "invalid field responseContext: expected a JSON object (got 'Unhandled')",
        ),
        # before: "Input should be a valid string" and nothing of what the field held
        (
            {"version": {"major": 1}},
            "invalid field version: Input should be a valid string (got a JSON object)",
        ),
    ],
)
def test_a_field_of_the_wrong_json_type_says_what_it_holds(
    changes: dict[str, Any], reason: str
) -> None:
    assert reason_for(json.dumps(record(**changes))) == reason


def test_a_lone_surrogate_in_an_identifier_is_named() -> None:
    body = json.dumps(record()).replace("RetriesExhausted", "Retries\\ud800")

    # before: "Input should be a valid string, unable to parse raw data as a unicode string"
    assert reason_for(body) == (
        "invalid field requestContext.condition: holds a lone surrogate (a \\ud800-\\udfff "
        "escape without its pair), which is not text (got 'Retries\\ud800')"
    )


def test_bad_timestamp() -> None:
    reason = reason_for(json.dumps(record(timestamp="yesterday")))

    assert reason.startswith("invalid field timestamp: Input should be a valid datetime")
    assert reason.endswith("(got 'yesterday')")


def test_stream_record_with_two_batch_infos() -> None:
    body = golden("stream-kinesis.json")
    body["DDBStreamBatchInfo"] = golden("stream-dynamodb.json")["DDBStreamBatchInfo"]

    assert reason_for(json.dumps(body)) == (
        "invalid record: expected exactly one of KinesisBatchInfo, DDBStreamBatchInfo, "
        "KafkaBatchInfo; found KinesisBatchInfo and DDBStreamBatchInfo"
    )


def test_stream_record_with_a_bad_batch_info() -> None:
    body = golden("stream-kinesis.json")
    del body["KinesisBatchInfo"]["shardId"]

    assert reason_for(json.dumps(body)) == "missing field KinesisBatchInfo.shardId"


def test_kafka_record_without_positions() -> None:
    body = golden("stream-kafka-msk.json")
    del body["KafkaBatchInfo"]["recordsInfo"]

    assert reason_for(json.dumps(body)) == (
        "invalid field KafkaBatchInfo: KafkaBatchInfo has neither recordsInfo nor recordInfo"
    )


def test_sns_message_that_is_not_json() -> None:
    assert reason_for(sns("hello")) == "SNS Message is not JSON: Expecting value at line 1 column 1"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("", "SNS Message is empty"),
        ("[1]", "SNS Message is a JSON array, not a Lambda record"),
        (
            '{"AlarmName": "high-errors", "NewStateValue": "ALARM"}',
            "SNS Message: not a Lambda record: looks like a CloudWatch alarm notification",
        ),
        (
            '{"hello": "world"}',
            "SNS Message: not a Lambda record: no requestContext (keys: 'hello')",
        ),
    ],
)
def test_sns_message_that_is_not_a_record(message: str, reason: str) -> None:
    assert reason_for(sns(message)) == reason


def test_sns_message_that_is_not_a_string() -> None:
    notification = golden("sns-invocation-failure.json")
    notification["Message"] = {"requestContext": {}}

    assert reason_for(json.dumps(notification)) == "SNS Message is a JSON object, not a string"


def test_invalid_record_inside_sns_says_where() -> None:
    inner = record()
    inner["requestContext"]["approximateInvokeCount"] = "3"

    assert reason_for(sns(json.dumps(inner))) == (
        "SNS Message: invalid field requestContext.approximateInvokeCount: "
        "Input should be a valid integer (got '3')"
    )


def test_invalid_record_inside_eventbridge_says_where() -> None:
    event = golden("eventbridge-failure.json")
    del event["detail"]["requestContext"]["requestId"]

    assert reason_for(json.dumps(event)) == (
        "EventBridge detail: missing field requestContext.requestId"
    )


# Until the queue's owner confirms a subscription, SNS sends the queue no record of the
# topic's: the quarantined message is the only sign, and says the way on
@pytest.mark.parametrize(
    ("kind", "meaning"),
    [
        (
            "SubscriptionConfirmation",
            "is pending, and SNS sends the queue nothing until it is confirmed; open the "
            "SubscribeURL this message holds, or subscribe the queue from its own account "
            "(`aws sns subscribe`, which confirms it)",
        ),
        (
            "UnsubscribeConfirmation",
            "was deleted, and SNS sends the queue nothing more from it; if that was not meant, "
            "subscribe the queue again (`aws sns subscribe`)",
        ),
    ],
)
def test_snss_confirmations_say_what_they_mean_for_the_queue(kind: str, meaning: str) -> None:
    body = sns("You have chosen to subscribe to the topic", Type=kind)

    assert reason_for(body) == (
        f"not a Lambda record: looks like an SNS {kind!r} message: the queue's subscription "
        f"to topic 'send-invoice-failures' {meaning}"
    )


def test_eventbridge_event_of_another_kind() -> None:
    event = golden("eventbridge-success.json")
    event["source"] = "aws.ec2"
    event["detail-type"] = "EC2 Instance State-change Notification"
    event["detail"] = {"instance-id": "i-0123456789abcdef0", "state": "running"}

    assert reason_for(json.dumps(event)) == (
        "not a Lambda record: looks like an EventBridge event from source 'aws.ec2' "
        "with detail-type 'EC2 Instance State-change Notification'; match only source "
        '"lambda" in the EventBridge rule that sends to this queue (and "aws.s3" for a '
        'bucket\'s "Object Created", where Lambda writes records to a bucket)'
    )


def test_eventbridge_detail_that_is_not_an_object() -> None:
    event = golden("eventbridge-success.json")
    event["detail"] = "text"

    assert (
        reason_for(json.dumps(event)) == "EventBridge detail is a JSON string, not a Lambda record"
    )


def test_s3_event_notification_of_an_object_lambda_did_not_write() -> None:
    body = (EVENTS / "s3-event-notification.json").read_text()

    assert reason_for(body) == (
        "not a Lambda record: s3://lambda-artifacts-xmpl/b21b84d653bb07b05b1e6b33684dc11b is "
        "not under aws/lambda/, where Lambda writes its records; filter the bucket's "
        "notification on the prefix aws/lambda/"
    )


@pytest.mark.parametrize(
    ("doc", "looks_like"),
    [
        (
            {"Records": [{"eventSource": "aws:sqs", "body": "x"}]},
            "an SQS event for a Lambda function",
        ),
        ({"Records": [{"EventSource": "aws:sns"}]}, "an SNS event for a Lambda function"),
        ({"Records": []}, "a batch of event records (Records), not a Lambda record"),
        (
            {
                "context": {"partnerResourceArn": "arn:aws:pipes:eu-west-2:1:pipe/p"},
                "version": "1.0",
            },
            "an EventBridge Pipes failure record",
        ),
        (
            {"MessageId": "m", "ReceiptHandle": "r", "Body": "{}"},
            "a whole SQS message rather than its body (decode its Body)",
        ),
        ({"Messages": []}, "an SQS ReceiveMessage response rather than a message body"),
    ],
)
def test_look_alikes_from_other_producers(doc: dict[str, Any], looks_like: str) -> None:
    assert reason_for(json.dumps(doc)) == f"not a Lambda record: looks like {looks_like}"


def test_nested_envelopes_are_named() -> None:
    event = json.dumps(golden("eventbridge-failure.json"))

    # Lambda -> EventBridge -> a rule targeting an SNS topic -> the queue, raw delivery off
    assert reason_for(sns(event)) == (
        "SNS Message: not a Lambda record: looks like an EventBridge event inside an SNS "
        "notification (nested envelopes are not decoded): turn on raw message delivery for the "
        "queue's subscription to the topic"
    )
    # with raw delivery, the queue receives the event itself
    assert decode(event).envelope is Envelope.EVENTBRIDGE


@pytest.mark.parametrize(
    ("drop", "reason"),
    [
        # before: "... looks like an SNS message inside another envelope (nested envelopes are
        # not decoded)", of a message at the top of the body, in no envelope
        (
            ("sns-invocation-failure.json", "Message"),
            "not a Lambda record: looks like an SNS message without a Message, where the record "
            "would be",
        ),
        (
            ("eventbridge-failure.json", "detail"),
            "not a Lambda record: looks like an EventBridge event without a detail, where the "
            "record would be",
        ),
    ],
)
def test_an_envelope_without_its_content_is_not_called_nested(
    drop: tuple[str, str], reason: str
) -> None:
    name, field = drop
    envelope = golden(name)
    del envelope[field]

    assert reason_for(json.dumps(envelope)) == reason


def test_an_sns_message_whose_type_is_no_word_says_so() -> None:
    notification = golden("sns-invocation-failure.json")
    notification["Type"] = 5

    # before: "... looks like an SNS message inside another envelope ..."
    assert reason_for(json.dumps(notification)) == (
        "not a Lambda record: looks like an SNS message of Type 5, where SNS writes a word"
    )


def test_malformed_legacy_attributes() -> None:
    assert reason_for("{}", ["RequestID"]) == "message attributes must be a mapping, not list"
    assert reason_for("{}", {"RequestID": {"Size": 1}, "ErrorCode": "200"}) == (
        "invalid message attribute RequestID: expected a string value, got a JSON object"
    )
    assert reason_for("{}", {"RequestID": "", "ErrorCode": "200"}) == (
        "message attribute RequestID is empty"
    )
    assert reason_for("{}", {"RequestID": "r" * 257, "ErrorCode": "200"}) == (
        f"invalid field RequestID: String should have at most 256 characters (got '{'r' * 57}...')"
    )


@pytest.mark.parametrize(
    "value",
    [
        {"DataType": "Binary", "BinaryValue": b"oops"},  # ReceiveMessage
        {"DataType": "Binary.gzip", "BinaryValue": "b29wcw=="},  # as the quarantine keeps it
        {"dataType": "Binary", "binaryValue": "b29wcw=="},  # Lambda's SQS event
        {"Type": "Binary", "Value": "b29wcw=="},  # an SNS notification's
        {"BinaryValue": b"oops"},
    ],
)
def test_a_binary_legacy_attribute_is_named_binary(value: dict[str, Any]) -> None:
    # given: a valid invocation record, whose attributes say it is a dead-letter message
    body = json.dumps(record())
    attributes = {"RequestID": {"DataType": "String", "StringValue": "r-1"}, "ErrorMessage": value}

    # then: the reason says the value was Binary (before: "got a JSON object"), and that a
    # string was expected
    assert reason_for(body, attributes) == (
        "invalid message attribute ErrorMessage: expected a string value, got a Binary value"
    )


def test_request_id_attribute_alone_does_not_make_a_dlq_message() -> None:
    # Someone else's attribute called RequestID: the body is judged as a record.
    assert reason_for("{}", {"RequestID": "x"}) == "not a Lambda record: the JSON object is empty"


def test_deeply_nested_body() -> None:
    assert reason_for("[" * 100_000).startswith("body is nested too deeply: more than 512 levels")


def test_integer_too_long_to_convert() -> None:
    reason = reason_for("1" * 5000)

    # the operator's words, not Python's (which told a developer to raise a limit)
    assert reason == (
        "body holds an integer of more than 4300 digits, more than a record may hold: "
        "send such a number as a string"
    )


def test_huge_integer_in_a_field_is_reported_without_printing_it() -> None:
    body = record()
    body["requestContext"]["requestId"] = 10**200

    assert reason_for(json.dumps(body)) == (
        "invalid field requestContext.requestId: Input should be a valid string "
        "(got a very large number)"
    )


def test_a_number_past_a_double_is_refused_in_an_sns_message_and_a_large_one_kept() -> None:
    inside = json.dumps(record()).replace(
        '"requestPayload": {', '"requestPayload": {"n": 1e999, ', 1
    )
    assert "1e999" in inside

    assert reason_for(sns(inside)).endswith("1e999 is too large for a double")
    kept = decode(json.dumps(record(requestPayload={"n": 1.5e308, "code": "e123"})))
    assert kept.record.request_payload == {"n": 1.5e308, "code": "e123"}


def test_a_number_past_a_double_without_an_exponent_is_refused() -> None:
    # 400 digits before the point: a double holds none of it, yet it has no exponent to notice.
    digits = "1" + "0" * 400 + ".5"
    inside = json.dumps(record()).replace(
        '"requestPayload": {', f'"requestPayload": {{"n": {digits}, ', 1
    )

    assert reason_for(inside).endswith(f"{digits[:40]} is too large for a double")
    kept = decode(json.dumps(record(requestPayload={"n": 10**400})))
    assert kept.record.request_payload == {"n": 10**400}


def nested(depth: int) -> str:
    """A record whose request payload is arrays nested ``depth`` deep."""
    text = json.dumps(record(requestPayload=None))
    return text.replace('"requestPayload": null', f'"requestPayload": {"[" * depth}{"]" * depth}')


def from_deep_in_the_stack(frames: int, body: str) -> Any:
    """decode(body) called ``frames`` Python calls down, as the worker or console call it."""
    if frames:
        return from_deep_in_the_stack(frames - 1, body)
    try:
        return decode(body)
    except DecodeError as exc:
        return exc.reason


def test_nesting_is_judged_the_same_however_deep_the_caller_is() -> None:
    # The JSON scanner's recursion counts the caller's frames: the answer depended on who asked
    # (decode said "invocation" for what the worker quarantined as nested too deeply).
    too_deep = nested(MAX_DEPTH)  # the record's object and the payload: MAX_DEPTH + 1 levels
    reason = (
        f"body is nested too deeply: more than {MAX_DEPTH} levels of arrays and objects, the "
        "most a record may have; nest the function's payloads less deeply"
    )

    assert reason_for(too_deep) == reason
    assert from_deep_in_the_stack(300, too_deep) == reason
    assert reason_for(sns(too_deep)) == f"SNS Message {reason.removeprefix('body ')}"
    # one level less decodes, however deep the caller
    decoded = from_deep_in_the_stack(300, nested(MAX_DEPTH - 1))
    assert decoded.kind.value == "invocation"
