"""Handlers loaded by worker subprocesses (through handler_modules) in the process tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from lambda_destinations import DecodedMessage, HandlerContext, handler


@handler("sleepy")
async def sleepy(message: DecodedMessage, context: HandlerContext) -> None:
    """Marks that it started, then sleeps as long as the request payload says."""
    markers = Path(os.environ["MARKER_DIR"])
    (markers / f"started-{message.request_id}").touch()
    await asyncio.sleep(float(message.request_payload["sleep"]))
    (markers / f"done-{message.request_id}").touch()


@handler("count-effect")
async def count_effect(message: DecodedMessage, context: HandlerContext) -> None:
    """A side effect that can be counted: one line per run in a file shared by processes."""
    line = f"{message.key}\n".encode()
    # O_APPEND writes of a short line are atomic, so two worker processes never interleave.
    fd = os.open(os.environ["EFFECTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@handler("stuck-once")
async def stuck_once(message: DecodedMessage, context: HandlerContext) -> None:
    """Hangs on its first run (the test kills the worker then); later runs return at once."""
    markers = Path(os.environ["MARKER_DIR"])
    started = markers / f"started-{message.request_id}"
    if not started.exists():
        started.touch()
        await asyncio.Event().wait()
    (markers / f"done-{message.request_id}").touch()


async def sleep_through_cancellation(seconds: float) -> None:
    """Sleep ``seconds``, swallowing cancellation: what a badly written handler does."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        try:  # noqa: SIM105 - swallowing the cancellation is the point
            await asyncio.sleep(end - loop.time())
        except asyncio.CancelledError:
            pass


@handler("stubborn")
async def stubborn(message: DecodedMessage, context: HandlerContext) -> None:
    """Marks that it started, then sleeps a minute and ignores cancellation meanwhile."""
    (Path(os.environ["MARKER_DIR"]) / f"started-{message.request_id}").touch()
    await sleep_through_cancellation(60.0)


async def stubborn_job(job: Any, context: Any) -> None:
    """A scheduled job that takes a minute and ignores cancellation (kind "stubborn")."""
    (Path(os.environ["MARKER_DIR"]) / f"job-started-{job.key}").touch()
    await sleep_through_cancellation(60.0)


async def held_job(job: Any, context: Any) -> None:
    """A scheduled job that marks which process runs it, then runs until that process ends
    (kind "held")."""
    (Path(os.environ["MARKER_DIR"]) / f"job-{job.key}-{os.getpid()}").touch()
    await asyncio.Event().wait()


@handler("slow-effect")
async def slow_effect(message: DecodedMessage, context: HandlerContext) -> None:
    """Marks which process started it, sleeps ``SLOW_EFFECT_SECONDS``, then writes one line
    (the record's key and the process) to ``EFFECTS_FILE``: an effect a test can count."""
    markers = Path(os.environ["MARKER_DIR"])
    (markers / f"started-{message.request_id}-{os.getpid()}").touch()
    await asyncio.sleep(float(os.environ.get("SLOW_EFFECT_SECONDS", "3")))
    line = f"{message.key} {os.getpid()}\n".encode()
    fd = os.open(os.environ["EFFECTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
