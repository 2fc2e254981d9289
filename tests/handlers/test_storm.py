"""Alert storms through the worker: the first alerts at once, one digest for the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from handler_helpers import (
    digest_ended,
    emails_to,
    eventually,
    failure_record,
    running_worker,
    send_records,
    settings_for_handlers,
    sms_to,
    unique_address,
    unique_number,
    verify_sender,
)

from lambda_destinations.aws import AwsClients
from lambda_destinations.config import Settings
from lambda_destinations.handlers import HandlerRegistry
from lambda_destinations.handlers.jobs import JobContext
from lambda_destinations.handlers.sms import build
from lambda_destinations.handlers.storm import DEFAULT_DIGEST, DIGEST_FIELDS, Digest, run_digest_job
from lambda_destinations.handlers.templates import Template
from lambda_destinations.store import JobState, Store
from lambda_destinations.worker import Worker


def storm_settings(
    endpoint_url: str,
    url: str,
    *,
    store: str,
    number: str,
    window: float,
    concurrency: int = 32,
    **options: Any,
) -> Settings:
    return settings_for_handlers(
        endpoint_url,
        url,
        store=store,
        handlers={
            "oncall-sms": {"type": "sms", "phone_numbers": [number], "window": window, **options}
        },
        chain=("oncall-sms",),
        concurrency=concurrency,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_60_failures_make_three_alerts_and_one_digest_across_a_restart(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: 60 failures of one function and error type, and a window of 45 s (the test lasts
    # about as long as the window: a quiet machine drains 120 of these in 4 s, so 60 fit with
    # room for a machine ten times as loaded)
    url, _ = make_queue("storm")
    number = unique_number()
    send_records(sqs, url, [failure_record("orders-api") for _ in range(60)])
    # concurrency 8: a worker stopped finishes what it has received (its 8 handler slots and 8
    # received ahead), well short of 60 after a stop at 10; at 32 it could finish every one
    settings = storm_settings(
        endpoint_url, url, store=sqlite_url, number=number, window=45, concurrency=8
    )

    # when: a worker handles part of them and stops; a new one on the same store goes on
    async with Worker(settings) as first, running_worker(first):
        await eventually(lambda: first.stats.handler_runs["oncall-sms"] >= 10, within=100)
    assert first.stats.handler_runs["oncall-sms"] < 60  # stopped in the middle
    digest_text = "57 more failures of orders-api / TimeoutError in the last 45 seconds"
    async with Worker(settings) as second, running_worker(second):
        sent = await eventually(
            lambda: (texts := sms_to(endpoint_url, number)) and digest_text in texts and texts,
            within=200,
        )
    # and a third worker, started after the digest, finds nothing left to send
    async with Worker(settings) as third, running_worker(third):
        await asyncio.sleep(2.5)

    # then: three alerts at once, one digest with the right count, nothing twice
    assert len(sent) == 4
    assert sent[3] == digest_text
    assert all(text.startswith("orders-api failed (RetriesExhausted)") for text in sent[:3])
    assert sms_to(endpoint_url, number) == sent
    runs = first.stats.handler_runs["oncall-sms"] + second.stats.handler_runs["oncall-sms"]
    assert runs == 60
    assert third.stats.handler_runs["oncall-sms"] == 0
    async with Store.from_url(sqlite_url) as store:
        (digest,) = await store.list_jobs(kind="digest")
    assert digest.state is JobState.DONE
    assert digest.attempts == 1


async def test_two_workers_at_once_share_one_window_and_one_digest(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, store_url: str
) -> None:
    # given: 60 failures, two replicas draining the same queue into the same store
    url, _ = make_queue("storm-2")
    number = unique_number()
    send_records(sqs, url, [failure_record("billing", error_type="KeyError") for _ in range(60)])
    # a window of 20 s: long enough for 60 records to drain on a loaded machine
    settings = storm_settings(endpoint_url, url, store=store_url, number=number, window=20)
    settings = settings.model_copy(update={"concurrency": 8})

    # when
    async with (
        Worker(settings) as one,
        Worker(settings) as two,
        running_worker(one),
        running_worker(two),
    ):
        sent = await eventually(lambda: len(sms_to(endpoint_url, number)) >= 4, within=90)
        await asyncio.sleep(2.5)  # both schedulers poll again: no second digest

    # then
    texts = sms_to(endpoint_url, number)
    assert sent
    assert len(texts) == 4
    assert texts[3] == "57 more failures of billing / KeyError in the last 20 seconds"
    assert one.stats.handler_runs["oncall-sms"] + two.stats.handler_runs["oncall-sms"] == 60


async def test_groups_are_per_function_and_error_type(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("storm-groups")
    number = unique_number()
    records = [failure_record("orders-api", error_type="TimeoutError") for _ in range(3)]
    records += [failure_record("orders-api", error_type="KeyError") for _ in range(3)]
    records += [failure_record("billing", error_type="TimeoutError") for _ in range(1)]
    send_records(sqs, url, records)
    settings = storm_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        number=number,
        window=3,
        send_first=2,
        message="{function_name}/{error_type}",
        digest_message="digest {function_name}/{error_type}: {count} of {total}",
    )

    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: len(sms_to(endpoint_url, number)) >= 7, within=30)
        await asyncio.sleep(1.5)

    texts = sms_to(endpoint_url, number)
    assert sorted(texts) == sorted(
        ["orders-api/TimeoutError"] * 2
        + ["orders-api/KeyError"] * 2
        + ["billing/TimeoutError"]
        + ["digest orders-api/TimeoutError: 1 of 3", "digest orders-api/KeyError: 1 of 3"]
    )


async def test_a_function_of_the_same_name_in_another_account_or_region_has_its_own_group(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    # given: orders-api failing in the account and the region of the others, and a function of
    # the same name in another account and in another region (staging and prod, say), once each
    url, _ = make_queue("storm-accounts")
    number = unique_number()
    records = [failure_record("orders-api") for _ in range(3)]
    for account, region in (("210987654321", "us-east-1"), ("123456789012", "eu-west-1")):
        other = failure_record("orders-api")
        arn = f"arn:aws:lambda:{region}:{account}:function:orders-api:$LATEST"
        other["requestContext"]["functionArn"] = arn
        records.append(other)
    send_records(sqs, url, records)
    settings = storm_settings(
        endpoint_url,
        url,
        store=sqlite_url,
        number=number,
        window=600,
        send_first=1,
        message="{account} {region} {function_name}",
    )

    # when
    async with Worker(settings) as worker:
        await worker.run(once=True)

    # then: the storm of the first holds its own alerts back, not the others' first ones
    texts = sms_to(endpoint_url, number)
    assert sorted(texts) == [
        "123456789012 eu-west-1 orders-api",
        "123456789012 us-east-1 orders-api",
        "210987654321 us-east-1 orders-api",
    ]


async def test_an_email_digest_goes_out_once_by_ses(
    sqs: Any, make_queue: Callable[..., Any], endpoint_url: str, sqlite_url: str
) -> None:
    url, _ = make_queue("storm-mail")
    sender, to = unique_address("alerts"), unique_address()
    verify_sender(endpoint_url, sender)
    send_records(sqs, url, [failure_record("billing", error_type="KeyError") for _ in range(12)])
    settings = settings_for_handlers(
        endpoint_url,
        url,
        store=sqlite_url,
        handlers={
            "oncall-mail": {
                "type": "email",
                "from": sender,
                "to": [to],
                "window": "4s",
                "send_first": 2,
            }
        },
        chain=("persist", "oncall-mail"),
    )

    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: len(emails_to(endpoint_url, to)) >= 3, within=30)
        await asyncio.sleep(1.5)

    mails = emails_to(endpoint_url, to)
    assert len(mails) == 3
    digest = mails[2]
    assert digest.subject == (
        "[lambda-destinations] 10 more failures of billing / KeyError in the last 4 seconds"
    )
    assert "The first 2 went out one by one." in digest.body


def test_storm_defaults_are_five_minutes_and_three_alerts(
    handler_settings: Callable[..., Settings],
) -> None:
    handler = build("oncall", {"phone_numbers": ["+14155552671"]}, handler_settings("q"))

    assert (handler.storm.window, handler.storm.send_first) == (300.0, 3)
    assert handler.storm.enabled
    off = build("oncall", {"phone_numbers": ["+14155552671"], "window": 0}, handler_settings("q"))
    assert not off.storm.enabled


def digest_of(start: dt.datetime, *, window: float, total: int) -> Digest:
    """The digest of orders-api / TimeoutError in a window from ``start``, 3 sent at once."""
    return Digest(
        handler="oncall",
        function_name="orders-api",
        error_type="TimeoutError",
        window=window,
        window_start=start,
        window_end=start + dt.timedelta(seconds=window),
        total=total,
        send_first=3,
        first_at=start,
        last_at=start + dt.timedelta(seconds=window * 0.8),
    )


def test_a_digest_sent_late_says_when_its_window_was() -> None:
    # given: a window of five minutes that ended at 10:05 UTC, with 40 alerts held back
    start = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    digest = digest_of(start, window=300, total=43)
    text = Template.compile(DEFAULT_DIGEST, where="t", allowed=DIGEST_FIELDS)

    # when / then: sent as the window ends, "in the last"; an hour later (after a restart), when
    on_time = digest.fields(now=start + dt.timedelta(minutes=5, seconds=2))
    late = digest.fields(now=start + dt.timedelta(hours=1))
    assert (
        text.render(on_time)
        == "40 more failures of orders-api / TimeoutError in the last 5 minutes"
    )
    assert text.render(late) == (
        "40 more failures of orders-api / TimeoutError in the 5 minutes from 2026-12-01 10:00 UTC"
    )


def test_a_digest_sent_late_names_the_second_its_window_opened() -> None:
    # given: a window of 30 seconds opened by a record at 10:00:45.250 UTC (a window opens
    # when its first record comes, rarely on the minute)
    start = dt.datetime(2026, 12, 1, 10, 0, 45, 250000, tzinfo=dt.UTC)
    digest = digest_of(start, window=30, total=5)

    # when: sent an hour late
    late = digest.fields(now=start + dt.timedelta(hours=1))

    # then: the period says when the window was (before: "from 2026-12-01 10:00 UTC", the
    # minute before it opened, a window that ended before 10:00:45)
    assert late["period"] == "in the 30 seconds from 2026-12-01 10:00:45 UTC"


async def run_digest_of(store: Store, settings: Settings, scope: str) -> None:
    """Run the digest job of ``scope``'s window now, as the scheduler would when it is due."""
    (job,) = await store.list_jobs(kind="digest")
    assert job.payload["scope"] == scope
    aws = AwsClients(settings)
    try:
        context = JobContext(
            job=job,
            store=store,
            aws=aws,
            settings=settings,
            registry=HandlerRegistry(settings),
            owner="w1",
            log=structlog.get_logger("test"),
        )
        await run_digest_job(job, context)
    finally:
        await aws.close()


