"""End-to-end drain benchmark: the worker against a bare aiobotocore receive+delete loop.

The same simulated records (valid ones, ~1.5 KB each) are pre-filled into the same queue of
the same endpoint before each variant, then drained:

(a) floor:  ceil(concurrency / 10) loops of ReceiveMessage(10) + DeleteMessageBatch;
(b) worker: `Worker(settings).run(once=True)` persisting every record to SQLite;
(c) with ``--noop``, also the worker with a handler that does nothing instead of persist: what
    receiving, decoding, dispatching and acknowledging cost without the store.

Each variant runs in a fresh subprocess so that CPU time and peak memory (ru_maxrss) are its
own; CPU is counted only around the drain (imports and start-up excluded). Prints messages/s,
client CPU µs per message (with its user and system split), peak RSS, and the worker/floor
ratios.

    python bench/e2e_bench.py --endpoint http://127.0.0.1:4566 -n 5000   # LocalStack
    python bench/e2e_bench.py --moto -n 300                                # moto subprocess
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _args import at_least

REGION = "us-east-1"


def _env() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


def fill(endpoint: str, queue_name: str, n: int, seed: int) -> str:
    """Create the queue and send ``n`` valid simulated records; return its URL."""
    import boto3

    from lambda_destinations.simulate import messages

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url: str = sqs.create_queue(QueueName=queue_name, Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    bodies = [m.body for m in messages(n, seed=seed, poison_every=0) if not m.attributes]
    while len(bodies) < n:  # legacy DLQ messages are left out: they need attributes
        bodies.append(bodies[len(bodies) % max(1, len(bodies))])
    for start in range(0, n, 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return url


async def drain_floor(endpoint: str, url: str, concurrency: int) -> int:
    from aiobotocore.session import get_session

    session = get_session()
    done = 0
    async with session.create_client("sqs", endpoint_url=endpoint, region_name=REGION) as sqs:

        async def loop() -> None:
            nonlocal done
            while True:
                got = await sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                _WINDOW["sqs_calls"] = _WINDOW.get("sqs_calls", 0) + 1
                messages = got.get("Messages", [])
                if not messages:
                    return
                _WINDOW["sqs_calls"] += 1
                await sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
                done += len(messages)

        await sqs.get_queue_attributes(QueueUrl=url)  # connect before the clock starts
        started = _start_window()
        await asyncio.gather(*(loop() for _ in range(math.ceil(concurrency / 10))))
        _report_window(started)
    return done


class NoopHandler:
    """Does nothing, idempotently (so no claim either)."""

    name = "noop"
    _records_completion = True

    async def __call__(self, message: object, context: object) -> None:
        return None


async def drain_worker(
    endpoint: str, url: str, concurrency: int, store: str, *, noop: bool = False
) -> int:
    from lambda_destinations.config import RouteConfig, load_settings
    from lambda_destinations.handlers.registry import HandlerRegistry
    from lambda_destinations.worker import Worker

    settings = load_settings(
        queues=[url],
        endpoint_url=endpoint,
        region=REGION,
        store=store,
        concurrency=concurrency,
        wait_time=1,
        log_level="warning",
    )
    registry = None
    if noop:
        settings = settings.model_copy(update={"routes": [RouteConfig(handlers=["noop"])]})
        registry = HandlerRegistry(settings)
        registry.add(NoopHandler())
    async with Worker(settings, registry=registry) as worker:
        started = _start_window()
        stats = await worker.run(once=True)
        _report_window(started)
    _WINDOW["sqs_calls"] = sum(stats.sqs_calls.values())
    return int(stats.outcomes["ack"])


_WINDOW: dict[str, float] = {}


def _start_window() -> tuple[float, os.times_result, float]:
    return time.process_time(), os.times(), time.perf_counter()


def _report_window(started: tuple[float, os.times_result, float]) -> None:
    cpu, times, wall = started
    now = os.times()
    _WINDOW["cpu"] = time.process_time() - cpu
    # The split (at the clock tick's resolution): system time is mostly the store's writes.
    _WINDOW["user"] = now.user - times.user
    _WINDOW["sys"] = now.system - times.system
    _WINDOW["wall"] = time.perf_counter() - wall


def run_variant(args: argparse.Namespace) -> None:
    """Child process: drain the pre-filled queue with one variant; print a JSON result."""
    _env()
    from lambda_destinations.logs import configure_logging

    configure_logging("json", "warning")
    if args.variant == "floor":
        done = asyncio.run(drain_floor(args.endpoint, args.url, args.concurrency))
    else:
        done = asyncio.run(
            drain_worker(
                args.endpoint, args.url, args.concurrency, args.store, noop=args.variant == "noop"
            )
        )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"done": done, **_WINDOW, "peak_mib": peak_kib / 1024}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="SQS endpoint URL (LocalStack, say)")
    parser.add_argument("--moto", action="store_true", help="start a moto server subprocess")
    parser.add_argument("-n", type=at_least(1), default=300, help="records per variant")
    parser.add_argument("--concurrency", type=at_least(1), default=32)
    parser.add_argument(
        "--repeat",
        type=at_least(1),
        default=1,
        help="runs per variant, alternating (medians reported)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--noop", action="store_true", help="also run the worker with a do-nothing handler"
    )
    parser.add_argument("--variant", choices=["floor", "worker", "noop"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        run_variant(args)
        return
    _env()
    server = None
    if args.moto:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        args.endpoint = f"http://127.0.0.1:{port}"
        time.sleep(2)
    if not args.endpoint:
        parser.error("give --endpoint URL or --moto")
    runs: dict[str, list[dict[str, float]]] = {"floor": [], "worker": []}
    if args.noop:
        runs["noop"] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Variants alternate, so that a slow spell of a shared machine hits both alike.
            for attempt in range(args.repeat):
                for variant in runs:
                    url = fill(
                        args.endpoint, f"bench-{variant}-{uuid.uuid4().hex[:6]}", args.n, args.seed
                    )
                    store = f"sqlite:///{Path(tmp) / f'{variant}-{attempt}.db'}"
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--variant",
                            variant,
                            "--url",
                            url,
                            "--endpoint",
                            args.endpoint,
                            "--concurrency",
                            str(args.concurrency),
                            "--store",
                            store,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    # More than n: a deleted message came back (moto does that under concurrent
                    # receivers, and SQS may); the figures stay per record sent.
                    if result["done"] < args.n:
                        raise SystemExit(f"{variant} drained only {result['done']} of {args.n}")
                    runs[variant].append(result)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    print(
        f"endpoint {args.endpoint}  records {args.n}  concurrency {args.concurrency}  "
        f"runs {args.repeat} (medians)"
    )
    print(
        f"{'variant':8} {'msg/s':>9} {'CPU µs/msg':>11} {'user':>6} {'sys':>6} "
        f"{'peak MiB':>9} {'SQS calls':>10}"
    )
    results = {variant: _medians(found) for variant, found in runs.items()}
    for variant, r in results.items():
        print(
            f"{variant:8} {args.n / r['wall']:9.0f} {r['cpu'] / args.n * 1e6:11.0f} "
            f"{r['user'] / args.n * 1e6:6.0f} {r['sys'] / args.n * 1e6:6.0f} "
            f"{r['peak_mib']:9.1f} {r['sqs_calls']:10.0f}"
        )
    # Ratios of each alternating pair, then their median: robust to the machine's drift.
    for variant in runs:
        if variant == "floor":
            continue
        pairs = list(zip(runs["floor"], runs[variant], strict=True))
        throughput = statistics.median(f["wall"] / w["wall"] for f, w in pairs)
        cpu = statistics.median(w["cpu"] / f["cpu"] for f, w in pairs)
        memory = statistics.median(w["peak_mib"] / f["peak_mib"] for f, w in pairs)
        print(
            f"{variant}/floor: throughput {throughput:.2f}×, CPU per message {cpu:.2f}×, "
            f"peak memory {memory:.2f}×"
        )
    # The README's goals ("Where the goals stand"); the CPU one is against floor_persist, which
    # only bench/compare.py runs.
    print("goal for worker/floor: throughput ≥ 0.95× (CPU: ≤ 1.3× floor_persist's, compare.py)")


def _medians(found: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(r[name] for r in found) for name in found[0]}


if __name__ == "__main__":
    main()
