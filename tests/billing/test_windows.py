"""billing.windows: the tariff version in force on each local day of a supply, the one rule the
bill, the prepaid charge and the usage page's costs share; and billing.pricing.band_at, the
band of a local hour."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest

from billing.costs import supply_windows
from billing.models import Tariff, TariffAssignment, TariffVersion
from billing.pricing import band_at, parse_structure
from billing.services.bill_drafting import _account_row, _windows
from billing.windows import tariff_windows, window_on
from meters.models import ServicePoint
from portal.lib.periods import hours_in_local_day, local_midnight
from tests.billing.helpers import make_tariff, supplied

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")
TOU = {
    "type": "seasonal",
    "seasons": [
        {
            "name": "summer",
            "months": [4, 5, 6, 7, 8, 9],
            "structure": {
                "type": "tou",
                "bands": [
                    {"name": "peak", "days": "weekdays", "from": 8, "to": 22, "rate": "4"},
                    {"name": "off-peak", "days": "weekdays", "from": 22, "to": 8, "rate": "1"},
                    {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "1"},
                ],
            },
        },
        {
            "name": "winter",
            "months": [1, 2, 3, 10, 11, 12],
            "structure": {"type": "flat", "rate": "2"},
        },
    ],
}


def _version(tariff: Tariff, valid_from: dt.date, rate: str) -> TariffVersion:
    TariffVersion.objects.filter(tariff=tariff, valid_to__isnull=True).update(valid_to=valid_from)
    return TariffVersion.objects.create(
        tariff=tariff,
        valid_from=valid_from,
        standing_charge=Decimal("10"),
        tax_rate=Decimal("0.05"),
        structure={"type": "flat", "rate": rate},
    )


# --- Bands -----------------------------------------------------------------------------------


def test_the_band_of_an_hour_is_its_local_weekday_and_wall_clock_hour() -> None:
    structure = parse_structure(TOU)
    monday = dt.datetime(2026, 5, 4, 7, tzinfo=AMSTERDAM)
    assert band_at(structure, monday).name == "off-peak"  # type: ignore[union-attr]
    assert band_at(structure, monday.replace(hour=8)).name == "peak"  # type: ignore[union-attr]
    assert band_at(structure, monday.replace(hour=22)).name == "off-peak"  # type: ignore[union-attr]
    saturday = dt.datetime(2026, 5, 9, 12, tzinfo=AMSTERDAM)
    assert band_at(structure, saturday).name == "weekend"  # type: ignore[union-attr]


def test_the_season_is_the_local_month_and_a_flat_season_has_no_band() -> None:
    structure = parse_structure(TOU)
    # 1 April 00:30 local is still 31 March in UTC: the local month decides.
    hour = dt.datetime(2026, 4, 1, 0, 30, tzinfo=AMSTERDAM)
    assert hour.astimezone(dt.UTC).month == 3
    assert band_at(structure, hour).name == "off-peak"  # type: ignore[union-attr]
    assert band_at(structure, dt.datetime(2026, 3, 31, 23, tzinfo=AMSTERDAM)) is None


def test_on_the_day_the_clocks_go_back_both_two_oclocks_are_one_band() -> None:
    day = dt.date(2026, 10, 25)  # a Sunday: Amsterdam has 25 hours, 02:00 twice
    start = local_midnight(day, AMSTERDAM)
    hours = [
        (start + dt.timedelta(hours=i)).astimezone(AMSTERDAM)
        for i in range(hours_in_local_day(day, AMSTERDAM))
    ]
    assert len(hours) == 25
    twice = [h for h in hours if h.hour == 2]
    assert [h.fold for h in twice] == [0, 1]
    # October is winter, flat: no band at any hour; the summer plan puts both in one band.
    assert {band_at(parse_structure(TOU), h) for h in hours} == {None}
    summer = parse_structure(TOU["seasons"][0]["structure"])  # type: ignore[index]
    assert {band_at(summer, h).name for h in twice} == {"weekend"}  # type: ignore[union-attr]


# --- Windows ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tariff_change_mid_month_splits_the_supply_into_two_windows() -> None:
    tariff = make_tariff()
    account, sp, _wallet = supplied(tariff=tariff)
    second = _version(tariff, dt.date(2026, 3, 15), "3")
    found = tariff_windows(
        account_ids=[account.pk], first=dt.date(2026, 3, 1), stop=dt.date(2026, 4, 1)
    )
    windows = found.by_supply[(account.pk, sp.pk)]
    assert [(w.start, w.end) for w in windows] == [
        (dt.date(2026, 3, 1), dt.date(2026, 3, 15)),
        (dt.date(2026, 3, 15), dt.date(2026, 4, 1)),
    ]
    assert windows[1].version == second
    assert window_on(windows, dt.date(2026, 3, 14)) == windows[0]
    assert window_on(windows, dt.date(2026, 3, 15)) == windows[1]
    assert window_on(windows, dt.date(2026, 4, 1)) is None
    assert found.problems == {}


@pytest.mark.django_db
def test_the_bill_and_the_page_see_the_same_windows() -> None:
    tariff = make_tariff()
    account, sp, _wallet = supplied(tariff=tariff, kind="electricity")
    _version(tariff, dt.date(2026, 3, 15), "3")
    first, stop = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
    bill, problems = _windows([_account_row(account)], first, stop)
    page, currency, name, unit = supply_windows(
        account_id=account.pk, service_point_id=sp.pk, first=first, stop=stop
    )
    assert problems == {}
    assert [(w.version, w.start, w.end) for w in bill[account.pk]] == [
        (w.version, w.start, w.end) for w in page
    ]
    assert (currency, name, unit) == ("TWD", "Residential", "kWh")


@pytest.mark.django_db
def test_days_without_a_version_are_a_problem_the_bill_refuses() -> None:
    tariff = make_tariff(valid_from=dt.date(2026, 3, 10))
    account, sp, _wallet = supplied(tariff=tariff)
    first, stop = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
    found = tariff_windows(account_ids=[account.pk], first=first, stop=stop)
    assert [(w.start, w.end) for w in found.by_supply[(account.pk, sp.pk)]] == [
        (dt.date(2026, 3, 10), stop)
    ]
    assert "no prices" in found.problems[account.pk]
    bill, problems = _windows([_account_row(account)], first, stop)
    assert account.pk not in bill and account.pk in problems
    # The page prices the days that have prices.
    page, *_ = supply_windows(account_id=account.pk, service_point_id=sp.pk, first=first, stop=stop)
    assert [(w.start, w.end) for w in page] == [(dt.date(2026, 3, 10), stop)]


@pytest.mark.django_db
def test_a_tariff_in_another_currency_or_kind_prices_nothing() -> None:
    account, sp, _wallet = supplied()
    other_sp = ServicePoint.objects.create(code="SP-W", kind="water", time_zone="Asia/Taipei")
    TariffAssignment.objects.filter(account=account).update(valid_to=dt.date(2026, 3, 1))
    TariffAssignment.objects.create(
        account=account,
        service_point=sp,
        tariff=make_tariff(currency="EUR"),
        valid_from=dt.date(2026, 3, 1),
    )
    TariffAssignment.objects.create(
        account=account,
        service_point=other_sp,
        tariff=make_tariff(kind="electricity"),
        valid_from=dt.date(2026, 3, 1),
    )
    stop = dt.date(2026, 4, 1)
    found = tariff_windows(account_ids=[account.pk], first=dt.date(2026, 2, 1), stop=stop)
    assert [(w.start, w.end) for w in found.by_supply[(account.pk, sp.pk)]] == [
        (dt.date(2026, 2, 1), dt.date(2026, 3, 1))
    ]
    assert (account.pk, other_sp.pk) not in found.by_supply
    assert account.pk in found.problems
    page, currency, *_ = supply_windows(
        account_id=account.pk,
        service_point_id=sp.pk,
        first=dt.date(2026, 3, 1),
        stop=dt.date(2026, 4, 1),
    )
    assert page == [] and currency == ""


@pytest.mark.django_db
def test_one_service_point_only_when_asked() -> None:
    account, sp, _wallet = supplied()
    sp2 = ServicePoint.objects.create(code="SP-2", kind="electricity", time_zone="Asia/Taipei")
    TariffAssignment.objects.create(
        account=account, service_point=sp2, tariff=make_tariff(), valid_from=dt.date(2026, 1, 1)
    )
    first, stop = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    both = tariff_windows(account_ids=[account.pk], first=first, stop=stop)
    one = tariff_windows(account_ids=[account.pk], first=first, stop=stop, service_point_id=sp2.pk)
    assert set(both.by_supply) == {(account.pk, sp.pk), (account.pk, sp2.pk)}
    assert set(one.by_supply) == {(account.pk, sp2.pk)}
