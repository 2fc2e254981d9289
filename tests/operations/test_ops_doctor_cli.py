"""`doctor` finds each misconfiguration when it is planted, one at a time, and passes a good
setup. Queues, functions and topics live on the Lambda moto server (one endpoint for all)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
from ops_helpers import (
    ENTRY,
    NO_CREDENTIALS,
    cli,
    cli_through,
    failure_body,
    row_of,
    seed_sync,
    table_with_stream,
)

from lambda_destinations.config import Settings
from lambda_destinations.operations import handler_checks
from lambda_destinations.operations.doctor import Doctor, exit_status
from lambda_destinations.store import FailureStatus, Store
from processes import file_size_limit, on_a_small_disk
from tcp_proxy import AnswerCutter, aws_error

GOOD_DLQ_RETENTION = "1209600"  # 14 days, longer than the queue's 4


class Setup:
    """A good setup on the Lambda endpoint; ``plant`` breaks one thing of it."""

    def __init__(self, endpoint: Any, store_url: str) -> None:
        self.endpoint = endpoint
        self.sqs = endpoint.sqs
        self.prefix = f"doc-{uuid.uuid4().hex[:8]}"
        self.function = f"{self.prefix}-fn"
        self.store_url = store_url
        self.created: list[str] = []
        self.later: list[Callable[[], object]] = []  # deletions of what else a test made
        self.queue_url, self.queue_arn = self.queue(self.prefix)
        endpoint.create_function(self.function)
        self.destination(self.queue_arn)
        asyncio.run(self._migrate())

    async def _migrate(self) -> None:
        async with Store.from_url(self.store_url) as store:
            await store.migrate()

    def queue(
        self,
        name: str,
        *,
        fifo: bool = False,
        visibility: int = 60,
        retention: int | None = None,
        max_receive_count: int | None = 5,
        dlq: bool = True,
        dlq_retention: str = GOOD_DLQ_RETENTION,
    ) -> tuple[str, str]:
        suffix = ".fifo" if fifo else ""
        base = {"FifoQueue": "true"} if fifo else {}
        attributes = {**base, "VisibilityTimeout": str(visibility)}
        if retention is not None:
            attributes["MessageRetentionPeriod"] = str(retention)
        if dlq:
            dlq_url = self.sqs.create_queue(
                QueueName=f"{name}-dlq{suffix}",
                Attributes={**base, "MessageRetentionPeriod": dlq_retention},
            )["QueueUrl"]
            self.created.append(dlq_url)
            policy = {
                "deadLetterTargetArn": self.arn(dlq_url),
                "maxReceiveCount": max_receive_count,
            }
            attributes["RedrivePolicy"] = json.dumps(policy)
        url = self.sqs.create_queue(QueueName=f"{name}{suffix}", Attributes=attributes)["QueueUrl"]
        self.created.append(url)
        return url, self.arn(url)

    def arn(self, url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def destination(self, arn: str) -> None:
        # moto keeps the first config on a second put: replace it
        with contextlib.suppress(Exception):
            self.endpoint.lam.delete_function_event_invoke_config(FunctionName=self.function)
        self.endpoint.lam.put_function_event_invoke_config(
            FunctionName=self.function, DestinationConfig={"OnFailure": {"Destination": arn}}
        )

    def env(self, *queues: str) -> dict[str, str]:
        return {
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": self.endpoint.url,
            "LAMBDA_DESTINATIONS_STORE": self.store_url,
            "LAMBDA_DESTINATIONS_REGION": "us-east-1",
            "LAMBDA_DESTINATIONS_QUEUES": ",".join(queues or (self.queue_url,)),
        }

    def doctor(self, env: dict[str, str] | None = None, *args: str) -> Any:
        return cli("doctor", "--function", f"{self.prefix}-*", *args, env=env or self.env())

    def stream_mapping(self, destination: str) -> tuple[str, str]:
        """A Kinesis stream the function reads through an event-source mapping whose
        on-failure destination is ``destination``; the stream's name and the mapping's UUID."""
        kinesis = boto3.client("kinesis", region_name="us-east-1", endpoint_url=self.endpoint.url)
        stream = f"{self.prefix}-orders"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        self.later.append(lambda: kinesis.delete_stream(StreamName=stream))
        summary = kinesis.describe_stream_summary(StreamName=stream)
        return stream, self.mapping(summary["StreamDescriptionSummary"]["StreamARN"], destination)

    def table_mapping(self, destination: str) -> tuple[str, str]:
        """A DynamoDB table whose stream the function reads through an event-source mapping,
        its on-failure destination ``destination``; the table's name and the mapping's UUID."""
        dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=self.endpoint.url)
        table = f"{self.prefix}-carts"
        stream = table_with_stream(dynamodb, table)
        self.later.append(lambda: dynamodb.delete_table(TableName=table))
        return table, self.mapping(stream, destination)

    def mapping(self, source_arn: str, destination: str) -> str:
        """An event-source mapping of the function from ``source_arn``, its on-failure
        destination ``destination``; its UUID."""
        lam = self.endpoint.lam
        found = lam.create_event_source_mapping(
            FunctionName=self.function,
            EventSourceArn=source_arn,
            StartingPosition="LATEST",
            DestinationConfig={"OnFailure": {"Destination": destination}},
        )
        # moto keeps a mapping whose function is deleted: the next tests would list it
        self.later.append(lambda: lam.delete_event_source_mapping(UUID=found["UUID"]))
        return str(found["UUID"])

    def cleanup(self) -> None:
        for url in self.created:
            with contextlib.suppress(Exception):  # deleted by the test already
                self.sqs.delete_queue(QueueUrl=url)
        for undo in reversed(self.later):
            undo()


@pytest.fixture
def setup(lambda_endpoint, sqlite_url):  # type: ignore[no-untyped-def]
    made = Setup(lambda_endpoint, sqlite_url)
    try:
        yield made
    finally:
        made.cleanup()


def checks_of(result: Any) -> list[dict[str, Any]]:
    return list(json.loads(result.stdout)["checks"])


def errors_of(result: Any) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in checks_of(result) if c["status"] == "error"}


def test_a_good_setup_passes(setup: Setup) -> None:
    as_json = setup.doctor(None, "--json")
    table = setup.doctor()

    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    checks = checks_of(as_json)
    assert [c for c in checks if c["status"] == "error"] == []
    names = {c["check"] for c in checks}
    queue = setup.prefix
    for expected in (
        "queues configured",
        "aws credentials",
        f"queue {queue}",
        f"{queue}: standard queue",
        f"{queue}: visibility timeout",
        f"{queue}: redrive policy",
        f"{queue}: retry backoff",
        f"{queue}: DLQ retention",
        f"function {setup.function} on-failure",
        "store",
        "store schema",
        "store room",
    ):
        assert expected in names
    assert all(c["status"] == "ok" for c in checks)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL", "FIX"]
    assert "0 errors, 0 warnings" in table.stderr


def _missing_queue(setup: Setup) -> tuple[dict[str, str], str]:
    return setup.env(setup.queue_url, f"{setup.prefix}-nope"), f"queue {setup.prefix}-nope"


def _no_redrive_policy(setup: Setup) -> tuple[dict[str, str], str]:
    url, arn = setup.queue(f"{setup.prefix}-nopolicy", dlq=False)
    setup.destination(arn)
    return setup.env(url), f"{setup.prefix}-nopolicy: redrive policy"


def _dlq_gone(setup: Setup) -> tuple[dict[str, str], str]:
    setup.sqs.delete_queue(QueueUrl=f"{setup.queue_url}-dlq")
    return setup.env(), f"{setup.prefix}: redrive policy"


def _fifo(setup: Setup) -> tuple[dict[str, str], str]:
    url, _ = setup.queue(f"{setup.prefix}-ordered", fifo=True)
    return setup.env(url), f"{setup.prefix}-ordered.fifo: standard queue"


def _queue_by_name_and_url(setup: Setup) -> tuple[dict[str, str], str]:
    return setup.env(setup.queue_url, setup.prefix), f"queue {setup.prefix}"


def _short_visibility(setup: Setup) -> tuple[dict[str, str], str]:
    url, arn = setup.queue(f"{setup.prefix}-short", visibility=3)
    setup.destination(arn)
    return setup.env(url), f"{setup.prefix}-short: visibility timeout"


def _backoff_past_retention(setup: Setup) -> tuple[dict[str, str], str]:
    url, arn = setup.queue(f"{setup.prefix}-brief", retention=60)
    setup.destination(arn)
    return setup.env(url), f"{setup.prefix}-brief: retry backoff"


def _no_retries(setup: Setup) -> tuple[dict[str, str], str]:
    url, arn = setup.queue(f"{setup.prefix}-once", max_receive_count=1)
    setup.destination(arn)
    return setup.env(url), f"{setup.prefix}-once: retry backoff"


def _destination_not_polled(setup: Setup) -> tuple[dict[str, str], str]:
    _, other = setup.queue(f"{setup.prefix}-elsewhere")
    setup.destination(other)
    return setup.env(), f"function {setup.function} on-failure"


def _topic_without_polled_subscriber(setup: Setup) -> tuple[dict[str, str], str]:
    topic = setup.endpoint.sns.create_topic(Name=f"{setup.prefix}-topic")["TopicArn"]
    setup.destination(topic)
    return setup.env(), f"function {setup.function} on-failure"


def _unmigrated_store(setup: Setup) -> tuple[dict[str, str], str]:
    url = setup.store_url.replace("store.db", "fresh.db")

    async def create() -> None:
        async with Store.from_url(url):
            pass  # the file exists, with no tables

    asyncio.run(create())
    return {**setup.env(), "LAMBDA_DESTINATIONS_STORE": url}, "store schema"


def _no_credentials(setup: Setup) -> tuple[dict[str, str], str]:
    env = {
        **setup.env(),
        **NO_CREDENTIALS,
    }
    return env, "aws credentials"


def _arn_of_another_region(setup: Setup) -> tuple[dict[str, str], str]:
    # the same-named queue exists in the doctor's region: it is not the one the ARN names
    arn = setup.queue_arn.replace(":us-east-1:", ":eu-west-1:")
    return setup.env(arn), f"queue {arn}"


def _url_of_another_region(setup: Setup) -> tuple[dict[str, str], str]:
    # AWS's URL of the same-named queue in eu-west-1 (moto answers for it whatever the host;
    # before, the check passed on the doctor's region's queue)
    account, name = setup.queue_url.rsplit("/", 2)[-2:]
    url = f"https://sqs.eu-west-1.amazonaws.com/{account}/{name}"
    return setup.env(url), f"queue {name}"


PLANTS = {
    "queue ARN of another region": _arn_of_another_region,
    "queue URL of another region": _url_of_another_region,
    "queue missing": _missing_queue,
    "no redrive policy": _no_redrive_policy,
    "dead-letter queue gone": _dlq_gone,
    "FIFO queue": _fifo,
    "one queue by name and URL": _queue_by_name_and_url,
    "visibility too short for the heartbeat": _short_visibility,
    "backoff longer than retention": _backoff_past_retention,
    "maxReceiveCount 1": _no_retries,
    "destination not a polled queue": _destination_not_polled,
    "SNS destination no polled queue subscribes to": _topic_without_polled_subscriber,
    "store not migrated": _unmigrated_store,
    "no credentials": _no_credentials,
}


@pytest.mark.parametrize("plant", list(PLANTS), ids=list(PLANTS))
def test_each_misconfiguration_is_found(setup: Setup, plant: str) -> None:
    # given: the good setup with one thing broken
    env, broken_check = PLANTS[plant](setup)

    # when
    result = setup.doctor(env, "--json")

    # then: that check is an error with a fix, and the exit status is 1
    assert result.returncode == 1, result.stdout + result.stderr
    errors = errors_of(result)
    assert broken_check in errors, errors
    assert errors[broken_check]["fix"]
    assert errors[broken_check]["unreachable"] is False


def test_a_missing_queue_s_fix_names_where_the_queues_were_given(setup: Setup) -> None:
    # given: the queues from --queues, not the environment
    env = {**setup.env(), "LAMBDA_DESTINATIONS_QUEUES": ""}
    missing = f"{setup.prefix}-nope"

    # when
    result = setup.doctor(env, "--json", "--queues", f"{setup.queue_url},{missing}")

    # then: the fix names --queues (before: LAMBDA_DESTINATIONS_QUEUES, wherever they came from)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        errors_of(result)[f"queue {missing}"]["fix"]
        == "create it, or fix --queues (and the region)"
    )


def test_a_queue_given_by_its_arn_is_checked(setup: Setup) -> None:
    result = setup.doctor(setup.env(setup.queue_arn), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in checks_of(result)}
    assert checks[f"queue {setup.queue_arn}"]["status"] == "ok"


def test_an_sns_destination_subscribed_by_a_polled_queue_passes(setup: Setup) -> None:
    sns = setup.endpoint.sns
    topic = sns.create_topic(Name=f"{setup.prefix}-fanout")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=setup.queue_arn)
    setup.destination(topic)

    result = setup.doctor(None, "--json")

    assert result.returncode == 0, result.stdout
    (check,) = [c for c in checks_of(result) if c["check"].startswith("function ")]
    assert check["status"] == "ok"
    assert f"SNS topic {setup.prefix}-fanout → queue {setup.prefix}" in check["detail"]


def _subscriptions_answer(topic: str, queue_arn: str, subscription: str) -> bytes:
    """SNS's whole answer to ListSubscriptionsByTopic: one SQS subscription of ``queue_arn``,
    its ARN ``subscription`` (``PendingConfirmation`` until the queue's owner confirms it)."""
    body = (
        '<ListSubscriptionsByTopicResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
        "<ListSubscriptionsByTopicResult><Subscriptions><member>"
        f"<TopicArn>{topic}</TopicArn><Protocol>sqs</Protocol>"
        f"<SubscriptionArn>{subscription}</SubscriptionArn><Owner>123456789012</Owner>"
        f"<Endpoint>{queue_arn}</Endpoint></member></Subscriptions>"
        "</ListSubscriptionsByTopicResult><ResponseMetadata>"
        "<RequestId>00000000-0000-4000-8000-000000000000</RequestId></ResponseMetadata>"
        "</ListSubscriptionsByTopicResponse>"
    ).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def test_a_topic_whose_queue_subscription_awaits_confirmation_does_not_reach_it(
    setup: Setup,
) -> None:
    # given: the destination a topic of another account, whose subscription of the polled
    # queue its owner has not confirmed (SNS lists it as PendingConfirmation and sends it
    # nothing; moto confirms every subscription, so the proxy answers as AWS does)
    topic = setup.endpoint.sns.create_topic(Name=f"{setup.prefix}-theirs")["TopicArn"]
    setup.destination(topic)
    cutter = AnswerCutter(setup.endpoint.url, LIST_SUBSCRIPTIONS, http=True)
    cutter.refusals = 10
    cutter.refusal = _subscriptions_answer(topic, setup.queue_arn, "PendingConfirmation")

    code, out, _err, _ = await cli_through(
        cutter, setup.env(), "doctor", "--function", f"{setup.prefix}-*", "--json"
    )

    # then: the destination's row is an error that says so, and the queue is not fed by it
    assert code == 1, out.decode()
    rows = {c["check"]: c for c in json.loads(out)["checks"]}
    row = rows[f"function {setup.function} on-failure"]
    assert row["status"] == "error", row
    assert "pending confirmation" in row["detail"], row
    assert "confirm" in row["fix"], row
    assert rows[f"{setup.prefix}: fed by a function"]["status"] == "warn"


def test_the_table_names_each_failure_and_its_fix(setup: Setup) -> None:
    env, _ = _short_visibility(setup)

    result = setup.doctor(env)

    assert result.returncode == 1
    line = next(x for x in result.stdout.splitlines() if "visibility timeout" in x)
    assert "ERROR" in line
    assert "raise the queue's" in line
    assert "1 error" in result.stderr


def test_a_short_visibility_setting_is_fixed_where_it_is_set_not_on_the_queue(
    setup: Setup, tmp_path: Path
) -> None:
    # given: the queue hides a message 60 s, and the TOML file's visibility_timeout, which
    # the worker asks in its place, 3 s
    config = tmp_path / "short.toml"
    config.write_text("visibility_timeout = 3\n", encoding="utf-8")
    env = {**setup.env(), "LAMBDA_DESTINATIONS_CONFIG": str(config)}

    result = setup.doctor(env, "--json")

    # then: the fix raises the setting where it is set (it said to raise the queue's
    # VisibilityTimeout, which the setting overrides, and named the variable, not the file)
    row = {c["check"]: c for c in checks_of(result)}[f"{setup.prefix}: visibility timeout"]
    assert row["status"] == "error", row
    assert row["fix"].startswith(
        f"raise visibility_timeout in the TOML file {config} to 20 s or more, or lower "
    ), row
    assert "queue's VisibilityTimeout" not in row["fix"], row


def test_a_queue_hiding_nothing_is_a_warning_naming_what_the_worker_asks(setup: Setup) -> None:
    # given: a polled queue whose VisibilityTimeout is 0, the setting unset
    url, arn = setup.queue(f"{setup.prefix}-unhidden", visibility=0)
    setup.destination(arn)

    # when
    result = setup.doctor(setup.env(url), "--json")

    # then: a warning that the worker asks 30 s instead, and the fix (it was an error saying
    # handlers longer than 0 s see their message again, which the worker's 30 s prevents)
    rows = {c["check"]: c for c in checks_of(result)}
    row = rows[f"{setup.prefix}-unhidden: visibility timeout"]
    assert row["status"] == "warn", row
    assert "asks 30 s" in row["detail"], row
    assert "VisibilityTimeout" in row["fix"], row


def test_an_unreachable_endpoint_exits_4(setup: Setup) -> None:
    env = {**setup.env(), "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:1"}

    result = setup.doctor(env, "--json")

    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    unreachable = [c for c in checks_of(result) if c["unreachable"]]
    assert [c["check"] for c in unreachable] == ["aws endpoint"]


def test_routes_that_replay_without_linking_recoveries_get_a_warning(
    setup: Setup, tmp_path: Any
) -> None:
    config = tmp_path / "routes.toml"
    config.write_text(
        '[[routes]]\ncondition = "failure"\nhandlers = ["persist", "replay"]\n', encoding="utf-8"
    )
    env = {**setup.env(), "LAMBDA_DESTINATIONS_CONFIG": str(config)}

    unlinked = setup.doctor(env, "--json")
    config.write_text(
        config.read_text(encoding="utf-8")
        + '[[routes]]\ncondition = "success"\nhandlers = ["persist", "replay-outcome"]\n',
        encoding="utf-8",
    )
    linked = setup.doctor(env, "--json")

    assert unlinked.returncode == 0, unlinked.stdout + unlinked.stderr  # a warning, not an error
    (check,) = [c for c in checks_of(unlinked) if c["check"] == "replay outcomes"]
    assert check["status"] == "warn"
    assert "replay-outcome" in check["fix"]
    (check,) = [c for c in checks_of(linked) if c["check"] == "replay outcomes"]
    assert check["status"] == "ok"


def test_dlqs_that_keep_messages_no_longer_than_their_queues_are_one_warning(
    setup: Setup,
) -> None:
    # given: four queues whose DLQs keep messages 4 days, as long as the queues (SQS's
    # default for both), and the good queue, whose DLQ keeps them 14 days
    short = [setup.queue(f"{setup.prefix}-{n}", dlq_retention="345600")[0] for n in range(4)]
    env = setup.env(setup.queue_url, *short)

    # when
    result = setup.doctor(env, "--json")
    table = setup.doctor(env)

    # then: one warning naming the four DLQs, not a row each; warnings pass (exit 0)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [c for c in checks_of(result) if c["check"].endswith("DLQ retention")]
    assert [(c["check"], c["status"]) for c in rows] == [
        (f"{setup.prefix}: DLQ retention", "ok"),
        ("DLQ retention", "warn"),
    ]
    dlqs = ", ".join(f"{setup.prefix}-{n}-dlq" for n in range(4))
    assert rows[1]["detail"].startswith(
        f"{dlqs} keep messages 4.0 d, no longer than their queues (4.0 d); a message's age "
        "counts from its first enqueue"
    )
    assert rows[1]["fix"] == "raise their MessageRetentionPeriod (14 days is the most SQS allows)"
    assert table.returncode == 0
    assert sum("DLQ retention" in line for line in table.stdout.splitlines()) == 2


async def test_a_dlq_many_polled_queues_share_is_read_once_a_run(setup: Setup) -> None:
    # given: a second polled queue whose redrive policy names the good queue's DLQ
    dlq = f"{setup.prefix}-dlq"
    policy = {"deadLetterTargetArn": setup.arn(setup.sqs.get_queue_url(QueueName=dlq)["QueueUrl"])}
    policy["maxReceiveCount"] = 5
    also, _ = setup.queue(f"{setup.prefix}-also", dlq=False)
    setup.sqs.set_queue_attributes(QueueUrl=also, Attributes={"RedrivePolicy": json.dumps(policy)})
    cutter = AnswerCutter(setup.endpoint.url, b"AmazonSQS.", http=True)

    # when: the requests that reached the proxy are counted
    code, out, err, _ = await cli_through(
        cutter, setup.env(setup.queue_url, also), "doctor", "--function", f"{setup.prefix}-*"
    )

    # then: the DLQ is looked up, read and tried for a send (a batch of no message) once, and
    # each queue's row names it
    assert code == 0, out.decode() + err.decode()
    of_dlq = [r for r in cutter.requests if f'{dlq}"'.encode() in r]
    assert [r.split(b"X-Amz-Target: ")[1].split(b"\r\n")[0] for r in of_dlq] == [
        b"AmazonSQS.GetQueueUrl",
        b"AmazonSQS.GetQueueAttributes",
        b"AmazonSQS.SendMessageBatch",
    ]
    for queue in (setup.prefix, f"{setup.prefix}-also"):
        assert re.search(rf"{queue}: redrive policy +ok +to {dlq} after 5 receives", out.decode())


def test_a_single_dlq_that_keeps_messages_no_longer_than_its_queue_is_named_by_its_queue(
    setup: Setup,
) -> None:
    url, arn = setup.queue(f"{setup.prefix}-brief", dlq_retention="86400")
    setup.destination(arn)

    result = setup.doctor(setup.env(url), "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = [c for c in checks_of(result) if c["check"].endswith("DLQ retention")]
    assert row["check"] == f"{setup.prefix}-brief: DLQ retention"
    assert row["status"] == "warn"
    assert row["detail"].startswith(
        f"{setup.prefix}-brief-dlq keeps messages 24.0 h, no longer than its queue (4.0 d)"
    )
    assert row["fix"] == (
        f"raise {setup.prefix}-brief-dlq's MessageRetentionPeriod (14 days is the most SQS allows)"
    )


def test_a_queue_that_keeps_messages_as_long_as_a_dlq_can_is_told_to_keep_them_less(
    setup: Setup,
) -> None:
    # given: a queue and its DLQ both at 14 days, the most SQS allows (before: the fix said to
    # raise the DLQ's retention, which cannot go higher)
    url, arn = setup.queue(f"{setup.prefix}-long", retention=14 * 86400, dlq_retention="1209600")
    setup.destination(arn)

    result = setup.doctor(setup.env(url), "--json")

    (row,) = [c for c in checks_of(result) if c["check"].endswith("DLQ retention")]
    assert row["status"] == "warn"
    assert row["fix"] == (
        f"lower the MessageRetentionPeriod of {setup.prefix}-long below 14 days (its DLQ already "
        "keeps the most SQS allows), so a dead-lettered record still has days there"
    )


def test_a_route_whose_queue_matches_no_polled_queue_gets_a_warning(
    setup: Setup, tmp_path: Any
) -> None:
    # given: a route for the polled queue by its name, one by a glob of its URL, and one
    # whose queue has a typo
    config = tmp_path / "routes.toml"
    config.write_text(
        f'[[routes]]\nqueue = "{setup.prefix}"\nhandlers = ["persist"]\n'
        f'[[routes]]\nqueue = "*/{setup.prefix}"\nhandlers = ["persist"]\n'
        f'[[routes]]\nqueue = "{setup.prefix}-typo"\nhandlers = ["persist"]\n',
        encoding="utf-8",
    )
    env = {**setup.env(), "LAMBDA_DESTINATIONS_CONFIG": str(config)}

    result = setup.doctor(env, "--json")

    # then: one warning, naming the route with the typo and the fix
    assert result.returncode == 0, result.stdout + result.stderr  # a warning, not an error
    (check,) = [c for c in checks_of(result) if c["check"] == "route queue"]
    assert check["status"] == "warn"
    assert check["detail"].startswith(f"routes.2 (condition=any queue={setup.prefix}-typo ->")
    assert "matches none of the polled queues" in check["detail"]
    assert check["fix"] == (
        f"fix its queue in routes in the TOML file {config}, or add the queue to "
        "LAMBDA_DESTINATIONS_QUEUES"
    )


def test_a_queue_given_by_arn_matches_its_routes_by_name_as_the_worker_does(
    setup: Setup,
) -> None:
    # given: the queue given by its ARN, holding a record, and a route of it by name that
    # alerts through a webhook (the worker names the queue by its URL's last part, so the
    # route runs)
    setup.sqs.send_message(QueueUrl=setup.queue_url, MessageBody=failure_body(1)[0])
    env = {
        **setup.env(setup.queue_arn),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(
            {"oncall": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}
        ),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(
            [{"queue": setup.prefix, "handlers": ["persist", "oncall"]}]
        ),
    }

    result = setup.doctor(env, "--json")

    # then: no warning that the route matches no polled queue (doctor matched the route
    # against the whole ARN and said it never runs), and the backlog's warning names the
    # notifier the route sends its records to (it said they alert through nothing)
    checks = {c["check"]: c for c in checks_of(result)}
    assert "route queue" not in checks, checks["route queue"]
    assert checks["queue backlog"]["status"] == "warn"
    assert "alert through oncall however old they are" in checks["queue backlog"]["detail"]


@pytest.mark.postgres
def test_a_postgresql_user_who_may_only_read_fails_the_grants_check(
    lambda_endpoint: Any, postgres_url: str, postgres_reader: tuple[str, str]
) -> None:
    # given: the good setup on PostgreSQL, and a user of its database who may only read
    reader, as_reader = postgres_reader
    setup = Setup(lambda_endpoint, postgres_url)
    try:
        # when: doctor checks the setup as the owner, then as that user
        owner = checks_of(setup.doctor(setup.env(), "--json"))
        result = setup.doctor({**setup.env(), "LAMBDA_DESTINATIONS_STORE": as_reader}, "--json")
    finally:
        setup.cleanup()

    # then: the owner passes; the reader's grants check names what it lacks, with the GRANT
    assert [c["status"] for c in owner if c["check"] == "store grants"] == ["ok"]
    assert result.returncode == 1
    grants = errors_of(result)["store grants"]
    assert f"{reader} may not INSERT, UPDATE, DELETE on " in grants["detail"]
    assert "invocations" in grants["detail"]
    assert f"{reader} may not USAGE on " in grants["detail"]
    assert grants["fix"].startswith("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES")


async def _as_admin(postgres_url: str, *statements: str) -> None:
    admin = await asyncpg.connect(postgres_url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


async def _a_schema_of_its_own(postgres_url: str, schema: str, reader: str) -> str:
    """The store migrated into ``schema`` (the users' search_path, as the README sets it), and
    ``reader``, a user who may only read it: the store URL as that user."""
    database = postgres_url.rsplit("/", 1)[1]
    await _as_admin(
        postgres_url,
        f'CREATE SCHEMA "{schema}"',
        f'CREATE ROLE "{reader}" LOGIN',
        *(
            f'ALTER ROLE "{user}" IN DATABASE "{database}" SET search_path = "{schema}"'
            for user in ("postgres", reader)
        ),
    )
    async with Store.from_url(postgres_url) as store:
        await store.migrate()
    await _as_admin(
        postgres_url,
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{reader}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{reader}"',
    )
    return postgres_url.replace("postgres@", f"{reader}@", 1)


@pytest.mark.postgres
async def test_the_grants_fix_names_the_schema_the_store_is_in(
    lambda_endpoint: Any, postgres_url: str
) -> None:
    # given: a store in a schema other than public (whose name must be quoted in SQL), and a
    # user of it who may only read
    schema, reader = "Lambda_Dest", f"ld_reader_{uuid.uuid4().hex[:8]}"
    assert postgres_url.startswith("postgresql://postgres@")
    try:
        as_reader = await _a_schema_of_its_own(postgres_url, schema, reader)
        setup = await asyncio.to_thread(Setup, lambda_endpoint, postgres_url)
        try:
            # when: doctor checks the setup as that user
            env = {**setup.env(), "LAMBDA_DESTINATIONS_STORE": as_reader}
            result = await asyncio.to_thread(setup.doctor, env, "--json")
            # and again once the owner ran the two GRANTs the fix says
            tables, sequences = (
                errors_of(result)["store grants"]["fix"].split(", to ")[0].split(", and ")
            )
            await _as_admin(
                postgres_url, f'{tables} TO "{reader}"', f'GRANT {sequences} TO "{reader}"'
            )
            fixed = await asyncio.to_thread(setup.doctor, env, "--json")
        finally:
            setup.cleanup()
    finally:
        await _as_admin(
            postgres_url, f'DROP OWNED BY "{reader}"', f'DROP ROLE IF EXISTS "{reader}"'
        )

    # then: the GRANT names the store's schema, quoted, not public
    assert result.returncode == 1, result.stdout + result.stderr
    grants = errors_of(result)["store grants"]
    assert f"{reader} may not INSERT, UPDATE, DELETE on " in grants["detail"]
    assert grants["fix"].startswith(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "Lambda_Dest", and USAGE '
        'ON ALL SEQUENCES IN SCHEMA "Lambda_Dest", to that user'
    )
    assert [c["status"] for c in checks_of(fixed) if c["check"] == "store grants"] == ["ok"]


@pytest.mark.postgres
def test_a_postgresql_database_that_does_not_exist_is_named_with_where_its_url_came_from(
    lambda_endpoint: Any, postgres_url: str
) -> None:
    # given: the good setup on PostgreSQL, and a URL of a database the server does not have
    missing = f"{postgres_url}_missing"
    setup = Setup(lambda_endpoint, postgres_url)
    try:
        # when: doctor checks it, given by the environment
        result = setup.doctor({**setup.env(), "LAMBDA_DESTINATIONS_STORE": missing}, "--json")
    finally:
        setup.cleanup()

    # then: the store check names the URL, where it came from, and the server's answer
    store = errors_of(result)["store"]
    assert store["detail"].startswith(f"store {missing} (LAMBDA_DESTINATIONS_STORE): database ")
    assert not store["unreachable"]  # configuration: exit 3's kind, not 4's


def test_a_store_near_the_file_size_limit_fails_the_room_check(setup: Setup) -> None:
    # given: the good setup, and doctor run by a process whose files may grow by 256 KiB: room
    # for a read, not for the worker's saves, whose writing ping then fails
    path = Path(setup.store_url.removeprefix("sqlite:///"))
    limit = path.stat().st_size + 256 * 1024

    # when
    result = subprocess.run(
        [*ENTRY, "doctor", "--function", f"{setup.prefix}-*", "--json"],
        env={**os.environ, **setup.env()},
        capture_output=True,
        text=True,
        timeout=110,
        preexec_fn=file_size_limit(limit),
    )

    # then: a failed check naming the limit and its fix, exit 4 as for a full disk (it passed,
    # exit 0; then it exited 1)
    assert result.returncode == 4, result.stdout + result.stderr
    assert list(errors_of(result)) == ["store room"]
    room = errors_of(result)["store room"]
    assert room["detail"] == (
        f"the file is at or near this process's file size limit, {limit} bytes: the worker "
        "keeps receiving paused until there is room"
    )
    assert room["fix"] == "raise the limit (ulimit -f)"
    assert room["unreachable"]


@pytest.mark.slow
def test_a_store_on_a_full_disk_fails_the_room_check(setup: Setup, tmp_path: Path) -> None:
    # given: the good setup with its store made on a 4 MiB tmpfs, then filled but for 256 KiB:
    # the store answers reads (doctor said it was ok), not the worker's saves
    folder = tmp_path / "disk"
    env = {**os.environ, **setup.env(), "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{folder}/x.db"}
    doctor = [*ENTRY, "doctor", "--function", f"{setup.prefix}-*", "--json"]
    command = on_a_small_disk(folder, *doctor, leave=256 * 1024, first=[[*ENTRY, "migrate"]])

    # when
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=110)

    # then: a failed check saying how little room there is and to free space, exit 4 as on a
    # disk too full to read (the next test); it exited 1
    assert result.returncode == 4, result.stdout + result.stderr
    assert list(errors_of(result)) == ["store room"]
    room = errors_of(result)["store room"]
    assert re.fullmatch(
        r"the disk holding the file has \d+ KiB free: the worker keeps receiving paused until "
        "there is room",
        room["detail"],
    ), room["detail"]
    assert room["fix"] == "free space on the disk holding the file"
    assert room["unreachable"]
    assert [c["status"] for c in checks_of(result) if c["check"] == "store"] == ["ok"]


@pytest.mark.slow
def test_a_store_on_a_disk_too_full_to_read_fails_the_store_check(
    setup: Setup, tmp_path: Path
) -> None:
    # given: the good setup with its store made on a 4 MiB tmpfs, then filled to the last byte:
    # opening the file cannot size its -shm, so even a read fails
    folder = tmp_path / "disk"
    env = {**os.environ, **setup.env(), "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{folder}/x.db"}
    doctor = [*ENTRY, "doctor", "--function", f"{setup.prefix}-*", "--json"]
    command = on_a_small_disk(folder, *doctor, leave=0, first=[[*ENTRY, "migrate"]])

    # when
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=110)

    # then: the store's line names the room left and to free space, exit 4 as with some room
    assert result.returncode == 4, result.stdout + result.stderr
    assert list(errors_of(result)) == ["store"]
    store = errors_of(result)["store"]
    assert store["detail"].endswith(
        "is unavailable: disk I/O error (the disk holding the file has 0 KiB free): free space "
        "on the disk holding the file"
    ), store["detail"]
    assert store["unreachable"]


def test_a_function_glob_that_matches_no_function_says_so(setup: Setup) -> None:
    # given: a --function glob with a typo (case counts: the function is `doc-…-fn`)
    glob = f"{setup.prefix.upper()}-*"

    # when: doctor checks the functions' destinations
    done = cli("doctor", "--function", glob, "--json", env=setup.env())

    # then: a warning that the glob matched nothing, with the fix, not "none of 0 functions
    # matching … has an SQS or SNS destination", whose fix was to set a destination
    assert done.returncode == 0, done.stdout + done.stderr
    (check,) = [c for c in checks_of(done) if c["check"] == "lambda destinations"]
    assert check["status"] == "warn"
    assert check["detail"].startswith(f"not checked: no function matches --function {glob!r}")
    assert "in us-east-1" in check["detail"]
    assert "glob that matches their names" in check["fix"]


def test_a_region_set_in_the_aws_profile_alone_is_the_region_checked(
    setup: Setup, profile_region: dict[str, str]
) -> None:
    # given: the region in the AWS config file's profile, where botocore finds it, and in
    # none of the variables; a --function glob that matches nothing
    env = {**setup.env(), **profile_region}
    del env["LAMBDA_DESTINATIONS_REGION"]
    glob = f"{setup.prefix.upper()}-*"

    # when
    done = cli("doctor", "--function", glob, "--json", env=env)

    # then: the profile's region is the one checked and named (before: "aws region ERROR no
    # AWS region is configured", exit 1, and nothing asked of AWS)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {c["check"]: c for c in checks_of(done)}
    assert "aws region" not in checks
    assert checks["aws credentials"]["status"] == "ok"
    assert checks[f"queue {setup.prefix}"]["status"] == "ok"
    assert "in us-east-1" in checks["lambda destinations"]["detail"]


def test_a_first_start_on_a_backlog_with_notifiers_is_a_warning_with_a_quiet_drain(
    setup: Setup,
) -> None:
    # given: the queue gathered failure records for days before the worker's first start,
    # its DLQ holds two SQS moved there, a webhook alerts on failures, the store is empty
    for seed_value in range(3):
        setup.sqs.send_message(
            QueueUrl=setup.queue_url,
            MessageBody=failure_body(seed_value, minutes_ago=5 * 24 * 60)[0],
        )
    dlq_url = setup.sqs.get_queue_url(QueueName=f"{setup.prefix}-dlq")["QueueUrl"]
    for seed_value in (10, 11):
        setup.sqs.send_message(QueueUrl=dlq_url, MessageBody=failure_body(seed_value)[0])
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(
            {"oncall": {"type": "webhook", "url": "http://127.0.0.1:9/hook"}}
        ),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps(
            [{"condition": "failure", "handlers": ["persist", "oncall"]}, {"handlers": ["persist"]}]
        ),
    }

    # when
    first = setup.doctor(env, "--json")
    seed_sync(setup.store_url, [row_of(failure_body(20)[0])])  # the worker has run since
    later = setup.doctor(env, "--json")

    # then: a warning (exit 0) that names the count, the notifier and the quiet way to drain
    # them; once the store holds records, the same queue is only a row that says so. (doctor
    # said nothing of either: the first start sent an alert for each old failure, up to the
    # storm limits, and the DLQ's messages went unmentioned.)
    assert first.returncode == 0, first.stdout + first.stderr
    checks = {c["check"]: c for c in checks_of(first)}
    backlog = checks["queue backlog"]
    assert backlog["status"] == "warn"
    assert backlog["detail"].startswith(f"about 3 messages wait ({setup.prefix} 3) and the store")
    assert "alert through oncall however old they are" in backlog["detail"]
    assert 'LAMBDA_DESTINATIONS_ROUTES=\'[{"handlers": ["persist"]}]\'' in backlog["fix"]
    assert "run --once" in backlog["fix"]
    dlq = checks[f"{setup.prefix}: DLQ messages"]
    assert dlq["status"] == "ok"
    assert dlq["detail"].startswith(f"{setup.prefix}-dlq holds about 2 messages")
    assert f"`dlq redrive {setup.prefix}-dlq`" in dlq["detail"]
    (again,) = [c for c in checks_of(later) if c["check"] == "queue backlog"]
    assert again["status"] == "ok"
    assert again["detail"].endswith("the worker handles them as it runs")


