"""The CPU goals of bench/compare.py in instructions, which the machine's load moves far less.

On a shared machine the same drain's CPU time moves by more than most changes measured (the
ranges in bench/MEASUREMENTS.md). callgrind counts the instructions a process runs instead, the
same on every run of the same code and input. Each Python variant of compare.py (floor,
floor_persist, the worker on SQLite, the do-nothing route) drains a queue filled as compare.py
fills it, twice, with N1 and then N2 records, under ``valgrind --tool=callgrind``; the
difference of the two totals divided by N2 - N1 is one message's instructions, start-up,
connecting and the closing empty receives cancelling out. Every thread of the process is
counted (SQLite's commits in the store's thread too); the kernel's work is not (system time:
writing and syncing the WAL, the sockets), nor the endpoint's. Count on a quiet machine all
the same: what runs by the clock (the worker's heartbeat, scheduler and watchdog) runs more
often the longer a drain takes, and a loaded machine stretches the drains (seven helpers at a
load of 8 to 12 made the do-nothing route count 3,179 thousand a message, 1,100 quiet).
``bench/route_count.py`` counts the route alone, in process, where the load does not reach.

    python bench/drain_count.py --endpoint http://127.0.0.1:4566
    python bench/drain_count.py --endpoint http://127.0.0.1:4566 \\
        --variants floor_persist,worker-sqlite

Prints each variant's instructions a message and the ratios compare.py reports against its
goals. A variant under callgrind runs about fifty times slower than without: each needs a
minute or two at the default sizes, most of it the endpoint's waiting.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from compare import (
    BENCH,
    GOALS,
    REFERENCE,
    TIMES,
    BenchError,
    Options,
    _given,
    _left,
    _sqs,
    _store,
    command,
    fill,
    unavailable,
)

VARIANTS = ("floor", "floor_persist", "worker-sqlite", "worker-noop")
# Counted when asked for: the worker on asyncio's own event loop, where worker-sqlite takes
# uvloop's when it is installed.
CHOICES = (*VARIANTS, "worker-sqlite-asyncio")
_TOTAL = re.compile(r"Collected : (\d+)")


def instructions(options: Options, name: str, n: int, tmp: Path) -> int:
    """Fill a queue with ``n`` records and drain it with ``name`` under callgrind: the total."""
    sqs = _sqs(options.endpoint)
    url = fill(sqs, f"count-{name}-{uuid.uuid4().hex[:8]}", n, options.seed, times=options.times)
    db = tmp / f"{uuid.uuid4().hex[:8]}.db"
    try:
        with _store(options, name, db) as store:
            argv, env = command(options, name, url, db, store)
            # Without compare's probe (its own calls would be counted): the program alone.
            if argv[1:2] == [str(BENCH / "compare_probe.py")]:
                argv = [argv[0], *argv[2:]]
            out = tmp / f"{name}.{n}.callgrind"
            valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            env = {**env, "PYTHONHASHSEED": "0"}  # the same dict layouts on every run
            done = subprocess.run(
                [*valgrind, *argv], env=env, capture_output=True, text=True, check=False
            )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            raise BenchError(f"{name} exited {done.returncode}: {lines[-1][:300]}")
        if _left(sqs, url):
            raise BenchError(f"{name} left messages in its queue")
        found = _TOTAL.findall(done.stderr)
        if not found:
            raise BenchError(f"{name}: callgrind printed no total")
        return int(found[-1])
    finally:
        sqs.delete_queue(QueueUrl=url)


def per_message(options: Options, name: str, small: int, large: int) -> float:
    with tempfile.TemporaryDirectory(prefix="drain-count-") as folder:
        tmp = Path(folder)
        first = instructions(options, name, small, tmp)
        second = instructions(options, name, large, tmp)
    return (second - first) / (large - small)


def report(counts: dict[str, float]) -> str:
    lines = ["| variant | instructions a message |", "|---|---|"]
    lines += [f"| {name} | {count / 1000:,.0f} thousand |" for name, count in counts.items()]
    cpu = [
        (label, top, bottom, goal) for label, top, bottom, figure, goal in GOALS if figure == "cpu"
    ]
    ratios = [
        f"| {label} | {counts[top] / counts[bottom]:.2f} | {goal or '—'} |"
        for label, top, bottom, goal in cpu
        if top in counts and bottom in counts
    ]
    if not ratios:  # a header over no row said nothing of why
        pairs = [f"{top} and {bottom}" for _, top, bottom, _ in cpu if {top, bottom} <= {*CHOICES}]
        return "\n".join(
            [*lines, "", f"no ratio: count both of a pair ({'; '.join(pairs)}) with --variants"]
        )
    lines += ["", "| ratio | instructions | goal (for CPU time) |", "|---|---|---|", *ratios]
    return "\n".join(lines)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", required=True, help="SQS endpoint URL (LocalStack's)")
    parser.add_argument("--small", type=int, default=300, help="records in the first drain")
    parser.add_argument("--large", type=int, default=1300, help="records in the second drain")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--times", choices=TIMES, default="in-order", help="as compare.py's")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(CHOICES)}"
    )
    parser.add_argument(
        "--reference", type=Path, default=REFERENCE, help="folder of floor.py, floor_persist.py"
    )
    args = parser.parse_args(argv)
    chosen = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = sorted(set(chosen) - set(CHOICES))
    if unknown or not chosen:
        parser.error(
            f"unknown variant {', '.join(unknown) or '(none)'}: choose from {', '.join(CHOICES)}"
        )
    if not 0 < args.small < args.large:
        parser.error("--small must be at least 1 and less than --large")
    args.variants = chosen
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    options = Options(
        endpoint=args.endpoint,
        concurrency=args.concurrency,
        seed=args.seed,
        times=args.times,
        variants=args.variants,
        reference=args.reference.resolve(),
    )
    try:
        if not any(Path(folder, "valgrind").is_file() for folder in os.get_exec_path()):
            raise BenchError("valgrind is not installed: apt-get install valgrind")
        missing = {k: v for k, v in unavailable(options).items() if k in args.variants}
        if missing:
            raise BenchError("; ".join(f"{name}: {why}" for name, why in missing.items()))
        with _given(options.endpoint):
            counts = {
                name: per_message(options, name, args.small, args.large) for name in args.variants
            }
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
