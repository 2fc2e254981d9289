"""`healthcheck` against a port that answers, but not as the worker's ops server does: one line,
exit 1, never a traceback, never healthy."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from bad_input_helpers import cli, one_error_line

from lambda_destinations.worker import OpsServer

NOT_OURS = "is LAMBDA_DESTINATIONS_OPS_PORT the port the worker's ops server listens on?"


@contextmanager
def answering(answer: bytes, *, then_wait: float = 0.0) -> Iterator[int]:
    """A port whose every connection gets ``answer`` once its request is read, then is kept
    open ``then_wait`` seconds and closed: what another program on the port may say."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            with connection:
                if done.is_set():  # the connection that ends the wait in accept()
                    return
                connection.recv(65536)
                connection.sendall(answer)
                done.wait(then_wait)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        # Closing the listener does not end an accept() under way (the thread stayed in it
        # until join's 5 s ran out, each test): a connection does.
        with contextlib.suppress(OSError):
            socket.create_connection(listener.getsockname(), timeout=1).close()
        thread.join(5)
        listener.close()


def ask(port: int, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """healthcheck's exit code, its one error line (or "") and its whole stderr."""
    result = cli(
        "healthcheck", *args, env={"LAMBDA_DESTINATIONS_OPS_PORT": str(port)}, cwd=tmp_path
    )
    line = one_error_line(result) if result.returncode else ""
    return result.returncode, line, result.stderr


def http(status: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


HTML = b"<html>\n<head><title>Welcome</title></head>\n<body>\n<h1>It works</h1>\n</body>\n</html>\n"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        # before: a traceback (http.client.BadStatusLine), an SSH server on the port
        (b"SSH-2.0-OpenSSH_9.6\r\n", "something that is not HTTP"),
        # before: exit 0, "200": a web server on the port found the worker healthy
        (http("200 OK", HTML, "Content-Type: text/html"), "200 (text/html)"),
        # before: 6 lines of stderr, the page's HTML
        (http("500 Internal Server Error", HTML, "Content-Type: text/html"), "500 (text/html)"),
        # before: "404, the ops server has no such page": another server's 404
        (http("404 Not Found", HTML, "Content-Type: text/html"), "404 (text/html)"),
        # before: the redirect followed, to another host
        (http("302 Found", b"", "Location: http://192.0.2.1/login"), "302"),
        # before: a traceback (http.client.LineTooLong)
        (
            b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 70000 + b"\r\n\r\n",
            "something that is not HTTP",
        ),
    ],
    ids=["not-http", "html-200", "html-500", "html-404", "redirect", "huge-header"],
)
def test_a_port_another_program_answers_is_unhealthy_in_one_line(
    answer: bytes, said: str, tmp_path: Path
) -> None:
    # given: a port another program holds, answering what it answers
    with answering(answer) as port:
        # when
        code, line, stderr = ask(port, tmp_path)
    # then: unhealthy (exit 1), one line naming what answered and the setting to check
    assert code == 1, stderr
    assert line.startswith(f"error: http://127.0.0.1:{port}/healthz: answered {said}"), line
    assert line.endswith(NOT_OURS), line
    assert len(stderr.splitlines()) == 1, stderr


def test_an_answer_whose_body_stops_is_one_line_and_exit_1(tmp_path: Path) -> None:
    # given: a 503 whose body never comes whole: cut short, or kept waiting
    cut = b'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100\r\n\r\n{"status"'
    with answering(cut) as port:
        code, line, _ = ask(port, tmp_path)
    # then (before: a traceback, http.client.IncompleteRead)
    assert (code, line) == (
        1,
        f"error: http://127.0.0.1:{port}/healthz: the answer stopped short: try again",
    )
    with answering(cut, then_wait=10) as port:
        code, line, _ = ask(port, tmp_path, "--timeout", "0.5")
    # then (before: "cannot reach the AWS endpoint (timed out): check
    # LAMBDA_DESTINATIONS_ENDPOINT_URL ...", exit 4)
    assert (code, line) == (
        1,
        f"error: http://127.0.0.1:{port}/healthz: no answer within 0.5 s (--timeout)",
    )


async def test_the_ops_server_s_own_answers_are_told_as_they_are(tmp_path: Path) -> None:
    import asyncio

    # given: the worker's ops server, failing its readiness for two reasons
    problems = ["waiting for SQS", "SQS: receives failing on orders (QueueDoesNotExist)"]
    ops = OpsServer(
        host="127.0.0.1",
        port=0,
        health=list,
        readiness=lambda: problems,
        metrics=lambda _accept: (b"", "text/plain"),
    )
    await ops.start()
    try:
        port = ops.addresses[0][1]
        alive = await asyncio.to_thread(ask, port, tmp_path)
        ready = await asyncio.to_thread(ask, port, tmp_path, "--path", "/readyz")
    finally:
        await ops.close()
    # then: 200 is healthy; 503 names each problem, in one line
    assert alive[0] == 0, alive[2]
    assert ready[:2] == (
        1,
        f"error: http://127.0.0.1:{port}/readyz: 503, failing: waiting for SQS; SQS: receives "
        "failing on orders (QueueDoesNotExist)",
    )


async def test_a_path_past_ascii_is_asked_percent_encoded(tmp_path: Path) -> None:
    import asyncio

    # given: the worker's ops server
    ops = OpsServer(
        host="127.0.0.1",
        port=0,
        health=list,
        readiness=list,
        metrics=lambda _accept: (b"", "text/plain"),
    )
    await ops.start()
    try:
        port = ops.addresses[0][1]
        # when: a path with a letter past ASCII (a pasted typo)
        code, line, stderr = await asyncio.to_thread(ask, port, tmp_path, "--path", "/r\u00e9adyz")
    finally:
        await ops.close()
    # then: asked as a browser asks it, the server's 404 told in one line (before: a traceback,
    # UnicodeEncodeError, http.client sending ASCII alone)
    assert (code, line) == (
        1,
        f"error: http://127.0.0.1:{port}/r%C3%A9adyz: 404, the ops server has no such page: "
        "ask /healthz or /readyz (--path)",
    ), stderr


def test_an_answer_sent_a_byte_at_a_time_ends_within_the_timeout(tmp_path: Path) -> None:
    """Before: a server sending its body a byte a second held healthcheck for hours (--timeout
    bounded each read alone), a container's HEALTHCHECK hung; now one line at --timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.2):
                with contextlib.suppress(OSError):
                    connection.sendall(b" ")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        code, line, _ = ask(listener.getsockname()[1], tmp_path, "--timeout", "1")
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert code == 1
    assert line.endswith("no answer within 1 s (--timeout)")
    assert took < 10
