"""Arbitrary input to the command line's parsers: options, store URLs, endpoint URLs, durations,
globs and TOML settings. Whatever comes in, a command ends with an exit code the README
documents, and never with a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bad_input_helpers import DOCUMENTED_EXIT_CODES
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_destinations.cli import cli as group
from lambda_destinations.config import Settings
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import Store

# Bounded, and no deadline: a shared CI machine is slow at times, and this is about outcomes.
FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite store with a few failures in it."""
    from lambda_destinations.handlers.persist import invocation_row
    from lambda_destinations.schemas import decode
    from lambda_destinations.store import DeliveryRow

    url = f"sqlite:///{tmp_path_factory.mktemp('props') / 'store.db'}"

    async def seed() -> None:
        async with Store.from_url(url) as store:
            await store.migrate()
            for n in range(3):
                body = json.dumps(failure_record(random.Random(n), function=f"orders-{n}"))
                row = invocation_row(decode(body), "q")
                delivery = DeliveryRow(key=row.key, message_id=f"m{n}", queue="q", receive_count=1)
                await store.save_invocation(row, delivery)

    asyncio.run(seed())
    return url


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run the command line in this process; assert a documented end with no traceback."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(
        env={
            "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:1",
            "LAMBDA_DESTINATIONS_STORE": None,
            "LAMBDA_DESTINATIONS_CONFIG": None,
            "LAMBDA_DESTINATIONS_QUEUES": None,
        }
    )

    def run(*args: str) -> int:
        result = runner.invoke(group, list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{args!r} raised {result.exception!r}") from result.exception
        assert "Traceback" not in result.output, (args, result.output)
        assert result.exit_code in DOCUMENTED_EXIT_CODES, (args, result.exit_code, result.output)
        return result.exit_code

    yield run
    # nothing a read-only command was given may have made a file where it ran
    assert os.listdir(tmp_path) == []


@FAST
@given(limit=TEXT | st.integers().map(str), since=TEXT, until=TEXT, status=TEXT)
def test_option_values(
    invoke: Any, store_url: str, limit: str, since: str, until: str, status: str
) -> None:
    invoke("failures", "list", "--store", store_url, "--limit", limit)
    invoke("failures", "list", "--store", store_url, "--since", since, "--until", until)
    invoke("failures", "list", "--store", store_url, "--status", status, "--json")


DURATION = st.one_of(
    TEXT,
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.one_of(st.integers(min_value=0), st.floats(allow_nan=True, allow_infinity=True)),
        st.sampled_from(["s", "m", "h", "d", "w", "", "x", "H"]),
    ),
    st.datetimes().map(lambda d: d.isoformat()),
)


@FAST
@given(since=DURATION, until=DURATION)
def test_durations_and_times(invoke: Any, store_url: str, since: str, until: str) -> None:
    invoke("failures", "list", "--store", store_url, "--since", since)
    invoke("failures", "stats", "--store", store_url, "--since", since, "--until", until)


GLOB = st.text(st.sampled_from("ab-_]![^*?\\.é%\n\t '\""), max_size=30) | TEXT


@FAST
@given(glob=GLOB)
def test_globs(invoke: Any, store_url: str, glob: str) -> None:
    code = invoke("failures", "list", "--store", store_url, "--function", glob, "--json")
    # a blank one: "is empty", a usage error; so is one with a colon (a qualifier or an ARN,
    # which no function name holds)
    assert code == (2 if not glob.strip() or ":" in glob else 0)


STORE_URL = st.one_of(
    TEXT,
    TEXT.map(lambda path: f"sqlite:///{path}"),
    TEXT.map(lambda path: f"sqlite:////nonexistent-dir/{path}"),
    st.builds(
        lambda user, password, db, query: (
            f"postgresql://{user}:{password}@127.0.0.1:1/{db}?{query}"
        ),
        TEXT,
        TEXT,
        TEXT,
        TEXT,
    ),
    st.sampled_from(["sqlite://", "sqlite:///", "postgres://", "mysql://x/y", "sqlite:///~"]),
)


@FAST
@given(url=STORE_URL)
def test_store_urls(invoke: Any, url: str) -> None:
    invoke("failures", "list", "--store", url)


ENDPOINT_URL = st.one_of(
    TEXT,
    st.builds(
        lambda scheme, rest: f"{scheme}://{rest}",
        st.sampled_from(["http", "https", "file", "ftp", "HTTP", "", "s3"]),
        TEXT,
    ),
    st.integers().map(lambda port: f"http://127.0.0.1:{port}"),
)


@FAST
@given(url=ENDPOINT_URL)
def test_endpoint_urls(invoke: Any, url: str) -> None:
    # The store is missing: a valid endpoint ends in 3 there, before any request is made.
    invoke("failures", "list", "--endpoint-url", url, "--store", "sqlite:///missing.db")


SCALAR = st.one_of(
    TEXT, st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans()
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["handlers", "condition", "function", "x"]), inner, max_size=3
        )
    ),
    max_leaves=6,
)
KEYS = st.sampled_from([*Settings.model_fields, "nope", "routes"])


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string reads JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


TOML = st.one_of(
    TEXT,
    st.dictionaries(KEYS, VALUE, max_size=4).map(
        lambda table: "".join(f"{key} = {toml_value(v)}\n" for key, v in table.items())
    ),
)


@FAST
@given(text=TOML)
def test_toml_settings(
    invoke: Any, store_url: str, text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("toml") / "settings.toml"
    path.write_text(text, encoding="utf-8")
    invoke("failures", "list", "--config", str(path), "--store", store_url)
