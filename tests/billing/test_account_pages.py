"""Residents' bills (with PDFs) and wallet ledger pages."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client

from billing.models import Bill
from billing.services.ledger import wallet_adjust
from portal.tenancy.roles import Role
from tests.billing.helpers import supplied
from tests.factories import SYSTEM, make_account, make_membership, make_user

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 5, 4, 2, 0, tzinfo=dt.UTC)


def _client(account: object, role: Role = Role.VIEWER) -> Client:
    user = make_user()
    make_membership(user, role, account=account)  # type: ignore[arg-type]
    client = Client()
    client.force_login(user)
    return client


def test_the_wallet_page_lists_movements_with_the_running_balance() -> None:
    account, _, wallet = supplied()
    for key, amount in [("a", 500_00), ("b", -120_50), ("c", 30_00)]:
        wallet_adjust(
            wallet=wallet,
            amount=amount,
            reason=f"move {key}",
            idempotency_key=key,
            actor=SYSTEM,
            now=NOW,
        )
    response = _client(account).get(f"/a/{account.public_id}/wallet/")
    assert response.status_code == 200
    rows = response.context["lines"]
    assert [(r["line"].memo, r["amount"], r["balance"]) for r in rows] == [
        ("move c", "30.00 TWD", "409.50 TWD"),
        ("move b", "-120.50 TWD", "379.50 TWD"),
        ("move a", "500.00 TWD", "500.00 TWD"),
    ]


def test_bills_are_listed_and_their_pdf_is_served_only_to_the_account() -> None:
    account = make_account(payment_mode="postpaid")
    bill = Bill.objects.create(
        account=account,
        number=7,
        period_start=dt.date(2026, 4, 1),
        period_end=dt.date(2026, 5, 1),
        currency="TWD",
        status=Bill.Status.ISSUED,
        subtotal=1000_00,
        tax=50_00,
        total=1050_00,
        created_at=NOW,
        issued_at=NOW,
    )
    Bill.objects.create(
        account=account,
        period_start=dt.date(2026, 5, 1),
        period_end=dt.date(2026, 6, 1),
        currency="TWD",
        created_at=NOW,
    )  # a draft: staff's, not shown
    client = _client(account)
    page = client.get(f"/a/{account.public_id}/bills/")
    assert [row["bill"].number for row in page.context["bills"]] == [7]
    assert "1050.00 TWD" in page.content.decode()
    pdf = client.get(f"/a/{account.public_id}/bills/{bill.public_id}/pdf/?lang=zh-hant")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    stranger = _client(make_account(payment_mode="postpaid"))
    response = stranger.get(f"/a/{account.public_id}/bills/{bill.public_id}/pdf/")
    assert response.status_code == 404
