"""Records Lambda writes to an S3 bucket, and the notices S3 sends of them (pure, no I/O).

A function's on-failure destination may be a bucket: Lambda then writes each record as one
JSON object under ``aws/lambda/`` (``aws/lambda/async/<function>/YYYY/MM/DD/…`` for
asynchronous invocations, ``aws/lambda/<mapping>/<shard>/…`` for a stream's), and the bucket's
event notification tells a polled queue of it: an S3 notification (``Records`` of
``eventSource: "aws:s3"``, directly or through SNS), or an EventBridge event of source
``aws.s3``. The decoder raises :class:`RecordInS3` for such a notice, naming the object, and
the worker reads it and decodes what it holds (:func:`~lambda_destinations.schemas.decoder.
decode_object`). Both are :class:`DecodeError`\\ s, so whatever decodes a message without
reading S3 (``dlq peek``, ``decode``) says what the message is in its one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from lambda_destinations.schemas._private import json_kind, short_repr
from lambda_destinations.schemas.errors import DecodeError

LAMBDA_PREFIX = "aws/lambda/"  # where Lambda writes every record it sends to a bucket
S3_SOURCE = "aws:s3"  # an S3 notification record's eventSource
S3_EVENTBRIDGE_SOURCE = "aws.s3"
_CREATED = "ObjectCreated:"  # a notification's eventName, for a new object
_EVENTBRIDGE_CREATED = "Object Created"  # an EventBridge event's detail-type, likewise
# What botocore lets a GetObject name as its bucket, and as a client's region (a label of the
# endpoint's host name): a notice naming another is none S3 sent, and a read of it would be
# refused before it left, on every receive.
BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")
_REGION_NAME = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class S3Object:
    """An object S3 said was written: where to read it (``region``: the bucket's, when the
    notice says), and its size, version and ETag (without quotes) when it says them."""

    bucket: str
    key: str
    region: str | None = None
    size: int | None = None
    version: str | None = None
    etag: str | None = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class S3Notice(DecodeError):
    """A message that is S3's notice, not a record: read on by the worker, said by the rest."""


class RecordInS3(S3Notice):
    """The record is in an S3 object (:attr:`location`) that Lambda wrote: read it, then
    decode what it holds."""

    def __init__(self, location: S3Object) -> None:
        super().__init__(
            f"S3's notice of a record Lambda wrote to {location}: the worker reads the object "
            "(s3:GetObject) and handles the record in it"
        )
        self.location = location


