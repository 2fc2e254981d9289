"""Reading a record Lambda wrote to an S3 bucket, once the bucket's notification arrives.

The decoder names the object (:class:`~lambda_destinations.schemas.s3.RecordInS3`); this reads
it with ``s3:GetObject``, in the bucket's region when the notice says it. What can never be
read (the object is gone, or too big to be a record) is a :class:`DecodeError`, quarantined
with its reason; what may pass (a refusal, an outage, an answer that is not the object the
notice named: a captive portal's page) is :class:`ObjectUnread`, retried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambda_destinations.retrying import (
    CREDENTIAL_CODES,
    DENIED_CODES,
    WORKER_CREDENTIALS,
    asked_wait,
    aws_fix,
    denied_fix,
    describe_error,
    error_code,
    is_transient,
)
from lambda_destinations.schemas.errors import DecodeError

if TYPE_CHECKING:
    from lambda_destinations.aws import AwsClients
    from lambda_destinations.schemas.s3 import S3Object

# The largest object read as a record: Lambda's own largest payload (6 MB, a synchronous
# response, or a stream's batch) with room for the record around it. A record takes some 30
# times its bytes once decoded, and the object's bytes count against bytes_in_flight.
MAX_OBJECT_BYTES = 8 * 1024 * 1024
_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket"})
_CHUNK = 256 * 1024
# What S3's AccessDenied says when the object's KMS key, not S3, refused the read.
_KMS_REFUSAL = re.compile(r"kms:|\bKMS\b|ciphertext", re.IGNORECASE)


class ObjectUnread(Exception):
    """An object that could not be read this time: the message is retried."""

    def __init__(self, reason: str, *, asked: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.asked = asked  # the wait a throttled read asked for, if any


async def read_record(
    aws: AwsClients, location: S3Object, *, credentials: str = WORKER_CREDENTIALS
) -> bytes:
    """The bytes of the object at ``location``; raise :class:`DecodeError` when they can never
    be read as a record, :class:`ObjectUnread` when they could not be this time (a refusal
    names ``credentials``, whose they are: the worker's, or an operator's)."""
    if location.size is not None and location.size > MAX_OBJECT_BYTES:
        raise _too_big(location, location.size)
    params = {"Bucket": location.bucket, "Key": location.key}
    if location.version is not None:
        params["VersionId"] = location.version
    try:
        s3 = await aws.client_in(None, "s3", region=location.region)
        response = await s3.get_object(**params)
        async with response["Body"] as stream:
            _check_answer(location, response.get("ETag"), response.get("ContentLength"))
            data = await _read_whole(stream, location, response.get("ContentLength"))
    except ObjectUnread:
        raise
    except ClientError as exc:
        code = error_code(exc)
        if code in _GONE:
            raise DecodeError(
                f"S3 object {location} is gone ({code}): deleted before it was read (a "
                "lifecycle rule that expires objects within hours, or a person), so its record "
                "cannot be handled; keep objects under aws/lambda/ for a day at least"
            ) from None
        raise ObjectUnread(_unread(location, exc, credentials), asked=asked_wait(exc)) from exc
    except Exception as exc:
        # botocore's own errors, and what passes (the connection; aiohttp's ClientPayloadError,
        # which aiobotocore passes on as it is when the body ends before its length): retried
        if not (isinstance(exc, BotoCoreError) or is_transient(exc)):
            raise
        raise ObjectUnread(_unread(location, exc, credentials)) from exc
    if location.size is not None and len(data) != location.size:  # an answer with no length
        raise _not_the_object(location, [_bytes_differ(len(data), location.size)])
    return data


def _check_answer(location: S3Object, etag: object, length: object) -> None:
    """Raise :class:`ObjectUnread` when GetObject's answer, by its headers, is not the object
    S3's notice named: a page a captive portal or a proxy gave in S3's place (200), which
    would be decoded as the record, and quarantined as none. S3 gives every object's ETag;
    the notice, its ETag (a multipart object's ``…-N`` too) and size."""
    differs: list[str] = []
    if isinstance(length, int) and location.size is not None and length != location.size:
        differs.append(_bytes_differ(length, location.size))
    found = etag.strip('"') if isinstance(etag, str) else ""
    if not found:
        differs.append("no ETag, which S3 gives every object")
    elif location.etag is not None and found != location.etag:
        differs.append(f"ETag {found[:80]} where the notice said {location.etag[:80]}")
    if differs:
        raise _not_the_object(location, differs)


def _bytes_differ(size: int, said: int) -> str:
    return f"{size:,} bytes where the notice said {said:,}"


def _not_the_object(location: S3Object, differs: list[str]) -> ObjectUnread:
    return ObjectUnread(
        f"reading S3 object {location} failed: S3's answer is not the object its notice named "
        f"({', '.join(differs)}): a captive portal's or a proxy's page? check the endpoint and "
        "the network"
    )


async def _read_whole(stream: Any, location: S3Object, length: object) -> bytes:
    """The object's bytes to the end, at most MAX_OBJECT_BYTES: a read returns what has
    arrived (a part, on a busy connection), and the end, b"", checks the length S3 gave."""
    if isinstance(length, int) and length > MAX_OBJECT_BYTES:
        raise _too_big(location, length)
    parts: list[bytes] = []
    size = 0
    while part := await stream.read(_CHUNK):
        size += len(part)
        if size > MAX_OBJECT_BYTES:
            raise _too_big(location, size)
        parts.append(part)
    return b"".join(parts)


def _unread(location: S3Object, exc: BaseException, credentials: str) -> str:
    on = f"arn:aws:s3:::{location.bucket}/{location.key}"
    fix = aws_fix(exc, credentials=credentials, on=on)
    if fix and error_code(exc) in DENIED_CODES - CREDENTIAL_CODES:
        fix = _refusal_fix(location, exc, credentials, on)
    return f"reading S3 object {location} failed: {describe_error(exc)}" + (
        f"; {fix}" if fix else ""
    )


def _refusal_fix(location: S3Object, exc: BaseException, credentials: str, on: str) -> str:
    """What to allow when S3 refused to read ``location`` (AccessDenied)."""
    message = getattr(exc, "response", {}).get("Error", {}).get("Message")
    if _KMS_REFUSAL.search(str(message or "")):
        # the object's KMS key refused to decrypt it: S3 says so with AccessDenied too
        return (
            f"check {credentials} and that they are allowed kms:Decrypt on the KMS key that "
            f"encrypts {location} (the bucket's default encryption key), in the key's policy "
            "or, if it lets IAM grant it, in theirs"
        )
    # S3 checks s3:GetObjectVersion, not s3:GetObject, for a read that names a version; and
    # will not say that a key does not exist to whoever may not list the bucket: a deleted
    # object is AccessDenied to the templates' role, which may not s3:ListBucket.
    action = "s3:GetObjectVersion" if location.version is not None else None
    return denied_fix("GetObject", credentials, on, action=action) + (
        ", or that the object is there: S3 refuses to read one that is not (AccessDenied, not "
        f"NoSuchKey) to credentials not allowed s3:ListBucket on arn:aws:s3:::{location.bucket}"
    )


def _too_big(location: S3Object, size: int) -> DecodeError:
    return DecodeError(
        f"S3 object {location} holds {size:,} bytes, more than a record's "
        f"{MAX_OBJECT_BYTES:,}: it is not one Lambda wrote"
    )
