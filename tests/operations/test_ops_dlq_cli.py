"""`dlq peek|redrive|purge` against real queues on the moto server, run as a user runs them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ops_helpers import (
    ENTRY,
    cli,
    cli_through,
    count_messages,
    ctrl_c_at_the_question,
    error_lines,
    failure_body,
    fifo_queue_with_dlq,
    group_ids,
    receive_all,
    send_all,
)

from lambda_destinations.cli.dlq_redrive import _report_redrive
from lambda_destinations.operations.redrive import move_task_available
from lambda_destinations.simulate import kinesis_failure, legacy_dlq, success_record
from lambda_destinations.store import Store
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome
from lambda_destinations.worker.queues import REASON_ATTRIBUTE, REDRIVE_ATTRIBUTE, SOURCE_ATTRIBUTE
from tcp_proxy import AnswerCutter, aws_error, kms_refusal

CUSTOM = {"Tenant": {"DataType": "String", "StringValue": "acme"}}
# One mover where a test counts messages exactly: with several concurrent receivers and
# deleters, moto now and then hands out a message it has just deleted (see EMULATORS.md), which
# is then moved twice. The 400-message test keeps the default movers and allows for that.
ONE_MOVER = ("--concurrency", "1")


def quarantined(source_url: str, reason: str = "decode error: body is not JSON") -> dict[str, Any]:
    """Message attributes of a message the worker quarantined from ``source_url``."""
    return {
        **CUSTOM,
        REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason},
        SOURCE_ATTRIBUTE: {"DataType": "String", "StringValue": source_url},
    }


def bodies_of(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["Body"] for m in messages)


# -- peek -------------------------------------------------------------------------------------


def test_peek_decodes_each_message_and_leaves_it_there(sqs, make_queue, cli_env) -> None:
    # given: a DLQ holding a failure record, a success, a legacy DLQ message, a poison message
    url, dlq = make_queue("peek")
    failure, record = failure_body(1, function="orders-api", minutes_ago=5)
    legacy = legacy_dlq(random.Random(2))
    sqs.send_message(QueueUrl=dlq, MessageBody=failure)
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(success_record(random.Random(3))))
    sqs.send_message(QueueUrl=dlq, MessageBody=legacy.body, MessageAttributes=legacy.attributes)
    sqs.send_message(QueueUrl=dlq, MessageBody="not json", MessageAttributes=quarantined(url))

    # when
    as_json = cli("dlq", "peek", dlq, "--json", env=cli_env)
    table = cli("dlq", "peek", dlq.rsplit("/", 1)[1], env=cli_env)

    # then: every message described
    assert as_json.returncode == 0, as_json.stderr
    described = {d["kind"]: d for d in json.loads(as_json.stdout)}
    assert set(described) == {"invocation", "legacy-dlq", "not-a-record"}
    assert len(json.loads(as_json.stdout)) == 4
    # one shape for every row, a message that does not decode included (its fields null)
    assert len({tuple(d) for d in json.loads(as_json.stdout)}) == 1
    failed = next(d for d in json.loads(as_json.stdout) if d.get("condition") == "RetriesExhausted")
    assert failed["function_name"] == "orders-api"
    assert failed["error_type"] == "TimeoutError"
    assert failed["request_id"] == record["requestContext"]["requestId"]
    assert failed["receive_count"] == 0
    assert failed["age_seconds"] >= 0
    poison = described["not-a-record"]
    assert poison["quarantine_reason"] == "decode error: body is not JSON"
    assert poison["source_queue"] == url
    assert poison["decode_error"].startswith("body is not JSON")
    assert poison["request_id"] is poison["function_name"] is poison["timestamp"] is None
    assert described["legacy-dlq"]["request_id"] == legacy.key.split(":")[0]
    assert table.returncode == 0, table.stderr
    assert "orders-api" in table.stdout
    assert "TimeoutError: Task timed out" in table.stdout
    assert "[quarantined: decode error: body is not JSON]" in table.stdout
    # and nothing was consumed: all four are visible again at once
    assert len(receive_all(sqs, dlq)) == 4


def test_peek_limits_what_it_shows(sqs, make_queue, cli_env) -> None:
    _, dlq = make_queue("peek-limit")
    send_all(sqs, dlq, [f"m{i}" for i in range(25)])

    result = cli("dlq", "peek", dlq, "--limit", "12", "--json", env=cli_env)

    assert result.returncode == 0, result.stderr
    assert len({d["message_id"] for d in json.loads(result.stdout)}) == 12
    assert count_messages(sqs, dlq) == 25


def test_peek_of_an_empty_queue_says_so_in_words(sqs, make_queue, cli_env) -> None:
    # given: an empty DLQ (it said "about 0 messages visible, 0 in flight; showing 0"), and
    # one whose only message is in flight
    _, empty = make_queue("peek-empty")
    _, busy = make_queue("peek-busy")
    send_all(sqs, busy, ["m"])
    assert sqs.receive_message(QueueUrl=busy, VisibilityTimeout=60)["Messages"]

    # when
    none = cli("dlq", "peek", empty, env=cli_env)
    taken = cli("dlq", "peek", busy, env=cli_env)

    # then: one line each, no table, and what to do about the one in flight
    assert none.returncode == 0, none.stderr
    assert none.stdout == ""
    assert none.stderr.strip() == (
        f"{empty.rsplit('/', 1)[1]} shows no messages (visible, in flight or delayed): "
        "nothing to show"
    )
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout == ""
    assert taken.stderr.strip() == (
        f"{busy.rsplit('/', 1)[1]} shows no visible messages, 1 in flight and 0 delayed (they "
        "show again when their visibility timeout or delay ends): nothing to show now; run it "
        "again then"
    )


def test_peek_of_a_fifo_queue_says_why_it_shows_fewer_of_a_group(sqs, cli_env) -> None:
    # given: a FIFO queue holding 12 messages of one message group
    url = sqs.create_queue(
        QueueName=f"peek-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    try:
        for n in range(12):
            sqs.send_message(
                QueueUrl=url,
                MessageBody=f"m{n}",
                MessageGroupId="one",
                MessageDeduplicationId=str(n),
            )

        # when: peeked at, up to 20
        result = cli("dlq", "peek", url, "--limit", "20", "--json", env=cli_env)
        text = cli("dlq", "peek", url, "--limit", "20", env=cli_env)
    finally:
        sqs.delete_queue(QueueUrl=url)

    # then: SQS hands out the group's first ten only, while this look holds them; the line says
    # why, rather than leaving two messages seemingly gone
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 10
    assert text.returncode == 0, text.stderr
    why = "showing 10 (a FIFO queue shows the next messages of a group only once those before"
    assert f"{why} them are deleted)" in text.stderr


# -- redrive ----------------------------------------------------------------------------------


@pytest.mark.parametrize("to", [False, True], ids=["its-source-queue", "to"])
def test_redrive_of_a_fifo_dlq_keeps_each_message_in_its_group(sqs, cli_env, to: bool) -> None:
    # given: a FIFO queue whose FIFO DLQ holds three messages of two groups
    url, dlq = fifo_queue_with_dlq(sqs, f"redrive-{uuid.uuid4().hex[:8]}", ["a", "b", "a"])

    # when
    result = cli("dlq", "redrive", dlq, *(["--to", url] if to else []), "--yes", env=cli_env)

    # then: each sent with its group id, which SQS wants of what a FIFO queue is sent
    assert result.returncode == 0, result.stderr
    assert group_ids(sqs, url) == ["a", "a", "b"]
    assert count_messages(sqs, dlq) == 0


def test_a_fifo_message_redriven_within_its_deduplication_interval_is_not_lost(
    sqs, cli_env
) -> None:
    # given: a FIFO queue whose DLQ holds a message dead-lettered minutes after it was sent,
    # within the five minutes SQS drops another send of its deduplication id ("accepted
    # successfully but not delivered"). moto remembers an id while a message of it is in the
    # queue: one stays there, standing for SQS's memory of the first send.
    url, dlq = fifo_queue_with_dlq(sqs, f"dedup-{uuid.uuid4().hex[:8]}", ["a"])
    sqs.send_message(
        QueueUrl=url, MessageBody="another", MessageGroupId="b", MessageDeduplicationId="d-0"
    )

    # when
    result = cli("dlq", "redrive", dlq, "--no-move-task", env=cli_env)

    # then: it is in its queue, not deleted from the DLQ after a send SQS dropped (before: sent
    # with its first deduplication id, counted moved, and gone from both)
    assert result.returncode == 0, result.stderr
    assert group_ids(sqs, url) == ["a", "b"]
    assert count_messages(sqs, dlq) == 0


def test_redrive_puts_messages_back_in_their_source_queue_whole(sqs, make_queue, cli_env) -> None:
    # given: dead-lettered messages with message attributes
    url, dlq = make_queue("redrive")
    bodies = [failure_body(n, minutes_ago=n)[0] for n in range(15)]
    send_all(sqs, dlq, bodies, MessageAttributes=quarantined(url))

    # when
    result = cli("dlq", "redrive", dlq, *ONE_MOVER, env=cli_env)

    # then: moved by us (moto has no message move task), all of them, attributes intact
    assert result.returncode == 0, result.stderr
    assert "message move task is not available here" in result.stderr
    assert result.stdout.strip().startswith("moved 15")
    moved = receive_all(sqs, url)
    assert bodies_of(moved) == sorted(bodies)
    (run,) = {m["MessageAttributes"][REDRIVE_ATTRIBUTE]["StringValue"] for m in moved}
    for message in moved:
        marked = {REDRIVE_ATTRIBUTE: {"DataType": "String", "StringValue": run}}
        assert message["MessageAttributes"] == {**quarantined(url), **marked}
    assert count_messages(sqs, dlq) == 0


def test_dry_run_moves_nothing(sqs, make_queue, cli_env) -> None:
    url, dlq = make_queue("redrive-dry")
    send_all(sqs, dlq, [f"m{i}" for i in range(7)])

    result = cli("dlq", "redrive", dlq, "--dry-run", env=cli_env)
    as_json = cli("dlq", "redrive", dlq, "--dry-run", "--json", env=cli_env)

    # then: it says which way they would go, here, since moto has no message move task (it
    # said "by SQS's message move task (or here, where the endpoint has none)" everywhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"would move about 7 messages from {dlq.rsplit('/', 1)[1]} to {url.rsplit('/', 1)[1]}, "
        "here, sending each one before deleting it (the endpoint has no SQS message move task)\n"
    )
    report = json.loads(as_json.stdout)
    assert (report["method"], report["move_task"], report["dry_run"]) == ("moved-here", False, True)
    assert count_messages(sqs, dlq) == 7
    assert count_messages(sqs, url) == 0


def test_a_dry_run_with_a_limit_says_how_many_it_would_move(sqs, make_queue, cli_env) -> None:
    # given: a DLQ of 7 messages
    _url, dlq = make_queue("redrive-dry-limit")
    send_all(sqs, dlq, [f"m{i}" for i in range(7)])

    # when: a dry run plans a redrive of at most 2
    result = cli("dlq", "redrive", dlq, "--limit", "2", "--dry-run", env=cli_env)
    as_json = cli("dlq", "redrive", dlq, "--limit", "2", "--dry-run", "--json", env=cli_env)

    # then: it says 2, not the DLQ's 7 (which is what it said)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"would move about 2 messages from {dlq.rsplit('/', 1)[1]} ")
    assert json.loads(as_json.stdout)["messages"] == 2
    assert count_messages(sqs, dlq) == 7


class _MoveTaskAnswers:
    """An SQS client's ListMessageMoveTasks, answering or refusing as told: moto has no such
    operation (it is what makes the endpoint-without-one case above), and no server the tests
    start has one that answers."""

    def __init__(self, refusal: tuple[str, int] | None) -> None:
        self.refusal = refusal

    async def list_message_move_tasks(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs == {"SourceArn": "arn:aws:sqs:us-east-1:1:q-dlq", "MaxResults": 1}
        if self.refusal is None:
            return {"Results": []}
        code, status = self.refusal
        answer: Any = {
            "Error": {"Code": code, "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise ClientError(answer, "ListMessageMoveTasks")


@pytest.mark.parametrize(
    ("refusal", "available", "how"),
    [
        (None, True, "by SQS's message move task\n"),
        (("UnsupportedOperation", 400), False, "(the endpoint has no SQS message move task)\n"),
        (("InternalError", 500), False, "(the endpoint has no SQS message move task)\n"),
        (("AccessDenied", 403), None, "by SQS's message move task (or here, if the endpoint "),
    ],
)
def test_a_dry_run_redrive_says_whether_sqs_s_move_task_would_move_them(
    refusal: tuple[str, int] | None,
    available: bool | None,
    how: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: an endpoint that lists move tasks, has none, or refuses these credentials
    sqs = _MoveTaskAnswers(refusal)

    # when: a dry run asks, and reports its plan
    found = asyncio.run(move_task_available(sqs, "arn:aws:sqs:us-east-1:1:q-dlq"))
    method = "moved-here" if found is False else "move-task"
    plan = {"dlq": "u/q-dlq", "messages": 3, "targets": ["u/q"], "method": method}
    _report_redrive({**plan, "move_task": found, "dry_run": True}, as_json=False)

    # then
    assert found is available
    line = capsys.readouterr().out
    assert line.startswith("would move about 3 messages from q-dlq to q, ")
    assert how in line


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ((), "redrive"),
        (("--dry-run",), "redrive"),
        (("--reinvoke",), "re-invoke"),
        (("--reinvoke", "--dry-run"), "re-invoke"),
    ],
)
def test_a_redrive_of_a_dlq_that_shows_no_message_says_so_and_asks_nothing(
    sqs, make_queue, cli_env, options: tuple[str, ...], what: str
) -> None:
    # given: an empty DLQ, and no terminal to answer a question (no --yes)
    _, dlq = make_queue("empty")
    assert cli("migrate", env=cli_env).returncode == 0
    name = dlq.rsplit("/", 1)[1]

    # when
    result = cli("dlq", "redrive", dlq, *options, env=cli_env)
    as_json = cli("dlq", "redrive", dlq, *options, "--json", env=cli_env)

    # then: one line, exit 0 (before: --reinvoke asked to invoke "about 0 messages", exit 6
    # unanswered; a redrive tried the move task, then moved 0 with a progress bar)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"{name} shows no messages (visible, in flight or delayed): nothing to {what}\n"
    )
    assert result.stderr == ""
    # and --json reports the nothing it did, in the report's own shape
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    if what == "re-invoke":
        assert report == {
            "invoked": 0,
            "would_invoke": 0,
            "errors": 0,
            "deleted": 0,
            "unread": 0,
            "messages": [],
        }
    else:
        assert (report["method"], report["messages"], report["moved"]) == (None, 0, 0)
        assert report["ok"] is True


@pytest.mark.parametrize(("options", "what"), [((), "redrive"), (("--reinvoke",), "re-invoke")])
def test_a_redrive_of_a_dlq_whose_messages_are_all_in_flight_or_delayed_says_so_and_exits_1(
    sqs, make_queue, cli_env, options: tuple[str, ...], what: str
) -> None:
    # given: a DLQ whose two messages are in flight (received by another consumer, hidden for
    # ten minutes) and one delayed for fifteen: none visible
    url, dlq = make_queue("all-hidden")
    assert cli("migrate", env=cli_env).returncode == 0
    name = dlq.rsplit("/", 1)[1]
    send_all(sqs, dlq, ["m1", "m2"])
    held = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=600)
    assert len(held["Messages"]) == 2
    sqs.send_message(QueueUrl=dlq, MessageBody="m3", DelaySeconds=900)

    # when
    result = cli("dlq", "redrive", dlq, *options, env=cli_env)
    as_json = cli("dlq", "redrive", dlq, *options, "--json", env=cli_env)
    dry_run = cli("dlq", "redrive", dlq, *options, "--dry-run", env=cli_env)

    # then: one line naming them, no question, exit 1: messages stay behind (before: --reinvoke
    # asked to invoke "about 0 messages" and exited 6 unanswered; a redrive moved "about 0
    # messages" behind a progress bar, or ran SQS's move task over nothing and exited 0)
    expected = (
        f"{name} shows no visible messages, 2 in flight and 1 delayed (they show again when "
        f"their visibility timeout or delay ends): nothing to {what} now; run it again then\n"
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, expected, "")
    assert (dry_run.returncode, dry_run.stdout, dry_run.stderr) == (0, expected, "")
    assert as_json.returncode == 1, as_json.stderr
    report = json.loads(as_json.stdout)
    if what == "redrive":
        assert (report["method"], report["moved"], report["hidden"]) == (None, 0, 3)
        assert report["ok"] is False
    else:
        assert (report["invoked"], report["messages"]) == (0, [])
    # and nothing moved: the target holds nothing, the DLQ still counts its three
    assert count_messages(sqs, url) == 0
    attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_dlq_of_no_queue_needs_to(sqs, make_queue, cli_env) -> None:
    # given: a function's DLQ (no SQS queue names it in a redrive policy)
    function_dlq, _ = make_queue("fn-dlq", dlq=False)
    target, _ = make_queue("target", dlq=False)
    send_all(sqs, function_dlq, [f"m{i}" for i in range(5)])

    without = cli("dlq", "redrive", function_dlq, *ONE_MOVER, env=cli_env)
    with_to = cli(
        "dlq", "redrive", function_dlq, "--to", target.rsplit("/", 1)[1], *ONE_MOVER, env=cli_env
    )

    assert without.returncode == 2
    assert "is not the dead-letter queue of any SQS queue" in error_lines(without)[0]
    assert with_to.returncode == 0, with_to.stderr
    assert "message move task" not in with_to.stderr  # no source queue: moved here at once
    assert bodies_of(receive_all(sqs, target)) == [f"m{i}" for i in range(5)]
    assert count_messages(sqs, function_dlq) == 0


def test_a_redrive_to_the_dlq_itself_is_refused_in_one_line(sqs, make_queue, cli_env) -> None:
    # given: a DLQ with messages
    url, dlq = make_queue("self")
    send_all(sqs, dlq, [f"m{i}" for i in range(3)])

    # when: --to names the DLQ itself
    result = cli("dlq", "redrive", dlq, "--to", dlq.rsplit("/", 1)[1], *ONE_MOVER, env=cli_env)

    # then: one line, exit 2, nothing moved (before, each message was sent back into the DLQ
    # and reported as "came back (quarantined again)")
    assert result.returncode == 2, result.stderr
    assert "is the DLQ being redriven" in error_lines(result)[0]
    assert count_messages(sqs, dlq) == 3
    assert count_messages(sqs, url) == 0


def dlq_of_two_queues(sqs: Any, make_queue: Any) -> tuple[str, str, str]:
    """A DLQ whose redrive policy two queues name: (its URL, theirs)."""
    dlq, _ = make_queue("shared-dlq", dlq=False)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    first, _ = make_queue("first", dlq=False)
    second, _ = make_queue("second", dlq=False)
    for url in (first, second):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})
    return dlq, first, second


def test_a_dlq_of_several_queues_sends_each_message_home(sqs, make_queue, cli_env) -> None:
    # given: one DLQ for two queues; quarantined messages say where they came from
    dlq, first, second = dlq_of_two_queues(sqs, make_queue)
    sqs.send_message(QueueUrl=dlq, MessageBody="a", MessageAttributes=quarantined(first))
    sqs.send_message(QueueUrl=dlq, MessageBody="b", MessageAttributes=quarantined(second))
    sqs.send_message(QueueUrl=dlq, MessageBody="nowhere")

    # when
    result = cli("dlq", "redrive", dlq, "--json", *ONE_MOVER, env=cli_env)

    # then: two went home; the third stays, visible again, and the exit status says so
    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["moved"] == 2
    assert list(outcome["left_in_dlq"].values()) == [1]
    assert bodies_of(receive_all(sqs, first)) == ["a"]
    assert bodies_of(receive_all(sqs, second)) == ["b"]
    assert bodies_of(receive_all(sqs, dlq)) == ["nowhere"]


def test_a_source_queue_is_known_by_its_account_and_name_whatever_host_the_worker_used(
    sqs, make_queue, cli_env
) -> None:
    # given: one DLQ for two queues, and a worker that reached them by another host than this
    # command's endpoint (a container's `localstack:4566`, the host's `localhost:4566`): its
    # LambdaDestinations.SourceQueue spells the URL so
    dlq, first, second = dlq_of_two_queues(sqs, make_queue)
    assert "127.0.0.1" in first, first  # the test's endpoint, which the worker named otherwise

    def as_the_worker_spelt_it(url: str) -> str:
        return url.replace("http://127.0.0.1", "https://worker-side.example")

    sqs.send_message(
        QueueUrl=dlq, MessageBody="a", MessageAttributes=quarantined(as_the_worker_spelt_it(first))
    )
    sqs.send_message(
        QueueUrl=dlq, MessageBody="b", MessageAttributes=quarantined(as_the_worker_spelt_it(second))
    )
    elsewhere = first.rsplit("/", 1)[0] + "/retired-queue"
    sqs.send_message(QueueUrl=dlq, MessageBody="c", MessageAttributes=quarantined(elsewhere))

    # when
    result = cli("dlq", "redrive", dlq, "--json", *ONE_MOVER, env=cli_env)

    # then: each went home; the one naming a queue that is no source stays, the reason naming it
    # (not "no LambdaDestinations.SourceQueue", which it has)
    assert result.returncode == 1, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["moved"] == 2, outcome
    assert outcome["left_in_dlq"] == {
        "its LambdaDestinations.SourceQueue, retired-queue, is none of the DLQ's source queues: "
        "use --to": 1
    }
    assert bodies_of(receive_all(sqs, first)) == ["a"]
    assert bodies_of(receive_all(sqs, second)) == ["b"]
    assert bodies_of(receive_all(sqs, dlq)) == ["c"]


def test_limit_moves_only_so_many(sqs, make_queue, cli_env) -> None:
    url, dlq = make_queue("redrive-limit")
    send_all(sqs, dlq, [f"m{i}" for i in range(23)])

    result = cli("dlq", "redrive", dlq, "--limit", "5", *ONE_MOVER, env=cli_env)

    assert result.returncode == 0, result.stderr
    assert len(receive_all(sqs, url)) == 5
    assert count_messages(sqs, dlq) == 18


def test_messages_hidden_by_someone_else_are_reported_and_the_run_is_not_clean(
    sqs, make_queue, cli_env
) -> None:
    # given: 6 messages in a DLQ, 2 of them received (hidden) by someone else, as an
    # interrupted redrive leaves them
    url, dlq = make_queue("hidden")
    send_all(sqs, dlq, [f"message-{i}" for i in range(6)])
    held = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=2, VisibilityTimeout=60)
    assert len(held["Messages"]) == 2

    # when
    result = cli("dlq", "redrive", dlq, *ONE_MOVER, "--json", env=cli_env)
    text = cli("dlq", "redrive", dlq, *ONE_MOVER, env=cli_env)

    # then: the 4 it saw are moved, the 2 it could not see are reported, and neither run says
    # it is done (exit 1), the second one (which sees none visible) in one line naming what to do
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["moved"], report["hidden"]) == (4, 2)
    assert count_messages(sqs, url) == 4
    assert text.returncode == 1
    assert "shows no visible messages, 2 in flight" in text.stdout
    assert "visibility timeout or delay ends): nothing to redrive now; run it again" in text.stdout


@pytest.mark.slow
# moto answers SQS calls in time proportional to the queue's depth (~30 messages/s at 1,000):
# filling, moving and reading back 1,000 messages took about 90 s on a fast machine and 290 s
# alone on a slower 2-core one (4 December), the suite's longest test; 400 (40 batches for the
# default movers, the races below included) take about a sixth of that.
@pytest.mark.timeout(600)
def test_a_redrive_of_400_messages_moves_all_400(sqs, make_queue, cli_env) -> None:
    url, dlq = make_queue("redrive-400")
    bodies = [f'{{"n": {i}, "pad": "{uuid.uuid4().hex}"}}' for i in range(400)]
    send_all(sqs, dlq, bodies)

    result = cli("dlq", "redrive", dlq, "--json", env=cli_env, timeout=500)

    report = json.loads(result.stdout)
    in_target = drain(sqs, url)
    # every one of the 400 is in the target once: with several movers, moto now and then
    # hands out a message it has just deleted (see EMULATORS.md); the redrive knows it moved
    # that one already and deletes it again instead of resending it
    assert sorted(in_target) == sorted(bodies)
    assert report["moved"] == 400
    assert (report["send_failures"], report["duplicated"], report["in_doubt"]) == ({}, 0, 0)
    assert report["left_in_dlq"] == {}
    # the same race now and then leaves a deleted message in flight in moto's DLQ, where no
    # receive shows it and it comes back once its visibility ends: the run says so (hidden,
    # exit 1), and only then is anything left in the DLQ
    assert result.returncode == (1 if report["hidden"] else 0), result.stderr
    assert count_messages(sqs, dlq) == 0 or report["hidden"] > 0


def test_a_redrive_while_the_worker_quarantines_them_back_ends_and_moves_each_once(
    sqs, make_queue, cli_env, tmp_path
) -> None:
    # given: three poison messages in the DLQ, and a worker running on their source queue
    url, dlq = make_queue("poison-loop")
    poison = [f"not json {n}" for n in range(3)]
    send_all(sqs, dlq, poison, MessageAttributes=quarantined(url))
    worker = subprocess.Popen(
        [*ENTRY, "run"],
        env={**os.environ, **cli_env, "LAMBDA_DESTINATIONS_QUEUES": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # when: a redrive runs while the worker sends each one straight back
        result = cli("dlq", "redrive", dlq, "--json", env=cli_env, timeout=120)
        deadline = time.monotonic() + 60
        while count_messages(sqs, dlq) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    # then: it ended, having moved the three once; whatever came back meanwhile was left
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["moved"] == 3
    assert 0 <= report["came_back"] <= 3
    back = receive_all(sqs, dlq)
    assert bodies_of(back) == sorted(poison)
    assert count_messages(sqs, url) == 0


async def test_messages_that_come_back_during_a_redrive_are_left_and_counted(
    sqs, make_queue, endpoint_url
) -> None:
    # given: a DLQ of three messages, and two that this same run moved once already and that
    # were quarantined back (they carry its mark)
    from aiobotocore.session import get_session

    from lambda_destinations.operations.redrive import move_messages, target_chooser

    url, dlq = make_queue("came-back")
    send_all(sqs, dlq, ["a", "b", "c"])
    mark = {REDRIVE_ATTRIBUTE: {"DataType": "String", "StringValue": "run-1"}}
    send_all(sqs, dlq, ["back-1", "back-2"], MessageAttributes=mark)

    # when
    async with get_session().create_client(
        "sqs", endpoint_url=endpoint_url, region_name="us-east-1"
    ) as client:
        report = await move_messages(
            client, dlq, target_chooser(url, [url]), concurrency=1, run="run-1"
        )

    # then: only the three moved; the two stay in the DLQ, counted as come back
    assert (report.moved, report.came_back, dict(report.left)) == (3, 2, {})
    assert bodies_of(receive_all(sqs, url)) == ["a", "b", "c"]
    assert bodies_of(receive_all(sqs, dlq)) == ["back-1", "back-2"]


class _HeldCall:
    """An SQS client whose ``operation`` waits for ``go`` (before the call reaches SQS, or
    after it, its answer held back) and says when one has begun (``begun``)."""

    def __init__(self, client: Any, operation: str, *, after: bool) -> None:
        self._client, self._operation, self._after = client, operation, after
        self.begun, self.go = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name != self._operation:
            return call

        async def held(**kwargs: Any) -> Any:
            self.begun.set()
            if self._after:
                answer = await call(**kwargs)
                await self.go.wait()
                return answer
            await self.go.wait()
            return await call(**kwargs)

        return held


@pytest.mark.parametrize(
    ("operation", "after", "every_task"),
    [
        # Ctrl-C: asyncio.run cancels the run's task; SQS has taken the batch, not answered
        ("send_message_batch", True, False),
        # SIGTERM: asyncio.run cancels every task at once, the delete's too, before it is sent
        ("delete_message_batch", False, True),
    ],
)
async def test_a_redrive_interrupted_mid_batch_finishes_that_batch_and_doubles_nothing(
    sqs, make_queue, endpoint_url, operation: str, after: bool, every_task: bool
) -> None:
    # given: a DLQ of ten messages, and a redrive whose send (or delete) of them is under way
    from aiobotocore.session import get_session

    from lambda_destinations.operations.redrive import MoveReport, move_messages, target_chooser

    url, dlq = make_queue("cut-mid-batch")
    bodies = [f"message-{i}" for i in range(10)]
    send_all(sqs, dlq, bodies)
    report = MoveReport()
    async with get_session().create_client(
        "sqs", endpoint_url=endpoint_url, region_name="us-east-1"
    ) as client:
        held = _HeldCall(client, operation, after=after)
        run = asyncio.ensure_future(
            move_messages(held, dlq, target_chooser(url, [url]), concurrency=1, report=report)
        )
        await asyncio.wait_for(held.begun.wait(), 10)

        # when: the run is interrupted there, and SQS answers after; what was cancelled is
        # awaited as asyncio.run awaits it
        tasks = asyncio.all_tasks() - {asyncio.current_task()} if every_task else {run}
        for task in tasks:
            task.cancel()
        held.go.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert run.cancelled()

    # then: the batch was finished: in the target once, gone from the DLQ (none hidden there
    # for the next run to send again), and counted as moved
    assert bodies_of(receive_all(sqs, url)) == bodies
    assert count_messages(sqs, dlq) == 0
    assert report.moved == 10


async def test_a_send_whose_answer_is_lost_is_left_in_doubt_and_never_sent_twice(
    sqs, make_queue, cli_env, endpoint_url
) -> None:
    # given: 20 messages in a DLQ, and a TCP proxy that lets the first SendMessageBatch reach
    # SQS and then drops the connection before its answer comes back
    url, dlq = make_queue("lost-answer")
    bodies = [f"message-{i}" for i in range(20)]
    send_all(sqs, dlq, bodies)
    cutter = AnswerCutter(endpoint_url, b"SendMessageBatch")
    cutter.cuts = 1

    # when: a redrive runs through the proxy, as a user runs it
    returncode, out, _, _ = await cli_through(
        cutter, cli_env, "dlq", "redrive", dlq, "--json", *ONE_MOVER
    )

    # then: the batch whose answer was lost was not sent again (botocore would have retried it);
    # it is in the target once, left in the DLQ too, reported in doubt, and the exit says so
    assert cutter.cut == 1
    report = json.loads(out)
    assert returncode == 1, out.decode()[-600:]
    assert (report["moved"], report["in_doubt"]) == (10, 10)
    in_target = bodies_of(receive_all(sqs, url))
    assert in_target == sorted(bodies)
    left = bodies_of(receive_all(sqs, dlq))
    assert len(left) == 10
    assert set(left) <= set(bodies)


def _no_messages() -> bytes:
    """SQS's answer to a ReceiveMessage that finds none (another consumer took them)."""
    body = b"{}"
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
        "x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("as_json", [False, True])
