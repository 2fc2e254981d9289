"""The `lambda-destinations` click group, exit codes, and one-line error reporting."""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NoReturn, ParamSpec, TypeVar

import click

from lambda_destinations._text import not_utf8, visible
from lambda_destinations.cli._output import OutputUnwritable, discard_stdout
from lambda_destinations.errors import (
    NO_REGION,
    ConfigError,
    LambdaDestinationsError,
    QueueNotFound,
    StoppedBeforeStart,
    StoreMisconfigured,
    StoreUnavailable,
)
from lambda_destinations.logs import final_line
from lambda_destinations.redact import redact

if TYPE_CHECKING:  # botocore costs every command's start-up, --help included
    from botocore.exceptions import ClientError

P = ParamSpec("P")
R = TypeVar("R")

# Documented in the README ("Exit codes"); scripts rely on them.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and found a failure (a message that does not decode, a check)
EXIT_USAGE = 2  # bad arguments (click's own code)
EXIT_CONFIG = 3  # configuration that cannot work
EXIT_UNREACHABLE = 4  # an AWS endpoint or the store cannot be reached
EXIT_NO_RESULT = 5  # `invoke --wait`, `result`: no record of the request id (within the wait)
EXIT_DECLINED = 6  # the answer to a confirmation was no (or none came): nothing was changed
EXIT_TASK_FAILED = 7  # the worker stopped because one of its long-lived tasks died
EXIT_INTERRUPTED = 130  # Ctrl-C, or a signal before the worker had started
EXIT_OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what reads the output stopped reading (`| head`)
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped by SIGTERM (`run`: a second one)


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as a Ctrl-C is: what the command holds is closed on the way out (its
    console's connections, a redrive's report of what it moved), then exit 143."""


class EndpointUnreachable(LambdaDestinationsError):
    """An AWS endpoint did not answer; the message names it and the fix."""


def echo_error(text: str) -> None:
    """Write ``text`` on stderr, where the CLI's error lines go, as a person may read it:
    secrets masked (:func:`redact`), control and bidi characters spelled as escapes
    (:func:`visible`), since it may repeat what was typed or what a store or queue holds.

    Where stderr cannot be written (its reader gone, ``2>&1 | head``; a terminal gone with its
    ssh session) the line is dropped: the exit code that follows it still says what it would
    have."""
    try:
        click.echo(visible(redact(text)), err=True)
    except OutputUnwritable as exc:
        discard_stdout(exc.fd)


class ValueRefused(click.BadParameter):
    """A callback's refusal of a value, shown as its own line (``error: --since: ...``, exit 2)
    with no "Invalid value for" before it. Raised, not an exit: click's completion parses the
    line leniently and passes over a bad value, where an exit printed the line into the shell
    over its prompt and completed nothing."""

    def format_message(self) -> str:
        return self.message


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    say_last(message, code, prefix="error: ")
    sys.exit(code)


def say_last(text: str, code: int, *, prefix: str = "") -> None:
    """Write the line a command ends on with ``code``: with ``log_format`` json, one JSON log
    line (``text``, level error, ``exit_code``; a code of 130 or 143, an interruption, at
    level warning) that a log pipeline parses as it parses the rest; else ``prefix`` and
    ``text`` as :func:`echo_error` writes them."""
    level: Literal["warning", "error"] = (
        "warning" if code in (EXIT_INTERRUPTED, EXIT_TERMINATED) else "error"
    )
    if not final_line(text, exit_code=code, level=level):
        echo_error(f"{prefix}{text}")


@contextlib.contextmanager
def click_errors_shown() -> Iterator[None]:
    """click's own errors (a bad option value, an unknown command or option, an extra
    argument), which repeat what was typed, shown through :func:`echo_error` as one line like
    every other error; then the exit with click's code (2 for usage)."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError as exc:  # a group alone (`dlq`): its help
        echo_error(exc.format_message())
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        say_last(_one_line(exc), exc.exit_code, prefix="error: ")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        # Ctrl-C before the command's own handling (reports_errors) began: while the command
        # line is parsed or the command's module imported. click's own said "Aborted!", exit 1.
        _interrupted(exc)
    except OutputUnwritable as exc:
        # What click itself prints there (`--help`, `--version`) under a full disk or a
        # reader that went away: a traceback and exit 120 before.
        _output_unwritable(exc)


