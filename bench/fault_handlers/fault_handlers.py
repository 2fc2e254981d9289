"""Handlers the fault trials' worker processes load (through handler_modules)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from lambda_destinations import DecodedMessage, HandlerContext, handler


@handler("effect")
async def effect(message: DecodedMessage, context: HandlerContext) -> None:
    """A countable side effect: one line per run, in a file shared by every process."""
    await asyncio.sleep(float(os.environ.get("EFFECT_SECONDS", "0")))
    line = f"{message.key}\n".encode()
    # O_APPEND writes of a short line are atomic: processes never interleave.
    fd = os.open(os.environ["EFFECTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@handler("sleepy")
async def sleepy(message: DecodedMessage, context: HandlerContext) -> None:
    """Marks that it started, then sleeps as long as the request payload says."""
    (Path(os.environ["MARKER_DIR"]) / f"started-{message.request_id}").touch()
    await asyncio.sleep(float(message.request_payload["sleep"]))


@handler("blocking")
async def blocking(message: DecodedMessage, context: HandlerContext) -> None:
    """Blocks the event loop ``BLOCK_SECONDS`` (a blocking client called from a handler)."""
    time.sleep(float(os.environ.get("BLOCK_SECONDS", "2")))  # noqa: ASYNC251 - the fault studied


@handler("cpu")
async def cpu(message: DecodedMessage, context: HandlerContext) -> None:
    """Computes for ``BLOCK_SECONDS`` without giving the loop back (a huge template)."""
    end = time.process_time() + float(os.environ.get("BLOCK_SECONDS", "2"))
    while time.process_time() < end:
        sum(range(1000))


@handler("wedged")
async def wedged(message: DecodedMessage, context: HandlerContext) -> None:
    """Runs normally for ``BLOCK_SECONDS`` after the first call, then blocks the loop for ever."""
    first = _FIRST.setdefault("at", time.monotonic())
    if time.monotonic() - first > float(os.environ.get("BLOCK_SECONDS", "2")):
        while True:
            time.sleep(1)  # noqa: ASYNC251 - the fault studied


_FIRST: dict[str, float] = {}
