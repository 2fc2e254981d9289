"""`dlq redrive --reinvoke` of S3's notices: a dead-lettered notice names the object Lambda wrote
a failure record to (an S3 bucket as the on-failure destination); the run reads the object with
the operator's credentials and re-invokes its record. The bucket, its notification and the DLQ
are on the Lambda moto server (moto's S3 sends the notice to moto's SQS, as S3 does), and the
CLI runs as a user runs it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from ops_helpers import cli, cli_through, count_messages, failure_body

from tcp_proxy import AnswerCutter, aws_error

KEY = "aws/lambda/async/{name}/2026/12/06/2026-12-06T04.10.02-{n}"
REINVOKE = ("dlq", "redrive", "--reinvoke", "--yes", "--json")


@pytest.fixture
def endpoint_url(lambda_endpoint: Any) -> str:
    """The Lambda moto server: the shared ``s3``, ``sqs`` and ``bucket_to`` fixtures on it,
    where the functions the records name are."""
    return str(lambda_endpoint.url)


@pytest.fixture
def notices(lambda_endpoint, lambda_env, bucket_to, s3):  # type: ignore[no-untyped-def]
    """A function, and a DLQ that a bucket notifies (S3's test event is in it already); yields
    (DLQ URL, bucket, put), ``put(n)`` writing failure record ``n`` of the function as Lambda
    writes it: its key and record."""
    name = f"s3-reinvoke-{uuid.uuid4().hex[:8]}"
    lambda_endpoint.create_function(name)
    dlq = lambda_endpoint.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    bucket = bucket_to(dlq)
    assert cli("migrate", env=lambda_env).returncode == 0

    def put(n: int) -> tuple[str, dict[str, Any]]:
        body, record = failure_body(n, function=name, payload={"order": n})
        key = KEY.format(name=name, n=n)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        return key, record

    try:
        yield dlq, bucket, put
    finally:
        lambda_endpoint.sqs.delete_queue(QueueUrl=dlq)


def _whys(report: dict[str, Any]) -> list[str]:
    return sorted(m["why"] for m in report["messages"] if m["why"] is not None)


def test_a_notice_is_reinvoked_as_the_record_its_object_holds(
    lambda_endpoint, lambda_env, notices, s3
) -> None:
    # given: a notice whose object holds a failure record, one whose object was deleted, and
    # S3's test event
    dlq, bucket, put = notices
    key, record = put(1)
    gone, _ = put(2)
    s3.delete_object(Bucket=bucket, Key=gone)
    lambda_endpoint.start_recording()

    # when: a dry run, then the run
    dry = cli(*REINVOKE[:3], dlq, "--dry-run", "--json", env=lambda_env)
    result = cli(*REINVOKE[:3], dlq, *REINVOKE[3:], env=lambda_env)

    # then: the record's function invoked once with its payload (before: nothing invoked, the
    # notice left as "not a Lambda record"), its notice deleted; the dry run read it too
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["would_invoke"] == 1
    assert result.returncode == 0, result.stderr
    assert lambda_endpoint.invocations() == [
        (record["requestContext"]["functionArn"], record["requestPayload"])
    ]
    report = json.loads(result.stdout)
    assert (report["invoked"], report["deleted"], report["unread"]) == (1, 1, 0)
    (invoked,) = [m for m in report["messages"] if m["state"] == "invoked"]
    assert invoked["request_id"] == record["requestContext"]["requestId"]
    # the gone object and the test event stay, each saying why
    assert _whys(report) == [
        f"its record in S3 cannot be read (S3 object s3://{bucket}/{gone} is gone (NoSuchKey): "
        "deleted before it was read (a lifecycle rule that expires objects within hours, or a "
        "person), so its record cannot be handled; keep objects under aws/lambda/ for a day at "
        "least)",
        f"not a Lambda record (S3's test event for bucket '{bucket}', sent when its "
        "notification configuration was saved: nothing to handle)",
    ]
    assert count_messages(lambda_endpoint.sqs, dlq) == 2

    # and the ledger has it: the same record notified again is deleted, not invoked again
    lambda_endpoint.start_recording()
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())
    again = cli(*REINVOKE[:3], dlq, *REINVOKE[3:], env=lambda_env)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (second["invoked"], second["deleted"]) == (0, 1)
    assert [m["skip"] for m in second["messages"] if m["why"] is None] == ["already-replayed"]
    assert lambda_endpoint.invocations() == []


async def test_a_refused_read_leaves_the_notice_with_the_permission_and_the_run_goes_on(
    lambda_endpoint, lambda_env, notices
) -> None:
    # given: two notices; S3 refuses the first read (moto's S3 grants every read, so a proxy
    # answers it with S3's own AccessDenied) and lets the second through
    dlq, bucket, put = notices
    records = dict([put(1), put(2)])
    proxy = AnswerCutter(lambda_endpoint.url, f"GET /{bucket}/aws/lambda/".encode(), http=True)
    proxy.refusals = 1
    proxy.refusal = aws_error(403, "AccessDenied", "Access Denied", "rest-xml")
    lambda_endpoint.start_recording()

    # when
    code, out, err, _ = await cli_through(proxy, lambda_env, *REINVOKE[:3], dlq, *REINVOKE[3:])

    # then: the other record invoked; the refused one stays, naming the permission to allow,
    # and the run exits 1 (before: neither invoked, exit 0)
    assert proxy.refused == 1
    assert code == 1, err.decode()
    assert "Traceback" not in err.decode()
    report = json.loads(out)
    assert (report["invoked"], report["deleted"], report["unread"]) == (1, 1, 1)
    (refused,) = [
        m["why"] for m in report["messages"] if m["why"] and "S3 was not read" in m["why"]
    ]
    key = refused.split(f"s3://{bucket}/", 1)[1].split(" ", 1)[0]
    assert key in records
    assert refused.startswith(f"its record in S3 was not read (reading S3 object s3://{bucket}/")
    assert (
        "check the AWS credentials and that they are allowed s3:GetObject on "
        f"arn:aws:s3:::{bucket}/{key}, or that the object is there: " in refused
    )
    assert refused.endswith(f"s3:ListBucket on arn:aws:s3:::{bucket}); it stays for the next run")
    (other,) = set(records) - {key}
    assert lambda_endpoint.invocations() == [
        (records[other]["requestContext"]["functionArn"], records[other]["requestPayload"])
    ]
    assert count_messages(lambda_endpoint.sqs, dlq) == 2  # the refused notice, the test event


async def test_an_unreachable_s3_stops_the_run_as_an_unreachable_lambda_does(
    lambda_endpoint, lambda_env, notices
) -> None:
    # given: a notice, and an S3 whose every read loses its connection before the answer
    dlq, bucket, put = notices
    key, _ = put(1)
    proxy = AnswerCutter(lambda_endpoint.url, f"GET /{bucket}/aws/lambda/".encode(), http=True)
    proxy.cuts = 1000
    lambda_endpoint.start_recording()

    # when
    code, out, err, _ = await cli_through(proxy, lambda_env, *REINVOKE[:3], dlq, *REINVOKE[3:])

    # then: the report, the notice saying why it stays, then one error line, exit 4
    stderr = err.decode()
    assert code == 4, stderr
    assert "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("error: cannot reach")
    whys = [m["why"] for m in json.loads(out)["messages"]]
    assert any(
        why.startswith(f"its record in S3 was not read (reading S3 object s3://{bucket}/{key}")
        for why in whys
        if why
    ), whys
    assert lambda_endpoint.invocations() == []
    assert count_messages(lambda_endpoint.sqs, dlq) == 2
