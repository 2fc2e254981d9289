"""Masking: URL passwords, email addresses and phone numbers never reach a log line or an error."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from botocore.exceptions import ClientError

from lambda_destinations.logs import configure_logging
from lambda_destinations.redact import (
    mask_email,
    mask_phone,
    mask_secrets,
    mask_url,
    redact,
    url_secrets,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/results", "postgresql://app:***@db:5432/results"),
        ("postgresql://app:s3/c:r@db/results", "postgresql://app:***@db/results"),
        (
            "postgresql://app@db/results?password=s3cret&x=1",
            "postgresql://app@db/results?password=***&x=***",
        ),
        (
            "http://u:pw@127.0.0.1:4566/?token=abc123&flag&empty=",
            "http://u:***@127.0.0.1:4566/?token=***&***&empty=",
        ),
        ("postgresql://app:s3 cr3t@db/results", "postgresql://app:***@db/results"),
        ("postgresql://my app:s3cr3t@db/results", "postgresql://my app:***@db/results"),
        ("http://u:p w@127.0.0.1:4566/", "http://u:***@127.0.0.1:4566/"),
        ("postgresql://app:pa@ss@db/results?x=a@b", "postgresql://app:***@db/results?x=***"),
        # an "@" of the password followed by a "/" or "#" of it: all of it up to the host's "@"
        ("postgresql://app:p@ss/w0rd-7c1e@db/results", "postgresql://app:***@db/results"),
        ("postgresql://app:p@ss#w0rd-7c1e@db/results", "postgresql://app:***@db/results"),
        (
            "postgresql://app:pw@db/results?options=a@b/c",
            "postgresql://app:***@db/results?options=***",
        ),
        ("postgresql://app@db/results", "postgresql://app@db/results"),
        ("sqlite:///var/lib/x.db", "sqlite:///var/lib/x.db"),
        ("http://127.0.0.1:4566", "http://127.0.0.1:4566"),
    ],
)
def test_a_url_loses_its_password_and_query_values(url: str, expected: str) -> None:
    assert mask_url(url) == expected


@pytest.mark.parametrize("mark", ["/", "#"])
def test_a_password_with_an_at_sign_and_a_url_mark_is_masked_whole_in_free_text(
    mark: str,
) -> None:
    text = f"cannot connect to postgresql://app:p@ss{mark}w0rd-7c1e@db/results (timeout)"
    assert redact(text) == "cannot connect to postgresql://app:***@db/results (timeout)"


def test_a_quoted_urls_query_values_are_masked_in_free_text() -> None:
    text = 'Could not connect to the endpoint URL: "http://h:1/?token=t0k3n&sig=s1g" (x=1)'
    assert redact(text) == (
        'Could not connect to the endpoint URL: "http://h:1/?token=***&sig=***" (x=1)'
    )


def test_an_answer_loses_what_the_request_carried() -> None:
    sent = url_secrets("https://u:pw-1234@h.example/hooks/T0/tok%20en-99?token=q-5678&v=1")
    sent |= {"Bearer hdr-4321", "sign-8765"}
    answer = (
        "Cannot POST /hooks/T0/tok%20en-99?token=q-5678&v=1 (token tok en-99, q-5678, "
        "user u, pw-1234, Authorization: Bearer hdr-4321, key hdr-4321 sign-8765) on h.example"
    )
    masked = mask_secrets(answer, sent)
    for secret in ("hooks", "en-99", "q-5678", "pw-1234", "hdr-4321", "sign-8765"):
        assert secret not in masked
    assert masked.startswith("Cannot POST *** (token ***, ***, user u, ***, Authorization: ***")
    assert masked.endswith("on h.example")  # short values and the host stay readable


def test_addresses_and_numbers_are_masked_in_free_text() -> None:
    text = "refused alice.smith@example.com: 550; sms to +447700900123 failed"
    masked = redact(text)
    assert "alice.smith" not in masked
    assert "a***@example.com" in masked
    assert "+447700900123" not in masked
    assert masked.endswith("0123 failed")
    # a URL's user name is no secret and stays readable
    assert redact("postgresql://app@db.example.com/x") == "postgresql://app@db.example.com/x"


def test_mask_email_and_phone_keep_enough_to_tell_apart() -> None:
    assert mask_email("bob@example.org") == "b***@example.org"
    assert mask_phone("+15551234567") == "+15*****4567"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_logs_never_carry_a_password_or_an_address(
    fmt: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt, "debug")
    try:
        log = structlog.get_logger("test")
        log.info(
            "worker started",
            store="postgresql://postgres:hunter2pw@db/results",
            refused={"carol@example.com": "550 no such user"},
            to=["dave@example.com"],
        )
        try:
            raise ValueError("cannot connect to postgresql://u:hunter2pw@db/x")
        except ValueError:
            log.exception("failed")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "worker started" in err
    assert "failed" in err
    for secret in ("hunter2pw", "carol@", "dave@"):
        assert secret not in err
    assert "***" in err


def test_the_standard_librarys_records_are_masked_too() -> None:
    configure_logging("json", "debug")
    structlog.reset_defaults()
    record = logging.LogRecord(
        "botocore",
        logging.WARNING,
        __file__,
        1,
        "endpoint %s for %s",
        ("http://u:pw9x@h/", "erin@example.com"),
        None,
    )
    handler = logging.getLogger().handlers[0]
    assert handler.filter(record)
    assert record.getMessage() == "endpoint http://u:***@h/ for e***@example.com"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_fields_named_for_a_secret_never_reach_a_log_line(
    fmt: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: what a handler's author logs with context.log while calling an API
    configure_logging(fmt, "debug")
    try:
        log = structlog.get_logger("test").bind(queue="orders", key="req-1:Success")
        log.info(
            "calling api",
            password="hunter2pw",
            api_key="sk_live_key42",
            clientSecret="cs_value42",
            headers={"Authorization": "Basic dXNlcjpwdzQy", "X-Api-Key": "xk_value42"},
            retries=3,
        )
        try:
            raise RuntimeError("401 for Authorization: Bearer eyJ.tok42 with token=tk_value42")
        except RuntimeError:
            log.exception("api refused")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err

    # then: before, each value was printed as given; now each is masked, the names stay
    for secret in ("hunter2pw", "key42", "value42", "dXNlcjpwdzQy", "tok42"):
        assert secret not in err
    assert "api_key" in err
    assert "X-Api-Key" in err
    # and: fields that only look alike keep their values
    assert "req-1:Success" in err
    assert "retries" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("token=abc123 access_token=x9 tokens=5", "token=*** access_token=*** tokens=5"),
        ("api_key=k1&apikey=k2", "api_key=***&apikey=***"),
    ],
)
def test_a_text_loses_the_tokens_it_quotes(text: str, expected: str) -> None:
    assert redact(text) == expected


# AWS's SignatureDoesNotMatch message quotes the canonical request it expected, headers and all:
# a temporary credential's session token among them.
SIGNATURE_REFUSED = (
    "The request signature we calculated does not match the signature you provided.\n\n"
    "The Canonical String for this request should have been\n'POST\n/\n\n"
    "host:sqs.eu-west-1.amazonaws.com\nx-amz-date:20261207T101500Z\n"
    "x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLE/session+token==\n\n"
    "host;x-amz-date;x-amz-security-token\ne3b0c442'"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "404, message='Not Found', url='https://hooks.slack.com/services/T0/B0/XXsecret42'",
            "404, message='Not Found', url='https://hooks.slack.com/services/***'",
        ),
        (
            "POST https://discord.com/api/webhooks/123/secret42?wait=true failed",
            "POST https://discord.com/api/webhooks/***?wait=*** failed",
        ),
        (
            "https://acme.webhook.office.com/webhookb2/g@t/IncomingWebhook/secret42/u",
            "https://acme.webhook.office.com/webhookb2/***",
        ),
        ("https://api.telegram.org/bot12:secret42/sendMessage", "https://api.telegram.org/***"),
        ("sent Authorization: Basic c2VjcmV0NDI= on", "sent Authorization: Basic *** on"),
        ("authorization: denied for this role", "authorization: denied for this role"),
    ],
)
def test_a_text_loses_a_webhooks_token_path_and_a_quoted_authorization(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


def test_an_aws_refusal_quoting_the_session_token_reaches_no_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: the refusal botocore raises, as the worker logs an error
    error = ClientError(
        {"Error": {"Code": "SignatureDoesNotMatch", "Message": SIGNATURE_REFUSED}},
        "ReceiveMessage",
    )
    configure_logging("json", "info")
    try:
        # when: it is logged, as a field and as a traceback
        structlog.get_logger("test").warning("cannot receive", error=error)
        try:
            raise error
        except ClientError:
            structlog.get_logger("test").exception("poller failed")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err

    # then: the token is masked; what tells the refusal apart stays
    assert "IQoJb3JpZ2luX2VjEXAMPLE" not in err
    assert err.count("x-amz-security-token:***") == 2
    assert "SignatureDoesNotMatch" in err
