"""The day-row layout of interval readings (migration 0013, issue 14).

A register read every 5 to 60 minutes keeps a UTC day of readings in one row of arrays; other
readings stay one row each in the side table; the `meters_reading` view shows them alike. The
conversion of readings stored one row each is exact, resumable and idempotent, and nothing
outside `meters` names the tables or their functions.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from meters.ingest import sql as q
from meters.models import Meter, Register
from meters.services import storage
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC
YEAR_START = dt.datetime(2025, 1, 1, tzinfo=UTC)


def _register(serial: str, interval: int | None) -> Register:
    meter = Meter.objects.create(serial=serial, kind="electricity", max_rate=250_000)
    return Register.objects.create(
        meter=meter, code="import", unit="Wh", is_main=True, interval_seconds=interval
    )


def _scalar(statement: str, params: list[Any] | None = None) -> object:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    assert row is not None
    return row[0]


def _checksums() -> dict[int, str]:
    """An md5 of every register's readings in time order, as the view shows them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT register_id, md5(string_agg(concat_ws(',', ts, start_ts, value, delta, "
            "quality, flags, batch_id), ';' ORDER BY ts)) FROM meters_reading GROUP BY 1"
        )
        return dict(cursor.fetchall())


def _counts() -> tuple[int, int, int]:
    return (
        int(str(_scalar("SELECT count(*) FROM meters_reading"))),
        int(str(_scalar("SELECT count(*) FROM meters_readingside"))),
        int(str(_scalar("SELECT count(*) FROM meters_channelday"))),
    )


