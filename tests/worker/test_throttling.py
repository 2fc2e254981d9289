"""AWS throttling and quotas, which moto cannot produce: a proxy in front of it answers chosen
requests with AWS's own error (tcp_proxy.aws_error), as SQS, SES and SNS answer at scale."""

from __future__ import annotations

from structlog.testing import capture_logs
from worker_helpers import receive_all, routed, run_until

from lambda_destinations.store import Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker import worker as worker_module
from tcp_proxy import AnswerCutter, aws_error


async def test_a_dlq_send_kms_throttles_is_tried_again_not_given_up(
    sqs, make_queue, settings_for, endpoint_url, sqlite_url
) -> None:
    # given: a body no record has, and a DLQ (SSE-KMS) whose first send KMS throttles
    url, dlq = make_queue("kms-dlq")
    sqs.send_message(QueueUrl=url, MessageBody="not a record")
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.SendMessage", http=True)
    proxy.refusals = 1
    proxy.refusal = aws_error(
        400, "KMS.ThrottlingException", "Rate exceeded (Service: Kms, Status Code: 400)", "json"
    )

    # when
    async with proxy.running() as proxied:
        settings = routed(settings_for(url, endpoint_url=proxied), "persist")
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                await run_until(worker, lambda: worker.stats.outcomes["quarantine"] >= 1)

    # then: the throttled send was retried with the message, and the DLQ has its copy with the
    # reason (before, the throttling was taken for a refusal: the copy was given up, the
    # message deleted, the store's copy the only one)
    assert proxy.refused == 1
    assert worker.stats.outcomes["retry"] == 1
    (copy,) = receive_all(sqs, dlq)
    assert copy["Body"] == "not a record"
    assert "the DLQ refused the quarantined message" not in [e["event"] for e in logs]
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert row.body == "not a record"


async def test_a_queue_at_its_in_flight_limit_is_said_once_with_the_fix_and_backed_off(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    monkeypatch.setattr(worker_module, "RECONNECT_BASE", 0.2)  # backoffs of 0.1 s to 1 s
    monkeypatch.setattr(worker_module, "RECONNECT_MAX_PER_POLLER", 1.0)
    # given: a queue whose receives SQS answers OverLimit (120,000 messages in flight), 6 times
    url, _ = make_queue("over-limit")
    sqs.send_message(QueueUrl=url, MessageBody="not a record")
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.ReceiveMessage", http=True)
    proxy.refusals = 6
    proxy.refusal = aws_error(
        403,
        "OverLimit",
        "The maximum number of in flight messages is reached (Service: Sqs, Status Code: 403)",
        "json",
    )

    # when
    async with proxy.running() as proxied:
        settings = routed(settings_for(url, endpoint_url=proxied, pollers_per_queue=1), "persist")
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 1)

    # then: one warning, with the fix (before, none: only SQS's message); the receives backed
    # off (0.1 s, 0.2 s, ... apart: none followed the last at once); it received by itself
    # once SQS did answer
    assert proxy.refused == 6
    (warning,) = [e for e in logs if e["event"].startswith("cannot receive from")]
    assert "OverLimit" in warning["error"]
    assert "120,000" in warning["fix"]
    assert "receiving resumes by itself" in warning["fix"]
    gaps = [b - a for a, b in zip(proxy.seen[:6], proxy.seen[1:7], strict=True)]
    assert min(gaps) >= 0.1, gaps
    assert [e["event"] for e in logs].count("receiving again") == 1
