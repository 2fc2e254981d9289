"""Scheduled jobs and alert windows in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable

import pytest

from lambda_destinations.store import (
    JobState,
    ScheduledJob,
    Store,
    scope_of,
    utcnow,
)
from lambda_destinations.store._jobs import digest_job_key


def job(key: str, *, due_in: float = -1.0, kind: str = "replay", **payload: object) -> ScheduledJob:
    return ScheduledJob(
        key=key,
        kind=kind,
        due_at=utcnow() + dt.timedelta(seconds=due_in),
        payload=dict(payload) or {"n": key},
    )


# -- scheduled jobs ---------------------------------------------------------------------------


async def test_a_job_is_scheduled_once_per_key(jobs_store: Store) -> None:
    first = job("replay:a:1", attempt=1)

    assert await jobs_store.schedule_job(first) is True
    assert await jobs_store.schedule_job(job("replay:a:1", attempt=99)) is False

    stored = await jobs_store.get_job("replay:a:1")
    assert stored is not None
    assert stored.payload == {"attempt": 1}
    assert stored.state is JobState.PENDING
    assert stored.due_at == first.due_at
    assert stored.attempts == 0
    assert await jobs_store.get_job("replay:b:1") is None


async def test_only_due_jobs_are_taken_soonest_first_and_counted(jobs_store: Store) -> None:
    await jobs_store.schedule_job(job("later", due_in=3600))
    await jobs_store.schedule_job(job("second", due_in=-5))
    await jobs_store.schedule_job(job("first", due_in=-10))

    taken = await jobs_store.take_due_jobs("worker-a", limit=10, lease=60)

    assert [j.key for j in taken] == ["first", "second"]
    assert all(j.owner == "worker-a" and j.attempts == 1 for j in taken)
    assert all(j.leased_until is not None and j.leased_until > utcnow() for j in taken)
    # leased: nobody else gets them, and they are not "due" any more
    assert await jobs_store.take_due_jobs("worker-b", limit=10, lease=60) == []
    due = await jobs_store.next_job_due()
    assert due is not None
    assert due > utcnow() + dt.timedelta(seconds=3000)


async def test_limit_bounds_one_take(jobs_store: Store) -> None:
    for n in range(5):
        await jobs_store.schedule_job(job(f"j{n}", due_in=-10 + n))

    taken = await jobs_store.take_due_jobs("w", limit=2, lease=60)

    assert [j.key for j in taken] == ["j0", "j1"]


async def test_an_expired_lease_lets_another_worker_take_the_job(jobs_store: Store) -> None:
    await jobs_store.schedule_job(job("crashed"))
    (taken,) = await jobs_store.take_due_jobs("dead-worker", limit=5, lease=0.3)
    assert taken.attempts == 1

    await asyncio.sleep(0.6)
    (again,) = await jobs_store.take_due_jobs("live-worker", limit=5, lease=60)

    assert again.key == "crashed"
    assert again.owner == "live-worker"
    assert again.attempts == 2
    # the dead worker can no longer give it back: the lease is not its own
    later = utcnow() + dt.timedelta(hours=1)
    assert await jobs_store.retry_job("crashed", "dead-worker", due_at=later) is False


async def test_a_renewed_lease_keeps_the_job_from_other_workers(jobs_store: Store) -> None:
    await jobs_store.schedule_job(job("long"))
    await jobs_store.take_due_jobs("runner", limit=5, lease=0.5)

    # renewed before it lapses, for longer than the first lease
    for _ in range(3):
        await asyncio.sleep(0.25)
        assert await jobs_store.renew_job("long", "runner", lease=0.5) is True

    assert await jobs_store.take_due_jobs("other", limit=5, lease=60) == []
    # another worker's renewal holds nothing; once the lease lapses the job is taken
    assert await jobs_store.renew_job("long", "other", lease=60) is False
    await asyncio.sleep(0.8)
    (again,) = await jobs_store.take_due_jobs("other", limit=5, lease=60)
    assert again.owner == "other"
    assert await jobs_store.renew_job("long", "runner", lease=60) is False


async def test_retry_job_gives_the_lease_back_for_a_later_time(jobs_store: Store) -> None:
    await jobs_store.schedule_job(job("flaky"))
    await jobs_store.take_due_jobs("w", limit=1, lease=60)
    soon = utcnow() + dt.timedelta(seconds=0.3)

    assert await jobs_store.retry_job("flaky", "w", due_at=soon, error="Throttling") is True

    stored = await jobs_store.get_job("flaky")
    assert stored is not None
    assert stored.owner is None
    assert stored.leased_until is None
    assert stored.last_error == "Throttling"
    assert stored.due_at == soon
    assert await jobs_store.take_due_jobs("w", limit=1, lease=60) == []
    await asyncio.sleep(0.5)
    (again,) = await jobs_store.take_due_jobs("w", limit=1, lease=60)
    assert again.attempts == 2
    assert again.last_error == "Throttling"


async def test_a_finished_job_is_never_taken_again(jobs_store: Store) -> None:
    await jobs_store.schedule_job(job("done-job"))
    await jobs_store.schedule_job(job("failed-job"))
    await jobs_store.take_due_jobs("w", limit=5, lease=60)

    assert await jobs_store.finish_job("done-job") is True
    assert await jobs_store.finish_job("failed-job", failed=True, error="gone") is True
    assert await jobs_store.finish_job("done-job") is False

    done, failed = await jobs_store.get_job("done-job"), await jobs_store.get_job("failed-job")
    assert done is not None
    assert failed is not None
    assert done.state is JobState.DONE
    assert done.finished_at is not None
    assert (failed.state, failed.last_error) == (JobState.FAILED, "gone")
    assert await jobs_store.next_job_due() is None
    assert await jobs_store.take_due_jobs("w", limit=5, lease=0.01) == []
    assert [j.key for j in await jobs_store.list_jobs(state=JobState.FAILED)] == ["failed-job"]


async def test_a_jobs_error_with_a_nul_is_kept_as_text_can_hold_it(jobs_store: Store) -> None:
    # A job's error may quote a payload or an answer; PostgreSQL's text holds no NUL: kept
    # with U+FFFD, as the invocations' text, or the job would stay leased with no error.
    await jobs_store.schedule_job(job("flaky"))
    await jobs_store.schedule_job(job("failed"))
    await jobs_store.take_due_jobs("w", limit=5, lease=60)

    assert await jobs_store.retry_job("flaky", "w", due_at=utcnow(), error="a\x00b") is True
    assert await jobs_store.finish_job("failed", failed=True, error="c\x00d") is True

    flaky, failed = await jobs_store.get_job("flaky"), await jobs_store.get_job("failed")
    assert flaky is not None
    assert (flaky.owner, flaky.last_error) == (None, "a\ufffdb")
    assert failed is not None
    assert (failed.state, failed.last_error) == (JobState.FAILED, "c\ufffdd")


async def test_two_workers_taking_at_once_never_get_the_same_job(
    jobs_store: Store, other_jobs_store: Store
) -> None:
    # given: 40 due jobs and two replicas taking 3 at a time, concurrently
    for n in range(40):
        await jobs_store.schedule_job(job(f"job-{n:02d}", due_in=-60 + n))

    async def drain(store: Store, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await store.take_due_jobs(owner, limit=3, lease=60):
            got += [j.key for j in batch]
        return got

    # when
    stores = (jobs_store, other_jobs_store)
    results = await asyncio.gather(
        *(drain(store, f"w{n}-{m}") for n in range(3) for m, store in enumerate(stores))
    )

    # then: every job taken exactly once
    taken = [key for keys in results for key in keys]
    assert sorted(taken) == [f"job-{n:02d}" for n in range(40)]


async def test_prune_forgets_old_finished_jobs_and_windows_only(jobs_store: Store) -> None:
    await jobs_store.schedule_job(job("old"))
    await jobs_store.schedule_job(job("open"))
    await jobs_store.take_due_jobs("w", limit=1, lease=60)
    await jobs_store.finish_job("old")
    await jobs_store.admit_alert(
        "s", "k", window=0.1, send_first=1, digest_kind="digest", digest_payload={}
    )

    removed = await jobs_store.prune_jobs(utcnow() + dt.timedelta(seconds=1))

    assert removed == 3  # the finished job, the window's member and the window
    assert await jobs_store.get_job("old") is None
    assert await jobs_store.get_job("open") is not None


async def test_prune_keeps_the_members_of_a_window_whose_digest_is_not_sent(
    jobs_store: Store,
) -> None:
    # given: a window of 3 alerts, the first sent, its digest (of the other 2) not sent yet
    # (its notifier failing for longer than the windows are kept, or the workers stopped)
    scope = scope_of("oncall-sms", "orders-api", "TimeoutError")
    for n in range(3):
        admitted = await jobs_store.admit_alert(
            scope,
            f"req-{n}",
            window=1.0,
            send_first=1,
            digest_kind="digest",
            digest_payload={},
            settle=0,
        )
    start = admitted.window_start
    assert admitted.ordinal == 3  # one window

    # when: pruned once the window is older than the retention
    await jobs_store.prune_jobs(utcnow() + dt.timedelta(seconds=1))

    # then: the digest still counts its members, and a redelivered one is still held back
    assert (await jobs_store.alert_window(scope, start)).admitted == 3
    again = await jobs_store.admit_alert(
        scope, "req-2", window=1.0, send_first=1, digest_kind="digest", digest_payload={}
    )
    assert (again.ordinal, again.send_now) == (3, False)
    # and once the digest is sent, the next pruning forgets the window
    await asyncio.sleep(1.1)  # the window ended: its digest is due
    (digest,) = await jobs_store.take_due_jobs("w", limit=1, lease=60)
    assert digest.key == digest_job_key(scope, start)
    await jobs_store.finish_job(digest.key)
    await jobs_store.prune_jobs(utcnow() + dt.timedelta(seconds=1))
    assert (await jobs_store.alert_window(scope, start)).admitted == 0


# -- alert windows ----------------------------------------------------------------------------


async def test_the_first_alerts_go_out_and_the_rest_fold_into_one_digest(jobs_store: Store) -> None:
    scope = scope_of("oncall-sms", "orders-api", "TimeoutError")
    admissions = [
        await jobs_store.admit_alert(
            scope,
            f"req-{n}:RetriesExhausted",
            window=300,
            send_first=3,
            digest_kind="digest",
            digest_payload={"handler": "oncall-sms"},
        )
        for n in range(10)
    ]

    assert [a.ordinal for a in admissions] == list(range(1, 11))
    assert [a.send_now for a in admissions] == [True] * 3 + [False] * 7
    assert [a.digest_scheduled for a in admissions] == [False] * 3 + [True] + [False] * 6
    start = admissions[0].window_start
    assert {a.window_start for a in admissions} == {start}
    assert admissions[0].window_end == start + dt.timedelta(seconds=300)
    (digest,) = await jobs_store.list_jobs(kind="digest")
    assert digest.key == digest_job_key(scope, start)
    assert digest.due_at == admissions[0].window_end + dt.timedelta(seconds=2)
    assert digest.payload["handler"] == "oncall-sms"
    assert digest.payload["scope"] == scope
    assert digest.payload["send_first"] == 3
    assert dt.datetime.fromisoformat(digest.payload["window_start"]) == start
    window = await jobs_store.alert_window(scope, start)
    assert window.admitted == 10
    assert window.first_at is not None
    assert window.last_at is not None
    assert window.first_at <= window.last_at


async def test_a_redelivered_record_keeps_its_place_and_counts_once(jobs_store: Store) -> None:
    scope = scope_of("mail", "billing", "KeyError")

    async def admit(key: str) -> tuple[int, bool]:
        admission = await jobs_store.admit_alert(
            scope, key, window=300, send_first=1, digest_kind="digest", digest_payload={}
        )
        return admission.ordinal, admission.send_now

    assert await admit("a") == (1, True)
    assert await admit("b") == (2, False)
    assert await admit("a") == (1, True)  # redelivered: still the one sent at once
    assert await admit("b") == (2, False)
    assert await admit("c") == (3, False)

    admission = await jobs_store.admit_alert(
        scope, "a", window=300, send_first=1, digest_kind="digest", digest_payload={}
    )
    assert (await jobs_store.alert_window(scope, admission.window_start)).admitted == 3
    assert len(await jobs_store.list_jobs(kind="digest")) == 1


async def test_an_error_type_no_text_column_can_hold_is_admitted_in_one_window(
    jobs_store: Store,
) -> None:
    # given: a record's error type with a NUL and a lone surrogate (a record's JSON can say
    # "\u0000" and "\ud800"), which neither backend's text holds as it is
    scope = scope_of("oncall-sms", "orders-api", "Bad\x00Error\ud800")

    # when: three of its alerts are admitted
    admissions = [await _sent_now(jobs_store, scope, f"req-{n}", send_first=1) for n in range(3)]

    # then: one window, its first sent, the rest digested (before: the write failed, on
    # SQLite "surrogates not allowed", on PostgreSQL a NUL refused; the alert was retried)
    assert admissions == [True, False, False]
    (digest,) = await jobs_store.list_jobs(kind="digest")
    assert digest.payload["scope"] == scope
    assert "\ufffd" in scope


async def _sent_now(store: Store, scope: str, key: str, send_first: int) -> bool:
    """Whether the record ``key`` goes out at once in ``scope``'s 300 s window."""
    admission = await store.admit_alert(
        scope, key, window=300, send_first=send_first, digest_kind="digest", digest_payload={}
    )
    return admission.send_now


