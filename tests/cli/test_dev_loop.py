"""The newcomer's loop, as the README prints it: `dev`, then the next commands in the same folder
with no AWS variables; and replays in dev that end recovered or failed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from lambda_destinations.cli.dev import DEV_S3_EVERY, _show_alert, live_summary
from lambda_destinations.config import Settings
from lambda_destinations.dev_endpoint import ALERTS_PATH, DevEndpoint, FunctionSimulation
from lambda_destinations.simulate import failure_record, messages
from lambda_destinations.worker import Stats
from lambda_destinations.worker.dispatch import Outcome
from processes import reap

README = Path(__file__).parents[2] / "README.md"
ENTRY = [sys.executable, "-c", "from lambda_destinations.cli import main; main()"]
DEFAULT_OPS_PORT = Settings.model_fields["ops_port"].default


def bare_env() -> dict[str, str]:
    """The environment of a fresh shell: no AWS variables, no settings of ours."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LAMBDA_DESTINATIONS_"))
    }
    env["AWS_CONFIG_FILE"] = "/nonexistent/aws-config"  # no profile of the machine's either
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/aws-credentials"
    return env


def readme_commands(heading: str, block: int = 0) -> list[list[str]]:
    """The ``lambda-destinations`` lines of the ``block``-th console block after ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    blocks = re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL)
    lines = [line.split("#", 1)[0].split() for line in blocks[block].splitlines()]
    return [words for words in lines if words and words[0] == "lambda-destinations"]


def run(words: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    assert words[0] == "lambda-destinations"
    return subprocess.run(
        [*ENTRY, *words[1:]],
        env=bare_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def simulated_failures(n: int, seed: int = 7) -> dict[str, str]:
    """Request id -> function name of the invocation failures the simulator sends."""
    found = {}
    for message in messages(n, seed=seed):
        if message.poison or message.target != "failure" or not message.key:
            continue
        body = json.loads(message.body)
        record = body.get("detail") or (json.loads(body["Message"]) if "Message" in body else body)
        if "requestContext" in record and "KinesisBatchInfo" not in record:
            name = record["requestContext"]["functionArn"].split(":")[6]
            found[record["requestContext"]["requestId"]] = name
    return found


HEADING = "### After `dev`: the next commands, in the same folder"
START_HERE = "## Start here: the whole loop on a laptop"


def start_here() -> str:
    """The README's first section, which quotes what dev --simulate 40 prints and stores."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(START_HERE) :]
    return section[: section.index("\n## ", 1)]


