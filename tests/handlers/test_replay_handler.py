"""Automatic replay: against moto's Lambda (read back from its request recording), and against a
Lambda stand-in for what moto cannot do (a missing function, throttling)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from handler_helpers import (
    LambdaStandIn,
    RecordingMoto,
    emails_to,
    eventually,
    failure_record,
    kinesis_failure_record,
    running_worker,
    send_records,
    settings_for_handlers,
    sms_to,
    success_record,
    unique_address,
    unique_number,
    verify_sender,
)

from accounts_endpoint import AccountsEndpoint
from lambda_destinations.aws import AwsClients
from lambda_destinations.config import RouteConfig, Settings
from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import HandlerContext, HandlerRegistry
from lambda_destinations.handlers.base import Delivery
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.handlers.registry import replay_outcomes_linked
from lambda_destinations.handlers.replay import WILL_RETRY, build, link_arrived, replay_job_key
from lambda_destinations.schemas import DecodedMessage, decode
from lambda_destinations.store import (
    OWN_FAILURE_STATUSES,
    DeliveryRow,
    FailureStatus,
    InvocationFilter,
    JobState,
    ScheduledJob,
    Store,
    utcnow,
)
from lambda_destinations.store._jobs import scheduled_jobs
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome
from lambda_destinations.worker import Worker
from lambda_destinations.worker.scheduler import Scheduler

ROUTES = [
    RouteConfig(condition="success", handlers=("persist", "replay-outcome")),
    RouteConfig(condition="failure", handlers=("persist", "retry")),
]


def replay_settings(endpoint_url: str, url: str, *, store: str, **policy: Any) -> Settings:
    return settings_for_handlers(
        endpoint_url,
        url,
        store=store,
        handlers={"retry": {"type": "replay", "delay": 0.5, **policy}},
        chain=(),
        routes=ROUTES,
    )


def function_name() -> str:
    import uuid

    return f"orders-{uuid.uuid4().hex[:8]}"


async def ledger(store_url: str, key: str) -> list[ReplayAttempt]:
    async with Store.from_url(store_url) as store:
        return await store.replays(key)


def key_of(record: dict[str, Any]) -> str:
    return decode(json.dumps(record)).key


# -- against moto -------------------------------------------------------------------------------


async def test_a_record_delivered_three_times_makes_one_sms_one_email_one_replay(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: the same failure record three times; persist, sms, email, replay
    endpoint = recording_moto.endpoint_url
    url = recording_moto.make_queue("thrice")
    name, number = function_name(), unique_number()
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint, sender)
    record = failure_record(name, qualifier="live", payload={"orderId": "o-77", "qty": 2})
    send_records(recording_moto.client("sqs"), url, [record, record, record])
    settings = settings_for_handlers(
        endpoint,
        url,
        store=sqlite_url,
        handlers={
            "oncall-sms": {"type": "sms", "phone_numbers": [number]},
            "oncall-mail": {"type": "email", "from": sender, "to": [to]},
            "retry": {"type": "replay", "delay": 0.2},
        },
        chain=("persist", "oncall-sms", "oncall-mail", "retry"),
    )
    key = key_of(record)

    # when: drained, and the replay's delay passed
    with structlog.testing.capture_logs() as logs:
        async with Worker(settings) as worker, running_worker(worker):
            await eventually(
                lambda: worker.stats.received >= 3 and recording_moto.invocations(name),
                within=30,
            )
            await asyncio.sleep(1.5)  # time for a second SMS, email or replay, if there were one

    # then: one of each
    assert len(sms_to(endpoint, number)) == 1
    assert len(emails_to(endpoint, to)) == 1
    (invocation,) = recording_moto.invocations(name)
    assert invocation.function == record["requestContext"]["functionArn"]  # qualifier :live
    assert invocation.invocation_type == "Event"
    assert invocation.payload == {"orderId": "o-77", "qty": 2}
    (attempt,) = await ledger(sqlite_url, key)
    assert attempt.outcome is ReplayOutcome.INVOKED
    assert attempt.trigger == "automatic"
    assert attempt.requested_by.startswith("worker ")
    assert attempt.new_request_id
    assert attempt.detail == "automatic (retry): TimeoutError (RetriesExhausted)"
    async with Store.from_url(sqlite_url) as store:
        original = await store.get_invocation(key)
    assert original is not None
    assert original.status is FailureStatus.REPLAYED
    # and its lines name the ARN it invokes as function_arn: `function` is the function's name
    # in every line of the message
    replay_lines = [e for e in logs if e["event"] in ("replay scheduled", "replayed")]
    assert {e["event"] for e in replay_lines} == {"replay scheduled", "replayed"}
    for line in replay_lines:
        assert line["function_arn"] == record["requestContext"]["functionArn"]
        assert "function" not in line


async def test_a_replay_whose_new_record_succeeds_is_recovered(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: a failure, replayed
    url = recording_moto.make_queue("recovered")
    sqs = recording_moto.client("sqs")
    name = function_name()
    record = failure_record(name)
    key = key_of(record)
    send_records(sqs, url, [record])
    settings = replay_settings(recording_moto.endpoint_url, url, store=sqlite_url)

    async with Worker(settings) as worker, running_worker(worker):

        async def invoked() -> str | None:
            attempts = await ledger(sqlite_url, key)
            return attempts[0].new_request_id if attempts else None

        new_request_id = await eventually(invoked, within=30)

        # when: the new invocation's success record arrives (as Lambda would send it)
        success = success_record(name, request_id=new_request_id)
        send_records(sqs, url, [success])

        async def recovered() -> bool:
            return (await ledger(sqlite_url, key))[0].outcome is ReplayOutcome.RECOVERED

        await eventually(recovered, within=30)

    # then: the attempt and the original invocation are recovered; one invocation in all
    (attempt,) = await ledger(sqlite_url, key)
    assert attempt.outcome is ReplayOutcome.RECOVERED
    assert attempt.outcome_at is not None
    async with Store.from_url(sqlite_url) as store:
        original = await store.get_invocation(key)
        runs = {run.handler for run in await store.handler_runs(key_of(success))}
    assert original is not None
    assert original.status is FailureStatus.RECOVERED
    assert len(recording_moto.invocations(name)) == 1
    assert runs == {"persist"}  # replay-outcome takes no claim and records nothing


async def test_a_replay_that_fails_again_is_replayed_until_the_budget_is_spent(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: a budget of two attempts
    url = recording_moto.make_queue("budget")
    sqs = recording_moto.client("sqs")
    name = function_name()
    record = failure_record(name, payload={"orderId": "o-5"})
    key = key_of(record)
    send_records(sqs, url, [record])
    settings = replay_settings(recording_moto.endpoint_url, url, store=sqlite_url, budget=2)

    async def attempt_invoked(number: int) -> str | None:
        attempts = await ledger(sqlite_url, key)
        if len(attempts) >= number and attempts[number - 1].new_request_id:
            return attempts[number - 1].new_request_id
        return None

    async with Worker(settings) as worker, running_worker(worker):
        # when: each replay fails again, as its own failure record says
        first = await eventually(lambda: attempt_invoked(1), within=30)
        send_records(sqs, url, [failure_record(name, request_id=first, payload={"orderId": "o-5"})])
        second = await eventually(lambda: attempt_invoked(2), within=30)
        send_records(
            sqs, url, [failure_record(name, request_id=second, payload={"orderId": "o-5"})]
        )

        async def second_failed() -> bool:
            attempts = await ledger(sqlite_url, key)
            return attempts[-1].outcome is ReplayOutcome.FAILED

        await eventually(second_failed, within=30)
        await asyncio.sleep(2.0)  # a third attempt would be due by now

    # then: two attempts, both failed, the second one second; no third; the original is open
    attempts = await ledger(sqlite_url, key)
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, ReplayOutcome.FAILED),
        (2, ReplayOutcome.FAILED),
    ]
    assert attempts[0].detail == (
        "failed again (RetriesExhausted): TimeoutError: Task timed out after 3.00 seconds"
    )
    invocations = recording_moto.invocations(name)
    assert [i.payload for i in invocations] == [{"orderId": "o-5"}, {"orderId": "o-5"}]
    async with Store.from_url(sqlite_url) as store:
        original = await store.get_invocation(key)
        jobs = await store.list_jobs(kind="replay")
    assert original is not None
    assert original.status is FailureStatus.OPEN
    assert replay_job_key(key, 3) not in {job.key for job in jobs}


async def test_a_replay_that_fails_in_a_way_the_policy_does_not_retry_opens_the_original(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: a policy that replays timeouts, with budget to spare
    url = recording_moto.make_queue("no-longer")
    sqs = recording_moto.client("sqs")
    name = function_name()
    record = failure_record(name, payload={"orderId": "o-6"})
    key = key_of(record)
    send_records(sqs, url, [record])
    settings = replay_settings(
        recording_moto.endpoint_url, url, store=sqlite_url, budget=5, error_types=["*Timeout*"]
    )

    async def first_invoked() -> str | None:
        attempts = await ledger(sqlite_url, key)
        return attempts[0].new_request_id if attempts else None

    async def first_failed() -> bool:
        attempts = await ledger(sqlite_url, key)
        return bool(attempts) and attempts[0].outcome is ReplayOutcome.FAILED

    async with Worker(settings) as worker, running_worker(worker):
        # when: the replay fails again, now with an error the policy does not replay
        first = await eventually(first_invoked, within=30)
        again = failure_record(
            name, request_id=first, error_type="ValueError", message="bad order", payload={}
        )
        send_records(sqs, url, [again])
        await eventually(first_failed, within=30)
        await asyncio.sleep(1.5)  # a second attempt would be due by now

    # then: one attempt; the original needs a person again: open, as when the budget is spent
    # (it stayed "replayed", out of --status open, and retention took it as resolved)
    assert len(await ledger(sqlite_url, key)) == 1
    async with Store.from_url(sqlite_url) as store:
        original = await store.get_invocation(key)
    assert original is not None
    assert original.status is FailureStatus.OPEN


def cli(*args: str, endpoint_url: str, store: str) -> subprocess.CompletedProcess[str]:
    """``lambda-destinations ARGS`` in a process of its own, as an operator runs it."""
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": store,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    entry = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
    return subprocess.run(
        [*entry, *args], env=env, capture_output=True, text=True, timeout=110, input=""
    )


async def test_the_failure_records_of_replays_are_neither_open_failures_nor_replayed_again(
    recording_moto: RecordingMoto, store_url: str
) -> None:
    # given: a failure the worker replays twice (the budget), each replay failing again
    url = recording_moto.make_queue("replays-of")
    sqs = recording_moto.client("sqs")
    name = function_name()
    record = failure_record(name, payload={"orderId": "o-9"})
    key = key_of(record)
    send_records(sqs, url, [record])
    settings = replay_settings(recording_moto.endpoint_url, url, store=store_url, budget=2)
    replays: list[dict[str, Any]] = []

    async def attempt_invoked(number: int) -> str | None:
        attempts = await ledger(store_url, key)
        if len(attempts) >= number and attempts[number - 1].new_request_id:
            return attempts[number - 1].new_request_id
        return None

    async def last_failed() -> bool:
        attempts = await ledger(store_url, key)
        return len(attempts) == 2 and attempts[1].outcome is ReplayOutcome.FAILED

    async with Worker(settings) as worker, running_worker(worker):
        for number in (1, 2):
            new_request_id = await eventually(lambda n=number: attempt_invoked(n), within=30)
            replays.append(
                failure_record(name, request_id=new_request_id, payload={"orderId": "o-9"})
            )
            send_records(sqs, url, [replays[-1]])
        await eventually(last_failed, within=30)

    # then: one open failure, the original; the replays' records are kept, as replays of it
    mine = InvocationFilter(function_glob=name)
    async with Store.from_url(store_url) as store:
        open_ = await store.list_invocations(
            dataclasses.replace(mine, statuses=[FailureStatus.OPEN])
        )
        stored = [await store.get_invocation(key_of(r)) for r in replays]
        counts = await store.failure_counts(
            dataclasses.replace(mine, statuses=list(OWN_FAILURE_STATUSES))
        )
    assert [r.key for r in open_] == [key]
    assert [r.status if r else None for r in stored] == [FailureStatus.REPLAY] * 2
    assert sum(c.count for c in counts) == 1
    stats = cli(
        "failures",
        "stats",
        "--function",
        name,
        "--json",
        endpoint_url=recording_moto.endpoint_url,
        store=store_url,
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["total"] == 1
    shown = cli(
        "failures",
        "show",
        replays[0]["requestContext"]["requestId"],
        "--json",
        endpoint_url=recording_moto.endpoint_url,
        store=store_url,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["replay_of"]["original_key"] == key

    # when: an operator replays what failed in the last two hours, then forces it
    before = len(recording_moto.invocations(name))
    selection = ["--since", "2h", "--function", name, "--yes", "--rate", "0", "--json"]
    endpoints = {"endpoint_url": recording_moto.endpoint_url, "store": store_url}
    plain = cli("replay", *selection, **endpoints)
    forced = cli("replay", *selection, "--force", **endpoints)

    # then: the replays' records are never selected: the original alone, skipped as replayed
    # already, then invoked once more when forced
    assert plain.returncode == 0, plain.stderr
    assert [(r["key"], r["state"]) for r in json.loads(plain.stdout)["results"]] == [
        (key, "skipped")
    ]
    assert forced.returncode == 0, forced.stderr
    assert [(r["key"], r["state"]) for r in json.loads(forced.stdout)["results"]] == [
        (key, "invoked")
    ]
    assert len(recording_moto.invocations(name)) == before + 1

    # and named by request id, a replay's record is not replayed either, and says why
    named = cli(
        "replay",
        replays[0]["requestContext"]["requestId"],
        "--yes",
        "--json",
        endpoint_url=recording_moto.endpoint_url,
        store=store_url,
    )
    assert named.returncode == 0, named.stderr
    (skipped,) = json.loads(named.stdout)["results"]
    assert skipped["state"] == "skipped"
    # naming the original and the command that replays it (it said "`failures show` names it"):
    # with --force, the original being replayed already (without, the command skips it)
    original_rid = record["requestContext"]["requestId"]
    assert skipped["detail"] == (
        f"this failure is a replay's own record (attempt 1 of {original_rid}): replay the "
        f"original instead: lambda-destinations replay {original_rid} --force"
    )
    assert len(recording_moto.invocations(name)) == before + 1
    named_command = skipped["detail"].split(": lambda-destinations ", 1)[1].split()
    followed = cli(*named_command, "--yes", "--json", **endpoints)
    assert [r["state"] for r in json.loads(followed.stdout)["results"]] == ["invoked"]
    assert len(recording_moto.invocations(name)) == before + 2


async def test_a_scheduled_replay_survives_a_restart(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    # given: a replay scheduled an hour ahead by a worker that then stops
    url = recording_moto.make_queue("restart")
    name = function_name()
    record = failure_record(name)
    send_records(recording_moto.client("sqs"), url, [record])
    settings = replay_settings(recording_moto.endpoint_url, url, store=sqlite_url, delay=3600)
    async with Worker(settings) as worker:
        await worker.run(once=True)
    assert recording_moto.invocations(name) == []
    # and: its time has come while no worker ran (its due time moved to now, in the file: a
    # replay due seconds ahead raced the first worker's drain, which on a loaded machine took
    # 3 and then 8 seconds and more, and ran the replay itself)
    async with Store.from_url(sqlite_url) as store, store.engine.begin() as conn:
        job = replay_job_key(key_of(record), 1)
        due = scheduled_jobs.update().where(scheduled_jobs.c.key == job).values(due_at=utcnow())
        assert (await conn.execute(due)).rowcount == 1

    # when: another worker starts on the same store
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: recording_moto.invocations(name), within=30)
        await asyncio.sleep(1.5)

    # then: replayed once, by the job kept in the store
    assert len(recording_moto.invocations(name)) == 1
    async with Store.from_url(sqlite_url) as store:
        job = await store.get_job(replay_job_key(key_of(record), 1))
    assert job is not None
    assert (job.state, job.attempts) == (JobState.DONE, 1)


async def test_a_stream_failure_is_never_replayed_and_the_ledger_says_why(
    recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    url = recording_moto.make_queue("stream")
    record = kinesis_failure_record("stream-reader-x")
    send_records(recording_moto.client("sqs"), url, [record])
    settings = replay_settings(recording_moto.endpoint_url, url, store=sqlite_url, delay=0)

    async with Worker(settings) as worker:
        stats = await worker.run(once=True)

    assert stats.outcomes["ack"] == 1
    (attempt,) = await ledger(sqlite_url, key_of(record))
    assert attempt.outcome is ReplayOutcome.ERROR
    assert attempt.detail is not None
    assert attempt.detail.startswith("not replayed: a stream batch failure carries no request")
    assert attempt.new_request_id is None
    assert recording_moto.invocations("stream-reader-x") == []
    async with Store.from_url(sqlite_url) as store:
        assert await store.list_jobs(kind="replay") == []


async def test_only_failures_the_policy_marks_retryable_are_replayed(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("policy")
    retryable = failure_record("orders-api", error_type="TimeoutError")
    records = [
        failure_record("orders-api", error_type="KeyError"),
        failure_record("billing", error_type="TimeoutError"),
        failure_record("orders-api", error_type="TimeoutError", condition="EventAgeExceeded"),
        success_record("orders-api", request_id="7d0b3a51-0000-4000-8000-00000000000a"),
        retryable,
    ]
    send_records(sqs, url, records)
    settings = replay_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        error_types=["Timeout*"],
        conditions=["RetriesExhausted"],
        functions=["orders-*"],
        delay="1h",
    )

    async with Worker(settings) as worker:
        await worker.run(once=True)

    async with Store.from_url(sqlite_url) as store:
        (job,) = await store.list_jobs(kind="replay")
    assert job.key == replay_job_key(key_of(retryable), 1)
    assert job.payload["function_arn"] == retryable["requestContext"]["functionArn"]
    assert json.loads(job.payload["payload"]) == retryable["requestPayload"]
    assert 3590 < (job.due_at - utcnow()).total_seconds() <= 3600


# -- against the Lambda stand-in ----------------------------------------------------------------


def _context(message: DecodedMessage, delivery: Delivery) -> HandlerContext:
    """The context the worker gives a handler for ``message``, received once."""
    return HandlerContext(
        queue_url="q",
        queue_name="q",
        message_id=delivery.owner.split("/")[1],
        receive_count=1,
        key=message.key,
        log=structlog.get_logger(),
        _delivery=delivery,
    )


async def schedule_and_run(
    stand_in: LambdaStandIn | AccountsEndpoint,
    store_url: str,
    record: dict[str, Any],
    *,
    meanwhile: Callable[[Store], Awaitable[None]] | None = None,
    settings: dict[str, Any] | None = None,
    max_attempts: int = 10,
    **policy: Any,
) -> tuple[Store, Scheduler]:
    """The replay handler on ``record`` (as the worker would call it), then ``meanwhile``, then
    its due job run by a scheduler whose AWS endpoint is the stand-in (with ``settings`` over
    the tests'). The store is left open."""
    worker_settings = settings_for_handlers(
        stand_in.endpoint_url,
        "q",
        store=store_url,
        handlers={"retry": {"type": "replay", "delay": 0, **policy}},
        chain=("retry",),
        **(settings or {}),
    )
    store = Store.from_url(store_url)
    await store.open()
    await store.migrate()
    aws = AwsClients(worker_settings)
    registry = HandlerRegistry(worker_settings)
    message = decode(json.dumps(record))
    delivery = Delivery(store=store, aws=aws, settings=worker_settings, owner="test-worker/m-1/1")
    await registry.get("retry")(message, _context(message, delivery))
    if meanwhile is not None:
        await meanwhile(store)
    scheduler = Scheduler(
        store=store,
        aws=aws,
        registry=registry,
        settings=worker_settings,
        owner="test-worker",
        max_attempts=max_attempts,
    )
    await scheduler.run_due()
    return store, scheduler


async def _first_attempt(
    store: Store, scheduler: Scheduler, record: dict[str, Any]
) -> tuple[ReplayAttempt, ScheduledJob | None]:
    """The ledger's one attempt of ``record`` and its job, once :func:`schedule_and_run` ran
    them; the store and the clients closed."""
    try:
        (attempt,) = await store.replays(key_of(record))
        return attempt, await store.get_job(replay_job_key(key_of(record), 1))
    finally:
        await scheduler.aws.close()
        await store.close()


async def test_a_function_that_no_longer_exists_ends_the_attempt_with_the_reason(
    store_url: str,
) -> None:
    record = failure_record("deleted-fn")
    with LambdaStandIn(functions=set()) as stand_in:
        attempt, job = await _first_attempt(
            *await schedule_and_run(stand_in, store_url, record), record
        )

    assert stand_in.received == []
    assert stand_in.answered == [404]  # permanent: asked once, never again
    assert attempt.outcome is ReplayOutcome.ERROR
    assert attempt.detail is not None
    assert "ResourceNotFoundException" in attempt.detail
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.last_error is not None
    assert re.search(r"Invoke of .*deleted-fn.* refused: .*Function not found", job.last_error)


@pytest.mark.parametrize(
    ("lambda_does", "outcome"),
    [("refuse", ReplayOutcome.ERROR), ("hang up", ReplayOutcome.PENDING)],
)
async def test_a_next_attempt_given_up_opens_the_original_again(
    store_url: str, lambda_does: str, outcome: ReplayOutcome
) -> None:
    # given: a stored failure, replayed once (the original `replayed`), and that replay failed
    record = failure_record("gone-fn")

    async def stored(store: Store) -> None:
        await _stored(store, record)

    with LambdaStandIn(functions={"gone-fn"}) as stand_in:
        store, scheduler = await schedule_and_run(stand_in, store_url, record, meanwhile=stored)
        try:
            (first,) = await store.replays(key_of(record))
            assert first.new_request_id is not None
            replayed = await store.get_invocation(key_of(record))
            # when: the replay's failure record schedules attempt 2, whose Invoke Lambda
            # refuses (the function was deleted), or which is left in doubt (in_doubt = skip)
            if lambda_does == "refuse":
                stand_in.functions.clear()
            else:
                stand_in.hang_up = True
            again = failure_record("gone-fn", request_id=first.new_request_id)
            await _handle_on(scheduler, json.dumps(again), {})
            await scheduler.run_due()
            attempts = await store.replays(key_of(record))
            original = await store.get_invocation(key_of(record))
        finally:
            await scheduler.aws.close()
            await store.close()

    # then: nothing more happens on its own, so the failure is open again, for a person (left
    # `replayed`, it was out of `--status open`, and retention took it as resolved)
    assert replayed is not None
    assert replayed.status is FailureStatus.REPLAYED
    assert [(a.attempt, a.outcome) for a in attempts] == [
        (1, ReplayOutcome.FAILED),
        (2, outcome),
    ]
    assert original is not None
    assert original.status is FailureStatus.OPEN


_WEST = "arn:aws:lambda:eu-west-1:123456789012:function:{name}"


async def test_a_scheduled_replay_invokes_the_function_in_the_region_its_arn_names(
    store_url: str,
) -> None:
    """A failure of eu-west-1's orders-api reaching a worker of us-east-1, where a function of
    the same name runs too: the Invoke goes to eu-west-1's Lambda (before: to us-east-1's,
    which refuses an ARN of eu-west-1 as not reachable there)."""
    record = failure_record("orders-api")
    record["requestContext"]["functionArn"] = _WEST.format(name="orders-api")
    with LambdaStandIn({"orders-api"}, elsewhere={"eu-west-1": {"orders-api"}}) as stand_in:
        attempt, job = await _first_attempt(
            *await schedule_and_run(stand_in, store_url, record), record
        )

    assert [(i.region, i.function) for i in stand_in.received] == [
        ("eu-west-1", _WEST.format(name="orders-api"))
    ]
    assert attempt.outcome is ReplayOutcome.INVOKED
    assert job is not None
    assert job.state is JobState.DONE


async def test_a_function_not_found_in_another_region_says_that_region(store_url: str) -> None:
    # given: the record's function is gone from eu-west-1; us-east-1 has one of that name
    record = failure_record("orders-api")
    record["requestContext"]["functionArn"] = _WEST.format(name="orders-api")
    with LambdaStandIn({"orders-api"}, elsewhere={"eu-west-1": set()}) as stand_in:
        attempt, _job = await _first_attempt(
            *await schedule_and_run(stand_in, store_url, record), record
        )

    # then: looked up in eu-west-1, and said so (before: "Functions from 'eu-west-1' are not
    # reachable in this region ('us-east-1')", and to check "the region")
    assert stand_in.received == []
    assert attempt.outcome is ReplayOutcome.ERROR
    assert attempt.detail is not None
    assert attempt.detail.endswith(
        f"Function not found: {_WEST.format(name='orders-api')}: check the function's name (a "
        "version or alias too) and that it is in eu-west-1, the region its ARN names"
    )


@pytest.mark.parametrize("role", [None, "arn:aws:iam::111122223333:role/invoke"])
async def test_a_scheduled_replay_of_another_accounts_function(
    role: str | None, recording_moto: RecordingMoto, sqlite_url: str
) -> None:
    """A failure of account A's function sent to the worker's queue in account C: the Invoke
    is refused, said with the two accounts and the role to set, without ``accounts``; made as
    A's role with it (moto behind the proxy that refuses as AWS does across accounts)."""
    function = "arn:aws:lambda:us-east-1:111122223333:function:orders-api"
    record = failure_record("orders-api")
    record["requestContext"]["functionArn"] = function
    roles = {"111122223333": {"role_arn": role}} if role else {}
    with AccountsEndpoint(recording_moto.endpoint_url).running() as accounts:
        ran = await schedule_and_run(accounts, sqlite_url, record, settings={"accounts": roles})
        attempt, job = await _first_attempt(*ran, record)

    assert job is not None
    if role is None:  # refused: nothing ran, the attempt an error, the job over
        assert attempt.outcome is ReplayOutcome.ERROR
        assert attempt.detail is not None
        assert (
            "is in account 111122223333, and the AWS credentials are account 123456789012's"
            in attempt.detail
        )
        assert "[accounts.111122223333] role_arn" in attempt.detail
        assert job.state is JobState.FAILED
        assert accounts.refused == [(function, "123456789012")]
        assert accounts.invoked == []
    else:  # invoked, signed by keys of account A
        assert attempt.outcome is ReplayOutcome.INVOKED
        assert accounts.invoked == [(function, "111122223333")]
        assert accounts.refused == []


async def test_a_replays_record_taken_for_a_failure_of_its_own_is_not_replayed(
    store_url: str,
) -> None:
    # given: a replay's failure record that came in before the ledger had its request id, so
    # the handler scheduled a replay of it; then the ledger learns it (the record is stored)
    original, record = failure_record("orders-x"), failure_record("orders-x", request_id="new-7")

    async def ledger_learns(store: Store) -> None:
        row = invocation_row(decode(json.dumps(record)), "q")
        await store.save_invocation(row, DeliveryRow(row.key, "m-1", "q", 1))
        first = ReplayAttempt(
            original_key=key_of(original),
            original_request_id=original["requestContext"]["requestId"],
            function_arn=original["requestContext"]["functionArn"],
            attempt=1,
            trigger="automatic",
            requested_by="worker w",
        )
        await store.add_replay(first)
        assert first.id is not None
        await store.update_replay(first.id, new_request_id="new-7")

    # when: its job is due
    with LambdaStandIn(functions={"orders-x"}) as stand_in:
        store, scheduler = await schedule_and_run(
            stand_in, store_url, record, meanwhile=ledger_learns
        )
        try:
            attempts = await store.replays(key_of(record))
            job = await store.get_job(replay_job_key(key_of(record), 1))
        finally:
            await scheduler.aws.close()
            await store.close()

    # then: not invoked; the original alone is replayed
    assert stand_in.received == []
    assert attempts == []
    assert job is not None
    assert job.state is JobState.DONE


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with Store.from_url(store_url) as opened:
        await opened.migrate()
        yield opened


async def _stored(store: Store, record: dict[str, Any]) -> str:
    """``record`` saved as ``persist`` saves it; its key."""
    row = invocation_row(decode(json.dumps(record)), "q")
    await store.save_invocation(row, DeliveryRow(row.key, f"m-{row.key}", "q", 1))
    return row.key


async def _invoked_as(store: Store, original: dict[str, Any], new_request_id: str) -> str:
    """``original`` stored and replayed, as the replayer records it: the attempt invoked with
    ``new_request_id``, the original ``replayed``. The original's key."""
    key = await _stored(store, original)
    first = ReplayAttempt(
        original_key=key,
        original_request_id=original["requestContext"]["requestId"],
        function_arn=original["requestContext"]["functionArn"],
        attempt=1,
        trigger="manual",
        requested_by="cli ops@host",
    )
    assert await store.add_replay(first)
    assert first.id is not None
    await store.update_replay(
        first.id, new_request_id=new_request_id, outcome=ReplayOutcome.INVOKED
    )
    await store.set_status([key], FailureStatus.REPLAYED, by="cli ops@host")
    return key


async def test_a_replays_failure_stored_before_the_ledger_had_its_request_id_is_linked_then(
    store: Store,
) -> None:
    # given: the replay's failure record stored (no attempt found for it then), then the
    # replayer records the new request id
    await _stored(store, failure_record("orders-x", request_id="new-8", error_type="KeyError"))
    original = await _invoked_as(store, failure_record("orders-x"), "new-8")

    # when: the replayer links what arrived (as after each Invoke)
    await link_arrived(store, "new-8", "cli ops@host")

    # then: the attempt failed, with the replay's error
    (attempt,) = await store.replays(original)
    assert attempt.outcome is ReplayOutcome.FAILED
    assert attempt.detail is not None
    assert "failed again (RetriesExhausted): KeyError" in attempt.detail


async def test_a_replays_success_linked_meanwhile_leaves_the_original_recovered(
    store: Store,
) -> None:
    # given: the replay's success linked by the worker between the ledger's commit and the
    # replayer's status `replayed`, which overwrote `recovered`
    await _stored(store, success_record("orders-x", request_id="new-9"))
    original = await _invoked_as(store, failure_record("orders-x"), "new-9")
    (attempt,) = await store.replays(original)
    assert attempt.id is not None
    await store.update_replay(attempt.id, outcome=ReplayOutcome.RECOVERED)

    # when
    await link_arrived(store, "new-9", "cli ops@host")

    # then
    row = await store.get_invocation(original)
    assert row is not None
    assert row.status is FailureStatus.RECOVERED


async def test_throttling_is_retried_until_lambda_takes_the_invocation(sqlite_url: str) -> None:
    record = failure_record("busy-fn")
    key = key_of(record)
    # more throttles than the in-process tries (botocore's and ours) absorb
    with LambdaStandIn(functions={"busy-fn"}, throttle=100) as stand_in:
        store, scheduler = await schedule_and_run(stand_in, sqlite_url, record)
        try:
            (pending,) = await store.replays(key)
            job = await store.get_job(replay_job_key(key, 1))
            # when: Lambda takes invocations again and the job's backoff passes
            stand_in.throttle = 0
            await asyncio.sleep(2.2)
            ran = await scheduler.run_due()
            (attempt,) = await store.replays(key)
        finally:
            await scheduler.aws.close()
            await store.close()

    assert pending.outcome is ReplayOutcome.PENDING
    assert pending.detail is not None
    assert pending.detail.startswith(WILL_RETRY)
    assert job is not None
    assert (job.state, job.attempts) == (JobState.PENDING, 1)
    assert ran == 1
    assert attempt.outcome is ReplayOutcome.INVOKED
    assert attempt.detail == "automatic (retry): TimeoutError (RetriesExhausted); Invoke run 2"
    assert len(stand_in.received) == 1
    assert stand_in.received[0].payload == record["requestPayload"]


THROTTLED = (429, "TooManyRequestsException", "Rate exceeded")
EXPIRED = (403, "ExpiredTokenException", "The security token included in the request is expired")


@pytest.mark.parametrize(
    ("refusal", "named"),
    [
        (THROTTLED, "AWS throttled Invoke"),
        (EXPIRED, "AWS did not take the worker's AWS credentials"),
    ],
)
async def test_a_replay_still_refused_on_its_last_run_says_nothing_tries_it_again(
    sqlite_url: str, refusal: tuple[int, str, str], named: str
) -> None:
    # given: Lambda throttles every Invoke (or refuses its credentials as expired), and the
    # job's one run is its last
    record = failure_record("busy-fn")
    key = key_of(record)
    with LambdaStandIn(functions={"busy-fn"}, throttle=100, refusal=refusal) as stand_in:
        with structlog.testing.capture_logs() as logs:
            store, scheduler = await schedule_and_run(stand_in, sqlite_url, record, max_attempts=1)
        try:
            (attempt,) = await store.replays(key)
            job = await store.get_job(replay_job_key(key, 1))
        finally:
            await scheduler.aws.close()
            await store.close()

    # then: given up (nothing ran), and neither the ledger nor the log says it is tried again
    assert attempt.outcome is ReplayOutcome.ERROR
    assert job is not None
    assert job.state is JobState.FAILED
    (failed,) = [e for e in logs if e["event"] == "job failed permanently"]
    for said in (attempt.detail or "", failed["error"], job.last_error or ""):
        assert "tried again" not in said
        assert named in said
        assert "nothing tries it again" in said
    assert stand_in.received == []


async def _handle_on(scheduler: Scheduler, message_body: str, attributes: dict[str, Any]) -> None:
    """The replay handler on one more message, as the worker of ``scheduler`` would call it."""
    message = decode(message_body, attributes)
    delivery = Delivery(
        store=scheduler.store,
        aws=scheduler.aws,
        settings=scheduler.settings,
        owner="test-worker/m-2/1",
    )
    await scheduler.registry.get("retry")(message, _context(message, delivery))


@pytest.mark.parametrize("lambda_says", ["throttled", "refused"])
async def test_the_dlq_copy_of_a_failure_whose_replay_is_retried_or_refused_is_not_invoked(
    sqlite_url: str, lambda_says: str
) -> None:
    # given: a failure's destination record, whose replay Lambda throttles (retried later), or
    # refuses (given up: the function is gone)
    record = failure_record("fn-twice")
    key, request_id = key_of(record), record["requestContext"]["requestId"]
    functions = {"fn-twice"} if lambda_says == "throttled" else set()
    throttle = 100 if lambda_says == "throttled" else 0
    with LambdaStandIn(functions=functions, throttle=throttle) as stand_in:
        store, scheduler = await schedule_and_run(
            stand_in, sqlite_url, record, legacy_function="fn-twice"
        )
        try:
            # when: the failure's copy from the function's dead-letter queue arrives meanwhile
            attributes = {"RequestID": request_id, "ErrorCode": "200", "ErrorMessage": "boom"}
            await _handle_on(scheduler, json.dumps(record["requestPayload"]), attributes)
            copy_key = decode(json.dumps(record["requestPayload"]), attributes).key
            # and: Lambda takes invocations again, and the first's job runs again
            stand_in.throttle = 0
            await asyncio.sleep(2.2)
            await scheduler.run_due()
            (attempt,) = await store.replays(key)
            (skipped,) = await store.replays(copy_key)
            copy_job = await store.get_job(replay_job_key(copy_key, 1))
        finally:
            await scheduler.aws.close()
            await store.close()

    # then: the copy is never invoked in the first's place; only the first's job invokes
    assert copy_job is None
    assert skipped.outcome is ReplayOutcome.ERROR
    assert skipped.detail == (
        f"not replayed: the same invocation as {key}, the record replayed (same-invocation)"
    )
    if lambda_says == "throttled":
        assert attempt.outcome is ReplayOutcome.INVOKED
        assert [r.payload for r in stand_in.received] == [record["requestPayload"]]
    else:
        assert attempt.outcome is ReplayOutcome.ERROR
        assert stand_in.received == []


async def test_an_attempt_interrupted_while_invoking_is_never_repeated(sqlite_url: str) -> None:
    # given: attempt 1 recorded as pending (a worker died during Invoke), its job due again
    record = failure_record("fn-in-doubt")
    key = key_of(record)
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()
        await store.add_replay(
            ReplayAttempt(
                original_key=key,
                original_request_id=record["requestContext"]["requestId"],
                function_arn=record["requestContext"]["functionArn"],
                attempt=1,
                trigger="automatic",
                requested_by="worker dead",
            )
        )

    # when
    with LambdaStandIn(functions={"fn-in-doubt"}) as stand_in:
        store, scheduler = await schedule_and_run(stand_in, sqlite_url, record)
        try:
            (attempt,) = await store.replays(key)
            job = await store.get_job(replay_job_key(key, 1))
        finally:
            await scheduler.aws.close()
            await store.close()

    # then
    assert stand_in.received == []
    assert attempt.outcome is ReplayOutcome.PENDING
    assert job is not None
    assert job.state is JobState.FAILED
    assert job.last_error is not None
    assert "interrupted while invoking" in job.last_error


async def test_a_job_taken_by_a_dead_worker_runs_after_its_lease(sqlite_url: str) -> None:
    record = failure_record("fn-lease")
    with LambdaStandIn(functions={"fn-lease"}) as stand_in:
        store, scheduler = await schedule_and_run(stand_in, sqlite_url, record, delay=3600)
        try:
            # a job leased by a worker that died before doing anything
            job = ScheduledJob(
                key="replay:other:1",
                kind="replay",
                due_at=utcnow(),
                payload=(await store.list_jobs(kind="replay"))[0].payload | {"attempt": 1},
            )
            await store.schedule_job(job)
            taken = await store.take_due_jobs("dead-worker", limit=5, lease=0.5)
            assert [j.key for j in taken] == ["replay:other:1"]
            assert await scheduler.run_due() == 0  # leased
            await asyncio.sleep(0.8)
            assert await scheduler.run_due() == 1
            done = await store.get_job("replay:other:1")
        finally:
            await scheduler.aws.close()
            await store.close()

    assert done is not None
    assert (done.state, done.attempts) == (JobState.DONE, 2)
    assert len(stand_in.received) == 1


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": 0}, r"\.budget: 0 is out of range: use a whole number from 1 to 50 \(3 by "),
        ({"delay": "200h"}, r"\.delay: 200 hours is out of range: use a duration from 0 seconds"),
        ({"delay": "1h", "max_delay": "5m"}, r"\.max_delay: 300s is below delay \(3600s\)"),
        ({"error_types": []}, r"\.error_types: an empty list matches nothing"),
        ({"delay": "later"}, r"\.delay: 'later' is not a duration"),
        ({"retries": 3}, r"\.retries: unknown setting"),
        # a TOML or JSON boolean, which pydantic took as 1 or 0
        ({"budget": True}, r"\.budget: true is not a whole number: use a whole number from 1 "),
        ({"delay": False}, r"\.delay: false is not a number: use a duration from 0 seconds"),
        # globs and conditions no record can match: the handler would replay nothing, unsaid
        (
            {"functions": ["arn:aws:lambda:us-east-1:123456789012:function:orders-*"]},
            r"\.functions: .* matches no function: .* without its ARN, .*: write 'orders-\*'",
        ),
        ({"functions": ["orders-api:live"]}, r"matches no function: .*: write 'orders-api'"),
        ({"error_types": ["TimeoutError "]}, r"\.error_types: .* has spaces around it"),
        ({"conditions": ["failure"]}, r"\.conditions: 'failure' names no record's condition"),
        ({"conditions": ["retriesexhausted"]}, r"'retriesexhausted' is no condition"),
    ],
)
def test_bad_settings_stop_the_start_naming_the_setting(
    options: dict[str, Any], message: str, handler_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ConfigError) as info:
        build("retry", options, handler_settings("q"))

    assert str(info.value).startswith("handlers.retry")
    assert re.search(message, str(info.value)), str(info.value)


