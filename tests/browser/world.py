"""The browser tests' world: a group with two subsidiaries, a prepaid and a postpaid household
with about fourteen months of consumption, an issued bill, a wallet with postings, an open alert.

Dates follow the real clock, because the live server does: "this month" is the current month.
The last two local days arrive through the real import pipeline (15-minute readings, so the day
chart has data); older days are written as the rollups the pipeline would have made, which is
what every chart longer than a day reads.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from billing.models import Bill, TariffAssignment, TopUp, Wallet
from billing.services.bills import bill_create, bill_issue, bill_mark_paid
from billing.services.charging import prepaid_charge_day
from billing.services.ledger import wallet_create
from billing.services.topups import topup_create, topup_settle_paid
from meters.models import Meter, MeterEvent, RollupDaily, RollupHourly, ServicePoint
from meters.services.supply import supply_start
from portal.tenancy.models import Account, Organisation
from portal.tenancy.roles import Role
from portal.users.models import User
from tests.billing.helpers import make_tariff
from tests.factories import SYSTEM, make_account, make_membership, make_organisation, make_user
from tests.meters.helpers import csv_rows, run_import

TZ = "Asia/Taipei"
ZONE = zoneinfo.ZoneInfo(TZ)
HISTORY_DAYS = 430  # a little over fourteen months: a year ago and the period before have data
HOURLY_DAYS = 70  # hours too for this month and the one before (charts, cost overlay)


@dataclass
class Harbour:
    today: dt.date
    group: Organisation
    residential: Organisation
    commercial: Organisation
    prepaid: Account
    postpaid: Account
    shop: Account
    wallet: Wallet
    bill: Bill
    resident: User
    viewer: User
    group_manager: User

    def data_texts(self) -> list[str]:
        """Strings the pages show as data, never to be translated (names, numbers, codes)."""
        texts: list[str] = [TZ, "TWD", SYSTEM.label]
        texts += [o.name for o in Organisation.objects.all()]
        for account in Account.objects.all():
            texts += [account.name, account.number]
        texts += [u.email for u in User.objects.all()] + [u.name for u in User.objects.all()]
        texts += [sp.code for sp in ServicePoint.objects.all()]
        texts += list(TariffAssignment.objects.values_list("tariff__name", flat=True))
        texts += list(TariffAssignment.objects.values_list("tariff__code", flat=True))
        texts += list(TopUp.objects.values_list("provider", flat=True))
        with connection.cursor() as cursor:
            cursor.execute("SELECT serial FROM meters_meter")
            texts += [row[0] for row in cursor.fetchall()]
        # Longest first, so that a name containing another is removed whole.
        return sorted({t for t in texts if t}, key=len, reverse=True)


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC)


def _hour_wh(local: dt.datetime) -> int:
    """A household's hour: a morning and an evening peak, more in summer, less at weekends."""
    h = local.hour
    shape = 180 + 420 * math.exp(-((h - 7.5) ** 2) / 3) + 900 * math.exp(-((h - 20) ** 2) / 5)
    season = 1 + 0.35 * math.cos((local.timetuple().tm_yday - 200) / 365 * 2 * math.pi)
    weekend = 1.15 if local.weekday() >= 5 else 1.0
    return round(shape * season * weekend)


def _day_wh(day: dt.date, scale: float = 1.0) -> int:
    start = dt.datetime.combine(day, dt.time(), ZONE)
    return round(scale * sum(_hour_wh(start + dt.timedelta(hours=h)) for h in range(24)))


def _history(
    account: Account, sp: ServicePoint, *, first_day: dt.date, until: dt.date, scale: float
) -> None:
    """Daily rollups [first_day, until) and hourly ones for the last HOURLY_DAYS of them.

    The 12th of every month is estimated through and through, as a gap filled in would be.
    """
    daily = []
    for d in range((until - first_day).days):
        day = first_day + dt.timedelta(days=d)
        wh = _day_wh(day, scale)
        daily.append(
            RollupDaily(
                service_point=sp,
                direction="import",
                day=day,
                account=account,
                consumption=wh,
                estimated=wh if day.day == 12 else 0,
                reading_count=96,
                hours=24,
            )
        )
    RollupDaily.objects.bulk_create(daily)
    hourly = []
    start = _local_midnight(until - dt.timedelta(days=HOURLY_DAYS))
    for i in range(HOURLY_DAYS * 24):
        hour = start + dt.timedelta(hours=i)
        local = hour.astimezone(ZONE)
        wh = round(scale * _hour_wh(local))
        hourly.append(
            RollupHourly(
                service_point=sp,
                direction="import",
                hour=hour,
                account=account,
                consumption=wh,
                estimated=wh if local.day == 12 else 0,
                reading_count=4,
            )
        )
    RollupHourly.objects.bulk_create(hourly)


