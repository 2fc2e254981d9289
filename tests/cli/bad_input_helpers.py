"""Helpers of the bad-input and secrets tests (imported by name: tests/ is no package)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import click

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
README = Path(__file__).parents[2] / "README.md"


def documented_exit_codes() -> frozenset[int]:
    """The codes the README's "Exit codes" table lists: every code a command may end with."""
    section = README.read_text(encoding="utf-8").split("\n## Exit codes\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return frozenset(int(m) for m in re.findall(r"^\| (\d+) \|", section, re.MULTILINE))


DOCUMENTED_EXIT_CODES = documented_exit_codes()


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str = "",
    timeout: float = 60,
    unset: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``lambda-destinations`` as a user would: a new process, its real entry point; the
    variables named in ``unset`` are left out of its environment."""
    given = {**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **(env or {})}
    for name in unset:
        given.pop(name, None)
    return subprocess.run(
        [*ENTRY, *args],
        env=given,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        cwd=cwd,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command's one ``error:`` line; fails the test on a traceback or several lines."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def every_command() -> list[tuple[list[str], click.Command]]:
    """Every runnable command of the click group, subcommands of groups included, found by
    walking the group: commands added later are swept without a change here."""
    from lambda_destinations.cli import cli as group

    found: list[tuple[list[str], click.Command]] = []

    def walk(current: click.Group, path: list[str], ctx: click.Context) -> None:
        for name in current.list_commands(ctx):
            command = current.get_command(ctx, name)
            assert command is not None, name
            if isinstance(command, click.Group):
                walk(command, [*path, name], click.Context(command, parent=ctx, info_name=name))
            else:
                found.append(([*path, name], command))

    walk(group, [], click.Context(group, info_name="lambda-destinations"))
    return found
