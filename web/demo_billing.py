"""Demo billing for `make run`: tariffs, wallets with top-ups and daily charges, warnings and
the postpaid accounts' bills, all made through the billing services like everything else.

Idempotent: tariffs are found by code, assignments and wallets by account, top-ups by their
idempotency key, charges by day and bills by period, so a second run adds only what the newer
readings allow.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing.models import Bill, BillRun, Tariff, TariffAssignment, TariffVersion, Wallet
from billing.services.bills import bill_mark_paid, bill_run_execute
from billing.services.charging import prepaid_charge_day
from billing.services.ledger import wallet_create
from billing.services.tariffs import tariff_assign, tariff_save, tariff_version_save
from billing.services.topups import topup_create, topup_settle_paid
from billing.services.warnings import shortage_warnings_run
from meters.models import Supply
from portal.audit.actors import Actor
from portal.lib.periods import month_start, next_month, previous_month
from portal.tenancy.models import Account, Organisation

logger = logging.getLogger("web.demo")  # seed_demo prints it as progress

CHARGE_DAYS = 60  # days of prepaid charges up to yesterday
EMERGENCY_CREDIT = 300_00  # minor units of TWD

_SUMMER = [6, 7, 8, 9]
_OTHER = [1, 2, 3, 4, 5, 10, 11, 12]


def _tiers(rates: list[str]) -> dict[str, Any]:
    bounds = ["120", "330", "500", "700", "1000", None]
    return {
        "type": "tiered",
        "tiers": [{"up_to": b, "rate": r} for b, r in zip(bounds, rates, strict=True)],
    }


# code: (name, kind, unit, contract of the group?, standing/day, export rate, structure)
TARIFFS: dict[str, tuple[str, str, str, bool, str, str | None, dict[str, Any]]] = {
    "demo-home-electricity": (
        "Residential electricity (seasonal blocks)",
        "electricity",
        "kWh",
        False,
        "0",
        "4.5",
        {
            "type": "seasonal",
            "seasons": [
                {
                    "name": "summer",
                    "months": _SUMMER,
                    "structure": _tiers(["1.68", "2.45", "3.70", "5.04", "6.24", "8.46"]),
                },
                {
                    "name": "non-summer",
                    "months": _OTHER,
                    "structure": _tiers(["1.68", "2.16", "3.03", "4.14", "5.07", "6.63"]),
                },
            ],
        },
    ),
    "demo-business-tou": (
        "Harbour Holdings business time-of-use (contract)",
        "electricity",
        "kWh",
        True,
        "120",
        None,
        {
            "type": "tou",
            "bands": [
                {"name": "peak", "days": "weekdays", "from": 9, "to": 24, "rate": "5.10"},
                {"name": "off-peak", "days": "weekdays", "from": 0, "to": 9, "rate": "2.20"},
                {"name": "weekend", "days": "weekends", "from": 0, "to": 24, "rate": "2.20"},
            ],
        },
    ),
    "demo-water": (
        "Water (blocks)",
        "water",
        "m3",
        False,
        "2",
        None,
        {
            "type": "tiered",
            "tiers": [
                {"up_to": "10", "rate": "10"},
                {"up_to": "30", "rate": "12"},
                {"up_to": "50", "rate": "14"},
                {"up_to": None, "rate": "15"},
            ],
        },
    ),
    "demo-gas": ("Gas", "gas", "m3", False, "5", None, {"type": "flat", "rate": "18.5"}),
    "demo-nl-electricity": (
        "Electricity, Netherlands (flat)",
        "electricity",
        "kWh",
        False,
        "0.75",
        None,
        {"type": "flat", "rate": "0.285"},
    ),
}
# Tariffs priced in another currency than TWD, and their tax rate.
TARIFF_CURRENCY: dict[str, tuple[str, str]] = {"demo-nl-electricity": ("EUR", "0.21")}
# A price change in force from the 15th of last month: the month's tiers count on across it.
REPRICED: dict[str, dict[str, Any]] = {
    "demo-home-electricity": {
        "type": "seasonal",
        "seasons": [
            {
                "name": "summer",
                "months": _SUMMER,
                "structure": _tiers(["1.78", "2.55", "3.80", "5.14", "6.34", "8.56"]),
            },
            {
                "name": "non-summer",
                "months": _OTHER,
                "structure": _tiers(["1.78", "2.26", "3.13", "4.24", "5.17", "6.73"]),
            },
        ],
    },
}
# Top-ups (days before today, TWD): a low one for flat 2A, whose credit runs short.
TOPUPS: dict[str, list[tuple[int, int]]] = {
    "HR-0101": [(60, 1500), (30, 1500)],
    "HR-0102": [(60, 1200), (30, 1200)],
    "HR-0201": [(60, 1500)],
    "RH-0001": [(60, 2000), (28, 2000)],
    "RH-0003": [(60, 1200), (32, 1200), (5, 800)],
    "HR-0301": [(60, 1200)],
    "RH-0004": [(60, 60), (30, 60)],  # euros
}
BILL_MONTHS = 3  # issued bills of every postpaid account: one paid, one overdue, one open


@dataclass
class DemoBilling:
    tariffs: int = 0
    charges: int = 0
    topups: int = 0
    bills: int = 0
    warnings: int = 0


def _tariffs(
    group: Organisation | None, first_day: dt.date, repriced_from: dt.date, actor: Actor
) -> dict[str, Tariff]:
    found = {t.code: t for t in Tariff.objects.filter(code__in=TARIFFS)}
    for code, (name, kind, unit, contract, standing, export, structure) in TARIFFS.items():
        if code in found:
            continue
        currency, tax = TARIFF_CURRENCY.get(code, ("TWD", "0.05"))
        tariff = tariff_save(
            instance=Tariff(
                code=code,
                name=name,
                kind=kind,
                currency=currency,
                quantity_unit=unit,
                organisation=group if contract else None,
            ),
            actor=actor,
        )
        changed = REPRICED.get(code)
        first = tariff_version_save(
            instance=TariffVersion(
                tariff=tariff,
                valid_from=first_day,
                valid_to=repriced_from if changed and repriced_from > first_day else None,
                standing_charge=Decimal(standing),
                tax_rate=Decimal(tax),
                export_rate=Decimal(export) if export else None,
                structure=structure,
            ),
            actor=actor,
        )
        if first.valid_to is not None and changed is not None:
            tariff_version_save(
                instance=TariffVersion(
                    tariff=tariff,
                    valid_from=repriced_from,
                    standing_charge=first.standing_charge,
                    tax_rate=first.tax_rate,
                    export_rate=first.export_rate,
                    structure=changed,
                ),
                actor=actor,
            )
        found[code] = tariff
    return found


def _tariff_for(account: Account, kind: str, tariffs: dict[str, Tariff]) -> Tariff:
    if account.currency == "EUR":
        return tariffs[f"demo-nl-{kind}"]
    if kind == "electricity":
        business = account.number.startswith("HC-")
        return tariffs["demo-business-tou" if business else "demo-home-electricity"]
    return tariffs[f"demo-{kind}"]


def _valid_days(supply: Supply) -> tuple[dt.date, dt.date | None]:
    """The local days a supply's tariff must cover: from its first day to the day after its
    last (a move-out at 14:00 still prices that morning)."""
    zone = zoneinfo.ZoneInfo(supply.account.time_zone)
    first = supply.start.astimezone(zone).date()
    if supply.end is None:
        return first, None
    end = supply.end.astimezone(zone)
    return first, end.date() + dt.timedelta(days=1 if end.time() != dt.time() else 0)


def demo_billing_load(
    *,
    accounts: dict[str, Account],
    group: Organisation | None,
    actor: Actor,
    as_of: dt.datetime,
    time_zone: str,
) -> DemoBilling:
    """Tariffs and assignments for every demo supply, wallets, top-ups and charges for the
    prepaid accounts over the last CHARGE_DAYS days, the shortage warnings of today, and the
    postpaid accounts' bills of the last BILL_MONTHS months."""
    zone = zoneinfo.ZoneInfo(time_zone)
    today = as_of.astimezone(zone).date()
    result = DemoBilling()
    supplies = list(
        Supply.objects.filter(account__in=list(accounts.values())).select_related(
            "service_point", "account"
        )
    )
    if not supplies:
        return result
    first_day = min(s.start for s in supplies).astimezone(zone).date()
    logger.info("tariffs: one for every supply")
    last_month = previous_month(today)
    tariffs = _tariffs(group, month_start(first_day), last_month.replace(day=15), actor)
    result.tariffs = len(tariffs)
    for supply in supplies:
        if TariffAssignment.objects.filter(
            account=supply.account, service_point=supply.service_point
        ).exists():
            continue
        valid_from, valid_to = _valid_days(supply)
        tariff_assign(
            account=supply.account,
            service_point=supply.service_point,
            tariff=_tariff_for(supply.account, supply.service_point.kind, tariffs),
            valid_from=valid_from,
            valid_to=valid_to,
            actor=actor,
        )
    prepaid = [a for a in accounts.values() if a.payment_mode == Account.PaymentMode.PREPAID]
    for account in prepaid:
        if not Wallet.objects.filter(account=account).exists():
            credit = EMERGENCY_CREDIT if account.currency == "TWD" else EMERGENCY_CREDIT // 30
            wallet_create(account=account, actor=actor, emergency_credit=credit)
    for zone_name in sorted({a.time_zone for a in prepaid}):
        _charge_days(
            [a for a in prepaid if a.time_zone == zone_name],
            zone=zoneinfo.ZoneInfo(zone_name),
            first_day=first_day,
            as_of=as_of,
            actor=actor,
            result=result,
        )
    logger.info("shortage warnings")
    result.warnings = shortage_warnings_run(as_of=as_of, actor=actor).warnings
    logger.info("bills: the last %d months of every postpaid account", BILL_MONTHS)
    result.bills = _bills(first_day=first_day, today=today, zone=zone, actor=actor)
    return result


