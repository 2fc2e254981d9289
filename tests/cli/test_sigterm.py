"""SIGTERM to a one-shot command, as `docker stop` or `kill` sends it, in a process of its own."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from processes import ctrl_c_as_in_a_terminal, reap

# A command's asyncio.run, as the one-shot commands run theirs: it says when its work has
# begun, works without an await until the file ``go`` exists (a step no await interrupts, as
# a store's reply is read), then awaits; what it got done is printed as it is cleaned up.
COMMAND = """
import asyncio, os, sys
from lambda_destinations.cli._app import own_process, reports_errors
own_process()

async def main() -> None:
    done = []
    try:
        print("begun", flush=True)
        while not os.path.exists(sys.argv[1]):
            pass
        done.append("step")
        await asyncio.sleep(3600)
    finally:
        print(f"cleaned up after: {done}", flush=True)

reports_errors(lambda: asyncio.run(main()))()
"""


def test_sigterm_stops_a_command_at_its_next_await_as_ctrl_c_does(tmp_path: Path) -> None:
    # given: a command at work, in a step with no await in it
    go = tmp_path / "go"
    with subprocess.Popen(
        [sys.executable, "-c", COMMAND, str(go)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "begun\n"

            # when: SIGTERM comes, then the step can end
            process.send_signal(signal.SIGTERM)
            go.touch()
            out, err = process.communicate(timeout=60)
        finally:
            reap(process)

    # then: the step was not cut in its middle (an exception raised there, inside a driver's
    # code, left its connection broken); the command stopped at its next await, cleaned up,
    # and left with "terminated", 143
    assert out == "cleaned up after: ['step']\n", err
    assert (process.returncode, err) == (143, "terminated\n")
