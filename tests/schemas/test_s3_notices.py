"""S3's notices of the records Lambda writes to a bucket (an on-failure destination): the
decoder names the object to read, and decodes what the object holds as the record."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lambda_destinations.schemas import DecodeError, decode, decode_object, summarize
from lambda_destinations.schemas.s3 import RecordInS3, S3Object, S3TestEvent

EVENTS = Path(__file__).parents[1] / "events"
KEY = "aws/lambda/async/send-invoice/2026/12/06/2026-12-06T04.10.02-6f1c0a8e-6b1d-4f7e-9a55-0c1d"


def notification(**object_fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EVENTS / "s3-event-notification.json").read_text())
    doc["Records"][0]["s3"]["object"].update({"key": KEY, **object_fields})
    return doc


def notice_of(body: str) -> S3Object:
    with pytest.raises(RecordInS3) as caught:
        decode(body)
    return caught.value.location


def test_a_notification_names_the_object_with_its_region_size_version_and_etag() -> None:
    doc = notification(size=2048, versionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")

    location = notice_of(json.dumps(doc))

    # (the worker checks S3's answer against the size and the ETag: a page in its place is
    # no record)
    assert location == S3Object(
        "lambda-artifacts-xmpl",
        KEY,
        region="us-east-1",
        size=2048,
        version="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
        etag="b21b84d653bb07b05b1e6b33684dc11b",
    )
    assert str(location) == f"s3://lambda-artifacts-xmpl/{KEY}"


def test_a_notifications_key_is_url_decoded() -> None:
    # S3 URL-encodes a notification's key ("a b" is "a+b"); GetObject takes it plain
    location = notice_of(json.dumps(notification(key="aws/lambda/async/f/a+b%3Ac")))

    assert location.key == "aws/lambda/async/f/a b:c"


def test_a_notification_through_sns_is_the_same_notice() -> None:
    wrapped = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:records",
        "Message": json.dumps(notification()),
    }

    assert notice_of(json.dumps(wrapped)).key == KEY


def test_an_eventbridge_event_from_s3_names_the_object_as_given() -> None:
    event = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "region": "eu-west-1",
        "detail": {
            "bucket": {"name": "records"},
            "object": {
                "key": KEY,
                "size": 900,
                "version-id": "v1",
                "etag": "9b2cf535f27731c974343645a3985328-2",
            },
            "reason": "PutObject",
        },
    }

    # (EventBridge's detail says "etag", a notification "eTag"; a multipart object's has -N)
    assert notice_of(json.dumps(event)) == S3Object(
        "records",
        KEY,
        region="eu-west-1",
        size=900,
        version="v1",
        etag="9b2cf535f27731c974343645a3985328-2",
    )


def test_the_version_null_is_read_as_the_current_object() -> None:
    # S3's "null" version (an object written while versioning was off or suspended; moto's
    # EventBridge events say it of every object): a read by versionId=null needs
    # s3:GetObjectVersion, which a bucket without versioning is not said to need
    event = s3_event(
        "Object Created", bucket={"name": "records"}, object={"key": KEY, "version-id": "null"}
    )
    wrapped = notification(versionId="null")

    assert notice_of(json.dumps(event)).version is None
    assert notice_of(json.dumps(wrapped)).version is None


def test_s3s_test_event_is_its_own_notice() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "records"})

    with pytest.raises(S3TestEvent) as caught:
        decode(body)

    assert caught.value.bucket == "records"
    assert "nothing to handle" in caught.value.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda doc: doc["Records"][0].update(eventName="ObjectRemoved:Delete"),
            "not a Lambda record: S3's 'ObjectRemoved:Delete' event for s3://lambda-artifacts-xmpl/"
            f"{KEY}; send this queue only the bucket's ObjectCreated events (s3:ObjectCreated:*)",
        ),
        (
            lambda doc: doc["Records"].append(doc["Records"][0]),
            "an S3 notification of 2 records, where S3 sends one",
        ),
        (
            lambda doc: doc["Records"][0]["s3"].pop("object"),
            "S3 notification's s3 has no usable 'object' (missing)",
        ),
        (
            lambda doc: doc["Records"][0]["s3"]["object"].update(key=7),
            "object has no usable 'key' (a JSON number)",
        ),
        # names botocore refuses before any request leaves: such a read fails on every receive
        (
            lambda doc: doc["Records"][0]["s3"]["bucket"].update(name="records/2026"),
            "not a notice S3 sent: 'records/2026' cannot be an S3 bucket's name, so "
            f"s3://records/2026/{KEY} cannot be read; the message was written or changed on "
            "its way",
        ),
        (
            lambda doc: doc["Records"][0].update(awsRegion="us east 1"),
            "not a notice S3 sent: 'us east 1' cannot be an S3 region's name, so "
            f"s3://lambda-artifacts-xmpl/{KEY} cannot be read; the message was written or "
            "changed on its way",
        ),
    ],
)
def test_notices_that_name_no_record_are_said(change: Any, reason: str) -> None:
    doc = notification()
    change(doc)

    with pytest.raises(DecodeError) as caught:
        decode(json.dumps(doc))

    assert not isinstance(caught.value, RecordInS3)
    assert caught.value.reason == reason


def s3_event(detail_type: str, **detail: Any) -> dict[str, Any]:
    """An EventBridge event of source aws.s3, as a rule on the bucket's events sends it."""
    return {
        "version": "0",
        "detail-type": detail_type,
        "source": "aws.s3",
        "region": "eu-west-1",
        "detail": detail,
    }


