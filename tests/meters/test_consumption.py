"""Delivery order does not matter, and consumption is bounded by supply periods."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from meters.models import RollupHourly, ServicePoint
from meters.periods import Resolution
from meters.selectors.consumption import consumption_series
from meters.services.supply import supply_start, supply_update
from tests.factories import SYSTEM, make_account
from tests.meters.helpers import csv_rows, quarter_hours, readings_checksum, run_import

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 4, 6, 0, 0, tzinfo=dt.UTC)


def _rows(count: int) -> list[tuple[str, float]]:
    value = 5_000.0
    rows = []
    for i, ts in enumerate(quarter_hours(T0, count)):
        value += 0.05 + (i % 7) * 0.01  # a little load every quarter hour
        rows.append((ts.isoformat(), round(value, 3)))
    return rows


def _rollups() -> list[tuple[object, ...]]:
    return list(
        RollupHourly.objects.order_by("hour").values_list("hour", "consumption", "estimated")
    )


def test_out_of_order_delivery_ends_in_the_same_state() -> None:
    rows = _rows(4 * 30)
    run_import(csv_rows("O1", rows))
    in_order = (readings_checksum(), _rollups())

    # Same readings again, in parts delivered in a shuffled order, with gaps in between that
    # are estimated at first and filled later.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE meters_readingside, meters_channelday")
    RollupHourly.objects.all().delete()
    parts = [rows[i : i + 7] for i in range(0, len(rows), 7)]
    random.Random(7).shuffle(parts)
    for part in parts:
        run_import(csv_rows("O1", part), register_meters=False)
    assert (readings_checksum(), _rollups()) == in_order


def test_a_new_occupant_never_sees_the_previous_ones_readings() -> None:
    rows = _rows(4 * 24)  # one day
    run_import(csv_rows("S1", rows))
    sp = ServicePoint.objects.get(code="SP-S1")
    before, after = make_account("Old occupant"), make_account("New occupant")
    move = T0 + dt.timedelta(hours=12)
    old_supply = supply_start(
        account=before, service_point=sp, start=T0 - dt.timedelta(days=30), actor=SYSTEM
    )
    supply_update(supply=old_supply, changes={"end": move}, actor=SYSTEM)
    supply_start(account=after, service_point=sp, start=move, actor=SYSTEM)
    day = (T0, T0 + dt.timedelta(days=1))
    for resolution in (Resolution.QUARTER_HOUR, Resolution.HOUR, Resolution.DAY):
        new = consumption_series(
            account_id=after.pk,
            service_point_id=sp.pk,
            start=day[0],
            end=day[1] + dt.timedelta(days=1 if resolution == Resolution.DAY else 0),
            resolution=resolution,
        )
        old = consumption_series(
            account_id=before.pk,
            service_point_id=sp.pk,
            start=day[0],
            end=day[1] + dt.timedelta(days=1 if resolution == Resolution.DAY else 0),
            resolution=resolution,
        )
        if resolution != Resolution.DAY:
            assert all(p.start >= move for p in new), resolution
            assert all(p.start <= move for p in old), resolution
        total_new = sum(p.consumption for p in new)
        total_old = sum(p.consumption for p in old)
        assert total_new > 0 and total_old > 0
        assert total_new + total_old == sum(r.consumption for r in RollupHourly.objects.all())


def test_hourly_consumption_is_served_from_the_rollups(django_assert_num_queries: Any) -> None:
    rows = _rows(4 * 48)
    run_import(csv_rows("Q1", rows))
    sp = ServicePoint.objects.get(code="SP-Q1")
    account = make_account()
    supply_start(account=account, service_point=sp, start=T0 - dt.timedelta(days=1), actor=SYSTEM)
    with django_assert_num_queries(1):
        points = consumption_series(
            account_id=account.pk,
            service_point_id=sp.pk,
            start=T0,
            end=T0 + dt.timedelta(days=2),
            resolution=Resolution.HOUR,
        )
    assert len(points) == 48
    monthly = consumption_series(
        account_id=account.pk,
        service_point_id=sp.pk,
        start=T0,
        end=T0 + dt.timedelta(days=30),
        resolution=Resolution.MONTH,
    )
    assert [p.start for p in monthly] == [dt.date(2026, 4, 1)]
    assert monthly[0].consumption == sum(p.consumption for p in points)


def test_a_reading_over_several_hours_is_spread_in_proportion_and_sums_exactly() -> None:
    # Daily-ish register reads: 10:20 then 13:05 with 1 kWh = 1000 Wh between them, i.e.
    # 40 + 60 + 60 + 5 minutes of 165; the shares are floors of cumulative proportions.
    start = dt.datetime(2026, 4, 6, 10, 20, tzinfo=dt.UTC)
    end = dt.datetime(2026, 4, 6, 13, 5, tzinfo=dt.UTC)
    run_import(csv_rows("H1", [(start.isoformat(), 10.0), (end.isoformat(), 11.0)]))
    shares = [(row.hour.hour, row.consumption) for row in RollupHourly.objects.order_by("hour")]
    assert shares == [(10, 242), (11, 364), (12, 363), (13, 31)]
    assert sum(c for _, c in shares) == 1000
