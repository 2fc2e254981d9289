"""AWS clients (aiobotocore), one session per process, opened and closed with the worker."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from lambda_destinations._lifetime import Lifetime
from lambda_destinations._version import version
from lambda_destinations.config import Settings
from lambda_destinations.errors import ConfigError, LambdaDestinationsError

if TYPE_CHECKING:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession


def _single_attempt() -> AioConfig:
    """botocore's retries off: a request is sent once."""
    from aiobotocore.config import AioConfig

    return AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})


NO_CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role"
)

# Where botocore got the credentials from (its provider's name, else the environment that
# chose it), and what to check there.
_SOURCES = {
    "container-role": (
        "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI)",
        "check that the ECS agent (or the EKS Pod Identity agent) answers there, and "
        "AWS_CONTAINER_AUTHORIZATION_TOKEN or the file AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "
        "names",
    ),
    "assume-role-with-web-identity": (
        "the web identity token (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)",
        "check that the token file is mounted and readable (the pod's service account) and "
        "that the role trusts it",
    ),
    "custom-process": (
        "the profile's credential_process",
        "run it by hand: it must exit 0 and print JSON with Version 1, AccessKeyId, "
        "SecretAccessKey (and SessionToken, Expiration)",
    ),
    "sso": ("AWS SSO", "run `aws sso login` with the same profile"),
    "profile": ("the AWS profile", "fix AWS_PROFILE or the profile in the AWS config file"),
}


def _credentials_source(exc: BaseException) -> str:
    """The name of the credential source ``exc`` came from (see _SOURCES)."""
    provider = getattr(exc, "kwargs", {}).get("provider")
    if provider in _SOURCES:
        return str(provider)
    from botocore.exceptions import SSOError, TokenRetrievalError

    if isinstance(exc, (SSOError, TokenRetrievalError)):
        return "sso"
    env = os.environ
    if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
    ):
        return "container-role"
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "assume-role-with-web-identity"
    # JSONDecodeError: a profile's credential_process printed what is not JSON.
    return "custom-process" if isinstance(exc, ValueError) else "profile"


class CredentialsUnavailable(ConfigError):
    """The AWS credentials could not be got: ``problem`` (the source and its error, redacted:
    no key is in it) and ``fix``."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix

    @classmethod
    def of(cls, exc: BaseException) -> CredentialsUnavailable:
        """What ``exc``, raised while getting the credentials, says of their source."""
        from lambda_destinations.retrying import first_line

        source, fix = _SOURCES[_credentials_source(exc)]
        if source == "the AWS profile" and (profile := os.environ.get("AWS_PROFILE")):
            source = f"the AWS profile {profile!r} (AWS_PROFILE)"
        return cls(
            f"cannot get the AWS credentials from {source} ({first_line(exc, typed=True)})", fix
        )


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

    async def check_credentials(self) -> None:
        """Get the AWS credentials now, as the first request would: a source that fails (a
        container credentials endpoint away or answering garbage, a web identity token file
        not mounted, a credential_process that fails, a profile that does not exist) is one
        line naming the source and the fix (CredentialsUnavailable, exit 3), not a traceback,
        nor a wait for SQS that can never end. Credentials that expire stay the session's,
        refreshed by botocore before they do."""
        try:
            credentials = await self._session.get_credentials()
            if credentials is not None:
                await credentials.get_frozen_credentials()
        except Exception as exc:  # noqa: BLE001 - any error of the source, said in one line
            raise CredentialsUnavailable.of(exc) from None
        if credentials is None:
            raise CredentialsUnavailable("no AWS credentials", NO_CREDENTIALS_FIX)

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
