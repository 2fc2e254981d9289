"""The whole end-to-end comparison in one command: reference loops, the worker, the Node peer.

Every variant drains a queue of its own, pre-filled with the same N valid simulated records
(about 1.5 KB each, from ``lambda_destinations.simulate``), at the same concurrency, in a fresh
subprocess:

    floor                 receive ten, delete them in one batch, nothing else (floor.py)
    floor_persist         the same, plus one SQLite INSERT OR IGNORE (request id, body) per
                          message and a commit per batch, WAL, synchronous=NORMAL: that script
                          fixes the setting (floor_persist.py)
    floor_schema          floor_persist's loop writing the worker's own rows: the worker's
                          INSERT, the parameters it would bind (made before the drain), a file
                          that `migrate` made, synchronous=FULL (bench/floor_schema.py)
    worker-sqlite         `lambda-destinations run --once`, the default route (persist), on a
                          new SQLite file with the store's default synchronous=FULL
    worker-sqlite-normal  the same with `?synchronous=normal`, floor_persist's setting
    worker-sqlite-asyncio the same as worker-sqlite on asyncio's own event loop
                          (event_loop=asyncio), where worker-sqlite takes uvloop's when installed
    worker-noop           the worker with one do-nothing handler as its only route
    worker-pg             the worker on a new PostgreSQL database (created through --pg's
                          database, dropped after)
    worker-pg-asyncio     the same on asyncio's own event loop
    peer                  sqs-consumer + better-sqlite3 12 on Node (bench/node/peer.mjs): the work
                          of floor_persist, in WAL with synchronous=FULL, the worker's default

The reference loops and the peer run CONCURRENCY loops, each receiving up to ten; the worker
handles CONCURRENCY messages at once. The variants alternate over --repeat rounds, each round
starting one variant later, so that a slow spell of a shared machine falls on all of them.

Start-up is left out by measuring the drain window only: from the moment the first
ReceiveMessage starts to the moment the last delete returns. The Python variants run under
compare_probe.py, which marks the monotonic clock and the process's CPU time (all its threads),
with the part spent in the kernel (system time), there through aiobotocore's one call path;
the peer marks the same points itself. No variant starts a process of its own. The whole
process's CPU time (wait4) is reported too; the difference is start-up, connecting, the
closing empty receives and shutting down. For worker-pg, the CPU of the PostgreSQL backends
serving the run's database over the same window is read from /proc and reported apart
("server"), and so is the endpoint's when it runs on this machine (the process listening on its
port: LocalStack or the moto server). The variant, the server and the endpoint share the
machine's cores, so each drain also gets the rate those cores could give at most, were they
busy with nothing else: the number of cores over the three CPU times a message. A variant whose
msg/s is near that ceiling is held back by the machine, not by waiting.

Prints, per variant, the median and range of msg/s and CPU µs per message (and of that, the
system time: writing the SQLite WAL, syncing it, sockets, waking threads), then the ratios of
each round's pairs (median and range) against the goals.

The endpoint is LocalStack where Python 3.13 is there, started without Docker:

    ~/.pyenv/versions/3.13.0/bin/python -m venv ~/.venvs/localstack
    ~/.venvs/localstack/bin/pip install 'localstack-core[runtime]==4.14.0' 'cbor2<6' \\
        'cryptography==43.0.3' 'pyopenssl==24.2.1' service_identity
    GATEWAY_LISTEN=127.0.0.1:4566 SERVICES=sqs \\
        ~/.venvs/localstack/bin/python -m localstack.runtime.main

(later releases need an account; the pins keep its dependencies at versions it works with),
otherwise a moto server subprocess (--moto). The Node peer needs its packages once:
`cd bench/node && npm_config_nodedir=/usr npm ci` (better-sqlite3 builds from source against
the machine's Node headers); without them, the peer is left out and the script says so.

    python bench/compare.py --endpoint http://127.0.0.1:4566 \\
        --pg postgresql://postgres@127.0.0.1/postgres -n 3000 --repeat 3
    python bench/compare.py --moto -n 200 --variants floor,worker-sqlite

With ``--split-cores`` the endpoint's process (every thread) runs on one core and each variant
on the others, for the whole run: the endpoint then has a core of its own, as SQS is another
machine's, and a variant's throughput says whether it keeps up with the endpoint on its own
core, where on shared cores it is the two processes' CPU together. The PostgreSQL server stays
where the scheduler puts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REGION = "us-east-1"
BENCH = Path(__file__).resolve().parent
# The reference loops live outside this repository: $LAMBDA_DESTINATIONS_BENCH_REFERENCE when set,
# otherwise ../shared/bench beside the checkout.
REFERENCE = Path(
    os.environ.get("LAMBDA_DESTINATIONS_BENCH_REFERENCE")
    or BENCH.parent.parent / "shared" / "bench"
)
NODE = BENCH / "node"
NODE_PACKAGES = ("sqs-consumer", "better-sqlite3", "@aws-sdk/client-sqs")
VARIANTS = (
    "floor",
    "floor_persist",
    "floor_schema",
    "worker-sqlite",
    "worker-sqlite-normal",
    "worker-sqlite-asyncio",
    "worker-noop",
    "worker-pg",
    "worker-pg-asyncio",
    "peer",
)
# The variants on a PostgreSQL database of their own (its server's CPU read apart), and those on
# asyncio's own event loop rather than uvloop's.
PG_VARIANTS = ("worker-pg", "worker-pg-asyncio")
ASYNCIO_VARIANTS = ("worker-sqlite-asyncio", "worker-pg-asyncio")
# The loops whose SQLite file is counted after the drain, and the table that holds their records.
STORED_IN = {"floor_persist": "records", "floor_schema": "invocations", "peer": "records"}
# (label, numerator, denominator, figure compared, goal: empty for a figure with none)
GOALS = (
    ("worker-sqlite CPU/msg ÷ floor_persist's", "worker-sqlite", "floor_persist", "cpu", "≤ 1.3"),
    ("worker-sqlite CPU/msg ÷ floor_schema's", "worker-sqlite", "floor_schema", "cpu", ""),
    ("floor_schema CPU/msg ÷ floor_persist's", "floor_schema", "floor_persist", "cpu", ""),
    (
        "worker-sqlite-normal CPU/msg ÷ floor_persist's",
        "worker-sqlite-normal",
        "floor_persist",
        "cpu",
        "",
    ),
    (
        "worker-sqlite CPU/msg ÷ worker-sqlite-asyncio's",
        "worker-sqlite",
        "worker-sqlite-asyncio",
        "cpu",
        "",
    ),
    ("worker-sqlite msg/s ÷ floor's", "worker-sqlite", "floor", "rate", "≥ 0.95"),
    ("worker-sqlite CPU/msg ÷ peer's", "worker-sqlite", "peer", "cpu", "≤ 0.7"),
    ("worker-pg msg/s ÷ worker-sqlite's", "worker-pg", "worker-sqlite", "rate", "≥ 0.9"),
    ("worker-noop CPU/msg ÷ floor's", "worker-noop", "floor", "cpu", ""),
    ("worker-pg msg/s ÷ worker-pg-asyncio's", "worker-pg", "worker-pg-asyncio", "rate", ""),
    ("worker-pg CPU/msg ÷ worker-pg-asyncio's", "worker-pg", "worker-pg-asyncio", "cpu", ""),
)


TIMES = ("in-order", "random")


class BenchError(Exception):
    """A run that cannot be measured: one line saying what and how to fix it."""


@dataclass(frozen=True)
class Options:
    endpoint: str
    n: int = 3000
    concurrency: int = 32
    # The worker's `concurrency` (messages handled at once); None: the same as the loops'.
    worker_concurrency: int | None = None
    repeat: int = 3
    seed: int = 7
    # The records' times: "in-order" (as a destination queue delivers them) or "random" (each
    # drawn in the hour before now, as `dev --simulate` makes them): see bodies().
    times: str = "in-order"
    variants: tuple[str, ...] = VARIANTS
    reference: Path = REFERENCE
    node: Path = NODE
    pg: str | None = None
    # The endpoint's process on the first core, each variant on the others (see split_cores).
    split_cores: bool = False


@dataclass
class Run:
    """One variant's drain: the window's wall and CPU seconds (and the system part of those),
    the whole process's CPU seconds, the PostgreSQL backends' CPU seconds over the window
    (counted in the kernel's clock ticks, 10 ms here: a short window can read 0) and how many
    backends were found, and the messages it deleted."""

    wall: float
    cpu: float
    system: float
    process_cpu: float
    server: float
    deleted: int
    backends: int = 0
    # The endpoint's CPU seconds over the window; None when it was not found on this machine.
    endpoint: float | None = None

    def cpu_us(self, n: int) -> float:
        return self.cpu / n * 1e6

    def system_us(self, n: int) -> float:
        return self.system / n * 1e6

    def server_us(self, n: int) -> float:
        return self.server / n * 1e6

    def rate(self, n: int) -> float:
        return n / max(self.wall, 1e-6)

    def ceiling(self, n: int, cores: int, *, split: bool = False) -> float | None:
        """The msg/s the machine's cores could give at most, busy with this drain alone; with
        ``split``, the endpoint on a core of its own: the busier side's."""
        if self.endpoint is None:
            return None
        if split:
            return n / max(self.cpu + self.server, self.endpoint, 1e-9)
        return cores * n / max(self.cpu + self.server + self.endpoint, 1e-9)


@dataclass
class Report:
    options: Options
    drains: dict[str, list[Run]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    # Why the endpoint's CPU was not read (it is not on this machine, say); None when it was.
    endpoint_unmeasured: str | None = None
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))