def test_a_queue_s_kms_key_that_cannot_encrypt_is_an_error_with_the_command_that_fixes_it(
    setup: Setup,
) -> None:
    # given: the success queue and its DLQ encrypted with one key of the account's (SSE-KMS),
    # which someone scheduled for deletion; another queue with a disabled key; a third with
    # SQS's own key, which is always there
    kms = boto3.client("kms", endpoint_url=setup.endpoint.url, region_name="us-east-1")
    deleted = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/{setup.prefix}", TargetKeyId=deleted)
    kms.schedule_key_deletion(KeyId=deleted, PendingWindowInDays=7)
    disabled = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=disabled)
    dlq_url = setup.created[0]
    for url, key in (
        (setup.queue_url, f"alias/{setup.prefix}"),
        (dlq_url, f"alias/{setup.prefix}"),
    ):
        setup.sqs.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": key})
    other_url, _ = setup.queue(f"{setup.prefix}-other")
    setup.sqs.set_queue_attributes(QueueUrl=other_url, Attributes={"KmsMasterKeyId": disabled})
    own_url, _ = setup.queue(f"{setup.prefix}-own")
    setup.sqs.set_queue_attributes(QueueUrl=own_url, Attributes={"KmsMasterKeyId": "alias/aws/sqs"})
    enabled = kms.create_key()["KeyMetadata"]["KeyId"]
    fine_url, _ = setup.queue(f"{setup.prefix}-fine")
    setup.sqs.set_queue_attributes(QueueUrl=fine_url, Attributes={"KmsMasterKeyId": enabled})

    # when
    result = setup.doctor(setup.env(setup.queue_url, other_url, own_url, fine_url), "--json")

    # then: one row per key, naming the queues it encrypts, and the command to run (before:
    # every row ok, though nothing could read those queues or send to them)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = errors_of(result)
    pending = errors[f"kms key alias/{setup.prefix}"]
    assert pending["detail"].startswith("scheduled for deletion on ")
    assert f"{setup.prefix}, {setup.prefix}-dlq" in pending["detail"]
    assert "the messages it encrypted are lost" in pending["detail"]
    assert pending["fix"] == (
        f"aws kms cancel-key-deletion --key-id {deleted}, then aws kms enable-key --key-id "
        f"{deleted}"
    )
    off = errors[f"kms key {disabled}"]
    assert off["detail"] == (
        f"disabled: nothing can read the messages of {setup.prefix}-other, nor send any to them"
    )
    assert off["fix"] == f"aws kms enable-key --key-id {disabled}"
    assert not [c for c in checks_of(result) if "alias/aws/sqs" in c["check"]]
    (fine,) = [c for c in checks_of(result) if c["check"] == f"kms key {enabled}"]
    assert (fine["status"], fine["detail"]) == ("ok", f"enabled; encrypts {setup.prefix}-fine")


