"""Every figure a person sees agrees with every other place it is shown, for every demo
account and day: the day view, the week and month views and their CSVs, the year view, the
prepaid ledger and the postpaid bills. Import and export are never netted, and every wallet
entry says what it is.

The figures are read the way a person reads them: through the pages' CSVs (the same rows the
pages' tables and charts show; a test below holds a page to its CSV), the wallet page and the
bills. The ledger's daily charges and the bills are read from the database they are shown from.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.test import Client

from billing.models import Bill, BillLine, DailyCharge, JournalEntry
from billing.selectors import shortage_alerts_for_account
from meters.models import Direction, RollupDaily, ServicePoint, Supply
from portal.tenancy.models import Account
from tests.consistency.conftest import Demo
from web.panels import bill_to_date
from web.selectors import account_open_alert_count

pytestmark = [pytest.mark.django_db, pytest.mark.xdist_group("consistency")]
ZERO = Decimal(0)


@dataclass
class DayFigures:
    """One local day of one supply as a view shows it: kWh (or m³) and money."""

    imported: Decimal = ZERO
    exported: Decimal = ZERO
    charge: Decimal = ZERO
    credit: Decimal = ZERO
    rows: int = 0

    def add(self, row: dict[str, str]) -> None:
        self.rows += 1
        for name, value in row.items():
            if name.startswith("consumption_"):
                self.imported += Decimal(value)
            elif name.startswith("export_credit_"):
                self.credit += Decimal(value)
            elif name.startswith("export_"):
                self.exported += Decimal(value)
            elif name.startswith(("charge_", "estimated_cost_")):
                self.charge += Decimal(value)

    def figures(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        return (self.imported, self.exported, self.charge, self.credit)


@dataclass
class Shown:
    """What the views show of one supply: per view, its days."""

    account: Account
    service_point: ServicePoint
    days: dict[str, dict[dt.date, DayFigures]] = field(default_factory=dict)


def _csv(client: Client, account: Account, **params: str) -> list[dict[str, str]]:
    response = client.get(f"/a/{account.public_id}/usage/", {**params, "format": "csv"})
    assert response.status_code == 200, (account.number, params, response.status_code)
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def _by_day(rows: list[dict[str, str]]) -> dict[dt.date, DayFigures]:
    days: dict[dt.date, DayFigures] = defaultdict(DayFigures)
    for row in rows:
        days[dt.date.fromisoformat(row["start"][:10])].add(row)
    return days


def _supplies(demo: Demo) -> list[tuple[Account, ServicePoint, dt.date, dt.date]]:
    """Every (account, service point) of the demo with the local days it was supplied, up to
    yesterday (today is still running: it is checked on its own)."""
    found = []
    for account in demo.accounts:
        zone = zoneinfo.ZoneInfo(account.time_zone)
        today = demo.as_of.astimezone(zone).date()
        for supply in Supply.objects.filter(account=account).select_related("service_point"):
            first = supply.start.astimezone(zone).date()
            last = supply.end.astimezone(zone).date() if supply.end else today - dt.timedelta(1)
            found.append((account, supply.service_point, first, min(last, today - dt.timedelta(1))))
    return found


@pytest.fixture(scope="module")
def views(demo: Demo, django_db_blocker: pytest.FixtureRequest) -> dict[tuple[int, int], Shown]:
    """Every supply's days as the day, week and month views' CSVs give them."""
    client = demo.client()
    read: dict[tuple[int, int], Shown] = {}
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        for account, sp, first, last in _supplies(demo):
            supply = read.setdefault((account.pk, sp.pk), Shown(account, sp))
            point = {"service_point": str(sp.public_id)}
            days: dict[str, dict[dt.date, DayFigures]] = {"day": {}, "week": {}, "month": {}}
            day = first
            while day <= last:
                rows = _csv(client, account, **point, range="day", end=day.isoformat())
                days["day"][day] = _by_day(rows)[day]
                day += dt.timedelta(days=1)
            end = last
            while end >= first:
                rows = _csv(client, account, **point, range="week", end=end.isoformat())
                days["week"].update(_by_day(rows))
                end -= dt.timedelta(days=7)
            month = first.replace(day=1)
            while month <= last:
                rows = _csv(client, account, **point, range="month", end=month.isoformat())
                days["month"].update(_by_day(rows))
                month = (month + dt.timedelta(days=32)).replace(day=1)
            for name, found in days.items():
                supply.days.setdefault(name, {}).update(
                    {d: f for d, f in found.items() if first <= d <= last}
                )
    return read


def test_a_day_is_the_same_in_the_day_week_and_month_views(
    views: dict[tuple[int, int], Shown],
) -> None:
    checked = 0
    for supply in views.values():
        for day, shown in supply.days["day"].items():
            where = (supply.account.number, supply.service_point.code, day)
            assert shown.rows, where
            assert supply.days["week"][day].figures() == shown.figures(), where
            assert supply.days["month"][day].figures() == shown.figures(), where
            checked += 1
    assert checked > 2000  # every day of every supply, not a sample


def test_the_prepaid_ledger_charged_each_day_what_the_views_show(
    views: dict[tuple[int, int], Shown],
) -> None:
    charged = 0
    for (account_id, sp_id), supply in views.items():
        if supply.account.payment_mode != Account.PaymentMode.PREPAID:
            continue
        for charge in DailyCharge.objects.filter(account_id=account_id, service_point_id=sp_id):
            shown = supply.days["day"][charge.day]
            where = (supply.account.number, supply.service_point.code, charge.day)
            assert Decimal(charge.total) / 100 == shown.charge, where
            assert Decimal(charge.credit) / 100 == shown.credit, where
            assert (Decimal(charge.consumption) / 1000, Decimal(charge.export) / 1000) == (
                shown.imported,
                shown.exported,
            ), where
            charged += 1
    assert charged > 500


def test_a_bill_is_the_sum_of_the_days_the_views_show(
    views: dict[tuple[int, int], Shown],
) -> None:
    bills = list(Bill.objects.filter(credit_note_for__isnull=True).select_related("account"))
    assert len(bills) >= 15
    for bill in bills:
        days = [
            (sp_id, day, figures)
            for (account_id, sp_id), supply in views.items()
            if account_id == bill.account_id
            for day, figures in supply.days["month"].items()
            if bill.period_start <= day < bill.period_end
        ]
        where = (bill.account.number, bill.period_start)
        net = sum((f.charge - f.credit for _sp, _d, f in days), ZERO)
        assert Decimal(bill.total) / 100 == net, where
        for sp_id in {sp for sp, _d, _f in days}:
            lines = bill.lines.filter(service_point_id=sp_id)
            used = sum(
                (line.quantity for line in lines if line.kind == BillLine.Kind.CONSUMPTION), ZERO
            )
            exported = sum(
                (line.quantity for line in lines if line.kind == BillLine.Kind.EXPORT), ZERO
            )
            assert used == sum((f.imported for s, _d, f in days if s == sp_id), ZERO), where
            if exported:
                assert exported == sum((f.exported for s, _d, f in days if s == sp_id), ZERO)


def test_import_and_export_are_never_netted(views: dict[tuple[int, int], Shown]) -> None:
    exporting = 0
    for (account_id, sp_id), supply in views.items():
        rollups = {
            (r.day, r.direction): r.consumption
            for r in RollupDaily.objects.filter(account_id=account_id, service_point_id=sp_id)
        }
        for day, shown in supply.days["day"].items():
            where = (supply.account.number, supply.service_point.code, day)
            assert shown.imported == Decimal(rollups.get((day, Direction.IMPORT), 0)) / 1000, where
            assert shown.exported == Decimal(rollups.get((day, Direction.EXPORT), 0)) / 1000, where
            assert shown.charge >= 0 and shown.credit >= 0, where
            exporting += shown.exported > 0
    assert exporting > 30  # the solar household exports on most days


def test_a_month_is_the_sum_of_its_days(demo: Demo, views: dict[tuple[int, int], Shown]) -> None:
    client = demo.client()
    for supply in views.values():
        rows = _csv(
            client,
            supply.account,
            service_point=str(supply.service_point.public_id),
            range="year",
            end=demo.as_of.date().isoformat(),
        )
        months: dict[dt.date, DayFigures] = defaultdict(DayFigures)
        for day, figures in supply.days["month"].items():
            month = months[day.replace(day=1)]
            month.imported += figures.imported
            month.exported += figures.exported
            month.charge += figures.charge
            month.credit += figures.credit
        for row in rows:
            first = dt.date.fromisoformat(row["start"])
            days = supply.days["month"]
            whole = all(
                d in days
                for d in (first, (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(1))
            )
            if not whole:
                continue  # the supply began or ended within the month
            shown = DayFigures()
            shown.add(row)
            assert shown.figures() == months[first].figures(), (supply.account.number, first)


def test_every_wallet_entry_is_labelled_by_what_it_did(demo: Demo) -> None:
    client = demo.client()
    seen: set[str] = set()
    for account in demo.accounts:
        if account.payment_mode != Account.PaymentMode.PREPAID:
            continue
        response = client.get(f"/a/{account.public_id}/wallet/")
        assert response.status_code == 200
        for row in response.context["lines"]:
            line = row["line"]
            seen.add(line.kind)
            label = str(JournalEntry.Kind(line.kind).label).capitalize()
            assert row["label"] == label
            money_in = line.kind in (JournalEntry.Kind.TOPUP, JournalEntry.Kind.EXPORT_CREDIT)
            money_out = line.kind == JournalEntry.Kind.CHARGE
            if money_in:
                assert line.amount > 0, (account.number, row)
            if money_out:
                assert line.amount < 0, (account.number, row)
    assert {
        JournalEntry.Kind.CHARGE,
        JournalEntry.Kind.EXPORT_CREDIT,
        JournalEntry.Kind.TOPUP,
    } <= seen


def test_every_open_credit_warning_is_an_alert_on_the_home_and_the_organisation_table(
    demo: Demo,
) -> None:
    client = demo.client()
    response = client.get(f"/o/{demo.group.public_id}/accounts/export.csv")
    assert response.status_code == 200
    table = {
        row["account_number"]: int(row["open_alerts"])
        for row in csv.DictReader(io.StringIO(response.getvalue().decode()))
    }
    warned = 0
    for account in demo.accounts:
        today = demo.as_of.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
        warnings = shortage_alerts_for_account(
            account_id=account.pk, as_of_day=today, open_only=True
        )
        warned += len(warnings)
        home = client.get(f"/a/{account.public_id}/")
        panels = {panel.template: panel.context for panel in home.context["panels"]}
        count = panels["web/panels/alerts.html"]["count"]
        assert count >= len(warnings), account.number
        assert count == account_open_alert_count(
            account=account, as_of=demo.as_of, credit_alerts=True
        )
        if account.organisation_id is not None:
            assert table[account.number] == count, account.number
    assert warned > 0


def test_the_home_tells_the_credit_as_the_ledger_has_it(demo: Demo) -> None:
    client = demo.client()
    for account in demo.accounts:
        home = client.get(f"/a/{account.public_id}/")
        text = home.content.decode()
        today = demo.as_of.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()
        if account.payment_mode == Account.PaymentMode.PREPAID:
            recent = DailyCharge.objects.filter(
                account=account, day__gte=today - dt.timedelta(days=14), day__lt=today
            )
            if recent.exists():
                assert "No charges in the last two weeks yet" not in text, account.number
        else:
            # This month so far, as the month view's days add up (charge less credit).
            first = today.replace(day=1)
            found = bill_to_date(account, demo.as_of)
            assert found is not None, account.number
            shown = _month_so_far(client, account, first)
            assert Decimal(found[0]) / 100 == shown, account.number


def _month_so_far(client: Client, account: Account, first: dt.date) -> Decimal:
    total = ZERO
    for sp in ServicePoint.objects.filter(supplies__account=account).distinct():
        rows = _csv(
            client, account, service_point=str(sp.public_id), range="month", end=first.isoformat()
        )
        for figures in _by_day(rows).values():
            total += figures.charge - figures.credit
    return total
