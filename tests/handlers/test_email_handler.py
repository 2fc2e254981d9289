"""The email handler through the worker: SES v2 against moto, SMTP against a real aiosmtpd."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from handler_helpers import (
    SmtpServer,
    digest_ended,
    drain_until_acked,
    emails_to,
    eventually,
    failure_record,
    running,
    running_worker,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_address,
    unique_number,
    verify_sender,
)
from structlog.testing import capture_logs

from certificates import self_signed_certificate
from lambda_destinations._text import json_cut, json_lines
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers._subject import fold_subject
from lambda_destinations.handlers.email import address, bare_address, build
from lambda_destinations.operations.handler_checks import check_handlers
from lambda_destinations.schemas import decode
from lambda_destinations.store import JobState, RunState, Store
from lambda_destinations.worker import Stats, Worker
from processes import ENTRY, free_port


def mail_settings(endpoint_url: str, url: str, *, store: str, **options: Any) -> Settings:
    """A worker on ``url`` whose route is persist then an email handler called oncall-mail."""
    overrides = options.pop("overrides", {})
    return settings_for_handlers(
        endpoint_url,
        url,
        store=store,
        handlers={"oncall-mail": {"type": "email", "window": 0, **options}},
        chain=("persist", "oncall-mail"),
        **overrides,
    )


def smtp_settings(
    endpoint_url: str, url: str, *, store: str, port: int, **options: Any
) -> Settings:
    """:func:`mail_settings` over SMTP to 127.0.0.1:``port``, in the clear, from alerts@ to
    oncall@example.com unless ``options`` say otherwise."""
    defaults = {"host": "127.0.0.1", "security": "none", "to": ["oncall@example.com"]}
    return mail_settings(
        endpoint_url,
        url,
        store=store,
        transport="smtp",
        port=port,
        **{"from": "alerts@example.com", **defaults, **options},
    )


# -- SES ----------------------------------------------------------------------------------------


async def test_ses_sends_what_failed_and_the_start_of_the_trace_without_payloads(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given
    url, _ = make_queue("ses")
    sender, to, cc = unique_address("alerts"), unique_address(), unique_address("team")
    verify_sender(endpoint_url, sender)
    record = failure_record("billing", error_type="KeyError", message="'customer_id'")
    record["requestPayload"] = {"cardNumber": "4111-1111"}
    send_records(sqs, url, [record])
    settings = mail_settings(
        endpoint_url, url, store=sqlite_url, **{"from": f"Alerts <{sender}>", "to": to, "cc": [cc]}
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then
    assert stats.outcomes["ack"] == 1
    (mail,) = emails_to(endpoint_url, to)
    assert mail.source == f"Alerts <{sender}>"
    assert mail.destinations == {"ToAddresses": [to], "CcAddresses": [cc]}
    assert mail.subject == (
        "[lambda-destinations] billing failed (RetriesExhausted): KeyError: 'customer_id'"
    )
    assert "Error type:    KeyError" in mail.body
    assert "Error message: 'customer_id'" in mail.body
    assert f"Request id:    {record['requestContext']['requestId']}" in mail.body
    assert 'File "/var/task/app.py", line 42, in handler' in mail.body
    assert "4111" not in mail.body  # payloads only when configured


async def test_ses_adds_payloads_when_configured_and_escapes_html(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("ses-html")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    record = failure_record(message="<b>bad</b> order", payload={"orderId": "o-9"})
    send_records(sqs, url, [record])
    settings = mail_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        include_payloads=True,
        html="<h1>{function_name}</h1><p>{error_message}</p>",
        **{"from": sender, "to": [to]},
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    (mail,) = emails_to(endpoint_url, to)  # moto keeps the HTML part when there is one
    assert mail.body.startswith("<h1>orders-api</h1><p>&lt;b&gt;bad&lt;/b&gt; order</p>")
    assert "Request payload:" in mail.body
    assert "&quot;orderId&quot;: &quot;o-9&quot;" in mail.body


# What renders a Subject blank: a missing value, or a value of control and format characters
# alone (the Subject shows them as spaces and U+FFFD: an empty-looking subject line; it went out
# so). A text shows them as U+FFFD, which a reader sees.
BLANK_VALUES = {"missing": "{payload.nope}", "controls alone": "{payload.note}"}


@pytest.mark.parametrize("case", BLANK_VALUES)
async def test_ses_a_subject_and_text_that_render_blank_send_the_defaults(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, case: str
) -> None:
    url, _ = make_queue(f"ses-blank-{len(case)}")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    payload = {"note": "\x00\x1b \u202e"}
    record = failure_record("billing", error_type="KeyError", message="'id'", payload=payload)
    send_records(sqs, url, [record])
    settings = mail_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        subject=BLANK_VALUES[case],
        text="{payload.nope}\n",
        **{"from": sender, "to": [to]},
    )

    with capture_logs() as logs:
        async with Worker(settings) as worker:
            await worker.run(once=True)

    (mail,) = emails_to(endpoint_url, to)
    assert mail.subject == "[lambda-destinations] billing failed (RetriesExhausted): KeyError: 'id'"
    assert mail.body.startswith("billing failed (RetriesExhausted): KeyError: 'id'\n\n")
    assert "Error type:    KeyError" in mail.body
    warned = {log["setting"] for log in logs if log["event"].startswith("template rendered blank")}
    assert warned == {"handlers.oncall-mail.subject", "handlers.oncall-mail.text"}


async def test_smtp_a_blank_subject_sends_the_default_and_a_blank_html_is_left_out(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    url, _ = make_queue("smtp-blank")
    send_records(sqs, url, [failure_record("billing", error_type="KeyError", message="'id'")])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        subject="{response.nope}",
        html="<p>{payload.nope}</p>&nbsp;<br>",
    )

    with capture_logs() as logs:
        async with Worker(settings) as worker:
            await worker.run(once=True)

    (message,) = smtp_server.messages
    assert message["Subject"] == (
        "[lambda-destinations] billing failed (RetriesExhausted): KeyError: 'id'"
    )
    # the text alone (before: an empty HTML part, which a reader shows in the text's place)
    assert message.get_content_type() == "text/plain"
    assert "KeyError" in message.get_content()
    warned = {log["setting"] for log in logs if log["event"].startswith("template rendered blank")}
    assert warned == {"handlers.oncall-mail.subject", "handlers.oncall-mail.html"}


async def test_ses_gets_ascii_addresses_an_idn_in_punycode_and_a_name_encoded(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: SES takes 7-bit ASCII addresses only: a domain in Punycode, a name encoded
    url, _ = make_queue("ses-idn")
    unique = uuid.uuid4().hex[:8]
    verify_sender(endpoint_url, f"alerts-{unique}@xn--bcher-kva.example")
    send_records(sqs, url, [failure_record()])
    settings = mail_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        **{"from": f"Équipe alertes <alerts-{unique}@bücher.example>"},
        to=[f"oncall-{unique}@bücher.example"],
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then
    assert stats.outcomes["ack"] == 1
    (mail,) = emails_to(endpoint_url, f"oncall-{unique}@xn--bcher-kva.example")
    assert mail.source.isascii()
    name, sender = email.utils.parseaddr(mail.source)
    assert str(make_header(decode_header(name))) == "Équipe alertes"
    assert sender == f"alerts-{unique}@xn--bcher-kva.example"


async def test_an_unverified_sender_quarantines_the_message_with_ses_reason(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("ses-unverified")
    to = unique_address()
    send_records(sqs, url, [failure_record()])
    settings = mail_settings(
        endpoint_url, url, store=sqlite_url, **{"from": unique_address("nobody"), "to": [to]}
    )

    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    assert stats.outcomes["quarantine"] == 1
    assert emails_to(endpoint_url, to) == []
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    # SES's refusal and what to do, without botocore's "(reached max retries: 0)", which read
    # as "never retried"
    assert row.reason.startswith(
        "handler oncall-mail: MessageRejected: An error occurred (MessageRejected) when calling "
        "the SendEmail operation: Email address not verified "
    ), row.reason
    assert row.reason.endswith(
        ": verify the sender's address or domain in SES, in the worker's region (in the SES "
        "sandbox, each recipient too); `lambda-destinations doctor` names what is missing"
    ), row.reason


# -- SMTP ---------------------------------------------------------------------------------------


async def test_smtp_delivers_to_a_real_server_with_headers_and_bcc(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    url, _ = make_queue("smtp")
    record = failure_record("thumbnailer", error_type="MemoryError", message="out of memory")
    send_records(sqs, url, [record])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        cc=["team@example.com"],
        bcc=["audit@example.com", "On call <oncall@example.com>"],  # in to too
        subject="[{function_name}] {error_type}: {error_message}",
        **{"from": "Lambda alerts <alerts@example.com>"},
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    (message,) = smtp_server.messages
    assert message["From"] == "Lambda alerts <alerts@example.com>"
    assert message["To"] == "oncall@example.com"
    assert message["Cc"] == "team@example.com"
    assert message["Bcc"] is None
    assert message["Subject"] == "[thumbnailer] MemoryError: out of memory"
    assert re.fullmatch(r"<[0-9a-f]{40}@example\.com>", message["Message-ID"])
    body = message.get_content()
    assert "Error type:    MemoryError" in body
    ((envelope_from, recipients),) = smtp_server.mailbox.envelopes
    assert envelope_from == "alerts@example.com"
    # each once: oncall@ in to and bcc was two RCPT TO, two copies from a server that
    # delivers per RCPT TO
    assert sorted(recipients) == ["audit@example.com", "oncall@example.com", "team@example.com"]


async def test_smtp_delivers_to_a_dotless_domain_and_reads_an_ideographic_full_stop(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: a relay on a private network, whose mailboxes have no dot in their domain, and a
    # domain written with IDNA's ideographic full stop (U+3002) between its labels
    url, _ = make_queue("smtp-dotless")
    send_records(sqs, url, [failure_record()])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        to=["root@localhost", "Ops <ops@mailhost>"],
        cc=["team@example\u3002com"],
        **{"from": "alerts@mailhost"},
    )

    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: delivered (before: each refused at start, "its domain is not a host name"), the
    # full stop read as the '.' it is
    assert stats.outcomes["ack"] == 1
    (message,) = smtp_server.messages
    assert message["To"] == "root@localhost, Ops <ops@mailhost>"
    assert message["Cc"] == "team@example.com"
    ((envelope_from, recipients),) = smtp_server.mailbox.envelopes
    assert envelope_from == "alerts@mailhost"
    assert recipients == ["root@localhost", "ops@mailhost", "team@example.com"]


# Subjects longer than a header line, which the message folds: each must arrive as it was.
LONG_SUBJECTS = (
    # ASCII: words, and one longer than a line (a URL)
    "[lambda-destinations] orders-api failed: ConnectionError: "
    "https://payments.internal.example.com/v1/authorize/orders/12345/attempts/3/retry",
    # non-ASCII words among ASCII ones, and characters of three and four bytes
    "orders-api ha fallado: ValueError: importe no válido — ñandú über façade, 注文の処理に失敗"
    "しました 😀 after retries exhausted (RetriesExhausted)",
)


async def test_smtp_long_subjects_arrive_exactly_as_rendered(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: records whose subjects are over 100 characters
    url, _ = make_queue("smtp-long-subject")
    assert all(len(subject) > 100 for subject in LONG_SUBJECTS)
    send_records(sqs, url, [failure_record(message=subject) for subject in LONG_SUBJECTS])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        subject="{error_message}",
    )

    # when
    async with Worker(settings) as worker:
        await worker.run(once=True)

    # then: unfolded and decoded (as the email package's RFC 5322 / 2047 parser does), each
    # subject is the rendered one, exactly
    assert len(smtp_server.messages) == 2
    assert sorted(m["Subject"] for m in smtp_server.messages) == sorted(LONG_SUBJECTS)


# NUL, ESC (a terminal colour), BEL, DEL, a C1 CSI, NEL and CR LF in what a function wrote,
# and a right-to-left override and isolate, which read the rest of the line backwards
CONTROL_MESSAGE = (
    "disk\x00full \x1b[31mred\x1b[0m bell\x07 del\x7fcsi\x9b end\x85\r\nnext "
    "a\u202egpj.exe b\u2067c"
)
# Each control is a space, and a run of them with spaces is one: no control reaches a Subject;
# a bidi control is U+FFFD, as in the mail's text (before, they reached the Subject as sent).
CONTROL_SUBJECT = "disk full [31mred [0m bell del csi end next a\ufffdgpj.exe b\ufffdc"


@pytest.mark.parametrize("transport", ["ses", "smtp"])
async def test_control_characters_never_reach_the_subject(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
    transport: str,
) -> None:
    # given: a record whose error message, the subject, has control characters
    url, _ = make_queue(f"{transport}-control-subject")
    send_records(sqs, url, [failure_record(message=CONTROL_MESSAGE)])
    sender, to = unique_address("alerts"), unique_address()
    if transport == "ses":
        verify_sender(endpoint_url, sender)
        settings = mail_settings(
            endpoint_url,
            url,
            store=sqlite_url,
            subject="{error_message}",
            to=to,
            **{"from": sender},
        )
    else:
        settings = smtp_settings(
            endpoint_url, url, store=sqlite_url, port=smtp_server.port, subject="{error_message}"
        )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: what SES (moto) or the SMTP server received
    assert stats.outcomes["ack"] == 1
    if transport == "ses":
        (mail,) = emails_to(endpoint_url, to)
        subject = mail.subject
    else:
        (message,) = smtp_server.messages
        subject = str(message["Subject"])
    assert subject == CONTROL_SUBJECT


# What a function may write in an error message: NUL, an ESC sequence (a terminal colour),
# backspace, BEL, DEL, a C1 CSI, a tab, every kind of line end (CR LF, lone CR and LF, NEL, form
# feed, vertical tab, U+2028, U+2029), a bidi override and an isolate, a left-to-right mark, a
# lone surrogate (JSON may spell one), and an SMTP end of data with a command after it.
BODY_MESSAGE = (
    "nul\x00 esc\x1b[31mred\x1b[0m bs\x08 bel\x07 del\x7f csi\x9b tab\there\r\n"
    "crlf\rcr\nlf\x85nel\x0cff\x0bvt\u2028ls\u2029ps\n"
    "rlo\u202eexe.txt\u202c lri\u2066x\u2069 lrm\u200e lone\ud800\r\n"
    ".\r\nMAIL FROM:<x@evil.test>\r\nlast"
)
# Line ends are line feeds, tabs and the mark stay, every other control is U+FFFD.
BODY_TEXT = (
    "nul\ufffd esc\ufffd[31mred\ufffd[0m bs\ufffd bel\ufffd del\ufffd csi\ufffd tab\there\n"
    "crlf\ncr\nlf\nnel\nff\nvt\nls\nps\n"
    "rlo\ufffdexe.txt\ufffd lri\ufffdx\ufffd lrm\u200e lone\ufffd\n"
    ".\nMAIL FROM:<x@evil.test>\nlast"
)
# What no line of a body may hold but tab and the line ends (the mark U+200E may stay).
UNREADABLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


async def test_smtp_the_body_gets_the_values_as_lines_without_control_characters(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: a record whose error message has control characters and an SMTP end of data
    url, _ = make_queue("smtp-control-body")
    send_records(sqs, url, [failure_record(message=BODY_MESSAGE)])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        text="Error:\t{error_message}\nEnd\n",
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: one message (a lone surrogate no longer fails the send), the data whole (the
    # ".\r\n" line did not end it), and no control character in the bytes received (8bit:
    # the body's bytes are its text's)
    assert stats.outcomes["ack"] == 1
    (message,) = smtp_server.messages
    assert message["Content-Transfer-Encoding"] == "8bit"
    (raw,) = smtp_server.mailbox.raw
    assert raw.endswith(b"\r\n.\r\nMAIL FROM:<x@evil.test>\r\nlast\r\nEnd\r\n")
    received = raw.decode()
    assert not UNREADABLE.search(received)
    assert "\r" not in received.replace("\r\n", "")
    assert message.get_content().replace("\r\n", "\n") == f"Error:\t{BODY_TEXT}\nEnd\n"


async def test_smtp_a_line_longer_than_998_is_sent_in_lines_of_78_and_arrives_whole(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    url, _ = make_queue("smtp-long-line")
    send_records(sqs, url, [failure_record(message="L" * 2000)])
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=smtp_server.port, text="{error_message}\n"
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    # quoted-printable: soft line breaks, which the reader removes
    (message,) = smtp_server.messages
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert max(len(line) for line in smtp_server.mailbox.raw[0].split(b"\r\n")) <= 78
    assert message.get_content().replace("\r\n", "\n") == "L" * 2000 + "\n"


async def test_ses_the_body_gets_the_values_as_lines_without_control_characters(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given
    url, _ = make_queue("ses-control-body")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    send_records(sqs, url, [failure_record(message=BODY_MESSAGE)])
    settings = mail_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        text="Error:\t{error_message}\nEnd\n",
        **{"from": sender, "to": [to]},
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: the text SES was given
    assert stats.outcomes["ack"] == 1
    (mail,) = emails_to(endpoint_url, to)
    assert mail.body == f"Error:\t{BODY_TEXT}\nEnd\n"


async def test_ses_the_html_part_and_payloads_get_values_escaped_and_without_controls(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: an error message with markup, NUL and an override; a payload with C1, U+2028, an
    # override and a lone surrogate (JSON escapes the C0 controls itself)
    url, _ = make_queue("ses-control-html")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    payload = {"note": "a\x85b\u2028c\u202ed\ud800", "nul": "x\x00"}
    send_records(sqs, url, [failure_record(message="<b>bad</b>\x00\u202eorder", payload=payload)])
    settings = mail_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        include_payloads=True,
        html="<p>{error_message}</p>",
        **{"from": sender, "to": [to]},
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: moto keeps the HTML part
    assert stats.outcomes["ack"] == 1
    (mail,) = emails_to(endpoint_url, to)
    assert mail.body.startswith("<p>&lt;b&gt;bad&lt;/b&gt;\ufffd\ufffdorder</p>")
    assert "&quot;note&quot;: &quot;a\\u0085b\\u2028c\\u202ed\\ud800&quot;" in mail.body
    assert "&quot;nul&quot;: &quot;x\\u0000&quot;" in mail.body
    assert not UNREADABLE.search(mail.body)


async def test_ses_a_digest_gets_the_error_type_without_control_characters(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: records of an error type with an ESC sequence and an override, one sent at once
    url, _ = make_queue("ses-control-digest")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    error_type = "Key\u202eError\x1b[0m"
    send_records(sqs, url, [failure_record(error_type=error_type) for _ in range(3)])
    settings = settings_for_handlers(
        endpoint_url,
        url,
        store=sqlite_url,
        handlers={
            "oncall-mail": {
                "type": "email",
                "from": sender,
                "to": [to],
                "window": "3s",
                "send_first": 1,
                "digest_text": "{count} more of {error_type}\n",
            }
        },
        chain=("persist", "oncall-mail"),
    )

    # when
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: len(emails_to(endpoint_url, to)) >= 2, within=30)

    # then
    digest = emails_to(endpoint_url, to)[1]
    assert digest.body == "2 more of Key\ufffdError\ufffd[0m\n"


# What JSON leaves raw in a string and a mail client breaks a line at (U+2028, U+2029, NEL),
# acts on (DEL, a C1 CSI) or reorders text by (the bidi controls), and lone surrogates.
ESCAPED_PAYLOAD = {
    "lines": "a\u2028b\u2029c\x85d",
    "controls": "del\x7f csi\x9b[31m c1\x80\x9f nul\x00",
    "bidi": "\u202aA\u202bB\u202cC\u202dD\u202eE\u2066F\u2067G\u2068H\u2069I\u200eJ\u200fK\u061cL",
    "lone": ["x\ud800y", "\udfff", "\udc00\ud83d"],
    "kept": "tab\t é 😀 \u200d",
}
# None of them may be in the mail as itself.
JSON_UNSAFE = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


async def test_smtp_a_payload_is_json_with_line_breaks_and_controls_escaped_that_reads_back(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given
    url, _ = make_queue("smtp-payload-escapes")
    send_records(sqs, url, [failure_record(payload=ESCAPED_PAYLOAD)])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        include_payloads=True,
        text="{function_name}\n",
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: the section is JSON of the payload, each of those characters as an escape
    assert stats.outcomes["ack"] == 1
    (message,) = smtp_server.messages
    body = message.get_content().replace("\r\n", "\n")
    section = body.split("Request payload:\n", 1)[1].split("\n\nResponse payload:", 1)[0]
    assert json.loads(section) == ESCAPED_PAYLOAD
    assert '"lines": "a\\u2028b\\u2029c\\u0085d"' in section
    assert '"controls": "del\\u007f csi\\u009b[31m c1\\u0080\\u009f nul\\u0000"' in section
    assert '"x\\ud800y",\n    "\\udfff",\n    "\\udc00\\ud83d"' in section
    assert '"kept": "tab\\t é 😀 \u200d"' in section
    assert not JSON_UNSAFE.search(smtp_server.mailbox.raw[0].decode())


@pytest.mark.parametrize("limit", [101, 103, 105])
async def test_ses_a_payload_cut_at_its_limit_never_ends_inside_an_escape(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str, limit: int
) -> None:
    # given: a payload whose JSON is 10 characters, then a 6-character escape after another
    # (U+2028's), so each limit falls inside the 16th
    url, _ = make_queue(f"ses-payload-cut-{limit}")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    payload = {"s": "\u2028" * 100}
    send_records(sqs, url, [failure_record(payload=payload)])
    settings = mail_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        include_payloads=True,
        payload_limit=limit,
        **{"from": sender, "to": [to]},
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: cut before that escape, and the line says where
    assert stats.outcomes["ack"] == 1
    (mail,) = emails_to(endpoint_url, to)
    whole = len(json.dumps(payload, indent=2))  # the same escapes: ensure_ascii spells U+2028
    expected = '{\n  "s": "' + "\\u2028" * 15 + f"\n… (cut at 100 of {whole} characters)\n"
    assert f"Request payload:\n{expected}" in mail.body


# JSON text whose escapes are all there are: one, a surrogate pair's two, runs of backslashes
# (an escaped backslash before a "u" is no escape), and JSON's short escapes.
ESCAPES_TEXT = json_lines(
    ["\u2028", "\ud83d\ude00", "\\u2028", "\\\u2029", "\\\\", '"\n\t', "\udc00\ud800", "x"]
)
# Each escape of it, with a surrogate pair's two as one: where a cut may not fall.
ESCAPE_TOKEN = re.compile(r"\\ud[89ab]..\\ud[c-f]..|\\u....|\\.")


def test_a_cut_of_payload_json_never_ends_inside_an_escape() -> None:
    insides = {
        inside
        for token in ESCAPE_TOKEN.finditer(ESCAPES_TEXT)
        for inside in range(token.start() + 1, token.end())
    }
    assert "\\ud83d\\ude00" in ESCAPES_TEXT  # the pair is there to be cut
    for limit in range(len(ESCAPES_TEXT) + 1):
        kept = json_cut(ESCAPES_TEXT, limit)
        assert ESCAPES_TEXT.startswith(kept)
        assert len(kept) not in insides, (limit, kept[-12:])
        assert limit - len(kept) < 12  # only an escape's worth left out


@pytest.mark.parametrize("subject", LONG_SUBJECTS)
def test_a_long_subject_is_folded_into_lines_of_78_at_most(subject: str) -> None:
    folded = fold_subject(subject)

    lines = folded.split("\r\n")
    assert lines[-1] == ""
    assert len(lines) > 2
    assert all(0 < len(line) <= 78 for line in lines[:-1])
    assert all(line.startswith(" ") for line in lines[1:-1])


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_smtp_over_tls_with_a_login(
    security: str,
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a server with a certificate for 127.0.0.1 that requires a login
    certificate = self_signed_certificate(tmp_path)
    server = SmtpServer(security=security, login=("alerts", "s3cret"), certificate=certificate)
    url, _ = make_queue(f"smtp-{security}")
    send_records(sqs, url, [failure_record()])
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=server.port,
        security=security,
        username="alerts",
        password_env="TEST_SMTP_PASSWORD",
        cert_bundle=str(certificate[0]),  # the certificate is verified, not waved through
    )

    # when
    with running(server):
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)

    # then
    assert stats.outcomes["ack"] == 1
    assert len(server.messages) == 1
    assert server.logins == ["alerts"]


async def test_a_4xx_reply_retries_and_the_chain_resumes_after_the_sms(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: persist, sms, email; the SMTP server answers the first DATA with 451
    url, dlq = make_queue("smtp-451")
    number = unique_number()
    send_records(sqs, url, [failure_record()])
    smtp_server.mailbox.data_errors.append("451 4.3.0 Mailbox busy, try again later")
    settings = settings_for_handlers(
        endpoint_url,
        url,
        store=sqlite_url,
        handlers={
            "oncall-sms": {"type": "sms", "phone_numbers": [number], "window": 0},
            "oncall-mail": {
                "type": "email",
                "transport": "smtp",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "security": "none",
                "from": "alerts@example.com",
                "to": ["oncall@example.com"],
                "window": 0,
            },
        },
        chain=("persist", "oncall-sms", "oncall-mail"),
        handler_attempts=1,  # no in-process retry: the message itself comes back
    )

    # when
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: smtp_server.messages, within=30)

    # then: retried by message, the email went out on the second delivery, the SMS once
    assert worker.stats.outcomes["retry"] == 1
    assert worker.stats.outcomes["ack"] == 1
    assert len(smtp_server.messages) == 1
    assert len(sms_to(endpoint_url, number)) == 1
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("rcpt", r"refused every recipient \(o\*\*\*@example\.com: 550 No such user"),
        ("login", r"answered 535"),
    ],
)
async def test_a_5xx_reply_quarantines_with_the_reason(
    setup: str,
    reason: str,
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
) -> None:
    server = SmtpServer(login=("alerts", "right") if setup == "login" else None)
    if setup == "rcpt":
        server.mailbox.rcpt_error = "550 No such user here"
    url, _ = make_queue("smtp-5xx")
    send_records(sqs, url, [failure_record()])
    login = {"username": "alerts", "password": "wrong"} if setup == "login" else {}
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=server.port,
        **login,
    )

    with running(server):
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)

    assert stats.outcomes["quarantine"] == 1
    assert server.messages == []
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert re.search(reason, row.reason), row.reason


async def test_a_refusal_that_quotes_the_login_back_never_shows_the_password(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: a server whose refusal of a login quotes it back, password and all
    server = SmtpServer(
        login=("alerts", "right"), refusal="535 5.7.8 bad credentials {login}:{password}"
    )
    url, _ = make_queue("smtp-echo")
    send_records(sqs, url, [failure_record()])
    password = "Wr0ng-Pa55word"
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=server.port, username="alerts", password=password
    )

    # when
    with running(server), capture_logs() as logs:
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)

    # then: quarantined with the server's reason, the password masked there and in every log,
    # and the settings to check (before: the server's words alone)
    assert stats.outcomes["quarantine"] == 1
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert (
        "answered 535 5.7.8 bad credentials alerts:*** to the login: check username and the "
        "password (password, or password_env's variable)"
    ) in row.reason, row.reason
    assert logs
    assert password not in row.reason + repr(logs)


async def test_every_recipient_refused_but_one_only_for_now_is_retried_not_quarantined(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: two recipients, the server refusing one for now (451) and the other for good (550)
    url, dlq = make_queue("smtp-mixed")
    send_records(sqs, url, [failure_record()])
    busy, unknown = "busy@example.com", "unknown@example.com"
    smtp_server.mailbox.rcpt_errors.update(
        {busy: "451 4.2.1 Mailbox busy, try again later", unknown: "550 5.1.1 No such user"}
    )
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        to=[busy, unknown],
    )
    # no in-process retry: the message itself comes back
    settings = settings.model_copy(update={"handler_attempts": 1})

    # when: refused once, then the busy mailbox takes mail again
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: worker.stats.outcomes["retry"] >= 1, within=30)
        del smtp_server.mailbox.rcpt_errors[busy]
        await eventually(lambda: smtp_server.messages, within=30)

    # then: retried, not quarantined, and the mail reached the mailbox that could take it
    assert worker.stats.outcomes["quarantine"] == 0
    assert [rcpts for _sender, rcpts in smtp_server.mailbox.envelopes] == [[busy]]
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


async def test_one_recipient_refused_for_now_gets_the_mail_later_and_the_others_once(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: three recipients, the server refusing one of them for now (451) at RCPT TO and
    # taking the others
    url, dlq = make_queue("smtp-some-for-now")
    record = failure_record()
    send_records(sqs, url, [record])
    busy, oncall, team = "busy@example.com", "oncall@example.com", "team@example.com"
    smtp_server.mailbox.rcpt_errors[busy] = "451 4.2.1 Mailbox busy, try again later"
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=smtp_server.port, to=[oncall, busy], cc=[team]
    )
    settings = settings.model_copy(update={"handler_attempts": 1})  # the message comes back

    # when: the others take the mail, then the busy mailbox takes mail again
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: smtp_server.messages, within=30)
        del smtp_server.mailbox.rcpt_errors[busy]
        await eventually(lambda: worker.stats.outcomes["ack"] >= 1, within=30)

    # then: the message was retried for the busy mailbox alone, which got the mail (before:
    # the handler completed at once, the refusal a log line, and the busy mailbox never got it)
    assert [rcpts for _sender, rcpts in smtp_server.mailbox.envelopes] == [[oncall, team], [busy]]
    assert worker.stats.outcomes["retry"] == 1
    first, again = smtp_server.messages
    assert again["Message-ID"] == first["Message-ID"]  # the same mail, to the one it missed
    assert again["To"] == first["To"] == f"{oncall}, {busy}"
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None
    async with Store.from_url(sqlite_url) as store:
        runs = await store.handler_runs(decode(json.dumps(record)).key)
    run = next(run for run in runs if run.handler == "oncall-mail")
    assert run.state == RunState.COMPLETED


async def test_a_recipient_refused_for_good_while_others_take_the_mail_is_on_the_handler_run(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: three recipients, the server refusing one for good (550) at RCPT TO, its reply
    # quoting the address
    url, _ = make_queue("smtp-some-for-good")
    record = failure_record()
    send_records(sqs, url, [record])
    unknown, oncall, team = "unknown@example.com", "oncall@example.com", "team@example.com"
    smtp_server.mailbox.rcpt_errors[unknown] = f"550 5.1.1 <{unknown}>: Recipient unknown"
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=smtp_server.port, to=[oncall, unknown], cc=[team]
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: the others got the mail, once, and the run completed
    assert stats.outcomes["ack"] == 1
    assert [rcpts for _sender, rcpts in smtp_server.mailbox.envelopes] == [[oncall, team]]
    async with Store.from_url(sqlite_url) as store:
        runs = await store.handler_runs(decode(json.dumps(record)).key)
    run = next(run for run in runs if run.handler == "oncall-mail")
    assert run.state == RunState.COMPLETED
    # and what the operator reads of it (failures show, the console's failure page) says who
    # did not get it and why, the address masked as the log masks it (before: nothing; the
    # refusal was a log line alone)
    assert run.last_error == (
        "sent to 2 of 3 recipients; refused for good: u***@example.com (550 5.1.1 "
        "<u***@example.com>: Recipient unknown)"
    ), run.last_error
    shown = await asyncio.to_thread(
        subprocess.run,
        [*ENTRY, "failures", "show", record["requestContext"]["requestId"], "--json"],
        env={**os.environ, "LAMBDA_DESTINATIONS_STORE": sqlite_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    runs_shown = {r["handler"]: r for r in json.loads(shown.stdout)["handler_runs"]}
    assert runs_shown["oncall-mail"]["last_error"] == run.last_error
    assert unknown not in shown.stdout


async def test_a_digest_refused_for_now_by_one_recipient_reaches_it_later_and_the_other_once(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: three failures of one function, the first sent at once, the other two held for
    # the window's digest, which one of two recipients refuses for now (451) at RCPT TO
    url, _ = make_queue("smtp-digest-for-now")
    send_records(sqs, url, [failure_record("billing", error_type="KeyError") for _ in range(3)])
    busy, oncall = "busy@example.com", "oncall@example.com"
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        to=[oncall, busy],
        window="3s",
        send_first=1,
    )

    # when: the busy mailbox refuses mail once the first alert is in, until the digest is out
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: smtp_server.messages, within=30)
        smtp_server.mailbox.rcpt_errors[busy] = "451 4.2.1 Mailbox busy, try again later"
        await eventually(lambda: len(smtp_server.messages) >= 2, within=30)
        del smtp_server.mailbox.rcpt_errors[busy]
        await eventually(lambda: len(smtp_server.messages) >= 3, within=30)
        await asyncio.sleep(0.5)  # no other copy comes

    # then: the digest reached the busy mailbox when it took mail again, the other once
    # (before: the digest was done once the other took it; the busy mailbox never got it)
    envelopes = [rcpts for _sender, rcpts in smtp_server.mailbox.envelopes]
    assert envelopes == [[oncall, busy], [oncall], [busy]]
    _alert, digest, again = smtp_server.messages
    assert "2 more failures of billing / KeyError" in digest["Subject"]
    assert again["Message-ID"] == digest["Message-ID"]


async def assert_mail_in_doubt(store: str, record: Any, cause: str, policy: str) -> None:
    """The email's run completed, its last_error the in-doubt note of the send."""
    async with Store.from_url(store) as opened:
        runs = await opened.handler_runs(decode(json.dumps(record)).key)
    run = next(run for run in runs if run.handler == "oncall-mail")
    assert run.state == RunState.COMPLETED
    assert run.last_error is not None
    assert f"in doubt ({cause}): email to 1 recipient(s) may have been sent" in run.last_error
    assert f"in_doubt = {policy}" in run.last_error, run.last_error