async def test_send_first_lowered_in_an_open_window_still_digests_what_it_holds(
    jobs_store: Store,
) -> None:
    # given: a window that sent three at once under send_first = 3
    scope = scope_of("oncall", "orders-api", "TimeoutError")

    def admit(key: str, send_first: int) -> Awaitable[bool]:
        return _sent_now(jobs_store, scope, key, send_first)

    assert [await admit(f"k{n}", 3) for n in range(1, 4)] == [True] * 3

    # when: a deploy lowers send_first to 1 while the window is open
    held = [await admit(f"k{n}", 1) for n in range(4, 7)]

    # then: the three after it are held, and a digest counts exactly those three
    assert held == [False] * 3
    (digest,) = await jobs_store.list_jobs(kind="digest")
    assert digest.payload["send_first"] == 3
    start = dt.datetime.fromisoformat(digest.payload["window_start"])
    assert (await jobs_store.alert_window(scope, start)).admitted - 3 == 3
    assert await admit("k2", 1) is True  # redelivered: sent at once the first time
    assert await admit("k5", 3) is False  # held the first time


async def test_send_first_raised_in_an_open_window_keeps_holding_for_the_digest(
    jobs_store: Store,
) -> None:
    # given: send_first = 1, so the second record of the window was held for a digest
    scope = scope_of("oncall", "billing", "KeyError")

    def admit(key: str, send_first: int) -> Awaitable[bool]:
        return _sent_now(jobs_store, scope, key, send_first)

    assert [await admit("a", 1), await admit("b", 1)] == [True, False]

    # when: a deploy raises send_first to 5 while the window is open
    later = [await admit(key, 5) for key in ("c", "d")]

    # then: they are held too, and the digest (scheduled once) counts all three held
    assert later == [False, False]
    (digest,) = await jobs_store.list_jobs(kind="digest")
    assert digest.payload["send_first"] == 1
    assert await admit("a", 5) is True
    assert await admit("b", 5) is False