def test_a_dlq_s_kms_key_is_tried_as_sending_to_the_dlq_uses_it(setup: Setup) -> None:
    # given: the success queue's DLQ encrypted with an enabled key of the account's (SSE-KMS)
    kms = boto3.client("kms", endpoint_url=setup.endpoint.url, region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    setup.sqs.set_queue_attributes(QueueUrl=setup.created[0], Attributes={"KmsMasterKeyId": key})

    # when
    result = setup.doctor(setup.env(setup.queue_url), "--json")

    # then: a row of its own says the credentials may make and decrypt its data keys, as
    # the DLQ copy of a quarantined message needs (before: only the key's state was read)
    (tried,) = [c for c in checks_of(result) if c["check"] == f"kms key {key}: use"]
    assert tried["status"] == "ok", tried
    assert "make and decrypt its data keys" in tried["detail"]


def _failure_of(arn: str, n: int) -> Any:
    _body, record = failure_body(n)
    record["requestContext"]["functionArn"] = arn
    return row_of(json.dumps(record))


def test_open_failures_of_an_account_with_no_role_are_a_warning_with_the_fix(
    lambda_endpoint: Any, store_url: str
) -> None:
    # given: the good setup, whose store (SQLite or PostgreSQL) holds open failures of a
    # function of our own account (moto's), of account A (a role set for it), two of account
    # B (none), and one of account D that was ignored
    own, other, unlisted = "123456789012", "111122223333", "444455556666"
    arn = "arn:aws:lambda:us-east-1:{}:function:{}"
    rows = [
        _failure_of(arn.format(own, "billing"), 1),
        _failure_of(arn.format(other, "orders"), 2),
        _failure_of(arn.format(unlisted, "ledger"), 3),
        _failure_of(arn.format(unlisted, "ledger") + ":live", 4),
        _failure_of(arn.format("777788889999", "old"), 5),
    ]
    setup = Setup(lambda_endpoint, store_url)
    try:
        seed_sync(setup.store_url, rows)

        async def ignore() -> None:
            async with Store.from_url(setup.store_url) as store:
                await store.set_status([rows[4].key], FailureStatus.IGNORED)

        asyncio.run(ignore())
        role = f"arn:aws:iam::{other}:role/lambda-destinations-invoke"
        env = {
            **setup.env(),
            "LAMBDA_DESTINATIONS_ACCOUNTS": json.dumps({other: {"role_arn": role}}),
        }

        # when
        result = setup.doctor(env, "--json")
    finally:
        setup.cleanup()

    # then: one warning (exit 0), for B, with its count and the two fixes; A's role is assumed
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["check"]: c for c in checks_of(result)}
    warned = [name for name in checks if name.startswith("failures of account")]
    assert warned == [f"failures of account {unlisted}"]
    row = checks[warned[0]]
    assert row["status"] == "warn"
    assert row["detail"] == (
        f"2 open failures of functions in account {unlisted}, which is neither the credentials' "
        f"own ({own}) nor in the accounts table: Lambda refuses their replay"
    )
    assert row["fix"] == (
        f"set a role of account {unlisted} to assume for them: [accounts.{unlisted}] role_arn = "
        f'"arn:aws:iam::{unlisted}:role/NAME" in the TOML file (or '
        f"LAMBDA_DESTINATIONS_ACCOUNTS), or let account {own} invoke them in their "
        "resource-based policies"
    )
    assert checks[f"account {other}"]["status"] == "ok"


