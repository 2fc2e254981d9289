"""The worker: pollers, dispatch, batched acknowledgements, heartbeat, shutdown."""

from lambda_destinations.worker.dispatch import Dispatcher, InFlight, Stats
from lambda_destinations.worker.queues import QueueInfo, describe_queue
from lambda_destinations.worker.worker import Worker

__all__ = ["Dispatcher", "InFlight", "QueueInfo", "Stats", "Worker", "describe_queue"]
