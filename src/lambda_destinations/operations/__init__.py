"""What operators do, apart from the command line: replay, redrive, doctor, statistics.

The CLI (``lambda_destinations.cli``) prints; these modules act and return results, so the
worker's handlers (automatic replay) and scripts can do the same. Only the modules without
dependencies on the worker are re-exported here, so that a handler may import this package
while the worker itself is being imported; use ``operations.redrive`` and
``operations.doctor`` by their module paths.
"""

from lambda_destinations.operations._rate import RateLimiter
from lambda_destinations.operations.replay import (
    TRIGGER_AUTOMATIC,
    TRIGGER_MANUAL,
    NotReplayable,
    ReplayResult,
    ReplayState,
    ReplayTarget,
    SkipReason,
    invoke_replay,
    replay_invocation,
    replay_target,
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
    "invoke_replay",
    "replay_invocation",
    "replay_target",
]
