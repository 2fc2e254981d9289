"""Valid records with odd strings (lone surrogates, reversed pairs, NUL) are stored on both
backends, exactly in their JSON columns; values no Lambda record holds are quarantined."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from worker_helpers import receive_all, registry_with, routed, run_until

from lambda_destinations.config import Settings
from lambda_destinations.errors import QuarantineMessage
from lambda_destinations.schemas import MAX_DEPTH, DecodedMessage, decode
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import Store
from lambda_destinations.worker import Worker
from lambda_destinations.worker.queues import REASON_ATTRIBUTE

EVENTS = Path(__file__).parents[1] / "events"
KAFKA_EVENT = (EVENTS / "stream-kafka-msk.json").read_text()


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


async def persist_all(sqs: Any, url: str, records: list[dict[str, Any]], settings: Settings) -> Any:
    """Send ``records`` to ``url`` and run a worker (persist alone) until each has an outcome."""
    for record in records:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    settings = routed(settings, "persist")
    async with Worker(settings, registry=registry_with(settings)) as worker:
        return await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= len(records))


async def test_every_odd_but_valid_record_is_stored_exactly(
    sqs, make_queue, settings_for, store_url
) -> None:
    # given: five valid records whose JSON spells characters no database text holds
    url, dlq = make_queue("odd")
    records = odd_records()
    # json.dumps escapes them (\ud800, \u0000): the body is what SQS would deliver
    decoded = [decode(json.dumps(record)) for record in records]

    # when
    stats = await persist_all(sqs, url, records, settings_for(url, store=store_url))

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


async def test_values_no_lambda_record_holds_are_quarantined_with_the_reason(
    sqs, make_queue, settings_for, store_url
) -> None:
    # given: records valid but for a value the store's columns and index cannot hold
    url, dlq = make_queue("unholdable")
    rng = random.Random(52)
    huge, int32, long_id = (failure_record(rng, condition="RetriesExhausted") for _ in range(3))
    huge["requestContext"]["approximateInvokeCount"] = 2**63  # past SQLite's INTEGER
    int32["requestContext"]["approximateInvokeCount"] = 2**31  # past PostgreSQL's integer
    long_id["requestContext"]["requestId"] = "".join(rng.choices("abcdef0123456789", k=10_000))

    # when
    stats = await persist_all(sqs, url, [huge, int32, long_id], settings_for(url, store=store_url))

    # then: each quarantined at its first receive, with the field that is out of bounds
    assert stats.outcomes["quarantine"] == 3
    assert stats.outcomes["retry"] == stats.outcomes["ack"] == 0
    async with Store.from_url(store_url) as store:
        reasons = sorted(row.reason for row in await store.list_quarantine())
    assert [reason.split(":")[1] for reason in reasons] == [
        " invalid field requestContext.approximateInvokeCount",
        " invalid field requestContext.approximateInvokeCount",
        " invalid field requestContext.requestId",
    ]
    assert len(receive_all(sqs, dlq)) == 3


async def test_a_stream_batch_whose_key_no_index_holds_is_quarantined_once(
    sqs, make_queue, settings_for, store_url
) -> None:
    # given: a Kafka batch record over 400 partitions, whose key (by partition and offsets) is
    # longer than a PostgreSQL index entry can be
    url, dlq = make_queue("wide")
    record = json.loads(KAFKA_EVENT)
    first = record["KafkaBatchInfo"]["recordsInfo"]["orders-1"]
    rng = random.Random(53)  # topics no compression shortens
    record["KafkaBatchInfo"]["recordsInfo"] = {
        f"{rng.randbytes(8).hex()}-{i}": first for i in range(400)
    }

    # when
    stats = await persist_all(sqs, url, [record], settings_for(url, store=store_url))

    # then: SQLite stores it; PostgreSQL refuses it, and the message is quarantined at its first
    # receive, its row kept without the key (before, the quarantine row failed on the same
    # index, and each receive sent another copy to the DLQ)
    assert stats.outcomes["retry"] == 0
    async with Store.from_url(store_url) as store:
        quarantined = await store.list_quarantine()
    if stats.outcomes["ack"] == 1:
        assert store_url.startswith("sqlite")
        assert quarantined == []
        return
    assert stats.outcomes["quarantine"] == 1
    (row,) = quarantined
    assert row.key is None
    assert "the store cannot hold this record" in row.reason
    assert len(receive_all(sqs, dlq)) == 1


async def test_two_functions_failing_on_one_stream_batch_are_both_stored(
    sqs, make_queue, settings_for, store_url
) -> None:
    # given: two functions reading one Kinesis stream, each discarding the same bad record
    url, dlq = make_queue("consumers")
    records = [
        json.loads((EVENTS / name).read_text())
        for name in ("stream-kinesis-bisected.json", "stream-kinesis-bisected-other-consumer.json")
    ]

    # when
    stats = await persist_all(sqs, url, records, settings_for(url, store=store_url))

    # then: two failures, one for each function (before, the second was counted a duplicate
    # of the first and acked: its function's failure was never stored nor alerted)
    assert (stats.outcomes["ack"], stats.duplicates) == (2, 0)
    async with Store.from_url(store_url) as store:
        rows = [await store.get_invocation(decode(json.dumps(r)).key) for r in records]
    assert [row.function_arn if row else None for row in rows] == [
        r["requestContext"]["functionArn"] for r in records
    ]
    assert receive_all(sqs, dlq) == []


async def test_a_binary_attribute_is_kept_and_the_message_quarantined_once(
    sqs, make_queue, settings_for, store_url
) -> None:
    # given: a body no Lambda record has, with a Binary and a String message attribute
    url, dlq = make_queue("binary", max_receive_count=3)
    sqs.send_message(
        QueueUrl=url,
        MessageBody="garbage",
        MessageAttributes={
            "foo": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            "trace": {"DataType": "String", "StringValue": "abc"},
        },
    )

    # when
    settings = routed(settings_for(url, store=store_url), "persist")
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings)) as worker:
            stats = await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 1)

    # then: quarantined at its first receive, never retried; the store keeps the bytes as
    # base64 (before, JSON could not hold them: each receive failed after sending another copy
    # to the DLQ, and the store kept nothing)
    assert stats.outcomes["quarantine"] == 1
    assert stats.outcomes["retry"] == 0
    async with Store.from_url(store_url) as store:
        (row,) = await store.list_quarantine()
    assert row.message_attributes == {
        "foo": {"DataType": "Binary", "BinaryValue": "AAE="},
        "trace": {"DataType": "String", "StringValue": "abc"},
    }
    (copy,) = receive_all(sqs, dlq)
    assert copy["MessageAttributes"]["foo"] == {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    assert (
        "body is not JSON" in copy["MessageAttributes"]["LambdaDestinations.Reason"]["StringValue"]
    )
    assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs


async def test_a_message_the_dlq_refuses_is_kept_by_the_store(
    sqs, make_queue, settings_for, sqlite_url
) -> None:
    # given: a DLQ that takes messages of 1 KiB at most, and a 2 KB body no record has
    url, dlq = make_queue("dlq-refuses")
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"MaximumMessageSize": "1024"})
    sqs.send_message(QueueUrl=url, MessageBody="x" * 2000)
    settings = routed(settings_for(url), "persist")

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings)) as worker:
            stats = await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 1)

    # then: quarantined once, the store's copy the one, said in one warning
    assert (stats.outcomes["quarantine"], stats.outcomes["retry"]) == (1, 0)
    async with Store.from_url(sqlite_url) as store:
        (row,) = await store.list_quarantine()
    assert row.body == "x" * 2000
    assert receive_all(sqs, dlq) == []
    assert [e["event"] for e in logs].count("the DLQ refused the quarantined message") == 1


class _RefusesOrder:
    """A user handler that quarantines with a reason quoting the payload, as handlers do."""

    name = "order-check"

    async def __call__(self, message: DecodedMessage, context: Any) -> None:
        raise QuarantineMessage("bad order id: " + str(message.request_payload.get("orderId")))


@pytest.mark.parametrize("with_dlq", [True, False], ids=["dlq", "no-dlq"])
@pytest.mark.parametrize("odd", ["\ud800", "\x00"], ids=["lone-surrogate", "nul"])
async def test_a_quarantine_reason_no_text_column_holds_is_stored_as_ufffd(
    sqs, make_queue, settings_for, store_url, with_dlq: bool, odd: str
) -> None:
    # given: a record whose orderId holds a character no database text holds, and a handler
    # that quotes it in its quarantine reason
    url, dlq = make_queue("odd-reason", dlq=with_dlq)
    record = failure_record(random.Random(52), condition="RetriesExhausted")
    record["requestPayload"] = {"orderId": f"x{odd}y"}
    body = json.dumps(record)
    sqs.send_message(QueueUrl=url, MessageBody=body)
    handler = _RefusesOrder()
    settings = routed(settings_for(url, store=store_url), handler.name)

    # when
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 1)

    # then: quarantined once, the store's copy whole with the reason as its text can hold it;
    # before, the store refused the row: the DLQ had the only copy, or without one it was
    # retried for ever ("quarantine failed: StoreDataError")
    assert (stats.outcomes["quarantine"], stats.outcomes["retry"]) == (1, 0)
    async with Store.from_url(store_url) as store:
        (row,) = await store.list_quarantine()
    assert row.reason == "bad order id: x\ufffdy"
    assert row.body == body
    assert row.key == decode(body).key
    assert not [e for e in logs if e["event"].startswith("the store cannot keep")]
    if with_dlq:  # the DLQ's reason spells the character as an escape, as SQS takes it
        (copy,) = receive_all(sqs, dlq)
        reason = copy["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
        assert reason == "bad order id: x" + ascii(odd)[1:-1] + "y"


def nested_record(rng: random.Random, levels: int) -> str:
    """A failure record's body whose request payload holds arrays nested ``levels`` deep."""
    record = failure_record(rng, condition="RetriesExhausted")
    record["requestPayload"] = None
    body = json.dumps(record)
    return body.replace('"requestPayload": null', f'"requestPayload": {"[" * levels}{"]" * levels}')