async def test_a_redrive_that_receives_nothing_says_nothing_was_moved(
    sqs, make_queue, cli_env, endpoint_url, as_json: bool
) -> None:
    # given: a DLQ that shows a message, which another consumer takes before the redrive's
    # receives (each answers none)
    _, dlq = make_queue("taken")
    send_all(sqs, dlq, ["m1"])
    cutter = AnswerCutter(endpoint_url, b"AmazonSQS.ReceiveMessage", http=True)
    cutter.refusals = 1000
    cutter.refusal = _no_messages()

    # when
    json_flag = ("--json",) if as_json else ()
    returncode, out, err, _ = await cli_through(
        cutter, cli_env, "dlq", "redrive", dlq, "--no-move-task", *json_flag, *ONE_MOVER
    )

    # then: exit 0, and one plain line that nothing was moved (before: "moved 0"); --json keeps
    # its report's shape
    assert returncode == 0, err.decode()[-600:]
    if as_json:
        report = json.loads(out)
        assert (report["method"], report["moved"], report["by_target"]) == ("moved-here", 0, {})
        assert report["ok"] is True
    else:
        name = dlq.rsplit("/", 1)[1]
        assert out.decode() == f"received no message from {name}: nothing moved\n"


# -- messages near their queue's size limit ---------------------------------------------------