def _output_unwritable(exc: OutputUnwritable) -> NoReturn:
    """Leave when stdout cannot be written: quietly (141) when its reader went away, else the
    one line that says so (1). When it is stderr that cannot be written, the line would go
    there: 141 or 1 without it."""
    discard_stdout(exc.fd)
    if exc.reader_left:  # no error of ours: the reader wants no more
        sys.exit(EXIT_OUTPUT_CLOSED)
    if exc.on_stderr:
        sys.exit(EXIT_FAILED)
    if exc.closed_at_start:
        fail(
            "cannot write the output: stdout is closed (>&-): send it somewhere, "
            "as > /dev/null does to drop it"
        )
    fail(
        f"cannot write the output ({exc.strerror}): free space where it goes, or send it elsewhere"
    )


def _interrupted(exc: KeyboardInterrupt) -> NoReturn:
    """Leave on a Ctrl-C (or SIGTERM): its line and the documented code."""
    _leaving_on_interrupt()
    terminated = isinstance(exc, Terminated) or _terminated
    code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    say_last("terminated" if terminated else "interrupted", code)
    sys.exit(code)


def _one_line(exc: click.ClickException) -> str:
    """What click would show in four lines (the usage, "Try ... for help.", a blank line and
    ``Error: ...``), in one: the problem, then where the command's options are listed.

    A bad value needs no pointer to the help: its message says what the option takes. The
    message is click's unformatted one, so escape sequences typed are spelled out by
    :func:`echo_error`, not stripped as click strips them from what is not a terminal.
    """
    # click lists a missing choice argument's choices one a line: in one line too (a value
    # typed is shown by repr, its own line breaks escaped)
    message = re.sub(r"\s*\n\s*", " ", exc.format_message())
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    bad_value = isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter)
    if ctx is None or bad_value or ctx.command.get_help_option(ctx) is None:
        return message
    option = max(ctx.command.get_help_option_names(ctx), key=len)  # --help, not -h
    if not message.endswith((".", "?", "?)")):
        message += "."
    return f"{message} Try '{ctx.command_path} {option}' for help."


# Set by the console script's entry point (main): the process is the command's own, and how it
# takes a signal is the command's to change; not when a test or a program runs ``cli`` in its
# own process, which would then ignore every Ctrl-C after the first.
_owns_process = False
_terminated = False  # a SIGTERM came, taken as asyncio.run takes a Ctrl-C (see _terminate)