def unavailable(options: Options) -> dict[str, str]:
    """The variants this machine cannot run, each with the reason and the fix."""
    reasons: dict[str, str] = {}
    missing = [
        name
        for name in ("floor.py", "floor_persist.py")
        if not (options.reference / name).is_file()
    ]
    if missing:
        why = (
            f"reference loops not found in {options.reference} ({', '.join(missing)}): "
            "give --reference DIR or set LAMBDA_DESTINATIONS_BENCH_REFERENCE"
        )
        reasons.update(floor=why, floor_persist=why)
    if not options.pg:
        for name in PG_VARIANTS:
            reasons[name] = "no PostgreSQL: give --pg postgresql://USER@HOST/EXISTING_DB"
    absent = [p for p in NODE_PACKAGES if not (options.node / "node_modules" / p).is_dir()]
    if shutil.which("node") is None:
        reasons["peer"] = "no `node` on PATH"
    elif absent:
        reasons["peer"] = (
            f"npm packages absent in {options.node / 'node_modules'} ({', '.join(absent)}): "
            f"run `npm_config_nodedir=/usr npm ci` in {options.node}"
        )
    return {name: why for name, why in reasons.items() if name in options.variants}


def compare(options: Options) -> Report:
    """Run every available variant over the rounds, alternating; the caller prints the report."""
    report = Report(options, skipped=unavailable(options))
    names = [name for name in options.variants if name not in report.skipped]
    if not names:
        raise BenchError("no variant left to run: " + "; ".join(report.skipped.values()))
    report.drains = {name: [] for name in names}
    endpoint, report.endpoint_unmeasured = endpoint_processes(options.endpoint)
    with (
        (
            split_cores(endpoint, report.endpoint_unmeasured)
            if options.split_cores
            else _all_cores()
        ) as cpus,
        tempfile.TemporaryDirectory(prefix="compare-") as tmp,
    ):
        for round_ in range(options.repeat):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                report.drains[name].append(measure(options, name, Path(tmp), endpoint, cpus))
    return report


