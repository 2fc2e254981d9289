"""Lambda-shaped log lines put into CloudWatch Logs on a moto server over HTTP, as Lambda writes
an invocation's (moto's Lambda writes none without Docker): the `failures logs` tests' and the
console's (imported by name: tests/ is no package)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
from ops_helpers import REGION

from tcp_proxy import AnswerCutter, aws_error

GROUP = "/aws/lambda/orders-api"
STREAM = "2026/11/20/[$LATEST]3893a1b27fac4485b47bb75b671a283c"
OTHER_ID = "0f0f0f0f-1111-4222-8333-444455556666"
# What a FilterLogEvents request holds (its X-Amz-Target header), for a proxy to find it by.
FILTER_LOG_EVENTS = b"Logs_20140328.FilterLogEvents"
DENIED = (
    "AccessDeniedException: User: arn:aws:iam::123456789012:user/ops is not authorized to "
    "perform: logs:FilterLogEvents"
)


def refusing_filter_log_events(endpoint_url: str) -> AnswerCutter:
    """A proxy to the moto server at ``endpoint_url`` that answers the first FilterLogEvents as
    AWS answers credentials not allowed it (moto allows all): :data:`DENIED`."""
    proxy = AnswerCutter(endpoint_url, FILTER_LOG_EVENTS, http=True)
    proxy.refusals = 1
    code, message = DENIED.split(": ", 1)
    proxy.refusal = aws_error(400, code, message, "json")
    return proxy


def logs_client(url: str) -> Any:
    return boto3.client("logs", region_name=REGION, endpoint_url=url)


@contextlib.contextmanager
def lambda_logs(url: str) -> Iterator[Any]:
    """A CloudWatch Logs client of the moto server at ``url``; the /aws/lambda/ log groups are
    deleted after."""
    client = logs_client(url)
    try:
        yield client
    finally:
        for group in client.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]:
            client.delete_log_group(logGroupName=group["logGroupName"])


def millis(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def invocation(
    request_id: str, start: dt.datetime, own: list[str], *, json_format: bool = False
) -> list[tuple[dt.datetime, str]]:
    """The lines Lambda writes for one invocation, a second apart from ``start``: START, the
    code's ``own`` lines, END and REPORT."""
    if json_format:
        record = {"requestId": request_id, "version": "$LATEST"}
        first = [json.dumps({"type": "platform.start", "record": record})]
        last = [
            json.dumps({"type": "platform.runtimeDone", "record": {**record, "status": "error"}}),
            json.dumps({"type": "platform.report", "record": {**record, "status": "error"}}),
        ]
    else:
        first = [f"START RequestId: {request_id} Version: $LATEST\n"]
        last = [
            f"END RequestId: {request_id}\n",
            f"REPORT RequestId: {request_id}\tDuration: 3000.00 ms\tStatus: timeout\n",
        ]
    lines = [*first, *own, *last]
    return [(start + dt.timedelta(seconds=n), text) for n, text in enumerate(lines)]


def put(client: Any, stream: str, lines: list[tuple[dt.datetime, str]], group: str = GROUP) -> None:
    existing = client.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    if not any(g["logGroupName"] == group for g in existing):
        client.create_log_group(logGroupName=group)
    streams = client.describe_log_streams(logGroupName=group)["logStreams"]
    if not any(s["logStreamName"] == stream for s in streams):
        client.create_log_stream(logGroupName=group, logStreamName=stream)
    client.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": millis(at), "message": text} for at, text in sorted(lines)],
    )


def put_last_attempt(client: Any, rid: str, at: dt.datetime) -> None:
    """The lines of the last attempt of ``rid``, whose record was written ``at``, 30 s before it
    (the runtime's logger's line, a printed one, a traceback's carriage returns, a terminal's
    escape and a bidi override), with another invocation's before and after them in the same
    stream, and another's at the same time in another stream."""
    start = at - dt.timedelta(seconds=30)
    own = [
        f"[INFO]\t2026-11-20T21:15:51.123Z\t{rid}\tcharging order 42\n",
        "printed without a request id\n",
        "[ERROR] TimeoutError: card service\rTraceback (most recent call last):\r  File x\n",
        "colour \x1b[31mred\x1b[0m and \u202eevil\n",
    ]
    put(client, STREAM, invocation(OTHER_ID, start - dt.timedelta(seconds=20), ["before"]))
    put(client, STREAM, invocation(rid, start, own))
    put(client, STREAM, invocation(OTHER_ID, start + dt.timedelta(seconds=20), ["after"]))
    put(client, "2026/11/20/[$LATEST]other", invocation(OTHER_ID, start, ["elsewhere"]))
