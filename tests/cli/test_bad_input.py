"""Bad input ends in one line naming the setting or argument and the fix, with its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import sqlalchemy as sa
from bad_input_helpers import ENTRY, cli, one_error_line

from lambda_destinations import _entry
from lambda_destinations.cli import _app
from lambda_destinations.cli._app import LazyGroup, reports_errors
from lambda_destinations.config import Settings, load_settings
from lambda_destinations.redact import echoed
from lambda_destinations.store import InvocationFilter, Store
from lambda_destinations.store.migrations import LATEST_VERSION
from processes import ctrl_c_as_in_a_terminal, free_port, reap


def no_metrics(accept: str) -> tuple[bytes, str]:
    """An ops server's /metrics page that is empty, whatever the Accept header."""
    return b"", "text/plain"


@pytest.mark.parametrize(
    "args",
    [
        ("failures", "list"),
        ("failures", "stats"),
        ("doctor",),
    ],
)
def test_read_only_commands_never_create_the_store_or_its_folder(
    args: tuple[str, ...], tmp_path: Path, endpoint_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    result = cli(*args, "--store", url, "--endpoint-url", endpoint_url, cwd=tmp_path)
    assert result.returncode in (1, 3), result.stderr
    assert list(tmp_path.iterdir()) == []


# The settings a folder outside dev's has none of.
NO_SETTINGS = ("LAMBDA_DESTINATIONS_STORE", "LAMBDA_DESTINATIONS_CONFIG")


@pytest.mark.parametrize("args", [("failures", "list"), ("result", "no-such-id")])
def test_a_command_outside_dev_s_folder_says_so_and_how_to_fix_it(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # given: a folder with no settings of any kind (dev ran in another one)
    # when: a command that reads the store runs there
    result = cli(*args, cwd=tmp_path, unset=NO_SETTINGS)

    # then: one line saying the default store was read because dev's settings are not here
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "(the default; this folder has no .lambda-destinations/dev.toml: " in line
    assert "run commands in the folder `dev` runs in, or set LAMBDA_DESTINATIONS_STORE)" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [("dlq", "peek", "ld-dev-failure-dlq"), ("invoke", "orders-api")])
def test_an_aws_command_outside_dev_s_folder_says_where_its_region_would_be(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # given: a folder with no settings, and no region anywhere (dev's file names dev's)
    regions = ("LAMBDA_DESTINATIONS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
    result = cli(*args, cwd=tmp_path, unset=(*NO_SETTINGS, *regions))

    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        "error: no AWS region: set AWS_REGION, LAMBDA_DESTINATIONS_REGION or --region; this "
        "folder has no .lambda-destinations/dev.toml: run commands in the folder `dev` runs in"
    )


def test_doctor_outside_dev_s_folder_says_so_rather_than_to_migrate(
    tmp_path: Path, endpoint_url: str
) -> None:
    # given: a folder with no settings of any kind (dev ran in another one); AWS answers
    # when: doctor runs there
    result = cli(
        "doctor",
        "--json",
        env={"LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url},
        cwd=tmp_path,
        unset=(*NO_SETTINGS, "LAMBDA_DESTINATIONS_QUEUES"),
    )

    # then: the queues' and the store's fixes name dev's folder; `migrate` here would make an
    # empty store in the wrong folder
    assert result.returncode == 1, result.stderr
    fixes = {check["check"]: check["fix"] for check in json.loads(result.stdout)["checks"]}
    outside = "this folder has no .lambda-destinations/dev.toml: run commands in the folder `dev`"
    assert outside in fixes["queues configured"]
    assert outside in fixes["store"]
    assert "migrate" not in fixes["store"]
    assert list(tmp_path.iterdir()) == []


def test_a_store_url_set_nowhere_but_a_toml_file_names_the_file_not_dev(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text('region = "us-east-1"\n')
    result = cli(
        "failures",
        "list",
        "--config",
        str(config),
        cwd=tmp_path,
        unset=["LAMBDA_DESTINATIONS_STORE"],
    )
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "(LAMBDA_DESTINATIONS_STORE or the TOML file)" in line
    assert "dev.toml" not in line


def test_migrate_creates_the_folder_and_says_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "x.db"
    result = cli("migrate", "--store", f"sqlite:///{path}", "--log-format", "console")
    assert result.returncode == 0, result.stderr
    assert path.is_file()
    said = [line for line in result.stderr.splitlines() if "created the store's directory" in line]
    assert len(said) == 1
    assert str(path.parent) in said[0]


def test_a_postgresql_store_without_the_extra_names_the_pip_command(tmp_path: Path) -> None:
    # The extra is installed here: hide asyncpg from this process as if it were not.
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['asyncpg'] = None\n")
    result = cli(
        "failures",
        "list",
        "--store",
        "postgresql://app@127.0.0.1/db",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 3
    assert "pip install 'lambda-destinations[postgres]'" in one_error_line(result)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://app:pw@127.0.0.1/db?timeout=abc", "unknown parameter 'timeout'"),
        ("postgresql://app:pw@127.0.0.1/db?sslmode=sometimes", "sslmode must be"),
        ("postgresql://app:pw@127.0.0.1/db?pool_size=0", "pool_size must be a whole number"),
        ("sqlite:///x.db?timeout=abc", "takes no parameters"),
        ("sqlite:///file:x.db", "not a plain path"),
        ("postgresql://app:pw@127.0.0.1:99999/db", "port is not a number from 0 to 65535"),
        # the host would be "Sekrit@127.0.0.1": its start reached the line, and a DNS lookup
        (
            "postgresql://app:pw@Sekrit@127.0.0.1/db",
            "store URL 'postgresql://app:***@127.0.0.1/db' (--store): an '@' in the password "
            "is written %40",
        ),
        # the rest of the password was the database's name (a "/" after its "@"), or a
        # fragment (a "#"): both were shown
        (
            "postgresql://app:pw@Sekrit/x@127.0.0.1/db",
            "store URL 'postgresql://app:***@127.0.0.1/db' (--store): an '@' in the password "
            "is written %40",
        ),
        (
            "postgresql://app:pw@Sekrit#x@127.0.0.1/db",
            "store URL 'postgresql://app:***@127.0.0.1/db' (--store): an '@' in the password "
            "is written %40",
        ),
    ],
)
def test_store_url_parameters_get_one_line(url: str, problem: str, tmp_path: Path) -> None:
    result = cli("migrate", "--store", url, cwd=tmp_path)
    assert result.returncode == 3
    line = one_error_line(result)
    assert problem in line
    assert "(--store)" in line  # where the URL came from, not the variable it did not
    assert "LAMBDA_DESTINATIONS_STORE" not in line
    assert ":pw@" not in line
    assert "Sekrit" not in result.stderr


@pytest.mark.parametrize("command", ["migrate", "failures list"])
@pytest.mark.parametrize("path", ["a" * 300 + ".db", "a/" * 3000 + "x.db"], ids=["name", "path"])
def test_a_sqlite_path_too_long_for_the_file_system_is_one_line(
    command: str, path: str, tmp_path: Path
) -> None:
    # given: a file name past 255 bytes, a path past 4096 (a file pasted in, say)
    # when
    result = cli(*command.split(), "--store", f"sqlite:///{path}", cwd=tmp_path)

    # then: before, OSError's traceback (File name too long), exit 1; now the problem and the fix
    assert result.returncode == 3, result.stderr
    assert one_error_line(result).endswith(
        "(--store): cannot open the file it names (File name too long): point the store at "
        "another path"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
@pytest.mark.parametrize("mark", ["#", "/", "?"])
def test_a_store_url_password_with_a_url_mark_reaches_the_server(
    mark: str, postgres_url: str, tmp_path: Path
) -> None:
    # SQLAlchemy reads the password up to the "@"; the port check read a "#" as a fragment and
    # said the port was no number
    parts = urlsplit(postgres_url)
    url = f"postgresql://ld_no_such_user:pa{mark}Sekrit@{parts.hostname}:{parts.port}/postgres"
    result = cli("failures", "list", "--store", url, cwd=tmp_path, timeout=30)
    assert result.returncode == 3, result.stderr
    assert 'role "ld_no_such_user" does not exist' in one_error_line(result)
    assert "Sekrit" not in result.stderr


# Commands that each read the store URL their own way, and the code of a URL that cannot work.
_READ_THE_STORE = [
    (("failures", "list"), 3),
    (("result", "rid-1"), 3),
    (("run", "--once", "--queues", "q", "--region", "us-east-1"), 3),
]


def _from_each_origin(
    args: tuple[str, ...], url: str, tmp_path: Path
) -> dict[str, subprocess.CompletedProcess[str]]:
    """``args`` run with the store URL ``url`` given by --store, by the environment, by a TOML
    file: each result under the origin its error line should name."""
    environment = {**os.environ, "LAMBDA_DESTINATIONS_OPS_PORT": "0"}  # no port to bind
    environment.pop("LAMBDA_DESTINATIONS_STORE", None)
    file = tmp_path / "settings.toml"
    file.write_text(f"store = {json.dumps(url)}\n")
    return {
        "--store": cli(*args, "--store", url, env=environment, cwd=tmp_path),
        "LAMBDA_DESTINATIONS_STORE": cli(
            *args, env={**environment, "LAMBDA_DESTINATIONS_STORE": url}, cwd=tmp_path
        ),
        # matched in any case, as the settings match it (it said the TOML file's place)
        "lambda_destinations_store": cli(
            *args, env={**environment, "lambda_destinations_store": url}, cwd=tmp_path
        ),
        f"the TOML file {file}": cli(*args, "--config", str(file), env=environment, cwd=tmp_path),
    }


@pytest.mark.parametrize(("args", "code"), _READ_THE_STORE)
def test_a_store_error_names_where_the_url_came_from(
    args: tuple[str, ...], code: int, tmp_path: Path
) -> None:
    # given: a store URL wrong in a way each command meets
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    url = "sqlite:///:memory:" if args[0] == "run" else missing
    shown = f"store URL {url!r}"

    # when: the URL comes from --store, from the environment, from a TOML file
    results = _from_each_origin(args, url, tmp_path)

    # then: each line names that place, and only it
    for origin, result in results.items():
        assert result.returncode == code, result.stderr
        assert one_error_line(result).startswith(f"error: {shown} ({origin}): ")


IN_MEMORY = ["sqlite:///", "sqlite://", "sqlite:///:memory:"]


@pytest.mark.parametrize("url", IN_MEMORY)
@pytest.mark.parametrize(
    "args",
    [
        ("migrate",),
        ("migrate", "--check"),
        ("failures", "list"),
        ("prune",),
        ("quarantine", "list"),
        ("replay", "--function", "f", "--dry-run"),
        ("result", "rid-1"),
        ("console", "--port", "0"),
    ],
)
def test_an_in_memory_store_is_refused_by_every_command_that_opens_the_store(
    args: tuple[str, ...], url: str, tmp_path: Path
) -> None:
    # given: a store URL that names no file: every command would open an empty database
    # when: a command that opens the store is given it
    result = cli(*args, "--store", url, cwd=tmp_path, timeout=30)

    # then: one line naming the URL, where it was set and the fix; nothing migrated or created
    assert result.returncode == 3, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert line.startswith(f"error: store URL {url!r} (--store): an in-memory database: ")
    assert line.endswith(
        "give a file path such as sqlite:///lambda-destinations.db, or postgresql://user@host/db"
    )
    assert "applied" not in result.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", IN_MEMORY)
def test_doctor_reports_an_in_memory_store_as_a_failed_check(url: str, tmp_path: Path) -> None:
    # when: doctor is given a store URL that names no file
    result = cli("doctor", "--store", url, "--json", cwd=tmp_path, timeout=30)

    # then: the store check fails as configuration, with the fix; no schema is reported for it
    checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    store = checks["store"]
    assert (store["status"], store["unreachable"]) == ("error", False)
    assert store["detail"].startswith(f"store URL {url!r} (--store): an in-memory database: ")
    assert "sqlite:///lambda-destinations.db" in store["detail"]
    assert "store schema" not in checks
    assert list(tmp_path.iterdir()) == []


def test_an_in_memory_store_still_opens_for_library_use() -> None:
    # The refusal is the CLI's: code that wants a database for the process alone may have one.
    async def go() -> list[int]:
        async with Store.from_url("sqlite://") as store:
            return await store.migrate()

    assert asyncio.run(go()) == list(range(1, LATEST_VERSION + 1))


@pytest.mark.postgres
@pytest.mark.parametrize(("args", "code"), _READ_THE_STORE)
def test_a_postgresql_server_error_names_where_the_url_came_from(
    args: tuple[str, ...], code: int, postgres_url: str, tmp_path: Path
) -> None:
    # given: a database the server does not have, in a URL whose password must stay hidden
    parts = urlsplit(postgres_url)
    netloc = f"{parts.username}:secret@{parts.hostname}:{parts.port or 5432}"
    url = parts._replace(netloc=netloc, path=f"{parts.path}_missing").geturl()
    shown = f"store {url.replace(':secret@', ':***@')}"

    # when: the URL comes from --store, from the environment, from a TOML file
    results = _from_each_origin(args, url, tmp_path)

    # then: the server's answer is named with that place, the password masked
    for origin, result in results.items():
        assert result.returncode == code, result.stderr
        line = one_error_line(result)
        assert line.startswith(f"error: {shown} ({origin}): database "), line
        assert "does not exist: set the store URL to the right database name" in line


@contextlib.contextmanager
def _server_without_ssl() -> Iterator[int]:
    """A local server that answers a PostgreSQL SSLRequest as a server with ssl = off does
    ('N'), then closes; its port."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(8)  # the SSLRequest: length 8, code 80877103
                    conn.sendall(b"N")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.mark.parametrize("command", [("migrate",), ("prune",), ("run", "--once")])
@pytest.mark.parametrize(
    ("sslmode", "ca_file", "problem"),
    [
        (
            "require",
            None,
            "rejected SSL upgrade: the server takes no SSL connections: set sslmode=prefer or "
            "disable in the store URL, or turn SSL on at the server",
        ),
        (  # no PGSSLROOTCERT: asyncpg looks for ~/.postgresql/root.crt
            "verify-full",
            None,
            "does not exist or cannot be accessed: sslmode=verify-ca and verify-full check the "
            "server's certificate against a CA file: set PGSSLROOTCERT to the CA's certificate "
            "file (or put it at that path), or use sslmode=require",
        ),
        (  # before: "[Errno 2] No such file or directory", naming no file
            "require",
            "no-ca.crt",
            "which does not exist: set it to the file of the CA that signed the server's "
            "certificate, or unset it",
        ),
    ],
)
def test_an_sslmode_the_server_or_this_machine_cannot_meet_is_configuration(
    command: tuple[str, ...], sslmode: str, ca_file: str | None, problem: str, tmp_path: Path
) -> None:
    # before: exit 4, "is unavailable: …: check that PostgreSQL is running and reachable", and
    # `run` waited for the store for ever: no retry changes any of these answers
    env = {
        "LAMBDA_DESTINATIONS_QUEUES": "q",
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
        "HOME": str(tmp_path),  # no ~/.postgresql/root.crt
    }
    if ca_file is not None:
        env["PGSSLROOTCERT"] = str(tmp_path / ca_file)
    with _server_without_ssl() as port:
        url = f"postgresql://app:s3cret@127.0.0.1:{port}/app?sslmode={sslmode}"
        result = cli(
            *command,
            "--store",
            url,
            env=env,
            cwd=tmp_path,
            unset=[] if ca_file is not None else ["PGSSLROOTCERT"],
        )
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: store postgresql://app:***@127.0.0.1:{port}/app?"), line
    assert line.endswith(problem), line
    assert "s3cret" not in result.stderr


@pytest.mark.postgres
async def test_a_read_only_postgresql_store_names_where_the_url_came_from(
    postgres_url: str, tmp_path: Path
) -> None:
    # given: a database that takes no writes, as a standby would not
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    finally:
        await admin.close()

    # when: migrate writes to it
    result = cli("migrate", "--store", postgres_url, cwd=tmp_path)

    # then: unavailable (exit 4), the URL named with where it came from
    assert result.returncode == 4, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: store {postgres_url} (--store) is unavailable: "), line
    assert line.endswith("point the store URL at the primary")


# Typed into an argument: an escape sequence that clears a terminal, and a right-to-left override.
_TYPED = "\x1b[2J\u202e"


@pytest.mark.parametrize(
    "args",
    [
        # our own line, repeating a store URL's path
        ("failures", "list", "--store", "sqlite:///{tmp}/x" + _TYPED + ".db"),
        # click's own usage error, repeating an argument it did not expect
        ("failures", "list", "{tmp}" + _TYPED),
        # our own line, repeating a request id
        ("failures", "show", "abc" + _TYPED, "--store", "sqlite:///{tmp}/store.db"),
    ],
)
def test_error_lines_spell_out_the_control_and_bidi_characters_they_repeat(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # given: a migrated store, for the request id that matches nothing
    assert cli("migrate", "--store", f"sqlite:///{tmp_path}/store.db").returncode == 0

    # when
    result = cli(*(arg.replace("{tmp}", str(tmp_path)) for arg in args), cwd=tmp_path)

    # then: the line says what was typed, spelled out, not as a terminal would act on it
    assert result.returncode in (1, 2, 3), result.stderr
    assert "\x1b" not in result.stderr
    assert "\u202e" not in result.stderr
    assert "\\x1b[2J\\u202e" in result.stderr


async def test_a_store_error_of_results_names_the_url_it_was_given(tmp_path: Path) -> None:
    from lambda_destinations.errors import StoreUrlError
    from lambda_destinations.operations.results import Results

    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(StoreUrlError) as opened:
        async with Results(missing):
            pass
    with pytest.raises(StoreUrlError) as parsed:
        Results("postgresql://app:secret@db.internal/results?timeout=abc")

    assert str(opened.value).startswith(f"store URL {missing!r} (given to Results): ")
    assert "does not exist" in str(opened.value)
    assert str(parsed.value).startswith(
        "store URL 'postgresql://app:***@db.internal/results?timeout=***' (given to Results): "
    )


@pytest.mark.postgres
async def test_a_postgresql_server_error_of_results_names_the_url_it_was_given(
    postgres_url: str,
) -> None:
    from lambda_destinations.errors import StoreMisconfigured
    from lambda_destinations.operations.results import Results

    missing = f"{postgres_url}_missing"
    with pytest.raises(StoreMisconfigured) as opened:
        async with Results(missing):
            pass

    assert str(opened.value).startswith(f"store {missing} (given to Results): database ")


async def _migrated_by_a_newer_release(store_url: str, oldest_writer: int) -> None:
    """The store migrated, then a version past this release's recorded as a newer one would."""
    async with Store.from_url(store_url) as store:
        await store.migrate()
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO schema_migrations (version, applied_at, oldest_writer) "
                    "VALUES (:v, CURRENT_TIMESTAMP, :oldest)"
                ),
                {"v": LATEST_VERSION + 1, "oldest": oldest_writer},
            )


async def test_a_store_migrated_by_a_newer_release_is_refused_by_writers(
    store_url: str, endpoint_url: str, tmp_path: Path
) -> None:
    # given: a store a newer release migrated with a version earlier releases misread
    await _migrated_by_a_newer_release(store_url, oldest_writer=LATEST_VERSION + 1)
    env = {"LAMBDA_DESTINATIONS_STORE": store_url, "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url}
    newer = (
        f"schema {LATEST_VERSION + 1}, this version knows up to {LATEST_VERSION}; "
        f"schema {LATEST_VERSION + 1} lets no release before {LATEST_VERSION + 1} write"
    )

    # when / then: migrating, running and the commands that write refuse in one line, exit 3
    writers = (
        ("migrate",),
        ("migrate", "--check"),
        ("run", "--queues", "q", "--once"),
        ("prune",),
        ("failures", "ignore", "rid-unknown"),
        ("replay", "--since", "2h", "--yes"),
    )
    for args in writers:
        result = cli(*args, env=env, cwd=tmp_path)
        assert result.returncode == 3, (args, result.stderr)
        assert newer in one_error_line(result), args
    # doctor says so as an error of the schema
    checked = cli("doctor", "--json", env=env, cwd=tmp_path)
    schema = [c for c in json.loads(checked.stdout)["checks"] if c["check"] == "store schema"]
    assert [(c["status"], newer in c["detail"]) for c in schema] == [("error", True)]
    # reading goes on
    for args in (
        ("failures", "list"),
        ("prune", "--dry-run"),
        ("replay", "--since", "2h", "--dry-run"),
    ):
        read = cli(*args, env=env, cwd=tmp_path)
        assert read.returncode == 0, (args, read.stderr)
    unknown = cli("result", "rid-unknown", env=env, cwd=tmp_path)
    assert unknown.returncode == 5, unknown.stderr


async def test_a_store_whose_newer_versions_let_this_release_write_is_run_and_written(
    store_url: str, endpoint_url: str, make_queue: Any, tmp_path: Path
) -> None:
    # given: a store a newer release migrated with an additive version, and records to take
    await _migrated_by_a_newer_release(store_url, oldest_writer=LATEST_VERSION)
    url, _dlq = make_queue("rollback")
    env = {
        "LAMBDA_DESTINATIONS_STORE": store_url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_QUEUES": url,
    }
    sent = cli("simulate", "--queue", url, "-n", "3", "--no-poison", env=env)
    assert sent.returncode == 0, sent.stderr

    # when: the worker and a command that writes run on it
    worker = cli("run", "--once", env=env, cwd=tmp_path)
    pruned = cli("prune", env=env, cwd=tmp_path)

    # then: both work, each saying once that the schema is newer; the worker stored the records
    for result in (worker, pruned):
        assert result.returncode == 0, result.stderr
        logged = [json.loads(line) for line in result.stderr.splitlines()]
        said = [e for e in logged if e["event"].startswith("the store's schema is newer")]
        assert [(e["schema"], e["release_schema"]) for e in said] == [
            (LATEST_VERSION + 1, LATEST_VERSION)
        ], result.stderr
    async with Store.from_url(store_url) as store:
        assert len(await store.list_invocations(InvocationFilter(failed_only=False))) == 3
    # and doctor finds the schema usable
    checked = cli("doctor", "--json", env=env, cwd=tmp_path)
    schema = [c for c in json.loads(checked.stdout)["checks"] if c["check"] == "store schema"]
    assert [c["status"] for c in schema] == ["ok"]


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("args", "wrong", "problem"),
    [
        (("failures", "list"), "database", 'database "ld_no_such_db" does not exist'),
        (("failures", "list"), "user", 'role "ld_no_such_user" does not exist'),
        (("run", "--queues", "q"), "database", 'database "ld_no_such_db" does not exist'),
    ],
)
def test_a_misspelt_database_or_user_is_configuration_at_start(
    args: tuple[str, ...], wrong: str, problem: str, postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    if wrong == "database":
        url = parts._replace(path="/ld_no_such_db").geturl()
    else:
        url = parts._replace(netloc=f"ld_no_such_user@{parts.hostname}:{parts.port}").geturl()
    # run: SQS would not answer either; the store is opened first, and refused at once
    env = {
        "LAMBDA_DESTINATIONS_STORE": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    result = cli(*args, env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert problem in line
    assert "the store URL" in line


@pytest.mark.postgres
@pytest.mark.parametrize(
    "userinfo", ["ld_no_such_user:Sup3r S3cret", "ld no such user:Sup3rS3cret"]
)
def test_a_store_url_password_with_a_space_is_masked_whole(
    userinfo: str, postgres_url: str, tmp_path: Path
) -> None:
    # SQLAlchemy reads a user name up to ":" and a password up to "@", spaces and all
    parts = urlsplit(postgres_url)
    url = parts._replace(netloc=f"{userinfo}@{parts.hostname}:{parts.port}").geturl()
    result = cli("failures", "list", "--store", url, cwd=tmp_path, timeout=30)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "does not exist" in line
    assert f"{userinfo.split(':')[0]}:***@{parts.hostname}" in line
    for word in ("Sup3r", "S3cret"):
        assert word not in result.stderr


@pytest.mark.postgres
def test_a_user_who_may_only_read_is_configuration_for_a_command_that_writes(
    postgres_reader: tuple[str, str], tmp_path: Path
) -> None:
    reader, as_reader = postgres_reader
    env = {"LAMBDA_DESTINATIONS_STORE": as_reader}
    result = cli("prune", "--older-than", "1d", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "permission denied" in line
    assert f"grant {reader} SELECT, INSERT, UPDATE and DELETE" in line


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"LAMBDA_DESTINATIONS_ROUTES": "not json"}, "LAMBDA_DESTINATIONS_ROUTES"),
        ({"LAMBDA_DESTINATIONS_HANDLERS": "x"}, "LAMBDA_DESTINATIONS_HANDLERS"),
        ({"LAMBDA_DESTINATIONS_HANDLER_MODULES": "[x"}, "LAMBDA_DESTINATIONS_HANDLER_MODULES"),
        ({"LAMBDA_DESTINATIONS_ENDPOINT_URL": "file:///etc/passwd"}, "ENDPOINT_URL"),
        ({"LAMBDA_DESTINATIONS_ENDPOINT_URL": "ftp://127.0.0.1/"}, "ENDPOINT_URL"),
        ({"LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:99999"}, "ENDPOINT_URL"),
        (
            {"LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://u:s3cr3t@127.0.0.1:4566"},
            "setting 'endpoint_url' (LAMBDA_DESTINATIONS_ENDPOINT_URL): no user:password@",
        ),
        ({"LAMBDA_DESTINATIONS_KEEP_SUCCESSES_DAYS": "999999"}, "KEEP_SUCCESSES_DAYS"),
        ({"LAMBDA_DESTINATIONS_QUEUES": "q1,q1"}, "'q1' is listed twice"),
        (
            {"LAMBDA_DESTINATIONS_RETRY_MAX": "1"},
            "error: retry_max (1) is below retry_base (5): raise retry_max or lower retry_base "
            "(LAMBDA_DESTINATIONS_RETRY_MAX and LAMBDA_DESTINATIONS_RETRY_BASE, or the TOML file)",
        ),
        ({"LAMBDA_DESTINATIONS_CLAIM_LEASE": "5"}, "or raise claim_lease"),
        # tables no route uses: checked at start all the same
        ({"LAMBDA_DESTINATIONS_HANDLERS": '{"x": {"type": "nosuch"}}'}, "'nosuch' is unknown"),
        (  # it said type = 'oncall' is unknown, a type nobody wrote
            {"LAMBDA_DESTINATIONS_HANDLERS": '{"oncall": {"url": "https://x.example/x"}}'},
            "error: handlers.oncall (LAMBDA_DESTINATIONS_HANDLERS): no type: add type = one of "
            "email, persist, replay, "
            "replay-outcome, sms, webhook or module:function",
        ),
        (
            {"LAMBDA_DESTINATIONS_HANDLERS": '{"h": {"type": "webhook"}}'},
            "handlers.h (LAMBDA_DESTINATIONS_HANDLERS): give url",
        ),
        (  # it said "(Could not interpret numbers after plus-sign.); write it in international
            # form, such as +14*****2671": the example masked as a number the line quotes
            {"LAMBDA_DESTINATIONS_HANDLERS": '{"t": {"type": "sms", "phone_numbers": "+999 123"}}'},
            "error: handlers.t.phone_numbers[0] (LAMBDA_DESTINATIONS_HANDLERS): '+999 123' is not "
            "a phone number (no country has the calling code after its +); write it in "
            "international form, such as +1 415 555 2671",
        ),
        (  # it said "the URL must be http:// or https:// with a host", of one that has a host
            {"LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://::1:4566"},
            "setting 'endpoint_url' (LAMBDA_DESTINATIONS_ENDPOINT_URL): an IPv6 address in a "
            "URL goes in brackets, its port after them: http://[::1]:4566",
        ),
        (  # it was taken, and every mail to it bounced
            {
                "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(
                    {"m": {"type": "email", "from": "a@example.com", "to": "ops@-example.com"}}
                )
            },
            "error: handlers.m.to (LAMBDA_DESTINATIONS_HANDLERS): 'o***@-example.com' is not an "
            "email address: its domain's label '-example' starts with a hyphen: check the domain",
        ),
        (  # it said "the port is not a number from 0 to 65535"
            {
                "LAMBDA_DESTINATIONS_HANDLERS": '{"h": {"type": "webhook", "url": "https://fe80::1/pw"}}'
            },
            "error: handlers.h.url (LAMBDA_DESTINATIONS_HANDLERS): an IPv6 address in a URL goes "
            "in brackets, its port after them: https://[::1]:8080/…",
        ),
        (  # a URL aiohttp cannot read: ValueError's traceback, exit 1
            {
                "LAMBDA_DESTINATIONS_HANDLERS": '{"h": {"type": "webhook", "url": "http://[::1]x/pw"}}'
            },
            "error: handlers.h.url (LAMBDA_DESTINATIONS_HANDLERS): the URL cannot be sent "
            "(Invalid IPv6 URL): write it as scheme://host:port/path",
        ),
        ({"LAMBDA_DESTINATIONS_KEEP_REPLAYS_DAYS": "inf"}, "or 0 to keep forever"),
        ({"LAMBDA_DESTINATIONS_PRUNE_INTERVAL": "inf"}, "PRUNE_INTERVAL"),
        ({"LAMBDA_DESTINATIONS_HANDLER_TIMEOUT": "1e12"}, "HANDLER_TIMEOUT"),
        ({"LAMBDA_DESTINATIONS_HANDLER_TIMEOUT": "inf"}, "HANDLER_TIMEOUT"),
        (  # it polled GetQueueAttributes a thousand times a second
            {"LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL": "0.001"},
            "error: setting 'queue_metrics_interval' (LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL)"
            ": 0.001 seconds is below 1: use 1 or more (60 by default), or 0 to turn the samples "
            "off",
        ),
        (  # it sampled once at start, and the gauges said that depth for ever after
            {"LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL": "1e12"},
            "error: setting 'queue_metrics_interval' (LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL)"
            ": 1e+12 seconds is above 3600 (an hour): use at most 3600 (60 by default), or 0 to "
            "turn the samples off",
        ),
        ({"LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL": "inf"}, "is above 3600 (an hour)"),
        (
            {"LAMBDA_DESTINATIONS_ROUTES": '[{"handlers": ["persist"], "condition": "failed"}]'},
            "did you mean 'failure'",
        ),
        (
            {
                "LAMBDA_DESTINATIONS_ROUTES": json.dumps(
                    [{"handlers": ["persist"]}, {"handlers": ["persist", "sms", "persist"]}]
                )
            },
            "setting 'routes.1.handlers' (LAMBDA_DESTINATIONS_ROUTES): "
            "handler 'persist' is listed twice",
        ),
    ],
)
def test_settings_that_cannot_work_are_one_line_and_exit_3(
    env: dict[str, str], names: str, tmp_path: Path
) -> None:
    args = () if "LAMBDA_DESTINATIONS_QUEUES" in env else ("--queues", "q")
    result = cli("run", "--once", *args, env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert names in one_error_line(result)


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        # before: "Input should be greater than or equal to 1", the value and the range unsaid
        ("concurrency", "0", "0 is out of range: use a whole number from 1 to 1000"),
        ("wait_time", "30", "30 is out of range: use a whole number from 0 to 20"),
        ("heartbeat_fraction", "1", "1 is out of range: use a number above 0.05 and below 1"),
        # before: "Input should be a valid integer, unable to parse string as an integer"
        ("concurrency", "ten", "ten is not a whole number: use a whole number from 1 to 1000"),
        (
            "concurrency",
            "",
            "an empty value is not a whole number: use a whole number from 1 to 1000",
        ),
        ("retry_base", "5s", "5s is not a number: use a number from 0 to 43200"),
        # before: "Input should be greater than or equal to 0", of a value that is not below 0
        (
            "queue_metrics_interval",
            "nan",
            "nan is not a finite number: use a number from 0 to 3600",
        ),
        ("keep_successes_days", "nan", "nan is not a finite number: use a number from 0 to 36500"),
        # before: "Input should be less than 1", "… less than or equal to 43200"
        (
            "heartbeat_fraction",
            "NaN",
            "NaN is not a finite number: use a number above 0.05 and below 1",
        ),
        ("handler_timeout", "nan", "nan is not a finite number: use a number above 0, up to 43200"),
        # before: taken, as nothing bounds them above
        ("once_timeout", "inf", "inf is not a finite number: use a number above 0"),
        ("handler_retry_max_delay", "1e999", "1e999 is not a finite number: use 0 or more"),
        # no default to name: unset, it follows concurrency
        ("pollers_per_queue", "0", "0 is out of range: use a whole number from 1 to 100"),
    ],
)
def test_a_number_setting_s_line_names_the_value_the_range_and_the_default(
    setting: str, value: str, problem: str, tmp_path: Path
) -> None:
    variable = f"LAMBDA_DESTINATIONS_{setting.upper()}"
    default = Settings.model_fields[setting].default
    taken = "" if default is None else f" ({default:g} by default)"
    # an endpoint nothing listens on: a doctor that took the value would fail fast, not hang
    env = {variable: value, "LAMBDA_DESTINATIONS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    result = cli("doctor", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == f"error: setting {setting!r} ({variable}): {problem}{taken}"


@pytest.mark.parametrize(
    ("handler", "option", "value", "problem"),
    [
        # before: "Input should be less than or equal to 300", of what was written as 1h
        (
            {"type": "webhook", "url": "https://hooks.example"},
            "timeout",
            "1h",
            "1 hour is out of range: use a duration above 0 seconds, up to 5 minutes (10 seconds "
            "by default)",
        ),
        # before: "Input should be a finite number"
        (
            {"type": "webhook", "url": "https://hooks.example"},
            "timeout",
            "nan",
            "nan is not a finite number: use a duration above 0 seconds, up to 5 minutes (10 "
            "seconds by default)",
        ),
        # before: "Input should be a valid integer, unable to parse string as an integer"
        (
            {"type": "replay"},
            "budget",
            "three",
            "three is not a whole number: use a whole number from 1 to 50 (3 by default)",
        ),
        # no default to name: unset, the SMTP port follows the TLS setting
        (
            {"type": "email", "from": "alerts@example.com", "to": ["ops@example.com"]},
            "port",
            0,
            "0 is out of range: use a whole number from 1 to 65535",
        ),
    ],
)
def test_a_handler_s_number_out_of_range_names_the_value_and_the_range(
    handler: dict[str, Any], option: str, value: object, problem: str, tmp_path: Path
) -> None:
    env = {"LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"h": {**handler, option: value}})}
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: handlers.h.{option} (LAMBDA_DESTINATIONS_HANDLERS): {problem}"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("concurrency = 0", "0 is out of range: use a whole number from 1 to 1000 (32 by default)"),
        # a TOML float, as inf is
        (
            "queue_metrics_interval = nan",
            "nan is not a finite number: use a number from 0 to 3600 (60 by default)",
        ),
        # before: taken as 1, and false as 0: "False is out of range"; the line of the
        # variable's true, as for any value that is no number
        (
            "concurrency = true",
            "true is not a whole number: use a whole number from 1 to 1000 (32 by default)",
        ),
        (
            "concurrency = false",
            "false is not a whole number: use a whole number from 1 to 1000 (32 by default)",
        ),
        (
            "heartbeat_fraction = true",
            "true is not a number: use a number above 0.05 and below 1 (0.5 by default)",
        ),
        (
            "pollers_per_queue = true",
            "true is not a whole number: use a whole number from 1 to 100",
        ),
        (
            "keep_replays_days = false",
            "false is not a number: use a number from 0 to 36500 (90 by default)",
        ),
    ],
)
def test_a_number_setting_s_line_names_the_toml_file(
    line: str, problem: str, tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(line + "\n")
    result = cli("doctor", "--config", str(config), cwd=tmp_path, timeout=30)
    assert result.returncode == 3, result.stderr
    setting = line.partition(" =")[0]
    assert one_error_line(result) == (
        f"error: setting {setting!r} (the TOML file {config}): {problem}"
    )


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("http://127.0.0.1:5000/foo", "write http://127.0.0.1:5000"),
        ("https://sqs.us-east-1.amazonaws.com/a/b/", "write https://sqs.us-east-1.amazonaws.com"),
        ("http://[::1]:4566//", "write http://[::1]:4566"),
        ("http://localhost:4566/x?token=Tok3n", "write http://localhost:4566/ and its query"),
    ],
)
def test_an_endpoint_url_with_a_path_is_refused_at_start(
    url: str, fix: str, tmp_path: Path
) -> None:
    # before: run started, and every call got the server's page for the path: exit 1 with "an
    # HTML page titled '404 Not Found', not an AWS answer"
    env = {"LAMBDA_DESTINATIONS_ENDPOINT_URL": url}
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(
        "error: setting 'endpoint_url' (LAMBDA_DESTINATIONS_ENDPOINT_URL): no path in an "
        "endpoint URL (AWS services answer at its root): " + fix
    ), line
    assert "Tok3n" not in result.stderr


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("a" * 100_000, "is not a host name AWS's SDK takes"),
        # before: "(letters, digits, '-' and '.', …)", of a name of nothing else
        ("a." * 3_000 + "com", "is longer than a host name may be (255 characters)"),
    ],
    ids=["label", "name"],
)
def test_an_endpoint_host_pasted_wrong_is_not_repeated_whole(
    host: str, problem: str, tmp_path: Path
) -> None:
    # given: a host no SDK takes, of 100 KB (a file pasted in) or past DNS's 255 characters
    env = {"LAMBDA_DESTINATIONS_ENDPOINT_URL": f"http://{host}"}

    # when
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)

    # then: the problem and the fix in a line one can read (before, the whole host: 100 KB)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(
        f"error: setting 'endpoint_url' (LAMBDA_DESTINATIONS_ENDPOINT_URL): its host '{host[:9]}"
    ), line
    assert f"… ({len(host):,} characters)' {problem}" in line
    assert len(line) < 400, line


