"""A redrive that moves messages itself, on a machine whose clock is not SQS's: it moves what
was in the DLQ when it started, by SQS's clock (the ``Date`` of its answers), not this one's.

The clock is made wrong in this process only (``redrive.wall_clock_ms``): the moto server runs
in it too, and stamps ``SentTimestamp`` and ``Date`` by the machine's own clock."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest
from aiobotocore.session import get_session
from ops_helpers import count_messages, receive_all, send_all

from lambda_destinations.operations import redrive
from lambda_destinations.operations.redrive import move_messages, target_chooser
from tcp_proxy import AnswerCutter, aws_error

TEN_MINUTES = 600_000  # ms


def clock_off_by(monkeypatch: pytest.MonkeyPatch, skew_ms: int) -> None:
    """This process's clock, as the redrive reads it, ``skew_ms`` ahead of SQS's (behind if
    negative)."""
    right = redrive.wall_clock_ms
    monkeypatch.setattr(redrive, "wall_clock_ms", lambda: right() + skew_ms)


async def into_the_next_second() -> None:
    """Wait until the machine's clock has passed a whole second: SQS's ``Date`` has whole
    seconds, and a run whose clock disagrees with it starts at the start of SQS's second, so a
    message sent earlier in that second would wait for the next run."""
    await asyncio.sleep(1.01 - time.time() % 1)


class SendThenDeadLetter:
    """Sends a batch, then a message lands in the DLQ: one that arrives during the run."""

    def __init__(self, client: Any, dlq: str) -> None:
        self.client = client
        self.dlq = dlq
        self.late = False

    async def send_message_batch(self, **kwargs: Any) -> Any:
        answer = await self.client.send_message_batch(**kwargs)
        if not self.late:
            self.late = True
            await self.client.send_message(QueueUrl=self.dlq, MessageBody="late")
        return answer


@pytest.mark.parametrize(
    "skew_ms", [-TEN_MINUTES, TEN_MINUTES, 0], ids=["clock-behind", "clock-ahead", "clock-right"]
)
async def test_a_redrive_moves_what_was_in_the_dlq_by_sqs_s_clock_not_the_machine_s(
    sqs, make_queue, endpoint_url, monkeypatch, skew_ms
) -> None:
    # given: three messages in a DLQ, and this machine's clock ten minutes off SQS's
    url, dlq = make_queue("skewed-clock")
    send_all(sqs, dlq, ["a", "b", "c"])
    await into_the_next_second()
    clock_off_by(monkeypatch, skew_ms)

    # when: a run (one mover) during which a fourth message arrives in the DLQ
    async with get_session().create_client(
        "sqs", endpoint_url=endpoint_url, region_name="us-east-1"
    ) as client:
        late, home = SendThenDeadLetter(client, dlq), target_chooser(url, [url])
        report = await move_messages(client, dlq, home, concurrency=1, sender=late)

    # then: the three moved, the one that arrived left for the next run (before: behind, none
    # moved and all four left as "arrived after this redrive started", exit 0; ahead, all four
    # moved)
    assert (report.moved, report.arrived) == (3, 1), report.as_dict()
    assert report.ok
    assert sorted(m["Body"] for m in receive_all(sqs, url)) == ["a", "b", "c"]
    assert [m["Body"] for m in receive_all(sqs, dlq)] == ["late"]


def dated(answer: bytes) -> bytes:
    """``answer`` with a ``Date`` header of now, as SQS dates its refusals too."""
    date = email.utils.formatdate(usegmt=True).encode()
    return answer.replace(b"\r\n", b"\r\nDate: " + date + b"\r\n", 1)


async def test_a_refused_look_at_the_start_still_gives_sqs_s_time(
    sqs, make_queue, endpoint_url, monkeypatch
) -> None:
    # given: a DLQ of two messages, a clock ten minutes behind, and SQS refusing the look at
    # the DLQ the run starts with (only that one: its end's count of hidden messages passes)
    url, dlq = make_queue("skewed-refused")
    send_all(sqs, dlq, ["a", "b"])
    await into_the_next_second()
    clock_off_by(monkeypatch, -TEN_MINUTES)
    cutter = AnswerCutter(endpoint_url, b'["ApproximateNumberOfMessages"]', http=True)
    cutter.refusals = 1
    cutter.refusal = dated(aws_error(403, "AccessDenied", "not authorized", "json"))

    # when
    async with (
        cutter.running() as proxied,
        get_session().create_client("sqs", endpoint_url=proxied, region_name="us-east-1") as client,
    ):
        report = await move_messages(client, dlq, target_chooser(url, [url]), concurrency=1)

    # then: the refusal's Date was SQS's time: both moved
    assert (report.moved, report.arrived) == (2, 0), report.as_dict()
    assert cutter.refused == 1
    assert count_messages(sqs, dlq) == 0
