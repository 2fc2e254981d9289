"""What the worker's per-message store calls cost: process CPU and wall time per operation.

For every message the worker calls ``completed_handlers(key)`` and then ``save_invocation(...)``.
This runs each ``--n`` times with ``--concurrency`` coroutines in flight (as the worker's handler
slots would), after a warm-up that fills the pool and SQLAlchemy's statement cache, and reports
per operation: microseconds of process CPU (``time.process_time``: every thread, the store's
too), of the event loop's thread alone (what a one-loop worker runs out of first), and of wall
time, plus latency percentiles. Each figure is the median of ``--repeat`` measurements. Keys
are unique per run, so the database need not be empty; it is migrated first. PostgreSQL CPU is
the server's own and not counted.

    python bench/store_bench.py --url sqlite:///bench.db --n 2000 --concurrency 20
    python bench/store_bench.py --url postgresql://postgres@127.0.0.1/bench --n 2000
    python bench/store_bench.py --n 2000    # a SQLite file in a temporary directory
    python bench/store_bench.py --n 2000 --no-group-commit    # one transaction per call

``--url`` may be given more than once. The output is a table; ``--json`` prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from _args import at_least
from lambda_destinations.errors import LambdaDestinationsError, StoreUrlError
from lambda_destinations.redact import mask_url
from lambda_destinations.store import DeliveryRow, InvocationRow, Store

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures"


@dataclasses.dataclass
class Result:
    url: str
    operation: str
    n: int
    concurrency: int
    cpu_us_per_op: float
    loop_cpu_us_per_op: float
    wall_us_per_op: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    # SQLite's durability as the store took it from the URL (FULL, or NORMAL for
    # ?synchronous=normal), which the URL shown masks as every query value; None for PostgreSQL
    synchronous: str | None = None


def make_row(key: str, request_id: str, i: int) -> tuple[InvocationRow, DeliveryRow]:
    """A failure record of a realistic size (about 1.5 kB of JSON)."""
    now = dt.datetime.now(dt.UTC)
    request = {"orderId": f"o-{i}", "items": [{"sku": f"sku-{n}", "qty": n} for n in range(5)]}
    response = {
        "errorType": "TimeoutError",
        "errorMessage": "upstream timed out after 3000 ms",
        "stackTrace": [f'  File "/var/task/app.py", line {n}, in handler' for n in range(6)],
    }
    record = {
        "version": "1.0",
        "timestamp": now.isoformat(),
        "requestContext": {
            "requestId": request_id,
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:orders-api:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": request,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": response,
    }
    row = InvocationRow(
        key=key,
        kind="invocation",
        envelope="none",
        request_id=request_id,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:orders-api:$LATEST",
        function_name="orders-api",
        qualifier="$LATEST",
        condition="RetriesExhausted",
        succeeded=False,
        approximate_invoke_count=3,
        error_type="TimeoutError",
        error_message="upstream timed out after 3000 ms",
        stack_trace=response["stackTrace"],  # type: ignore[arg-type]
        timestamp=now,
        request_payload=request,
        response_payload=response,
        record=record,
        queue=QUEUE,
        first_seen_at=now,
    )
    # As the persist handler makes them: the row first seen when its delivery was received.
    delivery = DeliveryRow(
        key=key, message_id=str(uuid.uuid4()), queue=QUEUE, receive_count=1, received_at=now
    )
    return row, delivery


@dataclasses.dataclass
class Phase:
    cpu: float  # process CPU seconds, every thread
    loop_cpu: float  # CPU seconds of the event loop's thread alone
    wall: float
    latencies: list[float]


async def run_phase(n: int, concurrency: int, op: Callable[[int], Awaitable[object]]) -> Phase:
    """Run ``op(0..n-1)`` with ``concurrency`` coroutines in flight."""
    latencies: list[float] = []
    next_index = iter(range(n))

    async def lane() -> None:
        for i in next_index:
            started = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - started)

    cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(lane())
    return Phase(
        cpu=time.process_time() - cpu0,
        loop_cpu=time.thread_time() - loop0,
        wall=time.perf_counter() - wall0,
        latencies=latencies,
    )


def summarize(
    store: Store, url: str, operation: str, concurrency: int, phases: list[Phase]
) -> Result:
    """The median over repeats of each figure (this machine's neighbours are noisy)."""
    n = len(phases[0].latencies)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    # inclusive: a percentile within the latencies seen, even of a short run
    cuts = [statistics.quantiles(p.latencies, n=100, method="inclusive") for p in phases]
    return Result(
        url=mask_url(url),
        operation=operation,
        n=n,
        concurrency=concurrency,
        cpu_us_per_op=round(median([p.cpu for p in phases]) / n * 1e6, 1),
        loop_cpu_us_per_op=round(median([p.loop_cpu for p in phases]) / n * 1e6, 1),
        wall_us_per_op=round(median([p.wall for p in phases]) / n * 1e6, 1),
        ops_per_s=round(n / median([p.wall for p in phases])),
        p50_ms=round(median([c[49] for c in cuts]) * 1e3, 2),
        p99_ms=round(median([c[98] for c in cuts]) * 1e3, 2),
        synchronous=getattr(store, "synchronous", None),
    )


async def bench(
    url: str, n: int, concurrency: int, warmup: int, repeat: int, group_commit: bool
) -> list[Result]:
    total = warmup + n * repeat
    # Keys as the decoder makes them, from random request ids: each save lands on a random leaf
    # of every index on the key, as in the worker (sequential keys would append, and flatter).
    request_ids = [str(uuid.uuid4()) for _ in range(total)]
    rows = [make_row(f"{rid}:RetriesExhausted", rid, i) for i, rid in enumerate(request_ids)]
    async with Store.from_url(url, group_commit=group_commit) as store:
        await store.migrate()

        def save(offset: int) -> Callable[[int], Awaitable[bool]]:
            def op(i: int) -> Awaitable[bool]:
                row, delivery = rows[offset + i]
                return store.save_invocation(row, delivery, complete_handler="persist")

            return op

        def completed(offset: int) -> Callable[[int], Awaitable[frozenset[str]]]:
            return lambda i: store.completed_handlers(rows[offset + i][0].key)

        await run_phase(warmup, concurrency, save(0))
        await run_phase(warmup, concurrency, completed(0))
        saves, lookups = [], []
        for r in range(repeat):
            offset = warmup + r * n
            saves.append(await run_phase(n, concurrency, save(offset)))
            lookups.append(await run_phase(n, concurrency, completed(offset)))
    return [
        summarize(store, url, "save_invocation", concurrency, saves),
        summarize(store, url, "completed_handlers", concurrency, lookups),
    ]


def store_url(text: str) -> str:
    """An argparse ``type``: a URL the store takes (its scheme, its parameters: a bad
    ``?synchronous=`` value), else one usage line; nothing is opened."""
    try:
        Store.from_url(text)
    except StoreUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", action="append", type=store_url, help="store URL (repeatable)")
    parser.add_argument("--n", type=at_least(2), default=2000, help="operations per measurement")
    parser.add_argument("--concurrency", type=at_least(1), default=20, help="coroutines in flight")
    parser.add_argument(
        "--warmup", type=at_least(0), default=200, help="unmeasured operations first"
    )
    parser.add_argument(
        "--repeat", type=at_least(1), default=3, help="measure this often, keep medians"
    )
    parser.add_argument(
        "--no-group-commit",
        dest="group_commit",
        action="store_false",
        help="one transaction per call (to see what group commit saves)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        urls = args.url or [f"sqlite:///{Path(tmp) / 'bench.db'}"]
        results: list[Result] = []
        try:
            for url in urls:
                results += asyncio.run(
                    bench(
                        url, args.n, args.concurrency, args.warmup, args.repeat, args.group_commit
                    )
                )
        except LambdaDestinationsError as exc:  # a store away: its line names it and the fix
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 1

    if args.json:
        for result in results:
            print(json.dumps(dataclasses.asdict(result)))
        return 0
    print(
        f"python {sys.version.split()[0]}, n={args.n}, concurrency={args.concurrency}, "
        f"group commit {'on' if args.group_commit else 'off'}, median of {args.repeat}"
    )
    print(
        f"{'store':<36} {'sync':<6} {'operation':<19} {'CPU µs/op':>9} {'loop µs/op':>10} "
        f"{'wall µs/op':>10} {'ops/s':>6} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for r in results:
        store = r.url if len(r.url) <= 36 else "…" + r.url[-35:]
        print(
            f"{store:<36} {(r.synchronous or '—').lower():<6} {r.operation:<19} "
            f"{r.cpu_us_per_op:>9.1f} {r.loop_cpu_us_per_op:>10.1f} "
            f"{r.wall_us_per_op:>10.1f} {r.ops_per_s:>6} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
