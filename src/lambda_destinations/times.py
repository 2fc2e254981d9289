"""Times as operators write them: ``2h``, ``30m``, ``7d`` ago, or an ISO 8601 time."""

from __future__ import annotations

import datetime as dt
import email.utils
import re

from lambda_destinations.redact import echoed

_DURATION = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# An ISO 8601 date as fromisoformat reads one (calendar or week, extended or basic) and what
# follows it. fromisoformat takes any character after the date for the T before the time, a
# digit too: 30 ones read as 1111-11-11 11:11:11.111111, 20240501120000+0000 as 20:00.
_DATE_THEN = re.compile(r"\d{4}(?:-\d{2}-\d{2}|-W\d{2}(?:-\d)?|\d{4}|W\d{2}\d?)(?P<then>.?)")
# The longest wait for an invocation's result (`invoke --wait`, `result --wait`, Results.wait): a
# terminal or a script waits longer than the HTTP API's 60 s, but a wait beyond a day is a
# mistake, not a plan.
MAX_WAIT = 24 * 3600


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC (the only kind of time the store holds)."""
    return dt.datetime.now(dt.UTC)


def http_date(value: str | None) -> dt.datetime | None:
    """An HTTP date (RFC 9110, 5.6.7: ``Date``, ``Retry-After``), timezone-aware; None for none,
    or a value that is no date."""
    if value is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; an obsolete form may not say so
        when = when.replace(tzinfo=dt.UTC)
    return when


def utc_text(moment: dt.datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``moment`` in UTC as ``fmt`` (strftime's), its year always of four digits: the C
    library's ``%Y`` writes the year 1 as ``1``, which a record's own time may be."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime(fmt.replace("%Y", f"{moment.year:04d}"))


def window_backwards(
    since: dt.datetime, until: dt.datetime, since_name: str = "--since", until_name: str = "--until"
) -> str:
    """The line for a window that ends before it starts (``--since 1h --until 2h``, say): the
    two times as read, and the way round. The console names its fields ``since`` and ``until``."""
    return (
        f"{since_name} must be before {until_name}: they read {utc_text(since)} and "
        f"{utc_text(until)} UTC; a duration counts back from now, so the longer one goes with "
        f"{since_name} ({since_name} 3h {until_name} 1h)"
    )


def duration_unit(seconds: float) -> tuple[float, str]:
    """``seconds`` in the unit that reads best, as (amount, unit): seconds below two minutes,
    minutes below two hours, hours below two days, then days (units ``s``, ``min``, ``h``, ``d``).
    """
    if seconds < 120:
        return seconds, "s"
    if seconds < 7200:
        return seconds / 60, "min"
    if seconds < 172800:
        return seconds / 3600, "h"
    return seconds / 86400, "d"


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2h``, ``30m``, ``7d``, ``1w``, ``90s`` ago, or an ISO 8601 date/time (UTC if no zone).

    Raises ValueError with a message fit for the user.
    """
    value = text.strip()
    try:
        return _parse(value, text, now)
    except OverflowError:  # a duration or a zone that reaches past year 1 or 9999
        raise too_far(text) from None


def too_far(text: str) -> ValueError:
    """The error for a time (as the user wrote it) that a computation took past year 1 or 9999."""
    return ValueError(
        f"{echoed(text)!r} is too far from now: give a time between the years 1 and 9999"
    )


def _parse(value: str, text: str, now: dt.datetime | None) -> dt.datetime:
    match = _DURATION.fullmatch(value)
    if match:
        seconds = float(match["amount"]) * _UNITS[match["unit"].lower()]
        return (now or utcnow()) - dt.timedelta(seconds=seconds)
    try:
        moment = _iso_time(value)
    except ValueError:
        raise ValueError(
            f"{echoed(text)!r} is neither a duration (30m, 2h, 7d, 1w) nor an ISO 8601 time "
            "(2024-05-01, 2024-05-01T12:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _iso_time(value: str) -> dt.datetime:
    """``value`` as ``fromisoformat`` reads it, a date followed by other than ``T`` or a space
    refused (ValueError): a digit there is no time's start."""
    date = _DATE_THEN.match(value)
    if date is not None and date["then"] not in ("", "T", "t", " "):
        raise ValueError(f"{value!r}: no T or space between the date and the time")
    return dt.datetime.fromisoformat(value.replace("z", "Z"))
