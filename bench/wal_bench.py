"""The SQLite file and its WAL over a long drain: 100,000 records saved as the worker saves them.

Saves ``--n`` records of about 1.5 kB (the record JSON, as ``store_bench`` makes them) through
``Store.save_invocation`` with ``--concurrency`` coroutines in flight (the worker's handler
slots, its group commit), sampling the WAL's size every 0.1 s. Then prunes every record and
gives the pages back. Prints the largest WAL seen, the file's size per record stored, and the
file's size after pruning.

    python bench/wal_bench.py                    # 100,000 records, concurrency 32
    python bench/wal_bench.py --n 20000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from lambda_destinations.store import PruneKind, Store, utcnow
from lambda_destinations.worker.retention import prune_store
from store_bench import make_row

MB = 1024 * 1024


def size_of(path: Path) -> int:
    return path.stat().st_size


async def drain(path: Path, n: int, concurrency: int) -> dict[str, Any]:
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
                request_id = str(uuid.uuid4())
                row, delivery = make_row(f"{request_id}:RetriesExhausted", request_id, i)
                record_bytes += len(json.dumps(row.record))
                await store.save_invocation(row, delivery, complete_handler="persist")

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        done.set()
        await sampler
    stored = size_of(path)  # closed: every page is in the file
    async with Store.from_url(f"sqlite:///{path}") as store:
        report = await prune_store(store, {PruneKind.OPEN_FAILURES: utcnow()}, batch=1000)
    return {
        "records": n,
        "saves_per_s": round(n / seconds),
        "largest_wal_mb": round(largest / MB, 1),
        "record_json_bytes": round(record_bytes / n),
        "file_bytes_per_record": round(stored / n),
        "file_mb": round(stored / MB, 1),
        "pruned": report.rows[PruneKind.OPEN_FAILURES],
        "file_mb_after_prune": round(size_of(path) / MB, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(drain(Path(tmp) / "wal.db", args.n, args.concurrency))
    if args.json:
        print(json.dumps(result))
        return
    for name, value in result.items():
        print(f"{name:<24}{value:>12,}")


if __name__ == "__main__":
    main()
