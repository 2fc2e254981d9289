"""`run`, `migrate`, `dev` and `simulate` run as a user runs them: real processes, real queues."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lambda_destinations.simulate import messages
from processes import reap
from tcp_proxy import AnswerCutter, aws_error

ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [*ENTRY, *args],
        env={**os.environ, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def worker_env(endpoint_url: str, sqlite_url: str) -> dict[str, str]:
    return {
        "LAMBDA_DESTINATIONS_ENDPOINT_URL": endpoint_url,
        "LAMBDA_DESTINATIONS_STORE": sqlite_url,
        "LAMBDA_DESTINATIONS_REGION": "us-east-1",
        "LAMBDA_DESTINATIONS_WAIT_TIME": "1",
    }


def test_simulate_then_run_once_drains_the_queue(sqs, make_queue, worker_env, sqlite_url) -> None:
    url, _dlq = make_queue("cli")
    sent = cli("simulate", "--queue", url, "-n", "40", env=worker_env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent 40 messages (1 poison)")

    result = cli("run", "--once", "--json", env={**worker_env, "LAMBDA_DESTINATIONS_QUEUES": url})

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    valid = [m for m in messages(40, seed=7) if not m.poison]
    # moto now and then hands one message to two receives (EMULATORS.md): a delivery more
    # than was sent is acknowledged as a duplicate, or quarantined again if it is the poison
    assert summary["received"] >= 40
    assert summary["acked"] + summary["quarantined"] == summary["received"]
    assert summary["acked"] >= len(valid)
    assert summary["quarantined"] >= 1
    assert "Traceback" not in result.stderr
    # and the effect is exact: each valid record stored once
    assert stored_keys(sqlite_url) == {m.key for m in valid}


async def test_run_once_whose_deletes_sqs_never_confirmed_says_so_and_exits_4(
    sqs, make_queue, worker_env
) -> None:
    # given: SQS answering every DeleteMessageBatch with a 503 (an outage of its deletes),
    # while receives pass
    url, _dlq = make_queue("unconfirmed")
    sent = await asyncio.to_thread(
        cli, "simulate", "--queue", url, "-n", "5", "--no-poison", env=worker_env
    )
    assert sent.returncode == 0, sent.stderr
    proxy = AnswerCutter(
        worker_env["LAMBDA_DESTINATIONS_ENDPOINT_URL"], b"DeleteMessageBatch", http=True
    )
    proxy.refusals = 10_000
    proxy.refusal = aws_error(503, "ServiceUnavailable", "Service is unavailable.", "json")

    # when: a job drains the queue
    async with proxy.running() as proxied:
        env = {**worker_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": proxied}
        env |= {"LAMBDA_DESTINATIONS_QUEUES": url, "LAMBDA_DESTINATIONS_SHUTDOWN_GRACE": "2"}
        result = await asyncio.to_thread(cli, "run", "--once", "--json", env=env)

    # then: the summary acks none (before: every message, as if SQS had deleted them), counts
    # the deletes SQS did not confirm, and the job exits 4 with one line saying they come back
    assert proxy.refused >= 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["received"] >= 5
    assert summary["acked"] == 0
    assert summary["unconfirmed"] == summary["received"]
    assert result.returncode == 4, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: SQS did not confirm the deletes of "), last
    assert "Traceback" not in result.stderr
    # and the messages are indeed still in the queue
    counts = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert int(counts["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) >= 5


async def test_run_once_cut_short_by_ctrl_c_prints_its_summary_and_exits_130(
    make_queue, worker_env
) -> None:
    # given: a job whose first receive SQS holds unanswered: its queue is not drained
    url, _dlq = make_queue("interrupted")
    proxy = AnswerCutter(worker_env["LAMBDA_DESTINATIONS_ENDPOINT_URL"], b"ReceiveMessage")
    proxy.holds = 1
    async with proxy.running() as proxied:
        env = {**os.environ, **worker_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": proxied}
        env |= {"LAMBDA_DESTINATIONS_QUEUES": url, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}
        process = await asyncio.create_subprocess_exec(
            *ENTRY, "run", "--once", "--json", env=env, stdout=-1, stderr=-1
        )
        try:
            await proxy.holding.wait()
            # when: Ctrl-C
            process.send_signal(signal.SIGINT)
            stdout, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    # then: its summary, then one line and exit 130, as any command Ctrl-C stops (before:
    # exit 0, as a drained job)
    assert json.loads(stdout.decode().strip().splitlines()[-1])["received"] == 0
    assert process.returncode == 130, stderr.decode()
    assert stderr.decode().strip().splitlines()[-1].startswith("interrupted"), stderr.decode()
    assert b"Traceback" not in stderr


def test_simulate_takes_count_spelled_out(sqs, make_queue, worker_env) -> None:
    # before: "No such option '--count'. Did you mean '--config'?"
    url, _dlq = make_queue("count")
    sent = cli("simulate", "--queue", url, "--count", "3", "--no-poison", env=worker_env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent 3 messages")


def test_simulate_with_a_bucket_writes_failure_records_there_that_arrive_by_its_notice(
    s3, bucket_to, make_queue, worker_env, sqlite_url
) -> None:
    # given: a failure queue, and a bucket whose notification goes to it
    success, _ = make_queue("success")
    failure, _ = make_queue("failure")
    bucket = bucket_to(failure)

    # when: 40 records, every 7th failure written to the bucket, then one drain of both queues
    words = ["simulate", "--queue", success, "--failure-queue", failure, "--no-poison"]
    sent = cli(*words, "-n", "40", "--bucket", bucket, env=worker_env)
    queues = {**worker_env, "LAMBDA_DESTINATIONS_QUEUES": f"{success},{failure}"}
    result = cli("run", "--once", "--json", env=queues)

    # then: the bucket holds them at Lambda's keys, and the worker stored them as read from S3
    assert sent.returncode == 0, sent.stderr
    in_s3 = {m.s3_key: m.key for m in messages(40, poison_every=0, s3_every=7) if m.s3_key}
    assert len(in_s3) == 2
    assert sent.stdout.strip().endswith(f"; wrote 2 failure records to s3://{bucket}/")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    # (the keys are dated by the records' times, drawn in the hour before each run: the
    # function and the object's id at the end are the same)
    assert {(k.split("/")[3], k[-36:]) for k in listed} == {
        (k.split("/")[3], k[-36:]) for k in in_s3
    }
    assert all(key.startswith("aws/lambda/async/") for key in listed)
    assert result.returncode == 0, result.stderr
    with contextlib.closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as db:
        envelopes = dict(db.execute("SELECT key, envelope FROM invocations"))
    assert {envelopes[key] for key in in_s3.values()} == {"s3"}
    assert len(envelopes) == 40
    assert "s3" not in {e for key, e in envelopes.items() if key not in in_s3.values()}


async def test_simulate_whose_writes_a_portal_answers_says_so_and_sends_nothing(
    s3, bucket_to, make_queue, worker_env, sqs
) -> None:
    # given: a bucket whose every PutObject a captive portal answers 200 with its page, in
    # S3's place (no ETag, which S3's answer to a PutObject always has)
    url, _ = make_queue("portal-put")
    failure, _ = make_queue("portal-put-failure")
    bucket = bucket_to(failure)
    page = b"<!DOCTYPE html><html><head><title>Sign in to the Wi-Fi</title></head></html>"
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(page)}\r\n\r\n"
    endpoint = worker_env["LAMBDA_DESTINATIONS_ENDPOINT_URL"]
    proxy = AnswerCutter(endpoint, f"PUT /{bucket}/aws/lambda/".encode(), http=True)
    proxy.answer = lambda request: head.encode() + page

    # when
    async with proxy.running() as proxied:
        env = {**worker_env, "LAMBDA_DESTINATIONS_ENDPOINT_URL": proxied}
        args = ["simulate", "--queue", url, "--failure-queue", failure, "--no-poison"]
        args += ["-n", "20", "--bucket", bucket]  # one record to the bucket
        result = await asyncio.to_thread(cli, *args, env=env)

    # then: one line naming the page, exit 1, nothing sent nor in the bucket (before: exit 0,
    # "wrote 1 failure record", the page taken for S3's answer)
    assert proxy.refused >= 1
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "an HTML page titled 'Sign in to the Wi-Fi', not an AWS answer" in lines[0]
    assert "Traceback" not in result.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert counts["Attributes"]["ApproximateNumberOfMessages"] == "0"  # nothing sent


def test_simulate_without_a_bucket_writes_nothing_to_s3(make_queue, worker_env) -> None:
    # the records of `simulate --queue` are all for the queues, as before --bucket
    url, _dlq = make_queue("no-bucket")
    sent = cli("simulate", "--queue", url, "-n", "40", "--no-poison", env=worker_env)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent 40 messages (0 poison)")
    assert "s3://" not in sent.stdout


def stored_keys(url: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        return {key for (key,) in db.execute("SELECT key FROM invocations")}


@pytest.mark.parametrize("source", ["option", "environment", "file"])
def test_run_with_a_queue_that_does_not_exist_exits_3_in_one_line(
    source: str, worker_env, tmp_path: Path
) -> None:
    # given: a queue that does not exist, from --queues, the environment or a TOML file
    (tmp_path / "ld.toml").write_text('queues = ["no-such-queue"]\n')
    args, env = {
        "option": (("--queues", "no-such-queue"), {}),
        "environment": ((), {"LAMBDA_DESTINATIONS_QUEUES": "no-such-queue"}),
        "file": (("--config", "ld.toml"), {}),
    }[source]

    # when
    result = cli("run", "--once", *args, env={**worker_env, **env}, cwd=tmp_path)

    # then: a configuration error, whose fix names where the queue was given (before: the
    # variable, whatever the source)
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    fix = {
        "option": "--queues",
        "environment": "LAMBDA_DESTINATIONS_QUEUES",
        "file": "queues in the TOML file ld.toml",
    }[source]
    assert errors == [
        f"error: queue 'no-such-queue' does not exist: fix {fix} "
        "or create the queue (and check the region)"
    ]
    assert "Traceback" not in result.stderr


def test_run_takes_a_queue_by_its_arn(sqs, make_queue, worker_env) -> None:
    # given: a queue named by its ARN, as `dlq` commands and consoles show it
    url, _ = make_queue("by-arn")
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for message in messages(3, seed=4, poison_every=0):
        sqs.send_message(QueueUrl=url, MessageBody=message.body)

    # when
    result = cli("run", "--once", "--json", env={**worker_env, "LAMBDA_DESTINATIONS_QUEUES": arn})

    # then: drained (before: "queue 'arn:aws:sqs:...' does not exist", exit 3)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    # each record once; moto's server now and then hands one message to two receives at once,
    # and the second delivery is then acknowledged as the duplicate it is
    assert summary["acked"] - summary["duplicates"] == 3
    assert summary["quarantined"] == summary["retried"] == 0


def test_run_with_a_malformed_arn_exits_3_in_one_line(worker_env) -> None:
    result = cli("run", "--once", env={**worker_env, "LAMBDA_DESTINATIONS_QUEUES": "arn:aws:sns:x"})
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "is not an SQS queue ARN" in errors[0]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LAMBDA_DESTINATIONS_CONCURRENCY": "zero"}, "setting 'concurrency'"),
        ({"LAMBDA_DESTINATIONS_STORE": "mysql://db"}, "setting 'store'"),
        ({"LAMBDA_DESTINATIONS_QUEUES": ""}, "no queues to poll"),
        (
            {"LAMBDA_DESTINATIONS_CONFIG": "/nonexistent/ld.toml"},
            "config file /nonexistent/ld.toml",
        ),
    ],
)
def test_bad_configuration_exits_3_with_one_line_naming_it(worker_env, env, needle) -> None:
    result = cli("run", "--once", env={**worker_env, **env})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert needle in lines[0]


def test_a_bad_setting_is_said_before_the_ops_port_is_taken(worker_env) -> None:
    # With no queues and the ops port taken, the one line names the queues: the port's error
    # would hide it until the port was fixed, and the ops server bound nothing for a worker
    # that could not start.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        env = {
            **worker_env,
            "LAMBDA_DESTINATIONS_QUEUES": "",
            "LAMBDA_DESTINATIONS_OPS_HOST": "127.0.0.1",
            "LAMBDA_DESTINATIONS_OPS_PORT": str(held.getsockname()[1]),
        }
        result = cli("run", "--once", env=env)
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: no queues to poll: set LAMBDA_DESTINATIONS_QUEUES to queue URLs or names"
    ]


def test_no_queues_names_where_the_empty_list_was_set(worker_env, tmp_path: Path) -> None:
    # given: `queues = []` in the TOML file, and no variable
    config = tmp_path / "ld.toml"
    config.write_text("queues = []\n")
    env = {**worker_env, "LAMBDA_DESTINATIONS_CONFIG": str(config)}

    # when
    result = cli("run", "--once", env=env)

    # then: the line sends the reader to the file, not to a variable they never set
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: no queues to poll: set queues in the TOML file {config} to queue URLs or names"
    ]


def test_bad_route_handler_name_fails_at_start(worker_env, make_queue) -> None:
    url, _ = make_queue("routes")
    env = {
        **worker_env,
        "LAMBDA_DESTINATIONS_QUEUES": url,
        "LAMBDA_DESTINATIONS_ROUTES": json.dumps([{"handlers": ["persist", "nope"]}]),
    }
    result = cli("run", "--once", env=env)
    assert result.returncode == 3
    # the routes' own name: the line says where the routes were set
    assert "handler 'nope' (LAMBDA_DESTINATIONS_ROUTES) is not defined" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_route_handler_name_in_a_toml_file_names_the_file(tmp_path: Path) -> None:
    # before: `handler 'nope' is not defined`, and a table of that name in the file would have
    # been the fix as much as the route
    config = tmp_path / "c.toml"
    config.write_text('queues = ["q"]\nroutes = [{handlers = ["persist", "nope"]}]\n')
    result = cli("run", "--once", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: handler 'nope' (routes in the TOML file {config}) is not defined: use one of "
        )
    )


def test_a_route_handler_name_with_a_typo_is_given_the_name_meant(tmp_path: Path) -> None:
    # before: the line listed every handler defined, and the one meant had to be found in it
    config = tmp_path / "c.toml"
    config.write_text(
        'queues = ["q"]\nroutes = [{handlers = ["persist", "hok1"]}]\n'
        '[handlers.hook0]\ntype = "webhook"\nurl = "https://hooks.example.com/0"\n'
        '[handlers.hook1]\ntype = "webhook"\nurl = "https://hooks.example.com/1"\n'
    )
    result = cli("run", "--once", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"error: handler 'hok1' (routes in the TOML file {config}) is not defined "
            "(did you mean 'hook1'?): use one of "
        )
    )


def test_migrate_applies_then_reports_up_to_date(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    check = cli("migrate", "--check", "--store", url)
    assert check.returncode == 1
    assert f"{tmp_path / 'm.db'} does not exist yet; pending migrations 1, 2," in check.stdout
    # a check only reads: no file is made (before: an empty one, every migration pending)
    assert list(tmp_path.iterdir()) == []
    applied = cli("migrate", "--store", url)
    assert applied.returncode == 0, applied.stderr
    assert "applied" in applied.stdout
    again = cli("migrate", "--check", "--store", url)
    assert again.returncode == 0
    assert "up to date" in again.stdout


def test_dev_simulates_and_drains_end_to_end(tmp_path) -> None:
    result = cli("dev", "--simulate", "30", "--once", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # at least once: moto now and then hands one message to two receives (EMULATORS.md)
    assert summary["received"] >= 30
    assert summary["acked"] + summary["quarantined"] == summary["received"]
    assert summary["quarantined"] >= 1
    assert summary["acked"] >= 29
    assert (tmp_path / ".lambda-destinations" / "dev.db").exists()
    assert "success" in result.stderr
    assert "ld-dev-failure" in result.stderr


def test_bad_arguments_exit_2(tmp_path) -> None:
    result = cli("run", "--concurrency", "lots")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["run", "dev"])
def test_an_in_memory_store_is_refused_with_exit_3(worker_env, make_queue, tmp_path, command):
    # An in-memory database would keep nothing of the records the worker acknowledges.
    url, _ = make_queue("memory")
    env = {**worker_env, "LAMBDA_DESTINATIONS_QUEUES": url}
    del env["LAMBDA_DESTINATIONS_STORE"]
    result = cli(command, "--once", "--store", "sqlite:///:memory:", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "in-memory database" in errors[0]
    assert "Traceback" not in result.stderr


def test_run_json_without_once_says_it_is_ignored_and_runs_on(worker_env, make_queue) -> None:
    # given: a worker run with --json but not --once (it was dropped without a word)
    url, _ = make_queue("json-without-once")
    env = {**os.environ, **worker_env, "LAMBDA_DESTINATIONS_QUEUES": url}
    env |= {"LAMBDA_DESTINATIONS_OPS_PORT": "0", "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}
    lines = []
    with subprocess.Popen(
        [*ENTRY, "run", "--json"], env=env, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            # when: it starts
            assert process.stderr is not None
            for line in process.stderr:
                lines.append(json.loads(line))
                if lines[-1]["event"].startswith("worker started"):
                    break
        finally:
            process.terminate()
            process.communicate(timeout=30)

    # then: one warning says so, and the worker ran until stopped
    warned = [line for line in lines if line["event"].startswith("--json goes with --once")]
    assert [line["level"] for line in warned] == ["warning"], lines
    assert process.returncode == 0


def test_a_worker_whose_log_reader_is_gone_still_stops_on_sigterm(worker_env, make_queue) -> None:
    # given: a worker started with its logs read (`run 2>&1 | less`, a terminal over ssh)
    url, _ = make_queue("log-reader-gone")
    env = {**os.environ, **worker_env, "LAMBDA_DESTINATIONS_QUEUES": url}
    env |= {"LAMBDA_DESTINATIONS_OPS_PORT": "0", "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}
    process = subprocess.Popen(
        [*ENTRY, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if json.loads(line)["event"].startswith("worker started"):
                break
        # when: the reader goes (the pager quit, the ssh session dropped), then SIGTERM
        process.stderr.close()
        process.terminate()

        # then: the worker stops as on any SIGTERM, 0; before, the signal's log line raised
        # in its handler before it stopped the worker, which ran on through every signal
        assert process.wait(timeout=60) == 0
    finally:
        reap(process)


# The worker as a user without the uvloop extra runs it: uvloop not importable.
WITHOUT_UVLOOP = [
    sys.executable,
    "-c",
    "import sys; sys.modules['uvloop'] = None\nfrom lambda_destinations.cli import main; main()",
]


@pytest.mark.parametrize(
    ("entry", "setting", "loop"),
    [
        (ENTRY, "auto", "uvloop"),  # the test extra installs uvloop, as the image does
        (ENTRY, "uvloop", "uvloop"),
        (ENTRY, "asyncio", "asyncio"),
        (WITHOUT_UVLOOP, "auto", "asyncio"),
    ],
    ids=["auto", "uvloop", "asyncio", "auto-without-uvloop"],
)
def test_run_drains_on_the_event_loop_its_setting_names(
    sqs, make_queue, worker_env, sqlite_url, entry, setting, loop
) -> None:
    # given: records on a queue, and the event_loop setting
    url, _dlq = make_queue(f"loop-{setting}")
    sent = cli("simulate", "--queue", url, "-n", "12", "--no-poison", env=worker_env)
    assert sent.returncode == 0, sent.stderr
    env = {**os.environ, **worker_env, "LAMBDA_DESTINATIONS_QUEUES": url}
    env |= {"LAMBDA_DESTINATIONS_EVENT_LOOP": setting, "LAMBDA_DESTINATIONS_LOG_FORMAT": "auto"}

    # when: the worker drains it
    result = subprocess.run(
        [*entry, "run", "--once", "--json"], env=env, capture_output=True, text=True, timeout=120
    )

    # then: it ran on that loop, said so when it started, and stored every record
    assert result.returncode == 0, result.stderr
    started = [
        json.loads(line) for line in result.stderr.splitlines() if '"worker started"' in line
    ]
    assert [line["event_loop"] for line in started] == [loop]
    assert json.loads(result.stdout.splitlines()[-1])["acked"] >= 12
    assert stored_keys(sqlite_url) == {m.key for m in messages(12, seed=7, poison_every=0)}


def test_uvloop_asked_for_where_it_is_not_installed_is_one_line_and_exit_3(worker_env) -> None:
    # given: event_loop = uvloop, and no uvloop
    env = {**os.environ, **worker_env, "LAMBDA_DESTINATIONS_QUEUES": "q"}
    env |= {"LAMBDA_DESTINATIONS_EVENT_LOOP": "UVLOOP"}

    # when: the worker starts
    result = subprocess.run(
        [*WITHOUT_UVLOOP, "run", "--once"], env=env, capture_output=True, text=True, timeout=60
    )

    # then: one line says so and how to fix it, exit 3, nothing started
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "setting 'event_loop' (LAMBDA_DESTINATIONS_EVENT_LOOP)" in lines[0], lines
    assert "pip install 'lambda-destinations[uvloop]'" in lines[0], lines
