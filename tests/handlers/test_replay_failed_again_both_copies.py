"""A replay that fails again, its failure recorded by the on-failure destination and by the
dead-letter queue both (AWS sends a failed invocation's event to both when both are configured,
the replayed invocation's as any other's), replayed automatically by a real worker against
moto: one chain of attempts under the original, within the budget, whichever copy comes first,
on either store; and a function with a dead-letter queue only replays within its budget too."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from handler_helpers import (
    RecordingMoto,
    eventually,
    failure_record,
    running_worker,
    send_records,
    settings_for_handlers,
)
from test_replay_both_copies import dlq_key, ledgers, send_dlq_copies
from test_replay_handler import ROUTES

from lambda_destinations.config import RouteConfig
from lambda_destinations.schemas import decode
from lambda_destinations.store import FailureStatus, Store
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome
from lambda_destinations.worker import Worker

BUDGET = 2
PAYLOAD = {"orderId": "o-42"}
# Failures routed to the replay handler alone: nothing stores the records before it.
REPLAY_ONLY = [
    RouteConfig(condition="success", handlers=("persist", "replay-outcome")),
    RouteConfig(condition="failure", handlers=("retry",)),
]


class Failures:
    """Failed invocations of one function, sent as Lambda sends them: to the on-failure
    destination (when there is one) and to the dead-letter queue."""

    def __init__(self, sqs: Any, destination: str | None, dlq: str, name: str) -> None:
        self.sqs, self.destination, self.dlq, self.name = sqs, destination, dlq, name
        self.keys: list[str] = []

    def fail(self, request_id: str | None = None) -> None:
        record = failure_record(self.name, request_id=request_id, payload=PAYLOAD)
        if self.destination is not None:
            send_records(self.sqs, self.destination, [record])
            self.keys.append(decode(json.dumps(record)).key)
        send_dlq_copies(self.sqs, self.dlq, [record])
        self.keys.append(dlq_key(record))


def chain_of(found: dict[str, list[ReplayAttempt]]) -> list[ReplayAttempt]:
    """The attempts of the one ledger that invoked (the record replayed); [] before."""
    invoked = [a for a in found.values() if any(x.new_request_id for x in a)]
    assert len(invoked) <= 1, f"more than one chain of replays: {found}"
    return invoked[0] if invoked else []


@pytest.mark.parametrize(
    ("copies", "routes"),
    [("both", ROUTES), ("both", REPLAY_ONLY), ("dlq only", ROUTES)],
    ids=["both-persisted", "both-replay-only", "dlq-only"],
)
async def test_a_replay_that_fails_again_continues_one_chain_within_the_budget(
    recording_moto: RecordingMoto, store_url: str, copies: str, routes: list[RouteConfig]
) -> None:
    # given: a function whose failures its on-failure destination and its dead-letter queue
    # both record (or its dead-letter queue alone), both queues routed to a replay handler
    # that replays legacy DLQ messages too, with a budget of two attempts
    sqs = recording_moto.client("sqs")
    destination = recording_moto.make_queue("destination") if copies == "both" else None
    dlq = recording_moto.make_queue("function-dlq")
    name = f"orders-{uuid.uuid4().hex[:8]}"
    failures = Failures(sqs, destination, dlq, name)
    settings = settings_for_handlers(
        recording_moto.endpoint_url,
        *[url for url in (destination, dlq) if url],
        store=store_url,
        handlers={
            "retry": {
                "type": "replay",
                "delay": 0.5,
                "budget": BUDGET,
                "legacy_function": name,
            }
        },
        chain=(),
        routes=routes,
    )

    async def attempt_invoked(number: int) -> str | None:
        chain = chain_of(await ledgers(store_url, failures.keys))
        return chain[number - 1].new_request_id if len(chain) >= number else None

    async def last_failed() -> bool:
        chain = chain_of(await ledgers(store_url, failures.keys))
        return len(chain) == BUDGET and chain[-1].outcome is ReplayOutcome.FAILED

    # when: the original fails, and each replay of it fails again, each failure recorded by
    # both queues
    async with Worker(settings) as worker, running_worker(worker):
        failures.fail()
        for number in range(1, BUDGET + 1):
            new_request_id = await eventually(lambda n=number: attempt_invoked(n), within=30)
            failures.fail(new_request_id)
        await eventually(last_failed, within=30)
        await asyncio.sleep(3.0)  # the delay of one more attempt, in any chain, has passed

    # then: the budget's attempts, invoked once each, with the original event
    invoked = recording_moto.invocations(name)
    assert [i.payload for i in invoked] == [PAYLOAD] * BUDGET
    # and: one chain, under the original's record replayed, each attempt failed again
    found = await ledgers(store_url, failures.keys)
    chain = chain_of(found)
    assert [(a.attempt, a.outcome) for a in chain] == [
        (n, ReplayOutcome.FAILED) for n in range(1, BUDGET + 1)
    ]
    (original,) = [key for key, attempts in found.items() if attempts == chain]
    assert original in failures.keys[:2]
    # and: no other record of them invoked anything or holds an attempt but a skip saying so
    for key, attempts in found.items():
        if key != original:
            assert all(a.outcome is ReplayOutcome.ERROR and not a.new_request_id for a in attempts)
    # and: the budget spent, the original needs a person again
    async with Store.from_url(store_url) as store:
        row = await store.get_invocation(original)
    if row is not None:  # stored when its route persists it
        assert row.status is FailureStatus.OPEN


async def test_the_dlq_copy_of_a_failed_replay_a_filtered_policy_misses_decides_nothing(
    recording_moto: RecordingMoto, store_url: str
) -> None:
    # given: a replay handler whose policy has a filter (a dead-letter message, naming no
    # condition, never matches it), on both queues; a failure it replays
    sqs = recording_moto.client("sqs")
    destination = recording_moto.make_queue("destination")
    dlq = recording_moto.make_queue("function-dlq")
    name = f"orders-{uuid.uuid4().hex[:8]}"
    failures = Failures(sqs, destination, dlq, name)
    handler = {"type": "replay", "delay": 0.5, "budget": BUDGET, "legacy_function": name}
    settings = settings_for_handlers(
        recording_moto.endpoint_url,
        destination,
        dlq,
        store=store_url,
        handlers={"retry": {**handler, "conditions": ["RetriesExhausted"]}},
        chain=(),
        routes=ROUTES,
    )

    async with Worker(settings) as worker, running_worker(worker):
        failures.fail()
        original = failures.keys[0]

        async def attempts() -> list[ReplayAttempt]:
            return (await ledgers(store_url, [original]))[original]

        async def invoked(number: int) -> str | None:
            found = await attempts()
            return found[number - 1].new_request_id if len(found) >= number else None

        new_request_id = await eventually(lambda: invoked(1), within=30)

        # when: the replay fails again, its DLQ copy arriving first
        record = failure_record(name, request_id=new_request_id, payload=PAYLOAD)
        send_dlq_copies(sqs, dlq, [record])

        async def failed() -> bool:
            return (await attempts())[0].outcome is ReplayOutcome.FAILED

        await eventually(failed, within=30)
        await asyncio.sleep(1.0)  # the handler's decision, if it made one, is written by now

        # then: the attempt is failed, but the original is still being replayed (not open)
        async with Store.from_url(store_url) as store:
            row = await store.get_invocation(original)
        assert row is not None
        assert row.status is FailureStatus.REPLAYED
        assert len(recording_moto.invocations(name)) == 1

        # when: the destination's record of it arrives
        send_records(sqs, destination, [record])

        # then: it decides: the next attempt is made
        await eventually(lambda: invoked(2), within=30)
    assert [i.payload for i in recording_moto.invocations(name)] == [PAYLOAD] * 2
