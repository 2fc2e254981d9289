"""What operators do, apart from the command line: replay, redrive, doctor, statistics.

The CLI (``lambda_destinations.cli``) prints; these modules act and return results, so the
console and scripts can do the same. They sit above the handlers and the worker and may use
both; neither imports this package. What a replay of one record invokes is the replay
handler's (the automatic replay uses it too) and is re-exported here.
"""

from lambda_destinations.handlers.replay import (
    TRIGGER_AUTOMATIC,
    TRIGGER_MANUAL,
    NotReplayable,
    ReplayTarget,
    original_payload,
    replay_target,
)
from lambda_destinations.operations._rate import RateLimiter
from lambda_destinations.operations.replay import (
    ReplayResult,
    ReplayState,
    SkipReason,
    replay_invocation,
)
from lambda_destinations.operations.stats import FailureStats, failure_stats

__all__ = [
    "TRIGGER_AUTOMATIC",
    "TRIGGER_MANUAL",
    "FailureStats",
    "NotReplayable",
    "RateLimiter",
    "ReplayResult",
    "ReplayState",
    "ReplayTarget",
    "SkipReason",
    "failure_stats",
    "original_payload",
    "replay_invocation",
    "replay_target",
]
