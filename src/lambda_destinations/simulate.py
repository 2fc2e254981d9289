"""Realistic destination messages for `dev`, `simulate`, tests and benchmarks.

The shapes follow what Lambda sends: invocation records for successes and for failures of
several error types and conditions, some wrapped in SNS or EventBridge envelopes, stream
on-failure records, legacy DLQ messages, and a few poison messages no Lambda would send. On
request, a share of the failure records goes to an S3 bucket instead, as Lambda writes them
there when a function's on-failure destination is a bucket.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any, Literal

REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTIONS = ("orders-api", "billing-worker", "email-sender", "thumbnailer")

Target = Literal["success", "failure"]

# (errorType, errorMessage, runtime) seen from real Python and Node.js functions.
ERRORS: tuple[tuple[str | None, str, str], ...] = (
    ("TimeoutError", "Task timed out after 3.00 seconds", "python"),
    ("ValueError", "invalid order id: 'abc'", "python"),
    ("KeyError", "'customer_id'", "python"),
    (
        "Runtime.ExitError",
        "RequestId: {rid} Error: Runtime exited with error: signal: killed",
        "python",
    ),
    ("TypeError", "Cannot read properties of undefined (reading 'id')", "node"),
    (None, "RequestId: {rid} Process exited before completing request", "node"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatedMessage:
    """One SQS message to send, and what the worker should make of it."""

    body: str
    target: Target  # which destination queue Lambda would use
    poison: bool = False
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    key: str | None = None  # the record key a valid message should be stored under
    record: dict[str, Any] | None = None  # the invocation record the body carries, if any
    # Where Lambda writes the record (the body) in a bucket that is the function's on-failure
    # destination, when it goes there rather than to the queue: the bucket's notification
    # then brings it to the failure queue
    s3_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionLog:
    """The lines a failed invocation's function wrote to CloudWatch Logs, as Lambda writes them:
    one log stream of its log group, each line with its time in milliseconds."""

    log_group: str
    log_stream: str
    events: list[tuple[int, str]]


# Lambda retries a failed asynchronous invocation after about 1 minute, then 2 more.
_ATTEMPTS_BEFORE = (dt.timedelta(minutes=3), dt.timedelta(minutes=2), dt.timedelta(0))
_LINE_APART = dt.timedelta(milliseconds=590)  # an attempt's lines over its 2.95 s


def _timestamp(rng: random.Random, at: dt.datetime | None = None) -> str:
    """A time in the hour before now, so ``--since 1h`` and ``failures stats`` find it: ``at``
    when given (the draws are made all the same, so the rest of the record is too)."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=rng.randrange(60, 3600), milliseconds=rng.randrange(0, 1000)
    )
    return lambda_time(at or moment)


