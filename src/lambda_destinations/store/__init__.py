"""The result store: SQLite (embedded default) and PostgreSQL (shared by many replicas)."""

from __future__ import annotations

import importlib

from lambda_destinations.errors import ConfigError
from lambda_destinations.redact import mask_url
from lambda_destinations.store.base import (
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
    scope_of,
)
from lambda_destinations.times import utcnow

# scheme -> "module:class", imported only when used so SQLite users never import asyncpg.
_BACKENDS = {
    "sqlite": "lambda_destinations.store.sqlite:SQLiteStore",
    "postgresql": "lambda_destinations.store.postgres:PostgresStore",
    "postgres": "lambda_destinations.store.postgres:PostgresStore",
}


def open_store_class(url: str) -> type[Store]:
    """The Store subclass for ``url``'s scheme; ConfigError naming the fix otherwise."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower() if ":" in url else ""
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(
            f"LAMBDA_DESTINATIONS_STORE={mask_url(url)!r} has no known scheme: "
            "use sqlite:///path/to/file.db or postgresql://user@host/db"
        )
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
        if module_name.endswith("postgres"):
            importlib.import_module("asyncpg")  # SQLAlchemy would import it only when connecting
    except ImportError as exc:
        raise ConfigError(
            f"the {scheme} store needs a package that is not installed ({exc.name}): "
            "pip install 'lambda-destinations[postgres]'"
        ) from None
    cls: type[Store] = getattr(module, class_name)
    return cls


__all__ = [
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
