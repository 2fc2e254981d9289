"""`invoke … --wait` in dev: dev's simulated function runs, delivers its own destination record,
dev's worker stores it, and the command prints the function's response with the documented exit
code (0 success, 1 failure record, 5 no record within the wait)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dev_loop import ENTRY, bare_env, wait_for

from lambda_destinations.simulate import ACCOUNT
from processes import reap


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args], env=bare_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def dev_folder(tmp_path: Path) -> Iterator[Path]:
    """``dev`` running in ``tmp_path`` (no simulated records; half the invocations fail)."""
    log_path = tmp_path / "dev.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*ENTRY, "dev", "--success-rate", "0.5", "--log-format", "json"],
            # no ops server: its default port may be taken by another test or program
            env={**bare_env(), "LAMBDA_DESTINATIONS_OPS_PORT": "0"},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(
            lambda: process.poll() is not None or "worker started" in log_path.read_text(),
            "dev's worker start",
        )
        assert process.poll() is None, log_path.read_text()
        yield tmp_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            reap(process)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_invoke_wait_in_dev_returns_the_simulated_functions_response(dev_folder: Path) -> None:
    # when: the application's loop, from a second terminal in dev's folder, until both a
    # success and a failure came back (each invocation succeeds with a chance of one half)
    seen: dict[int, dict[str, object]] = {}
    for n in range(12):
        payload = json.dumps({"orderId": f"ord-{n}"})
        result = run(
            "invoke", "orders-api", "--payload", payload, "--wait", "60s", "--json", cwd=dev_folder
        )
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        outcome = json.loads(result.stdout)
        seen.setdefault(result.returncode, outcome)
        # then: the outcome is the simulated function's, for this invocation
        assert outcome["function_name"] == "orders-api"
        if result.returncode == 0:
            assert outcome["state"] == "succeeded"
            assert outcome["response"] == {"statusCode": 200, "ok": True, "orderId": f"ord-{n}"}
        else:
            assert outcome["state"] == "failed"
            assert outcome["error"]["type"]
            assert outcome["response"]["requestId"] == outcome["request_id"]
        if len(seen) == 2:
            break
    assert set(seen) == {0, 1}, "twelve invocations at a success rate of one half"

    # and: `result` reads the same outcome later, by request id
    success = seen[0]
    again = run("result", str(success["request_id"]), "--json", cwd=dev_folder)
    assert again.returncode == 0
    assert json.loads(again.stdout) == success
    # and: as pasted from an upper-cased view, with spaces around it (before: exit 5)
    pasted = run("result", f" {str(success['request_id']).upper()} ", "--json", cwd=dev_folder)
    assert pasted.returncode == 0, pasted.stderr
    assert json.loads(pasted.stdout) == success
    # and: cut short, it is not found, and the line says a request id is given whole
    cut = run("result", str(success["request_id"])[:8], cwd=dev_folder)
    assert cut.returncode == 5, cut.stderr
    assert "a Lambda request id has 36 characters" in cut.stderr
    assert "still be running" not in cut.stderr  # the id is wrong, not the invocation late
    # and: with --wait, a cut id is not waited on (no record can come under it)
    started = time.monotonic()
    cut_waited = run("result", str(success["request_id"])[:8], "--wait", "60s", cwd=dev_folder)
    assert cut_waited.returncode == 5, cut_waited.stderr
    assert time.monotonic() - started < 30
    assert "a Lambda request id has 36 characters" in cut_waited.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_in_dev_no_record_exits_5_and_a_refused_invoke_exits_1(
    dev_folder: Path,
) -> None:
    # a request id no function answered: no record within the wait, exit 5
    unknown = run("result", "3f9a7c1e-0000-4000-8000-000000000000", "--wait", "1s", cwd=dev_folder)
    assert unknown.returncode == 5, unknown.stderr
    [line] = [line for line in unknown.stderr.splitlines() if line.startswith("error:")]
    assert "within 1 s" in line

    # a function Lambda does not know: the Invoke is refused, one line, exit 1
    refused = run("invoke", "no-such-function", "--wait", "5s", cwd=dev_folder)
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout == ""
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "ResourceNotFoundException" in line
    assert line.endswith(
        ":function:no-such-function: check the name (a version or alias too) and the region"
    ), line
    assert "Traceback" not in refused.stderr

    # the ARN of a function of another region, one dev has of that name: looked up there, not
    # in dev's own, and said so (before: a usage error, exit 2, "give --region eu-west-1")
    west = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:orders-api"
    elsewhere = run("invoke", west, cwd=dev_folder)
    assert elsewhere.returncode == 1, elsewhere.stderr
    [line] = [line for line in elsewhere.stderr.splitlines() if line.startswith("error:")]
    assert line.endswith(
        f"Function not found: {west}: check the name (a version or alias too) and that it is "
        "in eu-west-1, the region its ARN names"
    ), line