@pytest.mark.parametrize("host", ["1.2.3.4.5", "127.1", "10.0.0.1."])
def test_an_endpoint_host_of_digits_that_is_no_ipv4_address_is_a_setting_not_an_outage(
    host: str, tmp_path: Path
) -> None:
    # given: a host of digits and dots that is no IPv4 address: no name, and no address
    # aiohttp connects to (it asks no DNS for it)
    env = {"LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "5"}

    # when
    url = f"http://{host}:4566"
    result = cli("run", "--once", "--queues", "q", "--endpoint-url", url, env=env, cwd=tmp_path)

    # then: the setting, at start (before: exit 4 after the tries, the endpoint "unreachable"
    # with aiohttp's "is not a canonical IPv4 address")
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert f"its host {host!r} is no IPv4 address (four numbers of 0 to 255" in line, line


@pytest.mark.parametrize("url", ["http://127.0.0.1:4566", "http://127.0.0.1:4566/?token=x"])
def test_an_endpoint_url_at_its_root_is_taken(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no dev.toml of another test's
    assert load_settings(endpoint_url=url).endpoint_url == url


class _EmptyNotFound(http.server.BaseHTTPRequestHandler):
    """A web server where an AWS endpoint was expected: 404 with an empty body to every call."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class _StaticFiles(http.server.SimpleHTTPRequestHandler):
    """`python3 -m http.server`: to a POST, a 501 HTML page titled 'Error response'."""

    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """The URL of a local HTTP server answering with ``handler``, shut down on leaving."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("command", "operation"),
    [
        (["run", "--once", "--queues", "q1"], "GetQueueUrl"),
        (["run", "--queues", "q1"], "GetQueueUrl"),
        (["dlq", "peek", "q1"], "GetQueueUrl"),
        (["invoke", "orders-api"], "Invoke"),
    ],
    ids=["run --once", "run", "dlq peek", "invoke"],
)
def test_an_endpoint_answering_404_with_no_aws_error_names_it_and_where_it_was_set(
    command: list[str], operation: str, tmp_path: Path
) -> None:
    # before: "error: GetQueueUrl failed: 404" (and "Invoke failed: 404"), naming neither the
    # endpoint nor the fix
    with _serving(_EmptyNotFound) as url:
        env = {"LAMBDA_DESTINATIONS_ENDPOINT_URL": url, "LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "3"}
        result = cli(*command, env=env, cwd=tmp_path)
    # exit 1, as for an HTML 404 page: an AWS call that failed
    assert result.returncode == 1, result.stderr
    assert one_error_line(result) == (
        f"error: {operation} failed: {url} answered 404 with no AWS error in it, not an AWS "
        "answer: check that LAMBDA_DESTINATIONS_ENDPOINT_URL is the URL of an AWS endpoint"
    )


@pytest.mark.parametrize(
    ("handler", "answer"),
    [
        (_StaticFiles, "an HTML page titled 'Error response'"),
        (_EmptyNotFound, "with an empty body"),
    ],
    ids=["HTML 501", "empty 404"],
)
def test_doctor_with_an_endpoint_that_is_no_aws_endpoint_fails_its_endpoint_check(
    handler: type[http.server.BaseHTTPRequestHandler], answer: str, sqlite_url: str
) -> None:
    # before: an 84-line traceback of STS's XML parser (ResponseParserError), no JSON, exit 1
    asyncio.run(_migrated(sqlite_url))
    env = {"LAMBDA_DESTINATIONS_STORE": sqlite_url}
    with _serving(handler) as url:
        args = ["doctor", "--queues", "q1", "--endpoint-url", url]
        as_json = cli(*args, "--json", env=env, timeout=30)
        table = cli(*args, env=env, timeout=30)

    # then: one failed check (1, not unreachable: the endpoint answered), the rest still run
    assert as_json.returncode == 1, as_json.stderr
    assert "Traceback" not in as_json.stderr
    errors = [c for c in json.loads(as_json.stdout)["checks"] if c["status"] == "error"]
    assert errors == [
        {
            "check": "aws endpoint",
            "status": "error",
            "detail": f"{url} answered {answer}, not an AWS answer",
            "fix": "check that --endpoint-url is the URL of an AWS endpoint",
            "unreachable": False,
        }
    ]
    assert table.returncode == 1, table.stderr
    assert "Traceback" not in table.stderr
    assert any(
        line.startswith("aws endpoint") and "ERROR" in line for line in table.stdout.splitlines()
    ), table.stdout


async def _migrated(url: str) -> None:
    async with Store.from_url(url) as store:
        await store.migrate()


@pytest.mark.parametrize("legacy", ["orders api", "", "arn:aws:lambda:us-east-1:123:function:f"])
def test_a_replay_legacy_function_that_is_no_function_name_is_one_line(
    legacy: str, tmp_path: Path
) -> None:
    # before: the worker started; each legacy DLQ message's replay was scheduled and its
    # Invoke, after the delay, refused by Lambda; empty, each was "not replayed: … pass
    # --legacy-function NAME", an option of other commands
    handlers = {"r": {"type": "replay", "legacy_function": legacy}}
    env = {"LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers)}
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: handlers.r.legacy_function (LAMBDA_DESTINATIONS_HANDLERS): {legacy!r} is not "
        "a Lambda function name or ARN: "
        "write a name (orders-api), maybe with :alias or :version, or the function's ARN "
        "(arn:aws:lambda:us-east-1:123456789012:function:orders-api)"
    )


@pytest.mark.parametrize(
    "command", [["replay", "--since", "1h"], ["dlq", "redrive", "q-dlq", "--reinvoke"]]
)
def test_a_legacy_function_option_that_is_no_function_name_is_a_usage_error(
    command: list[str], tmp_path: Path
) -> None:
    # before: taken, and each legacy DLQ message's Invoke refused by Lambda
    result = cli(*command, "--legacy-function", "orders api", "--yes", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: Invalid value for '--legacy-function': 'orders api' is not a Lambda function "
        "name or ARN: write a name (orders-api), maybe with :alias or :version, or the "
        "function's ARN (arn:aws:lambda:us-east-1:123456789012:function:orders-api)"
    )


@pytest.mark.parametrize(
    ("hook", "setting"),
    [
        ({"headers": {"X-Token": "abc\r\nX-Evil: 1"}}, "headers.X-Token"),
        ({"headers_env": {"X-Token": "PROBE_HDR"}}, "headers_env.X-Token"),
    ],
)
def test_a_webhook_header_with_a_line_break_is_one_line_and_exit_3(
    hook: dict[str, Any], setting: str, tmp_path: Path
) -> None:
    handlers = {"w": {"type": "webhook", "url": "https://hooks.example.com/x", **hook}}
    env = {
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(handlers),
        "PROBE_HDR": "abc\r\nX-Evil: 1",
    }
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3
    line = one_error_line(result)
    assert line.startswith(f"error: handlers.w.{setting} (LAMBDA_DESTINATIONS_HANDLERS): "), line
    assert "line break" in line
    assert "abc" not in result.stderr  # the value may be a secret
    assert "X-Evil" not in result.stderr


def test_prune_with_retention_beyond_a_century_is_one_line(tmp_path: Path) -> None:
    env = {"LAMBDA_DESTINATIONS_KEEP_FAILURES_DAYS": "1e9"}
    result = cli("prune", "--dry-run", "--store", f"sqlite:///{tmp_path / 'x.db'}", env=env)
    assert result.returncode == 3
    assert "at most 36500" in one_error_line(result)


def test_handler_modules_take_comma_separated_names(tmp_path: Path) -> None:
    result = cli(
        "run",
        "--once",
        "--queues",
        "q",
        env={"LAMBDA_DESTINATIONS_HANDLER_MODULES": "json, no_such_module_here"},
        cwd=tmp_path,
    )
    assert result.returncode == 3
    assert "'no_such_module_here'" in one_error_line(result)


def test_a_handler_module_not_found_says_where_it_must_be(tmp_path: Path) -> None:
    # given: a module the worker's Python cannot find, one whose own import is missing, and
    # one named by its file, .py and all (it said to add its folder to PYTHONPATH, which was)
    (tmp_path / "needs_more.py").write_text("import no_such_dependency_here\n")
    missing = {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "myapp_not_here.destinations"}
    needs = {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "needs_more"}
    (tmp_path / "found_here.py").write_text("")
    suffixed = {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "found_here.py"}

    # when
    not_found = cli("run", "--once", "--queues", "q", env=missing, cwd=tmp_path)
    its_import = cli("run", "--once", "--queues", "q", env=needs, cwd=tmp_path)
    its_file = cli("run", "--once", "--queues", "q", env=suffixed, cwd=tmp_path)

    # then: the first names the fix; the second names its own missing import, not PYTHONPATH;
    # the third, its name without .py
    assert not_found.returncode == its_import.returncode == its_file.returncode == 3
    assert one_error_line(its_file).endswith(
        "(No module named 'found_here.py'; 'found_here' is not a package): write it without "
        ".py, as found_here"
    )
    assert one_error_line(not_found) == (
        "error: handler_modules entry 'myapp_not_here.destinations' "
        "(LAMBDA_DESTINATIONS_HANDLER_MODULES): cannot import module "
        "'myapp_not_here.destinations' (No module named 'myapp_not_here'): install it in the "
        "worker's environment, or add its folder to PYTHONPATH"
    )
    assert one_error_line(its_import) == (
        "error: handler_modules entry 'needs_more' (LAMBDA_DESTINATIONS_HANDLER_MODULES): "
        "cannot import module 'needs_more' (No module named 'no_such_dependency_here'): "
        "install no_such_dependency_here in the worker's environment"
    )


BROKEN_HANDLER_MODULES = {
    "syntax": ("x = (\n", "has a syntax error at {path}:1 ("),
    "raises": (
        'raise RuntimeError("no settings")\n',
        "raised RuntimeError: no settings ({path}:1)",
    ),
    "sync_handler": (
        "from lambda_destinations import handler\n\n@handler()\ndef syncy(m, c): ...\n",
        "raised TypeError: handler syncy must be an async function ({path}:3)",
    ),
    # before: "must be an async function", of an async def (one that yields)
    "yielding_handler": (
        "from lambda_destinations import handler\n\n@handler()\nasync def gen(m, c):\n"
        "    yield m\n",
        "raised TypeError: handler gen is an async generator (it yields): a handler returns, "
        "it does not yield ({path}:3)",
    ),
    "exits": ("import sys\nsys.exit(0)\n", "called sys.exit(0) while imported"),
    # before: exit 130, 'interrupted', as if the user had pressed Ctrl-C
    "interrupts": ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt ({path}:1)"),
    # before: a traceback, exit 1
    "base_exception": (
        "class Stop(BaseException): ...\n\nraise Stop('no settings')\n",
        "raised Stop: no settings ({path}:3)",
    ),
}


@pytest.mark.parametrize("how", ["module", "route"])
@pytest.mark.parametrize("kind", sorted(BROKEN_HANDLER_MODULES))
def test_a_handler_module_that_fails_to_import_is_one_line(
    kind: str, how: str, tmp_path: Path
) -> None:
    # given: a module that raises (or exits) while imported, listed or named by a route
    source, wanted = BROKEN_HANDLER_MODULES[kind]
    module = f"broken_{kind}"
    (tmp_path / f"{module}.py").write_text(source)
    env = (
        {"LAMBDA_DESTINATIONS_HANDLER_MODULES": module}
        if how == "module"
        else {"LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": [f"{module}:f"]}])}
    )
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert f"module {module!r}" in line, line
    assert wanted.format(path=tmp_path / f"{module}.py") in line, line


