"""Deletes and visibility changes sent while SQS is away (a proxy in front of moto, taken down):
what the log says of the batches that fail, and of SQS answering again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

from structlog.contextvars import bound_contextvars, merge_contextvars
from structlog.testing import capture_logs

from freezable_proxy import FreezableProxy
from lambda_destinations.aws import AwsClients
from lambda_destinations.worker.batching import BatchSender


async def no_sleep(_seconds: float) -> None:
    """The batches' own retries, at once."""


@contextlib.asynccontextmanager
async def deletes(
    settings_for: Callable[..., Any], url: str, endpoint_url: str
) -> AsyncIterator[tuple[BatchSender, FreezableProxy]]:
    """A delete sender for ``url`` on a real SQS client (no retries of botocore's own), through
    a proxy in front of moto."""
    parts = urlsplit(endpoint_url)
    proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 80)
    with proxy.running() as proxied:
        async with AwsClients(settings_for(url, endpoint_url=proxied), max_attempts=1) as aws:
            client = await aws.client("sqs")

            async def send(queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
                answer: dict[str, Any] = await client.delete_message_batch(
                    QueueUrl=queue_url, Entries=entries
                )
                return answer

            yield BatchSender("delete", send, sleep=no_sleep), proxy


async def test_batches_failing_in_an_outage_are_told_once_and_their_end_once(
    make_queue, settings_for, endpoint_url
) -> None:
    # given: a delete sender on a real SQS client through a proxy
    url, _ = make_queue("batch-outage")
    with capture_logs() as logs:
        async with deletes(settings_for, url, endpoint_url) as (sender, proxy):
            # when: SQS goes away, and five deletes go out one after another, each its own
            # batch (messages ending one by one), then SQS answers again
            proxy.take_down()
            taken = [await sender.submit(url, {"ReceiptHandle": f"r{n}"}) for n in range(5)]
            proxy.bring_back()
            after = await sender.submit(url, {"ReceiptHandle": "gone"})
            await sender.flush()

    # then: one warning for the five failed batches, with the error (before: one
    # a batch, so one a message), and one line when SQS answered, saying what failed
    assert taken == [False] * 5
    assert after is False  # answered: SQS refused a receipt handle no message has
    failed = [e for e in logs if str(e["event"]).startswith("delete batch")]
    assert [e["event"] for e in failed] == [
        "delete batch failed; the messages will be delivered again",
        "delete batches answered again",
    ]
    assert failed[0]["log_level"] == "warning"
    assert failed[0]["error"], failed[0]
    assert failed[1]["failed_batches"] == 5
    assert failed[1]["failed_entries"] == 5
    assert failed[1]["outage_seconds"] >= 0


async def test_batches_still_failing_at_the_last_flush_are_closed_in_the_log(
    make_queue, settings_for, endpoint_url
) -> None:
    # given: deletes failing through a proxy taken down
    url, _ = make_queue("batch-outage-stop")
    with capture_logs() as logs:
        async with deletes(settings_for, url, endpoint_url) as (sender, proxy):
            proxy.take_down()
            taken = [await sender.submit(url, {"ReceiptHandle": f"r{n}"}) for n in range(3)]

            # when: the last flush, at shutdown, SQS still away
            await sender.flush()

    # then: the failing the log began, it closes, with what failed
    assert taken == [False] * 3
    lines = [e for e in logs if str(e["event"]).startswith(("delete batch", "stopping; delete"))]
    assert len(lines) == 2, [e["event"] for e in lines]
    assert lines[0]["event"] == "delete batch failed; the messages will be delivered again"
    assert lines[1]["event"].startswith("stopping; delete batches still failing (3 batches in ")
    assert (lines[1]["failed_batches"], lines[1]["log_level"]) == (3, "warning")


async def test_a_batch_line_names_no_message_of_the_one_whose_delete_began_the_batch(
    make_queue, settings_for, endpoint_url
) -> None:
    # given: a delete submitted as a message's fields are bound (as the dispatcher binds them)
    url, _ = make_queue("batch-context")
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with deletes(settings_for, url, endpoint_url) as (sender, proxy):
            proxy.take_down()
            with bound_contextvars(message_id="m-1", request_id="r-1"):
                done = sender.submit(url, {"ReceiptHandle": "r1"})
            second = sender.submit(url, {"ReceiptHandle": "r2"})

            # when: the batch of both fails
            taken = [await done, await second]

    # then: its line is the batch's, naming neither message (before: the first one's ids)
    assert taken == [False, False]
    (line,) = [e for e in logs if str(e["event"]).startswith("delete batch")]
    assert line["entries"] == 2
    assert "message_id" not in line
    assert "request_id" not in line
