"""The readings an account may take away: its reading spans and their rows, as CSV.

Reads the storage through its functions (migration 0013), so the data export never knows the
layout.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import IO

from django.db import connection
from psycopg import sql

from meters.models import Quality, Rule
from portal.lib.csvsafe import csv_safe


@dataclass(frozen=True)
class ReadingSpan:
    """One register's readings an account may see: one supply period and one installation.

    Readings with `ts` in (`after`, `until`] whose interval starts at or after `supply_start`;
    `first` and `last` are the first and last such `ts`, `rows` how many there are.
    """

    register_id: int
    service_point: str
    meter: str
    register: str
    direction: str
    unit: str
    supply_start: dt.datetime
    after: dt.datetime
    until: dt.datetime | None
    rows: int
    first: dt.datetime | None
    last: dt.datetime | None


_SPAN_FILTER = """
    e.register_id = s.register_id AND e.ts > s.after AND e.ts >= s.supply_start
    AND (s.until IS NULL OR e.ts <= s.until) AND coalesce(e.start_ts, e.ts) >= s.supply_start
"""


def export_reading_spans(*, account_id: int) -> list[ReadingSpan]:
    """Every register reading span of the account, with its row count (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH s AS (
                SELECT r.id AS register_id, sp.code AS sp_code, m.serial, r.code AS reg_code,
                       r.direction, r.unit, sup.start AS supply_start,
                       mi.installed_at AS after,
                       CASE WHEN sup."end" IS NULL THEN mi.removed_at
                            WHEN mi.removed_at IS NULL THEN sup."end"
                            ELSE least(sup."end", mi.removed_at) END AS until
                FROM meters_supply sup
                JOIN meters_servicepoint sp ON sp.id = sup.service_point_id
                JOIN meters_meterinstallation mi
                  ON mi.service_point_id = sup.service_point_id
                 AND (sup."end" IS NULL OR mi.installed_at < sup."end")
                 AND (mi.removed_at IS NULL OR mi.removed_at > sup.start)
                JOIN meters_meter m ON m.id = mi.meter_id
                JOIN meters_register r ON r.meter_id = m.id
                WHERE sup.account_id = %s
            )
            SELECT s.register_id, s.sp_code, s.serial, s.reg_code, s.direction, s.unit,
                   s.supply_start, s.after, s.until, c.n, c.first, c.last
            FROM s CROSS JOIN LATERAL (
                SELECT count(*) AS n, min(e.ts) AS first, max(e.ts) AS last
                FROM meters_readings_between(ARRAY[s.register_id], s.after,
                                             coalesce(s.until, 'infinity')) e
                WHERE {_SPAN_FILTER}
            ) c
            ORDER BY s.sp_code, s.supply_start, s.after, s.reg_code
            """,  # noqa: S608 - the filter is a constant
            [account_id],
        )
        return [ReadingSpan(*row) for row in cursor.fetchall()]


_QUALITY_NAMES = " ".join(f"WHEN {q.value} THEN '{q.name.lower()}'" for q in Quality)
_FLAG_NAMES = ", ".join(
    f"CASE WHEN e.flags & {rule.value} <> 0 THEN '{(rule.name or '').lower()}' END" for rule in Rule
)
READINGS_COLUMNS = (
    "service_point",
    "meter",
    "register",
    "direction",
    "unit",
    "interval_start",
    "timestamp",
    "register_value",
    "consumption",
    "quality",
    "flags",
)


def export_readings_copy(
    *, span: ReadingSpan, start: dt.datetime, end: dt.datetime, out: IO[bytes]
) -> int:
    """Write the span's readings with `ts` in [start, end) to `out` as CSV rows (no header),
    streamed by COPY; return how many were written. Times are ISO 8601 in UTC."""
    labels = [
        csv_safe(span.service_point),
        csv_safe(span.meter),
        csv_safe(span.register),
        span.direction,
        span.unit,
    ]
    query = sql.SQL(
        """
        COPY (
            SELECT {labels},
                   (to_json(e.start_ts AT TIME ZONE 'UTC') #>> '{{}}') || 'Z',
                   (to_json(e.ts AT TIME ZONE 'UTC') #>> '{{}}') || 'Z',
                   e.value, e.delta,
                   CASE e.quality {qualities} END,
                   nullif(array_to_string(ARRAY[{flags}], '|'), '')
            FROM (SELECT {register}::bigint AS register_id, {after}::timestamptz AS after,
                         {supply_start}::timestamptz AS supply_start,
                         {until}::timestamptz AS until) s,
                 meters_readings_between(ARRAY[s.register_id], greatest(s.after, {start}),
                                         {end}) e
            WHERE {span_filter} AND e.ts >= {start} AND e.ts < {end}
            ORDER BY e.ts
        ) TO STDOUT (FORMAT csv)
        """
    ).format(
        labels=sql.SQL(", ").join(sql.Literal(label) for label in labels),
        qualities=sql.SQL(_QUALITY_NAMES),  # built from the enums
        flags=sql.SQL(_FLAG_NAMES),
        register=sql.Literal(span.register_id),
        after=sql.Literal(span.after),
        supply_start=sql.Literal(span.supply_start),
        until=sql.Literal(span.until),
        span_filter=sql.SQL(_SPAN_FILTER),
        start=sql.Literal(start),
        end=sql.Literal(end),
    )
    with connection.cursor() as cursor:
        with cursor.copy(query.as_string(cursor.connection)) as copy:
            for data in copy:
                out.write(data)
        return int(cursor.rowcount)