@contextmanager
def _all_cores() -> Iterator[set[int] | None]:
    yield None


@contextmanager
def split_cores(endpoint: frozenset[int], unmeasured: str | None) -> Iterator[set[int]]:
    """The endpoint's processes (every thread) on the first core this script may use, for as
    long as the comparison runs; yields the cores left for the variants.

    On two shared cores the scheduler puts the endpoint and the variant wherever there is room,
    and each drain's throughput is that of the two processes' CPU together. Split, the endpoint
    has a core of its own, as SQS is another machine's: a variant keeps up with it or not on
    its own core. The PostgreSQL server is left where the scheduler puts it.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise BenchError("--split-cores needs two cores: this process may use one")
    if not endpoint:
        raise BenchError(f"--split-cores needs the endpoint's process: {unmeasured}")
    before = {pid: os.sched_getaffinity(pid) for pid in endpoint}
    _pin(endpoint, {cores[0]})
    try:
        yield set(cores[1:])
    finally:
        for pid, cpus in before.items():
            with contextlib.suppress(OSError):
                _pin({pid}, cpus)


def _pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Every thread of each process on ``cpus`` (threads it starts later inherit it)."""
    for pid in pids:
        for thread in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.sched_setaffinity(int(thread), cpus)


def measure(
    options: Options,
    name: str,
    tmp: Path,
    endpoint: frozenset[int] = frozenset(),
    cpus: set[int] | None = None,
) -> Run:
    """Fill a new queue, drain it with one variant, check that it drained and kept everything."""
    n = options.n
    sqs = _sqs(options.endpoint)
    queue = f"compare-{name}-{uuid.uuid4().hex[:8]}"
    db = tmp / f"{queue}.db"
    keep = _bodies_file(db) if name == "floor_schema" else None
    url = fill(sqs, queue, n, options.seed, keep=keep, times=options.times)
    try:
        with _store(options, name, db) as store:
            argv, env = command(options, name, url, db, store)
            database = _database(store) if name in PG_VARIANTS else None
            run = _timed(name, argv, env, database, endpoint, cpus)
        left = _left(sqs, url)
        if left or run.deleted < n:
            raise BenchError(f"{name} deleted {run.deleted} of {n} messages and left {left}")
        if name in STORED_IN:
            stored = _count(db, STORED_IN[name])
            if stored != n:
                raise BenchError(f"{name} stored {stored} of {n} records")
        return run
    finally:
        sqs.delete_queue(QueueUrl=url)


