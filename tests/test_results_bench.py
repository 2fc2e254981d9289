"""bench/results_bench.py on SQLite, short: its percentile lies within the waits it measured
(nothing asserts a time; the figures are in the README, "Benchmarks")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "results_bench.py"


def test_the_p95_of_a_few_waits_is_not_beyond_the_slowest() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--waits", "3"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    figures = ast.literal_eval(done.stdout.strip())
    assert figures["store"] == "sqlite"
    assert figures["waits"] == 3
    assert figures["median_ms"] <= figures["p95_ms"] <= figures["max_ms"]