async def test_scopes_have_windows_of_their_own(jobs_store: Store) -> None:
    def admit(scope: str, key: str):  # type: ignore[no-untyped-def]
        return jobs_store.admit_alert(
            scope, key, window=300, send_first=1, digest_kind="digest", digest_payload={}
        )

    assert (await admit("orders/Timeout", "k1")).send_now is True
    assert (await admit("orders/KeyError", "k1")).send_now is True  # same record, other scope
    assert (await admit("orders/Timeout", "k2")).send_now is False


async def test_an_ended_window_is_followed_by_a_new_one(jobs_store: Store) -> None:
    scope = scope_of("sms", "thumbnailer", "MemoryError")

    def admit(key: str):  # type: ignore[no-untyped-def]
        return jobs_store.admit_alert(
            scope, key, window=0.4, send_first=1, digest_kind="digest", digest_payload={}
        )

    first, second = await admit("k1"), await admit("k2")
    await asyncio.sleep(0.6)
    third = await admit("k3")

    assert (first.ordinal, second.ordinal, third.ordinal) == (1, 2, 1)
    assert third.send_now is True
    assert third.window_start >= first.window_end
    assert (await jobs_store.alert_window(scope, first.window_start)).admitted == 2
    assert (await jobs_store.alert_window(scope, third.window_start)).admitted == 1
    # k1 redelivered now: still in the first window, not counted in the new one
    again = await admit("k1")
    assert (again.ordinal, again.window_start) == (1, first.window_start)


