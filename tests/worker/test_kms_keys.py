"""A queue's KMS key that refuses (disabled, pending deletion, a key policy without the
worker): moto's SQS encrypts nothing, so a proxy in front of it answers chosen requests with
SQS's own KMS error (tcp_proxy.aws_error), as SQS answers for an SSE-KMS queue."""

from __future__ import annotations

from structlog.testing import capture_logs
from worker_helpers import routed, run_until

from lambda_destinations.store import Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker import worker as worker_module
from tcp_proxy import AnswerCutter, aws_error


async def test_a_queue_whose_kms_key_is_disabled_is_said_with_the_fix_until_it_is_enabled(
    sqs, make_queue, settings_for, endpoint_url, monkeypatch
) -> None:
    monkeypatch.setattr(worker_module, "RECONNECT_BASE", 0.2)  # backoffs of 0.1 s to 1 s
    monkeypatch.setattr(worker_module, "RECONNECT_MAX_PER_POLLER", 1.0)
    # given: an SSE-KMS queue whose key is disabled for its first 3 receives
    url, _ = make_queue("kms-disabled")
    sqs.send_message(QueueUrl=url, MessageBody="not a record")
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.ReceiveMessage", http=True)
    proxy.refusals = 3
    proxy.refusal = aws_error(
        400,
        "KMS.DisabledException",
        "The request was denied due to request throttling. (Service: AWSKMS; Status Code: 400; "
        "Error Code: DisabledException)",
        "json",
    )

    # when
    async with proxy.running() as proxied:
        settings = routed(settings_for(url, endpoint_url=proxied, pollers_per_queue=1), "persist")
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 1)

    # then: one warning that names the key and what to do (before: SQS's words only, which
    # speak of throttling), and the message received once the key answered
    assert proxy.refused == 3
    (warning,) = [e for e in logs if e["event"].startswith("cannot receive from")]
    assert "KMS.DisabledException" in warning["error"]
    assert warning["fix"] == (
        "the queue's KMS key (its server-side encryption) is disabled: enable it in KMS (aws "
        "kms enable-key); its messages stay unread until then (receiving resumes by itself)"
    )
    assert worker.stats.outcomes["quarantine"] == 1


async def test_a_dlq_whose_key_refuses_the_worker_keeps_the_message_and_says_which_permission(
    sqs, make_queue, settings_for, endpoint_url, sqlite_url
) -> None:
    # given: a body no record has, and a DLQ whose KMS key policy leaves the worker out
    url, _dlq = make_queue("kms-denied-dlq")
    sqs.send_message(QueueUrl=url, MessageBody="not a record")
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.SendMessage", http=True)
    proxy.refusals = 1
    proxy.refusal = aws_error(
        400,
        "KMS.AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/ld/task is not authorized to perform: "
        "kms:GenerateDataKey (Service: AWSKMS; Status Code: 400)",
        "json",
    )

    # when
    async with proxy.running() as proxied:
        settings = routed(settings_for(url, endpoint_url=proxied), "persist")
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                await run_until(worker, lambda: worker.stats.outcomes["quarantine"] >= 1)

    # then: the store keeps the message, and the line says which permission, on what (before:
    # no fix, only KMS's words)
    assert proxy.refused == 1
    (warning,) = [e for e in logs if e["event"] == "the DLQ refused the quarantined message"]
    assert warning["fix"] == (
        "the queue's KMS key (its server-side encryption) does not let the worker's AWS "
        "credentials use it: allow the worker's AWS credentials kms:GenerateDataKey and "
        "kms:Decrypt on the key (in the key's policy, or an IAM policy)"
    )
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert row.body == "not a record"
