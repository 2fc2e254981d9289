"""`quarantine list|show|resend` read the store's copies of quarantined messages and send them
back; `dlq peek --body` shows bodies. A real worker run quarantines, against moto over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from ops_helpers import (
    ENTRY,
    NO_CREDENTIALS,
    QUEUE,
    cli,
    cli_in_a_terminal,
    cli_through,
    count_messages,
    receive_all,
)

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.operations.quarantine import RESEND_CLAIM, NotResent, resend
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import QuarantineRow, Store
from processes import ctrl_c_as_in_a_terminal
from tcp_proxy import AnswerCutter

POISON = '{"Records": [{"eventSource": "aws:s3"}]}'


def as_json(result: Any) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def quarantined(sqs, make_queue, cli_env) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """A queue without a DLQ whose poison message a worker run quarantined (store only)."""
    url, _ = make_queue("quar", dlq=False)
    sqs.send_message(
        QueueUrl=url,
        MessageBody=POISON,
        MessageAttributes={"trace": {"DataType": "String", "StringValue": "abc-123"}},
    )
    record = failure_record(random.Random(3))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    # One poller: moto may hand one message to two concurrent receives (no lock between its
    # visibility check and its mark), as SQS may, and the poison was then quarantined twice.
    env = {**cli_env, "LAMBDA_DESTINATIONS_QUEUES": url}
    env["LAMBDA_DESTINATIONS_POLLERS_PER_QUEUE"] = "1"
    ran = cli("run", "--once", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["quarantined"] == 1
    return url, env


def test_list_and_show_the_store_only_copy(quarantined) -> None:
    url, env = quarantined

    listed = as_json(cli("quarantine", "list", "--json", env=env))
    table = cli("quarantine", "list", env=env)

    (row,) = listed
    assert row["queue"] == url
    assert row["kind"] == "not-a-record"
    assert "not a Lambda" in row["reason"] or "decode error" in row["reason"], row
    # the fields of a message that decodes are there, null: every row has one shape
    assert row["request_id"] is row["error_type"] is row["timestamp"] is None
    assert "body" not in row
    assert table.returncode == 0
    assert str(row["id"]) in table.stdout
    assert "not-a-record" in table.stdout

    shown = as_json(cli("quarantine", "show", str(row["id"]), "--json", env=env))
    text = cli("quarantine", "show", str(row["id"]), env=env)
    assert shown["body"] == POISON
    assert shown["message_attributes"]["trace"]["StringValue"] == "abc-123"
    assert '"eventSource": "aws:s3"' in text.stdout  # the body, pretty-printed
    assert "trace = abc-123" in text.stdout
    # its time as the other text outputs give times; the JSON's, ISO 8601
    at = dt.datetime.fromisoformat(shown["quarantined_at"])
    assert f"quarantined   {at:%Y-%m-%d %H:%M:%S} UTC\n" in text.stdout
    # the longest label, too, has two spaces before its value (it ran into it: "not a record
    # body is not...")
    assert re.search(r"^not a record  \S", text.stdout, re.MULTILINE), text.stdout


def test_list_since_a_time_and_from_a_queue_by_name(quarantined, sqlite_url) -> None:
    # given: besides the message the worker just quarantined, one quarantined three days ago
    url, env = quarantined
    three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    old = QuarantineRow(
        url, "m-old", POISON, {}, "decode error: old", 1, quarantined_at=three_days_ago
    )

    async def seed() -> None:
        async with Store.from_url(sqlite_url) as store:
            await store.save_quarantine(old)

    asyncio.run(seed())
    name = url.rsplit("/", 1)[1]

    # when
    everything = as_json(cli("quarantine", "list", "--json", env=env))
    recent = as_json(cli("quarantine", "list", "--since", "1d", "--json", env=env))
    by_name = as_json(
        cli("quarantine", "list", "--queue", name, "--since", "1d", "--json", env=env)
    )
    other = cli("quarantine", "list", "--queue", "another-queue", env=env)

    # then: the old one only without --since (before: no --since, exit 2)
    assert [r["message_id"] for r in everything][1:] == ["m-old"]
    assert [r["message_id"] for r in recent] == [everything[0]["message_id"]]
    assert by_name == recent
    assert other.returncode == 0, other.stderr
    assert other.stdout == ""
    assert other.stderr.strip() == "no quarantined messages from queue 'another-queue'"
    resend = cli("quarantine", "resend", "--all", "--queue", "another-queue", "--yes", env=env)
    assert resend.returncode == 0, resend.stderr
    assert resend.stderr.strip() == "no quarantined messages to resend from queue 'another-queue'"


def test_list_and_show_say_a_resend_holds_the_message(quarantined) -> None:
    # given: a resend under way holds the message (it claimed it, and sends)
    _url, env = quarantined
    (row,) = as_json(cli("quarantine", "list", "--json", env=env))
    assert row["resending_since"] is None

    async def claim(ttl: float) -> None:
        async with Store.from_url(env["LAMBDA_DESTINATIONS_STORE"]) as store:
            await store.release_quarantine(row["id"])
            assert await store.claim_quarantine(row["id"], ttl) is not None

    before = dt.datetime.now(dt.UTC)
    asyncio.run(claim(RESEND_CLAIM))

    # when: another operator lists it meanwhile
    (held,) = as_json(cli("quarantine", "list", "--json", env=env))
    table = cli("quarantine", "list", env=env)
    shown = cli("quarantine", "show", str(row["id"]), env=env)

    # then: each says a resend holds it, and since when
    since = dt.datetime.fromisoformat(held["resending_since"])
    assert before - dt.timedelta(seconds=5) <= since <= dt.datetime.now(dt.UTC)
    assert f"resending since {since:%H:%M:%S}" in table.stdout
    assert f"resending     {since:%Y-%m-%d %H:%M:%S} UTC" in shown.stdout

    # and a claim that lapsed (its resend was interrupted) holds nothing: not shown
    asyncio.run(claim(0.001))
    time.sleep(0.01)
    (lapsed,) = as_json(cli("quarantine", "list", "--json", env=env))
    assert lapsed["resending_since"] is None
    assert "resending" not in cli("quarantine", "list", env=env).stdout


def test_resend_asks_on_stderr_and_a_no_leaves_stdout_empty(sqs, quarantined) -> None:
    _url, env = quarantined
    (row,) = as_json(cli("quarantine", "list", "--json", env=env))

    # when: no answer comes (no terminal), with --json
    asked = cli("quarantine", "resend", str(row["id"]), "--json", env=env)

    # then: declined (6), the question on stderr and nothing on stdout for a script to misread
    assert asked.returncode == 6
    assert asked.stdout == ""
    assert "Send 1 message back to its queue?" in asked.stderr
    assert len(as_json(cli("quarantine", "list", "--json", env=env))) == 1


def test_resend_sends_the_message_back_and_forgets_the_copy(sqs, quarantined) -> None:
    url, env = quarantined
    (row,) = as_json(cli("quarantine", "list", "--json", env=env))

    outcome = as_json(cli("quarantine", "resend", str(row["id"]), "--yes", "--json", env=env))

    assert [item["id"] for item in outcome["resent"]] == [row["id"]]
    assert outcome["failed"] == []
    received = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1)[
        "Messages"
    ]
    assert [m["Body"] for m in received] == [POISON]
    assert received[0]["MessageAttributes"]["trace"]["StringValue"] == "abc-123"
    assert received[0]["MessageId"] == outcome["resent"][0]["new_message_id"]
    assert as_json(cli("quarantine", "list", "--json", env=env)) == []


def test_resend_keep_and_all(sqs, quarantined) -> None:
    url, env = quarantined

    outcome = as_json(cli("quarantine", "resend", "--all", "--keep", "--yes", "--json", env=env))

    assert len(outcome["resent"]) == 1
    assert len(as_json(cli("quarantine", "list", "--json", env=env))) == 1
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"] == POISON


def test_resend_all_with_nothing_to_resend_prints_its_json(sqs, quarantined) -> None:
    # given: nothing was quarantined from another-queue
    _url, env = quarantined

    # when: a script resends everything from it, with --json
    resend = cli(
        "quarantine", "resend", "--all", "--queue", "another-queue", "--yes", "--json", env=env
    )

    # then: the object every --json resend prints, empty (stdout was empty: a script's JSON
    # parser failed on an outcome that is nothing to do), the line on stderr, exit 0
    assert as_json(resend) == {"resent": [], "skipped": [], "failed": []}
    assert resend.stderr.strip() == "no quarantined messages to resend from queue 'another-queue'"
    assert len(as_json(cli("quarantine", "list", "--json", env=env))) == 1


def test_a_binary_attribute_is_shown_and_resent_as_the_same_bytes(sqs, make_queue, cli_env) -> None:
    # given: a worker run quarantined (store only) a message with a Binary attribute
    url, _ = make_queue("quar-binary", dlq=False)
    binary = {"DataType": "Binary.gzip", "BinaryValue": b"\x00\x01\xff"}
    sqs.send_message(QueueUrl=url, MessageBody=POISON, MessageAttributes={"blob": binary})
    env = {**cli_env, "LAMBDA_DESTINATIONS_QUEUES": url}
    env["LAMBDA_DESTINATIONS_POLLERS_PER_QUEUE"] = "1"  # see quarantined()
    ran = cli("run", "--once", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["quarantined"] == 1
    (row,) = as_json(cli("quarantine", "list", "--json", env=env))

    # when
    shown = as_json(cli("quarantine", "show", str(row["id"]), "--json", env=env))
    text = cli("quarantine", "show", str(row["id"]), env=env)
    outcome = as_json(cli("quarantine", "resend", str(row["id"]), "--yes", "--json", env=env))

    # then: shown as base64, and sent back as the same bytes (not the base64 text's)
    assert shown["message_attributes"] == {
        "blob": {"DataType": "Binary.gzip", "BinaryValue": "AAH/"}
    }
    assert "blob = AAH/ (Binary.gzip, base64)" in text.stdout
    assert len(outcome["resent"]) == 1, outcome
    (message,) = sqs.receive_message(
        QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert message["Body"] == POISON
    assert message["MessageAttributes"] == {"blob": binary}


def test_dlq_peek_shows_a_binary_attribute_as_base64(sqs, make_queue, cli_env) -> None:
    _url, dlq = make_queue("peekbinary")
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=POISON,
        MessageAttributes={"blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
    )

    table = cli("dlq", "peek", dlq, "--body", env=cli_env)
    listed = as_json(cli("dlq", "peek", dlq, "--body", "--json", env=cli_env))

    assert table.returncode == 0, table.stderr
    assert "blob = AAE= (Binary, base64)" in table.stdout
    assert listed[0]["message_attributes"]["blob"] == {"DataType": "Binary", "BinaryValue": "AAE="}


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["show", "999999"], 1, "no quarantined message with id 999999"),
        (["resend", "999999", "--yes"], 1, "no quarantined message with id 999999"),
        (["resend", "--yes"], 2, "give quarantine ids, or --all"),
        (["resend", "999999", "--all", "--yes"], 2, "give quarantine ids or --all, not both"),
        # --queue with ids was ignored: the message went home, not where --queue said
        (["resend", "999999", "--queue", "other", "--yes"], 2, "--queue goes with --all"),
    ],
)
def test_bad_ids_are_one_line(quarantined, args, code, needle) -> None:
    _url, env = quarantined
    result = cli("quarantine", *args, env=env)
    assert result.returncode == code
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert needle in line
    assert "Traceback" not in result.stderr


async def test_resends_at_once_send_the_message_once(
    sqs, make_queue, store_url: str, settings_for: Callable[..., Settings]
) -> None:
    # given: a message only the store holds (SQLite or PostgreSQL), and a queue without DLQ
    url, _ = make_queue("resend-race", dlq=False)
    settings = settings_for(store=store_url)
    async with Store.from_url(store_url) as store:
        await store.migrate()
        await store.save_quarantine(
            QuarantineRow(url, "m-1", POISON, {}, "decode error: not a record", 1)
        )
        (row,) = await store.list_quarantine()

    async def one_resend() -> str:
        # each caller as a console request or a CLI run: its own store and SQS client
        async with Store.from_url(store_url) as store, AwsClients(settings) as aws:
            try:
                return await resend(store, await aws.client("sqs"), row)
            except NotResent as exc:
                return f"not resent: {exc}"

    # when: six resends of it at once
    outcomes = await asyncio.gather(*(one_resend() for _ in range(6)))

    # then: one sent it, five sent nothing and said why; the store forgot it
    assert sum(not outcome.startswith("not resent") for outcome in outcomes) == 1, outcomes
    assert sum(outcome.startswith("not resent: ") for outcome in outcomes) == 5
    assert count_messages(sqs, url) == 1
    async with Store.from_url(store_url) as store:
        assert await store.list_quarantine() == []


async def test_a_keep_resend_made_since_a_read_is_not_made_again(
    sqs, make_queue, store_url: str, settings_for: Callable[..., Settings]
) -> None:
    # given: a message only the store holds, read by two operators' resends (--keep) at once
    url, _ = make_queue("resend-keep", dlq=False)
    settings = settings_for(store=store_url)
    async with Store.from_url(store_url) as store:
        await store.migrate()
        await store.save_quarantine(
            QuarantineRow(url, "m-1", POISON, {}, "decode error: not a record", 1)
        )
        (read,) = await store.list_quarantine()

    async def resend_as_read(row: QuarantineRow) -> str:
        async with Store.from_url(store_url) as store, AwsClients(settings) as aws:
            try:
                return await resend(store, await aws.client("sqs"), row, keep=True)
            except NotResent as exc:
                return f"not resent: {exc}"

    # when: the first sends it and keeps the copy; then the second, with the row as it read it
    first = await resend_as_read(read)
    second = await resend_as_read(read)

    # then: sent once (the copy kept released its claim, and the second claimed and sent it
    # again: three operators' `--all --keep` sent 60 messages 150 times); the second says why
    assert not first.startswith("not resent"), first
    assert second.startswith("not resent: resent by another caller since"), second
    assert count_messages(sqs, url) == 1
    # and a resend that reads it after that sends it again, as --keep allows
    async with Store.from_url(store_url) as store:
        (again,) = await store.list_quarantine()
    assert again.resending() is False
    assert not (await resend_as_read(again)).startswith("not resent")
    assert count_messages(sqs, url) == 2


async def test_a_refused_resend_after_a_keep_one_leaves_its_mark_and_skips_no_one_wrongly(
    sqs, make_queue, store_url: str, settings_for: Callable[..., Settings]
) -> None:
    from botocore.exceptions import ClientError

    # given: a message resent once with --keep, then read by two operators (b, c)
    url, _ = make_queue("resend-refused", dlq=False)
    settings = settings_for(store=store_url)
    async with Store.from_url(store_url) as store:
        await store.migrate()
        await store.save_quarantine(
            QuarantineRow(url, "m-1", POISON, {}, "decode error: not a record", 1)
        )
        (before_keep,) = await store.list_quarantine()

    async def resend_as_read(row: QuarantineRow, during: Any = None) -> str:
        async with Store.from_url(store_url) as store, AwsClients(settings) as aws:
            sqs_client = await aws.client("sqs")
            sender = sqs_client if during is None else _Before(sqs_client, during)
            try:
                return await resend(store, sender, row, keep=True)
            except NotResent as exc:
                return f"not resent: {exc}"
            except ClientError as exc:
                return f"refused: {exc}"

    assert not (await resend_as_read(before_keep)).startswith(("not resent", "refused"))
    async with Store.from_url(store_url) as store:
        (read_b,) = await store.list_quarantine()
    read_c: list[QuarantineRow] = []

    async def read_while_held() -> None:  # c reads the row while a's resend holds it
        async with Store.from_url(store_url) as store:
            read_c.extend(await store.list_quarantine())

    # when: a resends it to its queue, deleted meanwhile: the queue refuses it, nothing sent
    sqs.delete_queue(QueueUrl=url)
    refused = await resend_as_read(read_b, during=read_while_held)
    assert refused.startswith("refused: "), refused
    assert read_c[0].resending()
    sqs.create_queue(QueueName=url.rsplit("/", 1)[-1])

    # then: a caller that read the row before the --keep resend still skips it, as resent since
    assert (await resend_as_read(before_keep)).startswith("not resent: resent by another caller")
    # c, who read it while a held it, is not told it was resent: it was not
    said_c = await resend_as_read(read_c[0])
    assert said_c.startswith("not resent: another caller's resend of it, under way"), said_c
    # and b, who read it before a's refused resend, sends it (nothing was sent since its read)
    sent_b = await resend_as_read(read_b)
    assert not sent_b.startswith(("not resent", "refused")), sent_b
    assert count_messages(sqs, url) == 1


class _Before:
    """An SQS client that runs ``during()`` before each send, while the resend holds the row."""

    def __init__(self, client: Any, during: Callable[[], Any]) -> None:
        self._client, self._during = client, during

    async def send_message(self, **request: Any) -> Any:
        await self._during()
        return await self._client.send_message(**request)


def test_two_cli_resends_at_once_send_once(sqs, quarantined) -> None:
    url, env = quarantined
    (row,) = as_json(cli("quarantine", "list", "--json", env=env))
    args = ["quarantine", "resend", str(row["id"]), "--yes", "--json"]

    # when: two terminals run the same resend at once
    processes = [
        subprocess.Popen(
            [*ENTRY, *args],
            env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=110) for process in processes]

    # then: one resent it; the other skipped it, or (started after) found it gone
    resent = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        if process.returncode == 0:
            outcome = json.loads(stdout)
            resent += outcome["resent"]
            assert all("resent" in skip["reason"] for skip in outcome["skipped"]), outcome
        else:
            assert process.returncode == 1
            assert f"no quarantined message with id {row['id']}" in stderr
    assert [item["id"] for item in resent] == [row["id"]]
    assert count_messages(sqs, url) == 1


def test_dlq_peek_body_shows_bodies_and_attributes(sqs, make_queue, cli_env) -> None:
    _url, dlq = make_queue("peekbody")
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=POISON,
        MessageAttributes={"trace": {"DataType": "String", "StringValue": "abc-123"}},
    )

    table = cli("dlq", "peek", dlq, "--body", env=cli_env)
    listed = as_json(cli("dlq", "peek", dlq, "--body", "--json", env=cli_env))
    plain = as_json(cli("dlq", "peek", dlq, "--json", env=cli_env))

    assert table.returncode == 0, table.stderr
    assert '"eventSource": "aws:s3"' in table.stdout
    assert "trace = abc-123" in table.stdout
    assert listed[0]["body"] == POISON
    assert "body" not in plain[0]


def test_a_resend_without_aws_credentials_is_one_line_and_holds_nothing_back(
    sqs, quarantined
) -> None:
    # given: an operator whose credentials are not set (expired, another shell)
    url, env = quarantined
    (row,) = as_json(cli("quarantine", "list", "--json", env=env))
    no_credentials = {
        **env,
        **NO_CREDENTIALS,
    }

    # when
    refused = cli("quarantine", "resend", str(row["id"]), "--yes", env=no_credentials)
    again = cli("quarantine", "resend", str(row["id"]), "--yes", "--json", env=env)

    # then: one line; nothing was sent, so the message is not held as being resent: the
    # resend again, with credentials, sends it at once
    assert refused.returncode == 3, refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == [
        "error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE, or run with a role"
    ]
    outcome = as_json(again)
    assert [item["id"] for item in outcome["resent"]] == [row["id"]], outcome
    assert count_messages(sqs, url) == 1


def seed_quarantine(store_url: str, queue: str, bodies: list[str]) -> list[int]:
    """Messages only the store holds, quarantined from ``queue``; their ids, in order."""

    async def save() -> list[int]:
        async with Store.from_url(store_url) as store:
            await store.migrate()
            for n, body in enumerate(bodies):
                await store.save_quarantine(
                    QuarantineRow(queue, f"m-{n}", body, {}, "decode error: not a record", 1)
                )
            return sorted(row.id or 0 for row in await store.list_quarantine())

    return asyncio.run(save())


def test_an_id_given_twice_is_one_message_resent_once(sqs, make_queue, cli_env, sqlite_url) -> None:
    # given: one message only the store holds
    url, _ = make_queue("resend-twice", dlq=False)
    (only,) = seed_quarantine(sqlite_url, url, ["once"])

    # when: its id is given twice (a paste, a shell expansion), the copy kept
    asked = cli("quarantine", "resend", str(only), str(only), "--keep", env=cli_env)
    result = cli("quarantine", "resend", str(only), str(only), "--keep", "--yes", env=cli_env)

    # then: one message asked about and sent, nothing skipped (before: "Send 2 messages", and
    # the second "skipped: resent by another caller since this one read it": there was none)
    assert "Send 1 message back to its queue?" in asked.stderr
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "resent 1 · skipped 0 · failed 0"
    assert [m["Body"] for m in receive_all(sqs, url)] == ["once"]


def test_a_resend_to_a_queue_deleted_since_names_it_and_the_way_on(
    sqs, make_queue, cli_env, sqlite_url
) -> None:
    # given: a message quarantined from a queue that was deleted since, and one from a queue
    # that is still there
    gone, _ = make_queue("resend-gone", dlq=False)
    here, _ = make_queue("resend-here", dlq=False)
    (gone_id,) = seed_quarantine(sqlite_url, gone, ["lost"])
    here_id = max(seed_quarantine(sqlite_url, here, ["found"]))
    sqs.delete_queue(QueueUrl=gone)

    # when
    result = cli("quarantine", "resend", str(gone_id), str(here_id), "--yes", env=cli_env)

    # then: the other is resent; the line of the refused one names its queue and the way on,
    # not SQS's bare "The specified queue does not exist."; its stored copy stays
    assert result.returncode == 1, result.stderr
    assert f"{gone_id}: not sent: its queue {gone.rsplit('/', 1)[-1]} does not exist" in (
        result.stderr
    )
    assert f"`quarantine show {gone_id} --json`" in result.stderr
    assert [m["Body"] for m in receive_all(sqs, here)] == ["found"]
    listed = as_json(cli("quarantine", "list", "--json", env=cli_env))
    assert [row["id"] for row in listed] == [gone_id]


@pytest.mark.parametrize("region_from", ["settings", "profile"])
def test_a_resend_of_a_queue_in_another_region_names_the_region_not_a_deleted_queue(
    cli_env, sqlite_url, tmp_path, monkeypatch, region_from
) -> None:
    # given: a message a worker of eu-west-1 quarantined into the store this command (of
    # us-east-1, another region) reads; its region set, or the AWS config file's profile's
    # alone (as the AWS CLI reads it)
    env = dict(cli_env)
    if region_from == "profile":
        config = tmp_path / "config"
        config.write_text("[default]\nregion = us-east-1\n")
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(name, raising=False)
        env["AWS_CONFIG_FILE"] = str(config)
        del env["LAMBDA_DESTINATIONS_REGION"]
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-west-only"
    (west,) = seed_quarantine(sqlite_url, url, ["west"])

    # when
    result = cli("quarantine", "resend", str(west), "--yes", env=env)

    # then: SQS (asked in us-east-1) says the queue does not exist; the line says where it is
    # and how to resend it (before: "does not exist (deleted, or renamed): create it again";
    # with the profile's region, "SQS was asked in None")
    assert result.returncode == 1, result.stderr
    assert (
        f"{west}: not sent: its queue orders-west-only is in eu-west-1, and SQS was asked in "
        "us-east-1: resend it with LAMBDA_DESTINATIONS_REGION=eu-west-1; the stored copy stays"
    ) in result.stderr
    assert "create it again" not in result.stderr
    assert [row["id"] for row in as_json(cli("quarantine", "list", "--json", env=env))] == [west]


async def test_a_resend_that_loses_the_endpoint_midway_says_what_was_sent_and_what_was_not(
    sqs, make_queue, cli_env, endpoint_url, sqlite_url
) -> None:
    # given: three stored messages, and an endpoint that takes the first SendMessage and then
    # drops the connection of every one after before its answer comes back
    url, _ = make_queue("resend-cut", dlq=False)
    ids = await asyncio.to_thread(seed_quarantine, sqlite_url, url, ["one", "two", "three"])
    cutter = AnswerCutter(endpoint_url, b"SendMessage")
    cutter.passes, cutter.cuts = 1, 1000

    # when
    code, out, err, _ = await cli_through(
        cutter, cli_env, "quarantine", "resend", *map(str, ids), "--yes", "--json"
    )
    again = await asyncio.to_thread(
        cli, "quarantine", "resend", str(ids[2]), "--yes", "--json", env=cli_env
    )

    # then: the report of each message (resent, in doubt, not sent), then the line of what
    # stopped it
    stderr = err.decode()
    assert code == 4, stderr
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1
    outcome = json.loads(out)
    assert [item["id"] for item in outcome["resent"]] == ids[:1]
    (in_doubt,) = outcome["failed"]
    assert in_doubt["id"] == ids[1]
    assert in_doubt["error"].startswith("in doubt, may have reached its queue"), in_doubt
    (not_sent,) = outcome["skipped"]
    assert not_sent["id"] == ids[2]
    assert not_sent["reason"].startswith("not sent: the resend stopped before its turn")
    assert f"stopped after resending 1 of 3; {ids[1]} was cut off mid-send" in stderr
    assert f"1 not sent (`quarantine resend {ids[2]}` sends it)" in stderr
    assert stderr.rstrip().splitlines()[-1].startswith("error: cannot reach")
    # and the command it names sends the one not sent; the one in doubt stays in the store
    assert [item["id"] for item in as_json(again)["resent"]] == [ids[2]]
    listed = as_json(await asyncio.to_thread(cli, "quarantine", "list", "--json", env=cli_env))
    assert [row["id"] for row in listed] == [ids[1]]
    # and the send cut off reached the queue once: it was not sent again (botocore's retries
    # put it there four times)
    assert cutter.cut == 1
    bodies = [m["Body"] for m in await asyncio.to_thread(receive_all, sqs, url)]
    assert sorted(bodies) == ["one", "three", "two"]


async def test_a_resend_stopped_by_ctrl_c_midway_says_what_was_sent_and_what_was_not(
    sqs, make_queue, cli_env, endpoint_url, sqlite_url
) -> None:
    # given: three stored messages, and an endpoint that takes the first SendMessage and holds
    # back the answer to the second
    url, _ = make_queue("resend-ctrl-c", dlq=False)
    ids = await asyncio.to_thread(seed_quarantine, sqlite_url, url, ["one", "two", "three"])
    cutter = AnswerCutter(endpoint_url, b"SendMessage")
    cutter.passes, cutter.holds = 1, 1

    # when: Ctrl-C while the second send waits for its answer
    code, out, err, _ = await cli_through(
        cutter, cli_env, "quarantine", "resend", *map(str, ids), "--yes", ctrl_c=True
    )

    # then: each message's line (resent, in doubt, not sent), the tally and the line of what
    # was cut short, then "interrupted"
    stdout, stderr = out.decode(), err.decode()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith(f"{ids[0]} → ")
    assert f"{ids[1]}: in doubt, may have reached its queue" in stderr
    assert f"{ids[2]}: skipped: not sent: the resend stopped before its turn" in stderr
    assert "resent 1 · skipped 1 · failed 1" in stderr
    assert f"stopped after resending 1 of 3; {ids[1]} was cut off mid-send" in stderr
    assert stderr.rstrip().endswith("interrupted")


def test_list_says_when_more_are_quarantined_than_its_limit_shows(cli_env, sqlite_url) -> None:
    # given: three messages quarantined
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    ids = seed_quarantine(sqlite_url, queue, ["not json {"] * 3)

    # when
    cut = cli("quarantine", "list", "--limit", "2", env=cli_env)
    whole = cli("quarantine", "list", "--limit", "3", env=cli_env)

    # then: the newest two, and the line that says there are more (as `failures list` says
    # it: `quarantine resend --all` would resend those too); none when all are shown
    assert cut.returncode == 0, cut.stderr
    assert [line.split()[0] for line in cut.stdout.splitlines()[1:]] == [str(i) for i in ids[:0:-1]]
    assert cut.stderr == "the newest 2 shown; more messages are quarantined (--limit 0: all)\n"
    assert whole.returncode == 0, whole.stderr
    assert len(whole.stdout.splitlines()) == 4
    assert whole.stderr == ""


@pytest.mark.parametrize("width", [80, 200])
def test_list_on_a_terminal_fits_its_width(cli_env, sqlite_url: str, width: int) -> None:
    # given: messages quarantined from a queue with a long name, of a function with a long
    # name (a table 175 columns wide)
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-api-payment-failures-dlq"
    record = failure_record(random.Random(3), function="orders-api-payment-processor-production")
    seed_quarantine(sqlite_url, queue, [json.dumps(record), "not json {"])

    # when
    status, lines = cli_in_a_terminal("quarantine", "list", env=cli_env, width=width)

    # then: no line is wider than the terminal, one row a message
    assert status == 0, lines
    assert len(lines) == 3, lines
    assert max(len(line) for line in lines) <= width, lines
    assert ("orders-api-payment-failures-dlq" in lines[1]) is (width == 200)


def test_resend_all_reads_the_store_a_page_at_a_time(
    sqs, make_queue, cli_env, sqlite_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from lambda_destinations.cli import cli as main
    from lambda_destinations.store import base

    # given: 5 messages only the store holds, and pages of 2 rows
    url, _ = make_queue("resend-pages", dlq=False)
    ids = seed_quarantine(sqlite_url, url, [f"body {n}" for n in range(5)])
    monkeypatch.setattr(base, "PAGE", 2, raising=False)
    store_class = type(Store.from_url(sqlite_url))
    asked: list[int | None] = []
    list_quarantine = store_class.list_quarantine

    async def spied(self: Store, **kwargs: Any) -> Any:
        asked.append(kwargs.get("limit"))
        return await list_quarantine(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_class, "list_quarantine", spied)

    # when
    result = CliRunner().invoke(
        main, ["quarantine", "resend", "--all", "--yes", "--json"], env=cli_env
    )

    # then: the messages were listed in pages of at most 2 (a page's bodies held at once, not
    # every one's), and each was sent, newest first, with its own body
    assert result.exit_code == 0, result.output
    assert asked
    assert all(n is not None and n <= 2 for n in asked), asked
    assert len(asked) >= 3
    outcome = json.loads(result.stdout)
    assert [item["id"] for item in outcome["resent"]] == sorted(ids, reverse=True)
    assert sorted(m["Body"] for m in receive_all(sqs, url)) == [f"body {n}" for n in range(5)]


@pytest.mark.postgres
async def test_a_resend_stopped_by_ctrl_c_before_its_send_says_not_sent_not_in_doubt(
    sqs, make_queue, cli_env, postgres_url
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    # given: two messages only the store holds, the first's row locked by another transaction
    # (a worker's, a prune's), so the resend's claim of it waits
    url, _ = make_queue("resend-claim-wait", dlq=False)
    ids = await asyncio.to_thread(seed_quarantine, postgres_url, url, ["one", "two"])
    holder, watcher = await asyncpg.connect(postgres_url), await asyncpg.connect(postgres_url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT id FROM quarantine WHERE id = $1 FOR UPDATE", ids[0])
        process = await asyncio.create_subprocess_exec(
            *ENTRY,
            "quarantine",
            "resend",
            *map(str, ids),
            "--yes",
            "--json",
            env={**os.environ, **cli_env, "LAMBDA_DESTINATIONS_STORE": postgres_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=ctrl_c_as_in_a_terminal,
        )
        communicating = asyncio.ensure_future(process.communicate())

        # when: Ctrl-C while the claim waits for the lock, before any send
        async with asyncio.timeout(60):
            while not await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                assert not communicating.done(), "the resend ended without waiting"
                await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(communicating, 60)
        await transaction.rollback()
    finally:
        await holder.close()
        await watcher.close()

    # then: both not sent, and said so (before: the first "in doubt, may have reached its
    # queue: cut off before SQS answered", and "was cut off mid-send", of a message never sent)
    stderr = err.decode()
    assert process.returncode == 130, stderr
    outcome = json.loads(out)
    assert outcome["resent"] == outcome["failed"] == []
    assert [item["id"] for item in outcome["skipped"]] == ids
    assert "cut off" not in stderr, stderr
    assert f"2 not sent (`quarantine resend {ids[0]} {ids[1]}` sends them)" in stderr
    assert await asyncio.to_thread(receive_all, sqs, url) == []


def test_show_cuts_a_huge_attribute_as_it_cuts_the_body(cli_env, sqlite_url) -> None:
    # given: a message whose attribute holds 200,000 characters (SQS's size limit counts a
    # message's attributes with its body)
    async def save() -> int:
        async with Store.from_url(sqlite_url) as store:
            await store.migrate()
            big = {"DataType": "String", "StringValue": "a" * 200_000}
            row = QuarantineRow(QUEUE, "m-big", "{}", {"big": big}, "decode error: x", 1)
            await store.save_quarantine(row)
            assert row.id is not None
            return row.id

    ident = asyncio.run(save())

    # when
    text = cli("quarantine", "show", str(ident), env=cli_env)
    whole = as_json(cli("quarantine", "show", str(ident), "--json", env=cli_env))

    # then: its start and where to read it whole (before: all 200,000 characters); whole in
    # the JSON
    assert text.returncode == 0, text.stderr
    assert len(text.stdout) < 70_000
    assert (
        f"… cut: the first 65,536 of 200,000 characters; quarantine show {ident} --json prints "
        "it whole" in text.stdout
    )
    assert whole["message_attributes"]["big"]["StringValue"] == "a" * 200_000
