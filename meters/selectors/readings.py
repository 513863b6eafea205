"""Reads of raw readings: a register's latest readings, metered spans, values at instants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q

from meters.models import (
    ROLLUP_DIRECTIONS,
    Direction,
    MeterInstallation,
    Quality,
    Register,
    Supply,
)


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
            "SELECT ts, start_ts, value, delta, quality, flags FROM meters_readings_latest(%s, %s)",
            [register.pk, limit],
        )
        return [ReadingRow(*row) for row in cursor.fetchall()]


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
            -- The storage's nearest-reading searches, of usable readings only: a register
            -- value that is not suspect. Before q.at + 1 µs is at or before q.at.
            LEFT JOIN LATERAL meters_reading_before(
                q.register_id, q.at + interval '1 microsecond', q.lo, true) b ON true
            LEFT JOIN LATERAL meters_reading_after(q.register_id, q.at, q.hi, true) a ON true
            ORDER BY q.i
            """,
            {
                "registers": [i.register_id for i in instants],
                "at": [i.at for i in instants],
                "lo": [i.lo for i in instants],
                "hi": [i.hi or dt.datetime.max.replace(tzinfo=dt.UTC) for i in instants],
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
