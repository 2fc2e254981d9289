"""``doctor``: is my setup right? Checks against the live endpoint and store, with fixes."""

from __future__ import annotations

import asyncio

import click

from lambda_destinations.cli._app import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, command
from lambda_destinations.cli._common import dumps, function_option
from lambda_destinations.cli._options import settings_options
from lambda_destinations.cli._table import render_table
from lambda_destinations.config import Settings

_SHOWN = {"ok": "ok", "warn": "warn", "error": "ERROR"}


@command("doctor")
@function_option(
    "Check the destinations of these functions only (shell glob); default: every "
    "function the credentials can list."
)
@click.option("--json", "as_json", is_flag=True, help="The checks as one JSON object.")
@settings_options
def doctor_command(settings: Settings, function_glob: str | None, as_json: bool) -> None:
    """Check the configuration against the live endpoint: a table of checks, each failure
    with its fix.

    \b
    It checks that:
      - AWS credentials and region are usable, and the endpoint answers;
      - each queue exists and can be read with these credentials;
      - each queue is a standard queue (Lambda destinations cannot be FIFO);
      - each queue has a redrive policy to a dead-letter queue that exists;
      - the credentials may delete and change the visibility of each queue's messages, and
        send to its DLQ (each tried so that no message changes: none is sent);
      - the visibility timeout leaves the heartbeat room to keep long handlers' messages hidden;
      - the retry backoff over maxReceiveCount fits within the message retention period;
      - where the Lambda API answers, each function's asynchronous-invocation destination
        (event-invoke config) is a polled queue, directly or through an SNS topic;
      - each configured handler builds from its settings: SES may send as an email's sender,
        SMTP answers, the SMS spending limit is not 0 and no number has opted out, a
        replay's functions exist; each handler's own timeout is within handler_timeout;
      - a route that replays failures has a route of successes that links replay outcomes;
      - the store answers and is migrated (PostgreSQL: its user may write every table;
        SQLite: the file has room to grow, on its disk and under the file size limit).

    \b
    Examples:
      lambda-destinations doctor
      lambda-destinations doctor --config lambda-destinations.toml --function 'orders-*'
      lambda-destinations doctor --json | jq '.checks[] | select(.status != "ok")'

    Exit status: 0 when no check is an error (warnings pass), 1 when one is, 4 when the
    endpoint or the store cannot be reached, or a SQLite store has no room to grow.
    """
    # Imported here: `doctor --help` loads neither the AWS clients nor the handlers.
    from lambda_destinations.operations.doctor import Doctor, exit_status

    checks = asyncio.run(Doctor(settings, function_glob=function_glob).run())
    outcome = exit_status(checks)
    if as_json:
        click.echo(dumps({"ok": outcome == "ok", "checks": [c.as_dict() for c in checks]}))
    else:
        click.echo(
            render_table(
                ["CHECK", "STATUS", "DETAIL", "FIX"],
                [[c.check, _SHOWN[c.status], c.detail, c.fix] for c in checks],
                flex=(2, 3),
                wrap=True,
            )
        )
        errors = sum(1 for c in checks if c.status == "error")
        warnings = sum(1 for c in checks if c.status == "warn")
        click.echo(
            f"\n{len(checks)} checks: {errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}",
            err=True,
        )
    raise SystemExit(
        {"ok": EXIT_OK, "failed": EXIT_FAILED, "unreachable": EXIT_UNREACHABLE}[outcome]
    )
