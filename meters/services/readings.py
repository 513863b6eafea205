"""Corrections of stored readings: one reading's edit, and the rebuild of the rollups they feed."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.utils.translation import gettext as _

from meters.exceptions import ReadingNotFound
from meters.ingest import pipeline
from meters.ingest import sql as q
from meters.models import (
    Quality,
    Register,
    Rule,
    ServicePoint,
    Supply,
)
from portal.audit.actors import Actor, UserActor
from portal.audit.events import AuditEvent
from portal.audit.services import audit_record
from portal.lib.periods import next_month
from portal.tenancy.models import Account

logger = logging.getLogger(__name__)

# --- Reading edits -----------------------------------------------------------------------


def _account_at(register: Register, ts: dt.datetime) -> Account | None:
    supply = (
        Supply.objects.filter(
            service_point__installations__meter_id=register.meter_id,
            service_point__installations__installed_at__lt=ts,
            start__lt=ts,
        )
        .filter(models.Q(end__isnull=True) | models.Q(end__gte=ts))
        .select_related("account")
        .first()
    )
    return supply.account if supply else None


@transaction.atomic
def reading_edit(
    *,
    register: Register,
    ts: dt.datetime,
    reason: str,
    actor: Actor,
    new_value: int | None = None,
    new_delta: int | None = None,
) -> None:
    """Correct a reading: the original is kept in ReadingEdit, rollups are recomputed.

    :raises ReadingNotFound: if the register has no reading at `ts`.
    :raises ValidationError: without a reason or without a new value.
    """
    from meters.models import ReadingEdit

    if not reason.strip():
        raise ValidationError(_("A reason is required to edit a reading."))
    if new_value is None and new_delta is None:
        raise ValidationError(_("Give a new register value or a new interval consumption."))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [q.REGISTER_LOCK + register.pk])
        # The register's advisory lock above keeps imports and other edits off it.
        cursor.execute(
            "SELECT value, delta, quality, flags, start_ts, batch_id "
            "FROM meters_readings_between(ARRAY[%s]::bigint[], %s, %s)",
            [register.pk, ts, ts],
        )
        row = cursor.fetchone()
        if row is None:
            raise ReadingNotFound
        old_value, old_delta, old_quality, old_flags, start_ts, batch_id = row
        ReadingEdit.objects.create(
            register=register,
            ts=ts,
            old_value=old_value,
            old_delta=old_delta,
            old_quality=old_quality,
            old_flags=old_flags,
            new_value=new_value,
            new_delta=new_delta,
            reason=reason.strip(),
            edited_by=actor.user if isinstance(actor, UserActor) else None,
        )
        value = new_value if new_value is not None else old_value
        delta = new_delta
        if (
            delta is None
            and new_value is not None
            and old_value is not None
            and old_delta is not None
        ):
            delta = old_delta + (new_value - old_value)
        if delta is None:
            delta = old_delta
        changes = [
            (
                register.pk,
                ts,
                start_ts,
                value,
                delta,
                int(Quality.EDITED),
                (old_flags & ~int(q.SUSPECT)) | int(Rule.EDITED),
                batch_id,
            )
        ]
        # The next reading's consumption follows the corrected register value.
        next_end = ts
        if new_value is not None:
            cursor.execute(
                "SELECT register_id, ts, start_ts, value, value - %s, quality, flags, batch_id "
                "FROM meters_reading_after(%s, %s) "
                "WHERE value IS NOT NULL AND value >= %s AND flags & %s = 0",
                [value, register.pk, ts, value, int(Rule.EDITED)],
            )
            following = cursor.fetchone()
            if following:
                changes.append(following)
                next_end = following[1]
        cursor.execute(
            "SELECT meters_readings_write(array_agg(ROW(c.*, false)::meters_reading_change)) "
            "FROM (VALUES "
            + ", ".join(
                [
                    "(%s::bigint, %s::timestamptz, %s::timestamptz, %s::bigint, "
                    "%s::bigint, %s::smallint, %s::integer, %s::bigint)"
                ]
                * len(changes)
            )
            + ") c",
            [field for change in changes for field in change],
        )
        cursor.execute(
            "CREATE TEMP TABLE m_aff ON COMMIT DROP AS "
            "SELECT %s::bigint AS register_id, %s::timestamptz AS lo, %s::timestamptz AS hi",
            [register.pk, start_ts or ts, next_end],
        )
    pipeline.refresh_rollups(dict(q.PARAMS))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS m_aff, m_sp, m_hours, m_hday, m_days")
    audit_record(
        actor=actor,
        event=AuditEvent.READING_EDITED,
        account=_account_at(register, ts),
        data={
            "register": str(register),
            "ts": ts,
            "reason": reason.strip(),
            "changes": {
                "value": {"before": old_value, "after": value},
                "delta": {"before": old_delta, "after": delta},
            },
        },
    )


# --- Rollups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RollupRebuildStep:
    """Where a rebuild is, reported after each of its transactions."""

    first: int  # 1-based position of the group's first service point
    last: int
    total: int  # service points in the rebuild
    month: dt.datetime  # the UTC month just rebuilt
    step: int
    steps: int  # months of this group


@dataclass
class RollupRebuildResult:
    service_points: int = 0
    transactions: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    stale_days: int = 0


# The span a service point's rebuild covers: the given local days, else everything its
# readings and its present rollups reach (so that rows of an earlier zone's days are covered).
_REBUILD_SPANS = """
WITH sp AS (SELECT id, time_zone FROM meters_servicepoint WHERE id = ANY(%(ids)s)),
regs AS (
    SELECT DISTINCT mi.service_point_id AS sp, r.id AS reg
    FROM meters_meterinstallation mi JOIN meters_register r ON r.meter_id = mi.meter_id
    WHERE mi.service_point_id = ANY(%(ids)s)
),
reach AS (
    SELECT g.sp, min(f.lo) AS lo, max(l.hi) AS hi
    FROM regs g
    CROSS JOIN LATERAL (SELECT coalesce(e.start_ts, e.ts) AS lo
                        FROM meters_reading_after(g.reg, '-infinity') e) f
    CROSS JOIN LATERAL (SELECT e.ts AS hi FROM meters_reading_before(g.reg, 'infinity') e) l
    GROUP BY g.sp
    UNION ALL
    -- whole UTC days: the hours around the rollups have none to keep
    SELECT service_point_id, min(day)::timestamp AT TIME ZONE 'UTC',
           (max(day) + 1)::timestamp AT TIME ZONE 'UTC'
    FROM meters_hourlyday WHERE service_point_id = ANY(%(ids)s) GROUP BY service_point_id
    UNION ALL
    SELECT d.service_point_id, min(d.day)::timestamp AT TIME ZONE sp.time_zone,
           (max(d.day) + 1)::timestamp AT TIME ZONE sp.time_zone
    FROM meters_rollupdaily d JOIN sp ON sp.id = d.service_point_id
    GROUP BY d.service_point_id, sp.time_zone
)
SELECT sp.id,
       coalesce(%(first)s::date::timestamp AT TIME ZONE sp.time_zone, min(reach.lo)),
       coalesce((%(last)s::date + 1)::timestamp AT TIME ZONE sp.time_zone, max(reach.hi))
