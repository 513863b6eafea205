"""Local days and months: the one home of the calendar arithmetic every page, bill and charge uses.

Accounts live in their own time zone, the database in UTC. A local day is not always 24 hours
(23 or 25 on the days clocks change) and its first moment is not always 00:00 (a zone whose
clocks jump at midnight starts that day at 01:00), so nothing here adds hours to a midnight: it
asks the zone for each boundary.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

Zone = zoneinfo.ZoneInfo | str


def zone_of(zone: Zone) -> zoneinfo.ZoneInfo:
    """The zone itself, for a name or a zone."""
    return zone if isinstance(zone, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(zone)


def local_midnight(day: dt.date, zone: Zone) -> dt.datetime:
    """The first moment of the local day, in UTC.

    Where the clocks jump forward at midnight, 00:00 does not exist; zoneinfo reads it with the
    offset before the jump, which is exactly the instant the jump happens: the day's first moment.
    """
    return dt.datetime.combine(day, dt.time(), zone_of(zone)).astimezone(dt.UTC)


def local_day_bounds(day: dt.date, zone: Zone) -> tuple[dt.datetime, dt.datetime]:
    """The local day as a half-open UTC range [start, end)."""
    return local_midnight(day, zone), local_midnight(day + dt.timedelta(days=1), zone)


def local_days_bounds(first: dt.date, last: dt.date, zone: Zone) -> tuple[dt.datetime, dt.datetime]:
    """The local days first..last (inclusive) as a half-open UTC range [start, end)."""
    return local_midnight(first, zone), local_midnight(last + dt.timedelta(days=1), zone)


def hours_in_local_day(day: dt.date, zone: Zone) -> int:
    """23, 24 or 25: the hours the local day really has."""
    start, end = local_day_bounds(day, zone)
    return int((end - start).total_seconds()) // 3600


def local_date(moment: dt.datetime, zone: Zone) -> dt.date:
    """The local calendar day an aware moment falls on."""
    if moment.tzinfo is None:
        raise ValueError("a moment must be timezone-aware")
    return moment.astimezone(zone_of(zone)).date()


def month_start(day: dt.date) -> dt.date:
    """The first day of the day's month."""
    return day.replace(day=1)


def next_month(day: dt.date) -> dt.date:
    """The first day of the month after the day's month."""
    return dt.date(day.year + 1, 1, 1) if day.month == 12 else dt.date(day.year, day.month + 1, 1)


def previous_month(day: dt.date) -> dt.date:
    """The first day of the month before the day's month."""
    return dt.date(day.year - 1, 12, 1) if day.month == 1 else dt.date(day.year, day.month - 1, 1)


def add_months(day: dt.date, months: int) -> dt.date:
    """The first day of the month `months` after (or before, when negative) the day's month."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def days_in_month(day: dt.date) -> int:
    """28 to 31: the days of the day's month."""
    return (next_month(day) - month_start(day)).days


def local_month_bounds(day: dt.date, zone: Zone) -> tuple[dt.datetime, dt.datetime]:
    """The local month the day falls in, as a half-open UTC range [start, end)."""
    return local_midnight(month_start(day), zone), local_midnight(next_month(day), zone)