def _recent_readings(
    serial: str, *, since: dt.date, as_of: dt.datetime, scale: float
) -> ServicePoint:
    """15-minute readings from local midnight of `since` up to now, through the importer.

    The importer registers the unknown meter at the service point coded SP-<serial>, made
    here first so that it keeps local days in Taipei (the importer's default is UTC).
    """
    sp = ServicePoint.objects.create(code=f"SP-{serial}", kind="electricity", time_zone=TZ)
    start = _local_midnight(since)
    count = int((as_of - start).total_seconds() // 900) + 1
    value = 12_345.0
    rows: list[tuple[str, object]] = []
    for i in range(count):
        ts = start + dt.timedelta(minutes=15 * i)
        if i:
            value += scale * _hour_wh(ts.astimezone(ZONE)) / 4 / 1000
        rows.append((ts.isoformat(), round(value, 3)))
    run_import(csv_rows(serial, rows), received=as_of)
    return sp


def harbour_seed() -> Harbour:
    now = timezone.now()
    today = now.astimezone(ZONE).date()
    since = _local_midnight(today - dt.timedelta(days=HISTORY_DAYS))
    group = make_organisation("Harbour Holdings")
    residential = make_organisation("Harbour Residential", parent=group)
    commercial = make_organisation("Harbour Commercial", parent=group)
    prepaid = make_account("Lin household, flat 3A", organisation=residential)
    postpaid = make_account("Lin family shop", organisation=residential, payment_mode="postpaid")
    make_account("Harbour View Tower, flat 1B", organisation=residential)
    shop = make_account("Pier 3 Warehouse", organisation=commercial, payment_mode="postpaid")
    make_account("Harbour Food Court", organisation=commercial, payment_mode="postpaid")

    recent = today - dt.timedelta(days=1)
    tariff = make_tariff(valid_from=since.astimezone(ZONE).date().replace(day=1))
    supplies: dict[str, tuple[Account, float]] = {
        "LIN-E1": (prepaid, 1.0),
        "SHOP-E1": (postpaid, 1.8),
        "PIER-E1": (shop, 6.0),
    }
    points: dict[str, ServicePoint] = {}
    for serial, (account, scale) in supplies.items():
        sp = _recent_readings(serial, since=recent, as_of=now, scale=scale)
        supply_start(account=account, service_point=sp, start=since, actor=SYSTEM)
        TariffAssignment.objects.create(
            account=account, service_point=sp, tariff=tariff, valid_from=since.date()
        )
        _history(
            account,
            sp,
            first_day=today - dt.timedelta(days=HISTORY_DAYS),
            until=recent,
            scale=scale,
        )
        points[serial] = sp

    # The prepaid wallet: two top-ups and the last two weeks' daily charges.
    wallet = wallet_create(account=prepaid, actor=SYSTEM, emergency_credit=300_00)
    for days_before, amount in ((40, 1000_00), (9, 500_00)):
        when = dt.datetime.combine(today - dt.timedelta(days=days_before), dt.time(8), ZONE)
        topup, _new = topup_create(
            account=prepaid,
            amount=amount,
            idempotency_key=f"seed-{days_before}",
            actor=SYSTEM,
            as_of=when,
        )
        topup_settle_paid(
            topup_id=topup.pk,
            provider_ref=f"seed-{topup.public_id}",
            amount=amount,
            currency=topup.currency,
            actor=SYSTEM,
            as_of=when + dt.timedelta(minutes=2),
        )
    for back in range(14, 0, -1):
        day = today - dt.timedelta(days=back)
        prepaid_charge_day(
            day=day,
            time_zone=TZ,
            actor=SYSTEM,
            as_of=dt.datetime.combine(day + dt.timedelta(days=1), dt.time(7), ZONE),
        )

    # The shop's bills: the month before last, paid; last month, issued and due.
    this_month = today.replace(day=1)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    before = (last_month - dt.timedelta(days=1)).replace(day=1)
    issued_at = _local_midnight(last_month) + dt.timedelta(days=4)
    older = bill_issue(
        bill=bill_create(account=postpaid, period_start=before, actor=SYSTEM, as_of=issued_at),
        actor=SYSTEM,
        as_of=issued_at,
    )
    bill_mark_paid(bill=older, actor=SYSTEM, as_of=issued_at + dt.timedelta(days=10))
    issued_at = _local_midnight(this_month) + dt.timedelta(hours=10)
    bill = bill_issue(
        bill=bill_create(account=postpaid, period_start=last_month, actor=SYSTEM, as_of=issued_at),
        actor=SYSTEM,
        as_of=min(issued_at, now),
    )

    sp = points["LIN-E1"]
    MeterEvent.objects.create(
        meter=Meter.objects.get(serial="LIN-E1"),
        service_point=sp,
        account=prepaid,
        kind=MeterEvent.Kind.BATTERY_LOW,
        severity=MeterEvent.Severity.WARNING,
        occurred_at=now - dt.timedelta(hours=5),
        data={"battery_percent": 9},
    )

    resident = make_user("lin@example.com")
    viewer = make_user("viewer@example.com")
    group_manager = make_user("group.manager@example.com")
    make_membership(resident, Role.OWNER, account=prepaid)
    make_membership(resident, Role.OWNER, account=postpaid)
    make_membership(viewer, Role.VIEWER, account=prepaid)
    make_membership(group_manager, Role.MANAGER, organisation=group)
    return Harbour(
        today=today,
        group=group,
        residential=residential,
        commercial=commercial,
        prepaid=prepaid,
        postpaid=postpaid,
        shop=shop,
        wallet=wallet,
        bill=bill,
        resident=resident,
        viewer=viewer,
        group_manager=group_manager,
    )