def test_backoff_doubles_up_to_the_cap(handler_settings: Callable[..., Settings]) -> None:
    handler = build("retry", {"delay": "1m", "max_delay": "5m"}, handler_settings("q"))

    assert [handler.policy.delay_for(n) for n in (1, 2, 3, 4)] == [60, 120, 240, 300]
    assert handler.policy.budget == 3


ROUTE_CASES = {
    "nothing replays": ([RouteConfig(handlers=("persist",))], {}, None),
    "replay on failures only": (
        [RouteConfig(handlers=("persist", "replay"), condition="failure")],
        {},
        False,
    ),
    "replay-outcome on successes": (
        [
            RouteConfig(handlers=("persist", "replay"), condition="failure"),
            RouteConfig(handlers=("persist", "replay-outcome"), condition="success"),
        ],
        {},
        True,
    ),
    "replay on every record": ([RouteConfig(handlers=("persist", "replay"))], {}, True),
    "exact Success condition": (
        [
            RouteConfig(handlers=("replay",), condition="RetriesExhausted"),
            RouteConfig(handlers=("replay-outcome",), condition="Success"),
        ],
        {},
        True,
    ),
    "a named replay handler on failures": (
        [RouteConfig(handlers=("persist", "retry-later"), condition="failure")],
        {"retry-later": {"type": "replay"}},
        False,
    ),
}


@pytest.mark.parametrize("case", list(ROUTE_CASES), ids=list(ROUTE_CASES))
def test_routes_that_replay_must_link_the_outcomes_of_successes(case: str) -> None:
    routes, handlers, expected = ROUTE_CASES[case]
    settings = Settings(routes=routes, handlers=handlers)

    assert replay_outcomes_linked(settings) is expected


async def test_a_worker_whose_replays_are_never_linked_warns_at_start(
    sqs: Any, make_queue: Callable[..., tuple[str, str]], settings_for: Callable[..., Settings]
) -> None:
    url, _ = make_queue("unlinked")
    settings = settings_for(url).model_copy(
        update={"routes": [RouteConfig(handlers=("persist", "replay"), condition="failure")]}
    )

    with structlog.testing.capture_logs() as logs:
        async with Worker(settings):
            pass

    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert any("add replay-outcome to the route of successes" in w for w in warnings), warnings