async def test_a_digest_names_its_windows_length_when_a_deploy_changed_window(
    jobs_store: Store, endpoint_url: str
) -> None:
    # given: a window of 5 minutes opened by one configuration; a deploy then set window to 1
    # minute, and its notifier held the next record back in the window still open
    number = unique_number()
    settings = settings_for_handlers(
        endpoint_url,
        "q",
        store=jobs_store.url,
        handlers={"oncall-sms": {"type": "sms", "phone_numbers": [number], "window": "1m"}},
        chain=("oncall-sms",),
    )
    scope = "oncall-sms\x1farn:aws:lambda:us-east-1:123456789012:function:orders\x1fKeyError"
    payload = {"handler": "oncall-sms", "function_name": "orders", "error_type": "KeyError"}
    for key, window in (("r1", 300.0), ("r2", 60.0)):
        await jobs_store.admit_alert(
            scope,
            key,
            window=window,
            send_first=1,
            digest_kind="digest",
            digest_payload={**payload, "window": window},
        )

    # when: its digest is sent
    await run_digest_of(jobs_store, settings, scope)

    # then: it names the window the record was held in, as long as it was (a changed window
    # applies from the next window): before, the length the deploy set, "1 minute"
    assert sms_to(endpoint_url, number) == [
        "1 more failure of orders / KeyError in the last 5 minutes"
    ]


