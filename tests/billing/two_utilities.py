"""A postpaid flat with electricity and water, billed for March 2026 from real readings.

What a real bill has to cope with, each on purpose:
- two utilities in two units (kWh, m³), on a tiered and a flat tariff;
- the electricity meter's reading at the end of the period missing (the import estimates it);
- the water meter exchanged on 15 March at 10:00 local time, the new one starting from zero;
- January and February billed before, from rollups alone, for the previous periods.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing.models import Bill, Tariff, TariffAssignment, TariffVersion
from billing.services.bills import bill_run_execute
from meters.models import Meter, MeterInstallation, Register, ServicePoint
from meters.services.supply import supply_start
from portal.tenancy.models import Account
from tests.billing.test_bills import local_hours
from tests.factories import SYSTEM, make_account, make_organisation
from tests.meters.helpers import csv_rows, run_import

TAIPEI = zoneinfo.ZoneInfo("Asia/Taipei")
MARCH = dt.date(2026, 3, 1)
START = dt.datetime(2026, 3, 1, tzinfo=TAIPEI)  # 2026-02-28 16:00 UTC
END = dt.datetime(2026, 4, 1, tzinfo=TAIPEI)
EXCHANGE = dt.datetime(2026, 3, 15, 10, tzinfo=TAIPEI)
ISSUED = dt.datetime(2026, 4, 2, 1, 30, tzinfo=dt.UTC)
ADDRESS = "12 Harbour Road, flat 2B, Keelung"

ELECTRICITY_START = 12_345_678  # Wh on the register at the start of March
WATER_START = 345_120  # litres on the old water meter


@dataclass(frozen=True)
class TwoUtilities:
    account: Account
    electricity: ServicePoint
    water: ServicePoint
    bill: Bill
    # What the readings say, in base units: the expected figures of the bill.
    electricity_end: int
    water_old_end: int
    water_new_end: int


def _tariff(kind: str, unit: str, structure: dict[str, Any], standing: str) -> Tariff:
    tariff = Tariff.objects.create(
        code=f"two-{kind}", name=f"Residential {kind}", kind=kind, currency="TWD",
        quantity_unit=unit,
    )  # fmt: skip
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=dt.date(2026, 1, 1),
        standing_charge=Decimal(standing),
        tax_rate=Decimal("0.05"),
        structure=structure,
    )
    return tariff


def _meter(serial: str, kind: str, unit: str, sp: ServicePoint, since: dt.datetime) -> Meter:
    meter = Meter.objects.create(serial=serial, kind=kind, max_rate=50_000)
    Register.objects.create(
        meter=meter, code="import", unit=unit, is_main=True, interval_seconds=3600
    )
    MeterInstallation.objects.create(meter=meter, service_point=sp, installed_at=since)
    return meter


def _hourly(first: dt.datetime, last: dt.datetime, start: int, per_hour: list[int]) -> list[int]:
    """Cumulative values every hour from `first` to `last` (inclusive): the use of each local
    hour from `per_hour`, a third more at weekends and a day-to-day swing of up to 40 %."""
    values, value, at = [], start, first
    while at <= last:
        values.append(value)
        local = at.astimezone(TAIPEI)
        weekend = 4 if local.weekday() >= 5 else 3
        swing = 10 + (local.day * 7) % 5
        value += per_hour[local.hour] * weekend * swing // 30
        at += dt.timedelta(hours=1)
    return values


def _import(
    serial: str,
    first: dt.datetime,
    values: list[int],
    *,
    unit: str,
    kind: str,
    skip: frozenset[dt.datetime] = frozenset(),
) -> None:
    rows = []
    for i, value in enumerate(values):
        at = first + dt.timedelta(hours=i)
        if at not in skip:
            rows.append((at.astimezone(dt.UTC).isoformat(), f"{Decimal(value) / 1000:f}"))
    batch = run_import(csv_rows(serial, rows, unit=unit, kind=kind), register_meters=False)
    assert batch.status == "done" and batch.rejected == 0, batch.error


def two_utility_bill() -> TwoUtilities:
    """Build the flat, its readings and its bills; return March's bill, issued."""
    organisation = make_organisation("Harbour Residential")
    account = make_account(
        "Harbour View Tower, flat 2B", organisation=organisation, payment_mode="postpaid"
    )
    since = dt.datetime(2026, 1, 1, tzinfo=TAIPEI)
    electricity = ServicePoint.objects.create(
        code="SP-2B-E", kind="electricity", address=ADDRESS, time_zone="Asia/Taipei"
    )
    water = ServicePoint.objects.create(
        code="SP-2B-W", kind="water", address=ADDRESS, time_zone="Asia/Taipei"
    )
    _meter("E-2B-100", "electricity", "Wh", electricity, since)
    old_water = _meter("W-2B-OLD", "water", "L", water, since)
    for sp in (electricity, water):
        supply_start(account=account, service_point=sp, start=since, actor=SYSTEM)
    tiers = {
        "type": "tiered",
        "tiers": [
            {"up_to": "120", "rate": "1.63"},
            {"up_to": "330", "rate": "2.38"},
            {"up_to": None, "rate": "3.52"},
        ],
    }
    for sp, tariff in (
        (electricity, _tariff("electricity", "kWh", tiers, "3")),
        (water, _tariff("water", "m3", {"type": "flat", "rate": "10.5"}, "2")),
    ):
        TariffAssignment.objects.create(
            account=account, service_point=sp, tariff=tariff, valid_from=since.date()
        )

    # January and February from rollups alone: the previous periods on the bill.
    for month, days in ((1, 31), (2, 28)):
        local_hours(account, electricity, dt.date(2026, month, 1), days, wh=300 + 40 * month)
        local_hours(account, water, dt.date(2026, month, 1), days, wh=12 + month)
    for month in (1, 2):
        bill_run_execute(
            period_start=dt.date(2026, month, 1),
            actor=SYSTEM,
            as_of=dt.datetime(2026, month + 1, 2, 1, tzinfo=dt.UTC),
        )

    # March from readings, every hour, a little past the end of the month.
    last = END + dt.timedelta(hours=3)
    use_e = [180] * 7 + [420] * 2 + [260] * 9 + [640] * 5 + [300]  # Wh per local hour
    e_values = _hourly(START, last, ELECTRICITY_START, use_e)
    # The reading at the end of the period never arrived: the import estimates it.
    _import("E-2B-100", START, e_values, unit="kWh", kind="electricity", skip=frozenset({END}))
    use_w = [2] * 6 + [25] * 3 + [8] * 9 + [30] * 4 + [6] * 2  # litres per local hour
    w_old = _hourly(START, EXCHANGE, WATER_START, use_w)
    old_installation = MeterInstallation.objects.get(meter=old_water)
    old_installation.removed_at = EXCHANGE
    old_installation.save(update_fields=["removed_at"])
    _meter("W-2B-NEW", "water", "L", water, EXCHANGE)
    _import("W-2B-OLD", START, w_old, unit="m3", kind="water")
    w_new = _hourly(EXCHANGE, last, 0, use_w)
    _import("W-2B-NEW", EXCHANGE, w_new, unit="m3", kind="water")

    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=ISSUED)
    bill = Bill.objects.select_related("account", "organisation").get(
        account=account, period_start=MARCH
    )
    hours_e = int((END - START) / dt.timedelta(hours=1))
    hours_w_new = int((END - EXCHANGE) / dt.timedelta(hours=1))
    return TwoUtilities(
        account=account,
        electricity=electricity,
        water=water,
        bill=bill,
        # Never read: the import's estimate, halfway between the readings either side.
        electricity_end=e_values[hours_e - 1]
        + (e_values[hours_e + 1] - e_values[hours_e - 1] + 1) // 2,
        water_old_end=w_old[-1],
        water_new_end=w_new[hours_w_new],
    )
