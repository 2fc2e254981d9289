"""dev's simulated Lambda refuses a payload over Lambda's limit as Lambda does (413
RequestEntityTooLargeException), so a replay of such a failure ends as an error, not invoked."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.dev_endpoint import DevEndpoint, FunctionSimulation
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.operations import TRIGGER_MANUAL, ReplayState, replay_invocation
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import DeliveryRow, ReplayOutcome, Store

TWO_MB = {"blob": "x" * (2 * 1024 * 1024)}


# aiohttp warns when a request body over 1 MB is given as bytes (as aiobotocore gives Invoke's).
@pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes")
async def test_an_event_invoke_over_1_mb_is_refused_and_its_replay_ends_as_an_error(
    moto_server: str, settings_for: Callable[..., Settings]
) -> None:
    # given: dev's endpoint, and a failure of a simulated function whose payload is 2 MB
    record = failure_record(
        random.Random(5),
        function="orders-api",
        condition="RetriesExhausted",
        request_payload=TWO_MB,
    )
    row = invocation_row(decode(json.dumps(record)), "https://sqs/q")
    async with DevEndpoint(moto_server, FunctionSimulation(seed=1, delay=0)) as endpoint:
        settings = settings_for(endpoint_url=endpoint.url)
        async with Store.from_url(settings.store) as store, AwsClients(settings) as aws:
            await store.migrate()
            await store.save_invocation(row, DeliveryRow(row.key, "m-1", "https://sqs/q", 1))
            lam = await aws.lambda_invoker()

            # when: it is invoked asynchronously, then replayed
            with pytest.raises(ClientError) as refused:
                await lam.invoke(
                    FunctionName="orders-api", InvocationType="Event", Payload=json.dumps(TWO_MB)
                )
            result = await replay_invocation(
                store, lam, row, trigger=TRIGGER_MANUAL, requested_by="cli test@host"
            )
            attempts = await store.replays(row.key)

        # then: Lambda's 413 both times; the replay is an error in the ledger, nothing invoked
        error = refused.value.response["Error"]
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert error["Code"] == "RequestEntityTooLargeException"
        assert (
            "payload is too large for the Event invocation type (limit 1048576 bytes)"
            in (error["Message"])
        )
        assert result.state is ReplayState.ERROR
        assert result.detail is not None
        assert "RequestEntityTooLargeException" in result.detail
        assert [a.outcome for a in attempts] == [ReplayOutcome.ERROR]
        assert endpoint.invocations == 0


async def test_an_event_invoke_of_1_mb_is_taken(
    moto_server: str, settings_for: Callable[..., Settings]
) -> None:
    payload = json.dumps({"blob": "x" * (1024 * 1024 - 20)})
    assert len(payload) <= 1024 * 1024
    async with DevEndpoint(moto_server, FunctionSimulation(seed=1)) as endpoint:
        aws = AwsClients(settings_for(endpoint_url=endpoint.url))
        async with aws:
            lam = await aws.lambda_invoker()
            answer = await lam.invoke(
                FunctionName="orders-api", InvocationType="Event", Payload=payload
            )
    assert answer["StatusCode"] == 202