async def test_two_workers_admitting_at_once_count_exactly(
    jobs_store: Store, other_jobs_store: Store
) -> None:
    # given: 60 distinct records of one scope admitted concurrently through two replicas,
    # each record delivered twice
    scope = scope_of("sms", "orders-api", "TimeoutError")
    keys = [f"req-{n}" for n in range(60)]

    async def admit(store: Store, key: str) -> tuple[str, int, bool]:
        admission = await store.admit_alert(
            scope, key, window=300, send_first=3, digest_kind="digest", digest_payload={}
        )
        return key, admission.ordinal, admission.send_now

    # when
    results = await asyncio.gather(
        *(admit(store, key) for key in keys for store in (jobs_store, other_jobs_store))
    )

    # then: every record has one ordinal, ordinals are 1..60, three go out, one digest
    ordinals = {key: ordinal for key, ordinal, _ in results}
    assert len({(key, ordinal) for key, ordinal, _ in results}) == 60
    assert sorted(ordinals.values()) == list(range(1, 61))
    sent = {key for key, _, send_now in results if send_now}
    assert len(sent) == 3
    assert len(await jobs_store.list_jobs(kind="digest")) == 1
    admission = await jobs_store.admit_alert(
        scope, keys[0], window=300, send_first=3, digest_kind="digest", digest_payload={}
    )
    assert (await jobs_store.alert_window(scope, admission.window_start)).admitted == 60


async def test_a_window_must_last(jobs_store: Store) -> None:
    with pytest.raises(ValueError, match="more than 0 seconds"):
        await jobs_store.admit_alert(
            "s", "k", window=0, send_first=1, digest_kind="digest", digest_payload={}
        )
