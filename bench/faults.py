"""Fault trials against a moto server: kills, SIGTERM under load, an outage, poison, a soak.

Each trial runs real `lambda-destinations run` processes against a moto server this script
starts, and prints one row of a table:

- ``sigkill``: a drain of ``--records`` records whose handlers append one line per effect to a
  file; the worker is SIGKILLed ``--kills`` times at random moments and restarted. Reports lost
  records (not stored), doubled effects, messages dead-lettered without a reason, and the
  seconds the queue took to drain after the last restart.
- ``sigterm`` / ``sigterm-busy``: three handlers of 60 s in flight, SIGTERM; seconds to exit and
  the messages visible again right after the exit (``-busy``: two processes spin on the cores).
- ``outage-skip`` / ``outage-resend``: SMS through a TCP proxy that loses the answers of a share
  of SNS Publish calls (they reached SNS); doubled SMS and calls recorded in doubt.
- ``poison``: odd but valid records (lone surrogates, reversed pairs, NUL), large records,
  100,000-deep JSON, NaN and garbage: every valid record stored once, every poison message
  quarantined with a reason, on SQLite and (with ``--postgres URL``) PostgreSQL.
- ``soak``: ``--soak`` records fed a few hundred at a time (moto slows down with queue depth);
  the worker's RSS at the start, its peak and at the end.

    python bench/faults.py                      # every trial, default sizes
    python bench/faults.py --trials sigkill,poison --records 100 --kills 4
    python bench/faults.py --postgres postgresql://postgres@127.0.0.1/faults --json

Figures depend on the machine's load: say how busy it was when you quote them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3

from _args import at_least

HERE = Path(__file__).resolve().parent
HANDLERS = HERE / "fault_handlers"
REGION = "us-east-1"
REASON = "LambdaDestinations.Reason"
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()", "run"]


@dataclasses.dataclass
class Row:
    trial: str
    records: int = 0
    lost: int = 0
    doubled: int = 0
    dead_lettered_no_reason: int = 0
    quarantined: int = 0
    in_doubt: int = 0
    seconds: float = 0.0  # drain after the last restart, or time to exit
    note: str = ""


# -- the moto server and queues ----------------------------------------------------------------


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_queue(sqs: Any, name: str, *, visibility: int = 30, receives: int = 5) -> tuple[str, str]:
    unique = f"{name}-{random.getrandbits(32):08x}"
    dlq = sqs.create_queue(QueueName=f"{unique}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(receives)})
    attributes = {"VisibilityTimeout": str(visibility), "RedrivePolicy": policy}
    url = sqs.create_queue(QueueName=unique, Attributes=attributes)["QueueUrl"]
    return url, dlq


def send(sqs: Any, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if response.get("Failed"):
            for failure in response["Failed"]:  # too large for a batch: alone
                sqs.send_message(QueueUrl=url, MessageBody=bodies[start + int(failure["Id"])])


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def drain_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while got := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=300,
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        found.extend(got)
    return found


def records(n: int, seed: int) -> list[dict[str, Any]]:
    from lambda_destinations.simulate import failure_record, success_record

    rng = random.Random(seed)
    return [
        failure_record(rng, condition="RetriesExhausted") if i % 2 else success_record(rng)
        for i in range(n)
    ]


def stored_keys(store: str) -> Counter[str]:
    from lambda_destinations.store import InvocationFilter, Store

    async def read() -> Counter[str]:
        async with Store.from_url(store) as opened:
            rows = await opened.list_invocations(InvocationFilter(failed_only=False, limit=10**6))
        return Counter(row.key for row in rows)

    return asyncio.run(read())


def handler_notes(db: Path) -> list[str]:
    """``last_error`` of every handler run (in a SQLite store) that mentions a call in doubt."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT last_error FROM handler_runs").fetchall()
    return [r[0] for r in rows if r[0] and "in doubt" in r[0]]


