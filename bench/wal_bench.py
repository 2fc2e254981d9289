"""The SQLite file and its WAL over a long drain: 100,000 records saved as the worker saves them.

Saves ``--n`` failure records of about 1 kB (the record JSON, as ``store_bench`` makes them)
through ``Store.save_invocation`` with ``--concurrency`` coroutines in flight (the worker's
handler slots, its group commit), sampling the WAL's size every 0.1 s. Then prunes every record
and gives the pages back. Prints the largest WAL seen, the file's size per record stored, and
the file's size after pruning.

``--sizes`` drains one new file per record size instead (the record JSON padded to about that
many bytes), with ``--failures`` of the records failures and the rest successes, as the worker
sees them, and also prints the bytes per record of each b-tree (the table and each index, from
SQLite's ``dbstat``).

    python bench/wal_bench.py                    # 100,000 records, concurrency 32
    python bench/wal_bench.py --n 20000 --json
    python bench/wal_bench.py --n 20000 --sizes 1000 1500 2000 --failures 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _args import at_least, share
from lambda_destinations.store import DeliveryRow, InvocationRow, PruneKind, Store, utcnow
from lambda_destinations.worker.retention import prune_store
from store_bench import make_row

MB = 1024 * 1024
Make = Callable[[int], tuple[InvocationRow, DeliveryRow]]


def size_of(path: Path) -> int:
    return path.stat().st_size


def failure(i: int) -> tuple[InvocationRow, DeliveryRow]:
    """A failure record as ``store_bench`` makes it, with a random request id."""
    request_id = str(uuid.uuid4())
    return make_row(f"{request_id}:RetriesExhausted", request_id, i)


def success(i: int) -> tuple[InvocationRow, DeliveryRow]:
    """The same record, as an on-success destination would deliver it."""
    request_id = str(uuid.uuid4())
    row, delivery = make_row(f"{request_id}:Success", request_id, i)
    response = {"statusCode": 200, "body": f"order o-{i} accepted"}
    record = {
        **row.record,
        "requestContext": {**row.record["requestContext"], "condition": "Success"},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
        "responsePayload": response,
    }
    row = dataclasses.replace(
        row,
        condition="Success",
        succeeded=True,
        error_type=None,
        error_message=None,
        stack_trace=None,
        response_payload=response,
        record=record,
    )
    return row, delivery


def padded(make: Make, size: int) -> Make:
    """``make``'s records with a request payload padded so that the record JSON is about
    ``size`` bytes."""

    def make_padded(i: int) -> tuple[InvocationRow, DeliveryRow]:
        row, delivery = make(i)
        pad = max(0, size - len(json.dumps(row.record)) - len(', "note": ""'))
        # Random letters: a run of one letter would flatter a compressed column.
        note = "".join(random.choices("abcdefghijklmnopqrstuvwxyz ", k=pad))
        request = {**row.request_payload, "note": note}
        record = {**row.record, "requestPayload": request}
        return dataclasses.replace(row, request_payload=request, record=record), delivery

    return make_padded


def mixed(size: int, failures: float) -> Make:
    """Records of about ``size`` bytes, a share ``failures`` of them failures (every
    ``round(1 / failures)``-th when the share is not 0 or 1)."""
    make_failure, make_success = padded(failure, size), padded(success, size)
    every = round(1 / failures) if failures else 0

    def make(i: int) -> tuple[InvocationRow, DeliveryRow]:
        return make_failure(i) if every and i % every == 0 else make_success(i)

    return make


def bytes_written() -> int:
    """The bytes this process has handed to write() so far (Linux; 0 elsewhere): the WAL's
    frames and the checkpoints' copies, here."""
    try:
        lines = Path("/proc/self/io").read_text().splitlines()
    except OSError:
        return 0
    return next(int(line.split()[1]) for line in lines if line.startswith("wchar:"))


def btree_bytes(path: Path) -> dict[str, int]:
    """The bytes of each table and index of the file, from SQLite's ``dbstat``."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        return {name: size for name, size in rows}


async def drain(path: Path, n: int, concurrency: int, make: Make = failure) -> dict[str, Any]:
    wal = path.with_name(path.name + "-wal")
    largest = 0
    record_bytes = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal largest
        while not done.is_set():
            if wal.exists():
                largest = max(largest, size_of(wal))
            await asyncio.sleep(0.1)

    async with Store.from_url(f"sqlite:///{path}") as store:
        await store.migrate()
        pending = iter(range(n))

        async def lane() -> None:
            nonlocal record_bytes
            for i in pending:
                row, delivery = make(i)
                record_bytes += len(json.dumps(row.record))
                await store.save_invocation(row, delivery, complete_handler="persist")

        sampler = asyncio.create_task(sample())
        started, cpu, written = time.perf_counter(), time.process_time(), bytes_written()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu, written = time.process_time() - cpu, bytes_written() - written
        done.set()
        await sampler
    stored = size_of(path)  # closed: every page is in the file
    btrees = btree_bytes(path)
    kinds = (PruneKind.OPEN_FAILURES, PruneKind.SUCCESSES)
    async with Store.from_url(f"sqlite:///{path}") as store:
        report = await prune_store(store, dict.fromkeys(kinds, utcnow()), batch=1000)
    return {
        "records": n,
        "saves_per_s": round(n / seconds),
        "cpu_us_per_record": round(cpu / n * 1e6),  # making the records too
        "written_bytes_per_record": round(written / n),
        "largest_wal_mb": round(largest / MB, 1),
        "record_json_bytes": round(record_bytes / n),
        "file_bytes_per_record": round(stored / n),
        "file_mb": round(stored / MB, 1),
        "pruned": sum(report.rows.get(kind, 0) for kind in kinds),
        "file_mb_after_prune": round(size_of(path) / MB, 2),
        "bytes_per_record": {name: round(size / n) for name, size in btrees.items()},
    }


def print_table(result: dict[str, Any]) -> None:
    for name, value in result.items():
        if isinstance(value, dict):
            for part, size in value.items():
                if size:  # the tables the drain leaves empty take a page or two
                    print(f"  {part:<36}{size:>8,}")
        else:
            print(f"{name:<24}{value:>12,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=at_least(1), default=100_000)
    parser.add_argument("--concurrency", type=at_least(1), default=32)
    parser.add_argument(
        "--sizes",
        type=at_least(1),
        nargs="+",
        help="record JSON bytes, one drain each (padded records)",
    )
    parser.add_argument(
        "--failures", type=share, default=0.2, help="with --sizes: the share of failures"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    makers: list[Make] = [failure]
    if args.sizes:
        makers = [mixed(size, args.failures) for size in args.sizes]
    for make in makers:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(drain(Path(tmp) / "wal.db", args.n, args.concurrency, make))
        if args.json:
            print(json.dumps(result))
        else:
            print_table(result)


if __name__ == "__main__":
    main()
