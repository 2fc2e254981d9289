"""bench/log_lines_bench.py runs once, short; nothing asserts a time (the figures are in the
README, "Benchmarks")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "log_lines_bench.py"


def test_the_log_lines_bench_times_each_kind_and_the_oversize_ones_fit() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "200", "--repeat", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sizes = dict(re.findall(r"^(\w+) +[\d.]+ µs a line, +([\d,]+) bytes$", done.stdout, re.M))
    assert set(sizes) == {"acked", "retried", "bug", "payload"}
    assert all(0 < int(size.replace(",", "")) <= 16 * 1024 for size in sizes.values())


def test_fewer_lines_than_a_hundred_still_time_the_oversize_ones_once() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "50", "--repeat", "1"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert re.search(r"^bug +[\d.]+ µs a line", done.stdout, re.M)