def fill(
    sqs: _Sqs, queue: str, n: int, seed: int, keep: Path | None = None, times: str = "in-order"
) -> str:
    """Create the queue and send n valid simulated records with distinct request ids; with
    ``keep``, write their bodies there too, as a JSON list (for floor_schema.py)."""
    url: str = sqs.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    sent = bodies(n, seed, times)
    if keep is not None:
        keep.write_text(json.dumps(sent))
    for start in range(0, n, 10):
        batch = sent[start : start + 10]
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)],
        )
    return url


def _bodies_file(db: Path) -> Path:
    return db.with_suffix(".bodies.json")


def bodies(n: int, seed: int, times: str = "in-order") -> list[str]:
    """The bodies of n valid simulated records with distinct keys, for ``seed``.

    Their times (the ``timestamp`` that the store's time-ordered indexes hold) rise through
    the hour before now in the order sent, as a destination queue delivers records: about in
    the order their invocations ended. ``times="random"`` draws each in that hour instead,
    as `dev --simulate` does: every index on the time then takes each row at a random place,
    which no real drain does (at 20,000 records, 24 µs a message more for the worker:
    bench/MEASUREMENTS.md, 5 December).
    """
    from lambda_destinations.simulate import messages

    found: list[str] = []
    keys: set[str] = set()
    in_order = times == "in-order"
    for message in messages(n * 2 + 20, seed=seed, poison_every=0, in_order=in_order):
        # Legacy DLQ messages are left out (they need attributes), and so are repeated keys:
        # INSERT OR IGNORE would store them once, and each variant must keep every record.
        if message.attributes or message.key in keys:
            continue
        keys.add(message.key)
        found.append(message.body)
        if len(found) == n:
            break
    return found