# -- an S3 bucket as the on-failure destination ------------------------------------------------

RECORDS = "aws/lambda/"  # where Lambda writes the records it sends to a bucket


def _bucket(setup: Setup, notification: dict[str, Any] | None = None) -> tuple[Any, str]:
    """A bucket on the Lambda endpoint, the function's on-failure destination, with these
    event notifications; the S3 client and the bucket's name."""
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=setup.endpoint.url)
    bucket = f"{setup.prefix}-records"
    s3.create_bucket(Bucket=bucket)
    if notification is not None:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=notification
        )
    setup.destination(f"arn:aws:s3:::{bucket}")
    return s3, bucket


def _to_queue(arn: str, prefix: str | None = RECORDS, event: str = "s3:ObjectCreated:*") -> Any:
    config: dict[str, Any] = {"QueueArn": arn, "Events": [event]}
    if prefix is not None:
        config["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    return {"QueueConfigurations": [config]}


def _function_row(result: Any, setup: Setup) -> dict[str, Any]:
    (row,) = [c for c in checks_of(result) if c["check"] == f"function {setup.function} on-failure"]
    return row


@pytest.mark.parametrize(
    ("prefix", "event"),
    [
        (RECORDS, "s3:ObjectCreated:*"),
        (None, "s3:ObjectCreated:Put"),
        ("aws/lambda/async/", "s3:ObjectCreated:*"),
    ],
    ids=["records prefix", "no filter, puts", "async prefix"],
)
def test_a_bucket_whose_notifications_reach_a_polled_queue_passes(
    setup: Setup, prefix: str | None, event: str
) -> None:
    # given: the function's records go to a bucket that notifies the polled queue of them
    _, bucket = _bucket(setup, _to_queue(setup.queue_arn, prefix, event))

    # when
    result = setup.doctor(None, "--json")

    # then: the row follows the bucket to the queue, which counts as fed
    assert result.returncode == 0, result.stdout + result.stderr
    row = _function_row(result, setup)
    assert row["status"] == "ok"
    assert row["detail"] == f"→ S3 bucket {bucket} → queue {setup.prefix} (polled)"
    names = {c["check"] for c in checks_of(result)}
    assert f"{setup.prefix}: fed by a function" not in names


def test_a_bucket_notifying_a_topic_a_polled_queue_subscribes_to_passes(setup: Setup) -> None:
    # given: the bucket notifies an SNS topic, to which the polled queue subscribes
    sns = setup.endpoint.sns
    topic = sns.create_topic(Name=f"{setup.prefix}-objects")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=setup.queue_arn)
    notification = {"TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]}
    _, bucket = _bucket(setup, notification)

    # when
    result = setup.doctor(None, "--json")

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    row = _function_row(result, setup)
    assert row["status"] == "ok"
    assert row["detail"] == (
        f"→ S3 bucket {bucket} → SNS topic {setup.prefix}-objects → queue {setup.prefix} (polled)"
    )


def _no_notification(setup: Setup) -> dict[str, Any] | None:
    return None


def _another_prefix(setup: Setup) -> dict[str, Any] | None:
    return _to_queue(setup.queue_arn, "exports/")  # Lambda's keys are not under it


def _another_function_s_prefix(setup: Setup) -> dict[str, Any] | None:
    return _to_queue(setup.queue_arn, "aws/lambda/async/billing/")


def _removals_only(setup: Setup) -> dict[str, Any] | None:
    return _to_queue(setup.queue_arn, RECORDS, "s3:ObjectRemoved:*")


def _a_queue_not_polled(setup: Setup) -> dict[str, Any] | None:
    _, other = setup.queue(f"{setup.prefix}-elsewhere")
    return _to_queue(other)


MISSED = {
    "no notification": _no_notification,
    "a prefix the records are not under": _another_prefix,
    "another function's prefix": _another_function_s_prefix,
    "removals only": _removals_only,
    "a queue not polled": _a_queue_not_polled,
}


@pytest.mark.parametrize("notified", list(MISSED), ids=list(MISSED))
def test_a_bucket_whose_records_reach_no_polled_queue_is_an_error_with_the_command(
    setup: Setup, notified: str
) -> None:
    # given: two polled queues, one of them the failure queue, and a bucket whose
    # notifications send the records to neither
    failures_url, failures_arn = setup.queue(f"{setup.prefix}-failures")
    _, bucket = _bucket(setup, MISSED[notified](setup))

    # when
    result = setup.doctor(setup.env(setup.queue_url, failures_url), "--json")

    # then: an error whose fix is the command that sends them to the failure queue, and the
    # queue policy S3 needs
    assert result.returncode == 1, result.stdout + result.stderr
    row = _function_row(result, setup)
    assert row["status"] == "error"
    assert f"S3 bucket {bucket}" in row["detail"]
    assert f"aws/lambda/async/{setup.function}/" in row["detail"]
    command = re.fullmatch(
        r"aws s3api put-bucket-notification-configuration --bucket (\S+) "
        r"--notification-configuration '([^']+)' \(.*",
        row["fix"],
    )
    assert command, row["fix"]
    assert command[1] == bucket
    assert json.loads(command[2]) == _to_queue(failures_arn)
    assert "s3.amazonaws.com" in row["fix"]
    assert f"{setup.prefix}-failures's policy" in row["fix"]


def test_a_bucket_that_does_not_exist_is_an_error(setup: Setup) -> None:
    setup.destination(f"arn:aws:s3:::{setup.prefix}-gone")

    result = setup.doctor(None, "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    row = _function_row(result, setup)
    assert row["status"] == "error"
    assert row["detail"].startswith(f"→ S3 bucket {setup.prefix}-gone, which does not exist")
    assert row["fix"].startswith(f"create the bucket {setup.prefix}-gone")


def _s3_answer(status: int, body: str) -> bytes:
    """An S3 answer, whole, as a proxy gives it in S3's place."""
    data = body.encode()
    head = (
        f"HTTP/1.1 {status} S3\r\nContent-Type: application/xml\r\n"
        f"x-amz-request-id: 0000000000000000\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _doctor_through(setup: Setup, answer: bytes) -> tuple[int | None, dict[str, Any]]:
    """doctor with its endpoint behind a proxy that answers GetBucketNotificationConfiguration
    itself (``answer``) and passes everything else on to the Lambda endpoint."""
    cutter = AnswerCutter(setup.endpoint.url, b"?notification", http=True)
    cutter.refusals, cutter.refusal = 10, answer
    env = setup.env()
    code, out, err, _ = await cli_through(
        cutter, env, "doctor", "--function", f"{setup.prefix}-*", "--json"
    )
    assert cutter.refused >= 1, err.decode()
    assert b"Traceback" not in err
    (row,) = [
        c
        for c in json.loads(out)["checks"]
        if c["check"] == f"function {setup.function} on-failure"
    ]
    return code, row


# S3's answers to GetBucketNotificationConfiguration that moto cannot give, given by a proxy in
# its place (everything else is moto's): EventBridge on and nothing else (moto stores a put
# EventBridgeConfiguration but leaves it out of its answer), and a refusal (moto enforces no
# IAM here). Each is a warning: for EventBridge, as for a bus, no rule can be verified.
S3_ANSWERS = {
    "EventBridge only": (
        {"EventBridgeConfiguration": {}},
        200,
        '<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>",
        "→ S3 bucket {bucket}, which sends its events to EventBridge: cannot verify that a "
        "rule forwards its records' objects to a polled queue",
        "check that a rule on the default bus targets a polled queue",
    ),
    "AccessDenied": (
        {"QueueConfigurations": []},
        403,
        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
        "<RequestId>0000000000000000</RequestId></Error>",
        "→ S3 bucket {bucket}: its event notifications cannot be read "
        "(AccessDenied: Access Denied)",
        "allow s3:GetBucketNotificationConfiguration on arn:aws:s3:::{bucket}",
    ),
}


@pytest.mark.parametrize("answered", list(S3_ANSWERS), ids=list(S3_ANSWERS))
async def test_a_bucket_s3_answers_for_so_is_a_warning_with_the_fix(
    setup: Setup, answered: str
) -> None:
    # given
    notification, status, body, detail, fix = S3_ANSWERS[answered]
    _, bucket = _bucket(setup, notification)

    # when
    code, row = await _doctor_through(setup, _s3_answer(status, body))

    # then
    assert code == 0
    assert (row["status"], row["detail"], row["fix"]) == (
        "warn",
        detail.format(bucket=bucket),
        fix.format(bucket=bucket),
    )


# What a captive portal or a proxy answers in S3's place, 200: pages botocore's XML parser
# reads, and one it does not; and how the row says it.
PORTAL_PAGES = {
    "HTML": (
        b"<!DOCTYPE html><html><head><title>Sign in to the Wi-Fi</title></head></html>",
        "an HTML page titled 'Sign in to the Wi-Fi'",
    ),
    "XHTML": (
        b'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
        b"<head><title>Sign in to the Wi-Fi</title></head><body><p>Accept</p></body></html>",
        "an HTML page titled 'Sign in to the Wi-Fi'",
    ),
    "empty": (b"", "with an empty body"),
    # a page that is not XML (a void <meta>, an unclosed <p>): botocore makes a 500 of it
    # itself, which doctor said was AWS's error, to run doctor again
    "HTML, not XML": (
        b"<!DOCTYPE html><html><head><meta charset=utf-8><title>Sign in to the Wi-Fi</title>"
        b"</head><body><p>Accept the terms</body></html>",
        "an HTML page titled 'Sign in to the Wi-Fi'",
    ),
}


@pytest.mark.parametrize("page", list(PORTAL_PAGES))
async def test_a_bucket_whose_notifications_a_portal_answers_for_is_a_warning_not_a_fix(
    setup: Setup, page: str
) -> None:
    # given: a bucket that notifies the polled queue, whose notification configuration a
    # captive portal answers for (200, its page), every time it is asked
    _, bucket = _bucket(setup, _to_queue(setup.queue_arn))
    body, said = PORTAL_PAGES[page]
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n"

    # when
    code, row = await _doctor_through(setup, head.encode() + body)

    # then: the endpoint's answer is not S3's, as the row says; before, botocore read the
    # page as a bucket with no notifications (an error, exit 1, whose fix was a command
    # replacing the bucket's whole configuration: the notifications it has, lost)
    assert (code, row["status"]) == (0, "warn"), row
    assert row["detail"] == f"→ S3 bucket {bucket}: S3 did not answer ({said}, not an AWS answer)"
    assert row["fix"] == "check the endpoint and the network"


def test_no_destination_at_all_says_so_in_words_that_cover_buckets(setup: Setup) -> None:
    setup.endpoint.lam.delete_function_event_invoke_config(FunctionName=setup.function)

    result = setup.doctor(None, "--json")

    (row,) = [c for c in checks_of(result) if c["check"] == "lambda destinations"]
    assert row["detail"] == (
        "none of 1 function matching "
        f"'{setup.prefix}-*' has a destination (a queue, a topic, a bus or a bucket)"
    )


# -- one read of a topic or bucket that many destinations name ----------------------------------
# The usual setup: many functions, one failure topic (or bucket). SNS throttles
# ListSubscriptionsByTopic at a low rate: a run reads each topic's subscriptions, and each
# bucket's notifications, once, and every destination that names it still gets its row.

LIST_SUBSCRIPTIONS = b"Action=ListSubscriptionsByTopic"
GET_NOTIFICATION = b"?notification "  # GET /BUCKET?notification HTTP/1.1


def _shared_destination(setup: Setup, kind: str) -> tuple[str, list[str]]:
    """Five functions and a DynamoDB stream's mapping, all sending their failures to one
    ``kind`` (a topic the polled queue subscribes to, or a bucket notifying that topic);
    the detail of a row that follows it to the queue, and the check of every row."""
    sns = setup.endpoint.sns
    topic = f"{setup.prefix}-failures"
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=setup.queue_arn)
    detail = f"→ SNS topic {topic} → queue {setup.prefix} (polled)"
    destination = topic_arn
    if kind == "bucket":
        notification = {
            "TopicConfigurations": [{"TopicArn": topic_arn, "Events": ["s3:ObjectCreated:*"]}]
        }
        _, bucket = _bucket(setup, notification)
        destination = f"arn:aws:s3:::{bucket}"
        detail = f"→ S3 bucket {bucket} {detail}"
    setup.destination(destination)
    functions = [setup.function] + [f"{setup.prefix}-fn{n}" for n in range(2, 6)]
    for name in functions[1:]:
        setup.endpoint.create_function(name)
        setup.endpoint.lam.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnFailure": {"Destination": destination}}
        )
    table, _ = setup.table_mapping(destination)
    checks = [f"function {name} on-failure" for name in functions]
    return detail, [*checks, f"function {setup.function} on-failure (DynamoDB table {table})"]


REFUSED = {
    "topic": (
        LIST_SUBSCRIPTIONS,
        aws_error(403, "AuthorizationError", "not authorized", "query"),
        "→ SNS topic {prefix}-failures: its subscriptions cannot be read "
        "(AuthorizationError: not authorized)",
        "allow sns:ListSubscriptionsByTopic",
    ),
    "bucket": (
        GET_NOTIFICATION,
        aws_error(403, "AccessDenied", "Access Denied", "rest-xml"),
        "→ S3 bucket {prefix}-records: its event notifications cannot be read "
        "(AccessDenied: Access Denied)",
        "allow s3:GetBucketNotificationConfiguration on arn:aws:s3:::{prefix}-records",
    ),
}


@pytest.mark.parametrize("kind", ["topic", "bucket"])
@pytest.mark.parametrize("refused", [False, True], ids=["answered", "refused"])
async def test_a_topic_or_bucket_many_destinations_name_is_read_once_a_run(
    setup: Setup, kind: str, refused: bool
) -> None:
    # given: six destinations (five functions' and a mapping's) naming one topic, or one
    # bucket that notifies it; with ``refused``, its read refused (moto enforces no IAM: the
    # proxy answers it, and every later one, as AWS would)
    detail, checks = _shared_destination(setup, kind)
    needle, refusal, refused_detail, refused_fix = REFUSED[kind]
    cutter = AnswerCutter(setup.endpoint.url, needle, http=True)
    if refused:
        cutter.refusals, cutter.refusal = 10, refusal

    # when: the requests that reached the proxy are counted
    code, out, err, _ = await cli_through(
        cutter, setup.env(), "doctor", "--function", f"{setup.prefix}-*", "--json"
    )

    # then: one read of each for the run, and each destination its own row as before
    assert b"Traceback" not in err, err.decode()
    calls = {
        "ListSubscriptionsByTopic": sum(LIST_SUBSCRIPTIONS in r for r in cutter.requests),
        "GetBucketNotificationConfiguration": sum(GET_NOTIFICATION in r for r in cutter.requests),
    }
    topic_reads = 0 if refused and kind == "bucket" else 1
    assert calls == {
        "ListSubscriptionsByTopic": topic_reads,
        "GetBucketNotificationConfiguration": 1 if kind == "bucket" else 0,
    }
    assert cutter.refused == (1 if refused else 0)
    rows = {c["check"]: c for c in json.loads(out)["checks"] if c["check"] in checks}
    assert sorted(rows) == sorted(checks)
    if refused:
        detail = refused_detail.format(prefix=setup.prefix)
        fix = refused_fix.format(prefix=setup.prefix)
        assert {(r["status"], r["detail"], r["fix"]) for r in rows.values()} == {
            ("warn", detail, fix)
        }
        # and the polled queue's warning says what was not read, which may feed it
        (fed,) = [c for c in json.loads(out)["checks"] if c["check"].endswith("fed by a function")]
        unread = f"topic {setup.prefix}-failures" if kind == "topic" else f"bucket {setup.prefix}"
        assert f"; not readable, so not counted: {unread}" in fed["detail"], fed
    else:
        assert code == 0, out.decode()
        assert {(r["status"], r["detail"]) for r in rows.values()} == {("ok", detail)}


# -- event-source mappings' on-failure destinations --------------------------------------------
# A Kinesis, DynamoDB Streams or Kafka mapping sends the record of a batch it discards to its
# own on-failure destination, not to the function's asynchronous-invocation one.


def _mapping_row(result: Any, setup: Setup, source: str) -> dict[str, Any]:
    check = f"function {setup.function} on-failure ({source})"
    (row,) = [c for c in checks_of(result) if c["check"] == check]
    return row


def test_a_stream_mapping_s_on_failure_destination_feeds_the_polled_queue_it_names(
    setup: Setup,
) -> None:
    # given: two polled queues, one the function's asynchronous-invocation destination, the
    # other the on-failure destination of its Kinesis mapping
    streams_url, streams_arn = setup.queue(f"{setup.prefix}-streams")
    stream, _ = setup.stream_mapping(streams_arn)

    # when
    result = setup.doctor(setup.env(setup.queue_url, streams_url), "--json")

    # then: the mapping's row is ok, and no queue is said to be fed by no function
    assert result.returncode == 0, result.stdout + result.stderr
    row = _mapping_row(result, setup, f"Kinesis stream {stream}")
    assert (row["status"], row["detail"]) == ("ok", f"→ queue {setup.prefix}-streams (polled)")
    assert [c for c in checks_of(result) if c["status"] != "ok"] == []


def test_a_function_whose_only_destination_is_its_mapping_s_has_a_destination(
    setup: Setup,
) -> None:
    # given: no asynchronous-invocation destination, a Kinesis mapping's to the polled queue
    setup.endpoint.lam.delete_function_event_invoke_config(FunctionName=setup.function)
    stream, _ = setup.stream_mapping(setup.queue_arn)

    # when
    result = setup.doctor(None, "--json")

    # then: not "none of 1 function has a destination"
    assert result.returncode == 0, result.stdout + result.stderr
    assert _mapping_row(result, setup, f"Kinesis stream {stream}")["status"] == "ok"
    assert [c for c in checks_of(result) if c["status"] != "ok"] == []


def test_a_mapping_s_on_failure_destination_not_polled_is_an_error_with_the_fix(
    setup: Setup,
) -> None:
    # given: the mapping sends its discarded batches' records to a queue the worker does not poll
    _, elsewhere = setup.queue(f"{setup.prefix}-elsewhere")
    stream, _ = setup.stream_mapping(elsewhere)

    # when
    result = setup.doctor(None, "--json")

    # then
    assert result.returncode == 1, result.stdout + result.stderr
    row = _mapping_row(result, setup, f"Kinesis stream {stream}")
    assert (row["status"], row["detail"], row["fix"]) == (
        "error",
        f"→ queue {setup.prefix}-elsewhere, which the worker does not poll: its records are "
        "never read",
        f"add {setup.prefix}-elsewhere to LAMBDA_DESTINATIONS_QUEUES, or point the destination "
        "at a polled queue",
    )


def test_a_destination_not_polled_is_added_to_the_queues_where_they_are_set(
    setup: Setup, tmp_path: Path
) -> None:
    # given: the queues set in a TOML file, and the function's destination a queue not polled
    _, elsewhere = setup.queue(f"{setup.prefix}-elsewhere")
    setup.destination(elsewhere)
    config = tmp_path / "queues.toml"
    config.write_text(f'queues = ["{setup.queue_url}"]\n', encoding="utf-8")
    env = {**setup.env(), "LAMBDA_DESTINATIONS_CONFIG": str(config)}
    del env["LAMBDA_DESTINATIONS_QUEUES"]

    result = setup.doctor(env, "--json")

    # then: the fix names the file's queues (it said to add the queue to
    # LAMBDA_DESTINATIONS_QUEUES, which set to it alone would stop the others being polled)
    row = errors_of(result)[f"function {setup.function} on-failure"]
    assert row["fix"] == (
        f"add {setup.prefix}-elsewhere to queues in the TOML file {config}, or point the "
        "destination at a polled queue"
    )


@pytest.mark.parametrize(
    ("prefix", "status"),
    [(RECORDS, "ok"), ("aws/lambda/async/", "error")],
    ids=["records prefix", "async prefix"],
)
def test_a_mapping_s_bucket_is_followed_by_the_keys_a_mapping_s_records_have(
    setup: Setup, prefix: str, status: str
) -> None:
    # given: a DynamoDB stream's mapping whose on-failure destination is a bucket notifying
    # the polled queue of the objects under ``prefix``; a mapping's records are written under
    # aws/lambda/<its UUID>/, not aws/lambda/async/ as an asynchronous invocation's
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=setup.endpoint.url)
    bucket = f"{setup.prefix}-batches"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration=_to_queue(setup.queue_arn, prefix)
    )
    table, mapping = setup.table_mapping(f"arn:aws:s3:::{bucket}")

    # when
    result = setup.doctor(None, "--json")

    # then
    row = _mapping_row(result, setup, f"DynamoDB table {table}")
    assert row["status"] == status, row
    if status == "ok":
        assert row["detail"] == f"→ S3 bucket {bucket} → queue {setup.prefix} (polled)"
    else:
        assert f"(under aws/lambda/{mapping}/)" in row["detail"]


