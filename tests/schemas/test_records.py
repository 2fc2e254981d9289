"""The record models: typed payloads, unknown fields kept, large bodies, function ARNs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from lambda_destinations.schemas import (
    DecodeError,
    ErrorPayload,
    FunctionArn,
    InvocationRecord,
    LegacyDlqMessage,
    StreamFailureRecord,
    decode,
    invoke_function_name,
    requalified,
)

EVENTS = Path(__file__).parents[1] / "events"
SQS_MAX_BODY = 1024 * 1024


def golden(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


class OrderItem(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    orderId: str
    items: list[OrderItem]
    total: float


class Confirmation(BaseModel):
    orderId: str
    status: str


class Orders(BaseModel):
    ORDER_IDS: list[str]


# --- typed payloads ---------------------------------------------------------------------------


def test_typed_record_validates_payloads_into_user_models() -> None:
    decoded = decode((EVENTS / "invocation-success.json").read_text())

    typed = decoded.typed(InvocationRecord[Order, Confirmation])

    assert isinstance(typed.request_payload, Order)
    assert typed.request_payload.items == [OrderItem(sku="A-1", qty=2)]
    assert isinstance(typed.response_payload, Confirmation)
    assert typed.response_payload.status == "CONFIRMED"
    assert typed.request_id == decoded.request_id


def test_typed_failure_record_with_the_error_payload_model() -> None:
    decoded = decode((EVENTS / "invocation-retries-exhausted-node.json").read_text())

    class Invoice(BaseModel):
        invoiceId: str

    typed = decoded.typed(InvocationRecord[Invoice, ErrorPayload])

    assert typed.request_payload == Invoice(invoiceId="inv-77")
    assert isinstance(typed.response_payload, ErrorPayload)
    assert typed.response_payload.error_type == "TypeError"
    assert isinstance(typed.response_payload.trace, list)


def test_typed_record_that_does_not_fit_raises_decode_error() -> None:
    decoded = decode((EVENTS / "invocation-retries-exhausted-python.json").read_text())

    with pytest.raises(DecodeError) as caught:
        decoded.typed(InvocationRecord[Order, Confirmation])

    assert caught.value.reason == (
        "record does not fit InvocationRecord[Order, Confirmation]: "
        "missing field requestPayload.orderId (and 4 more problems)"
    )


def test_typed_accepts_the_other_record_models() -> None:
    stream = decode((EVENTS / "stream-kinesis.json").read_text())
    legacy = decode("{}", {"RequestID": "r-1", "ErrorCode": "200"})

    assert stream.typed(StreamFailureRecord) == stream.record
    assert legacy.typed(LegacyDlqMessage) == legacy.record


def test_untyped_record_keeps_payloads_as_json() -> None:
    decoded = decode((EVENTS / "invocation-retries-exhausted-python.json").read_text())

    typed = decoded.typed(InvocationRecord[Orders, Any])

    assert typed.request_payload is not None
    assert typed.request_payload.ORDER_IDS[0].startswith("9e07af03")
    assert isinstance(typed.response_payload, dict)


# --- unknown fields ---------------------------------------------------------------------------


def test_unknown_fields_are_kept_at_every_level() -> None:
    body = golden("invocation-success.json")
    body["newTopLevelField"] = {"added": "by AWS"}
    body["requestContext"]["tenantId"] = "t-9"
    body["responseContext"]["durationMs"] = 12

    decoded = decode(json.dumps(body))

    assert isinstance(decoded.record, InvocationRecord)
    assert decoded.record.model_extra == {"newTopLevelField": {"added": "by AWS"}}
    assert decoded.record.request_context.model_extra == {"tenantId": "t-9"}
    assert decoded.record.response_context is not None
    assert decoded.record.response_context.model_extra == {"durationMs": 12}
    assert decoded.record_json["newTopLevelField"] == {"added": "by AWS"}
    # They survive a round trip through the model, with AWS's spelling.
    assert decoded.record.model_dump(mode="json")["requestContext"]["tenantId"] == "t-9"


def test_model_dump_round_trips_to_aws_spelling() -> None:
    body = golden("stream-kinesis.json")
    decoded = decode(json.dumps(body))

    assert isinstance(decoded.record, StreamFailureRecord)
    dumped = decoded.record.model_dump(mode="json", exclude_none=True)

    assert dumped["KinesisBatchInfo"]["shardId"] == body["KinesisBatchInfo"]["shardId"]
    assert dumped["requestContext"] == body["requestContext"]
    assert StreamFailureRecord.model_validate(dumped) == decoded.record


def test_numeric_stream_positions_are_kept_exact_as_text() -> None:
    body = golden("stream-kinesis.json")
    body["KinesisBatchInfo"]["startSequenceNumber"] = (
        49601189658422359378836298521827638475320189012309704722
    )

    decoded = decode(json.dumps(body))

    assert isinstance(decoded.record, StreamFailureRecord)
    assert decoded.record.kinesis_batch_info is not None
    assert decoded.record.kinesis_batch_info.start_sequence_number == (
        "49601189658422359378836298521827638475320189012309704722"
    )


def test_records_are_immutable() -> None:
    decoded = decode((EVENTS / "invocation-success.json").read_text())
    assert isinstance(decoded.record, InvocationRecord)

    with pytest.raises(ValidationError, match="frozen"):
        decoded.record.version = "2.0"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        decoded.key = "other"  # type: ignore[misc]


# --- size -------------------------------------------------------------------------------------


def test_a_body_of_one_mebibyte_decodes() -> None:
    body = golden("invocation-success.json")
    body["requestPayload"] = {"blob": ""}
    padding = SQS_MAX_BODY - len(json.dumps(body))
    body["requestPayload"]["blob"] = "x" * padding
    text = json.dumps(body)
    assert len(text.encode()) == SQS_MAX_BODY

    decoded = decode(text.encode())

    assert len(decoded.request_payload["blob"]) == padding
    assert decoded.key == "8f5e2a3c-1f0b-xmpl-9b6e-52d1c0a4be77:Success"


def test_a_one_mebibyte_body_of_many_small_values_decodes_inside_sns() -> None:
    inner = golden("invocation-success.json")
    inner["requestPayload"] = list(range(140_000))
    notification = golden("sns-invocation-failure.json")
    notification["Message"] = json.dumps(inner)
    text = json.dumps(notification)
    assert SQS_MAX_BODY * 0.9 < len(text) <= SQS_MAX_BODY

    decoded = decode(text)

    assert decoded.request_payload[-1] == 139_999


# --- function ARNs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (
            "arn:aws:lambda:us-east-2:123456789012:function:my-function",
            ("aws", "us-east-2", "123456789012", "my-function", None),
        ),
        (
            "arn:aws:lambda:us-east-2:123456789012:function:my-function:$LATEST",
            ("aws", "us-east-2", "123456789012", "my-function", "$LATEST"),
        ),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:send_invoice:42",
            ("aws", "eu-west-1", "123456789012", "send_invoice", "42"),
        ),
        (
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:live-blue",
            ("aws-cn", "cn-north-1", "123456789012", "f", "live-blue"),
        ),
        (
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f",
            ("aws-us-gov", "us-gov-west-1", "123456789012", "f", None),
        ),
        (
            "arn:aws:lambda:us-east-2:123456789012:function:f:$LATEST.PUBLISHED",
            ("aws", "us-east-2", "123456789012", "f", "$LATEST.PUBLISHED"),
        ),
        (
            "arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:f:7",
            ("aws-iso-b", "us-isob-east-1", "123456789012", "f", "7"),
        ),
    ],
)
def test_function_arn_parse(arn: str, expected: tuple[str, ...]) -> None:
    parsed = FunctionArn.parse(arn)

    assert (
        parsed.partition,
        parsed.region,
        parsed.account,
        parsed.function_name,
        parsed.qualifier,
    ) == expected
    assert parsed.arn == arn
    assert str(parsed) == arn
    assert parsed.unqualified == arn.removesuffix(f":{expected[4]}")
    assert FunctionArn.parse(parsed.unqualified).qualifier is None


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "my-function",
        "arn:aws:lambda:us-east-2:123456789012:function:",
        "arn:aws:lambda:us-east-2:12345:function:f",
        "arn:aws:lambda:us-east-2:123456789012:layer:f:1",
        "arn:aws:sqs:us-east-2:123456789012:queue",
        "arn:aws:lambda:us-east-2:123456789012:function:f:v1:extra",
        "arn:aws:lambda:us-east-2:123456789012:function:has space",
        "arn:aws:lambda:us-east-2:١٢٣٤٥٦٧٨٩٠١٢:function:f",
    ],
)
def test_function_arn_rejects(arn: str) -> None:
    with pytest.raises(ValueError, match="not a Lambda function ARN"):
        FunctionArn.parse(arn)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("orders-api", "orders-api:live"),
        ("orders-api:12", "orders-api:live"),
        ("123456789012:function:orders-api:$LATEST", "123456789012:function:orders-api:live"),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:orders-api:12",
            "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:orders-api",
            "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live",
        ),
        ("has space", "has space"),  # in no form Invoke takes: as it is, for Invoke to refuse
    ],
)
def test_requalified_names_the_qualifier_instead_of_the_function_s_own(
    function: str, expected: str
) -> None:
    assert requalified(function, "live") == expected


def test_function_arn_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="expected a string, got int"):
        FunctionArn.parse(12)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("orders-api", "orders-api"),
        ("orders-api:live", "orders-api"),
        ("orders-api:7", "orders-api"),
        ("orders-api:$LATEST", "orders-api"),
        ("my.namespaced_fn", "my.namespaced_fn"),
        ("f" * 64, "f" * 64),
        ("123456789012:function:orders-api", "orders-api"),
        ("arn:aws:lambda:us-east-1:123456789012:function:orders-api:live", "orders-api"),
        ("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f", "f"),
        ("arn:aws-iso-b:lambda:us-isob-east-1:123456789012:function:f", "f"),
        ("arn:aws:lambda:eusc-de-east-1:123456789012:function:f", "f"),
    ],
)
def test_invoke_names_lambda_takes(text: str, name: str) -> None:
    assert invoke_function_name(text) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "orders api",
        " orders-api",
        "orders/api",
        "orders-api:",
        "orders-api:v1:extra",
        "f" * 65,
        "arn:aws:lambda:us-east-1:123:function:f",
        "https://lambda.us-east-1.amazonaws.com/orders-api",
        "arn:aws:lambda:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:function:f",
    ],
)
def test_invoke_names_lambda_refuses(name: str) -> None:
    assert invoke_function_name(name) is None
