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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce

from meters.models import (
    ROLLUP_DIRECTIONS,
    Direction,
    ImportBatch,
    ImportRowError,
    Meter,
    MeterEvent,
    MeterInstallation,
    Quality,
    Register,
    ServicePoint,
    Supply,
)
from meters.units import FIXED_BASE_UNITS, kind_base_unit


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
    return list(batch.row_errors.order_by("line", "pk")[:limit])


def batches_needing_a_worker(*, queued_before: dt.datetime, now: dt.datetime) -> list[int]:
    """Return the batches that should be running but may have lost their worker, and those
    whose wait for their next attempt is over; the longest waiting first."""
    return list(
        ImportBatch.objects.filter(
            Q(status=ImportBatch.Status.RUNNING)
            | Q(
                status=ImportBatch.Status.QUEUED,
                next_attempt_at__isnull=True,
                created_at__lt=queued_before,
            )
            | Q(status=ImportBatch.Status.QUEUED, next_attempt_at__lte=now)
        )
        .order_by(Coalesce("next_attempt_at", "created_at"))
        .values_list("id", flat=True)[:100]
    )


def find_previous_batch(
    *,
    sha256: str,
    fmt: str,
    organisation_id: int | None,
    register_meters: bool,
    read_at: dt.datetime | None,
    meter_serial: str = "",
    dsmr_spec: str = "",
) -> ImportBatch | None:
    """Return an earlier batch of the same content, sent with the same options, that ended
    (done, with or without rejections, or rejected) or is still going. A failed batch is
    not one: its content is imported again.

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
            meter_serial=meter_serial,
            dsmr_spec=dsmr_spec,
            status__in=[
                ImportBatch.Status.DONE,
                ImportBatch.Status.DONE_WITH_REJECTIONS,
                ImportBatch.Status.REJECTED,
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


def service_point_find(*, code_or_id: str) -> ServicePoint | None:
    """Return the service point with this code, else with this id (a code wins: codes may
    be digits)."""
    found = ServicePoint.objects.filter(code=code_or_id).first()
    if found is None and code_or_id.isdigit():
        found = ServicePoint.objects.filter(pk=int(code_or_id)).first()
    return found


def service_points_of_account(*, account_id: int) -> QuerySet[ServicePoint]:
    """Return the service points the account is (or was) supplied at."""
    return ServicePoint.objects.supplied_to(account_id).order_by("kind", "code")


def supplies_of_account(*, account_id: int, service_point_id: int | None = None) -> list[Supply]:
    qs = Supply.objects.for_account(account_id).order_by("start")
    if service_point_id is not None:
        qs = qs.filter(service_point_id=service_point_id)
    return list(qs)


def supply_periods(
    *, account_ids: Sequence[int]
) -> dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]]:
    """The supply periods (start, end) of many accounts, per (account, service point)."""
    periods: dict[tuple[int, int], list[tuple[dt.datetime, dt.datetime | None]]] = {}
    rows = (
        Supply.objects.filter(account_id__in=list(account_ids))
        .order_by("start")
        .values_list("account_id", "service_point_id", "start", "end")
    )
    for account_id, sp_id, start, end in rows:
        periods.setdefault((account_id, sp_id), []).append((start, end))
    return periods


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
                SELECT coalesce(e.start_ts, e.ts - interval '15 minutes') AS start,
                       sum(e.delta) FILTER (WHERE e.quality <> %(suspect)s),
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
                GROUP BY 1 ORDER BY 1
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
        return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)

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
    day = first if resolution == Resolution.DAY else first.replace(day=1)
    while day <= last:
        days.append(day)
        day = day + dt.timedelta(days=1) if resolution == Resolution.DAY else _next_month(day)
    return days


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


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
                FROM meters_rolluphourly
                WHERE account_id = %(account)s AND service_point_id = %(sp)s
                  AND direction = %(dir)s AND hour >= %(start)s AND hour < %(end)s
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


def _month_length(first: dt.date) -> int:
    return ((first + dt.timedelta(days=32)).replace(day=1) - first).days


def comparison_spans(*, local_now: dt.datetime) -> tuple[ComparedSpan, ComparedSpan, ComparedSpan]:
    """This month so far, and the same elapsed time of last month and of the same month a year
    ago: from the 1st to the same day and time of day (a month too short for the day is taken
    whole: the 31st against all of February)."""
    today, time_of_day = local_now.date(), local_now.time().replace(tzinfo=None)
    first = today.replace(day=1)
    this = ComparedSpan(first, today, time_of_day)

    def same_time(month_first: dt.date) -> ComparedSpan:
        length = _month_length(month_first)
        if today.day > length:
            return ComparedSpan(month_first, month_first.replace(day=length), None)
        return ComparedSpan(month_first, month_first.replace(day=today.day), time_of_day)

    last_month = (first - dt.timedelta(days=1)).replace(day=1)
    return this, same_time(last_month), same_time(first.replace(year=first.year - 1))


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


def month_comparison(*, account_id: int, now: dt.datetime, time_zone: str) -> MonthComparisons:
    """Compare a month in progress like for like (see comparison_spans), per utility kind and
    direction, imports before exports, in one query.

    Whole days come from the daily rollups; the last, partial day from the hourly rollups: an
    hour counts when it began before the span's end, in the service point's time zone (the
    zone of its daily rollups), so this month's figure holds everything recorded so far.
    """
    spans = comparison_spans(local_now=now.astimezone(zoneinfo.ZoneInfo(time_zone)))
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
                JOIN meters_rolluphourly h ON h.account_id = %(account)s
                     AND h.direction = ANY(%(dirs)s)
                     -- Every zone is within a day of UTC: a range the index can use.
                     AND h.hour >= (p.day - 1)::timestamp AT TIME ZONE 'UTC'
                     AND h.hour < (p.day + 2)::timestamp AT TIME ZONE 'UTC'
                JOIN meters_servicepoint sp ON sp.id = h.service_point_id
                WHERE h.hour >= p.day::timestamp AT TIME ZONE sp.time_zone
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


def meters_of_account(*, account_id: int, as_of: dt.datetime) -> list[Meter]:
    """The meters installed now where the account is supplied now (with their last contact)."""
    # Plain SQL: built by the ORM (a DISTINCT over OR-joined installations) this took about
    # 2.5 ms of CPU a request to compile, on the account home.
    return list(
        Meter.objects.raw(
            """
            SELECT m.* FROM meters_meter m
            WHERE EXISTS (
                SELECT 1 FROM meters_meterinstallation mi
                JOIN meters_supply sup ON sup.service_point_id = mi.service_point_id
                WHERE mi.meter_id = m.id AND sup.account_id = %(account)s
                  AND sup.start <= %(now)s AND (sup."end" IS NULL OR sup."end" > %(now)s)
                  AND mi.installed_at <= %(now)s
                  AND (mi.removed_at IS NULL OR mi.removed_at > %(now)s)
            )
            ORDER BY m.kind, m.serial
            """,
            {"account": account_id, "now": as_of},
        )
    )


# --- Alerts (the resident's alerts page) ----------------------------------------------------


def _in_own_supply(event: str) -> str:
    """SQL: the event row `event` happened while the account stamped on it was supplied at its
    service point. With the stamp itself this is what members see: an event stamped wrongly (a
    supply recorded or ended after the event was made) never reaches another occupant. The one
    statement of the rule, for the alerts pages and the organisation table alike."""
    return f"""EXISTS (
        SELECT 1 FROM meters_supply sup
        WHERE sup.account_id = {event}.account_id
          AND sup.service_point_id = {event}.service_point_id
          AND sup.start <= {event}.occurred_at
          AND (sup."end" IS NULL OR sup."end" > {event}.occurred_at)
    )"""  # noqa: S608 - `event` is a table alias written in this module, never input


def _alert_events(account_id: int) -> QuerySet[MeterEvent]:
    # Plain SQL for the rule: the same subquery built by the ORM cost about 4 ms of CPU a
    # request to compile (the account home shows these on every visit).
    return MeterEvent.objects.filter(account_id=account_id).filter(
        RawSQL(  # noqa: S611 - no input: the fragment names columns only
            _in_own_supply('"meters_meterevent"'), (), output_field=BooleanField()
        )
    )


def alert_events_for_account(*, account_id: int, open_only: bool) -> QuerySet[MeterEvent]:
    """Return the meter events an account's members see: those of its meters that occurred
    during the account's own supply periods, newest first (open ones only if asked)."""
    qs = _alert_events(account_id).select_related("meter", "acknowledged_by")
    if open_only:
        qs = qs.filter(acknowledged_at__isnull=True)
    return qs.order_by("-occurred_at", "-id")