FROM sp LEFT JOIN reach ON reach.sp = sp.id
GROUP BY sp.id, sp.time_zone
ORDER BY sp.id
"""

# A month of a group: the registers installed at its service points, over the part of each
# span inside the month, as the pipeline's m_aff, so the pipeline's rollup SQL does the work.
_REBUILD_AFFECTED = """
CREATE TEMP TABLE m_aff ON COMMIT DROP AS
SELECT DISTINCT r.id AS register_id, greatest(s.lo, %(w_lo)s) AS lo, least(s.hi, %(w_hi)s) AS hi
FROM unnest(%(ids)s::bigint[], %(los)s::timestamptz[], %(his)s::timestamptz[]) AS s(sp, lo, hi)
JOIN meters_meterinstallation mi ON mi.service_point_id = s.sp
JOIN meters_register r ON r.meter_id = mi.meter_id
WHERE s.lo < %(w_hi)s AND s.hi > %(w_lo)s;
ANALYZE m_aff;
"""

# Daily rows no hourly row stands behind in the service point's zone: days of a zone it had
# before (a day that does have hours was recomputed with the rest of the span).
_REBUILD_STALE_DAYS = """
DELETE FROM meters_rollupdaily d
USING unnest(%(ids)s::bigint[], %(los)s::timestamptz[], %(his)s::timestamptz[]) AS s(sp, lo, hi),
      meters_servicepoint sp
WHERE sp.id = s.sp AND d.service_point_id = s.sp
  AND d.day BETWEEN (s.lo AT TIME ZONE sp.time_zone)::date - 1
                AND (s.hi AT TIME ZONE sp.time_zone)::date + 1
  AND NOT EXISTS (
      SELECT 1 FROM meters_hourly(d.day::timestamp AT TIME ZONE sp.time_zone,
                                  (d.day + 1)::timestamp AT TIME ZONE sp.time_zone) h
      WHERE h.service_point_id = d.service_point_id AND h.direction = d.direction)
"""


def _months(lo: dt.datetime, hi: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The UTC calendar months [start, end) that [lo, hi) touches."""
    start = lo.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    months = []
    while start < hi:
        end = dt.datetime.combine(next_month(start.date()), dt.time(), dt.UTC)
        months.append((start, end))
        start = end
    return months


