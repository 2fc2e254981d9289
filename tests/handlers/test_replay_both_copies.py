"""One failed invocation that both its on-failure destination and its dead-letter queue recorded
(AWS sends the event to both when both are configured), replayed automatically by a real worker
against moto: invoked once, whichever of the two records comes first, on either store, by one
worker or by two replicas sharing the store."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
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
from test_replay_handler import ROUTES

from lambda_destinations.handlers.replay import first_of_invocation
from lambda_destinations.schemas import DecodedMessage, decode
from lambda_destinations.store import Store
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome
from lambda_destinations.worker import Worker

FAILURES = 4  # failed invocations, each recorded twice


def dlq_attributes(request_id: str) -> dict[str, Any]:
    """A Lambda dead-letter message's attributes, as SQS delivers them."""
    return {
        "RequestID": {"DataType": "String", "StringValue": request_id},
        "ErrorCode": {"DataType": "Number", "StringValue": "200"},
        "ErrorMessage": {"DataType": "String", "StringValue": "Task timed out after 3.00 seconds"},
    }


def send_dlq_copies(sqs: Any, url: str, records: list[dict[str, Any]]) -> None:
    """The dead-letter queue's copy of each failure record: its event, and its request id."""
    entries = [
        {
            "Id": str(n),
            "MessageBody": json.dumps(record["requestPayload"]),
            "MessageAttributes": dlq_attributes(record["requestContext"]["requestId"]),
        }
        for n, record in enumerate(records)
    ]
    assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def dlq_copy(record: dict[str, Any]) -> DecodedMessage:
    request_id = record["requestContext"]["requestId"]
    return decode(json.dumps(record["requestPayload"]), dlq_attributes(request_id))


def dlq_key(record: dict[str, Any]) -> str:
    return dlq_copy(record).key


async def ledgers(store_url: str, keys: list[str]) -> dict[str, list[ReplayAttempt]]:
    async with Store.from_url(store_url) as store:
        return {key: await store.replays(key) for key in keys}


def queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


@asynccontextmanager
async def workers(
    recording_moto: RecordingMoto, store: str, name: str, queues: list[list[str]]
) -> AsyncIterator[None]:
    """One running worker for each list of queues, all on ``store``."""
    async with AsyncExitStack() as stack:
        for urls in queues:
            settings = settings_for_handlers(
                recording_moto.endpoint_url,
                *urls,
                store=store,
                handlers={"retry": {"type": "replay", "delay": 0.5, "legacy_function": name}},
                chain=(),
                routes=ROUTES,
            )
            worker = await stack.enter_async_context(Worker(settings))
            await stack.enter_async_context(running_worker(worker))
        yield


@pytest.mark.parametrize("replicas", [1, 2])
async def test_a_failure_its_destination_and_its_dlq_both_recorded_is_replayed_once(
    recording_moto: RecordingMoto, store_url: str, replicas: int
) -> None:
    # given: failures recorded by an on-failure destination and by a dead-letter queue, both
    # copies of each queued at once, both queues routed to a replay handler that replays legacy
    # DLQ messages too
    sqs = recording_moto.client("sqs")
    destination = recording_moto.make_queue("destination")
    dlq = recording_moto.make_queue("function-dlq")
    name = f"orders-{uuid.uuid4().hex[:8]}"
    records = [failure_record(name, payload={"orderId": f"o-{n}"}) for n in range(FAILURES)]
    send_records(sqs, destination, records)
    send_dlq_copies(sqs, dlq, records)
    pairs = [(decode(json.dumps(record)).key, dlq_key(record)) for record in records]
    keys = [key for pair in pairs for key in pair]
    # one worker reading both queues, or two replicas, one on each
    queues = [[destination, dlq]] if replicas == 1 else [[destination], [dlq]]

    # when: they are handled, and the replays' delay has passed
    async with workers(recording_moto, store_url, name, queues):

        async def settled() -> bool:
            found = await ledgers(store_url, keys)
            return all(found[a] and found[b] for a, b in pairs) and all(
                a.outcome is not ReplayOutcome.PENDING for k in keys for a in found[k]
            )

        await eventually(settled, within=60)
        await asyncio.sleep(1.5)  # time for a second Invoke, if there were one
        depths = await asyncio.to_thread(lambda: [queue_depth(sqs, u) for u in (destination, dlq)])

    # then: each failed invocation invoked once, with its event
    invoked = [invocation.payload for invocation in recording_moto.invocations(name)]
    assert sorted(invoked, key=str) == sorted((r["requestPayload"] for r in records), key=str)
    # and: of its two records, one's ledger has the Invoke, the other's says it was the same
    # invocation as that one, not replayed
    found = await ledgers(store_url, keys)
    for pair in pairs:
        (replayed,) = [key for key in pair if found[key][0].outcome is ReplayOutcome.INVOKED]
        (other,) = [key for key in pair if key != replayed]
        (skipped,) = found[other]
        assert len(found[replayed]) == 1
        assert skipped.outcome is ReplayOutcome.ERROR
        assert skipped.trigger == "automatic"
        assert skipped.detail == (
            f"not replayed: the same invocation as {replayed}, the record replayed "
            "(same-invocation)"
        )
    # and: every message was acknowledged, none quarantined
    assert depths == [0, 0]
    async with Store.from_url(store_url) as store:
        assert await store.list_quarantine() == []


async def test_of_two_replicas_asking_at_once_one_finds_its_record_first(
    jobs_store: Store, other_jobs_store: Store
) -> None:
    # given: the two records of each of many failed invocations
    records = [failure_record("orders-api") for _ in range(20)]
    pairs = [(decode(json.dumps(record)), dlq_copy(record)) for record in records]

    # when: one replica asks for each destination record, another for each DLQ copy, all at once
    asked = [
        (message, store)
        for pair in pairs
        for message, store in zip(pair, (jobs_store, other_jobs_store), strict=True)
    ]
    answers = await asyncio.gather(*(first_of_invocation(m, s) for m, s in asked))
    # and: each record again (a redelivery), by the other replica
    again = await asyncio.gather(
        *(
            first_of_invocation(m, jobs_store if s is other_jobs_store else other_jobs_store)
            for m, s in asked
        )
    )

    # then: of each pair, one record is the first, and the other is told which
    for n, (destination, copy) in enumerate(pairs):
        first, second = answers[2 * n], answers[2 * n + 1]
        assert (first, second) in ((None, destination.key), (copy.key, None))
        assert again[2 * n : 2 * n + 2] == [first, second]
