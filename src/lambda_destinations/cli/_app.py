"""The `lambda-destinations` click group, exit codes, and one-line error reporting."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from lambda_destinations import __version__
from lambda_destinations.errors import ConfigError, LambdaDestinationsError, StoreUnavailable
from lambda_destinations.redact import redact

P = ParamSpec("P")
R = TypeVar("R")

# Documented in the README ("Exit codes"); scripts rely on them.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a failure (a message that does not decode, a check)
EXIT_USAGE = 2  # bad arguments (click's own code)
EXIT_CONFIG = 3  # configuration that cannot work
EXIT_UNREACHABLE = 4  # an AWS endpoint or the store cannot be reached
EXIT_INTERRUPTED = 130


class EndpointUnreachable(LambdaDestinationsError):
    """An AWS endpoint did not answer; the message names it and the fix."""


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    click.echo(f"error: {redact(message)}", err=True)
    sys.exit(code)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into one line and a documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        except (StoreUnavailable, EndpointUnreachable) as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lambda-destinations")
def cli() -> None:
    """Consume AWS Lambda async-invocation destination queues; inspect and replay failures.

    \b
    Start here:
      lambda-destinations dev --simulate 50    a local endpoint, queues, SQLite and the worker
      lambda-destinations decode message.json  what the worker makes of one message
    """


def command(name: str, **kwargs: Any) -> Callable[[Callable[P, R]], click.Command]:
    """Register a top-level command whose user errors are reported in one line."""

    def decorate(func: Callable[P, R]) -> click.Command:
        return cli.command(name, **kwargs)(reports_errors(func))

    return decorate
