"""Start-up: the CPU time of operator commands on an empty store, each run as a new process.

Each command runs ``--runs`` times as ``lambda-destinations ...`` in a new process; reported is
the median CPU time (user + system, from ``resource.getrusage(RUSAGE_CHILDREN)`` before and
after each run) and the median wall time. The store is an empty SQLite file made by
``migrate`` and, with ``--pg``, a fresh PostgreSQL database made from that admin URL (dropped
afterwards). Then ``python -X importtime`` of ``failures list`` on SQLite: the packages it
imports, by their own import time, and the slowest top-level imports.

The floor, measured the same way, is a new interpreter that imports the libraries a command
reading the store cannot do without (SQLAlchemy, pydantic-settings, click, structlog, asyncio,
sqlite3) and does nothing else; each command's CPU is also given as a ratio to it, which
carries from one machine to another where seconds do not.

Every process runs with Python's bytecode cache, as an installed command has it (pip compiles a
wheel's modules when it installs them): ``PYTHONDONTWRITEBYTECODE`` is dropped from the
children's environment, and each command's first, unmeasured run writes the cache of an editable
checkout. With that variable set, every run compiled the project's 50-odd modules from source
again, about 0.05 s of CPU that no installed command spends.

    python bench/startup_bench.py
    python bench/startup_bench.py --runs 9 --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _args import at_least

COMMAND = str(Path(sys.executable).with_name("lambda-destinations"))
# (label, arguments, whether it needs a store); `failures show` asks for an id no store has,
# which runs the whole read path and ends with "no failure" (exit 1).
COMMANDS: list[tuple[str, list[str], bool]] = [
    ("--help", ["--help"], False),
    ("failures list", ["failures", "list"], True),
    ("failures stats", ["failures", "stats"], True),
    ("failures show <id>", ["failures", "show", "no-such-id:RetriesExhausted"], True),
    ("quarantine list", ["quarantine", "list"], True),
    ("dlq --help", ["dlq", "--help"], False),
    ("run --help", ["run", "--help"], False),
    ("dev --help", ["dev", "--help"], False),
]

# The libraries a store-reading command cannot do without (see the module's docstring).
FLOOR = [
    sys.executable,
    "-c",
    "import asyncio, sqlite3, click, structlog, sqlalchemy, pydantic_settings",
]


def environment(**extra: str) -> dict[str, str]:
    """This process's environment for a child, with the bytecode cache on (module docstring)."""
    env = {**os.environ, **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """One run as a new process: (CPU seconds, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def measure(store: str, runs: int) -> list[dict[str, object]]:
    env = environment(LAMBDA_DESTINATIONS_STORE=store)
    subprocess.run([COMMAND, "migrate"], env=env, capture_output=True, check=True)
    rows: list[dict[str, object]] = []
    for label, args, uses_store in COMMANDS:
        run_once([COMMAND, *args], env)  # warm the file cache
        times = [run_once([COMMAND, *args], env) for _ in range(runs)]
        rows.append(
            {
                "store": store.split(":", 1)[0] if uses_store else "-",
                "command": label,
                "cpu": statistics.median(cpu for cpu, _ in times),
                "cpu_min": min(cpu for cpu, _ in times),
                "wall": statistics.median(wall for _, wall in times),
            }
        )
    return rows


def import_profile(store: str, top: int) -> None:
    """``-X importtime`` of ``failures list``: own time by package, slowest top-level imports."""
    env = environment(LAMBDA_DESTINATIONS_STORE=store)
    code = "import sys; from lambda_destinations.cli import main; sys.argv[0] = 'x'; main()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, "failures", "list"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    by_package: collections.Counter[str] = collections.Counter()
    top_level: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line[13:]:
            continue
        own, cumulative, name = line[12:].split("|")
        if not own.strip().isdigit():
            continue  # the header line
        module = name.strip()
        package = module.split(".")[0]
        if package in ("sqlalchemy", "lambda_destinations") and module.count(".") >= 1:
            package = ".".join(module.split(".")[:2])
        by_package[package] += int(own)
        if not name.startswith("  "):
            top_level.append((int(cumulative), module))
    total = sum(by_package.values())
    count, ms = len(by_package), total / 1e3
    print(f"\n`failures list` imports {count} packages, {ms:.0f} ms of own import time in all:")
    for package, micros in by_package.most_common(top):
        print(f"  {package:<40} {micros / 1e3:7.1f} ms  {100 * micros / total:4.1f}%")
    print("slowest top-level imports (with what they import):")
    for micros, module in sorted(top_level, reverse=True)[:top]:
        print(f"  {module:<40} {micros / 1e3:7.1f} ms")


async def _pg_database(admin_url: str, name: str, create: bool) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=at_least(1), default=7)
    parser.add_argument("--pg", help="a PostgreSQL admin URL: also measure on a fresh database")
    parser.add_argument("--top", type=at_least(0), default=15)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        sqlite = f"sqlite:///{Path(folder) / 'store.db'}"
        rows += measure(sqlite, args.runs)
        if args.pg:
            name = f"ld_startup_{uuid.uuid4().hex[:12]}"
            asyncio.run(_pg_database(args.pg, name, create=True))
            try:
                pg_rows = measure(f"{args.pg.rsplit('/', 1)[0]}/{name}", args.runs)
                rows += [row for row in pg_rows if row["store"] != "-"]
            finally:
                asyncio.run(_pg_database(args.pg, name, create=False))
        run_once(FLOOR, environment())
        floor = statistics.median(run_once(FLOOR, environment())[0] for _ in range(args.runs))
        print(f"median of {args.runs} runs, CPU = user + system of the whole process")
        print(f"floor (a new interpreter importing {FLOOR[-1][7:]}): {floor:.3f} s CPU")
        print("| store | command | CPU s (median) | CPU s (min) | ÷ floor | wall s |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            cpu = float(str(row["cpu"]))
            print(
                f"| {row['store']} | `{row['command']}` | {cpu:.3f} | "
                f"{row['cpu_min']:.3f} | {cpu / floor:.2f} | {row['wall']:.3f} |"
            )
        import_profile(sqlite, args.top)


if __name__ == "__main__":
    main()
