"""seed_demo creates the demo once; running it again changes nothing at all.

`make run` seeds a year of readings; these tests ask for a few days (--days), which goes
through exactly the same code.
"""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from meters.models import Direction, ImportBatch, MeterEvent, Quality, Reading, ServicePoint, Supply
from meters.periods import Resolution
from meters.selectors.consumption import consumption_series
from portal.audit.selectors import audit_chain_verify
from portal.tenancy.models import Account, Membership, Organisation
from portal.tenancy.roles import Role
from web.demo import ABROAD, DEMO_METERS, DEMO_PASSWORD, HOUSEHOLDS, MOVES

pytestmark = pytest.mark.django_db
DAYS = "2"  # of readings: enough to exercise the meters and the import, and quick


def _counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def test_seed_demo_builds_the_demo_and_prints_the_logins() -> None:
    out = StringIO()
    call_command("seed_demo", "--days", DAYS, stdout=out)
    text = out.getvalue()
    group = Organisation.objects.get(name="Harbour Holdings", parent=None)
    subsidiaries = Organisation.objects.filter(parent=group)
    assert subsidiaries.count() == 2
    for subsidiary in subsidiaries:
        assert Account.objects.filter(organisation=subsidiary).count() >= 3
    assert Account.objects.filter(organisation__isnull=True).count() == len(HOUSEHOLDS)
    assert {Role(m.role) for m in Membership.objects.all()} == set(Role)
    assert "admin@example.com" in text and DEMO_PASSWORD in text
    assert audit_chain_verify().ok


def test_running_it_twice_changes_nothing() -> None:
    call_command("seed_demo", "--days", DAYS, stdout=StringIO())
    first = _counts()
    assert first["meters.ImportBatch"] > 0 and first["meters.Reading"] > 0
    out = StringIO()
    call_command("seed_demo", "--days", DAYS, stdout=out)
    assert _counts() == first
    assert "0 objects created" in out.getvalue()
    assert "already up to date" in out.getvalue()


def test_the_seeded_logins_work() -> None:
    call_command("seed_demo", "--days", DAYS, "--no-readings", stdout=StringIO())
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": "chen@example.com", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 302
    assert "Chen household" in client.get("/").content.decode()


def test_every_demo_account_sees_daily_consumption_for_the_whole_period() -> None:
    days = 14
    call_command("seed_demo", "--days", str(days), stdout=StringIO())
    now = timezone.now()
    start = now - dt.timedelta(days=days + 1)
    assert not ImportBatch.objects.filter(status=ImportBatch.Status.FAILED).exists()
    moved = {old for old, _days, _hour in MOVES.values()}
    for account in Account.objects.all():
        points = ServicePoint.objects.filter(supplies__account=account)
        assert points.filter(kind="electricity").exists(), account.number
        for point in points:
            series = consumption_series(
                account_id=account.pk,
                service_point_id=point.pk,
                start=start,
                end=now + dt.timedelta(days=1),
                resolution=Resolution.DAY,
                time_zone=account.time_zone,
            )
            where = (account.number, point.code)
            if account.number in moved or account.number in MOVES:
                # A move hands the flat over in the middle of the period.
                assert 1 < len(series) < days, where
            else:
                # Every day from the first local day to today (unless today has just begun).
                assert days <= len(series) <= days + 1, where
            assert all(p.consumption > 0 for p in series[1:-1]), where
    assert {a.time_zone for a in Account.objects.filter(number__in=ABROAD)} == {
        zone for zone, _currency in ABROAD.values()
    }
    chen = Account.objects.get(number="RH-0001")
    assert ServicePoint.objects.filter(supplies__account=chen).count() == 2  # power and water
    solar = consumption_series(
        account_id=chen.pk,
        service_point_id=ServicePoint.objects.get(supplies__account=chen, kind="electricity").pk,
        start=start,
        end=now + dt.timedelta(days=1),
        resolution=Resolution.DAY,
        direction=Direction.EXPORT,
        time_zone=chen.time_zone,
    )
    assert sum(p.consumption for p in solar) > 0
    food_court = Account.objects.get(number="HC-1002")
    assert ServicePoint.objects.filter(supplies__account=food_court, kind="gas").exists()
    # The handful of incidents: a leak, a tamper alarm, an estimated gap, a spike.
    assert MeterEvent.objects.filter(kind="leak", account__number="RH-0002").exists()
    assert MeterEvent.objects.filter(kind="tamper_cover", account__number="RH-0003").exists()
    assert Reading.objects.filter(quality=Quality.ESTIMATED).exists()
    assert Reading.objects.filter(quality=Quality.SUSPECT).exists()
    # One supply per service point, and one more for each that changed hands.
    handed_over = sum(len(DEMO_METERS[old]) for old, _days, _hour in MOVES.values())
    assert Supply.objects.count() == ServicePoint.objects.count() + handed_over


def test_the_demo_has_tariffs_wallets_top_ups_and_charges() -> None:
    from billing.models import DailyCharge, Posting, TariffAssignment, TopUp, Wallet

    out = StringIO()
    call_command("seed_demo", "--days", "4", stdout=out)
    for supply in Supply.objects.all():
        assert TariffAssignment.objects.filter(
            account=supply.account, service_point=supply.service_point
        ).exists()
    prepaid = Account.objects.filter(payment_mode="prepaid")
    assert Wallet.objects.count() == prepaid.count() > 0
    assert TopUp.objects.filter(status="succeeded").exists()
    assert DailyCharge.objects.filter(total__gt=0).exists()
    assert sum(Posting.objects.values_list("amount", flat=True)) == 0
    for wallet in Wallet.objects.all():
        postings = Posting.objects.filter(ledger_account=wallet.ledger_account)
        assert wallet.balance == -sum(p.amount for p in postings)
    assert "Billing:" in out.getvalue()
    assert audit_chain_verify().ok
