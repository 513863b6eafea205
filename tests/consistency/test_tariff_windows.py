"""The chart's cost, the prepaid daily charge and the bill price the same consumption with the
same tariff windows (billing.windows) and bands (billing.pricing.band_at): over a tariff
change on the day the clocks go forward, and the day after, every figure agrees."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing.models import DailyCharge, TariffVersion
from billing.services.bill_drafting import _account_row, _price_chunk
from billing.services.charging import prepaid_charge_day
from billing.usage_costs import CostQuery, usage_costs
from meters.periods import Resolution
from portal.lib.periods import hours_in_local_day, local_midnight
from portal.tenancy.services.accounts import account_create
from tests.billing.helpers import hours, make_tariff, supplied
from tests.factories import SYSTEM

pytestmark = pytest.mark.django_db

ZONE = "Europe/Amsterdam"
DAYS = [dt.date(2026, 3, 28), dt.date(2026, 3, 29), dt.date(2026, 3, 30)]  # 24, 23, 24 hours
TOU = {
    "type": "tou",
    "bands": [
        {"name": "peak", "days": "weekdays", "from": 7, "to": 23, "rate": "0.31"},
        {"name": "off-peak", "days": "weekdays", "from": 23, "to": 7, "rate": "0.12"},
        {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "0.17"},
    ],
}
TIERED = {
    "type": "tiered",
    "tiers": [{"up_to": "5", "rate": "0.2"}, {"up_to": None, "rate": "0.45"}],
}


def test_chart_charge_and_bill_agree_over_a_tariff_change_on_a_dst_day() -> None:
    account = account_create(
        name="Grachten",
        payment_mode="prepaid",
        currency="TWD",
        time_zone=ZONE,
        actor=SYSTEM,
    )
    tariff = make_tariff(TOU, valid_from=dt.date(2026, 1, 1), standing="0.7", tax="0.21")
    account, sp, _wallet = supplied(account, tariff=tariff)
    # The new version starts on the 23-hour day the clocks go forward.
    TariffVersion.objects.filter(tariff=tariff).update(valid_to=DAYS[1])
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=DAYS[1],
        standing_charge=Decimal("0.9"),
        tax_rate=Decimal("0.21"),
        structure=TIERED,
    )
    start = local_midnight(DAYS[0], ZONE)
    count = sum(hours_in_local_day(day, ZONE) for day in DAYS)
    assert count == 71
    hours(account, sp, start, [300 + 37 * i for i in range(count)])
    as_of = local_midnight(DAYS[-1] + dt.timedelta(days=1), ZONE)

    for day in DAYS:
        prepaid_charge_day(day=day, time_zone=ZONE, actor=SYSTEM, as_of=as_of)
    charged = dict(
        DailyCharge.objects.filter(account=account, service_point=sp).values_list("day", "total")
    )

    series = usage_costs(
        CostQuery(
            account_id=account.pk,
            service_point_id=sp.pk,
            starts=DAYS,
            end=as_of,
            resolution=Resolution.DAY,
            time_zone=ZONE,
        )
    )
    assert series is not None

    drafts, problems = _price_chunk(
        [_account_row(account)], DAYS[0], DAYS[-1] + dt.timedelta(days=1), ZONE
    )
    assert problems == {}
    [draft] = drafts

    assert [charged[day] for day in DAYS] == series.charges
    assert all(series.charges)
    assert draft.subtotal + draft.tax == sum(series.charges)