def test_ctrl_c_while_a_handler_module_imports_is_the_user_s(tmp_path: Path) -> None:
    # given: a handler module that takes its time to import
    (tmp_path / "slow_import.py").write_text(
        "import pathlib, time\n\npathlib.Path('importing').touch()\ntime.sleep(30)\n"
    )
    env = {**os.environ, "LAMBDA_DESTINATIONS_HANDLER_MODULES": "slow_import"}
    with subprocess.Popen(
        [*ENTRY, "run", "--once", "--queues", "q"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    ) as process:
        try:
            while not (tmp_path / "importing").exists():
                assert process.poll() is None, process.communicate()
                time.sleep(0.05)
            # when: Ctrl-C pressed again and again until it ends (asyncio takes the first as a
            # cancellation, the second raises KeyboardInterrupt in the import, the rest come
            # while it leaves)
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                process.send_signal(signal.SIGINT)
                time.sleep(0.01)
            _, err = process.communicate(timeout=10)
        finally:
            reap(process)

    # then: interrupted, not the module's fault, with the documented code (a Ctrl-C that came
    # while it left ended it by the signal: -2)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "error:" not in err, err
    assert "Traceback" not in err, err


def test_a_command_run_in_process_leaves_ctrl_c_to_its_caller(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: a command that a Ctrl-C interrupts, run in this process (as a test or a program
    # runs cli), not by the console script, whose process it is
    def interrupted() -> None:
        raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)

    # when
    with pytest.raises(SystemExit) as leaving:
        reports_errors(interrupted)()

    # then: 130 and its line, and this process still takes Ctrl-C as it did
    assert leaving.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_while_the_command_line_imports_is_interrupted_not_a_traceback() -> None:
    # given: the console script's entry point, a Ctrl-C coming while the command line's
    # modules import (an import hook raises it where the signal would)
    hook = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lambda_destinations.cli._output':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    module, function = scripts["project"]["scripts"]["lambda-destinations"].split(":")

    # when: the installed command's way in
    result = subprocess.run(
        [sys.executable, "-c", f"{hook}from {module} import {function}; {function}()"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    # then: its line and the documented code (before: Python's traceback of the import), the
    # one the commands' own Ctrl-C exits with
    assert (result.returncode, result.stderr) == (130, "interrupted\n")
    assert _entry.EXIT_INTERRUPTED == _app.EXIT_INTERRUPTED == 130


@pytest.mark.parametrize("args", [("run", "--once", "--queues", "q"), ("dev", "--once")])
def test_ctrl_c_before_the_worker_s_loop_runs_is_interrupted_and_nothing_else(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # given: a Ctrl-C coming as the worker's modules import, its work made but not started
    # (an import hook raises it where the signal would)
    hook = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'lambda_destinations.worker':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )

    # when
    result = subprocess.run(
        [sys.executable, "-c", f"{hook}from lambda_destinations.cli import main; main()", *args],
        env={**os.environ, "LAMBDA_DESTINATIONS_OPS_PORT": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then: its line and code, and no more (before: a warning that a coroutine was never
    # awaited, the worker's own, after it)
    assert (result.returncode, result.stderr) == (130, "interrupted\n")


def test_ctrl_c_while_the_command_is_loaded_is_interrupted_not_aborted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: a command whose module a Ctrl-C interrupts as it imports (the first tenths of a
    # second of every command: the group imports it after parsing the command line)
    (tmp_path / "interrupted_command.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = LazyGroup("lambda-destinations")
    group.lazy["slow"] = ("interrupted_command", "a command interrupted as it loads")

    # when
    with pytest.raises(SystemExit) as leaving:
        group.main(["slow"], prog_name="lambda-destinations")

    # then: as a Ctrl-C later (before: click's own "Aborted!", exit 1)
    assert leaving.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "myapp/destinations.py"},
            "error: handler_modules entry 'myapp/destinations.py' "
            "(LAMBDA_DESTINATIONS_HANDLER_MODULES): 'myapp/destinations.py' is not a module "
            "name: write it as Python imports it, such as myapp.destinations (a file's path is "
            "not one)",
        ),
        (  # it blamed the module and pointed at importlib's own file
            {"LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": [":notify"]}])},
            "error: handler ':notify' (LAMBDA_DESTINATIONS_ROUTES): '' is not a module name: "
            "write it as Python imports it, such as myapp.destinations (a file's path is not one)",
        ),
        (  # it said the module itself was no async function
            {"LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["json:"]}])},
            "error: handler 'json:' (LAMBDA_DESTINATIONS_ROUTES): nothing follows ':': write "
            "module:function, such as myapp.destinations:notify",
        ),
    ],
)
def test_a_reference_that_names_no_module_or_function_is_one_line(
    env: dict[str, str], line: str, tmp_path: Path
) -> None:
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == line


def test_a_handler_module_from_the_toml_file_names_the_file(tmp_path: Path) -> None:
    # given: the list in a TOML file, where the variable would win over it (one of the two
    # is read, not both: the line says which to fix)
    config = tmp_path / "settings.toml"
    config.write_text('handler_modules = ["myapp_not_here"]\n')

    # when
    result = cli("run", "--once", "--queues", "q", "--config", str(config), cwd=tmp_path)

    # then
    assert result.returncode == 3, result.stderr
    assert one_error_line(result).startswith(
        f"error: handler_modules entry 'myapp_not_here' (the TOML file {config}): "
        "cannot import module 'myapp_not_here'"
    )


def test_a_handler_module_taking_a_built_in_name_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "own_persist.py").write_text(
        "from lambda_destinations import handler\n\n"
        "@handler('persist')\nasync def mine(m, c): ...\n"
    )
    env = {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "own_persist"}
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        "error: handler_modules entry 'own_persist' (LAMBDA_DESTINATIONS_HANDLER_MODULES): "
        "@handler('persist') on mine: "
        "'persist' is a built-in handler's name: choose another"
    )


@pytest.mark.parametrize(("name", "kind"), [("persist", "webhook"), ("replay", "persist")])
def test_a_handler_table_giving_a_built_in_name_another_type_is_one_line(
    name: str, kind: str, tmp_path: Path
) -> None:
    # The default route's persist (and every route's) would have run the table's handler
    config = tmp_path / "c.toml"
    url = 'url = "https://hooks.example.com/x"\n' if kind == "webhook" else ""
    config.write_text(f'queues = ["q"]\n[handlers.{name}]\ntype = "{kind}"\n{url}')
    result = cli("run", "--once", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: handlers.{name} (the TOML file {config}): {name!r} is a built-in handler's "
        "name, and the table makes "
        f"it a {kind} handler: give the table another name (and the routes that use it)"
    )


def test_a_handler_table_giving_a_handler_s_name_another_type_is_one_line(
    tmp_path: Path,
) -> None:
    # given: a webhook table named as a @handler is (before: the routes naming it ran the
    # webhook, and the module's function never, with nothing said)
    (tmp_path / "own_notify.py").write_text(
        "from lambda_destinations import handler\n\n@handler('notify')\nasync def mine(m, c): ...\n"
    )
    hook = {"type": "webhook", "url": "https://hooks.example.com/x"}
    env = {
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": "own_notify",
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["notify"]}]),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"notify": hook}),
    }

    # when
    line = one_error_line(cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path))

    # then
    assert line == (
        "error: handlers.notify (LAMBDA_DESTINATIONS_HANDLERS): 'notify' is the name of "
        "@handler own_notify.mine, and the table makes it a webhook handler: give the table "
        "another name (and the routes that use it)"
    )


