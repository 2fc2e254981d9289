"""A request our HTTP servers cannot parse (a request line over 8 KB) is a short 400 and one log
line: the console as the command runs it, the ops server and dev's endpoint on real ports. Idle
connections past the limit are closed for new ones, never one answering a request."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from lambda_destinations._serving import MAX_CONNECTIONS, AppRunner
from lambda_destinations.dev_endpoint import DevEndpoint, FunctionSimulation
from lambda_destinations.worker import OpsServer
from processes import reap, start_console

TOO_LONG = b"GET /failures?function=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"


def no_metrics(accept: str) -> tuple[bytes, str]:
    """An ops server's /metrics page that is empty, whatever the Accept header."""
    return b"", "text/plain"


async def send_raw(port: int, request: bytes) -> tuple[int, str]:
    """The status and body of the answer to ``request``, sent as is over a socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def _console_env(endpoint_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of `lambda-destinations console` on a store in ``tmp_path``."""
    return {
        **os.environ,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }


def test_the_console_answers_a_request_line_over_8_kb_in_one_short_line(
    endpoint_url: str, tmp_path: Path
) -> None:
    # given: the console, as `lambda-destinations console` serves it
    env = _console_env(endpoint_url, tmp_path)
    process, base = start_console(env, migrate=True)  # the console reads a store, it makes none
    try:
        port = int(base.rsplit(":", 1)[1])

        # when: a request line of 10,000-odd bytes comes
        status, body = asyncio.run(send_raw(port, TOO_LONG))
    finally:
        process.terminate()
        _out, log = process.communicate(timeout=20)
        reap(process)

    # then: a short 400 that says what to change, and one line in the log, no traceback
    assert status == 400
    assert body == "the request is too long: shorten the filters (the address)\n"
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line.strip()]
    last = json.loads(lines.pop())  # the SIGTERM that stopped it, a JSON line as the log's
    assert (last["event"], last["exit_code"]) == ("terminated", 143), log[-3000:]
    assert len(lines) == 1, log[-3000:]
    assert '"event": "request refused"' in lines[0]
    assert '"server": "console"' in lines[0]
    assert "aaaa" not in lines[0]


async def test_the_ops_server_and_devs_endpoint_answer_a_request_line_over_8_kb_in_one_line(
    moto_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    ops = OpsServer(host="127.0.0.1", port=0, health=list, readiness=list, metrics=no_metrics)
    await ops.start()
    try:
        async with DevEndpoint(moto_server, FunctionSimulation(seed=1)) as endpoint:
            dev_port = int(endpoint.url.rsplit(":", 1)[1])
            with capture_logs() as logs:
                ops_answer = await send_raw(ops.addresses[0][1], TOO_LONG)
                dev_answer = await send_raw(dev_port, TOO_LONG)
    finally:
        await ops.close()

    assert ops_answer == (
        400,
        "the request is too long: a request line or header over 8190 bytes "
        "(/healthz, /readyz and /metrics need no query)\n",
    )
    assert dev_answer == (
        400,
        "the request is too long: a request line or header over 8190 bytes\n",
    )
    assert [(e["event"], e["server"]) for e in logs] == [
        ("request refused", "ops"),
        ("request refused", "dev endpoint"),
    ]
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")]


def test_a_body_that_does_not_decode_is_one_log_line_on_any_route(
    endpoint_url: str, tmp_path: Path
) -> None:
    # given: the console, as `lambda-destinations console` serves it
    env = _console_env(endpoint_url, tmp_path)
    process, base = start_console(env, migrate=True)
    try:
        port = int(base.rsplit(":", 1)[1])

        # when: "gzip" bodies that are not, to the sign-in form and to no route at all
        answers = [
            asyncio.run(
                send_raw(
                    port,
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
                    + b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Encoding: gzip\r\nContent-Length: 7\r\n\r\ntoken=a",
                )
            )
            for path in ("/login", "/nope")
        ]
    finally:
        process.terminate()
        _out, log = process.communicate(timeout=20)
        reap(process)

    # then: each its 400 or 404, and one line in the log (before: aiohttp's "Unhandled
    # exception" and a traceback, read after the answer)
    assert [status for status, _ in answers] == [400, 404]
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line.strip()]
    last = json.loads(lines.pop())  # the SIGTERM that stopped it, a JSON line as the log's
    assert (last["event"], last["exit_code"]) == ("terminated", 143), log[-3000:]
    assert len(lines) == 2, log[-3000:]
    assert all('"event": "request refused"' in line for line in lines)
    assert all("the body does not decode" in line for line in lines)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed this connection (it sent nothing: an idle connection). A
    connection whose half-sent request the server had not read yet when it closed it ends in a
    reset (the kernel's answer to closing with bytes unread), not an end of stream: closed too."""
    try:
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_idle_connections_past_the_limit_are_closed_so_a_probe_is_answered() -> None:
    # given: the ops server, and a busy request on the console's kind of runner (a held wait)
    ops = OpsServer(host="127.0.0.1", port=0, health=list, readiness=list, metrics=no_metrics)
    await ops.start()
    port = ops.addresses[0][1]
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    try:
        # a request cut short (a slowloris) is as idle as a silent connection
        idle[1][1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with capture_logs() as logs:
            # when: 20 more connections come, then a probe
            idle += [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
            answer = await send_raw(
                port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )

        # then: the probe is answered; the 21 oldest idle connections were closed for the new
        # ones (before: all kept, until the process has no file descriptor left), the rest not
        assert answer == (200, '{"status": "alive"}')
        closed = [await _closed_by_server(reader) for reader, _ in idle[:21]]
        assert closed == [True] * 21
        assert not await _closed_by_server(idle[21][0])
        assert [e["event"] for e in logs] == ["too many connections"]
        assert logs[0]["server"] == "ops"
    finally:
        for _, writer in idle:
            writer.close()
        await ops.close()


async def test_a_connection_answering_a_request_is_not_closed_for_a_new_one() -> None:
    # given: a server whose only route answers once released, and one request held there
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/held", held)
    runner = AppRunner(app, server="test", too_long="too long")
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    busy = asyncio.ensure_future(
        send_raw(port, b"GET /held HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    )
    others: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        await entered.wait()
        # when: the limit's worth of connections more come
        others = [
            await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS + 5)
        ]
        release.set()

        # then: the held request is answered whole; idle ones went in its place
        assert await busy == (200, "done")
        assert await _closed_by_server(others[0][0])
    finally:
        release.set()
        for _, writer in others:
            writer.close()
        await runner.cleanup()
