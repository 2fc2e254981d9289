"""GET /api/invocations/{request_id} on the console's server: the JSON of `result --json`,
with the console's token, over real HTTP (aiohttp's test server on a loopback port)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from ops_helpers import ENTRY, row_of, seed

from lambda_destinations.config import load_settings
from lambda_destinations.console import ConsoleOptions, api, create_app
from lambda_destinations.simulate import failure_record, success_record
from lambda_destinations.store import DeliveryRow, Store
from processes import reap, start_console

TOKEN = "test-console-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def success_body(request_id: str, response: Any) -> str:
    record = success_record(random.Random(request_id), function="orders-api")
    record["requestContext"]["requestId"] = request_id
    record["responsePayload"] = response
    return json.dumps(record)


@pytest.fixture
async def client(store_url: str, endpoint_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    await seed(store_url, [])
    settings = load_settings(store=store_url, endpoint_url=endpoint_url, region="us-east-1")
    app = create_app(settings, ConsoleOptions(token=TOKEN))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_a_stored_outcome_is_served_as_result_json_serves_it(
    client: TestClient[Any, Any], store_url: str, endpoint_url: str
) -> None:
    failure = failure_record(
        random.Random(8),
        function="billing",
        condition="RetriesExhausted",
        error=("KeyError", "'sku'", "python"),
    )
    failed_id = failure["requestContext"]["requestId"]
    await seed(store_url, [row_of(success_body("rid-ok", {"n": 1})), row_of(json.dumps(failure))])

    ok = await client.get("/api/invocations/rid-ok", headers=AUTH)
    failed = await client.get(f"/api/invocations/{failed_id}", headers=AUTH)

    assert ok.status == 200
    served = await ok.json()
    assert served["state"] == "succeeded"
    assert served["response"] == {"n": 1}
    assert failed.status == 200
    assert (await failed.json())["error"] == {"type": "KeyError", "message": "'sku'"}
    # and: as an application may have upper-cased it (Lambda writes them in lower case)
    upper = await client.get(f"/api/invocations/{failed_id.upper()}", headers=AUTH)
    assert upper.status == 200
    assert await upper.json() == await failed.json()
    # the same JSON as the command line's
    env = {"LAMBDA_DESTINATIONS_STORE": store_url, "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url}
    printed = await asyncio.to_thread(
        subprocess.run,
        [*ENTRY, "result", "rid-ok", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(printed.stdout) == served


async def test_unknown_ids_are_404_and_the_token_is_required(
    client: TestClient[Any, Any],
) -> None:
    unknown = await client.get("/api/invocations/rid-none", headers=AUTH)
    anonymous = await client.get("/api/invocations/rid-none")
    wrong = await client.get("/api/invocations/rid-none", headers={"Authorization": "Bearer nope"})
    bad_wait = await client.get("/api/invocations/rid-none?wait=forever", headers=AUTH)
    assert unknown.status == 404
    assert await unknown.json() == {"request_id": "rid-none", "state": "unknown"}
    # compact, as the 200's JSON and `result --json` are
    assert await unknown.text() == '{"request_id":"rid-none","state":"unknown"}'
    assert anonymous.status == 401
    assert (await anonymous.json())["error"] == "send Authorization: Bearer <console token>"
    assert wrong.status == 401
    assert "the bearer token is not the console's" in (await wrong.json())["error"]
    assert bad_wait.status == 400
    # every error's JSON compact too, as the 404's (the 401's and 400's had spaces)
    assert await anonymous.text() == '{"error":"send Authorization: Bearer <console token>"}'
    assert await bad_wait.text() == '{"error":"wait must be seconds from 0 to 60"}'
    nul = await client.get("/api/invocations/rid%00", headers=AUTH)
    assert nul.status == 404
    assert (await nul.text()).startswith('{"error":"')


async def test_an_id_in_braces_is_an_unknown_id_not_an_unknown_address(
    client: TestClient[Any, Any],
) -> None:
    # A GUID as some languages print it ({...}): aiohttp's default pattern takes no brace, so
    # the answer was "no such API address", in another shape than the documented 404's.
    braced = "{b7b0b0e4-5a43-4f6e-a7f4-7f3c3d1f0c55}"
    answer = await client.get(f"/api/invocations/{quote(braced)}", headers=AUTH)
    assert answer.status == 404
    assert await answer.json() == {"request_id": braced, "state": "unknown"}


@pytest.mark.parametrize("wait", ["1_0", " 1", "1e1", "-1", "61", "nan"])
async def test_a_wait_that_is_not_plain_seconds_is_400(
    client: TestClient[Any, Any], wait: str
) -> None:
    # float() takes "1_0" (ten seconds) and " 1": the README says seconds from 0 to 60
    answer = await client.get("/api/invocations/rid-none", params={"wait": wait}, headers=AUTH)
    assert answer.status == 400
    assert "wait must be seconds from 0 to 60" in (await answer.json())["error"]


async def test_every_api_error_is_json(client: TestClient[Any, Any]) -> None:
    # aiohttp's own answers (another method, no such address) were plain text
    posted = await client.post("/api/invocations/rid-none", headers=AUTH)
    nowhere = await client.get("/api/invocations/", headers=AUTH)
    deeper = await client.get("/api/invocations/a/b", headers=AUTH)
    assert posted.status == 405
    assert posted.headers["Allow"]
    assert await posted.json() == {"error": "the API takes GET, not POST"}
    for answer in (nowhere, deeper):
        assert answer.status == 404
        assert answer.content_type == "application/json"
        assert "no such API address" in (await answer.json())["error"]


async def test_wait_returns_a_record_stored_while_the_request_waits(
    client: TestClient[Any, Any], store_url: str
) -> None:
    later = str(uuid.uuid4())
    row = row_of(success_body(later, "done"))
    asking = asyncio.create_task(client.get(f"/api/invocations/{later}?wait=30", headers=AUTH))
    await asyncio.sleep(0.5)
    assert not asking.done()
    async with Store.from_url(store_url) as worker_store:
        await worker_store.save_invocation(
            row, DeliveryRow(key=row.key, message_id="m-1", queue=row.queue, receive_count=1)
        )
    answer = await asyncio.wait_for(asking, 30)
    assert answer.status == 200
    assert (await answer.json())["response"] == "done"


@pytest.mark.parametrize(
    "ident",
    [
        "not-a-request-id",
        "6c2d1f9e",
        "6c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5fx",
        "stream:x",
        "%20",
        # 36 characters that uuid.UUID reads as a UUID, none in Lambda's 8-4-4-4-12 form
        "6_2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f",
        "%2Bc2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f",
        "6c2d1f9e3b4a4c1d9e8f0a1b2c3d4e5f----",
        "%D9%A7c2d1f9e-3b4a-4c1d-9e8f-0a1b2c3d4e5f",
    ],
)
async def test_a_wait_for_an_id_no_record_can_come_under_is_answered_at_once(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch, ident: str
) -> None:
    # given: no wait slot free: any wait would be refused with 503
    monkeypatch.setattr(api, "MAX_WAITS", 0)

    # when: a wait for an id that is no request id (a word, one cut short, no key form)
    answer = await client.get(f"/api/invocations/{ident}?wait=60", headers=AUTH)

    # then: answered at once as `result --wait` answers it, unknown, holding no wait (before:
    # it waited the whole minute, holding one of the process's waits)
    assert answer.status == 404, await answer.text()
    assert await answer.json() == {"request_id": unquote(ident).strip(), "state": "unknown"}
    # and a request id is still waited for (refused here: no wait slot is free)
    waited = await client.get(f"/api/invocations/{uuid.uuid4()}?wait=60", headers=AUTH)
    assert waited.status == 503


@pytest.fixture
async def served(
    store_url: str, endpoint_url: str
) -> AsyncIterator[tuple[int, asyncio.Task[None]]]:
    """The console as `console` serves it (not aiohttp's test server, which cancels a handler
    whose client left): its port, and the task serving it."""
    from lambda_destinations.console.app import serve

    await seed(store_url, [])
    settings = load_settings(store=store_url, endpoint_url=endpoint_url, region="us-east-1")
    ports: asyncio.Queue[int] = asyncio.Queue()
    serving = asyncio.create_task(
        serve(settings, ConsoleOptions(token=TOKEN, port=0), lambda o: ports.put_nowait(o.port))
    )
    port = await asyncio.wait_for(ports.get(), 30)
    yield port, serving
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving


async def _open_wait(port: int, request_id: str) -> asyncio.StreamWriter:
    """A wait of a minute, asked over a raw connection the test may drop."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /api/invocations/{request_id}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    await writer.drain()
    return writer


