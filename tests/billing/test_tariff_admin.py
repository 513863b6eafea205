"""Staff manage tariffs in the admin: validated structures, a preview, history kept."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core.exceptions import ValidationError
from django.test import Client

from billing.exceptions import BillingError
from billing.models import Holiday, Tariff, TariffAssignment, TariffVersion
from billing.services.charging import prepaid_charge_day
from billing.services.tariffs import tariff_assign, tariff_version_save
from meters.models import ServicePoint
from portal.audit.events import AuditEvent
from portal.audit.models import AuditLogEntry
from tests.billing.helpers import hours, make_tariff, supplied
from tests.factories import SYSTEM, make_account, make_organisation, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = make_user("root@utility.example", staff=True)
    TOTP.activate(user, generate_totp_secret())
    client = Client()
    client.force_login(user)
    return client


def test_every_tariff_admin_page_opens(admin_client: Client) -> None:
    tariff = make_tariff()
    version = tariff.versions.get()
    Holiday.objects.create(day=dt.date(2026, 10, 10), name="National Day")
    for page in [
        "/admin/billing/",
        "/admin/billing/tariff/",
        "/admin/billing/tariff/add/",
        f"/admin/billing/tariff/{tariff.pk}/change/",
        "/admin/billing/tariffversion/",
        "/admin/billing/tariffversion/add/",
        f"/admin/billing/tariffversion/{version.pk}/change/",
        "/admin/billing/tariffassignment/",
        "/admin/billing/tariffassignment/add/",
        "/admin/billing/holiday/",
        "/admin/billing/holiday/add/",
    ]:
        assert admin_client.get(page).status_code == 200, page


def test_the_preview_prices_a_month(admin_client: Client) -> None:
    version = make_tariff({"type": "flat", "rate": "2"}, standing="1", tax="0").versions.get()
    response = admin_client.get(
        f"/admin/billing/tariffversion/{version.pk}/preview/",
        {"month": "2026-02-01", "quantity": "100", "time_zone": "Asia/Taipei"},
    )
    assert response.status_code == 200
    # 100 kWh x 2 + 28 days x 1
    assert "228.00 TWD" in response.content.decode()


def test_a_structure_that_cannot_be_priced_is_refused_in_the_admin(admin_client: Client) -> None:
    tariff = Tariff.objects.create(
        code="new", name="New", kind="electricity", currency="TWD", quantity_unit="kWh"
    )
    response = admin_client.post(
        "/admin/billing/tariffversion/add/",
        {
            "tariff": tariff.pk,
            "valid_from": "2027-01-01",
            "standing_charge": "1",
            "tax_rate": "0.05",
            "structure": json.dumps({"type": "tiered", "tiers": [{"up_to": "10", "rate": "1"}]}),
        },
    )
    assert response.status_code == 200
    assert "the last tier must be unbounded" in response.content.decode()
    assert not tariff.versions.exists()


def test_overlapping_versions_are_refused() -> None:
    tariff = make_tariff()
    with pytest.raises(ValidationError, match="overlaps"):
        tariff_version_save(
            instance=TariffVersion(
                tariff=tariff,
                valid_from=dt.date(2026, 6, 1),
                standing_charge=Decimal(1),
                tax_rate=Decimal(0),
                structure={"type": "flat", "rate": "1"},
            ),
            actor=SYSTEM,
        )


def test_prices_already_charged_are_history() -> None:
    account, sp, _ = supplied()
    hours(account, sp, dt.datetime(2026, 5, 3, 16, tzinfo=dt.UTC), [1000] * 24)
    prepaid_charge_day(
        day=dt.date(2026, 5, 4),
        time_zone="Asia/Taipei",
        actor=SYSTEM,
        as_of=dt.datetime(2026, 5, 5, tzinfo=dt.UTC),
    )
    version = TariffVersion.objects.get()
    with pytest.raises(BillingError, match="already been charged"):
        tariff_version_save(
            instance=version, changes={"standing_charge": Decimal(99)}, actor=SYSTEM
        )
    tariff_version_save(instance=version, changes={"valid_to": dt.date(2026, 6, 1)}, actor=SYSTEM)
    with pytest.raises(ValidationError):
        tariff_version_save(
            instance=TariffVersion(
                tariff=version.tariff,
                valid_from=dt.date(2026, 6, 1),
                standing_charge=Decimal(1),
                tax_rate=Decimal(0),
                structure={"type": "flat", "rate": 1.5},
            ),
            actor=SYSTEM,
        )


def test_assignments_follow_each_other_and_must_fit_the_account() -> None:
    account = make_account()
    sp = ServicePoint.objects.create(code="SP-T", kind="electricity", time_zone="Asia/Taipei")
    first, second = make_tariff(), make_tariff()
    tariff_assign(
        account=account,
        service_point=sp,
        tariff=first,
        valid_from=dt.date(2026, 1, 1),
        actor=SYSTEM,
    )
    tariff_assign(
        account=account,
        service_point=sp,
        tariff=second,
        valid_from=dt.date(2026, 7, 1),
        actor=SYSTEM,
    )
    periods = list(
        TariffAssignment.objects.order_by("valid_from").values_list("valid_from", "valid_to")
    )
    assert periods == [(dt.date(2026, 1, 1), dt.date(2026, 7, 1)), (dt.date(2026, 7, 1), None)]
    with pytest.raises(BillingError, match="another kind"):
        tariff_assign(
            account=account,
            service_point=sp,
            tariff=make_tariff(kind="water"),
            valid_from=dt.date(2026, 8, 1),
            actor=SYSTEM,
        )
    contract = Tariff.objects.create(
        code="contract",
        name="Contract",
        kind="electricity",
        currency="TWD",
        quantity_unit="kWh",
        organisation=make_organisation(),
    )
    with pytest.raises(BillingError, match="another organisation"):
        tariff_assign(
            account=account,
            service_point=sp,
            tariff=contract,
            valid_from=dt.date(2026, 8, 1),
            actor=SYSTEM,
        )
    assert AuditLogEntry.objects.filter(event_type=AuditEvent.TARIFF_ASSIGNED).count() == 2