def _lambda_answer(status: int, body: Any) -> bytes:
    """A Lambda answer, whole, as a proxy gives it in Lambda's place."""
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
        f"x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _doctor_with_mappings(setup: Setup, answer: bytes) -> tuple[int | None, Any]:
    """doctor with its endpoint behind a proxy that answers ListEventSourceMappings itself
    (``answer``) and passes everything else on to the Lambda endpoint; its exit and checks."""
    cutter = AnswerCutter(setup.endpoint.url, b"/event-source-mappings", http=True)
    cutter.refusals, cutter.refusal = 10, answer
    code, out, err, _ = await cli_through(
        cutter, setup.env(), "doctor", "--function", f"{setup.prefix}-*", "--json"
    )
    assert cutter.refused >= 1, err.decode()
    assert b"Traceback" not in err
    return code, json.loads(out)["checks"]


async def test_mappings_that_cannot_be_listed_are_a_warning_with_the_permission(
    setup: Setup,
) -> None:
    # given: ListEventSourceMappings refused (moto enforces no IAM: a proxy answers it)
    denied = aws_error(403, "AccessDeniedException", "not authorized", "rest-json")

    # when
    code, checks = await _doctor_with_mappings(setup, denied)

    # then
    assert code == 0
    (row,) = [c for c in checks if c["check"] == "event-source mappings"]
    assert (row["status"], row["fix"]) == ("warn", "allow lambda:ListEventSourceMappings")
    assert "AccessDeniedException" in row["detail"]