def test_doctor_reports_a_handler_module_that_fails_to_import(
    tmp_path: Path, endpoint_url: str
) -> None:
    (tmp_path / "broken_doctor.py").write_text('raise RuntimeError("no settings")\n')
    env = {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "broken_doctor"}
    result = cli("doctor", "--queues", "q", "--endpoint-url", endpoint_url, env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "module 'broken_doctor' raised RuntimeError: no settings" in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("dev", "--json"),
            "error: --json goes with --once, whose summary it prints as JSON: add --once, or "
            "leave --json out (--log-format json: the logs as JSON)",
        ),
        (
            ("dev", "--once", "--console-port", "9123"),
            "error: --console-port goes without --once: dev --once exits once the queues are "
            "drained, and serves no console; leave one of them out (`lambda-destinations "
            "console` in this folder serves what it stored)",
        ),
        (
            ("dev", "--once", "--endpoint-url", "http://127.0.0.1:4566"),
            "error: --endpoint-url: dev runs its own AWS endpoint and queues, and writes them to "
            ".lambda-destinations/dev.toml; leave it out (`lambda-destinations run` consumes the "
            "queues of an endpoint you give)",
        ),
        (
            ("dev", "--queues", "orders", "--endpoint-url", "http://127.0.0.1:4566"),
            "error: --endpoint-url and --queues: dev runs its own AWS endpoint and queues, and "
            "writes them to .lambda-destinations/dev.toml; leave them out (`lambda-destinations "
            "run` consumes the queues of an endpoint you give)",
        ),
    ],
    ids=[
        "--json without --once",
        "--console-port with --once",
        "--endpoint-url",
        "--queues and --endpoint-url",
    ],
)
def test_dev_options_that_mean_nothing_together_are_a_usage_error(
    args: tuple[str, ...], line: str, tmp_path: Path
) -> None:
    # before: dropped without a word; dev ran on, printing no JSON, or drained with no console,
    # or on its own endpoint and queues
    result = cli(*args, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == line
    assert list(tmp_path.iterdir()) == []  # refused before dev began anything


def test_dev_simulate_past_what_its_local_sqs_sends_in_a_minute_is_refused(
    tmp_path: Path,
) -> None:
    # before: up to 100,000, which took hours with nothing on the screen (moto counts its
    # queue on each send: 3,000 records took 82 s before the worker started)
    result = cli("dev", "--simulate", "2001", "--once", cwd=tmp_path, timeout=30)

    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == (
        "error: Invalid value for '--simulate': 2001 is out of range: use a whole number from "
        "0 to 2000."
    )
    assert list(tmp_path.iterdir()) == []
    assert "at most 2,000" in cli("dev", "--help", cwd=tmp_path).stdout


def test_run_concurrency_0_is_refused_as_the_environment_refuses_it(tmp_path: Path) -> None:
    result = cli("run", "--once", "--queues", "q", "--concurrency", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--concurrency" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("failures", "list", "--limit", "99999999999999999999"),
        ("replay", "--rate", "nan"),
        ("dlq", "redrive", "q", "--rate", "inf"),
        ("quarantine", "show", "9999999999999999999999"),  # was OverflowError in the driver
        ("quarantine", "resend", "9999999999999999999999"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(args: tuple[str, ...], tmp_path: Path) -> None:
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value" in result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        # before: "use 0 or more." of a value that is 0 or more: the upper bound went unsaid
        (
            ("failures", "list", "--limit", "1000000000000"),
            "Invalid value for '--limit': 1000000000000 is out of range: use a whole number "
            "from 0 to 1000000000.",
        ),
        (
            ("quarantine", "show", "9223372036854775808"),
            "Invalid value for 'QUARANTINE_ID': 9223372036854775808 is out of range: use a "
            "whole number from 1 to 9223372036854775807.",
        ),
        # before: a traceback from the store (an SQLite INTEGER cannot hold it)
        (
            ("quarantine", "list", "--limit", "99999999999999999999"),
            "Invalid value for '--limit': 99999999999999999999 is out of range: use a whole "
            "number from 0 to 1000000000.",
        ),
    ],
    ids=["failures list --limit", "quarantine id", "quarantine list --limit"],
)
def test_a_number_above_an_option_s_range_names_the_whole_range(
    args: tuple[str, ...], line: str, sqlite_url: str, tmp_path: Path
) -> None:
    # given: a store the command would read (the limit reached it, and overflowed there)
    env = {"LAMBDA_DESTINATIONS_STORE": sqlite_url}
    assert cli("migrate", env=env, cwd=tmp_path).returncode == 0
    result = cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == f"error: {line}"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("healthcheck", "--path", "nope"), "starting with /"),
        (("healthcheck", "--path", "/ready z"), "starting with /"),
        (
            ("healthcheck", "--timeout", "-1"),
            "-1 is out of range: use a number above 0, up to 3600.",
        ),
        (("healthcheck", "--timeout", "0"), "0 is out of range: use a number above 0, up to 3600."),
        (("healthcheck", "--timeout", "nan"), "'nan' is not a finite number: use a number above 0"),
        (("healthcheck", "--timeout", "inf"), "'inf' is not a finite number: use a number above 0"),
    ],
)
def test_healthcheck_refuses_a_bad_path_or_timeout(
    args: tuple[str, ...], problem: str, tmp_path: Path
) -> None:
    # An ops port nothing listens on: a traceback came from building the URL, before asking.
    result = cli(*args, env={"LAMBDA_DESTINATIONS_OPS_PORT": "9"}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert problem in result.stderr


def test_healthcheck_with_nothing_listening_or_answering_says_which_in_one_line(
    tmp_path: Path,
) -> None:
    import socket

    # before: "no answer (<urlopen error [Errno 111] Connection refused>)"
    port = free_port()
    refused = cli("healthcheck", env={"LAMBDA_DESTINATIONS_OPS_PORT": str(port)}, cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert one_error_line(refused) == (
        f"error: http://127.0.0.1:{port}/healthz: nothing listens there: is the worker running, "
        "with the LAMBDA_DESTINATIONS_OPS_PORT it was started with?"
    )
    # in the folder dev ran in, its dev.toml naming the port: whether dev runs there
    # (before: the worker's variable, which dev's user never set)
    (tmp_path / ".lambda-destinations").mkdir()
    (tmp_path / ".lambda-destinations" / "dev.toml").write_text(
        f'endpoint_url = "http://127.0.0.1:{free_port()}"\nops_port = {port}\n'
    )
    stopped = cli("healthcheck", cwd=tmp_path, unset=["LAMBDA_DESTINATIONS_OPS_PORT"])
    assert stopped.returncode == 1, stopped.stderr
    assert one_error_line(stopped) == (
        f"error: http://127.0.0.1:{port}/healthz: nothing listens there: is `lambda-destinations "
        "dev` running in this folder? (.lambda-destinations/dev.toml names it)"
    )
    # a port that takes the connection and never answers: the timeout, named
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        waited = cli(
            "healthcheck",
            "--timeout",
            "0.5",
            env={"LAMBDA_DESTINATIONS_OPS_PORT": str(port)},
            cwd=tmp_path,
        )
    assert waited.returncode == 1, waited.stderr
    assert one_error_line(waited) == (
        f"error: http://127.0.0.1:{port}/healthz: no answer within 0.5 s (--timeout)"
    )
    # a host that does not resolve (before: "no answer (Name or service not known)")
    unresolved = cli(
        "healthcheck",
        env={
            "LAMBDA_DESTINATIONS_OPS_PORT": "5310",
            "LAMBDA_DESTINATIONS_OPS_HOST": "nohost.invalid",
        },
        cwd=tmp_path,
    )
    assert unresolved.returncode == 1, unresolved.stderr
    line = one_error_line(unresolved)
    assert line.startswith("error: http://nohost.invalid:5310/healthz: the host does not resolve (")
    assert line.endswith(
        "): set LAMBDA_DESTINATIONS_OPS_HOST as the worker has it, or leave it unset for loopback"
    )


async def test_healthcheck_of_a_path_the_ops_server_lacks_names_the_two_it_has(
    tmp_path: Path,
) -> None:
    import asyncio

    from lambda_destinations.worker import OpsServer

    # given: an ops server, as the worker runs it
    ops = OpsServer(host="127.0.0.1", port=0, health=list, readiness=list, metrics=no_metrics)
    await ops.start()
    try:
        env = {"LAMBDA_DESTINATIONS_OPS_PORT": str(ops.addresses[0][1])}
        # when: asked for a page it does not serve (before: "404 404: Not Found")
        result = await asyncio.to_thread(
            cli, "healthcheck", "--path", "/health", env=env, cwd=tmp_path
        )
    finally:
        await ops.close()
    # then
    assert result.returncode == 1, result.stderr
    assert one_error_line(result) == (
        f"error: http://127.0.0.1:{env['LAMBDA_DESTINATIONS_OPS_PORT']}/health: 404, the ops "
        "server has no such page: ask /healthz or /readyz (--path)"
    )


async def test_healthcheck_asks_a_worker_listening_on_every_ipv6_address_on_ipv6_loopback(
    tmp_path: Path,
) -> None:
    import asyncio

    from lambda_destinations.worker import OpsServer

    # given: an ops server on ::, as the README says to set it on an IPv6-only cluster (the
    # socket is IPv6 only: nothing answers on 127.0.0.1)
    ops = OpsServer(host="::", port=0, health=list, readiness=list, metrics=no_metrics)
    await ops.start()
    try:
        port = ops.addresses[0][1]
        env = {"LAMBDA_DESTINATIONS_OPS_PORT": str(port), "LAMBDA_DESTINATIONS_OPS_HOST": "::"}
        # when (before: it asked 127.0.0.1, "nothing listens there", and the container's
        # HEALTHCHECK found a healthy worker unhealthy)
        everywhere = await asyncio.to_thread(cli, "healthcheck", env=env, cwd=tmp_path)
        env["LAMBDA_DESTINATIONS_OPS_HOST"] = "::1"  # before: http://::1:PORT, no host
        loopback = await asyncio.to_thread(cli, "healthcheck", env=env, cwd=tmp_path)
    finally:
        await ops.close()
    # then
    assert everywhere.returncode == 0, everywhere.stderr
    assert everywhere.stdout.strip() == f"http://[::1]:{port}/healthz: 200"
    assert loopback.returncode == 0, loopback.stderr
    assert loopback.stdout.strip() == f"http://[::1]:{port}/healthz: 200"


async def test_healthcheck_asks_its_own_worker_around_the_egress_proxy(tmp_path: Path) -> None:
    from forward_proxy import ForwardProxy
    from lambda_destinations.worker import OpsServer

    # given: a container whose environment names an egress proxy for http:// and no NO_PROXY,
    # as a company's base image sets it; the proxy refuses (its policy), as a proxy asked for
    # its own 127.0.0.1 would fail
    ops = OpsServer(host="127.0.0.1", port=0, health=list, readiness=list, metrics=no_metrics)
    await ops.start()
    try:
        async with ForwardProxy(refuse=403) as proxy:
            port = ops.addresses[0][1]
            env = {"LAMBDA_DESTINATIONS_OPS_PORT": str(port), "HTTP_PROXY": proxy.url}
            # when (before: the question went to the proxy, and a healthy worker was unhealthy:
            # "403 <html><title>Access Denied</title></html>")
            result = await asyncio.to_thread(
                cli, "healthcheck", env=env, cwd=tmp_path, unset=("NO_PROXY", "no_proxy")
            )
    finally:
        await ops.close()
    # then: asked on loopback, not through the proxy
    assert proxy.seen == []
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"http://127.0.0.1:{port}/healthz: 200"


@pytest.mark.parametrize("command", [("healthcheck",), ("run", "--once")])
@pytest.mark.parametrize("host", ["a b", "ops/host"])
def test_an_ops_host_that_is_no_host_is_one_line_naming_the_setting(
    command: tuple[str, ...], host: str, tmp_path: Path
) -> None:
    # before: healthcheck's urllib refused the URL it made with a traceback ("URL can't
    # contain control characters"), or asked http://ops/host:PORT
    result = cli(
        *command,
        env={
            "LAMBDA_DESTINATIONS_OPS_HOST": host,
            "LAMBDA_DESTINATIONS_OPS_PORT": "9",
            "LAMBDA_DESTINATIONS_QUEUES": "q",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: setting 'ops_host' (LAMBDA_DESTINATIONS_OPS_HOST): {host!r} is not a host name "
        "or IP address: use an address of this machine, such as 0.0.0.0 (every IPv4 address), "
        ":: (every IPv6 address) or 127.0.0.1"
    )


def test_a_log_level_or_format_in_capitals_is_taken(tmp_path: Path) -> None:
    # before: LAMBDA_DESTINATIONS_LOG_LEVEL=DEBUG was refused, exit 3
    from lambda_destinations.config import load_settings

    settings = load_settings(log_level=" DEBUG", log_format="JSON")
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    result = cli(
        "doctor",
        "--json",
        env={"LAMBDA_DESTINATIONS_LOG_LEVEL": "WARNING", "LAMBDA_DESTINATIONS_QUEUES": "q"},
        cwd=tmp_path,
    )
    assert "log_level" not in result.stderr, result.stderr
    assert result.returncode != 3, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("result", "rid", "--wait", "nan"),
        ("result", "rid", "--wait", "inf"),
        ("result", "rid", "--wait", "1e300"),
        ("result", "rid", "--wait", "25h"),
        ("result", "rid", "--wait", "-1"),
        ("invoke", "orders-api", "--wait", "nan"),
    ],
)
def test_waits_that_never_end_are_refused(args: tuple[str, ...], tmp_path: Path) -> None:
    # Refused before the store is opened: none is given, and none is created.
    result = cli(*args, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "from 0 to 24h" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ("result", "rid", "--wait", "2d"),
        ("result", "rid", "--wait", "1w"),
        ("result", "rid", "--wait", "soon"),
        ("invoke", "orders-api", "--wait", "2d"),
    ],
)
def test_a_wait_in_no_unit_of_wait_says_what_it_takes(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    # given: days, weeks, a word: --wait takes seconds, minutes and hours, up to a day (it said
    # only "'2d' is not a duration", as if a day were none)
    result = cli(*args, cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == (
        f"error: --wait: {args[-1]!r} is not a duration --wait takes: give seconds, or hours, "
        "minutes and seconds (30, 30s, 5m, 1h30m), at most 24h"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "  "])
def test_invoke_refuses_an_empty_function_name(name: str, tmp_path: Path) -> None:
    result = cli("invoke", name, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "give a function name" in one_error_line(result)


# -- simulate ---------------------------------------------------------------------------------


def test_simulate_to_a_queue_that_does_not_exist_is_one_line(endpoint_url: str) -> None:
    result = cli("simulate", "--queue", "no-such-queue", "--endpoint-url", endpoint_url)
    assert result.returncode == 2
    assert "'no-such-queue' does not exist" in one_error_line(result)


@pytest.mark.parametrize("count", ["100", "5"])
def test_simulate_to_a_bucket_that_does_not_exist_is_one_line_and_sends_nothing(
    endpoint_url: str, make_queue: Any, sqs: Any, count: str
) -> None:
    # before: "PutObject failed: NoSuchBucket: …", exit 1, with no fix; and with too few
    # records for any to go to the bucket (-n 5), "wrote 0 failure records", exit 0
    url, _dlq = make_queue("no-bucket")
    result = cli(
        "simulate",
        *("--queue", url, "--bucket", "no-such-bucket", "-n", count),
        *("--endpoint-url", endpoint_url),
    )
    assert result.returncode == 2
    line = one_error_line(result)
    assert "bucket 'no-such-bucket' does not exist: check the name" in line
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "0"  # nothing sent


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--bucket", "Bad_Bucket!", "--bucket: 'Bad_Bucket!' cannot be an S3 bucket's name"),
        ("--bucket", "", "--bucket: '' cannot be an S3 bucket's name"),
        ("--failure-queue", "", "no queue can be named ''"),
    ],
)
def test_simulate_refuses_an_empty_or_impossible_name_and_sends_nothing(
    endpoint_url: str, make_queue: Any, sqs: Any, option: str, value: str, said: str
) -> None:
    # before: --bucket 'Bad_Bucket!' ended in "error: Parameter validation failed:", exit 1,
    # and an empty --bucket or --failure-queue was taken as none given
    url, _dlq = make_queue("odd-names")
    result = cli(
        "simulate",
        *("--queue", url, option, value, "-n", "20"),
        *("--endpoint-url", endpoint_url),
    )
    assert result.returncode == 2, result.stderr
    assert said in one_error_line(result)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "0"  # nothing sent


