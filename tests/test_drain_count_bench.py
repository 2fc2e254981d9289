"""bench/drain_count.py counts a message's instructions under callgrind for compare.py's Python
variants. Its figures (on LocalStack) are in bench/MEASUREMENTS.md; here it runs one variant,
short, on the moto server, and checks what it prints; nothing asserts a count or a time."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPT = BENCH / "drain_count.py"


@pytest.fixture(scope="module")
def drain_count() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # it imports compare.py beside it
    try:
        spec = importlib.util.spec_from_file_location("drain_count", SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_the_report_gives_the_cpu_goals_whose_variants_were_counted(drain_count) -> None:
    printed = drain_count.report(
        {"floor": 900_000.0, "floor_persist": 1_000_000.0, "worker-sqlite": 1_500_000.0}
    )

    assert "| worker-sqlite | 1,500 thousand |" in printed
    assert "| worker-sqlite CPU/msg ÷ floor_persist's | 1.50 | ≤ 1.3 |" in printed
    # the peer and the do-nothing route were not counted: no ratio of theirs
    assert "peer" not in printed
    assert "worker-noop" not in printed


def test_counts_of_no_pair_say_which_pairs_give_a_ratio(drain_count) -> None:
    # the reference loops absent, the worker's variants alone: before, a ratio table's header
    # over no row
    printed = drain_count.report({"worker-sqlite": 1_500_000.0, "worker-noop": 1_000_000.0})

    assert "| worker-noop | 1,000 thousand |" in printed
    assert "| ratio |" not in printed
    assert printed.splitlines()[-1].startswith("no ratio: count both of a pair (")
    assert "worker-sqlite and floor_persist" in printed.splitlines()[-1]


def test_drains_of_the_same_size_are_refused_with_the_fix() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--endpoint",
            "http://127.0.0.1:9",
            "--small",
            "50",
            "--large",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "--small must be at least 1 and less than --large" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_floor_is_counted_under_callgrind(moto_server: str) -> None:
    # The reference loops are outside the repository: where they are named (CI names them),
    # this test must run, and valgrind be installed.
    reference = os.environ.get("LAMBDA_DESTINATIONS_BENCH_REFERENCE")
    if not reference:
        pytest.skip("the reference loops are not named: set LAMBDA_DESTINATIONS_BENCH_REFERENCE")
    assert shutil.which("valgrind"), "valgrind is not installed: apt-get install valgrind"

    # when: the floor drains 5 and then 15 records under callgrind
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--endpoint",
            moto_server,
            "--small",
            "5",
            "--large",
            "15",
            "--concurrency",
            "2",
            "--variants",
            "floor",
            "--reference",
            reference,
        ],
        capture_output=True,
        text=True,
        timeout=840,
    )

    # then: one message's instructions, a positive count (the queue drained: it exits 1 if not)
    assert done.returncode == 0, done.stderr
    found = re.search(r"^\| floor \| ([\d,]+) thousand \|$", done.stdout, re.MULTILINE)
    assert found is not None, done.stdout
    assert int(found.group(1).replace(",", "")) > 0
