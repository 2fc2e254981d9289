"""How long the worker's saves wait while a SQLite store is backed up under them.

Fills a SQLite store with ``--records`` failure records (about 1.5 kB of JSON each, as
``store_bench.py`` makes them; the file is kept between runs with ``--path``), then saves
records with ``--concurrency`` coroutines in flight (the worker's calls, its group commit and
checkpoints) and, after a few seconds of that, runs each way of backing it up in a process of
its own: ``lambda-destinations store backup`` (SQLite's backup API) and ``sqlite3``'s
``VACUUM INTO``, each one read. (Not ``sqlite3 .backup``: it copies 100 pages at a time and
starts again at each commit of the saves, so beside them it never finishes.) For each it
prints how long the backup took and the saves' latency while it ran (median, p99, the longest)
beside the same figures before it.

    python bench/store_backup.py --records 200000 --path /tmp/backup-bench.db
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from lambda_destinations.store import Store
from store_bench import make_row  # type: ignore[import-not-found]


@dataclasses.dataclass
class Window:
    name: str
    seconds: float
    latencies: list[float]

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"{self.name:<34} {self.seconds:6.2f} s  saves {len(ms):6d}  "
            f"p50 {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms  max {ms[-1]:7.1f} ms"
        )


async def fill(store: Store, records: int) -> None:
    async def lane(start: int) -> None:
        for i in range(start, records, 64):
            row, delivery = make_row(f"fill-{i}", str(uuid.uuid4()), i)
            await store.save_invocation(row, delivery)

    await asyncio.gather(*(lane(n) for n in range(64)))


def backup_commands(path: Path, out: Path) -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "lambda_destinations", "store", "backup", "--force"]
    return {
        "store backup (backup API)": [*cli, "--store", f"sqlite:///{path}", str(out)],
        "sqlite3 VACUUM INTO": ["sqlite3", str(path), f"VACUUM INTO '{out}'"],
    }


async def measure(path: Path, concurrency: int, settle: float) -> list[Window]:
    latencies: list[tuple[float, float]] = []  # (began at, took)
    stop = asyncio.Event()
    async with Store.from_url(f"sqlite:///{path}") as store:

        async def lane() -> None:
            while not stop.is_set():
                row, delivery = make_row(f"live-{uuid.uuid4()}", str(uuid.uuid4()), 0)
                started = time.perf_counter()
                await store.save_invocation(row, delivery)
                latencies.append((started, time.perf_counter() - started))

        lanes = [asyncio.create_task(lane()) for _ in range(concurrency)]
        windows = []
        with tempfile.TemporaryDirectory(dir=path.parent) as folder:
            for name, argv in backup_commands(path, Path(folder) / "backup.db").items():
                (Path(folder) / "backup.db").unlink(missing_ok=True)
                await asyncio.sleep(settle)
                t0 = time.perf_counter()
                before = [took for began, took in latencies if t0 - settle <= began < t0]
                windows.append(Window(f"  before: {name}", settle, before))
                process = await asyncio.create_subprocess_exec(*argv)
                if await process.wait():
                    raise SystemExit(f"{name} failed")
                t1 = time.perf_counter()
                await asyncio.sleep(settle)  # the saves it held up end
                # Every save that overlapped the backup, those it held until after it too.
                during = [took for began, took in latencies if began < t1 and began + took > t0]
                windows.append(Window(f"during: {name}", t1 - t0, during))
        stop.set()
        await asyncio.gather(*lanes)
    return windows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--path", type=Path, help="the store file (kept; filled if new)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    path = args.path or Path(tempfile.mkdtemp()) / "store.db"
    if not path.exists():
        started = time.perf_counter()
        async with Store.from_url(f"sqlite:///{path}") as store:
            await store.migrate()
            await fill(store, args.records)
        print(f"filled {args.records} records in {time.perf_counter() - started:.0f} s")
    print(f"store {path}: {path.stat().st_size / 1e6:.0f} MB")
    for window in await measure(path, args.concurrency, args.settle):
        print(window.line())


if __name__ == "__main__":
    asyncio.run(main())
