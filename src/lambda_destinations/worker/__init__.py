"""The worker: pollers, dispatch, batched acknowledgements, heartbeat, shutdown, ops server."""

from lambda_destinations.worker.dispatch import Dispatcher, InFlight, Stats
from lambda_destinations.worker.metrics import Metrics
from lambda_destinations.worker.ops import OpsServer
from lambda_destinations.worker.queues import QueueInfo, describe_queue
from lambda_destinations.worker.supervision import Supervisor, TaskFailed
from lambda_destinations.worker.worker import StartTimedOut, Worker

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
