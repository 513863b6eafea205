"""The usage page's custom ranges, downsampling, cost overlay, time-of-use split and the
hour x weekday heatmap: every figure from the rollups, with a table of the same numbers."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing.pricing import HourUsage, Segment, price
from meters.models import RollupDaily
from meters.periods import ConsumptionPoint, Resolution, custom_period, downsample, run_length
from portal.tenancy.roles import Role
from tests.billing.helpers import hours, make_tariff, supplied
from tests.factories import make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # noon in Taipei
TOU = {
    "type": "tou",
    "bands": [
        {"name": "peak", "days": "weekdays", "from": 9, "to": 21, "rate": "5"},
        {"name": "off-peak", "days": "weekdays", "from": 21, "to": 9, "rate": "2"},
        {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "1"},
    ],
}
MAY_1_LOCAL = dt.datetime(2026, 4, 30, 16, tzinfo=dt.UTC)  # 1 May 00:00 in Taipei


def _client_for(account: Any) -> Client:
    user = make_user()
    make_membership(user, Role.VIEWER, account=account)
    client = Client()
    client.force_login(user)
    return client


def _figure(body: str, name: str) -> dict[str, Any]:
    marker = f'<script id="{name}" type="application/json">'
    start = body.index(marker) + len(marker)
    figure: dict[str, Any] = json.loads(body[start : body.index("</script>", start)])
    return figure


def _with_hours(structure: dict[str, Any] | None = None) -> tuple[Any, Any, Client]:
    account = make_account("Lin household")
    account, sp, _wallet = supplied(account, tariff=make_tariff(structure))
    # 19 days of May: 100 Wh each hour from midnight to 09:00, 400 Wh after.
    profile = [100] * 9 + [400] * 15
    hours(account, sp, MAY_1_LOCAL, profile * 19)
    for day in range(1, 20):
        RollupDaily.objects.create(
            service_point=sp,
            direction="import",
            day=dt.date(2026, 5, day),
            account=account,
            consumption=sum(profile),
            reading_count=96,
            hours=24,
        )
    return account, sp, _client_for(account)


def test_a_custom_range_gets_the_finest_resolution_that_stays_readable() -> None:
    day = dt.date(2026, 5, 19)

    def resolution(days: int) -> Resolution:
        first = day - dt.timedelta(days=days - 1)
        return custom_period(first_day=first, last_day=day, time_zone="UTC").resolution

    assert resolution(1) == resolution(3) == Resolution.QUARTER_HOUR
    assert resolution(4) == resolution(31) == Resolution.HOUR
    assert resolution(32) == resolution(400) == Resolution.DAY
    assert resolution(401) == Resolution.MONTH
    period = custom_period(first_day=dt.date(2026, 5, 1), last_day=day, time_zone="Asia/Taipei")
    assert period.previous_end == period.start
    assert period.start - period.previous_start == period.end - period.start
    with pytest.raises(ValueError, match="custom range"):
        custom_period(first_day=day, last_day=day - dt.timedelta(days=1), time_zone="UTC")


def test_downsampling_sums_fixed_runs_and_keeps_the_totals() -> None:
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    period = custom_period(
        first_day=dt.date(2026, 5, 1), last_day=dt.date(2026, 5, 31), time_zone="UTC"
    )
    assert run_length(period, max_points=400) == 2  # 744 hours
    # Every hour but a gap from 05:00 to 06:59 on the first day.
    points = [
        ConsumptionPoint(start + dt.timedelta(hours=i), 100 + i, i % 2, i % 3 == 0)
        for i in range(744)
        if i not in (5, 6)
    ]
    merged = downsample(
        points, origin=period.start, resolution=Resolution.HOUR, size=2, time_zone="UTC"
    )
    assert len(merged) == 372  # fixed two-hour runs: the gap shortens two of them
    assert [p.start.hour for p in merged[:4]] == [0, 2, 4, 6]  # type: ignore[union-attr]
    assert (merged[2].consumption, merged[3].consumption) == (104, 107)
    assert sum(p.consumption for p in merged) == sum(p.consumption for p in points)
    assert sum(p.estimated for p in merged) == sum(p.estimated for p in points)
    assert sum(p.suspect for p in merged) == sum(p.suspect for p in points)
    same = downsample(
        points[:10], origin=period.start, resolution=Resolution.HOUR, size=1, time_zone="UTC"
    )
    assert same == points[:10]


@time_machine.travel(NOW, tick=False)
def test_a_long_custom_range_of_hours_is_downsampled_on_the_server() -> None:
    account, _sp, client = _with_hours()
    response = client.get(
        f"/a/{account.public_id}/usage/",
        {"range": "custom", "start": "2026-04-20", "end": "2026-05-19"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="downsampled"' in body
    figure = _figure(body, "usage-figure")
    measured = figure["data"][0]["y"]
    assert len(measured) <= 400
    assert sum(measured) == pytest.approx(19 * 6.9)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"range": "custom", "end": "2026-05-19"}, "start"),
        ({"range": "custom", "start": "2026-05-19", "end": "2026-05-01"}, "start"),
        ({"range": "custom", "start": "2020-01-01", "end": "2026-05-01"}, "start"),
        ({"range": "week", "end": "9999-12-31"}, "end"),
        ({"range": "custom", "start": "0001-01-01", "end": "2026-05-01"}, "start"),
    ],
)
def test_a_bad_custom_range_is_refused_with_a_message(params: dict[str, str], field: str) -> None:
    account, _sp, client = _with_hours()
    response = client.get(f"/a/{account.public_id}/usage/", params)
    assert response.status_code == 400
    assert response.context["form"].errors[field]


@time_machine.travel(NOW, tick=False)
def test_the_month_shows_the_estimated_cost_of_each_day_priced_like_a_bill() -> None:
    account, _sp, client = _with_hours()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert response.status_code == 200
    assert not any("meters_reading" in q["sql"] for q in queries.captured_queries)
    assert len(queries.captured_queries) <= 22
    # A day of the flat tariff: 6.9 kWh at 2.5, plus 10 standing, plus 5% tax.
    day = [
        HourUsage(dt.datetime(2026, 5, 4, h, tzinfo=dt.UTC), 100 if h < 9 else 400)
        for h in range(24)
    ]
    from billing.models import TariffVersion

    version = TariffVersion.objects.get(tariff__assignments__account=account)
    expected = price([Segment(version, 1, day)], currency="TWD", unit="kWh").total
    assert expected == 2861  # (6.9 x 2.5 + 10) x 1.05 = 28.6125 TWD, in cents
    rows = response.context["rows"]
    assert rows[3]["charge"] == Decimal("28.61")
    assert response.context["charge_total"] == Decimal(19 * expected) / 100
    figure = _figure(response.content.decode(), "usage-figure")
    cost_trace = figure["data"][-1]
    assert cost_trace["yaxis"] == "y2"
    assert cost_trace["y"][:19] == [28.61] * 19

    table = list(
        csv.reader(
            io.StringIO(
                client.get(
                    f"/a/{account.public_id}/usage/", {"range": "month", "format": "csv"}
                ).content.decode()
            )
        )
    )
    assert table[0][-1] == "charge_TWD"
    assert table[4][-1] == "28.61"


@time_machine.travel(NOW, tick=False)
def test_a_time_of_use_tariff_splits_each_day_by_band() -> None:
    account, _sp, client = _with_hours(TOU)
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert response.status_code == 200
    assert response.context["band_names"] == ["off-peak", "peak", "weekend"]
    rows = response.context["rows"]
    monday, saturday = rows[3], rows[8]  # 4 and 9 May 2026
    # Monday: 00-09 off-peak (9 x 0.1), 09-21 peak (12 x 0.4), 21-24 off-peak (3 x 0.4).
    assert monday["bands"] == [Decimal("2.1"), Decimal("4.8"), Decimal(0)]
    assert saturday["bands"] == [Decimal(0), Decimal(0), Decimal("6.9")]
    for row in rows:
        assert sum(row["bands"]) == row["consumption"]
    figure = _figure(response.content.decode(), "bands-figure")
    assert [trace["name"] for trace in figure["data"]] == ["off-peak", "peak", "weekend"]


@time_machine.travel(NOW, tick=False)
def test_the_heatmap_averages_each_weekday_hour_from_the_hourly_rollups() -> None:
    account, _sp, client = _with_hours()
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    rows = response.context["heatmap_rows"]
    assert len(rows) == 7 and all(len(row["values"]) == 24 for row in rows)
    assert rows[0]["values"][0] == pytest.approx(0.1)
    assert rows[0]["values"][12] == pytest.approx(0.4)
    figure = _figure(response.content.decode(), "heatmap-figure")
    assert figure["data"][0]["type"] == "heatmap"
    assert figure["data"][0]["z"][5][20] == pytest.approx(0.4)
    assert 'id="heatmap-table"' in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_without_a_tariff_the_page_shows_consumption_only() -> None:
    account, _sp, client = _with_hours()
    from billing.models import TariffAssignment

    TariffAssignment.objects.filter(account=account).delete()
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert response.status_code == 200
    assert response.context["costs"] is None
    assert "cost-total" not in response.content.decode()
    assert (
        "charge" not in response.context["rows"][0] or response.context["rows"][0]["charge"] is None
    )


@time_machine.travel(NOW, tick=False)
def test_a_week_of_hours_costs_exactly_what_its_seven_days_cost() -> None:
    # Each day is priced and rounded once; its hours share it out exactly (billing.costs).
    account, _sp, client = _with_hours()
    week = client.get(f"/a/{account.public_id}/usage/", {"range": "week", "end": "2026-05-17"})
    month = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert week.status_code == month.status_code == 200
    days = month.context["rows"][10:17]  # 11 to 17 May
    assert [row["start"] for row in (days[0], days[-1])] == ["2026-05-11", "2026-05-17"]
    assert week.context["charge_total"] == sum(row["charge"] for row in days)
    hours = week.context["rows"]
    for i, day in enumerate(days):
        assert sum(row["charge"] for row in hours[24 * i : 24 * (i + 1)]) == day["charge"]


@time_machine.travel(NOW, tick=False)
def test_a_month_bucket_that_starts_before_the_range_costs_only_the_ranges_days() -> None:
    from billing.usage_costs import CostQuery, usage_costs

    account, sp, client = _with_hours()
    custom = client.get(
        f"/a/{account.public_id}/usage/",
        {"range": "custom", "start": "2026-05-10", "end": "2026-05-19"},
    )
    may_10 = dt.datetime(2026, 5, 9, 16, tzinfo=dt.UTC)  # local midnight in Taipei
    costs = usage_costs(
        CostQuery(
            account_id=account.pk,
            service_point_id=sp.pk,
            starts=[dt.date(2026, 5, 1)],  # a month bucket, labelled with its first day
            end=dt.datetime(2026, 5, 19, 16, tzinfo=dt.UTC),
            resolution=Resolution.MONTH,
            time_zone="Asia/Taipei",
            start=may_10,
        )
    )
    assert costs is not None
    # Ten days, not the month's nineteen: exactly the custom range's days.
    assert Decimal(costs.charges[0]) / 100 == custom.context["charge_total"]


def test_the_hour_that_comes_twice_is_labelled_apart() -> None:
    from web.views.usage import _local

    zone = zoneinfo.ZoneInfo("Europe/Amsterdam")
    first = dt.datetime(2026, 10, 25, 0, 0, tzinfo=dt.UTC)  # 02:00 CEST
    second = first + dt.timedelta(hours=1)  # 02:00 CET
    assert (_local(first, zone), _local(second, zone)) == (
        "2026-10-25 02:00 +02:00",
        "2026-10-25 02:00 +01:00",
    )
    assert _local(second + dt.timedelta(hours=1), zone) == "2026-10-25 03:00"


@time_machine.travel(NOW, tick=False)
def test_without_hourly_data_there_is_no_empty_heatmap() -> None:
    from meters.models import RollupHourly

    account, _sp, client = _with_hours()
    RollupHourly.objects.filter(account=account).delete()
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert response.status_code == 200
    assert "heatmap-figure" not in response.content.decode()


@time_machine.travel(NOW, tick=False)
def test_intervals_with_suspect_readings_are_marked_on_the_chart() -> None:
    account, _sp, client = _with_hours()
    RollupDaily.objects.filter(account=account, day=dt.date(2026, 5, 6)).update(suspect_count=2)
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    figure = _figure(response.content.decode(), "usage-figure")
    marked = [t for t in figure["data"] if t["name"] == "Suspect readings left out"]
    assert len(marked) == 1 and marked[0]["x"] == ["2026-05-06"]
    assert response.context["rows"][5]["suspect"] == 2


def _exporting() -> tuple[Any, Any, Client]:
    """The Lin household with rooftop solar: 19 days of May importing 6.9 kWh a day and
    exporting 3 kWh around noon, on a tariff that pays 4 TWD per exported kWh."""
    from meters.models import RollupHourly

    account = make_account("Lin household")
    account, sp, _wallet = supplied(account, tariff=make_tariff(export_rate="4"))
    profile = [100] * 9 + [400] * 15
    hours(account, sp, MAY_1_LOCAL, profile * 19)
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction="export",
            hour=MAY_1_LOCAL + dt.timedelta(days=day, hours=11 + h),
            account=account,
            consumption=1000,
            reading_count=4,
        )
        for day in range(19)
        for h in range(3)
    )
    for day in range(1, 20):
        for direction, used in (("import", sum(profile)), ("export", 3000)):
            RollupDaily.objects.create(
                service_point=sp,
                direction=direction,
                day=dt.date(2026, 5, day),
                account=account,
                consumption=used,
                reading_count=96,
                hours=24,
            )
    return account, sp, _client_for(account)


@time_machine.travel(NOW, tick=False)
def test_export_is_a_series_of_its_own_and_its_credit_is_never_netted() -> None:
    account, _sp, client = _exporting()
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert response.status_code == 200
    assert response.context["total"] == Decimal("131.1")  # 19 x 6.9 kWh imported
    assert response.context["export_total"] == Decimal(57)  # 19 x 3 kWh exported
    day = response.context["rows"][3]
    # The charge is the import's alone (28.61 a day with the standing charge and tax); the
    # credit 3 kWh x 4 = 12.00, untaxed.
    assert (day["consumption"], day["exported"]) == (Decimal("6.9"), Decimal(3))
    assert (day["charge"], day["credit"]) == (Decimal("28.61"), Decimal("12.00"))
    names = [trace["name"] for trace in _figure(response.content.decode(), "usage-figure")["data"]]
    assert names == ["Measured", "Estimated", "Exported", "Charge (TWD)", "Export credit (TWD)"]
    table = list(
        csv.DictReader(
            io.StringIO(
                client.get(
                    f"/a/{account.public_id}/usage/", {"range": "month", "format": "csv"}
                ).content.decode()
            )
        )
    )
    assert (table[3]["export_kWh"], table[3]["charge_TWD"], table[3]["export_credit_TWD"]) == (
        "3.000",
        "28.61",
        "12.00",
    )


@time_machine.travel(NOW, tick=False)
def test_the_csv_of_a_first_visit_is_the_page_it_was_linked_from() -> None:
    account, _sp, client = _with_hours()
    page = client.get(f"/a/{account.public_id}/usage/")
    response = client.get(f"/a/{account.public_id}/usage/?{page.context['csv_query']}")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == len(page.context["rows"])  # the default week, hour by hour


@time_machine.travel(NOW, tick=False)
def test_daily_bars_have_day_ticks_and_long_tables_start_collapsed() -> None:
    account, _sp, client = _with_hours()
    month = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    axis = _figure(month.content.decode(), "usage-figure")["layout"]["xaxis"]
    assert axis["dtick"] % 86_400_000 == 0 and "%H" not in axis["tickformat"]
    week = client.get(f"/a/{account.public_id}/usage/", {"range": "week", "end": "2026-05-17"})
    assert len(week.context["rows"]) == 7 * 24
    assert not week.context["table_open"]
    assert '<details class="mb-3" id="usage-table-details">' in week.content.decode()
    assert month.context["table_open"]


@time_machine.travel(NOW, tick=False)
def test_a_water_chart_speaks_of_water_in_both_languages() -> None:
    account = make_account("Lin household")
    account, sp, _wallet = supplied(account, tariff=make_tariff(kind="water"), kind="water")
    hours(account, sp, MAY_1_LOCAL, [10] * 24 * 19)
    client = _client_for(account)
    english = client.get(f"/a/{account.public_id}/usage/", {"range": "month"})
    assert str(english.context["pattern_title"]) == "Weekly water pattern"
    client.cookies["django_language"] = "zh-hant"
    chinese = client.get(f"/a/{account.public_id}/usage/", {"range": "month"}).content.decode()
    assert "每週用水模式" in chinese and "用電" not in chinese


@time_machine.travel(NOW, tick=False)
def test_a_running_month_is_compared_with_the_same_days_of_the_month_before() -> None:
    account, sp, client = _with_hours()
    for day in range(1, 31):  # all April, 2.4 kWh a day
        RollupDaily.objects.create(
            service_point=sp,
            direction="import",
            day=dt.date(2026, 4, day),
            account=account,
            consumption=2400,
            reading_count=96,
            hours=24,
        )
    response = client.get(f"/a/{account.public_id}/usage/", {"range": "month", "compare": "on"})
    # 20 May at noon: 1-20 May against 1-20 April (2.4 kWh a day), not all of April.
    assert response.context["compared_days"] == 20
    assert response.context["previous_total"] == Decimal("48.0")
    assert 'id="like-for-like"' in response.content.decode()


def test_the_hour_that_comes_twice_is_drawn_twice() -> None:
    from meters.charts import usage_figure
    from web.views.usage import _local

    zone = zoneinfo.ZoneInfo("Europe/Amsterdam")
    start = dt.datetime(2026, 10, 24, 22, 0, tzinfo=dt.UTC)  # 25 Oct 00:00 CEST
    points = [ConsumptionPoint(start + dt.timedelta(minutes=15 * i), 100, 0, 0) for i in range(100)]
    labels = [_local(p.start, zone) for p in points]
    figure = usage_figure(
        points,
        labels=labels,
        previous=None,
        unit="kWh",
        divisor=1000,
        resolution=Resolution.QUARTER_HOUR,
    )
    assert figure["layout"]["xaxis"]["type"] == "category"
    assert len(set(figure["data"][0]["x"])) == 100  # no two intervals on one spot
