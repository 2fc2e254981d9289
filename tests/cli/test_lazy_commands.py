"""Commands are imported when they run: `--help` and the store commands never load the AWS
clients, the worker, the handlers or (for `--help`) the store and the settings. What they cost
in time is in bench/ (startup_bench.py)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from lambda_destinations.cli import COMMANDS, cli
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import DeliveryRow, QuarantineRow, Store

# Prints which modules a command loaded, as JSON, after running it in a fresh interpreter.
_PROBE = """
import json, sys
from lambda_destinations.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def probed(*args: str, env: dict[str, str] | None = None) -> tuple[str, str, set[str]]:
    """What a command printed on stdout and on stderr, and which modules it loaded (``env``
    added to this process's environment)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    *said, modules = done.stderr.strip().splitlines()
    return done.stdout, "\n".join(said), set(json.loads(modules))


def loaded_by(*args: str) -> set[str]:
    return probed(*args)[2]


def first_paragraph(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_line_names_the_module_that_registers_it(name: str) -> None:
    module, help_line = COMMANDS[name]
    importlib.import_module(f"lambda_destinations.cli.{module}")

    command = cli.commands[name]
    assert command.callback is not None
    assert command.callback.__module__ == f"lambda_destinations.cli.{module}"
    # The line --help shows without importing the module is the start of the command's own.
    assert first_paragraph(command.help).startswith(help_line)


@pytest.mark.parametrize("group", ["dlq", "failures", "quarantine", "store"])
def test_each_subcommand_line_names_the_module_that_registers_it(group: str) -> None:
    command = cli.get_command(click.Context(cli), group)
    assert isinstance(command, type(cli).group_class)

    for name, (module, help_line) in command.lazy.items():
        importlib.import_module(module)

        registered = command.commands[name]
        assert registered.callback is not None
        assert registered.callback.__module__ == module
        assert first_paragraph(registered.help).startswith(help_line)


def test_help_lists_every_command_without_importing_them() -> None:
    loaded = loaded_by("--help")

    assert not any(
        m.startswith("lambda_destinations.cli.")
        and m[24:] in {module for module, _ in COMMANDS.values()}
        for m in loaded
    )
    assert not {"sqlalchemy", "aiobotocore", "botocore", "pydantic", "pydantic_settings"} & loaded


def test_help_shows_each_command_with_its_line() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)

    assert result.exit_code == 0
    for name, (_, help_line) in COMMANDS.items():
        assert f"  {name} " in result.output
        assert help_line[:30] in result.output


@pytest.fixture
def empty_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    subprocess.run(
        [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "migrate"],
        env={"LAMBDA_DESTINATIONS_STORE": url, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    return url


# What no command that only reads the store needs: the AWS clients, the worker, the handlers
# (and with them the SMS handler's phone-number data), the records' schemas.
_NOT_FOR_READING = {
    "aiobotocore",
    "aiohttp",
    "lambda_destinations.aws",
    "lambda_destinations.handlers",
    "lambda_destinations.schemas",
    "lambda_destinations.worker.dispatch",
    "lambda_destinations.worker.worker",
    "phonenumbers",
}

# What `failures list` has no use for when no settings file is given and no --function: the
# file's parser, the shell globs, and what only other commands of the store use.
_NOT_FOR_LISTING = {
    "tomllib",
    "lambda_destinations.store._glob",
    "lambda_destinations.store._backup",
    "lambda_destinations.operations.status",
}


def test_failures_list_on_an_empty_store_loads_no_aws_client_nor_worker(empty_store: str) -> None:
    loaded = loaded_by("failures", "list", "--store", empty_store)

    assert "lambda_destinations.cli.failures" in loaded  # the command did run
    assert not (_NOT_FOR_READING | {"lambda_destinations.worker"}) & loaded
    # botocore and tenacity serve the commands that call AWS
    assert not {"botocore", "tenacity", "lambda_destinations.retrying"} & loaded
    # nor does a SQLite store need SQLAlchemy's PostgreSQL dialect (the JSONB type, the
    # partial indexes' WHERE) or asyncpg, nor its asyncio extension and the ORM that comes
    # with it (the SQLite store runs the synchronous engine in its threads)
    assert not {"sqlalchemy.dialects.postgresql", "asyncpg"} & loaded
    assert not {"sqlalchemy.ext.asyncio", "sqlalchemy.orm", "aiosqlite"} & loaded
    assert not _NOT_FOR_LISTING & loaded


# What only `failures logs` uses: the reading of a function's log lines, and its command.
_FOR_LOGS_ONLY = {
    "lambda_destinations.operations.function_logs",
    "lambda_destinations.cli.failures_logs",
}


@pytest.mark.parametrize(
    "args",
    [("failures", "list"), ("failures", "stats"), ("failures", "show", "no-such-id")],
    ids=["failures list", "failures stats", "failures show"],
)
def test_failures_commands_but_logs_load_nothing_that_reads_logs(
    empty_store: str, args: tuple[str, ...]
) -> None:
    loaded = loaded_by(*args, "--store", empty_store)

    assert "lambda_destinations.cli.failures" in loaded  # the command did run
    assert not _FOR_LOGS_ONLY & loaded


def test_failures_show_names_the_logs_command_without_loading_what_reads_logs(
    empty_store: str,
) -> None:
    # given: a failure in the store, which `show` prints whole (with the `failures logs` line)
    row = invocation_row(decode(json.dumps(failure_record(random.Random(1)))), "q")
    assert row.request_id is not None

    async def save() -> None:
        async with Store.from_url(empty_store) as store:
            await store.save_invocation(row, DeliveryRow(row.key, "m-1", "q", 1))

    asyncio.run(save())

    # when
    shown = subprocess.run(
        [sys.executable, "-c", _PROBE, "failures", "show", row.request_id, "--store", empty_store],
        capture_output=True,
        text=True,
        check=False,
    )

    # then: the whole record, its logs line with it, and nothing that reads logs loaded
    assert shown.returncode == 0
    assert f"lambda-destinations failures logs {row.request_id}\n" in shown.stdout
    loaded = set(json.loads(shown.stderr.strip().splitlines()[-1]))
    assert not _FOR_LOGS_ONLY & loaded


def test_failures_help_lists_logs_without_loading_it() -> None:
    loaded = loaded_by("failures", "--help")

    assert "lambda_destinations.cli.failures" in loaded
    assert not _FOR_LOGS_ONLY & loaded


@pytest.mark.parametrize(
    ("args", "module"),
    [
        (("failures", "stats"), "lambda_destinations.operations.stats"),
        (("failures", "show", "no-such-id"), "lambda_destinations.cli.failures"),
        (("quarantine", "list"), "lambda_destinations.cli.quarantine"),
    ],
    ids=["failures stats", "failures show", "quarantine list"],
)
def test_store_reading_commands_load_no_aws_client_worker_nor_handler(
    empty_store: str, args: tuple[str, ...], module: str
) -> None:
    loaded = loaded_by(*args, "--store", empty_store)

    assert module in loaded  # the command did run
    assert not _NOT_FOR_READING & loaded
    # botocore and tenacity serve the commands that call AWS
    assert not {"botocore", "tenacity", "lambda_destinations.retrying"} & loaded


def test_quarantine_list_of_a_quarantined_message_loads_no_aws_client(empty_store: str) -> None:
    # given: a message quarantined from a queue named by its URL (the table shows its name)
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures"

    async def quarantine() -> None:
        async with Store.from_url(empty_store) as store:
            await store.save_quarantine(
                QuarantineRow(queue, "m-1", "not json {", {}, "decode error: not a record", 1)
            )

    asyncio.run(quarantine())

    # when
    loaded = loaded_by("quarantine", "list", "--store", empty_store)

    # then: the row was shown, without botocore, tenacity or the worker's queues module
    assert "lambda_destinations.cli.quarantine" in loaded
    assert not {"botocore", "aiobotocore", "tenacity", "lambda_destinations.retrying"} & loaded
    assert "lambda_destinations.worker.queues" not in loaded


# What only `dlq redrive` uses: moving messages, re-invoking them (the replay, its handler and
# ledger), reading records from S3.
_FOR_REDRIVE_ONLY = {
    "lambda_destinations.operations.redrive",
    "lambda_destinations.operations.replay",
    "lambda_destinations.handlers.replay",
    "lambda_destinations.worker.s3_records",
}


@pytest.mark.parametrize(
    "args",
    [("dlq", "--help"), ("dlq", "peek", "--help"), ("dlq", "purge", "--help")],
    ids=["dlq --help", "dlq peek --help", "dlq purge --help"],
)
def test_dlq_help_loads_nothing_only_redrive_uses(args: tuple[str, ...]) -> None:
    loaded = loaded_by(*args)

    assert "lambda_destinations.cli.dlq" in loaded  # its commands were listed
    assert not _FOR_REDRIVE_ONLY & loaded


def test_dlq_redrive_help_loads_no_http_client() -> None:
    # the S3 record reader, which a redrive imports, catches one of aiohttp's errors: imported
    # at its top, aiohttp (with its CA certificates) cost `redrive --help` 0.75 billion
    # instructions
    loaded = loaded_by("dlq", "redrive", "--help")

    assert "lambda_destinations.worker.s3_records" in loaded
    assert "aiohttp" not in loaded


def test_dlq_peek_and_purge_load_nothing_only_redrive_uses(
    sqs: Any, make_queue: Any, endpoint_url: str
) -> None:
    # given: a DLQ holding a failure record, and an empty queue
    _, dlq = make_queue("lazy-peek")
    empty, _ = make_queue("lazy-purge", dlq=False)
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(failure_record(random.Random(1))))
    env = {"LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url}

    # when
    peeked, _, peek_loaded = probed("dlq", "peek", dlq, "--json", env=env)
    purged, _, purge_loaded = probed("dlq", "purge", empty, "--yes", env=env)
    _, missing, missing_loaded = probed("dlq", "peek", "no-such-queue-lazy", env=env)

    # then: the record was described (by the schemas), the empty queue left alone, the
    # missing one said; and none of them loaded what only a redrive uses
    assert [m["kind"] for m in json.loads(peeked)] == ["invocation"]
    assert "is empty: nothing to purge" in purged
    assert "lambda_destinations.schemas" in peek_loaded
    assert "queue 'no-such-queue-lazy' does not exist" in missing
    for loaded in (peek_loaded, purge_loaded, missing_loaded):
        assert not _FOR_REDRIVE_ONLY & loaded


# What only `dlq peek` uses: the schemas it says what each message is with, the quarantine's
# printing of a body and its attributes.
_FOR_PEEK_ONLY = {"lambda_destinations.schemas", "lambda_destinations.operations.quarantine"}


def test_dlq_help_loads_no_command_of_the_group_nor_an_aws_client() -> None:
    shown, _, loaded = probed("dlq", "--help")

    # then: each command listed with its line, none of their modules nor what they use loaded
    assert "  peek     Show the messages of a queue" in shown
    assert "  purge    Delete every message of a queue" in shown
    assert not {m for m in loaded if m.startswith("lambda_destinations.cli.dlq_")}
    assert not {"botocore", "tenacity", "lambda_destinations.aws"} & loaded
    assert not {"lambda_destinations.operations.dlq", "lambda_destinations.worker.queues"} & loaded
    assert not _FOR_PEEK_ONLY & loaded


def test_dlq_purge_help_loads_nothing_only_peek_uses() -> None:
    shown, _, loaded = probed("dlq", "purge", "--help")

    assert "--yes" in shown  # its options were listed
    assert not _FOR_PEEK_ONLY & loaded


def test_dlq_purge_of_a_message_loads_nothing_only_peek_uses(
    sqs: Any, make_queue: Any, endpoint_url: str
) -> None:
    # given: a DLQ holding a failure record
    _, dlq = make_queue("lazy-purge-one")
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(failure_record(random.Random(1))))

    # when
    purged, _, loaded = probed(
        "dlq", "purge", dlq, "--yes", env={"LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url}
    )

    # then: the message was purged, and nothing that decodes or prints one was loaded
    assert "about 1 message deleted" in purged
    assert not _FOR_PEEK_ONLY & loaded


@pytest.mark.parametrize("group", ["dlq", "failures", "quarantine", "store"])
def test_a_group_help_reads_the_same_whether_its_commands_are_imported_or_not(
    group: str,
) -> None:
    # Each command of a group is listed by its `lazy` line until it is imported, then by its
    # own docstring: the two must show alike, at every width click may cut them to.
    command = cli.get_command(click.Context(cli), group)
    assert isinstance(command, type(cli).group_class)
    imports = "".join(f"import {module}\n" for module, _ in command.lazy.values())

    def shown(code: str, columns: int) -> str:
        return subprocess.run(
            [sys.executable, "-c", code, group, "--help"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "COLUMNS": str(columns)},
        ).stdout

    main = "from lambda_destinations.cli import main; main()"
    for columns in (60, 80, 120):
        assert shown(main, columns) == shown(imports + main, columns)


@pytest.mark.parametrize("group", sorted(COMMANDS))
def test_help_of_a_command_loads_no_aws_client_nor_handler(group: str) -> None:
    loaded = loaded_by(group, "--help")

    module = COMMANDS[group][0]
    assert f"lambda_destinations.cli.{module}" in loaded  # its options were listed
    assert not {"aiobotocore", "aiohttp", "lambda_destinations.handlers.registry"} & loaded
    assert "phonenumbers" not in loaded


def test_the_handler_api_loads_no_aws_client_nor_built_in_handler() -> None:
    code = (
        "import json, sys\n"
        "from lambda_destinations import HandlerContext, RetryMessage, handler\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))

    assert "lambda_destinations.handlers.base" in loaded
    assert not {"aiobotocore", "lambda_destinations.handlers.registry", "phonenumbers"} & loaded


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])

    assert result.exit_code == 2
    assert "No such command" in result.output


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [("failure", "Did you mean 'failures'?"), ("quarantin", "Did you mean 'quarantine'?")],
)
def test_a_misspelt_command_not_imported_yet_gets_a_suggestion(typed: str, suggested: str) -> None:
    # A fresh interpreter: no command is imported yet, as when a user types one.
    done = subprocess.run(
        [sys.executable, "-c", "from lambda_destinations.cli import main; main()", typed, "list"],
        capture_output=True,
        text=True,
        check=False,
    )

    # then: one line, with where the commands are listed (click printed four, and "Error:")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: No such command '{typed}'. {suggested} Try 'lambda-destinations --help' "
        "for help.\n"
    )


def test_a_misspelt_subcommand_not_imported_yet_gets_a_suggestion() -> None:
    # A fresh interpreter: `failures logs` is not imported until it runs.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lambda_destinations.cli import main; main()",
            "failures",
            "lgs",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr == (
        "error: No such command 'lgs'. Did you mean 'logs'? Try 'lambda-destinations failures "
        "--help' for help.\n"
    )


def test_subcommands_not_imported_yet_complete() -> None:
    # A fresh interpreter, as the shell runs the command to complete a word.
    done = subprocess.run(
        [sys.executable, "-c", "from lambda_destinations.cli import main; main()"],
        env={
            **os.environ,
            "_LAMBDA_DESTINATIONS_COMPLETE": "bash_complete",
            "COMP_WORDS": "lambda-destinations failures l",
            "COMP_CWORD": "2",
        },
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.stdout.split() == ["plain,list", "plain,logs"]


def test_a_module_that_does_not_register_its_command_is_a_bug_said_plainly() -> None:
    group = type(cli)(name="probe")
    group.lazy["ghost"] = ("lambda_destinations.cli._table", "Nothing.")

    with pytest.raises(RuntimeError, match="does not register the command 'ghost'"):
        group.get_command(click.Context(group), "ghost")


def test_config_loads_no_aws_client_worker_store_nor_handler(tmp_path: Path) -> None:
    # given: settings with handler tables of each kind that loads a heavy library when built
    config = tmp_path / "settings.toml"
    config.write_text(
        '[[routes]]\nhandlers = ["persist", "hook", "mail", "text", "again"]\n'
        '[handlers.hook]\ntype = "webhook"\nurl = "https://hooks.example.com/x"\n'
        '[handlers.mail]\ntype = "email"\nfrom = "a@example.com"\nto = ["b@example.com"]\n'
        '[handlers.text]\ntype = "sms"\nphone_numbers = ["+447700900123"]\n'
        '[handlers.again]\ntype = "replay"\n',
        encoding="utf-8",
    )

    loaded = loaded_by("config", "--config", str(config), "--json")

    assert "lambda_destinations.cli.config" in loaded  # the command did run
    assert not (_NOT_FOR_READING | {"lambda_destinations.worker"}) & loaded
    assert not {"botocore", "sqlalchemy", "tenacity", "aiosmtplib", "urllib.request"} & loaded
    assert not {m for m in loaded if m.startswith("lambda_destinations.handlers.")}
