"""The account's usage page: charts and tables from the rollups, a CSV of what is shown."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from meters.models import RollupDaily, RollupHourly, ServicePoint
from meters.periods import Resolution, usage_period
from meters.services.supply import supply_start
from portal.tenancy.roles import Role
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # noon in Taipei


def _supplied() -> tuple[Any, ServicePoint, Client]:
    account = make_account("Lin household")
    sp = ServicePoint.objects.create(code="SP-U1", kind="electricity", time_zone="Asia/Taipei")
    supply_start(
        account=account,
        service_point=sp,
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )
    for day in range(1, 21):
        RollupDaily.objects.create(
            service_point=sp,
            direction="import",
            day=dt.date(2026, 5, day),
            account=account,
            consumption=8000 + day,
            estimated=500 if day == 3 else 0,
            reading_count=96,
            hours=24,
        )
    start = dt.datetime(2026, 5, 12, 16, tzinfo=dt.UTC)  # 13 May 00:00 local
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction="import",
            hour=start + dt.timedelta(hours=h),
            account=account,
            consumption=300,
            reading_count=4,
        )
        for h in range(7 * 24)
    )
    user = make_user()
    make_membership(user, Role.VIEWER, account=account)
    client = Client()
    client.force_login(user)
    return account, sp, client


def test_the_resolution_follows_the_range() -> None:
    day = dt.date(2026, 5, 19)
    assert usage_period(span="day", last_day=day, time_zone="UTC").resolution == (
        Resolution.QUARTER_HOUR
    )
    week = usage_period(span="week", last_day=day, time_zone="Asia/Taipei")
    assert week.resolution == Resolution.HOUR
    assert week.start == dt.datetime(2026, 5, 12, 16, tzinfo=dt.UTC)
    assert week.previous_end == week.start
    month = usage_period(span="month", last_day=day, time_zone="UTC")
    assert (month.start.day, month.end.month, month.resolution) == (1, 6, Resolution.DAY)
    year = usage_period(span="year", last_day=day, time_zone="UTC")
    assert (year.start.date(), year.end.date()) == (dt.date(2025, 6, 1), dt.date(2026, 6, 1))


def test_a_member_sees_the_month_from_the_daily_rollups_without_reading_raw_data() -> None:
    account, sp, client = _supplied()
    url = f"/a/{account.public_id}/usage/"
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"service_point": str(sp.public_id), "range": "month"})
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "meters_rollupdaily" in sql
    assert "meters_reading" not in sql.replace("meters_readingconflict", "")
    assert len(queries.captured_queries) <= 15
    page = response.content.decode()
    figure = json.loads(json.dumps(response.context["figure"]))  # what json_script sends
    assert [trace["name"] for trace in figure["data"]] == ["Measured", "Estimated"]
    assert len(response.context["rows"]) == 20
    assert "table-warning" in page  # the estimated day is marked in the table
    assert 'id="usage-figure"' in page and "vendor/plotly/plotly-cartesian.min.js" in page


def test_the_week_compares_with_the_week_before_from_the_hourly_rollups() -> None:
    account, sp, client = _supplied()
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
        response = client.get(
            f"/a/{account.public_id}/usage/",
            {
                "service_point": str(sp.public_id),
                "range": "week",
                "end": "2026-05-19",
                "compare": "on",
            },
        )
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "meters_hourly(" in sql and "meters_readings_between" not in sql
    assert len(response.context["rows"]) == 7 * 24
    assert response.context["total"] == pytest.approx(Decimal(7 * 24 * 3) / 10)
    names = [trace["name"] for trace in response.context["figure"]["data"]]
    assert names == ["Measured", "Estimated", "Period before"]


def test_the_csv_holds_what_is_shown() -> None:
    account, sp, client = _supplied()
    with time_machine.travel(NOW, tick=False):
        response = client.get(
            f"/a/{account.public_id}/usage/",
            {"service_point": str(sp.public_id), "range": "month", "format": "csv"},
        )
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0] == "start,consumption_kWh,estimated_kWh,suspect_readings"
    assert lines[1] == "2026-05-01,8.001,0.000,0"
    assert lines[3] == "2026-05-03,8.003,0.500,0"
    assert len(lines) == 21


def test_bad_options_are_refused_and_strangers_get_404() -> None:
    account, _, client = _supplied()
    response = client.get(
        f"/a/{account.public_id}/usage/", {"service_point": "nope", "range": "decade"}
    )
    assert response.status_code == 400
    other = make_account("Someone else")
    assert client.get(f"/a/{other.public_id}/usage/").status_code == 404
