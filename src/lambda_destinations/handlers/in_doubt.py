"""What an acting handler does with a call whose outcome is unknown: its ``in_doubt`` policy.

A call is *in doubt* when the request may have been served but its answer was lost: a read
timeout, a connection dropped after the request was sent, or the worker cutting the call off
(shutdown's cancellation, ``handler_timeout``) before the answer came. (An error the service
answered, or a connection that was never made, is not in doubt: nothing happened.) Sending again may
repeat the effect; not sending may lose it. Each acting handler (``sms``, ``email``,
``replay``, ``webhook``) takes one setting, shared from here:

- ``in_doubt = "resend"``: at least once. The call fails as a transient error and is sent
  again (in process, then by message retry); the handler run records that it was in doubt, so
  a repeated effect is on record. Right for on-call alerts.
- ``in_doubt = "skip"``: at most once. The call counts as done, is not sent again, and the
  handler run records that it was in doubt (``failures show`` lists it).

Clients of acting handlers send each request once (no botocore retries), so a lost answer is
seen here instead of being resent quietly. A handler marks the span of each call with
:func:`sending`, so that the worker, when it cuts the handler off, knows whether a call was
under way and applies the same policy (worker/dispatch.py; worker/scheduler.py for a digest's).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel

from lambda_destinations.errors import TransientError
from lambda_destinations.handlers.base import HandlerContext, Sending, delivery_of
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
    note = in_doubt_note(what, type(exc).__name__, skip=policy == SKIP)
    if context is not None:
        # Kept in the handler run when it completes (a failed run keeps its error instead).
        delivery_of(context).in_doubt = note
    log.warning(note)
    if policy != SKIP:
        raise TransientError(note) from exc


def in_doubt_note(what: str, cause: str, *, skip: bool) -> str:
    """The line a call in doubt leaves in the log and in its handler run's ``last_error``."""
    return f"in doubt ({cause}): {what} may have been sent; " + (
        "not sent again (in_doubt = skip)" if skip else "sent again (in_doubt = resend)"
    )


class Marks(Protocol):
    """Where the mark of a call under way is kept: a delivery's, or a scheduled job's."""

    sending: Sending | None


class JobCalls:
    """The mark of a scheduled job's call under way (a digest's): a job has no delivery."""

    __slots__ = ("sending",)

    def __init__(self) -> None:
        self.sending: Sending | None = None


# Set by the scheduler in the task of each job it runs: a call of the job that it cuts off
# (shutdown, handler_timeout) is settled by the call's in_doubt policy (worker/scheduler.py).
JOB_CALLS: contextvars.ContextVar[JobCalls | None] = contextvars.ContextVar(
    "job_calls", default=None
)


class CallUnderWay:
    """What :func:`sending` yields: call ``answered()`` once the service's answer has come
    (and ``started()`` when the part that may act begins, for a span opened before it)."""

    __slots__ = ("_delivery", "_mark")

    def __init__(self, delivery: Marks | None, mark: Sending) -> None:
        self._delivery = delivery
        self._mark = mark

    def started(self) -> None:
        """From here on, the call is in doubt if the handler is cut off (SMTP's DATA: what
        comes before it, the connection and the envelope, cannot send a mail)."""
        if self._delivery is not None:
            self._delivery.sending = self._mark

    def answered(self) -> None:
        """From here on, the call is not in doubt if the handler is cut off."""
        if self._delivery is not None:
            self._delivery.sending = None


@contextlib.contextmanager
def sending(
    context: HandlerContext | None,
    policy: InDoubt,
    what: str,
    *,
    step: str | None = None,
    started: bool = True,
) -> Iterator[CallUnderWay]:
    """Mark the span of the acting call ``what``, from before it is sent to its answer.

    The worker reads the mark when it cuts the handler off (shutdown, ``handler_timeout``): a
    call under way then is in doubt, settled by ``policy``. An error raised through the span
    is the handler's to judge (answered or not, ``settle_in_doubt`` decides), so it clears the
    mark; a cancellation leaves it for the worker. Sets one attribute: nothing on the store.
    ``context`` is None for a digest, which the scheduler runs, not a delivery: the mark is
    then the job's (:data:`JOB_CALLS`), read by the scheduler when it cuts the job off. ``started``
    False: the mark waits for ``started()`` (the span opens before the part that may act).
    """
    delivery: Marks | None = JOB_CALLS.get() if context is None else delivery_of(context)
    call = CallUnderWay(delivery, Sending(what=what, skip=policy == SKIP, step=step))
    if started:
        call.started()
    try:
        yield call
    except Exception:
        if delivery is not None:
            delivery.sending = None
        raise
    if delivery is not None:
        delivery.sending = None


def cut_off_first(name: str, handler: object, handler_timeout: float) -> str | None:
    """One line when ``handler``'s own call timeout (``call_timeout``) outlasts
    ``handler_timeout``: the worker cuts such a call off first (in doubt, for a call marked by
    :func:`sending`). None when it does not."""
    own = getattr(handler, "call_timeout", None)
    if not isinstance(own, int | float) or own <= handler_timeout:
        return None
    return (
        f"handlers.{name}.timeout ({own:g}s) is longer than handler_timeout "
        f"({handler_timeout:g}s): the worker cuts a slow call off before the handler gives up "
        "on it; set timeout below handler_timeout, or raise handler_timeout"
    )