LONG_NAME = "Équipe d'astreinte des opérations de paiement, région Europe (Zürich et Genève)"


def unfolded(raw: bytes, header: str) -> str:
    """``header``'s value in the message ``raw``, unfolded (its line breaks removed, as RFC
    5322 says) and its encoded words decoded as RFC 2047 says: the white space between two of
    them is not the text's (the email package's address parser keeps it)."""
    head = raw.decode().split("\r\n\r\n", 1)[0]
    (value,) = re.findall(rf"^{header}: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE)
    return str(make_header(decode_header(value.replace("\r\n", ""))))


async def test_smtp_names_arrive_as_written_one_address_each_in_lines_of_78(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: names with a comma, quotes and other than ASCII, one longer than a header line
    url, _ = make_queue("smtp-names")
    send_records(sqs, url, [failure_record()])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        to=[
            '"Doe, Jörg" <oncall@example.com>',
            "team@example.com",
            f'"{LONG_NAME}" <payments@example.com>',
        ],
        cc=['"Équipe \\"nuit\\"" <night@example.com>'],
        reply_to=['"Ops; Zürich" <ops@example.com>'],
        **{"from": f'"{LONG_NAME}" <alerts@example.com>'},
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    # then: each header holds its addresses, the names as written (before: "Doe, Jörg" went as
    # 'Doe, =?utf-8?q?J=C3=B6rg?= <…>', a mailbox "Doe" with no address and a second one; and
    # the long name was folded between encoded words, whose space readers drop, "paiement,
    # région" arriving as "paiement,région"), in lines of 78
    (message,) = smtp_server.messages
    (raw,) = smtp_server.mailbox.raw

    def named(header: str) -> list[tuple[str, str]]:
        return [(a.display_name, a.addr_spec) for a in message[header].addresses]

    assert named("To")[:2] == [("Doe, Jörg", "oncall@example.com"), ("", "team@example.com")]
    assert len(named("To")) == 3
    assert named("Cc") == [('Équipe "nuit"', "night@example.com")]
    assert named("Reply-To") == [("Ops; Zürich", "ops@example.com")]
    assert unfolded(raw, "From") == f"{LONG_NAME} <alerts@example.com>"
    assert unfolded(raw, "To").endswith(f", {LONG_NAME} <payments@example.com>")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78


def test_a_long_name_is_sent_in_encoded_words_of_rfc_2047s_length() -> None:
    # SES and SMTP alike get the name as encoded words of 75 characters at most (before: one
    # word of 150, longer than RFC 2047 allows)
    value = address(f'"{LONG_NAME}" <alerts@example.com>', "from")
    name, _, rest = value.rpartition(" <")
    assert rest == "alerts@example.com>"
    assert all(word.startswith("=?utf-8?") and len(word) <= 75 for word in name.split(" "))
    assert str(make_header(decode_header(name))) == LONG_NAME


async def test_smtp_a_unicode_reply_to_arrives_as_written(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
) -> None:
    # given: an envelope in ASCII, a Reply-To with other than ASCII before its @
    url, _ = make_queue("smtp-utf8-reply-to")
    send_records(sqs, url, [failure_record()])
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=smtp_server.port, reply_to=["josé@example.com"]
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    # then: sent with SMTPUTF8 (before: as "=?utf-8?q?jos=C3=A9?=@example.com", an address no
    # one has, which a reply went to)
    (message,) = smtp_server.messages
    assert message["Reply-To"] == "josé@example.com"
    assert "Reply-To: josé@example.com\r\n".encode() in smtp_server.mailbox.raw[0]


async def test_a_unicode_address_to_a_server_without_smtputf8_names_it_worker_and_doctor(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
) -> None:
    smtp_server = SmtpServer(smtputf8=False)
    url, _ = make_queue("smtp-no-utf8")
    record = failure_record()
    send_records(sqs, url, [record])
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=smtp_server.port, to=["josé@example.com"]
    )

    with running(smtp_server):
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)
        doctor_said = await doctor_smtp_row(settings)

    # then: quarantined, the reason naming what the server lacks (before: "(check security,
    # port and login)", none of which would help), and doctor says it before any record
    assert stats.outcomes["quarantine"] == 1
    said = (
        f"SMTP server 127.0.0.1:{smtp_server.port}: the server does not offer SMTPUTF8, which an "
        "address with other than ASCII before its @ needs: use an ASCII address, or a server "
        "with SMTPUTF8"
    )
    assert (await smtp_reason(sqlite_url, record)).endswith(f"PermanentError: {said}")
    assert doctor_said.startswith(said.replace(": the", ": connected · EHLO, then the", 1))
    assert "quarantined" in doctor_said