SMALL_QUEUE = 1024  # bytes: the least MaximumMessageSize SQS allows


def sqs_size(body: str, attributes: dict[str, Any]) -> int:
    """A message's size as SQS weighs it against a queue's MaximumMessageSize: its body's UTF-8
    bytes, and each message attribute's name, data type and value (a Binary one's bytes)."""
    size = len(body.encode())
    for name, value in attributes.items():
        data = value.get("BinaryValue", value.get("StringValue", "").encode())
        if isinstance(data, str):  # base64, as SQS's JSON has it
            data = base64.b64decode(data)
        size += len(name.encode()) + len(value["DataType"].encode()) + len(data)
    return size


def refusing_entries_over(limit: int) -> Callable[[bytes], bytes | None]:
    """An ``AnswerCutter.answer``: SQS's answer to a SendMessageBatch whose entries are too long
    for a queue's MaximumMessageSize of ``limit`` (moto weighs the body alone): each one failed,
    InvalidParameterValue. A batch whose entries all fit goes on to moto; one of both kinds is
    refused whole, in a way no command takes for SQS's, as this proxy cannot split it."""

    def answer(request: bytes) -> bytes | None:
        entries = json.loads(request.partition(b"\r\n\r\n")[2])["Entries"]
        over = [
            e["Id"]
            for e in entries
            if sqs_size(e["MessageBody"], e.get("MessageAttributes", {})) > limit
        ]
        if not over:
            return None
        if len(over) < len(entries):
            return aws_error(400, "TestProxyCannotSplitBatch", "send one kind only", "json")
        reason = (
            "One or more parameters cannot be validated. "
            f"Reason: Message must be shorter than {limit} bytes."
        )
        failed = [
            {"Id": i, "SenderFault": True, "Code": "InvalidParameterValue", "Message": reason}
            for i in over
        ]
        body = json.dumps({"Successful": [], "Failed": failed}).encode()
        head = [
            "HTTP/1.1 200 OK",
            "Content-Type: application/x-amz-json-1.0",
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    return answer


# The run's mark as SQS weighs it: name, type, and a run id (32 hex digits).
MARK = len(REDRIVE_ATTRIBUTE) + len("String") + 32


def near_the_limit(url: str, spare: int) -> tuple[str, dict[str, Any]]:
    """A body and message attributes (the quarantine's, and a Binary one) that fit a queue of
    SMALL_QUEUE bytes with ``spare`` bytes to spare; the body mostly of two-byte characters:
    SQS weighs bytes, a Binary value's own, not their base64."""
    attributes = {**quarantined(url), "Digest": {"DataType": "Binary", "BinaryValue": bytes(90)}}
    room = SMALL_QUEUE - spare - sqs_size(f"not json {spare} ", attributes)
    return f"not json {spare} " + "é" * (room // 2) + "x" * (room % 2), attributes


@pytest.mark.parametrize("to", [False, True], ids=["its-source-queue", "to"])
async def test_a_message_that_fits_its_queue_only_without_the_run_s_mark_is_moved_without_it(
    sqs, make_queue, cli_env, endpoint_url, to
) -> None:
    # given: a queue of 1 KiB messages at most, and in its DLQ two messages that fit it, one with
    # 20 bytes to spare, too few for the run's mark, the other with just enough; a proxy answers
    # as SQS does to a message too long for the queue
    url, dlq = make_queue("near-limit")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(SMALL_QUEUE)})
    tight, attributes = near_the_limit(url, spare=20)
    roomy, _ = near_the_limit(url, spare=MARK)
    send_all(sqs, dlq, [tight, roomy], MessageAttributes=attributes)
    cutter = AnswerCutter(endpoint_url, b"SendMessageBatch", http=True)
    cutter.answer = refusing_entries_over(SMALL_QUEUE)

    # when
    returncode, out, err, _ = await cli_through(
        cutter, cli_env, "dlq", "redrive", dlq, "--json", *ONE_MOVER, *(("--to", url) if to else ())
    )

    # then: both moved, whole; the one with room for the run's mark carries it, the other not
    # (with it, SQS refused it on every run, and it stayed in the DLQ for good); the queue's
    # limit read once, or not again with --to
    assert returncode == 0, (out + err).decode()[-900:]
    assert json.loads(out)["moved"] == 2
    assert cutter.refused == 0
    reads = [r for r in cutter.requests if b'"MaximumMessageSize"' in r]
    assert len(reads) == (0 if to else 1)
    moved = {m["Body"]: m["MessageAttributes"] for m in receive_all(sqs, url)}
    assert moved[tight] == attributes
    assert moved[roomy].pop(REDRIVE_ATTRIBUTE)["DataType"] == "String"
    assert moved[roomy] == attributes
    assert count_messages(sqs, dlq) == 0