RULE_FIX = (
    'match only detail-type "Object Created" in the EventBridge rule that sends to this queue'
)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        # the bucket's notification configuration plays no part: the fix is the rule's
        (
            s3_event("Object Deleted", bucket={"name": "records"}, object={"key": KEY}),
            "not a Lambda record: an EventBridge event from S3 of detail-type 'Object Deleted' "
            f"for s3://records/{KEY}; {RULE_FIX}",
        ),
        # CloudTrail's events of S3's API calls have source aws.s3 too, and name no object as
        # S3's own do: no complaint that the detail lacks a bucket
        (
            s3_event(
                "AWS API Call via CloudTrail",
                eventSource="s3.amazonaws.com",
                eventName="PutObject",
                requestParameters={"bucketName": "records", "key": KEY},
            ),
            "not a Lambda record: an EventBridge event from S3 of detail-type "
            f"'AWS API Call via CloudTrail'; {RULE_FIX}",
        ),
        (
            s3_event("Object Created", bucket={"name": "records"}, object={"key": "exports/a"}),
            "not a Lambda record: s3://records/exports/a is not under aws/lambda/, where Lambda "
            "writes its records; match only keys with the prefix aws/lambda/ in the "
            'EventBridge rule ("detail": {"object": {"key": [{"prefix": "aws/lambda/"}]}})',
        ),
    ],
)
def test_eventbridge_events_from_s3_that_name_no_record_say_the_rules_fix(
    event: dict[str, Any], reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(json.dumps(event))

    assert not isinstance(caught.value, RecordInS3)
    assert caught.value.reason == reason


def test_the_object_decodes_as_the_record_with_the_key_an_sqs_delivery_has() -> None:
    record = (EVENTS / "invocation-retries-exhausted-python.json").read_bytes()
    location = S3Object("records", KEY)

    decoded = decode_object(record, location)

    assert decoded.envelope == "s3"
    assert decoded.key == decode(record).key  # one record, whichever way it came: one key
    assert decoded.summary()["envelope"] == "s3"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{}", "not a Lambda record: the JSON object is empty"),
        (b"\xff", "body is not valid UTF-8: byte 0xff at position 0"),
    ],
)
def test_an_object_that_holds_no_record_is_said_with_its_name(content: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_object(content, S3Object("records", KEY))

    assert caught.value.reason == f"S3 object s3://records/{KEY}: {reason}"


def test_an_object_that_holds_another_notice_is_no_record() -> None:
    # one object never leads to reading a second
    body = json.dumps(notification()).encode()

    with pytest.raises(DecodeError) as caught:
        decode_object(body, S3Object("records", KEY))

    assert not isinstance(caught.value, RecordInS3)
    assert caught.value.reason == (
        f"S3 object s3://records/{KEY} holds S3's notice, not a Lambda record"
    )


def test_what_reads_no_s3_says_what_the_notice_is() -> None:
    # dlq peek, quarantine list: one line naming the object, as a decode error
    summary = summarize(json.dumps(notification()))

    assert summary["kind"] == "not-a-record"
    assert summary["decode_error"] == (
        f"S3's notice of a record Lambda wrote to s3://lambda-artifacts-xmpl/{KEY}: the worker "
        "reads the object (s3:GetObject) and handles the record in it"
    )


def test_a_record_is_not_taken_for_a_notice() -> None:
    # a function that handles S3 events has them in its requestPayload: still a record
    record = json.loads((EVENTS / "invocation-retries-exhausted-python.json").read_text())
    record["requestPayload"] = copy.deepcopy(notification())

    assert decode(json.dumps(record)).envelope == "none"
