"""Replays, re-invokes and `invoke` of functions in another region than the settings' (records
of several regions reaching one worker), against moto's Lambda over HTTP.

moto keeps functions per region and, as Lambda, serves a request from the functions of the
region it was signed for, whatever region an ARN in it names: the Invoke of an ARN of
eu-west-1 signed for us-east-1 invokes us-east-1's function of that name (Lambda itself
refuses it: "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"). So
each test has a function of the same name in both regions, and reads the region each Invoke
was signed for from moto's recorder.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from ops_helpers import REGION, cli, failure_body, row_of, seed_sync

from lambda_destinations.store import InvocationRow

WEST = "eu-west-1"


@pytest.fixture
def twins(lambda_endpoint: Any) -> tuple[str, str]:
    """The ARNs of two functions of one name, in us-east-1 (the settings') and in eu-west-1."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    return lambda_endpoint.create_function(name), lambda_endpoint.create_function(name, WEST)


def failure_of(arn: str, n: int) -> tuple[str, dict[str, Any]]:
    """A failure record's body of the function ``arn``, and the record."""
    _body, record = failure_body(n, payload={"order": n})
    record["requestContext"]["functionArn"] = arn
    return json.dumps(record), record


def test_a_replay_invokes_each_function_in_the_region_its_arn_names(
    lambda_endpoint: Any, lambda_env: dict[str, str], sqlite_url: str, twins: tuple[str, str]
) -> None:
    # given: a failure of each twin
    east, west = twins
    rows: list[InvocationRow] = [row_of(failure_of(arn, n)[0]) for n, arn in enumerate(twins)]
    seed_sync(sqlite_url, rows)
    lambda_endpoint.start_recording()

    # when
    result = cli("replay", "--status", "open", "--yes", "--json", env=lambda_env)

    # then: eu-west-1's function invoked in eu-west-1 (before: both in us-east-1, the
    # settings' region, whose function of that name was invoked twice)
    assert result.returncode == 0, result.stderr
    assert sorted(lambda_endpoint.invocations_by_region()) == [
        (WEST, west, {"order": 1}),
        (REGION, east, {"order": 0}),
    ]
    assert [r["state"] for r in json.loads(result.stdout)["results"]] == ["invoked"] * 2


def test_redrive_reinvoke_invokes_the_function_in_the_region_its_arn_names(
    lambda_endpoint: Any, lambda_env: dict[str, str], twins: tuple[str, str]
) -> None:
    # given: a DLQ of the settings' region holding a failure record of eu-west-1's function
    _east, west = twins
    sqs = lambda_endpoint.sqs
    dlq = sqs.create_queue(QueueName=f"regions-{uuid.uuid4().hex[:8]}-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=dlq, MessageBody=failure_of(west, 7)[0])
    assert cli("migrate", env=lambda_env).returncode == 0
    lambda_endpoint.start_recording()
    try:
        # when
        result = cli("dlq", "redrive", dlq, "--reinvoke", "--yes", "--json", env=lambda_env)

        # then: invoked in eu-west-1 (before: in us-east-1)
        assert result.returncode == 0, result.stderr
        assert lambda_endpoint.invocations_by_region() == [(WEST, west, {"order": 7})]
        assert json.loads(result.stdout)["invoked"] == 1
    finally:
        sqs.delete_queue(QueueUrl=dlq)


def test_invoke_of_an_arn_of_another_region_invokes_it_there_and_a_name_here(
    lambda_endpoint: Any, lambda_env: dict[str, str], twins: tuple[str, str]
) -> None:
    east, west = twins
    name = east.rsplit(":", 1)[1]
    lambda_endpoint.start_recording()

    # when: eu-west-1's ARN, then the bare name
    by_arn = cli("invoke", west, "--payload", '{"n": 1}', env=lambda_env)
    by_name = cli("invoke", name, "--payload", '{"n": 2}', env=lambda_env)

    # then: the ARN in eu-west-1 (before: refused, exit 2, "give --region eu-west-1"), the name
    # in the settings' region, where Lambda reads it
    assert by_arn.returncode == 0, by_arn.stderr
    assert by_name.returncode == 0, by_name.stderr
    assert lambda_endpoint.invocations_by_region() == [
        (WEST, west, {"n": 1}),
        (REGION, name, {"n": 2}),
    ]
