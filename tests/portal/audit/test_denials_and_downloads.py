"""Audit gaps of issue 12 (security finding 6): cross-tenant 404s, API-key scope refusals, bill
PDF and usage CSV downloads each leave exactly one entry."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.test import Client
from django.urls import reverse
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory

from billing.models import Bill
from billing.services.bills import bill_run_execute
from portal.audit.events import AuditEvent, event_display
from portal.audit.models import AuditLogEntry
from portal.tenancy.api.base import OrganisationKeyAPIView
from portal.tenancy.models import Account
from portal.tenancy.roles import Role
from portal.tenancy.scopes import Scope
from portal.tenancy.services.api_keys import api_key_create
from tests.billing.helpers import supplied
from tests.billing.test_bills import MARCH, NOW, local_hours, postpaid
from tests.conftest import World
from tests.factories import SYSTEM, make_membership, make_user

pytestmark = pytest.mark.django_db


def _entries(event: AuditEvent) -> list[AuditLogEntry]:
    return list(AuditLogEntry.objects.filter(event_type=event).order_by("id"))


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- Cross-tenant 404s -----------------------------------------------------------------------


def _probe_urls(account_id: uuid.UUID, org_id: uuid.UUID) -> list[str]:
    return [
        reverse("tenancy:account_home", args=[account_id]),
        reverse("billing:account_bills", args=[account_id]),
        reverse("meters:account_usage", args=[account_id]),
        reverse("tenancy:organisation_home", args=[org_id]),
        f"/api/v1/accounts/{account_id}/",
        f"/api/v1/organisations/{org_id}/accounts/",
    ]


def test_every_probe_of_another_tenant_is_one_entry_of_the_prober_and_of_the_tenant(
    world: World,
) -> None:
    # Bob is a member of account A only; he asks for account B and the group, 200 times.
    prober = _signed_in(world.bob)
    urls = _probe_urls(world.account_b.public_id, world.group.public_id)
    before = len(_entries(AuditEvent.ACCESS_DENIED))
    for index in range(200):
        url = urls[index % len(urls)]
        assert prober.get(url).status_code == 404, url
    probes = _entries(AuditEvent.ACCESS_DENIED)[before:]
    assert len(probes) == 200
    assert {p.actor_id for p in probes} == {world.bob.pk}
    assert {p.data["reason"] for p in probes} == {"not_member"}
    on_account = [p for p in probes if p.account_id is not None]
    on_group = [p for p in probes if p.account_id is None]
    assert {p.account_id for p in on_account} == {world.account_b.pk}
    assert {p.organisation_id for p in on_group} == {world.group.pk}
    assert on_account[0].data["path"] == urls[0]
    assert event_display(AuditEvent.ACCESS_DENIED, on_account[0].data) == (
        f"was refused {urls[0]}: not a member there (answered as not found)"
    )


def test_a_probe_of_nothing_is_the_probers_own_entry(world: World) -> None:
    nowhere = uuid.uuid4()
    before = len(_entries(AuditEvent.ACCESS_DENIED))
    for url in _probe_urls(nowhere, nowhere):
        assert _signed_in(world.bob).get(url).status_code == 404
    probes = _entries(AuditEvent.ACCESS_DENIED)[before:]
    assert len(probes) == 6
    assert all(
        (p.actor_id, p.account_id, p.organisation_id, p.chain)
        == (world.bob.pk, None, None, "global")
        for p in probes
    )


def test_the_404_of_an_existing_tenant_is_the_404_of_a_missing_one(world: World) -> None:
    prober = _signed_in(world.bob)
    nowhere = uuid.uuid4()
    real = _probe_urls(world.account_b.public_id, world.group.public_id)
    fake = _probe_urls(nowhere, nowhere)
    for real_url, fake_url in zip(real, fake, strict=True):
        seen, unseen = prober.get(real_url), prober.get(fake_url)
        assert seen.status_code == unseen.status_code == 404

        def shown(response: Any, *ids: object) -> str:
            text: str = response.content.decode()
            for value in ids:
                text = text.replace(str(value), "<id>")
            # The CSRF token is masked afresh for every response.
            text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)
            return re.sub(r'"X-CSRFToken": "[^"]+"', "", text)

        assert shown(seen, world.account_b.public_id, world.group.public_id) == shown(
            unseen, nowhere
        )
        assert seen["Content-Type"] == unseen["Content-Type"]


def test_the_probed_tenants_owner_sees_the_probe_in_its_log(world: World) -> None:
    owner = make_user("owner-b@example.com")
    make_membership(owner, Role.OWNER, account=world.account_b)
    url = reverse("tenancy:account_home", args=[world.account_b.public_id])
    assert _signed_in(world.bob).get(url).status_code == 404
    log = _signed_in(owner).get(reverse("audit:account_log", args=[world.account_b.public_id]))
    assert log.status_code == 200
    html = log.content.decode()
    assert f"was refused {url}: not a member there" in html
    assert world.bob.email in html


def test_a_member_is_not_audited_as_a_prober(world: World) -> None:
    before = len(_entries(AuditEvent.ACCESS_DENIED))
    url = reverse("tenancy:account_home", args=[world.account_a.public_id])
    assert _signed_in(world.bob).get(url).status_code == 200
    assert len(_entries(AuditEvent.ACCESS_DENIED)) == before


# --- API-key scope refusals ------------------------------------------------------------------


class _BillingReadByKey(OrganisationKeyAPIView):
    """A machine endpoint asking for a scope that no API key carries."""

    required_scope = Scope.BILLING_READ

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


def test_an_api_key_without_the_scope_is_refused_and_audited(world: World) -> None:
    api_key, key = api_key_create(organisation=world.group, name="head-end", actor=SYSTEM)
    request = APIRequestFactory().get("/machine/bills/", HTTP_AUTHORIZATION=f"Api-Key {key}")
    before = len(_entries(AuditEvent.ACCESS_DENIED))
    response = _BillingReadByKey.as_view()(request)
    assert response.status_code == 403
    (entry,) = _entries(AuditEvent.ACCESS_DENIED)[before:]
    assert (entry.organisation_id, entry.account_id, entry.actor_id) == (world.group.pk, None, None)
    assert entry.data == {"reason": "api_key", "scope": "billing:read", "path": "/machine/bills/"}
    assert entry.actor_label == f"api-key:{api_key.prefix} ({world.group.name})"
    assert event_display(AuditEvent.ACCESS_DENIED, entry.data) == (
        "was refused /machine/bills/: the API key lacks billing:read"
    )


# --- Downloads -------------------------------------------------------------------------------


def _bill() -> tuple[Account, Bill]:
    account, sp = postpaid()
    local_hours(account, sp, MARCH, 31)
    bill_run_execute(period_start=MARCH, actor=SYSTEM, as_of=NOW)
    return account, Bill.objects.get(account=account)


def test_a_members_bill_pdf_download_is_audited() -> None:
    pytest.importorskip("weasyprint")
    account, bill = _bill()
    member = make_user()
    make_membership(member, Role.VIEWER, account=account)
    url = reverse("billing:account_bill_pdf", args=[account.public_id, bill.public_id])
    response = _signed_in(member).get(url, {"lang": "zh-hant"})
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    (entry,) = _entries(AuditEvent.BILL_PDF_DOWNLOADED)
    assert (entry.actor_id, entry.account_id, entry.target_id) == (
        member.pk,
        account.pk,
        str(bill.pk),
    )
    assert entry.display == f"downloaded the PDF of bill {bill.number} of account {account.number}"
    assert entry.data["language"] == "zh-hant"


def test_a_staff_bill_pdf_download_in_the_admin_is_audited() -> None:
    pytest.importorskip("weasyprint")
    account, bill = _bill()
    staff = make_user("root@utility.example", staff=True)
    TOTP.activate(staff, generate_totp_secret())
    response = _signed_in(staff).get(reverse("admin:billing_bill_pdf", args=[bill.pk, "en"]))
    assert response.status_code == 200
    (entry,) = _entries(AuditEvent.BILL_PDF_DOWNLOADED)
    assert (entry.actor_id, entry.account_id) == (staff.pk, account.pk)


def test_a_refused_pdf_is_not_a_download() -> None:
    account, bill = _bill()
    stranger = make_user()
    url = reverse("billing:account_bill_pdf", args=[account.public_id, bill.public_id])
    assert _signed_in(stranger).get(url).status_code == 404
    assert _entries(AuditEvent.BILL_PDF_DOWNLOADED) == []


def test_a_usage_csv_download_is_audited_and_the_page_is_not(world: World) -> None:
    account, _sp, _wallet = supplied(world.account_a)
    url = reverse("meters:account_usage", args=[account.public_id])
    client = _signed_in(world.bob)
    assert client.get(url, {"range": "month"}).status_code == 200
    assert _entries(AuditEvent.CSV_EXPORTED) == []
    response = client.get(url, {"range": "month", "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    (entry,) = _entries(AuditEvent.CSV_EXPORTED)
    assert (entry.actor_id, entry.account_id) == (world.bob.pk, account.pk)
    assert entry.data == {"export": "usage", "query": "range=month&format=csv"}
    assert entry.display == "exported the consumption table as CSV"
