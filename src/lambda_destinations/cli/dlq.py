"""``dlq peek|redrive|purge``: look into a dead-letter queue, put its messages back, empty it.

``dlq redrive`` is registered by its own module, imported when it runs (``dlq_group.lazy``):
what moves and re-invokes messages (``operations.redrive``, the replay, the S3 record reader)
is no part of `peek`'s and `purge`'s start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import click

from lambda_destinations._text import capped, visible
from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._app import group
from lambda_destinations.cli._common import aws_errors, dumps, subcommand
from lambda_destinations.cli._numbers import Whole
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import attribute_lines, plural, render_table
from lambda_destinations.config import Settings
from lambda_destinations.operations.dlq import QueueRef, describe_message, peek, resolve_queue
from lambda_destinations.operations.quarantine import attribute_text, pretty_body
from lambda_destinations.store import utcnow
from lambda_destinations.times import duration_unit
from lambda_destinations.worker.queues import storable_attributes


@group("dlq")
def dlq_group() -> None:
    """Dead-letter queues: peek at their messages, redrive them, purge them.

    QUEUE is a queue URL, name or ARN.

    \b
    Examples:
      lambda-destinations dlq peek orders-failures-dlq
      lambda-destinations dlq redrive orders-failures-dlq --dry-run
      lambda-destinations dlq redrive orders-failures-dlq --rate 50
      lambda-destinations dlq redrive orders-api-dlq --reinvoke --legacy-function orders-api
      lambda-destinations dlq purge orders-failures-dlq
    """


dlq_group.lazy["redrive"] = (
    "lambda_destinations.cli.dlq_redrive",
    "Put dead-lettered messages back where they came from, or re-invoke their functions.",
)


def _age(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    amount, unit = duration_unit(seconds)
    return f"{int(amount)}{unit[0]}"  # 90s, 5m, 3h, 2d


# -- peek -------------------------------------------------------------------------------------


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
    click.echo(
        f"{ref.name}: about {plural(ref.visible, 'message')} visible, {ref.in_flight} in flight; "
        f"showing {len(described)}",
        err=True,
    )
    if described:
        _show_peeked(described, with_body=with_body, queue=ref.name)


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


def say_shows_none(dlq: QueueRef, what: str, *, err: bool = False) -> None:
    """The one line of a redrive (or a peek) that found no message visible and did nothing:
    no question, no move task, no receive. SQS's counts are approximate: "shows", not "is"."""
    if dlq.shows_none:
        click.echo(
            f"{dlq.name} shows no messages (visible, in flight or delayed): nothing to {what}",
            err=err,
        )
        return
    click.echo(
        f"{dlq.name} shows no visible messages, {dlq.in_flight} in flight and {dlq.delayed} "
        "delayed (they show again when their visibility timeout or delay ends): nothing to "
        f"{what} now; run it again then",
        err=err,
    )


# -- purge ------------------------------------------------------------------------------------


@subcommand(dlq_group, "purge")
@click.argument("queue")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def purge_command(settings: Settings, queue: str, yes: bool) -> None:
    """Delete every message of a queue, after saying how many and asking.

    SQS deletes them within a minute and allows one purge a minute per queue. The messages
    cannot be recovered: peek first, or redrive.

    \b
    Examples:
      lambda-destinations dlq purge orders-failures-dlq
      lambda-destinations dlq purge orders-failures-dlq --yes
    """

    async def go() -> None:
        async with AwsClients(settings) as aws:
            sqs = await aws.client("sqs")
            ref = await resolve_queue(sqs, queue)
            count = ref.visible + ref.in_flight + ref.delayed
            if ref.shows_none:
                click.echo(f"{ref.name} is empty: nothing to purge")
                return
            if not yes:
                click.confirm(
                    f"Delete {'the 1 message' if count == 1 else f'all {count} messages'} of "
                    f"{ref.name} ({ref.visible} visible, "
                    f"{ref.in_flight} in flight, {ref.delayed} delayed)? This cannot be undone",
                    abort=True,
                    err=True,
                )
            await sqs.purge_queue(QueueUrl=ref.url)
            click.echo(f"purged {ref.name}: about {plural(count, 'message')} deleted")

    with aws_errors(settings):
        asyncio.run(go())
