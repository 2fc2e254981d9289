"""Store paths: owner-only files, folders created only by the commands that write, plain paths."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambda_destinations.errors import ConfigError, StoreUnavailable
from lambda_destinations.store import InvocationFilter, Store


@pytest.fixture
def default_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("default_umask")
async def test_a_new_store_and_its_folders_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.db"
    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        # the WAL and shared-memory files exist while a connection is open
        assert mode(Path(f"{path}-wal")) == 0o600
        assert mode(Path(f"{path}-shm")) == 0o600
    assert mode(path) == 0o600
    assert mode(tmp_path / "a") == 0o700
    assert mode(tmp_path / "a" / "b") == 0o700


async def test_without_create_a_missing_store_is_refused_and_nothing_is_made(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nope" / "store.db"
    with pytest.raises(ConfigError, match="does not exist"):
        async with Store.from_url(f"sqlite:///{path}", create=False):
            pass
    assert os.listdir(tmp_path) == []


async def test_tilde_is_expanded_to_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    async with Store.from_url("sqlite:///~/x.db") as store:
        await store.migrate()
    assert (tmp_path / "x.db").is_file()
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqlite:///file:x.db?mode=ro", "no parameters"),
        ("sqlite:///file:x.db", "not a plain path"),
        ("sqlite:///x.db?timeout=abc", "no parameters"),
        ("sqlite:///~no-such-user-here/x.db", "cannot expand"),
    ],
)
def test_what_is_not_a_plain_path_is_refused(
    url: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=problem):
        Store.from_url(url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("timeout=abc", "unknown parameter 'timeout'"),
        ("sslmode=sometimes", "sslmode must be"),
        *(
            (f"pool_size={value}", "pool_size must be a whole number from 1 to 1000")
            for value in ("0", "1001", "abc", "2.5", "-3", "%C2%B2")
        ),
        ("pool_size=2&pool_size=3", "give pool_size once"),
        # SQLAlchemy drops these: each was taken for the default
        ("pool_size=", "pool_size has no value: give pool_size=… or leave it out"),
        ("sslmode=disable&pool_size", "pool_size has no value"),
        ("sslmode=", "sslmode has no value"),
        ("timeout=", "unknown parameter 'timeout'"),
        ("sslmode=disable&ssl=disable&pool_size=2", "give sslmode once"),
        # before: "sslmode must be one of …", of two values it takes
        ("sslmode=disable&sslmode=require", "give sslmode once"),
        ("pgbouncer=yes", "pgbouncer must be true .* or false"),
        ("pgbouncer=", "pgbouncer has no value"),
        *(
            (
                f"{name}=ld",
                "pool_size and pgbouncer: for a schema other than public, set the "
                r"user's search_path \(ALTER ROLE … IN DATABASE … SET search_path = …\)",
            )
            for name in ("search_path", "options", "schema", "currentSchema")
        ),
    ],
)
def test_postgresql_url_parameters_are_checked(query: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        Store.from_url(f"postgresql://app:pw@127.0.0.1/db?{query}")
    assert ":pw@" not in str(info.value)


@pytest.mark.postgres
async def test_sslmode_disable_reaches_the_server(postgres_url: str) -> None:
    async with Store.from_url(f"{postgres_url}?sslmode=disable") as store:
        await store.ping()


# -- hostile globs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "*a*a*a*a*a*a*a*a*c",
        "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*c",
        "*[ab]*[ab]*[ab]*[ab]*[ab]*c",
    ],
)
async def test_a_glob_of_many_stars_answers_at_once(
    pattern: str, store: Store, make_row: Any, make_delivery: Any
) -> None:
    # A regular expression per row backtracked for minutes on this (the test's timeout
    # catches a return of that behaviour); the databases' own operators do not.
    row = make_row(function_name="a" * 64)
    await store.save_invocation(row, make_delivery(row))
    row = make_row(function_name="a" * 63 + "c")
    await store.save_invocation(row, make_delivery(row))

    rows = await store.list_invocations(InvocationFilter(function_glob=pattern))

    assert [r.function_name for r in rows] == ["a" * 63 + "c"]


@pytest.mark.parametrize("host", ["\x80", "\udc80", "h\udc80st", "a\x00b"])
def test_a_postgresql_host_that_is_no_host_name_is_one_clear_line(host: str) -> None:
    # Found by test_cli_properties: the resolver's encoding error surfaced as a traceback
    # ("the store cannot hold this record") when the command connected.
    with pytest.raises(ConfigError, match="is not a host name"):
        Store.from_url(f"postgresql://{host}/db")


async def test_a_postgresql_host_in_unicode_is_looked_up_by_idna_2008() -> None:
    # before: given to the resolver as it was, which encodes it by IDNA 2003: faß.invalid was
    # looked up as fass.invalid, another domain (IDNA 2008, as the rest of the project: xn--fa-hia)
    store = Store.from_url("postgresql://postgres@faß.invalid/db")
    with pytest.raises(StoreUnavailable) as failed:
        await store.open()
    assert "reachable at xn--fa-hia.invalid:5432 " in str(failed.value)


async def test_a_postgresql_server_at_an_ipv6_address_is_named_with_its_brackets() -> None:
    # before: "reachable at ::1:1", where the port cannot be told from the address, and a user
    # that may not migrate was told to run migrate with postgresql://OWNER@::1:1/db, no URL
    store = Store.from_url("postgresql://postgres@[::1]:1/db")
    with pytest.raises(StoreUnavailable) as failed:
        await store.open()
    assert "reachable at [::1]:1 " in str(failed.value)


@pytest.mark.parametrize("url", ["postgresql://:/db", "postgresql://::1]/db", "sqlite://:x/db"])
def test_a_store_url_whose_port_is_no_number_is_one_clear_line(url: str) -> None:
    with pytest.raises(ConfigError, match="not a URL; use "):
        Store.from_url(url)