def own_process() -> None:
    """Mark the process as the command's own (see ``_leaving_on_interrupt``), and take SIGTERM
    as a Ctrl-C (:class:`Terminated`). Its default action ends a process, but not the first
    of a container (pid 1), to which the kernel delivers no signal it has no handler for:
    there `console` (or a wait, a redrive) ignored `docker stop` until its SIGKILL (exit 137).
    A SIGTERM ignored by what started the command stays ignored; `run` and `dev` install their
    own."""
    global _owns_process
    _owns_process = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM. Inside ``asyncio.run`` it does what a Ctrl-C does there: the command's task is
    cancelled at its next await and cleans up (what a replay or a redrive sent, said), then
    ``KeyboardInterrupt``; the exit is 143 all the same. Raised where the code then was, it
    cut a step in its middle (a database driver's reply half read: a traceback, exit 1) and
    asyncio cancelled every task at once. Elsewhere :class:`Terminated`, at once."""
    global _terminated
    on_sigint = signal.getsignal(signal.SIGINT)
    asyncio = sys.modules.get("asyncio")
    runner = getattr(getattr(on_sigint, "func", None), "__self__", None)
    if asyncio is None or not isinstance(runner, asyncio.Runner) or not callable(on_sigint):
        raise Terminated
    _terminated = True
    on_sigint(signal.SIGINT, frame)


def _leaving_on_interrupt() -> None:
    """Ignore further Ctrl-Cs (and SIGTERMs): the process is on its way out, and one more now would
    end it by the signal, before its line or with a code other than the documented 130."""
    if _owns_process and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def confirm(question: str) -> None:
    """Ask ``question`` on stderr; go on on a yes, else abort (exit 6 by :func:`reports_errors`).

    A Ctrl-C at the question declines at once: asked inside ``asyncio.run``, whose own SIGINT
    handler only cancels the command at its next await (once an answer came), the first Ctrl-C
    did nothing and the question waited on."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        click.confirm(question, abort=True, err=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a user can cause into one line and a documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (ConfigError, StoreMisconfigured) as exc:
            fail(str(exc), EXIT_CONFIG)
        except (StoreUnavailable, EndpointUnreachable) as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except click.exceptions.Abort as exc:
            if isinstance(exc.__context__, EOFError):
                # No answer came (no terminal, or Ctrl-D): end the prompt's line, name the way on.
                click.echo("", err=True)
                click.echo(
                    "aborted: no answer came (no terminal?): nothing was changed; "
                    "give --yes to go ahead without asking",
                    err=True,
                )
            else:
                click.echo("aborted: nothing was changed", err=True)
            sys.exit(EXIT_DECLINED)
        except StoppedBeforeStart as exc:
            _leaving_on_interrupt()
            say_last(f"interrupted: {exc}", EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        except KeyboardInterrupt as exc:
            _interrupted(exc)
        except OutputUnwritable as exc:
            _output_unwritable(exc)
        except Exception as exc:
            # AWS errors that escaped a command's own handling: one line all the same.
            known = describe_aws_error(exc)
            if known is None:
                raise
            fail(*known)

    return wrapper


class _Command(click.Command):
    """A command whose option given without its value says what value it takes: click said
    only "Option '--since' requires an argument." """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            rest = super().parse_args(ctx, args)
        except click.BadOptionUsage as exc:
            if not exc.message.startswith(f"Option {exc.option_name!r} requires"):
                raise
            takes = _what_it_takes(self, exc.option_name)
            message = exc.message.rstrip(".") + (f": {takes}" if takes else ".")
            raise click.BadOptionUsage(exc.option_name, message) from None
        _refuse_bytes_not_utf8(ctx, self.params)
        return rest


# Values that name a file (a store URL's path among them), which on Linux may be any bytes:
# taken as given. Every other value is text a store, AWS or JSON must encode as UTF-8.
_FILE_NAMES = frozenset({"path", "store", "to_url", "config_file"})


def _refuse_bytes_not_utf8(ctx: click.Context, params: list[click.Parameter]) -> None:
    """A usage error for a value given in bytes that are not UTF-8 (a terminal in Latin-1): it
    reached SQLite, asyncpg or a JSON payload, whose encoder raised a traceback."""
    for param in params:
        if param.name in _FILE_NAMES or isinstance(param.type, click.Path):
            continue
        value = ctx.params.get(param.name or "")
        for each in value if isinstance(value, tuple) else (value,):
            if isinstance(each, str) and (where := not_utf8(each)) is not None:
                raise click.BadParameter(
                    f"{each!r} is not UTF-8 text ({where}): give it in UTF-8 (set the "
                    "terminal's encoding to UTF-8)",
                    ctx=ctx,
                    param=param,
                )


def _what_it_takes(command: click.Command, name: str) -> str | None:
    """What option ``name`` of ``command`` takes, as its help says (without its [env: ...])."""
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            text = re.sub(r"\s*\[(env|default): [^\]]*\]", "", param.help or "").strip()
            return text[:1].lower() + text[1:] if text else None
    return None


class _LazyCommands(click.Group):
    """A group whose commands are imported when they run, not when the program starts.

    ``lazy`` maps a command's name to the module that registers it (``@command(name)``,
    ``@group(name)`` or ``@subcommand(group, name)`` at import) and to the one line
    ``--help`` shows for it, so that ``--help`` and each command import only what they use
    (aiobotocore, SQLAlchemy and the worker cost most of a second of CPU; `failures list` does
    not need what reads `failures logs`' lines).
    """

    command_class = _Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click suggests a close name from the commands it holds, and the lazy ones are not
        # imported yet: a misspelt command (`failure list`) got no "Did you mean" of its own.
        name = click.utils.make_str(args[0]) if args else ""
        known = self.list_commands(ctx)
        if name and name not in known and not name.startswith("-") and not ctx.resilient_parsing:
            close = sorted(difflib.get_close_matches(name, known))
            if len(close) == 1:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
            if close:
                ctx.fail(
                    f"No such command {name!r}. (Did you mean one of: "
                    f"{', '.join(repr(each) for each in close)}?)"
                )
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module = self.lazy[cmd_name][0]
            importlib.import_module(module)
            if cmd_name not in self.commands:
                raise RuntimeError(f"{module} does not register the command {cmd_name!r}")
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            if not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Group(_LazyCommands):
    """A group of commands (`failures`, `dlq`, `quarantine`) made as the top level makes them:
    a command of its own module may be registered in ``lazy`` (`failures logs`)."""


class LazyGroup(_LazyCommands):
    """The top-level group: its commands lazy (``COMMANDS`` in ``cli/__init__.py``), its groups
    :class:`_Group`, and every click error of a command line shown as one line."""

    group_class = _Group

    # Every click error of a command line is raised while the top group parses its own
    # arguments or invokes (its subcommands parse there): shown escaped from these two.
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with click_errors_shown():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with click_errors_shown():
            return super().invoke(ctx)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="lambda-destinations", prog_name="lambda-destinations")
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


def group(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], _Group]:
    """Register a top-level group of commands (`failures`, `dlq`): a :class:`_Group`, whose
    ``lazy`` names the commands registered by other modules, imported when they run."""

    def decorate(func: Callable[..., Any]) -> _Group:
        made = cli.group(name, **kwargs)(func)
        assert isinstance(made, _Group)  # the top level's group_class
        return made

    return decorate