def rollups_rebuild(
    *,
    actor: Actor,
    service_point_ids: Sequence[int] | None = None,
    first_day: dt.date | None = None,
    last_day: dt.date | None = None,
    group_size: int = 50,
    progress: Callable[[RollupRebuildStep], None] | None = None,
) -> RollupRebuildResult:
    """Recompute the hourly and daily rollups of service points (all without ids) over the
    local days first_day..last_day (inclusive; open ends: all their data), idempotently.

    One transaction per UTC month per group of `group_size` service points, each taking the
    imports' register and service-point locks, so a rebuild never holds a year of rows in
    one transaction and waits for, rather than races, an import of the same meters. The
    computation is the pipeline's own (meters.ingest.sql via m_aff). Audited once, in the
    last transaction.
    """
    if service_point_ids is None:
        ids = list(ServicePoint.objects.order_by("pk").values_list("pk", flat=True))
    else:
        ids = sorted(set(service_point_ids))
    result = RollupRebuildResult()
    groups = [ids[i : i + group_size] for i in range(0, len(ids), group_size)] or [[]]
    for number, group in enumerate(groups):
        with connection.cursor() as cursor:
            cursor.execute(_REBUILD_SPANS, {"ids": group, "first": first_day, "last": last_day})
            spans = [(sp, lo, hi) for sp, lo, hi in cursor.fetchall() if lo and hi and lo < hi]
        params = {
            "ids": [sp for sp, _lo, _hi in spans],
            "los": [lo for _sp, lo, _hi in spans],
            "his": [hi for _sp, _lo, hi in spans],
        }
        months = _months(min(params["los"]), max(params["his"])) if spans else []
        for step, (w_lo, w_hi) in enumerate(months, start=1):
            with transaction.atomic():
                _rebuild_month(params, w_lo, w_hi)
            result.transactions += 1
            if progress is not None:
                position = number * group_size
                progress(
                    RollupRebuildStep(
                        first=position + 1,
                        last=position + len(group),
                        total=len(ids),
                        month=w_lo,
                        step=step,
                        steps=len(months),
                    )
                )
        result.service_points += len(spans)
        if spans:
            lo, hi = min(params["los"]), max(params["his"])
            result.first = min(lo, result.first) if result.first else lo
            result.last = max(hi, result.last) if result.last else hi
        with transaction.atomic():
            if spans:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s + sp) FROM unnest(%s::bigint[]) sp "
                        "ORDER BY sp",
                        [q.SERVICE_POINT_LOCK, params["ids"]],
                    )
                    cursor.execute(_REBUILD_STALE_DAYS, params)
                    result.stale_days += max(cursor.rowcount, 0)
            result.transactions += 1
            if number == len(groups) - 1:
                _audit_rebuild(ids, result, first_day, last_day, actor=actor)
    return result


def _rebuild_month(params: dict[str, Any], w_lo: dt.datetime, w_hi: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_REBUILD_AFFECTED, {**params, "w_lo": w_lo, "w_hi": w_hi})
        cursor.execute("SELECT DISTINCT register_id FROM m_aff ORDER BY register_id")
        registers = [register for (register,) in cursor.fetchall()]
        # The imports' order: registers, then (in ROLLUP_RANGES) service points.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s + r) FROM unnest(%s::bigint[]) r ORDER BY r",
            [q.REGISTER_LOCK, registers],
        )
    pipeline.refresh_rollups(dict(q.PARAMS))
    with connection.cursor() as cursor:
        # ON COMMIT DROP is not enough inside a caller's transaction (tests, one-off scripts).
        cursor.execute("DROP TABLE IF EXISTS m_aff, m_sp, m_hours, m_hday, m_days")


def _audit_rebuild(
    ids: list[int],
    result: RollupRebuildResult,
    first_day: dt.date | None,
    last_day: dt.date | None,
    *,
    actor: Actor,
) -> None:
    codes = list(
        ServicePoint.objects.filter(pk__in=ids[:20]).order_by("pk").values_list("code", flat=True)
    )
    listed = ", ".join(codes) + (f" (+{len(ids) - len(codes)})" if len(ids) > len(codes) else "")
    target = ServicePoint.objects.get(pk=ids[0]) if len(ids) == 1 else None
    audit_record(
        actor=actor,
        event=AuditEvent.ROLLUPS_REBUILT,
        target=target,
        data={
            "service_points": listed,
            "count": result.service_points,
            "first": first_day or (result.first.date() if result.first else None),
            "last": last_day
            or ((result.last - dt.timedelta(microseconds=1)).date() if result.last else None),
            "transactions": result.transactions,
            "stale_days": result.stale_days,
        },
    )