async def test_nesting_is_judged_alike_by_the_worker_and_by_decode(
    sqs, make_queue, settings_for, store_url, tmp_path: Path
) -> None:
    # given: a record nested as deeply as a record may be, and one nested deeper still, which
    # `decode` took for an invocation and the worker quarantined (its stack is deeper)
    url, dlq = make_queue("deep")
    rng = random.Random(54)
    deepest = nested_record(rng, MAX_DEPTH - 1)  # the record's object is one more level
    too_deep = nested_record(rng, 968)
    for body in (deepest, too_deep):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    # when
    settings = routed(settings_for(url, store=store_url), "persist")
    async with Worker(settings, registry=registry_with(settings)) as worker:
        stats = await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 2)
    (tmp_path / "body.json").write_text(too_deep)
    decoding = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", "from lambda_destinations.cli import main; main()"),
        *("decode", str(tmp_path / "body.json")),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(decoding.communicate(), 60)

    # then: the first stored whole; the second quarantined, for the reason decode gives
    assert (stats.outcomes["ack"], stats.outcomes["quarantine"]) == (1, 1)
    async with Store.from_url(store_url) as store:
        row = await store.get_invocation(decode(deepest).key)
        (quarantined,) = await store.list_quarantine()
    assert row is not None
    assert row.record == json.loads(deepest)
    reason = (
        f"body is nested too deeply: more than {MAX_DEPTH} levels of arrays and objects, the "
        "most a record may have; nest the function's payloads less deeply"
    )
    assert (decoding.returncode, stderr.decode()) == (1, f"error: {reason}\n")
    assert quarantined.reason == f"decode error: {reason}"
    assert len(receive_all(sqs, dlq)) == 1
