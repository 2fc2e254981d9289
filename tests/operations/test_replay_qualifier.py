"""`replay --qualifier`: replaying failures of a published version on the code deployed since
(an alias moved to a new version), against a moto Lambda endpoint (its own process), dev's
simulated functions and a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from ops_helpers import cli, error_lines, failure_body, row_of, seed, seed_sync

from lambda_destinations.config import RouteConfig, Settings
from lambda_destinations.dev_endpoint import Destinations, DevEndpoint, FunctionSimulation
from lambda_destinations.schemas import FunctionArn
from lambda_destinations.store import FailureStatus, InvocationRow, ReplayOutcome, Store
from lambda_destinations.worker import Worker


def failure_of(function_arn: str, n: int) -> InvocationRow:
    """A failure record of ``function_arn`` (qualified as Lambda qualifies it)."""
    _, record = failure_body(n, function=FunctionArn.parse(function_arn).function_name)
    record["requestContext"]["functionArn"] = function_arn
    return row_of(json.dumps(record))


@pytest.fixture
def versioned(lambda_endpoint) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A function with versions 1 (the failing code) and 2 (the fix), and its alias ``live``
    moved to version 2: their ARNs by qualifier."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    lambda_endpoint.create_function(name)
    lam = lambda_endpoint.lam
    arns = {"1": lam.publish_version(FunctionName=name)["FunctionArn"]}
    lam.update_function_configuration(FunctionName=name, Description="the fix")
    arns["2"] = lam.publish_version(FunctionName=name)["FunctionArn"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    arns["live"] = lam.get_alias(FunctionName=name, Name="live")["AliasArn"]
    arns["name"] = name
    return arns


@pytest.fixture
def of_version_1(versioned: dict[str, str], sqlite_url: str) -> list[InvocationRow]:
    """Two failures of version 1 in the store."""
    rows = [failure_of(versioned["1"], n) for n in (1, 2)]
    seed_sync(sqlite_url, rows)
    return rows


def test_replay_with_a_qualifier_invokes_it_and_the_ledger_and_show_name_it(
    lambda_endpoint, lambda_env, versioned, of_version_1, sqlite_url
) -> None:
    name = versioned["name"]
    lambda_endpoint.start_recording()

    result = cli(
        "replay", "--function", name, "--qualifier", "live", "--yes", "--json", env=lambda_env
    )

    # then: each record's function, its alias rather than the version the record names
    assert result.returncode == 0, result.stderr
    assert [arn for arn, _ in lambda_endpoint.invocations()] == [versioned["live"]] * 2
    results = json.loads(result.stdout)["results"]
    assert [(r["function_arn"], r["record_function_arn"]) for r in results] == [
        (versioned["live"], versioned["1"])
    ] * 2
    ledger = _ledger(sqlite_url, of_version_1)
    assert [[a.function_arn for a in attempts] for attempts in ledger] == [[versioned["live"]]] * 2
    shown = cli("failures", "show", of_version_1[0].request_id or "", env=lambda_env)
    assert shown.returncode == 0, shown.stderr
    header = next(line for line in shown.stdout.splitlines() if "NEW REQUEST ID" in line)
    assert "INVOKED" in header
    attempt = next(line for line in shown.stdout.splitlines() if f"{name}:live" in line)
    assert ledger[0][0].new_request_id in attempt


def test_a_qualifier_in_no_form_lambda_takes_is_refused_in_one_line(
    lambda_endpoint, lambda_env, of_version_1, versioned, sqlite_url
) -> None:
    lambda_endpoint.start_recording()

    result = cli(
        "replay",
        "--function",
        versioned["name"],
        "--qualifier",
        "my alias",
        "--yes",
        env=lambda_env,
    )

    assert result.returncode == 2
    assert error_lines(result) == [
        "error: Invalid value for '--qualifier': 'my alias' is not a version or alias: write a "
        "version number (7), an alias name (live) or $LATEST, 1 to 128 letters, digits, '-' or "
        "'_'"
    ]
    assert "Traceback" not in result.stderr
    assert lambda_endpoint.invocations() == []
    assert _ledger(sqlite_url, of_version_1) == [[], []]


def test_the_dry_run_and_the_question_show_the_version_and_the_qualifier_invoked(
    lambda_endpoint, lambda_env, versioned, of_version_1
) -> None:
    name = versioned["name"]
    lambda_endpoint.start_recording()

    dry = cli("replay", "--function", name, "--qualifier", "live", "--dry-run", env=lambda_env)
    asked = cli("replay", "--function", name, "--qualifier", "live", env=lambda_env, input="n\n")

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count(f"{name}:1 → {name}:live") == 2
    assert asked.returncode == 6
    assert asked.stderr.count(f"{name}:1 → {name}:live") == 2
    assert "Invoke 2 failed invocations of 1 function again (qualifier live) at 10/s?" in (
        asked.stderr
    )
    # the operator chose: no word of the version's code
    assert "a published version never changes" not in dry.stderr + asked.stderr
    assert lambda_endpoint.invocations() == []


def test_without_a_qualifier_records_of_a_published_version_are_named_once_a_function(
    lambda_endpoint, lambda_env, versioned, of_version_1, sqlite_url
) -> None:
    # given: besides version 1's two failures, one through the alias
    name = versioned["name"]
    seed_sync(sqlite_url, [failure_of(versioned["live"], 3)])
    lambda_endpoint.start_recording()

    # when: a dry run of all three, of version 1's alone, and a run that asks
    every = cli("replay", "--function", name, "--dry-run", env=lambda_env)
    ids = [r.request_id or "" for r in of_version_1]
    alone = cli("replay", *ids, "--dry-run", env=lambda_env)
    asked = cli("replay", "--function", name, env=lambda_env, input="n\n")

    # then: one line for the function, naming the alias its other record names, if any
    line = (
        f"{name}: replays run version 1's code again (a published version never changes); "
        "--qualifier live runs the alias's"
    )
    assert every.returncode == 0, every.stderr
    assert every.stderr.count(f"{name}: replays run") == 1
    assert line in every.stderr.splitlines()
    assert (
        f"{name}: replays run version 1's code again (a published version never changes); "
        "--qualifier ALIAS (or '$LATEST') runs the code deployed since"
    ) in alone.stderr.splitlines()
    assert line in asked.stderr.splitlines()
    assert asked.stderr.index(line) < asked.stderr.index("Invoke 3 failed invocations")
    assert lambda_endpoint.invocations() == []


def _ledger(url: str, rows: list[InvocationRow]) -> list[list[Any]]:
    async def go() -> list[list[Any]]:
        async with Store.from_url(url) as store:
            return [await store.replays(r.key) for r in rows]

    return asyncio.run(go())


async def test_a_replay_on_the_alias_is_linked_to_its_success_and_marks_the_original_recovered(
    moto_server, make_queue, settings_for, sqlite_url
) -> None:
    # given: dev's simulated functions, which succeed now and deliver their records (their
    # functionArn with the qualifier invoked), and a failure of version 12 in the store
    success, _ = make_queue("ok")
    failure, _ = make_queue("ko")
    row = failure_of("arn:aws:lambda:us-east-1:123456789012:function:orders-api:12", 1)
    await seed(sqlite_url, [row])
    simulation = FunctionSimulation(success_rate=1.0, delay=0, seed=1)
    async with DevEndpoint(moto_server, simulation) as endpoint:
        endpoint.deliver_to(Destinations(success, failure))
        env = {
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint.url,
            "LAMBDA_DESTINATIONS_STORE": sqlite_url,
            "LAMBDA_DESTINATIONS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "dev",
            "AWS_SECRET_ACCESS_KEY": "dev",
        }

        # when: it is replayed on the alias, and the worker takes the record that comes back
        rid = row.request_id or ""
        replay = await asyncio.to_thread(
            cli, "replay", rid, "--qualifier", "live", "--yes", env=env
        )
        assert replay.returncode == 0, replay.stderr
        settings: Settings = settings_for(success, endpoint_url=endpoint.url)
        routes = [RouteConfig(condition="success", handlers=("persist", "replay-outcome"))]
        settings = settings.model_copy(update={"routes": routes})
        async with Store.from_url(sqlite_url) as store, Worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            for _ in range(120):
                original = await store.get_invocation(row.key)
                if original is not None and original.status is FailureStatus.RECOVERED:
                    break
                await asyncio.sleep(0.25)
            worker.stop()
            await running
            (attempt,) = await store.replays(row.key)
            assert attempt.new_request_id is not None
            arrived = await store.get_invocation(attempt.new_request_id)

    # then: the new record names the alias; the ledger's attempt, linked to it, recovered
    assert arrived is not None
    assert arrived.function_arn == "arn:aws:lambda:us-east-1:123456789012:function:orders-api:live"
    assert arrived.succeeded is True
    assert attempt.function_arn == arrived.function_arn
    assert attempt.outcome is ReplayOutcome.RECOVERED
    assert original is not None
    assert original.status is FailureStatus.RECOVERED
