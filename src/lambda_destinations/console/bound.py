"""How long a console request waits for AWS: AWS_SECONDS, all its calls together.

botocore's own bounds (5 s to connect, a read timeout that outlasts a long poll, three
attempts) would hold a page for minutes where an endpoint takes the connection and never
answers, and a reverse proxy in front gives up at 60 s with a page of its own. Every request
that asks AWS does so inside :func:`aws_bound`: past the bound it answers 504 with one line,
the command that waits longer where there is one, or, once an acting call was sent (an
Invoke, a purge, a send), that its outcome is unknown and where to look. Background jobs
(bulk replay, redrive) are not requests: their pages report as they go.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

from aiohttp import web

from lambda_destinations.retrying import CONNECTION_ERRORS, answered

AWS_SECONDS = 30.0


class AwsUnanswered(web.HTTPGatewayTimeout):
    """AWS did not answer a request's calls within AWS_SECONDS; ``line`` says so and what to do."""

    def __init__(self, line: str) -> None:
        super().__init__(text=f"{line}\n")
        self.line = line


@dataclasses.dataclass(slots=True)
class AwsWait:
    """What a request tells its bound: the command that waits longer (``command``), and, set
    just before an acting call is sent, what may have been done (``in_doubt``)."""

    command: str | None = None
    in_doubt: str | None = None

    def line(self, cause: str | None = None) -> str:
        """The page's line; ``cause``: the error an acting call ended in without an answer."""
        problem = f"AWS did not answer within {AWS_SECONDS:g} s"
        if cause is not None:
            problem = f"AWS did not answer ({cause})"
        if self.in_doubt is not None:
            return f"{problem}: {self.in_doubt}"
        if self.command is not None:
            return f"{problem}: try again, or run {self.command}, which waits longer"
        return f"{problem}: try again"


@contextlib.asynccontextmanager
async def aws_bound(command: str | None = None) -> AsyncIterator[AwsWait]:
    """Cut the calls of the block off at AWS_SECONDS, and raise :class:`AwsUnanswered` then.

    Whatever the block raises before that goes through as it is (a 404, botocore's own error),
    but for an acting call (``in_doubt`` set) that ended unanswered sooner (a read timeout
    shorter than the bound, a connection dropped after sending): in doubt too. A call under
    way when the bound came may still end in the error it was cut off with (a connection
    error, raised as the cancellation unwound it): past the bound, any error is the bound's."""
    wait = AwsWait(command)
    bound = asyncio.timeout(AWS_SECONDS)
    try:
        async with bound:
            yield wait
    except Exception as exc:
        if bound.expired():
            raise AwsUnanswered(wait.line()) from None
        if wait.in_doubt is not None and isinstance(exc, CONNECTION_ERRORS) and not answered(exc):
            raise AwsUnanswered(wait.line(type(exc).__name__)) from None
        raise
