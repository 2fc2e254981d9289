"""dev's endpoint answers the SQS operations moto lacks (the message move task's) as SQS answers
an operation it will not run, so a redrive against dev falls back to moving the messages itself
with no traceback in dev's terminal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.dev_endpoint import DevEndpoint, FunctionSimulation


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [
        ("start_message_move_task", {"SourceArn": "arn:aws:sqs:us-east-1:123456789012:dlq"}),
        ("list_message_move_tasks", {"SourceArn": "arn:aws:sqs:us-east-1:123456789012:dlq"}),
        ("cancel_message_move_task", {"TaskHandle": "h-1"}),
    ],
)
async def test_sqs_operations_moto_lacks_are_refused_as_sqs_refuses_them(
    moto_server: str,
    settings_for: Callable[..., Settings],
    operation: str,
    arguments: dict[str, str],
) -> None:
    # moto raises NotImplementedError for these (a traceback in dev's terminal); dev's endpoint
    # answers them itself, as SQS answers an operation it will not run
    async with (
        DevEndpoint(moto_server, FunctionSimulation(seed=1)) as endpoint,
        AwsClients(settings_for(endpoint_url=endpoint.url), max_attempts=1) as aws,
    ):
        sqs = await aws.client("sqs")
        with pytest.raises(ClientError) as refused:
            await getattr(sqs, operation)(**arguments)
        listed = await sqs.list_queues()  # what moto has still passes through

    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert refused.value.response["Error"]["Code"] == "UnsupportedOperation"
    action = refused.value.operation_name
    assert refused.value.response["Error"]["Message"] == (
        f"{action} is not implemented by dev's local endpoint"
    )
    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