def lambda_time(moment: dt.datetime) -> str:
    """A time as Lambda writes it in records: ``2024-05-01T12:00:00.123Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _request_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def function_arn(name: str, qualifier: str | None = "$LATEST") -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def order_payload(rng: random.Random) -> dict[str, Any]:
    return {
        "orderId": f"ord-{rng.randrange(10**6):06d}",
        "customer": {"id": f"c-{rng.randrange(10**4)}", "tier": rng.choice(["free", "pro"])},
        "items": [
            {"sku": f"sku-{rng.randrange(1000)}", "qty": rng.randrange(1, 5)}
            for _ in range(rng.randrange(1, 6))
        ],
        "total": round(rng.uniform(5, 500), 2),
    }


def success_record(
    rng: random.Random, *, function: str | None = None, at: dt.datetime | None = None
) -> dict[str, Any]:
    name = function or rng.choice(FUNCTIONS)
    payload = order_payload(rng)
    return {
        "version": "1.0",
        "timestamp": _timestamp(rng, at),
        "requestContext": {
            "requestId": _request_id(rng),
            "functionArn": function_arn(name, rng.choice(["$LATEST", "live", "7"])),
            "condition": "Success",
            "approximateInvokeCount": 1,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": {"statusCode": 200, "orderId": payload["orderId"], "ok": True},
    }


def failure_record(
    rng: random.Random,
    *,
    function: str | None = None,
    condition: str | None = None,
    error: tuple[str | None, str, str] | None = None,
    request_payload: Any = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    name = function or rng.choice(FUNCTIONS)
    request_id = _request_id(rng)
    condition = condition or rng.choice(
        ["RetriesExhausted"] * 6 + ["EventAgeExceeded", "ZeroReservedConcurrency"]
    )
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": _timestamp(rng, at),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn(name, rng.choice(["$LATEST", "live", None])),
            "condition": condition,
            "approximateInvokeCount": 3 if condition == "RetriesExhausted" else 1,
        },
        "requestPayload": request_payload if request_payload is not None else order_payload(rng),
    }
    if condition != "RetriesExhausted":
        # The function never ran: Lambda sends no response.
        return record
    error_type, message, runtime = error or rng.choice(ERRORS)
    response: dict[str, Any] = {"errorMessage": message.format(rid=request_id)}
    if error_type is not None:
        response["errorType"] = error_type
        if runtime == "python":
            response["requestId"] = request_id
            response["stackTrace"] = [
                '  File "/var/task/app.py", line 42, in handler\n    return process(event)\n',
                f'  File "/var/task/orders.py", line 17, in process\n    raise {error_type}(...)\n',
            ]
        else:
            response["trace"] = [
                f"{error_type}: {message}",
                "    at Runtime.handler (/var/task/index.js:12:19)",
            ]
    record["responseContext"] = {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    record["responsePayload"] = response
    return record


def sns_wrap(
    record: dict[str, Any], rng: random.Random, at: dt.datetime | None = None
) -> dict[str, Any]:
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:lambda-destinations"
    return {
        "Type": "Notification",
        "MessageId": _request_id(rng),
        "TopicArn": topic,
        "Message": json.dumps(record),
        "Timestamp": _timestamp(rng, at),
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:1",
    }


def eventbridge_wrap(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    succeeded = record["requestContext"]["condition"] == "Success"
    return {
        "version": "0",
        "id": _request_id(rng),
        "detail-type": "Lambda Function Invocation Result - "
        + ("Success" if succeeded else "Failure"),
        "source": "lambda",
        "account": ACCOUNT,
        "time": record["timestamp"][:19] + "Z",
        "region": REGION,
        "resources": [
            f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
            record["requestContext"]["functionArn"],
        ],
        "detail": record,
    }


def kinesis_failure(rng: random.Random, at: dt.datetime | None = None) -> dict[str, Any]:
    start = rng.getrandbits(160)
    return {
        "requestContext": {
            "requestId": _request_id(rng),
            "functionArn": function_arn("stream-consumer", None),
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 4,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": _timestamp(rng, at),
        "KinesisBatchInfo": {
            "shardId": f"shardId-{rng.randrange(4):012d}",
            "startSequenceNumber": str(start),
            "endSequenceNumber": str(start + rng.randrange(1, 500)),
            "approximateArrivalOfFirstRecord": _timestamp(rng, at),
            "approximateArrivalOfLastRecord": _timestamp(rng, at),
            "batchSize": rng.randrange(1, 500),
            "streamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/orders",
        },
    }


def legacy_dlq(rng: random.Random) -> SimulatedMessage:
    request_id = _request_id(rng)
    return SimulatedMessage(
        body=json.dumps(order_payload(rng)),
        target="failure",
        attributes={
            "RequestID": {"DataType": "String", "StringValue": request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {
                "DataType": "String",
                "StringValue": f"{lambda_time(dt.datetime.now(dt.UTC))} {request_id} "
                "Task timed out after 3.00 seconds",
            },
        },
        key=f"{request_id}:legacy-dlq",
    )


POISON_BODIES = (
    "not json at all",
    '{"truncated": ',
    '"just a string"',
    "[1, 2, 3]",
    '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}',
    '{"version": "1.0", "timestamp": "2026-11-20T10:00:00Z", "requestPayload": {}}',
    '{"Type": "Notification", "Message": "not a record", '
    '"TopicArn": "arn:aws:sns:us-east-1:123456789012:t"}',
)


def s3_key(record: dict[str, Any], rng: random.Random) -> str:
    """The key Lambda writes an asynchronous invocation's record at, in a bucket that is its
    on-failure destination: ``aws/lambda/async/FUNCTION/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-UUID``,
    dated by the record's time."""
    name = record["requestContext"]["functionArn"].split(":")[6]
    moment = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    return f"aws/lambda/async/{name}/{moment:%Y/%m/%d/%Y-%m-%dT%H.%M.%S}-{_request_id(rng)}"


def _key(record: dict[str, Any]) -> str:
    context = record["requestContext"]
    return f"{context['requestId']}:{context['condition']}"


def _enveloped(
    record: dict[str, Any], rng: random.Random, at: dt.datetime | None
) -> dict[str, Any]:
    """The body a destination queue gets: the record, in an SNS (15%) or EventBridge (15%)
    envelope or bare."""
    envelope = rng.random()
    if envelope < 0.15:
        return sns_wrap(record, rng, at)
    if envelope < 0.30:
        return eventbridge_wrap(record, rng)
    return record