def cut_off_smtp_settings(
    endpoint_url: str, url: str, store: str, port: int, policy: str
) -> Settings:
    """:func:`smtp_settings` with ``in_doubt`` = ``policy``, a handler_timeout of 1 s and no
    in-process retry: a message whose send fails comes back itself."""
    return smtp_settings(
        endpoint_url,
        url,
        store=store,
        port=port,
        in_doubt=policy,
        overrides={"handler_timeout": 1, "handler_attempts": 1, "retry_base": 0, "retry_max": 0},
    )


@pytest.mark.parametrize(
    ("lost", "cause"),
    [("hang-up", "SMTPServerDisconnected"), ("handler-timeout", "cut off at handler_timeout")],
)
@pytest.mark.parametrize(("policy", "mails"), [("skip", 1), ("resend", 2)])
async def test_a_reply_to_the_message_that_never_came_follows_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
    lost: str,
    cause: str,
    policy: str,
    mails: int,
) -> None:
    # given: a server that takes the first message whole, then hangs up before its reply (or
    # replies after the worker's handler_timeout has cut the send off)
    url, dlq = make_queue(f"smtp-doubt-{policy}", visibility_timeout=120)
    record = failure_record()
    send_records(sqs, url, [record])
    if lost == "hang-up":
        smtp_server.mailbox.hang_ups = 1
    else:
        smtp_server.mailbox.reply_delays = [3.0]
    settings = cut_off_smtp_settings(endpoint_url, url, sqlite_url, smtp_server.port, policy)

    # when
    first, acked = await drain_until_acked(settings)

    # then: the server may have the mail: skip never sends it again, resend does; the run
    # records it either way (it was retried as a server that hangs up, whatever in_doubt said)
    assert first.outcomes["retry"] == (1 if policy == "resend" else 0)
    assert acked == 1
    assert len(smtp_server.messages) == mails
    await assert_mail_in_doubt(sqlite_url, record, cause, policy)
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


