"""bench/commit_bench.py writes the worker's rows a commit every N, and says what a row cost.

Its figures are in bench/MEASUREMENTS.md (5 December, morning); here it runs once, short, and
nothing asserts a time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "commit_bench.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=False
    )


def test_the_commit_bench_stores_every_row_at_each_batch_size() -> None:
    # when: 40 rows, a commit every 5 and every 20, without an index, at NORMAL
    done = run(
        "--n", "40", "--batches", "5", "20", "--rounds", "1", "--drop",
        "ix_invocations_request_id", "--normal",
    )  # fmt: skip

    # then: a row per size (it exits 1 when a copy did not store every row)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        "40 rows, synchronous=NORMAL, without ix_invocations_request_id, median of 1 rounds"
    )
    assert [
        re.fullmatch(r"\| (\d+) \| \d+\.\d \(\d+\.\d–\d+\.\d\) \|", line)[1] for line in lines[3:]
    ] == [
        "5",
        "20",
    ]


def test_an_index_the_table_lacks_is_one_line() -> None:
    done = run("--n", "5", "--batches", "5", "--rounds", "1", "--drop", "ix_nope")
    assert done.returncode == 1
    assert done.stderr == (
        "error: --drop ix_nope: no such index: ix_nope: name an index of invocations\n"
    )