def describe_aws_error(
    exc: BaseException, *, endpoint: str = "the endpoint", not_aws_fix: str | None = None
) -> tuple[str, int] | None:
    """The one line and exit code for an AWS error a user can cause; None for anything else.
    An answer no AWS service gives: see :func:`_not_aws_line`."""
    # Imported here: botocore costs every command start-up, --help included.
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    from lambda_destinations.retrying import CONNECTION_ERRORS, SETUP_ERRORS

    if isinstance(exc, CONNECTION_ERRORS):
        return (
            f"cannot reach the AWS endpoint ({first_line(exc)}): check "
            "LAMBDA_DESTINATIONS_ENDPOINT_URL, AWS_REGION and the network",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "or run with a role",
            EXIT_CONFIG,
        )
    if isinstance(exc, NoRegionError):
        return NO_REGION, EXIT_CONFIG
    if isinstance(exc, SETUP_ERRORS):  # a profile that does not exist, a source that failed
        from lambda_destinations.aws import CredentialsUnavailable

        return str(CredentialsUnavailable.of(exc)), EXIT_CONFIG
    if isinstance(exc, QueueNotFound):
        return str(exc), EXIT_USAGE
    if (not_aws := _not_aws_line(exc, endpoint, not_aws_fix)) is not None:
        return not_aws, EXIT_FAILED  # a failed call (1), as `run` takes any 4xx
    if isinstance(exc, ClientError):
        return _refused_line(exc)
    if isinstance(exc, BotoCoreError):  # invalid parameters, an unreadable AWS config file...
        return first_line(exc), EXIT_FAILED
    return None


def _refused_line(exc: ClientError) -> tuple[str, int]:
    """The line (:func:`lambda_destinations.retrying.refused_line`) and exit code of an AWS
    error answer: 3 for the set-up (the keys, a permission), 1 for a call that failed."""
    from lambda_destinations.retrying import refused_line, refused_setup

    return refused_line(exc), EXIT_CONFIG if refused_setup(exc) else EXIT_FAILED


def _not_aws_line(exc: BaseException, endpoint: str, fix: str | None) -> str | None:
    """The line of an answer no AWS service gives (a web server's page, an empty 404), naming
    ``endpoint`` and ending with ``fix``, which the caller's settings make (where the URL was
    set); None for any other error."""
    from lambda_destinations.retrying import not_aws_answer, said_not_aws

    answer = not_aws_answer(exc)
    if answer is None:
        return None
    operation = getattr(exc, "operation_name", None)
    failed = f"{operation} failed: " if operation else ""
    fix = fix or "check that LAMBDA_DESTINATIONS_ENDPOINT_URL is the URL of an AWS endpoint"
    return f"{failed}{said_not_aws(answer, by=endpoint)}: {fix}"


def first_line(exc: BaseException) -> str:
    """The first line of an error's text, redacted, at most 300 characters (see
    :func:`lambda_destinations.retrying.first_line`, imported only when an error is shown)."""
    from lambda_destinations.retrying import first_line as line

    return line(exc)
