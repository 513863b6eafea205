"""The account home page: credit and days left (or the latest bill), this month against last
month and last year, open alerts and the meters' last reading."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from billing.models import DailyCharge, TariffVersion
from billing.services.ledger import wallet_adjust
from meters.models import Meter, MeterEvent, MeterInstallation, RollupDaily
from portal.tenancy.roles import Role
from tests.billing.helpers import supplied
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # noon in Taipei


def _client(account: object, role: Role = Role.OWNER) -> Client:
    user = make_user()
    make_membership(user, role, account=account)  # type: ignore[arg-type]
    client = Client()
    client.force_login(user)
    return client


def test_a_prepaid_home_shows_credit_days_left_usage_and_alerts() -> None:
    account, sp, wallet = supplied()
    wallet_adjust(
        wallet=wallet, amount=600_00, reason="opening", idempotency_key="o", actor=SYSTEM, as_of=NOW
    )
    version = TariffVersion.objects.get()
    for back in range(1, 15):
        DailyCharge.objects.create(
            account=account,
            service_point=sp,
            day=dt.date(2026, 5, 20) - dt.timedelta(days=back),
            tariff_version=version,
            consumption=8000,
            net=4000,
            tax=0,
            total=4000,
            created_at=NOW,
        )
    for day, value in [
        (dt.date(2026, 5, 3), 9000),
        (dt.date(2026, 4, 3), 8000),
        (dt.date(2025, 5, 3), 7000),
    ]:
        RollupDaily.objects.create(
            service_point=sp,
            direction="import",
            day=day,
            account=account,
            consumption=value,
            hours=24,
        )
    meter = Meter.objects.get(installations__service_point=sp)
    MeterEvent.objects.create(
        meter=meter, service_point=sp, account=account, kind="leak", severity=30, occurred_at=NOW
    )
    with time_machine.travel(NOW, tick=False):
        response = _client(account).get(f"/a/{account.public_id}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "600.00" in page and "About 15.0 days left" in page  # 600 / 40 a day
    assert 'href="/a/' in page and "/topup/" in page
    usage = next(p for p in response.context["panels"] if p.template.endswith("usage.html"))
    assert usage.context["rows"][0]["this_month"] == 9.0
    assert usage.context["rows"][0]["last_month"] == 8.0
    assert usage.context["rows"][0]["year_ago"] == 7.0
    assert meter.serial in page and "text-danger" in page


def test_a_postpaid_home_shows_the_latest_bill_and_a_viewer_cannot_top_up() -> None:
    account = make_account(payment_mode="postpaid")
    with time_machine.travel(NOW, tick=False):
        response = _client(account, Role.VIEWER).get(f"/a/{account.public_id}/")
    page = response.content.decode()
    assert "No bill has been issued yet." in page
    assert "/topup/" not in page


def test_panels_do_not_leak_between_accounts() -> None:
    mine, _, _ = supplied()
    other, other_sp, _ = supplied()
    MeterEvent.objects.create(
        meter=Meter.objects.get(installations__service_point=other_sp),
        service_point=other_sp,
        account=other,
        kind="tamper_cover",
        severity=30,
        occurred_at=NOW,
    )
    with time_machine.travel(NOW, tick=False):
        response = _client(mine).get(f"/a/{mine.public_id}/")
    alerts = next(p for p in response.context["panels"] if p.template.endswith("alerts.html"))
    assert alerts.context["rows"] == [] and alerts.context["count"] == 0
    # The panel lists this account's own meter (so the check below is not over an empty list)
    # and no other account's.
    assert len(alerts.context["meters"]) == 1
    assert all(
        MeterInstallation.objects.filter(meter=m, service_point__supplies__account=mine).exists()
        for m in alerts.context["meters"]
    )


def test_a_postpaid_home_shows_this_months_bill_to_date() -> None:
    from decimal import Decimal

    from billing.models import TariffAssignment
    from meters.models import ServicePoint
    from meters.services.supply import supply_start
    from tests.billing.helpers import hours, make_tariff

    account = make_account(payment_mode="postpaid")
    sp = ServicePoint.objects.create(code="SP-P1", kind="electricity", time_zone="Asia/Taipei")
    since = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    supply_start(account=account, service_point=sp, start=since, actor=SYSTEM)
    TariffAssignment.objects.create(
        account=account, service_point=sp, tariff=make_tariff(), valid_from=since.date()
    )
    # 1-19 May in Taipei, 1 kWh an hour, then half of the 20th (until noon, the clock below).
    hours(account, sp, dt.datetime(2026, 4, 30, 16, tzinfo=dt.UTC), [1000] * (19 * 24 + 12))
    with time_machine.travel(NOW, tick=False):
        response = _client(account, Role.VIEWER).get(f"/a/{account.public_id}/")
    page = response.content.decode()
    assert "This month so far" in page
    # Flat 2.5 a kWh with 10 a day standing and 5% tax: 468 kWh and 19 whole days.
    expected = (Decimal(468) * Decimal("2.5") + 19 * 10) * Decimal("1.05")
    assert f'id="bill-to-date">{expected.quantize(Decimal("0.01")):,} ' in page
