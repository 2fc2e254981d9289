"""axe-core over the console's pages in Debian's Chromium: no WCAG 2 A or AA violation on any
page state, at 1280 px and at 640 px (what a 1280 px window shows at 200% zoom).

axe-core is pinned in tests/a11y/package.json (a new version can find new violations) and
installed there with ``npm ci``; without it the test skips, unless
``LAMBDA_DESTINATIONS_REQUIRE_AXE=1`` (.ci/run sets it) turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import random
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from console_helpers import TOKEN, XSS, RunningConsole, World, stored_failure
from logs_helpers import STREAM, lambda_logs, put, put_last_attempt

from lambda_destinations.simulate import failure_record

pytestmark = pytest.mark.browser

A11Y = Path(__file__).parent.parent / "a11y"
AXE = A11Y / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = json.loads((A11Y / "package.json").read_text())["devDependencies"]["axe-core"]
# WCAG 2.0, 2.1 and 2.2 at levels A and AA: what the console promises (no best practices).
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
TARGETS_SHOWN = 3
# 640 CSS px is what a 1280 px window lays out at 200% zoom; the scale factor draws it as such.
WIDE = {"viewport": {"width": 1280, "height": 800}}
ZOOMED = {"viewport": {"width": 640, "height": 800}, "device_scale_factor": 2}


@dataclass
class Site:
    """What the states' addresses are made from: the console, its world, the jobs started."""

    console: RunningConsole
    world: World
    jobs: dict[str, str]  # job page path, by what it shows

    def failure(self, role: str) -> str:
        return "/failures/" + urllib.parse.quote(self.world.key(role), safe="")


def _edit_with_bad_json(page: Any) -> None:
    page.fill("#payload", '{"orderId": ')  # the page's own check says so under the field
    page.wait_for_selector("[data-json-problem]:not([hidden])")


def _still_running(page: Any) -> None:
    assert page.locator("#job-state").get_attribute("data-state") == "running"


def _sign_in_refused(page: Any) -> None:
    page.fill("#token", "not-the-token")
    page.fill("#user", "dana")
    with page.expect_navigation():
        page.click("#sign-in")
    page.wait_for_selector("#problem")


def _version_hints(page: Any) -> None:
    assert page.locator("#version-hints").is_visible()
    assert page.get_by_label("Qualifier").count() == 1


def _edit_with_a_bad_qualifier(page: Any) -> None:
    page.fill("#edit-qualifier", "my alias")
    with page.expect_navigation():
        page.click("#edit-replay")
    assert page.locator("#edit-qualifier").get_attribute("aria-invalid") == "true"


def _log_lines(page: Any) -> None:
    assert "charging order 42" in page.locator("#log-lines").inner_text()


def _no_log_group(page: Any) -> None:
    assert "not found" in page.locator("#logs-problem").inner_text()


def _on_the_alias(page: Any) -> None:
    assert "payments-api:7 → payments-api:live" in page.locator("table").inner_text()


# A failure of a published version (7): its pages say a replay runs that version again.
PUBLISHED = "arn:aws:lambda:us-east-1:123456789012:function:payments-api:7"


def _store_published(world: World) -> None:
    record = failure_record(random.Random(7), function="payments-api")
    record["requestContext"]["functionArn"] = PUBLISHED
    world.records["published"] = record
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright holds this loop
        pool.submit(asyncio.run, stored_failure(world.store_url, record=record)).result()


# Each state: its name, its address, and what is done on it before axe looks (or None).
State = tuple[str, Callable[[Site], str], Callable[[Any], None] | None]
SIGNED_OUT: list[State] = [
    ("sign-in", lambda s: "/login", None),
    ("sign-in, a refused link", lambda s: "/login?link=refused", None),
    ("sign-in, a wrong token", lambda s: "/login", _sign_in_refused),
]
SIGNED_IN: list[State] = [
    # first, while the slow replay runs (ten seconds for each of its invocations)
    ("a running job", lambda s: s.jobs["running"], _still_running),
    ("overview", lambda s: "/", None),
    ("failures", lambda s: "/failures", None),
    ("failures, filtered", lambda s: "/failures?function=orders-*&error_type=TimeoutError", None),
    ("failures, filtered to none", lambda s: "/failures?function=no-such-function", None),
    ("failures, ignored", lambda s: "/failures?status=ignored", None),
    ("failures, a filter with errors", lambda s: "/failures?since=yesterday&status=bogus", None),
    ("groups", lambda s: "/groups?since=7d", None),
    ("a failure with payloads", lambda s: s.failure("timeout"), None),
    ("a failure, ignored", lambda s: s.failure("value"), None),
    ("a failure's function logs", lambda s: s.failure("timeout") + "/logs", _log_lines),
    (
        "a failure's function logs, every attempt",
        lambda s: s.failure("timeout") + "/logs?all_attempts=1",
        _log_lines,
    ),
    (
        "a failure's function logs, no log group",
        lambda s: s.failure("value") + "/logs",
        _no_log_group,
    ),
    ("a failure's edit", lambda s: s.failure("edit") + "/edit", None),
    ("a failure's edit, not JSON", lambda s: s.failure("edit") + "/edit", _edit_with_bad_json),
    ("bulk replay plan", lambda s: "/bulk?action=replay&function=orders-api", None),
    ("bulk ignore plan", lambda s: "/bulk?action=ignore&function=orders-api", None),
    ("a failure of a published version", lambda s: s.failure("published"), _version_hints),
    (
        "a failure's edit, a bad qualifier",
        lambda s: s.failure("published") + "/edit",
        _edit_with_a_bad_qualifier,
    ),
    (
        "bulk replay plan of a published version",
        lambda s: "/bulk?action=replay&function=payments-api",
        _version_hints,
    ),
    (
        "bulk replay plan on an alias",
        lambda s: "/bulk?action=replay&function=payments-api&qualifier=live",
        _on_the_alias,
    ),
    ("DLQs", lambda s: "/dlqs", None),
    ("a DLQ, peeked", lambda s: f"/dlqs/{s.world.dlq_name}?peek=10", None),
    ("quarantine", lambda s: "/quarantine", None),
    ("jobs", lambda s: "/jobs", None),
    ("a finished job", lambda s: s.jobs["done"], None),
    ("not found", lambda s: "/no/such/page", None),
]
# The pages most used, again at 200% zoom (or on a 640 px window).
ZOOMED_STATES = {
    "sign-in, a wrong token",
    "overview",
    "failures, filtered",
    "a failure with payloads",
    "a failure's function logs",
    "a failure's edit, not JSON",
    "bulk replay plan",
    "a failure of a published version",
    "bulk replay plan on an alias",
    "a DLQ, peeked",
    "quarantine",
    "a finished job",
}


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core's script, the version tests/a11y/package.json pins."""
    if not AXE.exists():
        reason = f"axe-core is not installed ({AXE} is missing): cd tests/a11y && npm ci"
        if os.environ.get("LAMBDA_DESTINATIONS_REQUIRE_AXE") == "1":
            pytest.fail(f"{reason}; LAMBDA_DESTINATIONS_REQUIRE_AXE=1 forbids skipping")
        pytest.skip(reason)
    installed = json.loads((AXE.parent / "package.json").read_text())["version"]
    assert installed == AXE_VERSION, f"axe-core {installed} is installed, {AXE_VERSION} pinned"
    return AXE.read_text()


def _new_context(browser: Any, options: dict[str, Any], state: Any = None) -> Any:
    # The console's Content-Security-Policy (rightly) refuses inline scripts, axe's too: the
    # context bypasses it to inject axe. Nothing the check looks at depends on the policy.
    return browser.new_context(**options, bypass_csp=True, storage_state=state)


def _start_jobs(page: Any, console: RunningConsole) -> dict[str, str]:
    """A bulk ignore of billing-worker's failures, run to its end, and a bulk replay of
    orders-api's at the slowest rate, still running while the pages are checked."""
    jobs = {}
    for name, query, fields in [
        ("done", "action=ignore&function=billing-worker", {"reason": "known"}),
        ("running", "action=replay&function=orders-api", {"rate": "0.1"}),
    ]:
        page.goto(f"{console.url}/bulk?{query}")
        for field, value in fields.items():
            page.fill(f"input[name={field}]", value)
        page.click("#bulk-run")
        page.wait_for_url("**/jobs/*")
        jobs[name] = urllib.parse.urlsplit(page.url).path
    page.goto(console.url + jobs["done"])
    page.wait_for_selector("#job-state[data-state=done]", timeout=60000)
    return jobs


def _log_timeout_failure(logs: Any, world: World) -> None:
    """The last attempt of the timeout failure, in its function's log group (one line markup)."""
    record = world.records["timeout"]
    moment = dt.datetime.fromisoformat(record["timestamp"])
    put_last_attempt(logs, record["requestContext"]["requestId"], moment)
    put(logs, STREAM, [(moment - dt.timedelta(seconds=28, milliseconds=500), XSS)])


@pytest.fixture(scope="module")
def signed_in(browser: Any, console: RunningConsole, world: World) -> Iterator[tuple[Site, Any]]:
    """The site with its jobs started, and a signed-in session's storage state."""
    _store_published(world)
    context = _new_context(browser, WIDE)
    logs = contextlib.ExitStack()
    try:
        _log_timeout_failure(logs.enter_context(lambda_logs(world.endpoint.url)), world)
        page = context.new_page()
        page.set_default_timeout(20000)
        page.goto(f"{console.url}/login?token={TOKEN}")
        page.fill("#user", "axe")
        page.press("#user", "Enter")
        page.wait_for_url(f"{console.url}/")
        site = Site(console, world, _start_jobs(page, console))
        yield site, context.storage_state()
    finally:
        context.close()
        logs.close()


def violations(page: Any, axe_source: str) -> list[str]:
    """What axe finds on the page as it is now, one line each: rule, impact, help, where."""
    # Closed <details> hide what they hold from axe: open them all, so that is checked too.
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    page.add_script_tag(content=axe_source)
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const results = await axe.run(document, {
                runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] });
            return results.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.map((n) => n.target.join(" ")) }));
        }""",
        TAGS,
    )
    lines = []
    for v in found:
        shown = ", ".join(v["targets"][:TARGETS_SHOWN])
        more = len(v["targets"]) - TARGETS_SHOWN
        where = shown + (f" (and {more} more)" if more > 0 else "")
        lines.append(f"{v['id']} [{v['impact']}] {v['help']}: {where}")
    return lines


def _check(
    browser: Any, options: dict[str, Any], state: Any, site: Site, axe_source: str, states: Any
) -> dict[str, list[str]]:
    """Every state in one context (one browser, one console): its violations, by name."""
    context = _new_context(browser, options, state)
    try:
        page = context.new_page()
        page.set_default_timeout(20000)
        found = {}
        for name, path, prepare in states:
            page.goto(site.console.url + path(site))
            if prepare is not None:
                prepare(page)
            found[name] = violations(page, axe_source)
        return found
    finally:
        context.close()


def _report(found: dict[str, list[str]]) -> str:
    return "\n".join(
        f"{name}:\n" + "\n".join(f"  - {line}" for line in lines)
        for name, lines in found.items()
        if lines
    )


@pytest.mark.parametrize(
    ("options", "zoomed"), [(WIDE, False), (ZOOMED, True)], ids=["1280px", "200%"]
)
def test_no_page_of_the_console_has_a_wcag_violation_axe_finds(
    axe_source: str,
    browser: Any,
    signed_in: tuple[Site, Any],
    options: dict[str, Any],
    zoomed: bool,
) -> None:
    # given: every state (the main ones when zoomed), signed out, then signed in
    site, session = signed_in
    wanted = [s for s in SIGNED_OUT + SIGNED_IN if not zoomed or s[0] in ZOOMED_STATES]

    # when: axe looks at each
    found = _check(browser, options, None, site, axe_source, [s for s in wanted if s in SIGNED_OUT])
    signed_in_states = [s for s in wanted if s in SIGNED_IN]
    found |= _check(browser, options, session, site, axe_source, signed_in_states)

    # then: it found nothing, on any of them
    assert list(found) == [name for name, _, _ in wanted]
    if report := _report(found):
        pytest.fail(f"axe-core {AXE_VERSION} found violations:\n{report}", pytrace=False)