class Worker:
    """A `lambda-destinations run` process."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, "PYTHONPATH": str(HANDLERS), **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ENTRY, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def base_env(endpoint: str, url: str, store: str, **extra: str) -> dict[str, str]:
    return {
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint,
        "LAMBDA_DESTINATIONS_STORE": store,
        "LAMBDA_DESTINATIONS_REGION": REGION,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "json",
        "LAMBDA_DESTINATIONS_LOG_LEVEL": "warning",
        "AWS_ACCESS_KEY_ID": "faults",
        "AWS_SECRET_ACCESS_KEY": "faults",
        **extra,
    }


def wait_until(done: Callable[[], bool], seconds: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(every)
    return done()


def no_reason(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if REASON not in (m.get("MessageAttributes") or {}))


# -- trials ------------------------------------------------------------------------------------


def trial_sigkill(endpoint: str, work: Path, n: int, kills: int, seed: int) -> Row:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url, dlq = make_queue(sqs, "kill", visibility=10, receives=5)
    recs = records(n, seed)
    send(sqs, url, [json.dumps(r) for r in recs])
    store = f"sqlite:///{work / 'kill.db'}"
    effects = work / "effects.txt"
    env = base_env(
        endpoint,
        url,
        store,
        EFFECTS_FILE=str(effects),
        EFFECT_SECONDS="0.3",
        LAMBDA_DESTINATIONS_CONCURRENCY="8",
        LAMBDA_DESTINATIONS_HANDLER_MODULES=json.dumps(["fault_handlers"]),
        LAMBDA_DESTINATIONS_ROUTES=json.dumps([{"handlers": ["persist", "effect"]}]),
    )
    rng = random.Random(seed)
    kill_at: list[int] = []  # effects written when each kill happened
    worker = Worker(env)
    try:  # the worker stopped however the trial ends (a wait that times out, Ctrl-C)
        for _ in range(kills):
            before = _lines(effects)
            worker.start()
            # Kill mid-drain: once this run has made effects, at a random moment after that.
            wait_until(lambda before=before: _lines(effects) > before, 120, every=0.1)
            time.sleep(rng.uniform(0.1, 2.0))
            kill_at.append(_lines(effects))
            worker.signal(signal.SIGKILL)
            worker.wait(30)
        worker.start()
        restarted = time.monotonic()
        drained = wait_until(lambda: depth(sqs, url) == 0, 600, every=1.0)
        seconds = time.monotonic() - restarted
    finally:
        worker.stop()
    effect_counts = Counter(effects.read_text().split()) if effects.exists() else Counter()
    expected = {_key(r) for r in recs}
    stored = stored_keys(store)
    dead = drain_all(sqs, dlq)
    doubled = {key: c for key, c in effect_counts.items() if c > 1}
    note = f"kills at effects {kill_at}" + ("" if drained else "; NOT drained in 600 s")
    if doubled:
        note += f"; doubles caused by kills {_culprits(effects, doubled, kill_at)}"
    return Row(
        trial="sigkill",
        records=n,
        lost=len(expected - set(stored)),
        doubled=sum(c - 1 for c in doubled.values()),
        dead_lettered_no_reason=no_reason(dead),
        quarantined=len(dead),
        seconds=round(seconds, 1),
        note=note,
    )


def _culprits(effects: Path, doubled: dict[str, int], kill_at: list[int]) -> list[int]:
    """For each doubled effect, the kill (1-based) after its first run: the crash that came
    between the effect and its completion record."""
    lines = effects.read_text().split()
    culprits = []
    for key in doubled:
        first = lines.index(key)
        culprits.append(next((i + 1 for i, at in enumerate(kill_at) if first < at), 0))
    return sorted(culprits)


def _lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def _key(record: dict[str, Any]) -> str:
    from lambda_destinations.schemas import decode

    return decode(json.dumps(record)).key


@contextlib.contextmanager
def spinning(count: int) -> Iterator[None]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def trial_sigterm(endpoint: str, work: Path, *, busy: bool) -> Row:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url, _dlq = make_queue(sqs, "term", visibility=120)
    recs = records(3, 7)
    for r in recs:
        r["requestPayload"] = {"sleep": 60}
    send(sqs, url, [json.dumps(r) for r in recs])
    markers = work / f"markers-{busy}"
    markers.mkdir()
    env = base_env(
        endpoint,
        url,
        f"sqlite:///{work / f'term-{busy}.db'}",
        MARKER_DIR=str(markers),
        LAMBDA_DESTINATIONS_SHUTDOWN_GRACE="2",
        LAMBDA_DESTINATIONS_HANDLER_MODULES=json.dumps(["fault_handlers"]),
        LAMBDA_DESTINATIONS_ROUTES=json.dumps([{"handlers": ["sleepy"]}]),
    )
    worker = Worker(env)
    with spinning(2 if busy else 0):
        worker.start()
        wait_until(lambda: len(list(markers.glob("started-*"))) >= 3, 60, every=0.1)
        sent = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(60)
        seconds = time.monotonic() - sent
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    visible = int(attributes["ApproximateNumberOfMessages"])
    hidden = int(attributes["ApproximateNumberOfMessagesNotVisible"])
    return Row(
        trial="sigterm-busy" if busy else "sigterm",
        records=3,
        lost=0,
        seconds=round(seconds, 2),
        note=f"exit {code}; right after exit: {visible} visible, {hidden} in flight",
    )


def trial_outage(endpoint: str, work: Path, n: int, policy: str, share: float) -> Row:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from tcp_proxy import AnswerCutter  # the same proxy the tests use

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url, dlq = make_queue(sqs, f"outage-{policy}")
    recs = [r for r in records(3 * n, 11) if r.get("responsePayload", {}).get("errorType")][:n]
    n = len(recs)
    send(sqs, url, [json.dumps(r) for r in recs])
    number = f"+1415555{random.randint(1000, 9999)}"
    store = f"sqlite:///{work / f'outage-{policy}.db'}"
    cutter = AnswerCutter(endpoint, b"Action=Publish")
    cutter.cuts = max(1, int(n * share))
    handlers = {"oncall": {"type": "sms", "window": 0, "phone_numbers": [number]}}
    handlers["oncall"]["in_doubt"] = policy

    async def run() -> None:
        async with cutter.running() as proxied:
            env = base_env(
                proxied,
                url,
                store,
                LAMBDA_DESTINATIONS_CONFIG=str(_toml(work, policy, handlers)),
            )
            worker = Worker(env)
            worker.start()
            try:
                await asyncio.to_thread(wait_until, lambda: depth(sqs, url) == 0, 600, 1.0)
            finally:
                await asyncio.to_thread(worker.stop)

    asyncio.run(run())
    sent = _sms_count(endpoint, number)
    stored = stored_keys(store)
    notes = handler_notes(work / f"outage-{policy}.db")
    dead = drain_all(sqs, dlq)
    return Row(
        trial=f"outage-{policy}",
        records=n,
        lost=max(0, n - sent) if policy == "resend" else 0,
        doubled=max(0, sent - n),
        dead_lettered_no_reason=no_reason(dead),
        quarantined=len(dead),
        in_doubt=len(notes),
        note=f"answers cut {cutter.cut}; SMS sent {sent}; stored {len(stored)}",
    )


def _toml(work: Path, policy: str, handlers: dict[str, Any]) -> Path:
    path = work / f"outage-{policy}.toml"
    lines = ["[[routes]]", 'handlers = ["persist", "oncall"]', "", "[handlers.oncall]"]
    for name, value in handlers["oncall"].items():
        lines.append(f"{name} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _sms_count(endpoint: str, number: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=30) as answer:  # noqa: S310
        data = json.loads(answer.read())
    return sum(1 for sms in data.get("sns", {}).get("SMS", []) if sms["phone_number"] == number)


def poison_bodies(seed: int) -> tuple[list[str], int]:
    """(bodies, how many of them are valid records)."""
    rng = random.Random(seed)
    valid: list[dict[str, Any]] = []
    for text in ["lone \ud800", "reversed \udc00\ud83d", "nul \x00 here"]:
        record = records(2, rng.randrange(1 << 30))[1]
        record["requestPayload"] = {"note": text}
        record["responsePayload"]["errorMessage"] = text
        valid.append(record)
    big = records(1, 5)[0]
    big["requestPayload"] = {"blob": "x" * (200 * 1024)}  # moto's SQS takes 256 KiB at most
    valid.append(big)
    bodies = [json.dumps(r) for r in valid]
    poison = [
        "[" * 100_000 + "]" * 100_000,
        json.dumps(records(1, 9)[0]).replace('"version": "1.0"', '"version": NaN', 1),
        "not json at all",
        "",
        json.dumps({"hello": "world"}),
    ]
    return bodies + poison, len(bodies)


def trial_poison(endpoint: str, work: Path, store: str, label: str) -> Row:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url, dlq = make_queue(sqs, f"poison-{label}", receives=3)
    bodies, n_valid = poison_bodies(3)
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body or " ")
    worker = Worker(base_env(endpoint, url, store))
    worker.start()
    try:
        wait_until(lambda: depth(sqs, url) == 0, 300, every=1.0)
    finally:
        worker.stop()
    stored = stored_keys(store)
    dead = drain_all(sqs, dlq)
    return Row(
        trial=f"poison-{label}",
        records=len(bodies),
        lost=max(0, n_valid - len(stored)),
        doubled=sum(c - 1 for c in stored.values() if c > 1),
        dead_lettered_no_reason=no_reason(dead),
        quarantined=len(dead),
        note=f"valid {n_valid}, stored {len(stored)}, poison {len(bodies) - n_valid}",
    )


def trial_soak(endpoint: str, work: Path, n: int) -> Row:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    url, dlq = make_queue(sqs, "soak")
    store = f"sqlite:///{work / 'soak.db'}"
    worker = Worker(base_env(endpoint, url, store))
    worker.start()
    assert worker.process is not None
    pid = worker.process.pid
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_kib(pid))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    time.sleep(3)
    start_rss = _rss_kib(pid)
    sampler.start()
    started = time.monotonic()
    fed = 0
    try:
        while fed < n:
            if depth(sqs, url) < 300:
                batch = records(min(200, n - fed), fed)
                send(sqs, url, [json.dumps(r) for r in batch])
                fed += len(batch)
            else:
                time.sleep(0.2)
        wait_until(lambda: depth(sqs, url) == 0, 600, every=1.0)
        end_rss = _rss_kib(pid)
    finally:
        stop.set()
        worker.stop()
    seconds = time.monotonic() - started
    stored = stored_keys(store)
    return Row(
        trial="soak",
        records=n,
        lost=max(0, n - len(stored)),
        dead_lettered_no_reason=no_reason(drain_all(sqs, dlq)),
        seconds=round(seconds, 1),
        note=f"RSS MiB start {start_rss / 1024:.0f}, peak {max(samples or [0]) / 1024:.0f}, "
        f"end {end_rss / 1024:.0f}",
    )


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- the table ---------------------------------------------------------------------------------

COLUMNS = [
    ("trial", 14),
    ("records", 7),
    ("lost", 4),
    ("doubled", 7),
    ("dead_lettered_no_reason", 10),
    ("quarantined", 11),
    ("in_doubt", 8),
    ("seconds", 7),
    ("note", 0),
]


def print_table(rows: list[Row], *, as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row)))
        return
    header = ["trial", "records", "lost", "doubled", "no reason", "quarantine", "in doubt", "s"]
    widths = [w for _, w in COLUMNS[:-1]]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  note")
    for row in rows:
        values = [str(getattr(row, name)) for name, _ in COLUMNS[:-1]]
        print("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + "  " + row.note)


TRIALS = ("sigkill", "sigterm", "sigterm-busy", "outage", "poison", "soak")


def _trials(text: str) -> set[str]:
    """``--trials``: names of TRIALS, comma-separated (a name misspelt would run nothing)."""
    named = {name.strip() for name in text.split(",")} - {""}
    unknown = sorted(named - set(TRIALS))
    if unknown or not named:
        raise argparse.ArgumentTypeError(
            f"no trial {', '.join(unknown) or 'named'}: use some of {','.join(TRIALS)}"
        )
    return named


def run_trials(args: argparse.Namespace, endpoint: str, work: Path) -> list[Row]:
    trials = args.trials
    rows: list[Row] = []
    if "sigkill" in trials:
        rows.append(trial_sigkill(endpoint, work, args.records, args.kills, args.seed))
    for busy in (False, True):
        if ("sigterm-busy" if busy else "sigterm") in trials:
            rows.append(trial_sigterm(endpoint, work, busy=busy))
    for policy in ("skip", "resend"):
        if "outage" in trials:
            rows.append(trial_outage(endpoint, work, args.outage, policy, 0.2))
    if "poison" in trials:
        rows.append(trial_poison(endpoint, work, f"sqlite:///{work / 'poison.db'}", "sqlite"))
        if args.postgres:
            rows.append(trial_poison(endpoint, work, args.postgres, "postgres"))
    if "soak" in trials:
        rows.append(trial_soak(endpoint, work, args.soak))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials",
        type=_trials,
        default=",".join(TRIALS),
        help=f"which trials: {', '.join(TRIALS)}",
    )
    parser.add_argument(
        "--records", type=at_least(1), default=200, help="records of the SIGKILL drain"
    )
    parser.add_argument("--kills", type=at_least(0), default=8, help="SIGKILLs during the drain")
    parser.add_argument(
        "--outage", type=at_least(1), default=40, help="SMS records in each outage trial"
    )
    parser.add_argument(
        "--soak", type=at_least(1), default=20_000, help="records of the memory soak"
    )
    parser.add_argument("--postgres", help="also run the poison trial on this PostgreSQL URL")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "faults")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "faults")
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        rows = run_trials(args, endpoint, Path(tmp))
    print_table(rows, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
