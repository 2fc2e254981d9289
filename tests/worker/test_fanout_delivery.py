"""Records that reach a polled queue the way AWS delivers them through SNS (wrapped, and with
raw message delivery) and through an EventBridge rule: moto's SNS and EventBridge do the
delivering here, not a hand-written envelope, and the worker stores each record once."""

from __future__ import annotations

import json
import random
from typing import Any

import boto3
from worker_helpers import registry_with, routed, run_until

from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import Store
from lambda_destinations.worker import Worker

REGION = "us-east-1"


def _queue_arn(sqs: Any, url: str) -> str:
    return str(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    )


def _records(tag: str) -> list[dict[str, Any]]:
    rng = random.Random(tag)
    records = [success_record(rng), failure_record(rng, condition="RetriesExhausted")]
    for index, record in enumerate(records):
        record["requestContext"]["requestId"] = f"{tag}-{index}"
    return records


def _through_sns(sqs: Any, endpoint_url: str, wrapped: str, raw: str) -> list[dict[str, Any]]:
    """Publish two records to a topic both queues subscribe to, one with raw delivery, as a
    Lambda destination that is an SNS topic does (the record is the notification's Message)."""
    sns = boto3.client("sns", region_name=REGION, endpoint_url=endpoint_url)
    topic = sns.create_topic(Name=f"destination-{wrapped.rsplit('/', 1)[-1]}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=_queue_arn(sqs, wrapped))
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=_queue_arn(sqs, raw),
        Attributes={"RawMessageDelivery": "true"},
    )
    records = _records("sns")
    for record in records:
        sns.publish(TopicArn=topic, Message=json.dumps(record))
    return records


def _through_eventbridge(sqs: Any, endpoint_url: str, url: str) -> list[dict[str, Any]]:
    """Put two events as Lambda does for an EventBridge destination (a bus of the test's own,
    so that other tests' rules on moto's server see nothing); a rule on the source targets the
    queue."""
    events = boto3.client("events", region_name=REGION, endpoint_url=endpoint_url)
    bus = f"results-{url.rsplit('/', 1)[-1]}"
    events.create_event_bus(Name=bus)
    events.put_rule(Name="lambda-results", EventBusName=bus, EventPattern='{"source": ["lambda"]}')
    events.put_targets(
        Rule="lambda-results", EventBusName=bus, Targets=[{"Id": "q", "Arn": _queue_arn(sqs, url)}]
    )
    records = _records("eventbridge")
    for record in records:
        outcome = "Success" if record["requestContext"]["condition"] == "Success" else "Failure"
        answer = events.put_events(
            Entries=[
                {
                    "EventBusName": bus,
                    "Source": "lambda",
                    "DetailType": f"Lambda Function Invocation Result - {outcome}",
                    "Detail": json.dumps(record),
                    "Resources": [record["requestContext"]["functionArn"]],
                }
            ]
        )
        assert answer["FailedEntryCount"] == 0
    return records


async def test_records_delivered_by_sns_and_eventbridge_are_stored_once(
    sqs, endpoint_url, make_queue, settings_for, store_url
) -> None:
    # given: three queues fed by moto's own SNS (wrapped and raw) and EventBridge deliveries
    wrapped, wrapped_dlq = make_queue("via-sns")
    raw, raw_dlq = make_queue("via-sns-raw")
    bus, bus_dlq = make_queue("via-eventbridge")
    sent_by_sns = _through_sns(sqs, endpoint_url, wrapped, raw)
    sent_by_bus = _through_eventbridge(sqs, endpoint_url, bus)
    settings = routed(settings_for(wrapped, raw, bus, store=store_url), "persist")

    # when: the worker drains the three queues (6 messages, 4 distinct records)
    async with Worker(settings, registry=registry_with(settings)) as worker:
        stats = await run_until(worker, lambda: sum(worker.stats.outcomes.values()) >= 6)

    # then: every message acknowledged; the raw copy of each SNS record is a duplicate
    assert stats.outcomes["ack"] == 6
    assert stats.outcomes["quarantine"] == stats.outcomes["retry"] == 0
    assert stats.duplicates == 2
    async with Store.from_url(store_url) as store:
        for records, envelope in ((sent_by_sns, "sns"), (sent_by_bus, "eventbridge")):
            for record in records:
                row = await store.get_invocation(decode(json.dumps(record)).key)
                assert row is not None, record["requestContext"]["requestId"]
                assert row.request_id == record["requestContext"]["requestId"]
                assert row.request_payload == record["requestPayload"]
                assert row.succeeded is (record["requestContext"]["condition"] == "Success")
                # the first copy stored says how it came; SNS's raw copy is the bare record
                assert row.envelope in ({envelope, "none"} if envelope == "sns" else {envelope})
    for dlq in (wrapped_dlq, raw_dlq, bus_dlq):
        assert (
            sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
            == "0"
        )
