"""A fault that every message meets is not written out again at every delivery."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

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


def _caught(bug: Callable[[], object]) -> Exception:
    """The exception ``bug`` raised, caught as the worker catches a handler's."""
    try:
        bug()
    except ValueError as raised:
        return raised
    raise AssertionError(bug)


def _payload_bug() -> object:
    return json.loads("{payload")  # raises from json's own line


def _header_bug() -> object:
    return json.loads("{header")  # from that same line of json's


def test_two_bugs_raised_from_one_librarys_line_each_log_their_traceback() -> None:
    # given: a handler that met one bug (its payload parsed wrong), its traceback logged
    tracebacks = TracebackLog()
    assert tracebacks.logged_at("h", _caught(_payload_bug), now=1000.0) is None
    assert tracebacks.logged_at("h", _caught(_payload_bug), now=1001.0) == 1000.0  # again

    # when/then: another bug of its, elsewhere in its code, raises the same exception from the
    # same line of json: its own traceback is logged (before, it was "as logged at" the
    # other's, which shows none of the code at fault, for five minutes at a time)
    assert tracebacks.logged_at("h", _caught(_header_bug), now=1002.0) is None
