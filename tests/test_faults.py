"""A short form of the fault suite (bench/faults.py): real worker processes, SIGKILL, a proxy
that loses answers, poison. The full trials and their figures are in the README, "Reliability"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "faults.py"


@pytest.fixture(scope="module")
def faults() -> ModuleType:
    sys.path.insert(0, str(BENCH.parent))  # it imports _args.py beside it
    try:
        spec = importlib.util.spec_from_file_location("faults", BENCH)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["faults"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH.parent))


def test_sigkills_lose_nothing_and_dead_letter_nothing(faults, endpoint_url, tmp_path) -> None:
    row = faults.trial_sigkill(endpoint_url, tmp_path, 40, 3, 5)
    assert row.lost == 0, row
    assert row.dead_lettered_no_reason == 0, row
    assert row.quarantined == 0, row
    assert "NOT drained" not in row.note


@pytest.mark.parametrize("policy", ["skip", "resend"])
def test_an_outage_doubles_nothing_under_skip_and_records_every_double(
    faults, endpoint_url, tmp_path, policy
) -> None:
    row = faults.trial_outage(endpoint_url, tmp_path, 6, policy, 0.34)
    assert row.lost == 0, row
    assert row.in_doubt >= 1, row
    if policy == "skip":
        assert row.doubled == 0, row
    else:
        assert 1 <= row.doubled <= row.in_doubt, row


def test_poison_is_quarantined_with_reasons_and_odd_records_are_stored(
    faults, endpoint_url, tmp_path, sqlite_url
) -> None:
    row = faults.trial_poison(endpoint_url, tmp_path, sqlite_url, "sqlite")
    assert row.lost == 0, row
    assert row.doubled == 0, row
    assert row.dead_lettered_no_reason == 0, row
    assert row.quarantined == 5, row
