"""Records Lambda writes to an S3 bucket (an on-failure destination), read by the worker when
the bucket's notification reaches a polled queue: moto's S3 sends the notification to moto's
SQS, as S3 does, and the worker reads the object over HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
from structlog.testing import capture_logs
from test_bytes_in_flight import Overlap, big_records
from worker_helpers import receive_all, registry_with, routed, run_until

from lambda_destinations.store import Store
from lambda_destinations.worker import Worker
from tcp_proxy import AnswerCutter, aws_error

EVENTS = Path(__file__).parents[1] / "events"
RECORD = (EVENTS / "invocation-retries-exhausted-python.json").read_bytes()
REQUEST_ID = json.loads(RECORD)["requestContext"]["requestId"]
KEY = "aws/lambda/async/my-function/2026/12/06/2026-12-06T04.10.02-6f1c0a8e"


def reads_of(endpoint_url: str, bucket: str) -> AnswerCutter:
    """A proxy in front of moto that sees every read of an object under the bucket's
    aws/lambda/: a test sets what it does to them (refusals, truncates, trickles)."""
    return AnswerCutter(endpoint_url, f"GET /{bucket}/aws/lambda/".encode(), http=True)


def refused(proxy: AnswerCutter, times: int) -> AnswerCutter:
    """``proxy`` answering the next ``times`` reads with S3's own AccessDenied (moto's S3
    grants every read)."""
    proxy.refusals = times
    proxy.refusal = aws_error(403, "AccessDenied", "Access Denied", "rest-xml")
    return proxy


async def drain_through(
    proxy: AnswerCutter, url: str, settings_for: Any, until: Callable[[Worker], bool]
) -> tuple[Worker, list[dict[str, Any]]]:
    """Run a worker (persist, retries 0.1 s apart) whose AWS calls pass ``proxy``, until
    ``until(worker)``; the worker and its logs."""
    async with proxy.running() as proxied:
        settings = routed(
            settings_for(url, endpoint_url=proxied, retry_base=0.1, retry_max=0.2), "persist"
        )
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                await run_until(worker, lambda: until(worker))
    return worker, logs


def s3_reads(worker: Worker) -> dict[str, float | None]:
    """lambda_destinations_s3_reads_total by outcome, as /metrics has it."""
    registry = worker.metrics.registry
    name = "lambda_destinations_s3_reads_total"
    return {
        outcome: registry.get_sample_value(name, {"outcome": outcome})
        for outcome in ("read", "unreadable", "failed")
    }


async def test_a_record_lambda_wrote_to_s3_is_read_stored_and_the_test_event_acknowledged(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url, sqs
) -> None:
    # given: S3's test event (sent when the configuration was saved), and one record's notice
    url, dlq = make_queue("s3-records")
    bucket = bucket_to(url)
    s3.put_object(Bucket=bucket, Key=KEY, Body=RECORD)
    s3.put_object(Bucket=bucket, Key="uploads/not-a-record.csv", Body=b"a,b")  # not notified

    # when
    settings = routed(settings_for(url, endpoint_url=endpoint_url), "persist")
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 2)

    # then: the record is stored as read from S3, both messages acknowledged, nothing quarantined
    assert worker.stats.outcomes == {"ack": 2}
    async with Store.from_url(sqlite_url) as store:
        row = await store.get_invocation(REQUEST_ID)
        assert await store.list_quarantine() == []
    assert row is not None
    assert row.envelope == "s3"
    assert row.function_name == "my-function"
    (tested,) = [e for e in logs if e["event"] == "S3 test event acknowledged"]
    assert tested["bucket"] == bucket
    assert receive_all(sqs, url) == []
    assert dlq is not None
    assert receive_all(sqs, dlq) == []
    assert s3_reads(worker) == {"read": 1, "unreadable": 0, "failed": 0}


async def test_an_object_gone_before_it_was_read_is_quarantined_with_why(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url, sqs
) -> None:
    # given: a notice whose object a lifecycle rule (here: a person) deleted
    url, dlq = make_queue("s3-gone")
    bucket = bucket_to(url)
    s3.put_object(Bucket=bucket, Key=KEY, Body=RECORD)
    s3.delete_object(Bucket=bucket, Key=KEY)

    # when
    settings = routed(settings_for(url, endpoint_url=endpoint_url), "persist")
    async with Worker(settings) as worker:
        await run_until(worker, lambda: worker.stats.outcomes["quarantine"] >= 1)

    # then: kept with the reason, the notice in the DLQ (before: "looks like an S3 event
    # notification", and no object named)
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert row.reason.startswith(f"decode error: S3 object s3://{bucket}/{KEY} is gone (NoSuchKey)")
    assert dlq is not None
    assert s3_reads(worker) == {"read": 0, "unreadable": 1, "failed": 0}
    (dead,) = receive_all(sqs, dlq)
    assert unquote_plus(json.loads(dead["Body"])["Records"][0]["s3"]["object"]["key"]) == KEY


async def test_an_object_the_worker_may_not_read_is_retried_with_the_permission_to_allow(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url
) -> None:
    # given: S3 refuses the first read (moto's S3 grants every read, so a proxy answers it
    # with S3's own AccessDenied), then lets the second through
    url, _dlq = make_queue("s3-denied", max_receive_count=5)
    bucket = bucket_to(url)
    s3.put_object(Bucket=bucket, Key=KEY, Body=RECORD)
    proxy = refused(reads_of(endpoint_url, bucket), 1)

    # when
    worker, logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["ack"] >= 2
    )

    # then: retried once with the fix, then stored
    assert proxy.refused == 1
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert retried["reason"].startswith(f"reading S3 object s3://{bucket}/{KEY} failed: ")
    assert (
        "; check the worker's AWS credentials and that they are allowed s3:GetObject on "
        f"arn:aws:s3:::{bucket}/{KEY}, or that the object is there" in retried["reason"]
    )
    async with Store.from_url(sqlite_url) as store:
        assert await store.get_invocation(REQUEST_ID) is not None
    assert s3_reads(worker) == {"read": 1, "unreadable": 0, "failed": 1}


async def test_objects_are_read_only_as_far_as_their_bytes_fit_in_flight(
    s3, bucket_to, make_queue, settings_for, endpoint_url
) -> None:
    # given: six records of about 100 kB in S3, whose notices are a few hundred bytes each,
    # handler slots for 32, and 250 kB in flight
    url, _dlq = make_queue("s3-big")
    bucket = bucket_to(url)
    for number, body in enumerate(big_records(6, 100_000)):
        s3.put_object(Bucket=bucket, Key=f"{KEY}-{number}", Body=body.encode())
    handler = Overlap()
    settings = routed(
        settings_for(url, endpoint_url=endpoint_url, concurrency=32, bytes_in_flight=250_000),
        handler.name,
    )

    # when
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        await run_until(worker, lambda: len(handler.handled) >= 6)

    # then: each handled, never more than two at once (counted by their notices, all six ran
    # together)
    assert len(handler.handled) == 6
    assert handler.most <= 2


async def test_an_object_that_arrives_in_parts_is_read_whole(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url
) -> None:
    # given: a 200 kB record whose object comes a kilobyte at a time (a busy connection)
    url, _dlq = make_queue("s3-parts")
    bucket = bucket_to(url)
    (body,) = big_records(1, 200_000)
    s3.put_object(Bucket=bucket, Key=KEY, Body=body.encode())
    proxy = reads_of(endpoint_url, bucket)
    proxy.trickles = 1

    # when
    async with proxy.running() as proxied:
        settings = routed(settings_for(url, endpoint_url=proxied), "persist")
        async with Worker(settings) as worker:
            await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 2)

    # then: stored whole (before: the first part read was taken for the object, and
    # quarantined as "body is not JSON: Unterminated string")
    assert worker.stats.outcomes == {"ack": 2}
    async with Store.from_url(sqlite_url) as store:
        row = await store.get_invocation(json.loads(body)["requestContext"]["requestId"])
    assert row is not None
    assert row.envelope == "s3"
    assert len(json.dumps(row.request_payload)) > 200_000


async def test_an_object_whose_download_is_cut_short_is_retried(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url
) -> None:
    # given: a 200 kB record whose first download stops mid-body (the connection reset after
    # its first bytes), then passes whole
    url, _dlq = make_queue("s3-cut", max_receive_count=5)
    bucket = bucket_to(url)
    (body,) = big_records(1, 200_000)
    s3.put_object(Bucket=bucket, Key=KEY, Body=body.encode())
    proxy = reads_of(endpoint_url, bucket)
    proxy.truncates = 1

    # when
    worker, logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["ack"] >= 2
    )

    # then: retried once, its reason naming the object, then stored (before: the read's
    # aiohttp error escaped the message's task, logged as a bug with its traceback, and the
    # message was never retried with a reason nor quarantined on its last receive)
    assert proxy.cut == 1
    assert [e for e in logs if e["event"] == "message task failed"] == []
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert retried["reason"].startswith(f"reading S3 object s3://{bucket}/{KEY} failed: ")
    assert worker.stats.outcomes == {"ack": 2, "retry": 1}
    async with Store.from_url(sqlite_url) as store:
        assert await store.get_invocation(json.loads(body)["requestContext"]["requestId"])
    assert s3_reads(worker) == {"read": 1, "unreadable": 0, "failed": 1}


async def test_a_read_refused_on_every_receive_is_quarantined_on_the_last_naming_both_causes(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url, sqs
) -> None:
    # given: an object a lifecycle rule deleted, which S3 refuses to read (AccessDenied, not
    # NoSuchKey: so S3 answers for a missing key to credentials not allowed s3:ListBucket on
    # the bucket, as the templates' are not; moto's S3 grants every read, so a proxy answers)
    url, dlq = make_queue("s3-refused", max_receive_count=2)
    bucket = bucket_to(url)
    s3.put_object(Bucket=bucket, Key=KEY, Body=RECORD)
    s3.delete_object(Bucket=bucket, Key=KEY)
    proxy = refused(reads_of(endpoint_url, bucket), 10)

    # when
    worker, _logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["quarantine"] >= 1
    )

    # then: retried once, quarantined on its last receive with the permission to allow and
    # the other cause of the refusal (before: the permission alone, for an object gone)
    assert proxy.refused == 2
    assert worker.stats.outcomes == {"ack": 1, "retry": 1, "quarantine": 1}
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert row.reason.startswith(f"reading S3 object s3://{bucket}/{KEY} failed: AccessDenied")
    assert (
        "check the worker's AWS credentials and that they are allowed s3:GetObject on "
        f"arn:aws:s3:::{bucket}/{KEY}, or that the object is there: S3 refuses to read one "
        "that is not (AccessDenied, not NoSuchKey) to credentials not allowed s3:ListBucket "
        f"on arn:aws:s3:::{bucket}; still failing on receive 2" in row.reason
    ), row.reason
    assert s3_reads(worker) == {"read": 0, "unreadable": 0, "failed": 2}
    assert dlq is not None
    assert len(receive_all(sqs, dlq)) == 1


def notice_of(bucket: str, key: str, version: str | None, **found: Any) -> str:
    """S3's notification of a new object version, as AWS sends it (moto's leave versionId out);
    ``found``: the object's fields it says (its size and eTag, as S3's do)."""
    found = {"key": quote_plus(key), **found, "sequencer": "0A1B"}
    if version is not None:
        found["versionId"] = version
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-06T04:10:03.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "records",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": found,
        },
    }
    return json.dumps({"Records": [record]})


@pytest.fixture
def versioned_bucket(s3: Any) -> str:
    """A bucket with versioning on (no notification: a test sends the notices)."""
    name = f"versioned-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name  # kept, as conftest's record buckets are: see there


async def test_a_notice_naming_a_version_reads_that_version_and_a_refusal_names_its_permission(
    s3, versioned_bucket, make_queue, settings_for, endpoint_url, sqlite_url, sqs
) -> None:
    # given: a versioned bucket where the key was written again after the notified version,
    # and S3 refusing the first read (AccessDenied, as to credentials allowed s3:GetObject
    # alone: S3 checks s3:GetObjectVersion for a read that names a version)
    url, _dlq = make_queue("s3-version", max_receive_count=5)
    first = json.loads(RECORD)
    later = {**first, "requestContext": {**first["requestContext"], "requestId": "later"}}
    put = s3.put_object(Bucket=versioned_bucket, Key=KEY, Body=RECORD)
    s3.put_object(Bucket=versioned_bucket, Key=KEY, Body=json.dumps(later).encode())
    etag = put["ETag"].strip('"')  # a notice gives it without the quotes
    notice = notice_of(versioned_bucket, KEY, put["VersionId"], size=len(RECORD), eTag=etag)
    sqs.send_message(QueueUrl=url, MessageBody=notice)
    proxy = refused(reads_of(endpoint_url, versioned_bucket), 1)

    # when
    worker, logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["ack"] >= 1
    )

    # then: the refusal names the permission S3 checked (before: s3:GetObject, which the
    # templates granted, and not s3:GetObjectVersion, which they did not), and the notified
    # version is the one stored, not the later write of its key
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert (
        "; check the worker's AWS credentials and that they are allowed s3:GetObjectVersion on "
        f"arn:aws:s3:::{versioned_bucket}/{KEY}, or that the object is there" in retried["reason"]
    ), retried["reason"]
    reads = [r.split(b"\r\n", 1)[0] for r in proxy.requests if r.startswith(proxy.needle)]
    assert len(reads) == 2
    assert all(f"versionId={put['VersionId']}".encode() in r for r in reads), reads
    async with Store.from_url(sqlite_url) as store:
        assert await store.get_invocation(REQUEST_ID) is not None
        assert await store.get_invocation("later") is None
    assert s3_reads(worker) == {"read": 1, "unreadable": 0, "failed": 1}


async def test_a_read_the_objects_kms_key_refuses_names_kms_decrypt(
    s3, bucket_to, make_queue, settings_for, endpoint_url
) -> None:
    # given: an object encrypted with a KMS key the worker may not use: S3 refuses the read
    # with AccessDenied, its message naming kms:Decrypt
    url, _dlq = make_queue("s3-kms", max_receive_count=5)
    bucket = bucket_to(url)
    s3.put_object(Bucket=bucket, Key=KEY, Body=RECORD)
    proxy = reads_of(endpoint_url, bucket)
    proxy.refusals = 1
    proxy.refusal = aws_error(
        403,
        "AccessDenied",
        "User: arn:aws:sts::123456789012:assumed-role/worker/task is not authorized to perform: "
        "kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c because no "
        "identity-based policy allows the kms:Decrypt action",
        "rest-xml",
    )

    # when
    _worker, logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["ack"] >= 2
    )

    # then: the fix is the key's permission (before: s3:GetObject, which the worker has, or
    # an object gone, which it is not)
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert retried["reason"].endswith(
        "; check the worker's AWS credentials and that they are allowed kms:Decrypt on the KMS "
        f"key that encrypts s3://{bucket}/{KEY} (the bucket's default encryption key), in the "
        "key's policy or, if it lets IAM grant it, in theirs"
    ), retried["reason"]
    assert "s3:GetObject" not in retried["reason"]


# What a captive portal or a proxy answers in S3's place, 200 (a page of its own), and what
# S3's notice said of the object that the answer is not.
PORTAL_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in to the Wi-Fi</title></head>"
    b"<body><p>Accept the terms</p></body></html>"
)
PAGES = {
    # a portal's page, with none of S3's headers: no ETag
    "no-etag": ("", "no ETag, which S3 gives every object"),
    # a web server's static page, with its own ETag (nginx's: mtime-length)
    "its-own-etag": ('ETag: "6579a1b2-5a"\r\n', "ETag 6579a1b2-5a where the notice said "),
}


def page_answer(headers: str = "") -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{headers}"
        f"Content-Length: {len(PORTAL_PAGE)}\r\n\r\n"
    )
    return head.encode() + PORTAL_PAGE


@pytest.mark.parametrize("page", list(PAGES))
async def test_a_page_in_place_of_the_object_is_retried_then_quarantined_as_not_s3s_answer(
    s3, bucket_to, make_queue, settings_for, endpoint_url, sqlite_url, page: str
) -> None:
    # given: a record's notice (moto's, as S3's: the object's size and eTag), and every read
    # of the object answered 200 by a captive portal or a proxy with a page of its own
    url, _dlq = make_queue("s3-portal", max_receive_count=2)
    bucket = bucket_to(url)
    put = s3.put_object(Bucket=bucket, Key=KEY, Body=RECORD)
    headers, said = PAGES[page]
    proxy = reads_of(endpoint_url, bucket)
    proxy.answer = lambda request: page_answer(headers)

    # when
    worker, logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["quarantine"] >= 1
    )

    # then: retried as a read that failed, and quarantined on the last receive saying that
    # S3's answer is not the object (before: the page decoded as the record, quarantined at
    # once as "not a Lambda record", a permanent outcome for an endpoint's passing trouble)
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert worker.stats.outcomes == {"ack": 1, "retry": 1, "quarantine": 1}
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert row.reason.startswith(
        f"reading S3 object s3://{bucket}/{KEY} failed: S3's answer is not the object its "
        f"notice named ({len(PORTAL_PAGE)} bytes where the notice said {len(RECORD)}, {said}"
    ), row.reason
    assert "check the endpoint" in row.reason
    assert "still failing on receive 2" in row.reason
    assert retried["reason"] in row.reason
    if page == "its-own-etag":
        assert put["ETag"].strip('"') in row.reason
    assert s3_reads(worker) == {"read": 0, "unreadable": 0, "failed": 2}


async def test_a_page_in_place_of_an_object_whose_notice_gives_its_size_alone_is_retried(
    s3, versioned_bucket, make_queue, settings_for, endpoint_url, sqlite_url, sqs
) -> None:
    # given: a notice that gives the object's size and no eTag, the first read answered 200
    # by a web server's page with an ETag of its own, the next by S3
    url, _dlq = make_queue("s3-page-size", max_receive_count=5)
    s3.put_object(Bucket=versioned_bucket, Key=KEY, Body=RECORD)
    sqs.send_message(
        QueueUrl=url, MessageBody=notice_of(versioned_bucket, KEY, None, size=len(RECORD))
    )
    proxy = reads_of(endpoint_url, versioned_bucket)
    proxy.refusals = 1
    proxy.refusal = page_answer(PAGES["its-own-etag"][0])

    # when
    worker, logs = await drain_through(
        proxy, url, settings_for, lambda worker: worker.stats.outcomes["ack"] >= 1
    )

    # then: the page's byte count is not the object's: retried, then the record stored
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert (
        f"S3's answer is not the object its notice named ({len(PORTAL_PAGE)} bytes where the "
        f"notice said {len(RECORD)})" in retried["reason"]
    ), retried["reason"]
    assert worker.stats.outcomes == {"ack": 1, "retry": 1}
    async with Store.from_url(sqlite_url) as store:
        assert await store.get_invocation(REQUEST_ID) is not None