class S3TestEvent(S3Notice):
    """The test event S3 sends once to a queue a bucket's notification configuration names:
    nothing to handle."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"S3's test event for bucket {short_repr(bucket)}, sent when its notification "
            "configuration was saved: nothing to handle"
        )
        self.bucket = bucket


def notification_configuration(queue_arn: str) -> dict[str, Any]:
    """A bucket's notification configuration that tells the queue ``queue_arn`` of every
    object created under ``aws/lambda/``, where Lambda writes its records (S3's
    PutBucketNotificationConfiguration; it replaces the bucket's others)."""
    return {
        "QueueConfigurations": [
            {
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": LAMBDA_PREFIX}]}},
            }
        ]
    }


def check_s3_notice(doc: dict[str, Any]) -> None:
    """Raise the notice ``doc`` is when it has the shape of S3's (an S3 notification, or its
    test event); return when it has not. Asked only of a document that is no record, so a
    record pays nothing for it."""
    if doc.get("Event") == "s3:TestEvent":
        raise S3TestEvent(str(doc.get("Bucket") or ""))
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        return
    first = records[0]
    if not isinstance(first, dict) or first.get("eventSource") != S3_SOURCE:
        return
    if len(records) != 1:  # S3 sends one record a message
        raise DecodeError(f"an S3 notification of {len(records)} records, where S3 sends one")
    event = str(first.get("eventName") or "")
    s3 = _field(first, "s3", dict, "S3 notification")
    bucket = _field(_field(s3, "bucket", dict, "S3 notification's s3"), "name", str, "bucket")
    found = _field(s3, "object", dict, "S3 notification's s3")
    # A notification's key is URL-encoded ("a b" is "a+b"); Lambda's keys read the same either way.
    key = unquote_plus(_field(found, "key", str, "object"))
    location = S3Object(
        bucket,
        key,
        region=_text(first.get("awsRegion")),
        size=_size(found.get("size")),
        version=_version(found.get("versionId")),
        etag=_etag(found.get("eTag")),
    )
    if not event.startswith(_CREATED):
        raise _not_created(
            f"S3's {short_repr(event)} event",
            location,
            "send this queue only the bucket's ObjectCreated events (s3:ObjectCreated:*)",
        )
    _raise_for_object(location, _NOTIFICATION_FILTER)


def check_s3_event(doc: dict[str, Any]) -> None:
    """Raise the notice an EventBridge event from S3 is (``source: "aws.s3"``); return for an
    event of any other source. EventBridge gives the key as it is, not URL-encoded."""
    if doc.get("source") != S3_EVENTBRIDGE_SOURCE:
        return
    detail_type = doc.get("detail-type")
    if detail_type != _EVENTBRIDGE_CREATED:
        # S3's other events, and CloudTrail's of S3's API calls (source "aws.s3" too), which
        # name no object as S3's own do: what the event is, and the rule's fix, either way.
        try:
            location: S3Object | None = _eventbridge_object(doc)
        except DecodeError:
            location = None
        raise _not_created(
            f"an EventBridge event from S3 of detail-type {short_repr(detail_type)}",
            location,
            'match only detail-type "Object Created" in the '
            "EventBridge rule that sends to this queue",
        )
    _raise_for_object(_eventbridge_object(doc), _RULE_FILTER)


def _eventbridge_object(doc: dict[str, Any]) -> S3Object:
    detail = _field(doc, "detail", dict, "EventBridge event")
    bucket = _field(_field(detail, "bucket", dict, "EventBridge detail"), "name", str, "bucket")
    found = _field(detail, "object", dict, "EventBridge detail")
    return S3Object(
        bucket,
        _field(found, "key", str, "object"),
        region=_text(doc.get("region")),
        size=_size(found.get("size")),
        version=_version(found.get("version-id")),
        etag=_etag(found.get("etag", found.get("eTag"))),  # S3's "etag"; moto's "eTag"
    )


# How each way of telling a queue of new objects is kept to Lambda's: the fix for a key
# outside LAMBDA_PREFIX.
_NOTIFICATION_FILTER = f"filter the bucket's notification on the prefix {LAMBDA_PREFIX}"
_RULE_FILTER = (
    f'match only keys with the prefix {LAMBDA_PREFIX} in the EventBridge rule ("detail": '
    f'{{"object": {{"key": [{{"prefix": "{LAMBDA_PREFIX}"}}]}}}})'
)


def _not_created(what: str, location: S3Object | None, fix: str) -> DecodeError:
    named = f" for {location}" if location is not None else ""
    return DecodeError(f"not a Lambda record: {what}{named}; {fix}")


def _raise_for_object(location: S3Object, prefix_fix: str) -> None:
    if not location.key.startswith(LAMBDA_PREFIX):
        raise DecodeError(
            f"not a Lambda record: {location} is not under {LAMBDA_PREFIX}, where Lambda "
            f"writes its records; {prefix_fix}"
        )
    for what, value, pattern in (
        ("bucket", location.bucket, BUCKET_NAME),
        ("region", location.region, _REGION_NAME),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise DecodeError(
                f"not a notice S3 sent: {short_repr(value)} cannot be an S3 {what}'s name, so "
                f"{location} cannot be read; the message was written or changed on its way"
            )
    raise RecordInS3(location)


def _field(doc: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        shown = "missing" if value is None else json_kind(value)
        raise DecodeError(f"{where} has no usable {name!r} ({shown})")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _version(value: Any) -> str | None:
    # "null" is S3's name for the one version of an object written while the bucket's
    # versioning was off or suspended (moto's EventBridge events give it for every object). Lambda
    # writes each key once, so that version is the object's current one: read without it, as
    # s3:GetObject allows, not by versionId=null, which S3 checks s3:GetObjectVersion for.
    text = _text(value)
    return None if text == "null" else text


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _etag(value: Any) -> str | None:
    # S3's notices give the ETag without the quotes its answers' ETag header has
    return _text(value.strip('"')) if isinstance(value, str) else None