@pytest.mark.parametrize("lost", ["hang-up", "handler-timeout"])
async def test_a_connection_lost_before_datas_go_ahead_is_retried_not_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
    lost: str,
) -> None:
    # given: a server that hangs up on DATA before its 354 (or sends its 354 after the worker's
    # handler_timeout has cut the send off), and in_doubt = skip, which never resends a doubt
    url, dlq = make_queue("smtp-before-go-ahead", visibility_timeout=120)
    record = failure_record()
    send_records(sqs, url, [record])
    if lost == "hang-up":
        smtp_server.mailbox.go_ahead_hang_ups = 1
    else:
        smtp_server.mailbox.go_ahead_delays = [3.0]
    settings = cut_off_smtp_settings(endpoint_url, url, sqlite_url, smtp_server.port, "skip")

    # when
    first, acked = await drain_until_acked(settings)

    # then: no message went out before the 354, so none can have been delivered: retried as
    # not sent (before: counted in doubt, and with skip never sent at all), delivered once
    assert first.outcomes["retry"] == 1
    assert acked == 1
    assert len(smtp_server.messages) == 1
    assert "in doubt" not in await smtp_reason(sqlite_url, record)
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


async def test_an_unreachable_smtp_server_is_transient(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("smtp-down")
    send_records(sqs, url, [failure_record()])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=free_port(),  # nothing listens there
        timeout=2,
        overrides={"handler_attempts": 1},
    )

    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    assert stats.outcomes["retry"] >= 1
    assert stats.outcomes["quarantine"] == 0
    async with Store.from_url(sqlite_url) as store:
        assert await store.list_quarantine() == []


