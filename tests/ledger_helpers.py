"""Arranging the replay ledger in tests: a failure replayed once, with the outcome it had."""

from __future__ import annotations

from lambda_destinations.store import InvocationRow, Store
from lambda_destinations.store.base import ReplayAttempt, ReplayOutcome


async def replayed_once(
    store: Store,
    row: InvocationRow,
    outcome: ReplayOutcome,
    *,
    by: str = "cli ops@host",
    new_request_id: str | None = None,
) -> ReplayAttempt:
    """Record a first manual replay of ``row`` that came to ``outcome``, as the replay command
    records one (the attempt, then its answer); the attempt as stored."""
    attempt = ReplayAttempt(
        original_key=row.key,
        original_request_id=row.request_id,
        function_arn=row.function_arn or "",
        attempt=1,
        trigger="manual",
        requested_by=by,
    )
    await store.add_replay(attempt)
    assert attempt.id is not None
    await store.update_replay(
        attempt.id, new_request_id=new_request_id or f"new-{row.key}", outcome=outcome
    )
    return attempt
