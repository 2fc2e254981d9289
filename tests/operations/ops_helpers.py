"""Helpers of the operator-command tests (imported by name: tests/ is no package)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import pty
import random
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lambda_destinations.handlers.persist import invocation_row
from lambda_destinations.schemas import decode
from lambda_destinations.simulate import failure_record
from lambda_destinations.store import DeliveryRow, InvocationRow, Store
from processes import ctrl_c_as_in_a_terminal
from tcp_proxy import AnswerCutter

REGION = "us-east-1"
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures"
# The environment of an operator whose AWS credentials are not set (expired, another shell):
# none in variables, files or the instance metadata.
NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 110,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``lambda-destinations`` as a user would: a new process, its real entry point."""
    return subprocess.run(
        [*ENTRY, *args],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input if input is not None else "",
        cwd=cwd,
    )


def cli_in_a_terminal(*args: str, env: dict[str, str], width: int) -> tuple[int, list[str]]:
    """Run ``lambda-destinations`` with stdout and stderr on a terminal ``width`` columns wide
    (a pseudo-terminal, its window size set as a terminal emulator sets it): its exit status
    and the lines it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 24, width, 0, 0))
        # COLUMNS and LINES, where set, would win over the terminal's size (shutil)
        inherited = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        os.execve(ENTRY[0], [*ENTRY, *args], {**inherited, **env})  # noqa: S606 - no shell
    written = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        written += chunk
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), written.decode().split("\r\n")[:-1]


def ctrl_c_at_the_question(*args: str, env: dict[str, str]) -> tuple[int | None, str]:
    """Run ``lambda-destinations`` on a terminal, press Ctrl-C once it asks its question
    (``[y/N]``), and give it 10 s to end: its exit status (None if it did not end) and what it
    wrote. A process that did not end is killed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
        os.execve(ENTRY[0], [*ENTRY, *args], {**os.environ, **env})  # noqa: S606 - no shell
    written, pressed = b"", None
    while pressed is None or time.monotonic() < pressed + 10:
        if not select.select([fd], [], [], 0.2)[0]:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
            continue
        try:
            written += os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        # "[y/N]:" from click, then input()'s " ", written with the GIL let go, before its read
        if pressed is None and b"[y/N]: " in written:
            _until_asleep(pid)
            os.write(fd, b"\x03")  # the terminal's Ctrl-C: SIGINT to its foreground
            pressed = time.monotonic()
    ended, status = os.waitpid(pid, os.WNOHANG)
    while not ended and pressed is not None and time.monotonic() < pressed + 10:
        time.sleep(0.05)  # its terminal closed: it is on its way out
        ended, status = os.waitpid(pid, os.WNOHANG)
    if not ended:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    return (os.waitstatus_to_exitcode(status) if ended else None), written.decode()


def _until_asleep(pid: int, within: float = 10) -> None:
    """Wait until ``pid``'s main thread sleeps (after input()'s prompt: in its read of the
    terminal). A Ctrl-C that came between writing the question and that read, with the machine
    busy, was caught by Python's C handler and left for the next bytecode, which came only
    after an answer: the question waited on, though a person's Ctrl-C is never that quick."""
    ends = time.monotonic() + within
    while time.monotonic() < ends:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
            if stat.rpartition(")")[2].split()[0] == "S":
                return
        time.sleep(0.02)


