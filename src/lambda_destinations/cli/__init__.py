"""The `lambda-destinations` command."""

from __future__ import annotations

from lambda_destinations.cli._app import LazyGroup, cli, own_process
from lambda_destinations.cli._output import wrap_stdout

# Every command: its name -> (the module of this package that registers it with `@command(name)`
# or `@group(name)`, the line `--help` shows for it). A module is imported only when one of
# its commands runs. To add a command, write its module and add its line here; a test checks
# that each line's module registers the command and that its docstring begins with the line.
COMMANDS: dict[str, tuple[str, str]] = {
    "completion": ("completion", "Print the shell completion script: bash, zsh or fish."),
    "config": (
        "config",
        "Show the settings in effect, each with where it came from; secrets masked.",
    ),
    "console": (
        "console",
        "Serve the browser console: failures, replays, DLQs and quarantine.",
    ),
    "decode": (
        "decode",
        "Decode one SQS message body the way the worker does, and show the result.",
    ),
    "dev": (
        "dev",
        "Run everything locally: an AWS endpoint, simulated functions, queues, SQLite, the worker.",
    ),
    "dlq": ("dlq", "Dead-letter queues: peek at their messages, redrive them, purge them."),
    "doctor": (
        "doctor",
        "Check the configuration against the live endpoint: a table of checks, each failure",
    ),
    "failures": (
        "failures",
        "Failed invocations in the store: list, show, logs, stats, ignore, reopen.",
    ),
    "healthcheck": (
        "healthcheck",
        "Ask this container's worker for its health: exit 0 when it answers 200, else 1.",
    ),
    "invoke": (
        "results",
        "Invoke a function asynchronously and print the request id; --wait for its outcome.",
    ),
    "migrate": (
        "run",
        "Apply the store's pending schema migrations (the worker also does at start).",
    ),
    "prune": ("prune", "Delete what the retention settings no longer keep, in small batches."),
    "quarantine": (
        "quarantine",
        "Messages the worker quarantined, kept in the store: list, show, resend.",
    ),
    "replay": (
        "replay",
        "Invoke failed invocations again, asynchronously, with their original payloads.",
    ),
    "result": (
        "results",
        "How an asynchronous invocation ended, by request id, as the store has its record.",
    ),
    "run": ("run", "Run the worker on the configured queues."),
    "store": (
        "store",
        "Back up the store, or copy its records into another store (SQLite to PostgreSQL).",
    ),
    "simulate": (
        "dev",
        "Send realistic destination records to a queue (successes, failures, envelopes, poison).",
    ),
}


def _register(group: LazyGroup) -> None:
    for name, (module, help_line) in COMMANDS.items():
        group.lazy[name] = (f"{__name__}.{module}", help_line)


_register(cli)


def main() -> None:
    """Console-script entry point."""
    own_process()
    wrap_stdout()
    cli(prog_name="lambda-destinations")


__all__ = ["COMMANDS", "cli", "main"]