@pytest.mark.parametrize("to", [False, True], ids=["its-source-queue", "to"])
async def test_a_message_too_long_for_its_queue_with_the_quarantine_s_attributes_goes_without_them(
    sqs, make_queue, cli_env, endpoint_url, to
) -> None:
    # given: a queue of 1 KiB messages at most, a DLQ that takes more (SQS's default, 1 MiB
    # since 2025, for a DLQ made after the queue), and in it a message that fit the queue as it
    # was sent, which the quarantine's LambdaDestinations.Reason and .SourceQueue took past its
    # limit; and one that does not fit the queue even without them, which no send can move
    url, dlq = make_queue("grown-in-dlq")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(SMALL_QUEUE)})
    own = {**CUSTOM, "Digest": {"DataType": "Binary", "BinaryValue": bytes(90)}}
    fitted = "not json " + "x" * (SMALL_QUEUE - 40 - sqs_size("not json ", own))
    attributes = {**own, **quarantined(url)}
    assert sqs_size(fitted, own) < SMALL_QUEUE < sqs_size(fitted, attributes)
    too_long = "y" * SMALL_QUEUE
    send_all(sqs, dlq, [fitted], MessageAttributes=attributes)
    send_all(sqs, dlq, [too_long], MessageAttributes=CUSTOM)
    cutter = AnswerCutter(endpoint_url, b"SendMessageBatch", http=True)
    cutter.answer = refusing_entries_over(SMALL_QUEUE)

    # when: twice, as an operator runs it again
    runs = [
        await cli_through(
            cutter, cli_env, "dlq", "redrive", dlq, *ONE_MOVER, *(("--to", url) if to else ())
        )
        for _ in range(2)
    ]

    # then: the first went home with its own attributes, without the quarantine's (it was in
    # the DLQ for good: SQS refused it on every run); the other is never sent, stays in the DLQ,
    # and each run says why in one line, with the fix, and exits 1
    assert cutter.refused == 0
    moved = receive_all(sqs, url)
    assert [m["Body"] for m in moved] == [fitted]
    assert moved[0]["MessageAttributes"] == own
    assert bodies_of(receive_all(sqs, dlq)) == [too_long]
    for returncode, out, err, _ in runs:
        assert returncode == 1, (out + err).decode()[-900:]
    said = runs[1][1].decode()
    name = url.rsplit("/", 1)[1]
    assert f"1 not sent (longer than the MaximumMessageSize of {name}, {SMALL_QUEUE} bytes" in said


