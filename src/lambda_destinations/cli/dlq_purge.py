"""``dlq purge``: delete every message of a queue, after saying how many and asking.

A module of its own, imported when the command runs (``dlq_group.lazy`` in ``cli/dlq.py``):
it resolves a queue and purges it, and imports nothing `peek` decodes messages with.
"""

from __future__ import annotations

import asyncio

import click

from lambda_destinations.aws import AwsClients
from lambda_destinations.cli._app import confirm, fail
from lambda_destinations.cli._common import aws_errors, subcommand
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import plural
from lambda_destinations.cli.dlq import dlq_group
from lambda_destinations.config import Settings
from lambda_destinations.operations.dlq import (
    PurgedRecently,
    nothing_to_purge,
    purge,
    resolve_queue,
)


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
            count = ref.held
            if (empty := nothing_to_purge(ref)) is not None:
                click.echo(empty)
                return
            if not yes:
                confirm(
                    f"Delete {'the 1 message' if count == 1 else f'all {count} messages'} of "
                    f"{ref.name} ({ref.visible} visible, "
                    f"{ref.in_flight} in flight, {ref.delayed} delayed)? This cannot be undone"
                )
            try:
                await purge(sqs, ref)
            except PurgedRecently as exc:
                fail(str(exc))
            click.echo(f"purged {ref.name}: about {plural(count, 'message')} deleted")

    with aws_errors(settings):
        asyncio.run(go())
