"""The console in a real browser (Debian's Chromium, driven by Playwright), against a store the
worker filled from a moto server, with the console running as its own process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from console_helpers import TOKEN, XSS, RunningConsole, World, stored_failure
from logs_helpers import STREAM, invocation, lambda_logs, put, put_last_attempt
from ops_helpers import send_all

from lambda_destinations.simulate import failure_record
from lambda_destinations.store import FailureStatus, OperatorAction, Store
from lambda_destinations.store.base import ReplayAttempt

pytestmark = pytest.mark.browser
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from a test (Playwright's sync API holds this thread's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _store(world: World) -> Any:
    return Store.from_url(world.store_url)


def actions_of(world: World, key: str) -> list[OperatorAction]:
    async def go() -> list[OperatorAction]:
        async with _store(world) as store:
            return await store.actions(key)

    return run(go())


def replays_of(world: World, key: str) -> list[ReplayAttempt]:
    async def go() -> list[ReplayAttempt]:
        async with _store(world) as store:
            return await store.replays(key)

    return run(go())


def status_of(world: World, key: str) -> FailureStatus | None:
    async def go() -> FailureStatus | None:
        async with _store(world) as store:
            row = await store.get_invocation(key)
            assert row is not None
            return row.status

    return run(go())


def failure_path(key: str) -> str:
    return "/failures/" + urllib.parse.quote(key, safe="")


def at_failure(page: Any, key: str) -> None:
    """Wait until the page is the failure's (however the browser spells the key's ":"; after
    a replay its address says which, ``?replayed=N``)."""
    page.wait_for_url(
        lambda url: urllib.parse.unquote(urllib.parse.urlsplit(url).path).endswith(
            "/failures/" + key
        )
    )


def sign_in(page: Any, console: RunningConsole, user: str = "alice") -> None:
    page.goto(f"{console.url}/login?token={TOKEN}")
    page.fill("#user", user)
    page.press("#user", "Enter")  # the keyboard submits the form
    page.wait_for_url(f"{console.url}/")
    assert page.locator(".who strong").inner_text() == user


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_filter_by_function_and_error_type_then_open_a_failure(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    # given: the failures list, filtered with the form (as a URL anyone can share)
    page.goto(f"{console.url}/failures")
    page.fill("input[name=function]", "orders-*")
    page.fill("input[name=error_type]", "TimeoutError")
    page.press("input[name=error_type]", "Enter")
    page.wait_for_url("**/failures?*")
    assert "function=orders-" in page.url
    assert "error_type=TimeoutError" in page.url
    shot(page, screenshots, "failures")

    # then: exactly the two orders-api timeouts are listed
    rows = page.locator("table.failures tbody tr")
    assert rows.count() == 2
    listed = {rows.nth(i).locator("td").nth(1).inner_text() for i in range(2)}
    ids = {world.records[r]["requestContext"]["requestId"] for r in ("timeout", "timeout-2")}
    assert listed == ids
    for i in range(2):
        assert rows.nth(i).locator("td").nth(2).inner_text() == "orders-api"
        assert rows.nth(i).locator("td").nth(4).inner_text().startswith("TimeoutError")

    # when: the newest one is opened
    record = world.records["timeout"]
    page.click(f"text={record['requestContext']['requestId']}")
    at_failure(page, world.key("timeout"))
    shot(page, screenshots, "failure")

    # then: its payload and stack trace are shown
    shown = json.loads(page.locator("#request-payload").inner_text())
    assert shown == record["requestPayload"]
    trace = page.locator("#stack-trace").inner_text()
    for frame in record["responsePayload"]["stackTrace"]:
        assert frame.strip().splitlines()[0].strip() in trace
    assert page.locator("#error-message").inner_text() == (
        "TimeoutError: Task timed out after 3.00 seconds"
    )


def test_edit_the_payload_then_replay(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    key = world.key("edit")
    edited = {"orderId": "ord-fixed", "items": [{"sku": "sku-1", "qty": 1}], "note": "Zoë ✓"}
    sign_in(page, console)
    page.goto(console.url + failure_path(key))
    page.click("#edit")
    page.wait_for_url("**/edit")

    # invalid JSON is refused before anything is invoked (by the page, and by the server)
    world.endpoint.start_recording()
    page.fill("#payload", '{"orderId": ')
    page.click("#edit-replay")
    assert "Not valid JSON" in page.locator("[data-json-problem]").inner_text()
    assert page.url.endswith("/edit")
    shot(page, screenshots, "edit")

    # when: a valid edit is replayed
    page.fill("#payload", json.dumps(edited, indent=2, ensure_ascii=False))
    page.fill("#edit-reason", "sku was missing")
    page.click("#edit-replay")
    at_failure(page, key)
    assert page.locator("#outcome").inner_text().startswith("Replayed")

    # then: Lambda received exactly the edited payload, once, for the record's function
    invoked = world.endpoint.invocations()
    assert len(invoked) == 1
    function, payload = invoked[0]
    assert function.endswith(":function:orders-api") or function == "orders-api"
    assert payload == edited
    # and the ledgers keep the edit, who made it, and the attempt
    attempts = replays_of(world, key)
    assert [a.requested_by for a in attempts] == ["console alice"]
    assert attempts[0].new_request_id
    edit = next(a for a in actions_of(world, key) if a.action == "edit-replay")
    assert edit.actor == "console alice"
    assert edit.reason == "sku was missing"
    assert edit.detail["payload"] == edited
    assert edit.detail["original_payload"] == world.records["edit"]["requestPayload"]
    assert status_of(world, key) is FailureStatus.REPLAYED
    assert "console alice" in page.locator("#replay-table").inner_text()


def test_ignore_with_a_reason_then_reopen(page: Any, console: RunningConsole, world: World) -> None:
    key = world.key("ignore")
    sign_in(page, console, "bob")
    page.goto(console.url + failure_path(key))

    page.fill("#ignore-reason", "known data issue, fixed upstream")
    page.click("#ignore")
    page.wait_for_selector("#reopen")
    assert page.locator("#status").inner_text() == "ignored"
    assert status_of(world, key) is FailureStatus.IGNORED

    page.fill("#reopen-reason", "it came back")
    page.press("#reopen-reason", "Enter")
    page.wait_for_selector("#ignore")
    assert page.locator("#status").inner_text() == "open"
    assert status_of(world, key) is FailureStatus.OPEN

    done = [(a.action, a.actor, a.reason) for a in reversed(actions_of(world, key))]
    assert done == [
        ("ignore", "console bob", "known data issue, fixed upstream"),
        ("reopen", "console bob", "it came back"),
    ]
    assert "known data issue" in page.locator("#action-table").inner_text()


def _depth(world: World, url: str) -> int:
    attributes = world.endpoint.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_redrive_a_dlq_and_watch_it_empty(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    waiting = _depth(world, world.dlq_url)
    assert waiting >= 4  # three dead-lettered failures and the quarantined poison message
    sign_in(page, console, "carol")
    page.goto(f"{console.url}/dlqs")
    shot(page, screenshots, "dlqs")
    page.click(f"text={world.dlq_name}")
    page.click("#peek")
    page.wait_for_selector("#peek-table")
    assert page.locator("#peek-table tbody tr").count() == waiting
    shot(page, screenshots, "dlq")

    page.click("#redrive")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#job-state[data-state=done]", timeout=60000)
    shot(page, screenshots, "job")
    assert int(page.locator("#job-done").inner_text()) == waiting
    assert _depth(world, world.dlq_url) == 0
    assert _depth(world, world.queue_url) == waiting
    redrive = actions_of(world, world.dlq_url)[0]
    assert (redrive.action, redrive.actor) == ("redrive", "console carol")


def _post(url: str, data: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - the console on loopback
        url, data=urllib.parse.urlencode(data).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_an_action_without_the_token_or_from_another_origin_is_refused(
    page: Any, browser: Any, console: RunningConsole, world: World
) -> None:
    key = world.key("value")
    target = console.url + failure_path(key) + "/ignore"

    # no token: no session, no bearer header
    code, text = _post(target, {"reason": "x"}, {})
    assert (code, text.strip()) == (
        403,
        "refused: actions need the console's token: sign in at /login",
    )

    # a signed-in browser, but the form is posted by another site's page
    sign_in(page, console, "mallory-victim")
    evil = page.context.new_page()
    evil.set_content(
        f'<form method="post" action="{target}"><input name="reason" value="pwned">'
        '<button id="go">go</button></form>'
    )
    with evil.expect_navigation():
        evil.click("#go")
    assert "refused" in evil.content()
    # and the same with the session cookie sent anyway: the Origin header gives it away
    cookie = next(c for c in page.context.cookies() if c["name"] == "ld_console")
    code, text = _post(
        target,
        {"reason": "pwned"},
        {"Cookie": f"ld_console={cookie['value']}", "Origin": "http://evil.example"},
    )
    assert (code, text.strip()) == (403, "refused: the request comes from another site")
    assert status_of(world, key) is FailureStatus.OPEN
    assert actions_of(world, key) == []


def test_an_error_message_with_markup_renders_as_text(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    page.goto(console.url + failure_path(world.key("xss")))
    assert page.locator("#error-message").inner_text() == f"RuntimeError: {XSS}"
    assert page.locator("main img").count() == 0
    page.goto(f"{console.url}/failures?error_type=RuntimeError")
    assert XSS in page.locator("table.failures").inner_text()
    time.sleep(0.2)  # an onerror handler would have run by now
    assert page.evaluate("window.__xss") is None


def test_every_page_renders_and_the_keyboard_reaches_the_content(
    page: Any, browser: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    page.goto(console.url + "/")
    assert page.locator("h1").inner_text() == "Overview"
    chart = page.locator(".chart svg")
    label = chart.get_attribute("aria-label")
    assert label.startswith(f"{len(world.records)} failures in the last")
    titles = page.locator(".chart svg rect title").all_text_contents()
    assert sum(int(t.split(": ")[1].split()[0]) for t in titles) == len(world.records)
    assert page.locator(".tiles").inner_text().count("open") == 1
    shot(page, screenshots, "overview")
    for path, name in [
        ("/groups?since=7d", "groups"),
        ("/quarantine", "quarantine"),
        ("/bulk?action=replay&function=orders-api", "bulk"),
    ]:
        page.goto(console.url + path)
        assert page.locator("h1").count() == 1
        shot(page, screenshots, name)
    assert "decode error: body is not JSON" in page.goto(console.url + "/quarantine").text()

    # keyboard: the first Tab reaches the skip link, Enter moves focus to the content
    page.goto(console.url + "/failures")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # a phone: no horizontal scrolling of the page itself (a wide table scrolls in its box,
    # and so does what a screen reader alone reads in it: a row's "body of message …")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        small = phone.new_page()
        small.goto(console.url + failure_path(world.key("timeout")))
        assert small.evaluate("document.documentElement.scrollWidth") <= 390
        shot(small, screenshots, "failure-phone")
        for path in ("/quarantine", "/bulk?action=replay&function=orders-api"):
            small.goto(console.url + path)
            assert small.locator("td .vh").count() > 0
            width = small.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide"
    finally:
        phone.close()


def test_bulk_replay_shows_the_plan_then_invokes_exactly_it(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    sign_in(page, console, "erin")
    page.goto(f"{console.url}/failures?function=orders-api&error_type=TimeoutError")
    page.click("text=Replay all these…")
    page.wait_for_url("**/bulk?*")

    # the plan: the count, then each failure with the function and payload it would invoke
    assert page.locator("#bulk-count strong").inner_text() == "2"
    plan = page.locator("table tbody tr")
    assert plan.count() == 2
    planned = {}
    for i in range(2):
        cells = plan.nth(i).locator("td")
        assert cells.nth(2).inner_text() == "would-invoke"
        planned[cells.nth(0).inner_text()] = cells.nth(1).inner_text()
    shot(page, screenshots, "bulk-plan")

    # when: it runs, at a rate
    world.endpoint.start_recording()
    page.fill("input[name=rate]", "5")
    page.click("#bulk-run")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#job-state[data-state=done]", timeout=60000)
    assert page.locator("#job-done").inner_text() == "2"

    # then: exactly the planned functions got exactly the records' payloads
    records = [world.records[r] for r in ("timeout", "timeout-2")]
    expected = sorted(
        (planned[r["requestContext"]["requestId"]], json.dumps(r["requestPayload"], sort_keys=True))
        for r in records
    )
    invoked = sorted(
        (function, json.dumps(payload, sort_keys=True))
        for function, payload in world.endpoint.invocations()
    )
    assert [p for _, p in invoked] == [p for _, p in expected]
    assert {f.rsplit(":", 1)[-1] for f, _ in invoked} == {"orders-api"}
    for role in ("timeout", "timeout-2"):
        assert [a.requested_by for a in replays_of(world, world.key(role))] == ["console erin"]
        assert status_of(world, world.key(role)) is FailureStatus.REPLAYED


def test_purge_needs_the_queue_name_typed(page: Any, console: RunningConsole, world: World) -> None:
    send_all(world.endpoint.sqs, world.dlq_url, ["left over 1", "left over 2"])
    waiting = _depth(world, world.dlq_url)  # 2, and what earlier tests left there
    sign_in(page, console, "frank")
    page.goto(f"{console.url}/dlqs/{world.dlq_name}")
    assert page.locator("#purge").is_disabled()
    page.fill("#purge-confirm", world.dlq_name[:-1])
    assert page.locator("#purge").is_disabled()
    page.fill("#purge-confirm", world.dlq_name)
    assert page.locator("#purge").is_enabled()

    page.click("#purge")
    page.wait_for_load_state()

    assert _depth(world, world.dlq_url) == 0
    purge = actions_of(world, world.dlq_url)[0]
    assert (purge.action, purge.actor, purge.detail) == (
        "purge",
        "console frank",
        {"about": waiting},
    )


def test_resend_a_quarantined_message_to_its_queue(
    page: Any, console: RunningConsole, world: World
) -> None:
    sign_in(page, console, "gina")
    page.goto(f"{console.url}/quarantine")
    button = page.locator("button[id^=resend-]").first
    message_id = button.get_attribute("data-message-id")
    before = _depth(world, world.queue_url)

    button.click()
    page.wait_for_url(f"{console.url}/quarantine")

    assert page.locator(f"button[data-message-id='{message_id}']").count() == 0
    assert _depth(world, world.queue_url) == before + 1
    resent = actions_of(world, world.queue_url)[0]
    assert (resent.action, resent.actor) == ("resend", "console gina")
    assert resent.detail["message_id"] == message_id
    assert resent.detail["new_message_id"]


def _version_1_failures(world: World, count: int) -> tuple[dict[str, str], list[str]]:
    """A function of its own with versions 1 (the failing code) and 2 (the fix), its alias
    ``live`` on 2, and ``count`` failures of version 1 in the store: the ARNs, and the keys."""
    lam, name = world.endpoint.lam, f"payments-{uuid.uuid4().hex[:6]}"
    world.endpoint.create_function(name)
    arns = {"name": name, "1": lam.publish_version(FunctionName=name)["FunctionArn"]}
    lam.update_function_configuration(FunctionName=name, Description="the fix")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    arns["live"] = lam.get_alias(FunctionName=name, Name="live")["AliasArn"]
    keys = []
    for n in range(count):
        record = failure_record(random.Random(f"{name}-{n}"), function=name)
        record["requestContext"]["functionArn"] = arns["1"]
        keys.append(run(stored_failure(world.store_url, record=record)).key)
    return arns, keys


def test_replay_a_published_version_s_failure_on_its_alias(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    # given: a failure of version 1, whose page says its replay would run version 1 again
    arns, (key,) = _version_1_failures(world, 1)
    name = arns["name"]
    sign_in(page, console, "hana")
    page.goto(console.url + failure_path(key))
    assert page.locator("#version-hints").inner_text() == (
        f"{name}: replays run version 1's code again (a published version never changes); "
        "Qualifier ALIAS (or '$LATEST') runs the code deployed since"
    )
    field = page.get_by_label("Qualifier")
    assert field.get_attribute("id") == "replay-qualifier"
    assert field.input_value() == ""
    world.endpoint.start_recording()

    # when: a qualifier Lambda takes in no form, then the alias
    field.fill("my alias")
    page.click("#replay")
    assert page.locator("#problem").inner_text() == (
        "qualifier: 'my alias' is not a version or alias: write a version number (7), an alias "
        "name (live) or $LATEST, 1 to 128 letters, digits, '-' or '_'; nothing was invoked"
    )
    page.click("#back")
    at_failure(page, key)
    page.fill("#replay-qualifier", "live")
    page.click("#replay")
    at_failure(page, key)
    shot(page, screenshots, "failure-replayed-on-alias")

    # then: the alias alone was invoked; the page says the version and the alias, its Replays
    # table the function invoked
    assert [arn for arn, _ in world.endpoint.invocations()] == [arns["live"]]
    (attempt,) = replays_of(world, key)
    assert page.locator("#outcome").inner_text() == (
        f"Replayed: attempt 1 invoked {name}:1 → {name}:live, new request id "
        f"{attempt.new_request_id}."
    )
    assert "Invoked" in page.locator("#replay-table thead").inner_text()
    assert f"{name}:live" in page.locator("#replay-table tbody").inner_text()
    assert attempt.function_arn == arns["live"]


def test_bulk_replay_on_an_alias_shows_the_plan_on_it_then_invokes_it(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    # given: the plan of two failures of version 1
    arns, keys = _version_1_failures(world, 2)
    name = arns["name"]
    sign_in(page, console, "ivan")
    page.goto(f"{console.url}/bulk?action=replay&function={name}")
    assert page.locator("#version-hints").inner_text().startswith(f"{name}: replays run version 1")
    world.endpoint.start_recording()

    # when: the alias is typed and Replay 2 pressed
    page.get_by_label("Qualifier").fill("live")
    page.click("#bulk-run")

    # then: the plan again, on the alias, and nothing invoked yet
    page.wait_for_url("**qualifier=live*")
    cells = page.locator("table tbody tr td:nth-child(2)").all_inner_texts()
    assert cells == [f"{name}:1 → {name}:live"] * 2
    assert page.locator("#version-hints").count() == 0
    assert world.endpoint.invocations() == []
    shot(page, screenshots, "bulk-plan-on-alias")

    # when: Replay 2, on that plan
    world.endpoint.start_recording()
    page.click("#bulk-run")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#job-state[data-state=done]", timeout=60000)

    # then: the alias, for each
    assert page.locator("h1").inner_text().endswith("; qualifier live)")
    assert [arn for arn, _ in world.endpoint.invocations()] == [arns["live"]] * 2
    assert [[a.function_arn for a in replays_of(world, k)] for k in keys] == [[arns["live"]]] * 2


def test_a_failure_s_function_logs_open_from_its_page_and_every_attempt_on_request(
    page: Any, console: RunningConsole, world: World, screenshots: Path
) -> None:
    # given: the timeout failure's last attempt logged (one of its lines markup), and an
    # earlier attempt 3 hours before its record
    key = world.key("timeout")
    record = world.records["timeout"]
    rid = record["requestContext"]["requestId"]
    moment = dt.datetime.fromisoformat(record["timestamp"])
    with lambda_logs(world.endpoint.url) as logs:
        put_last_attempt(logs, rid, moment)
        put(logs, STREAM, [(moment - dt.timedelta(seconds=28, milliseconds=500), XSS)])
        put(logs, STREAM, invocation(rid, moment - dt.timedelta(hours=3), ["first try"]))

        # when: the failure's page, then its link to the logs
        page.goto(console.url + failure_path(key))
        page.click("#show-logs")
        page.wait_for_url("**/logs")
        shot(page, screenshots, "failure-logs")

        # then: the last attempt's lines, as text; the earlier attempt's not yet
        lines = page.locator("#log-lines").inner_text()
        assert f"START RequestId: {rid} Version: $LATEST" in lines
        assert "charging order 42" in lines
        assert XSS in lines
        assert "colour \\x1b[31mred\\x1b[0m and \\u202eevil" in lines
        assert "first try" not in lines
        assert page.locator("main img").count() == 0
        time.sleep(0.2)  # an onerror handler would have run by now
        assert page.evaluate("window.__xss") is None
        assert page.locator("#logs-notes").inner_text() == (
            "1 of 3 attempts in the window; All attempts reads back to the first"
        )

        # when: every attempt is asked for
        page.click("#all-attempts")
        page.wait_for_url("**/logs?all_attempts=1")

        # then: the earlier attempt's lines too, before the last's
        lines = page.locator("#log-lines").inner_text()
        assert lines.index("first try") < lines.index("charging order 42")
        page.click("#back-to-failure")
        at_failure(page, key)


def test_a_double_click_on_replay_sends_one_replay_and_shows_its_outcome(
    page: Any, console: RunningConsole, world: World
) -> None:
    # A second send of the form while the first invokes was answered "not replayed: attempt 1
    # has no outcome yet ... Edit the payload, then replay to run it again", the answer the
    # browser showed, though the first click had replayed it.
    record = failure_record(random.Random("double-click"), function="orders-api")
    record["requestContext"]["functionArn"] = world.records["timeout"]["requestContext"][
        "functionArn"
    ]
    key = run(stored_failure(world.store_url, record=record)).key
    sign_in(page, console)
    page.goto(console.url + failure_path(key))
    posted: list[str] = []
    page.on(
        "request", lambda request: posted.append(request.url) if request.method == "POST" else None
    )

    page.click("#replay", click_count=2, delay=5)
    at_failure(page, key)

    assert len(posted) == 1
    assert page.locator("#outcome").inner_text().startswith("Replayed: attempt 1 invoked")
    assert [a.action for a in actions_of(world, key)] == ["replay"]
    assert len(replays_of(world, key)) == 1
