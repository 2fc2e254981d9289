"""`lambda-destinations` with a fault injected inside one long-lived task (supervision tests).

``FAULT=none`` injects nothing; the job kinds ``stubborn`` (for the shutdown tests) and ``held``
(for the tests of a job whose worker died) are added.

``FAULT`` names the task; the fault fires once a handler has started (a ``started-*`` marker
in ``MARKER_DIR``), so the worker has a message in flight while it shuts down.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
from pathlib import Path
from typing import Any

from lambda_destinations.cli import main
from lambda_destinations.worker.ops import OpsServer
from lambda_destinations.worker.scheduler import JOB_RUNNERS, Scheduler
from lambda_destinations.worker.worker import Slots, Worker


def armed() -> bool:
    return any(Path(os.environ["MARKER_DIR"]).glob("started-*"))


def fail_when_armed(cls: Any, name: str) -> None:
    original = getattr(cls, name)

    def check() -> None:
        if armed():
            raise RuntimeError(f"injected failure in {os.environ['FAULT']}")

    if asyncio.iscoroutinefunction(original):

        @functools.wraps(original)
        async def patched_async(*args: Any, **kwargs: Any) -> Any:
            check()
            return await original(*args, **kwargs)

        setattr(cls, name, patched_async)
    else:

        @functools.wraps(original)
        def patched(*args: Any, **kwargs: Any) -> Any:
            check()
            return original(*args, **kwargs)

        setattr(cls, name, patched)


def lose_store_when_armed() -> None:
    """The store watcher only works while the store is lost: make it so, once armed."""
    original = Worker._spawn_tasks

    def spawn(self: Worker, *, once: bool) -> None:
        original(self, once=once)

        async def lose() -> None:
            while not armed():  # noqa: ASYNC110 - a file on disk, not an event in this loop
                await asyncio.sleep(0.1)
            assert self._dispatcher is not None
            self._dispatcher.store_down()

        self._lose_store = asyncio.create_task(lose())  # type: ignore[attr-defined]

    Worker._spawn_tasks = spawn  # type: ignore[method-assign]


def close_ops_when_armed() -> None:
    """The ops server's listening socket goes away under it."""
    original = OpsServer.start

    async def start(self: OpsServer, **options: Any) -> None:
        await original(self, **options)

        async def close() -> None:
            while not armed():  # noqa: ASYNC110 - a file on disk, not an event in this loop
                await asyncio.sleep(0.1)
            for site in self._runner.sites:
                site._server.close()  # type: ignore[union-attr]

        self._closer = asyncio.create_task(close())  # type: ignore[attr-defined]

    OpsServer.start = start  # type: ignore[method-assign]


FAULTS = {
    "poller": lambda: fail_when_armed(Slots, "reserve"),
    "heartbeat": lambda: fail_when_armed(Worker, "_extend_due"),
    "store-watcher": lambda: (
        lose_store_when_armed(),
        fail_when_armed(Worker, "_reconnect_store"),
    ),
    "scheduler": lambda: fail_when_armed(Scheduler, "_wait"),
    "queue-metrics": lambda: fail_when_armed(Worker, "_sample_queue"),
    "ops-server": close_ops_when_armed,
    "none": lambda: None,
}

if __name__ == "__main__":
    # A job kind whose runner ignores cancellation, for the shutdown tests.
    JOB_RUNNERS["stubborn"] = importlib.import_module("slow_handlers").stubborn_job
    # One that runs until its process ends, for the tests of a job whose worker died.
    JOB_RUNNERS["held"] = importlib.import_module("slow_handlers").held_job
    FAULTS[os.environ["FAULT"]]()
    main()