async def test_a_target_s_size_limit_is_read_once_a_run_and_taken_as_256_kib_when_refused(
    sqs, make_queue, endpoint_url
) -> None:
    # given: 25 messages in a DLQ, and credentials that may not read the target's attributes
    from aiobotocore.session import get_session

    from lambda_destinations.operations.redrive import move_messages, target_chooser

    url, dlq = make_queue("size-unread")
    bodies = [f"message-{n}" for n in range(25)]
    send_all(sqs, dlq, bodies)
    cutter = AnswerCutter(endpoint_url, b"MaximumMessageSize", http=True)
    cutter.refusals = 100
    cutter.refusal = aws_error(
        403, "AccessDenied", "not authorized to perform: sqs:GetQueueAttributes", "json"
    )

    # when: four movers, three batches
    async with (
        cutter.running() as proxied,
        get_session().create_client("sqs", endpoint_url=proxied, region_name="us-east-1") as client,
    ):
        report = await move_messages(client, dlq, target_chooser(url, [url]), run="run-1")

    # then: asked once, refused, taken as SQS's default of 256 KiB: each one moved with the mark
    assert (len(cutter.seen), cutter.refused) == (1, 1)
    assert report.ok
    moved = receive_all(sqs, url)
    assert set(bodies_of(moved)) == set(bodies)  # moto may hand one out twice (EMULATORS.md)
    assert {m["MessageAttributes"][REDRIVE_ATTRIBUTE]["StringValue"] for m in moved} == {"run-1"}


async def test_a_message_moved_without_the_mark_and_quarantined_back_is_left_as_arrived(
    sqs, make_queue, endpoint_url, settings_for
) -> None:
    # given: a queue of 1 KiB messages at most, and in its DLQ two poison messages: a small
    # one, and one that fits the queue only without the run's mark
    from aiobotocore.session import get_session

    from lambda_destinations.operations.redrive import move_messages, target_chooser
    from lambda_destinations.worker import Worker

    url, dlq = make_queue("unmarked-back")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(SMALL_QUEUE)})
    big, attributes = near_the_limit(url, spare=20)
    send_all(sqs, dlq, ["not json", big], MessageAttributes=attributes)

    class SendThenQuarantine:
        """Sends a batch, then lets the worker drain the queue: it quarantines each poison
        message straight back to the DLQ, as a worker running during the redrive does."""

        def __init__(self, client: Any) -> None:
            self.client = client

        async def send_message_batch(self, **kwargs: Any) -> Any:
            answer = await self.client.send_message_batch(**kwargs)
            async with Worker(settings_for(url)) as worker:
                await worker.run(once=True)
            return answer

    # when
    async with get_session().create_client(
        "sqs", endpoint_url=endpoint_url, region_name="us-east-1"
    ) as client:
        report = await move_messages(
            client,
            dlq,
            target_chooser(url, [url]),
            concurrency=1,
            run="run-1",
            sender=SendThenQuarantine(client),
        )

    # then: each moved once and left once back: the marked one as come back, the other as
    # arrived after the run started (its SentTimestamp is the worker's quarantine)
    assert (report.moved, report.came_back, report.arrived) == (2, 1, 1)
    assert report.ok
    back = receive_all(sqs, dlq)
    assert bodies_of(back) == sorted(["not json", big])
    assert count_messages(sqs, url) == 0