@pytest.mark.parametrize(
    ("region", "named"),
    [
        ({"AWS_REGION": "us-east-1"}, "AWS_REGION"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-1"}, "AWS_DEFAULT_REGION"),
    ],
)
def test_simulate_against_an_unreachable_endpoint_is_one_line(
    region: dict[str, str], named: str
) -> None:
    result = cli("simulate", "--queue", "q", "--endpoint-url", "http://127.0.0.1:1", env=region)
    assert result.returncode == 4
    line = one_error_line(result)
    assert "cannot reach http://127.0.0.1:1" in line
    # the fix names the option it came from (before: always LAMBDA_DESTINATIONS_ENDPOINT_URL),
    # and the variable the region came from
    assert line.endswith(f": check --endpoint-url, {named} and the network"), line


def test_an_unreachable_endpoint_from_a_toml_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('endpoint_url = "http://127.0.0.1:1"\nregion = "eu-west-1"\n')
    result = cli("simulate", "--queue", "q", "--config", str(config))
    assert result.returncode == 4, result.stderr
    assert one_error_line(result).endswith(
        f": check endpoint_url in the TOML file {config}, region in the TOML file {config} "
        "and the network"
    )


@pytest.mark.parametrize(
    ("endpoint", "fix"),
    [
        ([], "is `lambda-destinations dev` running in this folder?"),
        # where each was set: the option, and dev's file for the region
        (["--endpoint-url", "http://127.0.0.1:2"], "check --endpoint-url, region in the TOML file"),
    ],
)
def test_an_unreachable_endpoint_in_dev_s_folder_points_at_dev_only_when_it_is_dev_s(
    tmp_path: Path, endpoint: list[str], fix: str
) -> None:
    # given: the settings file dev writes, naming an endpoint that is not running
    (tmp_path / ".lambda-destinations").mkdir()
    (tmp_path / ".lambda-destinations" / "dev.toml").write_text(
        'endpoint_url = "http://127.0.0.1:1"\nregion = "us-east-1"\n'
        'store = "sqlite:///.lambda-destinations/dev.db"\nqueues = ["ld-dev-failure"]\n'
    )

    # when: a command reaches for it, or for an endpoint given on the command line
    result = cli("dlq", "peek", "ld-dev-failure-dlq", *endpoint, cwd=tmp_path)

    # then: the fix offered is dev's only for dev's endpoint
    assert result.returncode == 4
    assert fix in one_error_line(result)


@pytest.mark.parametrize("dev", [True, False], ids=["dev's folder", "a TOML file"])
@pytest.mark.parametrize("args", [("doctor", "--json"), ("run", "--once")])
def test_doctor_and_run_name_where_an_unreachable_endpoint_was_set(
    tmp_path: Path, args: tuple[str, ...], dev: bool
) -> None:
    # given: the endpoint, on a port nobody listens on, set by dev's file or by another
    settings = (
        'endpoint_url = "http://127.0.0.1:1"\nregion = "us-east-1"\n'
        'store = "sqlite:///settings.db"\nqueues = ["ld-dev-failure"]\n'
    )
    if dev:
        config = Path(".lambda-destinations") / "dev.toml"
        given: tuple[str, ...] = ()
        fix = f"is `lambda-destinations dev` running in this folder? ({config} names it)"
    else:
        config = Path("worker.toml")
        given = ("--config", str(config))
        fix = f"check endpoint_url in the TOML file {config}, region in the TOML file {config} "
        fix += "and the network"
    (tmp_path / config).parent.mkdir(exist_ok=True)
    (tmp_path / config).write_text(settings)
    env = {
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
        "LAMBDA_DESTINATIONS_ONCE_TIMEOUT": "2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    # when
    result = cli(*args, *given, env=env, cwd=tmp_path)

    # then: exit 4, and the fix names where the endpoint came from (before: doctor named the
    # file dev writes as if the user had, and run always said LAMBDA_DESTINATIONS_ENDPOINT_URL)
    assert result.returncode == 4, result.stderr
    if args[0] == "doctor":
        (check,) = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "aws endpoint"]
        assert check["fix"] == fix
    else:
        line = one_error_line(result)
        assert line.startswith("error: SQS stayed unreachable for 2s ("), line
        assert line.endswith(f"): {fix}"), line


NOT_UTF8 = b"\x00\xff\xfe"
DEV_FIX = "delete it, and `lambda-destinations dev` writes it again"


@pytest.mark.parametrize("args", [("failures", "list"), ("dev", "--once")])
def test_dev_s_settings_file_that_is_not_utf8_is_one_line_and_exit_3(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    (tmp_path / ".lambda-destinations").mkdir()
    (tmp_path / ".lambda-destinations" / "dev.toml").write_bytes(NOT_UTF8)
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 3
    assert one_error_line(result) == (
        "error: config file .lambda-destinations/dev.toml is not UTF-8 text (byte 0xff at "
        f"offset 1): {DEV_FIX}"
    )


@pytest.mark.parametrize(
    ("content", "problem", "fix"),
    [
        (NOT_UTF8, "is not UTF-8 text (byte 0xff at offset 1)", "save it as UTF-8"),
        (b"queues = [", "is not valid TOML (", "correct it there"),
        (None, "is a folder", "name a readable TOML file in LAMBDA_DESTINATIONS_CONFIG"),
    ],
    ids=["not utf-8", "not toml", "a folder"],
)
def test_a_config_file_that_cannot_be_read_as_toml_is_one_line_and_exit_3(
    content: bytes | None, problem: str, fix: str, tmp_path: Path
) -> None:
    path = tmp_path / "settings.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    result = cli("failures", "list", env={"LAMBDA_DESTINATIONS_CONFIG": str(path)}, cwd=tmp_path)
    assert result.returncode == 3
    line = one_error_line(result)
    assert line.startswith(f"error: config file {path} {problem}"), line
    # the fix names the variable that gave the path (before: "... or --config" as well)
    assert line.endswith(fix), line


@pytest.mark.parametrize("variable", ["HANDLERS", "ROUTES", "QUEUES", "SECRETS"])
def test_a_setting_nested_too_deep_is_one_line_and_exit_3(variable: str, tmp_path: Path) -> None:
    # JSON's parser and tomllib recurse: a value nested deeper than Python's limit raised
    # RecursionError's traceback
    env = {
        "LAMBDA_DESTINATIONS_QUEUES": "q",
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"hook": {"type": "webhook", "url_env": "U"}}),
        f"LAMBDA_DESTINATIONS_{variable}": "[" * 100_000,
    }
    result = cli("config", "--check", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert one_error_line(result).startswith(
        f"error: LAMBDA_DESTINATIONS_{variable} is nested too deep"
    )


def test_a_config_file_nested_too_deep_is_one_line_and_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(f"queues = {'[' * 5000}{']' * 5000}\n", encoding="utf-8")
    result = cli("failures", "list", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 3
    assert one_error_line(result) == (
        f"error: config file {path} is nested too deep to read: correct it there"
    )


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Windows editors start UTF-8 with one; tomllib said "Invalid statement (at line 1,
    # column 1)" of a line that looks right
    path = tmp_path / "settings.toml"
    path.write_bytes(b'\xef\xbb\xbfqueues = ["q"]\nconcurrency = 0\n')
    result = cli("run", "--once", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 3
    assert one_error_line(result).startswith(
        f"error: setting 'concurrency' (the TOML file {path}): "
    )


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs a /dev/zero")
@pytest.mark.parametrize("named", ["--config", "LAMBDA_DESTINATIONS_CONFIG"])
def test_a_config_file_that_never_ends_is_one_line_and_exit_3(named: str, tmp_path: Path) -> None:
    # given: a device that never ends named as the settings file (a slip of the completion)
    given = ("--config", "/dev/zero") if named == "--config" else ()
    env = {"LAMBDA_DESTINATIONS_CONFIG": "/dev/zero"} if not given else {}

    # when: before, it was read until memory ran out, and the command never answered
    result = cli("failures", "list", *given, env=env, cwd=tmp_path, timeout=30)

    # then
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        "error: config file /dev/zero holds more than 16 MiB, more than a settings file does: "
        f"name a readable TOML file in {named}"
    )


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_config_file_that_fails_to_read_names_the_error_and_the_fix(tmp_path: Path) -> None:
    # /proc/self/mem opens, and its first read fails (EIO): an unreadable file even for root
    result = cli("failures", "list", "--config", "/proc/self/mem", cwd=tmp_path)
    assert result.returncode == 3
    assert one_error_line(result) == (
        "error: config file /proc/self/mem cannot be read (Input/output error): name a "
        "readable TOML file in --config"
    )


# -- exit codes -------------------------------------------------------------------------------


def test_run_stopped_while_waiting_for_sqs_exits_130(tmp_path: Path) -> None:
    # given: a worker that cannot reach SQS, retrying
    with subprocess.Popen(
        [*ENTRY, "run", "--queues", "q", "--endpoint-url", "http://127.0.0.1:1"],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        try:
            for line in process.stderr:
                if "cannot reach SQS" in line:
                    break
            # when: Ctrl-C
            process.send_signal(signal.SIGINT)
            rest = process.stderr.read()
            code = process.wait(timeout=30)
        finally:
            reap(process)

    # then: interrupted, not "bad configuration"
    assert code == 130
    assert "Traceback" not in rest
    assert "interrupted: stopped while waiting for SQS" in rest


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"AWS_REGION": "us east 1"}, "set AWS_REGION to"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu/west"}, "set AWS_DEFAULT_REGION to"),
        ({"LAMBDA_DESTINATIONS_REGION": "eu west-1 "}, "set LAMBDA_DESTINATIONS_REGION or"),
    ],
)
def test_a_region_that_is_no_region_name_is_configuration_in_one_line(
    env: dict[str, str], where: str, tmp_path: Path
) -> None:
    # botocore raised its own ValueError at the first AWS call: exit 1, without the fix
    for args in (("dlq", "peek", "q"), ("run", "--queues", "q", "--once")):
        result = cli(*args, env=env, cwd=tmp_path)
        assert result.returncode == 3, (args, result.stderr)
        line = one_error_line(result)
        assert "is not an AWS region name" in line
        assert where in line