async def _held(count: int) -> bool:
    for _ in range(40):
        if api._waits == count:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_wait_whose_client_left_ends(served: tuple[int, asyncio.Task[None]]) -> None:
    # given: a wait of a minute, held
    port, _serving = served
    writer = await _open_wait(port, str(uuid.uuid4()))
    assert await _held(1)

    # when: its client leaves
    writer.close()

    # then: the wait ends within a second or so (before: it read on for the whole minute)
    assert await _held(0)


async def test_the_console_stops_at_once_with_waits_open(
    served: tuple[int, asyncio.Task[None]],
) -> None:
    # given: two waits of a minute, held
    port, serving = served
    writers = [await _open_wait(port, str(uuid.uuid4())) for _ in range(2)]
    assert await _held(2)

    # when: the console stops (Ctrl-C or SIGTERM cancel it)
    stopping = asyncio.get_running_loop().time()
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving

    # then: within a couple of seconds (before: aiohttp's 60 s for the open requests)
    assert asyncio.get_running_loop().time() - stopping < 5
    for writer in writers:
        writer.close()


async def test_waits_past_the_limit_are_refused_with_503(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the limit at two waits, both held
    monkeypatch.setattr(api, "MAX_WAITS", 2)
    held = [
        asyncio.create_task(client.get(f"/api/invocations/{uuid.uuid4()}?wait=2", headers=AUTH))
        for _ in range(2)
    ]
    assert await _held(2)

    # when: a third asks to wait; and one asks without waiting
    third = uuid.uuid4()
    refused = await client.get(f"/api/invocations/{third}?wait=2", headers=AUTH)
    plain = await client.get(f"/api/invocations/{third}", headers=AUTH)

    # then: the third is 503 with Retry-After and a line; a read without wait is served
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    assert "waits are held already" in (await refused.json())["error"]
    assert plain.status == 404
    assert [(await answer).status for answer in held] == [404, 404]
    assert api._waits == 0


def test_a_console_that_made_its_own_token_says_where_the_token_is(
    sqlite_url: str, endpoint_url: str
) -> None:
    # given: `lambda-destinations console` with no LAMBDA_DESTINATIONS_CONSOLE_TOKEN, as dev's
    # is: the sign-in URL it prints is the only place its token is
    env = {
        **os.environ,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }
    env.pop("LAMBDA_DESTINATIONS_CONSOLE_TOKEN", None)
    process, base = start_console(env, migrate=True)
    try:
        # when: the API is asked with no token, and with one that is not the console's
        def refused(headers: dict[str, str]) -> tuple[int, str]:
            url = f"{base}/api/invocations/rid-none"  # http:// on loopback, read from its line
            request = urllib.request.Request(url, headers=headers)  # noqa: S310
            with pytest.raises(urllib.error.HTTPError) as answered:
                urllib.request.urlopen(request, timeout=10)  # noqa: S310
            return answered.value.code, json.loads(answered.value.read())["error"]

        none = refused({})
        wrong = refused({"Authorization": "Bearer not-it"})
    finally:
        process.terminate()
        reap(process)
        if process.stderr is not None:
            process.stderr.close()

    # then: 401, and the line says where the token is (no variable holds it)
    where = "the one in the sign-in URL the console printed at start (/login?token=...)"
    assert none == (401, f"send Authorization: Bearer <console token>: the token is {where}")
    assert wrong == (401, f"the bearer token is not the console's: send {where}")
