"""How fast the console's failures list answers on a big store: keyset pages at any depth.

Fills a store with ``--rows`` failures (1,000,000 by default; five functions, four error types,
one delivery each, timestamps spread over 30 days), then asks the console itself, over HTTP
(aiohttp's test server, the real app and templates), for pages of ``/failures``: the first,
pages deep in the list by their keyset cursor, and filtered ones. Each URL is fetched
``--repeat`` times after one unmeasured fetch; the table gives the median, p95 and worst wall
time per page, HTML rendering included.

    python bench/console_bench.py                          # SQLite file in a temporary dir
    python bench/console_bench.py --db /tmp/console.db     # keep (and reuse) the filled file
    python bench/console_bench.py --url postgresql://postgres@127.0.0.1/console_bench

A filled store is reused when it already holds ``--rows`` failures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from _args import at_least
from lambda_destinations.config import load_settings
from lambda_destinations.console import ConsoleOptions, create_app, new_token
from lambda_destinations.console.views import encode_cursor
from lambda_destinations.store import DeliveryRow, InvocationFilter, InvocationRow, Store
from lambda_destinations.store._sql import delivery_values, invocation_values
from lambda_destinations.store._tables import deliveries, invocations

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders-failures"
FUNCTIONS = ["orders-api", "billing-worker", "email-sender", "image-resizer", "ledger-sync"]
ERRORS = ["TimeoutError", "ValueError", "KeyError", "Runtime.ExitError"]
T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
CHUNK = 5000
MIN_ROWS = 1_000  # enough for each filtered page to hold rows


def row(i: int, rng: random.Random) -> InvocationRow:
    function = FUNCTIONS[i % len(FUNCTIONS)]
    error = ERRORS[(i // 7) % len(ERRORS)]
    request_id = f"{rng.getrandbits(128):032x}"
    moment = T0 + dt.timedelta(seconds=rng.randrange(30 * 86400))
    return InvocationRow(
        key=f"{request_id}:RetriesExhausted",
        kind="invocation",
        envelope="none",
        request_id=request_id,
        function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
        function_name=function,
        qualifier=None,
        condition="RetriesExhausted",
        succeeded=False,
        approximate_invoke_count=3,
        error_type=error,
        error_message=f"{error} in step {i % 13}",
        stack_trace=['  File "/var/task/app.py", line 42, in handler\n'],
        timestamp=moment,
        request_payload={"orderId": f"ord-{i}", "items": [{"sku": f"sku-{i % 97}", "qty": 1}]},
        response_payload={"errorType": error, "errorMessage": "failed"},
        record={"version": "1.0"},
        queue=QUEUE,
        first_seen_at=moment + dt.timedelta(seconds=2),
    )


async def fill(store: Any, rows: int) -> None:
    """Insert ``rows`` failures and a delivery of each, CHUNK per transaction."""
    async with store._read() as conn:
        have = (await conn.execute(sa.select(sa.func.count()).select_from(invocations))).scalar()
    if have == rows:
        print(f"reusing the store's {have} failures", file=sys.stderr)
        return
    if have:
        raise SystemExit(f"the store holds {have} rows, not {rows}: give an empty one")
    rng = random.Random(1)
    started = time.monotonic()
    for start in range(0, rows, CHUNK):
        batch = [row(i, rng) for i in range(start, min(rows, start + CHUNK))]
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(invocations), [invocation_values(r) for r in batch])
            await conn.execute(
                sa.insert(deliveries),
                [delivery_values(DeliveryRow(r.key, f"m-{r.key}", QUEUE, 3)) for r in batch],
            )
        if start and start % 100_000 == 0:
            print(f"  {start} rows, {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(f"filled {rows} failures in {time.monotonic() - started:.0f} s", file=sys.stderr)


async def cursors(store: Store, depths: list[int]) -> dict[int, str]:
    """The keyset cursor of the row at each depth (found once, by OFFSET: not measured)."""
    found = {}
    for depth in depths:
        async with store._read() as conn:  # type: ignore[attr-defined]
            c = invocations.c
            key = (
                await conn.execute(
                    sa.select(c.key)
                    .where(c.status.is_not(None))
                    .order_by(c.occurred_at.desc(), c.first_seen_at.desc(), c.key.desc())
                    .offset(depth)
                    .limit(1)
                )
            ).scalar_one()
        got = await store.get_invocation(key)
        assert got is not None
        found[depth] = encode_cursor(got)
    return found


def urls(depth_cursors: dict[int, str]) -> list[tuple[str, str]]:
    deep = {d: urllib.parse.urlencode({"after": c}) for d, c in depth_cursors.items()}
    out = [("first page", "/failures")]
    out += [(f"after row {d:,}", f"/failures?{q}") for d, q in deep.items()]
    out += [
        ("function = orders-api", "/failures?function=orders-api"),
        ("function orders-api, deep", f"/failures?function=orders-api&{deep[max(deep)]}"),
        ("function glob 'ledger-*'", "/failures?function=ledger-*"),
        ("glob matching none 'zz-*'", "/failures?function=zz-*"),
        ("error type KeyError", "/failures?error_type=KeyError"),
        ("status open", "/failures?status=open"),
        ("since 2d", "/failures?since=2026-10-29"),
    ]
    return out


async def measure(client: TestClient, path: str, repeat: int) -> list[float]:  # type: ignore[type-arg]
    response = await client.get(path)
    assert response.status == 200, (path, response.status, await response.text())
    await response.read()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path)
        body = await response.read()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200
        # a page of rows, not "no failures match" (but where the glob matches nothing)
        assert (b"<tbody>" in body) != ("zz-*" in path), path
    return times


async def bench(url: str, rows: int, repeat: int) -> None:
    async with Store.from_url(url) as store:
        await store.migrate()
        await fill(store, rows)
        total = await store.count_invocations(InvocationFilter())
        depths = sorted({d for d in (1_000, rows // 2, rows - 100) if 0 <= d < rows})
        depth_cursors = await cursors(store, depths)
    settings = load_settings(store=url, queues=[], region="us-east-1")
    client = TestClient(TestServer(create_app(settings, ConsoleOptions(token=new_token()))))
    await client.start_server()
    try:
        print(f"{total:,} failures in {url.split('://')[0]}; {repeat} fetches per page, ms:")
        print(f"{'page':<28} {'median':>8} {'p95':>8} {'worst':>8}")
        for label, path in urls(depth_cursors):
            times = sorted(await measure(client, path, repeat))
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            print(f"{label:<28} {statistics.median(times):>8.1f} {p95:>8.1f} {times[-1]:>8.1f}")
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="store URL (default: a SQLite file)")
    parser.add_argument("--db", type=Path, help="SQLite file to fill or reuse")
    parser.add_argument("--rows", type=at_least(MIN_ROWS), default=1_000_000)
    parser.add_argument("--repeat", type=at_least(1), default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{args.db or Path(tmp) / 'console.db'}"
        asyncio.run(bench(url, args.rows, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