@pytest.fixture
def console_store(sqlite_url: str) -> str:
    """A store a worker (here `migrate`) made: the console reads one and creates none."""
    made = cli("migrate", "--store", sqlite_url)
    assert made.returncode == 0, made.stderr
    return sqlite_url


def test_a_console_outside_dev_s_folder_creates_no_store_and_says_so(tmp_path: Path) -> None:
    # given: a folder with no settings and no store (dev ran in another one)
    env = {**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}
    for name in ("LAMBDA_DESTINATIONS_STORE", "LAMBDA_DESTINATIONS_CONFIG"):
        env.pop(name, None)

    # when: the console starts there
    with subprocess.Popen(
        [*ENTRY, "console", "--port", "0"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            _out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
            pytest.fail(f"the console served an empty store it made: {err[-1000:]}")

    # then: one line, exit 3, and no empty lambda-destinations.db left to serve
    assert process.returncode == 3, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "lambda-destinations.db does not exist" in lines[0]
    assert "this folder has no .lambda-destinations/dev.toml" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_console_port_in_use_says_so_once_and_exits_3(console_store: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "console",
            "--port",
            str(port),
            env={"LAMBDA_DESTINATIONS_STORE": console_store},
            cwd=tmp_path,
        )
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: port 127.0.0.1:{port} is in use: choose another --port"
    )


@pytest.mark.parametrize(
    ("host", "what"),
    [
        # TEST-NET-3: an address no machine here has
        ("203.0.113.7", "203.0.113.7 is not an address of this machine"),
        ("no-such-host.invalid", "host no-such-host.invalid cannot be resolved"),
    ],
)
def test_a_console_host_it_cannot_listen_on_names_the_host_not_the_port(
    console_store: str, tmp_path: Path, host: str, what: str
) -> None:
    # before: "port 203.0.113.7:8000 cannot be used (...): choose another --port"
    result = cli(
        "console",
        "--host",
        host,
        "--port",
        "0",
        env={
            "LAMBDA_DESTINATIONS_STORE": console_store,
            "LAMBDA_DESTINATIONS_CONSOLE_TOKEN": "t" * 32,
        },
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: {what}"), line
    assert line.endswith(": choose another --host"), line


def test_a_console_beyond_loopback_refuses_a_short_token(sqlite_url: str, tmp_path: Path) -> None:
    # Beyond loopback the token guards every page: one character would be guessed at once.
    result = cli(
        "console",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        env={"LAMBDA_DESTINATIONS_STORE": sqlite_url, "LAMBDA_DESTINATIONS_CONSOLE_TOKEN": "a"},
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "LAMBDA_DESTINATIONS_CONSOLE_TOKEN is 1 characters, too short" in line
    assert "at least 16" in line


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ops.example.com", "it names no http(s) scheme and host"),
        ("ftp://ops.example.com/", "it names no http(s) scheme and host"),
        ("https://ops.example.com/#top", "it may hold no user, query or fragment"),
        ("https://user@ops.example.com/", "it may hold no user, query or fragment"),
        ("https://ops.example.com:99999/", "it is no URL"),
        ("https://ops.example.com/a/../b", "its path may hold only letters"),
        ("https://ops.example.com/a b", "its path may hold only letters"),
        ("https://bücher.example/", "its host is not ASCII"),
    ],
)
def test_a_console_public_url_that_is_not_one_is_refused(
    sqlite_url: str, tmp_path: Path, url: str, why: str
) -> None:
    # Links, redirects, cookies and the Origin checked all follow it: a wrong one is said at
    # start, not found later as refused actions or pages at the wrong address.
    env = {"LAMBDA_DESTINATIONS_STORE": sqlite_url, "LAMBDA_DESTINATIONS_CONSOLE_PUBLIC_URL": url}
    result = cli("console", "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: --public-url {url!r}: {why}"), line
    assert line.endswith(
        "such as https://ops.example.com/ or https://tools.example.com/lambda-destinations/"
    ), line


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("a" * 100_000, "has 100,000 characters, a host name 253 at most"),
        ("a." * 200 + "com", "has 403 characters, a host name 253 at most"),
        ("ops..example.com", "is no host name: its part '' is not 1 to 63 letters"),
        ("ops!.example.com", "is no host name: its part 'ops!' is not 1 to 63 letters"),
        ("1.2.3.4.5", "is no IPv4 address"),
    ],
    ids=["100 KB", "over 253", "empty part", "not a letter", "digits"],
)
def test_a_console_public_url_whose_host_is_no_host_name_is_refused_in_a_line(
    sqlite_url: str, tmp_path: Path, host: str, problem: str
) -> None:
    # given: a host no browser reaches (a file pasted in, a typo)
    url = f"https://{host}/"
    env = {"LAMBDA_DESTINATIONS_STORE": sqlite_url, "LAMBDA_DESTINATIONS_CONSOLE_PUBLIC_URL": url}

    # when
    result = cli("console", "--port", "0", env=env, cwd=tmp_path, timeout=30)

    # then: refused at start in a line one can read (before: taken; with a store, the console
    # listened and printed the whole URL, its links and Origin checks at a host no one reaches)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: --public-url {echoed(url)!r}: its host "), line
    assert problem in line, line
    assert len(line) < 500, line


def test_a_console_behind_a_proxy_refuses_a_short_token(sqlite_url: str, tmp_path: Path) -> None:
    # Behind a proxy, on loopback too, whoever reaches the proxy reaches the console.
    env = {"LAMBDA_DESTINATIONS_STORE": sqlite_url, "LAMBDA_DESTINATIONS_CONSOLE_TOKEN": "a"}
    result = cli(
        "console", "--port", "0", "--public-url", "https://ops.example.com/", env=env, cwd=tmp_path
    )
    assert result.returncode == 3, result.stderr
    assert "too short for a console served at https://ops.example.com/" in one_error_line(result)


@pytest.mark.parametrize(
    ("toml", "setting", "fix"),
    [
        ("concurency = 3\n", "concurency", "did you mean 'concurrency'?"),
        (
            "keep_failure_days = 3\n",
            "keep_failure_days",
            "did you mean 'keep_failures_days' or 'keep_open_failures_days'?",
        ),
        (
            "zzz = 3\n",
            "zzz",
            "remove it, or use a setting the README's Configuration table lists",
        ),
        (
            '[[routes]]\nhandlers = ["persist"]\nconditon = "success"\n',
            "routes.0.conditon",
            "did you mean 'condition'?",
        ),
    ],
    ids=["close", "two close", "none close", "in a route"],
)
def test_an_unknown_setting_in_the_toml_file_names_the_known_ones(
    toml: str, setting: str, fix: str, tmp_path: Path
) -> None:
    (tmp_path / "c1.toml").write_text(toml)

    result = cli("failures", "stats", "--config", "c1.toml", cwd=tmp_path)

    # before: "setting 'concurency' (...): Extra inputs are not permitted", pydantic's words
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: unknown setting {setting!r} (the TOML file c1.toml): {fix}"
    )


@pytest.mark.parametrize(
    ("function", "fix"),
    [
        (
            "arn:aws:lambda:us-east-1:123456789012:function:orders-*",
            "a route's function is a glob on the function's name, without its ARN, version or "
            "alias: write 'orders-*'",
        ),
        (
            "orders-api:live",
            "a route's function is a glob on the function's name, without its ARN, version or "
            "alias: write 'orders-api'",
        ),
        (
            "orders api",
            "a route's function is a glob on the function's name, without its ARN, version or "
            "alias (a name holds letters, digits, - and _)",
        ),
        (  # before: "write 'function'"
            "function:orders-api",
            "a route's function is a glob on the function's name, without its ARN, version or "
            "alias: write 'orders-api'",
        ),
        (
            "123456789012:function:orders-api:7",
            "a route's function is a glob on the function's name, without its ARN, version or "
            "alias: write 'orders-api'",
        ),
        (
            "my-function:live",
            "a route's function is a glob on the function's name, without its ARN, version or "
            "alias: write 'my-function'",
        ),
    ],
    ids=["arn", "alias", "space", "function prefix", "partial arn", "function in the name"],
)
def test_a_route_function_that_no_function_name_can_match_stops_the_start(
    function: str, fix: str, tmp_path: Path
) -> None:
    # before: accepted, and matched against the function's name alone the route never ran:
    # its records went to a later route (the oncall SMS never sent), with nothing said
    route = f'[[routes]]\nhandlers = ["persist"]\nfunction = "{function}"\n'
    (tmp_path / "c1.toml").write_text(route)

    result = cli("failures", "stats", "--config", "c1.toml", cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: setting 'routes.0.function' (the TOML file c1.toml): {function!r} matches "
        f"no function: {fix}"
    )


