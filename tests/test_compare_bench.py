"""A short form of the end-to-end comparison (bench/compare.py) on the moto server: five of its
variants (a reference loop, the loop on the worker's rows, the worker on SQLite and on
PostgreSQL, the Node peer) drain their queues and are measured, and the report prints each
ratio between them. Its figures (on LocalStack) are in the README, "Benchmarks"; nothing here
asserts a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "compare.py"
RECORDS = 20
# One of each kind of run: a reference script under the probe, this repository's loop on the
# worker's rows (made from the bodies sent), the worker's command, the worker with a database
# made for the run and its server CPU, and Node.
VARIANTS = ("floor_persist", "floor_schema", "worker-sqlite", "worker-pg", "peer")
# The variants that need what this repository does not hold, each with what it is, whether
# CI requires it here, and why the skip is refused then. The reference loops are outside the
# repository (../shared/bench beside the checkout): a clone elsewhere runs the rest without them.
OPTIONAL = {
    "peer": (
        "the Node peer",
        lambda: os.environ.get("LAMBDA_DESTINATIONS_REQUIRE_PEER") == "1",
        "LAMBDA_DESTINATIONS_REQUIRE_PEER=1 forbids skipping",
    ),
    "floor_persist": (
        "the reference loop",
        lambda: bool(os.environ.get("LAMBDA_DESTINATIONS_BENCH_REFERENCE")),
        "LAMBDA_DESTINATIONS_BENCH_REFERENCE names where they must be",
    ),
}


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(compare, moto_server, postgres_available, pg_admin_url):  # type: ignore[no-untyped-def]
    options = compare.Options(
        endpoint=moto_server,
        n=RECORDS,
        concurrency=2,
        repeat=1,
        variants=VARIANTS,
        pg=None if postgres_available else pg_admin_url,
    )
    return compare.compare(options)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_drains_its_queue_within_a_measured_window(
    report, variant, postgres_available
) -> None:
    if variant in OPTIONAL and variant in report.skipped:
        what, required, forbids = OPTIONAL[variant]
        reason = f"{what} was not run: {report.skipped[variant]}"
        if required():
            pytest.fail(f"{reason}; {forbids}")
        pytest.skip(reason)
    if variant == "worker-pg" and postgres_available:
        pytest.skip(postgres_available)
    assert variant not in report.skipped, report.skipped
    (run,) = report.drains[variant]
    assert run.deleted >= RECORDS
    assert run.wall > 0
    assert 0 < run.cpu <= run.process_cpu
    # the kernel's part of the window's CPU (its two clocks are read a moment apart)
    assert 0 <= run.system <= run.cpu + 0.01
    if variant == "worker-pg":
        # the backends serving the run's database were found and read (their CPU is counted in
        # 10 ms ticks: over a drain of 20 records it may read 0)
        assert run.backends > 0
        assert run.server >= 0
    # the endpoint (this test process's moto server thread) was found and read, in ticks too
    assert report.endpoint_unmeasured is None
    assert run.endpoint is not None
    assert run.endpoint >= 0
    ceiling = run.ceiling(RECORDS, report.cores)
    assert ceiling is not None
    assert ceiling > 0


def test_the_report_gives_each_ratio_whose_variants_ran(compare, report) -> None:
    printed = compare.format_report(report)
    expected = [
        label
        for label, top, bottom, _figure, _goal in compare.GOALS
        if top in report.drains and bottom in report.drains
    ]
    ran = report.drains.keys()
    assert ("worker-sqlite CPU/msg ÷ floor_persist's" in expected) == ("floor_persist" in ran)
    assert "worker-sqlite" in ran, report.skipped
    assert "floor_schema" in ran, report.skipped
    # floor_persist's two (the worker's and floor_schema's), the peer's, PostgreSQL's, and
    # the worker's over floor_schema's
    with_reference = 2 * ("floor_persist" in ran)
    assert len(expected) == with_reference + ("peer" in ran) + ("worker-pg" in ran) + 1
    for label in expected:
        row = next(line for line in printed.splitlines() if line.startswith(f"| {label} |"))
        assert row.split("|")[2].strip()[0].isdigit(), row
    for name in ran:
        row = next(line for line in printed.splitlines() if line.startswith(f"| {name} |"))
        endpoint, ceiling = row.split("|")[7:9]
        assert endpoint.strip()[0].isdigit(), row
        assert ceiling.strip()[0].isdigit(), row
    for name, why in report.skipped.items():
        assert f"{name}: skipped: {why}" in printed


def test_the_endpoint_is_the_process_listening_on_its_port(compare, moto_server) -> None:
    found, why = compare.endpoint_processes(moto_server)
    assert why is None
    assert found == {os.getpid()}  # the moto server runs in a thread of this process


def test_an_endpoint_elsewhere_or_not_listening_is_not_measured_and_says_why(
    compare, report
) -> None:
    assert compare.endpoint_processes("http://192.0.2.1:4566") == (
        frozenset(),
        "192.0.2.1 is not this machine's loopback address",
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening
        port = sock.getsockname()[1]
        found, why = compare.endpoint_processes(f"http://127.0.0.1:{port}")
    assert found == frozenset()
    assert why == f"no process of this machine that can be read listens on port {port}"
    unmeasured = dataclasses.replace(report, endpoint_unmeasured=why)
    assert f"endpoint CPU: not measured: {why}" in compare.format_report(unmeasured)


def test_an_endpoint_that_does_not_answer_is_one_line_and_exit_1(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--endpoint", "http://127.0.0.1:9", "--variants", "floor"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: no SQS endpoint at")


def test_missing_reference_loops_are_named_with_the_fix(compare, tmp_path) -> None:
    options = compare.Options(endpoint="http://127.0.0.1:9", reference=tmp_path)
    reasons = compare.unavailable(options)
    assert "floor.py, floor_persist.py" in reasons["floor"]
    assert "--reference DIR" in reasons["floor_persist"]
    with pytest.raises(compare.BenchError, match="no variant left to run"):
        compare.compare(
            compare.Options(endpoint="http://127.0.0.1:9", reference=tmp_path, variants=("floor",))
        )


def test_the_do_nothing_handler_needs_no_claim_nor_a_decode_of_its_own(monkeypatch) -> None:
    from lambda_destinations.config import load_settings
    from lambda_destinations.handlers.base import reads_record_only, records_completion
    from lambda_destinations.handlers.registry import HandlerRegistry

    monkeypatch.syspath_prepend(str(BENCH.parent))
    handler = HandlerRegistry(load_settings(queues=["q"])).get("compare_noop:noop")
    assert handler.name == "noop"
    assert records_completion(handler)  # so the worker runs it without a claim
    assert reads_record_only(handler)  # and on the route's one decode, as persist


def test_the_worker_may_run_at_its_own_concurrency(compare, tmp_path) -> None:
    options = compare.Options(endpoint="http://127.0.0.1:9", concurrency=32, worker_concurrency=128)
    store = f"sqlite:///{tmp_path / 'w.db'}"
    _, worker_env = compare.command(options, "worker-sqlite", "q", tmp_path / "w.db", store)
    floor_argv, _ = compare.command(options, "floor", "q", tmp_path / "f.db", store)
    assert worker_env["LAMBDA_DESTINATIONS_CONCURRENCY"] == "128"
    assert floor_argv[-1] == "32"
    same = compare.Options(endpoint="http://127.0.0.1:9", concurrency=32)
    assert (
        compare.command(same, "worker-sqlite", "q", tmp_path / "w.db", store)[1][
            "LAMBDA_DESTINATIONS_CONCURRENCY"
        ]
        == "32"
    )


def test_the_records_times_rise_in_the_order_sent_unless_asked_for_at_random(compare) -> None:
    from lambda_destinations.schemas import decode

    in_order = [decode(body) for body in compare.bodies(300, 7)]
    at_random = [decode(body) for body in compare.bodies(300, 7, "random")]
    # The same records, but for their times: each kind of record has one.
    assert [m.key for m in in_order] == [m.key for m in at_random]
    times = [m.timestamp for m in in_order]
    assert all(t is not None for t in times)
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    drawn = [m.timestamp for m in at_random]
    assert drawn != sorted(drawn)  # type: ignore[type-var]
    # Both within the hour before now, which `--since 1h` finds.
    for moment in (times[0], times[-1], min(drawn), max(drawn)):  # type: ignore[type-var]
        assert moment is not None
        assert 0 < (dt.datetime.now(dt.UTC) - moment).total_seconds() < 3600


def test_split_cores_pins_every_thread_of_the_endpoint_and_gives_the_variants_the_rest(
    compare,
) -> None:
    cores = sorted(os.sched_getaffinity(0))
    assert len(cores) >= 2, "CI's machine has two cores: this test needs them"
    # an endpoint stand-in with a second thread, started before the pinning
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
            "time.sleep(60)",
        ]
    ) as endpoint:
        try:
            time.sleep(0.5)  # its second thread started
            threads = os.listdir(f"/proc/{endpoint.pid}/task")
            assert len(threads) == 2
            with compare.split_cores(frozenset({endpoint.pid}), None) as cpus:
                pinned = {os.sched_getaffinity(int(t)) == {cores[0]} for t in threads}
            restored = {os.sched_getaffinity(int(t)) == set(cores) for t in threads}
        finally:
            endpoint.kill()
    assert cpus == set(cores[1:])
    assert pinned == {True}
    assert restored == {True}
    refused = compare.split_cores(frozenset(), "not local")
    with pytest.raises(compare.BenchError, match="needs the endpoint's process: not local"):
        refused.__enter__()


def test_a_split_run_drains_on_the_other_core_and_says_so(compare, moto_server) -> None:
    # the moto server runs in a thread of this process: pinned for the run, then given back
    before = os.sched_getaffinity(0)
    options = compare.Options(
        endpoint=moto_server, n=RECORDS, concurrency=2, repeat=1, variants=("floor_schema",)
    )
    report = compare.compare(dataclasses.replace(options, split_cores=True))
    assert os.sched_getaffinity(0) == before
    (drain,) = report.drains["floor_schema"]
    # every message, the queue left empty (compare checks it); more when moto handed a
    # message to both receives at once (no lock between its visibility check and the receipt,
    # seen once with the endpoint pinned to one busy core), as SQS's at-least-once may
    assert RECORDS <= drain.deleted <= RECORDS + 2
    printed = compare.format_report(report)
    assert "cores split (the endpoint on one, the variant on the other)" in printed
    assert "| ceiling msg/s (split) |" in printed