def _write(rows: list[tuple[int, dt.datetime, int]]) -> None:
    """Store register values through the layout's one write function."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT meters_readings_write(array_agg(ROW(r, t, NULL, v, NULL, 0, 0, NULL, false)"
            "::meters_reading_change)) FROM unnest(%s::bigint[], %s::timestamptz[], "
            "%s::bigint[]) x(r, t, v)",
            [[r for r, _, _ in rows], [t for _, t, _ in rows], [v for _, _, v in rows]],
        )


def _seed_legacy_year(registers: list[Register]) -> int:
    """A year of readings per register stored one row each, as before the day layout."""
    with connection.cursor() as cursor:
        months = [YEAR_START.replace(month=m) for m in range(1, 13)]
        for parent in q.READING_TABLES:
            cursor.execute(
                "SELECT partman.create_partition_time(%s, %s::timestamptz[])", [parent, months]
            )
        for register in registers:
            step = register.interval_seconds or 86_400
            cursor.execute(
                """
                INSERT INTO meters_readingside (register_id, ts, start_ts, value, delta,
                                                quality, flags, batch_id)
                SELECT %(reg)s, t, t - make_interval(secs => %(step)s),
                       1000000 + n * 7 + (n %% 5), 7 + (n %% 5) - ((n - 1) %% 5),
                       (n %% 97 = 0)::int * 2, (n %% 97 = 0)::int * 8, 42
                FROM generate_series(1, (365 * 86400 / %(step)s)::int) n,
                     LATERAL (SELECT %(start)s::timestamptz
                                     + make_interval(secs => n * %(step)s) AS t) x
                """,
                {"reg": register.pk, "step": step, "start": YEAR_START},
            )
    return int(str(_scalar("SELECT count(*) FROM meters_readingside")))


def test_the_conversion_of_a_seeded_year_is_exact_resumable_and_idempotent() -> None:
    quarter = [_register(f"Q{i}", 900) for i in range(3)]
    hourly = _register("H1", 3600)
    daily = _register("D1", 86_400)
    stored = _seed_legacy_year([*quarter, hourly, daily])
    # One reading off its register's grid: it stays one row.
    _write([(quarter[0].pk, YEAR_START + dt.timedelta(days=3, minutes=7), 5)])
    stored += 1
    assert stored == 3 * 35_040 + 8_760 + 365 + 1
    before = _checksums()

    # Interrupted after two transactions: every reading is still there, once.
    first = storage.readings_convert(actor=SYSTEM, chunk_rows=25_000, max_chunks=2)
    assert (first.readings, first.transactions) == (50_000, 2)
    assert _checksums() == before
    assert _counts()[0] == stored

    rest = storage.readings_convert(actor=SYSTEM, chunk_rows=25_000)
    assert first.readings + rest.readings == 3 * 35_040 + 8_760
    assert _checksums() == before
    # What stays one row each: the daily register's readings and the off-grid one.
    # A year of readings from 00:15 on 1 January to midnight after 31 December: 366 day rows.
    assert _counts() == (stored, 365 + 1, 4 * 366)

    again = storage.readings_convert(actor=SYSTEM)
    assert (again.readings, again.transactions) == (0, 0)
    assert _checksums() == before
    entries = AuditLogEntry.objects.filter(event_type=AuditEvent.READINGS_CONVERTED)
    assert entries.count() == 2


def test_the_command_prints_its_progress() -> None:
    register = _register("C1", 900)
    _seed_legacy_year([register])
    out = io.StringIO()
    call_command("convert_readings", "--chunk-rows", "20000", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"20000 readings of 1 registers moved (up to register {register.pk})"
    assert lines[-1] == "moved 35040 readings of 1 registers in 2 transactions"


def test_a_dst_day_is_a_row_of_the_same_length_and_a_late_reading_rewrites_it() -> None:
    register = _register("DST", 900)
    # Amsterdam's 23-hour day: the UTC day row still has 96 slots.
    day = dt.datetime(2026, 3, 29, tzinfo=UTC)
    _write([(register.pk, day + dt.timedelta(minutes=15 * i), 100 + i) for i in range(0, 96, 2)])
    assert (
        _scalar(
            "SELECT cardinality(vals) FROM meters_channelday WHERE register_id = %s", [register.pk]
        )
        == 96
    )
    _write([(register.pk, day + dt.timedelta(minutes=15), 101)])
    assert _counts() == (49, 0, 1)
    assert (
        _scalar(
            "SELECT value FROM meters_readings_between(ARRAY[%s]::bigint[], %s, %s)",
            [register.pk, day + dt.timedelta(minutes=15), day + dt.timedelta(minutes=15)],
        )
        == 101
    )
    # Gone readings leave the row; the last one takes the row with it.
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM meters_reading WHERE register_id = %s", [register.pk])
    assert _counts() == (0, 0, 0)


def test_the_nearest_reading_searches_skip_what_they_are_told_to() -> None:
    register = _register("N1", 900)
    start = dt.datetime(2026, 5, 1, tzinfo=UTC)
    _write([(register.pk, start, 10), (register.pk, start + dt.timedelta(days=3), 40)])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE meters_reading SET quality = 4 WHERE register_id = %s AND ts = %s",
            [register.pk, start + dt.timedelta(days=3)],
        )
        cursor.execute(
            "SELECT (SELECT value FROM meters_reading_before(%(r)s, 'infinity')), "
            "(SELECT value FROM meters_reading_before(%(r)s, 'infinity', '-infinity', true)), "
            "(SELECT value FROM meters_reading_after(%(r)s, %(s)s)), "
            "(SELECT value FROM meters_reading_after(%(r)s, %(s)s, 'infinity', true))",
            {"r": register.pk, "s": start},
        )
        assert cursor.fetchone() == (40, 10, 40, None)


# What may know the layout: meters itself. Everything else asks meters' selectors.
LAYOUT_NAMES = re.compile(
    r"\bmeters_(reading|readingside|channelday|readings_\w+|reading_\w+)\b"
    r"|\b(ChannelDay|ReadingSide)\b|models import[^\n]*\bReading\b"
)
OUTSIDE_METERS = ("billing", "web", "portal")


def _layout_mentions(roots: tuple[str, ...]) -> list[str]:
    found = []
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if LAYOUT_NAMES.search(line.replace("meters_readingconflict", "")):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_nothing_outside_meters_names_the_reading_tables() -> None:
    assert _layout_mentions(OUTSIDE_METERS) == []
    # The guard sees what it looks for: meters itself names them.
    assert any("meters/ingest/sql.py" in hit for hit in _layout_mentions(("meters",)))