def written_to_s3(n: int, seed: int = 7) -> set[str]:
    """The request ids of the failure records dev --simulate writes to its bucket."""
    return {
        m.record["requestContext"]["requestId"]
        for m in messages(n, seed=seed, s3_every=DEV_S3_EVERY)
        if m.s3_key and m.record
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_readme_next_commands_work_after_dev_in_an_empty_folder(tmp_path: Path) -> None:
    # given: the README's commands, the first of which is dev
    commands = readme_commands(HEADING)
    assert commands[0][:2] == ["lambda-destinations", "dev"], commands
    simulate_n = int(commands[0][commands[0].index("--simulate") + 1])
    failures = simulated_failures(simulate_n)
    assert failures

    # when: each runs as printed, in an empty folder, without AWS variables
    results = [run(words, tmp_path) for words in commands]

    # then: each exits 0 and shows the simulated failures
    for words, result in zip(commands, results, strict=True):
        assert result.returncode == 0, (words, result.stderr)
        assert "Traceback" not in result.stderr
    # dev printed its alerts once each: not followed by the worker's "webhook sent" line of
    # its own alert channel (other handlers' lines stay)
    dev_lines = results[0].stderr.splitlines()
    assert any("▸ alert" in line for line in dev_lines), results[0].stderr
    assert not [line for line in dev_lines if "webhook sent" in line], results[0].stderr
    assert any("worker started" in line for line in dev_lines), results[0].stderr
    listing = run(["lambda-destinations", "failures", "list", "--json", "--limit", "0"], tmp_path)
    stored = {row["request_id"] for row in json.loads(listing.stdout)}
    assert set(failures) <= stored
    # the failure records dev wrote to its bucket came by the bucket's notification to the
    # failure queue: stored as the worker read them, from S3
    in_s3 = written_to_s3(simulate_n)
    assert in_s3
    assert {show(tmp_path, rid)["envelope"] for rid in in_s3} == {"s3"}
    text = README.read_text(encoding="utf-8")
    (example,) = re.findall(r"`lambda-destinations failures show ([0-9a-f]{8})`", text)
    assert show(tmp_path, example)["envelope"] == "s3"  # the one the README names
    assert "S3 test event acknowledged" in results[0].stderr
    # what the README's first section quotes of this run: its lines, and its request ids
    quoted = start_here()
    printed = results[0].stdout + results[0].stderr
    for line in quoted.splitlines():
        if line.startswith(("  simulated ", "  ▸ received ")):
            assert line.replace("▸ ", "").strip() in printed, (line, printed)
    quoted_ids = set(re.findall(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", quoted))
    assert len(quoted_ids) >= 3
    assert quoted_ids <= stored
    for words, result in zip(commands[1:], results[1:], strict=True):
        shown = result.stdout
        if words[1:3] == ["failures", "list"]:
            assert all(request_id in shown for request_id in failures), shown
        elif words[1:3] == ["failures", "stats"]:
            assert f"{len(stored)} failures" in shown, shown
            assert all(name in shown for name in set(failures.values())), shown
        else:
            assert any(name in shown for name in failures.values()), (words, shown)


def test_dev_on_a_port_in_use_is_one_line_and_exit_3(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(["lambda-destinations", "dev", "--once", "--port", str(port)], tmp_path)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the local endpoint's port 127.0.0.1:{port} is in use: give dev --port a free "
        "port, or leave it out for any free one"
    ]


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.timeout(300)
def test_a_second_dev_in_the_same_folder_refuses_and_leaves_the_first_s_settings(
    tmp_path: Path,
) -> None:
    settings = tmp_path / ".lambda-destinations" / "dev.toml"
    with running_dev(tmp_path) as first:
        written = settings.read_text()

        # when: another dev starts in the same folder
        second = run(["lambda-destinations", "dev", "--once"], tmp_path)

        # then: it refuses, naming the first, and the folder's settings stay the first's
        assert second.returncode == 3, second.stderr
        assert error_lines(second) == [
            f"error: another dev (pid {first.pid}) runs in this folder, with its settings in "
            ".lambda-destinations/dev.toml: stop it, or run this dev in another folder"
        ]
        assert settings.read_text() == written

        # when: the first dies without cleaning up
        first.kill()
        first.wait(timeout=30)

    # then: the next dev starts all the same (the system let the lock go)
    after = run(["lambda-destinations", "dev", "--once"], tmp_path)
    assert after.returncode == 0, after.stderr
    assert settings.read_text() != written  # its own endpoint now


@pytest.mark.timeout(300)
def test_a_dev_whose_ops_port_is_taken_writes_the_port_it_took_for_its_folder(
    tmp_path: Path,
) -> None:
    # given: the default ops port taken, as a dev running in another folder takes it (or
    # taken already, by such a dev of another test)
    with socket.socket() as first:
        with contextlib.suppress(OSError):
            first.bind(("127.0.0.1", DEFAULT_OPS_PORT))
            first.listen()

        # when: dev starts in this folder, then its healthcheck runs here
        with running_dev(tmp_path):
            lines = (tmp_path / "dev.log").read_text().splitlines()  # the banner, then JSON
            took = [
                event["port"]
                for event in (json.loads(line) for line in lines if line.startswith("{"))
                if event.get("event") == "the ops port was taken; using another"
            ]
            config = tomllib.loads((tmp_path / ".lambda-destinations" / "dev.toml").read_text())
            check = run(["lambda-destinations", "healthcheck"], tmp_path)

    # then: dev.toml names the port dev took, and the healthcheck asked this dev there
    # (before: dev.toml named no port, and the healthcheck asked the default's holder)
    assert len(took) == 1, took
    assert config["ops_port"] == took[0] != DEFAULT_OPS_PORT
    assert check.returncode == 0, check.stderr
    assert check.stdout == f"http://127.0.0.1:{took[0]}/healthz: 200\n"


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` (made) read-only for everyone, root included (chmod would not stop root): a
    read-only tmpfs mounted on it while the body runs."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        pytest.skip("needs mount and umount for a read-only tmpfs")
    folder.mkdir()
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run([umount, str(folder)], check=True)


def test_dev_in_a_read_only_folder_is_one_line_and_exit_3(tmp_path: Path) -> None:
    # given: a folder nobody can write to
    folder = tmp_path / "read-only"
    with read_only(folder):
        result = run(["lambda-destinations", "dev", "--once"], folder)
    assert result.returncode == 3, result.stderr
    assert error_lines(result) == [
        f"error: dev cannot write its settings to {folder}/.lambda-destinations (Read-only file "
        "system): run dev in a folder you can write to"
    ]


def test_dev_whose_own_folder_cannot_be_written_says_to_fix_that_folder(tmp_path: Path) -> None:
    # given: dev's folder, made before, that nobody can write to, in a folder that can be
    own = tmp_path / ".lambda-destinations"
    with read_only(own):
        result = run(["lambda-destinations", "dev", "--once"], tmp_path)

    # then: the line names that folder (before: "run dev in a folder you can write to", which
    # this one is)
    assert result.returncode == 3, result.stderr
    assert error_lines(result) == [
        f"error: dev cannot write its settings to {own} (Read-only file system): make "
        ".lambda-destinations writable, or move it away and run dev again"
    ]


@pytest.mark.parametrize(
    ("make", "line"),
    [
        (
            lambda folder: (folder / ".lambda-destinations" / "dev.toml").mkdir(parents=True),
            "error: .lambda-destinations/dev.toml is not a file: dev writes its settings there; "
            "move it away",
        ),
        (
            lambda folder: (folder / ".lambda-destinations").write_text(""),
            "error: .lambda-destinations is not a folder: dev keeps its settings there; "
            "move it away",
        ),
    ],
    ids=["dev.toml a folder", ".lambda-destinations a file"],
)
def test_dev_where_its_settings_cannot_go_is_one_line_and_exit_3(
    tmp_path: Path, make: Any, line: str
) -> None:
    make(tmp_path)
    result = run(["lambda-destinations", "dev", "--once"], tmp_path)
    assert result.returncode == 3, result.stderr
    assert error_lines(result) == [line]


async def test_dev_prints_its_counts_again_only_when_they_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: dev's live summary over a worker's counts, every 10 ms
    stats = Stats()
    summary = asyncio.create_task(live_summary(stats, every=0.01))

    async def lines_after(change: Any) -> list[str]:
        change()
        await asyncio.sleep(0.1)  # ten rounds of the summary
        return [line for line in capsys.readouterr().err.splitlines() if line]

    try:
        # when: messages end, then the worker only polls (its SQS calls go on counting)
        def two_acked() -> None:
            stats.received += 2
            stats.outcomes[Outcome.ACK] += 2

        def idle_polls() -> None:
            stats.sqs_calls["ReceiveMessage"] += 5

        first = await lines_after(two_acked)
        idle = await lines_after(idle_polls)
        later = await lines_after(lambda: stats.outcomes.update({Outcome.RETRY: 1}))
    finally:
        summary.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await summary

    # then: one line for each change of what it shows, none while the worker idles
    counts = "  ▸ received 2 · acked 2 · retried {} · quarantined 0 · released 0 · duplicates 0"
    assert first == [counts.format(0)]
    assert idle == []
    assert later == [counts.format(1)]


async def test_dev_s_last_counts_line_is_the_worker_s_final_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: dev's live summary, every hour, and a worker that received 3 messages
    stats = Stats()
    summary = asyncio.create_task(live_summary(stats, every=3600))
    await asyncio.sleep(0)
    stats.received += 3
    stats.outcomes[Outcome.ACK] += 2
    stats.outcomes[Outcome.RELEASE] += 1

    # when: the worker stops (Ctrl-C) before the summary's next round: dev cancels it
    summary.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await summary

    # then: the last line shows the final counts, which add up to what was received
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines == [
        "  ▸ received 3 · acked 2 · retried 0 · quarantined 0 · released 1 · duplicates 0"
    ]
    assert summary.cancelled()


@pytest.mark.slow
def test_a_second_dev_simulate_in_a_folder_says_why_it_counts_duplicates(tmp_path: Path) -> None:
    # given: a folder where dev --simulate 5 --seed 0 ran once
    def dev_once(*seed: str) -> subprocess.CompletedProcess[str]:
        words = ["lambda-destinations", "dev", "--simulate", "5", "--once", *seed]
        result = run(words, tmp_path)
        assert result.returncode == 0, result.stderr
        return result

    first = dev_once("--seed", "0")

    # when: the same runs again, then dev with its default seed
    again = dev_once("--seed", "0")
    default_seed = dev_once()

    # then: the second counts the first's records as duplicates and says why, once; seed 0's
    # records are not the default seed's
    note = "dev --simulate sends the same records for the same --seed each time; --seed 1 sends"
    assert "duplicates 0" in first.stdout
    assert "store already had" not in first.stderr
    assert "duplicates 5" in again.stdout
    assert again.stderr.count(note) == 1, again.stderr
    assert "duplicates 0" in default_seed.stdout, default_seed.stderr
    assert "store already had" not in default_seed.stderr


async def test_dev_s_live_counts_explain_the_first_duplicates_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: dev's live summary (seed 41) over a worker's counts, every 10 ms
    stats = Stats()
    summary = asyncio.create_task(live_summary(stats, every=0.01, seed=41))
    try:
        # when: two duplicates arrive, one after the other
        for _ in range(2):
            stats.received += 1
            stats.outcomes[Outcome.ACK] += 1
            stats.duplicates += 1
            await asyncio.sleep(0.1)
    finally:
        summary.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await summary

    # then: the note follows the first, names the next seed, and comes once
    err = capsys.readouterr().err
    assert err.count("store already had") == 1, err
    assert "--seed 42 sends new ones" in err
    assert err.index("duplicates 1") < err.index("store already had") < err.index("duplicates 2")


def test_dev_stops_cleanly_with_long_polls_open(tmp_path: Path) -> None:
    # given: dev with its worker idle, its long polls open at dev's endpoint (which proxies
    # them to the emulator behind it)
    with running_dev(tmp_path, "--simulate", "3") as process:
        # (the 3 records, and S3's test event for dev's bucket, sent when its notification
        # to the failure queue was saved)
        wait_for(lambda: "acked 4" in (tmp_path / "dev.log").read_text(), "the records acked")
        time.sleep(2)  # the pollers back in their long polls
    # when: it is stopped (the block's end: Ctrl-C)

    # then: exit 0 and no traceback (before: each proxied long poll, cut off as the endpoint
    # shut down, logged aiohttp's "Error handling request" with a traceback)
    log = (tmp_path / "dev.log").read_text()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert "Error handling request" not in log


def test_a_redrive_against_dev_moves_the_messages_with_no_traceback_in_dev(
    tmp_path: Path,
) -> None:
    # given: dev running, three failure records in its success queue's DLQ
    with running_dev(tmp_path, "--simulate", "0") as process:
        config = tomllib.loads((tmp_path / ".lambda-destinations" / "dev.toml").read_text())
        sqs = boto3.client(
            "sqs",
            endpoint_url=config["endpoint_url"],
            region_name=config["region"],
            aws_access_key_id="dev",
            aws_secret_access_key="dev",
        )
        dlq = sqs.get_queue_url(QueueName="ld-dev-success-dlq")["QueueUrl"]
        records = [failure_record(random.Random(n), function="orders-api") for n in range(3)]
        for record in records:
            sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(record))

        # when: the README's redrive runs from a second shell
        redrive = run(
            ["lambda-destinations", "dlq", "redrive", "ld-dev-success-dlq", "--yes"], tmp_path
        )

        # then: moved here, said in one line with the status once; dev's worker stores them
        assert redrive.returncode == 0, redrive.stderr
        assert redrive.stdout.startswith("moved 3"), redrive.stdout + redrive.stderr
        (fallback,) = [line for line in redrive.stderr.splitlines() if "not available here" in line]
        assert "(HTTP 400 UnsupportedOperation: StartMessageMoveTask is not" in fallback
        ids = {record["requestContext"]["requestId"] for record in records}
        wait_for(lambda: ids <= set(listed(tmp_path)), "the redriven records stored")
    # and dev's terminal showed no traceback of the endpoint behind it (before: moto's
    # NotImplementedError for StartMessageMoveTask, twice per redrive)
    log = (tmp_path / "dev.log").read_text()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert "NotImplementedError" not in log


@contextlib.contextmanager
def running_dev(folder: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """``dev`` running in ``folder`` until the block ends (SIGINT, as Ctrl-C)."""
    log_path = folder / "dev.log"
    with log_path.open("w") as log:  # a file, not a pipe: dev never blocks on its own logs
        process = subprocess.Popen(
            [*ENTRY, "dev", *options, "--log-format", "json"],
            env=bare_env(),
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(
            lambda: process.poll() is not None or "worker started" in log_path.read_text(),
            "dev's worker start",
        )
        assert process.poll() is None, log_path.read_text()
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            reap(process)


@pytest.fixture
def dev_running(tmp_path: Path) -> Iterator[Path]:
    """``dev --simulate 40`` running in ``tmp_path`` until the test ends."""
    with running_dev(tmp_path, "--simulate", "40", "--success-rate", "0.5"):
        yield tmp_path


def wait_for(check: Any, what: str, timeout: float = 90) -> Any:
    """Poll ``check()`` until it returns something true; a bound, not a timed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"never saw {what}")


def listed(folder: Path, *options: str) -> dict[str, dict[str, Any]]:
    result = run(
        ["lambda-destinations", "failures", "list", "--json", "--limit", "0", *options], folder
    )
    assert result.returncode == 0, result.stderr
    return {row["request_id"]: row for row in json.loads(result.stdout)}


def show(folder: Path, request_id: str) -> dict[str, Any]:
    result = run(["lambda-destinations", "failures", "show", request_id, "--json"], folder)
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dev_passes_doctor_and_its_replays_end_recovered_or_failed(dev_running: Path) -> None:
    folder = dev_running
    failures = simulated_failures(40)
    checked = run(["lambda-destinations", "doctor", "--json"], folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    not_ok = [c for c in json.loads(checked.stdout)["checks"] if c["status"] != "ok"]
    assert not_ok == []  # dev's setup is the example of a good one
    wait_for(lambda: set(failures) <= set(listed(folder)), "the simulated failures stored")
    # the simulated functions wrote their attempts' lines, as Lambda would: failures logs
    # (which failures show points at) finds them on dev's endpoint
    stored = listed(folder)
    rid = next(r for r in failures if stored[r]["condition"] == "RetriesExhausted")
    logged = run(["lambda-destinations", "failures", "logs", rid], folder)
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.count(f"START RequestId: {rid}") == 3, logged.stdout
    assert stored[rid]["error_type"] in logged.stdout
    # ...and for the request id the README quotes (`failures logs 5b06258e`), which
    # `failures show` finds by its start
    text = README.read_text(encoding="utf-8")
    (quoted,) = set(re.findall(r"`lambda-destinations failures logs ([0-9a-f]{8})`", text))
    logged = run(["lambda-destinations", "failures", "logs", quoted], folder)
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.count(f"START RequestId: {quoted}") == 3, logged.stdout
    assert show(folder, quoted)["request_id"].startswith(quoted)
    # dev's alert channel (a webhook handler posting to dev itself) showed failures
    alerts = wait_for(
        lambda: [
            line
            for line in (folder / "dev.log").read_text(encoding="utf-8").splitlines()
            if "▸ alert" in line
        ],
        "an alert",
    )
    assert any(rid in line for line in alerts for rid in failures), alerts
    before = listed(folder)

    # when: the README's replay command runs against dev's simulated functions
    replay = readme_commands(HEADING, block=1)[1]
    assert replay[1] == "replay", replay
    result = run(replay, folder)
    assert result.returncode == 0, result.stderr
    replayed = [rid for rid, row in listed(folder).items() if row["replay_count"]]
    assert set(replayed) == set(failures)

    # then: every replay ends: recovered, or failed with the replay's own failure stored
    def ended() -> dict[str, dict[str, Any]] | None:
        rows = listed(folder)
        recovered = [rid for rid in replayed if rows[rid]["status"] == "recovered"]
        failed_again = set(rows) - set(before)
        if len(recovered) + len(failed_again) < len(replayed):
            return None
        return {rid: rows[rid] for rid in replayed}

    rows = wait_for(ended, "every replay's outcome")
    recovered = [rid for rid, row in rows.items() if row["status"] == "recovered"]
    failed = [rid for rid, row in rows.items() if row["status"] == "replayed"]
    assert recovered
    assert failed
    for rid in (recovered[0], failed[0]):
        attempt = show(folder, rid)["replays"][-1]
        expected = "recovered" if rid in recovered else "failed"
        assert attempt["outcome"] == expected
        again = show(folder, attempt["new_request_id"])  # the replay's own record, linked
        assert again["request_payload"] == show(folder, rid)["request_payload"]
        assert again["succeeded"] is (expected == "recovered")
    shown = run(readme_commands(HEADING, block=1)[2], folder)
    assert shown.returncode == 0
    assert all(rid in shown.stdout for rid in recovered)


async def _alert_shown(moto_server: str, capsys: pytest.CaptureFixture[str], text: str) -> str:
    """What dev writes to stderr when its endpoint takes an alert quoting ``text``."""
    simulation = FunctionSimulation(seed=1, delay=0)
    async with (
        DevEndpoint(moto_server, simulation, on_alert=_show_alert) as endpoint,
        aiohttp.ClientSession() as http,
    ):
        body = json.dumps({"text": text})  # as the webhook handler sends it
        headers = {"Content-Type": "application/json"}
        async with http.post(endpoint.url + ALERTS_PATH, data=body, headers=headers) as answer:
            assert answer.status == 200
    return capsys.readouterr().err


async def test_dev_s_alert_line_escapes_the_controls_of_the_text_it_shows(
    moto_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: dev's endpoint, printing alerts as dev does
    # when: an alert quotes an error message holding U+202E, BEL, NUL and a lone surrogate
    err = await _alert_shown(
        moto_server, capsys, "orders-api: bad \u202etxt.exe\x07\x00 \udfff end"
    )

    # then: the line spells them (before: written raw, and a UnicodeEncodeError for the
    # surrogate)
    (line,) = [line for line in err.splitlines() if "▸ alert" in line]
    assert line == "  ▸ alert     orders-api: bad \\u202etxt.exe\\x07\\x00 \ufffd end"


async def test_dev_s_alert_line_is_one_line_whatever_the_text_it_shows(
    moto_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: dev's endpoint, printing alerts as dev does
    # when: an alert quotes an error message, or a request id, whose line break is
    # followed by what reads as a log line
    text = "orders-api failed: boom\n2026-12-05T11:00:00Z [error    ] forged [req-1\r\n]"
    err = await _alert_shown(moto_server, capsys, text)

    # then: one line, its line breaks spaces, as a table's cell shows them
    assert "\n2026-12-05T11:00:00Z" not in err
    (line,) = [line for line in err.splitlines() if "▸ alert" in line]
    assert line == (
        "  ▸ alert     orders-api failed: boom 2026-12-05T11:00:00Z [error ] forged [req-1 ]"
    )
