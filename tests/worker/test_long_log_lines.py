"""The worker's JSON lines pass a container runtime whole: at most 16 KiB each, newline included.

Docker's json-file driver and containerd/CRI-O split a longer line of stderr into pieces, which a
log collector reads as broken JSON. The worker runs here as the image runs it (``run``, JSON
lines on stderr, read from the pipe) on a handler whose bug's traceback is 300 calls deep with an
error of 300 kB, and which logs a big dict and a library's long record first.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path

from lambda_destinations.simulate import success_record
from processes import ENTRY

LINE_MAX = 16 * 1024  # Docker's and CRI's, not imported: the test states what it checks

HANDLER = """
import logging

import structlog


def ping(n, message):
    if n == 0:
        raise ValueError(message)
    pong(n - 1, message)


def pong(n, message):
    ping(n, message)


class Deep:
    name = "deep"

    async def __call__(self, message, context):
        lines = {f"line{n}": {"sku": n, "note": "é" * 200} for n in range(300)}
        structlog.get_logger("orders").warning("order seen", order=lines)
        logging.getLogger("orders.client").warning("answer: %s", "ü" * 30_000)
        ping(300, "bad order " + "€" * 100_000 + " end")


deep = Deep()
"""


def test_every_line_of_a_deep_bug_fits_in_16_kib_and_keeps_its_ids(
    sqs, make_queue, endpoint_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    # given: one record on a queue routed to the handler above
    (tmp_path / "deep_handler.py").write_text(HANDLER)
    url, _dlq = make_queue("long-lines")
    record = success_record(random.Random(3))
    sent = sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["deep_handler:deep"]}]),
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
    }

    # when: the worker drains the queue
    done = subprocess.run([*ENTRY, "run", "--once"], env=env, capture_output=True, timeout=120)

    # then: every line of its stderr fits, and is one JSON object
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.split(b"\n")
    assert lines.pop() == b""
    too_long = [len(line) + 1 for line in lines if len(line) + 1 > LINE_MAX]
    assert too_long == []
    read = [json.loads(line) for line in lines]
    by_event = {line["event"].split(":")[0]: line for line in read}

    # the bug's line: its ids whole, the traceback's ends, the frames between counted
    bug = by_event["handler deep raised an unexpected error"]
    ids = {
        "queue": url.rsplit("/", 1)[1],
        "message_id": sent["MessageId"],
        "request_id": record["requestContext"]["requestId"],
        "receive_count": 1,
        "level": "error",
        "truncated": True,
    }
    assert {key: bug.get(key) for key in ids} == ids
    assert bug["timestamp"].endswith("Z")
    traceback = bug["exception"]
    assert traceback.startswith("Traceback (most recent call last):\n")
    print(traceback[:3000])
    assert "in __call__\n" in traceback
    assert re.search(r"\n  … \d+ frames left out …\n", traceback)
    assert re.search(
        r"in ping\n    raise ValueError\(message\)\n.*ValueError: bad order €", traceback
    )
    assert traceback.endswith("€ end")

    # the handler's own lines and the library's record, each cut and saying so
    assert by_event["order seen"]["truncated"] is True
    assert by_event["order seen"]["order"]["line0"]["sku"] == 0  # the dict's first entries
    assert by_event["order seen"]["order"]["line0"]["note"].startswith("éééé")
    assert by_event["answer"]["logger"] == "orders.client"
    assert by_event["answer"]["truncated"] is True
