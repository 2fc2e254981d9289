"""Failure statistics over a window: counts by function x error type, and failures per hour."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from lambda_destinations.store import FailureCount, FailureStatus, InvocationFilter, Store
from lambda_destinations.times import utc_text

HOUR = dt.timedelta(hours=1)
# The statistics have an entry an hour: a window of centuries would be millions of them.
STATS_WINDOW_MAX = dt.timedelta(days=366)
# What statistics cover without a start: the day before their end (now, or the until given).
STATS_WINDOW_DEFAULT = dt.timedelta(hours=24)
# The earliest time a window may start: the first moment of the year 1, in UTC.
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def window_start(since: dt.datetime | None, until: dt.datetime) -> dt.datetime:
    """``since``, or without one the :data:`STATS_WINDOW_DEFAULT` before ``until``: an until in
    the past moves the window, rather than meeting a start of 24 hours before now. An until in
    the first day of the year 1 has less before it: its window starts at the earliest time
    there is (a record's own time can be that early, from a wrong clock; `failures list`
    finds it with the same until)."""
    if since is not None:
        return since
    if until - EARLIEST < STATS_WINDOW_DEFAULT:
        return EARLIEST
    return until - STATS_WINDOW_DEFAULT


def check_window(since: dt.datetime, until: dt.datetime, *, names: str = "since and until") -> None:
    """ValueError (a line for the user, naming ``names``) when statistics would not cover
    ``since`` to ``until`` in one go: a window longer than :data:`STATS_WINDOW_MAX`."""
    if until - since > STATS_WINDOW_MAX:
        raise ValueError(
            f"failure statistics cover at most {STATS_WINDOW_MAX.days} days at a time: "
            f"narrow {names}"
        )


@dataclasses.dataclass(slots=True)
class FailureGroup:
    """Failures of one function with one error type."""

    function_name: str | None
    error_type: str | None
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "function_name": self.function_name,
            "error_type": self.error_type,
            "count": self.count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


@dataclasses.dataclass(slots=True)
class FailureStats:
    since: dt.datetime
    until: dt.datetime
    total: int
    groups: list[FailureGroup]  # most failures first
    hourly: list[tuple[dt.datetime, int]]  # every hour of the window, oldest first
    # How many of them are open, replayed, recovered, ignored (as the console's overview).
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "total": self.total,
            "statuses": dict(self.statuses),
            "groups": [g.as_dict() for g in self.groups],
            "hourly": [{"hour": h.isoformat(), "count": n} for h, n in self.hourly],
        }


async def earlier_failure_hint(
    store: Store,
    selection: InvocationFilter,
    since: dt.datetime,
    now: dt.datetime,
    *,
    longest: dt.timedelta | None = None,
) -> str | None:
    """When a window from ``since`` (to the selection's until) shows no failure: the line that
    says when the newest failure the same filters match before it is from, and the ``--since``
    that shows it; None when there is none. A backlog drained at a first start holds records
    days old, which `failures list --since 2h` and the 24 hours `failures stats` covers leave
    out.

    ``longest``: the longest window the command covers (stats': :data:`STATS_WINDOW_MAX`); a
    failure older than that from ``now`` is shown by the day it is in.

    One row of one index (the newest before ``since``): the store counts nothing.
    """
    earlier = dataclasses.replace(selection, since=None, until=since, limit=1)
    rows = await store.list_invocations(earlier)
    if not rows:
        return None
    moment = rows[0].timestamp or rows[0].first_seen_at
    days = math.ceil((now - moment) / dt.timedelta(days=1))
    shows = f"{days}d" if 0 < days <= STATS_WINDOW_MAX.days else utc_text(moment, "%Y-%m-%d")
    if longest is not None and not 0 < days <= longest.days:
        day = moment.astimezone(dt.UTC).date()
        end = f"{day}T23:59:59.999999Z" if day == dt.date.max else day + dt.timedelta(days=1)
        shows = f"{day} --until {end}"
    # A window that ends before now: failures after its end may be there.
    window = f"since {utc_text(since, '%Y-%m-%d %H:%M')} UTC"
    if selection.until is not None and selection.until < now:
        window = (
            f"from {utc_text(since, '%Y-%m-%d %H:%M')} UTC to "
            f"{utc_text(selection.until, '%Y-%m-%d %H:%M')} UTC"
        )
    return (
        f"no failures {window}; the newest before is from "
        f"{utc_text(moment, '%Y-%m-%d %H:%M')} UTC (--since {shows} shows it)"
    )


async def status_counts(store: Store, selection: InvocationFilter) -> dict[str, int]:
    """How many failures ``selection`` selects in each of its statuses (every status when it
    names none), one count a status."""
    return {
        status.value: await store.count_invocations(
            dataclasses.replace(selection, statuses=[status])
        )
        for status in selection.statuses or FailureStatus
    }


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def failure_stats(
    counts: Iterable[FailureCount], since: dt.datetime, until: dt.datetime
) -> FailureStats:
    """Groups and an hourly series from the store's per-hour counts of ``since <= t < until``."""
    groups: dict[tuple[str | None, str | None], FailureGroup] = {}
    per_hour: dict[dt.datetime, int] = {}
    total = 0
    for found in counts:
        total += found.count
        hour = hour_of(found.first)
        per_hour[hour] = per_hour.get(hour, 0) + found.count
        key = (found.function_name, found.error_type)
        group = groups.get(key)
        if group is None:
            groups[key] = FailureGroup(
                found.function_name, found.error_type, found.count, found.first, found.last
            )
        else:
            group.count += found.count
            group.first_seen = min(group.first_seen, found.first)
            group.last_seen = max(group.last_seen, found.last)
    hourly = []
    hour = hour_of(since)
    while hour < until:
        hourly.append((hour, per_hour.get(hour, 0)))
        if until - hour <= HOUR:  # the last hour: the next may be past the year 9999
            break
        hour += HOUR
    ordered = sorted(
        groups.values(),
        key=lambda g: (-g.count, g.function_name or "", g.error_type or ""),
    )
    return FailureStats(since, until, total, ordered, hourly)
