"""``dlq peek|redrive|purge``: look into a dead-letter queue, put its messages back, empty it.

This module makes the group; each command is registered by a module of its own, imported
when it runs, is completed or is asked for its ``--help`` (``dlq_group.lazy``): the group's
``--help`` imports no AWS client nor what any one command uses, `purge` neither what `peek`
decodes and shows messages with (the schemas, ``operations.quarantine``'s body printing) nor
what `redrive` moves and re-invokes them with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lambda_destinations.cli._app import group

if TYPE_CHECKING:
    from lambda_destinations.operations.dlq import QueueRef


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


dlq_group.lazy.update(
    {
        "peek": (
            "lambda_destinations.cli.dlq_peek",
            "Show the messages of a queue, decoded, and leave them there.",
        ),
        "purge": (
            "lambda_destinations.cli.dlq_purge",
            "Delete every message of a queue, after saying how many and asking.",
        ),
        "redrive": (
            "lambda_destinations.cli.dlq_redrive",
            "Put dead-lettered messages back where they came from, or re-invoke their functions.",
        ),
    }
)


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