@pytest.mark.parametrize(
    ("routes", "line"),
    [
        (
            [{"handlers": ["persist"]}, {"condition": "failure", "handlers": ["persist", "sms"]}],
            "routes.1 (condition=failure -> persist, sms) never runs: routes.0 (condition=any "
            "-> persist) takes every record it would, as the first matching route wins: move it "
            "before routes.0, or remove it",
        ),
        (
            [
                {"condition": "failure", "function": "orders-*", "handlers": ["persist"]},
                {"condition": "success", "handlers": ["persist"]},
                {"condition": "RetriesExhausted", "function": "orders-*", "handlers": ["sms"]},
            ],
            "routes.2 (condition=RetriesExhausted function=orders-* -> sms) never runs: "
            "routes.0 (condition=failure function=orders-* -> persist) takes every record it "
            "would",
        ),
        (
            [
                {"condition": "Success", "handlers": ["persist"]},
                {"condition": "success", "queue": "orders-*", "handlers": ["persist", "hook"]},
            ],
            "routes.1 (condition=success queue=orders-* -> persist, hook) never runs: routes.0 "
            "(condition=Success -> persist) takes every record it would",
        ),
    ],
    ids=["after a catch-all", "an exact condition after its outcome", "Success and success"],
)
def test_a_route_an_earlier_one_takes_every_record_of_stops_the_start(
    routes: list[dict[str, object]], line: str, tmp_path: Path
) -> None:
    # before: accepted, and the later route never ran (the failure route's SMS never sent,
    # every failure persisted by the route before it), with nothing said
    env = {"LAMBDA_DESTINATIONS_ROUTES": json.dumps(routes)}

    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert one_error_line(result).startswith(
        f"error: setting 'routes' (LAMBDA_DESTINATIONS_ROUTES): {line}"
    )


@pytest.mark.parametrize(
    "routes",
    [
        [{"condition": "success", "handlers": ["persist"]}, {"handlers": ["persist", "sms"]}],
        [{"function": "*", "handlers": ["persist"]}, {"handlers": ["persist", "sms"]}],
        [
            {"condition": "RetriesExhausted", "handlers": ["persist"]},
            {"condition": "failure", "handlers": ["persist", "sms"]},
        ],
        [
            {"condition": "failure", "error_type": "*Timeout*", "handlers": ["persist"]},
            {"condition": "failure", "error_type": "Runtime.*", "handlers": ["persist", "sms"]},
        ],
    ],
    ids=["successes first", "records with a function first", "exact first", "other globs"],
)
def test_routes_each_of_which_can_run_are_taken(
    routes: list[dict[str, object]], tmp_path: Path
) -> None:
    # a later route that takes records the earlier ones do not (a legacy DLQ message has no
    # function, so function = "*" leaves it to the next route) is a route that runs
    env = {"LAMBDA_DESTINATIONS_ROUTES": json.dumps(routes), "LAMBDA_DESTINATIONS_QUEUES": "q"}

    result = cli("config", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("field", "glob", "problem"),
    [
        (
            "error_type",
            "",
            "'' matches no error type: leave error_type out to match every one, or write a "
            "glob (*Timeout*)",
        ),
        ("queue", "", "'' matches no queue: leave queue out to match every one, or write a glob"),
        (
            "error_type",
            " *Timeout*",
            "' *Timeout*' has spaces around it, so matches no error type: write '*Timeout*'",
        ),
        (
            "queue",
            "arn:aws:sqs:us-east-1:123456789012:orders-failure",
            "'arn:aws:sqs:us-east-1:123456789012:orders-failure' is a queue's ARN, which matches "
            "no queue: a route's queue is a glob on the queue's name or URL: write "
            "'orders-failure'",
        ),
    ],
    ids=["empty error type", "empty queue", "spaces", "queue arn"],
)
def test_a_route_glob_that_matches_nothing_stops_the_start(
    field: str, glob: str, problem: str, tmp_path: Path
) -> None:
    # before: accepted; the route never ran, its records going to a later route (an empty
    # error_type with nothing said at all; `config` showed the route without the glob)
    route = f'[[routes]]\nhandlers = ["persist"]\n{field} = "{glob}"\n'
    (tmp_path / "c1.toml").write_text(route)

    result = cli("failures", "stats", "--config", "c1.toml", cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert one_error_line(result).startswith(
        f"error: setting 'routes.0.{field}' (the TOML file c1.toml): {problem}"
    )


@pytest.mark.parametrize(
    ("given", "line"),
    [
        # before: "Input should be a valid list"
        ("queues = 5", "'queues' (FILE): 5 is not a list: use a list of queue names or URLs"),
        # before: "Input should be a valid string (and 1 more)"
        (
            "queues = [1, 2]",
            "'queues.0' (FILE): 1 is not a string: use a list of queue names or URLs, each in "
            "quotes (and 1 more)",
        ),
        (
            {"LAMBDA_DESTINATIONS_HANDLER_MODULES": "[1,2]"},
            "'handler_modules.0' (LAMBDA_DESTINATIONS_HANDLER_MODULES): 1 is not a string: use "
            "a list of module names, each in quotes (and 1 more)",
        ),
        ("store = 5", "'store' (FILE): 5 is not a string: write it in quotes"),
        # before: "Tuple should have at least 1 item after validation, not 0"
        (
            "[[routes]]\nhandlers = []",
            "'routes.0.handlers' (FILE): [] is empty: use a list of one or more handler names",
        ),
        # before: "Input should be a valid boolean, unable to interpret input"
        (
            {"LAMBDA_DESTINATIONS_TASK_PROTECTION": "maybe"},
            "'task_protection' (LAMBDA_DESTINATIONS_TASK_PROTECTION): maybe is not true or "
            "false: use true or false (true by default)",
        ),
        (
            "task_protection = 2",
            "'task_protection' (FILE): 2 is not true or false: use true or false (true by default)",
        ),
        # before: "Input should be a valid number", of a TOML date
        (
            "handler_timeout = 1979-05-27",
            "'handler_timeout' (FILE): 1979-05-27 is not a number: use a number above 0, up to "
            "43200 (300 by default)",
        ),
        (
            "concurrency = [1]",
            "'concurrency' (FILE): [1] is not a whole number: use a whole number from 1 to 1000 "
            "(32 by default)",
        ),
        # before: "routes.0.handlers: Field required (and 1 more)": the key given unnamed
        (
            {"LAMBDA_DESTINATIONS_ROUTES": '[{"bogus": 1}]'},
            "unknown setting 'routes.0.bogus' (LAMBDA_DESTINATIONS_ROUTES): a route takes "
            "handlers (required), condition, function, error_type, queue (and 1 more)",
        ),
        (
            {"LAMBDA_DESTINATIONS_ROUTES": '[{"condition": "failure"}]'},
            "'routes.0.handlers' (LAMBDA_DESTINATIONS_ROUTES): missing: add handlers, a list of "
            "one or more handler names",
        ),
        (
            {"LAMBDA_DESTINATIONS_ROUTES": "{}"},
            "'routes' (LAMBDA_DESTINATIONS_ROUTES): {} is not a list: use a list of routes, each "
            "a table with handlers",
        ),
        (
            "routes = [5]",
            "'routes.0' (FILE): 5 is not a table: use a table with handlers, and condition, "
            "function, error_type or queue to match",
        ),
        (
            {"LAMBDA_DESTINATIONS_HANDLERS": "[]"},
            "'handlers' (LAMBDA_DESTINATIONS_HANDLERS): [] is not a table: use a table of "
            "handlers by name, each a table with its type",
        ),
        # before: "Input should be 'debug', 'info', 'warning' or 'error'", the value unsaid
        (
            "log_level = 5",
            "'log_level' (FILE): 5 is not a value it takes: use 'debug', 'info', 'warning' or "
            "'error'",
        ),
    ],
)
def test_a_setting_of_the_wrong_kind_names_the_value_and_what_the_setting_takes(
    given: str | dict[str, str], line: str, tmp_path: Path
) -> None:
    # given: the value in the TOML file, or in the variable
    config = tmp_path / "settings.toml"
    config.write_text(given + "\n" if isinstance(given, str) else "")
    env = given if isinstance(given, dict) else {}

    # when
    result = cli("failures", "stats", "--config", str(config), env=env, cwd=tmp_path)

    # then: the setting, where it was set, the value as given, and what to give instead
    assert result.returncode == 3, result.stderr
    setting = "" if line.startswith("unknown") else "setting "
    expected = f"error: {setting}{line.replace('FILE', f'the TOML file {config}')}"
    assert one_error_line(result) == expected


@pytest.mark.parametrize("named", ["--config", "LAMBDA_DESTINATIONS_CONFIG"])
def test_a_toml_file_that_names_another_file_is_one_line(named: str, tmp_path: Path) -> None:
    # before: the file's config was replaced by the file's own path: other.toml was never
    # read, and nothing said so
    (tmp_path / "other.toml").write_text('queues = ["q"]\n')
    (tmp_path / "c.toml").write_text('config = "other.toml"\n')
    args = ("--config", "c.toml") if named == "--config" else ()
    env = {"LAMBDA_DESTINATIONS_CONFIG": "c.toml"} if args == () else {}

    result = cli("failures", "stats", *args, env=env, cwd=tmp_path)

    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        "error: setting 'config' (the TOML file c.toml): a settings file cannot name another: "
        "remove it, and name the file in LAMBDA_DESTINATIONS_CONFIG or --config"
    )


def test_a_misspelt_variable_is_named_with_the_setting_it_is_close_to(tmp_path: Path) -> None:
    # given: a variable of ours one letter off a setting, and one close to none (the tests' own)
    env = {"LAMBDA_DESTINATIONS_CONCURENCY": "3", "LAMBDA_DESTINATIONS_REQUIRE_AXE": "1"}

    # when: a command runs; the environment source ignores variables it has no setting for
    result = cli("migrate", "--store", f"sqlite:///{tmp_path / 'x.db'}", env=env, cwd=tmp_path)

    # then: it runs, and says the variable changed nothing and which one was meant
    assert result.returncode == 0, result.stderr
    warnings = [
        json.loads(line)["event"]
        for line in result.stderr.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "warning"
    ]
    assert warnings == [
        "LAMBDA_DESTINATIONS_CONCURENCY is no setting, ignored: did you mean "
        "LAMBDA_DESTINATIONS_CONCURRENCY?"
    ]


def test_a_setting_s_part_named_with_double_underscores_is_said_to_change_nothing(
    tmp_path: Path,
) -> None:
    # before: pydantic-settings' nested form, which these settings do not read, was ignored
    # without a word (the name is close to no setting)
    env = {"LAMBDA_DESTINATIONS_HANDLERS__HOOK__URL": "https://hooks.example.com/x"}
    result = cli("migrate", "--store", f"sqlite:///{tmp_path / 'x.db'}", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [
        json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")
    ]
    assert (
        "LAMBDA_DESTINATIONS_HANDLERS__HOOK__URL is no setting, ignored: a setting's parts are "
        "not set one by one: give LAMBDA_DESTINATIONS_HANDLERS its whole value (JSON for "
        "handlers and routes), or set it in the TOML file"
    ) in warnings


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ({"url": "ftp://x"}, "LAMBDA_DESTINATIONS_HANDLERS"),  # the variable's hides the file's
        ({"timeout": 5}, "the TOML file c.toml"),  # the variable sets another setting
    ],
)
def test_a_bad_handler_setting_names_the_variable_or_the_file_that_set_it(
    given: dict[str, Any], origin: str, tmp_path: Path
) -> None:
    # before: `handlers.hook.url: the URL must be …`, with the file's URL right: the variable's
    # table is merged over the file's, setting by setting, and nothing said which one won
    url = '"https://hooks.example.com/x"' if "url" in given else '"ftp://y"'
    (tmp_path / "c.toml").write_text(
        f'queues = ["q"]\n[handlers.hook]\ntype = "webhook"\nurl = {url}\n'
    )
    env = {"LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"hook": given})}
    result = cli("run", "--once", "--config", "c.toml", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result).startswith(f"error: handlers.hook.url ({origin}): the URL must")


def test_a_bad_handler_table_in_both_sources_names_both(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(
        'queues = ["q"]\n[handlers.hook]\nurl = "https://h.example/x"\n'
    )
    env = {"LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"hook": {"timeout": 5}})}
    result = cli("run", "--once", "--config", "c.toml", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert one_error_line(result).startswith(
        "error: handlers.hook (LAMBDA_DESTINATIONS_HANDLERS over the TOML file c.toml): no type"
    )


@pytest.mark.parametrize("source", ["option", "environment", "file"])
def test_a_bad_setting_names_the_source_it_came_from(source: str, tmp_path: Path) -> None:
    # given: one store URL of a database the store does not speak, from an option, the
    # environment or a TOML file
    (tmp_path / "ld.toml").write_text('store = "mysql://db/x"\n')
    args: tuple[str, ...] = ("failures", "stats")
    env: dict[str, str] = {}
    if source == "option":
        args += ("--store", "mysql://db/x")
    elif source == "environment":
        env["LAMBDA_DESTINATIONS_STORE"] = "mysql://db/x"
    else:
        args += ("--config", str(tmp_path / "ld.toml"))

    # when
    result = cli(*args, env=env, cwd=tmp_path)

    # then: one line, naming where to fix it
    assert result.returncode == 3
    line = one_error_line(result)
    where = {
        "option": "(--store)",
        "environment": "(LAMBDA_DESTINATIONS_STORE)",
        "file": f"(the TOML file {tmp_path / 'ld.toml'})",
    }[source]
    assert where in line, line


def test_a_handler_error_of_megabytes_is_logged_cut_and_retried(tmp_path: Path) -> None:
    # given: a handler whose error carries 2 MB of text (a payload in its message)
    (tmp_path / "loud.py").write_text(
        "class Loud:\n"
        "    name = 'loud'\n"
        "    async def __call__(self, message, context):\n"
        "        raise ValueError('start ' + 'x' * 2_000_000 + ' end')\n"
        "loud = Loud()\n"
    )
    env = {
        "PYTHONPATH": str(tmp_path),
        "LAMBDA_DESTINATIONS_ROUTES": '[{"handlers": ["persist", "loud:loud"]}]',
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",  # dev's auto is its console's
    }

    # when: dev runs two simulated records through it
    result = cli("dev", "--simulate", "2", "--once", "--json", env=env, cwd=tmp_path)

    # then: both retried; each log line keeps the error's start and its end (the traceback's
    # last line), not 2 MB at every retry: the whole run logged well under 1 MB (before: 8 MB)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["retried"] == 2
    assert len(result.stderr) < 300_000
    retried = [line for line in result.stderr.splitlines() if "message will be retried" in line]
    assert len(retried) == 2
    for line in retried:
        reason = json.loads(line)["reason"]
        assert reason.startswith("handler loud: ValueError: start xxx")
        assert reason.endswith("… (2,000,010 characters)")
    # the traceback once, cut (one bug, the same line: the second delivery refers to it)
    (traceback,) = [json.loads(line) for line in result.stderr.splitlines() if "Traceback" in line]
    assert "characters cut" in traceback["exception"]
    assert traceback["exception"].endswith(" end")
    errors = [json.loads(line) for line in result.stderr.splitlines() if "unexpected" in line]
    assert [e.get("traceback", "").startswith("as logged at") for e in errors] == [False, True]


def test_a_handler_object_with_a_plain_call_is_one_line(tmp_path: Path) -> None:
    # given: an object with a name and a `def __call__`, which the worker could never await
    (tmp_path / "plain_call.py").write_text(
        "class Notify:\n    name = 'notify'\n\n    def __call__(self, message, context):\n"
        "        return None\n\n\nnotify = Notify()\n"
    )
    env = {"LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["plain_call:notify"]}])}

    # when
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)

    # then: refused at start with the fix, not retried on every message
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert "plain_call:notify is a handler object whose __call__ is not async" in line, line
    assert "async def __call__" in line, line


def test_a_store_dev_was_once_given_is_named_as_kept_by_its_folder(tmp_path: Path) -> None:
    """dev reads its own dev.toml, so a store given once (`dev --store URL`) stays, for dev
    too: a bad one failed every later `dev` there, naming only the file. The line now says
    why the file holds it and how to forget it; dev's own SQLite file is named as before."""
    folder = tmp_path / ".lambda-destinations"
    folder.mkdir()
    dev_toml = folder / "dev.toml"
    refused = f"postgresql://nobody@127.0.0.1:{free_port()}/x"
    dev_toml.write_text(f'store = "{refused}"\n')
    kept = cli("failures", "list", cwd=tmp_path, unset=["LAMBDA_DESTINATIONS_STORE"])
    assert kept.returncode == 4, kept.stderr
    assert (
        f"store {refused} (the TOML file .lambda-destinations/dev.toml, which keeps the store "
        "of an earlier `dev --store`; give --store, or delete .lambda-destinations/ to forget "
        "it) is unavailable: "
    ) in one_error_line(kept)
    # dev's own store: no earlier --store to speak of
    dev_toml.write_text('store = "sqlite:///.lambda-destinations/dev.db"\n')
    (folder / "dev.db").mkdir()  # a folder where the file should be: the store cannot open
    own = cli("failures", "list", cwd=tmp_path, unset=["LAMBDA_DESTINATIONS_STORE"])
    assert own.returncode != 0, own.stdout
    line = one_error_line(own)
    assert "(the TOML file .lambda-destinations/dev.toml)" in line, line
    assert "dev --store" not in line


@pytest.mark.parametrize("modules", ["two_notify", "one_notify,other_notify"])
def test_two_handlers_of_one_name_are_one_line(modules: str, tmp_path: Path) -> None:
    # given: a second @handler("notify"), in the same module or another; before, the one
    # found last replaced the other, and the routes ran it with nothing said
    decorated = "from lambda_destinations import handler\n\n@handler('notify')\n"
    (tmp_path / "two_notify.py").write_text(
        f"{decorated}async def notify(m, c): ...\n\n\n@handler('notify')\n"
        "async def notify_v2(m, c): ...\n"
    )
    (tmp_path / "one_notify.py").write_text(f"{decorated}async def notify(m, c): ...\n")
    (tmp_path / "other_notify.py").write_text(
        f"from one_notify import notify\n\n{decorated}async def notify_v2(m, c): ...\n"
    )
    env = {"LAMBDA_DESTINATIONS_HANDLER_MODULES": modules}

    # when
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)

    # then: the second names the first; one_notify's notify, imported again, is no clash
    assert result.returncode == 3, result.stderr
    first = "one_notify" if "," in modules else "two_notify"
    second = modules.rpartition(",")[2]
    assert one_error_line(result) == (
        f"error: handler_modules entry {second!r} (LAMBDA_DESTINATIONS_HANDLER_MODULES): "
        f"@handler('notify') on {second}.notify_v2: {first}.notify has that name too: "
        "give each handler a name of its own"
    )


def test_a_route_naming_a_handler_of_a_module_with_none_says_the_module_has_none(
    tmp_path: Path,
) -> None:
    # given: a handler module whose function lacks its @handler (before: "is not defined",
    # the module it was meant to come from not named)
    (tmp_path / "no_marks.py").write_text("async def notify(m, c): ...\n")
    env = {
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": "no_marks",
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["notify"]}]),
    }
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith("error: handler 'notify' (LAMBDA_DESTINATIONS_ROUTES) is not defined")
    assert line.endswith(
        "or module:function (handler_modules entry 'no_marks' has no @handler function)"
    )