async def smtp_reason(sqlite_url: str, record: dict[str, Any]) -> str:
    """The last error of the email handler's run of ``record``."""
    async with Store.from_url(sqlite_url) as store:
        runs = await store.handler_runs(decode(json.dumps(record)).key)
    (run,) = [run for run in runs if run.handler == "oncall-mail"]
    return run.last_error or ""


async def doctor_smtp_row(settings: Settings) -> str:
    """The detail of doctor's row of the oncall-mail handler, which fails."""
    rows = await check_handlers(settings, None)  # SMTP asks no AWS
    (row,) = [row for row in rows if row.check == "handler oncall-mail"]
    assert row.status == "error", row
    return row.detail


async def against_tcp_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    queue: str,
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    **options: Any,
) -> tuple[Stats, int, str, str]:
    """A record through the email handler, once, and doctor's SMTP check, against a TCP server
    of ``serve`` at the handler's port: the worker's stats, the port, the handler's stored
    reason and doctor's row."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url, _ = make_queue(queue)
    record = failure_record()
    send_records(sqs, url, [record])
    settings = smtp_settings(
        endpoint_url, url, store=sqlite_url, port=port, overrides={"handler_attempts": 1}, **options
    )
    try:
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)
        doctor_said = await doctor_smtp_row(settings)
    finally:
        server.close()
        await server.wait_closed()
    return stats, port, await smtp_reason(sqlite_url, record), doctor_said


@pytest.mark.parametrize(
    ("security", "server_security", "case", "said"),
    [
        # it said "SMTP server 127.0.0.1:… Error connecting to 127.0.0.1 on port …: [SSL:
        # WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"
        (
            "tls",
            "none",
            "",
            r"the TLS handshake failed \([A-Z_]+\): the server at that port does not speak TLS "
            r'at once; use security = "starttls" \(port 587\) or "none" \(port 25\), or its TLS '
            "port$",
        ),
        # it said "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify
        # failed: self-signed certificate (_ssl.c:1006)", naming neither the server nor the fix
        (
            "starttls",
            "starttls",
            "",
            r"the server's certificate is not trusted \(self-signed certificate\): name its CA's "
            "PEM file in cert_bundle$",
        ),
        # trusted by cert_bundle, for 127.0.0.1 alone, and host naming the server otherwise: it
        # said "not trusted (Hostname mismatch, …): name its CA's PEM file in cert_bundle",
        # which was there already
        *(
            (
                security,
                security,
                "other-name",
                r"the server's certificate is not for the name in host \(Hostname mismatch, "
                r"certificate is not valid for 'localhost'\.\): set host to a name the "
                "certificate is for, or give the server a certificate for that name$",
            )
            for security in ("tls", "starttls")
        ),
        # trusted by cert_bundle, expired yesterday: it said "not trusted (certificate has
        # expired): name its CA's PEM file in cert_bundle"
        (
            "starttls",
            "starttls",
            "expired",
            r"the server's certificate is out of its validity \(certificate has expired\): "
            "renew it on the server, or set this machine's clock right$",
        ),
    ],
    ids=[
        "tls-to-a-plain-port",
        "untrusted-certificate",
        "tls-certificate-for-another-name",
        "starttls-certificate-for-another-name",
        "expired-certificate",
    ],
)
async def test_tls_that_cannot_work_names_the_setting_to_change(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    tmp_path: Path,
    security: str,
    server_security: str,
    case: str,
    said: str,
) -> None:
    certificate = self_signed_certificate(tmp_path, expired=case == "expired")
    server = SmtpServer(security=server_security, certificate=certificate)
    url, _ = make_queue(f"smtp-tls-{security}")
    record = failure_record()
    send_records(sqs, url, [record])
    host = "localhost" if case == "other-name" else "127.0.0.1"
    trusted = {"cert_bundle": str(certificate[0])} if case else {}
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=server.port,
        host=host,
        security=security,
        timeout=5,
        overrides={"handler_attempts": 1},
        **trusted,
    )

    with running(server):
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)
        doctor_said = await doctor_smtp_row(settings)

    assert stats.outcomes["retry"] == 1
    assert not server.messages
    reason = await smtp_reason(sqlite_url, record)
    where = f"SMTP server {host}:{server.port}: "
    assert re.search(rf"TransientError: {re.escape(where)}{said}", reason), reason
    # and doctor says the same of it, where it printed OpenSSL's own text ("not reached
    # (SMTPConnectError: Error connecting to 127.0.0.1 on port …: [SSL: WRONG_VERSION_NUMBER]
    # wrong version number (_ssl.c:1006))")
    worker_said = reason.partition(where)[2]
    assert doctor_said == (
        f"{where}connected, then {worker_said}: the worker retries "
        "this: every record routed through it waits until the server answers, and its queue "
        "dead-letters it after maxReceiveCount receives"
    )


async def test_a_server_that_is_not_smtp_is_named_in_one_line(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: the port of a server of another protocol, whose greeting is no SMTP reply
    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    # when
    stats, port, reason, doctor_said = await against_tcp_server(
        greet, "smtp-not-smtp", sqs, make_queue, endpoint_url, sqlite_url
    )

    # then: it said "answered -1 Malformed SMTP response line: SSH-2.0-OpenSSH_9.6\r\n", a
    # code no server sends and the line's CR LF in the reason
    assert stats.outcomes["retry"] == 1
    said = (
        f"SMTP server 127.0.0.1:{port}: the answer is not SMTP (it began 'SSH-2.0-OpenSSH_9.6'): "
        "check port and security"
    )
    assert reason.endswith(said), reason
    # and so does doctor (it said "SMTPResponseException: Malformed SMTP response line: …")
    assert doctor_said.startswith(said.replace(": the", ": connected, then the", 1)), doctor_said


async def test_a_server_that_never_greets_is_named_with_what_to_check(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: a port whose server waits for the client to speak first (HTTP, or implicit TLS)
    async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    stats, port, reason, doctor_said = await against_tcp_server(
        wait, "smtp-silent", sqs, make_queue, endpoint_url, sqlite_url, timeout=1
    )

    # it said "Timed out waiting for server ready message" alone
    assert stats.outcomes["retry"] == 1
    said = (
        "Timed out waiting for server ready message: is the port an SMTP server's, and security "
        'right (port 465 is "tls")?'
    )
    assert reason.endswith(said), reason
    # and so does doctor (it said "not reached (SMTPConnectTimeoutError: Timed out …)")
    assert doctor_said.startswith(f"SMTP server 127.0.0.1:{port}: connected, then {said}: the ")


async def _hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _greet_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mail.test ESMTP\r\n")
    await writer.drain()
    await reader.readline()
    writer.close()


@pytest.mark.parametrize(
    ("serve", "said"),
    [
        # it said "Error connecting to 127.0.0.1 on port …: Unexpected EOF received"
        (
            _hang_up,
            "the server closed the connection before its greeting (Unexpected EOF received): "
            "check host and port (a container's or proxy's port with no SMTP server behind it "
            "does this), and that the server takes connections from this host",
        ),
        # it said "Unexpected EOF received" alone
        (
            _greet_and_hang_up,
            "the server closed the connection after its greeting (Unexpected EOF received): its "
            "log says why it hangs up on this client (a limit on connections or on what it "
            "accepts)",
        ),
    ],
    ids=["before-its-greeting", "after-its-greeting"],
)
async def test_a_server_that_hangs_up_is_named_with_what_to_check(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    serve: Callable[..., Any],
    said: str,
) -> None:
    # given: a port that takes the connection and closes it (a container's port with no
    # server behind it), or closes it after the greeting
    stats, port, reason, doctor_said = await against_tcp_server(
        serve, "smtp-hang-up", sqs, make_queue, endpoint_url, sqlite_url
    )

    # then: retried, as the README says of a server that does not answer, in one line
    assert stats.outcomes["retry"] == 1
    assert reason.endswith(f": TransientError: SMTP server 127.0.0.1:{port}: {said}"), reason
    assert doctor_said.startswith(f"SMTP server 127.0.0.1:{port}: connected")
    assert f", then {said}: the worker retries this" in doctor_said, doctor_said


def _answering(
    answers: dict[bytes, bytes], closed: asyncio.Event
) -> Callable[..., Awaitable[None]]:
    """An SMTP server that greets, answers each command as ``answers`` say (else 250), and
    closes at QUIT or when the client does (``closed`` set then)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 mail.test ESMTP\r\n")
            while line := await reader.readline():
                command = line.split(b" ", 1)[0].strip().upper()
                if command == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                writer.write(answers.get(command, b"250 ok") + b"\r\n")
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            closed.set()

    return serve


