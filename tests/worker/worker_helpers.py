"""Helpers shared by the worker tests: a handler that counts its effects, queue utilities."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from freezable_proxy import FreezableProxy
from lambda_destinations.config import RouteConfig, Settings
from lambda_destinations.errors import TransientError
from lambda_destinations.handlers import HandlerContext, HandlerRegistry
from lambda_destinations.schemas import DecodedMessage


@dataclasses.dataclass
class CountingHandler:
    """Counts its runs per key; can fail transiently or permanently a number of times."""

    name: str = "count"
    _records_completion: bool = False  # True: no claims (as persist)
    runs: Counter[str] = dataclasses.field(default_factory=Counter)
    calls: list[tuple[str, int, float]] = dataclasses.field(default_factory=list)
    fail_transient: int = 0  # fail this many calls with a TransientError first
    fail_forever: Exception | None = None
    sleep: float = 0.0

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        self.calls.append((message.key, context.receive_count, asyncio.get_running_loop().time()))
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.fail_forever is not None:
            raise self.fail_forever
        if self.fail_transient > 0:
            self.fail_transient -= 1
            raise TransientError("simulated throttling")
        self.runs[message.key] += 1


class HeldHandler:
    """A handler whose runs wait until the test lets them go (or they are cancelled)."""

    name = "held"
    _records_completion = True

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        self.started.set()
        await self.go.wait()


@contextlib.asynccontextmanager
async def postgres_proxy(postgres_url: str) -> AsyncIterator[tuple[FreezableProxy, str]]:
    """A proxy in front of the PostgreSQL server of ``postgres_url`` (its database migrated),
    and the URL of that database through the proxy."""
    from lambda_destinations.store import Store

    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    port = urlsplit(postgres_url).port or 5432
    proxy = FreezableProxy(urlsplit(postgres_url).hostname or "127.0.0.1", port)
    with proxy.running():
        yield proxy, postgres_url.replace(f":{port}/", f":{proxy.port}/")


async def run_until(worker: Any, done: Callable[[], object], *, seconds: float = 30.0) -> Any:
    """Run ``worker`` until ``done()`` is true (checked every half second) or ``seconds`` pass;
    stop it and return its stats."""
    running = asyncio.create_task(worker.run())
    for _ in range(int(seconds * 2)):
        await asyncio.sleep(0.5)
        if done():
            break
    worker.stop()
    return await running


async def until(done: Callable[[], object], *, seconds: float = 15.0) -> bool:
    """Wait until ``done()`` is true, checked every quarter second, for ``seconds`` at most;
    whether it came true."""
    for _ in range(int(seconds * 4)):
        await asyncio.sleep(0.25)
        if done():
            return True
    return False


def registry_with(settings: Settings, *handlers: Any) -> HandlerRegistry:
    registry = HandlerRegistry(settings)
    for handler in handlers:
        registry.add(handler)
    return registry


def routed(settings: Settings, *names: str) -> Settings:
    return settings.model_copy(update={"routes": [RouteConfig(handlers=names)]})


def receive_all(sqs: Any, url: str, *, wait: int = 0) -> list[dict[str, Any]]:
    """Every visible message of a queue (hidden for 60s so each is seen once)."""
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return found
        found.extend(got)


def send_bodies(sqs: Any, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def dumps(value: Any) -> str:
    return json.dumps(value)


async def receive_requests(worker: Any) -> list[dict[str, Any]]:
    """The parameters of every ReceiveMessage ``worker`` sends from now on, read off the wire
    (the list fills as it runs)."""
    sent: list[dict[str, Any]] = []

    def before_send(request: Any, **_: Any) -> None:
        sent.append(json.loads(request.body))

    sqs = await worker.aws.client("sqs")
    sqs.meta.events.register("before-send.sqs.ReceiveMessage", before_send)
    return sent
