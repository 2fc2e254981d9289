"""The loop watchdog (worker/watchdog.py) in a process that is stopped and continued.

A real process runs an event loop beating a real LoopWatchdog, as the worker's heartbeat
does, and a thread asking it ``blocked()`` as the ops server's /healthz does; the test stops
it with SIGSTOP and continues it with SIGCONT (a paused container or VM does the same).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

PROCESS = r"""
import asyncio, sys, threading, time
from lambda_destinations.worker.watchdog import LoopWatchdog

async def run() -> None:
    reader = asyncio.create_task(asyncio.to_thread(sys.stdin.readline))
    watchdog = LoopWatchdog({}, threshold=0.5)
    watchdog.start()

    def probe() -> None:  # /healthz, from a thread of its own
        while True:
            if (blocked := watchdog.blocked()) is not None:
                print("healthz:", blocked, flush=True)
            time.sleep(0.01)

    threading.Thread(target=probe, daemon=True).start()
    print("ready", flush=True)
    while not reader.done():  # the heartbeat: a beat every 0.1 s
        watchdog.beat()
        await asyncio.sleep(0.1)

asyncio.run(run())
"""


@pytest.mark.slow
def test_a_stopped_and_continued_process_is_no_blocked_loop() -> None:
    # given: a process whose loop beats its watchdog (0.5 s threshold) every 0.1 s
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        assert process.stdout.readline().strip() == "ready"

        # when: it is stopped for 2 s, three times (its loop blocks nothing meanwhile)
        for _ in range(3):
            os.kill(process.pid, signal.SIGSTOP)
            time.sleep(2.0)
            os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.5)
        process.stdin.write("quit\n")
        process.stdin.close()
        output = process.stdout.read()
        assert process.wait(timeout=30) == 0, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    # then: neither the log nor /healthz called the loop blocked
    assert "blocked" not in output, output
