"""Charts drawn on the server: the geometry of inline SVG, which the templates write out.

No chart library and no script: a bar per hour, and a sparkline per group for its trend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

from lambda_destinations.times import utc_text


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    hour: str  # "2026-11-30 14:00" (UTC)
    count: int

    @property
    def label(self) -> str:
        """The hover title: "2026-11-30 14:00 UTC: 12 failures"."""
        return f"{self.hour} UTC: {self.count} {_failures(self.count)}"


@dataclasses.dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    first: str  # the first and last hours, for the axis
    last: str
    total: int


def hourly_bars(
    hourly: Sequence[tuple[dt.datetime, int]], *, width: int = 720, height: int = 160
) -> BarChart:
    """One bar per hour, scaled to the busiest hour; a 1-pixel mark for any hour with failures."""
    peak = max((n for _, n in hourly), default=0)
    slot = width / max(1, len(hourly))
    bars = []
    for index, (hour, count) in enumerate(hourly):
        tall = 0.0 if peak == 0 else max(1.0 if count else 0.0, count / peak * (height - 4))
        bars.append(
            Bar(
                x=round(index * slot + 1, 2),
                y=round(height - tall, 2),
                width=round(max(1.0, slot - 2), 2),
                height=round(tall, 2),
                hour=utc_text(hour, "%Y-%m-%d %H:00"),
                count=count,
            )
        )
    first = f"{hourly[0][0]:%m-%d %H}:00" if hourly else ""
    last = f"{hourly[-1][0]:%m-%d %H}:00" if hourly else ""
    return BarChart(width, height, bars, peak, first, last, sum(n for _, n in hourly))


def _failures(count: int) -> str:
    return "failure" if count == 1 else "failures"


def sparkline(counts: Sequence[int], *, width: int = 120, height: int = 24) -> str:
    """The points of a polyline ("x,y x,y ..."): one per hour, scaled to its own peak. Over
    more hours than the line has pixels, a point sums as many hours as make it one a pixel at
    most: a year's window drew 8,784 points a group, a page of tens of MB."""
    if not counts:
        return ""
    if (per := math.ceil(len(counts) / width)) > 1:
        counts = [sum(counts[i : i + per]) for i in range(0, len(counts), per)]
    peak = max(counts) or 1
    step = width / max(1, len(counts) - 1)
    return " ".join(
        f"{round(i * step, 1)},{round(height - 1 - n / peak * (height - 2), 1)}"
        for i, n in enumerate(counts)
    )


def trend(counts: Sequence[int]) -> str:
    """``rising``, ``falling`` or ``steady``: the later half of the window against the earlier."""
    half = len(counts) // 2
    earlier, later = sum(counts[:half]), sum(counts[half:])
    if later > earlier * 1.25 and later - earlier >= 2:
        return "rising"
    if earlier > later * 1.25 and earlier - later >= 2:
        return "falling"
    return "steady"
