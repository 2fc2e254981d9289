"""The worker: pollers, dispatch, batched acknowledgements, heartbeat, shutdown, ops server.

The names are imported on first use: a command that needs one helper of a module here (a
queue's name from its URL) does not import the dispatch and every handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambda_destinations._lazy import lazy_names

if TYPE_CHECKING:
    from lambda_destinations.worker.dispatch import Dispatcher, InFlight, Stats
    from lambda_destinations.worker.metrics import Metrics
    from lambda_destinations.worker.ops import OpsServer
    from lambda_destinations.worker.queues import QueueInfo, describe_queue
    from lambda_destinations.worker.supervision import Supervisor, TaskFailed
    from lambda_destinations.worker.worker import StartTimedOut, Worker

_DISPATCH = "lambda_destinations.worker.dispatch"
_QUEUES = "lambda_destinations.worker.queues"
_SUPERVISION = "lambda_destinations.worker.supervision"
_WORKER = "lambda_destinations.worker.worker"
_LAZY = {
    "Dispatcher": _DISPATCH,
    "InFlight": _DISPATCH,
    "Stats": _DISPATCH,
    "Metrics": "lambda_destinations.worker.metrics",
    "OpsServer": "lambda_destinations.worker.ops",
    "QueueInfo": _QUEUES,
    "describe_queue": _QUEUES,
    "Supervisor": _SUPERVISION,
    "TaskFailed": _SUPERVISION,
    "StartTimedOut": _WORKER,
    "Worker": _WORKER,
}


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "Dispatcher",
    "InFlight",
    "Metrics",
    "OpsServer",
    "QueueInfo",
    "StartTimedOut",
    "Stats",
    "Supervisor",
    "TaskFailed",
    "Worker",
    "describe_queue",
]
