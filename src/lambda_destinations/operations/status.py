"""A failure's status set by hand: reopened, it goes back to where its replays left it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from lambda_destinations.store import (
    FailureStatus,
    InvocationRow,
    ReplayAttempt,
    ReplayOutcome,
    Store,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Reopened:
    """How many failures a reopen changed, and how many of them are ``recovered``, not open."""

    changed: int
    recovered: int


def set_by(who: str, reason: str | None) -> str:
    """Who set a status, and why when a reason was given: `failures show` and the failure's
    page show it (the reason cut at 200 characters, on one line)."""
    return who + (f" — {' '.join(reason.split())[:200]}" if reason else "")


async def reopen(store: Store, keys: Sequence[str], by: str | None = None) -> Reopened:
    """Mark these failures open again, but ``recovered`` where a replay of one recovered.

    Ignoring a failure hides the status its replays gave it; a reopen must not make a failure
    a replay fixed open again (lists, counts and retention would take it for one still to
    handle). One replayed without recovering is open, so it can be replayed once more.
    The replays of the whole selection are read at once, not failure by failure."""
    counts = await store.replay_counts(keys, outcome=ReplayOutcome.RECOVERED)
    recovered = {key for key, count in counts.items() if count}
    still_open = [key for key in keys if key not in recovered]
    changed = await store.set_status(still_open, FailureStatus.OPEN, by=by)
    kept = await store.set_status(sorted(recovered), FailureStatus.RECOVERED, by=by)
    return Reopened(changed=changed + kept, recovered=kept)


async def replayed_original(store: Store, row: InvocationRow) -> tuple[ReplayAttempt, str] | None:
    """The attempt whose own record ``row`` is (status ``replay``), and the original failure's
    request id (its key, for a record without one); None when ``row`` is no replay's record, or
    the ledger no longer has its attempt."""
    if row.status is not FailureStatus.REPLAY or not row.request_id:
        return None
    attempt = await store.replay_for_request(row.request_id)
    if attempt is None:
        return None
    return attempt, attempt.original_request_id or attempt.original_key
