"""A fault that every message meets is not written out again at every delivery."""

from __future__ import annotations

import json
import random

from structlog.testing import capture_logs
from worker_helpers import CountingHandler, registry_with, routed, run_until, send_bodies

from lambda_destinations.simulate import success_record
from lambda_destinations.worker import Worker
from lambda_destinations.worker.tracebacks import REMEMBERED, TracebackLog


async def test_a_handler_bug_every_record_meets_logs_its_traceback_once(
    sqs, make_queue, settings_for
) -> None:
    # given: six records and a handler with a bug (a KeyError at every call)
    url, _ = make_queue("bug", max_receive_count=10)
    send_bodies(sqs, url, [json.dumps(success_record(random.Random(n))) for n in range(6)])
    handler = CountingHandler(fail_forever=KeyError("customer_id"))
    settings = routed(settings_for(url, handler_attempts=1), handler.name)

    # when: every delivery fails, a few times over
    with capture_logs() as logs:
        async with Worker(settings, registry=registry_with(settings, handler)) as worker:
            stats = await run_until(worker, lambda: worker.stats.outcomes["retry"] >= 12)

    # then: each failed call is a line, with the error; the traceback is in the first only
    # (before, every one of them carried it: 1 to 32 KiB a delivery, for ever)
    lines = [e for e in logs if e["event"] == "handler count raised an unexpected error"]
    assert len(lines) == len(handler.calls) >= stats.outcomes["retry"] >= 12
    with_traceback = [e for e in lines if e.get("exc_info")]
    assert len(with_traceback) == 1
    assert all("KeyError: 'customer_id'" in e["error"] for e in lines)
    assert lines[0] is with_traceback[0]
    assert all(e["traceback"].startswith("as logged at ") for e in lines[1:])


def _raised(exc: Exception) -> Exception:
    """``exc`` with a traceback: raised here, always from this line."""
    try:
        raise exc
    except Exception as raised:
        return raised


def test_the_bugs_remembered_stay_bounded_and_each_new_one_is_logged() -> None:
    tracebacks = TracebackLog()
    new = [
        tracebacks.logged_at("h", _raised(type(f"Bug{n}", (Exception,), {})()), now=1000.0 + n)
        for n in range(10 * REMEMBERED)
    ]
    assert new == [None] * (10 * REMEMBERED)  # each a new bug: each logged
    assert len(tracebacks) == REMEMBERED
    first = _raised(RuntimeError("same place"))
    assert tracebacks.logged_at("h", first, now=5000.0) is None
    assert tracebacks.logged_at("h", first, now=5001.0) == 5000.0
    assert tracebacks.logged_at("other", first, now=5002.0) is None  # another handler's
    assert tracebacks.logged_at("h", first, now=5000.0 + 301) is None  # reminded after a while
