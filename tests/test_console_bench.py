"""bench/console_bench.py at its smallest store: every page it fetches exists (the deep pages
are those the store is deep enough for); nothing asserts a time (the figures are in the README,
"Benchmarks")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "console_bench.py"


def test_the_console_bench_fetches_each_page_of_a_thousand_failures(tmp_path: Path) -> None:
    arguments = ["--db", str(tmp_path / "c.db"), "--rows", "1000", "--repeat", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *arguments],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    pages = [line.rsplit(None, 3)[0] for line in done.stdout.splitlines()[2:]]
    assert pages[:3] == ["first page", "after row 500", "after row 900"]
    assert "since 2d" in pages
