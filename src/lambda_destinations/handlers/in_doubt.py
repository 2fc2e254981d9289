"""What an acting handler does with a call whose outcome is unknown: its ``in_doubt`` policy.

A call is *in doubt* when the request may have been served but its answer was lost: a read
timeout, a connection dropped after the request was sent. (An error the service answered, or
a connection that was never made, is not in doubt: nothing happened.) Sending again may
repeat the effect; not sending may lose it. Each acting handler (``sms``, ``email``,
``replay``, ``webhook``) takes one setting, shared from here:

- ``in_doubt = "resend"``: at least once. The call fails as a transient error and is sent
  again (in process, then by message retry); the handler run records that it was in doubt, so
  a repeated effect is on record. Right for on-call alerts.
- ``in_doubt = "skip"``: at most once. The call counts as done, is not sent again, and the
  handler run records that it was in doubt (``failures show`` lists it).

Clients of acting handlers send each request once (no botocore retries), so a lost answer is
seen here instead of being resent quietly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from lambda_destinations.errors import TransientError
from lambda_destinations.handlers.base import HandlerContext, delivery_of
from lambda_destinations.retrying import answered, is_transient

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


InDoubt = Literal["resend", "skip"]
RESEND: InDoubt = "resend"
SKIP: InDoubt = "skip"


class InDoubtOption(BaseModel):
    """The ``in_doubt`` setting, for the options model of every acting handler."""

    in_doubt: InDoubt = RESEND


def is_in_doubt(exc: BaseException) -> bool:
    """The request may have been served: a transient error the service did not answer."""
    return is_transient(exc) and not answered(exc)


def settle_in_doubt(
    policy: InDoubt,
    what: str,
    exc: BaseException,
    *,
    context: HandlerContext | None,
    log: FilteringBoundLogger,
) -> None:
    """Apply ``policy`` to the in-doubt call ``what``: return (skip) or raise TransientError.

    ``context`` (None for scheduled digests) gets the note the worker keeps in the handler run.
    """
    note = f"in doubt ({type(exc).__name__}): {what} may have been sent; " + (
        "not sent again (in_doubt = skip)" if policy == SKIP else "sent again (in_doubt = resend)"
    )
    if context is not None:
        # Kept in the handler run when it completes (a failed run keeps its error instead).
        delivery_of(context).in_doubt = note
    log.warning(note)
    if policy != SKIP:
        raise TransientError(note) from exc