async def test_a_redrive_that_loses_the_endpoint_midway_exits_4_in_one_line(
    sqs, make_queue, cli_env, endpoint_url
) -> None:
    # given: a DLQ, and a proxy that drops the connection of every ReceiveMessage (several
    # movers each fail, after botocore's own retries)
    _, dlq = make_queue("lost-midway")
    send_all(sqs, dlq, ["a", "b"])
    cutter = AnswerCutter(endpoint_url, b"ReceiveMessage")
    cutter.cuts = 1000

    # when
    returncode, _, err, proxied = await cli_through(cutter, cli_env, "dlq", "redrive", dlq)

    # then: one line naming the endpoint, the documented exit code, no traceback (the movers'
    # task group used to wrap the error and escape the command's handling)
    stderr = err.decode()
    assert cutter.cut >= 1
    assert returncode == 4, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"cannot reach {proxied}" in errors[0]
    assert count_messages(sqs, dlq) == 2  # nothing lost


def refusing_sends_after(first: int) -> Callable[[bytes], bytes | None]:
    """An answer for the proxy: the first ``first`` SendMessageBatch requests pass, each later
    one is refused as SQS refuses a send to a queue whose KMS key the caller may not use."""
    passed = [0]

    def answer(request: bytes) -> bytes | None:
        if passed[0] < first:
            passed[0] += 1
            return None
        return kms_refusal()

    return answer


async def test_a_redrive_stopped_midway_by_an_error_says_what_moved_and_what_stays(
    sqs, make_queue, cli_env, endpoint_url
) -> None:
    # given: 20 messages in a DLQ, and a target that takes the first batch sent to it and
    # refuses the next (its KMS key, say, no longer the operator's to use)
    url, dlq = make_queue("stopped-midway")
    send_all(sqs, dlq, [f"message-{i}" for i in range(20)])
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.SendMessageBatch", http=True)
    proxy.answer = refusing_sends_after(1)

    # when
    returncode, _, err, _ = await cli_through(
        proxy, cli_env, "dlq", "redrive", dlq, "--no-move-task", *ONE_MOVER
    )

    # then: one line, the error and then what the run did and what stays, and the way on
    # (before: the error alone, as if nothing had moved; the refused batch hidden for 60 s)
    stderr = err.decode()
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "KMS.AccessDeniedException" in line
    name = url.rsplit("/", 1)[1]
    assert (
        f"the redrive stopped after moving 10 of about 20 messages (10 to {name}) when {name} "
        "refused a send; 10 not sent (refused), left in the DLQ; the rest stay in the DLQ "
        "too: run the redrive again once that is fixed"
    ) in line
    assert returncode == 1  # a failed call, as a KMS refusal is for any command
    assert count_messages(sqs, url) == 10
    # and the refused ten are visible again at once, not after the visibility timeout
    attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == ("10", "0")


def drain(sqs: Any, url: str) -> list[str]:
    """Every body in the queue, received and deleted (the queue gets faster as it empties)."""
    bodies: list[str] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
        ).get("Messages", [])
        if not got:
            return bodies
        bodies.extend(m["Body"] for m in got)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )


@pytest.mark.slow
@pytest.mark.timeout(420)  # five trials of two CLI runs each, on a busy moto server
def test_a_redrive_killed_at_random_points_never_loses_a_message(sqs, make_queue, cli_env) -> None:
    rng = random.Random(20240501)
    mid_move = 0
    for trial in range(5):
        # given: 60 messages in a DLQ
        url, dlq = make_queue(f"kill-{trial}")
        bodies = [f"trial-{trial}-message-{i}" for i in range(60)]
        send_all(sqs, dlq, bodies)

        # when: a redrive (slowed to ~2 s of moving) is killed with SIGKILL at a random moment
        process = subprocess.Popen(
            [*ENTRY, "dlq", "redrive", dlq, "--rate", "30", "--visibility-timeout", "2"],
            env={**_environ(), **cli_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if line.startswith("moving about"):
                    break
            time.sleep(rng.uniform(0.0, 1.8))
            process.kill()
            process.wait(timeout=10)
        finally:
            if process.stderr is not None:
                process.stderr.close()

        # then: once hidden messages are visible again, each one is in the DLQ or the target
        # (the killed process's last receive may reach a loaded moto after the kill: wait until
        # nothing is in flight rather than a fixed time)
        wait_until_nothing_in_flight(sqs, dlq)
        in_dlq, in_target = seen_in(sqs, dlq, url, set(bodies))
        assert in_dlq | in_target == set(bodies), f"trial {trial} lost messages"
        if in_dlq and in_target:
            mid_move += 1

        # and a second redrive finishes the job (run again while the DLQ still holds some: a
        # late receive of the killed process, served by a loaded moto, can hide a few from it)
        moved: set[str] = set()
        for _ in range(3):
            time.sleep(1.5)
            finish_redrive(dlq, cli_env)
            moved |= set(drain(sqs, url))
            if moved >= set(bodies) and count_messages(sqs, dlq) == 0:
                break
        assert moved == set(bodies), f"trial {trial}: {sorted(set(bodies) - moved)} not moved"
        assert count_messages(sqs, dlq) == 0
    # the kills did land in the middle of moves, not only before or after
    assert mid_move >= 2


def finish_redrive(dlq: str, cli_env: dict[str, str], *, runs: int = 3) -> None:
    """Redrive until a run ends clean. A run whose send was in doubt (moto now and then answers
    a SendMessageBatch with HTTP 500 under concurrent calls), or that found messages hidden in
    the DLQ, exits 1 and says to run again."""
    for _ in range(runs):
        finish = cli("dlq", "redrive", dlq, "--visibility-timeout", "2", "--json", env=cli_env)
        if finish.returncode == 0:
            return
        report = json.loads(finish.stdout)
        assert report["in_doubt"] > 0 or report["hidden"] > 0, finish.stderr
        time.sleep(2.5)  # the in-doubt messages were released; let any hidden ones show
    raise AssertionError(f"no clean redrive in {runs} runs: {finish.stdout}")


def seen_in(
    sqs: Any, dlq: str, target: str, wanted: set[str], *, within: float = 15
) -> tuple[set[str], set[str]]:
    """The bodies found in the DLQ and in the target, read until every wanted one is found or
    ``within`` seconds pass. No process moves them any more, so what one read finds stays where
    it is; a receive of the killed process that a loaded moto served after the in-flight check
    hides a few for 2 s, and a later read finds them. A lost message is never found."""
    in_dlq: set[str] = set()
    in_target: set[str] = set()
    deadline = time.monotonic() + within
    while True:
        in_dlq |= set(bodies_of(receive_all(sqs, dlq, visibility=1)))
        in_target |= set(bodies_of(receive_all(sqs, target, visibility=1)))
        if in_dlq | in_target >= wanted or time.monotonic() > deadline:
            return in_dlq, in_target
        time.sleep(1)


def wait_until_nothing_in_flight(sqs: Any, url: str, *, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        hidden = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        if int(hidden) == 0:
            return
        assert time.monotonic() < deadline, f"{hidden} messages still in flight in {url}"
        time.sleep(0.5)


def _environ() -> dict[str, str]:
    return {**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}


# -- reinvoke ---------------------------------------------------------------------------------


def test_reinvoke_replays_failure_records_and_leaves_the_rest(
    lambda_endpoint, lambda_env, sqlite_url
) -> None:
    # given: on the Lambda endpoint, a DLQ with two failure records of a function, and a
    # success record, a stream failure and a poison message, which cannot be re-invoked
    name = f"reinvoke-{uuid.uuid4().hex[:8]}"
    lambda_endpoint.create_function(name)
    sqs = lambda_endpoint.sqs
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    failures = [
        failure_body(n, function=name, payload={"order": n, "note": "ünïcode"}) for n in (1, 2)
    ]
    others = [
        json.dumps(success_record(random.Random(3), function=name)),
        json.dumps(kinesis_failure(random.Random(4))),
        "not json",
    ]
    send_all(sqs, dlq, [body for body, _ in failures] + others)
    assert cli("migrate", env=lambda_env).returncode == 0
    lambda_endpoint.start_recording()

    try:
        # when
        result = cli("dlq", "redrive", dlq, "--reinvoke", "--yes", "--json", env=lambda_env)

        # then: each failure's function invoked with its payload, and deleted from the DLQ
        assert result.returncode == 0, result.stderr
        invoked = lambda_endpoint.invocations()
        assert sorted(invoked, key=lambda i: i[1]["order"]) == [
            (record["requestContext"]["functionArn"], record["requestPayload"])
            for _, record in failures
        ]
        report = json.loads(result.stdout)
        assert report["invoked"] == 2
        assert report["deleted"] == 2
        # one shape for every message: the success and the poison message, no failure records,
        # have the keys of a replayed one, null, and say why they stay
        entries = report["messages"]
        assert len(entries) == 5
        assert len({tuple(entry) for entry in entries}) == 1
        not_records = [e for e in entries if e["why"] is not None]
        assert len(not_records) == 2
        for entry in not_records:
            assert entry["state"] == "skipped"
            assert entry["message_id"]
            assert {k for k, v in entry.items() if v is None} == set(entry) - {
                "message_id",
                "state",
                "why",
            }
        left = receive_all(sqs, dlq, visibility=1)
        assert bodies_of(left) == sorted(others)
        # and the ledger has them, so a rerun after a crash would not invoke them twice
        listed = cli("failures", "list", "--json", env=lambda_env)
        assert listed.returncode == 0
        time.sleep(1.2)
        lambda_endpoint.start_recording()
        again = cli("dlq", "redrive", dlq, "--reinvoke", "--yes", "--json", env=lambda_env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["invoked"] == 0
        assert lambda_endpoint.invocations() == []
    finally:
        sqs.delete_queue(QueueUrl=dlq)


def test_reinvoke_after_a_crash_deletes_without_invoking_again(
    lambda_endpoint, lambda_env, sqlite_url
) -> None:
    # given: a failure record whose replay was recorded, but the DLQ message not deleted
    # (the redrive was killed between Invoke and DeleteMessage)
    name = f"crash-{uuid.uuid4().hex[:8]}"
    sqs = lambda_endpoint.sqs
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    body, record = failure_body(7, function=name)
    sqs.send_message(QueueUrl=dlq, MessageBody=body)
    key = f"{record['requestContext']['requestId']}:RetriesExhausted"

    async def recorded() -> None:
        async with Store.from_url(sqlite_url) as store:
            await store.migrate()
            attempt = ReplayAttempt(
                original_key=key,
                original_request_id=record["requestContext"]["requestId"],
                function_arn=record["requestContext"]["functionArn"],
                attempt=1,
                trigger="manual",
                requested_by="cli earlier@host",
            )
            await store.add_replay(attempt)
            assert attempt.id is not None
            await store.update_replay(
                attempt.id, new_request_id="r1", outcome=ReplayOutcome.INVOKED
            )

    asyncio.run(recorded())
    lambda_endpoint.start_recording()

    try:
        result = cli("dlq", "redrive", dlq, "--reinvoke", "--yes", "--json", env=lambda_env)

        assert result.returncode == 0, result.stderr
        assert lambda_endpoint.invocations() == []
        report = json.loads(result.stdout)
        assert report["deleted"] == 1
        assert report["messages"][0]["skip"] == "already-replayed"
        assert count_messages(sqs, dlq) == 0
    finally:
        sqs.delete_queue(QueueUrl=dlq)


def test_reinvoke_dry_run_says_what_it_would_invoke_and_invokes_nothing(
    lambda_endpoint, lambda_env, sqlite_url
) -> None:
    # given: a DLQ with two failure records of a function and a poison message
    name = f"reinvoke-dry-{uuid.uuid4().hex[:8]}"
    lambda_endpoint.create_function(name)
    sqs = lambda_endpoint.sqs
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    failures = [failure_body(n, function=name) for n in (1, 2)]
    send_all(sqs, dlq, [body for body, _ in failures] + ["not json"])
    assert cli("migrate", env=lambda_env).returncode == 0
    lambda_endpoint.start_recording()

    try:
        # when
        result = cli("dlq", "redrive", dlq, "--reinvoke", "--dry-run", "--json", env=lambda_env)

        # then: the two records would be invoked, each entry naming its function; nothing was
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["would_invoke"] == 2
        assert report["invoked"] == 0
        assert report["deleted"] == 0
        would = [e for e in report["messages"] if e["state"] == "would-invoke"]
        assert sorted(e["function_arn"] for e in would) == sorted(
            record["requestContext"]["functionArn"] for _, record in failures
        )
        assert len({tuple(entry) for entry in report["messages"]}) == 1
        assert lambda_endpoint.invocations() == []
        assert count_messages(sqs, dlq) == 3  # all still there, visible or not
        # and the text output's tally says the same
        text = cli("dlq", "redrive", dlq, "--reinvoke", "--dry-run", env=lambda_env)
        assert text.returncode == 0, text.stderr
        assert "would invoke 2 · deleted 0 · left in the DLQ 3" in text.stderr
        # and its table names each state as --json does (the message that is no record was
        # "left" in the table and "skipped" in the JSON)
        (row,) = [line for line in text.stdout.splitlines() if "not a Lambda record" in line]
        assert row.split()[3] == "skipped", text.stdout
        assert lambda_endpoint.invocations() == []
    finally:
        sqs.delete_queue(QueueUrl=dlq)


# Why a message received stays in the DLQ when a re-invoking run stops before its turn.
NOT_SENT = "not sent: the redrive stopped before its turn; it stays in the DLQ"


@pytest.fixture
def reinvoke_dlq(lambda_endpoint, lambda_env):  # type: ignore[no-untyped-def]
    """A DLQ of three failure records of a function, on the Lambda endpoint; its URL, and the
    request ids of its records."""
    name = f"reinvoke-cut-{uuid.uuid4().hex[:8]}"
    lambda_endpoint.create_function(name)
    sqs = lambda_endpoint.sqs
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    failures = [failure_body(n, function=name) for n in (1, 2, 3)]
    send_all(sqs, dlq, [body for body, _ in failures])
    assert cli("migrate", env=lambda_env).returncode == 0
    try:
        yield dlq, {record["requestContext"]["requestId"] for _, record in failures}
    finally:
        sqs.delete_queue(QueueUrl=dlq)


def _by_state(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The messages of a ``--reinvoke --json`` report by their state."""
    found: dict[str, list[dict[str, Any]]] = {}
    for message in report["messages"]:
        found.setdefault(message["state"], []).append(message)
    return found


async def test_a_reinvoke_that_loses_the_endpoint_midway_says_what_was_sent_and_what_was_not(
    lambda_endpoint, lambda_env, reinvoke_dlq
) -> None:
    # given: an endpoint that takes the first Invoke and drops the connection of every one
    # after before its answer comes back
    dlq, request_ids = reinvoke_dlq
    cutter = AnswerCutter(lambda_endpoint.url, b"/invocations")
    cutter.passes, cutter.cuts = 1, 1000
    lambda_endpoint.start_recording()

    # when
    code, out, err, _ = await cli_through(
        cutter, lambda_env, "dlq", "redrive", dlq, "--reinvoke", "--yes", "--json"
    )
    again = await asyncio.to_thread(
        cli, "dlq", "redrive", dlq, "--reinvoke", "--yes", "--json", env=lambda_env
    )

    # then: the report of each message received (invoked, in doubt, not sent), then the line
    # of what stopped it
    stderr = err.decode()
    assert code == 4, stderr
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1
    states = _by_state(json.loads(out))
    assert len(states.pop("invoked")) == 1, states
    (cut,) = states.pop("error")
    assert cut["error"] == "in-doubt"
    assert cut["detail"].startswith("in doubt, may have reached Lambda"), cut
    # the third, when the receive that brought the other two brought it too (SQS may not)
    assert [m["why"] for m in states.pop("skipped", [])] in ([], [NOT_SENT])
    assert states == {}
    assert (
        f"stopped after invoking 1; message {cut['message_id']} ({cut['request_id']}) was cut "
        "off mid-call and may have reached Lambda" in stderr
    )
    assert "the messages not invoked stay in the DLQ" in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("error: cannot reach")
    # and the same redrive again invokes the one not sent and leaves the one in doubt: each
    # record reached Lambda once
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["invoked"] == 1, (again.stdout, out)
    assert len(lambda_endpoint.invocations()) == 3
    assert cut["request_id"] in request_ids
    assert count_messages(lambda_endpoint.sqs, dlq) == 1


async def test_a_reinvoke_stopped_by_ctrl_c_midway_says_what_was_sent_and_what_was_not(
    lambda_endpoint, lambda_env, reinvoke_dlq
) -> None:
    # given: an endpoint that takes the first Invoke and holds back the answer to the second
    dlq, _ = reinvoke_dlq
    cutter = AnswerCutter(lambda_endpoint.url, b"/invocations")
    cutter.passes, cutter.holds = 1, 1
    lambda_endpoint.start_recording()

    # when: Ctrl-C while the second Invoke waits for its answer
    code, out, err, _ = await cli_through(
        cutter, lambda_env, "dlq", "redrive", dlq, "--reinvoke", "--yes", ctrl_c=True
    )
    again = await asyncio.to_thread(
        cli, "dlq", "redrive", dlq, "--reinvoke", "--yes", "--json", env=lambda_env
    )

    # then: the table of the messages received and the tally, the line of what was cut short,
    # then "interrupted"
    stdout, stderr = out.decode(), err.decode()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "in doubt, may have reached Lambda: interrupted mid-call" in stdout
    assert "invoked 1 · deleted 1 · " in stderr
    assert "stopped after invoking 1; message " in stderr
    assert "was cut off mid-call and may have reached Lambda" in stderr
    assert stderr.rstrip().endswith("interrupted")
    # and the same redrive again invokes the one not sent, skips the one in doubt, and leaves
    # nothing hidden: each record reached Lambda once
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["invoked"] == 1
    assert len(lambda_endpoint.invocations()) == 3
    assert count_messages(lambda_endpoint.sqs, dlq) == 1


# -- purge ------------------------------------------------------------------------------------


def test_purge_counts_asks_and_purges(sqs, make_queue, cli_env) -> None:
    _, dlq = make_queue("purge")
    send_all(sqs, dlq, [f"m{i}" for i in range(9)])

    declined = cli("dlq", "purge", dlq, env=cli_env, input="n\n")
    assert declined.returncode == 6  # declined: nothing was changed
    assert "Delete all 9 messages of" in declined.stderr
    assert count_messages(sqs, dlq) == 9

    purged = cli("dlq", "purge", dlq, "--yes", env=cli_env)
    assert purged.returncode == 0, purged.stderr
    assert "about 9 messages deleted" in purged.stdout
    assert count_messages(sqs, dlq) == 0

    empty = cli("dlq", "purge", dlq, "--yes", env=cli_env)
    assert empty.returncode == 0
    assert "is empty: nothing to purge" in empty.stdout


def test_ctrl_c_at_the_purge_s_question_declines_at_once(sqs, make_queue, cli_env) -> None:
    # given: a DLQ with messages, purged from a terminal without --yes
    _, dlq = make_queue("purge-ctrl-c")
    send_all(sqs, dlq, ["m1", "m2"])

    # when: Ctrl-C is pressed at the question (asked inside asyncio.run, whose own handler
    # only cancelled the command at its next await: after an answer, so the first Ctrl-C did
    # nothing and the question waited on)
    code, written = ctrl_c_at_the_question("dlq", "purge", dlq, env=cli_env)

    # then: declined at once, nothing purged
    assert code == 6, written
    assert "aborted: nothing was changed" in written
    assert "Traceback" not in written
    assert count_messages(sqs, dlq) == 2


def test_a_purge_within_a_minute_of_the_last_says_so_and_when_to_try_again(
    sqs, make_queue, cli_env
) -> None:
    # given: a queue purged a moment ago, which holds a message again
    _, dlq = make_queue("purge-twice")
    send_all(sqs, dlq, ["m1"])
    assert cli("dlq", "purge", dlq, "--yes", env=cli_env).returncode == 0
    send_all(sqs, dlq, ["m2"])

    # when: purged again within SQS's minute
    again = cli("dlq", "purge", dlq, "--yes", env=cli_env)

    # then: one line with the way on, not SQS's PurgeQueueInProgress alone
    assert again.returncode == 1, again.stderr
    assert error_lines(again) == [
        f"error: {dlq.rsplit('/', 1)[-1]} was purged less than a minute ago, and SQS allows one "
        "purge a minute per queue: its messages are being deleted; peek at it in a minute, and "
        "purge again if some remain"
    ]
    assert "Traceback" not in again.stderr


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["peek"], ["redrive"], ["purge", "--yes"]])
def test_an_unknown_queue_exits_2_in_one_line(cli_env, command) -> None:
    result = cli("dlq", command[0], "no-such-queue", *command[1:], env=cli_env)

    assert result.returncode == 2
    assert error_lines(result) == [
        "error: queue 'no-such-queue' does not exist: check the name or URL (and the region)"
    ]


@pytest.mark.parametrize("form", ["name", "url", "arn"])
@pytest.mark.parametrize("command", [["peek"], ["purge", "--yes"], ["redrive", "--to"]])
def test_a_queue_named_with_a_typo_exits_2_naming_the_queue_it_may_be(
    make_queue, cli_env, form, command
) -> None:
    # given: a DLQ, named with two letters swapped, in each of the forms an operator gives
    url, dlq = make_queue("typo")
    name = dlq.rsplit("/", 1)[1]
    typo = name[:-2] + name[-1] + name[-2]  # ...-dql
    given = {
        "name": typo,
        "url": dlq.rsplit("/", 1)[0] + "/" + typo,
        "arn": f"arn:aws:sqs:us-east-1:123456789012:{typo}",
    }[form]
    meant = {"name": name, "url": dlq, "arn": f"arn:aws:sqs:us-east-1:123456789012:{name}"}[form]

    # when
    if command[-1] == "--to":  # the queue to redrive exists; where to is what is mistyped
        args = ["redrive", url, "--to", given]
    else:
        args = [command[0], given, *command[1:]]
    result = cli("dlq", *args, env=cli_env)

    # then: one line, naming the queue it may be, in the form given (a name for a name)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: queue {given!r} does not exist (did you mean {meant!r}?): check the name or "
        "URL (and the region)"
    ]


@pytest.mark.parametrize(
    ("given", "line"),
    [
        (
            "arn:aws:sns:us-east-1:123456789012:alerts",
            "error: 'arn:aws:sns:us-east-1:123456789012:alerts' is an SNS topic's ARN, not a "
            "queue's: name the SQS queue subscribed to the topic (`aws sns "
            "list-subscriptions-by-topic --topic-arn arn:aws:sns:us-east-1:123456789012:alerts` "
            "lists them)",
        ),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:orders",
            "error: 'arn:aws:lambda:us-east-1:123456789012:function:orders' is a lambda ARN, "
            "not an SQS queue's: give the queue's URL, name or arn:aws:sqs:REGION:ACCOUNT:NAME",
        ),
        (
            "orders dlq",
            "error: no queue can be named 'orders dlq': a queue's name is 1 to 80 letters, "
            "digits, - and _ (a FIFO queue's ends in .fifo); give the queue's URL, name or "
            "arn:aws:sqs:REGION:ACCOUNT:NAME",
        ),
        (
            "sqs.us-east-1.amazonaws.com/123456789012/orders",
            "error: no queue can be named 'sqs.us-east-1.amazonaws.com/123456789012/orders': a "
            "queue's name is 1 to 80 letters, digits, - and _ (a FIFO queue's ends in .fifo); "
            "give the queue's URL, name or arn:aws:sqs:REGION:ACCOUNT:NAME",
        ),
    ],
)
@pytest.mark.parametrize("command", [["peek"], ["purge", "--yes"], ["redrive", "--to"]])
def test_what_can_be_no_queue_exits_2_saying_what_it_is(
    make_queue, cli_env, given, line, command
) -> None:
    # before: "… is not an SQS queue ARN" with no way on, or "does not exist: check the name"
    # for a name no queue can have (SQS looked it up, or refused it in its own words)
    if command[-1] == "--to":  # the DLQ exists; where it would send them is what is wrong
        args = ["redrive", make_queue("nq")[1], "--to", given]
    else:
        args = [command[0], given, *command[1:]]
    result = cli("dlq", *args, env=cli_env)

    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [line]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("form", ["arn", "url"])
@pytest.mark.parametrize(
    "command", [["peek"], ["redrive"], ["purge", "--yes"], ["redrive", "--to"]]
)
def test_a_queue_arn_or_url_of_another_region_exits_2_in_one_line(
    sqs, make_queue, cli_env, command, form
) -> None:
    # given: ARNs (or AWS's URLs) in eu-west-1 of queues whose names queues of the command's
    # region have (moto read those by such a URL; SQS answers that the queue does not exist)
    url, dlq = make_queue("rgn")
    dlq_arn, source_arn = (
        sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ].replace(":us-east-1:", ":eu-west-1:")
        if form == "arn"
        else f"https://sqs.eu-west-1.amazonaws.com/123456789012/{u.rsplit('/', 1)[-1]}"
        for u in (dlq, url)
    )
    sqs.send_message(QueueUrl=dlq, MessageBody="{}")
    if command[-1] == "--to":  # only where the redrive sends them is in another region
        args, wrong = ["redrive", dlq, "--to", source_arn], source_arn
    else:
        args, wrong = [command[0], dlq_arn, *command[1:]], dlq_arn

    result = cli("dlq", *args, env=cli_env)

    assert result.returncode == 2, result.stderr
    assert error_lines(result) == [
        f"error: queue {wrong!r} is in eu-west-1, this command in us-east-1: "
        "run it with --region eu-west-1"
    ]
    assert count_messages(sqs, dlq) == 1


@pytest.mark.parametrize("command", [["peek"], ["redrive"], ["purge", "--yes"]])
def test_an_unreachable_endpoint_exits_4_in_one_line(cli_env, command) -> None:
    env = {**cli_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": "http://127.0.0.1:1"}

    result = cli("dlq", command[0], "some-dlq", *command[1:], env=env)

    assert result.returncode == 4
    assert len(error_lines(result)) == 1
    assert "cannot reach http://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr
