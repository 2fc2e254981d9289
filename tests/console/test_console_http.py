"""The console's rules over HTTP (aiohttp's test client, a real SQLite store): who may read,
who may act, read-only mode, the JSON API's token, and no secret on a page."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import html
import io
import itertools
import json
import os
import random
import re
import string
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urljoin, urlsplit

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from console_helpers import XSS, stored_failure
from logs_helpers import (
    DENIED,
    FILTER_LOG_EVENTS,
    GROUP,
    OTHER_ID,
    STREAM,
    invocation,
    lambda_logs,
    put,
    put_last_attempt,
    refusing_filter_log_events,
)
from ops_helpers import (
    at,
    count_messages,
    failure_body,
    fifo_queue_with_dlq,
    group_ids,
    send_all,
)

from lambda_destinations import times
from lambda_destinations.cli import console as console_cli
from lambda_destinations.config import Settings
from lambda_destinations.console import ConsoleOptions, actions, bound, create_app
from lambda_destinations.console import app as console_app
from lambda_destinations.console.app import CONSOLE
from lambda_destinations.console.jobs import Job
from lambda_destinations.console.security import PublicUrl
from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.operations.quarantine import resend_status
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import (
    failure_record,
    function_arn,
    kinesis_failure,
    success_record,
)
from lambda_destinations.store import (
    DeliveryRow,
    FailureStatus,
    InvocationRow,
    OperatorAction,
    QuarantineRow,
    ReplayAttempt,
    ReplayOutcome,
    Store,
)
from ledger_helpers import replayed_once
from processes import reap
from processes import start_console as start_process
from tcp_proxy import AnswerCutter, aws_error, kms_refusal

TOKEN = "http-test-token"
ARN = "arn:aws:lambda:us-east-1:123456789012"


def _once() -> str:
    """A form's one-time token, as a page puts one in each form that acts."""
    return uuid.uuid4().hex


async def _client(settings: Settings, **options: Any) -> TestClient:  # type: ignore[type-arg]
    app = create_app(settings, ConsoleOptions(token=TOKEN, **options))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def make_client(
    settings_for: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    started: list[TestClient] = []  # type: ignore[type-arg]

    async def make(settings: Settings | None = None, **options: Any) -> TestClient:  # type: ignore[type-arg]
        client = await _client(settings or settings_for(), **options)
        started.append(client)
        return client

    yield make
    for client in started:
        await client.close()


def _origin(client: TestClient) -> dict[str, str]:  # type: ignore[type-arg]
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def sign_in(client: TestClient, user: str = "dana") -> str:  # type: ignore[type-arg]
    """Sign in; the CSRF token of the session, read from a page as the browser would."""
    response = await client.post(
        "/login",
        data={"token": TOKEN, "user": user, "next": "/"},
        headers=_origin(client),
        allow_redirects=False,
    )
    assert response.status == 303
    page = await (await client.get("/failures")).text()
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


async def test_a_failure_s_address_upper_cased_or_with_spaces_finds_it(
    make_client, settings_for
) -> None:
    # Lambda writes request ids in lower case; an address typed from an upper-cased view was 404
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)

    upper = await client.get(f"/failures/{quote(f' {str(row.request_id).upper()} ', safe='')}")

    assert upper.status == 200
    assert str(row.request_id) in await upper.text()


async def test_the_failures_page_opens_a_request_id_from_its_first_characters(
    make_client, settings_for
) -> None:
    # given: two failures whose request ids start alike, and a third
    settings = settings_for()
    ids = ["aaaa1111-0000-4000-8000-000000000001", "aaaa2222-0000-4000-8000-000000000002"]
    for request_id in ids:
        record = failure_record(random.Random(3), function="orders-api")
        record["requestContext"]["requestId"] = request_id
        await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when: the list's "Request id" box is sent, as a browser sends its form
    listing = await (await client.get("/failures")).text()
    opened = await client.get("/find", params={"id": " AAAA1 "})
    several = await client.get("/find", params={"id": "aaaa"}, headers={"Accept": "text/html"})
    empty = await client.get("/find", params={"id": ""}, allow_redirects=False)

    # then: the form is there, one request id's first characters open its page, several are
    # named on the error page, and an empty box leaves the list as it was
    assert 'action="/find"' in listing
    assert 'name="id"' in listing
    assert opened.status == 200
    assert opened.url.path == "/failures/AAAA1"
    assert f"{ids[0]}:RetriesExhausted" in await opened.text()
    assert several.status == 404
    assert f"starts more than one request id ({ids[0]}, {ids[1]})" in html.unescape(
        await several.text()
    )
    assert (empty.status, empty.headers["Location"]) == (303, "/failures")


async def test_a_failure_page_says_a_failed_handler_run_failed(make_client, settings_for) -> None:
    # given: a handler whose run failed and was released: the store's state stays "claimed",
    # which the page showed as if it still ran
    settings = settings_for()
    row = await stored_failure(settings)
    async with Store.from_url(settings.store) as store:
        assert await store.claim_handler(row.key, "mail", "w1", 300)
        await store.release_handler(row.key, "mail", "w1", error="SMTP 535: login refused")
        assert await store.claim_handler(row.key, "text", "w1", 300)
    client = await make_client(settings)

    # when
    page = await (await client.get(f"/failures/{row.key}")).text()

    # then
    assert "<td>mail</td><td>failed</td>" in page
    assert "<td>text</td><td>running</td>" in page
    assert "claimed" not in page


async def test_reading_needs_no_sign_in_on_loopback_but_does_elsewhere(make_client) -> None:
    local = await make_client()
    assert (await local.get("/failures")).status == 200

    exposed = await make_client(host="0.0.0.0")
    response = await exposed.get("/failures?function=x", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/failures?function%3Dx"
    await sign_in(exposed)
    assert (await exposed.get("/failures")).status == 200


async def test_signing_in_from_a_filtered_page_returns_to_the_whole_filter(make_client) -> None:
    # given: a console others can reach, and a filtered page asked for before signing in
    client = await make_client(host="0.0.0.0")
    wanted = "/failures?function=fn-*&status=open&since=2h&error_type=a%26b"
    response = await client.get(wanted, allow_redirects=False)

    # when: the sign-in page it sends to is filled in and sent
    page = await (await client.get(response.headers["Location"])).text()
    target = page.split('name="next" value="', 1)[1].split('"', 1)[0]
    signed = await client.post(
        "/login",
        data={"token": TOKEN, "user": "dana", "next": html.unescape(target)},
        headers=_origin(client),
        allow_redirects=False,
    )

    # then: back where the operator was, every filter kept
    assert signed.status == 303
    assert signed.headers["Location"] == wanted


async def test_sign_in_refuses_a_wrong_token_and_never_redirects_off_site(make_client) -> None:
    client = await make_client()
    wrong = await client.post(
        "/login", data={"token": "nope", "user": "eve", "next": "/"}, headers=_origin(client)
    )
    assert wrong.status == 403
    assert "not the console" in await wrong.text()
    response = await client.post(
        "/login",
        data={"token": TOKEN, "user": "dana", "next": "//evil.example/x"},
        headers=_origin(client),
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    ("user", "problem"),
    [
        ("   ", "Give your name (up to 64 characters): the ledger records who did what."),
        ("d" * 65, "Give your name (up to 64 characters): the ledger records who did what."),
        # before: "Give your name (up to 64 characters)", for a name of 5
        (
            "dana\u202e",
            "Type your name without control or format characters (such as U+202E or a "
            "zero-width joiner): the ledger records it as text.",
        ),
    ],
)
async def test_sign_in_says_why_it_refuses_a_name(make_client, user: str, problem: str) -> None:
    client = await make_client()
    response = await client.post(
        "/login", data={"token": TOKEN, "user": user, "next": "/"}, headers=_origin(client)
    )
    assert response.status == 403
    assert _problem_line(await response.text()) == problem


@pytest.mark.parametrize("target", ["/\t/evil.com", "/\n/evil.com", "/\r/evil.com", "/ /evil.com"])
async def test_a_return_path_with_a_control_character_never_leaves_the_site(
    make_client, target: str
) -> None:
    # browsers drop tabs and newlines from a URL: "/<tab>/evil.com" is "//evil.com" to them
    client = await make_client()
    response = await client.post(
        "/login",
        data={"token": TOKEN, "user": "dana", "next": target},
        headers=_origin(client),
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/"
    page = await (await client.get("/login", params={"next": target})).text()
    assert 'name="next" value="/"' in page
    assert "evil.com" not in page


async def test_the_sign_in_link_takes_the_token_in_and_no_page_holds_it(make_client) -> None:
    # given: the address the console prints at start, which holds the token
    client = await make_client(host="0.0.0.0")

    # when: a person opens it (to return to a page)
    opened = await client.get(f"/login?token={TOKEN}&next=/failures", allow_redirects=False)
    page = await (await client.get(opened.headers["Location"])).text()

    # then: sent on to the sign-in page without the token, which no page holds, and which
    # asks only the name
    assert opened.status == 303
    assert opened.headers["Location"] == "/login?next=/failures"
    assert TOKEN not in await opened.text()
    assert TOKEN not in page
    assert 'name="token"' not in page
    assert "The token came with the sign-in link" in page
    assert 'href="/login?next=/failures"' in page

    # when: the name is given
    signed = await client.post(
        "/login",
        data={"user": "dana", "next": "/failures"},
        headers=_origin(client),
        allow_redirects=False,
    )

    # then: signed in, and the link's slot is used up: Back shows the token field, empty
    assert signed.status == 303
    assert signed.headers["Location"] == "/failures"
    assert (await client.get("/failures", allow_redirects=False)).status == 200
    again = await (await client.get("/login?next=/failures")).text()
    assert '<input type="password" name="token" autocomplete="off" required' in again
    assert TOKEN not in again


async def test_a_sign_in_link_with_another_token_says_so_and_no_page_holds_it(
    make_client,
) -> None:
    client = await make_client(host="0.0.0.0")
    stale = "an-old-token-" + TOKEN[::-1]

    response = await client.get(f"/login?token={stale}")

    assert response.status == 200
    assert response.url.path_qs == "/login?next=/&link=refused"
    page = await response.text()
    assert "is not this console" in page
    assert stale not in page
    assert 'name="token"' in page
    refused = await client.post(
        "/login", data={"user": "dana", "next": "/"}, headers=_origin(client)
    )
    assert refused.status == 403


async def test_the_sign_in_page_says_where_reading_needs_it(make_client) -> None:
    # given: a console on loopback, and one others can reach
    local = await make_client()
    exposed = await make_client(host="192.0.2.2")

    # when: the sign-in page is read, before and after signing in
    local_page = await (await local.get("/login")).text()
    await sign_in(local, user="dana")
    signed_page = await (await local.get("/login")).text()
    exposed_page = await (await exposed.get("/login")).text()
    await sign_in(exposed, user="ravi")
    exposed_signed = await (await exposed.get("/login")).text()

    # then: each says what holds there, with nothing left out
    for page in (local_page, signed_page):
        assert "Reading needs no sign-in here" in page
    for page in (exposed_page, exposed_signed):
        assert "Every page here needs sign-in" in page
        assert "needs no sign-in" not in page
    assert "Reading ." not in signed_page
    assert "signed in as <strong>dana</strong>" in signed_page
    assert "signed in as <strong>ravi</strong>" in exposed_signed
    assert "signed in as" not in local_page


async def test_a_stale_form_is_refused(make_client) -> None:
    client = await make_client()
    csrf = await sign_in(client)
    assert csrf
    response = await client.post(
        "/failures/nothing/ignore", data={"reason": "x", "csrf": "forged"}, headers=_origin(client)
    )
    assert response.status == 403
    assert "stale" in await response.text()
    # with the right token the same request gets as far as finding no such failure
    response = await client.post(
        "/failures/nothing/ignore", data={"reason": "x", "csrf": csrf}, headers=_origin(client)
    )
    assert response.status == 404


async def test_read_only_shows_no_action_and_refuses_them(make_client) -> None:
    client = await make_client(read_only=True)
    page = await (await client.get("/")).text()
    assert "read-only" in page
    assert "Sign in to act" not in page
    response = await client.post(
        "/failures/x/replay", data={}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 403
    assert "read-only" in await response.text()


async def test_the_json_api_needs_the_token(make_client) -> None:
    client = await make_client()
    assert (await client.get("/api/jobs/nope")).status == 401
    found = await client.get("/api/jobs/nope", headers={"Authorization": f"Bearer {TOKEN}"})
    assert found.status == 404
    wrong = await client.get("/api/jobs/nope", headers={"Authorization": "Bearer other"})
    assert wrong.status == 401


async def test_a_token_set_from_a_file_with_its_newline_signs_in(
    settings_for: Callable[..., Settings], monkeypatch
) -> None:
    # given: the token variable set from a file, its newline kept (a Kubernetes secret made
    # with --from-file, `echo TOKEN > file`)
    monkeypatch.setenv("LAMBDA_DESTINATIONS_CONSOLE_TOKEN", TOKEN + "\n")
    options = console_cli.console_options("127.0.0.1", 0, read_only=False)
    # (a new store for the test: the command's serves the worker's, which must be there)
    app = create_app(settings_for(), dataclasses.replace(options, create_store=True))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        # when: the token is sent as a person or a script sends it, without the newline
        api = await client.get("/api/jobs/nope", headers={"Authorization": f"Bearer {TOKEN}"})
        csrf = await sign_in(client)
    finally:
        await client.close()

    # then: it is the token (before: 401, and the sign-in refused; no one could act)
    assert not options.token_generated
    assert api.status == 404
    assert csrf


async def test_a_console_mounted_without_a_token_takes_no_empty_one(
    settings_for: Callable[..., Settings],
) -> None:
    # given: the console mounted as the package offers it, ConsoleOptions() left as it is
    # (its token "")
    client = TestClient(TestServer(create_app(settings_for(), ConsoleOptions())))
    await client.start_server()
    try:
        # when: the sign-in form is sent with its token field empty, and the API asked with an
        # empty bearer token (before: 303 and a session, and the API answered)
        signed = await client.post(
            "/login",
            data={"token": "", "user": "mallory", "next": "/"},
            headers=_origin(client),
            allow_redirects=False,
        )
        api = await client.get("/api/jobs/nope", headers={"Authorization": "Bearer  "})
        acted = await client.post(
            "/failures/x/ignore", data={"reason": "x"}, headers={"Authorization": "Bearer "}
        )

        # then: no session, and no action or API answer for nothing
        assert signed.status == 403
        assert "ld_console=" not in signed.headers.get("Set-Cookie", "")
        assert api.status == 401
        assert acted.status == 403
    finally:
        await client.close()


async def test_pages_forbid_framing_and_foreign_scripts(make_client) -> None:
    client = await make_client()
    response = await client.get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_the_way_to_sign_in_and_a_prefix_not_stripped_have_the_pages_headers_too(
    make_client,
) -> None:
    # given: a console behind a proxy at a path prefix, no one signed in
    client = await make_client(public=PublicUrl.parse("https://ops.example.com/ld"))

    # when: a page (sent to sign in) and an address under the prefix (the proxy kept it)
    signing = await client.get("/failures", allow_redirects=False)
    kept = await client.get("/ld/failures", allow_redirects=False)

    # then: both answers carry the headers every page has (before: neither did, raised before
    # the guard added them)
    assert (signing.status, kept.status) == (303, 404)
    for response in (signing, kept):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.postgres
async def test_no_password_from_the_settings_reaches_a_page(
    make_client, settings_for: Callable[..., Settings], postgres_url: str
) -> None:
    # trust authentication ignores the password, so the URL works and carries a secret
    secret_url = postgres_url.replace("postgres@", "postgres:hunter2-secret@", 1)
    async with Store.from_url(secret_url) as store:
        await store.migrate()
    client = await make_client(settings_for(store=secret_url))
    for path in ("/", "/failures", "/groups", "/dlqs", "/quarantine", "/jobs", "/login"):
        text = await (await client.get(path)).text()
        assert "hunter2" not in text, path
    assert "***" in await (await client.get("/")).text()


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://127.0.0.1:9/?token=tok-s3cret"])
async def test_an_unreachable_endpoint_is_one_line_on_a_page_and_the_ledger_says_so(
    make_client, settings_for: Callable[..., Settings], endpoint: str
) -> None:
    # given: a failure in the store, and a Lambda endpoint nobody listens on (whose URL may
    # carry a token: botocore quotes the URL whole in its error)
    settings = settings_for(endpoint_url=endpoint)
    row = await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when
    response = await client.post(
        f"/failures/{row.key}/replay",
        data={"csrf": csrf, "nonce": _once()},
        headers=_origin(client),
    )

    # then
    assert response.status == 503
    page = await response.text()
    assert "Could not connect" in page or "EndpointConnectionError" in page
    assert "Traceback" not in page
    assert "tok-s3cret" not in page  # before, the page showed the error's text as it came
    async with Store.from_url(settings.store) as store:
        attempts = await store.replays(row.key)
    # refused connections never reached Lambda: the attempt ended, a later replay may try again
    assert [(a.requested_by, a.outcome.value) for a in attempts] == [("console dana", "error")]
    assert "EndpointConnectionError" in (attempts[0].detail or "")


async def _quarantined(settings: Settings, url: str, message_id: str) -> QuarantineRow:
    """A message of ``url`` only the store holds (quarantined, its queue without a DLQ)."""
    async with Store.from_url(settings.store) as store:
        await store.migrate()
        row = QuarantineRow(url, message_id, '{"not": "a record"}', {}, "decode error", 1)
        await store.save_quarantine(row)
    return row


async def _resend(client: TestClient, csrf: str, row: QuarantineRow, message_id: str) -> Any:  # type: ignore[type-arg]
    """Resend posted from a page (a page of its own) that showed ``message_id`` in ``row``."""
    return await client.post(
        f"/quarantine/{row.id}/resend",
        data={"csrf": csrf, "message_id": message_id, "nonce": _once()},
        headers=_origin(client),
        allow_redirects=False,
    )


async def test_resend_from_six_tabs_at_once_sends_once(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a message only the store holds, from a queue without DLQ
    url, _ = make_queue("console-resend", dlq=False)
    settings = settings_for(queues=[url])
    row = await _quarantined(settings, url, "m-1")
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when: Resend, six times at once, each from a page of its own (other tabs)
    responses = await asyncio.gather(*(_resend(client, csrf, row, "m-1") for _ in range(6)))

    # then: one sent it; the others sent nothing and said so in one line
    statuses = sorted(response.status for response in responses)
    assert statuses.count(303) == 1, statuses
    for response in responses:
        if response.status != 303:
            assert response.status in (404, 409)
            (line,) = (await response.text()).strip().splitlines()
            assert "resent" in line
    assert count_messages(sqs, url) == 1
    async with Store.from_url(settings.store) as store:
        resends = await store.actions(url)
        assert await store.list_quarantine() == []
    # the ledger: the one resend, and each one refused with its line
    assert [a.detail.get("refused") is None for a in resends].count(True) == 1
    assert len(resends) == statuses.count(409) + 1


async def test_a_resend_from_a_page_that_showed_another_message_sends_nothing(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a quarantined message, and a page whose Resend names the message it showed
    url, _ = make_queue("console-resend-stale", dlq=False)
    settings = settings_for(queues=[url])
    row = await _quarantined(settings, url, "m-new")
    client = await make_client(settings)
    csrf = await sign_in(client)
    page = await (await client.get("/quarantine")).text()
    assert f'name="message_id" value="m-new"><button type="submit" id="resend-{row.id}"' in page

    # when: a stale tab posts Resend for that id, naming the message it showed then
    response = await _resend(client, csrf, row, "m-old")

    # then: refused in one line; nothing was sent, the message is still quarantined
    assert response.status == 409
    (line,) = (await response.text()).strip().splitlines()
    assert line.startswith(f"not resent: quarantined message {row.id} is not the message 'm-old'")
    assert count_messages(sqs, url) == 0
    async with Store.from_url(settings.store) as store:
        assert await store.actions(url) == []
        assert [q.message_id for q in await store.list_quarantine()] == ["m-new"]


async def _wait_for_jobs(client: TestClient) -> list[Any]:  # type: ignore[type-arg]
    """The console's jobs, once none runs (a job page's state, polled as a browser would)."""
    board = client.server.app[CONSOLE].jobs
    for _ in range(600):
        if all(job.state != "running" for job in board.recent()):
            return board.recent()
        await asyncio.sleep(0.05)
    raise AssertionError(f"jobs still running: {[job.as_dict() for job in board.recent()]}")


async def test_redrive_posted_twice_at_once_moves_each_message_once(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: 12 messages in the DLQ of a configured queue
    url, dlq_url = make_queue("console-redrive")
    send_all(sqs, dlq_url, [failure_body(n)[0] for n in range(12)])
    client = await make_client(settings_for(queues=[url]))
    csrf = await sign_in(client)
    name = dlq_url.rsplit("/", 1)[1]

    # when: Redrive, twice at once (a double click, a second tab)
    responses = await asyncio.gather(
        *(
            client.post(
                f"/dlqs/{name}/redrive",
                data={"csrf": csrf},
                headers=_origin(client),
                allow_redirects=False,
            )
            for _ in range(2)
        )
    )
    jobs = await _wait_for_jobs(client)

    # then: one job moved each message once; the second request was refused, naming it
    assert sorted(response.status for response in responses) == [303, 409]
    (job,) = jobs
    (refused,) = [r for r in responses if r.status == 409]
    (line,) = (await refused.text()).strip().splitlines()
    assert f"/jobs/{job.id}" in line
    assert (job.state, job.counts) == ("done", {"moved": 12})
    assert count_messages(sqs, url) == 12
    assert count_messages(sqs, dlq_url) == 0


async def _redriven(client: TestClient, dlq: str) -> tuple[int, Job]:  # type: ignore[type-arg]
    """Redrive of the DLQ called ``dlq``, signed in: its answer's status, and its job, ended."""
    csrf = await sign_in(client)
    response = await client.post(
        f"/dlqs/{dlq}/redrive", data={"csrf": csrf}, headers=_origin(client), allow_redirects=False
    )
    (job,) = await _wait_for_jobs(client)
    return response.status, job


async def test_redrive_of_a_fifo_dlq_moves_its_messages_in_their_groups(
    make_client, settings_for: Callable[..., Settings], sqs
) -> None:
    # given: a FIFO queue whose FIFO DLQ holds three messages of two groups
    name = f"console-fifo-{uuid.uuid4().hex[:8]}"
    url, dlq_url = fifo_queue_with_dlq(sqs, name, ["a", "b", "a"])
    client = await make_client(settings_for(queues=[url]))

    # when
    status, job = await _redriven(client, f"{name}-dlq.fifo")

    # then: all three moved, each in its group (before: sent with no group id, which SQS
    # refuses for a FIFO queue, so every one was left in the DLQ)
    assert status == 303
    assert (job.state, job.counts, job.errors) == ("done", {"moved": 3}, [])
    assert group_ids(sqs, url) == ["a", "a", "b"]
    assert count_messages(sqs, dlq_url) == 0


async def test_a_running_redrive_refuses_another_and_a_purge_of_its_dlq(
    make_client, settings_for: Callable[..., Settings], make_queue
) -> None:
    # given: a redrive of the DLQ still running in the console (held until the test lets go)
    url, dlq_url = make_queue("console-busy")
    client = await make_client(settings_for(queues=[url]))
    csrf = await sign_in(client)
    name = dlq_url.rsplit("/", 1)[1]
    let_go = asyncio.Event()

    async def held(job: Job) -> None:
        await let_go.wait()

    board = client.server.app[CONSOLE].jobs
    running = board.start("redrive", f"redrive {name}", "console erin", 0, held, target=dlq_url)

    async def post(action: str) -> Any:
        data = {"csrf": csrf, "confirm": name}
        return await client.post(
            f"/dlqs/{name}/{action}", data=data, headers=_origin(client), allow_redirects=False
        )

    # when / then: a redrive and a purge are refused with one line naming the running job
    for action in ("redrive", "purge"):
        response = await post(action)
        assert response.status == 409, action
        (line,) = (await response.text()).strip().splitlines()
        assert f"/jobs/{running.id}" in line
        assert "console erin" in line
    # once it ended, a redrive starts
    let_go.set()
    await _wait_for_jobs(client)
    assert (await post("redrive")).status == 303
    await _wait_for_jobs(client)


async def test_a_second_purge_within_a_minute_is_refused_in_dlq_purge_s_line(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a configured queue's DLQ, purged from the console a moment ago, holding a message
    url, dlq_url = make_queue("console-purge-twice")
    name = dlq_url.rsplit("/", 1)[1]
    settings = settings_for(queues=[url])
    client = await make_client(settings)
    csrf = await sign_in(client)

    async def purge() -> Any:
        data = {"csrf": csrf, "confirm": name, "reason": "drained"}
        return await client.post(
            f"/dlqs/{name}/purge", data=data, headers=_origin(client), allow_redirects=False
        )

    send_all(sqs, dlq_url, ["m1"])
    assert (await purge()).status == 303
    send_all(sqs, dlq_url, ["m2"])

    # when: purged again within SQS's minute
    again = await purge()

    # then: refused in `dlq purge`'s line, with its way on (before: a 503 with SQS's
    # PurgeQueueInProgress alone); the ledger says the second purge was refused
    assert again.status == 409
    (line,) = (await again.text()).strip().splitlines()
    assert line == (
        f"{name} was purged less than a minute ago, and SQS allows one purge a minute per "
        "queue: its messages are being deleted; peek at it in a minute, and purge again if "
        "some remain"
    )
    async with Store.from_url(settings.store) as store:
        refused, done = await store.actions(dlq_url)
    assert (refused.action, done.action) == ("purge", "purge")
    assert "refused" in (refused.detail or {})
    assert "refused" not in (done.detail or {})


async def test_the_dlq_page_lists_a_refused_purge_as_refused_not_as_a_purge(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a DLQ purged from the console, then purged again within SQS's minute (refused)
    url, dlq_url = make_queue("console-purge-listed")
    name = dlq_url.rsplit("/", 1)[1]
    client = await make_client(settings_for(queues=[url]))
    csrf = await sign_in(client)
    for message in ("m1", "m2"):
        send_all(sqs, dlq_url, [message])
        await client.post(
            f"/dlqs/{name}/purge",
            data={"csrf": csrf, "confirm": name, "reason": "drained"},
            headers=_origin(client),
            allow_redirects=False,
        )

    # when
    page = html.unescape(await (await client.get(f"/dlqs/{name}")).text())

    # then: the refused one says so, with its line; the done one does not (before: both
    # "purge · drained", as if the DLQ had been purged twice)
    listed = page.split('<ul id="dlq-actions">', 1)[1].split("</ul>", 1)[0]
    refused, done = listed.split("</li>")[:2]
    assert "purge · drained · " in refused
    assert f"refused, nothing done: {name} was purged less than a minute ago" in refused
    assert done.endswith("purge · drained")


async def test_an_error_page_s_way_back_to_a_peek_shows_the_dlq_without_peeking_again(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a DLQ holding a message, a purge posted from its peek's page, its name mistyped
    url, dlq_url = make_queue("console-back-no-peek")
    name = dlq_url.rsplit("/", 1)[1]
    send_all(sqs, dlq_url, ["m1"])
    client = await make_client(settings_for(queues=[url]))
    csrf = await sign_in(client)
    referer = str(client.make_url(f"/dlqs/{name}?peek=10"))

    # when
    response = await client.post(
        f"/dlqs/{name}/purge",
        data={"csrf": csrf, "confirm": "typo"},
        headers={**_BROWSER, **_origin(client), "Referer": referer},
    )

    # then: the way back is the DLQ's page, as signing in goes back (before: the peek again,
    # one more receive of each message, which a DLQ's own redrive policy counts)
    _, line, back = _error_page(await response.text())
    assert response.status == 400
    assert line.startswith("type the queue's name")
    assert back == f"/dlqs/{name}"


async def test_a_resend_to_a_deleted_queue_says_so_and_what_to_do_as_quarantine_resend_does(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a quarantined message whose queue was deleted since
    url, _ = make_queue("console-resend-gone", dlq=False)
    settings = settings_for()
    row = await _quarantined(settings, url, "m-1")
    sqs.delete_queue(QueueUrl=url)
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when
    response = await _resend(client, csrf, row, "m-1")

    # then: one line naming the queue and the way on, as `quarantine resend` says it (before:
    # 503 with SQS's NonExistentQueue alone); the stored copy stays, and the ledger keeps the
    # resend as refused, with that line (as a refused purge)
    assert response.status == 409
    (line,) = (await response.text()).strip().splitlines()
    assert line == (
        f"not resent: its queue {url.rsplit('/', 1)[1]} does not exist (deleted, or renamed): "
        f"create it again and resend, or send the body yourself (`quarantine show {row.id} "
        "--json`); the stored copy stays"
    )
    async with Store.from_url(settings.store) as store:
        assert [q.message_id for q in await store.list_quarantine()] == ["m-1"]
        (refused,) = await store.actions(url)
    assert refused.detail == {"message_id": "m-1", "reason": row.reason, "refused": line}


def _deletes_fail(request: bytes) -> bytes | None:
    """SQS's answer to a DeleteMessageBatch whose every entry failed (a receipt gone stale)."""
    entries = json.loads(request.split(b"\r\n\r\n", 1)[1])["Entries"]
    failed = [
        {"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "stale"}
        for e in entries
    ]
    body = json.dumps({"Successful": [], "Failed": failed}).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
        f"x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def test_a_redrive_whose_deletes_failed_says_the_messages_are_in_both_queues(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs, endpoint_url: str
) -> None:
    # given: a DLQ of two messages, and SQS failing each delete from it
    url, dlq_url = make_queue("console-redrive-both")
    send_all(sqs, dlq_url, [failure_body(n)[0] for n in range(2)])
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.DeleteMessageBatch", http=True)
    proxy.answer = _deletes_fail
    async with proxy.running() as through:
        client = await make_client(settings_for(url, endpoint_url=through))

        # when
        status, job = await _redriven(client, dlq_url.rsplit("/", 1)[1])

    # then: the job says they are in both queues, as `dlq redrive` says it (before: no line
    # at all, as if the DLQ were empty now)
    assert status == 303
    assert job.counts == {"moved": 2}
    assert "2 sent but not deleted (now in both queues)" in job.errors
    assert count_messages(sqs, url) == 2


async def test_a_redrive_job_an_error_stopped_says_what_moved_and_what_stays(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs, endpoint_url: str
) -> None:
    # given: a DLQ of three messages, and a source queue that refuses every send to it
    url, dlq_url = make_queue("console-redrive-refused")
    send_all(sqs, dlq_url, [failure_body(n)[0] for n in range(3)])
    proxy = AnswerCutter(endpoint_url, b"AmazonSQS.SendMessageBatch", http=True)
    proxy.answer = lambda request: kms_refusal()
    async with proxy.running() as through:
        settings = settings_for(url, endpoint_url=through)
        client = await make_client(settings)

        # when
        status, job = await _redriven(client, dlq_url.rsplit("/", 1)[1])
        # (the console names the DLQ by its URL through the proxy)
        async with Store.from_url(settings.store) as store:
            (action,) = await store.actions(dlq_url.replace(endpoint_url, through))

    # then: one line on the job's page and in the ledger: the refusal, what the run did and
    # what stays, the way on (before: the page had the error's first line alone, cut at 500
    # characters after its type, and the ledger only what the redrive set out to do)
    name = url.rsplit("/", 1)[1]
    assert status == 303
    assert job.state == "failed"
    (line,) = job.errors
    assert line.startswith("SendMessageBatch failed: KMS.AccessDeniedException: User: ")
    assert line.endswith(
        f"; the redrive stopped after moving 0 of about 3 messages when {name} refused a send; "
        f"3 not sent (refused), left in the DLQ; the rest stay in the DLQ too: run the redrive "
        "again once that is fixed"
    )
    assert (action.detail["moved"], action.detail["send_failures"]) == (0, {"refused": 3})
    assert action.detail["error"] == line
    assert count_messages(sqs, dlq_url) == 3


@pytest.mark.parametrize(
    ("query", "line"),
    [
        ("since=1990-01-01", "failure statistics cover at most 366 days at a time"),
        (
            "since=2026-11-01&until=9999-12-31T23:59:59",
            "failure statistics cover at most 366 days at a time",
        ),
    ],
)
async def test_groups_refuse_a_window_they_cannot_count_in_one_line(
    make_client, query: str, line: str
) -> None:
    client = await make_client()
    response = await client.get(f"/groups?{query}")
    page = html.unescape(await response.text())
    assert response.status == 400
    assert line in page
    assert "Traceback" not in page


async def test_the_groups_filter_form_filters_the_groups(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure of orders-api, and the groups page
    settings = settings_for()
    await stored_failure(settings)
    client = await make_client(settings)
    page = await (await client.get("/groups")).text()

    # when: its filter form is sent as a browser sends it, to its action resolved on the page
    action = html.unescape(re.findall(r'<form method="get" action="([^"]*)"', page)[0])
    url = urljoin("/groups", action)
    response = await client.get(url, params={"function": "orders-*"})

    # then: the groups of that filter (before: the action was "{{ root }}/groups" as text, an
    # address of no page, 404)
    assert url == "/groups"
    assert response.status == 200
    assert ">orders-api</a></td>" in await response.text()


async def test_a_group_s_link_on_a_filtered_groups_page_lists_that_group_s_function(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: failures of orders-api and orders-web, grouped by the filter function=orders-*
    settings = settings_for()
    for seed, function in enumerate(("orders-api", "orders-web")):
        record = failure_record(
            random.Random(seed), function=function, condition="RetriesExhausted"
        )
        await stored_failure(settings, function_arn=f"{ARN}:function:{function}", record=record)
    client = await make_client(settings)
    groups = await (await client.get("/groups?function=orders-*")).text()

    # when: the orders-api group's link is followed
    link = html.unescape(re.findall(r'<a href="([^"]+)">orders-api</a>', groups)[0])
    listed = await (await client.get(link)).text()

    # then: the failures of orders-api alone (before: the link said function=orders-* first and
    # the group's function=orders-api after it, and the list read the first: both functions)
    assert parse_qs(urlsplit(link).query)["function"] == ["orders-api"]
    assert "<td>orders-api</td>" in listed
    assert "<td>orders-web</td>" not in listed


async def test_a_group_s_trend_over_a_year_is_drawn_with_a_point_a_pixel_at_most(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: failures of three functions
    settings = settings_for()
    for seed in range(3):
        function = f"fn-{seed}"
        record = failure_record(random.Random(seed), function=function, condition="Error")
        await stored_failure(settings, function_arn=f"{ARN}:function:{function}", record=record)
    client = await make_client(settings)

    # when: their groups over a year
    response = await client.get("/groups?since=365d")
    page = await response.text()

    # then: each trend a line of at most 120 points, as wide as it is drawn (before: 8,784, a
    # point an hour: 90 kB a group, a page of 27 MB for 300 functions)
    lines = re.findall(r'<polyline points="([^"]*)"', page)
    assert response.status == 200
    assert len(lines) == 3
    assert all(60 <= len(line.split()) <= 120 for line in lines)
    assert len(page) < 20_000


async def test_groups_count_the_last_day_before_the_year_10000(make_client) -> None:
    client = await make_client()
    response = await client.get("/groups?until=9999-12-31T23:59:59")
    assert response.status == 200
    assert "9999-12-31 23:59:59 UTC" in await response.text()


async def test_groups_count_from_the_year_1_s_first_moment_before_an_until_in_its_first_day(
    make_client,
) -> None:
    # before: "until: '0001-01-01T00:30' is too far from now", as `failures list` finds what
    # it names
    client = await make_client()
    response = await client.get("/groups?until=0001-01-01T00:30")
    assert response.status == 200
    assert "0001-01-01 00:30:00 UTC" in await response.text()


_PART = b'--x\r\nContent-Disposition: form-data; name="reason"\r\n%s\r\nv\r\n--x--\r\n'
_URLENCODED = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "headers", "why"),
    [
        (b"\xff\xfe", {"Content-Type": _URLENCODED}, "its bytes are not UTF-8"),
        (b"reason=\xff", {"Content-Type": _URLENCODED}, "its bytes are not UTF-8"),
        (b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, "its multipart body"),
        # before: 500 (LookupError, RuntimeError, RequestPayloadError)
        (b"a=b", {"Content-Type": f"{_URLENCODED}; charset=bogus"}, "its charset is unknown"),
        (
            _PART % b"Content-Type: text/plain; charset=bogus\r\n",
            {"Content-Type": "multipart/form-data; boundary=x"},
            "its charset is unknown",
        ),
        (
            _PART % b"Content-Transfer-Encoding: bogus\r\n",
            {"Content-Type": "multipart/form-data; boundary=x"},
            "a part's Content-Transfer-Encoding is unknown",
        ),
        (
            b"a=b",
            {"Content-Type": _URLENCODED, "Content-Encoding": "gzip"},
            "its Content-Encoding does not decode",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/failures/nothing/ignore", "/login"])
async def test_a_body_that_is_no_form_is_one_line_400(
    make_client, body: bytes, headers: dict[str, str], why: str, path: str
) -> None:
    client = await make_client()
    await sign_in(client)
    response = await client.post(path, data=body, headers={**_origin(client), **headers})
    text = await response.text()
    assert response.status == 400
    assert text.startswith(f"the form cannot be read ({why}")
    assert text.endswith(
        ": send it as the console's pages do (application/x-www-form-urlencoded, UTF-8)\n"
    )
    assert "codec" not in text
    assert len(text.splitlines()) == 1


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("NaN", "NaN is not a JSON value"),
        ('{"total": Infinity}', "Infinity is not a JSON value"),
        ("-Infinity", "-Infinity is not a JSON value"),
        ("1e999", "1e999 is too large"),
        ('"\\ud800"', "it holds a lone surrogate"),
        ("[" * 5000 + "]" * 5000, "it is nested too deeply"),
        ('{"id": ' + "1" * 5000 + "}", "1111111111" * 4 + "… (5,000 digits) is too large"),
    ],
)
async def test_an_edited_payload_python_alone_reads_is_refused_and_nothing_invoked(
    make_client, settings_for: Callable[..., Settings], payload: str, problem: str
) -> None:
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)

    response = await client.post(
        f"/failures/{row.key}/edit",
        data={"csrf": csrf, "payload": payload},
        headers=_origin(client),
    )

    page = html.unescape(await response.text())
    assert response.status == 400
    assert f"The payload is not valid JSON: {problem}" in page
    async with Store.from_url(settings.store) as store:
        assert await store.replays(row.key) == []
        assert await store.actions(row.key) == []


def _summaries(page: str) -> list[str]:
    """The text of each ``<summary>`` on the page, as a screen reader names it (hidden parts
    too)."""
    found = re.findall(r"<summary>(.*?)</summary>", page, flags=re.DOTALL)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split()) for text in found]


async def test_each_rows_expander_is_named_for_its_row(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: two quarantined messages, two messages in a DLQ, a failure with two actions that
    # keep a detail, and a second failure for the bulk plan
    url, dlq_url = make_queue("summaries")
    settings = settings_for(url)
    sent = [sqs.send_message(QueueUrl=dlq_url, MessageBody=failure_body(n)[0]) for n in (1, 2)]
    first = await stored_failure(settings)
    record = failure_record(random.Random(4), function="orders-api")
    second = await stored_failure(settings, record=record)
    async with Store.from_url(settings.store) as store:
        for message_id in ("m-1", "m-2"):
            await store.save_quarantine(QuarantineRow(url, message_id, "{}", {}, "decode", 1))
        for action in ("ignore", "reopen"):
            await store.add_action(OperatorAction("console dana", action, first.key, "x", {}))
        actions_kept = await store.actions(first.key)
    client = await make_client(settings)
    dlq_name = dlq_url.rsplit("/", 1)[1]

    # when
    quarantine = await (await client.get("/quarantine")).text()
    peek = await (await client.get(f"/dlqs/{dlq_name}?peek=10")).text()
    failure = await (await client.get(f"/failures/{quote(first.key, safe='')}")).text()
    plan = await (await client.get("/bulk?action=replay")).text()

    # then: each row's expander says which row it opens (before: "body", "body", ...), the
    # row's part hidden from sight
    assert _summaries(quarantine) == [
        "body and attributes of message m-2",
        "body and attributes of message m-1",
    ]
    assert sorted(_summaries(peek)) == sorted(f"body of message {m['MessageId']}" for m in sent)
    assert _summaries(failure)[-2:] == [
        f"detail of {a.action} by console dana, {times.utc_text(a.at)} UTC" for a in actions_kept
    ]
    assert sorted(_summaries(plan)) == sorted(f"payload of {r.request_id}" for r in (first, second))
    assert '<summary>body and attributes <span class="vh">of message m-1</span></summary>' in (
        quarantine
    )


async def test_a_peek_count_that_is_no_number_is_one_line_400(
    make_client, settings_for: Callable[..., Settings], make_queue
) -> None:
    url, dlq_url = make_queue("peek")
    client = await make_client(settings_for(url))
    dlq_name = dlq_url.rsplit("/", 1)[1]

    refused = await client.get(f"/dlqs/{dlq_name}?peek=%C2%B2")
    peeked = await client.get(f"/dlqs/{dlq_name}?peek=2")

    assert refused.status == 400
    assert await refused.text() == "peek: a number of messages from 1 to 50\n"
    assert peeked.status == 200


async def test_a_peek_from_another_site_is_refused_and_receives_nothing(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a message in a DLQ, and the console on loopback (reading needs no sign-in)
    url, dlq_url = make_queue("peek-site")
    sqs.send_message(QueueUrl=dlq_url, MessageBody=failure_body(1)[0])
    client = await make_client(settings_for(url))
    dlq_name = dlq_url.rsplit("/", 1)[1]

    # when: another site's page loads the peek's address (an image, a link), then the
    # console's own Peek link is followed
    foreign = await client.get(
        f"/dlqs/{dlq_name}?peek=10",
        headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"},
    )
    own = await client.get(f"/dlqs/{dlq_name}?peek=10", headers={"Sec-Fetch-Site": "same-origin"})

    # then: the foreign one is refused before any receive (before: 200, and each message's
    # receive count went up by one); the console's own peeks as before
    assert foreign.status == 403
    assert (await foreign.text()).startswith("refused: the peek's link comes from another site")
    message = sqs.receive_message(
        QueueUrl=dlq_url, AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=0
    )["Messages"][0]
    assert own.status == 200
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"  # the own peek, and this one


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
async def test_signing_in_comes_back_to_a_dlq_s_page_without_its_peek(make_client, host) -> None:
    # given: a peek's address, sent by another site as a sign-in link, or opened there on a
    # console where every page needs sign-in (sent on to /login with it as next=)
    client = await make_client(host=host)
    peek = "/dlqs/orders-dlq?peek=50&x=1"
    sent_on = await client.get(peek, allow_redirects=False)
    linked = f"/login?{urlencode({'next': peek})}"
    asked = sent_on.headers["Location"] if host == "0.0.0.0" else linked

    # when: the operator signs in from the console's own sign-in page (the browser then says
    # same-origin for the form and for where it is sent on to)
    page = await (await client.get(asked)).text()
    target = html.unescape(page.split('name="next" value="', 1)[1].split('"', 1)[0])
    signed = await client.post(
        "/login",
        data={"token": TOKEN, "user": "dana", "next": target},
        headers={**_origin(client), "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    # and a form posted with the peek still in its next= (a page made before this release)
    posted = await client.post(
        "/login",
        data={"token": TOKEN, "user": "dana", "next": peek},
        headers=_origin(client),
        allow_redirects=False,
    )

    # then: back on the DLQ's page, without the peek (before: /dlqs/orders-dlq?peek=50, which
    # received 50 messages as the console's own request, each receive count one higher)
    assert signed.status == posted.status == 303
    assert signed.headers["Location"] == posted.headers["Location"] == "/dlqs/orders-dlq?x=1"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/failures?function=%00", 400),
        ("/failures?error_type=a%00", 400),
        ("/failures/%00", 404),
        ("/failures/a%00b/edit", 404),
        ("/groups?function=%00", 400),
        ("/bulk?function=%00", 400),
    ],
)
async def test_what_no_record_can_hold_is_bad_input_on_every_store(
    make_client, settings_for: Callable[..., Settings], store_url: str, path: str, status: int
) -> None:
    # given: a failure, so that a search that reaches the store would have something to find
    settings = settings_for(store=store_url)
    await stored_failure(settings)
    client = await make_client(settings)

    response = await client.get(path)

    text = await response.text()
    assert response.status == status, text[-500:]
    assert "did not answer as expected" not in text
    if status != 200:
        assert len(text.splitlines()) == 1


async def test_the_json_api_answers_json_for_an_id_no_record_can_have(
    make_client, settings_for: Callable[..., Settings], store_url: str
) -> None:
    settings = settings_for(store=store_url)
    await stored_failure(settings)
    client = await make_client(settings)

    response = await client.get(
        "/api/invocations/%00", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert response.status == 404
    assert response.content_type == "application/json"
    assert "NUL" in (await response.json())["error"]


async def test_a_quarantine_id_past_64_bits_is_no_such_message(
    make_client, settings_for: Callable[..., Settings], store_url: str
) -> None:
    client = await make_client(settings_for(store=store_url))
    csrf = await sign_in(client)
    for ident in ("99999999999999999999999", "9" * 5000):
        response = await client.post(
            f"/quarantine/{ident}/resend",
            data={"csrf": csrf, "nonce": _once()},
            headers=_origin(client),
        )
        assert response.status == 404
        assert await response.text() == "no such quarantined message (resent already?)\n"


async def test_a_form_field_with_a_nul_character_is_one_line_400(make_client) -> None:
    client = await make_client()
    csrf = await sign_in(client)
    response = await client.post(
        "/bulk",
        data={"csrf": csrf, "function": "\x00", "until": "2026-01-01"},
        headers=_origin(client),
    )
    assert response.status == 400
    assert await response.text() == "a form field holds a NUL character: remove it\n"


async def test_an_id_pasted_whole_is_cut_in_the_404(make_client) -> None:
    client = await make_client()
    response = await client.get(f"/failures/{'x' * 5000}")
    text = await response.text()
    assert response.status == 404
    assert "… (5,000 characters)" in text
    assert len(text) < 400


async def test_a_bulk_jobs_title_shows_its_filter_as_typed(make_client) -> None:
    client = await make_client()
    csrf = await sign_in(client)
    response = await client.post(
        "/bulk",
        data={
            "csrf": csrf,
            "action": "ignore",
            "reason": "noise",
            "function": "orders-*",
            "until": "2026-12-01T17:26:33",
            "nonce": "n-1",
        },
        headers=_origin(client),
        allow_redirects=False,
    )
    assert response.status == 303
    job = await client.get(
        "/api" + response.headers["Location"], headers={"Authorization": f"Bearer {TOKEN}"}
    )
    title = (await job.json())["title"]
    assert title == "ignore 0 failures (function=orders-* until=2026-12-01T17:26:33)"


def _form_fields(page: str, action: str) -> dict[str, str]:
    """The named fields of the page's form posting to ``action``, as a browser would send them."""
    form = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    fields = {}
    for tag in form.split("<")[1:]:
        if not tag.startswith(("input", "textarea")) or 'name="' not in tag:
            continue
        name = tag.split('name="', 1)[1].split('"', 1)[0]
        if tag.startswith("textarea"):
            fields[name] = html.unescape(tag.split(">", 1)[1])
        elif 'value="' in tag:
            fields[name] = html.unescape(tag.split('value="', 1)[1].split('"', 1)[0])
    return fields


async def test_an_edit_posted_again_after_it_ran_invokes_once(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: the edit form of a failure, filled in
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    await sign_in(client)
    path = f"/failures/{quote(row.key, safe='')}/edit"
    form = _form_fields(await (await client.get(path)).text(), path)
    form["payload"] = '{"orderId": "fixed"}'

    # when: it is submitted, then again (Back, then submit), then again at once twice
    posted = [
        await client.post(path, data=form, headers=_origin(client), allow_redirects=False)
        for _ in range(2)
    ]
    posted += await asyncio.gather(
        *(
            client.post(path, data=form, headers=_origin(client), allow_redirects=False)
            for _ in "ab"
        )
    )

    # then: one attempt and one edit in the ledgers; every post goes to the failure's page
    # saying what became of it, as Replay does (before: each later one to its replays)
    assert [r.status for r in posted] == [303] * 4
    async with Store.from_url(settings.store) as store:
        assert len(await store.replays(row.key)) == 1
        (edit,) = await store.actions(row.key)
    assert edit.action == "edit-replay"
    assert posted[0].headers["Location"].endswith(f"?replayed={edit.id}#outcome")
    assert {r.headers["Location"] for r in posted[1:]} == {posted[0].headers["Location"]}
    told = await (await client.get(posted[0].headers["Location"])).text()
    assert 'id="outcome"' in told
    assert edit.detail["payload"] == {"orderId": "fixed"}
    # a new form (the edit page opened again) replays again, deliberately
    again = _form_fields(await (await client.get(path)).text(), path)
    assert again["nonce"] != form["nonce"]
    await client.post(path, data=again, headers=_origin(client), allow_redirects=False)
    async with Store.from_url(settings.store) as store:
        assert len(await store.replays(row.key)) == 2


async def test_one_edit_form_posted_to_two_console_processes_at_once_invokes_once(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: two consoles on one store (two processes behind a load balancer, say), and the
    # edit form one of them made
    settings = settings_for()
    row = await stored_failure(settings)
    consoles = [await make_client(settings), await make_client(settings)]
    await sign_in(consoles[0])
    path = f"/failures/{quote(row.key, safe='')}/edit"
    form = _form_fields(await (await consoles[0].get(path)).text(), path)
    form["payload"] = '{"orderId": "fixed"}'

    # when: a script posts it to both at the same moment, with the console's token
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    posted = await asyncio.gather(
        *(
            console.post(path, data=form, headers=bearer, allow_redirects=False)
            for console in consoles
            for _ in "ab"
        )
    )

    # then: one of the four invoked, and the ledger keeps that edit once, with its outcome;
    # every answer names that entry
    assert [r.status for r in posted] == [303] * 4
    async with Store.from_url(settings.store) as store:
        assert len(await store.replays(row.key)) == 1
        (edit,) = await store.actions(row.key)
    assert {r.headers["Location"].split("?")[1] for r in posted} == {f"replayed={edit.id}#outcome"}
    assert edit.nonce == form["nonce"]
    assert edit.detail["result"] != "interrupted"


async def _post_twice(client: TestClient, path: str, form: dict[str, str]) -> list[Any]:  # type: ignore[type-arg]
    """The same form posted twice at once, as a double click without the pages' script sends
    it (the browser shows the second answer only)."""
    return list(
        await asyncio.gather(
            *(
                client.post(path, data=form, headers=_origin(client), allow_redirects=False)
                for _ in "ab"
            )
        )
    )


async def test_a_replay_form_posted_twice_invokes_once_and_each_answer_says_what_it_did(
    make_client, settings_for: Callable[..., Settings], lambda_endpoint: Any
) -> None:
    # given: the Replay form of a failure of a function Lambda has
    arn = lambda_endpoint.create_function(f"orders-{random.randrange(10**6)}")
    on = await _signed_in_on_a_failure(
        make_client, settings_for, arn, endpoint_url=lambda_endpoint.url
    )
    client, row, _ = on
    settings = client.server.app[CONSOLE].settings
    page = f"/failures/{quote(row.key, safe='')}"
    form = _form_fields(await (await client.get(page)).text(), f"{page}/replay")

    # when: a double click without the script, then the form again (Back, then submit)
    posted = await _post_twice(client, f"{page}/replay", form)
    posted.append(
        await client.post(
            f"{page}/replay", data=form, headers=_origin(client), allow_redirects=False
        )
    )

    # then: one attempt, one ledger entry; every answer is the first's outcome (before: the
    # second said "Not replayed: ... has no outcome yet ... run it again" though it ran)
    async with Store.from_url(settings.store) as store:
        (attempt,) = await store.replays(row.key)
        (replay,) = await store.actions(row.key)
    assert {(r.status, r.headers["Location"]) for r in posted} == {
        (303, f"/failures/{row.key}?replayed={replay.id}#outcome")
    }
    told = _outcome(await (await client.get(posted[1].headers["Location"])).text())
    assert told.startswith(f"Replayed: attempt 1 invoked {arn}")
    assert attempt.new_request_id in told
    assert replay.nonce == form["nonce"]


async def test_an_ignore_form_posted_twice_ignores_once_with_one_ledger_entry(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: the Ignore form of a failure, with a reason
    client, row, _ = await _signed_in_on_a_failure(make_client, settings_for)
    page = f"/failures/{quote(row.key, safe='')}"
    form = _form_fields(await (await client.get(page)).text(), f"{page}/ignore")
    form["reason"] = "known issue"

    # when: a double click without the script
    posted = await _post_twice(client, f"{page}/ignore", form)

    # then: both go to the status, and the ledger has one ignore (before: two)
    assert {(r.status, r.headers["Location"]) for r in posted} == {
        (303, f"/failures/{row.key}#status-line")
    }
    async with Store.from_url(client.server.app[CONSOLE].settings.store) as store:
        assert [a.action for a in await store.actions(row.key)] == ["ignore"]
        ignored = await store.get_invocation(row.key)
    assert ignored is not None
    assert ignored.status is FailureStatus.IGNORED


async def test_a_resend_form_posted_twice_sends_once_and_both_answers_go_back_to_its_page(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: the Resend form of a message only the store holds
    url, _ = make_queue("console-resend-twice", dlq=False)
    settings = settings_for(queues=[url])
    row = await _quarantined(settings, url, "m-1")
    client = await make_client(settings)
    await sign_in(client)
    path = f"/quarantine/{row.id}/resend"
    form = _form_fields(await (await client.get("/quarantine")).text(), path)

    # when: a double click without the script, then the form again (Back, then submit)
    posted = await _post_twice(client, path, form)
    posted.append(
        await client.post(path, data=form, headers=_origin(client), allow_redirects=False)
    )

    # then: sent once, one ledger entry; each answer is the first's (before: 409 "being resent
    # by another caller", then 404, though the first resent it)
    assert {(r.status, r.headers.get("Location")) for r in posted} == {(303, "/quarantine")}
    assert count_messages(sqs, url) == 1
    async with Store.from_url(settings.store) as store:
        (resent,) = await store.actions(url)
        assert await store.list_quarantine() == []
    assert resent.detail["message_id"] == "m-1"
    assert resent.detail["new_message_id"]


async def test_a_script_with_the_bearer_token_acts_without_a_one_time_token_or_once_with_one(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure, and a script holding the console's token
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    path = f"/failures/{quote(row.key, safe='')}"
    bearer = {"Authorization": f"Bearer {TOKEN}"}

    async def post(action: str, **form: str) -> Any:
        return await client.post(
            f"{path}/{action}", data=form, headers=bearer, allow_redirects=False
        )

    # when: an edit's replay without a one-time token (before: 400), then ignore twice with one
    # of its own, then reopen with that same token
    edited = await post("edit", payload='{"orderId": "fixed"}')
    ignored = [await post("ignore", reason="known", nonce="script-1") for _ in "ab"]
    reused = await post("reopen", reason="back", nonce="script-1")

    # then: the edit acted; the ignore once; the reused token is refused, and nothing reopened
    assert edited.status == 303
    assert [(r.status, r.headers["Location"]) for r in ignored] == [
        (303, f"/failures/{row.key}#status-line")
    ] * 2
    assert reused.status == 409
    assert await reused.text() == (
        "the form's one-time token was used for another action: send a new one\n"
    )
    async with Store.from_url(settings.store) as store:
        actions = await store.actions(row.key)
        kept = await store.get_invocation(row.key)
    assert sorted(a.action for a in actions) == ["edit-replay", "ignore"]
    assert kept is not None
    assert kept.status is FailureStatus.IGNORED


async def test_a_bulk_plan_posted_twice_starts_one_job(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: the plan of a bulk replay of one failure
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    await sign_in(client)
    form = _form_fields(await (await client.get("/bulk?action=replay")).text(), "/bulk")

    # when: it runs, then the same form is posted again
    first = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)
    await _wait_for_jobs(client)
    second = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)

    # then: one job, one attempt; the second post goes to the jobs
    (job,) = await _wait_for_jobs(client)
    assert first.headers["Location"] == f"/jobs/{job.id}"
    assert (second.status, second.headers["Location"]) == (303, "/jobs")
    async with Store.from_url(settings.store) as store:
        assert len(await store.replays(row.key)) == 1


async def test_a_bulk_plan_since_a_while_ago_runs_on_the_failures_it_counted(
    make_client, settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a failure 3,800 s old, and the plan of the failures since 3,803 s ago (it is one)
    settings = settings_for()
    record = failure_record(random.Random(5), function="orders-api", condition="RetriesExhausted")
    record["timestamp"] = at(3800 / 60)
    row = await stored_failure(settings, record=record)
    client = await make_client(settings)
    await sign_in(client)
    page = await (await client.get("/bulk?action=replay&since=3803s")).text()
    assert '<p id="bulk-count"><strong>1</strong>' in page
    form = _form_fields(page, "/bulk")
    since = dt.datetime.fromisoformat(form["since"])  # a time, not "3803s"
    assert abs((dt.datetime.now(dt.UTC) - since).total_seconds() - 3803) < 60

    # when: the plan runs an hour later (by the clock that reads "3803s")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    monkeypatch.setattr(times, "utcnow", lambda: later)
    response = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)

    # then: it replays the failure the page counted
    assert response.status == 303
    (job,) = await _wait_for_jobs(client)
    assert (job.total, job.done) == (1, 1)
    async with Store.from_url(settings.store) as store:
        assert len(await store.replays(row.key)) == 1


# A bulk replay job's reasons, as its page words them.
IN_DOUBT_SKIP = (
    "in doubt: an earlier attempt was interrupted and may have reached Lambda, or has no "
    "outcome yet because another run may be invoking it now (each failure's page names it and "
    "says which)"
)
REFUSED = "Lambda refused the Invoke call: nothing ran, and the failure stays open for another run"
IN_DOUBT_ERROR = (
    "in doubt, may have reached Lambda: the Invoke call's answer was lost, so it may have run; "
    "a later run skips it (Edit the payload, then replay, on the failure's page, runs it again "
    "once you know it did not run)"
)


def _job_page_lines(page: str) -> list[str]:
    """The job page's tally and outcome lines, as text: one line a paragraph or list item."""
    start = page.index('<p id="job-tally">')
    end = page.index("</ul>", page.index('<ul id="job-counts">'))
    while page.startswith("</ul></li>", end):  # a list of reasons, inside the outcomes' list
        end = page.index("</ul>", end + 1)
    text = re.sub(r"<[^>]+>", "\n", page[start:end])
    return [html.unescape(line).strip() for line in text.splitlines() if line.strip()]


async def test_a_bulk_replay_jobs_page_says_what_became_of_every_failure_it_selected(
    make_client, settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given, oldest first (the job's order): a failure of a function Lambda (moto) does not
    # know; one someone ignores once the job has read it; one replayed already; one whose
    # replay has no outcome yet (in doubt: interrupted, or another run invokes it now); a
    # stream batch (no payload); and one someone ignores before the job reads it. The job
    # reads two a time.
    settings = settings_for()
    rows = []
    for n, minutes_ago in enumerate((6, 5, 4, 3, 1)):
        record = failure_record(random.Random(40 + n), function="orders-gone")
        record["timestamp"] = at(minutes_ago)
        rows.append(await stored_failure(settings, record=record))
    stream = kinesis_failure(random.Random(50))
    stream["timestamp"] = at(2)
    rows.insert(4, await stored_failure(settings, record=stream))
    unknown, listed, replayed, interrupted, batch, unlisted = rows
    async with Store.from_url(settings.store) as store:
        await replayed_once(store, replayed, ReplayOutcome.INVOKED)
        await replayed_once(store, interrupted, ReplayOutcome.PENDING)
    monkeypatch.setattr(actions, "_PAGE", 2)
    replay = actions._replay

    async def others_act_meanwhile(console: Any, row: InvocationRow, *a: Any, **kw: Any) -> Any:
        # Another operator (here: the test, through the same store) ignores two failures
        # while the job replays the first: the only stand-in, for a moment no server offers.
        if row.key == unknown.key:
            await console.store.set_status([listed.key, unlisted.key], FailureStatus.IGNORED)
        return await replay(console, row, *a, **kw)

    monkeypatch.setattr(actions, "_replay", others_act_meanwhile)
    client = await make_client(settings)
    await sign_in(client)
    form = _form_fields(await (await client.get("/bulk?action=replay")).text(), "/bulk")
    assert form["selected"] == "6"

    # when: the plan runs to its end
    response = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)
    (job,) = await _wait_for_jobs(client)
    page = await (await client.get(response.headers["Location"])).text()

    # then: the page accounts for all six, as `replay` tallies them (before: "done: 5 of
    # about 6", then "error: 1" and "skipped: 4", with no reason)
    assert (job.state, job.total, job.done) == ("done", 6, 5)
    assert '<span id="job-done">5</span> of 6</span></p>' in page
    assert _job_page_lines(page) == [
        "skipped 4 · errors 1 · not reached 1",
        "skipped: 4",
        "1: ignored, or recovered by a replay, by someone else while the job ran",
        "1: replayed already, by another run or someone else (Edit the payload, then replay, "
        "on the failure's page, runs it again)",
        f"1: {IN_DOUBT_SKIP}",
        "1: cannot be replayed: a stream batch, a legacy DLQ record naming no "
        "function, or a replay's own record",
        "errors: 1",
        f"1: {REFUSED}",
        "the first: ResourceNotFoundException: An error occurred (ResourceNotFoundException) "
        "when calling the Invoke operation: Function not found: "
        f"{ARN}:function:orders-gone: check the function's name (a version or alias too) and "
        "the region",
        "not reached: 1",
        "1: left the selection before the job came to them: ignored, or recovered by a "
        "replay, by someone else meanwhile, or pruned",
    ]
    async with Store.from_url(settings.store) as store:
        (refused,) = await store.replays(unknown.key)
        assert await store.replays(batch.key) == await store.replays(unlisted.key) == []
    assert refused.outcome is ReplayOutcome.ERROR
    assert "ResourceNotFoundException" in (refused.detail or "")


class LambdaStandIn:
    """Lambda's Invoke API as a real HTTP server, for answers moto does not give: a function
    named ``*-gone`` is refused (404 ``ResourceNotFoundException``, as for a deleted function),
    one named ``*-denied`` too (403 ``AccessDeniedException``: keys not allowed to invoke it);
    any other is answered by a proxy's page (200, not Lambda's 202: whether Lambda got the call
    cannot be known). Keeps the function of every call received."""

    def __init__(self) -> None:
        self.received: list[str] = []
        app = web.Application()
        app.router.add_post("/2015-03-31/functions/{function}/invocations", self._invoke)
        self.server = TestServer(app)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _invoke(self, request: web.Request) -> web.Response:
        await request.read()
        name = request.match_info["function"].split(":")[6]  # arn:aws:lambda:...:function:NAME
        self.received.append(name)
        if name.endswith("-gone"):
            message = f"Function not found: {request.match_info['function']}"
            return web.json_response(
                {"Type": "User", "message": message},
                status=404,
                headers={"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        if name.endswith("-denied"):
            return web.json_response(
                {"Type": "User", "message": DENIED_INVOKE},
                status=403,
                headers={"x-amzn-ErrorType": "AccessDeniedException"},
            )
        return web.Response(text="<html>gateway</html>", content_type="text/html")


DENIED_INVOKE = (
    "User: arn:aws:iam::123456789012:user/console is not authorized to perform: "
    "lambda:InvokeFunction"
)


@pytest.fixture
async def lambda_stand_in() -> AsyncIterator[LambdaStandIn]:
    stand_in = LambdaStandIn()
    await stand_in.server.start_server()
    try:
        yield stand_in
    finally:
        await stand_in.server.close()


async def test_a_bulk_replay_jobs_page_tells_invokes_refused_from_those_in_doubt(
    make_client, settings_for: Callable[..., Settings], lambda_stand_in: LambdaStandIn
) -> None:
    # given, oldest first: two failures of a function Lambda refuses to invoke; one whose
    # Invoke a proxy answers (in doubt); and one whose replay another run is making now (its
    # attempt recorded, no outcome yet)
    settings = settings_for(endpoint_url=lambda_stand_in.url)
    rows = []
    functions = ("orders-gone", "orders-gone", "orders-proxied", "orders-busy")
    for n, function in enumerate(functions):
        record = failure_record(random.Random(60 + n), function=function)
        record["requestContext"]["functionArn"] = f"{ARN}:function:{function}"
        record["timestamp"] = at(len(functions) - n)
        rows.append(await stored_failure(settings, record=record))
    gone, gone_too, proxied, busy = rows
    async with Store.from_url(settings.store) as store:
        in_flight = ReplayAttempt(
            original_key=busy.key,
            original_request_id=busy.request_id,
            function_arn=busy.function_arn or "",
            attempt=1,
            trigger="manual",
            requested_by="cli ops@host",
        )
        await store.add_replay(in_flight)  # its run now invokes Lambda
    client = await make_client(settings)
    await sign_in(client)
    form = _form_fields(await (await client.get("/bulk?action=replay")).text(), "/bulk")

    # when: the plan runs to its end
    response = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)
    (job,) = await _wait_for_jobs(client)
    page = await (await client.get(response.headers["Location"])).text()

    # then: the errors by kind, each with its first one's text (before: one sentence for both,
    # "... or its answer was lost and it may have run (in doubt); each failure's page says
    # which"), and the skip in doubt worded for a run still invoking it too (before:
    # "an earlier attempt was interrupted and may have reached Lambda")
    assert (job.state, job.done) == ("done", 4)
    refused = (
        "ResourceNotFoundException: An error occurred (ResourceNotFoundException) when calling "
        f"the Invoke operation: Function not found: {ARN}:function:"
        "orders-gone: check the function's name (a version or alias too) and the region"
    )
    in_doubt = (
        "in doubt, may have reached Lambda: LambdaDestinationsError: Lambda answered an "
        f"asynchronous Invoke of {ARN}:function:orders-proxied with status 200, not 202"
    )
    assert _job_page_lines(page) == [
        "skipped 1 · errors 3",
        "skipped: 1",
        f"1: {IN_DOUBT_SKIP}",
        "errors: 3",
        f"2: {REFUSED}",
        f"the first: {refused}",
        f"1: {IN_DOUBT_ERROR}",
        f"the first: {in_doubt}",
    ]
    # each was sent once, the one in flight elsewhere not at all; the refused may be replayed
    # again, the one in doubt stays pending
    assert sorted(lambda_stand_in.received) == ["orders-gone", "orders-gone", "orders-proxied"]
    async with Store.from_url(settings.store) as store:
        ledger = {row.key: await store.replays(row.key) for row in rows}
    assert [a.outcome for a in ledger[gone.key] + ledger[gone_too.key]] == [ReplayOutcome.ERROR] * 2
    ((pending, detail),) = [(a.outcome, a.detail) for a in ledger[proxied.key]]
    assert (pending, detail) == (ReplayOutcome.PENDING, in_doubt)
    assert [(a.outcome, a.detail) for a in ledger[busy.key]] == [(ReplayOutcome.PENDING, None)]
    # and the JSON API counts them the same way, with the same first texts
    api = await client.get(f"/api/jobs/{job.id}", headers={"Authorization": f"Bearer {TOKEN}"})
    shown = await api.json()
    assert shown["reasons"] == {"skipped": {"in-doubt": 1}, "error": {"refused": 2, "in-doubt": 1}}
    assert shown["first_detail"] == {"error": {"refused": refused, "in-doubt": in_doubt}}


async def test_a_bulk_replay_invokes_its_failures_oldest_first_as_replay_does(
    make_client,
    settings_for: Callable[..., Settings],
    lambda_endpoint: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: five failures of a function Lambda (moto) has, stored in no order of their
    # times, each with its own payload; the job reads two at a time (three pages)
    arn = lambda_endpoint.create_function(f"orders-{random.randrange(10**6)}")
    settings = settings_for(endpoint_url=lambda_endpoint.url)
    stored: dict[int, InvocationRow] = {}
    for minutes_ago in (3, 9, 1, 7, 5):
        record = failure_record(random.Random(70 + minutes_ago), function="orders-api")
        record["requestContext"]["functionArn"] = arn
        record["timestamp"] = at(minutes_ago)
        record["requestPayload"] = {"failedMinutesAgo": minutes_ago}
        stored[minutes_ago] = await stored_failure(settings, record=record)
    monkeypatch.setattr(actions, "_PAGE", 2)
    client = await make_client(settings)
    await sign_in(client)
    plan = await (await client.get("/bulk?action=replay")).text()
    form = _form_fields(plan, "/bulk")
    lambda_endpoint.start_recording()

    # when: the plan runs to its end
    await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)
    (job,) = await _wait_for_jobs(client)

    # then: Lambda was asked oldest first, the order the invocations failed in, as `replay`
    # asks it (before: newest first, 1, 3, 5, 7, 9), and the plan lists them in that order
    assert (job.state, job.done) == ("done", 5)
    invoked = [payload for _, payload in lambda_endpoint.invocations()]
    assert invoked == [{"failedMinutesAgo": n} for n in (9, 7, 5, 3, 1)]
    listed = [plan.index(f">{stored[n].request_id}<") for n in (9, 7, 5, 3, 1)]
    assert listed == sorted(listed)
    assert "The selected failures, oldest first (the order the job takes them)" in plan


async def test_a_bulk_job_that_stopped_at_an_error_says_what_it_did_not_reach(
    make_client,
) -> None:
    # given: a bulk replay of four whose Invoke failed once, then stopped at an error
    client = await make_client()

    async def work(job: Job) -> None:
        job.step("invoked")
        job.step("error", reason="refused")
        raise ConnectionError("cannot reach the Lambda endpoint")

    board = client.server.app[CONSOLE].jobs
    job = board.start("bulk-replay", "replay 4 failures (all)", "console erin", 4, work)
    await _wait_for_jobs(client)

    # when
    page = await (await client.get(f"/jobs/{job.id}")).text()

    # then: each of the four is accounted for, with the error that stopped it
    assert _job_page_lines(page) == [
        "invoked 1 · errors 1 · not reached 2",
        "invoked: 1",
        "errors: 1",
        f"1: {REFUSED}",
        "not reached: 2",
        "2: the job stopped at the error below",
    ]
    assert "ConnectionError: cannot reach the Lambda endpoint" in page


async def test_a_bulk_plan_that_selects_another_count_now_is_refused(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: the plan of a bulk replay of one failure, and the failure ignored meanwhile
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    await sign_in(client)
    form = _form_fields(await (await client.get("/bulk?action=replay")).text(), "/bulk")
    async with Store.from_url(settings.store) as store:
        await store.set_status([row.key], FailureStatus.IGNORED, by="erin")

    # when
    response = await client.post("/bulk", data=form, headers=_origin(client))

    # then: refused in one line, nothing started
    assert response.status == 409
    assert await response.text() == (
        "the plan counted 1 failures; its filter selects 0 now (others acted on them "
        "meanwhile): open the plan again\n"
    )
    assert client.server.app[CONSOLE].jobs.recent() == []


async def test_a_form_without_its_one_time_token_is_one_line_400(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)
    failure = f"/failures/{quote(row.key, safe='')}"
    # every form that acts: a signed-in browser's post of one without it is no form of a page
    actions = ("edit", "replay", "ignore", "reopen")
    paths = [*(f"{failure}/{action}" for action in actions), "/bulk", "/quarantine/1/resend"]
    for path in paths:
        response = await client.post(
            path,
            data={
                "csrf": csrf,
                "payload": "{}",
                "until": "2099-01-01T00:00:00",
                "reason": "x",
                "message_id": "m-1",
            },
            headers=_origin(client),
        )
        assert response.status == 400, path
        assert await response.text() == "the form has no one-time token: reload the page\n"
    async with Store.from_url(settings.store) as store:
        assert await store.replays(row.key) == []
        assert await store.actions(row.key) == []


@pytest.mark.parametrize("rate", ["-5", "0", "nan", "inf", "1000", "fast"])
async def test_a_bulk_rate_outside_what_the_form_offers_is_one_line_400(
    make_client, settings_for: Callable[..., Settings], rate: str
) -> None:
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)

    response = await client.post(
        "/bulk",
        data={"csrf": csrf, "action": "replay", "until": "2099-01-01T00:00:00", "rate": rate},
        headers=_origin(client),
    )

    assert response.status == 400
    assert await response.text() == "rate: 0.1 to 100 invocations a second\n"
    # and nothing was replayed
    async with Store.from_url(settings.store) as store:
        assert await store.replays(row.key) == []


async def test_a_stream_failures_page_shows_the_batch_its_s3_record_carries_and_no_replay(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a Kinesis batch's record as an S3 destination writes it: the whole event in
    # "payload" as an escaped JSON string; and one through SQS, which carries no batch
    settings = settings_for()
    event = {"Records": [{"kinesis": {"sequenceNumber": "4951", "data": "e30="}}]}
    from_s3 = kinesis_failure(random.Random(51))
    from_s3["payload"] = json.dumps(event)
    with_batch = await stored_failure(settings, record=from_s3)
    without = await stored_failure(settings, record=kinesis_failure(random.Random(52)))
    client = await make_client(settings)
    await sign_in(client)

    # when
    page = await (await client.get(f"/failures/{quote(with_batch.key, safe='')}")).text()
    bare = await (await client.get(f"/failures/{quote(without.key, safe='')}")).text()

    # then: the batch as the event it is (not one escaped string), and no Replay to refuse
    assert "The batch's records, as the function received them" in page
    shown = re.search(r'id="request-payload">(.*?)</pre>', page, re.S)
    assert shown is not None
    assert "&#34;sequenceNumber&#34;: &#34;4951&#34;" in shown[1]  # as the page escapes quotes
    assert "\\&#34;" not in shown[1]  # not inside one escaped string
    assert 'id="replay"' not in page
    assert 'id="edit"' not in page
    assert 'id="no-replay"' in page
    assert 'id="no-replay"' in bare
    assert "Request payload" in bare
    # and where the record carries no batch, the command that reads it from the stream
    command = re.search(r'id="stream-read-command">(.*?)</pre>', bare, re.S)
    assert command is not None
    assert command[1].startswith("aws kinesis get-records --region ")
    assert 'id="stream-read"' not in page


async def test_a_replays_own_failure_page_links_to_the_failure_it_replays_and_back(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure, replayed once, and the replay's own invocation failed too
    settings = settings_for()
    original = await stored_failure(settings)
    record = failure_record(random.Random(4), function="orders-api", condition="RetriesExhausted")
    new_request_id = record["requestContext"]["requestId"]
    replay = invocation_row(decode(json.dumps(record)), "https://sqs/q")
    async with Store.from_url(settings.store) as store:
        await replayed_once(
            store, original, ReplayOutcome.FAILED, by="cli me", new_request_id=new_request_id
        )
        await store.save_invocation(replay, DeliveryRow(replay.key, "m-2", "https://sqs/q", 1))
        # and another record of the original's request id (another condition)
        other = dataclasses.replace(original, key=f"{original.request_id}:other")
        await store.save_invocation(other, DeliveryRow(other.key, "m-3", "https://sqs/q", 1))
        saved = await store.get_invocation(replay.key)
        assert saved is not None
        assert saved.status is FailureStatus.REPLAY
    client = await make_client(settings)
    await sign_in(client)

    # when: the replay's own record's page, and the original's
    own = await (await client.get(f"/failures/{new_request_id}")).text()
    first = await (await client.get(f"/failures/{quote(original.key, safe='')}")).text()

    # then: each links to the other, as `failures show` names them
    href = f"/failures/{quote(original.key, safe='')}"
    link = f'<a class="mono" href="{href}">{original.request_id}</a>'
    assert "<dt>Replay of</dt>" in own
    assert f"{link} (attempt 1, failed)" in own
    assert "Replay of" not in first
    # and the replay's own page offers no replay of itself (the store refuses one), but the
    # way to the original, whose page offers it
    assert 'id="replay"' not in own
    assert 'id="replay-own">' in own
    assert f'<a href="{href}">{original.request_id}</a>' in own
    assert 'id="replay"' in first
    assert f'<a href="/failures/{new_request_id}">{new_request_id}</a>' in first
    other_href = f"/failures/{quote(other.key, safe='')}"
    assert f'id="other-keys"><a href="{other_href}">{other.key}</a></dd>' in first


async def _a_replays_own_record(settings: Settings) -> tuple[InvocationRow, InvocationRow]:
    """A failure replayed once, and the replay's own record (a failure too): (original, own)."""
    original = await stored_failure(settings)
    record = failure_record(random.Random(4), function="orders-api", condition="RetriesExhausted")
    own = invocation_row(decode(json.dumps(record)), "https://sqs/q")
    async with Store.from_url(settings.store) as store:
        await replayed_once(
            store,
            original,
            ReplayOutcome.FAILED,
            by="cli me",
            new_request_id=record["requestContext"]["requestId"],
        )
        await store.save_invocation(own, DeliveryRow(own.key, "m-2", "https://sqs/q", 1))
    return original, own


@pytest.mark.parametrize("action", ["ignore", "reopen"])
async def test_a_replays_own_record_is_neither_ignored_nor_reopened_its_original_named(
    make_client, settings_for: Callable[..., Settings], action: str
) -> None:
    # given: a replay's own record (status replay), and a form posted to its action, as a
    # script with the form's fields can (its page shows none)
    settings = settings_for()
    original, own = await _a_replays_own_record(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when
    response = await client.post(
        f"/failures/{quote(own.key, safe='')}/{action}",
        data={"reason": "noise", "csrf": csrf, "nonce": _once()},
        headers=_origin(client),
        allow_redirects=False,
    )

    # then: refused, naming the original's page, and the record's status follows the
    # original's still (before: ignored, then reopened, it was an open failure of its own)
    text = await response.text()
    assert response.status == 409, text
    assert f"attempt 1 of {original.request_id}" in text
    assert f"/failures/{quote(original.key, safe='')}" in text
    async with Store.from_url(settings.store) as store:
        kept = await store.get_invocation(own.key)
        assert kept is not None
        assert kept.status is FailureStatus.REPLAY
        assert await store.actions(own.key) == []


async def test_a_bulk_ignore_of_status_replay_leaves_the_replays_own_records_saying_why(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a replay's own record, and a bulk ignore planned for the status replay
    settings = settings_for()
    _, own = await _a_replays_own_record(settings)
    client = await make_client(settings)
    await sign_in(client)
    plan = await (await client.get("/bulk?action=ignore&status=replay")).text()

    # when: the plan is run
    form = [*_form_pairs(plan, "/bulk"), ("reason", "noise")]
    response = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)
    await _wait_for_jobs(client)

    # then: the job skipped it with the reason (before: ignored, and a reopen made it open)
    assert response.status == 303, await response.text()
    job = await (await client.get(response.headers["Location"])).text()
    assert "its status follows the original failure" in html.unescape(job)
    async with Store.from_url(settings.store) as store:
        kept = await store.get_invocation(own.key)
    assert kept is not None
    assert kept.status is FailureStatus.REPLAY


async def test_the_quarantine_page_says_a_resend_holds_a_message(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: two quarantined messages, one held by a resend under way
    settings = settings_for()
    async with Store.from_url(settings.store) as store:
        await store.migrate()
        held = QuarantineRow("https://sqs/q", "m-1", "{}", {}, "decode error", 1)
        idle = QuarantineRow("https://sqs/q", "m-2", "{}", {}, "decode error", 1)
        await store.save_quarantine(held)
        await store.save_quarantine(idle)
        assert held.id is not None
        claimed = await store.claim_quarantine(held.id, 300)
        assert claimed is not None
        assert claimed.resend_claimed_until is not None
    client = await make_client(settings)

    # when
    page = await (await client.get("/quarantine")).text()

    # then: the held one says since when (the claim's start, UTC); the other is only quarantined
    since = claimed.resend_claimed_until - dt.timedelta(seconds=300)
    assert f'id="status-{held.id}">resending since {since:%H:%M:%S}</td>' in page
    assert f'id="status-{idle.id}">quarantined</td>' in page


async def _quarantine_storm(store_url: str, queue: str, groups: int) -> list[int]:
    """Groups of 7 messages quarantined at the same moment, saved out of time order; their
    ids as the page lists them (newest first, ties by id, highest first)."""
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    times = [at + dt.timedelta(seconds=n) for n in range(groups) for _ in range(7)]
    random.Random(5).shuffle(times)
    async with Store.from_url(store_url) as store:
        await store.migrate()
        rows = [
            QuarantineRow(queue, f"m-{n}", "{}", {}, "decode error", 1, quarantined_at=when)
            for n, when in enumerate(times)
        ]
        for row in rows:
            await store.save_quarantine(row)
    ordered = sorted(rows, key=lambda r: (r.quarantined_at, r.id), reverse=True)
    return [r.id for r in ordered if r.id is not None]


def _older_link(page: str) -> str | None:
    found = re.search(r'<a rel="next" href="([^"]+)">Older »</a>', page)
    return html.unescape(found.group(1)) if found else None


async def test_the_quarantine_page_pages_through_a_storm_each_message_once(
    make_client, settings_for: Callable[..., Settings], store_url: str
) -> None:
    # given: 126 quarantined messages, 7 to each moment, so a page ends inside a tie
    expected = await _quarantine_storm(store_url, "https://sqs/q", 18)
    client = await make_client(settings_for(store=store_url))

    # when: the newest page, then each Older » link as it is
    pages: list[list[int]] = []
    address: str | None = "/quarantine"
    while address is not None:
        response = await client.get(address)
        assert response.status == 200
        page = await response.text()
        pages.append([int(i) for i in re.findall(r'id="status-([0-9]+)"', page)])
        address = _older_link(page)

    # then: every message once, newest first, 100 a page (before: the 100 newest, no more)
    assert [len(p) for p in pages] == [100, 26]
    assert [i for p in pages for i in p] == expected
    assert "newest first, 100 a page" in page
    assert '<a href="/quarantine">« Newest</a>' in page


@pytest.mark.parametrize(
    "after",
    [
        "garbage",
        "2026-03-01T00:00:00+00:00|x",
        "2026-03-01T00:00:00|12",  # no zone
        "2026-03-01T00:00:00+00:00|" + "9" * 20,  # past 64 bits
        "0001-01-01T00:00:00+01:00|12",  # before year 1 in UTC
        "2026-03-01T00:00:00+00:00|²",
    ],
)
async def test_a_quarantine_page_cursor_that_is_not_one_is_400_in_one_line(
    make_client, after: str
) -> None:
    client = await make_client()

    response = await client.get("/quarantine", params={"after": after})

    assert response.status == 400
    (line,) = (await response.text()).strip().splitlines()
    assert line.startswith("after: ")
    assert "is not a place in this list: follow the Older » link as it is" in line


async def test_a_resend_from_an_older_quarantine_page_comes_back_to_that_page(
    make_client, settings_for: Callable[..., Settings], make_queue
) -> None:
    # given: 105 messages of a queue, the oldest on the second page
    url, _ = make_queue("console-resend-paged", dlq=False)
    settings = settings_for(queues=[url])
    ids = await _quarantine_storm(settings.store, url, 15)
    client = await make_client(settings)
    csrf = await sign_in(client)
    older = _older_link(await (await client.get("/quarantine")).text())
    assert older is not None
    page = await (await client.get(older)).text()
    after = older.split("after=", 1)[1]
    # the page's Resend forms carry it
    assert f'name="after" value="{html.escape(unquote(after))}"' in page

    async def resend(row_id: int, place: str) -> Any:
        async with Store.from_url(settings.store) as store:
            row = await store.get_quarantine(row_id)
        assert row is not None
        data = {"csrf": csrf, "message_id": row.message_id, "after": place, "nonce": _once()}
        path = f"/quarantine/{row_id}/resend"
        return await client.post(path, data=data, headers=_origin(client), allow_redirects=False)

    # when: Resend on the second page; then another with a cursor tampered with
    back = await resend(ids[-1], unquote(after))
    tampered = await resend(ids[-2], "garbage")

    # then: back to the second page (before: the newest); the tampered one to the newest
    assert back.status == 303
    assert unquote(back.headers["Location"]) == f"/quarantine?after={unquote(after)}"
    assert tampered.status == 303
    assert tampered.headers["Location"] == "/quarantine"


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (("function",), "function: 10,000 characters, too long for a filter: use at most 1,000"),
        (
            ("function", "error_type", "condition"),
            "filter: 2,749 characters in the address, more than a bulk action's ledger entry "
            "holds (2,000): shorten function, error_type or condition",
        ),
    ],
)
async def test_a_bulk_filter_too_long_for_the_ledger_is_refused_before_the_store_sees_it(
    make_client,
    settings_for: Callable[..., Settings],
    postgres_url: str,
    fields: tuple[str, ...],
    problem: str,
) -> None:
    # given: a console on PostgreSQL, and a bulk plan whose filter is longer than an index
    # entry of the action ledger can hold (random, so no compression makes it fit)
    settings = settings_for(store=postgres_url)
    await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)
    chosen = random.Random(1)
    size = 10_000 if len(fields) == 1 else 900
    filters = {
        name: "".join(chosen.choices(string.ascii_letters + string.digits, k=size))
        for name in fields
    }

    # when: the plan is run (before: PostgreSQL's "index row size 7072 exceeds btree version 4
    # maximum 2704", as "StoreDataError: ..." on a page to every client)
    response = await client.post(
        "/bulk",
        data={"csrf": csrf, "action": "replay", "until": "2030-01-01", "nonce": "n-1", **filters},
        headers={**_origin(client), "Accept": "*/*"},
        allow_redirects=False,
    )

    # then: 400, one line naming the limit, as plain text
    assert response.status == 400
    assert response.content_type == "text/plain"
    assert (await response.text()).strip() == problem


def _outcome(page: str) -> str:
    """The line a replay's page says what became of it in (``#outcome``)."""
    return html.unescape(page.split('id="outcome"', 1)[1].split(">", 1)[1].split("</p>", 1)[0])


async def test_a_replay_lambda_refuses_names_the_console_s_credentials_in_its_ledger_entry(
    make_client, settings_for: Callable[..., Settings], lambda_stand_in: LambdaStandIn
) -> None:
    # given: a failure of a function the console's keys may not invoke
    settings = settings_for(endpoint_url=lambda_stand_in.url)
    row = await stored_failure(settings, function_arn=f"{ARN}:function:orders-denied")
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when: Replay, from its page
    response = await client.post(
        f"/failures/{quote(row.key, safe='')}/replay",
        data={"csrf": csrf, "nonce": _once()},
        headers=_origin(client),
    )

    # then: the ledger entry (and the page's line, read from it) says whose keys to fix: the
    # console's, as its other lines do (before: "the AWS credentials", the CLI's words)
    fix = "check the console's AWS credentials and that they are allowed lambda:InvokeFunction"
    async with Store.from_url(settings.store) as store:
        (attempt,) = await store.replays(row.key)
    assert attempt.outcome is ReplayOutcome.ERROR
    assert attempt.detail is not None
    assert attempt.detail.endswith(f"{DENIED_INVOKE}: {fix}")
    assert lambda_stand_in.received == ["orders-denied"]
    assert _outcome(await response.text()).endswith(f": {fix}.")


async def test_a_replay_clicked_twice_says_the_second_was_skipped_and_what_to_do(
    make_client, settings_for: Callable[..., Settings], lambda_endpoint: Any
) -> None:
    # given: a failure of a function Lambda has
    arn = lambda_endpoint.create_function(f"orders-{random.randrange(10**6)}")
    settings = settings_for(endpoint_url=lambda_endpoint.url)
    row = await stored_failure(settings, function_arn=arn)
    client = await make_client(settings)
    csrf = await sign_in(client)
    page = f"/failures/{quote(row.key, safe='')}"

    # when: Replay with the original payload, twice, from the page opened again each time (the
    # redirects followed)
    first, second = [
        await client.post(
            f"{page}/replay", data={"csrf": csrf, "nonce": _once()}, headers=_origin(client)
        )
        for _ in "ab"
    ]

    # then: each page says what became of its click; the second one why, in the console's terms
    assert first.status == second.status == 200
    assert _outcome(await first.text()).startswith(f"Replayed: attempt 1 invoked {arn}")
    skipped = _outcome(await second.text())
    assert skipped.startswith("Not replayed: replayed already (attempt 1, invoked, ")
    assert skipped.endswith(
        ": use Edit the payload, then replay (on the failure's page) to run it again."
    )
    assert "--force" not in skipped
    # and the page opened without naming a replay says nothing of one
    assert 'id="outcome"' not in await (await client.get(page)).text()


async def test_a_legacy_record_naming_no_function_says_the_console_cannot_replay_it(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a legacy DLQ message (no function named) in the store
    settings = settings_for()
    message = decode(
        '{"order": 1}',
        {"RequestID": "legacy-req-1", "ErrorCode": "200", "ErrorMessage": "boom"},
    )
    row = invocation_row(message, "https://sqs/q")
    async with Store.from_url(settings.store) as store:
        await store.migrate()
        await store.save_invocation(row, DeliveryRow(row.key, "m-9", "https://sqs/q", 1))
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when: Replay with the original payload; and the bulk plan that selects it
    response = await client.post(
        f"/failures/{quote(row.key, safe='')}/replay",
        data={"csrf": csrf, "nonce": _once()},
        headers=_origin(client),
    )
    plan = html.unescape(await (await client.get("/bulk?action=replay")).text())

    # then: not replayed, and the way that can (the console cannot name a function)
    line = _outcome(await response.text())
    assert line == (
        "Not replayed: this legacy DLQ record names no function, and the console cannot choose "
        "one: replay it with `lambda-destinations replay legacy-req-1 --legacy-function NAME`."
    )
    assert "replay it with `lambda-destinations replay legacy-req-1 --legacy-function NAME`" in plan
    assert "pass --legacy-function" not in plan


@pytest.mark.parametrize("path", ["/", "/dlqs"])
async def test_no_aws_region_leaves_the_store_s_parts_and_says_so_where_sqs_is_asked(
    make_client,
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    # given: no region anywhere, a failure in the store
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_for(region=None)
    await stored_failure(settings)
    bare = await make_client(settings)
    queued = await make_client(settings_for("https://sqs.example/1/orders", region=None))

    # when: the page, without queues and with one
    without = await bare.get(path)
    with_queue = await queued.get(path)

    # then: both pages; SQS is asked only for a queue, and says the fix in one line
    for response in (without, with_queue):
        assert response.status == 200
    page = await without.text()
    assert "sqs-problem" not in page
    assert "No queues are configured" in page
    if path == "/":
        assert '<span class="n">1</span> open' in page
    problem = (await with_queue.text()).split('id="sqs-problem">', 1)[1].split("</p>", 1)[0]
    assert problem == "SQS: no AWS region: set AWS_REGION, LAMBDA_DESTINATIONS_REGION or --region"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/dlqs/orders-dlq"),
        ("GET", "/dlqs/orders-dlq?peek=5"),
        ("POST", "/dlqs/orders-dlq/redrive"),
        ("POST", "/dlqs/orders-dlq/purge"),
    ],
)
async def test_a_dlq_page_or_action_without_a_region_says_how_to_set_one(
    make_client,
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
) -> None:
    # given: a queue, no region anywhere, a signed-in browser
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    client = await make_client(settings_for("https://sqs.example/1/orders", region=None))
    csrf = await sign_in(client)
    form = {"csrf": csrf, "reason": "drained", "confirm": "orders-dlq"}

    # when
    response = await client.request(
        method,
        path,
        data=form if method == "POST" else None,
        headers={**_BROWSER, **_origin(client)},
    )

    # then: the one line the CLI's dlq commands give, not botocore's
    assert response.status == 503
    line = (await response.text()).split('id="problem">', 1)[1].split("</p>", 1)[0]
    assert line == "no AWS region: set AWS_REGION, LAMBDA_DESTINATIONS_REGION or --region"


async def test_a_dlq_page_while_sqs_is_unreachable_says_so_not_that_it_is_no_dlq(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a configured queue on an endpoint nobody listens on
    client = await make_client(settings_for("orders", endpoint_url="http://127.0.0.1:9"))
    await sign_in(client)

    # when: its DLQ's page is opened
    response = await client.get("/dlqs/orders-dlq", headers=_BROWSER)

    # then: SQS's silence, not a 404 saying the queue is no DLQ of ours (which nobody knows)
    assert response.status == 503
    line = html.unescape((await response.text()).split('id="problem">', 1)[1].split("</p>")[0])
    assert line.startswith("the configured queue orders could not be read ("), line
    assert "whether 'orders-dlq' is its DLQ is not known: try again once SQS answers" in line


def _problems(page: str) -> list[str]:
    """The filter's error lines (each with its id, which its field's aria-describedby names)."""
    return [
        html.unescape(part.split('">', 1)[1].split("</p>", 1)[0])
        for part in page.split('<p class="problem" role="alert" id="filter-error-')[1:]
    ]


_YEAR_1 = "0001-01-01T00:00:00%2B01:00"


_FILTER_ERRORS = [
    ("since=yesterday", "since: 'yesterday' is neither a duration"),
    ("since=1h&until=2h", "since must be before until: they read "),
    ("status=bogus", "status: 'bogus' is not a status (one of open, "),
    ("status=open&status=bogus", "status: 'bogus' is not a status (one of open, "),
    # before: the first value, the other left unsaid (a group's link said function twice)
    ("function=orders-api&function=billing-*", "function: given 2 times: give one value"),
    ("since=2h&since=1h", "since: given 2 times: give one value"),
]
_CURSOR_ERRORS = [
    ("after=garbage", "after: 'garbage' is not a place in this list: follow the Older »"),
    # a cursor whose time falls before year 1 in UTC: the store never sees it
    (f"after={_YEAR_1}|{_YEAR_1}|k", "is not a place in this list"),
]


@pytest.mark.parametrize(
    ("path", "query", "problem"),
    [(path, *case) for path in ("/failures", "/bulk", "/groups") for case in _FILTER_ERRORS]
    + [("/failures", *case) for case in _CURSOR_ERRORS],
)
async def test_a_filter_with_an_error_says_so_and_shows_nothing_for_it(
    make_client, settings_for: Callable[..., Settings], path: str, query: str, problem: str
) -> None:
    # given: a failure every page would show unfiltered
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    await sign_in(client)

    # when
    response = await client.get(f"{path}?{query}")

    # then: the error, said to be why nothing is shown, and nothing of the failure
    page = await response.text()
    assert response.status == 400
    (line,) = _problems(page)
    assert problem in line
    assert 'id="not-applied"' in page
    assert row.request_id not in page
    assert 'id="bulk-run"' not in page


@pytest.mark.parametrize("name", ["since", "until", "status", "after"])
async def test_a_filter_value_pasted_whole_is_cut_in_its_error_line(make_client, name: str) -> None:
    client = await make_client()
    for path in ("/failures", "/bulk") if name != "after" else ("/failures",):
        page = await (await client.get(path, params={name: "x" * 5000})).text()
        (line,) = _problems(page)
        assert "x" * 80 + "… (5,000 characters)" in line
        assert len(line) < 400


_BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_a_form_that_arrives_a_byte_at_a_time_is_answered_408_not_held(
    make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the console, with a short time for a form's body to arrive
    monkeypatch.setattr(console_app, "FORM_SECONDS", 0.3)
    client = await make_client()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        # when: a sign-in form says 1000 bytes and sends 6 (a slow-body client)
        writer.write(
            f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n"
            "\r\ntoken=".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"send it again\n"), 10)
    finally:
        writer.close()

    # then: 408 and its line (before: the connection was held for as long as the client sent
    # a byte now and then, and no limit applies to connections reading a body)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"\r\n\r\nthe form took over 0.3 s to arrive: send it again\n")


async def _headers_then_wait(port: int, head: str) -> bytes:
    """Send ``head`` (a request line and headers saying a large body comes) and a few bytes of
    the body, then the console's answer: the status line, headers and the body's line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + b"\r\ncsrf=x&reason=")
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) + await asyncio.wait_for(
            reader.readline(), 10
        )
    finally:
        writer.close()


async def test_an_action_from_no_session_is_refused_before_its_body_is_read(
    make_client, settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a console, and a client that is not signed in saying it sends a 7 MB form (under
    # the 8 MB limit), of which only the first bytes come
    monkeypatch.setattr(console_app, "FORM_SECONDS", 2.0)
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    path = f"/failures/{quote(row.key, safe='')}/ignore"

    # when
    answer = await _headers_then_wait(
        client.port,
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {7 << 20}\r\n",
    )

    # then: refused at once, the body never waited for (before: read first, up to 8 MB held
    # in memory for anyone; here a 408 once the form took over FORM_SECONDS)
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    assert answer.endswith(b"refused: actions need the console's token: sign in at /login\n")


@pytest.mark.parametrize(
    ("path", "size", "line"),
    [
        (
            "/failures/x/ignore",
            9 << 20,
            "the form is too large for the console (8 MB at most): send less",
        ),
        (
            "/login",
            1 << 20,
            "the sign-in form is too large (64 KB at most): send the token and a name",
        ),
    ],
)
async def test_a_form_over_the_limit_is_refused_by_its_content_length_before_it_is_read(
    make_client,
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    size: int,
    line: str,
) -> None:
    # given: a signed-in client (the sign-in form needs none) saying it sends more than the
    # console reads, of which only the first bytes come
    monkeypatch.setattr(console_app, "FORM_SECONDS", 2.0)
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    await sign_in(client)
    cookie = "; ".join(f"{c.key}={c.value}" for c in client.session.cookie_jar)
    path = path.replace("/x/", f"/{quote(row.key, safe='')}/")

    # when
    answer = await _headers_then_wait(
        client.port,
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\nCookie: {cookie}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {size}\r\n",
    )

    # then: 413 at once (before: the body waited for, and a 408 once it took over FORM_SECONDS;
    # a sign-in form, which anyone may post, was read up to 8 MB)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert answer.endswith(f"{line}\n".encode())


async def _refused_while_sending(port: int, head: str) -> tuple[bytes, bool]:
    """Send ``head`` (a request line and headers saying a large body comes), then the body a
    little at a time, as a slow upload does; the console's answer, and whether the console
    ended the connection after it (an end of stream within 5 s, under aiohttp's 10 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        try:
            while True:
                writer.write(b"x" * 1024)
                await writer.drain()
                await asyncio.sleep(0.05)
        except OSError:  # the console closed the connection: the sending stops
            return

    writer.write(head.encode() + b"\r\ncsrf=x&reason=")
    sending = asyncio.ensure_future(trickle())
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        try:
            answer += await asyncio.wait_for(reader.read(), 5)
        except TimeoutError:
            return answer, False
        return answer, True
    finally:
        sending.cancel()
        writer.close()


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/failures/x/ignore", 7 << 20, 403),  # no session: refused before it is read
        ("/login", 1 << 20, 413),  # over the sign-in form's 64 KB by its Content-Length
    ],
)
async def test_a_refused_upload_ends_its_connection_after_the_answer(
    settings_for: Callable[..., Settings],
    path: str,
    size: int,
    status: int,
) -> None:
    # given: the console as its command serves it (its own server, not the test server), a
    # failure to act on
    settings = settings_for()
    row = await stored_failure(settings)
    path = path.replace("/x/", f"/{quote(row.key, safe='')}/")
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    served = asyncio.ensure_future(
        console_app.serve(
            settings,
            ConsoleOptions(token=TOKEN, port=0),
            lambda options: listening.set_result(options.port),
        )
    )
    try:
        port = await asyncio.wait_for(listening, 30)

        # when: a client says it sends a large form, and keeps sending it slowly
        answer, ended = await _refused_while_sending(
            port,
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {size}\r\n",
        )
    finally:
        served.cancel()
        await asyncio.gather(served, return_exceptions=True)

    # then: the refusal, saying the connection closes, and the connection ends after it
    # (before: kept, the rest of the body read and thrown away for up to 10 s)
    head = answer.split(b"\r\n\r\n", 1)[0].decode().lower().splitlines()
    assert head[0].startswith(f"http/1.1 {status} "), answer[:200]
    assert ("connection: close" in head, ended) == (True, True), head


def _error_page(page: str) -> tuple[str, str, str]:
    """An error page's title, its line, and where its link goes back to."""
    title = page.split("<title>", 1)[1].split(" · ", 1)[0]
    line = page.split('id="problem">', 1)[1].split("</p>", 1)[0]
    back = page.split(' id="back">', 1)[0].rsplit('<a href="', 1)[1].rstrip('"')
    return title, html.unescape(line), html.unescape(back)


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "title", "line"),
    [
        (
            "GET",
            "/failures/nope",
            None,
            404,
            "Not Found",
            "no record with request id or key 'nope'",
        ),
        ("GET", "/jobs/nope", None, 404, "Not Found", "no such job (jobs are kept while"),
        ("GET", "/no/such/page", None, 404, "Not Found", "there is no page at this address"),
        ("GET", "/static/nope.css", None, 404, "Not Found", "there is no page at this address"),
        ("GET", "/failures/x/replay", None, 405, "Method Not Allowed", "this address takes no GET"),
        (
            "POST",
            "/failures/x/ignore",
            {"csrf": "stale"},
            403,
            "Forbidden",
            "refused: the form is stale",
        ),
        (
            "POST",
            "/failures/x/ignore",
            {"csrf": "{csrf}"},
            400,
            "Bad Request",
            "give a reason: the ledger",
        ),
        (
            "POST",
            "/failures/x/ignore",
            {"csrf": "{csrf}", "reason": "x" * 9_000_000},
            413,
            "Request Entity Too Large",
            "the form is too large",
        ),
    ],
)
async def test_an_error_a_browser_gets_is_a_page_with_a_title_the_line_and_a_way_back(
    make_client,
    settings_for: Callable[..., Settings],
    method: str,
    path: str,
    data: dict[str, str] | None,
    status: int,
    title: str,
    line: str,
) -> None:
    # given: a failure (the blank reason gets as far as it), a signed-in browser
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)
    path = path.replace("/x/", f"/{quote(row.key, safe='')}/")
    headers = {**_BROWSER, **_origin(client), "Referer": str(client.make_url("/failures?x=1"))}
    body = None
    if data is not None:  # as a file: aiohttp warns of a large body sent from bytes
        form = {k: v.replace("{csrf}", csrf) for k, v in data.items()}
        body = io.BytesIO(urlencode(form).encode())
        headers["Content-Type"] = "application/x-www-form-urlencoded"

    # when
    response = await client.request(method, path, data=body, headers=headers)

    # then: the page, and the same line as the text a script gets
    assert response.status == status
    assert response.content_type == "text/html"
    shown_title, shown_line, back = _error_page(await response.text())
    assert shown_title == title
    assert shown_line.startswith(line)
    assert back == "/failures?x=1"
    if status == 405:
        assert response.headers["Allow"] == "POST"


async def test_an_error_a_script_gets_stays_its_line_and_the_api_json(make_client) -> None:
    client = await make_client()
    text = await client.get("/jobs/nope", headers={"Accept": "*/*"})
    api = await client.get(
        "/api/jobs/nope", headers={**_BROWSER, "Authorization": f"Bearer {TOKEN}"}
    )
    assert (text.status, text.content_type) == (404, "text/plain")
    assert await text.text() == "no such job (jobs are kept while the console runs)\n"
    assert (api.status, api.content_type) == (404, "application/json")


async def test_a_long_error_is_cut_in_the_list_and_whole_on_the_failure_s_page(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure whose error message is 2,500 characters
    settings = settings_for()
    message = " ".join(f"word{n:04}" for n in range(250))[:2500]
    record = failure_record(
        random.Random(5), function="orders-api", error=("ValueError", message, "python")
    )
    row = await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when
    listed = await (await client.get("/failures")).text()
    whole = await (await client.get(f"/failures/{quote(row.key, safe='')}")).text()

    # then: the row's cell is about 200 characters, ending in "…"; the page has it all
    cell = listed.split('<td class="error">', 1)[1].split("</td>", 1)[0]
    assert cell.startswith(f"ValueError: {message[:150]}")
    assert cell.endswith("…")
    assert 180 <= len(cell) <= 201
    assert f"ValueError: {message}</p>" in whole


async def test_reopening_a_recovered_failure_makes_it_recovered_again(
    make_client, settings_for
) -> None:
    # given: a failure whose replay recovered
    settings = settings_for()
    row = await stored_failure(settings)
    async with Store.from_url(settings.store) as store:
        await replayed_once(store, row, ReplayOutcome.RECOVERED, by="console dana")
        await store.set_status([row.key], FailureStatus.RECOVERED, by="console dana")
    client = await make_client(settings)
    csrf = await sign_in(client)
    path = f"/failures/{quote(row.key, safe='')}"

    # when: it is ignored with a reason, then reopened
    for action in ("ignore", "reopen"):
        response = await client.post(
            f"{path}/{action}",
            data={"reason": "looked at", "csrf": csrf, "nonce": _once()},
            headers=_origin(client),
            allow_redirects=False,
        )
        assert response.status == 303

    # then: recovered, as its replay says
    async with Store.from_url(settings.store) as store:
        stored = await store.get_invocation(row.key)
    assert stored is not None
    assert stored.status is FailureStatus.RECOVERED


async def test_an_ignore_s_reason_goes_with_who_set_it_as_failures_ignore_keeps_it(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: two failures
    settings = settings_for()
    one = await stored_failure(settings)
    other = await stored_failure(
        settings, record=failure_record(random.Random(4), function="billing-api")
    )
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when: one is ignored on its page, the other by a bulk ignore, each with a reason
    ignored = await client.post(
        f"/failures/{quote(one.key, safe='')}/ignore",
        data={"reason": "test data", "csrf": csrf, "nonce": _once()},
        headers=_origin(client),
        allow_redirects=False,
    )
    form = _form_fields(
        await (await client.get("/bulk?action=ignore&function=billing-api")).text(), "/bulk"
    )
    bulk = await client.post(
        "/bulk",
        data={**form, "reason": "known bug"},
        headers=_origin(client),
        allow_redirects=False,
    )
    await _wait_for_jobs(client)

    # then: who set the status says why too, as `failures ignore --reason` has it, so that
    # `failures show` says it (before: the console's name alone, the reason in its ledger only)
    assert (ignored.status, bulk.status) == (303, 303)
    async with Store.from_url(settings.store) as store:
        by = [(await store.get_invocation(r.key)).status_by for r in (one, other)]  # type: ignore[union-attr]
    assert by == ["console dana — test data", "console dana — known bug"]


def _form_pairs(page: str, action: str) -> list[tuple[str, str]]:
    """The input fields of the page's form posting to ``action``, each one, in their order: a
    name given twice (two statuses checked) is sent twice, as a browser sends it."""
    form = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return [
        (html.unescape(name), html.unescape(value))
        for name, value in re.findall(r'<input[^>]* name="([^"]*)" value="([^"]*)"', form)
    ]


async def test_a_bulk_plan_of_two_statuses_runs_on_both(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: an open failure and a replayed one, and a bulk ignore planned with both statuses
    # checked in the filter
    settings = settings_for()
    opened = await stored_failure(settings, record=failure_record(random.Random(70)))
    replayed = await stored_failure(settings, record=failure_record(random.Random(71)))
    async with Store.from_url(settings.store) as store:
        await store.set_status([replayed.key], FailureStatus.REPLAYED, by="cli ops")
    client = await make_client(settings)
    await sign_in(client)
    plan = await (await client.get("/bulk?action=ignore&status=open&status=replayed")).text()

    # when: the plan's form is sent, its two status fields with it
    form = [*_form_pairs(plan, "/bulk"), ("reason", "test data")]
    response = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)
    await _wait_for_jobs(client)

    # then: the job ignored both (before: the form's last status alone was read, so it
    # selected 1 where the plan counted 2, and the run was refused with 409)
    assert [value for name, value in form if name == "status"] == ["open", "replayed"]
    assert response.status == 303, await response.text()
    async with Store.from_url(settings.store) as store:
        now = [await store.get_invocation(row.key) for row in (opened, replayed)]
    assert [row.status for row in now if row is not None] == [FailureStatus.IGNORED] * 2


# Stored text that would reorder what is read around it (U+202E, U+2066..U+2069) or drive a
# terminal (ESC); a family emoji whose ZWJ belongs to it.
_SPOOF = "bad \u202etxt.exe\u2069 \x1b[2J \u2066x\u2069"
_SPELLED = "bad \\u202etxt.exe\\u2069 \\x1b[2J \\u2066x\\u2069"
_FAMILY = "\U0001f468\u200d\U0001f469"


async def test_pages_spell_out_stored_bidi_controls_and_forms_post_them_back_exactly(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure whose error message and payload hold them
    settings = settings_for()
    record = failure_record(
        random.Random(5),
        function="orders-api",
        error=("ValueError", f"{_SPOOF} {_FAMILY}", "python"),
        request_payload={"note": _SPOOF},
    )
    row = await stored_failure(settings, record=record)
    client = await make_client(settings)
    await sign_in(client)
    path = f"/failures/{quote(row.key, safe='')}"

    # when: the list, the list filtered by a value that holds one, the failure's page and form
    listed = html.unescape(await (await client.get("/failures")).text())
    query = urlencode({"error_type": "Value\u202eError"})
    filtered = html.unescape(await (await client.get(f"/failures?{query}")).text())
    whole = html.unescape(await (await client.get(path)).text())
    edit = await (await client.get(f"{path}/edit")).text()

    # then: what the pages show spells each out and keeps the emoji whole ...
    assert not [c for c in "\x1b\u202e\u2066\u2069" if c in whole]
    assert f"ValueError: {_SPELLED} {_FAMILY}</p>" in whole
    assert '"note": "bad \\u202etxt.exe\\u2069 \\u001b[2J \\u2066x\\u2069"' in whole
    assert not [c for c in "\x1b\u202e\u2066\u2069" if c in listed]
    assert f"ValueError: {_SPELLED} {_FAMILY}</td>" in listed
    # ... and a form's fields hold the value exactly, to post it back as it was
    assert filtered.count("\u202e") == 1
    assert _form_fields(filtered, "/failures")["error_type"] == "Value\u202eError"
    assert json.loads(_form_fields(edit, f"{path}/edit")["payload"]) == {"note": _SPOOF}


# Over the 64 Ki characters a page shows of one payload or body, and small enough to be quick.
_BIG = "x" * 300_000


async def test_an_on_success_record_s_page_offers_no_replay_or_ignore_which_would_404(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: the on-success record of an invocation (as `/find?id=` opens it), signed in
    settings = settings_for()
    row = await stored_failure(settings, record=success_record(random.Random(5)))
    client = await make_client(settings)
    await sign_in(client)

    # when: its page, and its edit page's address typed
    page = html.unescape(await (await client.get(f"/failures/{row.request_id}")).text())
    edit = await client.get(f"/failures/{row.request_id}/edit", headers=_BROWSER)

    # then: said to have succeeded, with no form that acts (before: "Failure …" with Replay,
    # Edit and Ignore, each answering 404 "no failure with that request id or key")
    assert f'<h1>Invocation <span class="mono">{row.request_id}</span></h1>' in page
    assert (
        "This invocation succeeded (its on-success record): there is nothing to replay or "
        "ignore." in page
    )
    assert 'method="post" action="/failures/' not in page
    assert '/edit"' not in page
    assert edit.status == 404
    line = html.unescape((await edit.text()).split('id="problem">', 1)[1].split("</p>", 1)[0])
    assert line == "this invocation succeeded (its on-success record): there is nothing to replay"


async def test_a_big_payload_is_cut_on_its_page_and_the_whole_record_is_a_link_away(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure whose request payload is 300 kB (a record may be 1 MiB: SQS's limit)
    settings = settings_for()
    record = failure_record(
        random.Random(3),
        function="orders-api",
        condition="RetriesExhausted",
        request_payload={"blob": _BIG},
    )
    row = await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when: its page is read, then the link to the whole record
    page = html.unescape(await (await client.get(f"/failures/{row.request_id}")).text())
    link = page.split('" id="record-json"', 1)[0].rsplit('href="', 1)[1]
    whole = await client.get(link)

    # then: the payload and the record each cut at 64 Ki characters, saying where the rest is;
    # the link answers the record whole, as stored
    assert len(page) < 200_000
    cut = f"… cut: the first 65,536 of {len(_BIG) + 16:,} characters; the whole record: {link}"
    assert cut in page
    assert link == f"/failures/{quote(row.key, safe='')}/record.json"
    assert whole.status == 200
    assert whole.content_type == "application/json"
    assert json.loads(await whole.text()) == record


async def test_a_big_error_and_stack_trace_are_cut_on_the_page_as_failures_show_cuts_them(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure whose error message is 300 kB and whose stack trace is longer still
    settings = settings_for()
    record = failure_record(
        random.Random(4),
        function="orders-api",
        condition="RetriesExhausted",
        error=("ValueError", _BIG, "python"),
    )
    record["responsePayload"]["stackTrace"] = [f"  frame {i} {'y' * 100}\n" for i in range(4000)]
    row = await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when
    page = html.unescape(await (await client.get(f"/failures/{row.request_id}")).text())

    # then: each cut at 64 Ki characters, saying where the whole is (before: both whole, a page
    # of megabytes, where the README says the console cuts them as `failures show` does)
    link = f"/failures/{quote(row.key, safe='')}/record.json"
    error = f"ValueError: {_BIG}"
    assert f"… cut: the first 65,536 of {len(error):,} characters; the whole record: {link}" in page
    trace = sum(len(frame) for frame in record["responsePayload"]["stackTrace"])
    assert f"… cut: the first 65,536 of {trace:,} characters; the whole record: {link}" in page
    assert len(page) < 400_000


async def test_big_payloads_are_cut_on_a_bulk_plan(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: three failures whose request payloads are 300 kB each
    settings = settings_for()
    rows = []
    for seed in range(3):
        record = failure_record(
            random.Random(seed),
            function="orders-api",
            condition="RetriesExhausted",
            request_payload={"blob": _BIG},
        )
        rows.append(await stored_failure(settings, record=record))
    client = await make_client(settings)

    # when: the plan of a bulk replay, and of a bulk ignore, of them all
    for action in ("replay", "ignore"):
        page = html.unescape(await (await client.get(f"/bulk?action={action}")).text())

        # then: each payload cut, naming where the whole record is (before: each whole, 200
        # rows of up to 1 MiB, a page of hundreds of MB)
        assert len(page) < 3 * 70_000
        for row in rows:
            link = f"/failures/{quote(row.key, safe='')}/record.json"
            payload = json.dumps({"blob": _BIG}, separators=(",", ":"))
            assert (
                f"… cut: the first 65,536 of {len(payload):,} characters; the whole record: {link}"
            ) in page


async def test_big_quarantined_bodies_are_cut_on_the_quarantine_page(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: three quarantined messages of 300 kB each
    settings = settings_for()
    async with Store.from_url(settings.store) as store:
        await store.migrate()
        rows = [QuarantineRow("https://sqs/q", m, _BIG, {}, "decode error", 1) for m in "abc"]
        for row in rows:
            await store.save_quarantine(row)
    client = await make_client(settings)

    # when
    page = html.unescape(await (await client.get("/quarantine")).text())

    # then: each body cut, naming the command that prints it whole; the page stays small
    assert len(page) < 3 * 70_000
    for row in rows:
        assert (
            f"… cut: the first 65,536 of 300,000 characters; "
            f"lambda-destinations quarantine show {row.id} --json prints it whole"
        ) in page


async def test_big_bodies_are_cut_when_a_dlq_is_peeked(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a DLQ holding two messages of 300 kB
    url, dlq_url = make_queue("big")
    for _ in range(2):
        sqs.send_message(QueueUrl=dlq_url, MessageBody=_BIG)
    client = await make_client(settings_for(url))
    name = dlq_url.rsplit("/", 1)[1]

    # when
    page = html.unescape(await (await client.get(f"/dlqs/{name}?peek=10")).text())

    # then
    assert len(page) < 2 * 70_000
    cut = (
        f"… cut: the first 65,536 of 300,000 characters; "
        f"lambda-destinations dlq peek {name} --body --json prints it whole"
    )
    assert page.count(cut) == 2


# -- accessibility: what a screen reader and a keyboard need of every page --------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
_VAGUE = {"here", "click here", "view", "more", "link", "this"}


@dataclasses.dataclass(eq=False)
class _Element:
    tag: str
    attrs: dict[str, str]
    parent: _Element | None
    text: str = ""  # its own and its descendants'

    def within(self, tag: str) -> bool:
        node = self.parent
        while node is not None and node.tag != tag:
            node = node.parent
        return node is not None


class _Outline(HTMLParser):
    """A page as its elements (each with attributes, parent and text), in document order."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[_Element] = []
        self._open: list[_Element] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self._open[-1] if self._open else None
        element = _Element(tag, {k: v or "" for k, v in attrs}, parent)
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def all(self, *tags: str) -> list[_Element]:
        return [e for e in self.elements if e.tag in tags]

    def caption(self, table: _Element) -> str:
        return next((c.text.strip() for c in self.all("caption") if c.parent is table), "")

    def by_id(self, ident: str) -> _Element:
        (found,) = [e for e in self.elements if e.attrs.get("id") == ident]
        return found


def _accessibility_problems(page: str) -> list[str]:
    """What the page lacks that a screen reader or a keyboard needs (WCAG 2.2 A and AA, as far
    as the HTML shows it); [] when nothing."""
    outline = _Outline(page)
    checks = (_document_problems, _field_problems, _table_problems, _name_problems)
    return [problem for check in checks for problem in check(outline)]


def _document_problems(outline: _Outline) -> list[str]:
    """Ids, language, title, headings, landmarks, the skip link; no reload of itself."""
    ids = [e.attrs["id"] for e in outline.elements if "id" in e.attrs]
    found = [f"id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    (root,) = outline.all("html")
    if not root.attrs.get("lang"):
        found.append("<html> has no lang")
    titles = [t.text.strip() for t in outline.all("title") if t.within("head")]
    if len(titles) != 1 or not titles[0].removesuffix("· lambda-destinations").strip():
        found.append(f"the title says nothing of the page: {titles}")
    levels = [int(h.tag[1]) for h in outline.all("h1", "h2", "h3", "h4", "h5", "h6")]
    if levels.count(1) != 1 or levels[0] != 1:
        found.append(f"not one h1, first: headings {levels}")
    found += [f"heading h{b} follows h{a}" for a, b in itertools.pairwise(levels) if b > a + 1]
    if [m.attrs.get("id") for m in outline.all("main")] != ["main"] or not outline.all("nav"):
        found.append("no one <main id=main> or no <nav>")
    links = outline.all("a")
    if not links or links[0].attrs.get("href") != "#main":
        found.append("the first link skips to the content")
    # A page that reloads itself throws a screen reader back to its top (WCAG 2.2.1).
    found += [
        "the page reloads itself"
        for meta in outline.all("meta")
        if meta.attrs.get("http-equiv", "").lower() == "refresh" and not meta.within("noscript")
    ]
    return found


def _field_problems(outline: _Outline) -> list[str]:
    """Every field labelled; every id an aria attribute names is there."""
    found = []
    labelled = {e.attrs.get("for") for e in outline.all("label")}
    for field in outline.all("input", "textarea", "select"):
        if field.attrs.get("type") == "hidden":
            continue
        if not (
            field.within("label")
            or field.attrs.get("id") in labelled
            or field.attrs.get("aria-label")
            or field.attrs.get("aria-labelledby")
        ):
            found.append(f"no label: <{field.tag} name={field.attrs.get('name')!r}>")
    ids = {e.attrs["id"] for e in outline.elements if "id" in e.attrs}
    for ref in ("aria-describedby", "aria-labelledby"):
        for element in outline.elements:
            named = element.attrs.get(ref, "").split()
            found += [f"{ref} names no element: {i!r}" for i in named if i not in ids]
    return found


def _table_problems(outline: _Outline) -> list[str]:
    """Header cells with their scope, each table named; what scrolls is reached by the keyboard
    (and named: a screen reader says what it reached)."""
    found = [
        f"<th> without scope: {th.text.strip()!r}"
        for th in outline.all("th")
        if "scope" not in th.attrs
    ]
    for table in outline.all("table"):
        if not (outline.caption(table) or table.attrs.get("aria-labelledby")):
            found.append(f"a table without a caption or a name: {table.text.strip()[:40]!r}")
    for box in outline.all("pre", "div"):
        if box.tag == "div" and "scroll" not in box.attrs.get("class", "").split():
            continue
        if box.attrs.get("tabindex") != "0":
            found.append(f"a scrolling <{box.tag}> the keyboard cannot reach")
        if box.tag == "div" and not box.attrs.get("aria-labelledby"):
            found.append("a scrolling region without a name")
    return found


def _name_problems(outline: _Outline) -> list[str]:
    """Links that say where they go; pictures either named or hidden."""
    found = []
    for link in outline.all("a"):
        name = link.attrs.get("aria-label") or link.text.strip()
        if not name or name.lower() in _VAGUE:
            found.append(f"a link says nothing of where it goes: {name!r} ({link.attrs['href']})")
    for svg in outline.all("svg"):
        if svg.attrs.get("aria-hidden") != "true" and not (
            svg.attrs.get("role") == "img" and svg.attrs.get("aria-label")
        ):
            found.append("an <svg> neither hidden nor named")
    return found


async def _every_page(
    make_client: Callable[..., Any],
    settings_for: Callable[..., Settings],
    make_queue: Any,
    sqs: Any,
) -> dict[str, str]:
    """Every page of the console, by name, with something on it, as a signed-in browser gets it
    (and the sign-in page and a page of errors as anyone does)."""
    url, dlq_url = make_queue("a11y")
    send_all(sqs, dlq_url, [failure_body(n)[0] for n in range(2)])
    settings = settings_for(url)
    row = await stored_failure(settings)
    async with Store.from_url(settings.store) as store:
        await store.save_quarantine(QuarantineRow(url, "m-q", "not json", {}, "decode error", 1))
    client = await make_client(settings)
    pages = {
        "sign-in": "/login",
        "sign-in refused": "/login?link=refused",
        "failures, a filter with errors": "/failures?since=yesterday&status=bogus",
        "groups, a filter with errors": "/groups?until=nonsense",
    }
    got = {name: await (await client.get(path)).text() for name, path in pages.items()}
    await sign_in(client)
    key = quote(row.key, safe="")
    name = dlq_url.rsplit("/", 1)[1]
    let_go = asyncio.Event()

    async def held(job: Job) -> None:
        await let_go.wait()

    board = client.server.app[CONSOLE].jobs
    running = board.start("redrive", "a held job", "console dana", 3, held)
    pages = {
        "overview": "/",
        "failures": "/failures",
        "groups": "/groups?since=7d",
        "failure": f"/failures/{key}",
        "edit": f"/failures/{key}/edit",
        "bulk replay": "/bulk?action=replay",
        "bulk ignore": "/bulk?action=ignore",
        "DLQs": "/dlqs",
        "DLQ peeked": f"/dlqs/{name}?peek=10",
        "quarantine": "/quarantine",
        "jobs": "/jobs",
        "a running job": f"/jobs/{running.id}",
        "not found": "/no/such/page",
    }
    for page_name, path in pages.items():
        got[page_name] = await (await client.get(path, headers=_BROWSER)).text()
    let_go.set()
    await _wait_for_jobs(client)
    got["a finished job"] = await (await client.get(f"/jobs/{running.id}")).text()
    return got


async def test_every_page_has_what_a_screen_reader_and_a_keyboard_need(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: every page, with a failure, a quarantined message, a DLQ peeked, jobs
    pages = await _every_page(make_client, settings_for, make_queue, sqs)

    # then: nothing is missing on any page, and no two pages have one title
    problems = {name: _accessibility_problems(page) for name, page in pages.items()}
    assert {name: found for name, found in problems.items() if found} == {}
    titles = {name: _Outline(page).all("title")[0].text for name, page in pages.items()}
    assert titles.pop("a finished job") == titles["a running job"]  # one page, later
    assert len(set(titles.values())) == len(titles), titles
    # a page showing errors says so first in its title
    for name in (
        "sign-in refused",
        "failures, a filter with errors",
        "groups, a filter with errors",
    ):
        assert titles[name].startswith("Error: "), titles[name]
    # the navigation says which page this is
    overview = _Outline(pages["overview"])
    assert [a.text for a in overview.all("a") if a.attrs.get("aria-current")] == ["Overview"]


def test_the_accessibility_checks_find_what_they_look_for() -> None:
    # A page lacking each thing the checks look for: each is found.
    page = (
        '<!doctype html><html><head><meta http-equiv="refresh" content="1"><title> · '
        'lambda-destinations</title></head><body><a href="/">here</a><main id="x">'
        '<h1>A</h1><h3 id="d">C</h3><h1>B</h1><input name="q" aria-describedby="nope">'
        '<div class="scroll"><table><tr><th>T</th></tr></table></div><pre>{}</pre>'
        '<svg><rect/></svg><p id="d"></p></main></body></html>'
    )
    found = _accessibility_problems(page)
    assert found == [
        "id 'd' is used twice",
        "<html> has no lang",
        "the title says nothing of the page: ['· lambda-destinations']",
        "not one h1, first: headings [1, 3, 1]",
        "heading h3 follows h1",
        "no one <main id=main> or no <nav>",
        "the first link skips to the content",
        "the page reloads itself",
        "no label: <input name='q'>",
        "aria-describedby names no element: 'nope'",
        "<th> without scope: 'T'",
        "a table without a caption or a name: 'T'",
        "a scrolling <div> the keyboard cannot reach",
        "a scrolling region without a name",
        "a scrolling <pre> the keyboard cannot reach",
        "a link says nothing of where it goes: 'here' (/)",
        "an <svg> neither hidden nor named",
    ]


async def test_a_filter_s_errors_are_tied_to_the_fields_they_are_about(
    make_client,
) -> None:
    client = await make_client()
    page = await (
        await client.get("/failures?function=orders-*&since=yesterday&status=bogus")
    ).text()
    outline = _Outline(page)

    def field(name: str) -> _Element:
        (found,) = [e for e in outline.all("input") if e.attrs.get("name") == name]
        return found

    def said_for(element: _Element) -> list[str]:
        return [outline.by_id(i).text for i in element.attrs.get("aria-describedby", "").split()]

    (since_line,) = said_for(field("since"))
    assert since_line.startswith("since: 'yesterday' is neither a duration")
    assert field("since").attrs["aria-invalid"] == "true"
    (status_line,) = said_for(next(e for e in outline.all("fieldset")))
    assert status_line.startswith("status: 'bogus' is not a status")
    # the fields that are right are not marked
    assert "aria-invalid" not in field("function").attrs
    assert "aria-invalid" not in field("until").attrs
    # an error about two fields is tied to both
    both = _Outline(await (await client.get("/failures?since=1h&until=2h")).text())
    for name in ("since", "until"):
        (element,) = [e for e in both.all("input") if e.attrs.get("name") == name]
        (line,) = [both.by_id(i).text for i in element.attrs["aria-describedby"].split()]
        assert line.startswith("since must be before until: they read "), line
        assert line.endswith(
            " UTC; a duration counts back from now, so the longer one goes with "
            "since (since 3h until 1h)"
        ), line


async def test_a_sign_in_problem_is_tied_to_the_field_it_is_about(make_client) -> None:
    client = await make_client()

    async def sign_in_with(token: str, user: str) -> _Outline:
        response = await client.post(
            "/login", data={"token": token, "user": user, "next": "/"}, headers=_origin(client)
        )
        assert response.status == 403
        return _Outline(await response.text())

    for outline, wrong, right in [
        (await sign_in_with("not-the-token", "dana"), "token", "user"),
        (await sign_in_with(TOKEN, ""), "user", "token"),
    ]:
        problem = outline.by_id(outline.by_id(wrong).attrs["aria-describedby"]).text
        assert problem.startswith(
            "That is not the console's token" if wrong == "token" else "Give your name"
        )
        assert outline.by_id(wrong).attrs["aria-invalid"] == "true"
        assert "aria-invalid" not in outline.by_id(right).attrs


async def _signed_in_on_a_failure(
    make_client: Callable[..., Any],
    settings_for: Callable[..., Settings],
    function_arn: str | None = None,
    **settings_values: Any,
) -> tuple[TestClient, InvocationRow, str]:  # type: ignore[type-arg]
    """A console on a store holding a failure (of ``function_arn``), signed in: the client, the
    failure, the CSRF."""
    settings = settings_for(**settings_values)
    row = await stored_failure(settings, function_arn=function_arn)
    client = await make_client(settings)
    return client, row, await sign_in(client)


async def test_an_edit_s_json_problem_is_tied_to_the_payload(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    client, row, csrf = await _signed_in_on_a_failure(make_client, settings_for)
    path = f"/failures/{quote(row.key, safe='')}/edit"
    fields = _form_fields(await (await client.get(path)).text(), path)

    response = await client.post(
        path, data={**fields, "csrf": csrf, "payload": "{"}, headers=_origin(client)
    )

    assert response.status == 400
    outline = _Outline(await response.text())
    payload = outline.by_id("payload")
    assert payload.attrs["aria-invalid"] == "true"
    said = [outline.by_id(i) for i in payload.attrs["aria-describedby"].split()]
    # the page's own check (empty until it finds a problem), then the server's line
    assert [e.attrs.get("data-json-problem") for e in said] == ["", None]
    assert said[1].text.startswith("The payload is not valid JSON")


async def test_ignoring_or_reopening_brings_focus_to_the_new_status(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    client, row, csrf = await _signed_in_on_a_failure(make_client, settings_for)
    path = f"/failures/{quote(row.key, safe='')}"
    for action, status in [("ignore", "ignored"), ("reopen", "open")]:
        response = await client.post(
            f"{path}/{action}",
            data={"csrf": csrf, "reason": "r", "nonce": _once()},
            headers=_origin(client),
            allow_redirects=False,
        )
        # the browser focuses the element the address names: the status, which it reads out
        target = response.headers["Location"]
        assert unquote(target) == f"/failures/{row.key}#status-line"
        outline = _Outline(await (await client.get(target)).text())
        line = outline.by_id("status-line")
        assert line.attrs["tabindex"] == "-1"
        assert line.text.startswith(status)


async def test_the_hourly_chart_s_counts_are_a_table_too(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    await stored_failure(settings)  # a failure of the last hour
    client = await make_client(settings)
    outline = _Outline(await (await client.get("/")).text())

    table = next(
        t for t in outline.all("table") if outline.caption(t).startswith("Failures per hour")
    )
    rows = [
        [c.text for c in outline.all("td") if c.parent is tr]
        for tr in outline.all("tr")
        if tr.within("tbody") and tr.parent is not None and tr.parent.parent is table
    ]
    assert len(rows) >= 24
    assert sum(int(count) for _, count in rows) == 1
    bars = [t.text for t in outline.all("title") if t.parent is not None and t.parent.tag == "rect"]
    assert [
        f"{hour} UTC: {count} failure{'s' if count != '1' else ''}" for hour, count in rows
    ] == bars


@pytest.mark.parametrize("referer", ["http://[::1", "http://::1]/failures", "http://[zz]/failures"])
async def test_an_error_page_with_a_referer_that_is_no_url_goes_back_to_the_overview(
    make_client, referer: str
) -> None:
    # before: 500, "ValueError: Invalid IPv6 URL" from urlsplit
    client = await make_client()
    response = await client.get("/no/such/page", headers={**_BROWSER, "Referer": referer})
    assert response.status == 404
    title, line, back = _error_page(await response.text())
    assert (title, back) == ("Not Found", "/")
    assert line.startswith("there is no page at this address")


async def _raw(client: TestClient, request: bytes) -> tuple[int, bytes]:  # type: ignore[type-arg]
    """The status and body of ``request`` sent as these very bytes (aiohttp's client encodes
    headers itself, so bytes that are not UTF-8 go through a socket of our own)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    ("method", "path", "status", "line"),
    [
        ("GET", "/api/jobs/nope", 401, b"the bearer token is not the console's"),
        ("POST", "/failures/x/ignore", 403, b"actions need the console's token"),
    ],
)
async def test_an_authorization_header_that_is_not_utf_8_is_a_wrong_token(
    make_client, method: str, path: str, status: int, line: bytes
) -> None:
    # before: 500 (the API's "the console failed"), UnicodeEncodeError in token_matches
    client = await make_client()
    sent = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n".encode()
        + b"Authorization: Bearer \xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    answered, body = await _raw(client, sent)
    assert answered == status
    assert line in body


async def test_the_record_as_json_shows_a_lone_surrogate_as_u_fffd_as_the_api_does(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure whose payload holds a lone surrogate (JSON may spell one; UTF-8 cannot)
    settings = settings_for()
    record = failure_record(random.Random(8), function="orders-api", condition="RetriesExhausted")
    record["requestPayload"] = {"note": "a\udfffb"}
    row = await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when: the record is fetched whole (before: 500, "surrogates not allowed")
    response = await client.get(f"/failures/{quote(row.key, safe='')}/record.json")

    # then: U+FFFD in its place, as the page and /api/invocations show it
    assert response.status == 200
    assert (await response.json())["requestPayload"] == {"note": "a\ufffdb"}


@pytest.mark.parametrize(
    "host", ["attacker.example:{port}", "attacker.example", "127.0.0.1.nip.io:{port}", "[::1"]
)
@pytest.mark.parametrize("path", ["/failures/{key}/record.json", "/", "/api/jobs/nope"])
async def test_a_loopback_console_refuses_a_host_that_is_not_loopback(
    make_client, settings_for: Callable[..., Settings], host: str, path: str
) -> None:
    # given: a console on 127.0.0.1, where reading needs no sign-in, and a failure
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    path = path.format(key=quote(row.key, safe=""))

    # when: a page of another site, resolved to 127.0.0.1 (DNS rebinding), asks for it
    # (before: 200 and the record)
    response = await client.get(path, headers={"Host": host.format(port=client.port)})

    # then: 421, one line naming the address to open it at, and nothing of the record
    text = await response.text()
    assert response.status == 421
    assert row.request_id not in text
    line = json.loads(text)["error"] if path.startswith("/api/") else text
    assert line.rstrip("\n").endswith(
        f"open it as http://127.0.0.1:{client.port}/ or http://localhost:{client.port}/"
    )


async def test_a_loopback_console_serves_its_own_names_and_one_beyond_loopback_any_host(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure, a console on 127.0.0.1 and one on 0.0.0.0 (every page needs sign-in)
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    exposed = await make_client(settings, host="0.0.0.0")
    path = f"/failures/{quote(row.key, safe='')}/record.json"

    # then: on loopback another site's name is refused, the machine's own names are served
    # (in any case, with a port or without)
    other = await client.get(path, headers={"Host": f"attacker.example:{client.port}"})
    assert other.status == 421
    for host in ("127.0.0.1:{port}", "localhost:{port}", "LocalHost", "[::1]:{port}", "127.0.0.2"):
        own = await client.get(path, headers={"Host": host.format(port=client.port)})
        assert own.status == 200, host
    # and beyond loopback any name goes on to the sign-in, as before
    signs_in = await exposed.get(
        "/failures", headers={"Host": "console.example.com"}, allow_redirects=False
    )
    assert signs_in.status == 303
    assert signs_in.headers["Location"] == "/login?next=/failures"


async def test_a_read_only_console_s_401_names_the_variable_not_a_sign_in_url(make_client) -> None:
    # given: a read-only console started without LAMBDA_DESTINATIONS_CONSOLE_TOKEN, which
    # prints no sign-in URL (before: the 401 sent the reader to that URL)
    client = await make_client(read_only=True, token_generated=True)

    # when
    lines = [
        (await (await client.get("/api/jobs/nope", headers=headers)).json())["error"]
        for headers in ({}, {"Authorization": "Bearer not-it"})
    ]

    # then: both name the variable, and that this console must be started with it
    fix = (
        ": a read-only console takes LAMBDA_DESTINATIONS_CONSOLE_TOKEN's value, and this one was "
        "started without it (it printed no sign-in URL): start it again with the variable set"
    )
    assert lines == [
        f"send Authorization: Bearer <console token>{fix}",
        f"the bearer token is not the console's{fix}",
    ]


async def test_a_read_only_console_beyond_loopback_prints_the_sign_in_url_its_pages_need(
    sqlite_url: str,
) -> None:
    # given: `console --host 0.0.0.0 --read-only` started without
    # LAMBDA_DESTINATIONS_CONSOLE_TOKEN: every page needs sign-in, with the token made at start
    env = {k: v for k, v in os.environ.items() if k != "LAMBDA_DESTINATIONS_CONSOLE_TOKEN"}
    env["LAMBDA_DESTINATIONS_STORE"] = sqlite_url
    async with Store.from_url(sqlite_url) as store:
        await store.migrate()  # the console makes no store
    process, listening = start_process(env, "--host", "0.0.0.0", "--read-only")
    assert process.stderr is not None
    try:
        lines = [process.stderr.readline()]
        while lines[-1] and "every page needs the token" not in lines[-1]:  # its last line
            lines.append(process.stderr.readline())
        said = "".join(lines)
        base = listening.replace("0.0.0.0", "127.0.0.1")

        # then: it says it is read-only, and prints the sign-in URL (before: none, and no one
        # had the token: every page sent to a sign-in no one could pass)
        assert "read-only: no actions" in said
        found = re.search(r"^sign in +http://0\.0\.0\.0:\d+(/login\?token=\S+)$", said, re.M)
        assert found, said

        # when: the operator opens it, gives a name, and reads
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an address, as a browser keeps them
        async with aiohttp.ClientSession(base, cookie_jar=jar) as http:
            linked = await http.get(found[1])
            signed = await http.post(
                "/login", data={"user": "dana", "next": "/failures"}, headers={"Origin": base}
            )

            # then: signed in, on the failures page, and still offered no action
            assert linked.status == 200
            assert (signed.status, signed.url.path) == (200, "/failures")
            assert "read-only" in await signed.text()
    finally:
        reap(process)
        process.stderr.close()


async def test_signing_out_of_a_read_only_console_works(make_client) -> None:
    # given: someone signed in to a read-only console (its page offers "Sign out")
    client = await make_client(read_only=True)
    csrf = await sign_in(client)
    assert "Sign out" in await (await client.get("/failures")).text()

    # when (before: 403 "refused: the console runs read-only")
    response = await client.post(
        "/logout", data={"csrf": csrf}, headers=_origin(client), allow_redirects=False
    )

    # then: signed out, and a stale form or another site still cannot sign anyone out
    assert response.status == 303
    assert "Sign out" not in await (await client.get("/failures")).text()
    csrf = await sign_in(client)
    stale = await client.post("/logout", data={"csrf": "stale"}, headers=_origin(client))
    assert stale.status == 403
    assert "Sign out" in await (await client.get("/failures")).text()


@pytest.mark.parametrize(
    ("accept", "content_type"), [("*/*", "text/plain"), (_BROWSER["Accept"], "text/html")]
)
async def test_a_store_that_failed_is_its_line_as_the_request_accepts_it(
    make_client, settings_for: Callable[..., Settings], accept: str, content_type: str
) -> None:
    # given: a console whose SQLite file is deleted while it runs
    settings = settings_for()
    row = await stored_failure(settings)
    client = await make_client(settings)
    csrf = await sign_in(client)
    path = settings.store.removeprefix("sqlite:///")
    os.remove(path)

    # when: a write finds it gone (before: a page to every client, saying "StoreGone: ...")
    response = await client.post(
        f"/failures/{quote(row.key, safe='')}/ignore",
        data={"csrf": csrf, "reason": "noise", "nonce": _once()},
        headers={**_origin(client), "Accept": accept},
    )

    # then: 503, the store's line without the Python class, as plain text or a page
    text = await response.text()
    assert (response.status, response.content_type) == (503, content_type)
    line = text.strip() if content_type == "text/plain" else _problem_line(text)
    assert line.startswith(f"store {settings.store} is unavailable: {path} was deleted while open")
    assert "StoreGone" not in text


def _problem_line(page: str) -> str:
    return html.unescape(page.split('id="problem">', 1)[1].split("</p>", 1)[0])


@pytest.mark.parametrize(
    ("method", "path", "status", "line"),
    [
        ("GET", "/nope", 404, "there is no page at this address: start from the console's menu"),
        (
            "PUT",
            "/failures",
            405,
            "this address takes no PUT: act with the buttons of the console's pages",
        ),
        ("GET", "/jobs/%00", 404, "no job has an id with a NUL character"),
        ("GET", "/dlqs/q%00", 404, "no queue has a name with a NUL character"),
        ("GET", "/api/jobs/%00", 404, '{"error":"no job has an id with a NUL character"}'),
        # before: an empty 404 (application/octet-stream), and "403: Forbidden"
        (
            "GET",
            "/static/nope.js",
            404,
            "there is no page at this address: start from the console's menu",
        ),
        ("GET", "/static/", 404, "there is no page at this address: start from the console's menu"),
    ],
)
async def test_aiohttp_s_own_answers_and_a_nul_s_404_name_what_to_do_for_a_script(
    make_client, method: str, path: str, status: int, line: str
) -> None:
    # before: "404: Not Found", "405: Method Not Allowed", and "no record has an id with a NUL
    # character" for a job
    client = await make_client()
    response = await client.request(method, path, headers={"Accept": "*/*"})
    assert response.status == status
    assert (await response.text()).strip() == line


async def test_an_overview_with_no_failure_in_its_day_names_the_newest_before_it(
    make_client, settings_for
) -> None:
    # given: a failure three days old (a backlog drained at a first start), and none since
    settings = settings_for()
    three_days_ago = times.utcnow() - dt.timedelta(days=3)
    record = failure_record(random.Random(3), function="orders-api", at=three_days_ago)
    await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when
    page = await (await client.get("/")).text()
    listing = await (await client.get("/failures")).text()

    # then: the day's table is empty, and the page says when the newest failure is from and
    # links to every failure (before: "No failures in the last 24 hours." and nothing more)
    said = " ".join(html.unescape(page).split())
    newest = times.utc_text(three_days_ago.replace(microsecond=0))
    assert f"No failures in the last 24 hours. The newest is from {newest[:16]}" in said, said
    assert '<a href="/failures">every failure</a>' in page
    assert record["requestContext"]["requestId"] in listing


@pytest.mark.parametrize("page", ["/", "/groups"])
async def test_a_group_with_no_error_type_links_to_its_failures_alone(
    make_client, settings_for, page: str
) -> None:
    # given: orders-api failed twice, once in its code and once without running (no
    # concurrency left: no response, so no error type)
    settings = settings_for()
    rng = random.Random(5)
    ran = failure_record(rng, function="orders-api", condition="RetriesExhausted")
    never_ran = failure_record(rng, function="orders-api", condition="ZeroReservedConcurrency")
    for record in (ran, never_ran):
        record["requestContext"]["functionArn"] = function_arn("orders-api", None)
        await stored_failure(settings, record=record)
    client = await make_client(settings)

    # when: the link of the group whose error type shows as "-" is followed
    groups = await (await client.get(page)).text()
    rows = re.findall(r"<tr>\s*<td><a href=\"([^\"]+)\">orders-api</a></td>\s*<td>-</td>", groups)
    assert len(rows) == 1, groups
    listing = await (await client.get(html.unescape(rows[0]))).text()

    # then: it lists that failure, and not the function's other (before: every failure of
    # orders-api, the filter left empty)
    assert never_ran["requestContext"]["requestId"] in listing
    assert ran["requestContext"]["requestId"] not in listing


# -- replaying on another version or alias ----------------------------------------------------


def _versioned(lambda_endpoint: Any) -> dict[str, str]:
    """A function with versions 1 (the failing code) and 2 (the fix), and its alias ``live``
    moved to version 2: their ARNs by qualifier, and its name."""
    name = f"orders-{random.randrange(10**8)}"
    lambda_endpoint.create_function(name)
    lam = lambda_endpoint.lam
    arns = {"name": name, "1": lam.publish_version(FunctionName=name)["FunctionArn"]}
    lam.update_function_configuration(FunctionName=name, Description="the fix")
    arns["2"] = lam.publish_version(FunctionName=name)["FunctionArn"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    arns["live"] = lam.get_alias(FunctionName=name, Name="live")["AliasArn"]
    return arns


async def _on_version_1(
    make_client: Callable[..., Any], settings_for: Callable[..., Settings], lambda_endpoint: Any
) -> tuple[dict[str, str], TestClient, InvocationRow, str]:  # type: ignore[type-arg]
    """A console signed in, on a store holding a failure of version 1 of a function of
    ``_versioned``: its ARNs, the client, the failure, the CSRF."""
    arns = _versioned(lambda_endpoint)
    signed_in = await _signed_in_on_a_failure(
        make_client, settings_for, arns["1"], endpoint_url=lambda_endpoint.url
    )
    return (arns, *signed_in)


def _hints(page: str) -> list[str]:
    """The lines of the page's hint on published versions (``#version-hints``)."""
    if 'id="version-hints"' not in page:
        return []
    block = page.split('id="version-hints"', 1)[1].split("</div>", 1)[0]
    return [html.unescape(p.split("</p>", 1)[0]) for p in block.split("<p>")[1:]]


async def test_a_replay_with_a_qualifier_invokes_it_and_the_page_names_both(
    make_client, settings_for: Callable[..., Settings], lambda_endpoint: Any
) -> None:
    # given: a failure of version 1, whose page says what a replay would run again
    arns, client, row, csrf = await _on_version_1(make_client, settings_for, lambda_endpoint)
    name = arns["name"]
    settings = client.server.app[CONSOLE].settings
    path = f"/failures/{quote(row.key, safe='')}"
    before = await (await client.get(path)).text()
    assert _hints(before) == [
        f"{name}: replays run version 1's code again (a published version never changes); "
        "Qualifier ALIAS (or '$LATEST') runs the code deployed since"
    ]
    form = _form_fields(before, f"{path}/replay")
    assert form == {"csrf": csrf, "nonce": form["nonce"], "qualifier": ""}
    lambda_endpoint.start_recording()

    # when: Replay, the qualifier live
    form["qualifier"] = " live "
    response = await client.post(f"{path}/replay", data=form, headers=_origin(client))

    # then: the alias was invoked, and the page says so, the record's version and the alias
    assert [arn for arn, _ in lambda_endpoint.invocations()] == [arns["live"]]
    page = await response.text()
    async with Store.from_url(settings.store) as store:
        (attempt,) = await store.replays(row.key)
        (action,) = await store.actions(row.key)
    assert _outcome(page) == (
        f"Replayed: attempt 1 invoked {name}:1 → {name}:live, new request id "
        f"{attempt.new_request_id}."
    )
    # the ledgers keep the function invoked, and the Replays table names it
    assert attempt.function_arn == arns["live"]
    assert action.detail["result"]["record_function_arn"] == arns["1"]
    table = page.split('id="replay-table"', 1)[1].split("</table>", 1)[0]
    assert '<th scope="col">Invoked</th>' in table
    assert f'<td class="mono">{name}:live</td>' in table


def _bulk_target(form: dict[str, str]) -> str:
    """The ledger's target of the bulk action ``form`` posts: its filter, frozen."""
    return f"failures?{urlencode({k: form[k] for k in ('function', 'until') if k in form})}"


BAD_QUALIFIER = (
    "'my alias' is not a version or alias: write a version number (7), an alias name (live) or "
    "$LATEST, 1 to 128 letters, digits, '-' or '_'"
)


@pytest.mark.parametrize("form", ["replay", "edit", "bulk"])
async def test_a_qualifier_lambda_takes_in_no_form_is_refused_and_nothing_invoked(
    make_client, settings_for: Callable[..., Settings], lambda_endpoint: Any, form: str
) -> None:
    # given: a failure of version 1, and the form, its qualifier one Lambda never takes
    arns, client, row, _csrf = await _on_version_1(make_client, settings_for, lambda_endpoint)
    settings = client.server.app[CONSOLE].settings
    failure = f"/failures/{quote(row.key, safe='')}"
    path = {"replay": f"{failure}/replay", "edit": f"{failure}/edit", "bulk": "/bulk"}[form]
    opened = {"replay": failure, "edit": path, "bulk": f"/bulk?function={arns['name']}"}[form]
    fields = _form_fields(await (await client.get(opened)).text(), path)
    assert fields["qualifier"] == ""
    fields["qualifier"] = "my alias"
    lambda_endpoint.start_recording()

    # when
    response = await client.post(path, data=fields, headers=_origin(client))

    # then: one line, the fix; nothing invoked, nothing in the ledgers
    assert response.status == 400
    text = await response.text()
    if form == "edit":  # the form again, the problem tied to the field
        problem = html.unescape(text.split('id="problem">', 1)[1].split("</p>", 1)[0])
        assert problem == f"The qualifier {BAD_QUALIFIER}. Nothing was invoked."
        field = text.split('id="edit-qualifier"', 1)[1].split(">", 1)[0]
        assert 'aria-invalid="true" aria-describedby="problem version-hints"' in field
        assert 'value="my alias"' in field
    else:
        assert text == f"qualifier: {BAD_QUALIFIER}; nothing was invoked\n"
    assert lambda_endpoint.invocations() == []
    async with Store.from_url(settings.store) as store:
        assert await store.replays(row.key) == []
        assert await store.actions(row.key) == []
        assert await store.actions(_bulk_target(fields)) == []
    assert client.server.app[CONSOLE].jobs.recent() == []


async def test_an_edit_with_a_qualifier_invokes_it_with_the_edited_payload(
    make_client, settings_for: Callable[..., Settings], lambda_endpoint: Any
) -> None:
    arns, client, row, _csrf = await _on_version_1(make_client, settings_for, lambda_endpoint)
    path = f"/failures/{quote(row.key, safe='')}/edit"
    form = _form_fields(await (await client.get(path)).text(), path)
    form.update(payload='{"orderId": "fixed"}', qualifier="live")
    lambda_endpoint.start_recording()

    page = await (await client.post(path, data=form, headers=_origin(client))).text()

    assert lambda_endpoint.invocations() == [(arns["live"], {"orderId": "fixed"})]
    assert _outcome(page).startswith(f"Replayed: attempt 1 invoked {arns['name']}:1 → ")


async def test_a_bulk_replay_shows_the_plan_on_the_qualifier_typed_then_invokes_it(
    make_client, settings_for: Callable[..., Settings], lambda_endpoint: Any
) -> None:
    # given: two failures of version 1, and their plan, which says what they would run again
    arns = _versioned(lambda_endpoint)
    name = arns["name"]
    settings = settings_for(endpoint_url=lambda_endpoint.url)
    rows = []
    for n in (1, 2):
        record = failure_record(random.Random(70 + n), function=name)
        record["requestContext"]["functionArn"] = arns["1"]
        rows.append(await stored_failure(settings, record=record))
    client = await make_client(settings)
    await sign_in(client)
    plan = await (await client.get(f"/bulk?action=replay&function={name}")).text()
    assert _hints(plan) == [
        f"{name}: replays run version 1's code again (a published version never changes); "
        "Qualifier ALIAS (or '$LATEST') runs the code deployed since"
    ]
    form = _form_fields(plan, "/bulk")
    lambda_endpoint.start_recording()

    # when: the qualifier live is typed (a rate and a reason too), and Replay 2 pressed
    form.update(qualifier="live", rate="5", reason="the fix is live")
    shown = await client.post("/bulk", data=form, headers=_origin(client), allow_redirects=False)

    # then: nothing ran yet: the plan again, on the alias, for the same filter
    assert shown.status == 303
    assert lambda_endpoint.invocations() == []
    assert client.server.app[CONSOLE].jobs.recent() == []
    again = await (await client.get(shown.headers["Location"])).text()
    assert again.count(f"{name}:1 → {name}:live") == 2
    assert _hints(again) == []
    confirmed = _form_fields(again, "/bulk")
    assert {k: confirmed[k] for k in ("qualifier", "planned_qualifier", "rate", "reason")} == {
        "qualifier": "live",
        "planned_qualifier": "live",
        "rate": "5",
        "reason": "the fix is live",
    }
    assert confirmed["plan"] == form["plan"] == f"function={name}"
    lambda_endpoint.start_recording()

    # when: Replay 2, on that plan
    response = await client.post(
        "/bulk", data=confirmed, headers=_origin(client), allow_redirects=False
    )

    # then: the alias was invoked for each; the job and the ledgers name it
    (job,) = await _wait_for_jobs(client)
    assert response.headers["Location"] == f"/jobs/{job.id}"
    until = confirmed["until"]
    assert job.title == f"replay 2 failures (function={name} until={until}; qualifier live)"
    assert [arn for arn, _ in lambda_endpoint.invocations()] == [arns["live"]] * 2
    async with Store.from_url(settings.store) as store:
        attempts = [await store.replays(row.key) for row in rows]
        (bulk,) = await store.actions(_bulk_target(confirmed))
    assert [[a.function_arn for a in each] for each in attempts] == [[arns["live"]]] * 2
    assert bulk.detail["qualifier"] == "live"


# -- a failure's function logs --------------------------------------------------------------


async def _failure_of_orders_api(
    settings: Settings, minutes_ago: float = 10, seed: int = 11
) -> InvocationRow:
    """A RetriesExhausted failure of orders-api (3 attempts) written ``minutes_ago``, stored."""
    rng = random.Random(seed)
    record = failure_record(rng, function="orders-api", condition="RetriesExhausted")
    record["timestamp"] = at(minutes_ago)
    return await stored_failure(settings, function_arn=function_arn("orders-api"), record=record)


def _logs_path(row: InvocationRow, query: str = "") -> str:
    return f"/failures/{quote(row.key, safe='')}/logs{query}"


def _shown(page: str, element_id: str) -> str:
    """The text of the element ``element_id`` of a page, as a browser shows it."""
    return html.unescape(page.split(f'id="{element_id}"', 1)[1].split(">", 1)[1].split("</", 1)[0])


@pytest.fixture
def cloudwatch_logs(endpoint_url: str) -> Iterator[Any]:
    with lambda_logs(endpoint_url) as client:
        yield client


async def test_a_failure_s_logs_page_shows_its_own_lines_and_its_page_reads_none(
    make_client, settings_for: Callable[..., Settings], cloudwatch_logs: Any, endpoint_url: str
) -> None:
    # given: a failure's last attempt logged between other invocations' lines (one of its
    # lines markup), and a console whose AWS calls pass a proxy that counts FilterLogEvents
    proxy = AnswerCutter(endpoint_url, FILTER_LOG_EVENTS, http=True)
    async with proxy.running() as through:
        settings = settings_for(endpoint_url=through)
        row = await _failure_of_orders_api(settings)
        assert row.request_id is not None
        assert row.timestamp is not None
        put_last_attempt(cloudwatch_logs, row.request_id, row.timestamp)
        markup = [(row.timestamp - dt.timedelta(seconds=28, milliseconds=500), XSS)]
        put(cloudwatch_logs, STREAM, markup)
        client = await make_client(settings)

        # when: the failure's page, then its logs page
        failure_page = await (await client.get(f"/failures/{quote(row.key, safe='')}")).text()
        asked_by_the_failure_page = len(proxy.seen)
        response = await client.get(_logs_path(row))
        page = await response.text()

    # then: the failure's page links to its logs and asked CloudWatch Logs nothing
    assert asked_by_the_failure_page == 0
    assert f'href="{_logs_path(row)}" id="show-logs"' in failure_page
    assert f'href="{_logs_path(row, "?all_attempts=1")}" id="show-all-logs"' in failure_page
    # the logs page shows the attempt's lines, the printed ones too, and none of the others
    assert response.status == 200
    assert proxy.seen
    lines = _shown(page, "log-lines")
    assert lines.splitlines()[0] == f"stream {STREAM}"
    assert f"START RequestId: {row.request_id} Version: $LATEST" in lines
    assert "  printed without a request id\n" in lines
    assert " " * 21 + "Traceback (most recent call last):" in lines
    assert f"REPORT RequestId: {row.request_id}" in lines
    for other in ("before", "after", "elsewhere", OTHER_ID):
        assert other not in page
    # what the function wrote is text: escaped as every field, controls and bidi spelled out
    assert XSS in lines
    assert "<img" not in page
    assert "colour \\x1b[31mred\\x1b[0m and \\u202eevil" in lines
    assert "\x1b" not in page
    assert "\u202e" not in page
    window = (
        f"{(row.timestamp - dt.timedelta(minutes=16)):%Y-%m-%d %H:%M:%S} → "
        f"{(row.timestamp + dt.timedelta(minutes=1)):%Y-%m-%d %H:%M:%S} UTC"
    )
    assert _shown(page, "logs-source") == f"8 lines from log group {GROUP}, {window}"
    assert "1 of 3 attempts in the window; All attempts reads back to the first" in page
    assert f'href="{_logs_path(row, "?all_attempts=1")}" id="all-attempts">All attempts<' in page


async def test_the_logs_page_reads_every_attempt_when_asked_and_says_how_to_widen_an_empty_window(
    make_client, settings_for: Callable[..., Settings], cloudwatch_logs: Any
) -> None:
    # given: the request id's lines only 3 hours before its record (an earlier attempt)
    settings = settings_for()
    row = await _failure_of_orders_api(settings)
    assert row.timestamp is not None
    rid = row.request_id
    start = row.timestamp - dt.timedelta(hours=3)
    put(cloudwatch_logs, STREAM, invocation(str(rid), start, ["first try"]))
    client = await make_client(settings)

    # when: the last attempt's window, then every attempt's, then a value the page never links
    last = await client.get(_logs_path(row))
    every = await client.get(_logs_path(row, "?all_attempts=1"))
    bad = await client.get(_logs_path(row, "?all_attempts=yes"))

    # then: none in the first, said with the window and how to widen it; found in the second
    assert last.status == 200
    page = await last.text()
    assert "log-lines" not in page
    assert _shown(page, "logs-source").startswith(
        f"no line of request id {rid} in log group {GROUP}, "
    )
    widen = (
        "All attempts reads back to the first attempt; "
        f"lambda-destinations failures logs {rid} --since and --until set any window"
    )
    assert html.unescape(page).count(widen) == 1
    assert every.status == 200
    assert "  first try" in _shown(await every.text(), "log-lines")
    assert bad.status == 400
    assert await bad.text() == "all_attempts: 1 for every attempt, or nothing\n"


async def test_no_line_of_a_failure_older_than_its_groups_retention_says_they_expired(
    make_client, settings_for: Callable[..., Settings], cloudwatch_logs: Any
) -> None:
    # given: a failure of 20 days ago, and its function's log group keeps 7 days
    settings = settings_for()
    row = await _failure_of_orders_api(settings, minutes_ago=20 * 24 * 60)
    now = dt.datetime.now(dt.UTC)
    put(cloudwatch_logs, STREAM, invocation(OTHER_ID, now, ["today"]))
    cloudwatch_logs.put_retention_policy(logGroupName=GROUP, retentionInDays=7)
    client = await make_client(settings)

    # when
    response = await client.get(_logs_path(row, "?all_attempts=1"))

    # then
    assert response.status == 200
    assert row.timestamp is not None
    assert (
        f"<p>the log group keeps lines 7 days, and the record is from "
        f"{row.timestamp:%Y-%m-%d %H:%M:%S} UTC: its lines have expired</p>"
    ) in await response.text()


async def test_lines_past_the_limit_name_the_command_that_prints_them_all(
    make_client, settings_for: Callable[..., Settings], cloudwatch_logs: Any
) -> None:
    # given: an attempt that printed 600 lines
    settings = settings_for()
    row = await _failure_of_orders_api(settings)
    assert row.timestamp is not None
    printed = [f"line {n}" for n in range(600)]
    start = row.timestamp - dt.timedelta(minutes=12)
    put(cloudwatch_logs, STREAM, invocation(str(row.request_id), start, printed))
    client = await make_client(settings)

    # when
    page = await (await client.get(_logs_path(row, "?all_attempts=1"))).text()

    # then: the operation's limit, and the command for the rest
    assert len(_shown(page, "log-lines").splitlines()) == 1 + 500  # the stream's name, the lines
    assert (
        html.unescape(page).count(
            "the first 500 shown; more lines match (lambda-destinations failures logs "
            f"{row.request_id} --all-attempts --limit 0 prints them all)"
        )
        == 1
    )


async def test_a_missing_log_group_or_a_refusal_is_one_line_on_the_logs_page(
    make_client, settings_for: Callable[..., Settings], cloudwatch_logs: Any, endpoint_url: str
) -> None:
    # given: a failure whose function has no log group
    missing = await _failure_of_orders_api(settings_for())
    client = await make_client(settings_for())
    missing_page = await client.get(_logs_path(missing))
    missing_text = await missing_page.text()
    # and one whose lines are there, but AWS refuses FilterLogEvents (the proxy answers as AWS)
    proxy = refusing_filter_log_events(endpoint_url)
    async with proxy.running() as through:
        refused_settings = settings_for(endpoint_url=through)
        refused = await _failure_of_orders_api(refused_settings)
        assert refused.request_id is not None
        assert refused.timestamp is not None
        put_last_attempt(cloudwatch_logs, refused.request_id, refused.timestamp)
        client = await make_client(refused_settings)
        refused_page = await client.get(_logs_path(refused))
        refused_text = await refused_page.text()

    # then: each is one line on the page, never a traceback, with the fix
    assert missing_page.status == 404
    line = _shown(missing_text, "logs-problem")
    assert line.startswith(
        f"log group {GROUP} not found in account 123456789012, region us-east-1: the function "
        "has not logged yet, or logs to another group: give it, lambda-destinations failures "
        f"logs {missing.request_id} --log-group NAME (GetFunctionConfiguration failed "
    )
    assert refused_page.status == 403
    assert _shown(refused_text, "logs-problem") == (
        f"FilterLogEvents was refused ({DENIED}): "
        "check the AWS credentials and that they are allowed logs:FilterLogEvents on "
        f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}:*"
    )
    for text in (missing_text, refused_text):
        assert "Traceback" not in text
        assert 'href="/failures/' in text  # the way back to the failure


async def test_an_endpoint_not_reached_is_one_line_on_the_logs_page_without_its_secret(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(endpoint_url="http://127.0.0.1:9/?token=tok-s3cret")
    row = await _failure_of_orders_api(settings)
    client = await make_client(settings)

    response = await client.get(_logs_path(row))

    assert response.status == 503
    page = await response.text()
    line = _shown(page, "logs-problem")
    assert line.startswith(
        "cannot reach http://127.0.0.1:9/?token=*** (EndpointConnectionError: Could not connect "
        "to the endpoint URL: "
    )
    assert line.endswith(f"): {settings.endpoint_fix()}")
    assert "tok-s3cret" not in page
    assert "Traceback" not in page


async def test_aws_not_answering_ends_the_logs_page_at_its_bound(
    make_client,
    settings_for: Callable[..., Settings],
    endpoint_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: CloudWatch Logs takes FilterLogEvents and never answers; a short bound
    monkeypatch.setattr(bound, "AWS_SECONDS", SHORT_BOUND)  # the clients' creation fits in it
    proxy = AnswerCutter(endpoint_url, FILTER_LOG_EVENTS, http=True)
    proxy.holds = 1
    async with proxy.running() as through:
        settings = settings_for(endpoint_url=through)
        row = await _failure_of_orders_api(settings)
        client = await make_client(settings)

        # when
        response = await asyncio.wait_for(client.get(_logs_path(row)), 10)
        page = await response.text()

    # then: the page came at the bound (before: botocore's read timeout, 16 s here and
    # 35 s by default, three times over), saying so in one line
    assert len(proxy.seen) == 1  # sent once, its answer held (counted once it comes: moto may lag)
    assert response.status == 504
    assert _shown(page, "logs-problem") == (
        f"{_UNANSWERED}: try again, or run lambda-destinations failures logs "
        f"{row.request_id}, which waits longer"
    )


async def test_the_logs_page_needs_sign_in_where_every_page_does(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    row = await _failure_of_orders_api(settings)
    exposed = await make_client(settings, host="0.0.0.0")

    signed_out = await exposed.get(_logs_path(row, "?all_attempts=1"), allow_redirects=False)
    await sign_in(exposed)
    signed_in = await exposed.get(_logs_path(row, "?all_attempts=1"))

    assert signed_out.status == 303
    location = unquote(signed_out.headers["Location"])
    assert location.startswith("/login?next=/failures/")
    assert location.endswith("/logs?all_attempts=1")
    assert signed_in.status == 404  # its log group is missing: read, once signed in
    assert "logs-problem" in await signed_in.text()


# -- AWS that takes the request and never answers ----------------------------------------------


def _dlq_world(lambda_endpoint: Any) -> tuple[str, str, str]:
    """A queue whose DLQ holds three messages, on the Lambda moto server: its URL, the DLQ's
    URL and name."""
    sqs = lambda_endpoint.sqs
    name = f"bound-{random.randrange(10**8)}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)})
    send_all(sqs, dlq_url, [failure_body(n)[0] for n in range(3)])
    return url["QueueUrl"], dlq_url, f"{name}-dlq"


# The console's bound on AWS in the tests that wait for it: the clients' creation and the calls
# before the one held fit in it, on a loaded machine too (at 2 s, under CI's load, a replay's
# Invoke was not even sent by then).
SHORT_BOUND = 5.0
_UNANSWERED = f"AWS did not answer within {SHORT_BOUND:g} s"


@pytest.fixture
def short_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's bound on AWS, SHORT_BOUND: a test waits for it, not for botocore's read
    timeout (16 s here)."""
    monkeypatch.setattr(bound, "AWS_SECONDS", SHORT_BOUND)


def _holding(lambda_endpoint: Any, needle: bytes, holds: int = 100) -> AnswerCutter:
    """A proxy to the Lambda moto server holding back the answers to requests with ``needle``
    (by default every one: botocore's retries too)."""
    proxy = AnswerCutter(lambda_endpoint.url, needle, http=True)
    proxy.holds = holds
    return proxy


@pytest.mark.usefixtures("short_bound")
@pytest.mark.parametrize(
    ("path", "needle", "element", "status", "line"),
    [
        ("/", b"AmazonSQS.", "sqs-problem", 200, f"SQS: {_UNANSWERED}: try again"),
        ("/dlqs", b"AmazonSQS.", "sqs-problem", 200, f"SQS: {_UNANSWERED}: try again"),
        ("/dlqs/{dlq}", b"AmazonSQS.", "problem", 504, f"{_UNANSWERED}: try again"),
        (
            "/dlqs/{dlq}?peek=5",
            b"AmazonSQS.ReceiveMessage",
            "problem",
            504,
            f"{_UNANSWERED}: try again, or run lambda-destinations dlq peek {{dlq}} --limit 5, "
            "which waits longer",
        ),
    ],
)
async def test_a_page_that_asks_aws_says_it_did_not_answer_at_the_bound(
    make_client,
    settings_for: Callable[..., Settings],
    lambda_endpoint: Any,
    path: str,
    needle: bytes,
    element: str,
    status: int,
    line: str,
) -> None:
    # given: SQS takes the request and never answers (a short bound: short_bound)
    url, _, dlq = _dlq_world(lambda_endpoint)
    proxy = _holding(lambda_endpoint, needle)
    async with proxy.running() as through:
        client = await make_client(settings_for(url, endpoint_url=through))

        # when
        response = await asyncio.wait_for(
            client.get(path.format(dlq=dlq), headers={**_BROWSER, **_origin(client)}), 10
        )
        page = await response.text()

    # then: the page came at the bound (before: at botocore's read timeout, 16 s here and 35 s
    # by default, for each of three attempts: 65 s here), saying so in one line
    assert proxy.seen  # sent, never answered
    assert response.status == status
    assert _shown(page, element) == line.format(dlq=dlq)


async def _post_held(
    make_client: Callable[..., Any],
    settings: Settings,
    path: str,
    form: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Sign in, post ``form`` (the page's own form at ``path`` when None) as a browser; the
    status, and the error page's line."""
    client = await make_client(settings)
    csrf = await sign_in(client)
    if form is None:
        form = _form_fields(await (await client.get(path)).text(), path)
    form = {"csrf": csrf, "nonce": _once(), **form}
    response = await asyncio.wait_for(
        client.post(path, data=form, headers={**_BROWSER, **_origin(client)}), 10
    )
    return response.status, _problem_line(await response.text())


@pytest.mark.usefixtures("short_bound")
async def test_a_dlq_action_that_asks_aws_says_it_did_not_answer_at_the_bound(
    make_client,
    settings_for: Callable[..., Settings],
    lambda_endpoint: Any,
) -> None:
    # given: SQS never answers the redrive's look-up of source queues, nor a purge
    url, dlq_url, dlq = _dlq_world(lambda_endpoint)
    looked_up = _holding(lambda_endpoint, b"ListDeadLetterSourceQueues")
    purged = _holding(lambda_endpoint, b"AmazonSQS.PurgeQueue")
    async with looked_up.running() as through, purged.running() as purge_through:
        redrive = await _post_held(
            make_client, settings_for(url, endpoint_url=through), f"/dlqs/{dlq}/redrive", {}
        )
        purge = await _post_held(
            make_client,
            settings_for(url, endpoint_url=purge_through),
            f"/dlqs/{dlq}/purge",
            {"confirm": dlq, "reason": "drained"},
        )

    # then: each came at the bound, in one line: the redrive started nothing and names the
    # command; the purge, sent, is in doubt, and the line says where to look
    assert looked_up.seen
    assert purged.seen
    assert redrive == (
        504,
        f"{_UNANSWERED}: try again, or run lambda-destinations dlq redrive {dlq}, which waits "
        "longer",
    )
    assert purge == (
        504,
        f"{_UNANSWERED}: the purge of {dlq} is in doubt, may have been done: the DLQ's page "
        "shows how many messages it holds (SQS deletes them within a minute)",
    )
    # the ledger keeps the purge (the DLQ's URL as SQS answered it: through the proxy)
    async with Store.from_url(settings_for().store) as store:
        purged_url = dlq_url.replace(lambda_endpoint.url.rstrip("/"), purge_through)
        assert [a.action for a in await store.actions(purged_url)] == ["purge"]


@pytest.mark.usefixtures("short_bound")
@pytest.mark.parametrize(
    ("action", "lost", "problem"),
    [
        ("replay", "held", _UNANSWERED),
        ("edit", "held", _UNANSWERED),
        # the connection dropped once the Invoke was sent: no answer either, before the bound
        ("replay", "cut", "AWS did not answer (ConnectionClosedError)"),
    ],
)
async def test_a_replay_whose_invoke_never_answers_is_in_doubt(
    make_client,
    settings_for: Callable[..., Settings],
    lambda_endpoint: Any,
    action: str,
    lost: str,
    problem: str,
) -> None:
    # given: Lambda takes the Invoke and never answers (or the connection drops)
    arn = lambda_endpoint.create_function(f"orders-{random.randrange(10**6)}")
    proxy = _holding(lambda_endpoint, b"/invocations", holds=int(lost == "held"))
    proxy.cuts = int(lost == "cut")
    async with proxy.running() as through:
        settings = settings_for(endpoint_url=through)
        row = await stored_failure(settings, function_arn=arn)
        path = f"/failures/{quote(row.key, safe='')}/{action}"

        # when
        posted = await _post_held(make_client, settings, path, {} if action == "replay" else None)

    # then: neither failed nor done: in doubt, and where to look (before: 503 with botocore's
    # line, "ReadTimeoutError: ..." at its read timeout, 16 s here and 35 s by default, or
    # "ConnectionClosedError: ...", under "Try again")
    assert len(proxy.seen) == 1  # sent once, never answered
    assert posted == (
        504,
        f"{problem}: the replay is in doubt, may have reached Lambda: the failure's page "
        "lists its attempt under Replays, and the function's log lines say whether it ran",
    )
    async with Store.from_url(settings.store) as store:
        (attempt,) = await store.replays(row.key)
    assert attempt.outcome is ReplayOutcome.PENDING
    assert (attempt.detail or "").startswith("in doubt, may have reached Lambda: ")


@pytest.mark.usefixtures("short_bound")
async def test_a_resend_whose_send_never_answers_is_in_doubt_at_the_bound(
    make_client,
    settings_for: Callable[..., Settings],
    lambda_endpoint: Any,
) -> None:
    # given: a quarantined message; SQS takes its SendMessage and never answers
    url, _, _ = _dlq_world(lambda_endpoint)
    proxy = _holding(lambda_endpoint, b"AmazonSQS.SendMessage", holds=1)
    async with proxy.running() as through:
        settings = settings_for(url, endpoint_url=through)
        async with Store.from_url(settings.store) as store:
            await store.migrate()
            row = QuarantineRow(url, "m-1", '{"not": "a record"}', {}, "decode error", 1)
            await store.save_quarantine(row)
        path = f"/quarantine/{row.id}/resend"

        # when
        posted = await _post_held(make_client, settings, path, {"message_id": "m-1"})

    # then: in doubt, and the message stays, marked as being resent (not sent again meanwhile)
    assert len(proxy.seen) == 1  # sent once, never answered
    assert posted == (
        504,
        f"{_UNANSWERED}: the resend is in doubt, may have reached its queue: the quarantine "
        "page marks the message resending for 5 minutes; look in its queue before resending it",
    )
    async with Store.from_url(settings.store) as store:
        (kept,) = await store.list_quarantine()
    assert resend_status(kept).startswith("resending since ")


@pytest.mark.postgres
@pytest.mark.usefixtures("short_bound")
async def test_a_resend_whose_claim_waits_out_the_bound_is_not_said_to_be_in_doubt(
    make_client,
    settings_for: Callable[..., Settings],
    make_queue,
    sqs,
    postgres_url: str,
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    # given: a quarantined message whose row another transaction holds locked past the bound
    # (a prune's, a worker's), so the resend's claim of it waits
    url, _ = make_queue("console-claim-wait", dlq=False)
    settings = settings_for(url, store=postgres_url)
    row = await _quarantined(settings, url, "m-1")
    holder = await asyncpg.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT id FROM quarantine WHERE id = $1 FOR UPDATE", row.id)

            # when
            status, line = await _post_held(
                make_client, settings, f"/quarantine/{row.id}/resend", {"message_id": "m-1"}
            )
    finally:
        await holder.close()

    # then: nothing sent, nor said to be (before: "the resend is in doubt, may have reached
    # its queue: the quarantine page marks the message resending for 5 minutes", of a message
    # neither sent nor marked), and the command that waits longer
    assert status == 504
    assert "in doubt" not in line, line
    assert line.endswith(f"run lambda-destinations quarantine resend {row.id}, which waits longer")
    assert count_messages(sqs, url) == 0
    async with Store.from_url(settings.store) as store:
        (kept,) = await store.list_quarantine()
    assert resend_status(kept) == ""


# A secret the console's environment holds: no page may show it.
_PLANTED_SECRET = "planted-secret-" + uuid.uuid4().hex


def _refusing(endpoint_url: str, needle: bytes, code: str, message: str) -> AnswerCutter:
    """A proxy in front of moto answering every SQS request with ``needle`` with ``code``."""
    proxy = AnswerCutter(endpoint_url, needle, http=True)
    proxy.refusals = 100
    proxy.refusal = aws_error(403, code, message, "json")
    return proxy


async def test_a_purge_aws_refuses_says_what_to_allow_as_dlq_purge_does_and_is_no_purge(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs, endpoint_url: str
) -> None:
    # given: a DLQ holding a message, and SQS refusing the console's PurgeQueue
    url, dlq_url = make_queue("console-purge-denied")
    name = dlq_url.rsplit("/", 1)[1]
    send_all(sqs, dlq_url, ["m1"])
    denied = "User: arn:aws:iam::123456789012:user/console is not authorized"
    proxy = _refusing(endpoint_url, b"AmazonSQS.PurgeQueue", "AccessDenied", denied)
    async with proxy.running() as through:
        settings = settings_for(url, endpoint_url=through)
        client = await make_client(settings)
        csrf = await sign_in(client)

        # when
        response = await client.post(
            f"/dlqs/{name}/purge",
            data={"csrf": csrf, "confirm": name},
            headers=_origin(client),
            allow_redirects=False,
        )

    # then: the line names the permission and whose credentials lack it, as `dlq purge` says
    # it (before: "ClientError: AccessDenied: …" alone); the ledger says nothing was purged
    (line,) = (await response.text()).strip().splitlines()
    assert response.status == 503
    assert line == (
        f"PurgeQueue was refused (AccessDenied: {denied}): check the console's AWS credentials "
        "and that they are allowed sqs:PurgeQueue"
    )
    async with Store.from_url(settings.store) as store:
        # the DLQ's URL as SQS gave it to the console, through the proxy
        (action,) = await store.actions(dlq_url.replace(endpoint_url, through))
    assert action.detail is not None
    assert action.detail["refused"] == line
    assert count_messages(sqs, dlq_url) == 1


async def test_credentials_aws_does_not_take_are_the_console_s_to_fix_on_its_page(
    make_client,
    settings_for: Callable[..., Settings],
    make_queue,
    endpoint_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: the console's keys (a secret among them), and SQS saying their token expired
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", _PLANTED_SECRET)
    url, dlq_url = make_queue("console-peek-expired")
    name = dlq_url.rsplit("/", 1)[1]
    expired = "The security token included in the request is expired"
    proxy = _refusing(endpoint_url, b"AmazonSQS.ReceiveMessage", "ExpiredToken", expired)
    async with proxy.running() as through:
        client = await make_client(settings_for(url, endpoint_url=through))

        # when: a peek, from a browser
        response = await client.get(
            f"/dlqs/{name}?peek=1", headers={**_origin(client), "Accept": "text/html"}
        )
        page = await response.text()

    # then: one line saying whose keys to fix, and where (before: "ClientError: ExpiredToken:
    # …", no fix); the secret is on no page
    assert response.status == 503
    assert _problem_line(page) == (
        f"ReceiveMessage was refused (ExpiredToken: {expired}): AWS did not take the console's "
        "AWS credentials (expired, unknown, or this machine's clock is off): fix "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE where the console runs, and "
        "start it again, or sign in again (aws sso login)"
    )
    assert _PLANTED_SECRET not in page


async def test_a_queue_sqs_refuses_to_describe_says_what_to_allow_on_the_overview(
    make_client, settings_for: Callable[..., Settings], make_queue, endpoint_url: str
) -> None:
    # given: SQS refusing the console's GetQueueAttributes
    url, _ = make_queue("console-attributes-denied")
    denied = "not authorized to perform sqs:GetQueueAttributes"
    proxy = _refusing(endpoint_url, b"AmazonSQS.GetQueueAttributes", "AccessDenied", denied)
    async with proxy.running() as through:
        client = await make_client(settings_for(url, endpoint_url=through))

        # when
        page = html.unescape(await (await client.get("/")).text())

    # then: the queue's line says which permission the console's credentials lack
    assert (
        f"GetQueueAttributes was refused (AccessDenied: {denied}): check the console's AWS "
        "credentials and that they are allowed sqs:GetQueueAttributes"
    ) in page


async def test_an_endpoint_the_console_cannot_reach_is_the_commands_line_without_its_secret(
    make_client, settings_for: Callable[..., Settings], make_queue
) -> None:
    # given: an endpoint nobody listens on, whose URL carries a token
    url, dlq_url = make_queue("console-unreachable")
    settings = settings_for(url, endpoint_url="http://127.0.0.1:9/?token=tok-s3cret")
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when
    response = await client.post(
        f"/dlqs/{dlq_url.rsplit('/', 1)[1]}/purge",
        data={"csrf": csrf, "confirm": "x"},
        headers=_origin(client),
    )

    # then: its queue not read, in `dlq purge`'s line: the endpoint (masked) and what to check
    # (before: botocore's "EndpointConnectionError: …" alone)
    assert response.status == 503
    (line,) = (await response.text()).strip().splitlines()
    assert "could not be read (cannot reach http://127.0.0.1:9/?token=*** (Endpoint" in line
    assert f"): {settings.endpoint_fix()}), so whether" in line
    assert "tok-s3cret" not in line


async def test_a_purge_of_an_empty_dlq_is_refused_in_dlq_purge_s_line_and_not_kept(
    make_client, settings_for: Callable[..., Settings], make_queue
) -> None:
    # given: a configured queue's DLQ SQS counts no message in
    url, dlq_url = make_queue("console-purge-empty")
    name = dlq_url.rsplit("/", 1)[1]
    settings = settings_for(url)
    client = await make_client(settings)
    csrf = await sign_in(client)

    # when
    page = await (await client.get(f"/dlqs/{name}")).text()
    response = await client.post(
        f"/dlqs/{name}/purge",
        data={"csrf": csrf, "confirm": name},
        headers=_origin(client),
        allow_redirects=False,
    )

    # then: the page offers no purge, and one posted anyway is refused in `dlq purge`'s line
    # (before: purged, and a purge kept in the ledger); the ledger keeps nothing
    # (console.js enables the button of a form with data-confirm-name once the name is typed)
    assert "disabled>Purge" in page
    assert "data-confirm-name" not in page
    assert response.status == 409
    (line,) = (await response.text()).strip().splitlines()
    assert line == f"{name} is empty: nothing to purge"
    async with Store.from_url(settings.store) as store:
        assert await store.actions(dlq_url) == []


async def test_the_icon_browsers_ask_for_on_every_page_is_served_quietly(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a console, asked for /favicon.ico as a browser asks after each page
    client = await make_client(settings_for())
    accept = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"

    # when
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/favicon.ico", headers={"Accept": accept})
        body = await response.read()
        page = await client.get("/", headers={"Accept": "text/html"})
        html_page = await page.text()

    # then: an icon (before: a 404 error page, at every page), cached for a day, with no log
    # line; and the pages name it, so browsers ask once
    assert response.status == 200
    assert response.content_type == "image/svg+xml"
    assert body.startswith(b"<svg")
    assert "max-age=86400" in response.headers["Cache-Control"]
    assert [e for e in logs if e["log_level"] not in ("debug", "info")] == []
    assert 'rel="icon"' in html_page
    # and a console where reading needs sign-in serves it too, not the sign-in page
    exposed = await make_client(host="0.0.0.0")
    icon = await exposed.get("/favicon.ico", allow_redirects=False)
    assert (icon.status, icon.content_type) == (200, "image/svg+xml")


@pytest.mark.parametrize("offset", ["+01:00", "+0100"])
async def test_a_time_typed_in_the_address_with_a_plus_offset_is_read_with_that_offset(
    make_client, settings_for: Callable[..., Settings], offset: str
) -> None:
    # given: a failure, and a since half an hour before it written at UTC+1 with its "+"
    # typed raw in the address (a query string reads "+" as a space)
    settings = settings_for()
    row = await stored_failure(settings)
    assert row.timestamp is not None
    utc_plus_1 = dt.timezone(dt.timedelta(hours=1))
    local = (row.timestamp - dt.timedelta(minutes=30)).astimezone(utc_plus_1)
    typed = local.strftime("%Y-%m-%dT%H:%M:%S") + offset
    client = await make_client(settings)

    # when
    response = await client.get(f"/failures?since={typed}")
    later = await client.get(f"/failures?since={typed.replace('+', '-')}")

    # then: read as UTC+1 (before: refused, 'neither a duration nor an ISO 8601 time'; read
    # as UTC it would be after the failure); a since of "-01:00", after it, leaves it out
    page = await response.text()
    assert response.status == 200, _problems(page)
    assert row.request_id in page
    assert row.request_id not in await later.text()


async def test_a_read_only_console_offers_no_peek_and_refuses_one(
    make_client, settings_for: Callable[..., Settings], make_queue, sqs
) -> None:
    # given: a message in a DLQ, and a read-only console
    url, dlq_url = make_queue("peek-read-only")
    sqs.send_message(QueueUrl=dlq_url, MessageBody=failure_body(1)[0])
    client = await make_client(settings_for(url), read_only=True)
    dlq_name = dlq_url.rsplit("/", 1)[1]

    # when: the DLQ's page is opened, then its peek's address, from the console's own page
    page = await client.get(f"/dlqs/{dlq_name}")
    peeked = await client.get(
        f"/dlqs/{dlq_name}?peek=10",
        headers={"Sec-Fetch-Site": "same-origin", "Accept": "text/plain"},
    )

    # then: no Peek is offered and the peek is refused before any receive (before: the link
    # was there and the peek received each message, its receive count up by one)
    text = await page.text()
    assert page.status == 200
    assert 'id="peek"' not in text
    assert f"lambda-destinations dlq peek {dlq_name}" in text
    assert peeked.status == 403
    assert (await peeked.text()).startswith("refused: the console runs read-only (--read-only)")
    message = sqs.receive_message(
        QueueUrl=dlq_url, AttributeNames=["ApproximateReceiveCount"], VisibilityTimeout=0
    )["Messages"][0]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"  # this receive alone


async def _stored_groups(settings: Settings, functions: int) -> None:
    """A failure of each of ``functions`` functions: as many groups."""
    async with Store.from_url(settings.store) as store:
        await store.migrate()
        for seed in range(functions):
            function = f"fn-{seed:04d}"
            record = failure_record(random.Random(seed), function=function, condition="Error")
            record["requestContext"]["functionArn"] = f"{ARN}:function:{function}"
            row = invocation_row(decode(json.dumps(record)), "https://sqs/q")
            await store.save_invocation(row, DeliveryRow(row.key, f"m-{seed}", "https://sqs/q", 1))


async def test_the_groups_page_lists_100_groups_and_says_how_many_more(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: failures of 103 functions, a group each
    settings = settings_for()
    await _stored_groups(settings, 103)
    client = await make_client(settings)

    # when: the groups page, and the same narrowed to a few functions
    page = await (await client.get("/groups")).text()
    narrowed = await (await client.get("/groups?function=fn-000*")).text()

    # then: 100 rows and a line naming the 3 left out and how to see them (before: every
    # group, however many: a page of megabytes for thousands)
    assert len(re.findall(r">fn-\d{4}</a></td>", page)) == 100
    assert "3 more groups" in page
    assert "lambda-destinations failures stats" in page
    assert len(re.findall(r">fn-\d{4}</a></td>", narrowed)) == 10
    assert "more groups" not in narrowed


async def test_a_failure_s_page_lists_100_deliveries_and_says_how_many_more(
    make_client, settings_for: Callable[..., Settings]
) -> None:
    # given: a failure delivered 104 times (the stored one, and 103 more)
    settings = settings_for()
    row = await stored_failure(settings)
    async with Store.from_url(settings.store) as store:
        for n in range(103):
            await store.add_delivery(DeliveryRow(row.key, f"again-{n}", "https://sqs/q", n + 2))
    client = await make_client(settings)

    # when: its page is opened
    page = await (await client.get(f"/failures/{quote(row.key, safe='')}")).text()

    # then: the count says 104, the first 100 are listed, and a line names the 4 left out and
    # the command that prints them (before: every delivery, however many)
    table = page.split('id="h-deliveries"', 1)[1].split("</section>", 1)[0]
    assert "Deliveries (104)" in table
    assert table.count("<tr><td>") == 100
    assert "4 more deliveries" in table
    assert f"lambda-destinations failures show {row.request_id} --json" in html.unescape(table)
