"""AWS credentials as ECS hands them out (the container credentials endpoint) and as they expire.

The ECS agent is stood in for by a small aiohttp server (``EcsAgent``): no local server serves
the container credentials API, which is a plain HTTP GET answering JSON keys with an
``Expiration``. botocore asks it again once the credentials are within its advisory window of
their expiry (15 minutes, 10 of them mandatory): an ``Expiration`` a few seconds past that window
makes it refresh every few seconds. moto checks no signature, so which keys signed a request is
read from its Authorization header on the wire (``AnswerCutter.keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from handler_helpers import (
    REGION,
    eventually,
    failure_record,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_number,
)
from structlog.testing import capture_logs

from lambda_destinations.worker import Worker
from tcp_proxy import AnswerCutter, aws_error

ADVISORY = 15 * 60  # botocore's advisory refresh window, seconds before the expiry
SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYsecretKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEsessionTOKENxyz"
AUTHORIZATION = "ecs-agent-authorization-token-42"


class EcsAgent:
    """The container credentials endpoint of an ECS task: new keys at every fetch, expiring
    ``lifetime`` seconds later; ``failing`` answers 500 instead."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.failing = False
        self.served: list[str] = []  # the access keys handed out, in order
        self.refused = 0  # fetches answered with 500
        self.authorizations: set[str | None] = set()

    async def credentials(self, request: web.Request) -> web.Response:
        self.authorizations.add(request.headers.get("Authorization"))
        if self.failing:
            self.refused += 1
            return web.Response(status=500, text="agent restarting")
        key = f"ASIAECSAGENT{len(self.served):04d}"
        self.served.append(key)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.lifetime)
        return web.json_response(
            {
                "AccessKeyId": key,
                "SecretAccessKey": SECRET,
                "Token": SESSION_TOKEN,
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_get("/v2/credentials", self.credentials)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield f"http://127.0.0.1:{port}/v2/credentials"
        finally:
            await runner.cleanup()


async def run_until(worker: Worker, done: Any, *, seconds: float = 30.0) -> None:
    """Run ``worker`` until ``done()`` is true (or ``seconds`` pass), then stop it."""
    running = asyncio.create_task(worker.run())
    try:
        with contextlib.suppress(AssertionError):
            await eventually(lambda: done() or running.done(), within=seconds, interval=0.25)
    finally:
        worker.stop()
        await running


def container_credentials(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    """The environment ECS gives a task: no keys, the endpoint and its authorization token."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTHORIZATION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def sms_settings(proxied: str, url: str, sqlite_url: str, number: str) -> Any:
    return settings_for_handlers(
        proxied,
        url,
        store=sqlite_url,
        handlers={"sms": {"type": "sms", "phone_numbers": [number]}},
        chain=("sms",),
    )


async def test_the_workers_clients_take_the_ecs_agents_refreshed_credentials(
    sqs: Any,
    make_queue: Any,
    endpoint_url: str,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: credentials that enter botocore's refresh window 2 s after each fetch
    url, _ = make_queue("ecs-credentials")
    number = unique_number()
    agent = EcsAgent(lifetime=ADVISORY + 2)
    proxy = AnswerCutter(endpoint_url, b"Action=Publish", http=True)

    # when: the worker runs for several lifetimes, a record at its start and one at its end
    async with agent.running() as uri, proxy.running() as proxied:
        container_credentials(monkeypatch, uri)
        send_records(sqs, url, [failure_record("orders-api")])
        with capture_logs() as logs:
            async with Worker(sms_settings(proxied, url, sqlite_url, number)) as worker:
                sent = [False]

                def second_sent() -> bool:
                    if len(agent.served) >= 3 and not sent[0]:
                        sent[0] = True
                        send_records(sqs, url, [failure_record("orders-api")])
                    return worker.stats.outcomes["ack"] >= 2

                await run_until(worker, second_sent, seconds=60)

    # then: SQS and SNS requests were signed with each key the agent handed out in turn
    # (no client kept the first keys), the agent was asked with its token, and no secret
    # reached a log line
    assert worker.stats.outcomes["ack"] == 2
    assert len(sms_to(endpoint_url, number)) == 2
    used = [key for key, _publish in proxy.keys]
    assert set(used) <= set(agent.served)
    assert len(set(used)) >= 3, used
    publishes = [key for key, publish in proxy.keys if publish]
    assert publishes[-1] != agent.served[0]
    assert agent.authorizations == {AUTHORIZATION}
    logged = repr(logs)
    assert SECRET not in logged
    assert SESSION_TOKEN not in logged
    assert AUTHORIZATION not in logged


async def test_an_expired_token_answer_retries_the_message_rather_than_quarantine_it(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str
) -> None:
    # given: SNS answering the first Publish that its token expired (AWS does so when a role's
    # credentials expire before the worker refreshed them, or the clock is off)
    url, _ = make_queue("expired-token")
    number = unique_number()
    send_records(sqs, url, [failure_record("orders-api")])
    proxy = AnswerCutter(endpoint_url, b"Action=Publish", http=True)
    proxy.refusals = 1
    proxy.refusal = aws_error(
        403, "ExpiredToken", "The security token included in the request is expired", "query"
    )

    # when
    async with proxy.running() as proxied:
        with capture_logs() as logs:
            async with Worker(sms_settings(proxied, url, sqlite_url, number)) as worker:
                await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 1)

    # then: tried again (in process) and sent, not quarantined as a permission refusal
    # (before: quarantined at once, "check the worker's AWS credentials and that they are
    # allowed sns:Publish")
    assert proxy.refused == 1
    assert worker.stats.outcomes["quarantine"] == 0
    assert worker.stats.outcomes["ack"] == 1
    assert len(sms_to(endpoint_url, number)) == 1
    assert "message quarantined" not in [e["event"] for e in logs]


async def _cli(
    env: dict[str, str], *command: str, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """``lambda-destinations COMMAND…`` (``run`` when none is given) in a new process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lambda_destinations",
        *(command or ("run",)),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _cli_env(uri: str, endpoint_url: str, url: str, store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": uri,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": AUTHORIZATION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_REGION": REGION,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{store}",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",  # JSON logs on a pipe, the plain error line
    }


async def test_an_ecs_agent_failing_while_credentials_still_serve_is_one_line(
    make_queue: Any, endpoint_url: str, tmp_path: Path
) -> None:
    # given: a worker whose credentials are in botocore's advisory window 2 s after a fetch
    url, _ = make_queue("agent-away")
    agent = EcsAgent(lifetime=ADVISORY + 2)
    async with agent.running() as uri:
        worker = await _cli(_cli_env(uri, endpoint_url, url, tmp_path / "s.db"))
        try:
            await eventually(lambda: agent.served, within=30)
            # when: the agent fails every fetch from then on (a restarting ECS agent)
            agent.failing = True
            await eventually(lambda: agent.refused >= 6, within=60)
        finally:
            worker.send_signal(signal.SIGTERM)
            _out, err = await worker.communicate()
    text = err.decode()

    # then: it kept receiving on the keys it had, said the failure once, with its reason and
    # without a traceback (before: 30 lines of traceback at every fetch), and exited cleanly
    assert worker.returncode == 0, text
    lines = [line for line in text.splitlines() if "Refreshing temporary credentials" in line]
    assert len(lines) == 1, text
    assert "agent restarting" in lines[0]
    assert "Traceback" not in text
    assert SECRET not in text
    assert SESSION_TOKEN not in text
    assert AUTHORIZATION not in text


@pytest.mark.parametrize("answer", ["500", "garbage"])
async def test_an_ecs_agent_that_fails_at_start_is_one_line_with_the_fix(
    make_queue: Any, endpoint_url: str, tmp_path: Path, answer: str
) -> None:
    # given: an agent that answers 500, or what is not JSON
    url, _ = make_queue("agent-down")
    agent = EcsAgent(lifetime=3600)
    agent.failing = answer == "500"

    async def garbage(_request: web.Request) -> web.Response:
        return web.Response(text=f"<html>{SESSION_TOKEN}")

    if answer == "garbage":
        agent.credentials = garbage  # type: ignore[method-assign]
    # when
    async with agent.running() as uri:
        env = _cli_env(uri, endpoint_url, url, tmp_path / "s.db")
        worker = await _cli(env)
        _out, err = await asyncio.wait_for(worker.communicate(), 60)
    text = err.decode()

    # then: configuration that cannot work (3), one line naming the endpoint and the fix
    # (before: exit 1 and botocore's words alone)
    assert worker.returncode == 3, text
    (line,) = [line for line in text.splitlines() if line.startswith("error:")]
    assert "container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI" in line
    assert "check that the ECS agent" in line
    assert "Traceback" not in text
    assert AUTHORIZATION not in text
    assert SESSION_TOKEN not in text


@pytest.mark.parametrize(
    ("profile", "named", "fix"),
    [
        ("nosuch", "the AWS profile 'nosuch' (AWS_PROFILE)", "fix AWS_PROFILE"),
        ("junk", "the profile's credential_process", "run it by hand"),
        ("fails", "the profile's credential_process", "run it by hand"),
    ],
)
@pytest.mark.parametrize("command", ["run", "doctor"])
async def test_a_profile_that_cannot_give_credentials_is_one_line_with_the_fix(
    make_queue: Any,
    endpoint_url: str,
    tmp_path: Path,
    profile: str,
    named: str,
    fix: str,
    command: str,
) -> None:
    # given: a profile that does not exist, or whose credential_process prints what is not
    # JSON (a secret in it) or fails
    url, _ = make_queue("profile")
    config = tmp_path / "config"
    config.write_text(
        f"[profile junk]\ncredential_process = echo not-json {SECRET}\n"
        "[profile fails]\ncredential_process = sh -c 'echo token expired >&2; exit 3'\n"
    )
    env = _cli_env("", endpoint_url, url, tmp_path / "s.db")
    del env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    env |= {"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": profile}

    # when
    process = await _cli(env, command)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode() + err.decode()

    # then: `run` exits 3 with one line (before: exit 1, or a traceback for the JSON); doctor's
    # credentials row says the same, with the fix
    assert "Traceback" not in text
    assert SECRET not in text
    assert named in text, text
    assert fix in text
    if command == "run":
        assert process.returncode == 3, text
        (line,) = [line for line in text.splitlines() if line.startswith("error:")]
        assert named in line
        assert fix in line
    else:
        assert process.returncode == 1, text
        (row,) = [line for line in text.splitlines() if line.startswith("aws credentials")]
        assert "ERROR" in row
        assert named in row


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("ExpiredToken", "transient"),  # SNS, SQS, STS
        ("ExpiredTokenException", "transient"),  # Lambda, SES v2
        ("RequestExpired", "transient"),
        ("InvalidClientTokenId", "transient"),
        ("UnrecognizedClientException", "transient"),
        ("AccessDenied", "permanent"),  # a permission: the message is quarantined with it
    ],
)
def test_a_refusal_of_the_credentials_themselves_is_transient(code: str, kind: str) -> None:
    from botocore.exceptions import ClientError

    from lambda_destinations.retrying import classify

    error = ClientError(
        {"Error": {"Code": code, "Message": "…"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "Invoke",
    )
    assert classify(error) == kind


async def test_a_command_whose_keys_aws_does_not_take_says_so_not_a_permission(
    make_queue: Any, endpoint_url: str, tmp_path: Path
) -> None:
    # given: SQS answering that the access key is unknown (keys deleted, or another account's)
    url, _ = make_queue("unknown-key")
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.", http=True)
    proxy.refusals = 100
    proxy.refusal = aws_error(
        403,
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        "json",
    )
    async with proxy.running() as proxied:
        env = {**os.environ, "LAMBDA_DESTINATIONS_ENDPOINT_URL": proxied}
        process = await _cli(env, "dlq", "peek", url, cwd=tmp_path)
        _, stderr = await process.communicate()
    said = stderr.decode()
    # then: exit 3, one line saying the keys were not taken (before: "… check the AWS
    # credentials and that they are allowed sqs:…", a permission to look for in vain)
    assert proxy.refused >= 1
    assert process.returncode == 3, said
    [line] = [each for each in said.splitlines() if each.startswith("error:")]
    assert "AWS did not take the credentials (expired, unknown, or this machine's clock" in line
    assert "are allowed" not in line
