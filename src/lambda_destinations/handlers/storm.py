"""Alert storms: the first alerts of a window go out at once, the rest become one digest.

Notifiers (``sms``, ``email``, ``webhook``) group records per (notifier, function, error type),
a function being its ARN without qualifier (one of the same name in another account or region
is another). The first record of a quiet group opens a window (``window``, default 5
minutes); the first ``send_first`` records of the window (default 3) are sent at once, the
others are counted, and when the window ends one digest goes out: "37 more failures of
orders-api / TimeoutError in the last 5 minutes".

The windows live in the store (:meth:`~lambda_destinations.store.Store.admit_alert`), so every
replica counts into the same window, a redelivered record keeps the place it had (it is sent
again only if it was one of the first and its send did not complete), and the digest is a
scheduled job, run once by the worker's scheduler, so a restart neither loses nor repeats it.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from lambda_destinations.errors import ConfigError, PermanentError
from lambda_destinations.handlers.base import HandlerContext, delivery_of
from lambda_destinations.handlers.in_doubt import InDoubt, InDoubtOption, settle_in_doubt
from lambda_destinations.handlers.templates import Duration, describe_duration, iso
from lambda_destinations.retrying import retry_transient
from lambda_destinations.store import JobState, scope_of, utcnow
from lambda_destinations.times import utc_text

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from lambda_destinations.handlers.jobs import Handlers, JobContext
    from lambda_destinations.schemas import DecodedMessage
    from lambda_destinations.store import ScheduledJob, Store

DIGEST_KIND = "digest"
DEFAULT_WINDOW = 300.0
DEFAULT_SEND_FIRST = 3

# The names a digest template may use.
DIGEST_FIELDS: dict[str, str] = {
    "count": "how many alerts were held back (not sent at once)",
    "total": "how many alerts the window saw in all",
    "sent": "how many went out at once",
    "what": "failures (or successes, for a group of successes)",
    "function_name": "the function's name",
    "error_type": "the error type (or the condition when there is none)",
    "window": "the window's length, in words: '5 minutes'",
    "period": "'in the last 5 minutes', or when sent late (after a restart) "
    "'in the 5 minutes from 2026-12-01 10:00:42 UTC'",
    "window_start": "when the window opened (ISO 8601, UTC)",
    "window_end": "when it ended (ISO 8601, UTC)",
    "first_at": "when the first alert arrived (ISO 8601, UTC)",
    "last_at": "when the last alert arrived (ISO 8601, UTC)",
    "handler": "the notifier's name",
}
DEFAULT_DIGEST = "{count} more {what} of {function_name} / {error_type} {period}"
# A digest sent later than this after its window ended says when the window was.
LATE = 60.0


class StormOptions(BaseModel):
    """The alert-storm settings every notifier takes (``window = 0`` turns digests off)."""

    model_config = ConfigDict(extra="forbid")

    window: Duration = Field(default=DEFAULT_WINDOW, ge=0, le=86400)
    send_first: int = Field(default=DEFAULT_SEND_FIRST, ge=0, le=1000)

    @property
    def storm(self) -> StormPolicy:
        """These settings as the policy a notifier applies."""
        return StormPolicy(self.window, self.send_first)


class NotifierOptions(StormOptions, InDoubtOption):
    """The settings every notifier takes: its alert-storm window and its ``in_doubt`` policy."""


@dataclasses.dataclass(frozen=True, slots=True)
class StormPolicy:
    """A notifier's window (seconds; 0: no digests) and how many alerts it sends at once."""

    window: float
    send_first: int

    @property
    def enabled(self) -> bool:
        return self.window > 0


