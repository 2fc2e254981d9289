"""Handlers loaded by a worker subprocess (through handler_modules) in the shutdown tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from lambda_destinations.handlers import HandlerContext, handler
from lambda_destinations.schemas import DecodedMessage


@handler("sleepy")
async def sleepy(message: DecodedMessage, context: HandlerContext) -> None:
    """Marks that it started, then sleeps as long as the request payload says."""
    markers = Path(os.environ["MARKER_DIR"])
    (markers / f"started-{message.request_id}").touch()
    await asyncio.sleep(float(message.request_payload["sleep"]))
    (markers / f"done-{message.request_id}").touch()