@pytest.mark.parametrize(
    ("answers", "status", "said"),
    [
        # a server of HELO alone: the worker's sends greet it so; doctor said "EHLO", unsent
        ({b"EHLO": b"502 5.5.1 EHLO not here"}, "ok", "connected · HELO (nothing sent)"),
        # a server that refuses every greeting, whose every send fails: doctor said it was ok,
        # "connected · EHLO (nothing sent)", having sent no EHLO
        (
            {b"EHLO": b"502 5.5.1 no", b"HELO": b"554 5.7.1 not you"},
            "error",
            "connected, then SMTPHeloError: (554, '5.7.1 not you'): every record routed through "
            "it fails the same way and is quarantined",
        ),
    ],
    ids=["helo-only", "no-greeting-taken"],
)
async def test_doctor_greets_the_smtp_server_as_a_send_does(
    endpoint_url: str,
    sqlite_url: str,
    answers: dict[bytes, bytes],
    status: str,
    said: str,
) -> None:
    closed = asyncio.Event()
    server = await asyncio.start_server(_answering(answers, closed), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = smtp_settings(endpoint_url, "doctor-greets", store=sqlite_url, port=port)
    try:
        rows = await check_handlers(settings, None)  # SMTP asks no AWS
        await asyncio.wait_for(closed.wait(), 5)  # doctor hung up: the server's side is closed
    finally:
        server.close()
        await server.wait_closed()

    (row,) = [row for row in rows if row.check == "handler oncall-mail"]
    assert row.status == status, row
    assert row.detail.startswith(f"SMTP server 127.0.0.1:{port}: {said}"), row.detail


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"to": ["a@example.com"]},
            r"\.from: missing: this handler needs it; add it to the \[handlers\.oncall-mail\]",
        ),
        # close to a setting: named, as written in the table (from, not the field's sender)
        ({"form": "a@example.com", "to": "b@example.com"}, r"\.form: .* did you mean 'from'\?$"),
        ({"from": "a@example.com", "to": "b@example.com", "xyz": 1}, r"takes bcc, cc, .*from, "),
        ({"from": "not an address", "to": ["a@example.com"]}, "is not an email address"),
        ({"from": "a@example.com", "to": ["b@example.com\r\nBcc: x@evil.test"]}, "one line"),
        ({"from": "a@example.com", "to": []}, r"\.to: List should have at least 1"),
        (  # over SMTP the second would be in the To header, never sent to
            {"from": "a@example.com", "to": ["b@example.com, c@example.com"]},
            r"\.to: 'b@example.com, c@example.com' is not an email address: write one address",
        ),
        ({"from": "a@example.com", "to": ["b@example.com>"]}, "is not an email address"),
        ({"from": "a@example.com", "to": ["b@example..com"]}, "is not an email address"),
        (  # SES sends from verified domains to domains on the internet: both have a dot
            {"from": "a@example.com", "to": ["root@localhost"]},
            r"^handlers\.oncall-mail: 'root@localhost': SES sends to and from domains with a dot",
        ),
        (
            {"from": "a@example.com", "to": ["root@-localhost"], "transport": "smtp", "host": "h"},
            r"'root@-localhost' is not an email address: its domain's label '-localhost' starts",
        ),
        (
            {"from": "a@example.com", "to": ["josé@example.com"]},
            r"^handlers\.oncall-mail: 'josé@example.com': SES sends to and from ASCII local parts",
        ),
        ({"from": "a@example.com", "to": "b@example.com", "host": "smtp"}, "are SMTP settings"),
        (  # SES refused every mail (MessageRejected), each quarantined
            {
                "from": "a@example.com",
                "to": [f"to{n}@example.com" for n in range(30)],
                "cc": [f"cc{n}@example.com" for n in range(21)],
            },
            r"^handlers\.oncall-mail: 51 recipients in to, cc and bcc: SES sends a mail to 50 at",
        ),
        (
            {"from": "a@example.com", "to": "b@example.com", "transport": "smtp"},
            'transport "smtp" needs host',
        ),
        (
            {
                "from": "a@example.com",
                "to": "b@example.com",
                "transport": "smtp",
                "host": "smtp.example.com",
                "username": "u",
                "password_env": "LD_TEST_NOT_SET_ANYWHERE",
            },
            r"password_env: the environment variable LD_TEST_NOT_SET_ANYWHERE is not set",
        ),
        (
            {"from": "a@example.com", "to": "b@example.com", "text": "{response.__dict__}"},
            r"^handlers\.oncall-mail\.text: template field \{response\.__dict__\} is refused",
        ),
        (
            {"from": "a@example.com", "to": "b@example.com", "digest_text": "{error_message}"},
            r"digest_text: template field \{error_message\} is refused",
        ),
    ],
)
def test_bad_settings_stop_the_start_naming_the_setting(
    options: dict[str, Any], message: str, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("oncall-mail", options, handler_settings("q"))

    text = str(info.value)
    assert text.startswith("handlers.oncall-mail")
    assert re.search(message, text), text


@pytest.mark.parametrize(
    ("login", "message"),
    [
        (
            {"password_env": "LD_TEST_EMPTY_PASSWORD"},
            "handlers.oncall-mail.password_env: the environment variable LD_TEST_EMPTY_PASSWORD "
            "is empty: give it the password",
        ),
        (
            {"password": ""},
            "handlers.oncall-mail.password: empty: give the password, or remove username and "
            "password to send without a login",
        ),
    ],
)
def test_an_empty_smtp_password_stops_the_start(
    login: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    handler_settings: Callable[..., Settings],
) -> None:
    # Every login was refused otherwise (535), each record quarantined with a reason that
    # named no setting: a secret not mounted, or SMTP_PASSWORD= in an env file
    monkeypatch.setenv("LD_TEST_EMPTY_PASSWORD", "")
    options = {
        "from": "a@example.com",
        "to": "b@example.com",
        "transport": "smtp",
        "host": "smtp.example.com",
        "username": "alerts",
        **login,
    }
    with pytest.raises(ConfigError) as info:
        build("oncall-mail", options, handler_settings("q"))

    assert str(info.value) == message


@pytest.mark.parametrize(
    "host", ["smtp://smtp.example.com", "smtp.example.com:587", "smtp example.com", "", "a..b"]
)
def test_an_smtp_host_no_connection_can_reach_stops_the_start(
    host: str, handler_settings: Callable[..., Settings]
) -> None:
    # Each send failed to connect otherwise, retried as a server that may come back
    options = {"from": "a@example.com", "to": "b@example.com", "transport": "smtp", "host": host}
    with pytest.raises(ConfigError) as info:
        build("oncall-mail", options, handler_settings("q"))

    assert str(info.value) == (
        f"handlers.oncall-mail.host: {host!r} is not a host name or an IP address: give the "
        "server's name alone, such as smtp.example.com (its port in port)"
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("missing.pem", "cannot be read (No such file or directory)"),
        ("", "cannot be read (Is a directory)"),
        ("ca.pem", "holds no PEM certificates (NO_CERTIFICATE_OR_CRL_FOUND)"),
    ],
)
def test_a_cert_bundle_that_cannot_be_loaded_stops_the_start(
    name: str, problem: str, tmp_path: Path, handler_settings: Callable[..., Settings]
) -> None:
    # Loaded at each send otherwise: every record through the handler retried, the error an
    # OSError that named no file.
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    bundle = tmp_path / name
    options = {
        "from": "a@example.com",
        "to": "b@example.com",
        "transport": "smtp",
        "host": "smtp.example.com",
        "cert_bundle": str(bundle),
    }
    with pytest.raises(ConfigError) as info:
        build("oncall-mail", options, handler_settings("q"))

    assert str(info.value).startswith(f"handlers.oncall-mail.cert_bundle: {bundle} {problem}: ")


