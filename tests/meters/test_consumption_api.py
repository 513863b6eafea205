"""GET /api/v1/accounts/<account_id>/consumption/: the account's consumption per period,
service point and direction, from the rollups, within its own supply periods."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from meters.models import (
    Meter,
    MeterInstallation,
    Register,
    RollupDaily,
    RollupHourly,
    ServicePoint,
)
from meters.services.supply import supply_start
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.tenancy.services.accounts import account_create
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # noon in Taipei
MOVE_IN = dt.datetime(2025, 12, 31, 16, tzinfo=dt.UTC)  # 1 January 2026, 00:00 in Taipei
RAW_READINGS = re.compile(r"\bmeters_reading\b")


@dataclass
class Home:
    account: Account
    power: ServicePoint
    water: ServicePoint
    client: Client
    url: str


def _install(code: str, kind: str, unit: str) -> ServicePoint:
    sp = ServicePoint.objects.create(code=code, kind=kind, time_zone="Asia/Taipei")
    meter = Meter.objects.create(serial=f"M-{code}", kind=kind, max_rate=50_000)
    MeterInstallation.objects.create(
        meter=meter, service_point=sp, installed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    Register.objects.create(meter=meter, code="import", unit=unit, is_main=True)
    return sp


def _day(sp: ServicePoint, account: Account, day: dt.date, consumption: int, **extra: Any) -> None:
    RollupDaily.objects.create(
        service_point=sp,
        direction=extra.pop("direction", "import"),
        day=day,
        account=account,
        consumption=consumption,
        reading_count=96,
        hours=extra.pop("hours", 24),
        **extra,
    )


@pytest.fixture
def home() -> Home:
    """A Taipei household since 1 January with electricity (and solar export) and water;
    someone else lived there in 2025."""
    account = make_account("Lin household")
    before = make_account("Previous occupant")
    power = _install("SP-E1", "electricity", "Wh")
    water = _install("SP-W1", "water", "L")
    for sp in (power, water):
        supply_start(
            account=before,
            service_point=sp,
            start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
            end=MOVE_IN,
            actor=SYSTEM,
        )
        supply_start(account=account, service_point=sp, start=MOVE_IN, actor=SYSTEM)
    for day in range(1, 21):
        date = dt.date(2026, 5, day)
        _day(power, account, date, 8000 + day, estimated=500 if day == 3 else 0)
        _day(water, account, date, 300 + day, suspect_count=2 if day == 4 else 0)
    _day(power, account, dt.date(2026, 5, 20), 2000, direction="export", hours=12)
    # Today (20 May) is under way: its import rows have only the hours so far.
    RollupDaily.objects.filter(day=dt.date(2026, 5, 20), direction="import").update(hours=12)
    for day in range(1, 32):
        _day(power, before, dt.date(2025, 12, day), 99_999)
    _day(power, account, dt.date(2026, 1, 1), 1)
    start = dt.datetime(2026, 5, 12, 16, tzinfo=dt.UTC)  # 13 May 00:00 in Taipei
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=power,
            direction="import",
            hour=start + dt.timedelta(hours=h),
            account=account,
            consumption=300 + h,
            estimated=100 if h == 5 else 0,
            suspect_count=1 if h == 6 else 0,
            reading_count=4,
        )
        for h in range(48)
    )
    RollupHourly.objects.create(
        service_point=power,
        direction="import",
        hour=MOVE_IN - dt.timedelta(hours=1),
        account=before,
        consumption=77_777,
        reading_count=4,
    )
    user = make_user()
    make_membership(user, Role.VIEWER, account=account)
    client = Client()
    client.force_login(user)
    url = reverse("meters:api_account_consumption", kwargs={"account_id": account.public_id})
    return Home(account, power, water, client, url)


def _flat(data: Any) -> list[dict[str, Any]]:
    """The page's points, each with its series' fields."""
    return [
        {**{k: v for k, v in series.items() if k != "points"}, **point}
        for series in data["results"]
        for point in series["points"]
    ]


def _get(home: Home, **params: Any) -> Any:
    with time_machine.travel(NOW, tick=False):
        response = home.client.get(home.url, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_days_per_service_point_and_direction_with_units_estimates_and_gaps(home: Home) -> None:
    data = _get(home, period_from="2026-05-01", period_to="2026-05-21", group_by="day")
    assert data["next"] is None
    assert data["period_from"] == "2026-05-01T00:00:00+08:00"
    assert data["period_to"] == "2026-05-21T00:00:00+08:00"
    assert (data["group_by"], data["time_zone"]) == ("day", "Asia/Taipei")
    series = [
        (s["service_point_code"], s["direction"], s["utility"], s["unit"], len(s["points"]))
        for s in data["results"]
    ]
    assert series == [
        ("SP-E1", "export", "electricity", "Wh", 1),  # a day of solar export
        ("SP-E1", "import", "electricity", "Wh", 20),
        ("SP-W1", "import", "water", "L", 20),
    ]
    power = data["results"][1]
    assert power["service_point"] == str(home.power.public_id)
    assert power["points"][0] == {
        "period_start": "2026-05-01T00:00:00+08:00",
        "consumption": 8001,
        "estimated": 0,
        "suspect_readings": 0,
        "hours_with_data": 24,
        "incomplete": False,
    }
    rows = _flat(data)
    by_key = {(r["period_start"][:10], r["service_point_code"], r["direction"]): r for r in rows}
    assert by_key["2026-05-03", "SP-E1", "import"]["estimated"] == 500
    assert by_key["2026-05-04", "SP-W1", "import"]["incomplete"] is True  # suspect left out
    assert by_key["2026-05-20", "SP-E1", "import"]["incomplete"] is True  # only 12 hours yet
    assert by_key["2026-05-20", "SP-E1", "export"]["consumption"] == 2000
    for one in data["results"]:
        starts = [point["period_start"] for point in one["points"]]
        assert starts == sorted(starts)


def test_weeks_and_months_are_summed_in_sql_over_local_days(home: Home) -> None:
    months = _flat(
        _get(
            home,
            period_from="2026-04-01",
            period_to="2026-06-01",
            group_by="month",
            utility="electricity",
            direction="import",
        )
    )
    assert len(months) == 1
    may = months[0]
    assert may["period_start"] == "2026-05-01T00:00:00+08:00"
    assert may["consumption"] == sum(8000 + d for d in range(1, 21))
    assert may["estimated"] == 500
    assert (may["hours_with_data"], may["incomplete"]) == (19 * 24 + 12, True)

    weeks = _flat(
        _get(
            home, period_from="2026-05-04", period_to="2026-05-11", group_by="week", utility="water"
        )
    )
    assert [w["period_start"] for w in weeks] == ["2026-05-04T00:00:00+08:00"]  # a Monday
    assert weeks[0]["consumption"] == sum(300 + d for d in range(4, 11))
    assert weeks[0]["suspect_readings"] == 2


def test_hours_come_from_the_hourly_rollups_with_the_local_offset(home: Home) -> None:
    data = _get(
        home,
        period_from="2026-05-13T00:00",  # naive: Taipei time
        period_to="2026-05-14T00:00:00 08:00",  # "+" arrived as a space
        group_by="hour",
    )
    rows = _flat(data)
    assert len(rows) == 24
    assert rows[0]["period_start"] == "2026-05-13T00:00:00+08:00"
    assert rows[0]["consumption"] == 300
    assert rows[5]["estimated"] == 100
    assert [r["incomplete"] for r in rows[5:8]] == [False, True, False]
    assert rows[-1]["period_start"] == "2026-05-13T23:00:00+08:00"


def test_a_new_occupant_never_sees_the_previous_occupants_data(home: Home) -> None:
    days = _flat(_get(home, period_from="2025-12-01", period_to="2026-01-02", group_by="day"))
    assert [(r["period_start"], r["consumption"]) for r in days] == [
        ("2026-01-01T00:00:00+08:00", 1)
    ]
    hours = _flat(
        _get(home, period_from="2025-12-31T20:00", period_to="2026-01-01T04:00", group_by="hour")
    )
    assert hours == []


def test_the_default_range_is_the_last_30_days_by_day(home: Home) -> None:
    data = _get(home)
    assert data["period_from"] == "2026-04-21T00:00:00+08:00"
    assert data["period_to"] == "2026-05-21T00:00:00+08:00"
    assert data["group_by"] == "day"
    assert len(_flat(data)) == 41


def test_cursor_pages_cover_everything_once(home: Home) -> None:
    params = {"period_from": "2026-05-13", "period_to": "2026-05-15", "group_by": "hour"}
    everything = _flat(_get(home, **params))
    assert len(everything) == 48
    seen: list[dict[str, Any]] = []
    data = _get(home, **params, page_size=10)
    pages = 1
    while True:
        seen.extend(_flat(data))
        if data["next"] is None:
            break
        assert data["next"].startswith("http://testserver/api/v1/accounts/")
        with time_machine.travel(NOW, tick=False):
            response = home.client.get(data["next"])
        assert response.status_code == 200
        data = response.json()
        pages += 1
    assert pages == 5
    assert seen == everything

    days = _get(home, period_from="2026-05-01", period_to="2026-05-21", page_size=7)
    assert [len(one["points"]) for one in days["results"]] == [4, 3]  # E1 1-4 May, W1 1-3 May
    with time_machine.travel(NOW, tick=False):
        second = home.client.get(days["next"]).json()["results"]
    firsts = {one["service_point_code"]: one["points"][0]["period_start"] for one in second}
    assert firsts == {"SP-E1": "2026-05-05T00:00:00+08:00", "SP-W1": "2026-05-04T00:00:00+08:00"}


def test_it_reads_only_rollups_in_a_bounded_number_of_queries(home: Home) -> None:
    _get(home)  # the first request of a session records its activity clock
    for group_by, period_from in (("hour", "2026-05-13"), ("day", "2026-01-01"), ("month", "")):
        params = {"group_by": group_by, "period_to": "2026-05-15"}
        if period_from:
            params["period_from"] = period_from
        with (
            time_machine.travel(NOW, tick=False),
            CaptureQueriesContext(connection) as queries,
        ):
            response = home.client.get(home.url, params)
        assert response.status_code == 200
        sql = " ".join(q["sql"] for q in queries.captured_queries)
        assert not RAW_READINGS.search(sql), group_by
        assert ("meters_hourly(" in sql) == (group_by == "hour")
        assert ("meters_rollupdaily" in sql) == (group_by != "hour")
        # Session user, account, membership, the consumption itself.
        assert len(queries.captured_queries) <= 4, [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"period_from": "yesterday"}, "period_from", "Enter a date"),
        ({"period_to": "2026-13-01"}, "period_to", "Enter a date"),
        ({"period_from": "0001-01-01"}, "period_from", "between 1970 and 2100"),
        ({"period_from": "2026-05-02", "period_to": "2026-05-02"}, "period_to", "after its start"),
        ({"period_from": "2026-05-03", "period_to": "2026-05-02"}, "period_to", "after its start"),
        (
            {"period_from": "2026-01-01", "period_to": "2026-04-05", "group_by": "hour"},
            "period_to",
            "at most 93 days",
        ),
        ({"group_by": "decade"}, "group_by", "not a valid choice"),
        ({"utility": "steam"}, "utility", "not a valid choice"),
        ({"direction": "sideways"}, "direction", "not a valid choice"),
        ({"page_size": "0"}, "page_size", "greater than or equal to 1"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor", "not valid"),
    ],
)
def test_bad_queries_get_400_with_a_message_per_field(
    home: Home, params: dict[str, str], field: str, message: str
) -> None:
    with time_machine.travel(NOW, tick=False):
        response = home.client.get(home.url, params)
    assert response.status_code == 400
    errors = response.json()
    assert list(errors) == [field]
    assert message in errors[field][0]


def test_exactly_93_days_of_hours_are_served(home: Home) -> None:
    data = _get(home, period_from="2026-02-10", period_to="2026-05-14", group_by="hour")
    assert len(_flat(data)) == 24


def test_other_accounts_answer_404(home: Home) -> None:
    other = make_account("Neighbours")
    url = reverse("meters:api_account_consumption", kwargs={"account_id": other.public_id})
    assert home.client.get(url).status_code == 404
    assert Client().get(home.url).status_code == 403  # not signed in


def test_the_openapi_schema_documents_the_endpoint(home: Home) -> None:
    schema = home.client.get(reverse("api_schema"), HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    operation = paths["/api/v1/accounts/{account_id}/consumption/"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"period_from", "period_to", "group_by", "utility", "direction", "cursor"} <= names


def test_gas_names_its_registers_unit_and_dst_days_have_23_hours() -> None:
    account = account_create(
        name="Berlin flat",
        payment_mode="postpaid",
        currency="EUR",
        time_zone="Europe/Berlin",
        organisation=None,
        actor=SYSTEM,
    )
    gas = _install("SP-G1", "gas", "L")
    supply_start(
        account=account,
        service_point=gas,
        start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        actor=SYSTEM,
    )
    _day(gas, account, dt.date(2026, 3, 28), 900)
    _day(gas, account, dt.date(2026, 3, 29), 800, hours=23)  # clocks go forward
    user = make_user()
    make_membership(user, Role.OWNER, account=account)
    client = Client()
    client.force_login(user)
    url = reverse("meters:api_account_consumption", kwargs={"account_id": account.public_id})
    with time_machine.travel(NOW, tick=False):
        days = client.get(url, {"period_from": "2026-03-28", "period_to": "2026-03-30"}).json()
        month = client.get(
            url, {"period_from": "2026-03-01", "period_to": "2026-04-01", "group_by": "month"}
        ).json()
    assert [(d["period_start"], d["unit"], d["incomplete"]) for d in _flat(days)] == [
        ("2026-03-28T00:00:00+01:00", "L", False),
        ("2026-03-29T00:00:00+01:00", "L", False),
    ]
    (march,) = _flat(month)
    assert march["hours_with_data"] == 47
    assert march["incomplete"] is True  # 47 of March's 743 hours
