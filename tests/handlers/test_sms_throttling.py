"""SNS throttling an SMS Publish, which moto cannot produce: a proxy in front of it answers with
SNS's own error (tcp_proxy.aws_error)."""

from __future__ import annotations

from typing import Any

from handler_helpers import (
    eventually,
    failure_record,
    running_worker,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_number,
)
from structlog.testing import capture_logs

from lambda_destinations.worker import Worker
from tcp_proxy import AnswerCutter, aws_error


async def test_sns_throttled_answer_says_so_with_the_fix_and_the_text_is_sent_once(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str
) -> None:
    # given: SNS answering its own throttling code, Throttled (HTTP 429), to every in-process
    # try of the first delivery's Publish
    url, _ = make_queue("sns-throttled")
    number = unique_number()
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, b"Action=Publish", http=True)
    proxy.refusals = 3
    proxy.refusal = aws_error(429, "Throttled", "Throttled request.", "query")

    # when
    async with proxy.running() as proxied:
        settings = settings_for_handlers(
            proxied,
            url,
            store=sqlite_url,
            handlers={"oncall": {"type": "sms", "phone_numbers": [number], "window": 0}},
            chain=("oncall",),
        )
        settings = settings.model_copy(update={"retry_max": 2.0})
        with capture_logs() as logs:
            async with Worker(settings) as worker, running_worker(worker):
                await eventually(lambda: worker.stats.outcomes["ack"] >= 1, within=30)

    # then: retried with the throttling's fix in its reason (before: SNS's words alone, as
    # Throttled was not known for throttling), and texted once SNS took it
    assert proxy.refused == 3
    assert (worker.stats.outcomes["retry"], worker.stats.outcomes["ack"]) == (1, 1)
    (retried,) = [e for e in logs if e["event"] == "message will be retried"]
    assert "AWS throttled Publish" in retried["reason"], retried["reason"]
    assert "ask AWS to raise the quota" in retried["reason"]
    assert len(sms_to(endpoint_url, number)) == 1