def test_the_smtp_port_follows_the_security(handler_settings: Callable[..., Settings]) -> None:
    base = {"from": "a@example.com", "to": "b@example.com", "transport": "smtp", "host": "h"}
    ports = {
        security: build("m", {**base, "security": security}, handler_settings("q")).transport
        for security in ("starttls", "tls", "none")
    }

    assert {name: t.port for name, t in ports.items()} == {  # type: ignore[attr-defined]
        "starttls": 587,
        "tls": 465,
        "none": 25,
    }


def test_a_unicode_domain_is_sent_in_idna_2008s_punycode(
    handler_settings: Callable[..., Settings],
) -> None:
    # IDNA 2003 (Python's "idna" codec) maps ß to ss: mail for faß.de went to fass.de, another
    # domain, and the SMTP connection to smtp.fass.de
    options = {
        "from": "Straße <alerts@faß.de>",
        "to": ["oncall@FAß.de", "snow@☃.net"],  # a symbol: only IDNA 2003 takes it
        "transport": "smtp",
        "host": "smtp.faß.de",
    }
    handler = build("oncall-mail", options, handler_settings("q"))

    assert bare_address(handler.sender) == "alerts@xn--fa-hia.de"
    assert handler.to == ("oncall@xn--fa-hia.de", "snow@xn--n3h.net")
    assert handler.transport.host == "smtp.xn--fa-hia.de"  # type: ignore[attr-defined]


