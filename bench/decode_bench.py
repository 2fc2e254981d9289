"""How fast ``decode()`` turns SQS message bodies into records, next to ``json.loads`` alone.

Usage: ``python bench/decode_bench.py [--n N] [--repeat R] [--seed S]``

Bodies are built from a fixed seed: a success record and a Python failure record (stack trace
included) of about 1.5 KB, each bare, inside an SNS notification and inside an EventBridge
event. For every body the script times N calls of ``json.loads`` (the floor: decode parses the
body once, so it cannot be faster) and N calls of ``decode``, keeps the best of R repeats, and
prints microseconds per record, records per second and the ratio of the two. An SNS body holds
the record as a JSON string, so decode parses it twice where json.loads parses it once.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from _args import at_least
from lambda_destinations.schemas import decode

TARGET_BYTES = 1500
ACCOUNT = "123456789012"


PRODUCTS = ("desk lamp", "oak bookshelf", "wool rug", "ceramic mug set", "standing desk")
CITIES = ("Lyon", "Porto", "Gdańsk", "Leipzig", "Valencia")


def _payload(rng: random.Random) -> dict[str, Any]:
    """An order-like request payload; ``_grow`` adds items until the record is about 1.5 KB."""
    return {
        "orderId": f"ord-{rng.randrange(10**8):08d}",
        "customer": {
            "id": f"c-{rng.randrange(10**6)}",
            "email": f"customer{rng.randrange(10**4)}@example.com",
            "tier": rng.choice(["gold", "basic"]),
        },
        "shipping": {
            "street": f"{rng.randint(1, 200)} Rue de la République",
            "city": rng.choice(CITIES),
            "postcode": f"{rng.randrange(10**5):05d}",
        },
        "items": [],
        "currency": "EUR",
        "placedAt": "2024-06-01T03:05:11.918Z",
    }


def _grow(record: dict[str, Any], items: list[Any], rng: random.Random, target: int) -> None:
    while len(json.dumps(record)) < target:
        items.append(
            {
                "sku": f"SKU-{rng.randrange(10**5):05d}",
                "name": rng.choice(PRODUCTS),
                "qty": rng.randint(1, 5),
                "price": round(rng.uniform(1, 200), 2),
            }
        )


def _base(rng: random.Random, condition: str) -> dict[str, Any]:
    request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return {
        "version": "1.0",
        "timestamp": "2024-06-01T03:05:12.340Z",
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:checkout:live",
            "condition": condition,
            "approximateInvokeCount": 1 if condition == "Success" else 3,
        },
        "requestPayload": _payload(rng),
    }


def success_record(rng: random.Random, target: int) -> dict[str, Any]:
    record = _base(rng, "Success")
    record["responseContext"] = {"statusCode": 200, "executedVersion": "12"}
    record["responsePayload"] = {"status": "CONFIRMED", "receipt": f"r-{rng.randrange(10**6)}"}
    _grow(record, record["requestPayload"]["items"], rng, target)
    return record


def failure_record(rng: random.Random, target: int) -> dict[str, Any]:
    record = _base(rng, "RetriesExhausted")
    record["responseContext"] = {
        "statusCode": 200,
        "executedVersion": "12",
        "functionError": "Unhandled",
    }
    record["responsePayload"] = {
        "errorMessage": "payment provider timed out after 3000 ms",
        "errorType": "TimeoutError",
        "requestId": record["requestContext"]["requestId"],
        "stackTrace": [
            '  File "/var/task/handler.py", line 41, in handler\n    charge(order)\n',
            '  File "/var/task/payments.py", line 88, in charge\n    raise TimeoutError(msg)\n',
        ],
    }
    _grow(record, record["requestPayload"]["items"], rng, target)
    return record


def sns(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:checkout-results",
        "Message": json.dumps(record),
        "Timestamp": "2024-06-01T03:05:12.512Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE" * 24,
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


def eventbridge(record: dict[str, Any]) -> dict[str, Any]:
    outcome = "Success" if record["requestContext"]["condition"] == "Success" else "Failure"
    return {
        "version": "0",
        "id": "3b0e4bd1-7a49-2c47-0fd6-5b7c4b0ab8a1",
        "detail-type": f"Lambda Function Invocation Result - {outcome}",
        "source": "lambda",
        "account": ACCOUNT,
        "time": "2024-06-01T03:05:12Z",
        "region": "eu-west-1",
        "resources": [
            f"arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/default",
            record["requestContext"]["functionArn"],
        ],
        "detail": record,
    }


def bodies(seed: int) -> list[tuple[str, str]]:
    """(label, body) pairs; every body is about TARGET_BYTES long, whatever its envelope."""
    rng = random.Random(seed)
    cases: list[tuple[str, str]] = []
    for kind, make in (("success", success_record), ("failure", failure_record)):
        bare = make(rng, TARGET_BYTES)
        cases.append((f"{kind} / bare", json.dumps(bare)))
        # Shrink the record inside envelopes so that the whole body stays near the target.
        overhead = len(json.dumps(sns({}))) - 2
        cases.append((f"{kind} / sns", json.dumps(sns(make(rng, TARGET_BYTES - overhead)))))
        overhead = len(json.dumps(eventbridge(bare))) - len(json.dumps(bare))
        inner = make(rng, TARGET_BYTES - overhead)
        cases.append((f"{kind} / eventbridge", json.dumps(eventbridge(inner))))
    return cases


def best_seconds_per_call(func: Callable[[str], object], body: str, n: int, repeat: int) -> float:
    """The best, over ``repeat`` runs, of the mean time of ``n`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            func(body)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=at_least(1), default=20_000, help="calls per timed run")
    parser.add_argument("--repeat", type=at_least(1), default=5, help="timed runs; the best counts")
    parser.add_argument("--seed", type=int, default=20240601, help="seed for the bodies")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()} · pydantic {version('pydantic')} · "
        f"{platform.machine()} · n={args.n} · best of {args.repeat} · seed={args.seed}"
    )
    header = (
        f"{'case':<22}{'bytes':>7}{'json.loads µs':>15}{'decode µs':>11}"
        f"{'decode rec/s':>14}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for label, body in bodies(args.seed):
        decode(body)  # fail fast, and warm up, before timing
        floor = best_seconds_per_call(json.loads, body, args.n, args.repeat)
        decoding = best_seconds_per_call(decode, body, args.n, args.repeat)
        print(
            f"{label:<22}{len(body.encode()):>7}{floor * 1e6:>15.2f}{decoding * 1e6:>11.2f}"
            f"{1 / decoding:>14,.0f}{decoding / floor:>7.1f}x"
        )


if __name__ == "__main__":
    main()
