"""Failure statistics over a window: counts by function x error type, and failures per hour."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import Any

from lambda_destinations.store.base import InvocationRow

HOUR = dt.timedelta(hours=1)


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "total": self.total,
            "groups": [g.as_dict() for g in self.groups],
            "hourly": [{"hour": h.isoformat(), "count": n} for h, n in self.hourly],
        }


def occurred_at(row: InvocationRow) -> dt.datetime:
    """When the failure happened: the record's timestamp, else when it was first seen."""
    return row.timestamp or row.first_seen_at


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def failure_stats(
    rows: Iterable[InvocationRow], since: dt.datetime, until: dt.datetime
) -> FailureStats:
    """Aggregate failures that occurred in ``since <= t < until``."""
    groups: dict[tuple[str | None, str | None], FailureGroup] = {}
    per_hour: dict[dt.datetime, int] = {}
    total = 0
    for row in rows:
        moment = occurred_at(row)
        if not since <= moment < until:
            continue
        total += 1
        hour = hour_of(moment)
        per_hour[hour] = per_hour.get(hour, 0) + 1
        key = (row.function_name, row.error_type)
        group = groups.get(key)
        if group is None:
            groups[key] = FailureGroup(row.function_name, row.error_type, 1, moment, moment)
        else:
            group.count += 1
            group.first_seen = min(group.first_seen, moment)
            group.last_seen = max(group.last_seen, moment)
    hourly = []
    hour = hour_of(since)
    while hour < until:
        hourly.append((hour, per_hour.get(hour, 0)))
        hour += HOUR
    ordered = sorted(
        groups.values(),
        key=lambda g: (-g.count, g.function_name or "", g.error_type or ""),
    )
    return FailureStats(since, until, total, ordered, hourly)
