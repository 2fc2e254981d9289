"""Async results: how soon a wait sees a stored record, and what PostgreSQL's NOTIFY costs saves.

1. Latency: ``--waits`` times, one store waits for a request id (``Results.wait``: NOTIFY on
   PostgreSQL, backoff reads on SQLite) while a second store, as the worker would, saves the row
   a random 0-300 ms later. Reported: milliseconds from the save's return (after its commit) to
   the wait's return (median, p95, max), and statements the waiting store ran per wait.
2. Save cost (PostgreSQL only): the worker's ``save_invocation`` at ``--concurrency`` in flight,
   on a database with the NOTIFY trigger (migration 4), one with the trigger dropped, and one with
   the trigger and a process LISTENing, rounds alternating; median wall microseconds per save
   and saves per second. The server's CPU is not counted (it is on the same machine).

    python bench/results_bench.py                                    # SQLite only
    python bench/results_bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from _args import at_least
from lambda_destinations.operations.results import Results
from lambda_destinations.store import Store
from store_bench import make_row, run_phase


async def latency(url: str, waits: int) -> dict[str, Any]:
    """Milliseconds from a save's return to the wait's return, and statements per wait."""
    lags: list[float] = []
    async with Store.from_url(url) as writer:
        await writer.migrate()  # as the worker does at start; Results never migrates
    async with Store.from_url(url) as writer, Results(url) as results:
        statements = [0]
        sa.event.listen(
            results.store.engine.sync_engine,  # type: ignore[attr-defined]
            "before_cursor_execute",
            lambda *_: statements.__setitem__(0, statements[0] + 1),
        )
        for i in range(waits):
            rid = str(uuid.uuid4())
            row, delivery = make_row(f"{rid}:RetriesExhausted", rid, i)
            waiting = asyncio.create_task(results.wait(rid, timeout=30))
            await asyncio.sleep(random.uniform(0, 0.3))
            await writer.save_invocation(row, delivery, complete_handler="persist")
            saved = time.perf_counter()
            await waiting
            lags.append((time.perf_counter() - saved) * 1e3)
    cuts = statistics.quantiles(lags, n=20, method="inclusive")  # within min..max
    return {
        "store": url.split(":", 1)[0],
        "waits": waits,
        "median_ms": round(statistics.median(lags), 1),
        "p95_ms": round(cuts[18], 1),
        "max_ms": round(max(lags), 1),
        "statements_per_wait": round(statements[0] / waits, 1),
    }


async def save_cost(admin_url: str, n: int, concurrency: int, rounds: int) -> list[str]:
    """Median wall µs per save: trigger, no trigger, trigger + a listener; rounds alternate."""
    import asyncpg

    base = admin_url.rsplit("/", 1)[0]
    names = {v: f"ld_bench_{v}_{uuid.uuid4().hex[:8]}" for v in ("notify", "plain", "listened")}
    admin = await asyncpg.connect(admin_url)
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        stores = {v: Store.from_url(f"{base}/{name}") for v, name in names.items()}
        for store in stores.values():
            await store.open()
            await store.migrate()
        async with stores["plain"].engine.begin() as conn:  # type: ignore[attr-defined]
            await conn.exec_driver_sql("DROP TRIGGER invocations_notify ON invocations")
        listener = asyncio.create_task(
            stores["listened"].wait_for_invocation("never", timeout=3600)
        )
        walls: dict[str, list[float]] = {v: [] for v in stores}
        for r in range(rounds + 1):  # the first round warms up
            for variant, store in stores.items():
                rows = [make_row(f"{u}:RetriesExhausted", u, i) for i, u in _ids(n)]
                phase = await run_phase(n, concurrency, _saver(store, rows))
                if r:
                    walls[variant].append(phase.wall / n * 1e6)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        for store in stores.values():
            await store.close()
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    lines = []
    for variant, values in walls.items():
        us = statistics.median(values)
        lines.append(f"save_invocation  {variant:<9} {us:8.1f} µs/save  {1e6 / us:7.0f} saves/s")
    return lines


def _ids(n: int) -> list[tuple[int, str]]:
    return [(i, str(uuid.uuid4())) for i in range(n)]


def _saver(store: Store, rows: list[Any]) -> Any:
    def op(i: int) -> Any:
        row, delivery = rows[i]
        return store.save_invocation(row, delivery, complete_handler="persist")

    return op


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        urls = [f"sqlite:///{Path(tmp) / 'results.db'}"]
        if args.pg:
            base = args.pg.rsplit("/", 1)[0]
            name = f"ld_bench_wait_{uuid.uuid4().hex[:8]}"
            import asyncpg

            admin = await asyncpg.connect(args.pg)
            await admin.execute(f'CREATE DATABASE "{name}"')
            urls.append(f"{base}/{name}")
        try:
            for url in urls:
                print(await latency(url, args.waits))
        finally:
            if args.pg:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    if args.pg:
        for line in await save_cost(args.pg, args.n, args.concurrency, args.rounds):
            print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="PostgreSQL admin URL (databases are made and dropped)")
    parser.add_argument("--waits", type=at_least(2), default=60, help="waits measured per store")
    parser.add_argument("--n", type=at_least(1), default=1000, help="saves per round and variant")
    parser.add_argument("--concurrency", type=at_least(1), default=20, help="saves in flight")
    parser.add_argument(
        "--rounds", type=at_least(1), default=5, help="measured rounds (alternating)"
    )
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
