"""A bench script given a count it cannot use says so in one usage line and exits 2, before it
starts anything: before, these divided by zero, hung, crashed on a short store or ran on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "arguments", "said"),
    [
        ("decode_bench.py", ["--n", "0"], "argument --n: 0 is less than 1: use 1 or more"),
        ("log_lines_bench.py", ["--repeat", "0"], "argument --repeat: 0 is less than 1"),
        ("store_bench.py", ["--n", "1"], "argument --n: 1 is less than 2: use 2 or more"),
        ("save_count.py", ["--concurrency", "0"], "argument --concurrency: 0 is less than 1"),
        ("save_count.py", ["--n", "50", "--m", "40"], "--n 50 is more than --m 40: raise --m"),
        ("wal_bench.py", ["--n", "0"], "argument --n: 0 is less than 1"),
        (
            "wal_bench.py",
            ["--failures", "2"],
            "argument --failures: 2.0 is not a share: use a number from 0 to 1",
        ),
        ("results_bench.py", ["--waits", "1"], "argument --waits: 1 is less than 2"),
        ("startup_bench.py", ["--runs", "0"], "argument --runs: 0 is less than 1"),
        ("store_scale.py", ["--sizes", "0", "-5"], "argument --sizes: -5 is less than 0"),
        ("console_bench.py", ["--rows", "200"], "argument --rows: 200 is less than 1000"),
        ("faults.py", ["--trials", "sigkil"], "argument --trials: no trial sigkil: use some of"),
        ("faults.py", ["--records", "0"], "argument --records: 0 is less than 1"),
        ("e2e_bench.py", ["--moto", "-n", "0"], "argument -n: 0 is less than 1"),
    ],
)
def test_a_count_out_of_range_is_one_usage_line_and_exit_2(
    script: str, arguments: list[str], said: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"{script}: error: {said}")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
