"""Exceptions that decide a message's outcome, and the classification of handler errors.

A handler ends a message one of three ways (see DESIGN.md, "Delivery semantics"):

- it returns: the handler is recorded as completed; when the whole chain has, the message is acked;
- it raises :class:`RetryMessage` or a transient error: the message becomes visible again later;
- it raises :class:`QuarantineMessage` or a permanent error: the message goes to the DLQ with
  the reason and is recorded in the store's quarantine.

The first decision wins: a chain stops at the first handler that does not return.
"""

from __future__ import annotations

import enum
import math
from typing import Self

__all__ = [
    "BackupError",
    "ConfigError",
    "LambdaDestinationsError",
    "NewerSchema",
    "Outcome",
    "PermanentError",
    "QuarantineMessage",
    "QueueNotFound",
    "RetryMessage",
    "StoppedBeforeStart",
    "StoreDataError",
    "StoreError",
    "StoreMisconfigured",
    "StoreUnavailable",
    "StoreUrlError",
    "StoreUrlProblem",
    "TransientError",
]


# What the CLI and the console say when botocore finds no region (its NoRegionError names no
# setting). Here, not in config, so that the CLI's error reporting imports no pydantic.
NO_REGION = "no AWS region: set AWS_REGION, LAMBDA_DESTINATIONS_REGION or --region"
# A database with no tables, met by a command that does not create the store: the wrong
# database, or one never migrated (exit 3, StoreMisconfigured).
NOT_MIGRATED = (
    "it has no tables yet: run `lambda-destinations migrate` (the worker also migrates at "
    "start), or point the store URL at the worker's database"
)


class Outcome(enum.StrEnum):
    """What happens to an SQS message once the worker is done with it."""

    ACK = "ack"
    RETRY = "retry"
    QUARANTINE = "quarantine"
    RELEASE = "release"  # shutdown: made visible again at once, not counted as a failure


class LambdaDestinationsError(Exception):
    """Base class of this package's own errors."""


class ConfigError(LambdaDestinationsError):
    """Configuration that cannot work; the message names the setting and the fix."""


class QueueNotFound(LambdaDestinationsError):
    """A queue named on the command line does not exist (or is of another region)."""


class StoreUrlProblem(LambdaDestinationsError):
    """Base of the errors whose line may name a store URL (made by :meth:`at`): ``shown`` (its
    password masked), where it came from once the code that read it says so (:meth:`named`),
    the problem and the fix.

    The store knows its URL, not where it came from: whoever read it (the CLI's settings, the
    worker, Results) names that, on this one type. Made from a plain message, it names no URL.
    """

    # The line, from the URL shown, " (where it came from)" or "", and the problem.
    line = "store {shown}{where}: {problem}"
    shown: str | None = None
    problem = ""
    origin: str | None = None

    @classmethod
    def at(cls, shown: str, problem: str, origin: str | None = None) -> Self:
        """The error about the store URL ``shown`` (masked), as :attr:`line` says it."""
        where = f" ({origin})" if origin else ""
        error = cls(cls.line.format(shown=shown, where=where, problem=problem))
        error.shown, error.problem, error.origin = shown, problem, origin
        return error

    def named(self, origin: str | None) -> Self:
        """The same error, naming where the URL came from (``--store``, an environment
        variable, a TOML file, a caller's argument); as it is when ``origin`` is None or it
        names no URL."""
        if origin is None or self.shown is None:
            return self
        return self.at(self.shown, self.problem, origin)


class StoreUrlError(StoreUrlProblem, ConfigError):
    """A store URL that cannot work (no known scheme, a bad parameter, a missing file)."""

    line = "store URL {shown!r}{where}: {problem}"


class NewerSchema(ConfigError):
    """The store was migrated by a newer release with a version that does not let this one
    write: writing to it could break the newer schema. Commands that migrate or write refuse;
    reads may go on."""


class TransientError(LambdaDestinationsError):
    """A failure that may pass: retried in process, then by message-level retry.

    ``retry_after``: seconds the other side asked to wait before the next try (an HTTP
    ``Retry-After``). No try comes sooner: an in-process try waits that long if the in-process
    budget (``handler_retry_max_delay``) allows it, else the message goes back to its queue
    for that long, at most ``retry_max``.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class PermanentError(LambdaDestinationsError):
    """A failure that retrying cannot fix: the message is quarantined with this reason."""


class RetryMessage(LambdaDestinationsError):
    """Raised by a handler to have the message delivered again later.

    ``delay`` overrides the backoff computed from the receive count (seconds, rounded); SQS
    caps it at 12 hours from the message's receipt. A delay that is not a finite number of
    seconds, zero or more, raises TypeError or ValueError here, in the handler: the worker
    then treats it as the handler's error (retried with the backoff).
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = _seconds(delay)


def _seconds(delay: object) -> float | None:
    """``delay`` checked as RetryMessage's: None, or a finite number of seconds >= 0."""
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(
            f"RetryMessage(delay={delay!r}): the delay is a number of seconds, not "
            f"{type(delay).__name__}"
        )
    if (isinstance(delay, float) and not math.isfinite(delay)) or delay < 0:
        raise ValueError(
            f"RetryMessage(delay={delay!r}): the delay is a finite number of seconds, 0 or more"
        )
    return delay


class QuarantineMessage(LambdaDestinationsError):
    """Raised by a handler to quarantine the message at once, with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreError(LambdaDestinationsError):
    """The store refused a statement for a reason that is neither the record's data nor the
    connection (most likely a bug); the message is the database's one line about it."""


class StoreDataError(PermanentError):
    """The store refused a value of this record, which no retry will change (a data error)."""


class StoreUnavailable(StoreUrlProblem, TransientError):
    """The store cannot be reached or used; messages are retried, the worker keeps running."""

    line = "store {shown}{where} is unavailable: {problem}"


class StoreGone(StoreUnavailable):
    """The store's file was deleted or replaced while open. Each message is retried, as for
    any unavailable store, but no wait brings the file back: a worker stops (exit 4), and
    its restart opens the file now at the path."""


class StoreMisconfigured(StoreUnavailable):
    """The store answered that the URL's database or user does not exist, the password is
    wrong or the user lacks grants. A running worker pauses and retries as for any outage
    (the database may be renamed back, the grant given); a command exits 3 (configuration),
    and so does a worker that meets it on its first connection."""

    line = "store {shown}{where}: {problem}"


class BackupError(LambdaDestinationsError):
    """A backup could not be written (a full disk, a folder this user may not write); the
    message names the file and the fix. Nothing is left under the target's name."""


class StoppedBeforeStart(LambdaDestinationsError):
    """Asked to stop (a signal) while still waiting for an endpoint or the store at start."""