@pytest.mark.parametrize("invoke_config", ["none", "elsewhere"])
async def test_a_conclusion_drawn_without_the_mappings_says_they_were_not_read(
    setup: Setup, invoke_config: str
) -> None:
    # given: the function's asynchronous invocations send nowhere, or to a queue not polled,
    # and the mappings, which may name the polled queue, cannot be listed
    setup.endpoint.lam.delete_function_event_invoke_config(FunctionName=setup.function)
    if invoke_config == "elsewhere":
        _, elsewhere = setup.queue(f"{setup.prefix}-elsewhere")
        setup.destination(elsewhere)
    denied = aws_error(403, "AccessDeniedException", "not authorized", "rest-json")

    # when
    code, checks = await _doctor_with_mappings(setup, denied)

    # then: the warning drawn from what was read says what was not (before: said as a fact)
    assert code == (0 if invoke_config == "none" else 1)
    check = (
        "lambda destinations" if invoke_config == "none" else f"{setup.prefix}: fed by a function"
    )
    (row,) = [c for c in checks if c["check"] == check]
    assert row["status"] == "warn"
    assert row["detail"].endswith("; not readable, so not counted: the event-source mappings")


async def test_kafka_mappings_are_followed_and_a_kafka_topic_destination_is_left_alone(
    setup: Setup,
) -> None:
    # given: only Kafka mappings, which moto cannot make (its CreateEventSourceMapping takes
    # SQS, Kinesis and DynamoDB sources only), so a proxy lists them as Lambda does: an MSK
    # one whose on-failure destination is a Kafka topic, a self-managed one's the polled queue
    setup.endpoint.lam.delete_function_event_invoke_config(FunctionName=setup.function)
    function_arn = setup.endpoint.lam.get_function(FunctionName=setup.function)["Configuration"][
        "FunctionArn"
    ]
    msk = {
        "UUID": str(uuid.uuid4()),
        "FunctionArn": function_arn,
        "EventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/sales/abcd-1",
        "Topics": ["payments"],
        "DestinationConfig": {"OnFailure": {"Destination": "kafka://payments-failures"}},
    }
    self_managed = {
        "UUID": str(uuid.uuid4()),
        "FunctionArn": function_arn,
        "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka:9092"]}},
        "Topics": ["orders"],
        "DestinationConfig": {"OnFailure": {"Destination": setup.queue_arn}},
    }
    listed = _lambda_answer(200, {"EventSourceMappings": [msk, self_managed]})

    # when
    code, checks = await _doctor_with_mappings(setup, listed)

    # then: the self-managed mapping's row is ok; the Kafka topic gets none (not ours to
    # check), yet counts as a destination: no "none of 1 function has a destination"
    assert code == 0
    rows = [c for c in checks if c["check"].startswith(f"function {setup.function} ")]
    assert [(c["check"], c["status"]) for c in rows] == [
        (f"function {setup.function} on-failure (Kafka topic orders)", "ok")
    ]
    assert [c for c in checks if c["status"] != "ok"] == []


