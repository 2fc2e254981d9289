"""Every command with --help, and with a bad value for each option: no traceback, only the
README's exit codes. Commands are found by walking the click group, so new ones are swept too."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
from pathlib import Path

import click
import pytest
from bad_input_helpers import DOCUMENTED_EXIT_CODES, ENTRY, every_command
from click.testing import CliRunner

from lambda_destinations.cli import cli as group
from lambda_destinations.cli._numbers import FiniteFloatRange, Whole, use

COMMANDS = every_command()
# A command still running after this long took the value and is at work (a server, a
# worker): the sweep stops it and checks what it printed until then.
STILL_RUNNING = 10.0
# What lets a long-running command end by itself once it has started.
ENDS_BY_ITSELF = {("dev",): ["--once"]}


def test_the_sweep_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"run", "migrate", "failures list", "dlq peek", "doctor", "replay"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_help_prints_usage_and_exits_0(path: list[str]) -> None:
    result = CliRunner().invoke(group, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    # click's range of a number option without bounds: dev --seed showed "x<=None"
    assert "None" not in result.output


def bad_value(param: click.Parameter) -> str:
    """A value this parameter must refuse (or take without harm), by its type; the property
    tests (test_cli_properties.py) try many more on the parsers."""
    kind = param.type
    if isinstance(kind, click.FloatRange) or kind is click.FLOAT:
        return "nan"
    if isinstance(kind, click.IntRange) or kind is click.INT:
        return "99999999999999999999"
    if isinstance(kind, click.Choice):
        return "no-such-choice"
    if isinstance(kind, click.Path | click.File):
        return "/nonexistent-sweep/no/such/file"
    return "\x7f:::not-valid:::"  # free text: what a person pastes by mistake


def required_args(command: click.Command) -> list[str]:
    """Placeholder values for what the command cannot run without."""
    args: list[str] = []
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            args.append("x")
        elif isinstance(param, click.Option) and param.required and not param.is_flag:
            args += [param.opts[0], "x"]
    return args


def cases() -> list[list[str]]:
    return [
        [*path, param.opts[0], bad_value(param)]
        for path, command in COMMANDS
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.hidden
    ]


CASES = cases()


@pytest.mark.parametrize(
    ("path", "option"),
    [
        (path, param)
        for path, command in COMMANDS
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.hidden
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value.opts[0],
)
def test_an_option_given_without_its_value_says_what_value_it_takes(
    path: list[str], option: click.Option
) -> None:
    # when: the option ends the command line, its value forgotten
    result = CliRunner().invoke(group, [*path, option.opts[0]], catch_exceptions=False)

    # then: one line, exit 2, saying what it takes as its help says (click said "Option
    # '--since' requires an argument." and no more); never the help's [env: ...] part
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    said = f"error: Option '{option.opts[0]}' requires an argument: "
    assert line.startswith(said), line
    assert len(line) > len(said) + 3
    assert "[env:" not in line


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_a_usage_error_is_one_line_naming_the_help(path: list[str], command: click.Command) -> None:
    # click showed four lines: the usage, "Try ... for help.", a blank line, "Error: ..."
    needed = [p for p in command.params if p.required]
    takes_arguments = any(isinstance(p, click.Argument) for p in command.params)
    typed = {"--qqqq": "No such option '--qqqq'."}  # close to no option: no "Did you mean"
    if needed:  # one that is never given: the usage error click raises first
        typed[""] = f"Missing {needed[0].param_type_name} "
    elif not takes_arguments:
        typed["unexpected"] = "Got unexpected extra argument (unexpected)."
    shown = " ".join(["lambda-destinations", *path])
    for word, said in typed.items():
        result = CliRunner().invoke(
            group, [*path, word] if word else path, prog_name="lambda-destinations"
        )
        assert result.exit_code == 2, result.output
        (line,) = result.output.splitlines()  # a choice's list was four lines more
        assert line.startswith(f"error: {said}"), line
        assert line.endswith(f". Try '{shown} --help' for help."), line


@pytest.mark.parametrize("path", [[], ["dlq"], ["failures"], ["quarantine"]], ids=" ".join)
def test_a_group_given_no_command_shows_its_help(path: list[str]) -> None:
    result = CliRunner().invoke(group, path, prog_name="lambda-destinations")

    # then: the help, whole (not squeezed into one error line), and exit 2 as click's
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Usage: {' '.join(['lambda-destinations', *path])} "), lines
    assert "Commands:" in lines
    assert not any(line.startswith("error:") for line in lines)


class StillRunning(BaseException):
    """Raised in the command by a timer: it took the value and is at work."""


def on_timer(signum: int, frame: object) -> None:
    raise StillRunning


def run_case(
    runner: CliRunner, args: list[str], cwd: Path
) -> tuple[int | None, str, BaseException | None]:
    """Run one command line in this process; exit code None if it was still running."""
    command = [*args, *ENDS_BY_ITSELF.get(tuple(args[:1]), []), *required_args(command_of(args))]
    previous = signal.signal(signal.SIGALRM, on_timer)
    # Repeats, in case a command's clean-up swallows the first one.
    signal.setitimer(signal.ITIMER_REAL, STILL_RUNNING, 2.0)
    try:
        os.chdir(cwd)  # dev and migrate write where they run
        result = runner.invoke(group, command)
    except StillRunning:
        return None, "", None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(result.exception, StillRunning):
        return None, result.output, None
    unexpected = None if isinstance(result.exception, SystemExit) else result.exception
    return result.exit_code, result.output, unexpected


def command_of(args: list[str]) -> click.Command:
    for path, command in COMMANDS:
        if args[: len(path)] == path:
            return command
    raise AssertionError(args)


# Commands interrupted by the timer may leave a connection or a thread behind them.
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_bad_value_for_any_option_is_never_a_traceback(
    endpoint_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(
        env={
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
            "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",
            "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
            "LAMBDA_DESTINATIONS_QUEUES": None,
            "LAMBDA_DESTINATIONS_STORE": None,
            "LAMBDA_DESTINATIONS_CONFIG": None,
        },
    )
    problems = []
    for n, args in enumerate(cases()):
        cwd = tmp_path / str(n)
        cwd.mkdir()
        if args[0] in OWN_PROCESS:
            continue
        code, output, unexpected = run_case(runner, args, cwd)
        if unexpected is not None or "Traceback" in output:
            problems.append((" ".join(args), code, repr(unexpected), output[-400:]))
        elif code is not None and code not in DOCUMENTED_EXIT_CODES:
            problems.append((" ".join(args), code, "", output[-400:]))
    assert problems == []


# Commands that start servers in the process (dev's moto shares moto's state with every server
# of the process): each runs in a process of its own.
OWN_PROCESS = {"dev", "console"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_bad_value_for_a_server_command_is_never_a_traceback(
    endpoint_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
    }
    for name in ("LAMBDA_DESTINATIONS_QUEUES", "LAMBDA_DESTINATIONS_STORE"):
        env.pop(name, None)

    def one(numbered: tuple[int, list[str]]) -> tuple[list[str], int | None, str]:
        n, args = numbered
        cwd = tmp_path / str(n)
        cwd.mkdir()
        command = [*ENTRY, *args, *ENDS_BY_ITSELF.get(tuple(args[:1]), [])]
        with subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            try:
                out, err = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
                return args, None, out + err
        return args, process.returncode, out + err

    chosen = [args for args in cases() if args[0] in OWN_PROCESS]
    assert chosen
    problems = []
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        for args, code, output in pool.map(one, enumerate(chosen)):
            if "Traceback" in output or (code is not None and code not in DOCUMENTED_EXIT_CODES):
                problems.append((" ".join(args), code, output[-600:]))
    assert problems == []


# Only these may create the store and its folder (the worker, `dev`, `migrate`); the console,
# which creates none either, is a server, left out of this sweep (test_bad_input checks it).
CREATORS = {"run", "dev", "migrate", "console"}


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_commands_other_than_run_dev_and_migrate_never_create_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(
        env={
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:1",
            "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",
            "LAMBDA_DESTINATIONS_STORE": None,  # the default: a file where the command runs
            "LAMBDA_DESTINATIONS_CONFIG": None,
            "LAMBDA_DESTINATIONS_QUEUES": None,
        },
    )
    made = {}
    for n, (path, _command) in enumerate(COMMANDS):
        if path[0] in CREATORS:
            continue
        cwd = tmp_path / str(n)
        cwd.mkdir()
        run_case(runner, list(path), cwd)
        if os.listdir(cwd):
            made[" ".join(path)] = os.listdir(cwd)
    assert made == {}


NUMBER_OPTIONS = [
    (path, param)
    for path, command in COMMANDS
    for param in command.params
    if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType)
]


def test_the_sweep_finds_number_options_and_each_is_one_of_ours() -> None:
    # click's own refusals say "'abc' is not a valid integer range." and "0 is not in the
    # range 1<=x<=1000."; ours say what to give
    assert len(NUMBER_OPTIONS) >= 15
    for path, param in NUMBER_OPTIONS:
        assert isinstance(param.type, Whole | FiniteFloatRange), (path, param.name)


def bounded_by(kind: click.ParamType) -> bool:
    return isinstance(kind, click.IntRange | click.FloatRange) and bool(use(kind))


@pytest.mark.parametrize(
    ("path", "param"),
    NUMBER_OPTIONS,
    ids=lambda value: " ".join(value) if isinstance(value, list) else value.name,
)
def test_a_number_option_given_a_word_or_a_number_out_of_range_says_what_to_give(
    path: list[str], param: click.Parameter
) -> None:
    command = command_of(path)
    whole = isinstance(param.type, click.IntRange)
    kind = "whole number" if whole else "number"
    fix = use(param.type)  # type: ignore[arg-type]

    def refusal(value: str) -> str:
        if isinstance(param, click.Option):
            args = [*path, param.opts[0], value, *required_args(command)]
        else:
            args = [
                *path,
                *[
                    value if p is param else "x"
                    for p in command.params
                    if isinstance(p, click.Argument)
                ],
            ]
        result = CliRunner().invoke(group, args, catch_exceptions=False)
        assert result.exit_code == 2, result.output
        (line,) = result.output.splitlines()
        return line

    # a word: what it is not, and the range to give
    line = refusal("abc")
    assert line.startswith("error: Invalid value for "), line
    assert line.endswith(f": 'abc' is not a {kind}{fix}."), line
    if not bounded_by(param.type):
        return
    # a number past a bound: out of range, and the range again
    low, high = param.type.min, param.type.max  # type: ignore[attr-defined]
    outside = (low - 1) if low is not None else (high + 1)
    if not whole and low is not None:
        outside = low - 0.5
    line = refusal(str(outside))
    assert line.startswith("error: Invalid value for "), line
    assert line.endswith(f": {outside} is out of range{fix}."), line
