"""The result store: SQLite (embedded default) and PostgreSQL (shared by many replicas)."""

from __future__ import annotations

from lambda_destinations.store.base import (
    ROW_ID_MAX,
    AlertAdmission,
    AlertWindow,
    DeliveryRow,
    FailureCount,
    FailureStatus,
    HandlerRun,
    InvocationCursor,
    InvocationFilter,
    InvocationRow,
    JobState,
    OperatorAction,
    PruneKind,
    QuarantineRow,
    ReplayAttempt,
    ReplayOutcome,
    RunState,
    ScheduledJob,
    Store,
    open_store_class,
    scope_of,
)
from lambda_destinations.times import utcnow

__all__ = [
    "ROW_ID_MAX",
    "AlertAdmission",
    "AlertWindow",
    "DeliveryRow",
    "FailureCount",
    "FailureStatus",
    "HandlerRun",
    "InvocationCursor",
    "InvocationFilter",
    "InvocationRow",
    "JobState",
    "OperatorAction",
    "PruneKind",
    "QuarantineRow",
    "ReplayAttempt",
    "ReplayOutcome",
    "RunState",
    "ScheduledJob",
    "Store",
    "open_store_class",
    "scope_of",
    "utcnow",
]
