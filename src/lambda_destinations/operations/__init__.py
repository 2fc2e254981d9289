"""What operators do, apart from the command line: replay, redrive, doctor, statistics.

The CLI (``lambda_destinations.cli``) prints; these modules act and return results, so the
console and scripts can do the same. They sit above the handlers and the worker and may use
both; neither imports this package. What a replay of one record invokes is the replay
handler's (the automatic replay uses it too) and is re-exported here.

The names are imported on first use: a command that needs the statistics only (``failures
stats``) does not pay for the replay's imports (the handlers, aiobotocore).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambda_destinations._lazy import lazy_names

if TYPE_CHECKING:
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
        ErrorReason,
        ReplayResult,
        ReplayState,
        SkipReason,
        replay_invocation,
    )
    from lambda_destinations.operations.stats import FailureStats, failure_stats
    from lambda_destinations.operations.status import Reopened, reopen

_HANDLER = "lambda_destinations.handlers.replay"
_REPLAY = "lambda_destinations.operations.replay"
_LAZY = {
    "TRIGGER_AUTOMATIC": _HANDLER,
    "TRIGGER_MANUAL": _HANDLER,
    "NotReplayable": _HANDLER,
    "ReplayTarget": _HANDLER,
    "original_payload": _HANDLER,
    "replay_target": _HANDLER,
    "RateLimiter": "lambda_destinations.operations._rate",
    "ErrorReason": _REPLAY,
    "ReplayResult": _REPLAY,
    "ReplayState": _REPLAY,
    "SkipReason": _REPLAY,
    "replay_invocation": _REPLAY,
    "FailureStats": "lambda_destinations.operations.stats",
    "failure_stats": "lambda_destinations.operations.stats",
    "Reopened": "lambda_destinations.operations.status",
    "reopen": "lambda_destinations.operations.status",
}


__getattr__ = lazy_names(__name__, _LAZY)


__all__ = [
    "TRIGGER_AUTOMATIC",
    "TRIGGER_MANUAL",
    "ErrorReason",
    "FailureStats",
    "NotReplayable",
    "RateLimiter",
    "Reopened",
    "ReplayResult",
    "ReplayState",
    "ReplayTarget",
    "SkipReason",
    "failure_stats",
    "original_payload",
    "reopen",
    "replay_invocation",
    "replay_target",
]
