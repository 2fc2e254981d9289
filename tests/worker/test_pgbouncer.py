"""The worker and the commands through PgBouncer in transaction pooling mode."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from lambda_destinations.simulate import failure_record
from processes import ENTRY

pytestmark = pytest.mark.postgres


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A command as its own process: asyncpg numbers a process's prepared statements from 1,
    so each process's meet the ones an earlier process left on the pooler's server connection."""
    return subprocess.run([*ENTRY, *args], env=env, capture_output=True, text=True, timeout=120)


MakeQueue = Callable[..., tuple[str, str | None]]


def environment(
    store: str, endpoint_url: str = "http://127.0.0.1:1", queue: str = "q"
) -> dict[str, str]:
    return {
        **os.environ,
        "LAMBDA_DESTINATIONS_STORE": store,
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_QUEUES": queue,
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
        "LAMBDA_DESTINATIONS_OPS_PORT": "0",
        "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto",  # JSON logs on a pipe, the plain error line
    }


def test_without_pgbouncer_true_a_command_and_the_worker_exit_3_naming_it(
    pgbouncer_url: str, make_queue: MakeQueue, endpoint_url: str
) -> None:
    # given: a store migrated through PgBouncer in transaction pooling mode, by a process
    # whose prepared statements stay on the server connection every client is given
    queue, _ = make_queue("pgbouncer-plain")
    env = environment(pgbouncer_url, endpoint_url, queue)
    assert command(env, "migrate").returncode == 0

    # when: a command, and the worker, start without the URL parameter
    listed = command(env, "failures", "list")
    run = command(env, "run", "--once")

    # then: each exits 3 (configuration) with one line naming the parameter, no traceback
    for done in (listed, run):
        assert done.returncode == 3, done.stderr
        assert "Traceback" not in done.stderr
        lines = [line for line in done.stderr.splitlines() if "pgbouncer=true" in line]
        assert len(lines) == 1, done.stderr
        assert 'prepared statement "__asyncpg_stmt_' in lines[0]
        assert "add pgbouncer=true to the store URL (…/db?pgbouncer=true)" in lines[0]


def test_with_pgbouncer_true_the_worker_and_the_commands_work(
    pgbouncer_url: str, sqs: Any, make_queue: MakeQueue, endpoint_url: str
) -> None:
    # given: statements an earlier process (without the parameter) left on the pooler's
    # server connection, and records in a queue
    queue, _ = make_queue("pgbouncer-true")
    assert command(environment(pgbouncer_url), "migrate").returncode == 0
    rng = random.Random(7)
    bodies = [json.dumps(failure_record(rng)) for _ in range(30)]
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:][:10])]
        assert not sqs.send_message_batch(QueueUrl=queue, Entries=entries).get("Failed")
    env = environment(f"{pgbouncer_url}?pgbouncer=true", endpoint_url, queue)

    # when: the worker drains them and the operators' commands run, each its own process
    run = command(env, "run", "--once")
    listed = command(env, "failures", "list", "--limit", "0", "--json")
    pruned = command(env, "prune")
    migrated = command(env, "migrate")

    # then
    assert run.returncode == 0, run.stderr
    # each record acknowledged once stored; a redelivery (moto's SQS can hand a message to two
    # receives at once, and a loaded machine can outlast its visibility) is a duplicate, acked
    counts = re.search(
        r"received (\d+) · acked (\d+) · retried 0 · quarantined 0 · released 0 · duplicates (\d+)",
        run.stdout,
    )
    assert counts is not None, run.stdout
    received, acked, duplicates = (int(n) for n in counts.groups())
    assert received == acked == 30 + duplicates
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 30
    assert pruned.returncode == 0, pruned.stderr
    assert migrated.returncode == 0, migrated.stderr
    assert "nothing to apply" in migrated.stdout


def test_doctor_sees_a_pooler_in_transaction_mode_the_url_does_not_name(
    pgbouncer_url: str, make_queue: MakeQueue, endpoint_url: str
) -> None:
    # given: PgBouncer in transaction pooling mode that no process has used yet (nothing of
    # another's to meet), and a URL without the parameter
    queue, _ = make_queue("pgbouncer-doctor")

    # when
    plain = command(environment(pgbouncer_url, endpoint_url, queue), "doctor")
    named = command(environment(f"{pgbouncer_url}?pgbouncer=true", endpoint_url, queue), "doctor")

    # then: an error row saying what it saw and the parameter; none once the URL names it
    rows = [line for line in plain.stdout.splitlines() if line.startswith("store pooler")]
    assert len(rows) == 1, plain.stdout + plain.stderr
    assert "ERROR" in rows[0]
    assert "two connections open at once were given one server process" in rows[0]
    assert "add pgbouncer=true to the store URL (…/db?pgbouncer=true)" in rows[0]
    assert plain.returncode == 1
    assert "store pooler" not in named.stdout
