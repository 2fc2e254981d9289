"""How the operator commands answer as the store grows: empty, 10 thousand, 1 million records.

Fills a store (SQLite file, or a PostgreSQL database created for the run) with records spread
over 90 days: 80% successes, 20% failures (mostly open, some ignored or replayed), 20
functions, 8 error types, one delivery each; payloads are small (about 300 bytes) because what
is measured is how the queries find rows, not how many bytes they read. Each size has a store
of its own. At each size it runs each command as an operator would (a new process:
``lambda-destinations ...``) ``--repeat`` times, and the store calls each command makes in this
process (at least 5 times), and prints the medians and their ratios to the empty store: the
command's CPU time (user + system, of the process: the machine's neighbours change wall times
far more than CPU times) and the store calls' wall time. A command's time is mostly the
interpreter's start-up and imports; the store query's time is what grows with the store.

    python bench/store_scale.py                                  # SQLite, 0 / 10k / 1M
    python bench/store_scale.py --pg postgresql://postgres@127.0.0.1/postgres --sizes 0 10000
    python bench/store_scale.py --keep /tmp/scale --sizes 0 1000000   # fill once, time again
    python bench/store_scale.py --json

With ``--keep DIR`` the SQLite files stay in DIR and the PostgreSQL databases are named
``store_scale_<size>``; a store that already holds its records is timed without filling it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from _args import at_least
from lambda_destinations.store import FailureStatus, InvocationFilter, Store
from lambda_destinations.store._sql import SqlStore
from lambda_destinations.store._tables import deliveries, invocations

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
FUNCTIONS = [f"fn-{n:02d}" for n in range(20)]
ERRORS = ["TimeoutError", "KeyError", "ValueError", "RuntimeError", "ClientError",
          "Throttling", "MemoryError", "OSError"]  # fmt: skip
NOW = dt.datetime.now(dt.UTC)
PROBE_REQUEST_ID = "probe-0000"


def commands(request_id: str) -> dict[str, list[str]]:
    return {
        "failures list": ["failures", "list"],
        "list --status open --error-type": [
            "failures", "list", "--status", "open", "--error-type", "KeyError",
        ],
        "list --function --since 7d": ["failures", "list", "--function", "fn-03", "--since", "7d"],
        "failures stats --since 1h": ["failures", "stats", "--since", "1h"],
        "failures show": ["failures", "show", request_id],
        "replay --dry-run (open, type)": [
            "replay", "--status", "open", "--error-type", "KeyError", "--limit", "100", "--dry-run",
        ],
    }  # fmt: skip


def queries(store: Store, request_id: str) -> dict[str, Any]:
    """What each command asks the store, as calls to time in this process."""
    since_1h = NOW - dt.timedelta(hours=1)
    open_key = InvocationFilter(statuses=[FailureStatus.OPEN], error_type="KeyError", limit=100)
    return {
        "failures list": lambda: _list_and_count(store, InvocationFilter(limit=100)),
        "list --status open --error-type": lambda: _list_and_count(store, open_key),
        "list --function --since 7d": lambda: _list_and_count(
            store,
            InvocationFilter(function_glob="fn-03", since=NOW - dt.timedelta(days=7), limit=100),
        ),
        "failures stats --since 1h": lambda: store.failure_counts(InvocationFilter(since=since_1h)),
        "failures show": lambda: store.get_invocation(request_id),
        "replay --dry-run (open, type)": lambda: store.list_invocations(open_key),
    }


async def _list_and_count(store: Store, selection: InvocationFilter) -> int:
    """As ``failures list``: one row past the limit says whether more match."""
    rows = await store.list_invocations(
        dataclasses.replace(selection, limit=(selection.limit or 0) + 1)
    )
    await store.replay_counts([r.key for r in rows[: selection.limit]])
    return len(rows)


async def time_queries(url: str, request_id: str, repeat: int) -> dict[str, float]:
    async with Store.from_url(url) as store:
        result = {}
        for name, call in queries(store, request_id).items():
            await call()  # warm: the pool, SQLAlchemy's statement cache
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                await call()
                times.append(time.perf_counter() - started)
            result[name] = statistics.median(times)
        return result


def make_rows(start: int, count: int, rng: random.Random) -> tuple[list[dict[str, Any]], ...]:
    rows, delivered = [], []
    for i in range(start, start + count):
        request_id = PROBE_REQUEST_ID if i == 0 else str(uuid.UUID(int=rng.getrandbits(128)))
        failed = i == 0 or rng.random() < 0.2
        condition = "RetriesExhausted" if failed else "Success"
        key = f"{request_id}:{condition}"
        when = NOW - dt.timedelta(seconds=rng.randrange(0, 90 * 86400))
        error = rng.choice(ERRORS) if failed else None
        status = None
        if failed:
            status = rng.choices(["open", "ignored", "replayed"], weights=[8, 1, 1])[0]
        payload = {"orderId": i, "items": [{"sku": f"s-{n}", "qty": n} for n in range(4)]}
        rows.append(
            {
                "key": key, "kind": "invocation", "envelope": "none", "request_id": request_id,
                "function_arn": None, "function_name": rng.choice(FUNCTIONS), "qualifier": None,
                "condition": condition, "succeeded": not failed, "approximate_invoke_count": 1,
                "error_type": error, "error_message": "boom" if failed else None,
                "stack_trace": None, "timestamp": when, "occurred_at": when,
                "request_payload": payload, "response_payload": None, "record": None,
                "queue": "q", "first_seen_at": when, "status": status, "status_by": None,
                "status_at": None,
            }
        )  # fmt: skip
        delivered.append(
            {"key": key, "message_id": str(i), "queue": "q", "receive_count": 1,
             "received_at": when}
        )  # fmt: skip
    return rows, delivered


async def fill(url: str, want: int, chunk: int = 5000) -> None:
    """Fill the store at ``url`` with ``want`` records, unless it holds them already."""
    async with Store.from_url(url) as store:
        assert isinstance(store, SqlStore)
        await store.migrate()
        async with store.engine.connect() as conn:
            have = (await conn.execute(sa.select(sa.func.count()).select_from(invocations))).one()[
                0
            ]
        if have == want:
            return
        if have:
            raise SystemExit(f"{url} holds {have:,} records, not {want:,}: give an empty store")
        rng = random.Random(want)
        started = time.monotonic()
        for start in range(0, want, chunk):
            rows, delivered = make_rows(start, min(chunk, want - start), rng)
            async with store.engine.begin() as conn:
                await conn.execute(sa.insert(invocations), rows)
                await conn.execute(sa.insert(deliveries), delivered)
            if start and start % 100_000 == 0:
                print(f"  {start:,} records, {time.monotonic() - started:.0f} s", file=sys.stderr)
        if store.engine.dialect.name == "postgresql":
            async with store.engine.connect() as conn:
                await conn.execute(sa.text("COMMIT"))
                await conn.execute(sa.text("ANALYZE"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(url: str, args: list[str]) -> float:
    """The CPU time (user + system) of one run of the command."""
    started = _children_cpu()
    done = subprocess.run(
        [*ENTRY, *args], capture_output=True, env={"LAMBDA_DESTINATIONS_STORE": url,
        "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1):
        raise SystemExit(f"{args}: exit {done.returncode}: {done.stderr.decode()[:300]}")
    return _children_cpu() - started


def run(urls: dict[int, str], repeat: int) -> list[dict[str, Any]]:
    """Time the commands on the store of each size (``urls``: size -> store URL).

    The sizes alternate within each round, so a change in the machine's load between rounds
    weighs on every size alike; each figure is the median of its rounds.
    """
    sizes = sorted(urls)
    for size in sizes:
        asyncio.run(fill(urls[size], size))
    probe = {size: PROBE_REQUEST_ID if size else "none" for size in sizes}
    cpu: dict[tuple[int, str], list[float]] = {}
    queried: dict[tuple[int, str], list[float]] = {}
    for _ in range(repeat):
        for size in sizes:
            medians = asyncio.run(time_queries(urls[size], probe[size], 5))
            for name, value in medians.items():
                queried.setdefault((size, name), []).append(value)
        for name in commands("none"):
            for size in sizes:
                args = commands(probe[size])[name]
                cpu.setdefault((size, name), []).append(timed(urls[size], args))
    results = []
    baseline: dict[str, float] = {}
    for size in sizes:
        url = urls[size]
        for name in commands("none"):
            seconds = statistics.median(cpu[(size, name)])
            in_process = {name: statistics.median(queried[(size, name)])}
            baseline.setdefault(name, seconds)
            baseline.setdefault("q:" + name, in_process[name])
            results.append(
                {"store": url.split(":")[0], "records": size, "command": name,
                 "cpu_s": round(seconds, 3), "vs_empty": round(seconds / baseline[name], 2),
                 "query_ms": round(in_process[name] * 1000, 2),
                 "query_vs_empty": round(in_process[name] / baseline["q:" + name], 2)}
            )  # fmt: skip
            print(json.dumps(results[-1]), file=sys.stderr)
    return results


async def pg_database(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on ``admin_url``'s server, created when missing."""
    engine = create_async_engine(
        admin_url.replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT"
    )
    async with engine.connect() as conn:
        found = await conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        )
        if found.first() is None:
            await conn.execute(sa.text(f"CREATE DATABASE {name}"))
    await engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=at_least(0), nargs="+", default=[0, 10_000, 1_000_000])
    parser.add_argument(
        "--repeat", type=at_least(1), default=3, help="runs per command, median kept"
    )
    parser.add_argument("--pg", metavar="ADMIN_URL", help="also PostgreSQL: a database is made")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep (and reuse) the stores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import sqlalchemy.ext.asyncio  # noqa: F401 - for pg_database

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not args.no_sqlite:
            results += run({n: f"sqlite:///{folder}/scale-{n}.db" for n in args.sizes}, args.repeat)
        if args.pg:
            prefix = "store_scale" if args.keep else f"store_scale_{uuid.uuid4().hex[:8]}"
            pg = {n: asyncio.run(pg_database(args.pg, f"{prefix}_{n}")) for n in args.sizes}
            results += run(pg, args.repeat)
    if args.json:
        print(json.dumps(results))
        return
    print("| store | records | command | command CPU s | × empty | store query ms | × empty |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        cells = [r["store"], f"{r['records']:,}", f"`{r['command']}`", f"{r['cpu_s']:.2f}"]
        cells += [f"{r['vs_empty']:.2f}", f"{r['query_ms']:.2f}", f"{r['query_vs_empty']:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
