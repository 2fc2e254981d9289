"""How fast the worker's ops server answers /healthz, /readyz and /metrics while it works.

A `lambda-destinations run` process drains queues of a moto server (its own process), and a
client in this process asks each path every 0.25 s (each answer waited for up to 30 s, so a
slow one is measured, not cut off), for ``--seconds``. Prints each path's p50, p99 and max
latency and its statuses, to hold against the probes' timeouts (Kubernetes' liveness and
readiness 5 s, ECS's health check 5 s, the image's HEALTHCHECK 5 s, Prometheus' scrape 10 s).

Scenarios (``--scenario``):

- ``drain``: ``--queues`` queues of ``--records`` records each, persisted to SQLite at
  ``--concurrency`` (moto slows down with a queue's depth, hence many small queues).
- ``blocking``: the same, routed to a handler that calls ``time.sleep(--block)`` (a
  blocking client in a team's handler), then persist.
- ``cpu``: a handler that computes for ``--block`` seconds without giving the loop back.
- ``wedged``: a handler that blocks the loop for ever (after ``--block`` s of a normal run);
  when /healthz first failed, and what it said.
- ``sqlite-lock``: ``--lock-at`` seconds into a drain, another process holds the SQLite
  store's write lock for 20 s: when /readyz turned 503 (and its reason), what /healthz said,
  when both were 200 again.
- ``labels``: ``--queues`` queues and ``--handlers`` handlers on the route: /metrics' size.

    python bench/probe_latency.py --scenario drain --queues 10 --records 200 --concurrency 64
    python bench/probe_latency.py --scenario blocking --block 2 --concurrency 32

Figures depend on the machine's load: say how busy it was when you quote them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from faults import ENTRY, HANDLERS, REGION, make_queue, records, send

PATHS = ("/healthz", "/readyz", "/metrics")
EVERY = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """A moto server in a process of its own: its work does not slow this one's clock."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def wait_listening(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listened on port {port} within {seconds} s")


class Prober:
    """One thread per path, each asking it every EVERY seconds: (when, seconds, status, body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: dict[str, list[tuple[float, float, int, str]]] = {path: [] for path in PATHS}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._ask, args=(path,), daemon=True) for path in PATHS
        ]
        self.started = time.monotonic()

    def __enter__(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(35)

    def _ask(self, path: str) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = f"http://127.0.0.1:{self.port}{path}"
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with opener.open(url, timeout=30) as answer:
                    status, body = answer.status, answer.read()
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read()
            except OSError as exc:
                status, body = 0, str(exc).encode()
            took = time.monotonic() - began
            text = body.decode(errors="replace") if path != "/metrics" else str(len(body))
            self.seen[path].append((began - self.started, took, status, text))
            self._stop.wait(max(0.0, EVERY - took))


def summary(prober: Prober) -> dict[str, Any]:
    table = {}
    for path, rows in prober.seen.items():
        took = sorted(row[1] for row in rows)
        if not took:
            continue
        table[path] = {
            "n": len(took),
            "p50_ms": round(statistics.median(took) * 1000, 1),
            "p99_ms": round(took[min(len(took) - 1, int(len(took) * 0.99))] * 1000, 1),
            "max_ms": round(took[-1] * 1000, 1),
            "over_5s": sum(1 for t in took if t > 5),
            "statuses": dict(Counter(row[2] for row in rows)),
        }
    return table


def env_for(
    args: argparse.Namespace, endpoint: str, urls: list[str], db: Path, port: int
) -> dict[str, str]:
    route = {"blocking": "blocking", "cpu": "cpu", "wedged": "wedged"}.get(args.scenario)
    handlers = [route, "persist"] if route else ["persist"]
    if args.scenario == "labels":
        handlers = [f"h{i:03d}" for i in range(args.handlers)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HANDLERS), os.environ.get("PYTHONPATH", "")]),
        "LAMBDA_DESTINATIONS_QUEUES": ",".join(urls),
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
        "LAMBDA_DESTINATIONS_STORE": f"sqlite:///{db}",
        "LAMBDA_DESTINATIONS_REGION": REGION,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "2",
        "LAMBDA_DESTINATIONS_CONCURRENCY": str(args.concurrency),
        "LAMBDA_DESTINATIONS_OPS_PORT": str(port),
        "LAMBDA_DESTINATIONS_OPS_HOST": "127.0.0.1",
        "LAMBDA_DESTINATIONS_QUEUE_METRICS_INTERVAL": "5",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
        "LAMBDA_DESTINATIONS_LOG_LEVEL": "warning",
        "LAMBDA_DESTINATIONS_HANDLER_MODULES": "fault_handlers",
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": handlers}]),
        "BLOCK_SECONDS": str(args.block),
        "AWS_ACCESS_KEY_ID": "probes",
        "AWS_SECRET_ACCESS_KEY": "probes",
    }
    if args.scenario == "labels":
        env["LAMBDA_DESTINATIONS_HANDLERS"] = json.dumps(
            {name: {"type": "fault_handlers:effect"} for name in handlers}
        )
        env["EFFECTS_FILE"] = str(db.with_suffix(".effects"))
    return env


def hold_lock(db: Path, seconds: float) -> None:
    """Another process's write transaction on the store, for ``seconds``."""
    code = (
        "import sqlite3, sys, time; "
        # waits for the worker's own write to end (sqlite3's 5 s would give up mid-drain)
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60); "
        "c.execute('BEGIN IMMEDIATE'); time.sleep(float(sys.argv[2])); c.execute('ROLLBACK')"
    )
    subprocess.run([sys.executable, "-c", code, str(db), str(seconds)], check=True)


