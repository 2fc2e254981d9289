"""``lambda-destinations decode``: what the worker makes of one message."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import click

from lambda_destinations._text import visible
from lambda_destinations.cli._app import EXIT_FAILED, EXIT_USAGE, command, fail
from lambda_destinations.cli._output import read_stdin
from lambda_destinations.cli._table import field_lines
from lambda_destinations.schemas import (
    NO_REQUEST_CONTEXT,
    DecodedMessage,
    DecodeError,
    MessageKind,
    decode,
    json_kind,
    load_file,
)
from lambda_destinations.times import utc_text

# How much of a long value the readable summary shows; --json always has everything.
_STACK_LINES = 12
_PAYLOAD_CHARS = 300


def _files(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """PATH completes as a file name with Tab (a plain argument completed nothing). Not a
    ``click.Path``: that would refuse an unreadable file in click's words, not decode's."""
    return [click.shell_completion.CompletionItem(incomplete, type="file")]


@command("decode")
@click.option(
    "--message",
    "whole_message",
    is_flag=True,
    help="The input is a whole SQS message as ReceiveMessage returns it (Body, "
    "MessageAttributes), not just its body.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")
@click.argument("path", metavar="PATH|-", shell_complete=_files)
def decode_command(path: str, whole_message: bool, as_json: bool) -> None:
    """Decode one SQS message body the way the worker does, and show the result.

    PATH is a file holding the message body, or - to read standard input. Exits 0 when the
    message decodes, 1 (with the reason on one line) when it does not, 2 when PATH cannot be
    read.

    \b
    Examples:
      lambda-destinations decode body.json
      lambda-destinations decode --json body.json | jq .error_type
      aws sqs receive-message --queue-url "$URL" --message-attribute-names All \\
        | jq '.Messages[0]' | lambda-destinations decode --message -
    """
    data = _read(path)
    attributes: Mapping[str, Any] | None = None
    body: str | bytes = data
    try:
        if whole_message:
            body, attributes = _sqs_message(data)
        decoded = decode(body, attributes)
    except DecodeError as exc:
        reason = exc.reason if whole_message else _without_attributes(exc.reason)
        if as_json:  # scripts get an object on stdout too: {"error": reason}
            click.echo(json.dumps({"error": reason, "kind": "not-a-record"}))
        fail(reason, EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(_whole(decoded)))
    else:
        click.echo(_readable(decoded))


_GIVE = "give a file holding the message body, or - to read standard input"


def _without_attributes(reason: str) -> str:
    """``reason``, with the way on when a body alone may be a dead-letter queue's message: its
    body is the function's event, and what makes it one are the message's attributes."""
    if not reason.startswith(NO_REQUEST_CONTEXT):
        return reason
    return (
        f"{reason}; a dead-letter queue's message is the function's own event, known by its "
        "attributes: give the whole SQS message with --message"
    )


# More than any SQS message holds: what is longer is no message (a device that never ends,
# /dev/zero, was read until memory ran out).
READ_MAX = 16 << 20


def _read(path: str) -> bytes:
    if not path:  # open("") says only "No such file or directory", naming nothing
        fail(f"PATH is empty: {_GIVE}", EXIT_USAGE)
    source = "standard input" if path == "-" else path
    try:
        if path == "-":
            return _at_most(read_stdin(READ_MAX + 1), source)
        with open(path, "rb") as stream:
            return _at_most(stream.read(READ_MAX + 1), source)
    except OSError as exc:
        fail(f"cannot read {source} ({exc.strerror or exc}): {_GIVE}", EXIT_USAGE)


def _at_most(data: bytes, source: str) -> bytes:
    if len(data) > READ_MAX:
        fail(
            f"{source} holds more than {READ_MAX >> 20} MiB, more than a message does: {_GIVE}",
            EXIT_USAGE,
        )
    return data


def _sqs_message(data: bytes) -> tuple[str, Mapping[str, Any] | None]:
    """Body and message attributes of an SQS message (or a one-message ReceiveMessage result)."""
    doc = load_file(data, "--message input")
    if isinstance(doc, dict) and isinstance(doc.get("Messages"), list):
        if len(doc["Messages"]) != 1:
            raise DecodeError(
                f"--message input holds {len(doc['Messages'])} messages; pass exactly one"
            )
        doc = doc["Messages"][0]
    if not isinstance(doc, dict):
        raise DecodeError(
            f"--message input is {json_kind(doc)}, not an SQS message: expected one as "
            "ReceiveMessage returns it"
        )
    body = doc.get("Body", doc.get("body"))
    if body is None:
        raise DecodeError(
            "--message input has no Body: expected an SQS message as ReceiveMessage returns it"
        )
    if not isinstance(body, str):
        raise DecodeError(
            f"--message input's Body is {json_kind(body)}, not text: an SQS message's Body is "
            "the body as a JSON string"
        )
    attributes = doc.get("MessageAttributes", doc.get("messageAttributes"))
    if attributes is not None and not isinstance(attributes, dict):
        raise DecodeError("--message input has MessageAttributes that are not an object")
    return body, attributes


def _whole(decoded: DecodedMessage) -> dict[str, Any]:
    """--json: the summary, then what the text shows in part (the stack trace, the payloads)
    and the record as received (after its envelope), as `failures show --json` has them."""
    return {
        **decoded.summary(),
        "stack_trace": decoded.stack_trace,
        "request_payload": decoded.request_payload,
        "response_payload": decoded.response_payload,
        "record": decoded.record_json,
    }


def _readable(decoded: DecodedMessage) -> str:
    """Aligned ``name: value`` lines, then the stack trace and a glimpse of the payloads."""
    rows: list[tuple[str, str]] = [
        (_label(decoded, name), _value(decoded, name, value))
        for name, value in decoded.summary().items()
    ]
    if decoded.stack_trace:
        shown = decoded.stack_trace[:_STACK_LINES]
        hidden = len(decoded.stack_trace) - len(shown)
        if hidden:
            shown = [*shown, f"... {hidden} more line{'s' if hidden > 1 else ''}"]
        rows.append(("stack_trace", "\n".join(shown)))
    if _payloads_dropped(decoded):
        rows.append(("request_payload", _DROPPED))
    elif decoded.request_payload is not None:
        rows.append(("request_payload", _request_glimpse(decoded)))
    # A failure's response payload is the error already shown above.
    if decoded.response_payload is not None and decoded.error_message is None:
        rows.append(("response_payload", _glimpse(decoded.response_payload)))
    width = max(len(name) for name, _ in rows) + 2
    lines = field_lines(((name + ":", value) for name, value in rows), width)
    return _printable(visible("\n".join(lines)))


def _label(decoded: DecodedMessage, name: str) -> str:
    # A legacy DLQ message's ErrorCode is the HTTP status of the invocation, not an error type.
    if name == "error_type" and decoded.kind == MessageKind.LEGACY_DLQ:
        return "error_code"
    return name


def _value(decoded: DecodedMessage, name: str, value: Any) -> str:
    # The record's time as the other text outputs show one (failures show, result): in UTC, to
    # the second; --json keeps it ISO 8601.
    if name == "timestamp" and decoded.timestamp is not None:
        return f"{utc_text(decoded.timestamp)} UTC"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# Every invocation record carries the event (`{}` for an Invoke without one); Lambda leaves
# both payloads out of a record too large for its destination (SNS takes 256 KB).
_DROPPED = (
    "none: Lambda left the payloads out of the record (it does when the record is too large "
    "for its destination)"
)


def _payloads_dropped(decoded: DecodedMessage) -> bool:
    record = decoded.record_json
    return (
        decoded.kind == MessageKind.INVOCATION
        and isinstance(record, dict)
        and "requestPayload" not in record
    )


def _request_glimpse(decoded: DecodedMessage) -> str:
    """The event as :func:`_glimpse` shows it; a dead-letter queue's body that is no JSON as
    the text it is, said so (quoted, it would read as a JSON string)."""
    record = decoded.record_json
    if decoded.kind == MessageKind.LEGACY_DLQ and not record.get("bodyIsJson", True):
        return _cut(f"(not JSON) {decoded.request_payload}")
    return _glimpse(decoded.request_payload)


def _glimpse(value: Any) -> str:
    """A payload as JSON, a string quoted: unquoted, "42" read as the number and "{}" as
    an object."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return _cut(text)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _PAYLOAD_CHARS else f"{text[: _PAYLOAD_CHARS - 3]}..."


def _printable(text: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which no terminal encoding accepts.
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)
