"""dev's local AWS endpoint: moto for every service, and simulated Lambda functions in front.

moto cannot run Lambda functions without Docker, yet ``dev`` should show the whole loop: a
failure, a replay, a recovery. So dev's endpoint is a small aiohttp server that answers Lambda
``Invoke`` for the simulated functions itself and passes every other request to a moto server
unchanged. A simulated function invoked asynchronously succeeds or fails at random
(``success_rate``) and, like Lambda with on-success / on-failure destinations, delivers its own
destination record -- with the request id the Invoke answered and the payload it was given -- to
dev's success or failure queue. It is a simulator on dev's endpoint only: nothing else in the
project knows it is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import io
import json
import random
import uuid
import zipfile
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

import botocore.exceptions
import structlog
from aiobotocore.session import get_session
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from lambda_destinations import simulate
from lambda_destinations._lifetime import Lifetime
from lambda_destinations._serving import AppRunner
from lambda_destinations._urls import listen_problem
from lambda_destinations.errors import ConfigError

log = structlog.get_logger("lambda_destinations.dev")

# Hop-by-hop headers and those the server sets itself: never copied between the two sides.
_NOT_FORWARDED = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
_SQS_TARGET = "AmazonSQS."
_INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
ALERTS_PATH = "/_dev/alerts"  # dev's own alert channel: a webhook handler posts here
_MAX_BODY = 16 * 1024 * 1024  # SendMessageBatch of ten 256 KiB messages, with room
# Lambda's payload limits for Invoke (its API reference): 1 MB asynchronous (InvocationType
# Event; 256 KB before AWS raised it), 6 MB synchronous. Over them it answers 413.
_EVENT_PAYLOAD_MAX = 1024 * 1024
_SYNC_PAYLOAD_MAX = 6 * 1024 * 1024
_DEV_KEYS = {"aws_access_key_id": "dev", "aws_secret_access_key": "dev"}


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionSimulation:
    """How dev's simulated Lambda functions behave."""

    success_rate: float = 0.6  # the chance that one invocation succeeds
    delay: float = 1.0  # seconds from an asynchronous Invoke to its destination record
    seed: int | None = None  # a fixed seed gives the same outcomes in the same order
    functions: tuple[str, ...] = simulate.FUNCTIONS
    region: str = simulate.REGION
    account: str = simulate.ACCOUNT


@dataclasses.dataclass(frozen=True, slots=True)
class Destinations:
    """dev's destination queues: where the simulated functions deliver their records."""

    success_url: str
    failure_url: str


def function_name_of(raw: str, qualifier: str | None) -> tuple[str, str]:
    """The function name and qualifier of an Invoke's ``FunctionName`` (name, ``name:alias``,
    partial ARN ``123456789012:function:name`` or full ARN, each maybe qualified)."""
    parts = unquote(raw).split(":")
    if parts[0] == "arn" and len(parts) >= 7:
        name, rest = parts[6], parts[7:]
    elif len(parts) >= 3 and parts[1] == "function":
        name, rest = parts[2], parts[3:]
    else:
        name, rest = parts[0], parts[1:]
    return name, qualifier or (rest[0] if rest else "$LATEST")


def destination_record(
    arn: str, request_id: str, payload: Any, *, succeeded: bool, rng: random.Random
) -> dict[str, Any]:
    """The record Lambda would deliver for one asynchronous invocation of ``arn``."""
    context: dict[str, Any] = {
        "requestId": request_id,
        "functionArn": arn,
        "condition": "Success" if succeeded else "RetriesExhausted",
        "approximateInvokeCount": 1 if succeeded else 3,
    }
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if succeeded:
        order = payload.get("orderId") if isinstance(payload, dict) else None
        response: Any = {"statusCode": 200, "ok": True, **({"orderId": order} if order else {})}
    else:
        error_type, message, _runtime = rng.choice([e for e in simulate.ERRORS if e[0] is not None])
        response = {
            "errorType": error_type,
            "errorMessage": message.format(rid=request_id),
            "requestId": request_id,
            "stackTrace": ['  File "/var/task/app.py", line 42, in handler\n    raise\n'],
        }
        response_context["functionError"] = "Unhandled"
    return {
        "version": "1.0",
        "timestamp": simulate.lambda_time(dt.datetime.now(dt.UTC)),
        "requestContext": context,
        "requestPayload": payload,
        "responseContext": response_context,
        "responsePayload": response,
    }


def _aws_error(status: int, code: str, body: dict[str, str]) -> web.Response:
    return web.json_response(
        body,
        status=status,
        headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())},
    )


def _lambda_error(status: int, code: str, message: str) -> web.Response:
    return _aws_error(status, code, {"Type": "User", "Message": message, "message": message})


