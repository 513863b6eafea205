"""Imported and exported energy are kept apart on the organisation pages: the accounts table
and its CSV have columns of their own for exports, and the roll-up charts a series of their
own with its own total. Never netted, never added together.

group ─ sub1 ─ solar (prepaid: 9 kWh imported, 5 kWh exported this month; an export register)
      └ sub2 ─ plain (prepaid: 4 kWh imported)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import time_machine
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from meters.models import Meter, Register, RollupDaily, ServicePoint
from meters.selectors.subtree import subtree_consumption_by_kind
from portal.tenancy.models import Account
from portal.users.models import User
from tests.billing.helpers import supplied
from tests.conftest import World
from web.charts import organisation_usage_charts
from web.selectors import organisation_accounts_table

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # noon in Taipei
ClientFor = Callable[[User], Client]


@pytest.fixture(autouse=True)
def _at_noon_in_taipei() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


def _day(account: Account, sp: ServicePoint, day: dt.date, wh: int, direction: str) -> None:
    RollupDaily.objects.create(
        service_point=sp, direction=direction, day=day, account=account, consumption=wh, hours=24
    )


@pytest.fixture
def solar(world: World) -> World:
    solar, sp, _ = supplied(world.acc1)
    meter = Meter.objects.get(installations__service_point=sp)
    Register.objects.create(meter=meter, code="2.8.0", direction="export", unit="Wh")
    _day(solar, sp, dt.date(2026, 5, 3), 9000, "import")
    _day(solar, sp, dt.date(2026, 5, 3), 5000, "export")
    _day(solar, sp, dt.date(2026, 4, 3), 2000, "export")  # last month: 12 months, not 30 days
    plain, plain_sp, _ = supplied(world.acc2)
    _day(plain, plain_sp, dt.date(2026, 5, 4), 4000, "import")
    return world


def _body(response: object) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]


def test_the_table_has_exports_in_columns_of_their_own(solar: World) -> None:
    rows = {
        row.number: row
        for row in organisation_accounts_table(
            organisation=solar.group, as_of=NOW, credit_alerts=True
        )
    }
    one = rows[solar.acc1.number]
    # Imports are not lowered by the export, and the export is not added to them.
    assert one.consumption == {"electricity": 9000}
    assert one.export == {"electricity": 5000}
    assert one.usage[0] == Decimal(9) and one.export_usage[0] == Decimal(5)
    two = rows[solar.acc2.number]
    assert two.consumption == {"electricity": 4000} and two.export == {}


def test_the_page_shows_export_columns_only_where_meters_export_and_sorts_by_them(
    solar: World, client_for: ClientFor
) -> None:
    client = client_for(solar.group_manager)
    url = reverse("web:organisation_accounts", args=[solar.group.public_id])
    response = client.get(f"{url}?sort=-electricity_export")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Electricity this month (kWh)" in page
    assert "Electricity exported this month (kWh)" in page
    rows = response.context["rows"]
    assert [(row.number, values) for row, values in rows] == [
        (solar.acc1.number, [Decimal(9), Decimal(5)]),
        (solar.acc2.number, [Decimal(4), None]),
    ]
    # A subsidiary without an exporting meter has no export column.
    sub2 = client.get(reverse("web:organisation_accounts", args=[solar.sub2.public_id]))
    assert "exported" not in sub2.content.decode()


def test_the_csv_has_imported_and_exported_energy_apart(
    solar: World, client_for: ClientFor
) -> None:
    client = client_for(solar.group_manager)
    response = client.get(reverse("web:organisation_accounts_csv", args=[solar.group.public_id]))
    body = _body(response)
    rows = {row["account_number"]: row for row in csv.DictReader(io.StringIO(body))}
    one = rows[solar.acc1.number]
    assert one["electricity_kwh"] == "9" and one["electricity_export_kwh"] == "5"
    assert rows[solar.acc2.number]["electricity_export_kwh"] == ""
    header = body.splitlines()[0].split(",")
    assert header.index("electricity_export_kwh") > header.index("heat_kwh")


def test_the_roll_ups_sum_each_direction_apart(solar: World) -> None:
    totals = subtree_consumption_by_kind(
        organisation_path=solar.group.path, as_of=NOW, bucket="month", periods=12
    )
    assert {(t.period, t.direction, t.consumption) for t in totals} == {
        (dt.date(2026, 4, 1), "export", 2000),
        (dt.date(2026, 5, 1), "import", 13000),
        (dt.date(2026, 5, 1), "export", 5000),
    }


def test_the_roll_up_charts_draw_exports_as_their_own_series_with_their_own_total(
    solar: World, client_for: ClientFor
) -> None:
    client = client_for(solar.group_manager)
    response = client.get(reverse("tenancy:organisation_home", args=[solar.group.public_id]))
    panel = next(p for p in response.context["panels"] if p.charts)
    (electricity,) = panel.context["charts"]
    monthly = electricity.monthly
    assert monthly.exports
    assert [(r.imported, r.exported) for r in monthly.rows] == [
        (Decimal(0), Decimal(2)),
        (Decimal(13), Decimal(5)),
    ]
    assert (monthly.total_imported, monthly.total_exported) == (Decimal(13), Decimal(7))
    traces = [(t["name"], t["y"]) for t in monthly.figure["data"]]
    assert traces == [("Imported", [0.0, 13.0]), ("Exported", [2.0, 5.0])]
    assert monthly.figure["layout"]["barmode"] == "group"
    # The 30 days hold no April export, yet the series is there (at zero where none).
    daily = electricity.daily
    assert daily.exports and daily.total_exported == Decimal(5)
    page = response.content.decode()
    assert "Imported (kWh)" in page and "Exported (kWh)" in page and "Total" in page


def test_a_utility_without_exports_keeps_one_series() -> None:
    from meters.selectors.subtree import KindTotal

    (water,) = organisation_usage_charts(
        daily=[KindTotal(dt.date(2026, 5, 3), "water", "import", 2000)],
        monthly=[KindTotal(dt.date(2026, 5, 1), "water", "import", 2000)],
    )
    assert not water.daily.exports and water.daily.total_exported is None
    assert [t["name"] for t in water.daily.figure["data"]] == ["Consumption"]
    assert water.daily.total_imported == Decimal(2)
