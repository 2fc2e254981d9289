"""``dlq peek``: show a queue's messages, decoded, and leave them there.

A module of its own, imported when the command runs (``dlq_group.lazy`` in ``cli/dlq.py``):
what decodes and shows a message (the schemas, ``operations.quarantine``'s body printing) is
no part of the group's help nor of `purge`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import click

from lambda_destinations._text import capped, visible
from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._common import aws_errors, dumps, subcommand
from lambda_destinations.cli._numbers import Whole
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import attribute_lines, plural, render_table
from lambda_destinations.cli.dlq import dlq_group, say_shows_none
from lambda_destinations.config import Settings
from lambda_destinations.operations.dlq import QueueRef, describe_message, peek, resolve_queue
from lambda_destinations.operations.quarantine import attribute_text, pretty_body
from lambda_destinations.times import duration_unit, utcnow
from lambda_destinations.worker.queues import storable_attributes


def _age(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    amount, unit = duration_unit(seconds)
    return f"{int(amount)}{unit[0]}"  # 90s, 5m, 3h, 2d


@subcommand(dlq_group, "peek")
@click.argument("queue")
@click.option(
    "--limit",
    type=Whole(1, 10000),
    default=10,
    show_default=True,
    help="Show at most this many messages.",
)
@click.option(
    "--body", "with_body", is_flag=True, help="Show each message's body and attributes too."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@settings_options
def peek_command(
    settings: Settings, queue: str, limit: int, with_body: bool, as_json: bool
) -> None:
    """Show the messages of a queue, decoded, and leave them there.

    For each message: what it is (an invocation record, a stream failure, a legacy DLQ
    message, or not a record at all), the function, condition and error (or why the worker
    quarantined it), its age and how many times it was received before this look.

    SQS has no read-only look: each message is received once and made visible again at
    once, which adds one to its receive count. On a queue that has a redrive policy of its
    own, peeking can therefore move messages on.

    \b
    Examples:
      lambda-destinations dlq peek orders-failures-dlq
      lambda-destinations dlq peek https://sqs.us-east-1.amazonaws.com/123456789012/q --limit 50
      lambda-destinations dlq peek orders-failures-dlq --json | jq '.[].error_type'
      lambda-destinations dlq peek orders-failures-dlq --body --limit 1
    """

    async def go() -> tuple[QueueRef, list[dict[str, Any]]]:
        async with AwsClients(settings) as aws:
            sqs = await aws.client("sqs")
            ref = await resolve_queue(sqs, queue)
            return ref, await peek(sqs, ref.url, limit)

    with aws_errors(settings):
        ref, messages = asyncio.run(go())
    now = utcnow()
    described = [describe_message(m, now) for m in messages]
    if with_body:
        for message, item in zip(messages, described, strict=True):
            item["body"] = message.get("Body", "")
            # JSON-able: a Binary value as base64, as the store keeps it.
            item["message_attributes"] = storable_attributes(message.get("MessageAttributes") or {})
    if as_json:
        click.echo(dumps(described))
        return
    if not described and ref.shows_none_visible:
        say_shows_none(ref, "show", err=True)
        return
    click.echo(_showing(ref, len(described), limit), err=True)
    if described:
        _show_peeked(described, with_body=with_body, queue=ref.name)


def _showing(ref: QueueRef, shown: int, limit: int) -> str:
    """The line above the table: how many the queue shows, and how many this look does."""
    about = plural(ref.visible, "message")
    line = f"{ref.name}: about {about} visible, {ref.in_flight} in flight; showing {shown}"
    if ref.fifo and shown < min(limit, ref.visible):
        # A FIFO queue hands out no more of a message group while some of it is in flight, as
        # this look's own receives are: the rest shows once those before it are deleted.
        line += (
            " (a FIFO queue shows the next messages of a group only once those before them are "
            "deleted)"
        )
    return line


def _show_peeked(described: Sequence[dict[str, Any]], *, with_body: bool, queue: str) -> None:
    """The peeked messages as a table, then (``with_body``) each one's attributes and body,
    each body cut as the console cuts it (a body carries up to 1 MiB)."""
    click.echo(
        render_table(
            ["AGE", "KIND", "FUNCTION", "CONDITION", "ERROR / REASON", "RECEIVES", "MESSAGE ID"],
            [
                [
                    _age(d["age_seconds"]),
                    d.get("kind"),
                    d.get("function_name"),
                    d.get("condition"),
                    _error(d),
                    d["receive_count"],
                    d["message_id"],
                ]
                for d in described
            ],
            flex=(4, 2, 3, 1),
            right=(5,),
            starts={6: 8},  # enough to find each one's section below (--body), which names it whole
        )
    )
    if with_body:
        whole = f"dlq peek {queue} --body --json prints it whole"
        for item in described:
            click.echo(f"\n── {item['message_id']}")
            attributes = item["message_attributes"].items()
            for line in attribute_lines((name, attribute_text(v)) for name, v in attributes):
                click.echo(visible(line))
            click.echo(visible(capped(pretty_body(item["body"]), whole)))


def _error(described: dict[str, Any]) -> str | None:
    parts = []
    if described.get("decode_error"):
        parts.append(described["decode_error"])
    elif described.get("error_type") or described.get("error_message"):
        error_type, message = described.get("error_type"), described.get("error_message")
        parts.append(
            f"{error_type}: {message}" if error_type and message else error_type or message
        )
    if described.get("quarantine_reason"):
        parts.append(f"[quarantined: {described['quarantine_reason']}]")
    return " ".join(parts) or None