async def cli_through(
    cutter: AnswerCutter, cli_env: dict[str, str], *args: str, ctrl_c: bool = False
) -> tuple[int | None, bytes, bytes, str]:
    """Run the CLI as a user runs it, its endpoint behind ``cutter``: (exit, out, err, the
    proxy's URL). With ``ctrl_c``, a Ctrl-C once the cutter holds back an answer (the call
    under way)."""
    async with cutter.running() as proxied:
        process = await asyncio.create_subprocess_exec(
            *ENTRY,
            *args,
            env={**os.environ, **cli_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": proxied},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=ctrl_c_as_in_a_terminal,
        )
        communicating = asyncio.ensure_future(process.communicate())
        if ctrl_c:
            holding = asyncio.ensure_future(cutter.holding.wait())
            await asyncio.wait({communicating, holding}, timeout=60, return_when="FIRST_COMPLETED")
            holding.cancel()
            if not communicating.done():
                process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(communicating, 120)
    return process.returncode, out, err, proxied


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def body_of(record: dict[str, Any]) -> str:
    return json.dumps(record)


def row_of(
    body: str, attributes: dict[str, Any] | None = None, queue: str = QUEUE
) -> InvocationRow:
    """The row the persist handler stores for a message body."""
    return invocation_row(decode(body, attributes), queue)


async def seed(store_url: str, rows: Sequence[InvocationRow]) -> None:
    """Save rows as the worker would (one delivery each), on a migrated store."""
    async with Store.from_url(store_url) as store:
        await store.migrate()
        for n, row in enumerate(rows):
            await store.save_invocation(
                row,
                DeliveryRow(key=row.key, message_id=f"msg-{n}", queue=row.queue, receive_count=1),
                complete_handler="persist",
            )


def seed_sync(store_url: str, rows: Sequence[InvocationRow]) -> None:
    asyncio.run(seed(store_url, rows))


def rng(seed_value: int = 1) -> random.Random:
    return random.Random(seed_value)


def receive_all(sqs: Any, url: str, *, visibility: int = 120) -> list[dict[str, Any]]:
    """Every visible message of a queue, each once (hidden for ``visibility`` seconds)."""
    found: dict[str, dict[str, Any]] = {}
    empty = 0
    while empty < 2:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=visibility,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            empty += 1
            continue
        for message in got:
            found[message["MessageId"]] = message
    return list(found.values())


def send_all(sqs: Any, url: str, bodies: Sequence[str], **extra: Any) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body, **extra}
            for i, body in enumerate(bodies[start : start + 10])
        ]
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response


def count_messages(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def at(minutes_ago: float) -> str:
    """A record timestamp ``minutes_ago`` minutes before now, as Lambda writes them."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def failure_body(
    seed_value: int,
    *,
    function: str = "orders-api",
    error: tuple[str | None, str, str] | None = ("TimeoutError", "Task timed out", "python"),
    condition: str = "RetriesExhausted",
    minutes_ago: float = 10,
    payload: Any = None,
) -> tuple[str, dict[str, Any]]:
    """A failure record's body (and the record) with a timestamp relative to now."""
    record = failure_record(
        random.Random(seed_value),
        function=function,
        condition=condition,
        error=error,
        request_payload=payload,
    )
    record["timestamp"] = at(minutes_ago)
    return json.dumps(record), record


def fifo_queue_with_dlq(sqs: Any, name: str, groups: Sequence[str]) -> tuple[str, str]:
    """A FIFO queue ``name``.fifo whose FIFO DLQ holds a failure record in each of ``groups``
    (a group id per message, in order): their URLs."""
    fifo = {"FifoQueue": "true"}
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": "3"}
    url = sqs.create_queue(
        QueueName=f"{name}.fifo", Attributes={**fifo, "RedrivePolicy": json.dumps(policy)}
    )["QueueUrl"]
    for n, group in enumerate(groups):
        sqs.send_message(
            QueueUrl=dlq_url,
            MessageBody=failure_body(n)[0],
            MessageGroupId=group,
            MessageDeduplicationId=f"d-{n}",
        )
    return url, dlq_url


def group_ids(sqs: Any, url: str) -> list[str]:
    """The message group ids of the messages ``url`` holds (up to ten), sorted."""
    found = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
    ).get("Messages", [])
    return sorted(m["Attributes"]["MessageGroupId"] for m in found)


def table_with_stream(dynamodb: Any, table: str) -> str:
    """A DynamoDB table ``table`` (key ``id``, a string) whose stream carries each new item;
    the stream's ARN."""
    created = dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    return str(created["TableDescription"]["LatestStreamArn"])
