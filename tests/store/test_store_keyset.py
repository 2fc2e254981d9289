"""Keyset pages of ``list_invocations`` and the operators' action ledger, on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest
from store_factories import T0, DeliveryFactory, RowFactory

from lambda_destinations.store import (
    FailureStatus,
    InvocationCursor,
    InvocationFilter,
    OperatorAction,
    Store,
)


@pytest.mark.parametrize("oldest_first", [False, True], ids=["newest first", "oldest first"])
async def test_keyset_pages_list_every_row_once_in_order(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory, oldest_first: bool
) -> None:
    # given: rows sharing timestamps (ties broken by first seen, then key: these seven's keys
    # differ in one digit, in the same order under any collation), some without one
    same = T0 + dt.timedelta(hours=1)
    seen = T0 + dt.timedelta(days=1)
    rows = [make_row(timestamp=same, first_seen_at=seen) for _ in range(7)]
    rows += [make_row(timestamp=same, first_seen_at=seen + dt.timedelta(seconds=n)) for n in (1, 2)]
    rows += [make_row(timestamp=None, first_seen_at=T0 + dt.timedelta(minutes=n)) for n in (5, 61)]
    rows += [make_row() for _ in range(14)]
    rows += [make_row(function_name="billing-worker") for _ in range(3)]
    for row in rows:
        await store.save_invocation(row, make_delivery(row))
    selection = InvocationFilter(function_glob="orders-*", oldest_first=oldest_first)
    listed = await store.list_invocations(selection)
    whole = [r.key for r in listed]

    # when: read four at a time, each page after the last row of the one before
    paged: list[str] = []
    cursor: InvocationCursor | None = None
    while True:
        page = await store.list_invocations(dataclasses.replace(selection, limit=4, after=cursor))
        if not page:
            break
        paged += [r.key for r in page]
        cursor = InvocationCursor.after(page[-1])

    # then: the same rows in the same order, none twice, none left out; the order is the
    # record's time (first seen without one), then first seen, then key, either way
    assert len(whole) == len(rows) - 3
    assert paged == whole
    in_order = sorted(
        listed,
        key=lambda r: (r.timestamp or r.first_seen_at, r.first_seen_at, r.key),
        reverse=not oldest_first,
    )
    assert whole == [r.key for r in in_order]
    ties = [r.key for r in rows[:7]]
    assert [key for key in whole if key in ties] == sorted(ties, reverse=not oldest_first)


async def test_a_page_after_the_last_row_is_empty_and_new_rows_do_not_shift_pages(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    rows = [make_row() for _ in range(6)]
    for row in rows:
        await store.save_invocation(row, make_delivery(row))
    first = await store.list_invocations(InvocationFilter(limit=3))
    newer = make_row(timestamp=T0 + dt.timedelta(days=3))
    await store.save_invocation(newer, make_delivery(newer))

    second = await store.list_invocations(
        InvocationFilter(limit=3, after=InvocationCursor.after(first[-1]))
    )
    last = await store.list_invocations(
        InvocationFilter(limit=3, after=InvocationCursor.after(second[-1]))
    )

    assert [r.key for r in first + second] == [r.key for r in reversed(rows)]
    assert last == []


async def test_the_action_ledger_keeps_who_what_and_why(
    store: Store, make_row: RowFactory, make_delivery: DeliveryFactory
) -> None:
    row = make_row()
    await store.save_invocation(row, make_delivery(row))
    await store.set_status([row.key], FailureStatus.IGNORED, by="console alice")
    first = OperatorAction("console alice", "ignore", row.key, "known issue")
    edit = {"orderId": "ord-1", "note": "Zoë ✓", "big": 12345678901234567890}
    second = OperatorAction("console bob", "edit-replay", row.key, None, {"payload": edit})
    other = OperatorAction("console bob", "purge", "https://sqs/queue", "cleanup", {"about": 3})

    ids = [await store.add_action(a) for a in (first, second, other)]

    assert len(set(ids)) == 3
    assert first.id == ids[0]
    kept = await store.actions(row.key)
    assert [(a.actor, a.action, a.reason) for a in kept] == [
        ("console bob", "edit-replay", None),
        ("console alice", "ignore", "known issue"),
    ]
    assert kept[0].detail == {"payload": edit}
    assert kept[1].at.tzinfo is not None
    assert await store.actions(row.key, limit=1) == kept[:1]
    assert [a.action for a in await store.actions("https://sqs/queue")] == ["purge"]


async def test_an_action_with_a_forms_token_is_kept_once_however_many_insert_it(
    store: Store,
) -> None:
    # given: the same form's action, five times at once, and another form's
    def action(nonce: str) -> OperatorAction:
        return OperatorAction("console bob", "edit-replay", "k", None, {"at": nonce}, nonce)

    # when
    ids = await asyncio.gather(*(store.add_action_once(action("form-1")) for _ in range(5)))
    other = await store.add_action_once(action("form-2"))

    # then: one of the five kept, the others told so; its detail can say what became of it
    (kept,) = [i for i in ids if i is not None]
    assert ids.count(None) == 4
    assert other is not None
    assert other != kept
    await store.set_action_detail(kept, {"result": "invoked"})
    by_nonce = {a.nonce: a for a in await store.actions("k")}
    assert by_nonce["form-1"].id == kept
    assert by_nonce["form-1"].detail == {"result": "invoked"}
    assert by_nonce["form-2"].detail == {"at": "form-2"}
    # and the token finds its entry (a form posted again answers as its first post did)
    found = await store.action_by_nonce("form-1")
    assert found is not None
    assert (found.id, found.detail) == (kept, {"result": "invoked"})
    assert await store.action_by_nonce("form-3") is None


async def test_an_actions_text_with_a_nul_is_kept_as_text_can_hold_it(store: Store) -> None:
    # PostgreSQL's text holds no NUL: an operator's reason (or a tool's actor) with one is kept
    # with U+FFFD, as the invocations' text; the detail, JSON, keeps it exactly.
    first = OperatorAction("cli a\x00b@host", "ignore", "k", "a\x00b", {"note": "c\x00d"})
    once = OperatorAction("console bob", "edit-replay", "k", "e\x00f", None, "form-\x00")

    await store.add_action(first)
    kept = await store.add_action_once(once)
    assert kept is not None
    await store.set_action_detail(kept, {"refused": "g\x00h"})
    found = await store.action_by_nonce("form-\x00")  # as it was sent, and kept
    assert found is not None
    assert found.id == kept

    by_action = {a.action: a for a in await store.actions("k")}
    ignored, edited = by_action["ignore"], by_action["edit-replay"]
    assert (ignored.actor, ignored.reason) == ("cli a\ufffdb@host", "a\ufffdb")
    assert ignored.detail == {"note": "c\x00d"}
    assert (edited.reason, edited.nonce, edited.detail) == (
        "e\ufffdf",
        "form-\ufffd",
        {"refused": "g\x00h"},
    )
