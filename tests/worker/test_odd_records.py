"""Valid records with odd strings (lone surrogates, reversed pairs, NUL) are stored on both
backends, exactly in their JSON columns."""

from __future__ import annotations

import json
import random
from typing import Any

from worker_helpers import receive_all, registry_with, routed, run_until

from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import Store
from lambda_destinations.worker import Worker


def odd_records() -> list[dict[str, Any]]:
    rng = random.Random(51)
    lone = success_record(rng)
    lone["requestPayload"] = {"note": "lone \ud800 surrogate", "\udfff key": 1}
    reversed_pair = failure_record(rng, condition="RetriesExhausted")
    reversed_pair["responsePayload"]["errorMessage"] = "reversed \udc00\ud83d pair"
    nul = failure_record(rng, condition="RetriesExhausted")
    nul["requestPayload"] = {"n": "a\x00b"}
    nul["responsePayload"]["errorMessage"] = "nul \x00 inside"
    nul["responsePayload"]["errorType"] = "Odd\x00Error"
    odd_id = success_record(rng)
    odd_id["requestContext"]["requestId"] = "req-\x00-id"
    # A payload that is one JSON string: its column keeps it exactly too, as JSON.
    text_payload = success_record(rng)
    text_payload["requestPayload"] = "plain \x00 text \ud800 é"
    return [lone, reversed_pair, nul, odd_id, text_payload]


async def test_every_odd_but_valid_record_is_stored_exactly(
    sqs, make_queue, settings_for, store_url
) -> None:
    # given: five valid records whose JSON spells characters no database text holds
    url, dlq = make_queue("odd")
    records = odd_records()
    # json.dumps escapes them (\ud800, \u0000): the body is what SQS would deliver
    bodies = [json.dumps(record) for record in records]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    decoded = [decode(body) for body in bodies]
    settings = routed(settings_for(url, store=store_url), "persist")

    # when
    async with Worker(settings, registry=registry_with(settings)) as worker:
        stats = await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 5)

    # then: each acked and stored once, its JSON exactly, its text readable
    assert stats.outcomes["ack"] == 5
    assert stats.outcomes["quarantine"] == stats.outcomes["retry"] == 0
    async with Store.from_url(store_url) as store:
        rows = [await store.get_invocation(message.key) for message in decoded]
    for row, message, record in zip(rows, decoded, records, strict=True):
        assert row is not None, message.key
        assert row.record == message.record_json
        assert row.request_payload == record["requestPayload"]
        assert row.response_payload == record.get("responsePayload")
    assert rows[1] is not None
    assert rows[1].error_message == "reversed \ufffd\ufffd pair"
    assert rows[2] is not None
    assert (rows[2].error_type, rows[2].error_message) == ("Odd\ufffdError", "nul \ufffd inside")
    assert decoded[3].key.startswith("req-\\u0000-id:")
    assert rows[4] is not None
    assert rows[4].request_payload == "plain \x00 text \ud800 é"
    assert receive_all(sqs, dlq) == []