# -- addresses whose domain no mail can reach -----------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("a@-bad.com", "its domain's label '-bad' starts with a hyphen"),
        ("a@bad-.com", "its domain's label 'bad-' ends with a hyphen"),
        ("a@b_c.example.com", "its domain's label 'b_c' has other than letters, digits and"),
        ("a@127", "its domain's last label '127' is all digits"),
        ("a@1.2.3", "its domain's last label '3' is all digits"),
        ("a@1.2.3.4", "its domain is an IP address without brackets: write it in them, [1.2"),
        ("a@" + "x" * 64 + ".com", "its domain's label 'xxxxxxxxxx…' has 64 characters, 63"),
        ("a@" + "x" * 63 + ("." + "y" * 63) * 3 + ".com", "its domain has 259 characters, 253"),
        ("a@[300.1.2.3]", "'[300.1.2.3]' is no address literal: write [1.2.3.4] or [IPv6:"),
        ("a@[IPv6:1.2.3.4]", "'[IPv6:1.2.3.4]' is no address literal: write [1.2.3.4] or [IP"),
    ],
)
@pytest.mark.parametrize("setting", ["from", "to", "reply_to"])
def test_an_address_whose_domain_is_no_host_name_stops_the_start(
    address: str, problem: str, setting: str, handler_settings: Callable[..., Settings]
) -> None:
    # given: SMTP, which takes what SES would refuse for its own reasons (a dotless domain)
    options = {"from": "a@example.com", "to": "b@example.com", "transport": "smtp", "host": "h"}

    # when
    with pytest.raises(ConfigError) as info:
        build("oncall-mail", {**options, setting: address}, handler_settings("q"))

    # then: refused at start, one line naming the setting, the address, what is wrong with it
    # and the fix (before: taken, and every mail to it bounced or was refused by the server)
    text = str(info.value)
    assert text.startswith(f"handlers.oncall-mail.{setting}: {address!r} is not an email "), text
    assert problem in text, text
    assert "\n" not in text
    assert re.search(r": (check (the domain|it)|write .*)$", text), text


@pytest.mark.parametrize(
    ("address", "sent"),
    [
        ("ops@[192.0.2.1]", "ops@[192.0.2.1]"),
        ("ops@[IPv6:2001:db8::1]", "ops@[IPv6:2001:db8::1]"),
        ("ops@xn--fa-hia.de", "ops@xn--fa-hia.de"),
        ("ops@mail-1.example.com", "ops@mail-1.example.com"),
        ("ops@123.example.com", "ops@123.example.com"),
        ("ops@" + "x" * 63 + ".example", "ops@" + "x" * 63 + ".example"),
        ("ops@例え\u3002テスト", "ops@xn--r8jz45g.xn--zckzah"),
    ],
)
def test_smtp_takes_host_names_punycode_and_address_literals(
    address: str, sent: str, handler_settings: Callable[..., Settings]
) -> None:
    # RFC 5321: a domain, or an address literal ([192.0.2.1], [IPv6:…]), which an SMTP server
    # may take
    options = {"from": "a@example.com", "to": address, "transport": "smtp", "host": "h"}

    handler = build("oncall-mail", options, handler_settings("q"))

    assert handler.to == (sent,)


@pytest.mark.parametrize("setting", ["from", "to"])
def test_ses_refuses_an_address_literal_at_start(
    setting: str, handler_settings: Callable[..., Settings]
) -> None:
    # SES sends to and from domain names only: every mail would be refused, and quarantined
    options = {"from": "a@example.com", "to": "b@example.com", setting: "ops@[192.0.2.1]"}

    with pytest.raises(ConfigError) as info:
        build("oncall-mail", options, handler_settings("q"))

    assert str(info.value) == (
        "handlers.oncall-mail: 'ops@[192.0.2.1]': SES sends to and from domain names only, not "
        'address literals ([…]): name the host by its domain, or use transport = "smtp"'
    )


@pytest.mark.parametrize(
    ("lost", "cause"),
    [("hang-up", "SMTPServerDisconnected"), ("handler-timeout", "cut off at handler_timeout")],
)
@pytest.mark.parametrize(("policy", "digests"), [("skip", 1), ("resend", 2)])
async def test_a_digest_whose_reply_never_came_follows_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    smtp_server: SmtpServer,
    lost: str,
    cause: str,
    policy: str,
    digests: int,
) -> None:
    # given: two failures of one function, the first sent at once, the second held for the
    # window's digest, which the server takes whole and then hangs up before its reply (or
    # replies after the worker's handler_timeout has cut the digest off)
    url, _ = make_queue(f"smtp-digest-doubt-{policy}")
    send_records(sqs, url, [failure_record("billing", error_type="KeyError") for _ in range(2)])
    settings = smtp_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        port=smtp_server.port,
        window="3s",
        send_first=1,
        in_doubt=policy,
        overrides={"handler_timeout": 1, "retry_base": 0, "retry_max": 0},
    )

    # when
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: smtp_server.messages, within=30)
        if lost == "hang-up":
            smtp_server.mailbox.hang_ups = 1
        else:
            smtp_server.mailbox.reply_delays = [3.0]
        await eventually(lambda: len(smtp_server.messages) >= 2, within=30)
        async with Store.from_url(sqlite_url) as store:
            job = await eventually(lambda: digest_ended(store), within=30)

    # then: skip never sends the digest again, resend does (before: a digest was sent again
    # whatever in_doubt said); the digest ends done
    _alert, *sent = smtp_server.messages
    assert len(sent) == digests
    assert all("1 more failure of billing / KeyError" in mail["Subject"] for mail in sent)
    assert job.state is JobState.DONE
    if lost == "handler-timeout":
        # the job keeps the note, as a handler run does (before: "TimeoutError", and under
        # skip the digest was sent again)
        again = "not sent again" if policy == "skip" else "sent again"
        assert job.last_error is not None
        assert job.last_error.endswith(
            f"in doubt ({cause}): digest email to 1 recipient(s) may have been sent; "
            f"{again} (in_doubt = {policy})"
        )
