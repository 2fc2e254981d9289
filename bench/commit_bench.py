"""What a SQLite commit costs against a row: the worker's INSERT, a commit every N rows.

Makes the worker's rows for ``--n`` simulated records (``floor_schema.rows``: the worker's own
INSERT and the parameters it would bind, out of the measured part), then, for each size in
``--batches``, writes them into a new copy of a migrated file with one ``executemany`` and one
commit a batch on one thread, as ``floor_schema.py`` does in its drain, at the store's
``synchronous=FULL``. Reported per size: the process's user + system CPU a row (``getrusage``:
SQLite's work included, the disk's sync as the kernel counts it), the median over ``--rounds``
rounds, the sizes alternating in each round. ``--drop`` runs each size again without the named
indexes of ``invocations``, ``--normal`` at ``synchronous=NORMAL``.

A commit's fixed cost (its WAL frames and their sync) over the worker's commit batches is what
this separates from a row's own (bench/MEASUREMENTS.md, 5 December, morning).

    python bench/commit_bench.py
    python bench/commit_bench.py --n 3000 --batches 5 10 15 30 60 --rounds 5
    python bench/commit_bench.py --batches 10 --drop ix_invocations_request_id --normal
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import compare
import floor_schema


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write(
    base: Path, sql: str, rows: list[list[Any]], batch: int, drop: list[str], sync: str
) -> float:
    """Seconds of CPU a row to write ``rows`` into a copy of ``base``, a commit every ``batch``."""
    path = base.with_name(f"run-{batch}.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(base, path)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA synchronous={sync}")
        for index in drop:
            try:
                db.execute(f'DROP INDEX "{index}"')
            except sqlite3.OperationalError as exc:
                raise SystemExit(
                    f"error: --drop {index}: {exc}: name an index of invocations"
                ) from None
        before = _cpu()
        for start in range(0, len(rows), batch):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, rows[start : start + batch])
            db.execute("COMMIT")
        spent = _cpu() - before
        (stored,) = db.execute("SELECT count(*) FROM invocations").fetchone()
    finally:
        db.close()
    if stored != len(rows):
        raise SystemExit(f"error: stored {stored} of {len(rows)} rows")
    return spent / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="records (default 3000)")
    parser.add_argument("--batches", type=int, nargs="+", default=[5, 10, 15, 30, 60])
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating (default 5)")
    parser.add_argument("--drop", nargs="*", default=[], help="indexes of invocations to drop")
    parser.add_argument("--normal", action="store_true", help="synchronous=NORMAL, not FULL")
    args = parser.parse_args(argv)
    if args.n < 1 or args.rounds < 1 or min(args.batches) < 1:
        parser.error("--n, --rounds and every --batches size must be at least 1")
    sync = "NORMAL" if args.normal else "FULL"
    with tempfile.TemporaryDirectory(prefix="commit-bench-") as tmp:
        base = Path(tmp) / "base.db"
        url = f"sqlite:///{base}"
        asyncio.run(floor_schema.migrate(url))
        sent = compare.bodies(args.n, seed=7)
        sql, params = floor_schema.rows(url, sent, "https://sqs.us-east-1.amazonaws.com/1/q")
        rows = [params[body] for body in sent]
        spent: dict[int, list[float]] = {batch: [] for batch in args.batches}
        for _ in range(args.rounds):
            for batch in args.batches:
                spent[batch].append(write(base, sql, rows, batch, args.drop, sync))
    dropped = f", without {', '.join(args.drop)}" if args.drop else ""
    print(f"{args.n} rows, synchronous={sync}{dropped}, median of {args.rounds} rounds")
    print("| rows a commit | CPU µs a row (min–max) |")
    print("|---|---|")
    for batch, values in spent.items():
        low, high = min(values) * 1e6, max(values) * 1e6
        print(f"| {batch} | {statistics.median(values) * 1e6:.1f} ({low:.1f}–{high:.1f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