# -- an AWS error a check does not foresee -------------------------------------------------------
# A 5xx after botocore's retries, a throttle, a code no read of a check expects: that check
# fails with a row naming the operation and AWS's code, and every other check still runs. Not
# an access denied (each read foresees it: a warning with the permission), nor a code that
# refuses the keys themselves (InvalidClientTokenId, UnrecognizedClientException: the same).

AGAIN = "AWS answered with an error: run doctor again"
UNFORESEEN = {  # the read: its needle, AWS's answer (status, code, message, protocol), its row
    # the DLQ looked up by name (the polled queue is given by URL: no GetQueueUrl of its own)
    "GetQueueUrl": (
        b"AmazonSQS.GetQueueUrl",
        (500, "InternalFailure", "We encountered an internal error.", "json"),
        ("{prefix}: redrive policy", AGAIN),
    ),
    "ListEventSourceMappings": (
        b"/event-source-mappings",
        (429, "TooManyRequestsException", "Rate exceeded", "rest-json"),
        ("event-source mappings", AGAIN),
    ),
    "ListSubscriptionsByTopic": (
        b"Action=ListSubscriptionsByTopic",
        (500, "InternalError", "Internal error", "query"),
        ("function {prefix}-fn2 on-failure", AGAIN),
    ),
    # an odd parameter, which no retry mends: an SMS handler's read
    "GetSMSAttributes": (
        b"Action=GetSMSAttributes",
        (400, "InvalidParameter", "Invalid parameter: attributes", "query"),
        (
            "handler text",
            "not an answer doctor expects: act on AWS's message, then run doctor again",
        ),
    ),
}


