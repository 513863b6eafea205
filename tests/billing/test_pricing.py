"""Tariff maths: flat, tiered, time-of-use, seasonal, mid-period changes, rounding."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.pricing import HourUsage, Segment, TariffError, parse_structure, preview_month, price
from portal.lib.money import MoneyError, round_money, to_minor
from tests.money import Money

TZ = zoneinfo.ZoneInfo("Asia/Taipei")


@dataclass(frozen=True)
class V:
    """A stand-in TariffVersion."""

    pk: int
    structure: Any
    standing_charge: Decimal = Decimal(0)
    tax_rate: Decimal = Decimal(0)
    export_rate: Decimal | None = None


def _day(day: dt.date, wh: int = 1000) -> list[HourUsage]:
    return [HourUsage(dt.datetime.combine(day, dt.time(h), TZ), wh) for h in range(24)]


def _total(version: V, usage: list[HourUsage], days: int = 0, **kw: Any) -> int:
    return price([Segment(version, days, usage)], currency="TWD", unit="kWh", **kw).total


def test_flat_standing_and_tax_round_half_up_per_line() -> None:
    version = V(1, {"type": "flat", "rate": "0.125"}, Decimal("3.005"), Decimal("0.05"))
    priced = price(
        [Segment(version, 1, _day(dt.date(2026, 5, 4), 500))], currency="TWD", unit="kWh"
    )
    amounts = {line.kind: line.amount for line in priced.lines}
    # 12 kWh x 0.125 = 1.50; standing 3.005 -> 3.01 (half up); tax 5 % of 4.51 = 0.2255 -> 0.23
    assert amounts == {"consumption": 150, "standing": 301, "tax": 23}
    assert priced.total == 150 + 301 + 23


def test_tiers_fill_in_order_and_restart_each_month() -> None:
    tiers = {
        "type": "tiered",
        "tiers": [
            {"up_to": "120", "rate": "1.63"},
            {"up_to": "330", "rate": "2.38"},
            {"up_to": None, "rate": "3.52"},
        ],
    }
    version = V(1, tiers)
    # 10.008 kWh a day (417 Wh an hour) for the 31 days of May: 310.248 kWh in two tiers
    may = [h for d in range(1, 32) for h in _day(dt.date(2026, 5, d), 417)]
    priced = price([Segment(version, 0, may)], currency="TWD", unit="kWh")
    by_band = {line.band: line.quantity for line in priced.lines}
    assert by_band["0-120"] == Decimal(120)
    assert by_band["120-330"] == Decimal("190.248")
    # The count restarts on 1 June.
    june = _day(dt.date(2026, 6, 1), 6000)
    both = price([Segment(version, 0, may + june)], currency="TWD", unit="kWh")
    assert {line.band for line in both.lines} == {"0-120", "120-330"}
    # month_to_date continues the count within the month
    later = price(
        [Segment(version, 0, _day(dt.date(2026, 5, 20)))],
        currency="TWD",
        unit="kWh",
        month_to_date=119_000,
    )
    assert [(line.band, line.quantity) for line in later.lines] == [
        ("0-120", Decimal(1)),
        ("120-330", Decimal(23)),
    ]


def test_time_of_use_weekdays_and_weekends() -> None:
    tou = {
        "type": "tou",
        "bands": [
            {"name": "peak", "days": "weekdays", "from": 9, "to": 21, "rate": "5"},
            {"name": "off-peak", "days": "weekdays", "from": 21, "to": 9, "rate": "2"},
            {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "1"},
        ],
    }
    version = V(1, tou)
    monday, saturday = dt.date(2026, 5, 4), dt.date(2026, 5, 9)
    assert _total(version, _day(monday)) == 12 * 500 + 12 * 200
    assert _total(version, _day(saturday)) == 24 * 100


def test_seasons_pick_the_local_month() -> None:
    seasonal = {
        "type": "seasonal",
        "seasons": [
            {"name": "summer", "months": [6, 7, 8, 9], "structure": {"type": "flat", "rate": "3"}},
            {
                "name": "rest",
                "months": [1, 2, 3, 4, 5, 10, 11, 12],
                "structure": {"type": "flat", "rate": "2"},
            },
        ],
    }
    version = V(1, seasonal)
    # 31 May 23:00 local is still May although it is June in no zone yet; 1 June is summer.
    assert _total(version, _day(dt.date(2026, 5, 31))) == 24 * 200
    assert _total(version, _day(dt.date(2026, 6, 1))) == 24 * 300
    labels = {
        line.label
        for line in price(
            [Segment(version, 0, _day(dt.date(2026, 6, 1)))], currency="TWD", unit="kWh"
        ).lines
    }
    assert labels == {"summer"}


def test_a_mid_period_change_prices_each_day_by_its_version_and_keeps_the_tier_count() -> None:
    old = V(
        1,
        {"type": "tiered", "tiers": [{"up_to": "30", "rate": "1"}, {"up_to": None, "rate": "2"}]},
        Decimal("1"),
    )
    new = V(
        2,
        {"type": "tiered", "tiers": [{"up_to": "30", "rate": "1.5"}, {"up_to": None, "rate": "3"}]},
        Decimal("2"),
    )
    first = [h for d in range(1, 21) for h in _day(dt.date(2026, 5, d))]
    second = [h for d in range(21, 32) for h in _day(dt.date(2026, 5, d))]
    priced = price([Segment(old, 20, first), Segment(new, 11, second)], currency="TWD", unit="kWh")
    lines = [(line.kind, line.band, line.quantity, line.amount) for line in priced.lines]
    # 24 kWh a day: the first 30 kWh of the month (1-2 May) at the old tier-1 price, the rest
    # of the old days at the old tier 2, the new days all in tier 2 at the new price.
    assert lines == [
        ("consumption", "0-30", Decimal(30), 3000),
        ("consumption", "30+", Decimal(450), 90000),
        ("consumption", "30+", Decimal(264), 79200),
        ("standing", "", Decimal(20), 2000),
        ("standing", "", Decimal(11), 2200),
    ]


def test_export_is_credited_at_the_export_rate() -> None:
    version = V(1, {"type": "flat", "rate": "2"}, export_rate=Decimal("1.2"))
    usage = [HourUsage(dt.datetime(2026, 5, 4, 12, tzinfo=TZ), 1000, 0, 3000)]
    priced = price([Segment(version, 0, usage)], currency="TWD", unit="kWh")
    assert [(line.kind, line.amount) for line in priced.lines] == [
        ("consumption", 200),
        ("export", -360),
    ]


@pytest.mark.parametrize(
    ("structure", "problem"),
    [
        ({"type": "flat", "rate": 0.25}, "never a float"),
        ({"type": "flat", "rate": "-1"}, "negative"),
        ({"type": "flat", "rate": "0.1234567"}, "6 decimals"),
        ({"type": "tiered", "tiers": [{"up_to": "10", "rate": "1"}]}, "unbounded"),
        (
            {
                "type": "tiered",
                "tiers": [
                    {"up_to": "10", "rate": "1"},
                    {"up_to": "5", "rate": "1"},
                    {"up_to": None, "rate": "1"},
                ],
            },
            "increase",
        ),
        (
            {
                "type": "tou",
                "bands": [{"name": "a", "days": "all", "from": 0, "to": 12, "rate": "1"}],
            },
            "no band at 12:00",
        ),
        (
            {
                "type": "tou",
                "bands": [
                    {"name": "a", "days": "all", "from": 0, "to": 24, "rate": "1"},
                    {"name": "b", "days": "weekends", "from": 8, "to": 9, "rate": "1"},
                ],
            },
            "2 bands at 08:00 on weekends",
        ),
        (
            {
                "type": "seasonal",
                "seasons": [
                    {"name": "s", "months": [1, 2], "structure": {"type": "flat", "rate": "1"}}
                ],
            },
            r"no season covers month\(s\) 3",
        ),
        ({"type": "banded"}, "type must be"),
    ],
)
def test_bad_structures_are_refused_with_a_clear_message(structure: Any, problem: str) -> None:
    with pytest.raises(TariffError, match=problem):
        parse_structure(structure)


def test_money_refuses_floats_and_rounds_half_up_to_the_minor_unit() -> None:
    with pytest.raises(MoneyError):
        Money.of(0.1, "EUR")
    assert round_money(Decimal("0.005"), "EUR") == Decimal("0.01")
    assert round_money(Decimal("-0.005"), "EUR") == Decimal("-0.01")
    assert to_minor(Decimal("1.5"), "JPY") == 2
    assert to_minor(Decimal("1.0005"), "KWD") == 1001
    with pytest.raises(MoneyError):
        Money.of("1", "EUR") + Money.of("1", "USD")


def test_the_preview_spreads_a_month_evenly() -> None:
    version = V(1, {"type": "flat", "rate": "2"}, Decimal("1"))
    priced = preview_month(
        version,
        month=dt.date(2026, 2, 10),
        quantity=Decimal(100),
        time_zone="Europe/Amsterdam",
        currency="EUR",
        unit="kWh",
    )
    assert [(line.kind, line.amount) for line in priced.lines] == [
        ("consumption", 20000),
        ("standing", 2800),
    ]


_rates = st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=6)


@settings(max_examples=300, deadline=None)
@given(
    rate=_rates,
    standing=_rates,
    tax=st.decimals(min_value=Decimal(0), max_value=Decimal("0.3"), places=4),
    wh=st.lists(st.integers(min_value=0, max_value=10_000_000), min_size=1, max_size=48),
    currency=st.sampled_from(["TWD", "JPY", "KWD", "EUR"]),
)
def test_the_total_is_the_sum_of_the_rounded_lines(
    rate: Decimal, standing: Decimal, tax: Decimal, wh: list[int], currency: str
) -> None:
    version = V(1, {"type": "flat", "rate": str(rate)}, standing, tax)
    start = dt.datetime(2026, 5, 4, tzinfo=TZ)
    usage = [HourUsage(start + dt.timedelta(hours=i), q) for i, q in enumerate(wh)]
    priced = price([Segment(version, 2, usage)], currency=currency, unit="kWh")
    assert priced.total == sum(line.amount for line in priced.lines)
    exact_lines = [
        Decimal(sum(wh)) / 1000 * rate,
        standing * 2,
    ]
    rounded = [to_minor(amount, currency) for amount in exact_lines if amount]
    net = sum(line.amount for line in priced.lines if line.kind != "tax")
    assert net == sum(rounded)
    expected_tax = int((Decimal(net) * tax).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert priced.tax == (expected_tax if tax else 0)
