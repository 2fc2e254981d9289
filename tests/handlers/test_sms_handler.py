"""The sms handler through the worker, against moto's SNS: what it publishes, and to whom."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from handler_helpers import (
    RecordingMoto,
    failure_record,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_number,
)
from structlog.testing import capture_logs

from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import HandlerRegistry
from lambda_destinations.handlers.sms import SmsHandler, build, count_segments
from lambda_destinations.handlers.storm import StormPolicy
from lambda_destinations.handlers.templates import Template
from lambda_destinations.schemas import decode
from lambda_destinations.store import Store
from lambda_destinations.worker import Worker


def _attributes(params: dict[str, list[str]]) -> dict[str, str]:
    """MessageAttributes of a recorded SNS Publish (query protocol), as name -> value."""
    names = {
        key.removesuffix(".Name"): value[0]
        for key, value in params.items()
        if key.startswith("MessageAttributes.entry.") and key.endswith(".Name")
    }
    return {name: params[f"{prefix}.Value.StringValue"][0] for prefix, name in names.items()}


def sms_settings(endpoint_url: str, url: str, *, store: str, **options: Any) -> Settings:
    """A worker on ``url`` whose route is persist then an sms handler called oncall."""
    return settings_for_handlers(
        endpoint_url,
        url,
        store=store,
        handlers={"oncall": {"type": "sms", "window": 0, **options}},
        chain=("persist", "oncall"),
    )


def refused_first(settings: Settings, numbers: list[str]) -> HandlerRegistry:
    """A registry whose ``oncall`` texts a number SNS refuses ("+0155", no E.164: built past
    the start-time check), then ``numbers``."""
    registry = HandlerRegistry(settings)
    registry.add(
        SmsHandler(
            "oncall",
            phone_numbers=["+0155", *numbers],
            message=Template.compile("{summary}", where="t"),
            digest_message=Template.compile("{summary}", where="t"),
            max_segments=1,
            storm=StormPolicy(0, 0),
            attributes={},
        )
    )
    return registry


async def test_a_failure_is_texted_to_every_number_with_type_and_sender_id(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: a failure queue on the recording server, two numbers
    url = recording_moto.make_queue("sms")
    first, second = unique_number(), unique_number()
    record = failure_record("orders-api", error_type="TimeoutError")
    send_records(recording_moto.client("sqs"), url, [record])
    settings = sms_settings(
        recording_moto.endpoint_url,
        url,
        store=sqlite_url,
        phone_numbers=[first, second],
        sms_type="promotional",
        sender_id="OrdersOps",
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: one SMS each, as SNS recorded it sent
    assert stats.outcomes["ack"] == 1
    expected = (
        "orders-api failed (RetriesExhausted): TimeoutError: Task timed out after 3.00 seconds "
        f"[{record['requestContext']['requestId']}]"
    )
    assert sms_to(recording_moto.endpoint_url, first) == [expected]
    assert sms_to(recording_moto.endpoint_url, second) == [expected]
    # with the SMS type and sender id SNS was asked for
    (publish,) = recording_moto.sns_publishes(first)
    assert _attributes(publish) == {
        "AWS.SNS.SMS.SMSType": "Promotional",
        "AWS.SNS.SMS.SenderID": "OrdersOps",
    }


async def test_a_lone_surrogate_in_the_record_is_texted_as_a_question_mark(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: a failure whose error message JSON spells a lone surrogate, which UTF-8 (and so
    # SNS's request) cannot carry
    url = recording_moto.make_queue("smssurrogate")
    number = unique_number()
    record = failure_record("orders-api", message="lone \ud800 half")
    send_records(recording_moto.client("sqs"), url, [record])
    settings = sms_settings(
        recording_moto.endpoint_url, url, store=sqlite_url, phone_numbers=[number]
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then: texted once, the surrogate as GSM-7's "?", not retried until the DLQ
    assert stats.outcomes["ack"] == 1
    assert stats.outcomes["retry"] == stats.outcomes["quarantine"] == 0
    (text,) = sms_to(recording_moto.endpoint_url, number)
    assert "TimeoutError: lone ? half" in text


async def test_line_ends_are_texted_as_line_feeds_and_other_controls_as_spaces(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: an error message with every kind of line end, C0 and C1 controls, DEL, a tab, a
    # lone surrogate and bidi controls (an override, an isolate, a mark)
    url = recording_moto.make_queue("smscontrols")
    number = unique_number()
    message = (
        "crlf\r\ncr\rlf\nnel\x85ls\u2028ps\u2029vt\x0bff\x0cend "
        "nul\x00esc\x1b[31mred bel\x07tab\tdel\x7fcsi\x9bc1\x80lone\udc00! "
        "rlo\u202eexe.txt\u202c lri\u2066x\u2069 lrm\u200e"
    )
    send_records(recording_moto.client("sqs"), url, [failure_record(message=message)])
    settings = sms_settings(
        recording_moto.endpoint_url,
        url,
        store=sqlite_url,
        phone_numbers=[number],
        message="{error_message}",
        max_segments=3,
    )

    # when
    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    # then
    assert stats.outcomes["ack"] == 1
    assert sms_to(recording_moto.endpoint_url, number) == [
        "crlf\ncr\nlf\nnel\nls\nps\nvt\nff\nend nul esc [31mred bel tab del csi c1 lone?! "
        "rlo?exe.txt? lri?x? lrm\u200e"
    ]


async def test_a_lone_surrogate_keeps_the_text_gsm_7_and_the_logged_segments_are_those_sent(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: 159 GSM-7 characters and a lone surrogate, one segment allowed: as U+FFFD it
    # would make the text UCS-2, 70 characters a segment, and be cut
    url = recording_moto.make_queue("smsgsmsurrogate")
    number = unique_number()
    message = "x" * 159 + "\ud800"
    send_records(recording_moto.client("sqs"), url, [failure_record(message=message)])
    settings = sms_settings(
        recording_moto.endpoint_url,
        url,
        store=sqlite_url,
        phone_numbers=[number],
        message="{error_message}",
        max_segments=1,
    )

    # when
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            await worker.run(once=True)

    # then: sent whole, in one GSM-7 segment, as the log says
    (text,) = sms_to(recording_moto.endpoint_url, number)
    assert text == "x" * 159 + "?"
    assert count_segments(text) == 1
    assert [log["segments"] for log in logs if log["event"] == "SMS sent"] == [1]


async def test_a_long_text_is_cut_to_the_configured_segments(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("sms-long")
    number = unique_number()
    record = failure_record(message="stock service did not answer; " * 40)
    send_records(sqs, url, [record])
    settings = sms_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        phone_numbers=[number],
        message="{function_name}: {error_message}",
        max_segments=2,
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    (text,) = sms_to(endpoint_url, number)
    assert count_segments(text) == 2
    assert text.startswith("orders-api: stock service did not answer; ")
    assert text.endswith("...")
    assert len(text) <= 306


async def test_a_message_that_renders_blank_sends_the_default_and_warns_once(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: a message template whose only field is missing from every record
    url, _ = make_queue("sms-blank")
    number = unique_number()
    records = [failure_record("orders-api"), failure_record("billing-worker")]
    send_records(sqs, url, records)
    settings = sms_settings(
        endpoint_url, url, store=sqlite_url, phone_numbers=[number], message=" {payload.nope} "
    )

    # when
    with capture_logs() as logs:
        async with Worker(settings) as worker:
            await worker.run(once=True)

    # then: each SMS is the default text, and one warning names the setting
    texts = sorted(sms_to(endpoint_url, number))
    assert texts == sorted(
        f"{r['requestContext']['functionArn'].split(':')[6]} failed (RetriesExhausted): "
        f"TimeoutError: Task timed out after 3.00 seconds [{r['requestContext']['requestId']}]"
        for r in records
    )
    warnings = [log for log in logs if log["event"].startswith("template rendered blank")]
    assert [w["setting"] for w in warnings] == ["handlers.oncall.message"]


async def test_a_retry_after_a_partial_send_texts_only_the_numbers_not_yet_sent(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: a record whose SMS to the first number was sent by an earlier, interrupted run
    url, _ = make_queue("sms-partial")
    first, second = unique_number(), unique_number()
    record = failure_record()
    key = decode(json.dumps(record)).key
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
        await store.complete_handler(key, f"oncall#{first}", "earlier-worker")
    send_records(sqs, url, [record])
    settings = sms_settings(endpoint_url, url, store=sqlite_url, phone_numbers=[first, second])

    # when
    async with Worker(settings) as worker:
        await worker.run(once=True)

    # then
    assert sms_to(endpoint_url, first) == []
    assert len(sms_to(endpoint_url, second)) == 1
    async with Store.from_url(sqlite_url) as store:
        done = await store.completed_handlers(key)
    assert {"oncall", f"oncall#{first}", f"oncall#{second}"} <= done


async def test_a_number_sns_refuses_quarantines_the_message_with_the_reason(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: a handler built around the start-time check, with a number SNS refuses
    url, dlq = make_queue("sms-refused")
    send_records(sqs, url, [failure_record()])
    settings = sms_settings(endpoint_url, url, store=sqlite_url, phone_numbers=["+14155552671"])
    registry = refused_first(settings, [])

    # when
    async with Worker(settings, registry=registry) as worker:
        stats = await worker.run(once=True)

    # then: not retried pointlessly; quarantined with SNS's reason
    assert stats.outcomes["quarantine"] == 1
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert "handler oncall" in row.reason
    assert "InvalidParameter" in row.reason
    # and what to check, where it said SNS's words alone ("Phone number does not meet the E164
    # format", which a country SNS does not text, or the SMS sandbox, also end in)
    assert row.reason.endswith(
        ": SNS does not text that number: check it in the handler's phone_numbers, that the "
        "worker's region sends SMS (not every region does), and, while the account is in the "
        "SNS SMS sandbox, that the number is verified there"
    ), row.reason
    assert dlq is not None
    assert sqs.receive_message(QueueUrl=dlq).get("Messages")


async def test_a_number_sns_refuses_does_not_keep_the_text_from_the_numbers_after_it(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: three numbers, the first one SNS refuses (a country the region does not text, a
    # number the SMS sandbox has not verified)
    url, _ = make_queue("sms-one-refused")
    send_records(sqs, url, [failure_record()])
    second, third = unique_number(), unique_number()
    settings = sms_settings(endpoint_url, url, store=sqlite_url, phone_numbers=[second])
    registry = refused_first(settings, [second, third])

    # when
    async with Worker(settings, registry=registry) as worker:
        stats = await worker.run(once=True)

    # then: the other numbers got their SMS, recorded as sent (a resend skips them), and the
    # message is quarantined for the refused one
    assert len(sms_to(endpoint_url, second)) == len(sms_to(endpoint_url, third)) == 1
    assert stats.outcomes["quarantine"] == 1
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
        done = await store.completed_handlers(row.key)
    assert {f"oncall#{second}", f"oncall#{third}"} <= done
    assert "InvalidParameter" in row.reason


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"phone_numbers": ["+1 415 555 2671", "+1555"]}, r"phone_numbers\[1\]: '\+1555' is not"),
        ({"phone_numbers": ["0044 7700 900123"]}, r"phone_numbers\[0\]: .* international form"),
        ({"phone_numbers": ["+15555555555"]}, "not a valid phone number for its country"),
        # it said "(Could not interpret numbers after plus-sign.)"
        ({"phone_numbers": ["+999 1234 5678"]}, r"\(no country has the calling code after its"),
        ({"phone_numbers": []}, r"handlers\.oncall\.phone_numbers: List should have at least 1"),
        ({}, r"handlers\.oncall\.phone_numbers: missing: this handler needs it; add it to"),
        (
            {"phone_number": ["+14155552671"]},
            r"handlers\.oncall\.phone_number: unknown setting: did you mean 'phone_numbers'\?",
        ),
        ({"phone_numbers": ["+14155552671"], "sender_id": "Too-Long-Id!"}, "not a sender id"),
        ({"phone_numbers": ["+14155552671"], "sms_type": "Urgent"}, r"\.sms_type: Input should"),
        ({"phone_numbers": ["+14155552671"], "max_segments": 11}, r"\.max_segments: "),
        ({"phone_numbers": ["+14155552671"], "window": "soon"}, r"\.window: 'soon' is not a"),
        ({"phone_numbers": ["+14155552671"], "to": "x"}, r"\.to: unknown setting"),
    ],
)
def test_bad_settings_stop_the_start_naming_the_setting(
    options: dict[str, Any], message: str, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("oncall", options, handler_settings("q"))

    text = str(info.value)
    assert text.startswith("handlers.oncall.")
    assert re.search(message, text), text


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+1 415 555 267", "'+14****5267'"),  # a digit short: no number of its country
        ("(415) 555-2671", "'415***2671'"),  # national: no country to read it in
        ("+1555", "'+1555'"),  # too short to be anyone's: repeated as typed
        # in Arabic-Indic and fullwidth digits (phonenumbers reads them): before, repeated whole
        ("+\u0661 \u0664\u0661\u0665 \u0665\u0665\u0665 \u0662\u0666\u0667", "'+14****5267'"),
        ("\uff0b\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff12\uff16\uff17", "'+14****5267'"),
    ],
)
def test_a_bad_number_is_repeated_masked_in_its_error_line(
    number: str, shown: str, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("oncall", {"phone_numbers": [number]}, handler_settings("q"))

    text = str(info.value)
    assert text.startswith(f"handlers.oncall.phone_numbers[0]: {shown} is not a"), text


def test_numbers_are_kept_in_e164_form(handler_settings: Callable[..., Settings]) -> None:
    handler = build(
        "oncall",
        {"phone_numbers": ["+1 (415) 555-2671", "+33 6 12 34 56 78", "+14155552671"]},
        handler_settings("q"),
    )

    assert handler.phone_numbers == ("+14155552671", "+33612345678")
    assert handler.attributes == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}
    }


def refusal(setting: str, number: str, handler_settings: Callable[..., Settings]) -> str:
    """The line that stops the start of a handler given ``number`` in ``setting``
    (``phone_numbers[0]`` or ``origination_number``)."""
    options: dict[str, Any] = {"phone_numbers": ["+14155552671"]}
    if setting == "origination_number":
        options["origination_number"] = number
    else:
        options["phone_numbers"] = [number]
    with pytest.raises(ConfigError) as info:
        build("oncall", options, handler_settings("q"))
    return str(info.value)


# A number texted as other digits than written alerts a stranger, or no one.
NOT_TEXTED_AS_WRITTEN = [
    # an SMS reaches no extension: texting the number without it would alert a switchboard
    ("phone_numbers[0]", "+1 415 555 2671 x123", "extension", "write the number without it"),
    ("phone_numbers[0]", "+14155552671;ext=12", "extension", "write the number without it"),
    ("origination_number", "+1 800 555 0100 ext. 7", "extension", "write the number without it"),
    # letters: phonenumbers drops a stray one, and reads others as a keypad's digits
    *(
        (setting, number, "letters", "write it in digits")
        for setting in ("phone_numbers[0]", "origination_number")
        for number in ("+14155552671a", "+1 415 555 FLOW", "+1 415 555 267I")
    ),
]


@pytest.mark.parametrize(("setting", "number", "what", "fix"), NOT_TEXTED_AS_WRITTEN)
def test_a_number_that_would_be_texted_as_other_digits_is_refused(
    setting: str, number: str, what: str, fix: str, handler_settings: Callable[..., Settings]
) -> None:
    text = refusal(setting, number, handler_settings)
    assert text.startswith(f"handlers.oncall.{setting}: "), text
    assert what in text
    assert fix in text


def test_a_tel_uri_is_taken_as_its_number(handler_settings: Callable[..., Settings]) -> None:
    handler = build("oncall", {"phone_numbers": ["tel:+14155552671"]}, handler_settings("q"))
    assert handler.phone_numbers == ("+14155552671",)


@pytest.mark.parametrize("setting", ["phone_numbers[0]", "origination_number"])
@pytest.mark.parametrize(
    "number",
    [
        "+800 1234 5678",
        "+808 1234 5678",
        "+870 301 234 567",
        "+881 6 123 45678",
        "+883 510 012 345",
        "+882 34 21234",
        "+979 1 2345 6789",
    ],
)
def test_a_number_of_an_international_network_is_refused_at_start(
    setting: str, number: str, handler_settings: Callable[..., Settings]
) -> None:
    # freephone, shared-cost, satellite and international networks' numbers: SNS texts none of
    # them (each Publish failed at AWS, every alert quarantined)
    text = refusal(setting, number, handler_settings)
    assert text.startswith(f"handlers.oncall.{setting}: '+"), text
    assert text.endswith(
        "is an international network's (+800 to +979: freephone, shared-cost, satellite, "
        "premium), which SNS sends no SMS to or from: give a country's mobile number"
    ), text


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("12345", "12345"),
        ("+1 415 555 2671", "+14155552671"),
        ("\u0665\u0665\u0665\u0665\u0665", "55555"),  # Arabic-Indic digits, as a number's are
        ("\uff11\uff12\uff13\uff14", "1234"),  # fullwidth
    ],
)
def test_an_origination_number_is_a_short_code_or_a_number(
    given: str, sent: str, handler_settings: Callable[..., Settings]
) -> None:
    # a short code (4 to 7 digits) has no country code: AWS takes its digits alone
    options = {"phone_numbers": ["+14155552671"], "origination_number": given}

    handler = build("oncall", options, handler_settings("q"))

    number = handler.attributes["AWS.MM.SMS.OriginationNumber"]
    assert number == {"DataType": "String", "StringValue": sent}


@pytest.mark.parametrize("given", ["123", "12345678", "01234"])
def test_an_origination_number_neither_a_short_code_nor_a_number_is_refused(
    given: str, handler_settings: Callable[..., Settings]
) -> None:
    options = {"phone_numbers": ["+14155552671"], "origination_number": given}

    with pytest.raises(ConfigError) as info:
        build("oncall", options, handler_settings("q"))

    assert str(info.value).startswith("handlers.oncall.origination_number: "), info.value
    assert "a short code is 4 to 7 digits" in str(info.value)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("0033 6 12 34 56 78", "it starts with 00, a dialling prefix, where E.164 has +"),
        ("011 33 6 12 34 56 78", "it starts with 011, a dialling prefix, where E.164 has +"),
        (  # in Arabic-Indic digits: before, "it has no country calling code"
            "\u0660\u0660\u0663\u0663 \u0666 \u0661\u0662 \u0663\u0664",
            "it starts with 00, a dialling prefix, where E.164 has +",
        ),
        ("(415) 555-2671", "it has no country calling code"),
    ],
)
def test_a_number_without_its_plus_says_what_is_missing(
    number: str, reason: str, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("oncall", {"phone_numbers": [number]}, handler_settings("q"))

    text = str(info.value)
    assert f"is not a phone number ({reason}); write it in international form" in text, text
    assert "default region" not in text


def test_a_short_code_written_without_quotes_is_taken_as_its_digits(
    handler_settings: Callable[..., Settings],
) -> None:
    # TOML's origination_number = 12345 is an integer: it was refused with "Input should be a
    # valid string", which does not say that the short code itself is fine
    options = {"phone_numbers": ["+14155552671"], "origination_number": 12345}

    handler = build("oncall", options, handler_settings("q"))

    number = handler.attributes["AWS.MM.SMS.OriginationNumber"]
    assert number == {"DataType": "String", "StringValue": "12345"}


@pytest.mark.parametrize("numbers", [[14155552671], 14155552671])
def test_a_number_written_without_quotes_is_told_what_it_lacks(
    numbers: object, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("oncall", {"phone_numbers": numbers}, handler_settings("q"))

    text = str(info.value)
    assert text.startswith("handlers.oncall.phone_numbers[0]: '141****2671' is not a phone"), text
    assert "(it has no country calling code); write it in international form" in text, text


@pytest.mark.parametrize(
    ("setting", "fix"),
    [
        ("phone_numbers[0]", 'write each as its own string of the list: ["+1 415 555 2671", '),
        ("origination_number", "give one"),
    ],
)
@pytest.mark.parametrize("given", ["+14155552671,+33612345678", "+1 415 555 2671; +1 415 555 2672"])
def test_several_numbers_in_one_string_are_told_apart_from_a_bad_number(
    setting: str, fix: str, given: str, handler_settings: Callable[..., Settings]
) -> None:
    # before: "is not a phone number (The string supplied did not seem to be a phone number.);
    # write it in international form", which each of the numbers already was
    text = refusal(setting, given, handler_settings)

    assert text.startswith(f"handlers.oncall.{setting}: '+14****"), text
    assert f" holds 2 numbers: {fix}" in text, text
    assert "international form" not in text
