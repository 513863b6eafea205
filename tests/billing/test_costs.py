"""billing.costs: one local day at a time, rounded once; shorter intervals share out their day
exactly; import and export apart; tiers from the 1st; the standing charge to the supply that
holds the service point at midnight."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.costs import Window, allocate, days_priced, holds_at_midnight, price_day
from billing.pricing import HourUsage

TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")


def _version(structure: dict[str, Any], standing: str = "10", export: str | None = "4") -> Any:
    return SimpleNamespace(
        pk=hash((repr(structure), standing, export)),
        standing_charge=Decimal(standing),
        tax_rate=Decimal("0.05"),
        export_rate=Decimal(export) if export else None,
        structure=structure,
    )


FLAT = {"type": "flat", "rate": "2.5"}
TIERED = {"type": "tiered", "tiers": [{"up_to": "30", "rate": "1"}, {"up_to": None, "rate": "3"}]}
TOU = {
    "type": "tou",
    "bands": [
        {"name": "peak", "days": "all", "from": 8, "to": 22, "rate": "4.1"},
        {"name": "off-peak", "days": "all", "from": 22, "to": 8, "rate": "1.3"},
    ],
}


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(min_value=-(10**9), max_value=10**9),
    weights=st.lists(st.decimals(min_value=0, max_value=10**6, places=3), min_size=1, max_size=100),
)
def test_allocation_always_adds_up_and_follows_the_weights(
    total: int, weights: list[Decimal]
) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = total * weight / whole if whole else Decimal(total) / len(weights)
        assert abs(part - exact) < 1


@settings(max_examples=300, deadline=None)
@given(
    structure=st.sampled_from([FLAT, TIERED, TOU]),
    used=st.lists(st.integers(min_value=0, max_value=9_000), min_size=24, max_size=24),
    exported=st.lists(st.integers(min_value=0, max_value=5_000), min_size=24, max_size=24),
    month_to_date=st.integers(min_value=0, max_value=60_000),
    standing=st.booleans(),
)
def test_the_hours_of_a_day_share_out_exactly_its_charge_and_credit(
    structure: dict[str, Any],
    used: list[int],
    exported: list[int],
    month_to_date: int,
    standing: bool,
) -> None:
    start = dt.datetime(2026, 5, 4, tzinfo=TAIPEI)
    hours = [
        HourUsage(start + dt.timedelta(hours=i), q, 0, x)
        for i, (q, x) in enumerate(zip(used, exported, strict=True))
    ]
    day = price_day(
        _version(structure),
        hours,
        day=start.date(),
        standing=standing,
        month_to_date=month_to_date,
        currency="TWD",
        unit="kWh",
        shares=True,
        zone=TAIPEI,
    )
    assert sum(h.charge for h in day.hours) == day.charge
    assert sum(h.credit for h in day.hours) == day.credit
    assert day.credit == -sum(line.amount for line in day.lines if line.kind == "export")
    assert day.credit >= 0 and day.charge >= 0
    # The credit never reaches the charge's tax, and import is never netted with export.
    taxed = sum(line.amount for line in day.lines if line.kind in ("consumption", "standing"))
    assert day.charge == taxed + day.tax
    assert day.imported == sum(used) and day.exported == sum(exported)


def test_tiers_count_the_hours_before_the_first_day_asked_for() -> None:
    version = _version(TIERED, standing="0", export=None)
    first = dt.datetime(2026, 5, 1, tzinfo=TAIPEI)
    hours = [HourUsage(first + dt.timedelta(hours=i), 1000) for i in range(24 * 4)]
    days = days_priced(
        hours,
        [Window(version, dt.date(2026, 1, 1), dt.date(2027, 1, 1))],
        first=dt.date(2026, 5, 2),
        stop=dt.date(2026, 5, 4),
        standing=lambda day: True,
        currency="TWD",
        unit="kWh",
        zone=TAIPEI,
    )
    # 1 May used 24 kWh of the 30 in the first block: 2 May has 6 there, then 18 at 3.
    assert [d.day for d in days] == [dt.date(2026, 5, 2), dt.date(2026, 5, 3)]
    assert [d.charge for d in days] == [(6 * 100 + 18 * 300) * 105 // 100, 24 * 300 * 105 // 100]


def test_a_day_of_25_hours_is_one_day_with_its_25_hours() -> None:
    version = _version(FLAT, export=None)
    midnight = dt.datetime(2026, 10, 25, tzinfo=AMSTERDAM).astimezone(dt.UTC)
    hours = [
        HourUsage((midnight + dt.timedelta(hours=i)).astimezone(AMSTERDAM), 1000) for i in range(25)
    ]
    [day] = days_priced(
        hours,
        [Window(version, dt.date(2026, 1, 1), dt.date(2027, 1, 1))],
        first=dt.date(2026, 10, 25),
        stop=dt.date(2026, 10, 26),
        standing=lambda day: True,
        currency="EUR",
        unit="kWh",
        zone=AMSTERDAM,
        shares=True,
    )
    assert day.imported == 25_000 and len(day.hours) == 25
    assert day.charge == 6250 + 1000 + 363  # 5 % of 72.50 is 3.625: half up


def test_the_standing_charge_goes_to_whoever_holds_the_supply_at_midnight() -> None:
    day = dt.date(2026, 5, 4)
    midnight = dt.datetime(2026, 5, 4, tzinfo=TAIPEI).astimezone(dt.UTC)
    move = midnight + dt.timedelta(hours=14)
    leaving = [(midnight - dt.timedelta(days=30), move)]
    arriving = [(move, None)]
    assert holds_at_midnight(leaving, day, TAIPEI)
    assert not holds_at_midnight(arriving, day, TAIPEI)
    assert holds_at_midnight(arriving, day + dt.timedelta(days=1), TAIPEI)
    assert not holds_at_midnight(leaving, day + dt.timedelta(days=1), TAIPEI)
