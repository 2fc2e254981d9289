"""A bench script given a count it cannot use says so in one usage line and exits 2, before it
starts anything: before, these divided by zero, hung, crashed on a short store or ran on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench(script: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=50,
    )


@pytest.mark.parametrize(
    ("script", "arguments", "said"),
    [
        ("decode_bench.py", ["--n", "0"], "argument --n: 0 is less than 1: use 1 or more"),
        ("log_lines_bench.py", ["--repeat", "0"], "argument --repeat: 0 is less than 1"),
        ("store_bench.py", ["--n", "1"], "argument --n: 1 is less than 2: use 2 or more"),
        (
            "store_bench.py",
            ["--url", "sqlite:///x.db?synchronous=fast"],
            "argument --url: store URL 'sqlite:///x.db?synchronous=***': synchronous is full",
        ),
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
    done = bench(script, *arguments)

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"{script}: error: {said}")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("script", "arguments", "said"),
    [
        ("compare_probe.py", [], "the following arguments are required: OUT.json, SCRIPT"),
        ("compare_probe.py", ["out.json", "/no/such.py"], "SCRIPT /no/such.py is no file"),
        ("floor_schema.py", ["e", "q"], "the following arguments are required: CONCURRENCY"),
        ("floor_schema.py", ["e", "q", "0", "p", "b"], "argument CONCURRENCY: 0 is less than 1"),
        ("floor_schema.py", ["e", "q", "1", "p", "/no/such.json"], "BODIES_JSON /no/such.json"),
    ],
)
def test_a_helper_given_too_few_or_bad_arguments_says_its_usage_and_exits_2(
    script: str, arguments: list[str], said: str
) -> None:
    # before: a traceback of the unpacking of sys.argv (or of int(), or of the file's read)
    done = bench(script, *arguments)

    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0].startswith(f"usage: {script} ")
    assert done.stderr.splitlines()[-1].startswith(f"{script}: error: {said}")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["compare_probe.py", "floor_schema.py"])
def test_a_helper_shows_its_help(script: str) -> None:
    done = bench(script, "--help")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script} ")


def test_the_store_bench_says_which_durability_it_measured(tmp_path: Path) -> None:
    # before: both rows' URLs read `?synchronous=***` or nothing, normal told from full by
    # nothing the bench printed
    urls = [
        f"sqlite:///{tmp_path / 'normal.db'}?synchronous=normal",
        f"sqlite:///{tmp_path / 'full.db'}",
    ]
    given = [arg for url in urls for arg in ("--url", url)]
    done = bench("store_bench.py", *given, "--n", "2", "--warmup", "0", "--repeat", "1", "--json")

    assert done.returncode == 0, done.stderr
    measured = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(m["url"].rsplit("/", 1)[-1], m["synchronous"]) for m in measured] == [
        ("normal.db?synchronous=***", "NORMAL"),
        ("normal.db?synchronous=***", "NORMAL"),
        ("full.db", "FULL"),
        ("full.db", "FULL"),
    ]