def _sqs_unsupported(action: str) -> web.Response:
    """SQS's own answer for an operation it will not run here (JSON protocol: ``__type``)."""
    message = f"{action} is not implemented by dev's local endpoint"
    code = "UnsupportedOperation"
    return _aws_error(400, code, {"__type": f"com.amazonaws.sqs#{code}", "message": message})


@functools.cache
def moto_lacks_sqs_action(action: str) -> bool:
    """Whether moto's SQS has no ``action`` (``StartMessageMoveTask`` and the other move-task
    operations): moto would raise NotImplementedError, a traceback in dev's terminal."""
    from moto.core.utils import camelcase_to_underscores
    from moto.sqs.responses import SQSResponse

    return not callable(getattr(SQSResponse, camelcase_to_underscores(action), None))


def _payload_too_large(size: int, invocation_type: str) -> str | None:
    """Lambda's message for a payload over its limit for this invocation type, or None."""
    if invocation_type == "Event" and size > _EVENT_PAYLOAD_MAX:
        return (
            f"{size} byte payload is too large for the Event invocation type "
            f"(limit {_EVENT_PAYLOAD_MAX} bytes)"
        )
    if size > _SYNC_PAYLOAD_MAX:
        return f"Request must be smaller than {_SYNC_PAYLOAD_MAX} bytes for the Invoke operation"
    return None


