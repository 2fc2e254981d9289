"""``lambda-destinations prune``: dry run, --older-than, one-line errors (real SQLite file)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lambda_destinations.cli import cli
from lambda_destinations.store import DeliveryRow, InvocationFilter, InvocationRow, Store, utcnow
from processes import ENTRY, ctrl_c_as_in_a_terminal, reap


def success(n: int, when: dt.datetime) -> tuple[InvocationRow, DeliveryRow]:
    key = f"r-{n}:Success"
    row = InvocationRow(
        key=key,
        kind="invocation",
        envelope="none",
        request_id=f"r-{n}",
        function_arn=None,
        function_name="f",
        qualifier=None,
        condition="Success",
        succeeded=True,
        approximate_invoke_count=1,
        error_type=None,
        error_message=None,
        stack_trace=None,
        timestamp=when,
        first_seen_at=when,
        request_payload=None,
        response_payload=None,
        record={},
        queue="q",
    )
    return row, DeliveryRow(key=key, message_id=f"m-{n}", queue="q", receive_count=1)


async def seed(url: str) -> None:
    async with Store.from_url(url) as store:
        await store.migrate()
        for n, days in enumerate((30, 10, 3, 0)):
            await store.save_invocation(*success(n, utcnow() - dt.timedelta(days=days)))


async def left(url: str) -> list[str]:
    async with Store.from_url(url) as store:
        rows = await store.list_invocations(InvocationFilter(failed_only=False))
    return sorted(row.key for row in rows)


def prune(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["prune", "--store", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_dry_run_counts_by_the_settings_and_deletes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(seed(url))

    code, out, _ = prune(url, "--dry-run", "--json")

    assert code == 0
    report = json.loads(out)
    assert report["dry_run"] is True
    assert report["rows"]["successes"] == 2  # older than the default 7 days
    assert "open-failures" not in report["rows"]  # kept until resolved by default
    assert len(asyncio.run(left(url))) == 4


def test_older_than_replaces_the_retention_and_the_table_says_what_went(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(seed(url))

    code, out, _ = prune(url, "--older-than", "2d")

    assert code == 0
    successes = next(line for line in out.splitlines() if line.startswith("successes"))
    assert successes.split()[-1] == "3"
    assert asyncio.run(left(url)) == ["r-3:Success"]


@pytest.mark.parametrize("older_than", [[], ["--older-than", "1d"]])
def test_every_kind_kept_forever_says_why_nothing_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, older_than: list[str]
) -> None:
    # given: every keep_* setting 0 (kept forever)
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(seed(url))
    for kind in ("SUCCESSES", "FAILURES", "QUARANTINE", "REPLAYS"):
        monkeypatch.setenv(f"LAMBDA_DESTINATIONS_KEEP_{kind}_DAYS", "0")

    code, out, err = prune(url, *older_than)

    # then: nothing goes, and a line says why and what to set, with no table of no kind
    assert code == 0
    assert out == ""
    assert err == (
        "nothing to prune: every kind is kept forever (keep_successes_days, keep_failures_days, "
        "keep_quarantine_days and keep_replays_days are 0, and --older-than keeps what they "
        "keep): set one above 0 to prune its kind\n"
    )
    assert len(asyncio.run(left(url))) == 4


def test_a_bad_time_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = prune(f"sqlite:///{tmp_path / 's.db'}", "--older-than", "soon")

    assert code == 2
    assert err.startswith("error: --older-than: ")
    assert err.count("\n") == 1


def test_a_time_in_the_future_is_refused_before_anything_goes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(seed(url))

    code, _, err = prune(url, "--older-than", "2999-01-01")

    assert code == 2
    # with the fix (before: none)
    assert err == (
        "error: --older-than 2999-01-01 is in the future: nothing would be kept: give a past "
        "date or an age such as 30d\n"
    )
    assert len(asyncio.run(left(url))) == 4


def test_vacuum_says_what_the_file_took_before_and_after(tmp_path: Path) -> None:
    # given: a store file made before auto_vacuum was the default (it keeps its size after
    # deletes until a VACUUM), holding 100 successes of 10 kB past their retention
    path = tmp_path / "s.db"
    asyncio.run(seed_payloads(f"sqlite:///{path}", count=100, size=10_000))
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript("PRAGMA auto_vacuum=NONE; VACUUM;")
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)

    # when
    code, out, err = prune(f"sqlite:///{path}", "--vacuum", "--json")
    text_code, _, text_err = prune(f"sqlite:///{copy}", "--vacuum")

    # then: the bytes it took before and after (before: --vacuum said nothing of the VACUUM)
    assert code == 0, err
    vacuum = json.loads(out)["vacuum"]
    assert vacuum["bytes_before"] > 1_000_000 > vacuum["bytes_after"] == path.stat().st_size
    # and one line of it in text, in MB or kB
    assert text_code == 0, text_err
    assert re.fullmatch(
        r"VACUUM: the file and its write-ahead log took \d+\.\d MB, now \d+ kB",
        text_err.splitlines()[-1],
    ), text_err


def test_the_space_given_back_is_counted_in_the_file_s_own_pages(tmp_path: Path) -> None:
    # given: 40 successes of 40 kB past their retention, in a file this store created (16 KiB
    # pages, auto_vacuum=INCREMENTAL)
    path = tmp_path / "s.db"
    asyncio.run(seed_payloads(f"sqlite:///{path}", count=40, size=40_000))
    full = path.stat().st_size

    # when
    code, out, err = prune(f"sqlite:///{path}", "--json")

    # then: what it gave back, which the file lost (it counted 4 KiB a page: a quarter of it)
    assert code == 0, err
    given_back = json.loads(out)["bytes_reclaimed"]
    assert given_back >= 40 * 40_000
    assert full - path.stat().st_size >= given_back


def test_a_dry_run_says_it_runs_no_vacuum(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    asyncio.run(seed(url))

    code, out, err = prune(url, "--dry-run", "--vacuum", "--json")

    # before: skipped without a word
    assert code == 0, err
    assert err == "note: --dry-run runs no VACUUM\n"
    assert json.loads(out)["vacuum"] is None


async def seed_payloads(url: str, *, count: int, size: int) -> None:
    """``count`` successes 30 days old, each with a request payload of ``size`` bytes."""
    when = utcnow() - dt.timedelta(days=30)
    async with Store.from_url(url) as store:
        await store.migrate()
        for n in range(count):
            row, delivery = success(n, when)
            row.request_payload = {"blob": "x" * size}
            await store.save_invocation(row, delivery)


@pytest.mark.postgres
def test_vacuum_on_postgresql_says_autovacuum_does_it(postgres_url: str) -> None:
    asyncio.run(seed(postgres_url))

    code, _, err = prune(postgres_url, "--vacuum")

    assert code == 0
    assert "note: --vacuum applies to SQLite only" in err
    assert asyncio.run(left(postgres_url)) == ["r-2:Success", "r-3:Success"]


NOT_MIGRATED = (
    "it has no tables yet: run `lambda-destinations migrate` (the worker also migrates at "
    "start), or point the store URL at the worker's database"
)


@pytest.mark.parametrize("command", [("prune",), ("prune", "--dry-run"), ("failures", "list")])
def test_a_store_file_with_no_tables_is_a_configuration_error(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    # given: a SQLite file that is not the worker's (another program's table)
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.commit()
    url = f"sqlite:///{path}"

    # when
    result = CliRunner().invoke(cli, [*command, "--store", url])

    # then: exit 3, as a missing file is; before, 4 ("is unavailable: no such table:
    # invocations"), which says to retry, and a script retried for ever
    assert result.exit_code == 3, result.stderr
    assert result.stderr == f"error: store {url} (--store): {NOT_MIGRATED}\n"
    assert result.stdout == ""


@pytest.mark.postgres
def test_an_empty_postgresql_database_is_a_configuration_error_its_password_masked(
    postgres_url: str,
) -> None:
    # the machine's server trusts local connections: the password is taken and not checked
    user_at = postgres_url.split("://", 1)[1].split("@", 1)[0] + "@"
    with_password = postgres_url.replace(user_at, user_at[:-1] + ":s3cret@", 1)
    shown = with_password.replace("s3cret", "***")

    code, out, err = prune(with_password, "--dry-run", "--json")

    assert code == 3, err
    assert err == f"error: store {shown} (--store): {NOT_MIGRATED}\n"
    assert "s3cret" not in err
    assert out == ""


def test_a_prune_stopped_midway_says_how_many_rows_it_deleted(tmp_path: Path) -> None:
    # given: many successes past their retention, pruned one a transaction
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"

    async def many() -> None:
        async with Store.from_url(url) as store:
            await store.migrate()
            old = utcnow() - dt.timedelta(days=30)
            for n in range(1500):
                await store.save_invocation(*success(n, old))

    asyncio.run(many())
    env = {**os.environ, "LAMBDA_DESTINATIONS_STORE": url, "LAMBDA_DESTINATIONS_PRUNE_BATCH": "1"}
    count = "SELECT count(*) FROM invocations"
    with (
        contextlib.closing(sqlite3.connect(path)) as db,
        subprocess.Popen(
            [*ENTRY, "prune"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ctrl_c_as_in_a_terminal,
        ) as process,
    ):
        try:
            # when: Ctrl-C once it has deleted some
            while db.execute(count).fetchone()[0] == 1500 and process.poll() is None:
                time.sleep(0.01)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            reap(process)
        deleted = 1500 - db.execute(count).fetchone()[0]

    # then: interrupted, after a line of what it deleted (the batch under way finished, and
    # counted), and what is left to the next prune
    assert 0 < deleted < 1500, err
    assert process.returncode == 130, err
    assert err.splitlines() == [
        f"stopped after deleting {deleted} row{'s' if deleted != 1 else ''} (successes "
        f"{deleted}): the rest are left for "
        "the next prune (run it again, or the worker's own every prune_interval)",
        "interrupted",
    ]
