"""Period arithmetic for consumption: resolutions, chart periods, interval starts and
compared spans. Pure: no ORM, no database (tests/meters/test_periods.py).
"""

from __future__ import annotations

import datetime as dt
import enum
import zoneinfo
from dataclasses import dataclass

from portal.lib.periods import (
    add_months,
    days_in_month,
    local_midnight,
    month_start,
    next_month,
    previous_month,
)


class Resolution(enum.StrEnum):
    QUARTER_HOUR = "15min"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True)
class ConsumptionPoint:
    start: dt.datetime | dt.date
    consumption: int
    estimated: int
    suspect: int


@dataclass(frozen=True)
class UsagePeriod:
    """A chart's range [start, end) in UTC, its resolution, and the period just before it."""

    start: dt.datetime
    end: dt.datetime
    resolution: Resolution
    previous_start: dt.datetime
    previous_end: dt.datetime


def usage_period(*, span: str, last_day: dt.date, time_zone: str) -> UsagePeriod:
    """The local days of `span` (day, week, month, year) ending with `last_day`.

    A month is the calendar month of `last_day`, a year the twelve months up to it; shorter
    spans end on `last_day`. Resolutions: 15 minutes, hours, days, months.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    if span == "day":
        first, stop, resolution = last_day, last_day + dt.timedelta(days=1), Resolution.QUARTER_HOUR
        previous = first - dt.timedelta(days=1)
    elif span == "week":
        first, stop, resolution = (
            last_day - dt.timedelta(days=6),
            last_day + dt.timedelta(days=1),
            Resolution.HOUR,
        )
        previous = first - dt.timedelta(days=7)
    elif span == "month":
        first = month_start(last_day)
        stop = next_month(first)
        resolution = Resolution.DAY
        previous = previous_month(first)
    elif span == "year":
        first = add_months(last_day, -11)
        stop = add_months(first, 12)
        resolution = Resolution.MONTH
        previous = add_months(first, -12)
    else:
        raise ValueError(f"unknown span {span!r}")

    def utc(day: dt.date) -> dt.datetime:
        return local_midnight(day, zone)

    return UsagePeriod(utc(first), utc(stop), resolution, utc(previous), utc(first))


# A custom range gets the finest resolution that keeps it to a few hundred points.
CUSTOM_RESOLUTIONS = ((3, Resolution.QUARTER_HOUR), (31, Resolution.HOUR), (400, Resolution.DAY))
MAX_CUSTOM_DAYS = 3 * 366
MAX_CHART_POINTS = 400


def custom_period(*, first_day: dt.date, last_day: dt.date, time_zone: str) -> UsagePeriod:
    """The local days first_day..last_day (inclusive); the period before has the same length."""
    days = (last_day - first_day).days + 1
    if days < 1 or days > MAX_CUSTOM_DAYS:
        raise ValueError(f"a custom range has 1 to {MAX_CUSTOM_DAYS} days, not {days}")
    resolution = next((res for limit, res in CUSTOM_RESOLUTIONS if days <= limit), Resolution.MONTH)
    zone = zoneinfo.ZoneInfo(time_zone)

    def utc(day: dt.date) -> dt.datetime:
        return local_midnight(day, zone)

    stop = last_day + dt.timedelta(days=1)
    previous = first_day - dt.timedelta(days=days)
    return UsagePeriod(utc(first_day), utc(stop), resolution, utc(previous), utc(first_day))


_STEPS = {
    Resolution.QUARTER_HOUR: dt.timedelta(minutes=15),
    Resolution.HOUR: dt.timedelta(hours=1),
    Resolution.DAY: dt.timedelta(days=1),
}


def run_length(period: UsagePeriod, *, max_points: int = MAX_CHART_POINTS) -> int:
    """How many intervals each shown point sums so that the period fits `max_points`."""
    step = _STEPS.get(period.resolution)
    if step is None:
        return 1
    slots = -(-(period.end - period.start) // step)
    return max(1, -(-slots // max_points))


def downsample(
    points: list[ConsumptionPoint],
    *,
    origin: dt.datetime,
    resolution: Resolution,
    size: int,
    time_zone: str,
) -> list[ConsumptionPoint]:
    """Sum the points of each run of `size` intervals counted from `origin` (a period's start),
    each sum standing at its run's start. Consumption adds up, so sums (not averages or picks)
    keep every total true; runs are fixed in time, so a gap never pulls a later interval into
    an earlier run, and two periods downsampled alike line up point for point."""
    if size == 1 or resolution not in _STEPS:
        return points
    step = _STEPS[resolution]
    origin_day = origin.astimezone(zoneinfo.ZoneInfo(time_zone)).date()
    runs: dict[int, list[ConsumptionPoint]] = {}
    for point in points:
        if isinstance(point.start, dt.datetime):
            offset = (point.start - origin) // step
        else:
            offset = (point.start - origin_day).days
        runs.setdefault(offset // size, []).append(point)

    def run_start(run: int) -> dt.datetime | dt.date:
        if resolution == Resolution.DAY:
            return origin_day + dt.timedelta(days=run * size)
        return origin + run * size * step

    return [
        ConsumptionPoint(
            start=run_start(run),
            consumption=sum(p.consumption for p in members),
            estimated=sum(p.estimated for p in members),
            suspect=sum(p.suspect for p in members),
        )
        for run, members in sorted(runs.items())
    ]


def interval_starts(
    *, start: dt.datetime, end: dt.datetime, resolution: Resolution, time_zone: str
) -> list[dt.datetime | dt.date]:
    """Every interval of [start, end) at `resolution`: UTC instants for 15 minutes and hours,
    local dates for days and months (first days), as consumption_series labels them."""
    zone = zoneinfo.ZoneInfo(time_zone)
    step = _STEPS.get(resolution)
    if resolution in (Resolution.QUARTER_HOUR, Resolution.HOUR) and step is not None:
        starts: list[dt.datetime | dt.date] = []
        moment = start
        while moment < end:
            starts.append(moment)
            moment += step
        return starts
    first = start.astimezone(zone).date()
    last = (end - dt.timedelta(microseconds=1)).astimezone(zone).date()
    days: list[dt.datetime | dt.date] = []
    day = first if resolution == Resolution.DAY else month_start(first)
    while day <= last:
        days.append(day)
        day = day + dt.timedelta(days=1) if resolution == Resolution.DAY else next_month(day)
    return days


def on_grid(
    points: list[ConsumptionPoint], starts: list[dt.datetime | dt.date]
) -> list[ConsumptionPoint]:
    """The points of a series on a complete grid of interval starts: an interval without data
    gets an empty point (shown as nothing measured, never as an estimate), so that every
    interval of a chart, its table and its CSV is there to carry its cost."""
    wanted = set(starts)
    found = {point.start: point for point in points}
    grid = [found.get(start) or ConsumptionPoint(start, 0, 0, 0) for start in starts]
    extra = [point for point in points if point.start not in wanted]
    if not extra:
        return grid
    return sorted([*grid, *extra], key=_position)


def _position(point: ConsumptionPoint) -> float:
    start = point.start
    return start.timestamp() if isinstance(start, dt.datetime) else float(start.toordinal())


@dataclass(frozen=True)
class ComparedSpan:
    """The part of a month that is compared: local wall-clock time from the 1st at 00:00 to
    `until` on `last` (the whole of `last` when `until` is None)."""

    first: dt.date
    last: dt.date
    until: dt.time | None

    @property
    def whole_days_stop(self) -> dt.date:
        """The day after the span's last whole day."""
        return self.last if self.until is not None else self.last + dt.timedelta(days=1)


def comparison_spans(*, local_now: dt.datetime) -> tuple[ComparedSpan, ComparedSpan, ComparedSpan]:
    """This month so far, and the same elapsed time of last month and of the same month a year
    ago: from the 1st to the same day and time of day (a month too short for the day is taken
    whole: the 31st against all of February)."""
    today, time_of_day = local_now.date(), local_now.time().replace(tzinfo=None)
    first = month_start(today)
    this = ComparedSpan(first, today, time_of_day)

    def same_time(month_first: dt.date) -> ComparedSpan:
        length = days_in_month(month_first)
        if today.day > length:
            return ComparedSpan(month_first, month_first.replace(day=length), None)
        return ComparedSpan(month_first, month_first.replace(day=today.day), time_of_day)

    last_month = previous_month(first)
    return this, same_time(last_month), same_time(first.replace(year=first.year - 1))


class GroupBy(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def local_hours(day: dt.date, group_by: GroupBy, zone: zoneinfo.ZoneInfo) -> int:
    """The hours of the local period starting `day` (23 or 25 on a DST change)."""
    if group_by == GroupBy.DAY:
        stop = day + dt.timedelta(days=1)
    elif group_by == GroupBy.WEEK:
        stop = day + dt.timedelta(days=7)
    else:
        stop = next_month(day)
    return int((local_midnight(stop, zone) - local_midnight(day, zone)).total_seconds()) // 3600
