"""A bill is the sum of its days: each local day priced and rounded on its own, its tax once."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.models import BillLine, TariffVersion
from billing.pricing import HourUsage, Segment, price
from billing.services.bill_drafting import _AccountRow, _price_account, _Window

TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
rates = st.decimals(min_value=0, max_value=10, places=6, allow_nan=False, allow_infinity=False)
tax_rates = st.sampled_from([Decimal("0"), Decimal("0.05"), Decimal("0.0875"), Decimal("0.2")])


@st.composite
def versions(draw: st.DrawFn, pk: int) -> TariffVersion:
    tiered = draw(st.booleans())
    structure = (
        {
            "type": "tiered",
            "tiers": [
                {"up_to": "50", "rate": str(draw(rates))},
                {"up_to": None, "rate": str(draw(rates))},
            ],
        }
        if tiered
        else {"type": "flat", "rate": str(draw(rates))}
    )
    return TariffVersion(
        pk=pk,
        tariff_id=1,
        valid_from=dt.date(2026, 1, 1),
        standing_charge=draw(rates),
        tax_rate=draw(tax_rates),
        structure=structure,
        export_rate=draw(st.one_of(st.none(), rates)),
    )


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    change_day=st.integers(min_value=2, max_value=30),
    days=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=90_000),
            st.integers(min_value=0, max_value=5_000),
            st.integers(min_value=0, max_value=20_000),
        ),
        min_size=31,
        max_size=31,
    ),
)
def test_a_bill_is_the_sum_of_its_days_each_rounded_on_its_own(
    data: st.DataObject, change_day: int, days: list[tuple[int, int, int]]
) -> None:
    # Two service points; the first changes tariff version (prices, not tax) mid-month.
    v1, v2, v3 = data.draw(versions(1)), data.draw(versions(2)), data.draw(versions(3))
    v2.tax_rate = v1.tax_rate
    march, change, april = dt.date(2026, 3, 1), dt.date(2026, 3, change_day), dt.date(2026, 4, 1)
    windows = [
        _Window(10, "electricity", "kWh", v1, march, change),
        _Window(10, "electricity", "kWh", v2, change, april),
        _Window(20, "water", "m3", v3, march, april),
    ]
    usage = {
        (1, sp): [
            HourUsage(
                dt.datetime(2026, 3, i + 1, tzinfo=TAIPEI), q, min(e, q), x if sp == 10 else 0
            )
            for i, (q, e, x) in enumerate(days)
        ]
        for sp in (10, 20)
    }
    draft = _price_account(_AccountRow(1, "A-1", "TWD", "Asia/Taipei", None), windows, usage)

    lines = draft.lines
    taxes = [line for line in lines if line.kind == BillLine.Kind.TAX]
    assert draft.subtotal + draft.tax == sum(line.amount for line in lines)
    assert all(isinstance(line.amount, int) for line in lines)
    # The bill is its days: each local day priced and rounded on its own (billing.costs),
    # the day's tax rounded once on its rounded charge lines, the export credit untaxed.
    versions_of = {10: [(v1, march, change), (v2, change, april)], 20: [(v3, march, april)]}
    expected_total = 0
    expected_tax: dict[Decimal, int] = {}
    for sp, spans in versions_of.items():
        for window_version, a, b in spans:
            for offset in range((b - a).days):
                day = a + dt.timedelta(days=offset)
                hour = usage[(1, sp)][(day - march).days]
                month_before = sum(h.quantity for h in usage[(1, sp)][: (day - march).days])
                priced = price(
                    [Segment(window_version, 1, [hour])],
                    currency="TWD",
                    unit="kWh",
                    month_to_date=month_before,
                )
                expected_total += priced.total
                for line in priced.lines:
                    if line.kind == BillLine.Kind.TAX:
                        rate = line.unit_price
                        expected_tax[rate] = expected_tax.get(rate, 0) + line.amount
    assert draft.subtotal + draft.tax == expected_total
    assert {t.unit_price: t.amount for t in taxes} == expected_tax
    assert sum(t.amount for t in taxes) == draft.tax