def alert_event_for_account(*, account_id: int, event_id: int) -> MeterEvent | None:
    """Return one event the account's members see (see alert_events_for_account), or None."""
    return (
        _alert_events(account_id)
        .select_related("meter", "acknowledged_by")
        .filter(pk=event_id)
        .first()
    )


# --- Consumption over the API -------------------------------------------------------------


class GroupBy(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


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
            FROM meters_rolluphourly r
            JOIN meters_servicepoint s ON s.id = r.service_point_id
            WHERE r.account_id = %(account)s AND r.hour >= %(start)s AND r.hour < %(end)s
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
    units = _register_units({(row[1], row[5]) for row in rows if row[4] not in _KIND_UNITS})
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
            period_start = dt.datetime.combine(period, dt.time(), zone)
            if period not in hours_of:
                hours_of[period] = _local_hours(period, group_by, zone)
            expected = hours_of[period]
        buckets.append(
            ConsumptionBucket(
                period_start=period_start,
                service_point_id=public_id,
                service_point_code=code,
                utility=kind,
                direction=row_direction,
                unit=_KIND_UNITS.get(kind)
                or units.get((sp_id, row_direction), kind_base_unit(kind)),
                consumption=int(consumption or 0),
                estimated=int(estimated or 0),
                suspect=int(suspect or 0),
                hours=int(hours or 0),
                expected_hours=expected,
            )
        )
    return buckets


# Gas meters report energy or volume, so gas asks its registers (meters.units says why).
_KIND_UNITS = FIXED_BASE_UNITS


def service_point_base_unit(
    *, service_point_id: int, kind: str, direction: str = Direction.IMPORT
) -> str:
    """The base unit (Wh or L) the service point's readings are in: fixed by kind, except gas,
    which meters report either as energy or as volume (its registers say which)."""
    if kind in _KIND_UNITS:
        return _KIND_UNITS[kind]
    found = _register_units({(service_point_id, direction)})
    return found.get((service_point_id, direction), kind_base_unit(kind))


def _register_units(series: set[tuple[int, str]]) -> dict[tuple[int, str], str]:
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


def _local_hours(day: dt.date, group_by: GroupBy, zone: zoneinfo.ZoneInfo) -> int:
    """The hours of the local period starting `day` (23 or 25 on a DST change)."""
    if group_by == GroupBy.DAY:
        stop = day + dt.timedelta(days=1)
    elif group_by == GroupBy.WEEK:
        stop = day + dt.timedelta(days=7)
    else:
        stop = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    begin = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    return int((dt.datetime.combine(stop, dt.time(), zone) - begin).total_seconds()) // 3600


# --- Many accounts at once (organisation pages) -------------------------------------------
#
# Set-based fragments over a relation `scope(account_id, today)` that the caller defines in a
# WITH clause: the accounts to read, each with its local date. The organisation accounts table
# joins them into one statement, so that sorting and filtering by these values happen in SQL
# over a whole subtree, whatever its size. Each returns (sql, params); parameter names carry the
# fragment's prefix so that the caller can merge them.


def month_consumption_cte() -> tuple[str, dict[str, Any]]:
    """Rows (account_id, kind, direction, consumption): each account's energy or volume this
    month per utility kind and direction (imported, or exported to the grid: apart, never
    netted), its local first of the month to its local today, from the daily rollups (the
    same sums as month_comparison's this_month)."""
    sql = """
        SELECT d.account_id, sp.kind, d.direction, sum(d.consumption)::bigint AS consumption
        FROM scope s
        JOIN meters_rollupdaily d ON d.account_id = s.account_id
             AND d.direction = ANY(%(mc_directions)s)
             AND d.day >= date_trunc('month', s.today)::date AND d.day <= s.today
        JOIN meters_servicepoint sp ON sp.id = d.service_point_id
        GROUP BY d.account_id, sp.kind, d.direction
    """
    return sql, {"mc_directions": list(Direction.values)}


def last_contact_cte(*, as_of: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Rows (account_id, last_contact): the latest contact of the meters installed now where
    the account is supplied now (the meters meters_of_account lists)."""
    sql = """
        SELECT sup.account_id, max(m.last_contact_at) AS last_contact
        FROM scope s
        JOIN meters_supply sup ON sup.account_id = s.account_id AND sup.start <= %(lc_now)s
             AND (sup."end" IS NULL OR sup."end" > %(lc_now)s)
        JOIN meters_meterinstallation mi ON mi.service_point_id = sup.service_point_id
             AND mi.installed_at <= %(lc_now)s
             AND (mi.removed_at IS NULL OR mi.removed_at > %(lc_now)s)
        JOIN meters_meter m ON m.id = mi.meter_id
        GROUP BY sup.account_id
    """
    return sql, {"lc_now": as_of}


def open_alerts_cte() -> tuple[str, dict[str, Any]]:
    """Rows (account_id, open_alerts): the unacknowledged events that the account's members
    see (as alert_events_for_account(open_only=True): stamped with the account and within one
    of its supplies at the event's service point)."""
    sql = """
        SELECT e.account_id, count(*) AS open_alerts
        FROM scope s
        JOIN meters_meterevent e ON e.account_id = s.account_id AND e.acknowledged_at IS NULL
        WHERE {in_supply}
        GROUP BY e.account_id
    """.format(in_supply=_in_own_supply("e"))  # noqa: S608 - a fixed fragment, no input
    return sql, {}


@dataclass(frozen=True)
class KindTotal:
    """Energy or volume (base units) of one utility kind in one direction (imported, or
    exported to the grid) over one day or month."""

    period: dt.date
    kind: str
    direction: str
    consumption: int


def subtree_consumption_by_kind(
    *,
    organisation_path: str,
    as_of: dt.datetime,
    bucket: str,
    periods: int,
    withheld: Sequence[str] = (),
) -> list[KindTotal]:
    """Energy or volume of every account beneath an organisation (by materialised path) per
    utility kind, direction and day or month, from the daily rollups in one grouped query.
    Imports and exports are summed apart: an exporting household never lowers the figure.

    `bucket` is "day" or "month"; the last `periods` of them up to each account's local today
    (the current month counts as one). Days are the rollups' local days.
    """
    if bucket not in ("day", "month") or periods < 1:
        raise ValueError(f"bucket is day or month and periods positive, not {bucket!r}/{periods}")
    if bucket == "day":
        first = "today - (%(periods)s - 1)"
        bound = as_of.date() - dt.timedelta(days=periods + 1)
    else:
        first = "(date_trunc('month', today) - make_interval(months => %(periods)s - 1))::date"
        bound = (as_of.date().replace(day=1) - dt.timedelta(days=31 * periods + 1)).replace(day=1)
    with connection.cursor() as cursor:
        # Each account's local today is worked out once, not once per rollup row; days are
        # summed first and only their few hundred totals are put into months.
        cursor.execute(
            f"""
            WITH accounts AS MATERIALIZED (
                SELECT id, today, {first} AS first
                FROM (
                    SELECT a.id, (%(now)s::timestamptz AT TIME ZONE a.time_zone)::date AS today
                    FROM tenancy_account a
                    JOIN tenancy_organisation o ON o.id = a.organisation_id
                    WHERE o.path LIKE %(path)s AND NOT o.path LIKE ANY(%(withheld)s)
                ) local
            ), days AS (
                SELECT d.day, sp.kind, d.direction, sum(d.consumption) AS consumption
                FROM accounts a
                JOIN meters_rollupdaily d ON d.account_id = a.id
                     AND d.direction = ANY(%(directions)s)
                     AND d.day >= a.first AND d.day <= a.today
                JOIN meters_servicepoint sp ON sp.id = d.service_point_id
                -- Local dates are within a day of UTC's: a constant range the index can use.
                WHERE d.day >= %(bound)s AND d.day <= %(today)s::date + 1
                GROUP BY d.day, sp.kind, d.direction
            )
            SELECT date_trunc(%(bucket)s, day::timestamp)::date AS period, kind, direction,
                   sum(consumption)::bigint
            FROM days
            GROUP BY 1, 2, 3
            ORDER BY 1, 2, 3
            """,  # noqa: S608 - only fixed fragments are formatted in
            {
                "bucket": bucket,
                "directions": list(Direction.values),
                "path": organisation_path + "%",
                "withheld": [path + "%" for path in withheld],
                "now": as_of,
                "periods": periods,
                "bound": bound,
                "today": as_of.date(),
            },
        )
        return [
            KindTotal(period, kind, direction, int(total))
            for period, kind, direction, total in cursor.fetchall()
        ]


def subtree_exporting_kinds(*, organisation_path: str, withheld: Sequence[str] = ()) -> list[str]:
    """The utility kinds of which meters beneath an organisation (by materialised path) have an
    export register, at service points supplied to its accounts now or before: the kinds a
    table of them shows exported energy for."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT sp.kind
            FROM tenancy_organisation o
            JOIN tenancy_account a ON a.organisation_id = o.id
            JOIN meters_supply sup ON sup.account_id = a.id
            JOIN meters_servicepoint sp ON sp.id = sup.service_point_id
            JOIN meters_meterinstallation mi ON mi.service_point_id = sp.id
            JOIN meters_register r ON r.meter_id = mi.meter_id AND r.direction = %s
            WHERE o.path LIKE %s AND NOT o.path LIKE ANY(%s)
            """,
            [str(Direction.EXPORT), organisation_path + "%", [p + "%" for p in withheld]],
        )
        return sorted(kind for (kind,) in cursor.fetchall())


def subtree_utility_kinds(*, organisation_path: str, withheld: Sequence[str] = ()) -> list[str]:
    """The utility kinds of the service points supplied, now or before, to accounts beneath an
    organisation (by materialised path), for the columns a table of them needs."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT sp.kind
            FROM tenancy_organisation o
            JOIN tenancy_account a ON a.organisation_id = o.id
            JOIN meters_supply sup ON sup.account_id = a.id
            JOIN meters_servicepoint sp ON sp.id = sup.service_point_id
            WHERE o.path LIKE %s AND NOT o.path LIKE ANY(%s)
            """,
            [organisation_path + "%", [p + "%" for p in withheld]],
        )
        return sorted(kind for (kind,) in cursor.fetchall())


# --- Meter readings at given instants (the readings printed on bills) ---------------------


@dataclass(frozen=True)
class MeteredSpan:
    """A meter at one of the account's service points over [start, end): the intersection of
    a window asked for, a supply period of the account there and an installation of the
    meter. A meter exchange inside the window gives a span for each meter."""

    service_point_id: int
    meter_serial: str
    registers: tuple[Register, ...]
    start: dt.datetime
    end: dt.datetime
    installed_at: dt.datetime
    removed_at: dt.datetime | None


def metered_spans(
    *, account_id: int, service_point_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[MeteredSpan]:
    """The meters that measured the account's supply at these service points in [start, end),
    each with its registers (main register first), in time order per service point."""
    supplies = list(
        Supply.objects.for_account(account_id)
        .filter(service_point_id__in=service_point_ids, start__lt=end)
        .filter(Q(end__isnull=True) | Q(end__gt=start))
    )
    installations = (
        MeterInstallation.objects.filter(
            service_point_id__in={s.service_point_id for s in supplies}, installed_at__lt=end
        )
        .filter(Q(removed_at__isnull=True) | Q(removed_at__gt=start))
        .select_related("meter")
        .prefetch_related("meter__registers")
    )
    spans = []
    for installation in installations:
        for supply in supplies:
            if supply.service_point_id != installation.service_point_id:
                continue
            lo = max(start, supply.start, installation.installed_at)
            hi = min(end, supply.end or end, installation.removed_at or end)
            if lo < hi:
                # A bill shows the registers it prices: never reactive energy, nor a total
                # that repeats its tariff registers.
                registers = sorted(
                    (
                        r
                        for r in installation.meter.registers.all()
                        if r.direction in ROLLUP_DIRECTIONS
                    ),
                    key=lambda r: (not r.is_main, r.direction != Direction.IMPORT, r.code),
                )
                spans.append(
                    MeteredSpan(
                        installation.service_point_id,
                        installation.meter.serial,
                        tuple(registers),
                        lo,
                        hi,
                        installation.installed_at,
                        installation.removed_at,
                    )
                )
    spans.sort(key=lambda s: (s.service_point_id, s.start, s.meter_serial))
    return spans


@dataclass(frozen=True)
class RegisterInstant:
    """The value of a register at `at`, from its readings in [lo, hi] only: the meter's
    installation at the service point (its readings elsewhere say nothing about this one)."""

    register_id: int
    at: dt.datetime
    lo: dt.datetime
    hi: dt.datetime | None


@dataclass(frozen=True)
class RegisterValue:
    value: int  # base units (Wh, L), the register's count
    estimated: bool


def register_values_at(*, instants: Sequence[RegisterInstant]) -> list[RegisterValue | None]:
    """The value of each register at each instant, from its readings (suspect ones left out):

    - the reading taken at that instant (estimated when that reading is an estimate);
    - else the straight line between the readings either side, marked estimated (a register
      that went back between them, a rollover or a reset, keeps the earlier value);
    - else the nearest reading on the one side that has one, marked estimated;
    - None when the register has no reading within its bounds.

    One statement for them all: two index lookups per instant (newest at or before, oldest
    after), whatever the length of the bounds.
    """
    if not instants:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT q.i, b.ts, b.value, b.quality, a.ts, a.value
            FROM unnest(%(registers)s::bigint[], %(at)s::timestamptz[], %(lo)s::timestamptz[],
                        %(hi)s::timestamptz[]) WITH ORDINALITY AS q(register_id, at, lo, hi, i)
            LEFT JOIN LATERAL (
                SELECT e.ts, e.value, e.quality FROM meters_reading e
                WHERE e.register_id = q.register_id AND e.ts <= q.at AND e.ts >= q.lo
                  AND e.value IS NOT NULL AND e.quality <> %(suspect)s
                ORDER BY e.ts DESC LIMIT 1
            ) b ON true
            LEFT JOIN LATERAL (
                SELECT e.ts, e.value FROM meters_reading e
                WHERE e.register_id = q.register_id AND e.ts > q.at AND e.ts <= q.hi
                  AND e.value IS NOT NULL AND e.quality <> %(suspect)s
                ORDER BY e.ts LIMIT 1
            ) a ON true
            ORDER BY q.i
            """,
            {
                "registers": [i.register_id for i in instants],
                "at": [i.at for i in instants],
                "lo": [i.lo for i in instants],
                "hi": [i.hi or dt.datetime.max.replace(tzinfo=dt.UTC) for i in instants],
                "suspect": Quality.SUSPECT,
            },
        )
        rows = cursor.fetchall()
    values: list[RegisterValue | None] = []
    for (_i, b_ts, b_value, b_quality, a_ts, a_value), instant in zip(rows, instants, strict=True):
        if b_ts is not None and b_ts == instant.at:
            values.append(RegisterValue(int(b_value), b_quality == Quality.ESTIMATED))
        elif b_ts is not None and a_ts is not None and a_value >= b_value:
            # Integer arithmetic on base units: exact to the Wh or litre, rounded down.
            elapsed = (instant.at - b_ts) // dt.timedelta(microseconds=1)
            span = (a_ts - b_ts) // dt.timedelta(microseconds=1)
            values.append(RegisterValue(int(b_value) + (a_value - b_value) * elapsed // span, True))
        elif b_ts is not None:
            values.append(RegisterValue(int(b_value), True))
        elif a_ts is not None:
            values.append(RegisterValue(int(a_value), True))
        else:
            values.append(None)
    return values