def worker_cpu(pid: int) -> float:
    """The worker's CPU seconds so far (user and system, every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM invocations").fetchone()[0])


def transitions(prober: Prober) -> dict[str, list[str]]:
    """Each path's changes of status, with when they came and what the body said."""
    out: dict[str, list[str]] = {}
    for path in ("/healthz", "/readyz"):
        last = None
        for when, took, status, text in prober.seen[path]:
            if status != last:
                out.setdefault(path, []).append(
                    f"{when:.1f}s (+{took:.1f}s): {status} {text[:200]}"
                )
                last = status
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario",
        default="drain",
        choices=["drain", "blocking", "cpu", "wedged", "sqlite-lock", "labels"],
    )
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--records", type=int, default=200, help="a queue")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--handlers", type=int, default=300)
    parser.add_argument("--block", type=float, default=2.0)
    parser.add_argument("--lock-at", type=float, default=2.0, help="sqlite-lock: seconds in")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with moto_process() as endpoint, tempfile.TemporaryDirectory() as tmp:
        sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="x",  # noqa: S106 - moto takes any
        )
        urls = [make_queue(sqs, f"probe{i}", visibility=60)[0] for i in range(args.queues)]
        for i, url in enumerate(urls):
            send(sqs, url, [json.dumps(r) for r in records(args.records, seed=i)])
        db, port = Path(tmp) / "store.db", free_port()
        report: dict[str, Any] = {"scenario": vars(args)}
        worker = subprocess.Popen([*ENTRY], env=env_for(args, endpoint, urls, db, port))
        try:
            wait_listening(port, 60)
            with Prober(port) as prober:
                if args.scenario == "sqlite-lock":
                    time.sleep(args.lock_at)
                    began = time.monotonic() - prober.started
                    hold_lock(db, 20)
                    ended = time.monotonic() - prober.started
                    report["lock_held"] = f"{began:.1f}s to {ended:.1f}s"
                    time.sleep(max(0.0, args.seconds - 20 - args.lock_at))
                else:
                    time.sleep(args.seconds)
            report["worker_cpu_s"] = worker_cpu(worker.pid)
        finally:
            worker.terminate()
            try:
                worker.wait(40)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        report["stored"] = stored(db)
        report["latency"] = summary(prober)
        report["transitions"] = transitions(prober)
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
