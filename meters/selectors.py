"""Reads of the fleet, the imports and consumption.

Consumption for an account comes from the rollups, which carry the account of the supply
period: a new occupant never sees the previous occupant's data, whatever the range asked for.
Only the 15-minute resolution reads raw readings, and only within the account's supply periods.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from meters.models import (
    Direction,
    ImportBatch,
    ImportRowError,
    Meter,
    MeterEvent,
    Quality,
    Register,
    ServicePoint,
    Supply,
)


def batch_get_by_id(*, batch_id: int) -> ImportBatch | None:
    """Return a batch by primary key (for tasks)."""
    return ImportBatch.objects.filter(pk=batch_id).first()


def batch_for_organisations(
    *, public_id: uuid.UUID, organisation_ids: list[int]
) -> ImportBatch | None:
    """Return a batch sent by one of these organisations, by its public id."""
    return ImportBatch.objects.filter(
        public_id=public_id, organisation_id__in=organisation_ids
    ).first()


def batches_for_organisations(*, organisation_ids: list[int]) -> QuerySet[ImportBatch]:
    return ImportBatch.objects.filter(organisation_id__in=organisation_ids).order_by("-created_at")


def batch_row_errors(*, batch: ImportBatch, limit: int = 100) -> list[ImportRowError]:
    return list(batch.row_errors.order_by("line")[:limit])


def batches_needing_a_worker(*, queued_before: dt.datetime) -> list[int]:
    """Return the batches that should be running but may have lost their worker."""
    return list(
        ImportBatch.objects.filter(
            Q(status=ImportBatch.Status.RUNNING)
            | Q(status=ImportBatch.Status.QUEUED, created_at__lt=queued_before)
        )
        .order_by("created_at")
        .values_list("id", flat=True)[:100]
    )


def find_previous_batch(
    *,
    sha256: str,
    fmt: str,
    organisation_id: int | None,
    register_meters: bool,
    read_at: dt.datetime | None,
) -> ImportBatch | None:
    """Return an earlier batch of the same content, sent with the same options, that completed
    or is still going.

    The sender and options are part of the identity: the same file from another organisation
    (whose meters the first batch refused) or sent again to register unknown meters must be
    imported, not skipped as a duplicate.
    """
    return (
        ImportBatch.objects.filter(
            Q(organisation_id=organisation_id)
            if organisation_id is not None
            else Q(organisation__isnull=True),
            sha256=sha256,
            format=fmt,
            register_meters=register_meters,
            read_at=read_at,
            status__in=[
                ImportBatch.Status.DONE,
                ImportBatch.Status.RUNNING,
                ImportBatch.Status.QUEUED,
            ],
            duplicate_of__isnull=True,
        )
        .order_by("created_at")
        .first()
    )


def meter_get_by_serial(*, serial: str) -> Meter | None:
    return Meter.objects.filter(serial=serial).first()


def service_points_of_account(*, account_id: int) -> QuerySet[ServicePoint]:
    """Return the service points the account is (or was) supplied at."""
    return ServicePoint.objects.supplied_to(account_id).order_by("kind", "code")


def supplies_of_account(*, account_id: int, service_point_id: int | None = None) -> list[Supply]:
    qs = Supply.objects.for_account(account_id).order_by("start")
    if service_point_id is not None:
        qs = qs.filter(service_point_id=service_point_id)
    return list(qs)


def events_for_account(*, account_id: int, open_only: bool = False) -> QuerySet[MeterEvent]:
    qs = MeterEvent.objects.filter(account_id=account_id).select_related("meter")
    if open_only:
        qs = qs.filter(acknowledged_at__isnull=True)
    return qs.order_by("-occurred_at")


def register_for_meter(*, meter: Meter, code: str) -> Register | None:
    return Register.objects.filter(meter=meter, code=code).first()


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
    local to `time_zone`; 15 minutes reads the raw readings, clipped to the supply periods.
    """
    with connection.cursor() as cursor:
        if resolution == Resolution.QUARTER_HOUR:
            cursor.execute(
                """
                SELECT e.ts, sum(e.delta) FILTER (WHERE e.quality <> %(suspect)s),
                       coalesce(sum(e.delta) FILTER (WHERE e.quality = %(est)s), 0),
                       count(*) FILTER (WHERE e.quality = %(suspect)s)
                FROM meters_supply sup
                JOIN meters_meterinstallation mi ON mi.service_point_id = sup.service_point_id
                JOIN meters_register r ON r.meter_id = mi.meter_id AND r.direction = %(dir)s
                JOIN meters_reading e
                  ON e.register_id = r.id AND e.ts > %(start)s AND e.ts <= %(end)s
                 AND e.ts > mi.installed_at AND (mi.removed_at IS NULL OR e.ts <= mi.removed_at)
                 AND e.start_ts >= sup.start AND (sup."end" IS NULL OR e.ts <= sup."end")
                WHERE sup.account_id = %(account)s AND sup.service_point_id = %(sp)s
                  AND e.delta IS NOT NULL
                GROUP BY e.ts ORDER BY e.ts
                """,
                _params(account_id, service_point_id, start, end, direction),
            )
        elif resolution == Resolution.HOUR:
            cursor.execute(
                """
                SELECT hour, sum(consumption), sum(estimated), sum(suspect_count)
                FROM meters_rolluphourly
                WHERE account_id = %(account)s AND service_point_id = %(sp)s
                  AND direction = %(dir)s AND hour >= %(start)s AND hour < %(end)s
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


def readings_checksum() -> str:
    """Return an md5 over the whole readings table in key order (tests, re-import checks)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT md5(coalesce(string_agg(concat_ws(',', register_id, ts, start_ts, value, "
            "delta, quality, flags), ';' ORDER BY register_id, ts), '')) FROM meters_reading"
        )
        (digest,) = cursor.fetchone()
    return str(digest)


@dataclass(frozen=True)
class ReadingRow:
    ts: dt.datetime
    start_ts: dt.datetime | None
    value: int | None
    delta: int | None
    quality: int
    flags: int


def register_recent_readings(*, register: Register, limit: int = 24) -> list[ReadingRow]:
    """Return a register's latest readings, newest first (the admin's register page)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts, start_ts, value, delta, quality, flags FROM meters_reading "
            "WHERE register_id = %s ORDER BY ts DESC LIMIT %s",
            [register.pk, limit],
        )
        return [ReadingRow(*row) for row in cursor.fetchall()]


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
        first = last_day.replace(day=1)
        stop = (first + dt.timedelta(days=32)).replace(day=1)
        resolution = Resolution.DAY
        previous = (first - dt.timedelta(days=1)).replace(day=1)
    elif span == "year":
        first = (last_day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        first = first.replace(year=first.year - 1)
        stop = first.replace(year=first.year + 1)
        resolution = Resolution.MONTH
        previous = first.replace(year=first.year - 1)
    else:
        raise ValueError(f"unknown span {span!r}")

    def utc(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)

    return UsagePeriod(utc(first), utc(stop), resolution, utc(previous), utc(first))


@dataclass(frozen=True)
class MonthComparison:
    """An account's consumption of one utility: this month so far, last month, a year ago."""

    kind: str
    this_month: int
    last_month: int
    year_ago: int


def month_comparison(*, account_id: int, today: dt.date) -> list[MonthComparison]:
    """Per utility kind, from the daily rollups (local days) in one query."""
    first = today.replace(day=1)
    last_first = (first - dt.timedelta(days=1)).replace(day=1)
    year_ago_first = first.replace(year=first.year - 1)
    year_ago_next = (year_ago_first + dt.timedelta(days=32)).replace(day=1)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT sp.kind,
                   coalesce(sum(d.consumption) FILTER (WHERE d.day >= %(first)s), 0),
                   coalesce(sum(d.consumption) FILTER (WHERE d.day >= %(last)s
                                                         AND d.day < %(first)s), 0),
                   coalesce(sum(d.consumption) FILTER (WHERE d.day >= %(ya)s
                                                         AND d.day < %(ya_next)s), 0)
            FROM meters_rollupdaily d
            JOIN meters_servicepoint sp ON sp.id = d.service_point_id
            WHERE d.account_id = %(account)s AND d.direction = %(dir)s
              AND ((d.day >= %(last)s AND d.day <= %(today)s)
                   OR (d.day >= %(ya)s AND d.day < %(ya_next)s))
            GROUP BY sp.kind ORDER BY sp.kind
            """,
            {
                "account": account_id,
                "dir": Direction.IMPORT,
                "first": first,
                "last": last_first,
                "today": today,
                "ya": year_ago_first,
                "ya_next": year_ago_next,
            },
        )
        return [MonthComparison(k, int(a), int(b), int(c)) for k, a, b, c in cursor.fetchall()]


def meters_of_account(*, account_id: int, as_of: dt.datetime) -> list[Meter]:
    """The meters installed now where the account is supplied now (with their last contact)."""
    points = (
        Supply.objects.filter(account_id=account_id, start__lte=as_of)
        .filter(Q(end__isnull=True) | Q(end__gt=as_of))
        .values("service_point")
    )
    return list(
        Meter.objects.filter(
            Q(installations__removed_at__isnull=True) | Q(installations__removed_at__gt=as_of),
            installations__service_point__in=points,
            installations__installed_at__lte=as_of,
        )
        .distinct()
        .order_by("kind", "serial")
    )
