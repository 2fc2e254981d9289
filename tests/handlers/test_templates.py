"""Templates: record fields in, text out; anything reaching further is refused at start."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from handler_helpers import failure_record
from pydantic import BaseModel, Field, ValidationError

from lambda_destinations.config import RouteConfig, load_settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import HandlerContext, HandlerRegistry
from lambda_destinations.handlers.storm import DIGEST_FIELDS
from lambda_destinations.handlers.templates import (
    RECORD_FIELDS,
    Duration,
    SafeFormatter,
    Template,
    describe_duration,
    parse_duration,
    record_fields,
)
from lambda_destinations.schemas import decode

MALICIOUS = [
    "{record.__class__.__init__.__globals__}",
    "{payload.__class__.__mro__}",
    "{payload[__class__]}",
    "{error_type.__len__}",
    "{summary:{function_name.__doc__}}",
    "{__import__}",
    "{error_message.upper}",
    "{0.__class__}",
    "{}",
    "{settings}",
    "{error_message!x}",
    "{error_message:>999999999}",
    "{error_message:,}",
]


@pytest.mark.parametrize("text", MALICIOUS)
def test_templates_that_reach_beyond_record_fields_are_refused(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Template.compile(f"alert: {text}", where="handlers.oncall.message")

    message = str(info.value)
    assert message.startswith("handlers.oncall.message: ")
    assert "\n" not in message


def test_the_refusal_names_the_field_and_says_why() -> None:
    with pytest.raises(ConfigError) as info:
        Template.compile("{record.__class__.__init__.__globals__}", where="handlers.sms1.message")

    assert str(info.value).startswith(
        "handlers.sms1.message: template field {record.__class__.__init__.__globals__} is "
        'refused: names with "__" are never allowed'
    )


def test_the_formatter_itself_never_reads_attributes() -> None:
    # even without the check at start: names outside the mapping, attributes and dunders
    # render as nothing
    class Secret:
        token = "s3cr3t"

    formatter = SafeFormatter()
    fields: dict[str, Any] = {"payload": {"a": 1}, "record": Secret(), "summary": "x"}

    rendered = formatter.vformat(
        "[{record.__class__.__init__.__globals__}][{record.token}][{summary.__class__}]"
        "[{payload.__class__}][{nothing}]",
        (),
        fields,
    )

    assert rendered == "[][][][][]"
    assert "s3cr3t" not in rendered


def test_record_fields_and_payload_keys_render() -> None:
    record = failure_record(
        "orders-api",
        request_id="4f1b1e3a-0000-4000-8000-000000000001",
        payload={"orderId": "o-42", "customer": {"id": 7}, "items": [{"sku": "a-1"}]},
    )
    message = decode(json.dumps(record))
    template = Template.compile(
        "{function_name}:{qualifier} {error_type} {invoke_count} order {payload.orderId} "
        "customer {payload[customer][id]} sku {payload.items[0][sku]} missing [{payload.nope}] "
        "{error_message:.9}| {summary!r}",
        where="t",
    )

    text = template.render(record_fields(message, _context(message.key)))

    assert text == (
        "orders-api:$LATEST TimeoutError 3 order o-42 customer 7 sku a-1 missing [] Task time| "
        "'orders-api failed (RetriesExhausted): TimeoutError: Task timed out after 3.00 seconds'"
    )


@pytest.mark.parametrize("index", ["²", "①", "٠", "9" * 5000])
def test_an_array_index_in_other_digits_than_ascii_or_too_long_renders_nothing(index: str) -> None:
    # "²" and "①" are digits to str.isdigit() and no number to int(), nor are 5,000 digits
    # (Python's limit is 4,300): the render raised ValueError, a traceback at every delivery
    # until the DLQ; an Arabic-Indic zero read item 0
    message = decode(json.dumps(failure_record(payload={"items": ["a", "b", "c"]})))
    template = Template.compile(f"[{{payload.items[{index}]}}] [{{payload.items[2]}}]", where="t")

    text = template.render(record_fields(message, _context(message.key)))

    assert text == "[] [c]"


def test_details_and_stack_trace_start() -> None:
    message = decode(json.dumps(failure_record("billing", error_type="KeyError")))
    fields = record_fields(message, _context(message.key), stack_lines=2)

    assert fields["stack_trace"].splitlines() == [
        '  File "/var/task/app.py", line 42, in handler',
        "    return process(event)",
    ]
    assert "Error type:    KeyError" in fields["details"]
    assert "Stack trace (first lines):" in fields["details"]
    assert "raise KeyError" not in fields["details"]  # only the first two lines


def test_html_templates_escape_values() -> None:
    record = failure_record(message="<script>alert(1)</script>")
    message = decode(json.dumps(record))
    template = Template.compile("<p>{error_message}</p>", where="t", escape=html.escape)

    rendered = template.render(record_fields(message, _context(message.key)))

    assert rendered == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_body_templates_clean_each_value_before_cutting_it_and_keep_their_own_text() -> None:
    # given: a value with CR LF and a lone CR (one character each once cleaned), ESC and RLO,
    # and a template whose own text has a form feed
    template = Template.compile("{error_message:.12}\f|\n", where="t", body=True)

    # when
    text = template.render({"error_message": "a\r\nb\rc\x1b[0m\u202ed-and-more"})

    # then: the cut counts the cleaned characters; the template's form feed stays
    assert text == "a\nb\nc\ufffd[0m\ufffdd-\f|\n"


def test_digest_templates_have_their_own_fields() -> None:
    Template.compile("{count} more {what} of {function_name}", where="t", allowed=DIGEST_FIELDS)
    with pytest.raises(ConfigError, match="'request_id' is not a field"):
        Template.compile("{request_id}", where="t", allowed=DIGEST_FIELDS)
    assert "count" not in RECORD_FIELDS


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(300, 300.0), ("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), (2.5, 2.5)],
)
def test_durations(given: object, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["nan", "inf", float("nan"), "-inf"])
def test_a_duration_that_is_no_number_of_seconds_is_refused_as_such(given: object) -> None:
    class Options(BaseModel):
        window: Duration = Field(ge=0, le=86400)

    with pytest.raises(ValidationError, match="finite number"):
        Options.model_validate({"window": given})


def test_durations_in_words() -> None:
    assert describe_duration(300) == "5 minutes"
    assert describe_duration(60) == "1 minute"
    assert describe_duration(7200) == "2 hours"
    assert describe_duration(45) == "45 seconds"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_a_malicious_template_stops_the_worker_at_start(tmp_path: Path) -> None:
    settings = load_settings(
        queues=["q"],
        store=f"sqlite:///{tmp_path / 's.db'}",
        handlers={
            "oncall": {
                "type": "sms",
                "phone_numbers": ["+14155552671"],
                "message": "{record.__class__.__init__.__globals__}",
            }
        },
        routes=[RouteConfig(handlers=("persist", "oncall"))],
    )

    with pytest.raises(ConfigError, match=r"^handlers\.oncall\.message: template field"):
        HandlerRegistry(settings).router()


def test_the_run_command_refuses_a_malicious_template_in_one_line(
    tmp_path: Path, endpoint_url: str
) -> None:
    config = tmp_path / "lambda-destinations.toml"
    config.write_text(
        'queues = ["orders-failures"]\n'
        "[[routes]]\n"
        'handlers = ["persist", "oncall-mail"]\n'
        "[handlers.oncall-mail]\n"
        'type = "email"\n'
        'from = "alerts@example.com"\n'
        'to = ["oncall@example.com"]\n'
        'subject = "{error_type} {record.__class__.__init__.__globals__}"\n'
    )
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_CONFIG": str(config),
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
    }

    result = subprocess.run(
        [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "run", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3
    assert f"handlers.oncall-mail.subject (the TOML file {config}): template field" in (
        result.stderr
    )
    assert "{record.__class__.__init__.__globals__} is refused" in result.stderr
    assert "Traceback" not in result.stderr


def _context(key: str) -> HandlerContext:
    import structlog

    return HandlerContext(
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures",
        queue_name="orders-failures",
        message_id="m-1",
        receive_count=1,
        key=key,
        log=structlog.get_logger(),
    )