def command(
    options: Options, name: str, url: str, db: Path, store: str
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run one variant (the Python ones under the probe, which
    takes the window file as its first argument: see _timed)."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env["AWS_DEFAULT_REGION"] = REGION
    concurrency = str(options.concurrency)
    probe = [sys.executable, str(BENCH / "compare_probe.py")]
    if name == "floor":
        return [
            *probe,
            str(options.reference / "floor.py"),
            options.endpoint,
            url,
            concurrency,
        ], env
    if name == "floor_persist":
        script = str(options.reference / "floor_persist.py")
        return [*probe, script, options.endpoint, url, concurrency, str(db)], env
    if name == "floor_schema":
        script = str(BENCH / "floor_schema.py")
        given = [options.endpoint, url, concurrency, str(db), str(_bodies_file(db))]
        return [*probe, script, *given], env
    if name == "peer":
        peer = str(options.node / "peer.mjs")
        return ["node", peer, options.endpoint, url, concurrency, str(db), "FULL"], env
    env.update(
        LAMBDA_DESTINATIONS_QUEUES=url,
        LAMBDA_DESTINATIONS_ENDPOINT_URL=options.endpoint,
        LAMBDA_DESTINATIONS_REGION=REGION,
        LAMBDA_DESTINATIONS_STORE=store,
        LAMBDA_DESTINATIONS_CONCURRENCY=str(options.worker_concurrency or options.concurrency),
        LAMBDA_DESTINATIONS_WAIT_TIME="1",
        LAMBDA_DESTINATIONS_LOG_LEVEL="warning",
        LAMBDA_DESTINATIONS_LOG_FORMAT="json",
        LAMBDA_DESTINATIONS_OPS_PORT="0",
        LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL="0",
    )
    env.pop("LAMBDA_DESTINATIONS_CONFIG", None)
    env.pop("LAMBDA_DESTINATIONS_EVENT_LOOP", None)  # each variant says its own
    if name in ASYNCIO_VARIANTS:
        env["LAMBDA_DESTINATIONS_EVENT_LOOP"] = "asyncio"
    if name == "worker-noop":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
        env["LAMBDA_DESTINATIONS_ROUTES"] = json.dumps([{"handlers": ["compare_noop:noop"]}])
    return [*probe, _worker_executable(), "run", "--once"], env


def _worker_executable() -> str:
    beside = Path(sys.executable).with_name("lambda-destinations")
    found = str(beside) if beside.is_file() else shutil.which("lambda-destinations")
    if found is None:
        raise BenchError(
            "`lambda-destinations` is not installed: pip install -e . in this environment"
        )
    return found


@contextmanager
def _store(options: Options, name: str, db: Path) -> Iterator[str]:
    """The worker's store URL for one run; a PostgreSQL database lives only as long as the run."""
    if name not in PG_VARIANTS:
        yield f"sqlite:///{db}" + ("?synchronous=normal" if name == "worker-sqlite-normal" else "")
        return
    assert options.pg is not None
    database = f"ld_compare_{uuid.uuid4().hex[:12]}"
    _pg_admin(options.pg, f'CREATE DATABASE "{database}"')
    try:
        yield urllib.parse.urlsplit(options.pg)._replace(path=f"/{database}").geturl()
    finally:
        _pg_admin(options.pg, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _database(store: str) -> str:
    return urllib.parse.urlsplit(store).path.lstrip("/")


def _pg_admin(url: str, statement: str) -> None:
    try:
        import asyncpg
    except ImportError:
        raise BenchError("worker-pg needs asyncpg: pip install -e '.[postgres]'") from None

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"PostgreSQL at --pg: {exc}: check the server and the URL") from None


def _timed(
    name: str,
    argv: list[str],
    env: dict[str, str],
    database: str | None,
    endpoint: frozenset[int] = frozenset(),
    cpus: set[int] | None = None,
) -> Run:
    """Run one subprocess to its end, on ``cpus`` when given; its drain window, and its whole
    CPU time from wait4."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as err:
        window_file = Path(tmp) / "window.json"
        env = {**env, "COMPARE_WINDOW": str(window_file)}
        if argv[1:2] == [str(BENCH / "compare_probe.py")]:
            argv = [*argv[:2], str(window_file), *argv[2:]]
        backends = BackendCpu(database) if database else None
        endpoint_cpu = ProcessCpu(endpoint) if endpoint else None
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
        )
        if cpus:  # at once, in its interpreter's start-up, long before its window opens
            os.sched_setaffinity(process.pid, cpus)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        for sampler in (backends, endpoint_cpu):
            if sampler:
                sampler.stop()
        if process.returncode != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines() or ["(no output)"]
            raise BenchError(f"{name} exited {process.returncode}: {lines[-1][:300]}")
        window = json.loads(window_file.read_text())
    if "start" not in window or "end" not in window:
        raise BenchError(f"{name} deleted nothing: its window has no end")
    (start, cpu_start, system_start), (end, cpu_end, system_end) = window["start"], window["end"]
    return Run(
        wall=end - start,
        cpu=cpu_end - cpu_start,
        system=system_end - system_start,
        process_cpu=usage.ru_utime + usage.ru_stime,
        server=backends.between(start, end) if backends else 0.0,
        deleted=int(window["deleted"]),
        backends=backends.found if backends else 0,
        endpoint=endpoint_cpu.between(start, end) if endpoint_cpu else None,
    )


class ProcessCpu:
    """Samples the CPU time (every thread's, user + system) of a set of processes, from /proc.

    Samples are kept with the monotonic clock's time, so that the CPU spent over a window of
    another process's can be read afterwards. Counted in the kernel's clock ticks (10 ms here):
    a short window can read 0."""

    INTERVAL = 0.05

    def __init__(self, pids: frozenset[int] = frozenset()) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._processes: dict[int, float] = dict.fromkeys(pids, 0.0)
        self._samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    @property
    def found(self) -> int:
        """How many processes were sampled."""
        return len(self._processes)

    def between(self, start: float, end: float) -> float:
        """The CPU seconds from the last sample before start to the first after end."""
        before = [total for at, total in self._samples if at <= start]
        after = [total for at, total in self._samples if at >= end]
        last = self._samples[-1][1] if self._samples else 0.0
        return (after[0] if after else last) - (before[-1] if before else 0.0)

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._done.wait(self.INTERVAL):
                return

    def _discover(self) -> None:
        """Add the processes that started since the last sample (none for a fixed set)."""

    def _sample(self) -> None:
        self._discover()
        for pid in self._processes:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it exited: keep its last sample
            self._processes[pid] = (int(fields[11]) + int(fields[12])) / self._tick
        self._samples.append((time.monotonic(), sum(self._processes.values())))


class BackendCpu(ProcessCpu):
    """The PostgreSQL backends serving one database, as they connect: a backend's process
    title names its database."""

    def __init__(self, database: str) -> None:
        self._needle = f" {database} "
        self._seen: set[int] = set()
        super().__init__()

    def _discover(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in self._seen or int(entry) in self._processes:
                continue
            pid = int(entry)
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and self._needle in title:
                self._processes[pid] = 0.0
            elif "postgres" not in title:
                # A new backend shows the server's command line until it has authenticated,
                # then its title: only processes that are not PostgreSQL's are passed over.
                self._seen.add(pid)


def endpoint_processes(endpoint: str) -> tuple[frozenset[int], str | None]:
    """The processes of this machine listening on the endpoint's TCP port, or why none are
    known (the endpoint is another machine's, or its process cannot be read)."""
    parsed = urllib.parse.urlsplit(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        local = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, port)}
    except OSError as exc:
        return frozenset(), f"{parsed.hostname} does not resolve ({exc})"
    if not all(ipaddress.ip_address(address).is_loopback for address in local):
        return frozenset(), f"{parsed.hostname} is not this machine's loopback address"
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    pids = {pid for pid in _pids() if not sockets.isdisjoint(_open_files(pid))}
    if not pids:
        return frozenset(), f"no process of this machine that can be read listens on port {port}"
    return frozenset(pids), None


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _open_files(pid: int) -> set[str]:
    """What the process's descriptors point at (``socket:[INODE]`` for a socket); what cannot be
    read (another user's process, a descriptor closed meanwhile) is left out."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    found = set()
    for fd in descriptors:
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return found


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local address "HEX_IP:HEX_PORT", state 0A: LISTEN, inode the tenth field
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


class _Sqs:
    """What this script asks of a boto3 SQS client (for the type checker)."""

    def create_queue(self, **kwargs: object) -> dict[str, str]: ...
    def send_message_batch(self, **kwargs: object) -> object: ...
    def get_queue_attributes(self, **kwargs: object) -> dict[str, dict[str, str]]: ...
    def delete_queue(self, **kwargs: object) -> object: ...


def _sqs(endpoint: str) -> _Sqs:
    import boto3

    client: _Sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the local endpoints' dummy key
    )
    return client


def _left(sqs: _Sqs, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as connection:
        (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


# ---------------------------------------------------------------------------------------------
# The report


def _spread(values: list[float], fmt: str) -> str:
    middle = format(statistics.median(values), fmt)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def ratios(report: Report) -> list[tuple[str, list[float], str]]:
    """Each goal's ratio per round (the pairs ran in the same round), for the variants run."""
    n = report.options.n
    found = []
    for label, top, bottom, figure, goal in GOALS:
        if top not in report.drains or bottom not in report.drains:
            continue
        pairs = zip(report.drains[top], report.drains[bottom], strict=True)
        if figure == "cpu":
            values = [a.cpu_us(n) / b.cpu_us(n) for a, b in pairs]
        else:
            values = [a.rate(n) / b.rate(n) for a, b in pairs]
        found.append((label, values, goal))
    return found


def _met(value: float, goal: str) -> str:
    if not goal:
        return ""
    limit = float(goal.split()[1])
    ok = value <= limit if goal.startswith("≤") else value >= limit
    return "met" if ok else "NOT met"


def _worker_concurrency(options: Options) -> str:
    if options.worker_concurrency in (None, options.concurrency):
        return ""
    return f"(the worker's: {options.worker_concurrency})  "


SPLIT_NOTE = "cores split (the endpoint on one, the variant on the other)  "


def format_report(report: Report) -> str:
    options, n = report.options, report.options.n
    lines = [
        f"endpoint {options.endpoint}  records {n}  concurrency {options.concurrency}  "
        f"{_worker_concurrency(options)}"
        f"rounds {options.repeat}  times {options.times}  "
        f"{SPLIT_NOTE if options.split_cores else ''}"
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "median (min–max) over the rounds, over each drain window (first receive to last delete)",
        "",
        "| variant | msg/s | CPU µs/msg | of which system | whole process CPU s "
        "| server CPU µs/msg | endpoint CPU µs/msg "
        f"| ceiling msg/s ({'split' if options.split_cores else f'{report.cores} cores'}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, drains in report.drains.items():
        server = _spread([d.server_us(n) for d in drains], ".0f") if name in PG_VARIANTS else "—"
        endpoint = [d.endpoint / n * 1e6 for d in drains if d.endpoint is not None]
        split = options.split_cores
        ceiling = [c for d in drains if (c := d.ceiling(n, report.cores, split=split)) is not None]
        lines.append(
            f"| {name} | {_spread([d.rate(n) for d in drains], ',.0f')} "
            f"| {_spread([d.cpu_us(n) for d in drains], ',.0f')} "
            f"| {_spread([d.system_us(n) for d in drains], ',.0f')} "
            f"| {_spread([d.process_cpu for d in drains], '.2f')} | {server} "
            f"| {_spread(endpoint, ',.0f') if endpoint else '—'} "
            f"| {_spread(ceiling, ',.0f') if ceiling else '—'} |"
        )
    lines += ["", "| ratio (per round) | median (min–max) | goal | |", "|---|---|---|---|"]
    for label, values, goal in ratios(report):
        middle = statistics.median(values)
        lines.append(
            f"| {label} | {_spread(values, '.2f')} | {goal or '—'} | {_met(middle, goal)} |"
        )
    for name, why in report.skipped.items():
        lines.append(f"{name}: skipped: {why}")
    if report.endpoint_unmeasured:
        lines.append(f"endpoint CPU: not measured: {report.endpoint_unmeasured}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server subprocess on a free port, for as long as the block runs."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_for(endpoint, 30)
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def _wait_for(endpoint: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    parsed = urllib.parse.urlsplit(endpoint)
    while True:
        try:
            with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"no SQS endpoint at {endpoint}: start LocalStack (see this script's "
                    "docstring) or give --moto"
                ) from None
            time.sleep(0.2)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="SQS endpoint URL (LocalStack: http://127.0.0.1:4566)")
    where.add_argument("--moto", action="store_true", help="start a moto server subprocess")
    parser.add_argument("-n", type=int, default=3000, help="records per run (default 3000)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        help="the worker's concurrency, when not --concurrency: the reference loops and the peer "
        "each hold up to ten messages a loop (320 at --concurrency 32), the worker up to "
        "twice its concurrency",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds, alternating (default 3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--times",
        choices=TIMES,
        default="in-order",
        help="the records' times: rising in the order sent, as a destination queue delivers "
        "them (the default), or each at random in the hour before now",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--pg", help="PostgreSQL URL of an existing database to create others from")
    parser.add_argument(
        "--split-cores",
        action="store_true",
        help="the endpoint's process on one core, each variant on the others (the endpoint must "
        "run on this machine; the PostgreSQL server is not moved)",
    )
    parser.add_argument(
        "--reference", type=Path, default=REFERENCE, help="folder of floor.py, floor_persist.py"
    )
    parser.add_argument(
        "--node", type=Path, default=NODE, help="folder of peer.mjs and its node_modules"
    )
    args = parser.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown or not chosen:
        parser.error(
            f"unknown variant {', '.join(unknown) or '(none)'}: choose from {', '.join(VARIANTS)}"
        )
    if args.n < 1 or args.concurrency < 1 or args.repeat < 1 or (args.worker_concurrency or 1) < 1:
        parser.error("-n, --concurrency, --worker-concurrency and --repeat must be at least 1")
    args.variants = tuple(chosen)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        with moto_server() if args.moto else _given(args.endpoint) as endpoint:
            options = Options(
                endpoint=endpoint,
                n=args.n,
                concurrency=args.concurrency,
                worker_concurrency=args.worker_concurrency,
                repeat=args.repeat,
                seed=args.seed,
                times=args.times,
                variants=args.variants,
                reference=args.reference.resolve(),
                node=args.node.resolve(),
                pg=args.pg,
                split_cores=args.split_cores,
            )
            for name, why in unavailable(options).items():
                print(f"{name}: skipped: {why}", file=sys.stderr)
            report = compare(options)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


@contextmanager
def _given(endpoint: str) -> Iterator[str]:
    _wait_for(endpoint, 5)
    yield endpoint


if __name__ == "__main__":
    sys.exit(main())
