"""Billing reads: wallets, tariffs in force, and the hourly usage that prices are applied to."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from django.db import connection
from django.db.models import Sum

from billing.models import Bill, DailyCharge, TariffVersion, Wallet
from billing.pricing import HourUsage
from meters.models import Direction


def wallet_for_account(*, account_id: int) -> Wallet | None:
    return Wallet.objects.for_account(account_id).select_related("account").first()


def tariff_version_on(*, tariff_id: int, day: dt.date) -> TariffVersion | None:
    """The version of a tariff in force on a local day, if any."""
    return (
        TariffVersion.objects.filter(tariff_id=tariff_id, valid_from__lte=day)
        .exclude(valid_to__lte=day)
        .first()
    )


def hourly_usage(
    *,
    account_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
) -> dict[tuple[int, int], list[HourUsage]]:
    """Validated hourly consumption and export per (account, service point) over [start, end).

    From the hourly rollups, which carry the account of the supply period, so an account is
    never priced for a previous occupant's hours. Suspect readings are already left out of the
    rollups. Hours come back in time order, their start in `time_zone`; one query for all.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    found: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(dict)
    with connection.cursor() as cursor:
        # Hours as epoch seconds: every account of a time zone shares the same hours, so each
        # is turned into a local datetime once, not once per row (measured: parsing 240k
        # timestamps took longer than pricing them).
        cursor.execute(
            """
            SELECT account_id, service_point_id, extract(epoch FROM hour)::bigint, direction,
                   consumption, estimated
            FROM meters_rolluphourly
            WHERE account_id = ANY(%s) AND hour >= %s AND hour < %s
            ORDER BY account_id, service_point_id, hour
            """,
            [list(account_ids), start, end],
        )
        for account_id, sp_id, epoch, direction, consumption, estimated in cursor.fetchall():
            slot = found[(account_id, sp_id)].setdefault(epoch, [0, 0, 0])
            if direction == Direction.EXPORT:
                slot[2] += consumption
            else:
                slot[0] += consumption
                slot[1] += estimated
    local: dict[int, dt.datetime] = {}
    result: dict[tuple[int, int], list[HourUsage]] = {}
    for key, hours in found.items():
        usage = []
        for epoch, (quantity, estimated, export) in hours.items():
            start_local = local.get(epoch)
            if start_local is None:
                start_local = local[epoch] = dt.datetime.fromtimestamp(epoch, zone)
            usage.append(HourUsage(start_local, quantity, estimated, export))
        result[key] = usage
    return result


def hourly_usage_by_slot(
    *,
    account_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    time_zone: str,
) -> dict[tuple[int, int], list[HourUsage]]:
    """Like hourly_usage over one local month, summed per (weekday or weekend, local hour).

    Time-of-use prices depend on nothing else within a month, so a month of one tariff version
    is priced from at most 48 sums instead of ~744 hours (each sum stands at the first hour it
    holds). Only for tier-free structures priced by one version over the whole range.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    result: dict[tuple[int, int], list[HourUsage]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT account_id, service_point_id, min(extract(epoch FROM hour))::bigint,
                   coalesce(sum(consumption) FILTER (WHERE direction <> %(export)s), 0),
                   coalesce(sum(estimated) FILTER (WHERE direction <> %(export)s), 0),
                   coalesce(sum(consumption) FILTER (WHERE direction = %(export)s), 0)
            FROM meters_rolluphourly
            WHERE account_id = ANY(%(accounts)s) AND hour >= %(start)s AND hour < %(end)s
            GROUP BY account_id, service_point_id,
                     extract(isodow FROM hour AT TIME ZONE %(tz)s) >= 6,
                     extract(hour FROM hour AT TIME ZONE %(tz)s)
            ORDER BY 1, 2, 3
            """,
            {
                "export": Direction.EXPORT,
                "accounts": list(account_ids),
                "start": start,
                "end": end,
                "tz": time_zone,
            },
        )
        for account_id, sp_id, epoch, quantity, estimated, export in cursor.fetchall():
            result[(account_id, sp_id)].append(
                HourUsage(
                    dt.datetime.fromtimestamp(epoch, zone),
                    int(quantity),
                    int(estimated),
                    int(export),
                )
            )
    return dict(result)


@dataclass(frozen=True)
class CreditState:
    """A prepaid wallet's balance and how many days it lasts at the recent daily cost."""

    balance: int
    currency: str
    emergency_credit: int
    disconnected: bool
    average_daily_cost: int | None  # minor units; None without charges in the window
    days_left: Decimal | None


def credit_state(*, account_id: int, as_of_day: dt.date, days: int = 14) -> CreditState | None:
    """Days of credit left = balance ÷ average daily charge of the last `days` local days
    (days with charges: a new account is not diluted by days before it), as the shortage
    warnings count it."""
    wallet = Wallet.objects.for_account(account_id).first()
    if wallet is None:
        return None
    totals = list(
        DailyCharge.objects.for_account(account_id)
        .filter(day__gte=as_of_day - dt.timedelta(days=days), day__lt=as_of_day)
        .values("day")
        .annotate(total=Sum("total"))
        .values_list("total", flat=True)
    )
    average = sum(totals) // len(totals) if totals and sum(totals) > 0 else None
    days_left = None
    if average:
        days_left = max(Decimal(0), Decimal(wallet.balance) / Decimal(average)).quantize(
            Decimal("0.1"), rounding=ROUND_DOWN
        )
    return CreditState(
        balance=wallet.balance,
        currency=wallet.currency,
        emergency_credit=wallet.emergency_credit,
        disconnected=wallet.disconnected_at is not None,
        average_daily_cost=average,
        days_left=days_left,
    )


def latest_bill(*, account_id: int) -> Bill | None:
    return (
        Bill.objects.for_account(account_id)
        .filter(credit_note_for__isnull=True)
        .exclude(status=Bill.Status.DRAFT)
        .order_by("-period_start")
        .first()
    )


def bills_for_account(*, account_id: int) -> list[Bill]:
    """Issued, paid and voided bills and credit notes, newest first (drafts are staff's)."""
    return list(
        Bill.objects.for_account(account_id)
        .exclude(status=Bill.Status.DRAFT)
        .order_by("-period_start", "-issued_at")
    )


def bill_for_account(*, account_id: int, public_id: uuid.UUID) -> Bill | None:
    return (
        Bill.objects.for_account(account_id)
        .exclude(status=Bill.Status.DRAFT)
        .filter(public_id=public_id)
        .first()
    )


@dataclass(frozen=True)
class LedgerLine:
    entry_id: int
    created_at: dt.datetime
    kind: str
    memo: str
    amount: int  # minor units, positive when money came in
    balance: int  # after this line


def wallet_ledger(*, account_id: int, limit: int = 200) -> list[LedgerLine]:
    """The wallet's movements, newest first, each with the balance right after it (a window
    over every posting of the wallet, so the running balance is exact)."""
    wallet = Wallet.objects.for_account(account_id).first()
    if wallet is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id, created_at, kind, memo, amount, balance FROM (
                SELECT e.id, e.created_at, e.kind, e.memo, -sum(p.amount) AS amount,
                       -sum(sum(p.amount)) OVER (ORDER BY e.id) AS balance
                FROM billing_posting p JOIN billing_journalentry e ON e.id = p.entry_id
                WHERE p.ledger_account_id = %s
                GROUP BY e.id, e.created_at, e.kind, e.memo
            ) t ORDER BY id DESC LIMIT %s
            """,
            [wallet.ledger_account_id, limit],
        )
        return [LedgerLine(*row) for row in cursor.fetchall()]
