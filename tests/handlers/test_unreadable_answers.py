"""A handler's AWS call answered 200 with what is not AWS's (a captive portal's HTML page, a
proxy's): an outage of the endpoint, retried with backoff as one, not a bug of the handler's."""

from __future__ import annotations

from typing import Any

import pytest
from handler_helpers import (
    emails_to,
    failure_record,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_address,
    unique_number,
    verify_sender,
)
from structlog.testing import capture_logs

from lambda_destinations.worker import Worker
from tcp_proxy import AnswerCutter

PORTAL = (
    b"<!DOCTYPE html><html><head><meta charset=utf-8><title>Sign in to the Wi-Fi</title>"
    b"</head><body><p>Accept the terms<br></body></html>"
)


# A portal's page that is well-formed XML too (XHTML): botocore's XML parser reads it.
XHTML_PORTAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
    b"<head><title>Sign in to the Wi-Fi</title></head><body><p>Accept the terms</p></body></html>"
)


def portal_answer(page: bytes = PORTAL) -> bytes:
    """A captive portal's answer to any request: 200, an HTML page (not XML, by default)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(page)}\r\n\r\n"
    return head.encode() + page


@pytest.mark.parametrize(
    ("in_doubt", "page"), [("resend", PORTAL), ("skip", PORTAL), ("skip", XHTML_PORTAL)]
)
async def test_an_sms_answered_by_a_captive_portal_is_retried_as_an_outage_and_sent(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str, in_doubt: str, page: bytes
) -> None:
    # given: the first SNS Publish answered with a portal's page, the next ones by SNS
    url, _ = make_queue("portal")
    number = unique_number()
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, b"Action=Publish", http=True)
    proxy.refusals = 1
    proxy.refusal = portal_answer(page)

    # when
    async with proxy.running() as proxied:
        settings = settings_for_handlers(
            proxied,
            url,
            store=sqlite_url,
            handlers={
                "oncall": {
                    "type": "sms",
                    "window": 0,
                    "phone_numbers": [number],
                    "in_doubt": in_doubt,  # the portal answered, not AWS: nothing in doubt
                }
            },
            chain=("oncall",),
        )
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                stats = await worker.run(once=True)
                transient = worker.metrics.handler_errors.labels("oncall", "transient")

    # then: tried again in process (transient, as an outage is), and sent in this delivery;
    # not an unexpected error of the handler's (a traceback, the message's receive spent)
    assert proxy.refused == 1
    assert (stats.outcomes["ack"], stats.outcomes["retry"]) == (1, 0)
    assert not [e for e in logs if "unexpected error" in e["event"] or "in doubt" in e["event"]]
    assert transient._value.get() == 0
    assert len(sms_to(endpoint_url, number)) == 1


async def test_an_email_answered_by_a_captive_portal_is_retried_as_an_outage_and_sent(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str
) -> None:
    # given: the first SES v2 SendEmail (a REST-JSON call) answered 200 with a portal's page
    url, _ = make_queue("portal-mail")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, b"/v2/email/outbound-emails", http=True)
    proxy.refusals = 1
    proxy.refusal = portal_answer()

    # when
    async with proxy.running() as proxied:
        settings = settings_for_handlers(
            proxied,
            url,
            store=sqlite_url,
            handlers={"mail": {"type": "email", "sender": sender, "to": [to], "window": 0}},
            chain=("mail",),
        )
        with capture_logs() as logs:
            async with Worker(settings) as worker:
                stats = await worker.run(once=True)

    # then: the page is no sent mail (before, botocore read it as SendEmail's empty answer:
    # the message acked, the mail lost); tried again in process and sent by SES
    assert proxy.refused == 1
    assert (stats.outcomes["ack"], stats.outcomes["retry"]) == (1, 0)
    assert not [e for e in logs if "unexpected error" in e["event"] or "in doubt" in e["event"]]
    assert len(emails_to(endpoint_url, to)) == 1
