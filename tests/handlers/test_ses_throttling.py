"""SES throttling and its daily quota, which moto cannot produce: a proxy in front of it answers
SendEmail with SES v2's own error (tcp_proxy.aws_error)."""

from __future__ import annotations

from typing import Any

import pytest
from handler_helpers import (
    emails_to,
    eventually,
    failure_record,
    running_worker,
    send_records,
    settings_for_handlers,
    unique_address,
    verify_sender,
)
from structlog.testing import capture_logs

from lambda_destinations.store import Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker.queues import REASON_ATTRIBUTE
from tcp_proxy import AnswerCutter, aws_error

SEND_EMAIL = b"/v2/email/outbound-emails"


def mail_settings(proxied: str, url: str, sqlite_url: str, sender: str, to: str) -> Any:
    return settings_for_handlers(
        proxied,
        url,
        store=sqlite_url,
        handlers={"mail": {"type": "email", "sender": sender, "to": [to], "window": 0}},
        chain=("mail",),
        retry_max=30.0,
    )


async def test_a_spent_daily_quota_waits_retry_max_and_is_not_tried_again_at_once(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str
) -> None:
    # given: SES answering that the account's 24-hour sending quota is spent
    url, _ = make_queue("quota")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, SEND_EMAIL, http=True)
    proxy.refusals = 100
    proxy.refusal = aws_error(
        400, "LimitExceededException", "Daily message quota exceeded.", "rest-json"
    )

    # when
    async with proxy.running() as proxied:
        settings = mail_settings(proxied, url, sqlite_url, sender, to)
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                stats = await worker.run(once=True)

    # then: one try, not three in the next second; the message hidden for retry_max, not the
    # first backoff (1 s: before, its receives were all spent in a minute or two and SQS
    # dead-lettered it with no reason); the reason says what it is and what to do
    assert proxy.refused == 1
    assert stats.outcomes["retry"] == 1
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert retried["delay"] == 30
    assert "24-hour SES sending quota is spent" in retried["reason"]
    assert "resumes by itself" in retried["reason"]
    assert emails_to(endpoint_url, to) == []


async def test_a_throttled_send_says_so_with_the_fix_and_is_sent_once_ses_takes_it(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str
) -> None:
    # given: SES throttling the first three sends (every in-process try of the first delivery)
    url, _ = make_queue("rate")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, SEND_EMAIL, http=True)
    proxy.refusals = 3
    proxy.refusal = aws_error(
        429, "TooManyRequestsException", "Maximum sending rate exceeded.", "rest-json"
    )

    # when
    async with proxy.running() as proxied:
        settings = mail_settings(proxied, url, sqlite_url, sender, to)
        settings = settings.model_copy(update={"retry_max": 2.0})
        with capture_logs() as logs:
            async with Worker(settings) as worker, running_worker(worker):
                await eventually(lambda: worker.stats.outcomes["ack"] >= 1, within=30)
    stats = worker.stats

    # then: retried, with the throttling's fix in its reason, and sent once SES took it
    assert proxy.refused == 3
    assert (stats.outcomes["retry"], stats.outcomes["ack"]) == (1, 1)
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert "AWS throttled SendEmail" in retried["reason"]
    assert "ask AWS to raise the quota" in retried["reason"]
    assert len(emails_to(endpoint_url, to)) == 1


@pytest.mark.parametrize(
    "refusal",
    [
        (429, "TooManyRequestsException", "Maximum sending rate exceeded."),
        (403, "UnrecognizedClientException", "The security token included is invalid."),
        (400, "LimitExceededException", "Daily message quota exceeded."),
    ],
    ids=["throttled", "credentials-refused", "daily-quota-spent"],
)
async def test_a_send_still_refused_on_the_last_receive_says_nothing_tries_it_again(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str, refusal: tuple[int, str, str]
) -> None:
    # given: a queue whose first receive is its last (maxReceiveCount 1), and SES throttling
    # every send (or refusing the worker's credentials, or its daily quota spent)
    url, dlq = make_queue("last-rate", max_receive_count=1)
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, SEND_EMAIL, http=True)
    proxy.refusals = 100
    proxy.refusal = aws_error(*refusal, "rest-json")

    # when
    async with proxy.running() as proxied:
        settings = mail_settings(proxied, url, sqlite_url, sender, to)
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                stats = await worker.run(once=True)

    # then: quarantined, and each place its reason is read (the store's row, the DLQ copy's
    # attribute, the log line) says nothing tries it again and how to send it back (before,
    # "the call is tried again" / "it is tried again with backoff": nothing did)
    assert stats.outcomes["quarantine"] == 1
    (copy,) = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    (logged,) = [e["reason"] for e in logs if e["event"] == "message quarantined"]
    for reason in (row.reason, copy["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"], logged):
        assert refusal[1] in reason
        assert "tried again" not in reason
        assert "nothing tries it again" in reason
        assert "`lambda-destinations quarantine resend`" in reason
        assert "`dlq redrive`" in reason
    assert emails_to(endpoint_url, to) == []
