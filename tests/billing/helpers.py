"""Billing test fixtures: a supplied service point with a tariff, and rollups written directly."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from billing.models import DailyCharge, Tariff, TariffAssignment, TariffVersion, Wallet
from billing.services.ledger import wallet_create
from meters.models import Meter, MeterInstallation, RollupHourly, ServicePoint
from meters.services.supply import supply_start
from portal.tenancy.models import Account
from tests.factories import SYSTEM, make_account

_n = itertools.count(1)
FLAT = {"type": "flat", "rate": "2.5"}


def make_tariff(
    structure: dict[str, Any] | None = None,
    *,
    valid_from: dt.date = dt.date(2026, 1, 1),
    standing: str = "10",
    tax: str = "0.05",
    kind: str = "electricity",
    currency: str = "TWD",
    export_rate: str | None = None,
) -> Tariff:
    tariff = Tariff.objects.create(
        code=f"t{next(_n)}",
        name="Residential",
        kind=kind,
        currency=currency,
        quantity_unit="kWh" if kind != "water" else "m3",
    )
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=valid_from,
        standing_charge=Decimal(standing),
        tax_rate=Decimal(tax),
        structure=structure or FLAT,
        export_rate=Decimal(export_rate) if export_rate else None,
    )
    return tariff


def supplied(
    account: Account | None = None,
    *,
    tariff: Tariff | None = None,
    since: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    kind: str = "electricity",
) -> tuple[Account, ServicePoint, Wallet]:
    """A prepaid account supplied at a new service point with a meter and a tariff."""
    account = account or make_account()
    n = next(_n)
    sp = ServicePoint.objects.create(code=f"SP{n}", kind=kind, time_zone=account.time_zone)
    meter = Meter.objects.create(serial=f"M{n}", kind=kind, max_rate=50_000)
    MeterInstallation.objects.create(meter=meter, service_point=sp, installed_at=since)
    supply_start(account=account, service_point=sp, start=since, actor=SYSTEM)
    TariffAssignment.objects.create(
        account=account,
        service_point=sp,
        tariff=tariff or make_tariff(kind=kind),
        valid_from=since.date(),
    )
    return account, sp, wallet_create(account=account, actor=SYSTEM)


def hours(
    account: Account, sp: ServicePoint, start: dt.datetime, wh: list[int], *, estimated: int = 0
) -> None:
    """Hourly consumption (Wh) from `start` (UTC), as the import's rollups would hold it."""
    RollupHourly.objects.bulk_create(
        RollupHourly(
            service_point=sp,
            direction="import",
            hour=start + dt.timedelta(hours=i),
            account=account,
            consumption=value,
            estimated=estimated,
            reading_count=4,
        )
        for i, value in enumerate(wh)
    )


def bill_numbers(sequence: int, *, prefix: str = "RES", year: int = 2026) -> dict[str, Any]:
    """The fields an issued bill made by hand needs (a constraint refuses it without them):
    its place in the series, its printed number and its payment reference."""
    from billing.services.bill_numbers import bill_number_format, bill_payment_reference

    number = bill_number_format(prefix=prefix, year=year, sequence_number=sequence)
    return {
        "sequence_number": sequence,
        "number": number,
        "payment_reference": bill_payment_reference(account_number="T", bill_number=number),
    }


def charge_history(
    account: Account,
    sp: ServicePoint,
    *,
    daily: int,
    today: dt.date,
    as_of: dt.datetime,
    consumption: int = 1000,
    days: int = 14,
) -> None:
    """Daily charges of `daily` minor units for the `days` days before `today`, at the account's
    tariff: the history the credit state averages over."""
    version = TariffVersion.objects.filter(tariff__assignments__account=account).first()
    DailyCharge.objects.bulk_create(
        DailyCharge(
            account=account,
            service_point=sp,
            day=today - dt.timedelta(days=back),
            tariff_version=version,
            consumption=consumption,
            net=daily,
            tax=0,
            total=daily,
            created_at=as_of,
        )
        for back in range(1, days + 1)
    )
