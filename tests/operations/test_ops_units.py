"""The pieces of the operator commands that need no server: times, rates, statistics, the
backoff schedule, the move-task progress loop, targets, payloads, tables."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ops_helpers import failure_body, row_of

from lambda_destinations.cli._common import parse_when
from lambda_destinations.cli._table import columns, render_table
from lambda_destinations.cli.failures import hourly_chart
from lambda_destinations.config import load_settings
from lambda_destinations.handlers.replay import NotReplayable, original_payload, replay_target
from lambda_destinations.operations import RateLimiter, failure_stats
from lambda_destinations.operations.doctor import Check, exit_status, retry_delays
from lambda_destinations.operations.redrive import (
    MoveReport,
    MoveTaskUnsupported,
    _Pass,
    answer_date_ms,
    follow_move_task,
    send_entry,
    start_move_task,
    start_time,
    target_chooser,
)
from lambda_destinations.operations.replay import counted_attempt
from lambda_destinations.simulate import kinesis_failure, legacy_dlq, success_record
from lambda_destinations.store.base import FailureCount, ReplayAttempt, ReplayOutcome
from lambda_destinations.worker.queues import SOURCE_ATTRIBUTE

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

# -- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - dt.timedelta(hours=2)),
        ("30m", NOW - dt.timedelta(minutes=30)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("1w", NOW - dt.timedelta(weeks=1)),
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("1.5h", NOW - dt.timedelta(minutes=90)),
        ("2024-04-30", dt.datetime(2024, 4, 30, tzinfo=dt.UTC)),
        ("2024-04-30T10:15Z", dt.datetime(2024, 4, 30, 10, 15, tzinfo=dt.UTC)),
        ("2024-04-30T12:15:00+02:00", dt.datetime(2024, 4, 30, 10, 15, tzinfo=dt.UTC)),
        ("2024-04-30 10:15", dt.datetime(2024, 4, 30, 10, 15, tzinfo=dt.UTC)),
        ("20240430", dt.datetime(2024, 4, 30, tzinfo=dt.UTC)),
        ("20240430T101500Z", dt.datetime(2024, 4, 30, 10, 15, tzinfo=dt.UTC)),
    ],
)
def test_times_are_durations_ago_or_iso(text: str, expected: dt.datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2 hours", "-2h", "2024-13-01", ""])
def test_other_times_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_when(text, NOW)


@pytest.mark.parametrize(
    "text",
    [
        "1" * 30,  # read as 1111-11-11 11:11:11.111111
        "20240430112",  # read as 2024-04-30 12:00 (the 1 taken for the T)
        "20240430101500+0000",  # read as 2024-04-30 01:50 (the 1 taken for the T)
        "2024-04-30+02:00",  # read as 02:00 UTC, the zone taken for the time
    ],
)
def test_a_date_followed_by_other_than_t_or_a_space_is_refused_not_misread(text: str) -> None:
    # fromisoformat takes any character after the date for the T before the time
    with pytest.raises(ValueError, match="neither a duration"):
        parse_when(text, NOW)


# -- rate limiting ----------------------------------------------------------------------------


async def test_the_rate_limiter_spaces_operations_evenly() -> None:
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    limiter = RateLimiter(4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        await limiter.acquire()

    assert slept == [0.25, 0.25, 0.25, 0.25]
    await limiter.acquire(10)  # a batch of ten costs ten slots
    await limiter.acquire()
    assert slept[-1] == pytest.approx(2.5)


async def test_no_rate_means_no_waiting() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("slept")

    limiter = RateLimiter(0, sleep=sleep)
    for _ in range(100):
        await limiter.acquire()
    assert limiter.rate is None


# -- statistics -------------------------------------------------------------------------------


def test_stats_group_by_function_and_error_type_and_count_per_hour() -> None:
    # the store's counts per function, error type and hour (first and last time in the hour)
    def ago(minutes: int) -> dt.datetime:
        return NOW - dt.timedelta(minutes=minutes)

    counts = [
        FailureCount("a", "TimeoutError", 1, ago(10), ago(10)),
        FailureCount("a", "TimeoutError", 1, ago(70), ago(70)),
        FailureCount("a", "ValueError", 1, ago(75), ago(75)),
        FailureCount("b", "TimeoutError", 1, ago(130), ago(130)),
    ]

    stats = failure_stats(counts, NOW - dt.timedelta(hours=3), NOW)

    assert stats.total == 4
    assert [(g.function_name, g.error_type, g.count) for g in stats.groups] == [
        ("a", "TimeoutError", 2),
        ("a", "ValueError", 1),
        ("b", "TimeoutError", 1),
    ]
    first = stats.groups[0]
    assert first.first_seen == NOW - dt.timedelta(minutes=70)
    assert first.last_seen == NOW - dt.timedelta(minutes=10)
    # 09:00-12:00: 09:50 | 10:45, 10:50 | 11:50
    assert [count for _, count in stats.hourly] == [1, 2, 1]
    chart = hourly_chart(stats.hourly)
    assert chart[0] == "failures per hour"
    assert chart[1] == "  05-01 09:00  " + "█" * 20 + " 1"
    assert chart[2] == "  05-01 10:00  " + "█" * 40 + " 2"  # the peak gets the full bar


# -- the doctor's arithmetic ------------------------------------------------------------------


def test_the_backoff_schedule_doubles_up_to_retry_max() -> None:
    settings = load_settings(retry_base=5, retry_max=60)

    assert retry_delays(settings, 6) == [5, 10, 20, 40, 60, 60]
    assert retry_delays(settings, 1) == [5]


def test_exit_status_from_checks() -> None:
    ok = Check("a", "ok", "")
    warn = Check("b", "warn", "")
    error = Check("c", "error", "")
    away = Check("d", "error", "", unreachable=True)

    assert exit_status([ok, warn]) == "ok"
    assert exit_status([ok, error]) == "failed"
    assert exit_status([error, away]) == "unreachable"


# -- SQS's message move task (moto has none: its protocol, with a stand-in) -------------------


class MoveTasks:
    """Answers ListMessageMoveTasks with a task that moves 40 messages in three polls."""

    def __init__(self, final: str = "COMPLETED") -> None:
        self.polls = 0
        self.final = final

    async def list_message_move_tasks(self, **kwargs: Any) -> dict[str, Any]:
        self.polls += 1
        moved = min(40, 15 * self.polls)
        status = "RUNNING" if self.polls < 3 else self.final
        return {
            "Results": [
                {
                    "TaskHandle": "h-1",
                    "Status": status,
                    "SourceArn": kwargs["SourceArn"],
                    "ApproximateNumberOfMessagesMoved": moved,
                    "ApproximateNumberOfMessagesToMove": 40,
                }
            ]
        }


async def test_a_move_task_is_followed_to_its_end() -> None:
    tasks = MoveTasks()
    seen: list[tuple[int, int | None]] = []

    async def no_sleep(seconds: float) -> None:
        return None

    status = await follow_move_task(
        tasks,
        "arn:aws:sqs:us-east-1:123456789012:dlq",
        "h-1",
        on_progress=lambda moved, total: seen.append((moved, total)),
        sleep=no_sleep,
    )

    assert status["Status"] == "COMPLETED"
    assert seen == [(15, 40), (30, 40), (40, 40)]


class Refusing:
    def __init__(self, code: str, status: int) -> None:
        self.error = ClientError(
            {
                "Error": {"Code": code, "Message": "<!doctype html>"},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "StartMessageMoveTask",
        )

    async def start_message_move_task(self, **kwargs: Any) -> dict[str, Any]:
        raise self.error


@pytest.mark.parametrize(
    ("code", "status", "said"),
    [("500", 500, "HTTP 500: "), ("UnsupportedOperation", 400, "HTTP 400 UnsupportedOperation: ")],
)
async def test_an_endpoint_without_move_tasks_is_told_apart(
    code: str, status: int, said: str
) -> None:
    with pytest.raises(MoveTaskUnsupported) as refused:
        await start_move_task(Refusing(code, status), "arn:dlq", None, None)
    # the status once: botocore gives it as the code too when the answer names none
    assert str(refused.value) == f"{said}not implemented by the endpoint"


async def test_other_move_task_errors_are_errors() -> None:
    with pytest.raises(ClientError):
        await start_move_task(Refusing("AccessDenied", 403), "arn:dlq", None, None)


# -- where redriven messages go, and how ------------------------------------------------------


def _message(source: str | None = None, **attributes: str) -> dict[str, Any]:
    message: dict[str, Any] = {"MessageId": "m-1", "Body": "b", "Attributes": attributes}
    if source:
        message["MessageAttributes"] = {
            SOURCE_ATTRIBUTE: {"DataType": "String", "StringValue": source}
        }
    return message


def test_targets_are_to_else_the_only_source_else_the_message_s_own() -> None:
    assert target_chooser("t", ["a", "b"])(_message("a")) == "t"
    assert target_chooser(None, ["a"])(_message()) == "a"
    several = target_chooser(None, ["a", "b"])
    assert several(_message("b")) == "b"
    stays = several(_message("c"))
    assert isinstance(stays, tuple)
    assert "use --to" in stays[1]


def test_a_fifo_target_gets_a_group_and_a_deduplication_id() -> None:
    plain = send_entry(_message(), 3, fifo=False)
    fifo = send_entry(
        _message(MessageGroupId="g", MessageDeduplicationId="d", AWSTraceHeader="Root=1"),
        0,
        fifo=True,
    )

    assert plain == {"Id": "3", "MessageBody": "b"}
    assert fifo["MessageGroupId"] == "g"
    # the DLQ's message id: SQS drops a second send of the first id within five minutes
    assert fifo["MessageDeduplicationId"] == "m-1"
    assert fifo["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] == "Root=1"


# -- what a replay invokes --------------------------------------------------------------------


def test_a_failure_replays_its_function_with_its_payload() -> None:
    body, record = failure_body(1, payload={"b": 1, "a": [1.5, None, "ü"]})

    target = replay_target(row_of(body))

    assert target.function_arn == record["requestContext"]["functionArn"]
    assert json.loads(target.payload) == {"b": 1, "a": [1.5, None, "ü"]}


def test_a_payload_with_a_lone_surrogate_replays_as_its_json_escape() -> None:
    # JSON spells "\ud800", UTF-8 has no bytes for it: `replay` ended in a UnicodeEncodeError
    # traceback, and the worker's replay job failed the same way
    body, _ = failure_body(1, payload={"note": "a\ud800", "name": "ü"})

    target = replay_target(row_of(body))

    assert json.loads(target.payload) == {"note": "a\ud800", "name": "ü"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (json.dumps(kinesis_failure(random.Random(1))), "stream batch failure"),
        (json.dumps(success_record(random.Random(1))), "succeeded"),
    ],
)
def test_what_cannot_be_replayed_says_why(body: str, reason: str) -> None:
    with pytest.raises(NotReplayable, match=reason):
        replay_target(row_of(body))


def test_a_legacy_message_replays_its_body_as_received() -> None:
    message = legacy_dlq(random.Random(1))
    row = row_of("plain text, not JSON", message.attributes)

    with pytest.raises(NotReplayable, match="--legacy-function"):
        replay_target(row)
    target = replay_target(row, legacy_function="orders-api")
    assert target.function_arn == "orders-api"
    assert target.payload == b"plain text, not JSON"
    assert (
        original_payload(row_of(message.body, message.attributes))
        == json.dumps(json.loads(message.body), separators=(",", ":")).encode()
    )


def test_an_error_attempt_does_not_count_as_a_replay() -> None:
    row = row_of(failure_body(1)[0])

    def attempt(n: int, outcome: ReplayOutcome) -> ReplayAttempt:
        return ReplayAttempt(row.key, row.request_id, "arn", n, "manual", "me", outcome=outcome)

    assert counted_attempt(row, [attempt(1, ReplayOutcome.ERROR)]) is None
    counted = counted_attempt(
        row, [attempt(1, ReplayOutcome.INVOKED), attempt(2, ReplayOutcome.ERROR)]
    )
    assert counted is not None
    assert counted.attempt == 1


# -- tables -----------------------------------------------------------------------------------


def test_a_table_narrows_its_flexible_columns_to_fit() -> None:
    rows = [["short", "a long error message that goes on and on", 12]]

    wide = render_table(["NAME", "ERROR", "N"], rows, flex=(1,), right=(2,), width=200)
    narrow = render_table(["NAME", "ERROR", "N"], rows, flex=(1,), right=(2,), width=30)
    wrapped = render_table(["NAME", "ERROR", "N"], rows, flex=(1,), wrap=True, width=30)

    assert wide.splitlines()[1] == "short  a long error message that goes on and on  12"
    assert max(len(line) for line in narrow.splitlines()) <= 30
    assert "…" in narrow
    assert len(wrapped.splitlines()) > 2
    assert "on and on" in " ".join(wrapped.split())
    assert render_table(["A", "B"], [[None, ""]], width=None).splitlines()[1] == "-  -"


def test_a_table_too_narrow_shows_ids_by_starts_that_tell_them_apart() -> None:
    # given: two request ids whose first 8 characters are the same, and a third
    rows = [
        ["5b06258e-7e26-436a-8483-f8b8332dd331", "an error message that goes on"],
        ["5b06258e-aaaa-436a-8483-f8b8332dd331", "an error message that goes on"],
        ["0cb1e29c-658c-4a14-95e6-0af593bd04cf", "an error message that goes on"],
    ]

    wide = render_table(["REQUEST ID", "ERROR"], rows, flex=(1,), starts={0: 8}, width=200)
    narrow = render_table(["REQUEST ID", "ERROR"], rows, flex=(1,), starts={0: 8}, width=30)

    # then: whole where they fit; else as long a start as tells them apart (10), uncut
    assert [line.split()[0] for line in wide.splitlines()[1:]] == [r[0] for r in rows]
    assert [line.split()[0] for line in narrow.splitlines()[1:]] == [r[0][:10] for r in rows]
    assert max(len(line) for line in narrow.splitlines()) <= 30


def test_a_table_counts_wide_and_zero_width_characters_in_terminal_columns() -> None:
    # given: error messages in Chinese, with an emoji, and with a combining accent and a zero
    # width joiner, which a terminal shows in 2, 2 and 0 columns a character
    rows = [
        ["orders-api", "错误：订单未找到，客户编号无效", 1],
        ["orders-api", "boom \U0001f4a5 then more words", 2],
        ["orders-api", "cafe\u0301 \U0001f468\u200d\U0001f469 fine", 3],
        ["orders-api", "plain ascii", 4],
    ]

    # when: it is drawn for terminals of 40 columns (cut and wrapped) and of 200
    for kind in ({"width": 40}, {"width": 40, "wrap": True}, {"width": 200}):
        lines = render_table(["NAME", "ERROR", "N"], rows, flex=(1,), right=(2,), **kind)

        # then: no line is wider than the terminal, and the right-aligned N column ends in
        # the same column on every line that has one
        shown = lines.splitlines()
        assert max(columns(line) for line in shown) <= kind["width"], lines
        ends = {columns(line) for line in shown if line[-1:].isdigit() or line.endswith("N")}
        assert len(ends) == 1, lines
    assert columns("错误") == 4
    assert columns("e\u0301\u200b") == 1


def test_a_message_received_again_while_it_is_sent_is_deleted_with_its_newest_receipt() -> None:
    # given: a mover sending a message whose visibility then ended, and a second mover that
    # received it again (SQS honours only the newest receipt of a message received again)
    pass_ = _Pass("run-1", 10**13, MoveReport())
    first = {"MessageId": "m-1", "ReceiptHandle": "r-old", "Attributes": {"SentTimestamp": "1"}}
    assert pass_.sort([first]) == ([first], [])
    again = {**first, "ReceiptHandle": "r-new"}

    # when: the second mover sorts it, and the first one's send ends
    sorted_again = pass_.sort([again])
    settled = pass_.newest_receipt(first)

    # then: it is not sent twice, and the first mover deletes it with the newest receipt
    assert sorted_again == ([], [])
    assert settled["ReceiptHandle"] == "r-new"
    assert "m-1" not in pass_.moving


# SQS's Date: Sun, 06 Dec 2026 19:47:54 GMT, in ms since the epoch
SQS_SECOND = 1_796_586_474_000


@pytest.mark.parametrize(
    ("before", "after", "start"),
    [
        # agrees with SQS's second (a few ms each way for the round trip): kept to the ms
        (SQS_SECOND + 400, SQS_SECOND + 420, SQS_SECOND + 400),
        (SQS_SECOND - 10, SQS_SECOND, SQS_SECOND - 10),
        (SQS_SECOND + 999, SQS_SECOND + 1010, SQS_SECOND + 999),
        # behind it, or ahead of it: SQS's second, the earliest its clock can have read
        (SQS_SECOND - 600_000, SQS_SECOND - 599_990, SQS_SECOND),
        (SQS_SECOND - 20, SQS_SECOND - 1, SQS_SECOND),
        (SQS_SECOND + 1000, SQS_SECOND + 1010, SQS_SECOND),
        (SQS_SECOND + 600_000, SQS_SECOND + 600_010, SQS_SECOND),
    ],
    ids=[
        "inside",
        "at-its-start",
        "at-its-end",
        "minutes-behind",
        "just-behind",
        "just-ahead",
        "minutes-ahead",
    ],
)
def test_a_run_starts_by_sqs_s_clock_to_its_second(before: int, after: int, start: int) -> None:
    assert start_time(before, after, SQS_SECOND) == start


def test_without_sqs_s_date_a_run_starts_by_this_machine_s_clock() -> None:
    assert start_time(SQS_SECOND - 600_000, SQS_SECOND - 599_990, None) == SQS_SECOND - 600_000


@pytest.mark.parametrize(
    ("headers", "date"),
    [
        ({"date": "Sun, 06 Dec 2026 19:47:54 GMT"}, SQS_SECOND),
        ({"date": "Sunday, 06-Dec-26 19:47:54 GMT"}, SQS_SECOND),  # RFC 850, obsolete
        ({"date": "Sun, 06 Dec 2026 19:47:54 -0000"}, SQS_SECOND),  # no zone said: GMT
        ({"date": "yesterday"}, None),
        ({}, None),
    ],
)
def test_the_date_of_an_answer_is_read_from_its_headers(
    headers: dict[str, str], date: int | None
) -> None:
    assert answer_date_ms({"ResponseMetadata": {"HTTPHeaders": headers}}) == date
    assert answer_date_ms({}) is None