class DevEndpoint(Lifetime):
    """dev's endpoint: simulated Lambda ``Invoke`` here, every other request passed to moto.

    ``async with DevEndpoint(moto_url, simulation) as endpoint:`` then ``endpoint.url``; call
    ``deliver_to(...)`` once dev's queues exist.
    """

    def __init__(
        self,
        moto_url: str,
        simulation: FunctionSimulation,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_alert: Callable[[str], None] | None = None,
    ) -> None:
        self._on_alert = on_alert
        self._moto_url = moto_url.rstrip("/")
        self._simulation = simulation
        self._host = host
        self._port = port
        self._rng = random.Random(simulation.seed)
        self._destinations: Destinations | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._stack = contextlib.AsyncExitStack()
        self._session: ClientSession | None = None
        self._sqs: Any = None
        self._logs: Any = None
        self.url = ""
        self.invocations = 0

    def deliver_to(self, destinations: Destinations) -> None:
        self._destinations = destinations

    async def open(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        # Long polls pass through: no read timeout of our own.
        self._session = await self._stack.enter_async_context(
            ClientSession(timeout=ClientTimeout(total=None), auto_decompress=False)
        )
        self._sqs = await self._stack.enter_async_context(
            get_session().create_client(
                "sqs", endpoint_url=self._moto_url, region_name=self._simulation.region, **_DEV_KEYS
            )
        )
        self._logs = await self._stack.enter_async_context(
            get_session().create_client(
                "logs",
                endpoint_url=self._moto_url,
                region_name=self._simulation.region,
                **_DEV_KEYS,
            )
        )
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("POST", _INVOKE_PATH, self._invoke)
        app.router.add_route("POST", ALERTS_PATH, self._alert)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        runner = AppRunner(
            app,
            server="dev endpoint",
            too_long="the request is too long: a request line or header over 8190 bytes",
        )
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            # As the ops server's: a port given and taken is the setting to change, not a crash.
            what, _ = listen_problem(self._host, self._port, exc)  # the host is dev's own
            raise ConfigError(
                f"the local endpoint's {what}: give dev --port a free port, or leave it out for "
                "any free one"
            ) from None
        port = runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"

    async def close(self) -> None:
        for task in self._deliveries:
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self._stack.aclose()

    async def write_logs(self, records: Iterable[dict[str, Any]]) -> None:
        """Write the log lines of each failed record's function to CloudWatch Logs, as Lambda
        would have (``failures logs`` reads them): its log group, a stream per invocation. A
        line not written is a warning: the record is delivered all the same."""
        exists = self._logs.exceptions.ResourceAlreadyExistsException
        for found in filter(None, map(simulate.function_log, records)):
            try:
                with contextlib.suppress(exists):
                    await self._logs.create_log_group(logGroupName=found.log_group)
                with contextlib.suppress(exists):
                    await self._logs.create_log_stream(
                        logGroupName=found.log_group, logStreamName=found.log_stream
                    )
                await self._logs.put_log_events(
                    logGroupName=found.log_group,
                    logStreamName=found.log_stream,
                    logEvents=[{"timestamp": ms, "message": text} for ms, text in found.events],
                )
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                log.warning("simulated function's log lines not written", error=str(exc))

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        # SQS's JSON protocol names the operation in a header; the query protocol, which
        # botocore no longer uses for SQS, is passed on as it is.
        target = request.headers.get("X-Amz-Target", "")
        if target.startswith(_SQS_TARGET):
            action = target.removeprefix(_SQS_TARGET)
            if moto_lacks_sqs_action(action):
                return _sqs_unsupported(action)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        try:
            async with self._session.request(
                request.method,
                self._moto_url + request.raw_path,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                answer = {
                    k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_FORWARDED
                }
                return web.Response(status=upstream.status, body=payload, headers=answer)
        except ClientError as exc:
            # The emulator behind went away (dev stopping, a long poll cut short): the caller
            # gets an AWS-shaped 503 to retry, and the log no aiohttp traceback.
            log.debug("dev endpoint: the emulator did not answer", error=repr(exc))
            return web.Response(status=503, text="ServiceUnavailable: the local emulator is away")

    async def _alert(self, request: web.Request) -> web.Response:
        """An alert a webhook handler sent, Slack-shaped (``{"text": ...}``): shown to the user."""
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return web.Response(status=400, text="invalid_payload: no text")
        if self._on_alert is not None:
            self._on_alert(text)
        return web.Response(text="ok")

    async def _invoke(self, request: web.Request) -> web.Response:
        name, qualifier = function_name_of(
            request.match_info["name"], request.query.get("Qualifier")
        )
        sim = self._simulation
        arn = f"arn:aws:lambda:{sim.region}:{sim.account}:function:{name}"
        named = unquote(request.match_info["name"])
        if named.startswith("arn:") and not named.startswith(arn.rpartition(":")[0] + ":"):
            # A function of another region or account, which dev does not have (and Lambda
            # would look up there): not one of dev's of the same name.
            return _lambda_error(404, "ResourceNotFoundException", f"Function not found: {named}")
        if name not in sim.functions:
            return _lambda_error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        raw = await request.read()
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        too_large = _payload_too_large(len(raw), invocation_type)
        if too_large is not None:
            return _lambda_error(413, "RequestEntityTooLargeException", too_large)
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _lambda_error(
                400, "InvalidRequestContentException", "Could not parse request body into json"
            )
        request_id = str(uuid.uuid4())
        succeeded = self._rng.random() < sim.success_rate
        record = destination_record(
            f"{arn}:{qualifier}", request_id, payload, succeeded=succeeded, rng=self._rng
        )
        self.invocations += 1
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
        if invocation_type == "DryRun":
            return web.Response(status=204, headers=headers)
        if invocation_type == "Event":
            self._deliver_later(record, succeeded)
            return web.Response(status=202, headers=headers)
        if not succeeded:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return web.json_response(record["responsePayload"], headers=headers)

    def _deliver_later(self, record: dict[str, Any], succeeded: bool) -> None:
        task = asyncio.create_task(self._deliver(record, succeeded))
        self._deliveries.add(task)
        task.add_done_callback(self._delivered)

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulated destination record not delivered", error=str(task.exception()))

    async def _deliver(self, record: dict[str, Any], succeeded: bool) -> None:
        await asyncio.sleep(self._simulation.delay)
        if self._destinations is None:
            log.warning("simulated function has no destination queues yet; record dropped")
            return
        url = self._destinations.success_url if succeeded else self._destinations.failure_url
        await self.write_logs([record])
        await self._sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        log.info(
            "simulated function delivered its record",
            function_arn=record["requestContext"]["functionArn"],
            request_id=record["requestContext"]["requestId"],
            condition=record["requestContext"]["condition"],
        )


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


async def register_functions(
    moto_url: str, simulation: FunctionSimulation, on_success: str, on_failure: str
) -> None:
    """Create the simulated functions in moto, each with its destinations, so the Lambda API
    (``GetFunction``, ``ListFunctions``, the destinations ``doctor`` checks) describes them."""
    # moto must not try Docker for these functions; it never runs them anyway.
    config = {"lambda": {"use_docker": False}}
    async with (
        ClientSession() as http,
        http.post(f"{moto_url}/moto-api/config", json=config) as answer,
    ):
        answer.raise_for_status()
    session = get_session()
    common = {"endpoint_url": moto_url, "region_name": simulation.region, **_DEV_KEYS}
    async with (
        session.create_client("iam", **common) as iam,
        session.create_client("lambda", **common) as lambda_client,
    ):
        role = await iam.create_role(
            RoleName="lambda-destinations-dev",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
        code = _function_zip()
        for name in simulation.functions:
            await lambda_client.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role["Role"]["Arn"],
                Handler="index.handler",
                Code={"ZipFile": code},
                Description="simulated by lambda-destinations dev",
            )
            await lambda_client.put_function_event_invoke_config(
                FunctionName=name,
                DestinationConfig={
                    "OnSuccess": {"Destination": on_success},
                    "OnFailure": {"Destination": on_failure},
                },
            )
