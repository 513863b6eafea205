"""Consumption over the API: an account's consumption per period, service point and direction."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.db import connection

from meters.models import (
    Direction,
)
from meters.periods import (
    GroupBy,
    local_hours,
)
from meters.selectors.consumption import KIND_UNITS, register_units
from meters.units import kind_base_unit
from portal.lib.periods import local_midnight


@dataclass(frozen=True)
class ConsumptionBucket:
    """An account's consumption at one service point and direction over one period.

    `hours` counts the hours that have data; the bucket is complete when every hour of the
    period has data and no suspect reading was left out of the sum.
    """

    period_start: dt.datetime
    service_point_id: uuid.UUID
    service_point_code: str
    utility: str
    direction: str
    unit: str
    consumption: int
    estimated: int
    suspect: int
    hours: int
    expected_hours: int

    @property
    def incomplete(self) -> bool:
        return self.suspect > 0 or self.hours < self.expected_hours


@dataclass(frozen=True)
class BucketKey:
    """Where a page of buckets ends: buckets are ordered by period, service point code and
    direction, and the next page starts after this key."""

    period_start: dt.datetime
    service_point_code: str
    direction: str


def consumption_buckets(
    *,
    account_id: int,
    start: dt.datetime,
    end: dt.datetime,
    group_by: GroupBy,
    time_zone: str,
    utility: str | None = None,
    direction: str | None = None,
    after: BucketKey | None = None,
    limit: int = 500,
) -> list[ConsumptionBucket]:
    """Return the account's consumption over [start, end) per period, service point and
    direction, at most `limit` buckets after `after`, from the rollups only.

    Hours come from the hourly rollups (UTC hours: [start, end) is taken as given); days,
    weeks (from Monday) and months from the daily rollups, grouped in SQL over the local days
    of `time_zone` that [start, end) touches. The rollups carry the account of the supply
    period, so another occupant's data is never counted. Periods with no data at all are
    left out; the others say how many of their hours have data.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    params: dict[str, Any] = {
        "account": account_id,
        "limit": limit,
        "kind": utility,
        "dir": direction,
        "dirs": list(Direction.values),
    }
    filters = ""
    if utility is not None:
        filters += " AND s.kind = %(kind)s"
    # Naming both directions lets PostgreSQL read the (account, direction, period) index as
    # two ranges instead of every row of the account.
    filters += " AND r.direction = %(dir)s" if direction else " AND r.direction = ANY(%(dirs)s)"
    if group_by == GroupBy.HOUR:
        params.update(start=start, end=end)
        if after is not None:
            params.update(c_period=after.period_start, c_code=after.service_point_code)
            params.update(c_dir=after.direction)
            # The first condition bounds the index range; the row comparison breaks ties.
            filters += (
                " AND r.hour >= %(c_period)s"
                " AND (r.hour, s.code, r.direction) > (%(c_period)s, %(c_code)s, %(c_dir)s)"
            )
        # One row per account, service point, direction and hour already: nothing to group.
        sql = f"""
            SELECT r.hour, r.service_point_id, s.public_id, s.code, s.kind, r.direction,
                   r.consumption, r.estimated, r.suspect_count, 1
            FROM meters_hourly(%(start)s, %(end)s) r
            JOIN meters_servicepoint s ON s.id = r.service_point_id
            WHERE r.account_id = %(account)s
                  {filters}
            ORDER BY r.hour, s.code, r.direction
            LIMIT %(limit)s
        """  # noqa: S608 - only fixed fragments are formatted in
    else:
        first = start.astimezone(zone).date()
        last = (end - dt.timedelta(microseconds=1)).astimezone(zone).date()
        params.update(first=first, stop=last + dt.timedelta(days=1), bucket=str(group_by))
        having = ""
        if after is not None:
            c_period = after.period_start.astimezone(zone).date()
            params.update(c_period=c_period, c_code=after.service_point_code)
            params.update(c_dir=after.direction)
            # Days before the cursor's period cannot belong to a later period.
            filters += " AND r.day >= %(c_period)s"
            having = (
                "HAVING (date_trunc(%(bucket)s, r.day::timestamp)::date, s.code, r.direction)"
                " > (%(c_period)s, %(c_code)s, %(c_dir)s)"
            )
        sql = f"""
            SELECT date_trunc(%(bucket)s, r.day::timestamp)::date, r.service_point_id,
                   s.public_id, s.code, s.kind, r.direction, sum(r.consumption),
                   sum(r.estimated), sum(r.suspect_count), sum(r.hours)
            FROM meters_rollupdaily r
            JOIN meters_servicepoint s ON s.id = r.service_point_id
            WHERE r.account_id = %(account)s AND r.day >= %(first)s AND r.day < %(stop)s
                  {filters}
            GROUP BY 1, 2, 3, 4, 5, 6
            {having}
            ORDER BY 1, 4, 6
            LIMIT %(limit)s
        """  # noqa: S608 - only fixed fragments are formatted in
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # Measured: looking the units up in the same statement and working out each period's
    # hours there doubled the statement's time; here they cost next to nothing.
    units = register_units({(row[1], row[5]) for row in rows if row[4] not in KIND_UNITS})
    hours_of: dict[dt.date, int] = {}
    buckets = []
    for (
        period,
        sp_id,
        public_id,
        code,
        kind,
        row_direction,
        consumption,
        estimated,
        suspect,
        hours,
    ) in rows:
        if isinstance(period, dt.datetime):
            period_start, expected = period.astimezone(zone), 1
        else:
            period_start = local_midnight(period, zone).astimezone(zone)
            if period not in hours_of:
                hours_of[period] = local_hours(period, group_by, zone)
            expected = hours_of[period]
        buckets.append(
            ConsumptionBucket(
                period_start=period_start,
                service_point_id=public_id,
                service_point_code=code,
                utility=kind,
                direction=row_direction,
                unit=KIND_UNITS.get(kind)
                or units.get((sp_id, row_direction), kind_base_unit(kind)),
                consumption=int(consumption or 0),
                estimated=int(estimated or 0),
                suspect=int(suspect or 0),
                hours=int(hours or 0),
                expected_hours=expected,
            )
        )
    return buckets
