"""Consumption of an account: chart series, the week profile, the month comparison and base units.

Consumption for an account comes from the rollups, which carry the account of the supply
period: a new occupant never sees the previous occupant's data, whatever the range asked for.
Only the 15-minute resolution reads raw readings, and only within the account's supply periods.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.db import connection

from meters.models import (
    Direction,
    Quality,
)
from meters.periods import (
    ComparedSpan,
    ConsumptionPoint,
    Resolution,
    comparison_spans,
)
from meters.units import FIXED_BASE_UNITS, kind_base_unit


def consumption_series(
    *,
    account_id: int,
    service_point_id: int,
    start: dt.datetime,
    end: dt.datetime,
    resolution: Resolution,
    direction: str = Direction.IMPORT,
    time_zone: str = "UTC",
) -> list[ConsumptionPoint]:
    """Return the account's consumption at one service point over [start, end).

    Hours and longer come from the rollups (one indexed range read); days and months are
    local to `time_zone`; 15 minutes reads the readings, clipped to the supply periods.
    """
    with connection.cursor() as cursor:
        if resolution == Resolution.QUARTER_HOUR:
            # A PL/pgSQL function (migration 0015), so that its plan is kept for the connection.
            cursor.execute(
                "SELECT * FROM meters_quarter_hours(%(account)s, %(sp)s, %(start)s, %(end)s, "
                "%(dir)s, %(suspect)s::smallint, %(est)s::smallint)",
                _params(account_id, service_point_id, start, end, direction),
            )
        elif resolution == Resolution.HOUR:
            cursor.execute(
                """
                SELECT hour, sum(consumption), sum(estimated), sum(suspect_count)
                FROM meters_hourly(%(start)s, %(end)s)
                WHERE account_id = %(account)s AND service_point_id = %(sp)s
                  AND direction = %(dir)s
                GROUP BY hour ORDER BY hour
                """,
                _params(account_id, service_point_id, start, end, direction),
            )
        else:
            bucket = "day" if resolution == Resolution.DAY else "month"
            cursor.execute(
                f"""
                SELECT date_trunc('{bucket}', day)::date, sum(consumption), sum(estimated),
                       sum(suspect_count)
                FROM meters_rollupdaily
                WHERE account_id = %(account)s AND service_point_id = %(sp)s
                  AND direction = %(dir)s
                  AND day >= (%(start)s AT TIME ZONE %(tz)s)::date
                  AND day < (%(end)s AT TIME ZONE %(tz)s)::date
                GROUP BY 1 ORDER BY 1
                """,  # noqa: S608 - bucket is one of two literals
                {**_params(account_id, service_point_id, start, end, direction), "tz": time_zone},
            )
        return [
            ConsumptionPoint(
                start=row[0],
                consumption=int(row[1] or 0),
                estimated=int(row[2] or 0),
                suspect=int(row[3] or 0),
            )
            for row in cursor.fetchall()
        ]


def _params(
    account_id: int, service_point_id: int, start: dt.datetime, end: dt.datetime, direction: str
) -> dict[str, Any]:
    return {
        "account": account_id,
        "sp": service_point_id,
        "start": start,
        "end": end,
        "dir": direction,
        "suspect": int(Quality.SUSPECT),
        "est": int(Quality.ESTIMATED),
    }


@dataclass(frozen=True)
class WeekProfile:
    """Average consumption per local weekday (0 = Monday) and hour, in base units per hour;
    None where no hour of that kind falls in the range."""

    averages: list[list[int | None]]


def week_profile(
    *,
    account_id: int,
    service_point_id: int,
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
    direction: str = Direction.IMPORT,
) -> WeekProfile:
    """The hour x weekday heatmap's values, from the hourly rollups in one grouped query."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT extract(isodow FROM hour AT TIME ZONE %(tz)s)::int - 1,
                   extract(hour FROM hour AT TIME ZONE %(tz)s)::int,
                   round(avg(consumption))::bigint
            FROM (
                SELECT hour, sum(consumption) AS consumption
                FROM meters_hourly(%(start)s, %(end)s)
                WHERE account_id = %(account)s AND service_point_id = %(sp)s
                  AND direction = %(dir)s
                GROUP BY hour
            ) hours
            GROUP BY 1, 2
            """,
            {**_params(account_id, service_point_id, start, end, direction), "tz": time_zone},
        )
        averages: list[list[int | None]] = [[None] * 24 for _ in range(7)]
        for weekday, hour, average in cursor.fetchall():
            averages[weekday][hour] = int(average)
    return WeekProfile(averages)


@dataclass(frozen=True)
class MonthComparison:
    """An account's energy or volume of one utility in one direction (imported, or exported
    to the grid: never netted): this month so far, and the same elapsed time of last month and
    of the same month a year ago (base units)."""

    kind: str
    direction: str
    this_month: int
    last_month: int
    year_ago: int


@dataclass(frozen=True)
class MonthComparisons:
    """The three spans compared and, per utility kind and direction, the sums over them."""

    this_month: ComparedSpan
    last_month: ComparedSpan
    year_ago: ComparedSpan
    rows: list[MonthComparison]


def month_comparison(*, account_id: int, as_of: dt.datetime, time_zone: str) -> MonthComparisons:
    """Compare a month in progress like for like (see comparison_spans), per utility kind and
    direction, imports before exports, in one query.

    Whole days come from the daily rollups; the last, partial day from the hourly rollups: an
    hour counts when it began before the span's end, in the service point's time zone (the
    zone of its daily rollups), so this month's figure holds everything recorded so far.
    """
    spans = comparison_spans(local_now=as_of.astimezone(zoneinfo.ZoneInfo(time_zone)))
    # (position, span) of the spans that end within a day: their last day comes by the hour.
    partial = [(n, span) for n, span in enumerate(spans, 1) if span.until is not None]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT kind, direction,
                   coalesce(sum(value) FILTER (WHERE n = 1), 0),
                   coalesce(sum(value) FILTER (WHERE n = 2), 0),
                   coalesce(sum(value) FILTER (WHERE n = 3), 0)
            FROM (
                SELECT p.n, sp.kind, d.direction, d.consumption AS value
                FROM unnest(%(firsts)s::date[], %(stops)s::date[]) WITH ORDINALITY p(first, stop, n)
                JOIN meters_rollupdaily d ON d.account_id = %(account)s
                     AND d.direction = ANY(%(dirs)s) AND d.day >= p.first AND d.day < p.stop
                JOIN meters_servicepoint sp ON sp.id = d.service_point_id
                UNION ALL
                SELECT p.n, sp.kind, h.direction, h.consumption
                FROM unnest(%(days)s::date[], %(untils)s::time[], %(ns)s::int[]) p(day, until, n)
                -- Every zone is within a day of UTC: a range the index can use.
                CROSS JOIN LATERAL meters_hourly((p.day - 1)::timestamp AT TIME ZONE 'UTC',
                                                 (p.day + 2)::timestamp AT TIME ZONE 'UTC') h
                JOIN meters_servicepoint sp ON sp.id = h.service_point_id
                WHERE h.account_id = %(account)s AND h.direction = ANY(%(dirs)s)
                  AND h.hour >= p.day::timestamp AT TIME ZONE sp.time_zone
                  AND h.hour < (p.day + p.until) AT TIME ZONE sp.time_zone
            ) found
            GROUP BY kind, direction
            ORDER BY kind, direction = %(export)s, direction
            """,
            {
                "account": account_id,
                "dirs": list(Direction.values),
                "export": str(Direction.EXPORT),
                "firsts": [span.first for span in spans],
                "stops": [span.whole_days_stop for span in spans],
                "days": [span.last for _n, span in partial],
                "untils": [span.until for _n, span in partial],
                "ns": [n for n, _span in partial],
            },
        )
        rows = [
            MonthComparison(kind, direction, int(a), int(b), int(c))
            for kind, direction, a, b, c in cursor.fetchall()
        ]
    return MonthComparisons(*spans, rows=rows)


# Gas meters report energy or volume, so gas asks its registers (meters.units says why).
KIND_UNITS = FIXED_BASE_UNITS


def service_point_base_unit(
    *, service_point_id: int, kind: str, direction: str = Direction.IMPORT
) -> str:
    """The base unit (Wh or L) the service point's readings are in: fixed by kind, except gas,
    which meters report either as energy or as volume (its registers say which)."""
    if kind in KIND_UNITS:
        return KIND_UNITS[kind]
    found = register_units({(service_point_id, direction)})
    return found.get((service_point_id, direction), kind_base_unit(kind))


def register_units(series: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """The base unit of each (service point, direction): its latest meter's register's."""
    if not series:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (mi.service_point_id, reg.direction)
                   mi.service_point_id, reg.direction, reg.unit
            FROM meters_meterinstallation mi
            JOIN meters_register reg ON reg.meter_id = mi.meter_id
            WHERE mi.service_point_id = ANY(%s)
            ORDER BY mi.service_point_id, reg.direction, mi.installed_at DESC,
                     reg.is_main DESC
            """,
            [sorted({sp for sp, _direction in series})],
        )
        return {(sp, direction): unit for sp, direction, unit in cursor.fetchall()}
