"""AWS clients (aiobotocore), one session per process, opened and closed with the worker."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from lambda_destinations._lifetime import Lifetime
from lambda_destinations._version import version
from lambda_destinations.config import Settings
from lambda_destinations.errors import LambdaDestinationsError

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession


def _single_attempt() -> AioConfig:
    """botocore's retries off: a request is sent once."""
    from aiobotocore.config import AioConfig

    return AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})


class AwsClients(Lifetime):
    """Lazily created aiobotocore clients sharing one endpoint override and region.

    Use as ``async with AwsClients(settings) as aws: sqs = await aws.client("sqs")``.
    """

    def __init__(self, settings: Settings, *, max_attempts: int = 3) -> None:
        # Imported here: aiobotocore costs a command that imports this module for one helper
        # (``dlq --help``, ``replay --help``) about a tenth of a second of CPU.
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self._settings = settings
        self._session: AioSession = get_session()
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        # The read timeout must outlast a long poll, or every idle receive would time out.
        self._config = AioConfig(
            region_name=settings.resolved_region(),
            connect_timeout=5,
            read_timeout=settings.wait_time + 15,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # A connection for each long poll (held up to wait_time), and beside them one a
            # queue for its deletes and visibility changes, and one a handler slot: a delete
            # that waited for a connection waited for a long poll to end.
            max_pool_connections=max(
                10, settings.concurrency + settings.poller_count() + len(settings.queues) + 4
            ),
            # Our requests are built by code, not typed by people: client-side validation of
            # every parameter is CPU spent on every call for errors the service reports anyway.
            parameter_validation=False,
            # A fixed User-Agent, built once: botocore otherwise rebuilds its structured one
            # on every request, which costs about a tenth of a receive call's CPU.
            user_agent=f"{self._session.user_agent()} lambda-destinations/{version()}",
        )

    @property
    def endpoint_url(self) -> str | None:
        return self._settings.endpoint_url

    @property
    def region(self) -> str | None:
        return self._settings.resolved_region()

    async def client(self, service: str) -> Any:
        """The client for ``service``, created on first use and closed on exit."""
        return await self._client(service, service, self._config)

    async def sender(self, service: str) -> Any:
        """A client that sends each request once (no botocore retries), for acting calls
        (SNS Publish, SES SendEmail): a resend after a lost answer may repeat the effect, so
        the handler's ``in_doubt`` policy decides it (handlers/in_doubt.py)."""
        return await self._client(
            f"{service}-send",
            service,
            self._config.merge(_single_attempt()),
        )

    async def lambda_invoker(self) -> Any:
        """A Lambda client for ``Invoke``, which botocore itself never sends twice.

        botocore's retries would send an Invoke again after a read timeout or a dropped
        connection, when Lambda may already have taken it: a second invocation. Callers retry
        only errors Lambda answered (``retrying.answered``) and record the rest as in doubt.
        """
        return await self._client(
            "lambda-invoke",
            "lambda",
            self._config.merge(_single_attempt()),
        )

    async def _client(self, key: str, service: str, config: AioConfig) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = await self._stack.enter_async_context(
                self._session.create_client(
                    service, endpoint_url=self._settings.endpoint_url, config=config
                )
            )
            self._clients[key] = client
        return client

    async def open(self) -> None:
        """Nothing to connect: a client is created on first use."""

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


async def invoke_event(
    lambda_client: Any, function_arn: str, payload: bytes, *, qualifier: str | None = None
) -> str:
    """Invoke ``function_arn`` (with ``qualifier``, if given) asynchronously
    (``InvocationType=Event``) with ``payload``; return the new invocation's request id (the
    ``x-amzn-RequestId`` of Lambda's answer, which the invocation's record carries).

    One call: give it ``AwsClients.lambda_invoker()``, which does not retry by itself, and
    retry only errors Lambda answered (``retrying.answered``). Raises whatever the client
    raises.
    """
    extra = {} if qualifier is None else {"Qualifier": qualifier}
    response = await lambda_client.invoke(
        FunctionName=function_arn, InvocationType="Event", Payload=payload, **extra
    )
    stream = response.get("Payload")
    if stream is not None:
        await stream.read()  # an Event invoke answers with an empty body; release the connection
    status = response.get("StatusCode")
    if status != 202:
        raise LambdaDestinationsError(
            f"Lambda answered an asynchronous Invoke of {function_arn} with status {status}, "
            "not 202"
        )
    metadata = response.get("ResponseMetadata", {})
    request_id = metadata.get("RequestId") or metadata.get("HTTPHeaders", {}).get(
        "x-amzn-requestid"
    )
    if not request_id:
        raise LambdaDestinationsError(f"Lambda returned no request id for {function_arn}")
    return str(request_id)


async def all_items(client: Any, operation: str, key: str, **params: Any) -> list[Any]:
    """The items under ``key`` of every page of a listing ``operation`` (botocore's paginator,
    which follows NextToken or NextMarker, whichever the operation uses)."""
    items: list[Any] = []
    async for page in client.get_paginator(operation).paginate(**params):
        items.extend(page.get(key, []))
    return items
