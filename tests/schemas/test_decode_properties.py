"""Property tests: whatever the input, decode() returns a DecodedMessage or raises DecodeError."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_destinations.schemas import DecodedMessage, DecodeError, MessageKind, decode

EVENTS = Path(__file__).parents[1] / "events"

# Record-shaped templates the strategies mutate: one per kind and envelope.
TEMPLATES = [
    json.loads((EVENTS / name).read_text())
    for name in (
        "invocation-success.json",
        "invocation-retries-exhausted-python.json",
        "invocation-retries-exhausted-node.json",
        "invocation-zero-reserved-concurrency.json",
        "stream-kinesis.json",
        "stream-kafka-msk.json",
        "eventbridge-failure.json",
    )
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "Success",
            "RetriesExhausted",
            "2019-11-14T18:16:05.568Z",
            "arn:aws:lambda:us-east-2:123456789012:function:f:$LATEST",
            "Notification",
            "lambda",
            "Lambda Function Invocation Result - Failure",
        ]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

# Keys a decoder looks at, so that arbitrary objects often hit its branches.
interesting_keys = st.sampled_from(
    [
        "requestContext",
        "requestId",
        "functionArn",
        "condition",
        "approximateInvokeCount",
        "requestPayload",
        "responseContext",
        "responsePayload",
        "functionError",
        "errorType",
        "errorMessage",
        "stackTrace",
        "trace",
        "timestamp",
        "version",
        "KinesisBatchInfo",
        "DDBStreamBatchInfo",
        "KafkaBatchInfo",
        "recordsInfo",
        "recordInfo",
        "payload",
        "Type",
        "TopicArn",
        "Message",
        "MessageAttributes",
        "detail-type",
        "source",
        "detail",
        "Records",
    ]
)


def check(result_of: Callable[[], DecodedMessage]) -> None:
    """Only a DecodedMessage or a DecodeError with a one-line reason may come out."""
    reason: str | None
    try:
        decoded = result_of()
    except DecodeError as exc:
        reason = exc.reason
    else:
        reason = None
    if reason is not None:
        assert reason
        assert "\n" not in reason
        # The last-resort net in decode() turns bugs into this reason; none should reach it.
        assert not reason.startswith("decoder failed"), reason
        return
    assert isinstance(decoded, DecodedMessage)
    assert isinstance(decoded.key, str)
    assert decoded.key
    json.dumps(decoded.summary())
    if decoded.kind is not MessageKind.LEGACY_DLQ:
        assert decoded.function is not None


def mutate(doc: Any, path: list[str], value: Any) -> Any:
    """Set ``value`` at ``path`` (creating objects on the way), replacing what is there."""
    if not path:
        return value
    if not isinstance(doc, dict):
        doc = {}
    doc = dict(doc)
    doc[path[0]] = mutate(doc.get(path[0]), path[1:], value)
    return doc


@given(st.text())
def test_any_text(body: str) -> None:
    check(lambda: decode(body))


@given(st.binary())
def test_any_bytes(body: bytes) -> None:
    check(lambda: decode(body))


@given(json_values)
def test_any_json(value: Any) -> None:
    check(lambda: decode(json.dumps(value)))


@given(st.dictionaries(interesting_keys, json_values, max_size=6))
def test_objects_with_the_keys_a_decoder_looks_at(doc: dict[str, Any]) -> None:
    check(lambda: decode(json.dumps(doc)))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(TEMPLATES),
    st.lists(interesting_keys | st.text(max_size=8), min_size=1, max_size=3),
    json_values,
)
def test_near_records(template: dict[str, Any], path: list[str], value: Any) -> None:
    # A real record with one value, anywhere (requestContext.condition, detail.responsePayload...),
    # replaced by an arbitrary JSON value.
    doc = mutate(template, path, value)
    check(lambda: decode(json.dumps(doc)))


@given(
    st.sampled_from(TEMPLATES),
    st.sampled_from(["requestContext", "responseContext", "KinesisBatchInfo", "KafkaBatchInfo"]),
    interesting_keys,
    json_values,
)
def test_near_records_inside_sns(
    template: dict[str, Any], section: str, key: str, value: Any
) -> None:
    inner = mutate(template, [section, key], value)
    notification = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": json.dumps(inner),
    }
    check(lambda: decode(json.dumps(notification)))


@given(
    st.text(),
    st.dictionaries(
        st.sampled_from(["RequestID", "ErrorCode", "ErrorMessage", "Other"]),
        json_values | st.fixed_dictionaries({"StringValue": json_scalars}),
    ),
)
def test_any_body_with_any_attributes(body: str, attributes: dict[str, Any]) -> None:
    check(lambda: decode(body, attributes))


def test_the_templates_themselves_decode() -> None:
    # The near-record tests mean something only if the unmutated templates decode.
    for template in TEMPLATES:
        assert isinstance(decode(json.dumps(template)), DecodedMessage)