@pytest.mark.parametrize("operation", list(UNFORESEEN))
@pytest.mark.parametrize("output", ["json", "table"])
async def test_an_aws_error_a_check_does_not_foresee_fails_that_check_and_the_rest_run(
    setup: Setup, operation: str, output: str
) -> None:
    # given: a second function sending to a topic the polled queue subscribes to, an SMS
    # handler, and one read answered with an error no check of it expects, each try of it
    # (botocore retries 5xx and throttles: the proxy answers them all)
    sns = setup.endpoint.sns
    topic_arn = sns.create_topic(Name=f"{setup.prefix}-failures")["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=setup.queue_arn)
    setup.endpoint.create_function(f"{setup.prefix}-fn2")
    setup.endpoint.lam.put_function_event_invoke_config(
        FunctionName=f"{setup.prefix}-fn2",
        DestinationConfig={"OnFailure": {"Destination": topic_arn}},
    )
    env = {
        **setup.env(),
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["persist", "text"]}]),
        "LAMBDA_DESTINATIONS_HANDLERS": json.dumps(
            {"text": {"type": "sms", "phone_numbers": ["+14155552671"]}}
        ),
    }
    needle, (status, error, message, protocol), (check, fix) = UNFORESEEN[operation]
    check = check.format(prefix=setup.prefix)
    cutter = AnswerCutter(setup.endpoint.url, needle, http=True)
    cutter.refusals, cutter.refusal = 10, aws_error(status, error, message, protocol)
    args = ["--json"] if output == "json" else []

    # when
    code, out, err, _ = await cli_through(
        cutter, env, "doctor", "--function", f"{setup.prefix}-*", *args
    )

    # then: that check failed, naming the operation and the code; the others said their rows
    # (before: a warning, or an error, saying to allow the read whatever AWS answered, and
    # naming no operation; exit 0 where it was a warning)
    assert b"Traceback" not in err, err.decode()
    assert cutter.refused >= 1
    assert code == 1, out.decode() + err.decode()
    detail = f"{operation} failed: {error}: {message}"
    others = {f"queue {setup.prefix}", f"function {setup.function} on-failure", "store"}
    others |= {"store schema", "handler text"}
    if output == "json":
        checks = json.loads(out)["checks"]
        assert [c for c in checks if c["status"] != "ok"] == [
            {"check": check, "status": "error", "detail": detail, "fix": fix, "unreachable": False}
        ]
        said = {c["check"] for c in checks}
    else:
        lines = out.decode().splitlines()
        (row,) = [line for line in lines if line.startswith(f"{check} ")]
        assert row.split() == [*check.split(), "ERROR", *detail.split(), *fix.split()]
        said = {line.split("  ")[0] for line in lines}
        assert "1 error, 0 warnings" in err.decode()
    assert others <= said


@pytest.mark.parametrize(
    ("status", "code"), [(501, "InternalFailure"), (400, "UnknownOperationException")]
)
async def test_a_read_the_endpoint_does_not_implement_stays_a_warning(
    setup: Setup, status: int, code: str
) -> None:
    # given: an endpoint without ListEventSourceMappings, answering as LocalStack does (501)
    # or with a code that says so
    message = "API action 'ListEventSourceMappings' for service 'lambda' not yet implemented"
    cutter = AnswerCutter(setup.endpoint.url, b"/event-source-mappings", http=True)
    cutter.refusals, cutter.refusal = 10, aws_error(status, code, message, "rest-json")

    # when
    code_, out, err, _ = await cli_through(
        cutter, setup.env(), "doctor", "--function", f"{setup.prefix}-*", "--json"
    )

    # then: a warning that the mappings were not checked, not a failed check saying to run
    # doctor again (which would never mend it) or to allow a permission
    assert b"Traceback" not in err, err.decode()
    assert code_ == 0, out.decode() + err.decode()
    (row,) = [c for c in json.loads(out)["checks"] if c["status"] != "ok"]
    assert (row["check"], row["status"]) == ("event-source mappings", "warn")
    assert message in row["detail"]
    assert "run doctor again" not in row["fix"]


async def _keys_read_uncaught(self: Doctor, aws: Any) -> None:
    """A KMS check part that catches nothing, reading a key that does not exist."""
    await (await aws.client("kms")).describe_key(KeyId="alias/none-such")


async def _sms_read_uncaught(check: str, handler: Any, aws: Any, reads: Any) -> list[Any]:
    """An SMS handler's check that catches nothing, reading a topic that does not exist."""
    arn = "arn:aws:sns:us-east-1:123456789012:none-such"
    await (await aws.client("sns")).get_topic_attributes(TopicArn=arn)
    return []


@pytest.mark.parametrize("part", ["kms keys", "handler text"])
async def test_an_aws_error_a_check_part_lets_through_is_its_failed_row(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, part: str
) -> None:
    # given: one check part that lets an AWS error through, as a read added without its own
    # handling would (every read of doctor's handles its errors now, so the part is the test's,
    # its read real: moto answers it NotFound)
    if part == "kms keys":
        monkeypatch.setattr(Doctor, "_check_keys", _keys_read_uncaught)
    else:
        monkeypatch.setattr(handler_checks, "_sms", _sms_read_uncaught)
    settings = Settings(
        endpoint_url=setup.endpoint.url,
        region="us-east-1",
        store=setup.store_url,
        queues=[setup.queue_url],
        routes=[{"handlers": ["persist", "text"]}],
        handlers={"text": {"type": "sms", "phone_numbers": ["+14155552671"]}},
    )

    # when
    checks = await Doctor(settings, function_glob=f"{setup.prefix}-*").run()

    # then: that part's failed row names the read and AWS's code; the parts after it ran
    (row,) = [c for c in checks if c.status != "ok"]
    assert (row.check, row.status) == (part, "error")
    operation = "DescribeKey" if part == "kms keys" else "GetTopicAttributes"
    assert row.detail.startswith(f"{operation} failed: NotFound")
    assert exit_status(checks) == "failed"
    said = {c.check for c in checks}
    assert {f"function {setup.function} on-failure", "store", "store schema"} <= said


def test_an_endpoint_that_takes_the_connection_and_never_answers_is_its_row_not_a_hang(
    tmp_path: Path,
) -> None:
    # given: an endpoint that accepts connections (the kernel's backlog) and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
            "LAMBDA_DESTINATIONS_QUEUES": "orders-failures",
            "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        }

        # when: doctor runs, given 75 s (it waited out the worker's long-poll read timeout,
        # wait_time + 15 s, for each try of each call: 110 s)
        result = cli("doctor", "--json", env=env, timeout=75)

    # then: the endpoint's row, unreachable (exit 4)
    assert result.returncode == 4, result.stdout + result.stderr
    rows = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    row = rows["aws endpoint"]
    assert row["status"] == "error", row
    assert row["detail"].startswith(f"{endpoint} does not answer (Read timeout"), row


def test_a_polled_queue_that_is_another_polled_queue_s_dlq_is_an_error(setup: Setup) -> None:
    # given: the queue and its own DLQ both polled (before: "no redrive policy: give the queue
    # a RedrivePolicy", which was wrong advice: the worker took back what was dead-lettered)
    dlq = f"{setup.prefix}-dlq"

    # when
    result = setup.doctor(setup.env(setup.queue_url, f"{setup.queue_url}-dlq"), "--json")

    # then: one error naming it, instead of the redrive-policy one
    assert result.returncode == 1, result.stdout + result.stderr
    errors = errors_of(result)
    assert f"{dlq}: redrive policy" not in errors
    row = errors[f"{dlq}: dead-letter queue"]
    assert row["detail"] == (
        f"{dlq} is the dead-letter queue of polled queue {setup.prefix}: the worker would take "
        "back what is dead-lettered there"
    )
    assert row["fix"] == (
        f"take it out of LAMBDA_DESTINATIONS_QUEUES (inspect it with `dlq peek {dlq}`, move "
        f"it back with `dlq redrive {dlq}`)"
    )


def test_a_function_s_own_dlq_polled_is_no_polled_dlq(setup: Setup) -> None:
    # given: a queue a function's DeadLetterConfig could name, no polled queue's redrive target
    url, _ = setup.queue(f"{setup.prefix}-fndlq")

    result = setup.doctor(setup.env(setup.queue_url, url), "--json")

    assert not [c for c in checks_of(result) if c["check"].endswith(": dead-letter queue")]


def test_a_profile_that_is_not_in_the_aws_config_file_is_named_as_why_no_region(
    setup: Setup, profile_region: dict[str, str]
) -> None:
    # given: AWS_PROFILE names a profile the AWS config file does not have, no region elsewhere
    env = {**setup.env(), **profile_region, "AWS_PROFILE": "opps"}
    del env["LAMBDA_DESTINATIONS_REGION"]

    # when
    done = cli("doctor", "--json", env=env)

    # then: the region's row names the profile and its fix (before: "no AWS region is
    # configured", "set AWS_REGION", as if no profile were named)
    checks = {c["check"]: c for c in checks_of(done)}
    assert checks["aws region"]["status"] == "error"
    assert "the AWS profile 'opps' (AWS_PROFILE) is not in" in checks["aws region"]["detail"]
    assert checks["aws region"]["fix"] == "fix AWS_PROFILE, or set AWS_REGION"