def _charge_days(
    accounts: list[Account],
    *,
    zone: zoneinfo.ZoneInfo,
    first_day: dt.date,
    as_of: dt.datetime,
    actor: Actor,
    result: DemoBilling,
) -> None:
    """Day by day, so that the ledger reads as it would have happened: top-ups in the
    morning, yesterday's charge at 07:00 (local)."""
    today = as_of.astimezone(zone).date()
    start = max(first_day + dt.timedelta(days=1), today - dt.timedelta(days=CHARGE_DAYS))
    logger.info("wallets, top-ups and daily charges: %d days", (today - start).days + 1)
    day = start
    while day <= today:
        morning = dt.datetime.combine(day, dt.time(7), zone)
        if morning > as_of:
            break
        for account in accounts:
            for days_before, amount in TOPUPS.get(account.number, []):
                if max(start, today - dt.timedelta(days=days_before)) == day:
                    result.topups += _demo_topup(
                        account, amount * 100, morning, actor, tag=str(days_before)
                    )
        run = prepaid_charge_day(
            day=day - dt.timedelta(days=1), time_zone=str(zone), actor=actor, as_of=morning
        )
        result.charges += run.charged
        day += dt.timedelta(days=1)


def _bills(*, first_day: dt.date, today: dt.date, zone: zoneinfo.ZoneInfo, actor: Actor) -> int:
    """The last BILL_MONTHS months' bill runs, each issued on the 2nd of the month after: the
    oldest month's bills paid, the next overdue by now, the latest still open."""
    made = 0
    month = month_start(today)
    months = []
    for _ in range(BILL_MONTHS):
        month = previous_month(month)
        if month >= month_start(first_day):
            months.append(month)
    for period_start in reversed(months):
        following = next_month(period_start)
        issued = dt.datetime.combine(following + dt.timedelta(days=1), dt.time(9), zone)
        if BillRun.objects.filter(period_start=period_start).exists():
            continue
        run = bill_run_execute(period_start=period_start, actor=actor, as_of=issued)
        made += run.bills
        if period_start == months[-1]:
            paid_at = issued + dt.timedelta(days=6)
            for bill in Bill.objects.filter(
                run=run, status=Bill.Status.ISSUED, credit_note_for__isnull=True
            ):
                bill_mark_paid(bill=bill, actor=actor, as_of=paid_at)
    return made


def _demo_topup(account: Account, amount: int, when: dt.datetime, actor: Actor, *, tag: str) -> int:
    key = f"demo:{account.number}:{tag}"
    topup, new = topup_create(
        account=account, amount=amount, idempotency_key=key, actor=actor, as_of=when
    )
    if topup.entry_id is not None:
        return 0
    topup_settle_paid(
        topup_id=topup.pk,
        provider_ref=topup.provider_ref or f"demo-{topup.public_id}",
        amount=amount,
        currency=topup.currency,
        actor=actor,
        as_of=when + dt.timedelta(minutes=2),
    )
    return 1 if new else 0