def messages(
    n: int,
    *,
    seed: int = 7,
    poison_every: int = 25,
    in_order: bool = False,
    s3_every: int = 0,
) -> Iterator[SimulatedMessage]:
    """``n`` messages in a realistic mix; every ``poison_every``-th is a poison message.

    Each record's time is drawn at random in the hour before now; ``in_order`` spreads the same
    hour over the messages in the order given instead, as a destination queue delivers records
    (about in the order their invocations ended), and leaves the rest of each record as it was.
    ``s3_every``: every ``s3_every``-th invocation failure record goes to a bucket instead of
    the failure queue (its ``s3_key``, the bare record as body). Their keys are drawn from a
    random generator of their own, so a seed sends the same records, with the same request ids,
    whether some go to a bucket or none.
    """
    rng = random.Random(seed)
    keys = random.Random(f"s3:{seed}")
    failures = 0
    now = dt.datetime.now(dt.UTC)
    for index in range(n):
        at = now - dt.timedelta(seconds=60 + 3540 * (n - 1 - index) / n) if in_order else None
        if poison_every and index % poison_every == poison_every - 1:
            yield SimulatedMessage(
                body=POISON_BODIES[(index // poison_every) % len(POISON_BODIES)],
                target=rng.choice(["success", "failure"]),
                poison=True,
            )
            continue
        roll = rng.random()
        if roll < 0.02:
            yield legacy_dlq(rng)
            continue
        if roll < 0.05:
            record = kinesis_failure(rng, at)
            info = record["KinesisBatchInfo"]
            key = (
                f"stream:{record['requestContext']['functionArn']}:{info['streamArn']}:"
                f"{info['shardId']}:{info['startSequenceNumber']}-{info['endSequenceNumber']}"
            )
            yield SimulatedMessage(body=json.dumps(record), target="failure", key=key)
            continue
        succeeded = roll < 0.55
        record = success_record(rng, at=at) if succeeded else failure_record(rng, at=at)
        body = _enveloped(record, rng, at)
        in_bucket = None
        if not succeeded:
            failures += 1
            if s3_every and failures % s3_every == 0:
                body, in_bucket = record, s3_key(record, keys)  # Lambda writes the bare record
        yield SimulatedMessage(
            body=json.dumps(body),
            target="success" if succeeded else "failure",
            key=_key(record),
            record=record,
            s3_key=in_bucket,
        )


def function_log(record: dict[str, Any]) -> FunctionLog | None:
    """The log lines of a simulated failure's attempts, in the text format Lambda's Python and
    Node.js runtimes write (START, the code's own lines, the error, END, REPORT); None for a
    record whose function never ran (EventAgeExceeded, ZeroReservedConcurrency) or that
    succeeded."""
    context = record["requestContext"]
    response = record.get("responsePayload")
    if context.get("condition") != "RetriesExhausted" or not isinstance(response, dict):
        return None
    request_id, name = context["requestId"], context["functionArn"].split(":")[6]
    end = dt.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    attempts = _ATTEMPTS_BEFORE[-int(context.get("approximateInvokeCount", 1)) :]
    events: list[tuple[int, str]] = []
    for before in attempts:
        start = end - before - dt.timedelta(seconds=3)
        lines = _attempt_lines(request_id, record["requestPayload"], response, start)
        events.extend(
            (int((start + _LINE_APART * index).timestamp() * 1000), line)
            for index, line in enumerate(lines)
        )
    stream = f"{end:%Y/%m/%d}/[$LATEST]{request_id.replace('-', '')}"
    return FunctionLog(f"/aws/lambda/{name}", stream, events)


def _attempt_lines(
    request_id: str, payload: Any, response: dict[str, Any], start: dt.datetime
) -> list[str]:
    order = payload.get("orderId") if isinstance(payload, dict) else None
    error = response.get("errorType") or "Error"
    message = response.get("errorMessage", "")
    if "stackTrace" in response:  # Python: the logger names the request id, print() does not
        failed = [
            f"[ERROR] {error}: {message}\rTraceback (most recent call last):\r"
            + "\r".join(line.rstrip("\n") for line in response["stackTrace"])
        ]
        own = [
            f"[INFO]\t{lambda_time(start)}\t{request_id}\tprocessing order {order}",
            f"loaded order {order} from the table",
        ]
    else:  # Node.js: console.log names the request id too
        failed = [f"{lambda_time(start)}\t{request_id}\tERROR\tInvoke Error \t{error}: {message}"]
        own = [f"{lambda_time(start)}\t{request_id}\tINFO\tprocessing order {order}"]
    return [
        f"START RequestId: {request_id} Version: $LATEST",
        *own,
        *failed,
        f"END RequestId: {request_id}",
        f"REPORT RequestId: {request_id}\tDuration: 2950.12 ms\tBilled Duration: 2951 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 71 MB",
    ]
