"""The in_doubt policy of acting handlers: an SMS whose answer was lost, through a TCP proxy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from handler_helpers import (
    failure_record,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_number,
)

from lambda_destinations.errors import ConfigError
from lambda_destinations.handlers import HandlerRegistry
from lambda_destinations.schemas import decode
from lambda_destinations.store import RunState, Store
from lambda_destinations.worker import Worker
from tcp_proxy import AnswerCutter


@pytest.mark.parametrize(("policy", "sent"), [("skip", 1), ("resend", 2)])
async def test_an_sms_whose_answer_is_lost_follows_its_in_doubt_policy_and_is_recorded(
    sqs: Any, make_queue: Any, endpoint_url: str, sqlite_url: str, policy: str, sent: int
) -> None:
    # given: a proxy that lets the first Publish reach SNS and loses its answer
    url, dlq = make_queue("in-doubt")
    number = unique_number()
    record = failure_record("orders-api", error_type="TimeoutError")
    send_records(sqs, url, [record])
    key = decode(json.dumps(record)).key
    cutter = AnswerCutter(endpoint_url, b"Action=Publish")
    cutter.cuts = 1
    async with cutter.running() as proxied:
        settings = settings_for_handlers(
            proxied,
            url,
            store=sqlite_url,
            handlers={
                "oncall": {
                    "type": "sms",
                    "window": 0,
                    "phone_numbers": [number],
                    "in_doubt": policy,
                }
            },
            chain=("oncall",),
        )
        # when
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)

    # then: skip sent it once (at most once); resend sent it again (at least once); both acked
    # and both recorded the call in doubt in the handler run
    assert cutter.cut == 1
    assert len(sms_to(endpoint_url, number)) == sent
    assert stats.outcomes["ack"] == 1
    async with Store.from_url(sqlite_url) as store:
        (run,) = await store.handler_runs(key)
    assert run.state == RunState.COMPLETED
    assert run.last_error is not None
    assert run.last_error.startswith("in doubt") or "in doubt" in run.last_error
    assert f"in_doubt = {policy}" in run.last_error
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None


@pytest.mark.parametrize("kind", ["sms", "email", "replay"])
def test_in_doubt_takes_resend_or_skip_only(settings_for: Any, kind: str) -> None:
    options: dict[str, Any] = {"type": kind, "in_doubt": "sometimes"}
    if kind == "sms":
        options["phone_numbers"] = ["+14155552671"]
    if kind == "email":
        options.update(sender="ops@example.com", to=["oncall@example.com"])
    settings = settings_for("q", handlers={"h": options}, routes=[{"handlers": ["h"]}])
    with pytest.raises(ConfigError, match="in_doubt"):
        HandlerRegistry(settings).router()


async def drain_until_acked(settings: Any) -> Any:
    """Drain with `run --once` until the message is acked (a retry shows again after the
    empty receive that ends a drain)."""
    stats = None
    for _ in range(10):
        async with Worker(settings) as worker:
            stats = await worker.run(once=True)
        if stats.outcomes["ack"]:
            break
    return stats


@pytest.mark.parametrize(("policy", "first_sent"), [("skip", 1), ("resend", 2)])
async def test_an_sms_of_several_cut_off_by_handler_timeout_settles_that_one_only(
    sqs: Any,
    make_queue: Any,
    endpoint_url: str,
    sqlite_url: str,
    policy: str,
    first_sent: int,
) -> None:
    # given: two numbers, and a proxy that lets the first Publish reach SNS and holds its
    # answer until the worker's handler_timeout cuts the call off
    url, dlq = make_queue(f"sms-cut-off-{policy}")
    first, second = unique_number(), unique_number()
    record = failure_record("orders-api", error_type="TimeoutError")
    send_records(sqs, url, [record])
    key = decode(json.dumps(record)).key
    cutter = AnswerCutter(endpoint_url, b"Action=Publish")
    cutter.holds = 1
    async with cutter.running() as proxied:
        settings = settings_for_handlers(
            proxied,
            url,
            store=sqlite_url,
            handlers={
                "oncall": {
                    "type": "sms",
                    "window": 0,
                    "phone_numbers": [first, second],
                    "in_doubt": policy,
                }
            },
            chain=("oncall",),
            handler_timeout=2,
            retry_base=0,
            retry_max=0,
        )
        # when
        stats = await drain_until_acked(settings)

    # then: the SMS cut off is in doubt: skip records it as sent (that number only), resend
    # sends it again; the other number gets its SMS once either way
    assert cutter.held == 1
    assert stats.outcomes["ack"] == 1
    assert len(sms_to(endpoint_url, first)) == first_sent
    assert len(sms_to(endpoint_url, second)) == 1
    async with Store.from_url(sqlite_url) as store:
        runs = {run.handler: run for run in await store.handler_runs(key)}
    assert runs["oncall"].state == RunState.COMPLETED
    assert "in doubt (cut off at handler_timeout): SMS to" in (runs["oncall"].last_error or "")
    assert f"in_doubt = {policy}" in (runs["oncall"].last_error or "")
    assert sqs.receive_message(QueueUrl=dlq).get("Messages") is None