@dataclasses.dataclass(frozen=True, slots=True)
class Digest:
    """What one window held back, for one notifier."""

    handler: str
    function_name: str
    error_type: str
    window: float
    window_start: dt.datetime
    window_end: dt.datetime
    total: int
    send_first: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None

    @property
    def count(self) -> int:
        """Alerts held back: the digest's number."""
        return max(0, self.total - self.send_first)

    def _what(self) -> str:
        one = self.count == 1
        if self.error_type == "Success":
            return "success" if one else "successes"
        return "failure" if one else "failures"

    def _period(self, now: dt.datetime) -> str:
        length = describe_duration(self.window)
        if (now - self.window_end).total_seconds() <= LATE:
            return f"in the last {length}"
        # A window opens when its first record comes: the second, unless it is on the minute.
        on_minute = self.window_start.second == 0
        start = utc_text(self.window_start, "%Y-%m-%d %H:%M" if on_minute else "%Y-%m-%d %H:%M:%S")
        return f"in the {length} from {start} UTC"

    def fields(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The values of :data:`DIGEST_FIELDS`, for a digest sent at ``now``."""
        return {
            "count": self.count,
            "total": self.total,
            "sent": min(self.total, self.send_first),
            "what": self._what(),
            "function_name": self.function_name,
            "error_type": self.error_type,
            "window": describe_duration(self.window),
            "period": self._period(now or utcnow()),
            "window_start": iso(self.window_start),
            "window_end": iso(self.window_end),
            "first_at": iso(self.first_at),
            "last_at": iso(self.last_at),
            "handler": self.handler,
        }


class Notifier(abc.ABC):
    """A handler that alerts (``sms``, ``email``, ``webhook``).

    The first records of a storm go out at once (:meth:`notify`), the rest in one digest
    (:meth:`send_digest`); a call in doubt is settled by the notifier's ``in_doubt`` policy.
    """

    _reads_record_only = True  # see handlers.base.reads_record_only

    name: str
    storm: StormPolicy
    in_doubt: InDoubt

    async def __call__(self, message: DecodedMessage, context: HandlerContext) -> None:
        if await admit(self.storm, self.name, message, context):
            await self.notify(message, context)

    @abc.abstractmethod
    async def notify(self, message: DecodedMessage, context: HandlerContext) -> None:
        """Send the alert of one record."""

    @abc.abstractmethod
    async def send_digest(self, digest: Digest, context: JobContext) -> None:
        """Send the digest of the alerts a window held back."""

    def settle(
        self,
        what: str,
        exc: BaseException,
        *,
        context: HandlerContext | None,
        log: FilteringBoundLogger,
    ) -> None:
        """Apply this notifier's ``in_doubt`` policy to the call ``what`` (see in_doubt.py)."""
        settle_in_doubt(self.in_doubt, what, exc, context=context, log=log)


async def retry_digest(send: Callable[[], Awaitable[None]], context: JobContext) -> None:
    """Run a digest's ``send``, retried in process after transient errors, as a handler's is."""
    settings = context.settings
    await retry_transient(
        send,
        attempts=settings.handler_attempts,
        max_delay=settings.handler_retry_max_delay,
        sleep=context.sleep,
    )


def alert_group(message: DecodedMessage) -> tuple[str, str, str]:
    """(function, function name, error type) of a record: the function is its unqualified
    ARN, so that a function of the same name in another account or region (staging's, a
    team's) has a window of its own; the condition stands in for a missing type."""
    label = message.error_type or message.condition or "unknown"
    function = message.function
    if function is None:
        name = f"request {message.request_id}"
        return name, name, label
    return function.unqualified, function.function_name, label


async def admit(
    policy: StormPolicy, handler: str, message: DecodedMessage, context: HandlerContext
) -> bool:
    """Whether ``handler`` sends ``message`` now (True) or leaves it to the window's digest."""
    if not policy.enabled:
        return True
    function, name, label = alert_group(message)
    admission = await delivery_of(context).store.admit_alert(
        scope_of(handler, function, label),
        message.key,
        window=policy.window,
        send_first=policy.send_first,
        digest_kind=DIGEST_KIND,
        digest_payload={
            "handler": handler,
            "function_name": name,
            "error_type": label,
            "window": policy.window,
        },
    )
    if not admission.send_now:
        context.log.info(
            "alert held for the digest",
            handler=handler,
            ordinal=admission.ordinal,
            window_end=iso(admission.window_end),
        )
    return admission.send_now


async def unsendable_digests(store: Store, registry: Handlers) -> list[str]:
    """The notifiers that digests still due name and this configuration has no notifier by
    (renamed or removed in a deploy while their windows held alerts back): those digests
    would fail when due, their held alerts unsent."""
    names = {
        str(job.payload.get("handler"))
        for job in await store.list_jobs(kind=DIGEST_KIND, state=JobState.PENDING, limit=1000)
    }
    return sorted(name for name in names if not _notifier(registry, name))


def _notifier(registry: Handlers, name: str) -> bool:
    try:
        return isinstance(registry.get(name), Notifier)
    except ConfigError:
        return False


async def run_digest_job(job: ScheduledJob, context: JobContext) -> None:
    """The scheduler's runner for ``digest`` jobs: count the window, have the notifier send."""
    payload = job.payload
    try:
        handler = context.registry.get(str(payload["handler"]))
    except ConfigError as exc:
        raise PermanentError(
            f"the digest's notifier is gone from the configuration: {exc}"
        ) from exc
    if not isinstance(handler, Notifier):
        raise PermanentError(f"handler {payload['handler']!r} cannot send digests")
    start = dt.datetime.fromisoformat(str(payload["window_start"]))
    end = dt.datetime.fromisoformat(str(payload["window_end"]))
    window = await context.store.alert_window(str(payload["scope"]), start)
    digest = Digest(
        handler=handler.name,
        function_name=str(payload["function_name"]),
        error_type=str(payload["error_type"]),
        # The window's own length: the payload's is the setting of the admission that
        # scheduled the digest, which a deploy may have changed while the window was open.
        window=round((end - start).total_seconds(), 6),
        window_start=start,
        window_end=end,
        total=window.admitted,
        send_first=int(payload["send_first"]),
        first_at=window.first_at,
        last_at=window.last_at,
    )
    if digest.count == 0:
        return  # cannot happen: the digest is scheduled by the first record held back
    context.log.info(
        "sending the digest",
        handler=handler.name,
        count=digest.count,
        function=digest.function_name,
        error_type=digest.error_type,
    )
    await handler.send_digest(digest, context)


async def send_once(
    store: Store,
    key: str,
    step: str,
    owner: str,
    send: Callable[[], Awaitable[None]],
    *,
    completed: frozenset[str],
) -> bool:
    """Run ``send`` unless ``step`` is recorded as completed for ``key``; then record it.

    For effects of one handler run that must not repeat when the run is retried after a part
    of it succeeded: one SMS of several recipients, a digest. False when it was done already.
    """
    if step in completed:
        return False
    await send()
    await store.complete_handler(key, step, owner)
    return True
