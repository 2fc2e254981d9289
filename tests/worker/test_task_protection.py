"""ECS task scale-in protection (worker/protection.py) with the worker against moto.

No ECS agent runs here: each test starts a small aiohttp server that stands in for the agent's
``PUT $ECS_AGENT_URI/task-protection/v1/state`` endpoint (the request and answer shapes of AWS's
documentation), keeps the protection's expiry on the same clock, and can be told to fail.
Everything else is real: the worker, the moto server over HTTP, the SQLite store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs
from worker_helpers import CountingHandler, registry_with, routed, send_bodies

from lambda_destinations.simulate import failure_record
from lambda_destinations.worker import Worker
from lambda_destinations.worker.protection import STATE_PATH, TaskProtection

MINUTE = 2.0  # seconds per "minute" of expiry in these tests: ExpiresInMinutes=1 lasts 2 s
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/cluster/0123456789abcdef"


@dataclasses.dataclass
class FakeAgent:
    """Stands in for the ECS agent's task protection endpoint (no ECS agent runs here)."""

    url: str = ""
    mode: str = "ok"  # ok | http-500 | failure | hang | not-found
    slow_first: int = 0  # set this many protections, then answer only when the test ends
    fail_first: int = 0  # answer this many PUTs with a 500 first, then as `mode` says
    puts: list[tuple[float, dict[str, Any]]] = dataclasses.field(default_factory=list)
    protected_until: float = 0.0
    released: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def put_state(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = asyncio.get_running_loop().time()
        self.puts.append((now, body))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({"error": {"Code": "ServerException"}}, status=500)
        if self.mode == "hang":
            await self.released.wait()  # answers only when the test ends
        if self.mode == "not-found":  # an agent without the endpoint: Go's plain-text 404
            return web.Response(status=404, text="404 page not found\n")
        if self.mode == "http-500":
            return web.json_response(
                {"error": {"Arn": TASK_ARN, "Code": "ServerException", "Message": "boom"}},
                status=500,
            )
        if self.mode == "failure":
            return web.json_response({"failure": {"Arn": TASK_ARN, "Reason": "TASK_NOT_VALID"}})
        enabled = bool(body["ProtectionEnabled"])
        self.protected_until = now + body.get("ExpiresInMinutes", 120) * MINUTE if enabled else 0
        if self.slow_first > 0:  # the protection is set; the answer comes too late
            self.slow_first -= 1
            await self.released.wait()
        return web.json_response(
            {"protection": {"ProtectionEnabled": enabled, "TaskArn": TASK_ARN}}
        )

    def enables(self) -> list[float]:
        return [t for t, body in self.puts if body["ProtectionEnabled"]]

    def clears(self) -> list[float]:
        return [t for t, body in self.puts if not body["ProtectionEnabled"]]


@pytest.fixture
async def agent() -> AsyncIterator[FakeAgent]:
    fake = FakeAgent()
    app = web.Application()
    app.router.add_put(f"/api/task-1{STATE_PATH}", fake.put_state)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/api/task-1"
    try:
        yield fake
    finally:
        fake.released.set()
        await runner.cleanup()


def _records(count: int, seed: int) -> tuple[list[str], list[str]]:
    """Failure records as message bodies, and their record keys."""
    records = [
        failure_record(random.Random(seed + n), condition="RetriesExhausted") for n in range(count)
    ]
    keys = [f"{r['requestContext']['requestId']}:RetriesExhausted" for r in records]
    return [json.dumps(r) for r in records], keys


def _fast(worker: Worker, agent_url: str) -> None:
    """Minutes of 2 s, 0.3 s of idleness before clearing, an agent that must answer within
    0.5 s, so each test takes seconds."""
    worker.protection = TaskProtection(
        agent_url, minutes=1, minute=MINUTE, idle_after=0.3, retry_base=0.1, request_timeout=0.5
    )


async def _run_until(worker: Worker, done: Any, seconds: float = 30.0) -> None:
    running = asyncio.create_task(worker.run())
    for _ in range(int(seconds * 10)):
        await asyncio.sleep(0.1)
        if done():
            break
    worker.stop()
    await running


def test_the_agent_uri_and_the_switch_come_from_the_settings(settings_for) -> None:
    on = Worker(settings_for("q", ecs_agent_uri="http://169.254.170.2/api/x"))
    off = Worker(settings_for("q", ecs_agent_uri="http://x/api", task_protection=False))
    absent = Worker(settings_for("q"))
    assert on.protection.enabled
    assert not off.protection.enabled
    assert not absent.protection.enabled


@pytest.mark.slow
async def test_protected_while_a_slow_handler_runs_renewed_and_cleared_when_idle(
    sqs, make_queue, settings_for, agent: FakeAgent
) -> None:
    # given: a handler that runs 4.5 s, well past the 2 s expiry of one protection
    url, _ = make_queue("protect")
    handler = CountingHandler(name="slow", sleep=4.5)
    settings = routed(settings_for(url, ecs_agent_uri=agent.url), "slow")
    send_bodies(sqs, url, _records(1, seed=1)[0])

    # when: the worker runs until the handler is done and the task was idle a while
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        _fast(worker, agent.url)
        await _run_until(worker, lambda: handler.runs and agent.clears())
        assert not worker.protection.protected

    # then: protection was asked for as the message arrived, for 1 minute each time
    assert handler.runs
    started = handler.calls[0][2]
    finished = started + 4.5
    enables = agent.enables()
    assert enables, "the worker never asked for protection"
    # asked by the time the handler began (its PUT may reach the agent a moment after): on a
    # busy machine the message's dispatch can take over a second between its receive, when
    # protection is asked, and its handler's start (CI saw 1.5 s), so only the far bound is loose
    assert started - 10.0 < enables[0] < started + 1.0
    assert all(
        body.get("ExpiresInMinutes") == 1 for _, body in agent.puts if body["ProtectionEnabled"]
    )
    # renewed before each expiry, so the task was protected the whole time the handler ran
    assert len(enables) >= 3
    for previous, following in itertools.pairwise(enables):
        assert following < previous + MINUTE, "the protection lapsed before it was renewed"
    assert enables[-1] + MINUTE > finished
    # and cleared once idle: after the handler ended, not before
    clears = agent.clears()
    assert clears
    assert clears[0] > finished
    assert agent.protected_until == 0


def _retried(logs: list[dict[str, Any]], agent: FakeAgent) -> bool:
    """The worker warned about the agent, and (when the agent is there) asked it again."""
    warned = any("scale-in protection" in event["event"] for event in logs)
    return warned and (agent.mode == "unreachable" or len(agent.puts) >= 2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["http-500", "failure", "hang", "unreachable"])
async def test_a_failing_agent_never_stops_the_worker(
    sqs, make_queue, settings_for, agent: FakeAgent, mode: str
) -> None:
    # given: an agent that answers errors, refuses, never answers, or is not there at all
    url, _ = make_queue("agent-down")
    # (handlers long enough that the worker is still busy when it asks the agent again)
    handler = CountingHandler(name="count", sleep=1.5)
    agent.mode = mode
    agent_url = "http://127.0.0.1:9/api/task-1" if mode == "unreachable" else agent.url
    settings = routed(settings_for(url, ecs_agent_uri=agent_url), "count")
    bodies, keys = _records(5, seed=10)
    send_bodies(sqs, url, bodies)

    # when: the worker runs
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            _fast(worker, agent_url)
            await _run_until(worker, lambda: len(handler.runs) == 5 and _retried(logs, agent))
            stats = worker.stats

    # then: every message was handled and acknowledged all the same
    assert sorted(handler.runs) == sorted(keys)
    assert stats.outcomes["ack"] == 5
    # and the failure was said once, not once per retry
    warnings = [e for e in logs if "scale-in protection" in e["event"]]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    if mode != "unreachable":
        assert len(agent.puts) >= 2, "the worker did not retry the agent"


@pytest.mark.slow
async def test_protection_is_set_once_the_agent_answers_again(
    sqs, make_queue, settings_for, agent: FakeAgent
) -> None:
    # given: an agent that fails its first two requests
    url, _ = make_queue("agent-back")
    handler = CountingHandler(name="slow", sleep=2.0)
    agent.fail_first = 2
    settings = routed(settings_for(url, ecs_agent_uri=agent.url), "slow")
    send_bodies(sqs, url, _records(1, seed=2)[0])

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            _fast(worker, agent.url)
            await _run_until(worker, lambda: handler.runs and agent.clears())

    # then: the third request protected the task while the handler still ran
    assert handler.runs
    finished = handler.calls[0][2] + 2.0
    assert len(agent.puts) >= 3
    third_time, third_body = agent.puts[2]
    assert third_body["ProtectionEnabled"] is True
    assert third_time < finished
    assert any(e["event"] == "task scale-in protection set again" for e in logs)


@pytest.mark.slow
async def test_a_stopping_worker_clears_its_protection(
    sqs, make_queue, settings_for, agent: FakeAgent
) -> None:
    # given: a worker protected by a handler that outlasts the shutdown grace
    url, _ = make_queue("protect-stop")
    handler = CountingHandler(name="slow", sleep=30.0)
    settings = routed(settings_for(url, ecs_agent_uri=agent.url, shutdown_grace=0.5), "slow")
    send_bodies(sqs, url, _records(1, seed=3)[0])

    # when: it is stopped while the handler runs
    async with Worker(settings, registry=registry_with(settings, handler)) as worker:
        _fast(worker, agent.url)
        await _run_until(worker, lambda: agent.enables())

    # then: the protection was cleared on the way out, not left to expire
    assert agent.enables()
    assert not handler.runs  # the handler never finished: its message was released
    assert agent.clears()
    assert agent.clears()[-1] > agent.enables()[-1]
    assert agent.protected_until == 0


async def _until(done: Any, seconds: float = 10.0) -> None:
    """Wait for ``done()``, at most ``seconds`` (a bound for a failing test, not a timing)."""
    for _ in range(int(seconds * 20)):
        if done():
            return
        await asyncio.sleep(0.05)


def _protection(url: str) -> TaskProtection:
    """The worker's TaskProtection as _fast makes it, but for 10 "minutes" (20 s): longer than
    any of these tests, so only a clear ends it."""
    return TaskProtection(
        url, minutes=10, minute=MINUTE, idle_after=0.3, retry_base=0.1, request_timeout=0.5
    )


async def _stop(running: asyncio.Task[None]) -> None:
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def _asked_of_a_late_agent(agent: FakeAgent) -> tuple[TaskProtection, asyncio.Task[None]]:
    """A protection busy with a message, once its request reached an agent that sets the
    protection but answers only after the worker gave up on it (its ECS call was slow)."""
    agent.slow_first = 1
    protection = _protection(agent.url)
    running = asyncio.create_task(protection.run())
    protection.in_flight(1)
    await _until(lambda: agent.puts)
    return protection, running


async def test_a_protection_whose_answer_came_too_late_is_cleared_once_idle(
    agent: FakeAgent,
) -> None:
    # given: an agent that set the protection asked for as a message came, but answers late
    protection, running = await _asked_of_a_late_agent(agent)

    # when: the message is done
    protection.in_flight(0)
    await _until(lambda: agent.clears())
    cleared = bool(agent.clears())
    await _stop(running)

    # then: the idle task was not left protected (scale-in would pass it over for 10 minutes)
    assert agent.enables(), "the worker never asked for protection"
    assert cleared, "the protection the agent set was never cleared while the worker idled"
    assert agent.protected_until == 0


async def test_a_protection_asked_for_as_the_worker_stops_is_cleared_at_exit(
    agent: FakeAgent,
) -> None:
    # given: an agent that set the protection but has not answered yet
    _, running = await _asked_of_a_late_agent(agent)

    # when: the worker stops while the request is out
    await _stop(running)

    # then: the protection is cleared on the way out, as a known one is
    assert agent.enables()
    assert agent.clears(), "a protection the agent may have set was left at exit"
    assert agent.protected_until == 0


async def test_an_agent_answering_404_in_plain_text_is_reported_with_its_status(
    agent: FakeAgent,
) -> None:
    # given: an agent without the task protection endpoint (an old agent), which answers
    # Go's plain-text "404 page not found"
    agent.mode = "not-found"
    protection = _protection(agent.url)

    # when: the worker is busy
    with capture_logs() as logs:
        running = asyncio.create_task(protection.run())
        protection.in_flight(1)
        await _until(lambda: len(agent.puts) >= 2)
        await _stop(running)

    # then: one warning, with the agent's status and answer (not a JSON parser's complaint)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["error"] == "HTTP 404: 404 page not found"


@pytest.mark.parametrize("uri", ["169.254.170.2/v3/abc", "http://", "http://[bad/v3", " "])
def test_a_malformed_agent_uri_turns_protection_off_with_one_line(settings_for, uri) -> None:
    # when: the worker is made with an ECS_AGENT_URI that is no http(s) URL
    with capture_logs() as logs:
        worker = Worker(settings_for("q", ecs_agent_uri=uri))

    # then: no request is tried (each would fail, forever); one warning says what to do
    assert not worker.protection.enabled
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    assert "ECS_AGENT_URI" in warnings[0]["event"]
    assert "task scale-in protection is off" in warnings[0]["event"]


async def test_a_clear_the_agent_failed_once_is_said_cleared_not_set(agent: FakeAgent) -> None:
    # given: a protected task, and an agent that fails the request clearing it once
    protection = _protection(agent.url)
    with capture_logs() as logs:
        running = asyncio.create_task(protection.run())
        protection.in_flight(1)
        await _until(lambda: protection.protected)
        agent.fail_first = 1

        # when: the task goes idle, and the clear is tried again
        protection.in_flight(0)
        await _until(lambda: len(agent.clears()) >= 2 and not protection.protected)
        await _stop(running)

    # then: the recovery says what was done: the protection cleared, not set
    assert agent.protected_until == 0
    recovered = [e for e in logs if e["log_level"] == "info"]
    assert [e["event"] for e in recovered] == ["task scale-in protection cleared at last"]
