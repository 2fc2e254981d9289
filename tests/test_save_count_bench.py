"""bench/save_count.py runs the worker's SQLite save path and stores every record it saves.

What it is for is counting instructions under callgrind (its docstring; the figures are in the
README, "The store at scale"); here it runs once, short, without valgrind, and nothing asserts a
time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "save_count.py"


def test_the_save_count_bench_saves_and_stores_each_record() -> None:
    # when: 20 of 40 decoded records saved, 8 in flight
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "20", "--m", "40", "--concurrency", "8"],
        capture_output=True,
        text=True,
        check=False,
    )

    # then: it counted 20 rows in its store (it exits 1 otherwise) and printed their CPU
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"saved 20 records, \d+\.\d µs of process CPU a save\n", done.stdout)