@pytest.mark.parametrize(("policy", "digests"), [("skip", 1), ("resend", 2)])
async def test_a_webhook_digest_cut_off_at_handler_timeout_follows_in_doubt(
    sqs: Any,
    make_queue: Callable[..., Any],
    endpoint_url: str,
    sqlite_url: str,
    receiver: Any,
    policy: str,
    digests: int,
) -> None:
    # given: two failures, the first posted at once, the second held for the digest, whose
    # receiver answers after the worker's handler_timeout (1 s) has cut the post off
    url, _ = make_queue(f"storm-hook-{policy}")
    send_records(sqs, url, [failure_record("billing", error_type="KeyError") for _ in range(2)])
    settings = settings_for_handlers(
        endpoint_url,
        url,
        store=sqlite_url,
        handlers={
            "hook": {
                "type": "webhook",
                "url": receiver.url,
                "window": "3s",
                "send_first": 1,
                "in_doubt": policy,
            }
        },
        chain=("hook",),
        handler_timeout=1,
        retry_base=0,
        retry_max=0,
    )

    # when
    async with Worker(settings) as worker, running_worker(worker):
        await eventually(lambda: receiver.requests, within=30)
        receiver.delays = [3.0]
        async with Store.from_url(sqlite_url) as store:
            job = await eventually(lambda: digest_ended(store), within=30)

    # then: skip posts the digest once, resend again (before: again whatever in_doubt said),
    # and the digest's job keeps the note
    assert len(receiver.requests) == 1 + digests
    again = "not sent again" if policy == "skip" else "sent again"
    assert job.state is JobState.DONE
    assert job.last_error is not None
    assert "in doubt (cut off at handler_timeout): webhook http://127.0.0.1:" in job.last_error
    assert job.last_error.endswith(f"may have been sent; {again} (in_doubt = {policy})")