@pytest.mark.parametrize(
    ("module", "said"),
    [
        (  # the decorator forgotten
            "async def notify(m, c): ...\n",
            " (handler_modules entry 'marks' has no @handler function)",
        ),
        (  # the decorator's name mistyped
            "from lambda_destinations import handler\n"
            "@handler('notify-on-call')\nasync def notify(m, c): ...\n",
            " (did you mean 'notify-on-call'?)",
        ),
    ],
)
def test_a_handler_table_with_no_handler_of_its_name_says_no_handler_has_it(
    module: str, said: str, tmp_path: Path
) -> None:
    # given: a table of settings for a @handler that no handler module defines (before: "no
    # type: add type = …", as if the table were meant for a built-in, the module not named)
    (tmp_path / "marks.py").write_text(module)
    env = {
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": "marks",
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps({"notify-oncall": {"channel": "#x"}}),
    }

    # when
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)

    # then
    assert result.returncode == 3, result.stderr
    line = one_error_line(result)
    assert line.startswith(
        "error: handlers.notify-oncall (LAMBDA_DESTINATIONS_HANDLERS): no type, and no @handler "
        "of handler_modules is named 'notify-oncall'"
    )
    assert said in line


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("notify", "is a plain function: define it with `async def`"),
        ("gen", "is an async generator (it yields): a handler returns, it does not yield"),
        ("LIMIT", "is of type int, not an async function or a handler object: point at an"),
    ],
)
def test_a_route_naming_a_plain_function_says_to_make_it_async(
    target: str, said: str, tmp_path: Path
) -> None:
    (tmp_path / "plain_ref.py").write_text(
        "LIMIT = 3\n\n\ndef notify(m, c): ...\n\n\nasync def gen(m, c):\n    yield m\n"
    )
    env = {"LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": [f"plain_ref:{target}"]}])}
    result = cli("run", "--once", "--queues", "q", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert f"plain_ref:{target} {said}" in one_error_line(result)


@pytest.mark.parametrize("command", [("run", "--once"), ("config", "--check")])
def test_a_retired_teams_connector_url_is_one_line_and_exit_3(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    # given: the teams preset with an Office 365 connector's URL (its path is the secret)
    (tmp_path / "c.toml").write_text(
        'queues = ["q"]\n[handlers.teams]\ntype = "webhook"\npreset = "teams"\n'
        'url_env = "TEAMS_WEBHOOK_URL"\n'
    )
    connector = "https://contoso.webhook.office.com/webhookb2/0a1b@2c3d/IncomingWebhook/S3CR3T/4e"
    env = {"TEAMS_WEBHOOK_URL": connector}

    # when
    result = cli(*command, "--config", "c.toml", env=env, cwd=tmp_path)

    # then: refused before anything runs, saying what to use instead; the path never shown
    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        "error: handlers.teams.url_env (the TOML file c.toml): TEAMS_WEBHOOK_URL: "
        "https://contoso.webhook.office.com is an Office 365 connector (Incoming Webhook), which "
        'Microsoft has retired: in the Teams channel, open Workflows, create a flow from "Send '
        'webhook alerts to a channel" and give the handler its webhook URL'
    )
    assert "S3CR3T" not in result.stdout + result.stderr


def test_console_refuses_an_empty_host_before_it_listens(sqlite_url: str) -> None:
    # before: `console --host ''` announced "console http://:8000/", which no browser opens,
    # and listened on every interface
    result = cli("console", "--host", "", "--port", "0", "--store", sqlite_url, timeout=20)

    assert result.returncode == 2, result.stderr
    assert one_error_line(result) == (
        "error: Invalid value for '--host': '' is empty: give 0.0.0.0 for every interface, or "
        "127.0.0.1 for this machine only"
    )
    assert "console " not in result.stderr


@pytest.mark.parametrize(
    ("args", "option", "fix"),
    [
        (("console", "--public-url", ""), "--public-url", "give the address browsers open"),
        (("failures", "logs", "6c2d1f9e", "--log-group", " "), "--log-group", "/aws/lambda/"),
        (("quarantine", "list", "--queue", ""), "--queue", "or leave the option out for every"),
        (("quarantine", "resend", "--all", "--queue", "", "--yes"), "--queue", "every queue"),
        (("failures", "list", "--function", ""), "--function", "'orders-*'"),
        (("failures", "list", "--error-type", " "), "--error-type", "- for the failures with"),
        (("failures", "list", "--condition", ""), "--condition", "RetriesExhausted"),
        (("failures", "stats", "--function", ""), "--function", "leave the option out"),
        # before: every check ran, then a warning row "no function matches --function ' '"
        (("doctor", "--function", " "), "--function", "every function"),
        (("replay", "--condition", "", "--yes"), "--condition", "EventAgeExceeded"),
        (("failures", "list", "--region", ""), "--region", "us-east-1"),
        (("failures", "show", ""), "REQUEST_ID", "as `failures list` shows"),
        (("failures", "logs", " "), "REQUEST_ID", "as `failures list` shows"),
        (("failures", "ignore", "6c2d1f9e", ""), "REQUEST_ID...", "first 4 or more"),
        (("replay", "", "--dry-run"), "[REQUEST_ID...]", "first 4 or more"),
        # before: "config file . is a folder", of a folder nobody named
        (("failures", "list", "--config", ""), "--config", "name the TOML settings file"),
        (("config", "--config", " "), "--config", "or leave the option out"),
    ],
)
def test_an_empty_value_given_is_refused_naming_the_option(
    args: tuple[str, ...], option: str, fix: str, sqlite_url: str
) -> None:
    # before: each was taken as not given (`quarantine list --queue ''` said "no quarantined
    # messages" while `quarantine list` showed some; the console served with no proxy;
    # `--region ''` put the standard AWS region in place of the settings' one), or matched
    # nothing (`failures list --function ''` said "no failures match", `replay --condition ''`
    # replayed none; `failures show ''` said no record has it, exit 1, as `result ''` did not)
    result = cli(*args, "--store", sqlite_url, timeout=20)

    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: Invalid value for '{option}': "), line
    assert " is empty: " in line
    assert fix in line


# What Python makes of a byte that is not UTF-8 in an argument or a variable (a terminal in
# Latin-1 typing "é"): a lone surrogate, which no UTF-8 encoder takes.
NOT_UTF8_ARG = os.fsdecode(b"caf\xe9")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        # before, each a traceback, exit 1: SQLite's encoder, asyncpg's, the payload's JSON
        (("failures", "list", "--function", NOT_UTF8_ARG), "--function"),
        (("failures", "list", "--error-type", NOT_UTF8_ARG), "--error-type"),
        (("failures", "show", NOT_UTF8_ARG), "REQUEST_ID"),
        (("replay", NOT_UTF8_ARG, "--dry-run"), "[REQUEST_ID...]"),
        (("quarantine", "list", "--queue", NOT_UTF8_ARG), "--queue"),
        (("invoke", "orders-api", "--payload", f'"{NOT_UTF8_ARG}"'), "--payload"),
        (("console", "--host", NOT_UTF8_ARG), "--host"),
    ],
)
def test_a_value_in_bytes_that_are_not_utf8_is_a_usage_error(
    args: tuple[str, ...], option: str, sqlite_url: str, tmp_path: Path
) -> None:
    # given: a store the commands read
    env = {"LAMBDA_DESTINATIONS_STORE": sqlite_url}
    assert cli("migrate", env=env, cwd=tmp_path).returncode == 0

    # when
    result = cli(*args, env=env, cwd=tmp_path, timeout=30)

    # then: one line naming the option, the byte and the fix
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line.startswith(f"error: Invalid value for '{option}': "), line
    assert line.endswith(
        " is not UTF-8 text (byte 0xe9): give it in UTF-8 (set the terminal's encoding to UTF-8)"
    ), line


@pytest.mark.parametrize("given", ["--store", "LAMBDA_DESTINATIONS_STORE", "--to"])
def test_a_postgresql_url_in_bytes_that_are_not_utf8_is_one_line(
    given: str, sqlite_url: str, tmp_path: Path
) -> None:
    # given: a database (or a user, with a password) written in Latin-1
    url = f"postgresql://{NOT_UTF8_ARG}:Sekrit@127.0.0.1:{free_port()}/{NOT_UTF8_ARG}"
    if given == "--to":
        assert cli("migrate", "--store", sqlite_url, cwd=tmp_path).returncode == 0
        args: tuple[str, ...] = ("store", "copy", "--store", sqlite_url, "--to", url)
    else:
        args = ("failures", "list", "--store", url) if given == "--store" else ("failures", "list")
    env = {"LAMBDA_DESTINATIONS_STORE": url} if given.startswith("LAMBDA") else {}

    # when
    result = cli(*args, env=env, cwd=tmp_path, timeout=30)

    # then: before, asyncpg's AttributeError traceback from the connection, exit 1
    assert result.returncode == 3, result.stderr
    assert one_error_line(result).endswith(
        f"({given}): it is not UTF-8 text (byte 0xe9): write it in UTF-8"
    )
    assert "Sekrit" not in result.stderr


def test_a_sqlite_file_named_in_bytes_that_are_not_utf8_is_taken(tmp_path: Path) -> None:
    # given: a file name in Latin-1, which Linux takes as any bytes: not refused as text is
    url = f"sqlite:///{NOT_UTF8_ARG}.db"

    # when / then: created, and read
    assert cli("migrate", "--store", url, cwd=tmp_path).returncode == 0
    assert (tmp_path / f"{NOT_UTF8_ARG}.db").is_file()
    result = cli("failures", "list", "--store", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs a /dev/zero")
@pytest.mark.parametrize(
    ("args", "says"),
    [
        # before: OSError's traceback (File name too long), exit 1
        (("store", "backup", "b" * 300), "(File name too long): give another path"),
        # before: read until memory ran out, the command silent
        (("decode", "/dev/zero"), "error: /dev/zero holds more than 16 MiB, more than a message"),
        # before: the URL whole, a line of 100 KB
        (("healthcheck", "--path", "/" + "x" * 100_000), " characters): nothing listens there"),
    ],
    ids=["store backup", "decode", "healthcheck"],
)
def test_a_path_pasted_wrong_is_one_short_line(
    args: tuple[str, ...], says: str, sqlite_url: str, tmp_path: Path
) -> None:
    # given: a store to back up; an ops port nothing listens on
    env = {
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_OPS_PORT": str(free_port()),
    }
    assert cli("migrate", env=env, cwd=tmp_path).returncode == 0

    # when
    result = cli(*args, env=env, cwd=tmp_path, timeout=30)

    # then
    assert result.returncode in (1, 2), result.stderr
    line = one_error_line(result)
    assert says in line
    assert len(line) < 500, line[:600]


def test_dlq_redrive_refuses_an_empty_to_and_moves_nothing(
    endpoint_url: str, make_queue: Any, sqs: Any
) -> None:
    # given: a DLQ holding a message, its source queue's redrive policy naming it
    url, dlq = make_queue("redrive-to")
    assert dlq is not None
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")

    # when: --to '' (before: taken as not given, the message went to the source queue)
    result = cli("dlq", "redrive", dlq, "--to", "", "--yes", "--endpoint-url", endpoint_url)

    # then: the line simulate --queue '' gives, nothing moved
    assert result.returncode == 2, result.stderr
    assert "no queue can be named ''" in one_error_line(result)
    for queue, held in ((dlq, "1"), (url, "0")):
        counts = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert counts["Attributes"]["ApproximateNumberOfMessages"] == held


@pytest.mark.parametrize(
    ("given", "env", "named"),
    [
        (("--config", "lambda-destinations.toml"), {}, "--config"),
        (
            (),
            {"LAMBDA_DESTINATIONS_CONFIG": "lambda-destinations.toml"},
            "LAMBDA_DESTINATIONS_CONFIG",
        ),
    ],
)
def test_a_config_file_that_does_not_exist_names_where_its_path_was_given(
    given: tuple[str, ...], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    # before: "fix LAMBDA_DESTINATIONS_CONFIG or --config" whichever gave the path
    unset = () if env else ("LAMBDA_DESTINATIONS_CONFIG",)
    result = cli("config", *given, env=env, cwd=tmp_path, unset=unset)

    assert result.returncode == 3, result.stderr
    assert one_error_line(result) == (
        f"error: config file lambda-destinations.toml does not exist: fix {named}"
    )
