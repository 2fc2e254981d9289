"""What a scheduled job's runner gets: the job, the store, the clients, the handlers.

The worker's scheduler (:mod:`lambda_destinations.worker.scheduler`) builds one
:class:`JobContext` per run; the runners live with what they run (the replay handler's
attempts, the notifiers' digests, retention).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.aws import AwsClients
    from lambda_destinations.config import Settings
    from lambda_destinations.handlers.base import Handler
    from lambda_destinations.store import ScheduledJob, Store


class Handlers(Protocol):
    """The worker's handlers by the names routes use (a ``HandlerRegistry``)."""

    def get(self, name: str) -> Handler: ...


@dataclasses.dataclass(slots=True)
class JobContext:
    """What a job runner may use.

    Attributes:
        job: the job being run (``attempts`` counts this run).
        store: the result store.
        aws: AWS clients sharing the configured endpoint and region.
        settings: the worker's settings.
        registry: the worker's handlers, by the names routes use (a digest is sent by the
            notifier that held its alerts back).
        owner: this worker's identity; the job's lease is held in its name.
        log: a logger bound to the job's key and kind.
        max_attempts: the scheduler gives up on a job taken this many times.
        sleep: how to wait (tests make it instant).
    """

    job: ScheduledJob
    store: Store
    aws: AwsClients
    settings: Settings
    registry: Handlers
    owner: str
    log: FilteringBoundLogger
    max_attempts: int = 10
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


# What runs a job of one kind. It may return False when it found nothing to do (a replay whose
# Invoke an earlier run made): the job is done, and counts as no run of its effect.
JobRunner = Callable[["ScheduledJob", JobContext], Awaitable[bool | None]]
